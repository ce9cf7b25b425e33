#!/usr/bin/env python3
"""Fixtures for tests/eval/test_caption_metrics.cpp and test_ptb_tokenizer.cpp: BLEU-1..4,
ROUGE-L and CIDEr-D as pycocoevalcap computes them, and its PTB tokenization step.

Run by hand from the repository root (not part of the build; needs a Java runtime for the
Stanford CoreNLP PTBTokenizer that pycocoevalcap ships):

    pip install pycocoevalcap==1.2 pycocotools
    python3 tools/make_caption_metric_fixtures.py

writes tests/fixtures/caption_metrics/
  tokens.json        [{"text", "tokens"}]: pycocoevalcap's PTBTokenizer (java PTBTokenizer
                     -preserveLines -lowerCase, then its punctuation-token removal) on each string,
                     the tokens as it hands them to the scorers (its output line split on " ")
  annotations.json   COCO caption format {"images", "annotations": [{"image_id", "id", "caption"}]}
  karpathy.json      the same references in coco_karpathy form [{"image", "caption": [...], "image_id"}]
  results.json       COCO caption results [{"image_id", "caption"}], one per image
  scores.json        {"overall": {"Bleu_1", …, "CIDEr"}, "per_image": {image_id: {…}}}: pycocoevalcap's
                     Bleu(4), Rouge() and Cider() on the tokenized captions, the way COCOEvalCap.evaluate
                     runs them (METEOR and SPICE left out)
"""

import json
import os
import random

from pycocotools.coco import COCO
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

OUT = os.path.join("tests", "fixtures", "caption_metrics")

# Captions exercising the tokenizer: contractions, possessives, quotes (ASCII and typographic),
# brackets, hyphens and dashes, numbers with commas and decimals, abbreviations, ellipses, runs of
# spaces, accented letters and upper case, and captions that are all punctuation.
TRICKY = [
    "A man's dog, don't (run)!",
    "it's 3,000.50 cats... e-mail",
    "Café naïve — “quoted” ‘x’ can't won't gonna",
    "   multiple    spaces  end.",
    "a dog's toy and the dogs' toys",
    "\"hello,\" she said. 'yes' he's",
    "two men -- one woman - a child",
    "en–dash and em—dash",
    "it's 10.5 ft. long, 1,000 m",
    "the cat sat on the mat.",
    "a sign reads \"stop!\"",
    "i'm we're they've you'll he'd",
    "gonna wanna gotta cannot",
    "a man (left) [right] {mid}",
    "what? no! yes; maybe: ok",
    "ice-cream x-ray 3-d t-shirt",
    "dr. smith and mr. jones at 5 p.m.",
    "zoë über straße ÉCOLE",
    "5:30 12/25 a*b",
    "HELLO WORLD",
    " lead and trail  ",
    "wait...what.... ok",
    "a \"b\" c \"d\"",
    "isn't ain't shouldn't",
    "A Dog Isn't Running; It's Sitting.",
    "don’t it’s",
    "...",
    "!!",
    "a -- b",
    "$5 and 50% off",
]

SUBJECTS = ["a man", "a woman", "two dogs", "the cat", "a group of people", "a child", "an old bus",
            "three birds", "a red car", "the pizza"]
VERBS = ["is sitting on", "stands next to", "runs across", "is eating", "looks at", "is parked near",
         "plays with", "jumps over", "lies under", "holds"]
OBJECTS = ["a wooden bench", "the street", "a table full of food", "the green field", "a big kite",
           "an umbrella", "the beach", "a plate", "the snowy hill", "a laptop computer"]
EXTRAS = ["", " in the park", " at night", ", smiling", " while it rains", " (outdoors)", " near a "
          "building's door", " -- happily", " on 5th avenue", " with 2,500 others"]


def sentence(rng):
    s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(EXTRAS)}"
    if rng.random() < 0.5:
        s += "."
    if rng.random() < 0.3:
        s = s[0].upper() + s[1:]
    return s


