#!/usr/bin/env bash
# The one command to run on a machine with an NVIDIA GPU:
#   bench/device_check.sh [OUT_DIR]     (default: $OUT, else ./device_check_out)
# 1. finds the CUDA toolkit and cuDNN (system, CUDNN_ROOT, or the Python env's nvidia/cudnn package),
# 2. builds Release for the device's architecture (reusing a carried build-device/ folder),
# 3. runs every test including the gpu-labelled ones,
# 4. runs compute-sanitizer memcheck over the GPU test executables,
# 5. runs whatever benchmarks exist (bench/ binaries, the PyTorch peer when torch with CUDA is importable),
# 6. writes summary.md (+ logs) into OUT_DIR, and says what it skipped and why.
# Budget: well under 8 minutes on a 16-core machine; each step has its own timeout.
#
# Prebuilt mode (spend device minutes running, not compiling): build here for the device's architecture
# (-DCMAKE_CUDA_ARCHITECTURES=90), pack the GPU test executables, bench_* and the shared libraries the device
# image lacks with scripts/pack_device.sh, carry the archive, and run with CTDET_PREBUILT=<dir with bin/ and lib/>.
# The build and the CPU-only tests are then skipped (CI runs those); every GPU test runs directly.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-$PWD/device_check_out}}
mkdir -p "$OUT_DIR"
SUMMARY="$OUT_DIR/summary.md"
LOG="$OUT_DIR/device_check.log"
: > "$LOG"
T0=$(date +%s)
skipped=()
say() { echo "$*" | tee -a "$LOG"; }
elapsed() { echo $(( $(date +%s) - T0 ))s; }

{
  echo "# ctdet device check, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown) $(git status --porcelain 2>/dev/null | head -1 | grep -q . && echo '(with uncommitted changes)')"
} > "$SUMMARY"

# ---- toolkit and device ----------------------------------------------------------------------------
export PATH=/usr/local/cuda/bin:$PATH
if ! command -v nvcc >/dev/null; then say "nvcc not found: cannot build the CUDA backend"; echo "nvcc not found" >> "$SUMMARY"; exit 1; fi
GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>/dev/null | head -1)
ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
ARCH=${ARCH:-90}
NVCC_VER=$(nvcc --version | tail -2 | head -1)
if [ -z "${CUDNN_ROOT:-}" ] && ! ls /usr/include/cudnn*.h "$(dirname "$(command -v nvcc)")"/../include/cudnn.h >/dev/null 2>&1; then
  for py in python3 /usr/bin/python3; do
    d=$($py -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null) && { export CUDNN_ROOT=$d; break; }
  done
  [ -n "${CUDNN_ROOT:-}" ] && { [ -e "$CUDNN_ROOT/lib/libcudnn.so" ] || ln -sf "$(ls "$CUDNN_ROOT"/lib/libcudnn.so.* | head -1)" "$CUDNN_ROOT/lib/libcudnn.so"; }
  [ -n "${CUDNN_ROOT:-}" ] && export LD_LIBRARY_PATH="$CUDNN_ROOT/lib:${LD_LIBRARY_PATH:-}"
fi
{
  echo "GPU: ${GPU:-unknown} (sm_$ARCH)"
  echo "CUDA: $NVCC_VER"
  echo "cuDNN: ${CUDNN_ROOT:-system}"
  echo "TF32: off (ctdet runs fp32; cuBLAS default math, cuDNN FMA math)"
  echo
} >> "$SUMMARY"

