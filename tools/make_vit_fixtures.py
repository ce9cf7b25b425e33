#!/usr/bin/env python3
"""Writes tiny random BLIP and BLIP-2 vision towers and Hugging Face's outputs for them
(tests/fixtures/vit/).

Run by hand (never by CI):  pip install torch transformers safetensors && python3 tools/make_vit_fixtures.py

Each directory holds what `save_pretrained` of the tower writes (config.json, model.safetensors
with the state-dict keys of BlipVisionModel / Blip2VisionModel: a fused `self_attn.qkv` weight
[3D, D] and bias [3D], raw `embeddings.position_embedding` [1, N+1, D] and
`embeddings.class_embedding` [1, 1, D], a patch convolution with bias) and `expected.safetensors`:
a fixed pixel batch and HF's `last_hidden_state` and `pooler_output` for it, float32, eager
attention.

  blip               BlipVisionModel, random weights everywhere (the k third of qkv.bias too)
  blip2              Blip2VisionModel with qkv_bias=True; the k third of every qkv.bias is zero,
                     as in the hub checkpoints (HF's conversion from LAVIS concatenates q_bias,
                     zeros, v_bias), so the same outputs hold for LAVIS's q_bias/v_bias form
  blip2_no_qkv_bias  Blip2VisionModel with qkv_bias=False (no q/k/v bias at all), tanh GELU

Generated with the versions recorded in each expected.safetensors' metadata.
"""
import os

import torch
import transformers
from safetensors.torch import save_file
from transformers import Blip2VisionConfig, Blip2VisionModel, BlipVisionConfig, BlipVisionModel

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "vit")

CONFIGS = {
    "blip": (BlipVisionConfig, BlipVisionModel,
             dict(image_size=12, patch_size=4, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                  num_attention_heads=2, hidden_act="gelu", layer_norm_eps=1e-5)),
    "blip2": (Blip2VisionConfig, Blip2VisionModel,
              dict(image_size=10, patch_size=5, hidden_size=12, intermediate_size=20, num_hidden_layers=2,
                   num_attention_heads=3, hidden_act="gelu", layer_norm_eps=1e-6, qkv_bias=True)),
    "blip2_no_qkv_bias": (Blip2VisionConfig, Blip2VisionModel,
                          dict(image_size=8, patch_size=4, hidden_size=8, intermediate_size=12, num_hidden_layers=1,
                               num_attention_heads=2, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
                               qkv_bias=False)),
}


def main():
    gen = torch.Generator().manual_seed(4321)
    for name, (config_cls, model_cls, fields) in CONFIGS.items():
        cfg = config_cls(**fields)
        cfg._attn_implementation = "eager"
        model = model_cls(cfg).eval()
        D = fields["hidden_size"]
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "layer_norm" in pname or "layernorm" in pname:
                    p.copy_((1.0 if pname.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=gen))
                else:
                    p.copy_(0.2 * torch.randn(p.shape, generator=gen))
                if name == "blip2" and pname.endswith("self_attn.qkv.bias"):
                    p[D:2 * D] = 0.0
        out_dir = os.path.join(ROOT, name)
        model.save_pretrained(out_dir, safe_serialization=True)
        pixels = torch.randn(2, 3, fields["image_size"], fields["image_size"], generator=gen)
        with torch.no_grad():
            out = model(pixel_values=pixels, return_dict=True)
        tensors = {"pixel_values": pixels, "last_hidden_state": out.last_hidden_state,
                   "pooler_output": out.pooler_output}
        tensors = {k: t.detach().to(torch.float32).contiguous().clone() for k, t in tensors.items()}
        meta = {"transformers": transformers.__version__, "torch": torch.__version__,
                "attn_implementation": "eager", "config": name}
        save_file(tensors, os.path.join(out_dir, "expected.safetensors"), metadata=meta)
        print(name, {k: list(t.shape) for k, t in tensors.items()})


if __name__ == "__main__":
    main()
