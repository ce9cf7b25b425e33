#!/usr/bin/env python3
"""Writes a tiny BLIP-2 first-stage model and what PyTorch computes with it (tests/fixtures/blip2_stage1/).

Run by hand from the repository root (never by CI):

    pip install torch transformers==5.25.0 safetensors
    python3 tools/make_blip2_stage1_fixtures.py

The model is transformers' Blip2ForImageTextRetrieval (modeling_blip_2.py: vision_model,
query_tokens, embeddings, qformer, vision_projection, text_projection, itm_head) plus what LAVIS's
Blip2Qformer (blip2_qformer.py) adds for stage 1: BERT's LM head (transformers' BertLMPredictionHead,
modeling_bert.py) whose decoder weight is the Q-Former's word-embedding table and whose decoder bias
is its `bias`, and the temperature `temp`. The losses are LAVIS's Blip2Qformer.forward on one process,
with the hard negatives fixed instead of drawn:
  ITC  max over queries of the cosine, / temp, ½ (CE(i2t) + CE(t2i)), label smoothing 0.1
  ITM  texts [pos, pos, neg] × images [pos, neg, pos], mean over the query rows of itm_head, CE
  ITG  [DEC] in place of [CLS], pads → −100; LAVIS's two passes: the queries alone (cross-attending
       the image), then the text attending causally to itself and to every query's cached self-
       attention keys and values in each layer; BERT LM head; shifted CE, label smoothing 0.1
The vision tower is frozen (no gradient). The script also runs ITG as one pass over [queries; text]
under the multimodal-causal mask and checks that its loss and gradients equal the two-pass form's.

Files:
  config.json           Blip2Config.to_dict() (use_qformer_text_input true)
  model.safetensors     every parameter under the names above (cls.predictions.{transform.dense,
                        transform.LayerNorm, bias}, temp; the tied decoder weight is not repeated)
  expected.safetensors  pixel_values, ids, attention_mask (int64), negative_image_for_text,
                        negative_text_for_image (int64), loss.{itc,itm,itg,total,itg_one_pass} [1],
                        grad.<name> for every trainable parameter (the gradient of the total loss)
  expected.json         dec_token_id, pad_token_id, label smoothing
"""
import json
import os
import shutil
import sys
import types

import numpy as np
import safetensors
import torch
import torch.nn.functional as F
import transformers
from transformers import BertConfig, Blip2Config, Blip2ForImageTextRetrieval
from transformers.models.bert.modeling_bert import BertLMPredictionHead

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_blip_fixtures as blip  # noqa: E402  (shared helpers: noise, deterministic safetensors, JSON)

OUT = os.path.join(blip.FIXTURES, "blip2_stage1")
SEED = 41
N, T = 4, 7
CLS, DEC, PAD = 1, 59, 0
SMOOTHING = 0.1
NEG_IMAGE_FOR_TEXT = [2, 0, 3, 1]
NEG_TEXT_FOR_IMAGE = [1, 3, 0, 2]


def build():
    cfg = Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8, qkv_bias=True),
        qformer_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                            cross_attention_frequency=2, vocab_size=60, max_position_embeddings=16,
                            use_qformer_text_input=True, pad_token_id=PAD),
        text_config=dict(model_type="opt", vocab_size=64, hidden_size=16, num_hidden_layers=1, ffn_dim=32,
                         num_attention_heads=2, max_position_embeddings=32, word_embed_proj_dim=16),
        num_query_tokens=4, image_text_hidden_size=16)
    cfg._attn_implementation = "eager"
    cfg.vision_config._attn_implementation = "eager"
    cfg.qformer_config._attn_implementation = "eager"
    model = Blip2ForImageTextRetrieval(cfg)
    q = cfg.qformer_config
    head = BertLMPredictionHead(BertConfig(hidden_size=q.hidden_size, hidden_act=q.hidden_act,
                                           layer_norm_eps=q.layer_norm_eps, vocab_size=q.vocab_size))
    model.cls = torch.nn.Module()
    model.cls.predictions = head
    model.temp = torch.nn.Parameter(0.07 * torch.ones([]))
    gen = torch.Generator().manual_seed(SEED)
    blip.randomise(model, gen)
    with torch.no_grad():
        model.temp.fill_(0.09)  # not the initial 0.07: the file's value is the one used
    # LAVIS ties the decoder to the word table and its bias to `bias` (BertLMPredictionHead).
    head.decoder.weight = model.embeddings.word_embeddings.weight
    head.decoder.bias = head.bias
    for p in model.vision_model.parameters():
        p.requires_grad_(False)
    model.eval()
    return cfg, model, gen


