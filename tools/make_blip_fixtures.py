#!/usr/bin/env python3
"""Writes tiny random BLIP checkpoints and transformers' outputs for them (tests/fixtures/blip/).

Run by hand from the repository root (never by CI):

    pip install torch transformers==5.25.0 safetensors pillow==13.0.0
    python3 tools/make_blip_fixtures.py

Every case folder is a complete Hugging Face BLIP folder, written by transformers' own classes:
  config.json, model.safetensors, generation_config.json   model.save_pretrained (float32)
  processor_config.json, tokenizer.json, tokenizer_config.json
                                   BlipProcessor.save_pretrained (the transformers 5 form: the image
                                   processor's fields nested under "image_processor")
  preprocessor_config.json         BlipImageProcessorPil.save_pretrained (the form transformers 4 and
                                   the Hub's BLIP folders use)
  vocab.txt                        the WordPiece vocabulary without the added tokens, one token a
                                   line in id order (transformers 5 no longer writes it; loading
                                   vocab.txt + tokenizer_config.json gives the same ids, checked here)
and the outputs:
  expected.safetensors             inputs and outputs, float32 (ids and masks int64)
  expected.json                    images, texts, the ids the processor produced and the ids fed to
                                   the model, a description of every tensor, and `generate`: ids of
                                   model.generate(**processor(...), **kwargs) and their decoded text

tests/fixtures/blip/image_processor/ holds BLIP image processor config files in both forms
(configs/*.json) and, for every image of tests/fixtures/images, BlipImageProcessorPil's uint8 resize
under a square int size and a height x width dict (expected.safetensors, "<file>|<config>").
VERSIONS.json records the versions; tests/fixtures/blip/README.md (written by hand) describes it all.

The weights are the classes' initialisation with noise added to every parameter (LayerNorm weights
around 1, every bias non-zero), so no parameter is trivially 0 or 1. All pixel values come from
BlipImageProcessorPil (Pillow bicubic straight to the model's size, no crop), fed the committed
images of tests/fixtures/images opened with PIL.Image.open as they are. Every generate case is
re-run in float64 and must give the same ids, so no case hangs on a float32 near-tie.
"""
import json
import math
import os
import re
import shutil
import struct
import sys
import warnings

import numpy as np
import PIL
import safetensors
import tokenizers
import torch
import transformers
from PIL import Image
from safetensors.torch import load_file
from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipForImageTextRetrieval,
                          BlipForQuestionAnswering, BlipImageProcessorPil, BlipModel, BlipProcessor)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIXTURES, "blip")

# ---- the WordPiece vocabulary ------------------------------------------------------------------
# BERT's layout in miniature: [PAD] first, two [unused] slots so that id 2 (BlipTextConfig's eos
# default, never used by BLIP's generation which stops at [SEP]) is an unused token as in
# bert-base-uncased, then the other specials, punctuation, digits, letters and their ## forms, and
# whole words and suffixes common in captions and VQA questions.
SPECIALS = ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCT = list(".,?!'\"-:;()/&")
WORDS = """
a an the of on in at with and to is are was there this that these what which who where how many
much color colour picture photo image man woman person people men women boy girl child cat dog
bird horse car bus train table cup coffee tea food plate bowl sitting standing holding wearing
eating looking lying flying red blue green white black yellow orange brown gray grey pink two
three four one big small large little space suit astronaut flag room street kitchen window bed
couch chair sky water grass tree trees field road top front back next near inside outside over
under some his her its their it he she they do does doing has have can picture photograph close
up shot view rocket launch gray tall wide old young shirt hat glass mug saucer spoon latte art
foam cream milk wooden floor wall background kind type animal pet kitten sleeping side
from by for as into onto while during above below behind beside between across around down off
out about very also not no yes only just both each all other another same different three
five six seven eight nine ten sun moon light dark bright night day morning snow rain beach sea
ocean river lake mountain hill city building house door park bench sign clock phone computer
laptop book paper box bag ball game player team plane boat ship bike motorcycle truck pizza
sandwich cake fruit apple banana orange vegetable salad bread breakfast dinner lunch drink bottle
wine beer juice face hand hands head hair eyes smile dress jacket tie helmet glasses umbrella
""".split()
PIECES = ["##s", "##es", "##ing", "##ed", "##er", "##ers", "##ly", "##est", "##y", "##ie", "##n", "##t",
          "##'", "##ful", "##ness", "##ish", "##able", "##al", "##ic", "##on", "##an", "##en", "##le"]


def make_vocab():
    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens = SPECIALS + PUNCT + list("0123456789") + list(letters) + ["##" + c for c in letters]
    tokens += ["##" + d for d in "0123456789"] + WORDS + PIECES
    return list(dict.fromkeys(tokens))  # order kept, duplicates dropped


def make_tokenizer():
    vocab = make_vocab()
    tok = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    # What BLIP's conversion script (convert_blip_original_pytorch_to_hf.py) does to
    # bert-base-uncased: [DEC] as bos_token, then [ENC] as an additional special token.
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tok, vocab


