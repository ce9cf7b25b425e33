#!/usr/bin/env bash
# BLIP-2 training steps in mmalign and in PyTorch, one after the other on this machine:
#   benchmarks/run_blip2_train.sh [threads=2] [steps=3] [batch=8]
# Builds bench_blip2_train (Release, build-bench; MMALIGN_BENCH_BUILD=DIR builds elsewhere,
# BENCH_BLIP2_TRAIN=PATH takes a binary built before), makes random-weight models and batches with
# transformers (benchmarks/torch/blip2_train.py make: a ViT-B/16-shaped frozen vision tower at 224 px,
# a BERT-base-shaped Q-Former with 32 queries, an OPT-125m-shaped frozen language model, `batch`
# images × 32 text tokens; about 2.3 GB; BLIP2_TRAIN_DATA=DIR keeps them there and reuses them on
# the next run with the same steps and batch, else they go to a temporary folder removed at the
# end), then for stage 1 (ITC + ITM + ITG over the Q-Former) and stage 2 (generative loss through
# the frozen OPT):
#   1. mmalign: one process loads the model and trains 1 + `steps` steps (bench_blip2_train);
#   2. PyTorch: the same (blip2_train.py run), which first compares its first step's losses with
#      mmalign's and stops (the script fails) when one differs by more than 1e-4 relative;
# each side with OMP_NUM_THREADS and its thread count set to `threads`; the first step is the
# warm-up, the next `steps` are timed. Prints the agreement (first-step losses and terms), the CPU
# (lscpu model and SIMD flags), the versions, the load average before and after, and a markdown
# table of steps/s and peak RSS (VmHWM, loading included) per side. Writes
# benchmarks/results/blip2_train.json. Needs torch, transformers, safetensors, numpy from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}; steps=${2:-3}; batch=${3:-8}
export OMP_NUM_THREADS=$threads
source benchmarks/common/bench_binary.sh
bin=$(bench_binary bench_blip2_train "${BENCH_BLIP2_TRAIN:-}")
py=benchmarks/torch/blip2_train.py
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
data=${BLIP2_TRAIN_DATA:-$dir/data}
stamp="steps $((steps + 1)) batch $batch"
mkdir -p benchmarks/results
if [[ ! -f $data/batches.safetensors || "$(cat "$data/made" 2> /dev/null)" != "$stamp" ]]; then
  echo "making random-weight stage-1 and stage-2 models and $((steps + 1)) batches of $batch in $data" >&2
  python3 $py make --dir "$data" --steps $((steps + 1)) --batch "$batch" >&2
  echo "$stamp" > "$data/made"
fi
awk '{print $1}' /proc/loadavg > "$dir/load_start"
for stage in 1 2; do
  echo "stage $stage: mmalign" >&2
  $bin --dir "$data" --stage $stage --threads "$threads" > "$dir/mmalign-$stage.json"
  cat "$dir/mmalign-$stage.json" >&2
  echo "stage $stage: PyTorch" >&2
  python3 $py run --dir "$data" --stage $stage --threads "$threads" --expect "$dir/mmalign-$stage.json" \
    > "$dir/pytorch-$stage.json" 2> "$dir/pytorch-$stage.err" || { tail -3 "$dir/pytorch-$stage.err" >&2; exit 1; }
  cat "$dir/pytorch-$stage.json" >&2
done
awk '{print $1}' /proc/loadavg > "$dir/load_end"

python3 - "$dir" "$threads" "$steps" <<'PY'
import json, os, platform, subprocess, sys
import transformers
sys.path.insert(0, "benchmarks/common")
from cpu_info import cpu_info, describe
d, threads, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
runs = {(i, s): json.load(open(os.path.join(d, f"{i}-{s}.json"))) for i in ("mmalign", "pytorch") for s in (1, 2)}

print("agreement of mmalign and PyTorch (same weights, same batches), step 1 (before any update):")
for s in (1, 2):
    m, p = runs["mmalign", s], runs["pytorch", s]
    names = ["loss"] + (["itc", "itm", "itg"] if s == 1 else [])
    first = lambda r: {"loss": r["losses"][0], **(r["terms"][0] if r["terms"] else {})}
    fm, fp = first(m), first(p)
    cells = ", ".join(f"{k} {fm[k]:.6f} / {fp[k]:.6f} (rel {abs(fm[k] - fp[k]) / abs(fp[k]):.1e})" for k in names)
    print(f"  stage {s}: {cells}")
    later = max(abs(a - b) / abs(b) for a, b in zip(m["losses"], p["losses"]))
    print(f"           every step's loss (after AdamW updates too): largest relative difference {later:.1e}")
    same = (m["trainable"], m["decayed"]) == (p["trainable"], p["decayed"])
    print(f"           trainable parameters {m['trainable']} / {p['trainable']}, weight-decayed {m['decayed']} / "
          f"{p['decayed']}{'' if same else '  DIFFER'}")

cpu = cpu_info()
load = [open(os.path.join(d, n)).read().strip() for n in ("load_start", "load_end")]
rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip() or "?"
print(f"\nBLIP-2 training steps on the CPU: {threads} threads, batch {runs['mmalign', 1]['batch']}, 1 warm-up step then "
      f"{steps} timed; load average at start/end {load[0]}/{load[1]}")
print(describe(cpu))
print(f"mmalign {rev}; torch {runs['pytorch', 1].get('torch', '?')}, transformers {transformers.__version__}, "
      f"Python {platform.python_version()}\n")
labels = {1: "stage 1: ITC + ITM + ITG, Q-Former 12 × 768 + frozen ViT-B/16",
          2: "stage 2: generative, Q-Former + projection, frozen ViT-B/16 and OPT-125m"}
print("| step | trainable params | mmalign steps/s | PyTorch steps/s | ×PyTorch | peak RSS MB mmalign / PyTorch |")
print("|---|---:|---:|---:|---:|---:|")
rows = []
for s in (1, 2):
    m, p = runs["mmalign", s], runs["pytorch", s]
    ratio = m["steps_per_s"] / p["steps_per_s"]
    rows.append({"stage": s, "row": labels[s], "mmalign": m, "pytorch": p, "ratio": ratio})
    print(f"| {labels[s]} | {m['trainable'] / 1e6:.1f} M | {m['steps_per_s']:.4f} | {p['steps_per_s']:.4f} | {ratio:.2f} | "
          f"{m['peak_rss_mb']:.0f} / {p['peak_rss_mb']:.0f} |")
json.dump({"threads": threads, "timed_steps": steps, "cpu": cpu,
           "mmalign": rev, "transformers": transformers.__version__, "load_average": load, "rows": rows},
          open("benchmarks/results/blip2_train.json", "w"), indent=1)
print("wrote benchmarks/results/blip2_train.json")
PY