# ---- prebuilt executables (CTDET_PREBUILT) -------------------------------------------------------------
if [ -n "${CTDET_PREBUILT:-}" ]; then
  export LD_LIBRARY_PATH="$CTDET_PREBUILT/lib:${LD_LIBRARY_PATH:-}"
  # CUDA libraries come from the device's own toolkit / Python wheels: find the ones the loader does not see.
  for lib in $(for b in "$CTDET_PREBUILT"/bin/*; do ldd "$b" | awk '/not found/ {print $1}'; done | sort -u); do
    f=$(find /usr/local/cuda/ /opt /usr/lib /usr/local/lib -name "$lib" 2>/dev/null | head -1)
    [ -n "$f" ] && export LD_LIBRARY_PATH="$(dirname "$f"):$LD_LIBRARY_PATH"
  done
  say "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  missing=$(for b in "$CTDET_PREBUILT"/bin/*; do ldd "$b" | grep "not found"; done | sort -u)
  [ -n "$missing" ] && say "missing libraries: $missing"
  echo "## Build: prebuilt executables from $CTDET_PREBUILT (built on the development machine for sm_$ARCH)" >> "$SUMMARY"
  echo '```' >> "$SUMMARY"; echo "${missing:-all shared libraries resolved}" >> "$SUMMARY"; echo '```' >> "$SUMMARY"
  BUILD="$CTDET_PREBUILT/bin"
  CT_RC=0
  { echo; echo "## GPU tests (each executable run directly)"; echo '```'; } >> "$SUMMARY"
  for t in "$BUILD"/test_*_gpu; do
    n=$(basename "$t")
    timeout 150 "$t" > "$OUT_DIR/$n.log" 2>&1
    rc=$?
    [ $rc = 0 ] || CT_RC=1
    say "[$(elapsed)] $n rc $rc"
    echo "$n: rc $rc, $(grep -E '^\[  PASSED  \]|^\[  FAILED  \]|^\[  SKIPPED \]' "$OUT_DIR/$n.log" | tr '\n' ' ')" >> "$SUMMARY"
  done
  echo '```' >> "$SUMMARY"
  { echo; echo "## GPU test errors (CUDA vs CPU) and failures"; echo '```'; cat "$OUT_DIR"/test_*_gpu.log 2>/dev/null | grep -E "^\[err\]|SKIPPED|FAILED|Failure|Expected|Which is|error" | head -300; echo '```'; } >> "$SUMMARY"
fi

# ---- build ----------------------------------------------------------------------------------------
if [ -z "${CTDET_PREBUILT:-}" ]; then
BUILD=build-device
say "[$(elapsed)] configure + build for sm_$ARCH in $BUILD"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCTDET_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
  ${CUDNN_ROOT:+-DCUDNN_INCLUDE_DIR=$CUDNN_ROOT/include -DCUDNN_LIBRARY=$(ls "$CUDNN_ROOT"/lib/libcudnn.so* | head -1)} >>"$LOG" 2>&1
if ! timeout 300 cmake --build "$BUILD" -j"$(nproc)" >>"$LOG" 2>&1; then
  say "BUILD FAILED (see device_check.log)"; echo "## Build: FAILED" >> "$SUMMARY"; tail -40 "$LOG" >> "$SUMMARY"; exit 1
fi
echo "## Build: ok ($(elapsed))" >> "$SUMMARY"

# ---- tests ----------------------------------------------------------------------------------------
say "[$(elapsed)] ctest (all labels)"
( cd "$BUILD" && timeout 180 ctest --output-on-failure -j4 ) > "$OUT_DIR/ctest.log" 2>&1
CT_RC=$?
{ echo; echo "## Tests (rc $CT_RC)"; echo '```'; grep -E "tests passed|tests failed|Failed|\*\*\*|Not Run" "$OUT_DIR/ctest.log" | head -40; echo '```'; } >> "$SUMMARY"
# Every printed error line from the GPU tests goes into the summary (CUDA vs CPU max errors).
for t in "$BUILD"/test_*_gpu; do
  [ -x "$t" ] || continue
  timeout 120 "$t" > "$OUT_DIR/$(basename "$t").log" 2>&1
done
{ echo; echo "## GPU test errors (CUDA vs CPU)"; echo '```'; cat "$OUT_DIR"/test_*_gpu.log 2>/dev/null | grep -E "^\[err\]|SKIPPED|FAILED" | head -200; echo '```'; } >> "$SUMMARY"
fi  # not prebuilt

# ---- compute-sanitizer ------------------------------------------------------------------------------
if command -v compute-sanitizer >/dev/null; then
  say "[$(elapsed)] compute-sanitizer memcheck over GPU tests"
  echo >> "$SUMMARY"; echo "## compute-sanitizer memcheck" >> "$SUMMARY"
  for t in "$BUILD"/test_*_gpu; do
    [ -x "$t" ] || continue
    n=$(basename "$t")
    # SANITIZER_ONLY="test_a_gpu test_b_gpu": limit the (slow) memcheck pass to these executables.
    if [ -n "${SANITIZER_ONLY:-}" ] && [[ " $SANITIZER_ONLY " != *" $n "* ]]; then continue; fi
    timeout ${SANITIZER_TIMEOUT:-120} compute-sanitizer --tool memcheck --error-exitcode 9 "$t" > "$OUT_DIR/sanitizer_$n.log" 2>&1
    rc=$?
    echo "- $n: rc $rc, $(grep -c 'Invalid\|ERROR SUMMARY: [1-9]' "$OUT_DIR/sanitizer_$n.log") findings" >> "$SUMMARY"
  done
else
  skipped+=("compute-sanitizer: not on PATH")
fi

# ---- benchmarks --------------------------------------------------------------------------------------
echo >> "$SUMMARY"; echo "## Benchmarks" >> "$SUMMARY"
ran_bench=0
for b in "$BUILD"/bench_*; do
  [ -x "$b" ] || continue
  say "[$(elapsed)] $(basename "$b")"
  extra=""
  # bench_model: one more run per case with per-node CUDA-event timing (after the timed runs; tables on stderr).
  [ "$(basename "$b")" = bench_model ] && extra="--profile"
  timeout ${BENCH_TIMEOUT:-120} "$b" --device cuda ${BENCH_ARGS:-} $extra > "$OUT_DIR/$(basename "$b").csv" 2>"$OUT_DIR/$(basename "$b").err"
  echo "- $(basename "$b"): rc $?, $(wc -l < "$OUT_DIR/$(basename "$b").csv") lines (file $(basename "$b").csv)" >> "$SUMMARY"
  ran_bench=1
done
# Where the GPU time goes: the per-node tables of the batch-1 600x600 cases (all cases are in bench_model.err).
if [ -s "$OUT_DIR/bench_model.err" ]; then
  { echo; echo "## Per-node GPU time, batch 1, 600x600 (bench_model --profile; CUDA events)"; echo '```'
    awk '/^== /{keep = ($0 ~ / batch 1 600x600$/)} keep' "$OUT_DIR/bench_model.err" | head -400
    echo '```'; } >> "$SUMMARY"
fi
[ $ran_bench = 1 ] || skipped+=("ctdet benchmarks: no bench_* executables built yet")
# The whole detectors once more with cuDNN algorithms chosen by measured time (cudnnFind) instead of heuristics.
if [ -x "$BUILD/bench_model" ]; then
  say "[$(elapsed)] bench_model --conv-algos timed"
  timeout ${BENCH_TIMEOUT:-120} "$BUILD/bench_model" --device cuda --conv-algos timed ${BENCH_ARGS:-} \
    > "$OUT_DIR/bench_model_timed.csv" 2>"$OUT_DIR/bench_model_timed.err"
  echo "- bench_model --conv-algos timed: rc $?, $(wc -l < "$OUT_DIR/bench_model_timed.csv") lines (file bench_model_timed.csv)" >> "$SUMMARY"
fi
# Training with the gradients in one store block (the grad_accumulation > 1 layout) instead of the arena, ResNet-101
# batch 1 600x600 only: what planning them in the arena changes on the device (time, memory).
if [ -x "$BUILD/bench_model" ]; then
  say "[$(elapsed)] bench_model --store-grads (ResNet-101 training)"
  timeout 60 "$BUILD/bench_model" --device cuda --store-grads --quick --filter "resnet101 train" \
    > "$OUT_DIR/bench_model_store_grads.csv" 2>"$OUT_DIR/bench_model_store_grads.err"
  { echo; echo "## ResNet-101 training, gradients in the store block (bench_model --store-grads; compare bench_model.csv)"
    echo '```'; cat "$OUT_DIR/bench_model_store_grads.csv"; echo '```'; } >> "$SUMMARY"
fi
# Training with the backbone's first stage recomputed in backward (train.recompute_backbone): every training case,
# compared with the peer below like the default run (time and memory).
if [ -x "$BUILD/bench_model" ]; then
  say "[$(elapsed)] bench_model --recompute-backbone (training cases)"
  timeout ${BENCH_TIMEOUT:-120} "$BUILD/bench_model" --device cuda --recompute-backbone --filter " train" ${BENCH_ARGS:-} \
    > "$OUT_DIR/bench_model_recompute.csv" 2>"$OUT_DIR/bench_model_recompute.err"
  echo "- bench_model --recompute-backbone: rc $?, $(wc -l < "$OUT_DIR/bench_model_recompute.csv") lines (file bench_model_recompute.csv)" >> "$SUMMARY"
fi
# `ctdet train` end to end on the device: the default memory budget, then one that makes the planner recompute.
if [ -x "$BUILD/ctdet" ]; then
  say "[$(elapsed)] ctdet train on the device (bench/device_train_check.sh)"
  { echo; echo "## ctdet train on the device (bench/device_train_check.sh: default budget, then 800 MiB)"; echo '```'
    timeout 360 bash bench/device_train_check.sh "$BUILD/ctdet" "$OUT_DIR" 2>&1; echo '```'; } >> "$SUMMARY"
fi
if ls bench/peers/*.py >/dev/null 2>&1; then
  if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    for p in bench/peers/*.py; do
      say "[$(elapsed)] peer $(basename "$p")"
      timeout ${BENCH_TIMEOUT:-150} python3 "$p" --device cuda ${BENCH_ARGS:-} > "$OUT_DIR/peer_$(basename "$p" .py).csv" 2>>"$LOG"
      echo "- peer $(basename "$p"): rc $?" >> "$SUMMARY"
    done
    for m in bench_model bench_model_timed bench_model_recompute; do
      if [ -s "$OUT_DIR/$m.csv" ] && [ -s "$OUT_DIR/peer_torch_frcnn.csv" ]; then
        { echo; echo "## Whole detectors: ctdet ($m) vs PyTorch (bench/compare_models.py)"; echo
          python3 bench/compare_models.py "$OUT_DIR/$m.csv" "$OUT_DIR/peer_torch_frcnn.csv" 2>&1; } >> "$SUMMARY"
      fi
    done
  else
    skipped+=("PyTorch peer: torch with CUDA not importable")
  fi
else
  skipped+=("PyTorch peer: bench/peers/ has no scripts yet")
fi

{
  echo
  echo "## Skipped"
  if [ ${#skipped[@]} -eq 0 ]; then echo "- nothing"; fi
  for s in "${skipped[@]}"; do echo "- $s"; done
  echo
  echo "total time: $(elapsed)"
} >> "$SUMMARY"
cat "$SUMMARY"
exit $CT_RC
