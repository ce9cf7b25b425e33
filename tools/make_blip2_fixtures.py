#!/usr/bin/env python3
"""Writes tiny random BLIP-2 checkpoints and transformers' outputs for them (tests/fixtures/blip2/).

Run by hand from the repository root (never by CI), on a Debian/Ubuntu machine (the tokenizer is
trained on /usr/share/common-licenses/GPL-3, checked by its SHA-256):

    pip install torch transformers==5.25.0 tokenizers safetensors pillow==13.0.0
    python3 tools/make_blip2_fixtures.py

Every case folder is a complete Hugging Face BLIP-2 folder, written by transformers' own classes:
  config.json, model.safetensors, generation_config.json   model.save_pretrained (float32)
  processor_config.json, tokenizer.json, tokenizer_config.json
                                   Blip2Processor.save_pretrained (transformers 5's form); the
                                   tokenizer config gets the two fields the Hub's BLIP-2 folders carry
                                   and transformers 5 no longer writes: add_bos_token and
                                   added_tokens_decoder
  preprocessor_config.json         BlipImageProcessorPil.save_pretrained (the Hub's form)
  vocab.json + merges.txt          (OPT cases) the byte-level BPE without tokenizer.json's added
                                   tokens: with tokenizer_config.json they give the same ids (checked)
  vocab.txt                        (retrieval) the WordPiece vocabulary, as tools/make_blip_fixtures.py
and the outputs:
  expected.safetensors             inputs and outputs, float32 (ids and masks int64)
  expected.json                    images, texts, the processor's ids, a description of every tensor,
                                   and `generate`: ids of model.generate(**processor(...), **kwargs),
                                   their new-token part and decoded texts

The weights are the classes' initialisation with noise on every parameter (tools/make_blip_fixtures.py's
randomise), then the key part of every vision qkv.bias set back to 0 as in every real checkpoint
(BLIP-2's EVA ViT has q and v biases only), and the LM head's eos row nudged (eos_boost) so that some
generated rows end early. Every generate case is re-run with a float64 copy of the model and must
give the same ids, so no case hangs on a float32 near-tie.
"""
import copy
import hashlib
import json
import os
import shutil
import sys
import warnings

import numpy as np
import PIL
import safetensors
import tokenizers
import torch
import transformers
from safetensors.torch import load_file
from tokenizers import ByteLevelBPETokenizer
from transformers import (AutoProcessor, AutoTokenizer, Blip2Config, Blip2ForConditionalGeneration,
                          Blip2ForImageTextRetrieval, Blip2Model, Blip2Processor, BlipImageProcessorPil,
                          GPT2Tokenizer)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_blip_fixtures as blip  # noqa: E402  (shared helpers: noise, deterministic safetensors, JSON)

OUT = os.path.join(blip.FIXTURES, "blip2")
BPE_SOURCE = "/usr/share/common-licenses/GPL-3"
BPE_SOURCE_SHA256 = "3972dc9744f6499f0f9b2dbf76696f2ae7ad8af9b23dde66d6af86c9dfb36986"
BPE_VOCAB_SIZE = 400  # 4 specials + 256 byte symbols + 140 merges; <image> is added after them
HUB_STYLE_TOKEN = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}


