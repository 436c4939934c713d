#!/usr/bin/env bash
# Packs what bench/device_check.sh needs in prebuilt mode into .devpkg/pkg.tar.xz (git-ignored via
# .git/info/exclude): the GPU test executables, bench_* and ctdet from a device build folder, stripped, plus the
# shared libraries they need that a CUDA-only device image lacks (everything ldd resolves outside glibc and
# the CUDA toolkit). Usage: scripts/pack_device.sh [BUILD_DIR=build-device]
# On the device: tar -xJf .devpkg/pkg.tar.xz -C /tmp/ctdet && CTDET_PREBUILT=/tmp/ctdet bench/device_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-device}
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin" "$STAGE/lib" .devpkg
grep -qx '/.devpkg/' .git/info/exclude 2>/dev/null || echo '/.devpkg/' >> .git/info/exclude
cp "$BUILD"/test_*_gpu "$BUILD"/bench_* "$BUILD"/ctdet "$STAGE/bin/" 2>/dev/null || true
strip "$STAGE"/bin/* || true
for b in "$STAGE"/bin/*; do ldd "$b"; done | awk '$3 ~ /^\// {print $3}' | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libgcc_s.so*|libstdc++.so*|libz.so*|liblzma.so*) ;;
    libcud*|libcublas*|libnv*) ;;  # the device's own CUDA toolkit and driver
    *) cp -L "$lib" "$STAGE/lib/" ;;
  esac
done
tar -C "$STAGE" -cf - bin lib | xz -T0 -6 > .devpkg/pkg.tar.xz
ls -la .devpkg/pkg.tar.xz
