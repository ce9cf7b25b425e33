#!/usr/bin/env bash
# BLIP base inference on the CPU in mmalign and PyTorch eager, interleaved on this machine:
#   benchmarks/run_blip.sh [pairs=3] [threads=2]
# Builds bench_blip (Release, build-bench; MMALIGN_BENCH_BUILD=DIR builds elsewhere, BENCH_BLIP=PATH
# takes a binary built before), makes
# random-weight full-size BLIP base folders with transformers (benchmarks/torch/blip.py make: a
# BlipForConditionalGeneration and a BlipForImageTextRetrieval with the Hub configuration, plus the
# inputs both sides read; BLIP_MODELS=DIR keeps them there and reuses them on the next run, else
# they go to a temporary folder), then per row runs mmalign and PyTorch in turn: round 0 (one
# timed call each) is the warm-up and the agreement check — vision outputs within 1e-4, caption
# ids identical, ITM logits within 1e-4 — printed before any timing and fatal when it fails; then
# `pairs` timed rounds. Every run is its own process: 1 warm-up call, then timed calls, the median
# call counts; peak RSS is each process's ru_maxrss (loading included).
# Prints the CPU (lscpu model and SIMD flags), the versions and a markdown table; writes
# benchmarks/results/blip.json. Needs torch, transformers, safetensors, numpy from PyPI.
# Other load on the machine skews both columns; the load average is printed at start and end.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-3}; threads=${2:-2}
export OMP_NUM_THREADS=$threads
source benchmarks/common/bench_binary.sh
bin=$(bench_binary bench_blip "${BENCH_BLIP:-}")
py=benchmarks/torch/blip.py
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
models=${BLIP_MODELS:-$dir/models}
mkdir -p benchmarks/results
awk '{print $1}' /proc/loadavg > "$dir/load_start"

if [[ ! -f $models/inputs.safetensors || ! -f $models/caption/model.safetensors || ! -f $models/itm/model.safetensors ]]; then
  echo "making random-weight BLIP base folders in $models" >&2
  python3 $py make --dir "$models" 2> /dev/null >&2
fi

# name task batch beams iters (round 0 runs one timed call)
rows=("vision-b1 vision 1 1 5"
      "vision-b8 vision 8 1 2"
      "caption-greedy caption 1 1 3"
      "caption-beam3 caption 1 3 2"
      "itm-1x16 itm 1 1 3")

# run IMPL NAME ROUND ITERS TASK BATCH BEAMS: one JSON line (or an error line) into runs.jsonl
run() {
  local impl=$1 name=$2 round=$3 iters=$4 task=$5 batch=$6 beams=$7 line
  local args=(--dir "$models" --task "$task" --batch "$batch" --beams "$beams" --new-tokens 20 --iters "$iters"
              --threads "$threads" --out "$dir/$name.$impl.$round.safetensors")
  case $impl in
    mmalign) line=$($bin "${args[@]}" 2> "$dir/err") || line="" ;;
    pytorch) line=$(python3 $py run "${args[@]}" 2> "$dir/err" | tail -1) || line="" ;;
  esac
  if [[ -z $line ]]; then
    line=$(python3 -c 'import json,sys; print(json.dumps({"impl": sys.argv[1], "error": open(sys.argv[2]).read().strip()[-400:]}))' \
      "$impl" "$dir/err")
  fi
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(name=sys.argv[2], round=int(sys.argv[3])); print(json.dumps(r))' \
    "$line" "$name" "$round" >> "$dir/runs.jsonl"
  tail -1 "$dir/runs.jsonl" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("  %s %s round %d: %s" % (r["name"],
    r["impl"], r["round"], "error " + r["error"][-200:] if "error" in r else "per_s %.4f median_s %.3f peak_rss_mb %.0f"
    % (r["per_s"], r["median_s"], r["peak_rss_mb"])))' >&2
}

