#!/usr/bin/env python3
"""Writes tiny random OPT language models and transformers' outputs for them (tests/fixtures/opt/).

Run by hand from the repository root (never by CI):

    pip install torch transformers==5.25.0 safetensors
    python3 tools/make_opt_fixtures.py

Every case folder holds what OPTForCausalLM.save_pretrained writes (config.json, model.safetensors
in float32, generation_config.json) and:
  expected.safetensors  inputs and outputs (float32; ids and masks int64):
      padded.input_ids, padded.attention_mask   a left-padded batch of two rows
      padded.logits                            OPTForCausalLM(input_ids, attention_mask).logits
      padded.last_hidden_state                 OPTModel's last_hidden_state for the same batch
      soft.input_ids, soft.attention_mask      rows with `soft_token` placeholders, left-padded
      soft.soft_prompt                         [2, Q, Dq] (Dq = hidden_size, as BLIP-2's language_projection gives it)
      soft.logits                              logits of inputs_embeds = embed_tokens(ids).masked_scatter(ids == soft_token, soft_prompt)
      soft.upstream                            a random gradient of the logits
      soft.d_soft_prompt                       d Σ(upstream ⊙ logits) / d soft_prompt, PyTorch autograd in float64
  expected.json  the sizes, soft_token, the two batches' ids and masks (`inputs`), and `generate`: model.generate(input_ids, attention_mask,
      [inputs_embeds], **kwargs) ids (prompt + new tokens), as Blip2ForConditionalGeneration.generate
      passes both input_ids and inputs_embeds for soft-prompted rows.

Weights are the class's initialisation with noise (tools/make_blip_fixtures.py's randomise); the
eos row of the embeddings is scaled so that some generated rows end early. Every generate case is
re-run with a float64 copy of the model and must give the same ids (no float32 near-tie).
"""
import json
import os
import sys

import torch
import transformers
from transformers import OPTConfig, OPTForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_blip_fixtures as blip  # noqa: E402  (noise, deterministic safetensors, compact JSON)

OUT = os.path.join(blip.FIXTURES, "opt")
VOCAB = 300
SOFT_TOKEN = VOCAB - 1  # a vocabulary entry, as BLIP-2's <image> token is
Q = 4
EOS_SCALE = {"prenorm": 3.0, "postnorm_proj": 6.0, "untied_nobias": 2.0}

CASES = {
    # pre-norm (opt-125m … 2.7b style), tied head, biases
    "prenorm": dict(hidden_size=32, ffn_dim=48, num_hidden_layers=2, num_attention_heads=4,
                    max_position_embeddings=40, do_layer_norm_before=True, seed=11),
    # opt-350m style: post-norm, word_embed_proj_dim < hidden_size (project_in / project_out), no final LayerNorm
    "postnorm_proj": dict(hidden_size=32, ffn_dim=40, num_hidden_layers=2, num_attention_heads=2,
                          max_position_embeddings=40, do_layer_norm_before=False, word_embed_proj_dim=16, seed=12),
    # untied lm_head, no biases (enable_bias false), gelu
    "untied_nobias": dict(hidden_size=24, ffn_dim=40, num_hidden_layers=2, num_attention_heads=3,
                          max_position_embeddings=40, do_layer_norm_before=True, tie_word_embeddings=False,
                          enable_bias=False, activation_function="gelu", seed=13),
}

PLAIN_PROMPTS = [[2, 17, 45, 101, 9], [2, 250, 33]]        # left-padded to one length
SOFT_PROMPTS = [[SOFT_TOKEN] * Q + [2, 60, 7], [SOFT_TOKEN] * Q + [2]]

GEN_KWARGS = [
    ("greedy", dict(max_new_tokens=8)),
    ("beam_length_penalty", dict(num_beams=3, length_penalty=0.6, max_new_tokens=7, num_return_sequences=2)),
    ("beam_early_stopping", dict(num_beams=2, length_penalty=1.3, max_new_tokens=6, early_stopping=True)),
    ("min_max_new_tokens", dict(min_new_tokens=6, max_new_tokens=9)),
    ("repetition_penalty", dict(repetition_penalty=1.5, max_new_tokens=8)),
]