# ---- the cases -----------------------------------------------------------------------------------
# text: BlipTextConfig fields; vision: BlipVisionConfig fields. vocab_size, bos/sep/pad ids are set
# from the tokenizer below; eos_token_id stays BLIP's default 2.
CASES = {
    "caption_a": dict(
        model="caption",
        vision=dict(image_size=32, patch_size=8, hidden_size=24, intermediate_size=40, num_hidden_layers=2,
                    num_attention_heads=4, hidden_act="gelu"),
        text=dict(hidden_size=24, intermediate_size=36, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=40, hidden_act="gelu"),
        images=["images/astronaut_420.jpg", "images/coffee_444.jpg"],
        captions=["an astronaut holding a flag.", "a cup of coffee with latte art on a wooden table"],
        prompt="the picture shows", prompt_pair=["a photo of", "the picture shows"],
        seed=11, sep_bias=1.6),
    # a 5x5 patch grid; text hidden size differs from the vision one (cross-attention in-features),
    # tanh GELU in the text tower, quick GELU in the vision tower
    "caption_b": dict(
        model="caption",
        vision=dict(image_size=30, patch_size=6, hidden_size=24, intermediate_size=40, num_hidden_layers=3,
                    num_attention_heads=3, hidden_act="quick_gelu"),
        text=dict(hidden_size=16, intermediate_size=40, num_hidden_layers=3, num_attention_heads=2,
                  max_position_embeddings=36, hidden_act="gelu_new"),
        images=["images/cat_crop.png", "images/odd_32x63.png"],
        captions=["a kitten sleeping on a couch", "red and blue"],
        prompt="a picture of", prompt_pair=["a picture of", "the picture shows a"],
        seed=12, sep_bias=0.8),
    # 30 px with 7 px patches: the stride-7 convolution covers 4x4 patches (28 px) and never reads
    # the last 2 rows and columns; num_patches = (30 // 7)^2 = 16. max_position_embeddings 24 caps
    # the default generation length (prompt + 20 new tokens, at most max_position_embeddings).
    "caption_remainder": dict(
        model="caption",
        vision=dict(image_size=30, patch_size=7, hidden_size=20, intermediate_size=36, num_hidden_layers=2,
                    num_attention_heads=5, hidden_act="gelu_new"),
        text=dict(hidden_size=24, intermediate_size=32, num_hidden_layers=1, num_attention_heads=3,
                  max_position_embeddings=24, hidden_act="relu"),
        images=["images/chelsea_422_progressive.jpg", "images/rgba_30x40.png"],
        captions=["a cat looking up", "a small pink and green picture of some trees"],
        prompt="the picture shows", prompt_pair=["the picture shows", "a photo of"],
        seed=13, sep_bias=1.4),
    "retrieval": dict(
        model="retrieval",
        vision=dict(image_size=24, patch_size=8, hidden_size=24, intermediate_size=40, num_hidden_layers=2,
                    num_attention_heads=2, hidden_act="gelu"),
        text=dict(hidden_size=24, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=32, hidden_act="gelu"),
        image_text_hidden_size=16,
        images=["images/astronaut_420.jpg", "images/cat_crop.png"],
        single_texts=["an astronaut in a white space suit", "a cat", "two dogs on the grass near a red car"],
        pair_texts=["an astronaut with a flag", "a sleeping kitten"],
        seed=14),
    # BlipForQuestionAnswering needs vision hidden == text hidden: the answer decoder's
    # cross-attention (in-features encoder_hidden_size = vision hidden) reads the question states
    "vqa": dict(
        model="vqa",
        vision=dict(image_size=36, patch_size=9, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                    num_attention_heads=4, hidden_act="gelu"),
        text=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=32, hidden_act="gelu"),
        images=["images/coffee_444.jpg", "images/palette_40x50.png"],
        questions=["what is in the cup?", "how many people are there in the picture?"],
        answers=["coffee", "two"],
        seed=15, sep_bias=0.7),
    "model": dict(
        model="contrastive",
        vision=dict(image_size=28, patch_size=7, hidden_size=16, intermediate_size=36, num_hidden_layers=1,
                    num_attention_heads=2, hidden_act="gelu"),
        text=dict(hidden_size=20, intermediate_size=30, num_hidden_layers=2, num_attention_heads=5,
                  max_position_embeddings=24, hidden_act="gelu"),
        projection_dim=12,
        images=["images/camera_gray.jpg", "images/rocket_tall.png"],
        texts=["a man with a camera", "a rocket launch", "a gray photo of a tall tree"],
        seed=16),
}

# generate() settings run for every generative case ({} = the model's generation_config defaults)
# transformers 5 (generation/utils.py, _prepare_generated_length): with max_length set nowhere (call,
# generation_config.json) the limit is 20 NEW tokens, max_length = 20 + start length, capped at the
# text config's max_position_embeddings. transformers 4 counted the start tokens in the 20.
DEFAULT_LENGTH_NOTE = (
    "kwargs {} or without max_length/max_new_tokens: transformers 5 sets max_length = 20 + the decoder's start "
    "length (after generate's rewrite), capped at text_config.max_position_embeddings (generation/utils.py "
    "_prepare_generated_length; generation_config.json sets no max_length). min_new_tokens suppresses [SEP] "
    "until that many tokens are new. eos for stopping and min-length is sep_token_id; finished rows are padded "
    "with pad_token_id 0. Beam records carry sequences_scores, greedy ones min_top2_margin (smallest gap between "
    "the best and second processed score over the steps, rows still running; every case also gives the same ids in "
    "float64).")
GEN_KWARGS = [
    ("defaults", {}),
    ("beams3", {"num_beams": 3}),
    ("new_tokens_12_min_5", {"max_new_tokens": 12, "min_new_tokens": 5}),
    ("repetition_1_5", {"repetition_penalty": 1.5}),
    ("beams2_return2_lp0_6", {"num_beams": 2, "num_return_sequences": 2, "length_penalty": 0.6}),
    ("beams3_early_stopping", {"num_beams": 3, "early_stopping": True}),
    ("beams3_never", {"num_beams": 3, "early_stopping": "never", "max_new_tokens": 9}),
    ("beams4_lp2_min_4", {"num_beams": 4, "length_penalty": 2.0, "min_new_tokens": 4, "max_new_tokens": 10}),
]


