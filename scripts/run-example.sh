#!/usr/bin/env bash
# Builds the examples and runs the main one: CLIP trained from scratch on Fashion-MNIST, then
# evaluated zero-shot (examples/clip_fashion_mnist). Arguments go to the example, e.g. --quick.
# It builds in its own folder (build-example, or MMALIGN_EXAMPLE_BUILD), so it never changes the
# options of the test suite's folder (scripts/test.sh uses build).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${MMALIGN_EXAMPLE_BUILD:-build-example}
[[ $build = /* ]] || build=./$build
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DMMALIGN_BUILD_TESTS=OFF -DMMALIGN_BUILD_EXAMPLES=ON -DMMALIGN_BUILD_BENCHMARKS=OFF
cmake --build "$build" --target clip_fashion_mnist quickstart
"$build/examples/clip_fashion_mnist" --out "$build/clip_fashion_mnist" "$@"
