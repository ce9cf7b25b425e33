#!/usr/bin/env python3
"""PyTorch side of benchmarks/blip: full-size BLIP base inference on the CPU, eager fp32.

    python3 benchmarks/torch/blip.py make --dir DIR
    python3 benchmarks/torch/blip.py run  --dir DIR --task vision|caption|itm [--batch B] [--beams N]
                                          [--new-tokens N] [--iters N] [--threads T] [--out PATH]

make: two random-weight transformers models with the Hub configuration of BLIP base
(Salesforce/blip-image-captioning-base and Salesforce/blip-itm-base-coco: ViT-B/16 at 384 px,
12 layers, 768 wide, 12 heads in both towers — BlipTextConfig's class default is 8 —, vocabulary
30524; the vision weights drawn with std 0.02, see hub_config), torch.manual_seed(0), saved with save_pretrained into DIR/caption
(BlipForConditionalGeneration) and DIR/itm (BlipForImageTextRetrieval), plus DIR/inputs.safetensors,
float32 (token ids are exact in float32): pixel_values [8, 3, 384, 384] (seeded normal) and
itm_ids, itm_mask [16, T]: [CLS] (101), random word ids, [SEP] (102) at lengths between 8 and T,
padded with 0 as BlipProcessor(padding=True) pads. bench_blip (mmalign) reads the same files.

run: one process, one task, torch.set_num_threads(T), under torch.inference_mode():
  vision   DIR/caption's vision_model(pixel_values[:B]).last_hidden_state [B, 577, 768]; per_s = images/s
  caption  DIR/caption's generate(pixel_values[:B], num_beams=N, min_new_tokens = max_new_tokens =
           --new-tokens) — no prompt, so the decoder starts from [DEC] alone; per_s = images/s,
           new_tokens_per_s = B × new tokens / s (the returned sequence's tokens, not every beam's)
  itm      DIR/itm's forward(pixel_values[:1], itm_ids, itm_mask) with the ITM head: the one image is
           encoded once and scored against every text (its states broadcast in the cross-attention);
           per_s = texts/s
One warm-up call, then --iters timed calls; prints one JSON line: per_s from the median call,
median_s, times_s, peak_rss_mb (getrusage of this process: loading included), and for caption the
generated ids. --out writes the outputs as safetensors (vision: "image_embeds", itm: "itm_logits").
Packages from PyPI: torch transformers safetensors numpy.
"""
import argparse
import json
import os
import resource
import statistics
import time

import numpy as np

MAX_IMAGES = 8
TEXTS = 16
TEXT_LEN = 24


def hub_config():
    """BlipConfig with the fields the Hub's BLIP base folders set (the rest are the class defaults)."""
    from transformers import BlipConfig
    text = dict(vocab_size=30524, hidden_size=768, encoder_hidden_size=768, intermediate_size=3072,
                num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=512, hidden_act="gelu",
                layer_norm_eps=1e-12, bos_token_id=30522, eos_token_id=2, pad_token_id=0, sep_token_id=102,
                is_decoder=True)
    # initializer_range: BlipVisionConfig's default 1e-10 (harmless when trained weights are loaded) would
    # leave a randomly initialised vision tower all but constant — every image the same embedding —
    # so the random weights use the text tower's 0.02; the work is the same.
    vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  image_size=384, patch_size=16, hidden_act="gelu", layer_norm_eps=1e-5, initializer_range=0.02)
    return BlipConfig(text_config=text, vision_config=vision, projection_dim=512, image_text_hidden_size=256,
                      logit_scale_init_value=2.6592)


def cmd_make(a):
    import torch
    from safetensors.numpy import save_file
    from transformers import BlipForConditionalGeneration, BlipForImageTextRetrieval
    os.makedirs(a.dir, exist_ok=True)
    for sub, cls in (("caption", BlipForConditionalGeneration), ("itm", BlipForImageTextRetrieval)):
        torch.manual_seed(0)
        model = cls(hub_config()).eval()
        model.save_pretrained(os.path.join(a.dir, sub), safe_serialization=True)
        print(f"made {cls.__name__} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters) "
              f"in {os.path.join(a.dir, sub)}")
    rng = np.random.default_rng(0)
    px = rng.standard_normal((MAX_IMAGES, 3, 384, 384), dtype=np.float32)
    ids = np.zeros((TEXTS, TEXT_LEN), np.float32)
    mask = np.zeros((TEXTS, TEXT_LEN), np.float32)
    for b in range(TEXTS):
        n = TEXT_LEN if b == 0 else int(rng.integers(8, TEXT_LEN + 1))  # text 0 sets the padded length
        ids[b, 0] = 101
        ids[b, 1:n - 1] = rng.integers(1000, 30000, n - 2)
        ids[b, n - 1] = 102
        mask[b, :n] = 1
    save_file({"pixel_values": px, "itm_ids": ids, "itm_mask": mask}, os.path.join(a.dir, "inputs.safetensors"))


def cmd_run(a):
    import torch
    from safetensors.numpy import load_file, save_file
    from transformers import BlipForConditionalGeneration, BlipForImageTextRetrieval
    torch.set_num_threads(a.threads)
    t = load_file(os.path.join(a.dir, "inputs.safetensors"))
    px = torch.from_numpy(np.ascontiguousarray(t["pixel_values"][:a.batch if a.task != "itm" else 1]))
    extra = {}
    if a.task == "itm":
        model = BlipForImageTextRetrieval.from_pretrained(os.path.join(a.dir, "itm"), dtype=torch.float32).eval()
        ids = torch.from_numpy(t["itm_ids"].astype(np.int64))
        mask = torch.from_numpy(t["itm_mask"].astype(np.int64))
        fn = lambda: model(pixel_values=px, input_ids=ids, attention_mask=mask).itm_score  # noqa: E731
        items = ids.shape[0]
    else:
        model = BlipForConditionalGeneration.from_pretrained(os.path.join(a.dir, "caption"), dtype=torch.float32).eval()
        items = a.batch
        if a.task == "vision":
            fn = lambda: model.vision_model(pixel_values=px).last_hidden_state  # noqa: E731
        else:
            n = a.new_tokens
            fn = lambda: model.generate(pixel_values=px, num_beams=a.beams, do_sample=False,  # noqa: E731
                                        min_new_tokens=n, max_new_tokens=n, length_penalty=1.0,
                                        repetition_penalty=1.0, early_stopping=False)
    with torch.inference_mode():
        out = fn()  # warm-up
        secs = []
        for _ in range(a.iters):
            t0 = time.perf_counter()
            out = fn()
            secs.append(time.perf_counter() - t0)
    median = statistics.median(secs)
    if a.task == "caption":
        seqs = out if torch.is_tensor(out) else out.sequences
        extra["ids"] = seqs.tolist()
        extra["new_tokens_per_s"] = a.batch * a.new_tokens / median
        extra["beams"] = a.beams
    elif a.out:
        save_file({"image_embeds" if a.task == "vision" else "itm_logits": out.float().numpy().copy()}, a.out)
    print(json.dumps({"impl": "pytorch", "task": a.task, "batch": items, "threads": a.threads, "iters": a.iters,
                      "per_s": items / median, "median_s": median, "times_s": secs,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      "torch": torch.__version__, **extra}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["make", "run"])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--task", choices=["vision", "caption", "itm"], default="vision")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--beams", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=20)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    if not 1 <= a.batch <= MAX_IMAGES:
        ap.error(f"--batch must lie in [1, {MAX_IMAGES}]")
    {"make": cmd_make, "run": cmd_run}[a.cmd](a)


if __name__ == "__main__":
    main()