# ---- helpers ---------------------------------------------------------------------------------------
def randomise(model, gen):
    """Every parameter gets noise: LayerNorm weights ~1 ± 0.1, everything else ~N(0, 0.15²) plus
    its initial value (the vision initialiser_range is 1e-10, so position and class embeddings
    would otherwise be ~0)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "LayerNorm" in name or "layer_norm" in name or "layernorm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * noise)
            elif name == "logit_scale":
                p.copy_(p + 0.3 * noise)
            else:
                p.copy_(p + 0.15 * noise)


def build_config(spec, tok):
    text = dict(spec["text"])
    text.update(vocab_size=len(tok), bos_token_id=tok.bos_token_id, sep_token_id=tok.sep_token_id,
                pad_token_id=tok.pad_token_id)
    extra = {k: spec[k] for k in ("projection_dim", "image_text_hidden_size") if k in spec}
    cfg = BlipConfig(text_config=text, vision_config=dict(spec["vision"]), **extra)
    cfg._attn_implementation = "eager"
    return cfg


def make_processor(size, tok):
    ip = BlipImageProcessorPil(size={"height": size, "width": size})
    return BlipProcessor(image_processor=ip, tokenizer=tok)


def open_images(paths):
    return [Image.open(os.path.join(FIXTURES, p)) for p in paths]


def write_safetensors(path, tensors, metadata):
    """safetensors with a deterministic header (names and metadata sorted), so that regenerating
    gives the same bytes; safetensors' own writer orders the metadata differently run to run."""
    codes = {torch.float32: "F32", torch.int64: "I64", torch.uint8: "U8"}
    header, blobs, off = {"__metadata__": dict(sorted(metadata.items()))}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        b = t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": codes[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def f32(t):
    return t.detach().to(torch.float32).contiguous().clone()


def i64(t):
    return t.detach().to(torch.int64).contiguous().clone()


def tolist(t):
    return [[int(v) for v in row] for row in t]


def vision_tensors(vision_model, pixel_values, T):
    out = vision_model(pixel_values=pixel_values, output_hidden_states=True, return_dict=True)
    assert torch.equal(vision_model.post_layernorm(out.hidden_states[-1]), out.last_hidden_state)
    T["vision.last_hidden_state"] = f32(out.last_hidden_state)
    T["vision.pooler_output"] = f32(out.pooler_output)
    for i, h in enumerate(out.hidden_states):
        T[f"vision.hidden_states.{i}"] = f32(h)
    return out, len(out.hidden_states)


def greedy_margin(step_scores, ids, eos):
    """Smallest gap between the best and second-best processed score over the steps of a greedy run,
    over the rows still running at that step (finished rows only receive padding)."""
    best = math.inf
    start = ids.shape[1] - len(step_scores)
    for t, s in enumerate(step_scores):
        running = ~(ids[:, start:start + t] == eos).any(dim=1)
        if not running.any():
            break
        s = s[running].to(torch.float64)
        finite = torch.where(torch.isfinite(s), s, torch.full_like(s, -1e30))
        top = torch.topk(finite, 2, dim=-1).values
        best = min(best, float((top[:, 0] - top[:, 1]).min()))
    return best


def run_generate(model, model64, inputs, kwargs, eos=None):
    """ids exactly as model.generate returns them, checked against a float64 copy of the model; eos
    (for the greedy margin) defaults to BLIP's [SEP]."""
    ids = model.generate(**{k: v.clone() for k, v in inputs.items()}, **kwargs)
    inputs64 = {k: (v.to(torch.float64) if v.is_floating_point() else v.clone()) for k, v in inputs.items()}
    ids64 = model64.generate(**inputs64, **kwargs)
    if not torch.equal(ids, ids64):
        raise SystemExit(f"float32 and float64 generate disagree for {kwargs}: a near-tie; change the seed")
    extra = {}
    detail = model.generate(**{k: v.clone() for k, v in inputs.items()}, **kwargs, return_dict_in_generate=True,
                            output_scores=True)
    assert torch.equal(detail.sequences, ids)
    if kwargs.get("num_beams", 1) > 1:
        extra["sequences_scores"] = [float(x) for x in detail.sequences_scores]
    else:
        extra["min_top2_margin"] = greedy_margin(detail.scores, ids,
                                                 model.config.text_config.sep_token_id if eos is None else eos)
    return ids, extra


def gen_record(name, images, text_key, text, kwargs, inputs, ids, extra, proc):
    rec = {"name": name, "images": images, text_key: text, "kwargs": kwargs,
           "input_ids": tolist(inputs["input_ids"]) if "input_ids" in inputs else None,
           "attention_mask": tolist(inputs["attention_mask"]) if "attention_mask" in inputs else None,
           "ids": tolist(ids), "texts": proc.batch_decode(ids, skip_special_tokens=True)}
    rec.update(extra)
    return rec


