#!/usr/bin/env python3
"""Golden fixtures for tests/nn/test_torch_golden.cpp: one pre-LN and one post-LN transformer layer
from Hugging Face transformers, with their outputs and autograd gradients.

Run by hand from the repository root (not part of the build or of CI):

    pip install torch transformers safetensors
    python3 tools/make_block_fixtures.py          # writes tests/fixtures/blocks.safetensors

Versions used for the committed fixture: torch 2.15.0+cu132 (run on CPU), transformers 5.24.0,
safetensors 0.8.0, Python 3.11.7 (also recorded in the file's __metadata__).

What is in the file (all tensors F32; the reference itself is computed in float64):
  pre.*   CLIPEncoderLayer (pre-LN): hidden 16, 4 heads, intermediate 32, quick_gelu, eps 1e-5.
          x [2, 5, 16]; causal self-attention combined with a key padding mask
          pre.mask = [[1,1,1,1,1],[1,1,1,0,0]], turned into the additive [B,1,T,T] mask by
          masking_utils.create_causal_mask, exactly as CLIPTextModel.forward does.
  post.*  BertLayer (post-LN) with cross-attention (is_decoder, add_cross_attention): hidden 16,
          4 heads, intermediate 32, erf gelu, eps 1e-12, dropout 0. Bidirectional (NOT causal)
          self-attention with padding mask post.mask = [[1,1,1,1,1],[1,1,1,0,0]] built by
          create_bidirectional_mask (what BertModel builds when is_decoder=False, and what BLIP's text
          encoder / the Q-Former use); cross-attention over post.enc [2, 3, 16] with
          post.enc_mask = [[1,1,1],[1,1,0]]. BertCrossAttention's key/value layers take
          config.hidden_size inputs, so the encoder width equals the hidden width (16).
  For each block: <b>.params.<HF name> (state_dict keys of the layer), <b>.x, <b>.r,
  <b>.y = layer(x), and for loss = sum(y * r): <b>.grad.x, <b>.grad.<HF name>, post.grad.enc.

Notes on precision: the module and inputs are float64. HF's CLIP eager attention computes its
softmax in float32 (softmax(..., dtype=torch.float32)), so pre.* carries ~1e-7 relative error from
that step; far below the C++ test's float tolerances (1e-5 forward, 1e-4 gradients).
Random weights (normal std 0.2, biases std 0.1, LayerNorm scales 1 + 0.1·N(0,1), shifts 0.1·N(0,1))
make every parameter affect the loss, so a mis-loaded or mis-named tensor cannot pass — except the
attention key biases: softmax is invariant to them (their reference gradients are ~0), so only the
C++ test's name check covers those.
"""

import inspect
import json
import os
import platform
import sys

import safetensors
import torch
import transformers
from safetensors.torch import save
from transformers import BertConfig, CLIPTextConfig
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
from transformers.models.bert.modeling_bert import BertLayer
from transformers.models.clip.modeling_clip import CLIPEncoderLayer

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "blocks.safetensors")

