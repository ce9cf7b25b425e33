#!/usr/bin/env python3
"""Writes tiny random BLIP-2 Q-Formers and what transformers computes with them (tests/fixtures/qformer/).

Run by hand from the repository root (never by CI):

    pip install torch transformers==5.25.0 safetensors
    python3 tools/make_qformer_fixtures.py

Every case folder holds:
  config.json           Blip2QFormerConfig.to_dict() (hidden_size, cross_attention_frequency,
                        encoder_hidden_size, use_qformer_text_input, ...)
  model.safetensors     the parameters as Blip2ForImageTextRetrieval holds them: query_tokens,
                        embeddings.{word,position}_embeddings.weight (text cases), qformer.*
  expected.safetensors  the image states, and per pass <p>: ids / mask (int64), output, the random
                        upstream gradient d_output, and PyTorch autograd's gradients of
                        sum(output * d_output): grad.image and grad.<parameter name> for every
                        parameter the pass reaches
  expected.json         num_query_tokens and the passes: which rows they hold and which mask

Passes, each fed to transformers as its BLIP-2 callers feed Blip2QFormerModel (modeling_blip_2.py):
  query  queries alone, cross-attending to the image (Blip2VisionModelWithProjection)
  itm    queries + text, bidirectional with the text's padding mask (Blip2ForImageTextRetrieval's ITM)
  text   text alone, query_length 0 (Blip2TextModelWithProjection)
  itg    queries + text under the multimodal-causal mask of BLIP-2's first stage (LAVIS
         blip2_qformer.py), given to transformers as an explicit 4-D additive mask

The weights are the classes' initialisation with noise on every parameter (tools/make_blip_fixtures.py's
`randomise`): LayerNorm weights around 1, every bias and every query token non-zero.
"""
import json
import os
import shutil
import sys

import numpy as np
import safetensors
import torch
import transformers
from transformers import Blip2QFormerConfig, Blip2QFormerModel
from transformers.models.blip_2.modeling_blip_2 import Blip2TextEmbeddings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_blip_fixtures as blip  # noqa: E402  (shared helpers: noise, deterministic safetensors, JSON)

OUT = os.path.join(blip.FIXTURES, "qformer")

# Blip2QFormerConfig fields; queries = Blip2Config.num_query_tokens. Encoder widths differ from hidden.
CASES = {
    "f2_q4_query_only": dict(
        config=dict(hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=24,
                    cross_attention_frequency=2, encoder_hidden_size=12, use_qformer_text_input=False),
        queries=4, image_tokens=5, batch=2, passes=["query"], seed=31),
    "f1_q8_text": dict(
        config=dict(hidden_size=12, num_hidden_layers=2, num_attention_heads=3, intermediate_size=20,
                    cross_attention_frequency=1, encoder_hidden_size=20, use_qformer_text_input=True,
                    vocab_size=40, max_position_embeddings=16),
        queries=8, image_tokens=5, batch=2, text_length=6, passes=["query", "itm", "text", "itg"], seed=32),
    "f2_q4_text": dict(
        config=dict(hidden_size=16, num_hidden_layers=3, num_attention_heads=4, intermediate_size=28,
                    cross_attention_frequency=2, encoder_hidden_size=8, use_qformer_text_input=True,
                    vocab_size=40, max_position_embeddings=12),
        queries=4, image_tokens=7, batch=3, text_length=5, passes=["query", "itm", "text", "itg"], seed=33),
}


class Holder(torch.nn.Module):
    """The Q-Former's parameters under Blip2ForImageTextRetrieval's names."""

    def __init__(self, cfg, queries):
        super().__init__()
        self.query_tokens = torch.nn.Parameter(torch.zeros(1, queries, cfg.hidden_size))
        if cfg.use_qformer_text_input:
            self.embeddings = Blip2TextEmbeddings(cfg)
        self.qformer = Blip2QFormerModel(cfg)