# ---- per-model fixtures -------------------------------------------------------------------------------
def caption_case(name, spec, model, model64, proc, tok, T, J):
    pv = proc(images=open_images(spec["images"]), return_tensors="pt")["pixel_values"]
    T["pixel_values"] = f32(pv)
    with torch.no_grad():
        vis, n_vis = vision_tensors(model.vision_model, pv, T)
        enc = proc(text=spec["captions"], padding=True, return_tensors="pt")
        # BlipForConditionalGeneration.forward hands input_ids to the decoder unchanged; the caption
        # is fed the way generate() starts a caption: position 0 ([CLS]) overwritten with bos [DEC].
        fed = enc["input_ids"].clone()
        fed[:, 0] = tok.bos_token_id
        out = model(pixel_values=pv, input_ids=fed, attention_mask=enc["attention_mask"], return_dict=True)
        dec = model.text_decoder(input_ids=fed, attention_mask=enc["attention_mask"],
                                 encoder_hidden_states=vis.last_hidden_state, output_hidden_states=True,
                                 return_dict=True)
        assert torch.equal(dec.logits, out.logits)
        assert torch.equal(dec.hidden_states[-1], model.text_decoder.bert(
            input_ids=fed, attention_mask=enc["attention_mask"], encoder_hidden_states=vis.last_hidden_state,
            is_decoder=True).last_hidden_state)
    J["tensor_doc"].update({
        "input_ids": "I64 [B,T]: the ids fed to the decoder (fed_input_ids)",
        "attention_mask": "I64 [B,T]: the processor's padding mask",
        "logits": "F32 [B,T,V]: model(pixel_values, input_ids, attention_mask).logits",
        "text.hidden_states.{i}": "F32 [B,T,Dt]: text decoder, i=0 embeddings after LayerNorm, i>0 output of layer i",
    })
    T["input_ids"] = i64(fed)
    T["attention_mask"] = i64(enc["attention_mask"])
    T["logits"] = f32(out.logits)
    for i, h in enumerate(dec.hidden_states):
        T[f"text.hidden_states.{i}"] = f32(h)
    J["captions"] = spec["captions"]
    J["processor_input_ids"] = tolist(enc["input_ids"])
    J["processor_attention_mask"] = tolist(enc["attention_mask"])
    J["fed_input_ids"] = tolist(fed)
    J["fed_note"] = ("input_ids (tensor) = the processor's ids with position 0 ([CLS]) replaced by bos [DEC], "
                     "fed with the processor's attention_mask to model(pixel_values, input_ids, attention_mask) "
                     "(labels=None: forward uses input_ids as given; the trailing [SEP] is fed too). logits "
                     "[B,T,V] at every position; text.hidden_states.0 is the embedding output (after "
                     "LayerNorm), .i the output of decoder layer i (cross-attention to vision.last_hidden_state "
                     "with an all-ones image mask).")
    J["tensors"] = {"vision.hidden_states": n_vis, "text.hidden_states": len(dec.hidden_states)}

    images = spec["images"]
    gens = []
    runs = [(k, kw, [None, spec["prompt"]]) for k, kw in GEN_KWARGS]
    if name == "caption_remainder":
        runs = [(k, kw, [None, spec["prompt"]]) for k, kw in GEN_KWARGS if k in ("defaults", "beams3")]
    with torch.no_grad():
        for kname, kwargs, prompts in runs:
            for prompt in prompts:
                inputs = dict(proc(images=open_images(images), text=prompt, return_tensors="pt")) if prompt else \
                    dict(proc(images=open_images(images), return_tensors="pt"))
                if prompt:  # one prompt for the whole batch of images, as a CLI --prompt would give
                    inputs["input_ids"] = inputs["input_ids"].repeat(len(images), 1)
                    inputs["attention_mask"] = inputs["attention_mask"].repeat(len(images), 1)
                ids, extra = run_generate(model, model64, inputs, kwargs)
                tag = f"{kname}|{'prompt' if prompt else 'no_prompt'}"
                gens.append(gen_record(tag, images, "prompt", prompt, kwargs, inputs, ids, extra, proc))
        # one image alone (batch 1), and a batch of two prompts of different lengths (right-padded)
        for kname, kwargs in GEN_KWARGS[:2] + GEN_KWARGS[4:5]:
            inputs = dict(proc(images=open_images(images[:1]), return_tensors="pt"))
            ids, extra = run_generate(model, model64, inputs, kwargs)
            gens.append(gen_record(f"{kname}|single_image", images[:1], "prompt", None, kwargs, inputs, ids,
                                   extra, proc))
            inputs = dict(proc(images=open_images(images), text=spec["prompt_pair"], padding=True,
                               return_tensors="pt"))
            ids, extra = run_generate(model, model64, inputs, kwargs)
            gens.append(gen_record(f"{kname}|prompt_pair", images, "prompt", spec["prompt_pair"], kwargs, inputs,
                                   ids, extra, proc))
    J["generate_length_note"] = DEFAULT_LENGTH_NOTE
    J["generate_note"] = (
        "ids = BlipForConditionalGeneration.generate(pixel_values, input_ids, attention_mask, **kwargs): it "
        "overwrites input_ids[:, 0] with bos [DEC], drops the last column of input_ids and attention_mask "
        "(the [SEP]; with no prompt the start is [bos, eos=2] and only [DEC] remains), and runs the text "
        "decoder with eos_token_id = sep_token_id ([SEP]) and pad_token_id = 0, image mask all ones. With "
        "right-padded prompts of different lengths the shorter row keeps its [SEP] (only the last column is "
        "dropped) and its mask marks the padding. Position ids (GenerationMixin._prepare_position_ids_for_generation): "
        "cumsum(mask) - 1 over the start, 0 at padded slots, then each new token gets the previous last position "
        "+ 1, so after right padding a shorter row's first new token has position 1 (its last, padded slot holds "
        "0); new tokens are unmasked and attend to the unpadded start and to each other. input_ids/attention_mask in each record are the processor's "
        "(before that rewrite). A prompt string is tokenized once and repeated for every image.")
    return gens


