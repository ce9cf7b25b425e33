#!/usr/bin/env python3
"""Acceptance check of `mmalign-clip embed --json` against Hugging Face on a CLIP folder the tests
never saw: a random CLIP config (real CLIP vocabulary, 49408 ids), saved with save_pretrained,
plus the real tokenizer files and an OpenAI-style preprocessor_config.json; real photos in.

Run by hand:  pip install torch transformers pillow safetensors
              python3 tools/check_clip_cli.py build/examples/mmalign-clip [--sharded]
Prints the max |diff| per output and exits non-zero above 1e-4.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from PIL import Image
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

try:  # transformers v5: the plain name is the torchvision backend; the PIL path has its own class
    from transformers import CLIPImageProcessorPil as PilProcessor
except ImportError:  # v4: CLIPImageProcessor is the PIL path
    from transformers import CLIPImageProcessor as PilProcessor

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def main():
    exe = sys.argv[1]
    sharded = "--sharded" in sys.argv
    torch.manual_seed(3)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                         num_attention_heads=3, max_position_embeddings=77, hidden_act="quick_gelu",
                         eos_token_id=2, bos_token_id=0, pad_token_id=1),  # the OpenAI hub's legacy ids
        vision_config=dict(image_size=64, patch_size=16, hidden_size=40, intermediate_size=72, num_hidden_layers=2,
                           num_attention_heads=5, hidden_act="quick_gelu"),
        projection_dim=24)
    model = CLIPModel(cfg).eval()
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.add_(0.05 * torch.randn_like(p))
    d = tempfile.mkdtemp(prefix="mmalign_clip_")
    model.save_pretrained(d, max_shard_size="1MB" if sharded else "10GB")
    for f in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        shutil.copy(os.path.join(ROOT, "tests/fixtures/clip_tokenizer/hf", f), d)
    pre = json.load(open(os.path.join(ROOT, "tests/fixtures/images/configs/clip_b32.json")))
    pre.update(size=64, crop_size=64)
    json.dump(pre, open(os.path.join(d, "preprocessor_config.json"), "w"))

    images = [os.path.join(ROOT, "tests/fixtures/images", f) for f in ("astronaut_420.jpg", "coffee_444.jpg", "cat_crop.png")]
    texts = ["a photo of an astronaut", "a cup of coffee on a saucer", "a cat!", "Ünïcödé and émoji 🐱 in a caption"]
    tok = CLIPTokenizer.from_pretrained(d)
    proc = PilProcessor.from_pretrained(d)
    enc = tok(texts, padding=True, return_tensors="pt")
    px = proc(images=[Image.open(p).convert("RGB") for p in images], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=px)
    cmd = [exe, "embed", "--model", d, "--json"]
    for p in images:
        cmd += ["--image", p]
    for t in texts:
        cmd += ["--text", t]
    got = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    worst = 0.0
    for key, ref in (("image_embeds", out.image_embeds), ("text_embeds", out.text_embeds),
                     ("logits_per_image", out.logits_per_image)):
        diff = (torch.tensor(got[key]) - ref).abs().max().item()
        worst = max(worst, diff)
        print(f"{key}: shape {list(ref.shape)} max |diff| {diff:.3g}")
    print("folder:", d, "(sharded)" if sharded else "")
    shutil.rmtree(d)
    sys.exit(0 if worst <= 1e-4 else 1)


if __name__ == "__main__":
    main()
