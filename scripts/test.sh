#!/usr/bin/env bash
# Configures, builds every target (warnings are errors) and runs the default test suite.
# Usage: scripts/test.sh [build-dir]   (default: build). Extra CMake options: MMALIGN_CMAKE_ARGS.
# Tests, examples and benchmarks are switched on explicitly, so a build folder configured earlier
# with other options (say by hand with MMALIGN_BUILD_TESTS=OFF) still gets its tests; ctest fails
# when it finds no test instead of passing an empty run.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DMMALIGN_BUILD_TESTS=ON -DMMALIGN_BUILD_EXAMPLES=ON -DMMALIGN_BUILD_BENCHMARKS=ON ${MMALIGN_CMAKE_ARGS:-}
cmake --build "$build" -j "$jobs"
# The summary ("N% tests passed, … out of M") is ctest's last output, after any failure's log.
ctest --test-dir "$build" -j "$jobs" --output-on-failure --no-tests=error -LE slow