def multimodal_causal(keep, queries):
    """[B, 1, N, N] additive: query rows see the query columns; text row i the query columns and
    the kept text columns j <= i (LAVIS: the causal mask with the queries as prefix, times the
    padding mask)."""
    b, t = keep.shape
    n = queries + t
    allowed = torch.zeros(b, n, n, dtype=torch.bool)
    allowed[:, :queries, :queries] = True
    allowed[:, queries:, :queries] = True
    allowed[:, queries:, queries:] = torch.tril(torch.ones(t, t, dtype=torch.bool))
    allowed &= torch.cat([torch.ones(b, queries, dtype=torch.bool), keep.bool()], dim=1)[:, None, :]
    add = torch.zeros(b, n, n)
    add[~allowed] = torch.finfo(torch.float32).min
    return add[:, None]


def run_pass(holder, name, spec, image, ids, keep, gen):
    qf = holder.qformer
    q = spec["queries"]
    batch = spec["batch"]
    holder.zero_grad(set_to_none=True)
    img = image.clone().requires_grad_(True)
    tokens = holder.query_tokens.expand(batch, -1, -1)
    if name == "query":
        out = qf(query_embeds=tokens, encoder_hidden_states=img).last_hidden_state
    elif name == "text":
        out = qf(query_embeds=holder.embeddings(input_ids=ids), query_length=0, attention_mask=keep).last_hidden_state
    else:
        embeds = holder.embeddings(input_ids=ids, query_embeds=tokens)
        if name == "itm":
            mask = torch.cat([torch.ones(batch, q, dtype=torch.long), keep], dim=1)
        else:
            mask = multimodal_causal(keep, q)
        out = qf(query_embeds=embeds, query_length=q, attention_mask=mask, encoder_hidden_states=img).last_hidden_state
    d_out = torch.randn(out.shape, generator=gen)
    (out * d_out).sum().backward()
    t = {f"{name}.output": blip.f32(out), f"{name}.d_output": blip.f32(d_out)}
    if name != "text":
        t[f"{name}.grad.image"] = blip.f32(img.grad)
    for pname, p in holder.named_parameters():
        if p.grad is not None:
            t[f"{name}.grad.{pname}"] = blip.f32(p.grad)
    return t


def make_case(name, spec):
    gen = torch.Generator().manual_seed(spec["seed"])
    cfg = Blip2QFormerConfig(**spec["config"])
    cfg._attn_implementation = "eager"
    torch.manual_seed(spec["seed"])
    holder = Holder(cfg, spec["queries"])
    blip.randomise(holder, gen)
    holder.eval()
    d = os.path.join(OUT, name)
    os.makedirs(d)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")
    state = {k: blip.f32(v) for k, v in holder.state_dict().items()}
    blip.write_safetensors(os.path.join(d, "model.safetensors"), state, {"format": "pt"})

    batch = spec["batch"]
    image = torch.randn(batch, spec["image_tokens"], cfg.encoder_hidden_size, generator=gen)
    tensors = {"image": blip.f32(image)}
    ids = keep = None
    if cfg.use_qformer_text_input:
        t = spec["text_length"]
        ids = torch.randint(1, cfg.vocab_size, (batch, t), generator=gen)
        keep = torch.ones(batch, t, dtype=torch.long)
        keep[1, t - 2:] = 0  # row 1 right-padded by two, as a tokenizer pads a shorter text
        ids[1, t - 2:] = cfg.pad_token_id
        tensors["ids"], tensors["mask"] = blip.i64(ids), blip.i64(keep)
    passes = []
    for p in spec["passes"]:
        tensors.update(run_pass(holder, p, spec, image, ids, keep, gen))
        passes.append(dict(name=p, queries=p != "text", text=p in ("itm", "text", "itg"),
                           attention="multimodal_causal" if p == "itg" else "bidirectional",
                           image=p != "text"))
    blip.write_safetensors(os.path.join(d, "expected.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(d, "expected.json"), "w") as f:
        f.write(blip.compact_json(dict(num_query_tokens=spec["queries"], batch=batch, passes=passes)))


def main():
    torch.use_deterministic_algorithms(True)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    for name, spec in CASES.items():
        make_case(name, spec)
    versions = {"transformers": transformers.__version__, "torch": torch.__version__,
                "safetensors": safetensors.__version__, "numpy": np.__version__,
                "python": sys.version.split()[0]}
    with open(os.path.join(OUT, "VERSIONS.json"), "w") as f:
        f.write(json.dumps(versions, indent=1) + "\n")


if __name__ == "__main__":
    main()
