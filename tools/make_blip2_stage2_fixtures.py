#!/usr/bin/env python3
"""Writes a tiny BLIP-2 model and its second-stage (generative) loss and gradients as transformers
computes them (tests/fixtures/blip2_stage2/).

Run by hand from the repository root (never by CI):

    pip install torch transformers==5.25.0 safetensors
    python3 tools/make_blip2_stage2_fixtures.py

Stage 2 as LAVIS's Blip2OPT.forward (blip2_opt.py) runs it, through transformers'
Blip2ForConditionalGeneration.forward(labels=...) (modeling_blip_2.py):
  text     caption + "\\n", OPT tokenizer (</s> first), right padding, at most 32 tokens
  targets  ids with pads -> -100 and the first prompt_length tokens -> -100 (LAVIS), then -100 on
           the Q soft-prompt rows in front
  inputs   [<image> x Q, caption ids]: the image rows take language_projection(Q-Former output)
           (transformers' masked_scatter), attention [1] x Q + the caption's mask
  loss     logits[:, -labels.size(1):] and ForCausalLMLoss (loss/loss_utils.py): shifted
           cross-entropy, mean over the counted tokens, no smoothing
The vision tower and the language model are frozen (requires_grad False). The script also checks
that LAVIS's own form (the soft prompt concatenated in front of embed_tokens(ids), OPTForCausalLM's
loss) gives the same loss and gradients. A second backward with the vision tower trainable gives
the gradients of its parameters too (finetune-caption with an unfrozen ViT).

The tokenizer is tests/fixtures/blip2/model's (a tiny byte-level BPE; </s> = 2, <pad> = 1,
<image> = 400, 401 tokens).

Files:
  config.json           Blip2Config.to_dict() (image_token_index 400)
  model.safetensors     every parameter of Blip2ForConditionalGeneration (lm_head tied, not repeated)
  expected.safetensors  pixel_values [N, 3, 32, 32]; ids, attention_mask, labels [N, T] (int64: the
                        caption tokens and LAVIS's targets); hf_input_ids, hf_labels [N, Q+T] (what
                        Blip2ForConditionalGeneration was given); loss [1]; loss_no_prompt [1] (the
                        same with prompt_length 0: </s> counted as a target); grad.<name> for query_tokens,
                        qformer.*, language_projection.* (vision and LM frozen); vision_grad.<name> for
                        every vision_model.* parameter with the tower unfrozen, and vision_loss [1]
  expected.json         captions, prompt, prompt_length, token ids, sizes
"""
import json
import os
import shutil
import sys

import numpy as np
import safetensors
import torch
import transformers
from transformers import AutoTokenizer, Blip2Config, Blip2ForConditionalGeneration

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_blip_fixtures as blip  # noqa: E402  (shared helpers: noise, deterministic safetensors, JSON)

OUT = os.path.join(blip.FIXTURES, "blip2_stage2")
TOKENIZER = os.path.join(blip.FIXTURES, "blip2", "model")
SEED = 43
Q = 4
IMAGE_TOKEN = 400
PROMPT = "a photo of"
CAPTIONS = ["a photo of a dog on the grass", "a photo of two cats",
            "a photo of a man riding a red bike down the road"]
MAX_TXT_LEN = 32


def build(tok):
    cfg = Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8, qkv_bias=True),
        qformer_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                            cross_attention_frequency=1),
        text_config=dict(model_type="opt", vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, ffn_dim=64,
                         num_attention_heads=4, max_position_embeddings=64, word_embed_proj_dim=32,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        num_query_tokens=Q, image_token_index=IMAGE_TOKEN)
    for c in (cfg, cfg.vision_config, cfg.qformer_config, cfg.text_config):
        c._attn_implementation = "eager"
    torch.manual_seed(SEED)  # the initial weights (randomise adds its noise to them)
    model = Blip2ForConditionalGeneration(cfg)
    gen = torch.Generator().manual_seed(SEED)
    blip.randomise(model, gen)
    model.eval()  # no dropout: the C++ has none
    return cfg, model, gen


def lavis_targets(ids, keep, prompt_length):
    targets = ids.masked_fill(keep == 0, -100)  # LAVIS masks pad ids; with right padding the same rows
    targets[:, :prompt_length] = -100
    return targets


def hf_loss(model, pixel_values, ids, keep, targets):
    n = ids.shape[0]
    input_ids = torch.cat([torch.full((n, Q), IMAGE_TOKEN, dtype=torch.long), ids], dim=1)
    attention = torch.cat([torch.ones(n, Q, dtype=torch.long), keep], dim=1)
    labels = torch.cat([torch.full((n, Q), -100, dtype=torch.long), targets], dim=1)
    out = model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention, labels=labels)
    return out.loss, input_ids, labels


def lavis_loss(model, pixel_values, ids, keep, targets):
    """blip2_opt.py's form: the soft prompt concatenated in front, OPTForCausalLM's own loss."""
    n = ids.shape[0]
    image_embeds = model.vision_model(pixel_values=pixel_values).last_hidden_state
    q = model.qformer(query_embeds=model.query_tokens.expand(n, -1, -1), encoder_hidden_states=image_embeds).last_hidden_state
    inputs_opt = model.language_projection(q)
    embeds = torch.cat([inputs_opt, model.language_model.get_input_embeddings()(ids)], dim=1)
    attention = torch.cat([torch.ones(n, Q, dtype=torch.long), keep], dim=1)
    labels = torch.cat([torch.full((n, Q), -100, dtype=torch.long), targets], dim=1)
    return model.language_model(inputs_embeds=embeds, attention_mask=attention, labels=labels).loss


