#!/usr/bin/env python3
"""PyTorch side of benchmarks/train_clip: the same CLIP training step as bench_train_clip run.

    python3 benchmarks/torch/train_clip.py --dir DIR [--threads T] [--device cpu|cuda] [--tf32]
                                                               (pip install torch transformers safetensors)

Loads DIR/config.json into transformers' CLIPModel (SDPA attention), the same initial weights
(DIR/init.safetensors, written by `bench_train_clip prepare`) and the same batches, and runs the
same step: features, soft-target symmetric InfoNCE, backward, clip_grad_norm_(1.0), AdamW
(lr 1e-3, betas (0.9, 0.98), eps 1e-6, weight decay 0.05 on matrices except token/position
tables), clamp of logit_scale to [0, ln 100]. Prints one JSON line like the C++ side. With
--device cuda the model and each batch go to the GPU (TF32 off unless --tf32); each step ends on
the host when its loss is read, as on mmalign's side (bench_train_clip_gpu).
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import CLIPConfig, CLIPModel


def decays(name, p):
    if p.ndim < 2:
        return False
    return not any(e in name for e in ("token_embedding", "position_embedding"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--tf32", action="store_true")
    ap.add_argument("--bf16", action="store_true",
                    help="forward and loss under torch.autocast(bfloat16): float weights and optimizer, bf16 products")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = a.tf32
        torch.backends.cudnn.allow_tf32 = a.tf32
    cfg = CLIPConfig.from_json_file(f"{a.dir}/config.json")
    model = CLIPModel(cfg)
    missing, unexpected = model.load_state_dict(load_file(f"{a.dir}/init.safetensors"), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    assert not missing and not unexpected, (missing, unexpected)
    model.to(a.device).train()
    b = load_file(f"{a.dir}/batches.safetensors")
    steps, B = b["pixel_values"].shape[:2]
    pixels = b["pixel_values"].reshape(steps, B, 1, 28, 28).to(a.device)
    ids, mask = b["input_ids"].long().to(a.device), b["attention_mask"].long().to(a.device)
    soft = b["soft_targets"].to(a.device)
    groups = [{"params": [p for n, p in model.named_parameters() if decays(n, p)], "weight_decay": 0.05},
              {"params": [p for n, p in model.named_parameters() if not decays(n, p)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.98), eps=1e-6)
    losses = []
    t0 = time.perf_counter()
    for s in range(steps):
        if s == 2:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        with torch.autocast(device_type=a.device, dtype=torch.bfloat16, enabled=a.bf16):
            fi = model.get_image_features(pixel_values=pixels[s])
            ft = model.get_text_features(input_ids=ids[s], attention_mask=mask[s])
            fi = fi if torch.is_tensor(fi) else fi.pooler_output
            ft = ft if torch.is_tensor(ft) else ft.pooler_output
            ni, nt = F.normalize(fi, dim=-1, eps=0.0), F.normalize(ft, dim=-1, eps=0.0)
            scale = model.logit_scale.exp()
            li, lt = scale * ni @ nt.t(), scale * nt @ ni.t()
            y = soft[s]
            loss = 0.5 * (-(y * F.log_softmax(li, 1)).sum(1).mean() - (y * F.log_softmax(lt, 1)).sum(1).mean())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
    secs = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    impl = "pytorch" if a.device == "cpu" else "pytorch-cuda"
    precision = "bf16" if a.bf16 else "tf32" if a.tf32 else "fp32"
    print(json.dumps({"impl": impl, "device": a.device, "tf32": a.tf32, "precision": precision, "threads": a.threads,
                      "steps": steps, "batch": B,
                      "steps_per_s": (steps - 2) / secs, "peak_rss_mb": rss, "losses": losses,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
