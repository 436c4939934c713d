#!/usr/bin/env bash
# The main job, end to end on a fresh Debian machine:  scripts/demo.sh [DATA_DIR]
# Today (see README "Status") the engine has no trained detector yet, so the demo runs the most complete
# pipeline that exists: install + build, a CT phantom dataset (or DATA_DIR), TFRecord preparation with a
# patient-level split, and the memory plans of the models on an 8 GB budget. Outputs go to out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${DEMO_OUT:-$ROOT/out/demo}
BUILD=${BUILD_DIR:-build}
t0=$(date +%s)
step() { echo; echo "== [$(( $(date +%s) - t0 ))s] $*"; }

step "dependencies and build ($BUILD)"
bash scripts/setup.sh
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target ctdet_cli
CTDET="$ROOT/$BUILD/ctdet"

rm -rf "$OUT"
mkdir -p "$OUT"
if [ $# -ge 1 ]; then
  DATA=$1
  step "using data in $DATA"
else
  DATA=$OUT/phantom
  step "CT phantom dataset -> $DATA"
  "$CTDET" synth --out "$DATA" --count 48 --size 512 --patients 12 --seed 1
fi

step "prepare TFRecords (split by patient)"
CSV=$(ls "$DATA"/*.csv 2>/dev/null | head -1 || true)
if [ -n "$CSV" ]; then
  IMAGES=$DATA
  [ -d "$DATA/images" ] && IMAGES=$DATA/images
  "$CTDET" prepare --images "$IMAGES" --via-csv "$CSV" --out "$OUT/records" --seed 1 --shards 2
else
  echo "no VIA CSV in $DATA: nothing to prepare"; exit 1
fi

step "memory plans"
for m in $("$CTDET" plan --list-models 2>/dev/null || echo mlp); do
  "$CTDET" plan --model "$m" --size 600x600 --train --memory-budget 8GiB | tee "$OUT/plan_$m.txt" | tail -n +1
done

step "done in $(( $(date +%s) - t0 ))s; outputs in $OUT"
ls "$OUT" "$OUT/records"
