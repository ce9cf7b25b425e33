#!/usr/bin/env python3
"""The CLIP image-encoder stacks of benchmarks/gpu/bench_gpu.cu, in PyTorch, for comparison.

Pre-norm layers (x + Attn(LN1(x)), then x + MLP(LN2(x))), quick_gelu (x * sigmoid(1.702 x)),
separate q/k/v/out projections with biases: ViT-B/32-sized (12 layers, D = 768, H = 12, MLP 3072,
T = 50; label "vit") and ViT-L/14-sized (24 layers, D = 1024, H = 16, MLP 4096, T = 257; label
"vitl14"). Forward only, under no_grad, at batch 1, 32 and 256. Implementations:
  torch-eager    attention written out (q k^T * scale, softmax, p v), as mmalign's plain path
  torch-sdpa     eager with torch.nn.functional.scaled_dot_product_attention (flash / efficient
                 kernels where PyTorch picks them)
  torch-compile  torch.compile of the SDPA model, within a time budget
in fp32 with TF32 off ("fp32") and on ("tf32"), and in bf16 ("bf16": the model converted to
bfloat16, as mmalign's bf16 storage; plus torch-autocast, SDPA under torch.autocast(bfloat16) over
the float model). Timing: CUDA events around each call after warm-up; the median counts. Prints one line
per measurement in bench_gpu's format ("RESULT <label> b=<B> <prec> <impl> <value> seq/s"), which
scripts/gpu-check.sh joins with bench_gpu's rows.

    python3 benchmarks/torch/gpu_vit.py [--models b32,l14] [--batches 1,32,256] [--reps 20] [--no-compile]
                                        [--compile-budget 90]
"""
import argparse
import copy
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as Fn

# label, layers, width, heads, MLP width, tokens
MODELS = {"b32": ("vit", 12, 768, 12, 3072, 50), "l14": ("vitl14", 24, 1024, 16, 4096, 257)}


class Attention(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.d, self.h = d, h
        self.q_proj, self.k_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.v_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.scale = (d // h) ** -0.5
        self.sdpa = False

    def forward(self, x):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.h, self.d // self.h).transpose(1, 2)  # [B, H, T, d]
        k = self.k_proj(x).view(b, t, self.h, self.d // self.h).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.h, self.d // self.h).transpose(1, 2)
        if self.sdpa:
            o = Fn.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            p = torch.softmax((q @ k.transpose(-1, -2)) * self.scale, dim=-1)  # [B, H, T, T]
            o = p @ v
        return self.out_proj(o.transpose(1, 2).reshape(b, t, self.d))


class Block(nn.Module):
    def __init__(self, d, h, f):
        super().__init__()
        self.layer_norm1, self.layer_norm2 = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)
        self.self_attn = Attention(d, h)
        self.fc1, self.fc2 = nn.Linear(d, f), nn.Linear(f, d)

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        h = self.fc1(self.layer_norm2(x))
        h = h * torch.sigmoid(1.702 * h)
        return x + self.fc2(h)


class Encoder(nn.Module):
    def __init__(self, layers, d, h, f):
        super().__init__()
        self.layers = nn.ModuleList(Block(d, h, f) for _ in range(layers))

    def set_sdpa(self, on):
        for layer in self.layers:
            layer.self_attn.sdpa = on

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def median_ms(fn, x, warmup, reps):
    for _ in range(warmup):
        fn(x)
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(x)
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def set_tf32(on):
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def result(label, batch, prec, impl, value):
    print(f"RESULT {label} b={batch} {prec} {impl} {value:.2f} seq/s", flush=True)


def bench_model(key, batches, args, t0):
    label, layers, d, h, f, t = MODELS[key]
    torch.manual_seed(0)
    model = Encoder(layers, d, h, f).cuda().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.02 * torch.rand_like(p) - 0.01)
            elif name.endswith("bias"):
                p.uniform_(-0.02, 0.02)
            else:
                p.normal_(0.0, 0.02)
    inputs = {b: torch.rand(b, t, d, device="cuda") * 2 - 1 for b in batches}

    def reps_for(b):
        return max(3, args.reps // (4 if t > 100 else 2)) if b >= 256 else args.reps

    with torch.no_grad():
        for tf32 in (False, True):
            set_tf32(tf32)
            prec = "tf32" if tf32 else "fp32"
            for sdpa in (False, True):
                model.set_sdpa(sdpa)
                for b in batches:
                    ms = median_ms(model, inputs[b], 2, reps_for(b))
                    result(label, b, prec, "torch-sdpa" if sdpa else "torch-eager", b / (ms * 1e-3))
        set_tf32(False)
        # bf16 like mmalign's bf16 rows: weights and activations stored in bf16 (the same weights,
        # rounded), attention written out and SDPA; autocast over the float model as a third row.
        model16 = copy.deepcopy(model).to(torch.bfloat16)
        for sdpa in (False, True):
            model16.set_sdpa(sdpa)
            for b in batches:
                ms = median_ms(model16, inputs[b].to(torch.bfloat16), 2, reps_for(b))
                result(label, b, "bf16", "torch-sdpa" if sdpa else "torch-eager", b / (ms * 1e-3))
        model.set_sdpa(True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            for b in batches:
                ms = median_ms(model, inputs[b], 2, reps_for(b))
                result(label, b, "bf16", "torch-autocast", b / (ms * 1e-3))

        if args.no_compile:
            return
        for prec in ("fp32", "tf32", "bf16"):
            set_tf32(prec == "tf32")
            target = model16 if prec == "bf16" else model
            try:
                torch._dynamo.reset()
                compiled = torch.compile(target, dynamic=False)
                for b in batches:
                    x = inputs[b].to(torch.bfloat16) if prec == "bf16" else inputs[b]
                    if time.time() - t0 > args.compile_budget:
                        print(f"torch.compile {label} b={b} {prec}: skipped (compile budget of "
                              f"{args.compile_budget:.0f} s spent)", flush=True)
                        continue
                    tc = time.time()
                    compiled(x)  # compiles for this shape
                    torch.cuda.synchronize()
                    print(f"torch.compile {label} b={b} {prec}: compiled in {time.time() - tc:.1f} s", flush=True)
                    ms = median_ms(compiled, x, 2, reps_for(b))
                    result(label, b, prec, "torch-compile", b / (ms * 1e-3))
            except Exception as e:  # torch.compile is optional here
                print(f"torch.compile {label} {prec}: failed ({type(e).__name__}: {e})", flush=True)
    del model, model16
    torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="b32,l14")
    ap.add_argument("--batches", default="1,32,256")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--compile-budget", type=float, default=90.0,
                    help="seconds after which no further torch.compile measurement is started")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    models = args.models.split(",")
    if any(m not in MODELS for m in models):
        ap.error(f"--models takes {', '.join(MODELS)}")
    if not torch.cuda.is_available():
        print("gpu_vit.py: no CUDA device", flush=True)
        return 77
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}", flush=True)
    t0 = time.time()
    for key in models:
        bench_model(key, batches, args, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
