#!/usr/bin/env bash
# The CLIP training step in mmalign and in PyTorch, interleaved on this machine:
#   benchmarks/run_train_clip.sh [pairs=3] [steps=30] [threads=2]
# Builds bench_train_clip (Release), prepares one set of initial weights and batches, then runs
# mmalign and PyTorch alternately `pairs` times and prints steps/s, the ratio, peak RSS and the
# final losses (which must agree: same weights, same batches). Needs torch and transformers from
# PyPI for the PyTorch side; writes benchmarks/results/train_clip.json.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-3}; steps=${2:-30}; threads=${3:-2}
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DMMALIGN_BUILD_TESTS=OFF > /dev/null
cmake --build build-bench --target bench_train_clip > /dev/null
dir=$(mktemp -d)
./build-bench/benchmarks/bench_train_clip prepare --dir "$dir" --steps "$steps"
export OMP_NUM_THREADS=$threads
mkdir -p benchmarks/results
: > "$dir/runs.jsonl"
for i in $(seq "$pairs"); do
  ./build-bench/benchmarks/bench_train_clip run --dir "$dir" --threads "$threads" >> "$dir/runs.jsonl"
  python3 benchmarks/torch/train_clip.py --dir "$dir" --threads "$threads" >> "$dir/runs.jsonl"
done
python3 - "$dir/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
by = {k: [r for r in runs if r["impl"] == k] for k in ("mmalign", "pytorch")}
med = {k: statistics.median(r["steps_per_s"] for r in v) for k, v in by.items()}
rss = {k: max(r["peak_rss_mb"] for r in v) for k, v in by.items()}
last = {k: v[-1]["losses"] for k, v in by.items()}
print(f"| impl | steps/s (median of {len(by['mmalign'])}) | peak RSS MB | loss step 1 | final loss |")
print("|---|---:|---:|---:|---:|")
for k in ("mmalign", "pytorch"):
    print(f"| {k} | {med[k]:.3f} | {rss[k]:.0f} | {last[k][0]:.5f} | {last[k][-1]:.5f} |")
print(f"ratio mmalign/pytorch steps/s: {med['mmalign'] / med['pytorch']:.2f}")
print(f"max |loss diff| over all steps: {max(abs(a - b) for a, b in zip(last['mmalign'], last['pytorch'])):.2e}")
json.dump({"runs": runs, "median_steps_per_s": med, "peak_rss_mb": rss}, open("benchmarks/results/train_clip.json", "w"), indent=1)
PY
rm -rf "$dir"
