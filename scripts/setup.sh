#!/usr/bin/env bash
# Installs every system dependency of ctdet by Debian package name. Idempotent; quiet when all present.
# The CUDA toolkit (with cuDNN) is not a Debian package here: when nvcc is absent ctdet builds CPU-only.
set -euo pipefail
PKGS=(
  cmake ninja-build ccache g++ pkg-config
  libpng-dev libjpeg62-turbo-dev libopenblas-dev nlohmann-json3-dev
  libprotobuf-dev protobuf-compiler libgtest-dev libbenchmark-dev libdcmtk-dev
  clang libclang-rt-14-dev
  python3 python3-numpy python3-protobuf python3-torch python3-torchvision
  chromium fonts-dejavu-core  # scripts/render_report.sh, scripts/render_serve.sh: headless screenshots
  libcpp-httplib-dev          # ctdet serve (optional: built when found)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
