# Sourced by the benchmarks/run_*.sh scripts (from the repository root).
# bench_binary TARGET [PREBUILT]: prints PREBUILT when it is set (a binary built before from the same
# sources), else builds benchmark TARGET in Release in $MMALIGN_BENCH_BUILD (default build-bench)
# and prints its path.
bench_binary() {
  if [[ -n ${2:-} ]]; then
    echo "$2"
    return
  fi
  local build=${MMALIGN_BENCH_BUILD:-build-bench}
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMMALIGN_BUILD_TESTS=OFF > /dev/null || return 1
  cmake --build "$build" --target "$1" > /dev/null || return 1
  echo "$build/benchmarks/$1"
}
