#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz/ with clang 14 (ASan + UBSan) in a separate build
# directory and runs them (ctest -L fuzz), MMALIGN_FUZZ_SECONDS (default 60) each.
# Usage: scripts/fuzz.sh [build-dir]   (default: build-fuzz). Installs clang-14 and
# libclang-rt-14-dev with apt-get when missing (sudo when not root); the default build never needs them.
# Crash inputs are written next to the targets as <build>/tests/fuzz/<target>-crash-*.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
seconds=${MMALIGN_FUZZ_SECONDS:-60}
packages=(clang-14 libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -ne 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "fuzz: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMMALIGN_BUILD_EXAMPLES=OFF -DMMALIGN_BUILD_BENCHMARKS=OFF -DMMALIGN_FUZZ_SECONDS="$seconds"
if ! grep -q "^MMALIGN_HAVE_LIBFUZZER:INTERNAL=1" "$build/CMakeCache.txt"; then
  echo "fuzz: the compiler in $build cannot link -fsanitize=fuzzer (is it clang? remove $build to reconfigure)" >&2
  exit 1
fi
cmake --build "$build" --target mmalign_fuzz -j "$(nproc 2>/dev/null || echo 2)"
ctest --test-dir "$build" -L fuzz --output-on-failure -j "$(nproc 2>/dev/null || echo 2)"
