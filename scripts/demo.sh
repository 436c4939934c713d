#!/usr/bin/env bash
# The main job, end to end on a fresh Debian machine:  scripts/demo.sh [DATA_DIR]
#   install + build -> data (a CT phantom dataset, or DATA_DIR: images with a VIA CSV) -> TFRecords split by
#   patient -> training (the small CPU config; the study's ResNet-101 config when a CUDA GPU is present) ->
#   inference on the held-out test split -> evaluation (COCO AP, the study's success rates, FROC) -> HTML report.
# Outputs go to out/demo/ (or $DEMO_OUT). Knobs: DEMO_STEPS (training steps), DEMO_COUNT (phantom slices).
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
  "$CTDET" synth --out "$DATA" --count "${DEMO_COUNT:-96}" --size 512 --patients 24 --seed 1
fi

step "prepare TFRecords (split by patient 70/15/15)"
CSV=$(ls "$DATA"/*.csv 2>/dev/null | head -1 || true)
[ -n "$CSV" ] || { echo "no VIA CSV in $DATA: nothing to prepare"; exit 1; }
IMAGES=$DATA
[ -d "$DATA/images" ] && IMAGES=$DATA/images
"$CTDET" prepare --images "$IMAGES" --via-csv "$CSV" --out "$OUT/records" --seed 1 --split 0.7,0.15,0.15

step "training"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && \
   grep -q "CTDET_WITH_CUDA:INTERNAL=1\|CTDET_CUDA:STRING=ON" "$BUILD/CMakeCache.txt" 2>/dev/null; then
  CONFIG=configs/faster_rcnn_resnet101.json
  EXTRA=(--device cuda --steps "${DEMO_STEPS:-5000}" --set train.checkpoint_every=1000 --set train.eval_every=1000
         --set train.log_every=50)
else
  # 256-pixel inputs keep the phantom lesions (16-64 px on 512-px slices) above the stride-16 grid's reach.
  CONFIG=configs/small_cpu.json
  # A wider tiny ResNet (width 8, units 1-2-2-1: 0.9 MB of parameters), about 10 steps/s on 2 cores.
  EXTRA=(--device cpu --steps "${DEMO_STEPS:-3000}" --set model.min_dimension=256 --set model.max_dimension=256
         --set model.resnet_base_width=8 --set model.resnet_units=1,2,2,1 --set model.rpn_conv_depth=64
         --set train.lr_steps=2500:0.001 --set train.eval_every=1000 --set train.checkpoint_every=1000)
fi
"$CTDET" train --config "$CONFIG" --run-dir "$OUT/run" --set data.train="$OUT/records" --set data.val="$OUT/records" \
  "${EXTRA[@]}"

step "inference on the held-out test split"
mkdir -p "$OUT/test_images"
# splits.csv: split,image_id,file,patient_id,boxes (quoted fields)
tail -n +2 "$OUT/records/splits.csv" | while IFS=, read -r split id file rest; do
  [ "$split" = test ] || continue
  file=${file//\"/}
  ln -sf "$(cd "$(dirname "$file")" && pwd)/$(basename "$file")" "$OUT/test_images/$(basename "$file")"
done
"$CTDET" infer --run "$OUT/run" --out "$OUT/infer" --threshold 0.05 "$OUT/test_images"

step "evaluation"
"$CTDET" eval --gt "$OUT/records/test_gt.json" --dets "$OUT/infer/detections.csv" --out "$OUT/eval" --threshold 0.5

step "report"
"$CTDET" report --eval "$OUT/eval" --out "$OUT/report.html" --train-log "$OUT/run" --config "$OUT/run/config.json" \
  --images "$OUT/test_images" --gt "$OUT/records/test_gt.json" --dets "$OUT/infer/detections.csv" \
  --title "ctdet demo: Faster R-CNN on CT phantoms ($(basename "$CONFIG" .json))"

step "done in $(( $(date +%s) - t0 ))s"
python3 - "$OUT/eval/eval_report.json" <<'EOF' || true
import json, sys
r = json.load(open(sys.argv[1]))
ap, il = r["ap"], r["image_level"]
def pct(x): return "n/a" if x is None else f"{100 * x:.1f}%"
print(f"test split: mAP@0.5 {ap['mean']['ap50']:.3f}, any-lesion AP@0.5 {ap['any_lesion']['ap50']:.3f}")
for k in ("sensitivity", "specificity", "accuracy"):
    if k in il: print(f"  image-level {k} at score >= 0.5: {pct(il[k]['value'])} ({il[k]['k']}/{il[k]['n']})")
EOF
echo "report:  $OUT/report.html"
echo "run:     $OUT/run (loss_chart.png, metrics.csv, TensorBoard events, checkpoints/)"
echo "results: $OUT/infer (detections.json/.csv, overlays/), $OUT/eval (eval_report.md/.json, froc.csv)"