# ---- tokenizers ------------------------------------------------------------------------------------
def train_bpe():
    """A byte-level BPE in OPT's layout: <s>=0, <pad>=1, </s>=2, <unk>=3, then the 256 byte symbols
    and the merges, trained on the GNU GPL v3 text (English prose)."""
    with open(BPE_SOURCE, "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != BPE_SOURCE_SHA256:
        raise SystemExit(f"{BPE_SOURCE} is not the GPL v3 text this vocabulary was trained on")
    return train_opt_bpe(data.decode("utf-8"), BPE_VOCAB_SIZE)


def train_opt_bpe(text, vocab_size):
    """A byte-level BPE of `vocab_size` tokens trained on `text`, in OPT's layout; (vocab, merges)."""
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator([text], vocab_size=vocab_size, min_frequency=2,
                                special_tokens=["<s>", "<pad>", "</s>", "<unk>"], show_progress=False)
    model = json.loads(trainer.to_str())["model"]
    vocab = model["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    assert len(vocab) == vocab_size and vocab["</s>"] == 2 and vocab["<pad>"] == 1
    return vocab, merges


def make_opt_tokenizer(vocab, merges, padding_side):
    """OPT's tokenizer (facebook/opt-*, Salesforce/blip2-opt-*): GPT-2 byte-level BPE, </s> as bos,
    eos and unk, <pad> as pad, </s> prepended to every text."""
    return GPT2Tokenizer(vocab=dict(vocab), merges=list(merges), bos_token="</s>", eos_token="</s>",
                         unk_token="</s>", pad_token="<pad>", add_bos_token=True, padding_side=padding_side)


def hub_tokenizer_config(out_dir, tok, add_bos):
    """Adds what the Hub's BLIP-2 tokenizer_config.json holds beyond transformers 5's: add_bos_token and
    the added tokens by id (without them a folder read from vocab.json + merges.txt loses the bos and
    <image>)."""
    path = os.path.join(out_dir, "tokenizer_config.json")
    with open(path) as f:
        cfg = json.load(f)
    if add_bos:
        cfg["add_bos_token"] = True
    cfg["added_tokens_decoder"] = {str(i): dict(HUB_STYLE_TOKEN, content=t.content)
                                   for i, t in sorted(tok.added_tokens_decoder.items())}
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


PROBES = ["a photo of", "Question: what is this? Answer:", "  two  spaces, <image> and\nnewlines\n\n",
          "The GNU General Public License, version 3 (2007) — don't copy “quotes” 123,456.78!", "<image><image>x"]


def check_tokenizer_forms(out_dir, files):
    """tokenizer.json and the vocabulary files (+ tokenizer_config.json) give the same ids."""
    alt = out_dir + ".vocab_only"
    os.makedirs(alt)
    for f in files + ["tokenizer_config.json"]:
        shutil.copy(os.path.join(out_dir, f), alt)
    a, b = AutoTokenizer.from_pretrained(out_dir), AutoTokenizer.from_pretrained(alt)
    shutil.rmtree(alt)
    for p in PROBES:
        assert a(p)["input_ids"] == b(p)["input_ids"], p
    return a


# ---- the cases -------------------------------------------------------------------------------------
# vision: Blip2VisionConfig, qformer: Blip2QFormerConfig, text: OPTConfig fields. vocab_size "tok" is
# len(tokenizer) (the <image> id + 1); "tok64" rounds it up to a multiple of 64 as transformers' own
# BLIP-2 tests do with resize_token_embeddings(pad_to_multiple_of=64).
CASES = {
    # 224-style grid (28 / 7 = 4x4 patches), OPT pre-norm, cross-attention every 2nd Q-Former layer,
    # 4 queries, left padding saved in the tokenizer config
    "opt_prenorm": dict(
        model="generation", seed=21, padding_side="left", num_query_tokens=4, eos_boost=1.2,
        vision=dict(image_size=28, patch_size=7, hidden_size=24, intermediate_size=40, num_hidden_layers=2,
                    num_attention_heads=4, layer_norm_eps=1e-6),
        qformer=dict(hidden_size=20, intermediate_size=36, num_hidden_layers=3, num_attention_heads=4,
                     cross_attention_frequency=2, max_position_embeddings=32),
        text=dict(vocab_size="tok", hidden_size=24, ffn_dim=40, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=64, do_layer_norm_before=True, activation_function="relu"),
        images=["images/astronaut_420.jpg", "images/coffee_444.jpg"]),
    # 364-style grid (42 / 7 = 6x6 patches), OPT-350m-style post-norm with project_in/project_out
    # (word_embed_proj_dim 16 != hidden 32), cross-attention in every Q-Former layer, 32 queries,
    # the default right padding, vocabulary padded to a multiple of 64
    "opt_postnorm": dict(
        model="generation", seed=22, padding_side=None, num_query_tokens=32, eos_boost=2.0,
        vision=dict(image_size=42, patch_size=7, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                    num_attention_heads=2, layer_norm_eps=1e-5, hidden_act="quick_gelu"),
        qformer=dict(hidden_size=24, intermediate_size=32, num_hidden_layers=2, num_attention_heads=3,
                     cross_attention_frequency=1, max_position_embeddings=32),
        text=dict(vocab_size="tok64", hidden_size=32, word_embed_proj_dim=16, ffn_dim=48, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=96, do_layer_norm_before=False,
                  activation_function="relu"),
        images=["images/chelsea_422_progressive.jpg", "images/rocket_tall.png"]),
    # a first-release folder: the processor has no num_query_tokens, so prompts carry no <image>
    "legacy": dict(
        model="generation", seed=33, padding_side="left", num_query_tokens=4, processor_queries=False,
        eos_boost=1.2,
        vision=dict(image_size=28, patch_size=7, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                    num_attention_heads=2, layer_norm_eps=1e-5),
        qformer=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                     cross_attention_frequency=2, max_position_embeddings=32),
        text=dict(vocab_size="tok", hidden_size=16, ffn_dim=32, num_hidden_layers=2, num_attention_heads=2,
                  max_position_embeddings=64, do_layer_norm_before=True, activation_function="relu"),
        images=["images/cat_crop.png", "images/camera_gray.jpg"]),
    # Q-Former with text input (BERT WordPiece, as Salesforce/blip2-itm-vit-g), ITM and ITC heads
    "retrieval": dict(
        model="retrieval", seed=24, num_query_tokens=4, image_text_hidden_size=12,
        vision=dict(image_size=28, patch_size=7, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                    num_attention_heads=2, layer_norm_eps=1e-5),
        qformer=dict(hidden_size=24, intermediate_size=36, num_hidden_layers=2, num_attention_heads=4,
                     cross_attention_frequency=1, max_position_embeddings=40, use_qformer_text_input=True),
        text=dict(vocab_size=64, hidden_size=16, ffn_dim=32, num_hidden_layers=1, num_attention_heads=2,
                  max_position_embeddings=32),
        images=["images/astronaut_420.jpg", "images/cat_crop.png"],
        texts=["an astronaut", "a small cat sleeping on a couch", "a cup of coffee", "two dogs on the grass"]),
    # Blip2Model: the three feature functions
    "model": dict(
        model="model", seed=25, padding_side=None, num_query_tokens=8, eos_boost=0.0,
        vision=dict(image_size=28, patch_size=7, hidden_size=16, intermediate_size=28, num_hidden_layers=2,
                    num_attention_heads=4, layer_norm_eps=1e-6),
        qformer=dict(hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
                     cross_attention_frequency=2, max_position_embeddings=32),
        text=dict(vocab_size="tok", hidden_size=20, ffn_dim=28, num_hidden_layers=2, num_attention_heads=5,
                  max_position_embeddings=48, do_layer_norm_before=True, activation_function="relu"),
        images=["images/rocket_tall.png", "images/coffee_444.jpg"],
        texts=["a photo of a rocket", "coffee"]),
}

CAPTION_PROMPT = "a photo of"
VQA_PROMPT = "Question: what is this? Answer:"
LOGITS_TEXTS = ["a photo of the", VQA_PROMPT]  # the processor's batch fed to model(**inputs)

# generate() settings; every one but "defaults" sets max_new_tokens explicitly
GEN_KWARGS = [
    ("greedy", {"max_new_tokens": 10}),
    ("defaults", {}),
    ("beams3_lp0_6", {"num_beams": 3, "length_penalty": 0.6, "max_new_tokens": 10}),
    ("min5_max8", {"min_new_tokens": 5, "max_new_tokens": 8}),
    ("repetition_1_5", {"repetition_penalty": 1.5, "max_new_tokens": 10}),
    ("beams3_return2_lp1_4", {"num_beams": 3, "num_return_sequences": 2, "length_penalty": 1.4,
                              "max_new_tokens": 10}),
]


def build_config(spec, n_tok, tok=None):
    text = dict(spec["text"])
    if text["vocab_size"] == "tok":
        text["vocab_size"] = n_tok
    elif text["vocab_size"] == "tok64":
        text["vocab_size"] = -(-n_tok // 64) * 64
    text.update(model_type="opt", bos_token_id=2, pad_token_id=1, eos_token_id=EOS_ID, dropout=0.0)
    qformer = dict(spec["qformer"], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    if spec["model"] == "retrieval":
        qformer.update(vocab_size=len(tok), pad_token_id=tok.pad_token_id)
    cfg = Blip2Config(vision_config=dict(spec["vision"]), qformer_config=qformer, text_config=text,
                      num_query_tokens=spec["num_query_tokens"],
                      image_text_hidden_size=spec.get("image_text_hidden_size", 256),
                      image_token_index=IMAGE_ID if spec["model"] != "retrieval" else tok.convert_tokens_to_ids("<image>"))
    cfg._attn_implementation = "eager"
    return cfg


def randomise(model, gen, eos_boost):
    blip.randomise(model, gen)
    with torch.no_grad():
        for name, p in model.named_parameters():
            # real BLIP-2 checkpoints hold q_bias and v_bias only: the key third of qkv.bias is 0
            if name.endswith("self_attn.qkv.bias"):
                d = p.shape[0] // 3
                p[d:2 * d] = 0
        if eos_boost and hasattr(model, "language_model"):
            # The LM head is tied to the word embeddings and has no bias. Every final state carries the
            # last LayerNorm's bias (through project_out when there is one), so moving the eos row along
            # that bias raises eos's logit at every position and some generated rows end early.
            dec = model.language_model.model.decoder
            norm = dec.final_layer_norm if dec.final_layer_norm is not None else dec.layers[-1].final_layer_norm
            b = norm.bias if dec.project_out is None else dec.project_out(norm.bias)
            model.language_model.get_output_embeddings().weight[EOS_ID] += eos_boost * b / b.norm()


f32, i64, tolist = blip.f32, blip.i64, blip.tolist


# ---- stage tensors ----------------------------------------------------------------------------------
def vision_stage(model, pv, T):
    vis = model.vision_model(pixel_values=pv, output_hidden_states=True, return_dict=True)
    T["image_embeds"] = f32(vis.last_hidden_state)
    T["vision.pooler_output"] = f32(vis.pooler_output)
    for i, h in enumerate(vis.hidden_states):
        T[f"vision.hidden_states.{i}"] = f32(h)
    return vis


def layer_outputs(layers, prefix, T):
    """Forward hooks that store every layer's output as <prefix>.{i}."""
    def hook(i):
        def f(module, args, out):
            T[f"{prefix}.{i}"] = f32(out[0] if isinstance(out, tuple) else out)
        return f
    return [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]


def qformer_stage(model, image_embeds, T):
    hooks = layer_outputs(model.qformer.encoder.layer, "qformer.layer_outputs", T)
    q = model.qformer(query_embeds=model.query_tokens.expand(image_embeds.shape[0], -1, -1),
                      encoder_hidden_states=image_embeds,
                      encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long),
                      return_dict=True).last_hidden_state
    for h in hooks:
        h.remove()
    T["qformer.last_hidden_state"] = f32(q)
    return q


TENSOR_DOC = {
    "pixel_values": "F32 [B,3,S,S]: BlipImageProcessorPil of `images`, in order",
    "image_embeds": "F32 [B,1+P,Dv]: vision_model(pixel_values).last_hidden_state (post_layernorm applied)",
    "vision.pooler_output": "F32 [B,Dv]: post_layernorm(image_embeds[:,0]) (post_layernorm applied twice to the class row)",
    "vision.hidden_states.{i}": "F32 [B,1+P,Dv]: i=0 embeddings (class + patches + positions), i>0 output of layer i (before post_layernorm)",
    "qformer.last_hidden_state": "F32 [B,Q,Dq]: qformer(query_tokens, encoder_hidden_states=image_embeds, image mask all ones)",
    "qformer.layer_outputs.{i}": "F32 [B,Q,Dq]: output of Q-Former layer i (the input is layernorm(query_tokens), no dropout)",
}


# ---- generation cases --------------------------------------------------------------------------------
def gen_record(name, images, prompt, kwargs, inputs, ids, extra, proc):
    start = inputs["input_ids"].shape[1] if "input_ids" in inputs else None
    rec = {"name": name, "images": images, "prompt": prompt, "kwargs": kwargs,
           "input_ids": tolist(inputs["input_ids"]) if "input_ids" in inputs else None,
           "attention_mask": tolist(inputs["attention_mask"]) if "attention_mask" in inputs else None,
           "ids": tolist(ids), "texts": proc.batch_decode(ids, skip_special_tokens=True)}
    new = ids[:, start:] if start is not None else ids
    rec["new_tokens"] = tolist(new)
    rec["new_texts"] = proc.batch_decode(new, skip_special_tokens=True)
    rec.update(extra)
    return rec


def generation_case(name, spec, model, model64, proc, T, J):
    images = spec["images"]
    Q = spec["num_query_tokens"]
    queries = spec.get("processor_queries", True)
    pv = proc(images=blip.open_images(images), return_tensors="pt")["pixel_values"]
    T["pixel_values"] = f32(pv)
    with torch.no_grad():
        vis = vision_stage(model, pv, T)
        q = qformer_stage(model, vis.last_hidden_state, T)
        lmi = model.language_projection(q)
        T["language_model_inputs"] = f32(lmi)
        feats = model.get_image_features(pixel_values=pv, return_dict=True)
        assert torch.equal(feats.pooler_output, lmi)
        # model(**processor(images, texts)): the logits stage
        inputs = dict(proc(images=blip.open_images(images), text=LOGITS_TEXTS, padding=True, return_tensors="pt"))
        embeds = model.get_input_embeddings()(inputs["input_ids"])
        mask = (inputs["input_ids"] == model.config.image_token_id).unsqueeze(-1).expand_as(embeds)
        scattered = embeds.masked_scatter(mask, lmi) if mask.any() else embeds
        dec = model.language_model.model.decoder
        hooks = layer_outputs(dec.layers, "text.layer_outputs", T)
        captured = {}
        pre = dec.layers[0].register_forward_pre_hook(lambda m, a: captured.setdefault("x", a[0]))
        out = model(**inputs, return_dict=True)
        for h in hooks + [pre]:
            h.remove()
        ref = model.language_model(inputs_embeds=scattered, attention_mask=inputs["attention_mask"]).logits
        assert torch.equal(ref, out.logits)
        T["decoder_input"] = f32(captured["x"])
        T["text.last_hidden_state"] = f32(dec(inputs_embeds=scattered,
                                              attention_mask=inputs["attention_mask"]).last_hidden_state)
    T["input_ids"] = i64(inputs["input_ids"])
    T["attention_mask"] = i64(inputs["attention_mask"])
    T["inputs_embeds"] = f32(scattered)
    T["logits"] = f32(out.logits)
    Dw = model.config.text_config.word_embed_proj_dim
    J["tensor_doc"].update({
        "language_model_inputs": "F32 [B,Q,D]: language_projection(qformer.last_hidden_state) (D = text hidden_size)",
        "input_ids": "I64 [B,T]: processor(images, text=logits_texts, padding=True).input_ids",
        "attention_mask": "I64 [B,T]: its attention_mask",
        "inputs_embeds": "F32 [B,T,Dw]: embed_tokens(input_ids) with the <image> positions overwritten by "
                         "language_model_inputs (masked_scatter; Dw = word_embed_proj_dim)",
        "decoder_input": "F32 [B,T,D]: the OPT decoder's first layer input: project_in(inputs_embeds) (when "
                         "Dw != D) + embed_positions (learned, position = cumsum(mask)*mask - 1, row + 2)",
        "text.layer_outputs.{i}": "F32 [B,T,D]: output of OPT decoder layer i",
        "text.last_hidden_state": "F32 [B,T,Dw]: decoder output after final_layer_norm (pre-norm only) and "
                                  "project_out (when Dw != D)",
        "logits": "F32 [B,T,V]: model(**inputs).logits = text.last_hidden_state @ embed_tokens.weight.T (tied, no bias)",
    })
    J["logits_texts"] = LOGITS_TEXTS
    J["input_ids"] = tolist(inputs["input_ids"])
    J["attention_mask"] = tolist(inputs["attention_mask"])
    n_img = int((inputs["input_ids"] == model.config.image_token_id).sum())
    if Dw != model.config.text_config.hidden_size:
        J["scatter_note"] = (
            f"word_embed_proj_dim {Dw} != hidden_size {model.config.text_config.hidden_size}: language_projection "
            f"outputs [B,Q,{model.config.text_config.hidden_size}] but the embeddings are {Dw} wide. transformers "
            "5.25 does inputs_embeds.masked_scatter(mask, language_model_inputs) anyway: the mask (every <image> "
            f"row, all {Dw} columns) is filled in row-major order with the first B*Q*{Dw} values of "
            "language_model_inputs flattened row-major; the rest is unused (here, with B = 2 and hidden = 2 Dw, "
            "image 0's [Q, hidden] projections fill the <image> rows of both batch rows and image 1 plays no part; "
            "with one image only its first Q/2 query rows are used). Checked in the generator: inputs_embeds[mask] == "
            "language_model_inputs.flatten()[:mask.sum()].")
        assert torch.equal(scattered[mask], lmi.flatten()[:int(mask.sum())])
    if not queries:
        assert n_img == 0
        J["legacy_note"] = LEGACY_NOTE
    gens = []
    eos = model.config.text_config.eos_token_id
    prompt_sets = [("no_prompt", images, None), ("prompt", images, [CAPTION_PROMPT] * len(images)),
                   ("vqa", images[:1], [VQA_PROMPT]), ("prompt_pair", images, [CAPTION_PROMPT, VQA_PROMPT])]
    runs = GEN_KWARGS if name == "opt_prenorm" else [g for g in GEN_KWARGS if g[0] in
                                                     ("greedy", "beams3_lp0_6", "min5_max8")]
    with torch.no_grad():
        for kname, kwargs in runs:
            for pname, imgs, prompt in prompt_sets:
                if not queries and prompt is None:
                    continue  # transformers 5.25 cannot start without a prompt here (see legacy_note)
                inputs = dict(proc(images=blip.open_images(imgs), text=prompt, padding=True, return_tensors="pt")) \
                    if prompt else dict(proc(images=blip.open_images(imgs), return_tensors="pt"))
                ids, extra = blip.run_generate(model, model64, inputs, kwargs, eos)
                if "input_ids" in inputs:
                    assert torch.equal(ids[:, :inputs["input_ids"].shape[1]],
                                       inputs["input_ids"].repeat_interleave(kwargs.get("num_return_sequences", 1), 0))
                else:
                    start = torch.tensor([[model.config.image_token_id] * Q + [model.config.text_config.bos_token_id]])
                    assert torch.equal(ids[:, :Q + 1], start.repeat(ids.shape[0], 1))
                rec = gen_record(f"{kname}|{pname}", imgs, prompt, kwargs, inputs, ids, extra, proc)
                if "input_ids" not in inputs:
                    rec["new_tokens"] = tolist(ids[:, Q + 1:])
                    rec["new_texts"] = proc.batch_decode(ids[:, Q + 1:], skip_special_tokens=True)
                gens.append(rec)
    J["generate_note"] = GENERATE_NOTE
    return gens


GENERATE_NOTE = (
    "ids = Blip2ForConditionalGeneration.generate(**processor(images=..., text=prompt, padding=True), **kwargs): "
    "full rows as transformers returns them, i.e. the processor's input_ids (including <image> x Q and any "
    "padding) followed by the new tokens; finished rows are padded with text_config.pad_token_id. With no prompt "
    "(input_ids None) generate builds input_ids = [image_token_index x num_query_tokens, text_config.bos_token_id] "
    "per image, mask all ones, and returns those Q+1 ids followed by the new tokens. new_tokens = ids after the "
    "start (input_ids.shape[1], or Q+1 without a prompt); texts/new_texts = batch_decode(..., "
    "skip_special_tokens=True). eos for stopping and min_new_tokens is text_config.eos_token_id (the id of 'Ċ' = "
    "'\\n', as 50118 in the real OPT folders); pad = text_config.pad_token_id (<pad>). The <image> rows of the "
    "embeddings are replaced by language_model_inputs (masked_scatter), then OPTForCausalLM.generate(inputs_embeds, "
    "attention_mask, input_ids) runs: positions = cumsum(mask)*mask - 1 over the prompt (-1 on padding), each new "
    "token the next position. kwargs {} = 20 new tokens (max_length = start length + 20, capped at "
    "text_config.max_position_embeddings, which no case reaches). Beam records carry sequences_scores, greedy ones "
    "min_top2_margin (smallest gap between the best and second processed score over the steps, running rows); every "
    "record also gives the same ids in float64. num_return_sequences rows come image-major (image 0's first, ...).")

LEGACY_NOTE = (
    "processor_config.json has no num_query_tokens (the first Hugging Face BLIP-2 release), so Blip2Processor "
    "puts no <image> tokens in input_ids: rows are [</s>, prompt...] only. config.json still has "
    "image_token_index. transformers 5.25's forward and generate replace only the <image> rows "
    "(masked_scatter with an all-false mask), so THE IMAGE IS IGNORED: logits and generated ids are those of the "
    "OPT language model on the prompt alone (checked in the generator: identical logits with pixel_values of "
    "another image, and identical to language_model(input_ids) directly). transformers 4.x (before the "
    "<image>-token processor) concatenated [language_model_inputs, embed(input_ids)] with the mask [ones(Q), "
    "attention_mask] instead; 5.25 no longer does. Without a prompt 5.25 starts from [<image> x Q, bos] "
    "regardless of the processor, as in the other cases, so no_prompt records are not repeated here.")


# ---- retrieval -------------------------------------------------------------------------------------
def retrieval_case(name, spec, model, proc, tok, T, J):
    images = spec["images"]
    texts = spec["texts"]
    Q = spec["num_query_tokens"]
    img4 = [images[i % 2] for i in range(len(texts))]  # ITM pairs text i with image i % 2
    pv = proc(images=blip.open_images(images), return_tensors="pt")["pixel_values"]
    T["pixel_values"] = f32(pv)
    with torch.no_grad():
        vis = vision_stage(model, pv, T)
        q_last = qformer_stage(model, vis.last_hidden_state, T)
        res = {}
        for form in ("image_tokens", "legacy"):
            if form == "legacy":
                model.config.image_token_index = None
                saved_q, proc.num_query_tokens = proc.num_query_tokens, None
            itm_in = proc(images=blip.open_images(img4), text=texts, padding=True, return_tensors="pt")
            itc_in = proc(images=blip.open_images(images), text=texts, padding=True, return_tensors="pt")
            itm = model(**itm_in, use_image_text_matching_head=True, return_dict=True)
            itc = model(**itc_in, use_image_text_matching_head=False, return_dict=True)
            res[form] = (itm_in, itc_in, itm, itc)
            if form == "legacy":
                model.config.image_token_index = tok.convert_tokens_to_ids("<image>")
                proc.num_query_tokens = saved_q
        itm_in, itc_in, itm, itc = res["image_tokens"]
        l_itm_in, l_itc_in, l_itm, l_itc = res["legacy"]
        assert torch.allclose(itm.logits_per_image, l_itm.logits_per_image, atol=1e-6)
        assert torch.allclose(itc.logits_per_image, l_itc.logits_per_image, atol=1e-6)
        # the stages, recomputed by hand from the image-token form
        ids, mask = itm_in["input_ids"][:, Q:], itm_in["attention_mask"]
        emb = model.embeddings(input_ids=ids, query_embeds=model.query_tokens.expand(len(texts), -1, -1))
        pv4 = itm_in["pixel_values"]
        img_e = model.vision_model(pixel_values=pv4).last_hidden_state
        hooks = layer_outputs(model.qformer.encoder.layer, "itm.qformer.layer_outputs", T)
        itm_states = model.qformer(query_embeds=emb, query_length=Q, attention_mask=mask,
                                   encoder_hidden_states=img_e,
                                   encoder_attention_mask=torch.ones(img_e.shape[:-1], dtype=torch.long),
                                   return_dict=True).last_hidden_state
        for h in hooks:
            h.remove()
        assert torch.allclose(model.itm_head(itm_states[:, :Q]).mean(dim=1), itm.logits_per_image, atol=1e-6)
        temb = model.embeddings(input_ids=itc_in["input_ids"][:, Q:])
        hooks = layer_outputs(model.qformer.encoder.layer, "itc.text.layer_outputs", T)
        text_states = model.qformer(query_embeds=temb, query_length=0,
                                    attention_mask=itc_in["attention_mask"][:, Q:], return_dict=True).last_hidden_state
        for h in hooks:
            h.remove()
        img_feat = torch.nn.functional.normalize(model.vision_projection(q_last), dim=-1)
        txt_feat = torch.nn.functional.normalize(model.text_projection(text_states[:, 0]), dim=-1)
        assert torch.allclose(torch.matmul(img_feat, txt_feat.t()).max(dim=1).values, itc.logits_per_image, atol=1e-6)
        assert torch.equal(img_feat, itc.image_embeds) and torch.equal(txt_feat, itc.text_embeds)
    T["itm.input_ids"] = i64(itm_in["input_ids"])
    T["itm.attention_mask"] = i64(itm_in["attention_mask"])
    T["itm.pixel_values"] = f32(itm_in["pixel_values"])
    T["itm.embeddings"] = f32(emb)
    T["itm.qformer.last_hidden_state"] = f32(itm_states)
    T["itm.logits"] = f32(itm.logits_per_image)
    T["itm.scores"] = f32(torch.softmax(itm.logits_per_image, dim=1)[:, 1])
    T["itc.input_ids"] = i64(itc_in["input_ids"])
    T["itc.attention_mask"] = i64(itc_in["attention_mask"])
    T["itc.text.last_hidden_state"] = f32(text_states)
    T["itc.image_feat"] = f32(img_feat)
    T["itc.text_feat"] = f32(txt_feat)
    T["itc.scores"] = f32(itc.logits_per_image)
    T["legacy.itm.input_ids"] = i64(l_itm_in["input_ids"])
    T["legacy.itm.attention_mask"] = i64(l_itm_in["attention_mask"])
    T["legacy.itm.logits"] = f32(l_itm.logits_per_image)
    T["legacy.itc.input_ids"] = i64(l_itc_in["input_ids"])
    T["legacy.itc.attention_mask"] = i64(l_itc_in["attention_mask"])
    T["legacy.itc.scores"] = f32(l_itc.logits_per_image)
    J["texts"] = texts
    J["itm_images"] = img4
    J["itm"] = {"input_ids": tolist(itm_in["input_ids"]), "attention_mask": tolist(itm_in["attention_mask"]),
                "logits": blip.tolist_f(itm.logits_per_image),
                "scores": [float(x) for x in torch.softmax(itm.logits_per_image, dim=1)[:, 1]]}
    J["itc"] = {"input_ids": tolist(itc_in["input_ids"]), "attention_mask": tolist(itc_in["attention_mask"]),
                "scores": blip.tolist_f(itc.logits_per_image)}
    J["legacy"] = {"itm_input_ids": tolist(l_itm_in["input_ids"]), "itm_attention_mask": tolist(l_itm_in["attention_mask"]),
                   "itc_input_ids": tolist(l_itc_in["input_ids"]), "itc_attention_mask": tolist(l_itc_in["attention_mask"]),
                   "itm_logits": blip.tolist_f(l_itm.logits_per_image), "itc_scores": blip.tolist_f(l_itc.logits_per_image)}
    J["tensor_doc"].update({
        "itm.input_ids": "I64 [N,Q+T]: processor(images=itm_images, text=texts, padding=True): [<image> x Q, [CLS], text, [SEP], [PAD]...]",
        "itm.attention_mask": "I64 [N,Q+T]: ones over the <image> tokens, then the text's padding mask",
        "itm.pixel_values": "F32 [N,3,S,S]: itm_images (image i % 2 for text i; ITM needs one image per text)",
        "itm.embeddings": "F32 [N,Q+T,Dq]: Blip2TextEmbeddings(input_ids[:,Q:], query_embeds=query_tokens): [query_tokens; word + position(0..T-1)] (no LayerNorm here; the Q-Former's layernorm follows)",
        "itm.qformer.last_hidden_state": "F32 [N,Q+T,Dq]: qformer(itm.embeddings, query_length=Q, attention_mask=itm.attention_mask (Q+T wide, not cut), cross-attention to the image on the query rows)",
        "itm.qformer.layer_outputs.{i}": "F32 [N,Q+T,Dq]: output of Q-Former layer i in that run",
        "itm.logits": "F32 [N,2]: model(..., use_image_text_matching_head=True).logits_per_image = itm_head(last_hidden_state[:, :Q]).mean(1) (raw logits, no softmax)",
        "itm.scores": "F32 [N]: softmax(itm.logits, dim=1)[:,1] (computed here, not returned by transformers)",
        "itc.input_ids": "I64 [N,Q+T]: processor(images=images, text=texts, padding=True) (2 images, N texts)",
        "itc.attention_mask": "I64 [N,Q+T]",
        "itc.text.last_hidden_state": "F32 [N,T,Dq]: qformer(embeddings(input_ids[:,Q:]), query_length=0, attention_mask[:,Q:]): text only, no image",
        "itc.text.layer_outputs.{i}": "F32 [N,T,Dq]: Q-Former layer i in that run",
        "itc.image_feat": "F32 [2,Q,E]: normalize(vision_projection(qformer.last_hidden_state)) (= output.image_embeds)",
        "itc.text_feat": "F32 [N,E]: normalize(text_projection(itc.text.last_hidden_state[:,0])) (= output.text_embeds)",
        "itc.scores": "F32 [2,N]: model(..., use_image_text_matching_head=False).logits_per_image = max over queries of image_feat @ text_feat.T (cosine, no temperature)",
        "legacy.*": "the same with config.image_token_index = None and a processor without num_query_tokens: ids without <image>; transformers concatenates a ones mask for the queries (ITM); logits/scores equal the image-token form's (within 1e-6)",
    })
    J["retrieval_note"] = (
        "Blip2ForImageTextRetrieval with the folder's BERT WordPiece tokenizer ([DEC] as bos, [ENC] and <image> "
        "added). With image_token_index set (this folder), forward cuts input_ids[:, Q:] (the <image> tokens) and "
        "feeds [query_tokens; text embeddings] with the processor's full Q+T mask (ITM), or cuts both ids and mask "
        "(ITC). ITM needs as many images as texts (no broadcast: query_tokens expand to the image batch and are "
        "concatenated with the text batch). logits_per_image is what transformers returns in both modes: [N,2] raw "
        "ITM logits, [n_images, N] ITC cosines (max over the Q query features).")


# ---- Blip2Model --------------------------------------------------------------------------------------
def model_case(name, spec, model, proc, tok, T, J):
    images, texts = spec["images"], spec["texts"]
    pv = proc(images=blip.open_images(images), return_tensors="pt")["pixel_values"]
    T["pixel_values"] = f32(pv)
    with torch.no_grad():
        vis = vision_stage(model, pv, T)
        feats = model.get_image_features(pixel_values=pv, return_dict=True)
        assert torch.equal(feats.last_hidden_state, vis.last_hidden_state)
        q = qformer_stage(model, vis.last_hidden_state, T)
        qf = model.get_qformer_features(pixel_values=pv)
        assert torch.equal(qf, q)
        enc = tok(texts, padding=True, return_tensors="pt")
        txt = model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], return_dict=True)
        inputs = dict(proc(images=blip.open_images(images), text=texts, padding=True, return_tensors="pt"))
        out = model(**inputs, return_dict=True)
    T["get_image_features.last_hidden_state"] = f32(feats.last_hidden_state)
    T["get_image_features.pooler_output"] = f32(feats.pooler_output)
    T["get_qformer_features"] = f32(qf)
    T["text.input_ids"] = i64(enc["input_ids"])
    T["text.attention_mask"] = i64(enc["attention_mask"])
    T["get_text_features.last_hidden_state"] = f32(txt.last_hidden_state)
    T["input_ids"] = i64(inputs["input_ids"])
    T["attention_mask"] = i64(inputs["attention_mask"])
    T["logits"] = f32(out.logits)
    J["texts"] = texts
    J["text_input_ids"] = tolist(enc["input_ids"])
    J["text_attention_mask"] = tolist(enc["attention_mask"])
    J["input_ids"] = tolist(inputs["input_ids"])
    J["attention_mask"] = tolist(inputs["attention_mask"])
    J["tensor_doc"].update({
        "get_image_features.last_hidden_state": "F32 [B,1+P,Dv]: Blip2Model.get_image_features(pixel_values).last_hidden_state (= image_embeds)",
        "get_image_features.pooler_output": "F32 [B,Dv]: its pooler_output (= vision.pooler_output)",
        "get_qformer_features": "F32 [B,Q,Dq]: Blip2Model.get_qformer_features(pixel_values) (a tensor in 5.25: the Q-Former's last_hidden_state)",
        "text.input_ids": "I64 [N,T]: tokenizer(texts, padding=True) (right padding, </s> first)",
        "text.attention_mask": "I64 [N,T]",
        "get_text_features.last_hidden_state": "F32 [N,T,D]: Blip2Model.get_text_features(input_ids, attention_mask).last_hidden_state = OPTModel output (after final_layer_norm), no image",
        "input_ids": "I64 [B,Q+T]: processor(images, text=texts, padding=True).input_ids ([<image> x Q, </s>, text, <pad>...])",
        "attention_mask": "I64 [B,Q+T]",
        "logits": "F32 [B,Q+T,V]: Blip2Model(pixel_values, input_ids, attention_mask).logits (the <image> rows replaced by language_projection(qformer output))",
    })


