#!/usr/bin/env python3
"""Fixtures for the caption data path: tests/io/test_caption_annotations.cpp, test_caption_text.cpp,
test_train_transform.cpp and tests/train/test_image_text_loader.cpp.

Run by hand from the repository root (not part of the build):

    pip install pillow==13.0.0 torch torchvision numpy
    python3 tools/make_caption_data_fixtures.py

writes tests/fixtures/caption_data/
  images/a.png, b.png, c.png   three small images: 40x30 RGB, 30x40 RGB, 40x30 grey (L)
  train.json                   coco_karpathy train form: one {"caption", "image", "image_id"} entry
                               per pair, image_id as strings and as integers
  val.json                     coco_karpathy val/test form: {"image", "caption": [...]} without
                               image_id (file names that do not exist: read, never loaded)
  expected_annotations.json    what a reader must give for both files: per image, in first-
                               appearance order, the image, the captions, the image_id (LAVIS's
                               COCOCapEvalDataset derivation where the file has none) and the entry
  captions.json                [{"text", "max_words", "prompt", "expected"}]: LAVIS's
                               BlipCaptionProcessor on tricky strings (its pre_caption is
                               repeated below statement for statement)
  crops.json                   [{"image", "box": [top, left, height, width], "flip", "size",
                               "pixels": [3*S*S floats]}]: torchvision's F.resized_crop(PIL image,
                               box, (S, S), BICUBIC), hflip when "flip", to_tensor and normalize
                               with OpenAI CLIP's mean/std — Blip2ImageTrainProcessor for a given
                               crop and flip
"""

import json
import os
import re
import sys

import numpy as np
import PIL
from PIL import Image
import torch
import torchvision
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F

OUT = os.path.join("tests", "fixtures", "caption_data")
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


class BlipCaptionProcessor:
    """LAVIS lavis/processors/blip_processors.py BlipCaptionProcessor, the same statements."""

    def __init__(self, prompt="", max_words=50):
        self.prompt = prompt
        self.max_words = max_words

    def __call__(self, caption):
        return self.prompt + self.pre_caption(caption)

    def pre_caption(self, caption):
        caption = re.sub(r"([.!\"()*#:;~])", " ", caption.lower())
        caption = re.sub(r"\s{2,}", " ", caption)
        caption = caption.rstrip("\n")
        caption = caption.strip(" ")
        caption_words = caption.split(" ")
        if len(caption_words) > self.max_words:
            caption = " ".join(caption_words[: self.max_words])
        return caption


def lavis_eval_image_id(image):
    """COCOCapEvalDataset's derivation; the image string itself where it raises."""
    try:
        return str(int(image.split("/")[-1].strip(".jpg").split("_")[-1]))
    except ValueError:
        return image


def write_json(name, value, indent=1):
    with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=indent)
        f.write("\n")


def make_images():
    rng = np.random.default_rng(17)
    os.makedirs(os.path.join(OUT, "images"), exist_ok=True)
    y, x = np.mgrid[0:30, 0:40]
    # a: smooth gradients plus noise (resampling must weigh neighbours right); b: tall, noisy;
    # c: grey, so the loader's convert("RGB") path is exercised.
    a = np.stack([x * 6, y * 8, (x + y) * 3], -1) + rng.integers(0, 40, (30, 40, 3))
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB").save(os.path.join(OUT, "images", "a.png"))
    b = rng.integers(0, 256, (40, 30, 3)).astype(np.uint8)
    Image.fromarray(b, "RGB").save(os.path.join(OUT, "images", "b.png"))
    c = np.clip(x * 5 + rng.integers(0, 60, (30, 40)), 0, 255).astype(np.uint8)
    Image.fromarray(c, "L").save(os.path.join(OUT, "images", "c.png"))


