#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer_detail/, the references of the tokenizer building blocks in
include/mmalign/io/detail/, computed by Hugging Face `tokenizers` itself:

  unicode.json        for every Unicode scalar value c, NFD(c), NFC(c), accent stripping
                      (BertNormalizer with strip_accents only) and Lowercase(c), as FNV-1a 64
                      digests per block of 4,096 code points (the UTF-8 of each result followed
                      by one 0xFF byte, which UTF-8 never contains), plus multi-character strings
                      (combining sequences in random orders, Hangul) with the four results spelled
                      out, which exercise canonical reordering and composition
  added_tokens.json   texts split at added tokens with lstrip / rstrip / single_word /
                      normalized flags: each piece's [begin, end) in characters of the original
                      text and the index of the token matched there (-1 for text), read from the
                      offsets of a WordLevel tokenizer whose only word is [UNK], so that every
                      piece of plain text is one [UNK]

Deterministic (fixed seed). Pinned: tokenizers 0.23.3 (recorded in both files).
Usage: python3 tools/make_tokenizer_detail_fixtures.py   (pip install tokenizers)
"""
import json
import os
import random

import tokenizers
from tokenizers import AddedToken, Tokenizer, models, normalizers

assert tokenizers.__version__ == "0.23.3", tokenizers.__version__
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "tokenizer_detail")
os.makedirs(OUT, exist_ok=True)
BLOCK = 4096
FNV_OFFSET, FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3

forms = {
    "nfd": normalizers.NFD(),
    "nfc": normalizers.NFC(),
    "strip_accents": normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True,
                                                lowercase=False),
    "lowercase": normalizers.Lowercase(),
}


def fnv1a(h, data):
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


digests = {name: [] for name in forms}
for start in range(0, 0x110000, BLOCK):
    for name, n in forms.items():
        h = FNV_OFFSET
        for c in range(start, start + BLOCK):
            if 0xD800 <= c < 0xE000:
                continue
            h = fnv1a(h, n.normalize_str(chr(c)).encode("utf-8") + b"\xff")
        digests[name].append(f"{h:016x}")

rng = random.Random(12)
marks = [0x300, 0x301, 0x302, 0x303, 0x308, 0x30A, 0x323, 0x327, 0x328, 0x331, 0x334, 0x345, 0x5B0, 0x5B4, 0x5BC,
         0x64B, 0x650, 0x93C, 0x94D, 0x1DCE, 0x20D7]
bases = [ord(x) for x in "aAeEiIoOuUcCnNsSyYzZ"] + [0x3B1, 0x3C9, 0x391, 0x418, 0x5D0, 0x627, 0x915, 0x1100, 0x1161,
                                                     0x11A8, 0xAC00, 0xD4DB, 0x212B, 0x1E9B, 0xFB2C]
texts = ["", "caf\u00e9 na\u00efve \u00c5ngstr\u00f6m", "\u1100\u1161\u11a8 \ud55c\uad6d\uc5b4", "\u0041\u030a\u0301",
         "\u1e9b\u0323", "\u00c7\u0301\u0327", "\u0130stanbul \u03a3\u039f\u03a3", "\ufb01 \u2126 \u212b"]
while len(texts) < 120:
    s = "".join(chr(rng.choice(bases if rng.random() < 0.45 else marks)) for _ in range(rng.randint(1, 7)))
    texts.append(s)
sequences = [dict(text=t, **{name: n.normalize_str(t) for name, n in forms.items()}) for t in texts]

with open(os.path.join(OUT, "unicode.json"), "w", encoding="utf-8") as f:
    json.dump({"meta": {"tokenizers": tokenizers.__version__, "block": BLOCK,
                        "hash": "fnv1a64 of utf8(result) + 0xFF per scalar value, in code point order"},
               "digests": digests, "sequences": sequences}, f, ensure_ascii=True, indent=0)


# ---- added tokens -----------------------------------------------------------------------------------
def split_case(tokens, text, lowercase=False):
    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.add_tokens([AddedToken(t["content"], single_word=t.get("single_word", False), lstrip=t.get("lstrip", False),
                               rstrip=t.get("rstrip", False), normalized=t.get("normalized", False),
                               special=False) for t in tokens])
    enc = tok.encode(text, add_special_tokens=False)
    pieces = [[b, e, i - 1] for i, (b, e) in zip(enc.ids, enc.offsets)]
    return {"tokens": tokens, "text": text, "lowercase": lowercase, "pieces": pieces}


cases = [
    # tokenizers' own examples (added_vocabulary.rs tests)
    split_case([{"content": "my", "lstrip": True, "rstrip": True, "normalized": True},
                {"content": "name", "normalized": True}, {"content": "ony", "single_word": True, "normalized": True},
                {"content": "[CLS]"}, {"content": "[SEP]"}], "[CLS] My name is Anthony [SEP]", lowercase=True),
    split_case([{"content": "<mask>", "single_word": True, "normalized": True}],
               "<mask> My name <mask> A<mask> <mask>ony <mask>", lowercase=True),
    split_case([{"content": "<mask>", "single_word": True}], "<mask>, <mask>- \u25cc\u0330<mask>"),
    split_case([{"content": "<mask>", "lstrip": True, "rstrip": True, "single_word": True}],
               "Hi <mask> there\t<mask>\t<mask>\u2000"),
    # leftmost, then longest
    split_case([{"content": "ab"}, {"content": "abc"}, {"content": "bcd"}], "xabcdabx bcd abcd"),
    # a match rejected by single_word is not retried from inside
    split_case([{"content": "abc", "single_word": True}, {"content": "bc"}], "xabc d abc"),
    # lstrip stops at an earlier match's end; rstrip takes every kind of white space
    split_case([{"content": "A", "rstrip": True}, {"content": "B", "lstrip": True}], "A   B  B\u3000\u00a0A\n\n"),
    split_case([{"content": "<s>", "lstrip": True}, {"content": "</s>", "rstrip": True}], "  <s>  x </s>  "),
    split_case([{"content": "\u65e5\u672c"}, {"content": "\u65e5\u672c\u8a9e", "single_word": True}],
               "\u6771\u4eac\u3068\u65e5\u672c\u8a9e \u65e5\u672c \u65e5\u672c\u8a9e"),
    split_case([{"content": "_x_", "single_word": True}], "a_x_ _x_ 1_x_ _x_2 \u00e9_x_ (_x_)"),
    split_case([{"content": "Hello", "normalized": True}, {"content": "WORLD"}], "hello HELLO WORLD world", lowercase=True),
    split_case([{"content": "x"}], ""),
]
with open(os.path.join(OUT, "added_tokens.json"), "w", encoding="utf-8") as f:
    json.dump({"meta": {"tokenizers": tokenizers.__version__}, "cases": cases}, f, ensure_ascii=True, indent=1)
print("wrote", OUT)