def retrieval_case(name, spec, model, proc, T, J):
    pv = proc(images=open_images(spec["images"]), return_tensors="pt")["pixel_values"]
    T["pixel_values"] = f32(pv)
    with torch.no_grad():
        vis, n_vis = vision_tensors(model.vision_model, pv, T)
        J["tensors"] = {"vision.hidden_states": n_vis}
        for prefix, n_img, texts in (("single", 1, spec["single_texts"]), ("pairs", 2, spec["pair_texts"])):
            inputs = proc(images=open_images(spec["images"][:n_img]), text=texts, padding=True, return_tensors="pt")
            assert torch.equal(inputs["pixel_values"], pv[:n_img])
            ids, mask = inputs["input_ids"], inputs["attention_mask"]
            itm = model(input_ids=ids, pixel_values=inputs["pixel_values"], attention_mask=mask,
                        use_itm_head=True, return_dict=True)
            itc = model(input_ids=ids, pixel_values=inputs["pixel_values"], attention_mask=mask,
                        use_itm_head=False, return_dict=True)
            img = vis.last_hidden_state[:n_img]
            multimodal = model.text_encoder(input_ids=ids, attention_mask=mask, encoder_hidden_states=img,
                                            encoder_attention_mask=torch.ones(img.shape[:-1], dtype=torch.long),
                                            return_dict=True).last_hidden_state
            unimodal = model.text_encoder(input_ids=ids, attention_mask=mask, return_dict=True).last_hidden_state
            image_feat = torch.nn.functional.normalize(model.vision_proj(img[:, 0, :]), dim=-1)
            text_feat = torch.nn.functional.normalize(model.text_proj(unimodal[:, 0, :]), dim=-1)
            assert torch.allclose(model.itm_head(multimodal[:, 0, :]), itm.itm_score)
            assert torch.equal(image_feat @ text_feat.t(), itc.itm_score)
            T[f"{prefix}.input_ids"] = i64(ids)
            T[f"{prefix}.attention_mask"] = i64(mask)
            T[f"{prefix}.itm_logits"] = f32(itm.itm_score)
            T[f"{prefix}.itm_scores"] = f32(torch.softmax(itm.itm_score, dim=1)[:, 1])
            T[f"{prefix}.itc_scores"] = f32(itc.itm_score)
            T[f"{prefix}.text_encoder.last_hidden_state"] = f32(multimodal)
            T[f"{prefix}.text_encoder.unimodal_last_hidden_state"] = f32(unimodal)
            T[f"{prefix}.image_feat"] = f32(image_feat)
            T[f"{prefix}.text_feat"] = f32(text_feat)
            J[prefix] = {"images": spec["images"][:n_img], "texts": texts, "input_ids": tolist(ids),
                         "attention_mask": tolist(mask),
                         "itm_scores": [float(x) for x in torch.softmax(itm.itm_score, dim=1)[:, 1]],
                         "itc_scores": tolist_f(itc.itm_score)}
    J["tensor_doc"].update({
        "{single,pairs}.input_ids": "I64 [N,T]: processor ids (padding=True)", "{single,pairs}.attention_mask": "I64 [N,T]",
        "{single,pairs}.itm_logits": "F32 [N,2]", "{single,pairs}.itm_scores": "F32 [N]: softmax(itm_logits)[:,1]",
        "{single,pairs}.itc_scores": "F32 [n_img,N]: use_itm_head=False output",
        "{single,pairs}.text_encoder.last_hidden_state": "F32 [N,T,D]: with the image (ITM)",
        "{single,pairs}.text_encoder.unimodal_last_hidden_state": "F32 [N,T,D]: without the image (ITC)",
        "{single,pairs}.image_feat": "F32 [n_img,E]", "{single,pairs}.text_feat": "F32 [N,E]",
    })
    J["retrieval_note"] = (
        "single: 1 image x 3 texts, exactly BlipProcessor(images=[image 0], text=texts, padding=True) into "
        "BlipForImageTextRetrieval: pixel_values has batch 1, the text encoder's cross-attention broadcasts the "
        "one image over the 3 texts; itm_logits [3,2], itm_scores = softmax(itm_logits)[:,1] [3], itc_scores "
        "[1,3] (use_itm_head=False: normalize(vision_proj(image CLS)) @ normalize(text_proj(text CLS)).T, no "
        "temperature). pairs: 2 images x 2 texts, text i with image i for ITM (itm_logits [2,2]), itc_scores "
        "[2 images, 2 texts] (every image against every text). The processor's ids are fed unchanged (first "
        "token [CLS]). text_encoder.last_hidden_state: text encoder (encoder mode, padding mask) with "
        "cross-attention to vision.last_hidden_state (image mask all ones), as for ITM; "
        "text_encoder.unimodal_last_hidden_state: the same without the image, as for ITC. image_feat [n_img,E], "
        "text_feat [n_text,E]. pixel_values holds both images; single uses image 0 of it.")


def tolist_f(t):
    return [[float(v) for v in row] for row in t]


