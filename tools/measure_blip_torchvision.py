#!/usr/bin/env python3
"""How far transformers 5's default BLIP image processor (torchvision backend) is from the PIL path.

Run by hand from the repository root after tools/make_blip_fixtures.py (never by CI):

    pip install torch torchvision transformers==5.25.0 pillow==13.0.0
    python3 tools/make_blip_fixtures.py   # if tests/fixtures/blip/ is missing
    python3 tools/measure_blip_torchvision.py

transformers 5 loads a BLIP folder's image processor as the torchvision `BlipImageProcessor`
(AutoProcessor, BlipProcessor.from_pretrained); `BlipImageProcessorPil` is the Pillow path that
mmalign reproduces exactly. This script prints, as Markdown:
  1. pixels: for every committed image in tests/fixtures/images, at 384 (BLIP's default) and at the
     fixture models' sizes, the largest and mean |Δ| of pixel_values, and of the uint8 resize
     alone (rescale and normalise off: the resampling kernels' difference, in grey levels);
  2. scores: the fixture models of tests/fixtures/blip/ fed both pixel_values: ITM scores and ITC
     cosines (retrieval), teacher-forced caption logits (caption_*), question states and answer
     logits (vqa), contrastive logits (model), and whether the greedy / beam ids of generate()
     change.
The fixture models are tiny random networks: they show that a difference propagates, not how much
a trained BLIP moves.
"""
import json
import os
import sys
import warnings

import PIL
import torch
import torchvision
import transformers
from PIL import Image
from transformers import (BlipForConditionalGeneration, BlipForImageTextRetrieval, BlipForQuestionAnswering,
                          BlipImageProcessor, BlipImageProcessorPil, BlipModel, BlipProcessor)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
BLIP = os.path.join(FIXTURES, "blip")
CASES = ["caption_a", "caption_b", "caption_remainder", "retrieval", "vqa", "model"]


def image_files():
    d = os.path.join(FIXTURES, "images")
    return sorted(f for f in os.listdir(d) if f.rsplit(".", 1)[-1] in ("jpg", "png", "bmp"))


def open_image(f):
    return Image.open(os.path.join(FIXTURES, "images", f))


def pixel_table(sizes):
    rows = []
    files = image_files()
    for size in sizes:
        kw = {"size": {"height": size, "width": size}}
        pil, tv = BlipImageProcessorPil(**kw), BlipImageProcessor(**kw)
        pil_u8 = BlipImageProcessorPil(**kw, do_rescale=False, do_normalize=False)
        tv_u8 = BlipImageProcessor(**kw, do_rescale=False, do_normalize=False)
        worst, worst_file, total, count, levels, level_files, n_diff_values, n_values = 0.0, "", 0.0, 0, 0, 0, 0, 0
        same_u8 = 0.0  # largest |Δ pixel_values| where both resizes gave the same uint8 value
        for f in files:
            a = pil(open_image(f), return_tensors="pt")["pixel_values"].double()
            b = tv(open_image(f), return_tensors="pt")["pixel_values"].double()
            d = (a - b).abs()
            if float(d.max()) > worst:
                worst, worst_file = float(d.max()), f
            total += float(d.sum())
            count += d.numel()
            ua = pil_u8(open_image(f), return_tensors="pt")["pixel_values"].double()
            ub = tv_u8(open_image(f), return_tensors="pt")["pixel_values"].double()
            du = (ua - ub).abs()
            levels = max(levels, int(du.max()))
            level_files += int(du.max() > 0)
            n_diff_values += int((du > 0).sum())
            n_values += du.numel()
            same_u8 = max(same_u8, float(d[du == 0].max()) if bool((du == 0).any()) else 0.0)
        rows.append((size, len(files), worst, total / count, worst_file, levels, level_files,
                     100.0 * n_diff_values / n_values, same_u8))
    return rows


def processors(case):
    d = os.path.join(BLIP, case)
    default = BlipProcessor.from_pretrained(d)  # what transformers 5 gives for the folder
    assert type(default.image_processor).__name__ == "BlipImageProcessor", type(default.image_processor)
    pil = BlipProcessor(image_processor=BlipImageProcessorPil.from_pretrained(d), tokenizer=default.tokenizer)
    return default, pil


