#!/usr/bin/env python3
"""Writes tests/fixtures/blip2_layouts/<name>/{config.json,keys.json,tied.json} for full-size BLIP-2 layouts.

Run by hand:  pip install torch transformers==5.25.0 && python3 tools/make_blip2_layout_fixtures.py

Layouts (the architecture fields of the Salesforce folders on the Hugging Face hub; every other field
is the transformers class default, which is what those folders leave unset: EVA ViT-g/14 with 39
layers of width 1408, a BERT-base Q-Former with cross-attention every second layer, 32 queries):
  blip2-opt-2.7b    Blip2ForConditionalGeneration, OPT-2.7b: hidden 2560, 32 layers, 32 heads,
                    ffn 10240, vocabulary 50304, image_token_index 50265
  blip2-opt-6.7b    the same with OPT-6.7b: hidden 4096, 32 layers, 32 heads, ffn 16384
  blip2-itm-vit-g   Blip2ForImageTextRetrieval: the Q-Former's text path (use_qformer_text_input)
                    and a WordPiece vocabulary of 30523 ([DEC] added)
Each model is built on the meta device (no memory). keys.json maps every state-dict key to its
shape (Blip2Model's are the same as Blip2ForConditionalGeneration's: checked); tied.json maps each
key that is the same parameter as another (the tied LM head) to that other key — transformers'
save_pretrained writes only the latter. benchmarks/torch/blip2.py builds its checkpoints from
blip2_config() below.
"""
import json
import os

import torch
import transformers
from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2ForImageTextRetrieval, Blip2Model

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "blip2_layouts")
OPT_SPECIALS = dict(bos_token_id=2, pad_token_id=1, eos_token_id=50118, vocab_size=50304, max_position_embeddings=2048,
                    do_layer_norm_before=True, activation_function="relu")
LAYOUTS = {
    "blip2-opt-2.7b": (Blip2ForConditionalGeneration, dict(
        text_config=dict(OPT_SPECIALS, model_type="opt", hidden_size=2560, word_embed_proj_dim=2560, num_hidden_layers=32,
                         num_attention_heads=32, ffn_dim=10240),
        image_token_index=50265)),
    "blip2-opt-6.7b": (Blip2ForConditionalGeneration, dict(
        text_config=dict(OPT_SPECIALS, model_type="opt", hidden_size=4096, word_embed_proj_dim=4096, num_hidden_layers=32,
                         num_attention_heads=32, ffn_dim=16384),
        image_token_index=50265)),
    "blip2-itm-vit-g": (Blip2ForImageTextRetrieval, dict(
        qformer_config=dict(vocab_size=30523, use_qformer_text_input=True))),
}


def blip2_config(name, **text_overrides):
    """The Blip2Config of layout `name` (text_overrides change the OPT fields, e.g. num_hidden_layers)."""
    cls, fields = LAYOUTS[name]
    fields = dict(fields)
    if text_overrides:
        fields["text_config"] = dict(fields["text_config"], **text_overrides)
    cfg = Blip2Config(num_query_tokens=32, **fields)
    cfg.architectures = [cls.__name__]
    return cfg


def main():
    for name, (cls, _) in LAYOUTS.items():
        cfg = blip2_config(name)
        with torch.device("meta"):
            model = cls(cfg)
        d = os.path.join(ROOT, name)
        os.makedirs(d, exist_ok=True)
        cfg.to_json_file(os.path.join(d, "config.json"))
        keys = {k: list(v.shape) for k, v in model.state_dict().items()}
        # The state dict lists a shared parameter under every name; the first name is the one saved.
        first, tied = {}, {}
        for k, p in model.named_parameters(remove_duplicate=False):
            if first.setdefault(id(p), k) != k:
                tied[k] = first[id(p)]
        if cls is Blip2ForConditionalGeneration:  # the test reads these keys for Blip2Model too
            with torch.device("meta"):
                base = Blip2Model(cfg)
            assert {k: list(v.shape) for k, v in base.state_dict().items()} == keys, "Blip2Model's keys differ"
        json.dump(keys, open(os.path.join(d, "keys.json"), "w"), indent=0, sort_keys=True)
        json.dump(tied, open(os.path.join(d, "tied.json"), "w"), indent=1, sort_keys=True)
        unique = sum(p.numel() for p in model.parameters())
        print(f"{name}: {len(keys)} state-dict keys, {len(tied)} tied, {unique} parameters (transformers {transformers.__version__})")


if __name__ == "__main__":
    main()