def vqa_case(name, spec, model, model64, proc, tok, T, J):
    pv = proc(images=open_images(spec["images"]), return_tensors="pt")["pixel_values"]
    T["pixel_values"] = f32(pv)
    with torch.no_grad():
        vis, n_vis = vision_tensors(model.vision_model, pv, T)
        q = proc(text=spec["questions"], padding=True, return_tensors="pt")
        states = model.text_encoder(input_ids=q["input_ids"], attention_mask=q["attention_mask"],
                                    encoder_hidden_states=vis.last_hidden_state,
                                    encoder_attention_mask=torch.ones(vis.last_hidden_state.shape[:-1],
                                                                      dtype=torch.long),
                                    return_dict=True).last_hidden_state
        a = proc(text=spec["answers"], padding=True, return_tensors="pt")
        fed = a["input_ids"].clone()
        fed[:, 0] = tok.bos_token_id
        # what BlipForQuestionAnswering.forward computes with decoder_input_ids: the decoder attends to
        # the question states under the question's own padding mask (generate() uses all ones instead)
        captured = {}
        hook = model.text_decoder.register_forward_hook(lambda m, i, o: captured.setdefault("logits", o.logits))
        model(input_ids=q["input_ids"], pixel_values=pv, attention_mask=q["attention_mask"],
              decoder_input_ids=fed, decoder_attention_mask=a["attention_mask"])
        hook.remove()
        dec = model.text_decoder(input_ids=fed, attention_mask=a["attention_mask"], encoder_hidden_states=states,
                                 encoder_attention_mask=q["attention_mask"], output_hidden_states=True,
                                 return_dict=True)
        assert torch.equal(dec.logits, captured["logits"])
    J["tensor_doc"].update({
        "input_ids": "I64 [B,Tq]: question ids from the processor", "attention_mask": "I64 [B,Tq]: their padding mask",
        "question_states": "F32 [B,Tq,D]: text_encoder output with cross-attention to the image",
        "answer_input_ids": "I64 [B,Ta]: answer ids fed to the decoder ([CLS] replaced by [DEC])",
        "answer_attention_mask": "I64 [B,Ta]", "answer_logits": "F32 [B,Ta,V]: decoder logits",
        "answer.hidden_states.{i}": "F32 [B,Ta,D]: decoder, i=0 embeddings after LayerNorm, i>0 layer i",
    })
    T["input_ids"] = i64(q["input_ids"])
    T["attention_mask"] = i64(q["attention_mask"])
    T["question_states"] = f32(states)
    T["answer_input_ids"] = i64(fed)
    T["answer_attention_mask"] = i64(a["attention_mask"])
    T["answer_logits"] = f32(dec.logits)
    for i, h in enumerate(dec.hidden_states):
        T[f"answer.hidden_states.{i}"] = f32(h)
    J["questions"] = spec["questions"]
    J["answers"] = spec["answers"]
    J["processor_input_ids"] = tolist(q["input_ids"])
    J["processor_attention_mask"] = tolist(q["attention_mask"])
    J["processor_answer_ids"] = tolist(a["input_ids"])
    J["fed_answer_ids"] = tolist(fed)
    J["fed_note"] = (
        "question_states = text_encoder(input_ids, attention_mask, encoder_hidden_states=vision.last_hidden_state, "
        "image mask all ones) (encoder mode). answer_logits = text_decoder(answer_input_ids, answer_attention_mask, "
        "encoder_hidden_states=question_states, encoder_attention_mask=attention_mask (the question's padding "
        "mask, as BlipForQuestionAnswering.forward passes it)); answer_input_ids = the processor's answer ids "
        "with [CLS] replaced by bos [DEC]. answer.hidden_states.0 = decoder embedding output, .i = layer i.")
    J["tensors"] = {"vision.hidden_states": n_vis, "answer.hidden_states": len(dec.hidden_states)}

    gens = []
    images = spec["images"]
    with torch.no_grad():
        for kname, kwargs in GEN_KWARGS:
            inputs = dict(proc(images=open_images(images), text=spec["questions"], padding=True, return_tensors="pt"))
            ids, extra = run_generate(model, model64, inputs, kwargs)
            gens.append(gen_record(f"{kname}|pair", images, "question", spec["questions"], kwargs, inputs, ids,
                                   extra, proc))
        for kname, kwargs in GEN_KWARGS[:2]:
            inputs = dict(proc(images=open_images(images[:1]), text=spec["questions"][1], return_tensors="pt"))
            ids, extra = run_generate(model, model64, inputs, kwargs)
            gens.append(gen_record(f"{kname}|single", images[:1], "question", spec["questions"][1], kwargs, inputs,
                                   ids, extra, proc))
    J["generate_length_note"] = DEFAULT_LENGTH_NOTE
    J["generate_note"] = (
        "ids = BlipForQuestionAnswering.generate(input_ids, pixel_values, attention_mask, **kwargs): the "
        "question is encoded with its padding mask and cross-attention to the image; the decoder starts from "
        "[DEC] alone, attends to the question states with an all-ones mask (padding included), eos = [SEP], "
        "pad = 0.")
    return gens


def contrastive_case(name, spec, model, proc, T, J):
    inputs = proc(images=open_images(spec["images"]), text=spec["texts"], padding=True, return_tensors="pt")
    pv = inputs["pixel_values"]
    T["pixel_values"] = f32(pv)
    with torch.no_grad():
        vis, n_vis = vision_tensors(model.vision_model, pv, T)
        out = model(input_ids=inputs["input_ids"], pixel_values=pv, attention_mask=inputs["attention_mask"],
                    return_dict=True)
        txt = model.text_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                               return_dict=True)
        assert torch.equal(txt.pooler_output, out.text_model_output.pooler_output)
    J["tensor_doc"].update({
        "input_ids": "I64 [N,T]", "attention_mask": "I64 [N,T]",
        "image_embeds": "F32 [B,P]: normalised visual_projection(vision.pooler_output)",
        "text_embeds": "F32 [N,P]: normalised text_projection(text.pooler_output)",
        "logits_per_image": "F32 [B,N]", "logits_per_text": "F32 [N,B]",
        "text.last_hidden_state": "F32 [N,T,Dt]: text_model, encoder mode, no image",
        "text.pooler_output": "F32 [N,Dt]: tanh(pooler.dense(text.last_hidden_state[:,0]))",
    })
    T["input_ids"] = i64(inputs["input_ids"])
    T["attention_mask"] = i64(inputs["attention_mask"])
    T["image_embeds"] = f32(out.image_embeds)
    T["text_embeds"] = f32(out.text_embeds)
    T["logits_per_image"] = f32(out.logits_per_image)
    T["logits_per_text"] = f32(out.logits_per_text)
    T["text.last_hidden_state"] = f32(txt.last_hidden_state)
    T["text.pooler_output"] = f32(txt.pooler_output)
    J["texts"] = spec["texts"]
    J["input_ids"] = tolist(inputs["input_ids"])
    J["attention_mask"] = tolist(inputs["attention_mask"])
    J["logit_scale"] = float(model.logit_scale)
    J["tensors"] = {"vision.hidden_states": n_vis}
    J["model_note"] = (
        "BlipModel(input_ids, pixel_values, attention_mask): image_embeds = normalize(visual_projection("
        "vision.pooler_output)), text_embeds = normalize(text_projection(text.pooler_output)) (both projections "
        "without bias), logits_per_text = exp(logit_scale) * text_embeds @ image_embeds.T, logits_per_image its "
        "transpose. text.* = text_model in encoder mode (padding mask, no image; the layers' cross-attention "
        "is skipped), text.pooler_output = tanh(dense(text.last_hidden_state[:,0])).")


