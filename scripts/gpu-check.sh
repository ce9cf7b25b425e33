#!/usr/bin/env bash
# The GPU check of the CUDA backend, in one run on a machine with an NVIDIA GPU, nvcc, CMake and
# Ninja (PyTorch optional), from the repository root, with the header-only dependencies vendored
# in deps/ (scripts/vendor-deps.sh, run where the Debian packages are):
#   1. configure (Release, sm_90, CMAKE_PREFIX_PATH=deps) and build the CUDA tests and bench_gpu;
#      meanwhile, when transformers imports, make the random-weight HF CLIP folders ViT-B/32 and
#      ViT-L/14 (benchmarks/torch/cpu_clip.py make) that both sides of the encoder rows load
#   2. run the CUDA tests (they fail, not skip, when no device is visible), and the zero-shot
#      example in every precision where mmalign::image was built
#   4. bench_gpu (gemm vs cuBLAS; cuBLAS bf16 peak; the CLIP image encoders end to end from those
#      folders, fp32/TF32/bf16, plain and fused attention); then benchmarks/torch/gpu_clip.py (the
#      same folders in transformers' CLIPModel, eager/SDPA/torch.compile with a capped budget, and
#      the fp32 features compared with mmalign's); the CLIP training step
#      (bench_train_clip_gpu fp32/TF32/fused/bf16, and benchmarks/torch/train_clip.py --device
#      cuda); and compute-sanitizer memcheck over test_cuda_ops, the fused-attention module case
#      and the 16-bit op cases with what the budget has left (the measurements come first)
#   5. a summary table (last lines of the output)
# Logs go to $OUT when it is set (else to <build>/gpu-check), 8 files at most (what $OUT returns).
# Every step runs even when an earlier optional one failed; the exit status is 1 if the build, a test, the
# sanitizer or a benchmark check failed. Optional steps (torch.compile, the training step,
# memcheck) are cut short or skipped as the time budget (GPU_CHECK_BUDGET, 520 s) runs out, so the
# whole script stays under about 9.5 minutes on a 16-core H100/H200 machine: give the device call
# timeout_s 590.
# Usage: scripts/gpu-check.sh [build-dir]   (default build-gpu); CUDA_ARCH=90 by default.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
arch=${CUDA_ARCH:-90}
logs=${OUT:-$build/gpu-check}
mkdir -p "$logs"
jobs=$(nproc 2>/dev/null || echo 8)
t_start=$(date +%s)
budget=${GPU_CHECK_BUDGET:-520}  # seconds; optional steps start only while time is left

elapsed() { echo $(( $(date +%s) - t_start )); }
left() { echo $(( budget - $(elapsed) )); }
steps=()
record() { steps+=("$(printf '%-22s %-8s %5ss  %s' "$1" "$2" "$3" "${4:-}")"); }
overall=0

if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH=/usr/local/cuda/bin:$PATH; fi
echo "== gpu-check: $(date -u +%FT%TZ), $jobs cores, build dir $build, logs in $logs"
{
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  nvcc --version | tail -2
  cmake --version | head -1
  ninja --version
} 2>&1 | tee "$logs/build.log"

# ---- 1. configure and build ----------------------------------------------------------------
if [ ! -e deps/include/eigen3/unsupported/Eigen/SpecialFunctions ]; then  # absent or vendored by an older script
  if [ -d /usr/include/eigen3 ] && [ -d /usr/include/xtensor ]; then
    bash scripts/vendor-deps.sh deps >/dev/null
  else
    echo "gpu-check: deps/ is missing: run scripts/vendor-deps.sh where the Debian packages are and carry deps/" >&2
    exit 2
  fi
fi
xtensor_dir=$(dirname "$(find "$PWD/deps" -name xtensorConfig.cmake | head -1)")
# The CLIP folders are made on the CPU while nvcc builds (about 20 s for both on 16 cores).
clip_dir="$build/clip-models"
make_pid=""
if python3 -c 'import torch, transformers, safetensors' 2>/dev/null; then
  mkdir -p "$clip_dir"
  ( status=0
    for layout in vit-base-patch32 vit-large-patch14; do  # each on its own: one failing keeps the other
      [ -e "$clip_dir/$layout/inputs.safetensors" ] && continue
      python3 benchmarks/torch/cpu_clip.py make --dir "$clip_dir/$layout" --layout $layout || status=1
    done
    exit $status ) > "$build/make-clip.log" 2>&1 &
  make_pid=$!
