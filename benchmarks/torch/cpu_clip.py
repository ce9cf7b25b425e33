#!/usr/bin/env python3
"""PyTorch and ONNX Runtime side of benchmarks/cpu: CLIP feature extraction on the CPU.

    python3 benchmarks/torch/cpu_clip.py make   --dir DIR --layout vit-base-patch32|vit-large-patch14
    python3 benchmarks/torch/cpu_clip.py export --dir DIR --row image|text --batch B
    python3 benchmarks/torch/cpu_clip.py torch  --dir DIR --row image|text --batch B --iters N --threads T [--out-embeds P]
    python3 benchmarks/torch/cpu_clip.py onnx   --dir DIR --row image|text --batch B --iters N --threads T [--out-embeds P]
    python3 benchmarks/torch/cpu_clip.py peak   --dir DIR --threads T

make: a random-weight transformers CLIPModel (torch.manual_seed(0)) from
tests/fixtures/clip_layouts/<layout>/config.json, saved with save_pretrained (model.safetensors)
into DIR, plus DIR/inputs.safetensors: pixel_values [16, C, S, S] (seeded normal), input_ids and
attention_mask [16, T] as F32 (bos, random tokens, eos = vocab-1 at a varying length, then pad 0).
bench_cpu (mmalign) reads the same two files.
torch: get_image_features / get_text_features in eager mode with SDPA attention under
torch.inference_mode() and torch.set_num_threads(T). export: torch.onnx.export of a wrapper
calling the same function (opset 17), to DIR/<row>_b<B>.onnx. onnx: an onnxruntime
InferenceSession of that file, default graph optimisations, intra_op_num_threads=T (this
process does not import torch, so its peak RSS is ONNX Runtime's own).
torch and onnx print one JSON line like bench_cpu: per_s (from the median call), median_s,
peak_rss_mb; --out-embeds writes the features as safetensors ("features").
peak: the sgemm throughput of torch.matmul and of an ONNX Runtime MatMul graph on square
2048 × 2048 float matrices with T threads (median of 5 calls after 2 warm-ups), one JSON line
{"pytorch": GFLOP/s, "onnxruntime": GFLOP/s}; the driver takes the machine's sgemm peak as the best
of these and bench_gemm's routes.
Packages from PyPI: torch transformers safetensors numpy; onnxruntime onnx onnxscript (installed
with pip when missing).
"""
import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_BATCH = 16


def ensure(*modules):
    missing = []
    for mod, pkg in modules:
        try:
            importlib.import_module(mod)
        except ImportError:
            missing.append(pkg)
    if missing:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", *missing], stdout=sys.stderr)


def load_inputs(d, row, batch):
    from safetensors.numpy import load_file
    t = load_file(os.path.join(d, "inputs.safetensors"))
    if row == "image":
        return {"pixel_values": np.ascontiguousarray(t["pixel_values"][:batch])}
    return {"input_ids": np.ascontiguousarray(t["input_ids"][:batch].astype(np.int64)),
            "attention_mask": np.ascontiguousarray(t["attention_mask"][:batch].astype(np.int64))}


def as_features(out):
    """transformers v5 may return a BaseModelOutputWithPooling whose pooler_output holds the projected features."""
    return out if hasattr(out, "shape") else out.pooler_output


def report(impl, a, secs, features, **extra):
    median = statistics.median(secs)
    if a.out_embeds:
        from safetensors.numpy import save_file
        save_file({"features": np.ascontiguousarray(features, dtype=np.float32)}, a.out_embeds)
    print(json.dumps({"impl": impl, "row": a.row, "batch": a.batch, "threads": a.threads, "iters": a.iters,
                      "per_s": a.batch / median, "median_s": median, "times_s": secs,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, **extra}),
          flush=True)


def time_calls(fn, iters):
    out = fn()  # warm-up
    secs = []
    for _ in range(iters):
        t0 = time.perf_counter()
        out = fn()
        secs.append(time.perf_counter() - t0)
    return secs, out


def load_model(d):
    import torch
    from transformers import CLIPModel
    model = CLIPModel.from_pretrained(d, attn_implementation="sdpa", torch_dtype=torch.float32)
    return model.eval()


