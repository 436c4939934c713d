#!/usr/bin/env bash
# Configures, builds and runs the whole test suite. Usage: scripts/test.sh [extra cmake args]
# BUILD_DIR (default build) and CTEST_ARGS (e.g. "-L cpu") may be set in the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
# Cache hits across clones (CI builds a fresh clone in another folder).
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$BUILD_DIR"
cd "$BUILD_DIR"
ctest --output-on-failure ${CTEST_ARGS:-}
