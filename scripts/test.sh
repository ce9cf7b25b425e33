#!/usr/bin/env bash
# Configures, builds every target (warnings are errors) and runs the default test suite.
# Usage: scripts/test.sh [build-dir]   (default: build). Extra CMake options: MMALIGN_CMAKE_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release ${MMALIGN_CMAKE_ARGS:-}
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" -j "$jobs" --output-on-failure -LE slow