fi
t=$(date +%s)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$PWD/deps" -Dxtensor_DIR="$xtensor_dir" \
  -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" \
  -DMMALIGN_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" -DMMALIGN_BUILD_BENCHMARKS=ON \
  >> "$logs/build.log" 2>&1
rc=$?
examples=()  # the CUDA examples this build has (clip_zero_shot_cuda needs mmalign::image)
if [ $rc -eq 0 ]; then
  for target in quickstart_cuda clip_zero_shot_cuda; do
    cmake --build "$build" --target help 2>/dev/null | grep -q "^$target:" && examples+=("$target")
  done
  cmake --build "$build" -j "$jobs" --target test_cuda_ops test_cuda_modules test_cuda_half test_cuda_blip test_cuda_qformer test_cuda_blip2 bench_gpu bench_train_clip \
    bench_train_clip_gpu "${examples[@]}" >> "$logs/build.log" 2>&1
  rc=$?
fi
record "configure + build" "$([ $rc -eq 0 ] && echo ok || echo FAILED)" $(( $(date +%s) - t )) "examples: ${examples[*]}"
if [ $rc -ne 0 ]; then
  [ -n "$make_pid" ] && kill "$make_pid" 2>/dev/null
  tail -40 "$logs/build.log"
  printf '%s\n' "${steps[@]}"
  exit 1
fi

# ---- 2. CUDA tests -------------------------------------------------------------------------
t=$(date +%s)
tests_summary=""
tests_rc=0
: > "$logs/tests.log"
for name in test_cuda_ops test_cuda_modules test_cuda_half test_cuda_blip test_cuda_qformer test_cuda_blip2; do
  MMALIGN_REQUIRE_CUDA=1 timeout 150 "$build/tests/cuda/$name" --duration=true > "$build/$name.log" 2>&1
  r=$?
  { echo "==== $name (exit $r)"; cat "$build/$name.log"; } >> "$logs/tests.log"  # one file: $OUT returns 8
  [ $r -ne 0 ] && tests_rc=1
  tests_summary+="$name: $(grep -E '^\[doctest\] test cases:' "$build/$name.log" | sed 's/\[doctest\] //') (exit $r); "
  [ $r -ne 0 ] && grep -E -B2 -A12 "ERROR|FATAL|error:" "$build/$name.log" | head -80
done
# docs/cuda.md's example (bf16 against the CPU), and the zero-shot example in every precision
# against the CPU where mmalign::image was built.
example_run() {  # label command...: appended to tests.log; a non-zero exit fails the tests step
  local label=$1 r; shift
  timeout 120 "$@" > "$build/example.log" 2>&1
  r=$?
  { echo "==== $label (exit $r)"; cat "$build/example.log"; } >> "$logs/tests.log"
  [ $r -ne 0 ] && tests_rc=1
  tests_summary+="$label: exit $r; "
}
for target in "${examples[@]}"; do
  case $target in
    quickstart_cuda) example_run quickstart_cuda "$build/examples/quickstart_cuda" ;;
    clip_zero_shot_cuda)
      for p in fp32 tf32 bf16 fp16; do
        example_run "zero-shot $p" "$build/examples/clip_zero_shot_cuda" "$build/examples/zero_shot_model" \
          tests/fixtures/images/cat_crop.png cat dog car cup --precision $p --fused-attention --compare-cpu
      done ;;
  esac
done
record "CUDA tests" "$([ $tests_rc -eq 0 ] && echo ok || echo FAILED)" $(( $(date +%s) - t )) "$tests_summary"
[ $tests_rc -ne 0 ] && overall=1

