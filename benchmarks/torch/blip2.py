#!/usr/bin/env python3
"""PyTorch side of benchmarks/blip2: full-size BLIP-2 (blip2-opt-2.7b layout) inference on the CPU, eager fp32.

    python3 benchmarks/torch/blip2.py make --dir DIR [--dtype float16|float32] [--shard-mb N] [--text-layers N]
    python3 benchmarks/torch/blip2.py run  --dir DIR --task features|caption|all [--batch B] [--new-tokens N]
                                           [--iters N] [--threads T] [--out PATH]

make: a random-weight Blip2ForConditionalGeneration checkpoint with the hub configuration of
Salesforce/blip2-opt-2.7b (tools/make_blip2_layout_fixtures.py blip2_config: EVA ViT-g/14 39 × 1408
at 224 px, the BERT-base Q-Former, 32 queries, OPT-2.7b 32 × 2560, vocabulary 50304; --text-layers
builds a shallower OPT for a reduced-depth variant), written without ever holding the model: it is
built on the meta device for its keys and shapes, and each tensor is drawn and written in turn
(torch.manual_seed(0); weights N(0, 0.02²), biases N(0, 0.02²), LayerNorm scales 1 + N(0, 0.02²);
the key third of every vision qkv.bias zero, as in every BLIP-2 checkpoint; the tied LM head not
stored, as save_pretrained does). --dtype float16 (default) writes DIR/model.safetensors, the hub
folder's dtype; --shard-mb writes shards of about that size and model.safetensors.index.json
instead. Also DIR/config.json and DIR/inputs.safetensors: pixel_values [4, 3, 224, 224] float32
(seeded normal) and prompt_ids [1, 36] int64 = 32 × <image> (50265), </s> (2), "a photo of"
(GPT-2 byte-level BPE ids 102, 1345, 9), the form Blip2Processor gives.

run: one process, one task, torch.set_num_threads(T), torch.inference_mode(), the model loaded
with from_pretrained(dtype=torch.float32):
  features  vision_model(pixel_values[:B]).last_hidden_state, then the Q-Former's queries over it
            (Blip2Model.get_qformer_features): qformer_output [B, 32, 768]; per_s = images/s
  caption   generate(pixel_values[:1], input_ids=prompt_ids, attention_mask=1, greedy,
            min_new_tokens = max_new_tokens = --new-tokens) and the same with 1 new token;
            per_s = images/s of the full call, new_tokens_per_s = N / s, decode_tokens_per_s =
            (N − 1) / (t_N − t_1): the steps after the first token, the prompt's prefill excluded
  all       features at batch 1 and 4, then caption, after one load (--out is then a prefix:
            PATH.features-b1.safetensors, PATH.features-b4.safetensors)
One warm-up call, then --iters timed calls (median); each row is one JSON line with per_s, median_s,
times_s, load_s, peak_rss_mb (VmHWM so far: loading included) and, for caption, the new ids. --out
writes features' "qformer_output" as safetensors. Packages from PyPI: torch transformers safetensors numpy.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))

MAX_IMAGES = 4
PROMPT = [2, 102, 1345, 9]  # </s> "a photo of" in OPT's GPT-2 vocabulary
IMAGE_TOKEN = 50265


def peak_rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def random_tensor(key, shape, dtype):
    import torch
    if key.endswith("bias"):
        t = torch.randn(shape) * 0.02
        if key.endswith(".qkv.bias"):  # [q_bias, 0, v_bias]
            t[shape[0] // 3: 2 * shape[0] // 3] = 0
    elif key.endswith("weight") and "norm" in key.lower():
        t = 1 + torch.randn(shape) * 0.02
    else:
        t = torch.randn(shape) * 0.02
    return t.to(dtype).contiguous()


def write_safetensors(path, entries, dtype):
    """Writes the tensors [(key, shape)] drawn by random_tensor one at a time into one safetensors
    file (the format: u64 header size, JSON header, the data in header order), so that no more than
    one tensor is ever in memory."""
    import torch
    item = torch.tensor([], dtype=dtype).element_size()
    code = {torch.float16: "F16", torch.float32: "F32"}[dtype]
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for key, shape in entries:
        n = int(np.prod(shape)) * item
        header[key] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for key, shape in entries:
            f.write(random_tensor(key, shape, dtype).view(torch.uint8).numpy().tobytes())
    return offset


def cmd_make(a):
    import torch
    from make_blip2_layout_fixtures import blip2_config
    from safetensors.numpy import save_file
    from transformers import Blip2ForConditionalGeneration
    os.makedirs(a.dir, exist_ok=True)
    cfg = blip2_config("blip2-opt-2.7b", **({"num_hidden_layers": a.text_layers} if a.text_layers else {}))
    cfg.dtype = a.dtype
    with torch.device("meta"):
        model = Blip2ForConditionalGeneration(cfg)
    entries = [(k, tuple(v.shape)) for k, v in model.state_dict().items() if k != "language_model.lm_head.weight"]
    dtype = getattr(torch, a.dtype)
    item = torch.tensor([], dtype=dtype).element_size()
    groups, size = [[]], 0  # shards of about --shard-mb each (one group when not sharding)
    for key, shape in entries:
        n = int(np.prod(shape)) * item
        if a.shard_mb and groups[-1] and size + n > a.shard_mb * 2**20:
            groups.append([])
            size = 0
        groups[-1].append((key, shape))
        size += n
    torch.manual_seed(0)
    total = 0
    if a.shard_mb:
        weight_map = {}
        for i, group in enumerate(groups, 1):
            name = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
            total += write_safetensors(os.path.join(a.dir, name), group, dtype)
            weight_map.update({k: name for k, _ in group})
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
                  open(os.path.join(a.dir, "model.safetensors.index.json"), "w"), indent=1)
    else:
        total = write_safetensors(os.path.join(a.dir, "model.safetensors"), entries, dtype)
    cfg.to_json_file(os.path.join(a.dir, "config.json"))
    rng = np.random.default_rng(0)
    px = rng.standard_normal((MAX_IMAGES, 3, 224, 224), dtype=np.float32)
    ids = np.array([[IMAGE_TOKEN] * cfg.num_query_tokens + PROMPT], dtype=np.int64)
    save_file({"pixel_values": px, "prompt_ids": ids}, os.path.join(a.dir, "inputs.safetensors"))
    print(f"made {a.dir}: {len(entries)} tensors, {total / 1e9:.2f} GB of {a.dtype} in {len(groups)} file(s)")


def timed(fn, iters):
    """One warm-up call, then `iters` timed calls: (last output, seconds of each)."""
    out = fn()
    secs = []
    for _ in range(iters):
        t0 = time.perf_counter()
        out = fn()
        secs.append(time.perf_counter() - t0)
    return out, secs


def row(task, batch, a, secs, load_s):
    import torch
    median = statistics.median(secs)
    return {"impl": "pytorch", "task": task, "batch": batch, "threads": a.threads, "iters": a.iters,
            "per_s": batch / median, "median_s": median, "times_s": secs, "load_s": load_s,
            "peak_rss_mb": peak_rss_mb(), "torch": torch.__version__}


def features(model, t, batch, a, load_s, out_path):
    import torch
    from safetensors.numpy import save_file
    px = torch.from_numpy(np.ascontiguousarray(t["pixel_values"][:batch]))

    def fn():  # Blip2Model.get_qformer_features
        img = model.vision_model(pixel_values=px).last_hidden_state
        q = model.query_tokens.expand(img.shape[0], -1, -1)
        mask = torch.ones(img.shape[:-1], dtype=torch.long)
        return model.qformer(query_embeds=q, encoder_hidden_states=img, encoder_attention_mask=mask).last_hidden_state
    out, secs = timed(fn, a.iters)
    if out_path:
        save_file({"qformer_output": out.float().numpy().copy()}, out_path)
    return row("features", batch, a, secs, load_s)


def caption(model, t, a, load_s):
    import torch
    px = torch.from_numpy(np.ascontiguousarray(t["pixel_values"][:1]))
    ids = torch.from_numpy(t["prompt_ids"])

    def gen(n):
        return lambda: model.generate(pixel_values=px, input_ids=ids, attention_mask=torch.ones_like(ids),
                                      do_sample=False, num_beams=1, min_new_tokens=n, max_new_tokens=n)
    out, secs = timed(gen(a.new_tokens), a.iters)
    _, first = timed(gen(1), a.iters)
    r = row("caption", 1, a, secs, load_s)
    seqs = out if torch.is_tensor(out) else out.sequences
    median, first = statistics.median(secs), statistics.median(first)
    r.update(ids=seqs[:, -a.new_tokens:].tolist(), new_tokens_per_s=a.new_tokens / median, first_token_s=first,
             decode_tokens_per_s=(a.new_tokens - 1) / (median - first) if median > first else None)
    return r


def cmd_run(a):
    import torch
    from safetensors.numpy import load_file
    from transformers import Blip2ForConditionalGeneration
    torch.set_num_threads(a.threads)
    t = load_file(os.path.join(a.dir, "inputs.safetensors"))
    t0 = time.perf_counter()
    model = Blip2ForConditionalGeneration.from_pretrained(a.dir, dtype=torch.float32).eval()
    load_s = time.perf_counter() - t0
    with torch.inference_mode():
        if a.task == "features":
            rows = [lambda: features(model, t, a.batch, a, load_s, a.out)]
        elif a.task == "caption":
            rows = [lambda: caption(model, t, a, load_s)]
        else:  # all: features at batch 1 and 4, then the caption, after one load
            rows = [lambda b=b: features(model, t, b, a, load_s, f"{a.out}.features-b{b}.safetensors" if a.out else "")
                    for b in (1, 4)] + [lambda: caption(model, t, a, load_s)]
        for r in rows:
            print(json.dumps(r()), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["make", "run"])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    ap.add_argument("--shard-mb", type=int, default=0)
    ap.add_argument("--text-layers", type=int, default=0)
    ap.add_argument("--task", choices=["features", "caption", "all"], default="features")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=20)
    ap.add_argument("--iters", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    if not 1 <= a.batch <= MAX_IMAGES:
        ap.error(f"--batch must lie in [1, {MAX_IMAGES}]")
    if a.new_tokens < 2:
        ap.error("--new-tokens must be at least 2 (the decode rate is measured after the first token)")
    {"make": cmd_make, "run": cmd_run}[a.cmd](a)


if __name__ == "__main__":
    main()