# compare ROUND: prints the agreement of every row's outputs in that round; exits 1 on a mismatch
compare() {
  python3 - "$dir" "$1" <<'PY'
import json, os, sys
import numpy as np
from safetensors.numpy import load_file
d, rnd = sys.argv[1], int(sys.argv[2])
runs = [json.loads(l) for l in open(os.path.join(d, "runs.jsonl"))]
bad = []
for name in dict.fromkeys(r["name"] for r in runs):
    got = {r["impl"]: r for r in runs if r["name"] == name and r["round"] == rnd}
    if any("error" in got.get(i, {"error": "missing"}) for i in ("mmalign", "pytorch")):
        msg = "; ".join(f"{i}: {got.get(i, {}).get('error', 'missing')}" for i in ("mmalign", "pytorch"))
        print(f"  {name}: a run failed: {msg}")
        bad.append(name)
        continue
    if name.startswith("caption"):
        a, b = got["mmalign"]["ids"], got["pytorch"]["ids"]
        ok = a == b
        print(f"  {name}: generated ids {'identical' if ok else 'DIFFER'} ({len(a)} row(s) of {len(a[0])} ids)")
    else:
        key = "image_embeds" if name.startswith("vision") else "itm_logits"
        a = load_file(os.path.join(d, f"{name}.mmalign.{rnd}.safetensors"))[key]
        b = load_file(os.path.join(d, f"{name}.pytorch.{rnd}.safetensors"))[key]
        diff = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
        ok = diff <= 1e-4
        print(f"  {name}: {key} {list(a.shape)} max |diff| {diff:.1e} (largest |value| {float(np.abs(b).max()):.2f})"
              f"{'' if ok else ' > 1e-4'}")
    if not ok:
        bad.append(name)
sys.exit(1 if bad else 0)
PY
}

: > "$dir/runs.jsonl"
echo "round 0: warm-up and agreement check" >&2
for spec in "${rows[@]}"; do
  read -r name task batch beams iters <<< "$spec"
  for impl in mmalign pytorch; do run $impl "$name" 0 1 "$task" "$batch" "$beams"; done
done
echo "agreement of mmalign and PyTorch (round 0, same weights and inputs):" >&2
compare 0 > "$dir/check.txt" || { cat "$dir/check.txt" >&2; echo "mmalign and PyTorch disagree: no timing" >&2; exit 1; }
cat "$dir/check.txt" >&2

for round in $(seq 1 "$pairs"); do
  for spec in "${rows[@]}"; do
    read -r name task batch beams iters <<< "$spec"
    for impl in mmalign pytorch; do run $impl "$name" "$round" "$iters" "$task" "$batch" "$beams"; done
  done
done
echo "agreement in the timed rounds:" >&2
for round in $(seq 1 "$pairs"); do compare "$round" >&2 || echo "  (round $round disagrees)" >&2; done
awk '{print $1}' /proc/loadavg > "$dir/load_end"

python3 - "$dir" "$pairs" "$threads" <<'PY'
import json, os, platform, re, statistics, subprocess, sys
d, pairs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
runs = [json.loads(l) for l in open(os.path.join(d, "runs.jsonl"))]
impls = ("mmalign", "pytorch")
lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
field = lambda k: (re.search(rf"^{k}:\s*(.*)$", lscpu, re.M) or [None, "?"])[1].strip()
flags = field("Flags").split()
ncpu = field(r"CPU\(s\)")
simd = [f for f in flags if re.match(r"(avx|fma|amx|f16c)", f)]
torch_version = next((r.get("torch") for r in runs if r.get("torch")), "?")
try:
    import transformers
    tf_version = transformers.__version__
except ImportError:
    tf_version = "?"
labels = {"vision-b1": ("vision encoder, batch 1", "images/s"),
          "vision-b8": ("vision encoder, batch 8", "images/s"),
          "caption-greedy": ("caption, greedy, 20 new tokens, batch 1", "images/s"),
          "caption-beam3": ("caption, beam 3, 20 new tokens, batch 1", "images/s"),
          "itm-1x16": ("ITM, 1 image × 16 texts", "texts/s")}
