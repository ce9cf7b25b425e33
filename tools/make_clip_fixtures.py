#!/usr/bin/env python3
"""Writes tiny random CLIP checkpoints and Hugging Face's outputs for them (tests/fixtures/clip/).

Run by hand (never by CI):  pip install torch transformers safetensors && python3 tools/make_clip_fixtures.py

Each config directory holds what `CLIPModel.save_pretrained` writes (config.json,
model.safetensors) and `expected.safetensors`: fixed inputs (pixel_values, input_ids,
attention_mask) and HF's outputs for them in float32 with eager attention: image/text features
and embeddings, logits_per_image/text, both towers' last_hidden_state and pooler_output.
The configs vary heads, layers, image and patch size (including an odd patch grid), widths,
projection dim, hidden_act and the EOS pooling rule (eos_token_id 2 → argmax(ids); otherwise
the first EOS). Generated with the versions recorded in each expected.safetensors' metadata
(transformers 5.24.0, torch 2.15.0 when first written).
"""
import json
import os

import torch
import transformers
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "clip")

CONFIGS = {
    # eos_token_id 2: the legacy rule (pool at argmax(ids)), as in the OpenAI hub configs.
    "tiny_quick_gelu": dict(
        text=dict(vocab_size=99, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=2, max_position_embeddings=16, hidden_act="quick_gelu",
                  eos_token_id=2, bos_token_id=0, pad_token_id=1),
        vision=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                    num_hidden_layers=2, num_attention_heads=4, hidden_act="quick_gelu"),
        projection_dim=16, logit_scale=3.1, text_batch=3, image_batch=2, seq=9),
    # first-EOS rule, an odd 5x5 patch grid, tanh GELU in the text tower, erf GELU in vision.
    "odd_grid_gelu": dict(
        text=dict(vocab_size=500, hidden_size=16, intermediate_size=40, num_hidden_layers=1,
                  num_attention_heads=4, max_position_embeddings=12, hidden_act="gelu_new",
                  eos_token_id=7, bos_token_id=6, pad_token_id=7),
        vision=dict(image_size=30, patch_size=6, hidden_size=24, intermediate_size=36,
                    num_hidden_layers=3, num_attention_heads=3, hidden_act="gelu"),
        projection_dim=8, logit_scale=2.0, text_batch=4, image_batch=3, seq=12),
    # eos is the largest id (CLIP's own convention): every rule agrees; one-layer vision, relu.
    "single_head_relu": dict(
        text=dict(vocab_size=300, hidden_size=20, intermediate_size=30, num_hidden_layers=3,
                  num_attention_heads=5, max_position_embeddings=10, hidden_act="quick_gelu",
                  eos_token_id=299, bos_token_id=298, pad_token_id=299),
        vision=dict(image_size=28, patch_size=14, hidden_size=16, intermediate_size=24,
                    num_hidden_layers=1, num_attention_heads=1, hidden_act="relu"),
        projection_dim=12, logit_scale=4.6052, text_batch=2, image_batch=1, seq=10),
}


def make_ids(gen, spec):
    t = spec["text"]
    B, T, V = spec["text_batch"], spec["seq"], t["vocab_size"]
    eos, bos, pad = t["eos_token_id"], t["bos_token_id"], t["pad_token_id"]
    specials = {eos, bos, pad}
    ids = torch.zeros(B, T, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.long)
    for b in range(B):
        length = T - (b * 3) % (T - 3)  # rows of different lengths, the first one full
        body = []
        while len(body) < length - 2:
            v = int(torch.randint(3, V, (1,), generator=gen))
            # With the legacy rule the pooled token is the row's largest id: keep EOS the largest.
            if v in specials or (eos == 2 and v >= V - 1):
                continue
            body.append(v)
        end = V - 1 if eos == 2 else eos
        row = [bos] + body + [end]
        row += [pad if eos != 2 else end] * (T - len(row))
        ids[b] = torch.tensor(row)
        mask[b, :length] = 1
    return ids, mask


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    for name, spec in CONFIGS.items():
        cfg = CLIPConfig(text_config=spec["text"], vision_config=spec["vision"],
                         projection_dim=spec["projection_dim"])
        cfg._attn_implementation = "eager"
        model = CLIPModel(cfg).eval()
        with torch.no_grad():
            # Random weights of a moderate scale so every part (biases, norms) matters.
            for pname, p in model.named_parameters():
                if "layer_norm" in pname or "layrnorm" in pname or "layernorm" in pname:
                    p.copy_((1.0 if pname.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=gen))
                elif pname == "logit_scale":
                    p.fill_(spec["logit_scale"])
                else:
                    p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        out_dir = os.path.join(ROOT, name)
        model.save_pretrained(out_dir, safe_serialization=True)

        v = spec["vision"]
        pixels = torch.randn(spec["image_batch"], 3, v["image_size"], v["image_size"], generator=gen)
        ids, mask = make_ids(gen, spec)
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, return_dict=True)
            img_feat = model.get_image_features(pixel_values=pixels)
            txt_feat = model.get_text_features(input_ids=ids, attention_mask=mask)
            # The towers' own outputs: in v5, CLIPModel's *_model_output.pooler_output is the
            # projected feature, so ask the towers directly for the pre-projection pooling.
            vis = model.vision_model(pixel_values=pixels, return_dict=True)
            txt = model.text_model(input_ids=ids, attention_mask=mask, return_dict=True)
        as_tensor = lambda x: x if torch.is_tensor(x) else x.pooler_output  # v5 may return outputs
        tensors = {
            "pixel_values": pixels,
            "input_ids": ids.to(torch.float32),  # mmalign's reader takes floats; ids are exact in F32
            "attention_mask": mask.to(torch.float32),
            "image_features": as_tensor(img_feat),
            "text_features": as_tensor(txt_feat),
            "image_embeds": out.image_embeds,
            "text_embeds": out.text_embeds,
            "logits_per_image": out.logits_per_image,
            "logits_per_text": out.logits_per_text,
            "vision_last_hidden_state": vis.last_hidden_state,
            "vision_pooler_output": vis.pooler_output,
            "text_last_hidden_state": txt.last_hidden_state,
            "text_pooler_output": txt.pooler_output,
        }
        tensors = {k: t.detach().to(torch.float32).contiguous().clone() for k, t in tensors.items()}
        meta = {"transformers": transformers.__version__, "torch": torch.__version__,
                "attn_implementation": "eager", "config": name}
        save_file(tensors, os.path.join(out_dir, "expected.safetensors"), metadata=meta)
        print(name, {k: list(t.shape) for k, t in tensors.items()})
    with open(os.path.join(ROOT, "VERSIONS.json"), "w") as f:
        json.dump({"transformers": transformers.__version__, "torch": torch.__version__}, f, indent=1)


if __name__ == "__main__":
    main()