# ---- the q_bias / v_bias form -----------------------------------------------------------------------------
def qv_bias_case(src_name):
    """The opt_prenorm folder with every vision qkv.bias stored as q_bias + v_bias (the keys of LAVIS and
    of the first transformers release); expected outputs are opt_prenorm's."""
    src, dst = os.path.join(OUT, src_name), os.path.join(OUT, "qv_bias")
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    for f in sorted(os.listdir(src)):
        if f not in ("model.safetensors", "expected.json", "expected.safetensors"):
            shutil.copy(os.path.join(src, f), dst)
    sd = load_file(os.path.join(src, "model.safetensors"))
    out, n = {}, 0
    for k, v in sd.items():
        if k.endswith("self_attn.qkv.bias"):
            d = v.shape[0] // 3
            assert torch.count_nonzero(v[d:2 * d]) == 0
            out[k[:-len("qkv.bias")] + "q_bias"] = v[:d].clone()
            out[k[:-len("qkv.bias")] + "v_bias"] = v[2 * d:].clone()
            n += 1
        else:
            out[k] = v
    blip.write_safetensors(os.path.join(dst, "model.safetensors"), out, {"format": "pt"})
    # what transformers 5.25 makes of this form: the q_bias/v_bias keys are unexpected and qkv.bias
    # is missing, so it is left at its initialisation (zeros)
    with warnings.catch_warnings():
        m, info = Blip2ForConditionalGeneration.from_pretrained(dst, output_loading_info=True)
    unexpected = sorted(info["unexpected_keys"])
    missing = sorted(info["missing_keys"])
    J = {"case": "qv_bias", "same_as": src_name, "converted_layers": n,
         "note": (f"{src_name}'s folder with every vision_model.encoder.layers.{{i}}.self_attn.qkv.bias [3Dv] stored "
                  "as self_attn.q_bias [Dv] = qkv.bias[:Dv] and self_attn.v_bias [Dv] = qkv.bias[2Dv:] (qkv.bias "
                  "[Dv:2Dv] is 0), the key form of LAVIS and of the first transformers BLIP-2 release. Every "
                  f"expected output is {src_name}'s (tests/fixtures/blip2/{src_name}/expected.*). transformers "
                  "5.25 itself does NOT convert this form: from_pretrained reports the q_bias/v_bias keys as "
                  "unexpected and qkv.bias as missing (listed here) and leaves those biases at 0."),
         "transformers_unexpected_keys": unexpected, "transformers_missing_keys": missing}
    with open(os.path.join(dst, "expected.json"), "w", encoding="utf-8") as f:
        f.write(blip.compact_json(J))
    return n


