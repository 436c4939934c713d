#!/usr/bin/env bash
# Headless-Chromium check of `ctdet serve`: starts the server on a free loopback port with a folder of slices,
# opens the page with one slice chosen (/?slice=NAME, which the page detects on load), screenshots it, stops the
# server. The page is self-contained, so nothing outside loopback is fetched.
#   scripts/render_serve.sh CTDET_BIN CONFIG WEIGHTS SLICES_DIR SLICE_NAME OUT.png [THRESHOLD [WIDTH HEIGHT]]
# Exit status 0 when the screenshot was written and the server answered /health and /detect.
set -euo pipefail
if (($# < 6)); then
  echo "usage: $0 CTDET_BIN CONFIG WEIGHTS SLICES_DIR SLICE_NAME OUT.png [THRESHOLD [WIDTH HEIGHT]]" >&2
  exit 2
fi
bin=$1 config=$2 weights=$3 slices=$4 slice=$5 out=$6
thr=${7:-0.3} width=${8:-1280} height=${9:-900}
browser=""
for b in chromium chromium-browser google-chrome; do
  if command -v "$b" >/dev/null 2>&1; then browser=$b; break; fi
done
[[ -n "$browser" ]] || { echo "render_serve: chromium not found (scripts/setup.sh installs it)" >&2; exit 1; }
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
work=$(mktemp -d)
log="$work/serve.log"
"$bin" serve --config "$config" --weights "$weights" --slices "$slices" --port "$port" --threshold "$thr" \
  --device cpu >"$log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { echo "render_serve: server exited:" >&2; cat "$log" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/health" || { echo "render_serve: no /health answer" >&2; cat "$log" >&2; exit 1; }
echo
abs_out=$(realpath -m "$out")
rm -f "$abs_out"
"$browser" --headless --disable-gpu --no-sandbox --hide-scrollbars --no-first-run --user-data-dir="$work/profile" \
  --virtual-time-budget=10000 --screenshot="$abs_out" --window-size="${width},${height}" \
  "http://127.0.0.1:$port/?slice=${slice}&threshold=${thr}" >/dev/null 2>&1 || true
[[ -s "$abs_out" ]] || { echo "render_serve: $browser wrote no screenshot to $abs_out" >&2; cat "$log" >&2; exit 1; }
grep -q "POST /detect -> 200" "$log" || { echo "render_serve: the page made no successful POST /detect:" >&2; cat "$log" >&2; exit 1; }
echo "render_serve: wrote $abs_out (${width}x${height}); server log:"
cat "$log"
