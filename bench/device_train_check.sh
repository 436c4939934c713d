#!/usr/bin/env bash
# `ctdet train` on the GPU end to end, twice, on a small phantom set with the study's ResNet-101 config:
#   1. the default memory budget (train.memory_budget "": what the device has free, less a reserve), which should
#      leave the plan as it is;
#   2. a budget the plain plan (942 MiB at 600x600) exceeds, so that the planner recomputes the backbone in
#      backward (its log line "memory plan within the budget: ... recompute ... segments").
# Usage: bench/device_train_check.sh CTDET_EXECUTABLE OUT_DIR     (run from the repository root; ~1 min)
set -uo pipefail
CTDET=${1:?ctdet executable}
OUT=${2:?output folder}
mkdir -p "$OUT"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
"$CTDET" synth --out "$W/data" --count 24 --size 512 --patients 6 --seed 1 > "$OUT/train_data.log" 2>&1 &&
  "$CTDET" prepare --images "$W/data/images" --via-csv "$W/data/via_regions.csv" --out "$W/rec" --seed 1 \
    --split 0.7,0.15,0.15 >> "$OUT/train_data.log" 2>&1 || { echo "train check: data preparation failed"; exit 1; }
rc_all=0
for mode in default budget800MiB; do
  extra=()
  [ "$mode" = budget800MiB ] && extra=(--set train.memory_budget=800MiB)
  timeout 150 "$CTDET" train --config configs/faster_rcnn_resnet101.json --run-dir "$W/run_$mode" --device cuda \
    --steps 30 --set data.train="$W/rec" --set data.val="$W/rec" --set train.eval_every=0 --set train.log_every=10 \
    --set train.checkpoint_every=0 "${extra[@]}" > "$OUT/train_$mode.log" 2>&1
  rc=$?
  [ $rc = 0 ] || rc_all=1
  echo "ctdet train ($mode): rc $rc"
  grep -aE "memory budget|memory plan within|^run:|error|non-finite" "$OUT/train_$mode.log" | head -8
done
exit $rc_all