def corpus():
    rng = random.Random(17)
    images = []
    n_images = 40
    for i in range(n_images):
        image_id = 1000 + 7 * i
        n_refs = rng.choice([1, 2, 3, 5])
        refs = [sentence(rng) for _ in range(n_refs)]
        # Some references differ in length a lot: BLEU's "closest" length then matters.
        if i % 6 == 0:
            refs.append("a dog")
        if i % 4 == 1:
            refs.append(TRICKY[(i // 4) % len(TRICKY)])
        if i % 3 == 0:
            cand = refs[0]
        elif i % 3 == 1:
            cand = sentence(rng)
        else:
            cand = TRICKY[i % len(TRICKY)]
        images.append((image_id, refs, cand))
    # An empty candidate, an all-punctuation candidate and a very long one.
    images[5] = (images[5][0], images[5][1], "")
    images[11] = (images[11][0], images[11][1], "...")
    images[17] = (images[17][0], images[17][1], " and ".join(sentence(rng) for _ in range(12)))
    # A reference that tokenizes to nothing (all punctuation).
    images[23] = (images[23][0], images[23][1] + ["!!"], images[23][2])
    return images


def main():
    os.makedirs(OUT, exist_ok=True)
    images = corpus()

    strings = list(dict.fromkeys(TRICKY + [c for _, refs, cand in images for c in refs + [cand]]))
    tokenized = PTBTokenizer().tokenize({i: [{"caption": s}] for i, s in enumerate(strings)})
    tokens = [{"text": s, "tokens": tokenized[i][0].split(" ") if tokenized[i][0] else []}
              for i, s in enumerate(strings)]
    with open(os.path.join(OUT, "tokens.json"), "w") as f:
        json.dump(tokens, f, ensure_ascii=False, indent=0)

    ann = {"info": {}, "licenses": [], "type": "captions",
           "images": [{"id": image_id} for image_id, _, _ in images], "annotations": []}
    for image_id, refs, _ in images:
        for r in refs:
            ann["annotations"].append({"image_id": image_id, "id": len(ann["annotations"]) + 1, "caption": r})
    karpathy = [{"image": f"val2014/COCO_val2014_{image_id:012d}.jpg", "caption": refs, "image_id": image_id}
                for image_id, refs, _ in images]
    results = [{"image_id": image_id, "caption": cand} for image_id, _, cand in images]
    for name, obj in (("annotations.json", ann), ("karpathy.json", karpathy), ("results.json", results)):
        with open(os.path.join(OUT, name), "w") as f:
            json.dump(obj, f, ensure_ascii=False, indent=0)

    # COCOEvalCap.evaluate's steps, less METEOR and SPICE.
    coco = COCO(os.path.join(OUT, "annotations.json"))
    coco_res = coco.loadRes(os.path.join(OUT, "results.json"))
    img_ids = coco.getImgIds()
    gts = {i: coco.imgToAnns[i] for i in img_ids}
    res = {i: coco_res.imgToAnns[i] for i in img_ids}
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize(gts)
    res = tokenizer.tokenize(res)
    overall, per_image = {}, {str(i): {} for i in img_ids}
    for scorer, names in ((Bleu(4), ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"]), (Rouge(), ["ROUGE_L"]),
                          (Cider(), ["CIDEr"])):
        score, scores = scorer.compute_score(gts, res)
        if len(names) == 1:
            score, scores = [score], [scores]
        for sc, scs, m in zip(score, scores, names):
            overall[m] = float(sc)
            for i, s in zip(gts.keys(), scs):
                per_image[str(i)][m] = float(s)
    with open(os.path.join(OUT, "scores.json"), "w") as f:
        json.dump({"overall": overall, "per_image": per_image}, f, indent=0)
    print(json.dumps(overall, indent=1))


if __name__ == "__main__":
    main()