def multimodal_causal(keep, queries):
    """[B, 1, Q+T, Q+T] additive: query rows see the queries; text row i the queries and kept text j <= i."""
    b, t = keep.shape
    n = queries + t
    allowed = torch.zeros(b, n, n, dtype=torch.bool)
    allowed[:, :, :queries] = True
    allowed[:, :queries, queries:] = False
    allowed[:, queries:, queries:] = torch.tril(torch.ones(t, t, dtype=torch.bool))
    allowed &= torch.cat([torch.ones(b, queries, dtype=torch.bool), keep.bool()], dim=1)[:, None, :]
    add = torch.zeros(b, n, n)
    add[~allowed] = torch.finfo(torch.float32).min
    return add[:, None]


def lm_loss(model, text_rows, labels):
    scores = model.cls.predictions(text_rows)
    return F.cross_entropy(scores[:, :-1].reshape(-1, scores.shape[-1]), labels[:, 1:].reshape(-1),
                           label_smoothing=SMOOTHING)


def itg_two_pass(model, image_embeds, dec_ids, keep, labels):
    """LAVIS: the queries' self-attention keys and values cached per layer, the text attending to them."""
    qf, Q = model.qformer, model.query_tokens.shape[1]
    selfs = [layer.attention.attention for layer in qf.encoder.layer]
    cache = {}

    def record(i):
        return lambda module, args, kwargs: cache.__setitem__(i, kwargs.get("hidden_states", args[0] if args else None))

    hooks = [m.register_forward_pre_hook(record(i), with_kwargs=True) for i, m in enumerate(selfs)]
    tokens = model.query_tokens.expand(N, -1, -1)
    qf(query_embeds=tokens, query_length=Q, encoder_hidden_states=image_embeds)
    for h in hooks:
        h.remove()
    # text row i sees every query and the kept text columns j <= i (LAVIS's get_extended_attention_mask)
    allowed = torch.cat([torch.ones(N, T, Q, dtype=torch.bool),
                         torch.tril(torch.ones(T, T, dtype=torch.bool)).expand(N, T, T) & keep.bool()[:, None, :]], dim=2)
    add = torch.zeros(N, 1, T, Q + T)
    add[~allowed[:, None]] = torch.finfo(torch.float32).min

    def cached_forward(i):
        def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None, **kw):
            d = self.attention_head_size
            split = lambda x: x.view(N, x.shape[1], -1, d).transpose(1, 2)  # noqa: E731
            q = split(self.query(hidden_states))
            k = torch.cat([split(self.key(cache[i])), split(self.key(hidden_states))], dim=2)
            v = torch.cat([split(self.value(cache[i])), split(self.value(hidden_states))], dim=2)
            probs = torch.softmax(q @ k.transpose(-1, -2) * self.scaling + add, dim=-1)
            return (probs @ v).transpose(1, 2).reshape(N, T, -1), probs
        return forward

    saved = [m.forward for m in selfs]
    for i, m in enumerate(selfs):
        m.forward = types.MethodType(cached_forward(i), m)
    out = qf(query_embeds=model.embeddings(input_ids=dec_ids), query_length=0, attention_mask=keep).last_hidden_state
    for m, f in zip(selfs, saved):
        m.forward = f
    return lm_loss(model, out, labels)


def itg_one_pass(model, image_embeds, dec_ids, keep, labels):
    Q = model.query_tokens.shape[1]
    embeds = model.embeddings(input_ids=dec_ids, query_embeds=model.query_tokens.expand(N, -1, -1))
    out = model.qformer(query_embeds=embeds, query_length=Q, attention_mask=multimodal_causal(keep, Q),
                        encoder_hidden_states=image_embeds).last_hidden_state
    return lm_loss(model, out[:, Q:], labels)


def losses(model, image_embeds, ids, keep, one_pass=False):
    Q = model.query_tokens.shape[1]
    qf = model.qformer
    # ITC (LAVIS: image_feats [N, Q, E], text_feat [N, E]; max over queries; / temp)
    q_out = qf(query_embeds=model.query_tokens.expand(N, -1, -1), query_length=Q,
               encoder_hidden_states=image_embeds).last_hidden_state
    image_feats = F.normalize(model.vision_projection(q_out), dim=-1)
    t_out = qf(query_embeds=model.embeddings(input_ids=ids), query_length=0, attention_mask=keep).last_hidden_state
    text_feat = F.normalize(model.text_projection(t_out[:, 0, :]), dim=-1)
    sim_i2t = torch.matmul(image_feats.unsqueeze(1), text_feat.unsqueeze(-1)).squeeze(-1).max(-1)[0] / model.temp
    sim_t2i = torch.matmul(text_feat.unsqueeze(1).unsqueeze(1), image_feats.permute(0, 2, 1)).squeeze(2).max(-1)[0] / model.temp
    targets = torch.arange(N)
    itc = (F.cross_entropy(sim_i2t, targets, label_smoothing=SMOOTHING) +
           F.cross_entropy(sim_t2i, targets, label_smoothing=SMOOTHING)) / 2
    # ITM with the fixed negatives
    neg_img = torch.tensor(NEG_IMAGE_FOR_TEXT)
    neg_txt = torch.tensor(NEG_TEXT_FOR_IMAGE)
    ids_all = torch.cat([ids, ids, ids[neg_txt]], dim=0)
    keep_all = torch.cat([keep, keep, keep[neg_txt]], dim=0)
    image_all = torch.cat([image_embeds, image_embeds[neg_img], image_embeds], dim=0)
    tokens = model.query_tokens.expand(3 * N, -1, -1)
    out = qf(query_embeds=model.embeddings(input_ids=ids_all, query_embeds=tokens), query_length=Q,
             attention_mask=torch.cat([torch.ones(3 * N, Q, dtype=torch.long), keep_all], dim=1),
             encoder_hidden_states=image_all).last_hidden_state
    logits = model.itm_head(out[:, :Q, :]).mean(dim=1)
    itm = F.cross_entropy(logits, torch.cat([torch.ones(N, dtype=torch.long), torch.zeros(2 * N, dtype=torch.long)]))
    # ITG
    dec_ids = ids.clone()
    dec_ids[:, 0] = DEC
    labels = dec_ids.masked_fill(dec_ids == PAD, -100)
    itg = (itg_one_pass if one_pass else itg_two_pass)(model, image_embeds, dec_ids, keep, labels)
    return itc, itm, itg