def wrapper(model, row):
    import torch

    class ImageFeatures(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return as_features(self.m.get_image_features(pixel_values=pixel_values))

    class TextFeatures(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return as_features(self.m.get_text_features(input_ids=input_ids, attention_mask=attention_mask))

    return (ImageFeatures if row == "image" else TextFeatures)(model).eval()


def cmd_make(a):
    import torch
    from safetensors.numpy import save_file
    from transformers import CLIPConfig, CLIPModel
    torch.manual_seed(0)
    cfg = CLIPConfig.from_json_file(os.path.join(REPO, "tests/fixtures/clip_layouts", a.layout, "config.json"))
    cfg._attn_implementation = "sdpa"
    model = CLIPModel(cfg).eval()
    model.save_pretrained(a.dir, safe_serialization=True)
    v, t = cfg.vision_config, cfg.text_config
    rng = np.random.default_rng(0)
    px = rng.standard_normal((MAX_BATCH, v.num_channels, v.image_size, v.image_size), dtype=np.float32)
    T, vocab = t.max_position_embeddings, t.vocab_size
    ids = np.zeros((MAX_BATCH, T), np.float32)
    mask = np.zeros((MAX_BATCH, T), np.float32)
    for b in range(MAX_BATCH):
        n = T if b == 0 else int(rng.integers(8, T + 1))  # row 0 fills the context
        ids[b, 0] = vocab - 2
        ids[b, 1:n - 1] = rng.integers(1, vocab - 2, n - 2)
        ids[b, n - 1] = vocab - 1  # eos: the largest id, so HF's legacy argmax pooling finds it too
        mask[b, :n] = 1
    save_file({"pixel_values": px, "input_ids": ids, "attention_mask": mask}, os.path.join(a.dir, "inputs.safetensors"))
    print(f"made {a.layout} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters) in {a.dir}")


def cmd_torch(a):
    import torch
    torch.set_num_threads(a.threads)
    model = load_model(a.dir)
    inputs = {k: torch.from_numpy(v) for k, v in load_inputs(a.dir, a.row, a.batch).items()}
    fn = model.get_image_features if a.row == "image" else model.get_text_features
    with torch.inference_mode():
        secs, out = time_calls(lambda: as_features(fn(**inputs)), a.iters)
    report("pytorch", a, secs, as_features(out).float().numpy())


def onnx_path(a):
    return os.path.join(a.dir, f"{a.row}_b{a.batch}.onnx")


def cmd_export(a):
    import torch
    path = onnx_path(a)
    if os.path.exists(path):
        return
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = wrapper(load_model(a.dir), a.row)
    inputs = load_inputs(a.dir, a.row, a.batch)
    args = tuple(torch.from_numpy(v) for v in inputs.values())
    errors = []
    for dynamo in (False, True):  # the TorchScript exporter first: opset 17 as asked, one file
        try:
            with torch.no_grad():
                torch.onnx.export(model, args, path, input_names=list(inputs), output_names=["features"],
                                  opset_version=17, dynamo=dynamo)
            print(f"exported {path} (dynamo={dynamo})", file=sys.stderr)
            return
        except Exception as e:  # noqa: BLE001 — report and try the other exporter
            errors.append(f"dynamo={dynamo}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    raise RuntimeError("; ".join(errors))


def cmd_onnx(a):
    ensure(("onnxruntime", "onnxruntime"), ("onnx", "onnx"))
    import onnxruntime as ort
    path = onnx_path(a)
    if not os.path.exists(path):
        err_file = path + ".error"
        msg = open(err_file).read().strip() if os.path.exists(err_file) else f"{path} was not exported"
        print(json.dumps({"impl": "onnxruntime", "row": a.row, "batch": a.batch, "threads": a.threads, "error": msg}))
        return
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    inputs = load_inputs(a.dir, a.row, a.batch)
    feed = {i.name: inputs[i.name] for i in sess.get_inputs()}
    secs, out = time_calls(lambda: sess.run(None, feed)[0], a.iters)
    report("onnxruntime", a, secs, out, ort_version=ort.__version__)


def cmd_peak(a):
    n, flops = 2048, 2.0 * 2048 ** 3
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)

    def best_of(fn):
        for _ in range(2):
            fn()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return flops / statistics.median(times) / 1e9

    out = {}
    import torch
    torch.set_num_threads(a.threads)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    out["pytorch"] = best_of(lambda: torch.matmul(tx, ty))
    ensure(("onnxruntime", "onnxruntime"), ("onnx", "onnx"))
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    io = [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n, n]) for k in ("A", "B", "C")]
    graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["C"])], "matmul", io[:2], io[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    out["onnxruntime"] = best_of(lambda: sess.run(None, {"A": x, "B": y}))
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["make", "export", "torch", "onnx", "peak"])
    ap.add_argument("--dir", default="")
    ap.add_argument("--layout", default="vit-base-patch32")
    ap.add_argument("--row", choices=["image", "text"], default="image")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-embeds", default="")
    a = ap.parse_args()
    if a.cmd != "peak" and not a.dir:
        ap.error("--dir is required")
    if a.batch > MAX_BATCH:
        ap.error(f"--batch at most {MAX_BATCH}")
    if a.cmd == "export":
        ensure(("onnx", "onnx"), ("onnxscript", "onnxscript"))
        try:
            cmd_export(a)
        except Exception as e:  # noqa: BLE001 — the driver keeps the row with the error noted
            with open(onnx_path(a) + ".error", "w") as f:
                f.write(str(e))
            print(f"export failed: {e}", file=sys.stderr)
        return
    {"make": cmd_make, "torch": cmd_torch, "onnx": cmd_onnx, "peak": cmd_peak}[a.cmd](a)


if __name__ == "__main__":
    main()
