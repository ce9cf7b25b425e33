#!/usr/bin/env bash
# Builds the default test suite (tests and examples, CPU backend) with AddressSanitizer and
# UndefinedBehaviorSanitizer in its own folder and runs it: any finding fails the run.
# Usage: scripts/test-sanitized.sh [build-dir]   (default: build-sanitized).
# -O1 keeps the build and the run short; the packaging tests (label consumer) build other
# projects and stay with scripts/test.sh; tests labelled slow stay out as there.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-sanitized}
jobs=$(nproc 2>/dev/null || echo 2)
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g0" \
      -DCMAKE_CXX_FLAGS="$sanitize" -DCMAKE_EXE_LINKER_FLAGS="$sanitize" \
      -DMMALIGN_ENABLE_CUDA=OFF -DMMALIGN_BUILD_TESTS=ON -DMMALIGN_BUILD_EXAMPLES=ON -DMMALIGN_BUILD_BENCHMARKS=OFF
cmake --build "$build" -j "$jobs"
# Deadlines of the hostile-input harness scale with the sanitizers' slowdown.
export MMALIGN_HOSTILE_TIME_SCALE=10
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir "$build" -j "$jobs" --output-on-failure --no-tests=error -LE "slow|consumer"
