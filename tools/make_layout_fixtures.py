#!/usr/bin/env python3
"""Writes tests/fixtures/clip_layouts/<name>/{config.json,keys.json} for the four OpenAI CLIP layouts.

Run by hand:  pip install torch transformers && python3 tools/make_layout_fixtures.py
config.json holds the architecture fields of the hub configs (openai/clip-vit-base-patch32, -base-patch16,
-large-patch14, -large-patch14-336 on the Hugging Face hub); keys.json maps every state-dict key of transformers' CLIPModel built from it (on the
meta device: no weights) to its shape, so the test checks that mmalign builds the same tensors.
"""
import json
import os

import torch
from transformers import CLIPConfig, CLIPModel

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "clip_layouts")
B_TEXT = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8)
L_TEXT = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
B_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
L_VISION = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16)
LAYOUTS = {
    "vit-base-patch32": (B_TEXT, dict(B_VISION, image_size=224, patch_size=32), 512),
    "vit-base-patch16": (B_TEXT, dict(B_VISION, image_size=224, patch_size=16), 512),
    "vit-large-patch14": (L_TEXT, dict(L_VISION, image_size=224, patch_size=14), 768),
    "vit-large-patch14-336": (L_TEXT, dict(L_VISION, image_size=336, patch_size=14), 768),
}

for name, (text, vision, proj) in LAYOUTS.items():
    cfg = CLIPConfig(text_config=dict(text, eos_token_id=2, bos_token_id=0, pad_token_id=1),
                     vision_config=vision, projection_dim=proj)
    with torch.device("meta"):
        model = CLIPModel(cfg)
    d = os.path.join(ROOT, name)
    os.makedirs(d, exist_ok=True)
    cfg.to_json_file(os.path.join(d, "config.json"))
    keys = {k: list(v.shape) for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    json.dump(keys, open(os.path.join(d, "keys.json"), "w"), indent=0, sort_keys=True)
    print(name, len(keys), "tensors", sum(v.numel() for v in model.parameters()), "parameters")
