#!/usr/bin/env bash
# CLIP inference on the CPU in mmalign, PyTorch and ONNX Runtime, interleaved on this machine:
#   benchmarks/run_cpu.sh [pairs=5] [threads=2]
# Builds bench_cpu, bench_gemm and bench_train_clip (Release, build-bench), measures the machine's
# sgemm peak (the best of bench_gemm --sizes 2048 and cpu_clip.py peak), makes random-weight HF CLIP
# folders (ViT-B/32, ViT-L/14) that every implementation loads, then per row runs one warm-up
# round and `pairs` rounds of mmalign, PyTorch, ONNX Runtime in turn (each run: 1 warm-up call,
# then timed calls; the median call counts). Every run writes its features; each peer's are
# compared with mmalign's of the same round (max |diff| > 1e-4 is flagged). The tiny-CLIP
# training step row runs bench_train_clip and benchmarks/torch/train_clip.py (PyTorch only).
# Prints a markdown table and writes benchmarks/results/cpu.json. Needs torch, transformers,
# safetensors from PyPI; cpu_clip.py pip-installs onnx, onnxscript, onnxruntime when missing.
# Other load on the machine skews every column; a warning is printed when cores are busy.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-5}; threads=${2:-2}
export OMP_NUM_THREADS=$threads
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DMMALIGN_BUILD_TESTS=OFF > /dev/null
cmake --build build-bench --target bench_cpu bench_train_clip > /dev/null
cmake --build build-bench --target bench_gemm > /dev/null 2>&1 || true  # absent without OpenBLAS
bin=build-bench/benchmarks
py=benchmarks/torch/cpu_clip.py
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p benchmarks/results

# The machine's sgemm peak: the best single-precision gemm any library here reaches at n = 2048
# with these threads — bench_gemm's routes (mmalign's engines, cblas_sgemm) and torch.matmul and
# an ONNX Runtime MatMul (cpu_clip.py peak).
peak=null; peak_by=null
{
  if [[ -x $bin/bench_gemm ]]; then
    echo "measuring sgemm peak (bench_gemm --sizes 2048 --threads $threads)" >&2
    $bin/bench_gemm --sizes 2048 --threads "$threads" | tee "$dir/gemm.txt" >&2 || true
  fi
  python3 $py peak --threads "$threads" > "$dir/peak.json" 2> /dev/null || echo '{}' > "$dir/peak.json"
  cat "$dir/peak.json" >&2
  read -r peak peak_by < <(python3 - "$dir/gemm.txt" "$dir/peak.json" <<'PY'
import json, os, sys
best = {}
if os.path.exists(sys.argv[1]):
    lines = [l for l in open(sys.argv[1]) if l.startswith("|")]
    head = [c.strip() for c in lines[0].strip().strip("|").split("|")]
    for l in lines[2:]:
        cells = [c.strip() for c in l.strip().strip("|").split("|")]
        if cells[0] == "2048":
            for name, v in zip(head, cells):
                if name.endswith("GFLOP/s"):
                    best[name.replace(" GFLOP/s", "")] = float(v)
for k, v in json.load(open(sys.argv[2])).items():
    best[{"pytorch": "torch.matmul", "onnxruntime": "ONNX Runtime MatMul"}[k]] = v
if best:
    k = max(best, key=best.get)
    print(f"{best[k]:.1f} {k.replace(' ', '_')}")
else:
    print("null null")
PY
)
}
awk '{print $1}' /proc/loadavg > "$dir/load_start"

echo "making random-weight models in $dir" >&2
python3 $py make --dir "$dir/b32" --layout vit-base-patch32 2> /dev/null
python3 $py make --dir "$dir/l14" --layout vit-large-patch14 2> /dev/null

# name model row batch iters
rows=("vit-b32-image-b1 b32 image 1 8"
      "vit-b32-image-b16 b32 image 16 3"
      "vit-b32-text-b16x77 b32 text 16 3"
      "vit-l14-image-b1 l14 image 1 2")