def left_pad(rows, pad):
    T = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (T - len(r)) + r for r in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (T - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return ids, mask


def soft_embeds(model, ids, soft):
    e = model.get_input_embeddings()(ids)
    return e.masked_scatter((ids == SOFT_TOKEN).unsqueeze(-1), soft.to(e.dtype))


def generate(model, model64, ids, mask, soft, kwargs):
    def run(m, dtype):
        inputs = {"input_ids": ids.clone(), "attention_mask": mask.clone()}
        if soft is not None:
            inputs["inputs_embeds"] = soft_embeds(m, ids, soft.to(dtype))
        return m.generate(**inputs, **kwargs)
    with torch.no_grad():
        out = run(model, torch.float32)
        out64 = run(model64, torch.float64)
    if not torch.equal(out, out64):
        raise SystemExit(f"float32 and float64 generate disagree for {kwargs}: a near-tie; change the seed")
    return blip.tolist(out)


def make_case(name, spec):
    spec = dict(spec)
    seed = spec.pop("seed")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    config = OPTConfig(vocab_size=VOCAB, pad_token_id=1, bos_token_id=2, eos_token_id=2, dropout=0.0, **spec)
    model = OPTForCausalLM(config).eval()
    blip.randomise(model, gen)
    with torch.no_grad():
        model.get_output_embeddings().weight[2] *= EOS_SCALE[name]  # eos: some rows end early
    out_dir = os.path.join(OUT, name)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    model = OPTForCausalLM.from_pretrained(out_dir, dtype=torch.float32).eval()
    model64 = OPTForCausalLM.from_pretrained(out_dir, dtype=torch.float64).eval()

    tensors, records = {}, []
    ids, mask = left_pad(PLAIN_PROMPTS, 1)
    with torch.no_grad():
        tensors["padded.input_ids"], tensors["padded.attention_mask"] = blip.i64(ids), blip.i64(mask)
        tensors["padded.logits"] = blip.f32(model(input_ids=ids, attention_mask=mask).logits)
        tensors["padded.last_hidden_state"] = blip.f32(model.model(input_ids=ids, attention_mask=mask).last_hidden_state)

    sids, smask = left_pad(SOFT_PROMPTS, 1)
    soft = torch.randn(2, Q, config.hidden_size, generator=gen)
    with torch.no_grad():
        logits = model(inputs_embeds=soft_embeds(model, sids, soft), attention_mask=smask).logits
    upstream = torch.randn(logits.shape, generator=gen)
    soft64 = soft.to(torch.float64).requires_grad_(True)
    logits64 = model64(inputs_embeds=soft_embeds(model64, sids, soft64), attention_mask=smask).logits
    (logits64 * upstream.to(torch.float64)).sum().backward()
    tensors.update({"soft.input_ids": blip.i64(sids), "soft.attention_mask": blip.i64(smask),
                    "soft.soft_prompt": blip.f32(soft), "soft.logits": blip.f32(logits),
                    "soft.upstream": blip.f32(upstream), "soft.d_soft_prompt": blip.f32(soft64.grad)})

    for label, kwargs in GEN_KWARGS:
        records.append({"name": label, "soft": False, "kwargs": kwargs,
                        "input_ids": blip.tolist(ids), "attention_mask": blip.tolist(mask),
                        "ids": generate(model, model64, ids, mask, None, kwargs)})
        records.append({"name": label + "_soft", "soft": True, "kwargs": kwargs,
                        "input_ids": blip.tolist(sids), "attention_mask": blip.tolist(smask),
                        "ids": generate(model, model64, sids, smask, soft, kwargs)})

    blip.write_safetensors(os.path.join(out_dir, "expected.safetensors"), tensors,
                           {"transformers": transformers.__version__, "torch": torch.__version__})
    doc = {"case": name, "config": config.to_diff_dict(), "soft_token": SOFT_TOKEN, "queries": Q,
           "inputs": {"padded": {"input_ids": blip.tolist(ids), "attention_mask": blip.tolist(mask)},
                      "soft": {"input_ids": blip.tolist(sids), "attention_mask": blip.tolist(smask)}},
           "generate": records}
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        f.write(blip.compact_json(doc))


def main():
    for name, spec in CASES.items():
        make_case(name, spec)
    with open(os.path.join(OUT, "VERSIONS.json"), "w") as f:
        json.dump({"transformers": transformers.__version__, "torch": torch.__version__}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