def trainable_grads(model):
    return {name: torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for name, p in model.named_parameters(remove_duplicate=False)
            if p.requires_grad and name not in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")}


def main():
    torch.use_deterministic_algorithms(True)
    cfg, model, gen = build()
    pixel_values = torch.randn(N, 3, 32, 32, generator=gen)
    ids = torch.randint(3, DEC, (N, T), generator=gen)
    ids[:, 0] = CLS
    keep = torch.ones(N, T, dtype=torch.long)
    keep[1, T - 2:] = 0
    keep[3, T - 3:] = 0
    ids[keep == 0] = PAD
    with torch.no_grad():
        image_embeds = model.vision_model(pixel_values=pixel_values).last_hidden_state

    itc, itm, itg = losses(model, image_embeds, ids, keep)
    total = itc + itm + itg
    total.backward()
    grads = trainable_grads(model)

    model.zero_grad(set_to_none=True)
    _, _, itg1 = losses(model, image_embeds, ids, keep, one_pass=True)
    itg1.backward()
    one = trainable_grads(model)
    model.zero_grad(set_to_none=True)
    _, _, itg2 = losses(model, image_embeds, ids, keep)
    itg2.backward()
    two = trainable_grads(model)
    assert abs(itg1.item() - itg2.item()) < 1e-6, (itg1.item(), itg2.item())
    for name in two:
        # floor: a self-attention key bias's gradient is 0 in exact arithmetic (a shift common to
        # every key), rounding noise here
        scale = max(two[name].abs().max().item(), 1e-3)
        assert (one[name] - two[name]).abs().max().item() <= 1e-5 * scale, name

    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    with open(os.path.join(OUT, "config.json"), "w") as f:
        f.write(json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")
    state = {k: blip.f32(v) for k, v in model.state_dict().items()
             if k not in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")}
    state["temp"] = blip.f32(model.temp.detach().reshape([]))
    blip.write_safetensors(os.path.join(OUT, "model.safetensors"), state, {"format": "pt"})
    tensors = {"pixel_values": blip.f32(pixel_values), "ids": blip.i64(ids), "attention_mask": blip.i64(keep),
               "negative_image_for_text": blip.i64(torch.tensor(NEG_IMAGE_FOR_TEXT)),
               "negative_text_for_image": blip.i64(torch.tensor(NEG_TEXT_FOR_IMAGE))}
    for name, v in (("itc", itc), ("itm", itm), ("itg", itg), ("total", total), ("itg_one_pass", itg1)):
        tensors["loss." + name] = blip.f32(v.detach().reshape(1))
    for name, g in grads.items():
        tensors["grad." + name] = blip.f32(g.reshape(g.shape) if g.dim() else g.reshape([]))
    blip.write_safetensors(os.path.join(OUT, "expected.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        f.write(blip.compact_json(dict(batch=N, text_length=T, cls_token_id=CLS, dec_token_id=DEC, pad_token_id=PAD,
                                       itc_label_smoothing=SMOOTHING, itg_label_smoothing=SMOOTHING)))
    versions = {"transformers": transformers.__version__, "torch": torch.__version__,
                "safetensors": safetensors.__version__, "numpy": np.__version__, "python": sys.version.split()[0]}
    with open(os.path.join(OUT, "VERSIONS.json"), "w") as f:
        f.write(json.dumps(versions, indent=1) + "\n")
    print({k: round(v.item(), 6) for k, v in (("itc", itc), ("itm", itm), ("itg", itg), ("total", total))})


if __name__ == "__main__":
    main()