def compact_json(obj):
    """Indented JSON with every list of numbers on one line."""
    text = json.dumps(obj, indent=1, ensure_ascii=False)
    # json.dumps escapes newlines inside strings, so "[" followed by a newline opens a list
    flat = re.sub(r"\[\n\s*([-0-9.e+, \n]*?)\s*\]", lambda m: "[" + ", ".join(
        x.strip() for x in m.group(1).split(",") if x.strip()) + "]", text)
    assert json.loads(flat) == obj
    return flat + "\n"


# ---- image processor fixtures ----------------------------------------------------------------------------
# image_processor/configs/*.json in the forms a BLIP folder may hold; expected.safetensors: for every
# image of tests/fixtures/images, BlipImageProcessorPil's uint8 output (rescale and normalise off, so
# HF returns the resized pixels) under the two resize configs, named "<file>|<config>", U8 [3,H,W].
IMAGE_PROCESSOR_CONFIGS = {
    # the Hub/transformers 4 form with a legacy int size (a square for BLIP: default_to_square=True)
    "legacy_int_size": {"do_normalize": True, "do_resize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
                        "image_processor_type": "BlipImageProcessor", "image_std": [0.26862954, 0.26130258, 0.27577711],
                        "processor_class": "BlipProcessor", "resample": 3, "rescale_factor": 0.00392156862745098,
                        "size": 24},
    "square_uint8": {"size": 24, "do_rescale": False, "do_normalize": False},
    "rect_uint8": {"size": {"height": 17, "width": 23}, "do_rescale": False, "do_normalize": False,
                   "image_processor_type": "BlipImageProcessor"},
    # transformers 5's processor_config.json form of legacy_int_size's fields
    "processor_v5": {"image_processor": {"do_convert_rgb": True, "do_normalize": True, "do_rescale": True,
                                         "do_resize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
                                         "image_processor_type": "BlipImageProcessor",
                                         "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3,
                                         "rescale_factor": 0.00392156862745098, "size": {"height": 24, "width": 24}},
                     "processor_class": "BlipProcessor"},
}