rows = []
for name in dict.fromkeys(r["name"] for r in runs):
    row = {"row": name, "label": labels[name][0], "unit": labels[name][1]}
    for impl in impls:
        ok = [r for r in runs if r["name"] == name and r["impl"] == impl and r["round"] > 0 and "error" not in r]
        errs = [r["error"] for r in runs if r["name"] == name and r["impl"] == impl and "error" in r]
        row[impl] = {"per_s": statistics.median(r["per_s"] for r in ok) if ok else None,
                     "runs_per_s": [r["per_s"] for r in ok],
                     "peak_rss_mb": max(r["peak_rss_mb"] for r in ok) if ok else None}
        if ok and "new_tokens_per_s" in ok[0]:
            row[impl]["new_tokens_per_s"] = statistics.median(r["new_tokens_per_s"] for r in ok)
        if errs:
            row[impl]["error"] = errs[-1]
    m, p = row["mmalign"]["per_s"], row["pytorch"]["per_s"]
    row["ratio"] = m / p if m and p else None
    per_round = {(r["impl"], r["round"]): r["per_s"] for r in runs
                 if r["name"] == name and r["round"] > 0 and "error" not in r}
    row["round_ratios"] = [per_round[("mmalign", k)] / per_round[("pytorch", k)] for k in range(1, pairs + 1)
                           if ("mmalign", k) in per_round and ("pytorch", k) in per_round]
    rows.append(row)

f = lambda x, fmt="{:.2f}": "—" if x is None else fmt.format(x)
load = [open(os.path.join(d, n)).read().strip() for n in ("load_start", "load_end")]
print(f"\nBLIP base on the CPU: {threads} threads, median of {pairs} interleaved rounds after a warm-up/check round; "
      f"load average at start/end {load[0]}/{load[1]}")
print(f"CPU: {field('Model name')} (family {field('CPU family')}, model {field('Model')}, stepping {field('Stepping')}), "
      f"{ncpu} CPUs; SIMD flags: {' '.join(simd)}")
print(f"torch {torch_version}, transformers {tf_version}, Python {platform.python_version()}\n")
print("agreement of mmalign and PyTorch (round 0, checked before the timed rounds):")
print(open(os.path.join(d, "check.txt")).read().rstrip() + "\n")
print("| row | unit | mmalign | PyTorch | ×PyTorch | new tokens/s mmalign / PyTorch | peak RSS MB mmalign / PyTorch |")
print("|---|---|---:|---:|---:|---:|---:|")
for r in rows:
    m, p = r["mmalign"], r["pytorch"]
    err = lambda x: f"error: {x['error'].splitlines()[-1][:60]}" if "error" in x else None
    tok = f"{f(m.get('new_tokens_per_s'))} / {f(p.get('new_tokens_per_s'))}" if "new_tokens_per_s" in m else "—"
    print(f"| {r['label']} | {r['unit']} | {err(m) or f(m['per_s'], '{:.3f}')} | {err(p) or f(p['per_s'], '{:.3f}')} | "
          f"{f(r['ratio'])} | {tok} | {f(m['peak_rss_mb'], '{:.0f}')} / {f(p['peak_rss_mb'], '{:.0f}')} |")
print("\nper-round ×PyTorch: " + "; ".join(f"{r['row']} " + ", ".join(f"{x:.2f}" for x in r["round_ratios"]) for r in rows))
json.dump({"threads": threads, "pairs": pairs, "cpu": {"model": field("Model name"), "family": field("CPU family"),
           "model_number": field("Model"), "stepping": field("Stepping"), "cpus": ncpu, "flags": flags},
           "torch": torch_version, "transformers": tf_version, "load_average": load, "rows": rows, "runs": runs},
          open("benchmarks/results/blip.json", "w"), indent=1)
print("wrote benchmarks/results/blip.json")
PY
