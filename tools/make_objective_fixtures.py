#!/usr/bin/env python3
"""Writes tests/fixtures/objectives.safetensors: PyTorch's values for mmalign's objectives.

Run by hand (never by CI):  pip install torch safetensors && python3 tools/make_objective_fixtures.py

All in float64 with autograd:
  infonce.*      CLIP's symmetric InfoNCE as HF's clip_loss / open_clip's ClipLoss compute it
                 (normalise, exp(logit_scale), CE both ways, averaged), plain, with label
                 smoothing 0.1, and with soft targets (−Σ Y log_softmax, mean over rows).
  lm.*           shifted next-token CE with ignore_index −100 and label smoothing 0.1
                 (torch.nn.functional.cross_entropy on logits[:, :-1] and labels[:, 1:]).
  itm.*          Linear(D, 2) head + CE on labels [1]*B + [0]*2B.
"""
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "objectives.safetensors")


def main():
    g = torch.Generator().manual_seed(7)
    t = {}
    N, E = 6, 5
    img = torch.randn(N, E, generator=g, dtype=torch.float64)
    txt = torch.randn(N, E, generator=g, dtype=torch.float64)
    t["infonce.img"], t["infonce.txt"] = img, txt
    t["infonce.logit_scale"] = torch.tensor(2.3, dtype=torch.float64)
    soft_i = torch.softmax(torch.randn(N, N, generator=g, dtype=torch.float64), dim=1)
    soft_t = torch.softmax(torch.randn(N, N, generator=g, dtype=torch.float64), dim=1)
    t["infonce.soft_i2t"], t["infonce.soft_t2i"] = soft_i, soft_t
    for tag, eps, soft in (("plain", 0.0, False), ("smooth", 0.1, False), ("soft", 0.0, True)):
        i = img.clone().requires_grad_()
        x = txt.clone().requires_grad_()
        s = torch.tensor(2.3, dtype=torch.float64, requires_grad=True)
        ni = i / i.norm(p=2, dim=-1, keepdim=True)
        nt = x / x.norm(p=2, dim=-1, keepdim=True)
        logits_per_text = s.exp() * nt @ ni.t()
        logits_per_image = logits_per_text.t()
        labels = torch.arange(N)
        if soft:
            li = -(soft_i * F.log_softmax(logits_per_image, dim=1)).sum(1).mean()
            lt = -(soft_t * F.log_softmax(logits_per_text, dim=1)).sum(1).mean()
        else:
            li = F.cross_entropy(logits_per_image, labels, label_smoothing=eps)
            lt = F.cross_entropy(logits_per_text, labels, label_smoothing=eps)
        loss = 0.5 * (li + lt)
        loss.backward()
        t[f"infonce.{tag}.loss"] = loss.detach().reshape(())
        t[f"infonce.{tag}.d_img"], t[f"infonce.{tag}.d_txt"] = i.grad, x.grad
        t[f"infonce.{tag}.d_logit_scale"] = s.grad.reshape(())

    Bn, T, V = 2, 5, 7
    logits = torch.randn(Bn, T, V, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, V, (Bn, T), generator=g)
    labels[0, 3] = -100
    labels[1, 1] = -100
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100,
                           label_smoothing=0.1)
    loss.backward()
    t["lm.logits"], t["lm.labels"] = logits.detach(), labels.to(torch.float64)
    t["lm.loss"], t["lm.d_logits"] = loss.detach().reshape(()), logits.grad

    B3, D = 6, 4
    h = torch.randn(B3, D, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, D, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1, 1, 0, 0, 0, 0])
    loss = F.cross_entropy(h @ w.t() + b, y)
    loss.backward()
    t["itm.h"], t["itm.weight"], t["itm.bias"] = h.detach(), w.detach(), b.detach()
    t["itm.loss"], t["itm.d_h"], t["itm.d_weight"], t["itm.d_bias"] = loss.detach().reshape(()), h.grad, w.grad, b.grad

    t = {k: v.detach().contiguous().clone() for k, v in t.items()}
    save_file(t, OUT, metadata={"torch": torch.__version__})
    print(len(t), "tensors ->", OUT)


if __name__ == "__main__":
    main()