def make_annotations():
    train = [
        {"caption": "A man riding a wave on top of a surfboard.", "image": "images/a.png", "image_id": "coco_203564"},
        {"caption": "A red bus (double-decker) parked; near the STOP sign!", "image": "images/b.png", "image_id": 42},
        {"caption": "Someone surfing:   a big  wave~", "image": "images/a.png", "image_id": "coco_203564"},
        {"caption": "  Grey picture of stripes\n", "image": "images/c.png", "image_id": "7"},
        {"caption": "Ευτυχισμένος ΟΔΟΣ. Σ #1", "image": "images/b.png", "image_id": 42},
    ]
    val = [
        {"image": "val2014/COCO_val2014_000000391895.jpg",
         "caption": ["A man with a red helmet on a small moped on a dirt road. ", "Man riding a motor bike."]},
        {"image": "val2014/COCO_val2014_000000000042.jpg", "caption": ["Only one caption."]},
        {"image": "custom/photo-1.png", "caption": ["a custom file name without a number id"]},
    ]
    write_json("train.json", train)
    write_json("val.json", val)

    def grouped(entries):
        out, where = [], {}
        for e, entry in enumerate(entries):
            image = entry["image"]
            if image not in where:
                image_id = str(entry["image_id"]) if "image_id" in entry else lavis_eval_image_id(image)
                where[image] = len(out)
                out.append({"image": image, "captions": [], "image_id": image_id, "entry": e, "caption_entry": []})
            caps = entry["caption"] if isinstance(entry["caption"], list) else [entry["caption"]]
            for c in caps:
                out[where[image]]["captions"].append(c)
                out[where[image]]["caption_entry"].append(e)
        return out

    write_json("expected_annotations.json", {"train.json": grouped(train), "val.json": grouped(val)})
    return train


def make_captions(train):
    texts = [e["caption"] for e in train] + [
        "",
        "   ",
        "...",
        "Hello.World!",
        "tab\tinside and\ttwo\t\ttabs",
        "new\nline and two\n\nnewlines",
        "trailing newline\n",
        "trailing newlines and space \n\n",
        "leading\u00a0nbsp and\u3000ideographic  space",
        "file\x1cseparator\x1c\x1dpair",
        "ellipsis\u2026 and \u201cquotes\u201d stay",
        "mixed ~*#:;()! all stripped",
        "apostrophes don't go, nor do hyphen-ated words, commas, or slashes/",
        "İSTANBUL ÇAĞLAYAN ŞİŞLİ",
        "ΟΔΟΣ ΟΔΟΣ. ΣΑΣ Σ ΑΣ'Σ",
        "ΑΣ\u0301 Α\u0301Σ ΑΣʰ Αʰ\u02b0Σ 1Σ 中Σ ΑΣ1 ΑΣ中 ΑΣ\u00adΑ ﬀΣ ǅΣ ⓐΣ ΑΣⓐ",
        "ÀÉÎÕÜ Straße ǅ Ǆ",
        "一只猫 坐在 桌子上。",
        "emoji 🐈 stays 😀!",
        " ".join(f"w{i}" for i in range(70)),
        "a  b  c  d  e  f",
        # every character Python's \s matches (str.isspace), alone and doubled, and a neighbour
        "".join(f"x{c}y{c}{c}z{c}\u200b" for c in map(chr, range(0x110000)) if c.isspace()),
    ]
    cases = []
    for text in texts:
        for max_words, prompt in ((50, ""), (3, ""), (0, ""), (5, "a photo of ")):
            cases.append({"text": text, "max_words": max_words, "prompt": prompt,
                          "expected": BlipCaptionProcessor(prompt=prompt, max_words=max_words)(text)})
    write_json("captions.json", cases)


def make_crops():
    cases = []
    specs = [
        ("a.png", (0, 0, 30, 40), False, 16),   # the whole image, downscaled
        ("a.png", (3, 5, 21, 27), True, 16),    # a crop, flipped
        ("a.png", (10, 12, 8, 9), False, 16),   # upscaled
        ("a.png", (7, 11, 16, 16), True, 16),   # same size: no resampling
        ("b.png", (4, 2, 33, 25), False, 12),   # tall, downscaled
        ("b.png", (0, 1, 40, 29), True, 24),    # tall, mixed scaling
        ("c.png", (2, 3, 20, 30), True, 16),    # grey converted to RGB
    ]
    for name, (top, left, h, w), flip, size in specs:
        img = Image.open(os.path.join(OUT, "images", name)).convert("RGB")
        out = F.resized_crop(img, top, left, h, w, [size, size], InterpolationMode.BICUBIC)
        if flip:
            out = F.hflip(out)
        t = F.normalize(F.to_tensor(out), MEAN, STD)
        cases.append({"image": name, "box": [top, left, h, w], "flip": flip, "size": size,
                      "pixels": [float(v) for v in t.numpy().astype(np.float32).ravel()]})
    write_json("crops.json", cases, indent=None)


def main():
    if PIL.__version__ != "13.0.0":
        print(f"warning: Pillow {PIL.__version__}, the fixtures were made with 13.0.0", file=sys.stderr)
    os.makedirs(OUT, exist_ok=True)
    make_images()
    train = make_annotations()
    make_captions(train)
    make_crops()
    print(f"wrote {OUT} (Pillow {PIL.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__})")


if __name__ == "__main__":
    main()