# ---- 4. benchmarks -------------------------------------------------------------------------
clip_args=()
if [ -n "$make_pid" ]; then
  wait "$make_pid" || { overall=1; tail -20 "$build/make-clip.log"; }
  made=()  # the --models keys whose folder exists; a failed one is reported and the other still runs
  [ -e "$clip_dir/vit-base-patch32/inputs.safetensors" ] && made+=(b32)
  [ -e "$clip_dir/vit-large-patch14/inputs.safetensors" ] && made+=(l14)
  if [ ${#made[@]} -gt 0 ]; then
    models=$(IFS=,; echo "${made[*]}")
    clip_args=(--clip-dir "$clip_dir" --models "$models")
    rm -f "$clip_dir"/*/features_mmalign.safetensors  # parity must compare this run's features
  fi
  record "make CLIP folders" "$([ ${#made[@]} -eq 2 ] && echo ok || echo FAILED)" 0 "made: ${made[*]} (during the build)"
else
  record "make CLIP folders" "skipped" 0 "no torch + transformers: no encoder rows"
fi
t=$(date +%s)
timeout 270 "$build/benchmarks/gpu/bench_gpu" "${clip_args[@]}" > "$logs/bench.log" 2>&1
r=$?
record "bench_gpu" "$([ $r -eq 0 ] && echo ok || echo FAILED)" $(( $(date +%s) - t )) "exit $r"
[ $r -ne 0 ] && { overall=1; tail -20 "$logs/bench.log"; }

# ---- 4b. PyTorch side of the encoder rows (torch.compile gets what the budget allows) -----------
t=$(date +%s)
: > "$logs/torch.log"
if [ ${#clip_args[@]} -eq 0 ]; then
  record "torch gpu_clip.py" "skipped" 0 "no CLIP folders"
elif python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  remaining=$(left)
  if [ "$remaining" -lt 90 ]; then
    record "torch gpu_clip.py" "skipped" 0 "time budget"
  else
    # The rows without torch.compile take about 100 s (both models, model loads included); leave
    # about 100 s for the training step and what remains for memcheck; compile gets the rest,
    # 120 s at most, counted from its first compilation.
    limit=$(( remaining - 100 ))
    [ $limit -gt 260 ] && limit=260
    [ $limit -lt 90 ] && limit=90
    compile_budget=$(( limit - 130 ))
    [ $compile_budget -lt 0 ] && compile_budget=0
    [ $compile_budget -gt 120 ] && compile_budget=120
    PYTHONUNBUFFERED=1 timeout $limit python3 benchmarks/torch/gpu_clip.py "${clip_args[@]}" \
      --compile-budget "$compile_budget" > "$logs/torch.log" 2>&1
    r=$?
    record "torch gpu_clip.py" "$([ $r -eq 0 ] && echo ok || echo "exit $r")" $(( $(date +%s) - t )) \
      "compile budget ${compile_budget}s"
    # mmalign's fp32 features must equal transformers' (the script exits 1 when they do not).
    if grep -q "^PARITY.*FAILED" "$logs/torch.log"; then overall=1; grep "^PARITY" "$logs/torch.log"; fi
  fi
else
  record "torch gpu_clip.py" "skipped" 0 "no torch with CUDA"
fi

# ---- 4c. CLIP training step: mmalign (CUDA) vs PyTorch (CUDA), same weights and batches ----------
# Each run must exit 0 and print its JSON line; a run's time limit is what the budget has left.
t=$(date +%s)
: > "$logs/train.jsonl"
if [ "$(left)" -lt 45 ]; then
  record "train step" "skipped" 0 "time budget"
else
  tdir="$build/train-clip"
  rm -rf "$tdir"
  train_ok=1
  train_run() {  # command...: one JSON line appended to train.jsonl, or train_ok=0
    local limit out r
    limit=$(left); [ "$limit" -gt 90 ] && limit=90
    if [ "$limit" -lt 10 ]; then echo "skipped (time budget): $*" >> "$logs/train.err"; return; fi
    out=$(timeout "$limit" "$@" 2>> "$logs/train.err"); r=$?
    if [ $r -eq 0 ] && [ "${out:0:1}" = "{" ]; then echo "$out" >> "$logs/train.jsonl"
    else echo "FAILED (exit $r): $*" >> "$logs/train.err"; train_ok=0; fi
  }
  if "$build/benchmarks/bench_train_clip" prepare --dir "$tdir" --steps 30 --synthetic > "$logs/train.err" 2>&1; then
    for args in "" "--tf32" "--fused-attention" "--bf16" "--bf16 --fused-attention"; do
      train_run "$build/benchmarks/gpu/bench_train_clip_gpu" --dir "$tdir" $args
    done
    if python3 -c 'import torch, transformers, safetensors, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
      for args in "" "--tf32" "--bf16"; do
        train_run python3 benchmarks/torch/train_clip.py --dir "$tdir" --device cuda $args
      done
    fi
    record "train step" "$([ $train_ok -eq 1 ] && echo ok || echo FAILED)" $(( $(date +%s) - t )) \
      "$(grep -c . "$logs/train.jsonl") runs"
    [ $train_ok -eq 1 ] || { overall=1; grep FAILED "$logs/train.err"; tail -20 "$logs/train.err"; }
  else
    record "train step" "FAILED" $(( $(date +%s) - t )) "prepare failed"
    overall=1
  fi
fi

# ---- 4d. compute-sanitizer memcheck, last: the measurements come first ------------------------
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
t=$(date +%s)
if [ -z "$sanitizer" ]; then
  record "memcheck" "skipped" 0 "compute-sanitizer not found"
elif [ "$(left)" -lt 90 ]; then
  record "memcheck" "skipped" 0 "time budget"
else
  # What the budget has left, split 2:1:1; the CudaError test makes failing API calls on purpose
  # (the sanitizer would count them as errors), and the pool-accounting test counts bytes the
  # sanitizer's own allocations may change.
  mt=$(( $(left) - 10 ))
  MMALIGN_REQUIRE_CUDA=1 timeout $(( mt / 2 )) "$sanitizer" --tool memcheck --error-exitcode 3 \
    "$build/tests/cuda/test_cuda_ops" --test-case-exclude='failed CUDA and cuBLAS calls*,DeviceTensor memory comes from the caching pool*' \
    > "$logs/memcheck.log" 2>&1
  r=$?
  # The fused attention kernels are exercised by one module case.
  MMALIGN_REQUIRE_CUDA=1 timeout $(( mt / 4 )) "$sanitizer" --tool memcheck --error-exitcode 3 \
    "$build/tests/cuda/test_cuda_modules" --test-case='fused attention*' >> "$logs/memcheck.log" 2>&1
  r2=$?
  [ $r -eq 0 ] && r=$r2
  # The 16-bit kernels through the op-level cases.
  MMALIGN_REQUIRE_CUDA=1 timeout $(( mt / 4 )) "$sanitizer" --tool memcheck --error-exitcode 3 \
    "$build/tests/cuda/test_cuda_half" --test-case='16-bit*' >> "$logs/memcheck.log" 2>&1
  r3=$?
  [ $r -eq 0 ] && r=$r3
  summary=$(grep -E "ERROR SUMMARY" "$logs/memcheck.log" | tail -1)
  case $r in
    0) record "memcheck" "ok" $(( $(date +%s) - t )) "test_cuda_ops + fused attention + 16-bit ops: $summary" ;;
    124) record "memcheck" "timeout" $(( $(date +%s) - t )) "the budget's last ${mt}s were not enough" ;;
    *) record "memcheck" "FAILED" $(( $(date +%s) - t )) "test_cuda_ops exit $r: $summary"; overall=1
       grep -E -A8 "Invalid|ERROR" "$logs/memcheck.log" | head -60 ;;
  esac
fi

# ---- 5. summary ----------------------------------------------------------------------------
{
  echo
  echo "== gemm (GFLOP/s): mmalign CudaBackend::gemm vs cublasSgemm"
  awk '$1 == "RESULT" && $2 == "gemm" { key = $3" "$4; v[key" "$5] = $6; if (!(key in seen)) { seen[key] = 1; ks[++n] = key } }
       END { printf "%-12s %-5s %12s %12s %7s\n", "size", "prec", "mmalign", "cublas", "ratio";
             for (i = 1; i <= n; ++i) { split(ks[i], p, " "); m = v[ks[i]" mmalign"]; c = v[ks[i]" cublas"];
               printf "%-12s %-5s %12.0f %12.0f %7.2f\n", p[1], p[2], m, c, (c > 0 ? m / c : 0) } }' "$logs/bench.log"
  echo
  echo "== CLIP image encoders end to end (get_image_features), images/s: mmalign (plain / fused attention) vs"
  echo "   transformers' CLIPModel; clip-b32 = ViT-B/32 (T 50), clip-l14 = ViT-L/14 (T 257); mm-lt = bf16 with cuBLASLt"
  echo "   bias epilogues; ratios: best mmalign (plain, fused or lt) over each torch impl; every row is in bench.log"
  cat "$logs/bench.log" "$logs/torch.log" | awk '$1 == "RESULT" && ($2 == "clip-b32" || $2 == "clip-l14") {
         key = $2" "$3" "$4; v[key" "$5] = $6; if (!(key in seen)) { seen[key] = 1; ks[++n] = key } }
       function f(x) { return x > 0 ? sprintf("%.1f", x) : "-" }
       function r(a, b) { return a > 0 && b > 0 ? sprintf("%.2f", a / b) : "-" }
       END { printf "%-8s %-6s %-5s %9s %9s %9s %9s %9s %9s %7s %7s %7s\n", "model", "batch", "prec", "mmalign", "mm-fused",
                    "mm-lt", "t-eager", "t-sdpa", "t-comp", "/eager", "/sdpa", "/comp";
             for (i = 1; i <= n; ++i) { split(ks[i], p, " "); m = v[ks[i]" mmalign"]; mf = v[ks[i]" mmalign-fused"];
               ml = v[ks[i]" mmalign-lt"]; best = (mf > m ? mf : m); best = (ml > best ? ml : best); e = v[ks[i]" torch-eager"]; sd = v[ks[i]" torch-sdpa"]; c = v[ks[i]" torch-compile"];
               printf "%-8s %-6s %-5s %9s %9s %9s %9s %9s %9s %7s %7s %7s\n", p[1], p[2], p[3], f(m), f(mf), f(ml), f(e), f(sd), f(c),
                 r(best, e), r(best, sd), r(best, c) } }'
  grep -E "RESULT gemm-bf16" "$logs/bench.log" | awk '{ printf "cuBLAS bf16 gemm peak (n=8192): %.1f TFLOP/s\n", $6 / 1000 }'
  grep -E "clip-l14 b=256 (fp32|tf32|bf16).*TFLOP/s" "$logs/bench.log"
  grep -E "CHECK FAILED|features vs fp32 plain" "$logs/bench.log"
  grep -E "^PARITY" "$logs/torch.log"
  echo
  echo "== CLIP training step (the Fashion-MNIST model, batch 256, synthetic batches), steps/s"
  python3 - "$logs/train.jsonl" <<'PY' || true
import json, sys
nan = float("nan")
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
for r in runs:  # nlohmann::json writes a non-finite loss as null
    r["losses"] = [nan if x is None else float(x) for x in r.get("losses") or [nan]]
prec = lambda r: r.get("precision") or ("tf32" if r.get("tf32") else "fp32")
torch_runs = {prec(r): r for r in runs if r["impl"] == "pytorch-cuda"}
torch_fp32 = torch_runs.get("fp32")
print(f"{'impl':<20} {'prec':<5} {'steps/s':>9} {'vs torch same prec':>19} {'final loss':>11} {'max |loss diff| vs torch fp32':>30}")
for r in runs:
    same = torch_runs.get(prec(r))
    ratio = r["steps_per_s"] / same["steps_per_s"] if same else nan
    diffs = [abs(a - b) for a, b in zip(r["losses"], torch_fp32["losses"])] if torch_fp32 else [nan]
    diff = nan if any(d != d for d in diffs) else max(diffs)
    print(f"{r['impl']:<20} {prec(r):<5} {r['steps_per_s']:9.1f} {ratio:19.2f} "
          f"{r['losses'][-1]:11.5f} {diff:30.2e}")
PY
  echo
  echo "== steps (total $(elapsed) s)"
  printf '%s\n' "${steps[@]}"
  echo "gpu-check: $([ $overall -eq 0 ] && echo PASSED || echo FAILED)"
} 2>&1 | tee "$logs/summary.txt"
exit $overall
