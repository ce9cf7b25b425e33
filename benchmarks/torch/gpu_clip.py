#!/usr/bin/env python3
"""The CLIP image encoders of benchmarks/gpu/bench_gpu.cu in PyTorch (transformers' CLIPModel), for comparison.

Both programs load the same random-weight Hugging Face folders (config.json + model.safetensors +
inputs.safetensors, made by `benchmarks/torch/cpu_clip.py make --dir DIR/<layout> --layout <layout>`
for vit-base-patch32 and vit-large-patch14) and time get_image_features (pixels to projected
features) at batch 1, 32 and 256, images tiled from inputs.safetensors' pixel_values as bench_gpu
tiles them. Implementations, under torch.inference_mode():
  torch-eager    attn_implementation="eager" (q k^T * scale, softmax, p v: mmalign's plain path)
  torch-sdpa     attn_implementation="sdpa" (scaled_dot_product_attention: flash / efficient kernels)
  torch-compile  torch.compile of the SDPA model's get_image_features, within a time budget
in fp32 with TF32 off ("fp32", for matmuls and cuDNN's patch convolution) and on ("tf32"), and in
bf16 ("bf16": the model converted to bfloat16, as mmalign's bf16 storage; plus torch-autocast, SDPA
under torch.autocast(bfloat16) over the float model). Timing: CUDA events around each call after
warm-up; the median counts. Prints one line per measurement in bench_gpu's format
("RESULT <label> b=<B> <prec> <impl> <value> img/s"), which scripts/gpu-check.sh joins with
bench_gpu's rows.

Parity: when bench_gpu has written DIR/<layout>/features_mmalign.safetensors (mmalign's fp32 features
of the folder's input images), the fp32 eager features of the same images are compared with it and
a "PARITY" line gives the relative norm difference; above 1e-5 the script exits 1.

    python3 benchmarks/torch/gpu_clip.py --clip-dir DIR [--models b32,l14] [--batches 1,32,256]
                                         [--reps 20] [--no-compile] [--compile-budget 90] [--device cuda]
--device cpu runs the same steps on the CPU (wall-clock timing), to try the script without a GPU.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_clip import wrapper  # noqa: E402  (the get_image_features module cpu_clip.py exports)

# --models key: RESULT label, folder (layout) name
MODELS = {"b32": ("clip-b32", "vit-base-patch32"), "l14": ("clip-l14", "vit-large-patch14")}
PARITY_LIMIT = 1e-5


def load_model(d, attn, device):
    from transformers import CLIPModel
    try:
        model = CLIPModel.from_pretrained(d, attn_implementation=attn, dtype=torch.float32)
    except TypeError:  # transformers before `dtype` replaced `torch_dtype`
        model = CLIPModel.from_pretrained(d, attn_implementation=attn, torch_dtype=torch.float32)
    model.text_model = None  # only the image tower runs; keep the device memory for activations
    return model.to(device).eval()


def pixels_for(pool, batch):
    """Image i of a batch is pool image i mod n, as in bench_gpu."""
    idx = np.arange(batch) % pool.shape[0]
    return torch.from_numpy(np.ascontiguousarray(pool[idx]))


def median_ms(fn, x, warmup, reps, device):
    for _ in range(warmup):
        fn(x)
    times = []
    if device == "cuda":
        torch.cuda.synchronize()
        for _ in range(reps):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(x)
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop))
    else:
        for _ in range(reps):
            t = time.perf_counter()
            fn(x)
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def set_tf32(on):
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on  # the patch embedding is a convolution


def result(label, batch, prec, impl, value):
    print(f"RESULT {label} b={batch} {prec} {impl} {value:.2f} img/s", flush=True)


def parity(label, d, model, pool, device):
    """mmalign's fp32 features (bench_gpu) against this fp32 eager model's; False when too far."""
    path = os.path.join(d, "features_mmalign.safetensors")
    if not os.path.exists(path):
        print(f"PARITY {label}: FAILED, {path} not found (bench_gpu writes it before its encoder rows)", flush=True)
        return False
    from safetensors.numpy import load_file
    ours = load_file(path)["features"].astype(np.float64)
    set_tf32(False)
    ref = model(torch.from_numpy(pool).to(device)).double().cpu().numpy()
    if ours.shape != ref.shape:
        print(f"PARITY {label}: FAILED, mmalign features {ours.shape} vs transformers {ref.shape}", flush=True)
        return False
    rel = float(np.linalg.norm(ours - ref) / max(np.linalg.norm(ref), 1e-30))
    ok = rel <= PARITY_LIMIT
    print(f"PARITY {label} fp32 mmalign vs transformers (eager): relative norm difference {rel:.2e} "
          f"(limit {PARITY_LIMIT:.0e}) {'ok' if ok else 'FAILED'}", flush=True)
    return ok


def bench_model(key, args):
    """The eager, SDPA, bf16 and autocast rows of one model, after the parity check; returns
    (parity ok, the SDPA models kept for the torch.compile rows, the inputs, tokens)."""
    label, folder = MODELS[key]
    d = os.path.join(args.clip_dir, folder)
    from safetensors.numpy import load_file
    pool = load_file(os.path.join(d, "inputs.safetensors"))["pixel_values"]
    dev = args.device
    inputs = {b: pixels_for(pool, b).to(dev) for b in args.batches}
    with torch.inference_mode():
        models = {attn: wrapper(load_model(d, attn, dev), "image") for attn in ("eager", "sdpa")}
        vc = models["eager"].m.config.vision_config
        tokens = (vc.image_size // vc.patch_size) ** 2 + 1
        ok = parity(label, d, models["eager"], pool, dev)
        for tf32 in (False, True):
            set_tf32(tf32)
            prec = "tf32" if tf32 else "fp32"
            for attn, model in models.items():
                for b in args.batches:
                    ms = median_ms(model, inputs[b], 2, reps_for(args, b, tokens), dev)
                    result(label, b, prec, "torch-" + attn, b / (ms * 1e-3))
        set_tf32(False)
        # bf16 like mmalign's bf16 rows: the same weights and pixels rounded to bf16 (eager and
        # SDPA); autocast over the float SDPA model as its own row.
        keep = {"fp32": models["sdpa"]}
        del models["eager"]
        for attn in ("eager", "sdpa"):
            model16 = wrapper(load_model(d, attn, dev).to(torch.bfloat16), "image")
            for b in args.batches:
                ms = median_ms(model16, inputs[b].to(torch.bfloat16), 2, reps_for(args, b, tokens), dev)
                result(label, b, "bf16", "torch-" + attn, b / (ms * 1e-3))
            if attn == "sdpa":
                keep["bf16"] = model16
            del model16
        with torch.autocast(dev, dtype=torch.bfloat16):
            for b in args.batches:
                ms = median_ms(keep["fp32"], inputs[b], 2, reps_for(args, b, tokens), dev)
                result(label, b, "bf16", "torch-autocast", b / (ms * 1e-3))
    return ok, keep, inputs, tokens


def compile_rows(key, keep, inputs, tokens, args, deadline):
    """torch.compile of the SDPA model in fp32, TF32 and bf16, each shape started only before `deadline`."""
    label = MODELS[key][0]
    dev = args.device
    with torch.inference_mode():
        for prec in ("fp32", "tf32", "bf16"):
            set_tf32(prec == "tf32")
            try:
                torch._dynamo.reset()
                compiled = torch.compile(keep["bf16" if prec == "bf16" else "fp32"], dynamic=False)
                for b in args.batches:
                    x = inputs[b].to(torch.bfloat16) if prec == "bf16" else inputs[b]
                    if time.time() > deadline:
                        print(f"torch.compile {label} b={b} {prec}: skipped (compile budget of "
                              f"{args.compile_budget:.0f} s spent)", flush=True)
                        continue
                    tc = time.time()
                    compiled(x)  # compiles for this shape
                    if dev == "cuda":
                        torch.cuda.synchronize()
                    print(f"torch.compile {label} b={b} {prec}: compiled in {time.time() - tc:.1f} s", flush=True)
                    ms = median_ms(compiled, x, 2, reps_for(args, b, tokens), dev)
                    result(label, b, prec, "torch-compile", b / (ms * 1e-3))
            except Exception as e:  # torch.compile is optional here
                print(f"torch.compile {label} {prec}: failed ({type(e).__name__}: {e})", flush=True)
        set_tf32(False)


def reps_for(args, b, tokens):
    return max(3, args.reps // (4 if tokens > 100 else 2)) if b >= 256 else args.reps


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip-dir", required=True, help="folder holding vit-base-patch32/ and vit-large-patch14/")
    ap.add_argument("--models", default="b32,l14")
    ap.add_argument("--batches", default="1,32,256")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--compile-budget", type=float, default=90.0,
                    help="seconds, from the first compilation, after which no further torch.compile measurement is started")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    args = ap.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    models = args.models.split(",")
    if any(m not in MODELS for m in models):
        ap.error(f"--models takes {', '.join(MODELS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_clip.py: no CUDA device", flush=True)
        return 77
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    import transformers
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {name}", flush=True)
    # Every model's parity and eager/SDPA/bf16 rows first; torch.compile, the slow optional part,
    # after them, with --compile-budget seconds counted from its start.
    ok, kept = True, {}
    for key in models:
        model_ok, keep, inputs, tokens = bench_model(key, args)
        ok = ok and model_ok
        kept[key] = (keep, inputs, tokens)
    if not args.no_compile:
        deadline = time.time() + args.compile_budget
        for key in models:
            compile_rows(key, *kept[key], args, deadline)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