def image_processor_fixtures():
    out = os.path.join(OUT, "image_processor")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.join(out, "configs"))
    procs = {}
    for name, cfg in IMAGE_PROCESSOR_CONFIGS.items():
        path = os.path.join(out, "configs", name + ".json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2)
            f.write("\n")
        tmp = os.path.join(out, "tmp_" + name)
        os.makedirs(tmp)
        shutil.copy(path, os.path.join(tmp, "processor_config.json" if name == "processor_v5" else
                                       "preprocessor_config.json"))
        procs[name] = BlipImageProcessorPil.from_pretrained(tmp)
        shutil.rmtree(tmp)
    # the int size is a square, and the v5 file gives the same processor as the flat form
    assert (procs["legacy_int_size"].size.height, procs["legacy_int_size"].size.width) == (24, 24)
    assert procs["processor_v5"].size == procs["legacy_int_size"].size
    images = sorted(f for f in os.listdir(os.path.join(FIXTURES, "images")) if f.rsplit(".", 1)[-1] in ("jpg", "png", "bmp"))
    T = {}
    for f in images:
        im = lambda: Image.open(os.path.join(FIXTURES, "images", f))
        a = procs["legacy_int_size"](im(), return_tensors="np")["pixel_values"]
        b = procs["processor_v5"](im(), return_tensors="np")["pixel_values"]
        assert np.array_equal(a, b)
        for name in ("square_uint8", "rect_uint8"):
            pv = procs[name](im(), return_tensors="np")["pixel_values"][0]
            assert (pv == np.round(pv)).all() and pv.min() >= 0 and pv.max() <= 255
            T[f"{f}|{name}"] = torch.from_numpy(pv.astype(np.uint8)).contiguous()
    meta = {"generator": "tools/make_blip_fixtures.py", "transformers": transformers.__version__,
            "pillow": PIL.__version__,
            "processor": "BlipImageProcessorPil.from_pretrained(dir with configs/<config>.json as "
                         "preprocessor_config.json)(PIL.Image.open(file)), pixel_values[0] as uint8 [3,H,W]"}
    write_safetensors(os.path.join(out, "expected.safetensors"), T, meta)
    return len(images), len(T)


# ---- main ----------------------------------------------------------------------------------------------
TENSOR_DOC = {
    "pixel_values": "F32 [B,3,S,S]: BlipImageProcessorPil of `images`, in order",
    "vision.last_hidden_state": "F32 [B,1+P,Dv]: post_layernorm of the last vision layer",
    "vision.pooler_output": "F32 [B,Dv]: post_layernorm applied again to last_hidden_state[:,0]",
    "vision.hidden_states.{i}": "F32 [B,1+P,Dv]: i=0 embeddings (patches + class + positions), i>0 output of layer i (before post_layernorm)",
}


def main():
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(2)
    tok, vocab = make_tokenizer()
    summary = {}
    for name, spec in CASES.items():
        torch.manual_seed(spec["seed"])
        gen = torch.Generator().manual_seed(1000 + spec["seed"])
        cfg = build_config(spec, tok)
        cls = {"caption": BlipForConditionalGeneration, "retrieval": BlipForImageTextRetrieval,
               "vqa": BlipForQuestionAnswering, "contrastive": BlipModel}[spec["model"]]
        model = cls(cfg).eval()
        randomise(model, gen)
        if "sep_bias" in spec:
            # A random head gives [SEP] about 1/V of the mass; raise its bias so that some rows end
            # early, others run to max_length (eos handling and beam finishing get exercised).
            with torch.no_grad():
                model.text_decoder.cls.predictions.bias[tok.sep_token_id] += spec["sep_bias"]

        out_dir = os.path.join(OUT, name)
        shutil.rmtree(out_dir, ignore_errors=True)
        model.save_pretrained(out_dir)
        size = spec["vision"]["image_size"]
        proc = make_processor(size, tok)
        proc.save_pretrained(out_dir)
        proc.image_processor.save_pretrained(out_dir)  # preprocessor_config.json
        with open(os.path.join(out_dir, "vocab.txt"), "w", encoding="utf-8") as f:
            f.write("".join(t + "\n" for t in vocab))

        # the folder loads back into the same model and tokenizer (vocab.txt form too)
        reloaded = cls.from_pretrained(out_dir).eval()
        sd0, sd1 = model.state_dict(), reloaded.state_dict()
        assert sd0.keys() == sd1.keys() and all(torch.equal(sd0[k], sd1[k]) for k in sd0)
        vt_dir = out_dir + ".vocab_only"
        os.makedirs(vt_dir)
        for f in ("vocab.txt", "tokenizer_config.json"):
            shutil.copy(os.path.join(out_dir, f), vt_dir)
        tok_vt, tok_json = BertTokenizer.from_pretrained(vt_dir), BertTokenizer.from_pretrained(out_dir)
        shutil.rmtree(vt_dir)
        probe = "A [DEC] picture of [ENC] a cat's room, tea-cup & 2 latte; UNKNOWNWORD!"
        assert tok_vt(probe)["input_ids"] == tok_json(probe)["input_ids"] == tok(probe)["input_ids"]
        ip_loaded = BlipImageProcessorPil.from_pretrained(out_dir)
        assert (ip_loaded.size.height, ip_loaded.size.width, ip_loaded.resample) == (size, size, 3)

        T, J = {}, {"case": name, "model_class": cls.__name__, "images": spec["images"],
                    "image_processor": "BlipImageProcessorPil (resample 3 = bicubic, size {height,width} = "
                                       f"{size}, rescale 1/255, OpenAI CLIP mean/std), PIL.Image.open(image) as is",
                    "vocab_size": len(tok), "bos_token_id": tok.bos_token_id, "sep_token_id": tok.sep_token_id,
                    "pad_token_id": tok.pad_token_id, "eos_token_id": cfg.text_config.eos_token_id,
                    "enc_token_id": tok.convert_tokens_to_ids("[ENC]"),
                    "cls_token_id": tok.cls_token_id, "tensor_doc": dict(TENSOR_DOC)}
        if "sep_bias" in spec:
            J["sep_bias_added"] = spec["sep_bias"]
        if name == "caption_remainder":
            J["remainder_note"] = ("image_size 30, patch_size 7: transformers accepts it; num_patches = (30 // 7)^2 "
                                   "= 16 (+1 class position), the stride-7 patch convolution yields 4x4 patches "
                                   "from pixels 0..27 and ignores the last 2 rows and columns of pixel_values.")
        gens = []
        model64 = None
        if spec["model"] in ("caption", "vqa"):
            model64 = cls.from_pretrained(out_dir, dtype=torch.float64).eval()
        if spec["model"] == "caption":
            gens = caption_case(name, spec, model, model64, proc, tok, T, J)
        elif spec["model"] == "vqa":
            gens = vqa_case(name, spec, model, model64, proc, tok, T, J)
        elif spec["model"] == "retrieval":
            retrieval_case(name, spec, model, proc, T, J)
        else:
            contrastive_case(name, spec, model, proc, T, J)
        J["tensor_shapes"] = {k: list(v.shape) for k, v in sorted(T.items())}
        J["generate"] = gens
        meta = {"generator": "tools/make_blip_fixtures.py", "transformers": transformers.__version__,
                "torch": torch.__version__, "case": name, "attn_implementation": "eager"}
        write_safetensors(os.path.join(out_dir, "expected.safetensors"), T, meta)
        with open(os.path.join(out_dir, "expected.json"), "w", encoding="utf-8") as f:
            f.write(compact_json(J))
        # read back: what a test will see
        back = load_file(os.path.join(out_dir, "expected.safetensors"))
        assert all(torch.equal(back[k], T[k]) for k in T)
        summary[name] = {
            "files": sorted(os.listdir(out_dir)),
            "bytes": sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir)),
            "generate": [(g["name"], [len(r) for r in g["ids"]],
                          [tok.sep_token_id in r[1:] for r in g["ids"]], g.get("min_top2_margin")) for g in gens],
        }
    n_images, n_tensors = image_processor_fixtures()
    print(f"image_processor: {n_images} images, {n_tensors} uint8 pixel_values")
    versions = {"transformers": transformers.__version__, "torch": torch.__version__,
                "tokenizers": tokenizers.__version__, "Pillow": PIL.__version__, "safetensors": safetensors.__version__,
                "numpy": np.__version__, "python": sys.version.split()[0]}
    with open(os.path.join(OUT, "VERSIONS.json"), "w") as f:
        json.dump(versions, f, indent=1)
        f.write("\n")
    for name, s in summary.items():
        print(f"{name}: {s['bytes']} bytes, files {s['files']}")
        for g in s["generate"]:
            print("   ", g)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print(f"tests/fixtures/blip: {total / 1e6:.3f} MB; versions {versions}")


if __name__ == "__main__":
    main()
