#!/usr/bin/env python3
"""Writes tests/fixtures/training.safetensors: PyTorch references for mmalign's training path.

Run by hand (never by CI):  pip install torch transformers safetensors && python3 tools/make_training_fixtures.py

  clip.*   the tiny CLIP of tests/fixtures/clip/tiny_quick_gelu (loaded with transformers), a batch
           of 3 images and 3 captions, HF's CLIPModel(return_loss=True) loss (the symmetric
           InfoNCE of clip_loss) and autograd's gradient of it for every parameter (clip.grad.<name>).
  adamw.*  torch.optim.AdamW (lr 0.01, betas (0.9, 0.98), eps 1e-6, weight_decay 0.1) applied for
           three steps to a matrix "w" (decayed) and a vector "b" (weight_decay 0, its own group),
           with fixed gradients per step; the parameters after each step.
"""
import os

import torch
from safetensors.torch import save_file
from transformers import CLIPModel

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "training.safetensors")


def main():
    t = {}
    g = torch.Generator().manual_seed(11)
    model = CLIPModel.from_pretrained(os.path.join(HERE, "..", "tests", "fixtures", "clip", "tiny_quick_gelu"),
                                      attn_implementation="eager").train()
    # Dropout is 0 in this config; train() only matters for autograd bookkeeping.
    pixels = torch.randn(3, 3, 32, 32, generator=g)
    ids = torch.tensor([[0, 12, 40, 98, 98, 98], [0, 5, 7, 9, 11, 98], [0, 33, 98, 98, 98, 98]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    out = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, return_loss=True)
    out.loss.backward()
    t["clip.pixel_values"] = pixels
    t["clip.input_ids"] = ids.float()
    t["clip.attention_mask"] = mask.float()
    t["clip.loss"] = out.loss.detach().reshape(())
    for name, p in model.named_parameters():
        t["clip.grad." + name] = p.grad.detach().clone()

    w = torch.randn(4, 5, generator=g, requires_grad=True)
    b = torch.randn(5, generator=g, requires_grad=True)
    t["adamw.w0"], t["adamw.b0"] = w.detach().clone(), b.detach().clone()
    opt = torch.optim.AdamW([{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}],
                            lr=0.01, betas=(0.9, 0.98), eps=1e-6, foreach=False)
    for step in range(1, 4):
        gw, gb = torch.randn(4, 5, generator=g), torch.randn(5, generator=g)
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
        t[f"adamw.gw{step}"], t[f"adamw.gb{step}"] = gw, gb
        t[f"adamw.w{step}"], t[f"adamw.b{step}"] = w.detach().clone(), b.detach().clone()

    save_file({k: v.contiguous().clone() for k, v in t.items()}, OUT, metadata={"torch": torch.__version__})
    print(len(t), "tensors ->", OUT)


if __name__ == "__main__":
    main()
