#!/usr/bin/env bash
# Full-size BLIP-2 (blip2-opt-2.7b layout, 3.74 B parameters, float32) on the CPU in mmalign and
# PyTorch eager, one after the other on this machine (both models do not fit in memory at once):
#   benchmarks/run_blip2.sh [threads=2] [iters=1]
# Builds bench_blip2 (Release, build-bench; MMALIGN_BENCH_BUILD=DIR builds elsewhere, BENCH_BLIP2=PATH
# takes a binary built before), makes a random-weight float32 checkpoint in 4 GB shards with
# model.safetensors.index.json (benchmarks/torch/blip2.py make: 15 GB; BLIP2_MODEL=DIR keeps it there
# and reuses it on the next run, else it goes to a temporary folder that is removed at the end), then:
#   1. STREAM triad bandwidth with `threads` threads (bench_blip2 --task stream, 3 × 1 GiB arrays);
#   2. mmalign, then PyTorch, each one process that loads the model once and runs every row: the
#      ViT-g + Q-Former features at batch 1 and 4, and a greedy caption of image 0 with the prompt
#      (32 soft tokens, </s>, "a photo of") of exactly 20 new tokens (and of 1, for the decoding rate);
#      each row 1 warm-up call, then `iters` timed calls (median);
#   3. the agreement check — Q-Former outputs within 1e-4, caption ids identical — printed before the
#      table and fatal when it fails.
# Prints the CPU (lscpu model and SIMD flags), the versions, the load average before and after, and a
# markdown table; the decoding rate is also given as a share of the bandwidth bound (bytes of weights
# one step reads ÷ STREAM bandwidth). Writes benchmarks/results/blip2.json. Needs torch,
# transformers, safetensors, numpy from PyPI; about 16 GB of free memory and 16 GB of disk.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}; iters=${2:-1}
export OMP_NUM_THREADS=$threads
source benchmarks/common/bench_binary.sh
bin=$(bench_binary bench_blip2 "${BENCH_BLIP2:-}")
py=benchmarks/torch/blip2.py
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
model=${BLIP2_MODEL:-$dir/model}
mkdir -p benchmarks/results
if [[ ! -f $model/model.safetensors.index.json || ! -f $model/inputs.safetensors ]]; then
  echo "making a random-weight float32 blip2-opt-2.7b checkpoint in $model" >&2
  python3 $py make --dir "$model" --dtype float32 --shard-mb 4000 >&2
fi
awk '{print $1}' /proc/loadavg > "$dir/load_start"

echo "STREAM triad, $threads threads" >&2
$bin --task stream --threads "$threads" > "$dir/stream.json"
cat "$dir/stream.json" >&2
for impl in mmalign pytorch; do
  echo "$impl: load, features b1 and b4, caption" >&2
  args=(--dir "$model" --task all --new-tokens 20 --iters "$iters" --threads "$threads" --out "$dir/$impl")
  case $impl in
    mmalign) $bin "${args[@]}" > "$dir/$impl.jsonl" ;;
    pytorch) python3 $py run "${args[@]}" 2> "$dir/pytorch.err" > "$dir/$impl.jsonl" || { tail -5 "$dir/pytorch.err" >&2; exit 1; } ;;
  esac
  cat "$dir/$impl.jsonl" >&2
done
awk '{print $1}' /proc/loadavg > "$dir/load_end"

python3 - "$dir" "$threads" "$iters" <<'PY'
import json, os, platform, re, subprocess, sys
import numpy as np
from safetensors.numpy import load_file
d, threads, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
runs = {i: [json.loads(l) for l in open(os.path.join(d, f"{i}.jsonl"))] for i in ("mmalign", "pytorch")}
stream = json.load(open(os.path.join(d, "stream.json")))
bw = stream["bandwidth_gbs"] * 1e9

print("agreement of mmalign and PyTorch (same weights and inputs):")
bad = False
for b in (1, 4):
    a = load_file(os.path.join(d, f"mmalign.features-b{b}.safetensors"))["qformer_output"]
    p = load_file(os.path.join(d, f"pytorch.features-b{b}.safetensors"))["qformer_output"]
    diff = float(np.abs(a - p).max()) if a.shape == p.shape else float("inf")
    bad |= not diff <= 1e-4
    print(f"  features b{b}: qformer_output {list(a.shape)} max |diff| {diff:.1e} (largest |value| {float(np.abs(p).max()):.2f})")