# run IMPL NAME ROUND ITERS MODEL ROW BATCH: one JSON line (or an error line) into NAME.jsonl
run() {
  local impl=$1 name=$2 round=$3 iters=$4 model=$5 row=$6 batch=$7 out line
  out="$dir/$name.$impl.$round.safetensors"
  local args=(--row "$row" --batch "$batch" --iters "$iters" --threads "$threads" --out-embeds "$out")
  case $impl in
    mmalign) line=$($bin/bench_cpu --model "$dir/$model" "${args[@]}" 2> "$dir/err") || line="" ;;
    pytorch) line=$(python3 $py torch --dir "$dir/$model" "${args[@]}" 2> "$dir/err") || line="" ;;
    onnxruntime) line=$(python3 $py onnx --dir "$dir/$model" "${args[@]}" 2> "$dir/err") || line="" ;;
  esac
  if [[ -z $line ]]; then
    line=$(python3 -c 'import json,sys; print(json.dumps({"impl": sys.argv[1], "error": open(sys.argv[2]).read().strip()[-400:]}))' \
      "$impl" "$dir/err")
  fi
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(name=sys.argv[2], round=int(sys.argv[3])); print(json.dumps(r))' \
    "$line" "$name" "$round" >> "$dir/runs.jsonl"
  echo "  $name $impl round $round: $(tail -1 "$dir/runs.jsonl" | cut -c1-160)" >&2
}

: > "$dir/runs.jsonl"
for spec in "${rows[@]}"; do
  read -r name model row batch iters <<< "$spec"
  echo "$name: exporting ONNX" >&2
  python3 $py export --dir "$dir/$model" --row "$row" --batch "$batch" > /dev/null 2>&1 || true
  for round in $(seq 0 "$pairs"); do  # round 0 is the warm-up (1 timed call, not reported)
    n=$iters; [[ $round == 0 ]] && n=1
    for impl in mmalign pytorch onnxruntime; do run $impl "$name" "$round" "$n" "$model" "$row" "$batch"; done
  done
done

echo "training step: bench_train_clip and benchmarks/torch/train_clip.py" >&2
$bin/bench_train_clip prepare --dir "$dir/train" --steps 30 > /dev/null
for round in $(seq 0 "$pairs"); do
  for impl in mmalign pytorch; do
    if [[ $impl == mmalign ]]; then cmd=($bin/bench_train_clip run --dir "$dir/train" --threads "$threads")
    else cmd=(python3 benchmarks/torch/train_clip.py --dir "$dir/train" --threads "$threads"); fi
    line=$("${cmd[@]}" 2> "$dir/err" | tail -1) || line=""
    [[ -n $line ]] || line=$(python3 -c 'import json,sys; print(json.dumps({"impl": sys.argv[1], "error": open(sys.argv[2]).read()[-400:]}))' "$impl" "$dir/err")
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(name="tiny-clip-train-step-b256", round=int(sys.argv[2])); print(json.dumps(r))' \
      "$line" "$round" >> "$dir/runs.jsonl"
    echo "  training step $impl round $round: $(tail -1 "$dir/runs.jsonl" | cut -c1-120)" >&2
  done
done
awk '{print $1}' /proc/loadavg > "$dir/load_end"