B, T, TE, D, H, F = 2, 5, 3, 16, 4, 32
SELF_KEEP = [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
ENC_KEEP = [[1, 1, 1], [1, 1, 0]]
R_SEEDS = {"pre": 11, "post": 22}  # seeds of the loss weights r, one per block


def randomize(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Non-default values everywhere: a parameter left at 0 or 1 would hide a loading bug."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if isinstance(_owner(module, name), torch.nn.LayerNorm):
                p.copy_(1.0 + 0.1 * noise if name.endswith("weight") else 0.1 * noise)
            else:
                p.copy_(0.2 * noise if name.endswith("weight") else 0.1 * noise)


def _owner(module: torch.nn.Module, param_name: str) -> torch.nn.Module:
    return module.get_submodule(param_name.rsplit(".", 1)[0])


def require_params(fn, names: list, why: str) -> None:
    """The mask plumbing of HF layers changes between major versions (4.x CLIPEncoderLayer took
    attention_mask and causal_attention_mask separately); refuse to guess with another API."""
    params = list(inspect.signature(fn).parameters)
    if params[: len(names)] != names:
        raise SystemExit(f"{fn.__qualname__}{inspect.signature(fn)}: expected leading parameters {names} ({why}); "
                         f"this script was written against transformers 5.24 — adapt the mask construction")


def check_mask(mask4d: torch.Tensor, keep: torch.Tensor, causal: bool) -> None:
    """The C++ side re-creates the mask from key_keep (+ causal); make sure HF meant the same."""
    bq, _, tq, tk = mask4d.shape
    want = keep[:, None, None, :].bool().expand(bq, 1, tq, tk)
    if causal:
        want = want & torch.ones(tq, tk, dtype=torch.bool).tril()
    visible = mask4d == 0
    assert torch.equal(visible, want), f"HF mask pattern differs from key_keep/causal:\n{mask4d}"
    assert torch.all(mask4d[~want] <= torch.finfo(mask4d.dtype).min / 2), "hidden keys must get ~finfo.min"


def run(prefix: str, layer: torch.nn.Module, inputs: dict, call, extra: dict) -> dict:
    """Forward in float64, loss = sum(y * r), backward; returns the float32 tensors to store."""
    layer.zero_grad(set_to_none=True)
    y = call()
    gen = torch.Generator().manual_seed(R_SEEDS[prefix])
    r = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    (y * r).sum().backward()
    out = {}
    for name, p in layer.state_dict().items():
        out[f"{prefix}.params.{name}"] = p
    for name, p in layer.named_parameters():
        assert p.grad is not None, f"{prefix}: no gradient reached {name}"
        out[f"{prefix}.grad.{name}"] = p.grad
    for name, t in inputs.items():
        out[f"{prefix}.{name}"] = t.detach()
        out[f"{prefix}.grad.{name}"] = t.grad
    out.update({f"{prefix}.{k}": v for k, v in extra.items()})
    out[f"{prefix}.r"] = r
    out[f"{prefix}.y"] = y.detach()
    # The state dict must hold parameters only (no buffers), so that the C++ visit() covers it all.
    assert set(layer.state_dict()) == {n for n, _ in layer.named_parameters()}
    return {k: v.detach().to(torch.float32).contiguous() for k, v in out.items()}


def make_pre(gen: torch.Generator) -> dict:
    cfg = CLIPTextConfig(hidden_size=D, num_attention_heads=H, intermediate_size=F, hidden_act="quick_gelu",
                         layer_norm_eps=1e-5, attention_dropout=0.0, attn_implementation="eager")
    require_params(CLIPEncoderLayer.forward, ["self", "hidden_states", "attention_mask"],
                   "one combined causal+padding 4-D mask, as CLIPTextModel passes it")
    layer = CLIPEncoderLayer(cfg)
    randomize(layer, gen)
    layer.double().eval()
    print("pre state_dict:", list(layer.state_dict().keys()))
    x = torch.randn(B, T, D, generator=gen, dtype=torch.float64, requires_grad=True)
    keep = torch.tensor(SELF_KEEP, dtype=torch.long)
    # CLIPTextModel.forward: one combined causal + padding mask, additive [B, 1, T, T].
    mask4d = create_causal_mask(config=cfg, inputs_embeds=x, attention_mask=keep, cache=None)
    assert mask4d is not None and mask4d.shape == (B, 1, T, T) and mask4d.dtype == torch.float64
    check_mask(mask4d, keep, causal=True)
    # is_causal=True is what CLIPTextModel passes down; eager attention uses only the mask.
    return run("pre", layer, {"x": x}, lambda: layer(x, mask4d, is_causal=True), {"mask": keep})


def make_post(gen: torch.Generator) -> dict:
    cfg = BertConfig(hidden_size=D, num_attention_heads=H, intermediate_size=F, hidden_act="gelu",
                     layer_norm_eps=1e-12, is_decoder=True, add_cross_attention=True,
                     attention_probs_dropout_prob=0.0, hidden_dropout_prob=0.0, attn_implementation="eager")
    require_params(BertLayer.forward, ["self", "hidden_states", "attention_mask", "encoder_hidden_states",
                                       "encoder_attention_mask"], "separate self and cross 4-D masks")
    layer = BertLayer(cfg)
    randomize(layer, gen)
    layer.double().eval()
    print("post state_dict:", list(layer.state_dict().keys()))
    x = torch.randn(B, T, D, generator=gen, dtype=torch.float64, requires_grad=True)
    enc = torch.randn(B, TE, D, generator=gen, dtype=torch.float64, requires_grad=True)
    keep = torch.tensor(SELF_KEEP, dtype=torch.long)
    enc_keep = torch.tensor(ENC_KEEP, dtype=torch.long)
    self4d = create_bidirectional_mask(config=cfg, inputs_embeds=x, attention_mask=keep)
    cross4d = create_bidirectional_mask(config=cfg, inputs_embeds=x, attention_mask=enc_keep,
                                        encoder_hidden_states=enc)
    assert self4d.shape == (B, 1, T, T) and cross4d.shape == (B, 1, T, TE)
    check_mask(self4d, keep, causal=False)
    check_mask(cross4d, enc_keep, causal=False)
    return run("post", layer, {"x": x, "enc": enc},
               lambda: layer(x, attention_mask=self4d, encoder_hidden_states=enc, encoder_attention_mask=cross4d),
               {"mask": keep, "enc_mask": enc_keep})


def deterministic(blob: bytes) -> bytes:
    """safetensors writes __metadata__ in hash-map order, so two runs differ byte-wise; rewrite the
    JSON header with sorted keys (same offsets, padded with spaces to 8 bytes as the format allows)
    so that regenerating an unchanged fixture leaves git clean."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + blob[8 + n:]


def main() -> None:
    torch.manual_seed(0)  # nothing should draw from the global generator; belt and braces
    tensors = {}
    tensors.update(make_pre(torch.Generator().manual_seed(1)))
    tensors.update(make_post(torch.Generator().manual_seed(2)))
    meta = {
        "generator": "tools/make_block_fixtures.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
        "pre": "CLIPEncoderLayer, hidden 16, heads 4, intermediate 32, quick_gelu, eps 1e-5, causal+padding mask",
        "post": "BertLayer, hidden 16, heads 4, intermediate 32, gelu, eps 1e-12, bidirectional padding mask, "
                "cross-attention over enc [2,3,16] with enc_mask",
        "loss": "sum(y * r); computed in float64, stored as float32",
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "wb") as f:
        f.write(deterministic(save(tensors, metadata=meta)))
    print(f"wrote {len(tensors)} tensors, {os.path.getsize(OUT)} bytes to {os.path.normpath(OUT)}")
    for k in sorted(tensors):
        print(f"  {k:55s} {list(tensors[k].shape)}")


if __name__ == "__main__":
    sys.exit(main())
