#!/usr/bin/env python3
"""The ViT-B/32-sized encoder of benchmarks/gpu/bench_gpu.cu, in PyTorch, for comparison.

12 pre-norm layers (x + Attn(LN1(x)), then x + MLP(LN2(x))), D = 768, H = 12, MLP 3072, quick_gelu
(x * sigmoid(1.702 x)), T = 50 tokens, separate q/k/v/out projections with biases and the attention
written out (q k^T * scale, softmax, p v) as mmalign computes it. Forward only, under no_grad, at
batch 1, 32 and 256, fp32 with TF32 off and on, eager and (within a time budget) torch.compile.
Timing: CUDA events around each call after warm-up; the median counts. Prints one line per
measurement in bench_gpu's format ("RESULT vit b=<B> <fp32|tf32> <impl> <value> seq/s"), which
scripts/gpu-check.sh joins with bench_gpu's rows.

    python3 benchmarks/torch/gpu_vit.py [--batches 1,32,256] [--reps 20] [--no-compile] [--compile-budget 90]
"""
import argparse
import statistics
import sys
import time

import torch
import torch.nn as nn

L, D, H, F, T = 12, 768, 12, 3072, 50


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj, self.k_proj = nn.Linear(D, D), nn.Linear(D, D)
        self.v_proj, self.out_proj = nn.Linear(D, D), nn.Linear(D, D)
        self.scale = (D // H) ** -0.5

    def forward(self, x):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, H, D // H).transpose(1, 2)  # [B, H, T, d]
        k = self.k_proj(x).view(b, t, H, D // H).transpose(1, 2)
        v = self.v_proj(x).view(b, t, H, D // H).transpose(1, 2)
        p = torch.softmax((q @ k.transpose(-1, -2)) * self.scale, dim=-1)  # [B, H, T, T]
        o = (p @ v).transpose(1, 2).reshape(b, t, D)
        return self.out_proj(o)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer_norm1, self.layer_norm2 = nn.LayerNorm(D, eps=1e-5), nn.LayerNorm(D, eps=1e-5)
        self.self_attn = Attention()
        self.fc1, self.fc2 = nn.Linear(D, F), nn.Linear(F, D)

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        h = self.fc1(self.layer_norm2(x))
        h = h * torch.sigmoid(1.702 * h)
        return x + self.fc2(h)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(Block() for _ in range(L))

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


def result(batch, prec, impl, value):
    print(f"RESULT vit b={batch} {prec} {impl} {value:.2f} seq/s", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,32,256")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--compile-budget", type=float, default=90.0,
                    help="seconds after which no further torch.compile measurement is started")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    if not torch.cuda.is_available():
        print("gpu_vit.py: no CUDA device", flush=True)
        return 77
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}", flush=True)
    torch.manual_seed(0)
    model = Encoder().cuda().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.02 * torch.rand_like(p) - 0.01)
            elif name.endswith("bias"):
                p.uniform_(-0.02, 0.02)
            else:
                p.normal_(0.0, 0.02)

    inputs = {b: torch.rand(b, T, D, device="cuda") * 2 - 1 for b in batches}
    with torch.no_grad():
        for tf32 in (False, True):
            set_tf32(tf32)
            prec = "tf32" if tf32 else "fp32"
            for b in batches:
                reps = max(3, args.reps // 2) if b >= 256 else args.reps
                ms = median_ms(model, inputs[b], 2, reps)
                result(b, prec, "torch-eager", b / (ms * 1e-3))

        if args.no_compile:
            return 0
        t0 = time.time()
        for tf32 in (False, True):
            set_tf32(tf32)
            prec = "tf32" if tf32 else "fp32"
            try:
                torch._dynamo.reset()
                compiled = torch.compile(model, dynamic=False)
                for b in batches:
                    if time.time() - t0 > args.compile_budget:
                        print(f"torch.compile b={b} {prec}: skipped (compile budget of "
                              f"{args.compile_budget:.0f} s spent)", flush=True)
                        continue
                    reps = max(3, args.reps // 2) if b >= 256 else args.reps
                    tc = time.time()
                    compiled(inputs[b])  # compiles for this shape
                    torch.cuda.synchronize()
                    print(f"torch.compile b={b} {prec}: compiled in {time.time() - tc:.1f} s", flush=True)
                    ms = median_ms(compiled, inputs[b], 2, reps)
                    result(b, prec, "torch-compile", b / (ms * 1e-3))
            except Exception as e:  # torch.compile is optional here
                print(f"torch.compile {prec}: failed ({type(e).__name__}: {e})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
