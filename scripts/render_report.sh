#!/usr/bin/env bash
# Screenshot of an HTML report (from `ctdet report`) to PNG with headless Chromium, to look at it without
# a browser: scripts/render_report.sh REPORT.html OUT.png [WIDTH [HEIGHT]]   (default 1280 x 2400).
# Needs Debian's `chromium` (scripts/setup.sh installs it). The report is self-contained, so nothing is
# fetched; the profile lives in a temporary folder that is removed afterwards.
set -euo pipefail
if (($# < 2)); then
  echo "usage: $0 REPORT.html OUT.png [WIDTH [HEIGHT]]" >&2
  exit 2
fi
report=$1
out=$2
width=${3:-1280}
height=${4:-2400}
[[ -f "$report" ]] || { echo "render_report: no such file: $report" >&2; exit 1; }
browser=""
for b in chromium chromium-browser google-chrome; do
  if command -v "$b" >/dev/null 2>&1; then browser=$b; break; fi
done
[[ -n "$browser" ]] || { echo "render_report: chromium not found (run scripts/setup.sh or apt-get install chromium)" >&2; exit 1; }
abs_report=$(realpath "$report")
abs_out=$(realpath -m "$out")
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
rm -f "$abs_out"
"$browser" --headless --disable-gpu --no-sandbox --hide-scrollbars --no-first-run --user-data-dir="$profile" \
  --screenshot="$abs_out" --window-size="${width},${height}" "file://${abs_report}" >/dev/null 2>&1 || true
[[ -s "$abs_out" ]] || { echo "render_report: $browser wrote no screenshot to $abs_out" >&2; exit 1; }
echo "render_report: wrote $abs_out (${width}x${height})"
