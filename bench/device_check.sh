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

# ---- build ----------------------------------------------------------------------------------------
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

# ---- compute-sanitizer ------------------------------------------------------------------------------
if command -v compute-sanitizer >/dev/null; then
  say "[$(elapsed)] compute-sanitizer memcheck over GPU tests"
  echo >> "$SUMMARY"; echo "## compute-sanitizer memcheck" >> "$SUMMARY"
  for t in "$BUILD"/test_*_gpu; do
    [ -x "$t" ] || continue
    n=$(basename "$t")
    timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 "$t" > "$OUT_DIR/sanitizer_$n.log" 2>&1
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
  timeout 120 "$b" --device cuda > "$OUT_DIR/$(basename "$b").csv" 2>"$OUT_DIR/$(basename "$b").err"
  echo "- $(basename "$b"): rc $?, $(wc -l < "$OUT_DIR/$(basename "$b").csv") lines (file $(basename "$b").csv)" >> "$SUMMARY"
  ran_bench=1
done
[ $ran_bench = 1 ] || skipped+=("ctdet benchmarks: no bench_* executables built yet")
if ls bench/peers/*.py >/dev/null 2>&1; then
  if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    for p in bench/peers/*.py; do
      say "[$(elapsed)] peer $(basename "$p")"
      timeout 150 python3 "$p" --device cuda > "$OUT_DIR/peer_$(basename "$p" .py).csv" 2>>"$LOG"
      echo "- peer $(basename "$p"): rc $?" >> "$SUMMARY"
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