python3 - "$dir" "$pairs" "$threads" "$peak" "$peak_by" <<'PY'
import json, os, statistics, sys
import numpy as np
from safetensors.numpy import load_file
d, pairs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
peak = None if sys.argv[4] == "null" else float(sys.argv[4])
peak_by = sys.argv[5].replace("_", " ")
runs = [json.loads(l) for l in open(os.path.join(d, "runs.jsonl"))]
impls = ("mmalign", "pytorch", "onnxruntime")
names = list(dict.fromkeys(r["name"] for r in runs))
rows = []
for name in names:
    train = name.startswith("tiny-clip-train")
    key = "steps_per_s" if train else "per_s"
    row = {"row": name, "unit": "steps/s" if train else ("images/s" if "image" in name else "texts/s")}
    for impl in impls:
        rs = [r for r in runs if r["name"] == name and r["impl"] == impl and r["round"] > 0]
        ok = [r for r in rs if "error" not in r]
        errs = [r["error"] for r in rs if "error" in r]
        if train and impl == "onnxruntime":
            row[impl] = {"note": "no training row for ONNX Runtime"}
            continue
        row[impl] = {"per_s": statistics.median(r[key] for r in ok) if ok else None,
                     "runs_per_s": [r[key] for r in ok],
                     "peak_rss_mb": max(r["peak_rss_mb"] for r in ok) if ok else None}
        if errs:
            row[impl]["error"] = errs[-1]
        if impl == "mmalign" and ok and "gflop_per_call" in ok[0]:
            med_t = statistics.median(r["median_s"] for r in ok)
            row["gflop_per_call"] = ok[0]["gflop_per_call"]
            row[impl]["gflops"] = ok[0]["gflop_per_call"] / med_t
            row[impl]["pct_of_sgemm_peak"] = 100 * row[impl]["gflops"] / peak if peak else None
    # correctness: each peer's features vs mmalign's from the same round
    if train:
        last = {i: [r for r in runs if r["name"] == name and r["impl"] == i and "losses" in r] for i in impls[:2]}
        if last["mmalign"] and last["pytorch"]:
            a, b = last["mmalign"][-1]["losses"], last["pytorch"][-1]["losses"]
            row["max_abs_diff"] = {"pytorch": max(abs(x - y) for x, y in zip(a, b)), "what": "training losses over all steps"}
    else:
        diffs = {}
        for impl in impls[1:]:
            worst = None
            for rnd in range(1, pairs + 1):
                fm = os.path.join(d, f"{name}.mmalign.{rnd}.safetensors")
                fp = os.path.join(d, f"{name}.{impl}.{rnd}.safetensors")
                if os.path.exists(fm) and os.path.exists(fp):
                    m, p = load_file(fm)["features"], load_file(fp)["features"]
                    diff = float(np.abs(m - p).max()) if m.shape == p.shape else float("inf")
                    worst = diff if worst is None else max(worst, diff)
            diffs[impl] = worst
        diffs["max_abs_feature"] = float(np.abs(load_file(fm)["features"]).max()) if os.path.exists(fm) else None
        row["max_abs_diff"] = diffs
    row["flag"] = any(v is not None and v > 1e-4 for k, v in row.get("max_abs_diff", {}).items()
                      if k in impls)
    rows.append(row)

def f(x, fmt="{:.2f}"):
    return "—" if x is None else fmt.format(x)
def err(row, impl):
    e = row[impl].get("error")
    return f"error: {e.splitlines()[-1][:60]}" if e else None
load = [open(os.path.join(d, n)).read().strip() for n in ("load_start", "load_end")]
print(f"\nCLIP on the CPU: {threads} threads, median of {pairs} interleaved runs after a warm-up round; "
      f"sgemm peak {f(peak, '{:.1f}')} GFLOP/s (n=2048, best of mmalign, cblas_sgemm, torch.matmul, ONNX Runtime: {peak_by}); load average at start/end {load[0]}/{load[1]}\n")
print("| row | mmalign/s | PyTorch/s | ONNX RT/s | ×PyTorch | ×ONNX RT | mmalign GFLOP/s | % sgemm peak "
      "| RSS MB mmalign / PyTorch / ONNX RT | max abs diff vs PyTorch / ONNX RT |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    m, p, o = (r[i].get("per_s") for i in impls)
    ratio = lambda a, b: f"{a / b:.2f}" if a and b else "—"
    diffs = r.get("max_abs_diff", {})
    dtxt = " / ".join(f(diffs.get(i), "{:.1e}") for i in impls[1:] if i in diffs) or "—"
    if "what" in diffs:
        dtxt += " (losses)"
    if r["flag"]:
        dtxt += " **> 1e-4**"
    print(f"| {r['row']} ({r['unit']}) | {f(m)} | {err(r, 'pytorch') or f(p)} | "
          f"{err(r, 'onnxruntime') or r['onnxruntime'].get('note') and 'n/a' or f(o)} | {ratio(m, p)} | {ratio(m, o)} | "
          f"{f(r['mmalign'].get('gflops'), '{:.1f}')} | {f(r['mmalign'].get('pct_of_sgemm_peak'), '{:.0f}%')} | "
          f"{' / '.join(f(r[i].get('peak_rss_mb'), '{:.0f}') if i in r and 'peak_rss_mb' in r[i] else 'n/a' for i in impls)} | {dtxt} |")
flagged = [r["row"] for r in rows if r["flag"]]
print(f"\nfeatures differ by more than 1e-4 in: {', '.join(flagged)}" if flagged else
      "\nall peers' outputs agree with mmalign's within 1e-4")
json.dump({"threads": threads, "pairs": pairs, "sgemm_peak_gflops": peak, "sgemm_peak_by": peak_by, "load_average": load, "rows": rows,
           "runs": runs}, open("benchmarks/results/cpu.json", "w"), indent=1)
print("wrote benchmarks/results/cpu.json")
PY