cap = {i: next(r for r in runs[i] if r["task"] == "caption") for i in runs}
same = cap["mmalign"]["ids"] == cap["pytorch"]["ids"]
bad |= not same
print(f"  caption: 20 new ids {'identical' if same else 'DIFFER'}: {cap['mmalign']['ids'][0]}")
if not same:
    print(f"           PyTorch: {cap['pytorch']['ids'][0]}")
if bad:
    print("mmalign and PyTorch disagree: the timings below are not comparable")

lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
field = lambda k: (re.search(rf"^{k}:\s*(.*)$", lscpu, re.M) or [None, "?"])[1].strip()
flags = field("Flags").split()
simd = [f for f in flags if re.match(r"(avx|fma|amx|f16c)", f)]
ncpu = field(r"CPU\(s\)")
import transformers
load = [open(os.path.join(d, n)).read().strip() for n in ("load_start", "load_end")]
print(f"\nBLIP-2 (blip2-opt-2.7b layout, float32) on the CPU: {threads} threads, {iters} timed call(s) per row after a "
      f"warm-up; load average at start/end {load[0]}/{load[1]}")
print(f"CPU: {field('Model name')} (family {field('CPU family')}, model {field('Model')}, stepping {field('Stepping')}), "
      f"{ncpu} CPUs; SIMD flags: {' '.join(simd)}")
print(f"torch {runs['pytorch'][0].get('torch', '?')}, transformers {transformers.__version__}, Python {platform.python_version()}")
print(f"STREAM triad ({threads} threads, 3 × {stream['array_mb']} MiB): {stream['bandwidth_gbs']:.1f} GB/s\n")
labels = {("features", 1): "ViT-g + Q-Former features, batch 1", ("features", 4): "ViT-g + Q-Former features, batch 4",
          ("caption", 1): "caption, greedy, 32 soft + 4 prompt tokens, 20 new tokens"}
print("| row | unit | mmalign | PyTorch | ×PyTorch | peak RSS MB mmalign / PyTorch |")
print("|---|---|---:|---:|---:|---:|")
rows = []
for m, p in zip(runs["mmalign"], runs["pytorch"]):
    key = (m["task"], m["batch"])
    rows.append({"row": labels[key], "mmalign": m, "pytorch": p, "ratio": m["per_s"] / p["per_s"]})
    print(f"| {labels[key]} | images/s | {m['per_s']:.4f} | {p['per_s']:.4f} | {m['per_s'] / p['per_s']:.2f} | "
          f"{m['peak_rss_mb']:.0f} / {p['peak_rss_mb']:.0f} |")
m, p = cap["mmalign"], cap["pytorch"]
wb = m["weight_bytes_per_token"]
bound = bw / wb
print(f"\ndecoding (caption row): {wb / 1e9:.2f} GB of float32 weights read per new token → bandwidth bound "
      f"{bound:.3f} tokens/s at {bw / 1e9:.1f} GB/s\n")
print("| decoding | mmalign | PyTorch | ×PyTorch |")
print("|---|---:|---:|---:|")
print(f"| new tokens/s over the whole call (image, prefill, 20 steps) | {m['new_tokens_per_s']:.3f} | {p['new_tokens_per_s']:.3f} | "
      f"{m['new_tokens_per_s'] / p['new_tokens_per_s']:.2f} |")
dm, dp = m["decode_tokens_per_s"], p["decode_tokens_per_s"]
print(f"| decode tokens/s (steps 2–20) | {dm:.3f} | {dp:.3f} | {dm / dp:.2f} |")
print(f"| decode speed as % of the bandwidth bound | {100 * dm / bound:.0f}% | {100 * dp / bound:.0f}% | — |")
print(f"| image + prefill + first token, s | {m['first_token_s']:.2f} | {p['first_token_s']:.2f} | "
      f"{p['first_token_s'] / m['first_token_s']:.2f} |")
print(f"\nload: mmalign {m['load_s']:.0f} s (read into memory), PyTorch {p['load_s']:.0f} s (mapped, read on first use)")
json.dump({"threads": threads, "iters": iters, "cpu": {"model": field("Model name"), "family": field("CPU family"),
           "model_number": field("Model"), "stepping": field("Stepping"), "flags": flags},
           "transformers": transformers.__version__, "load_average": load, "stream": stream,
           "weight_bytes_per_token": wb, "agree": not bad, "rows": rows},
          open("benchmarks/results/blip2.json", "w"), indent=1)
print("wrote benchmarks/results/blip2.json")
PY