# ---- main ------------------------------------------------------------------------------------------------
EOS_ID = None
IMAGE_ID = None


def main():
    global EOS_ID, IMAGE_ID
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(2)
    vocab, merges = train_bpe()
    EOS_ID = vocab["Ċ"]  # "\n" in GPT-2's byte alphabet; BLIP-2 OPT folders stop at 50118 = "Ċ"
    bert_tok, bert_vocab = blip.make_tokenizer()
    os.makedirs(OUT, exist_ok=True)  # README.md there is written by hand
    summary = {}
    for name, spec in CASES.items():
        print(name, flush=True)
        torch.manual_seed(spec["seed"])
        gen = torch.Generator().manual_seed(1000 + spec["seed"])
        size = spec["vision"]["image_size"]
        ip = BlipImageProcessorPil(size={"height": size, "width": size})
        if spec["model"] == "retrieval":
            tok = copy.deepcopy(bert_tok)
            proc = Blip2Processor(image_processor=ip, tokenizer=tok, num_query_tokens=spec["num_query_tokens"])
        else:
            tok = make_opt_tokenizer(vocab, merges, spec["padding_side"] or "right")
            proc = Blip2Processor(image_processor=ip, tokenizer=tok,
                                  num_query_tokens=spec["num_query_tokens"] if spec.get("processor_queries", True)
                                  else None)
        IMAGE_ID = tok.convert_tokens_to_ids("<image>")
        cfg = build_config(spec, len(tok), tok)
        cls = {"generation": Blip2ForConditionalGeneration, "retrieval": Blip2ForImageTextRetrieval,
               "model": Blip2Model}[spec["model"]]
        model = cls(cfg).eval()
        randomise(model, gen, spec.get("eos_boost", 0.0))

        out_dir = os.path.join(OUT, name)
        shutil.rmtree(out_dir, ignore_errors=True)
        model.save_pretrained(out_dir)
        proc.save_pretrained(out_dir)
        proc.image_processor.save_pretrained(out_dir)  # preprocessor_config.json
        if spec["model"] == "retrieval":
            hub_tokenizer_config(out_dir, tok, add_bos=False)
            with open(os.path.join(out_dir, "vocab.txt"), "w", encoding="utf-8") as f:
                f.write("".join(t + "\n" for t in bert_vocab))
            check_tokenizer_forms(out_dir, ["vocab.txt"])
        else:
            hub_tokenizer_config(out_dir, tok, add_bos=True)
            with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
                json.dump(vocab, f, ensure_ascii=False)
            with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
                f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
            check_tokenizer_forms(out_dir, ["vocab.json", "merges.txt"])

        # the folder loads back into the same model and processor
        reloaded = cls.from_pretrained(out_dir).eval()
        sd0, sd1 = model.state_dict(), reloaded.state_dict()
        assert sd0.keys() == sd1.keys() and all(torch.equal(sd0[k], sd1[k]) for k in sd0)
        proc_loaded = AutoProcessor.from_pretrained(out_dir)
        assert proc_loaded.num_query_tokens == proc.num_query_tokens
        assert proc_loaded.tokenizer.padding_side == tok.padding_side
        for p in PROBES:
            assert proc_loaded.tokenizer(p)["input_ids"] == tok(p)["input_ids"]

        tc = cfg.text_config
        T, J = {}, {"case": name, "model_class": cls.__name__, "images": spec["images"],
                    "image_processor": "BlipImageProcessorPil (resample 3 = bicubic, size {height,width} = "
                                       f"{size}, rescale 1/255, OpenAI CLIP mean/std), PIL.Image.open(image) as is",
                    "num_query_tokens": cfg.num_query_tokens, "image_token_index": cfg.image_token_index,
                    "processor_num_query_tokens": proc.num_query_tokens, "padding_side": tok.padding_side,
                    "tokenizer_size": len(tok), "tensor_doc": dict(TENSOR_DOC)}
        if spec["model"] != "retrieval":
            J.update({"vocab_size": tc.vocab_size, "bos_token_id": tc.bos_token_id, "eos_token_id": tc.eos_token_id,
                      "pad_token_id": tc.pad_token_id, "eos_boost": spec.get("eos_boost", 0.0)})
        else:
            J.update({"qformer_vocab_size": cfg.qformer_config.vocab_size, "cls_token_id": tok.cls_token_id,
                      "sep_token_id": tok.sep_token_id, "pad_token_id": tok.pad_token_id})
        gens = []
        if spec["model"] == "generation":
            model64 = copy.deepcopy(model).to(torch.float64)
            # transformers' eager attention in float64 turns a query row whose keys are all masked (a
            # left-padded row before its first real token, as in `legacy`) into NaN, which then leaks
            # through the zero attention weights of later rows; SDPA computes the same attention
            # without that, so the float64 copy (only a near-tie check) uses it.
            model64.language_model.set_attn_implementation("sdpa")
            gens = generation_case(name, spec, model, model64, proc, T, J)
            if not spec.get("processor_queries", True):
                check_legacy(model, proc, spec)
        elif spec["model"] == "retrieval":
            retrieval_case(name, spec, model, proc, tok, T, J)
        else:
            model_case(name, spec, model, proc, tok, T, J)
        J["tensor_shapes"] = {k: list(v.shape) for k, v in sorted(T.items())}
        J["generate"] = gens
        meta = {"generator": "tools/make_blip2_fixtures.py", "transformers": transformers.__version__,
                "torch": torch.__version__, "case": name, "attn_implementation": "eager"}
        blip.write_safetensors(os.path.join(out_dir, "expected.safetensors"), T, meta)
        with open(os.path.join(out_dir, "expected.json"), "w", encoding="utf-8") as f:
            f.write(blip.compact_json(J))
        back = load_file(os.path.join(out_dir, "expected.safetensors"))
        assert all(torch.equal(back[k], T[k]) for k in T)
        summary[name] = gens
    n = qv_bias_case("opt_prenorm")
    print(f"qv_bias: {n} layers converted")
    versions = {"transformers": transformers.__version__, "torch": torch.__version__,
                "tokenizers": tokenizers.__version__, "Pillow": PIL.__version__, "safetensors": safetensors.__version__,
                "numpy": np.__version__, "python": sys.version.split()[0],
                "bpe_training_text": f"{BPE_SOURCE} sha256 {BPE_SOURCE_SHA256}"}
    with open(os.path.join(OUT, "VERSIONS.json"), "w") as f:
        json.dump(versions, f, indent=1)
        f.write("\n")
    for name, gens in summary.items():
        d = os.path.join(OUT, name)
        print(f"{name}: {sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))} bytes")
        for g in gens:
            hit = [EOS_ID in r for r in g["new_tokens"]]
            print(f"    {g['name']:36s} new {[len(r) for r in g['new_tokens']]} eos {hit} "
                  f"{g.get('min_top2_margin', g.get('sequences_scores'))}")
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print(f"tests/fixtures/blip2: {total / 1e6:.3f} MB; versions {versions}")


def check_legacy(model, proc, spec):
    """The legacy note's claims: without <image> tokens the image plays no part."""
    with torch.no_grad():
        a = dict(proc(images=blip.open_images(spec["images"]), text=LOGITS_TEXTS, padding=True, return_tensors="pt"))
        b = dict(a, pixel_values=a["pixel_values"].flip(0))
        la, lb = model(**a).logits, model(**b).logits
        assert torch.equal(la, lb)
        lm = model.language_model(input_ids=a["input_ids"], attention_mask=a["attention_mask"]).logits
        assert torch.equal(la, lm)


if __name__ == "__main__":
    main()
