"""Checks that the folders mmalign-blip2's training commands write are Hugging Face BLIP-2 folders
that transformers loads and that compute what mmalign computes from them.

  python tools/check_blip2_training.py BUILD/examples/mmalign-blip2 [SCRATCH]

Trains a tiny stage 1 and stage 2 on tests/fixtures/blip2_train (a few steps each), then:
  * stage 1: Blip2ForImageTextRetrieval.from_pretrained loads the folder with no missing key, and
    its ITM probabilities and ITC cosines for one image against three texts equal
    `mmalign-blip2 itm --json` within 1e-5;
  * stage 2: Blip2ForConditionalGeneration.from_pretrained loads it with no missing key, and
    generate (greedy, 8 new tokens) on each test image, without and with a prompt, gives the ids of
    `mmalign-blip2 caption --json` exactly.
Prints one line per check and exits 1 on any difference.
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image
from transformers import (AutoProcessor, BertTokenizer, Blip2ForConditionalGeneration, Blip2ForImageTextRetrieval,
                          BlipImageProcessor)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures", "blip2_train")
DATA = os.path.join(FIX, "data")


def run(exe, *args):
    r = subprocess.run([exe, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(args[:2])}: exit {r.returncode}\n{r.stderr}")
    return r.stdout


def loaded(cls, path):
    model, info = cls.from_pretrained(path, output_loading_info=True)
    missing = [k for k in info["missing_keys"]]
    unexpected = sorted(info["unexpected_keys"])
    print(f"{cls.__name__}: missing {missing}, unexpected (mmalign's training extras) {unexpected}")
    if missing:
        sys.exit(f"{path}: transformers finds keys missing: {missing}")
    return model.eval()


def main():
    exe = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="mmalign_blip2_train_")
    common = ["--data", os.path.join(DATA, "train.json"), "--image-root", DATA, "--per-device-train-batch-size", "4",
              "--num-train-epochs", "2", "--threads", "2", "--save-strategy", "no"]
    s1, s2 = os.path.join(out, "stage1"), os.path.join(out, "stage2")
    run(exe, "pretrain-stage1", "--model", os.path.join(FIX, "stage1_init"), "--output-dir", s1,
        "--learning-rate", "2e-3", *common)
    run(exe, "pretrain-stage2", "--model", s1, "--language-model", os.path.join(FIX, "opt_lm"), "--output-dir", s2,
        "--learning-rate", "3e-3", *common)
    failed = False
    image = os.path.join(DATA, "images", "item_09.png")

    # Stage 1: ITM and ITC.
    model = loaded(Blip2ForImageTextRetrieval, s1)
    tok = BertTokenizer.from_pretrained(s1)
    texts = ["a picture of a sandal", "one trouser", "a bag on a white background"]
    proc = BlipImageProcessor.from_pretrained(s1)
    px = proc(Image.open(image).convert("RGB"), return_tensors="pt")["pixel_values"]
    t = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        itm = torch.softmax(model(pixel_values=px.expand(3, -1, -1, -1), input_ids=t.input_ids,
                                  attention_mask=t.attention_mask, use_image_text_matching_head=True).logits_per_image,
                            dim=1)[:, 1]
        itc = model(pixel_values=px, input_ids=t.input_ids, attention_mask=t.attention_mask,
                    use_image_text_matching_head=False).logits_per_image[0]
    mine = json.loads(run(exe, "itm", "--model", s1, "--image", image, *sum([["--text", x] for x in texts], []), "--json"))
    d_itm = float(np.max(np.abs(np.array(mine["itm_scores"]) - itm.numpy())))
    d_itc = float(np.max(np.abs(np.array(mine["itc_scores"]).reshape(-1) - itc.numpy().reshape(-1))))
    print(f"stage 1 ITM max |diff| {d_itm:.2e}, ITC max |diff| {d_itc:.2e}")
    failed |= not (d_itm <= 1e-5 and d_itc <= 1e-5)

    # Stage 2: generated ids, without and with a prompt.
    model = loaded(Blip2ForConditionalGeneration, s2)
    processor = AutoProcessor.from_pretrained(s2)
    images = sorted(os.listdir(os.path.join(DATA, "images")))[8:]
    # A random frozen OPT repeats one token; a repetition penalty makes each step pick a new one,
    # so the ids compare every step's ranking rather than one token's.
    for prompt, penalty in [(None, 1.0), ("a picture of", 1.0), (None, 3.0), ("a picture of", 3.0)]:
        for name in images:
            path = os.path.join(DATA, "images", name)
            inputs = processor(images=Image.open(path).convert("RGB"), text=prompt, return_tensors="pt")
            with torch.no_grad():
                ids = model.generate(**inputs, max_new_tokens=8, do_sample=False, num_beams=1,
                                     repetition_penalty=penalty)
            # Without a prompt, generate starts from [<image> x Q, bos] (modeling_blip_2.py) and returns them too.
            start = inputs["input_ids"].shape[1] if "input_ids" in inputs else model.config.num_query_tokens + 1
            new = ids[0, start:].tolist()
            args = ["caption", "--model", s2, "--image", path, "--max-new-tokens", "8", "--json",
                    "--repetition-penalty", str(penalty)]
            if prompt:
                args += ["--prompt", prompt]
            got = json.loads(run(exe, *args))["ids"][0]
            same = got == new
            failed |= not same
            print(f"stage 2 {name} prompt={prompt!r} repetition_penalty={penalty}: transformers {new} mmalign {got} {'same' if same else 'DIFFERENT'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