def score_rows():
    rows, gen_rows = [], []
    for case in CASES:
        d = os.path.join(BLIP, case)
        J = json.load(open(os.path.join(d, "expected.json")))
        default, pil = processors(case)
        imgs = lambda paths: [Image.open(os.path.join(FIXTURES, p)) for p in paths]
        cls = {"BlipForConditionalGeneration": BlipForConditionalGeneration,
               "BlipForImageTextRetrieval": BlipForImageTextRetrieval,
               "BlipForQuestionAnswering": BlipForQuestionAnswering, "BlipModel": BlipModel}[J["model_class"]]
        model = cls.from_pretrained(d).eval()
        pv = {name: p(images=imgs(J["images"]), return_tensors="pt")["pixel_values"]
              for name, p in (("tv", default), ("pil", pil))}
        dpx = float((pv["tv"] - pv["pil"]).abs().max())
        with torch.no_grad():
            vis = {k: model.vision_model(pixel_values=v).last_hidden_state for k, v in pv.items()}
            dvis = float((vis["tv"] - vis["pil"]).abs().max())
            if cls is BlipForImageTextRetrieval:
                for part in ("single", "pairs"):
                    n = len(J[part]["images"])
                    enc = pil(text=J[part]["texts"], padding=True, return_tensors="pt")
                    out = {}
                    for k in pv:
                        itm = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                    pixel_values=pv[k][:n]).itm_score
                        itc = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                    pixel_values=pv[k][:n], use_itm_head=False).itm_score
                        out[k] = (torch.softmax(itm, dim=1)[:, 1], itc)
                    rows.append((case, f"ITM scores ({part})", dpx, dvis,
                                 float((out["tv"][0] - out["pil"][0]).abs().max())))
                    rows.append((case, f"ITC cosines ({part})", dpx, dvis,
                                 float((out["tv"][1] - out["pil"][1]).abs().max())))
            elif cls is BlipForConditionalGeneration:
                enc = pil(text=J["captions"], padding=True, return_tensors="pt")
                ids = enc["input_ids"].clone()
                ids[:, 0] = J["bos_token_id"]
                logits = {k: model(pixel_values=v, input_ids=ids, attention_mask=enc["attention_mask"]).logits
                          for k, v in pv.items()}
                rows.append((case, "caption logits (teacher-forced)", dpx, dvis,
                             float((logits["tv"] - logits["pil"]).abs().max())))
            elif cls is BlipForQuestionAnswering:
                q = pil(text=J["questions"], padding=True, return_tensors="pt")
                ones = torch.ones(vis["pil"].shape[:-1], dtype=torch.long)
                states = {k: model.text_encoder(input_ids=q["input_ids"], attention_mask=q["attention_mask"],
                                                encoder_hidden_states=v, encoder_attention_mask=ones).last_hidden_state
                          for k, v in vis.items()}
                a = pil(text=J["answers"], padding=True, return_tensors="pt")
                aid = a["input_ids"].clone()
                aid[:, 0] = J["bos_token_id"]
                alog = {k: model.text_decoder(input_ids=aid, attention_mask=a["attention_mask"],
                                              encoder_hidden_states=s,
                                              encoder_attention_mask=q["attention_mask"]).logits
                        for k, s in states.items()}
                rows.append((case, "question states", dpx, dvis, float((states["tv"] - states["pil"]).abs().max())))
                rows.append((case, "answer logits (teacher-forced)", dpx, dvis,
                             float((alog["tv"] - alog["pil"]).abs().max())))
            else:
                enc = pil(text=J["texts"], padding=True, return_tensors="pt")
                lpi = {k: model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                pixel_values=v).logits_per_image for k, v in pv.items()}
                rows.append((case, "contrastive logits_per_image", dpx, dvis,
                             float((lpi["tv"] - lpi["pil"]).abs().max())))
            # generate: the fixture's cases re-run with torchvision pixels
            changed, total = [], 0
            for g in J["generate"]:
                text = g.get("prompt", g.get("question"))
                k_img = imgs(g["images"])
                inputs_tv = default(images=k_img, text=text, padding=True, return_tensors="pt") if text is not None \
                    else default(images=k_img, return_tensors="pt")
                inputs_tv = dict(inputs_tv)
                if isinstance(text, str) and cls is BlipForConditionalGeneration and len(g["images"]) > 1:
                    inputs_tv["input_ids"] = inputs_tv["input_ids"].repeat(len(g["images"]), 1)
                    inputs_tv["attention_mask"] = inputs_tv["attention_mask"].repeat(len(g["images"]), 1)
                ids = model.generate(**inputs_tv, **g["kwargs"]).tolist()
                total += 1
                if ids != g["ids"]:
                    changed.append(g["name"])
            if total:
                gen_rows.append((case, total, changed))
    return rows, gen_rows


def main():
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(2)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"Pillow {PIL.__version__}\n")
    sizes = [384, 24, 28, 30, 32, 36]
    print("| size | images | max \\|Δ pixel_values\\| | mean \\|Δ\\| | worst image | uint8 resize: max Δ levels "
          "| images differing | values differing | max \\|Δ\\| where the uint8 agree |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size, n, worst, mean, wf, levels, lf, share, same in pixel_table(sizes):
        print(f"| {size}×{size} | {n} | {worst:.4f} | {mean:.5f} | {wf} | {levels} | {lf} | {share:.1f} % "
              f"| {same:.1e} |")
    rows, gen_rows = score_rows()
    print("\n| case | output | max \\|Δ pixel_values\\| | max \\|Δ vision.last_hidden_state\\| | max \\|Δ output\\| |")
    print("|---|---|---|---|---|")
    for case, what, dpx, dvis, dout in rows:
        print(f"| {case} | {what} | {dpx:.4f} | {dvis:.2e} | {dout:.2e} |")
    print("\n| case | generate cases | ids changed |")
    print("|---|---|---|")
    for case, total, changed in gen_rows:
        print(f"| {case} | {total} | {len(changed)}{': ' + ', '.join(changed) if changed else ''} |")


if __name__ == "__main__":
    sys.exit(main())