def grads(model, prefixes):
    out = {}
    for name, p in model.named_parameters():
        if p.requires_grad and name.startswith(prefixes):
            out[name] = torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
    return out


def set_trainable(model, vision):
    for name, p in model.named_parameters():
        frozen = name.startswith("language_model.") or (name.startswith("vision_model.") and not vision)
        p.requires_grad_(not frozen)


def main():
    torch.use_deterministic_algorithms(True)
    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    tok.padding_side = "right"
    cfg, model, gen = build(tok)
    n = len(CAPTIONS)
    pixel_values = torch.randn(n, 3, 32, 32, generator=gen)
    enc = tok([c + "\n" for c in CAPTIONS], return_tensors="pt", padding="longest", truncation=True,
              max_length=MAX_TXT_LEN)
    ids, keep = enc.input_ids, enc.attention_mask
    assert (ids[:, 0] == tok.bos_token_id).all() and keep[:, -1].min() == 0 and keep.sum(1).max() == ids.shape[1]
    prompt_length = len(tok(PROMPT).input_ids)  # LAVIS: prompt_tokens.attention_mask.sum(1), </s> included
    targets = lavis_targets(ids, keep, prompt_length)

    set_trainable(model, vision=False)
    loss, input_ids, labels = hf_loss(model, pixel_values, ids, keep, targets)
    loss.backward()
    trainable = ("query_tokens", "qformer.", "language_projection.")
    g = grads(model, trainable)
    assert all(p.grad is None for name, p in model.named_parameters() if not name.startswith(trainable))

    model.zero_grad(set_to_none=True)
    lavis = lavis_loss(model, pixel_values, ids, keep, targets)
    lavis.backward()
    g_lavis = grads(model, trainable)
    assert abs(lavis.item() - loss.item()) <= 1e-6 * abs(loss.item()), (lavis.item(), loss.item())
    for name in g:
        scale = max(g[name].abs().max().item(), 1e-6)
        assert (g[name] - g_lavis[name]).abs().max().item() <= 1e-5 * scale, name

    # Without a prompt (LAVIS's pretraining prompt is ""), </s> itself is a target, predicted from
    # the last soft row; labels over all Q+T rows keep that term in transformers' loss too.
    with torch.no_grad():
        no_prompt = lavis_targets(ids, keep, 0)
        loss_no_prompt, _, _ = hf_loss(model, pixel_values, ids, keep, no_prompt)
        lavis_no_prompt = lavis_loss(model, pixel_values, ids, keep, no_prompt)
    assert abs(lavis_no_prompt.item() - loss_no_prompt.item()) <= 1e-6 * abs(loss_no_prompt.item())

    model.zero_grad(set_to_none=True)
    set_trainable(model, vision=True)
    vision_loss, _, _ = hf_loss(model, pixel_values, ids, keep, targets)
    vision_loss.backward()
    gv = grads(model, ("vision_model.",))  # the rest equal g: the frozen tower changes no other gradient

    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    with open(os.path.join(OUT, "config.json"), "w") as f:
        f.write(json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")
    state = {k: blip.f32(v) for k, v in model.state_dict().items() if k != "language_model.lm_head.weight"}
    blip.write_safetensors(os.path.join(OUT, "model.safetensors"), state, {"format": "pt"})
    tensors = {"pixel_values": blip.f32(pixel_values), "ids": blip.i64(ids), "attention_mask": blip.i64(keep),
               "labels": blip.i64(targets), "hf_input_ids": blip.i64(input_ids), "hf_labels": blip.i64(labels),
               "loss": blip.f32(loss.detach().reshape(1)), "loss_no_prompt": blip.f32(loss_no_prompt.reshape(1)),
               "vision_loss": blip.f32(vision_loss.detach().reshape(1))}
    for name, v in g.items():
        tensors["grad." + name] = blip.f32(v)
    for name, v in gv.items():
        tensors["vision_grad." + name] = blip.f32(v)
    blip.write_safetensors(os.path.join(OUT, "expected.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        f.write(blip.compact_json(dict(captions=CAPTIONS, prompt=PROMPT, prompt_length=prompt_length,
                                       image_token_index=IMAGE_TOKEN, num_query_tokens=Q, batch=n,
                                       text_length=int(ids.shape[1]), bos_token_id=tok.bos_token_id,
                                       pad_token_id=tok.pad_token_id, counted_tokens=int((labels[:, 1:] != -100).sum()))))
    versions = {"transformers": transformers.__version__, "torch": torch.__version__,
                "safetensors": safetensors.__version__, "numpy": np.__version__, "python": sys.version.split()[0]}
    with open(os.path.join(OUT, "VERSIONS.json"), "w") as f:
        f.write(json.dumps(versions, indent=1) + "\n")
    print({"loss": round(loss.item(), 6), "vision_loss": round(vision_loss.item(), 6), "grads": len(g),
           "vision_grads": len(gv)})


if __name__ == "__main__":
    main()
