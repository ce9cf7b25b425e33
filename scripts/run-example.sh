#!/usr/bin/env bash
# Builds and runs the quickstart example (examples/quickstart).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMMALIGN_BUILD_TESTS=OFF -DMMALIGN_BUILD_BENCHMARKS=OFF
cmake --build build --target quickstart
./build/examples/quickstart
