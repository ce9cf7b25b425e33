#!/usr/bin/env python3
"""Writes tests/fixtures/clip_tokenizer/: the CLIP vocabulary in OpenAI's and Hugging Face's
forms, a corpus of test strings and the ids Hugging Face's CLIPTokenizer gives for each.

  bpe_simple_vocab_16e6.txt.gz   OpenAI's file, copied byte for byte from the open-clip-torch wheel
  hf/vocab.json, hf/merges.txt   built from it the way the hub's openai/clip-* files are laid out
                                 (the hub's openai/clip-* folders): ids 0..255 the byte symbols in table order,
                                 256..511 the same + "</w>", then one id per merge, then the two
                                 specials; merges.txt is "#version: 0.2" + the first 48,894 merges
  hf/tokenizer_config.json       special tokens as strings (what transformers v5 saves), max 77
  hub_style/tokenizer_config.json  the older hub layout: bos/eos/unk as AddedToken dicts with
                                 normalized=true, pad as a string
  small_tokenizer_json/          a 1,514-token vocabulary (first 1,000 merges) as transformers v5's
                                 save_pretrained writes it: tokenizer.json + tokenizer_config.json
  corpus.txt                     one JSON string per line
  hf_ids.jsonl                   line 1 metadata; then per corpus line {"i", "ids", "decode"} with
                                 ids = tokenizer(text)["input_ids"] and decode = tokenizer.decode(ids);
                                 then {"batch", "args", "input_ids", "attention_mask"} records;
                                 then {"config": "hub_style", "text", "ids"} records;
                                 then {"config": "small_tokenizer_json", "i", "ids"} records

Deterministic (fixed seeds, no clock). Pinned here: transformers 5.24.0, tokenizers 0.23.3
(recorded in hf_ids.jsonl, and checked below), open-clip-torch 3.3.0 for the vocabulary file.
Usage: python3 tools/make_tokenizer_fixtures.py   (pip install transformers tokenizers; pip
install --no-deps open-clip-torch, whose package needs only to be present, not importable)
"""
import gzip
import hashlib
import importlib.util
import json
import os
import random
import shutil
import sys
import tempfile
import unicodedata

import tokenizers
import transformers
from transformers import CLIPTokenizer

PINNED = {"transformers": "5.24.0", "tokenizers": "0.23.3"}
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "clip_tokenizer")
GZ_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"

for name, mod in (("transformers", transformers), ("tokenizers", tokenizers)):
    if mod.__version__ != PINNED[name]:
        sys.exit(f"{name} {mod.__version__} installed; the fixtures are pinned to {PINNED[name]}")

# ---- vocabulary files ---------------------------------------------------------------------------
spec = importlib.util.find_spec("open_clip")
if spec is None:
    sys.exit("open_clip not found: pip install --no-deps open-clip-torch==3.3.0")
src_gz = os.path.join(list(spec.submodule_search_locations)[0], "bpe_simple_vocab_16e6.txt.gz")
raw_gz = open(src_gz, "rb").read()
if hashlib.sha256(raw_gz).hexdigest() != GZ_SHA256:
    sys.exit(f"{src_gz}: unexpected SHA-256")
os.makedirs(os.path.join(OUT, "hf"), exist_ok=True)
os.makedirs(os.path.join(OUT, "hub_style"), exist_ok=True)
with open(os.path.join(OUT, "bpe_simple_vocab_16e6.txt.gz"), "wb") as f:
    f.write(raw_gz)

merges = gzip.decompress(raw_gz).decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
byte_chars = [chr(b) for b in printable] + [chr(256 + n) for n in range(256 - len(printable))]
vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges]
vocab += ["<|startoftext|>", "<|endoftext|>"]
assert len(vocab) == 49408 == len(set(vocab))
with open(os.path.join(OUT, "hf", "vocab.json"), "w", encoding="utf-8") as f:
    json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False, separators=(",", ":"))
with open(os.path.join(OUT, "hf", "merges.txt"), "w", encoding="utf-8") as f:
    f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
config = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
          "unk_token": "<|endoftext|>", "model_max_length": 77, "tokenizer_class": "CLIPTokenizer"}
with open(os.path.join(OUT, "hf", "tokenizer_config.json"), "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")


def added(content):
    return {"content": content, "single_word": False, "lstrip": False, "rstrip": False, "normalized": True,
            "__type": "AddedToken"}


hub_config = {"unk_token": added("<|endoftext|>"), "bos_token": added("<|startoftext|>"),
              "eos_token": added("<|endoftext|>"), "pad_token": "<|endoftext|>", "add_prefix_space": False,
              "errors": "replace", "do_lower_case": True, "model_max_length": 77, "tokenizer_class": "CLIPTokenizer"}
with open(os.path.join(OUT, "hub_style", "tokenizer_config.json"), "w") as f:
    json.dump(hub_config, f, indent=2)
    f.write("\n")

# ---- corpus ---------------------------------------------------------------------------------------
rng = random.Random(20240601)
corpus = []  # (category, text)


def add(cat, texts):
    for t in texts:
        corpus.append((cat, t))


ADJ = ["red", "small", "happy", "old", "wooden", "shiny", "blurry", "cute", "large", "dark", "bright", "fluffy",
       "vintage", "modern", "empty", "crowded", "snowy", "rainy", "golden", "striped"]
NOUN = ["cat", "dog", "car", "house", "tree", "bicycle", "person", "woman", "man", "child", "bird", "horse",
        "boat", "train", "pizza", "laptop", "guitar", "mountain", "street", "kitchen", "beach", "flower",
        "elephant", "giraffe", "skateboard", "umbrella", "clock", "sandwich", "airplane", "teddy bear"]
PLACE = ["on the table", "in the park", "next to a window", "under a bridge", "at night", "in the snow",
         "on a beach", "in front of a building", "near the river", "in a field", "on the street", "indoors"]
TEMPL = ["a photo of a {a} {n}.", "a {a} {n} {p}", "A picture of the {n} {p}.", "an image of a {n}",
         "a close-up photo of the {a} {n}", "a blurry photo of a {n}.", "a painting of a {a} {n} {p}",
         "This is a {n}", "two {n}s {p}", "the {n} is {a}", "A {A} {N} {P}", "{n}", "a photo of my {n}!",
         "itap of a {n}.", "a bad photo of the {n}.", "a rendering of a {n}.", "a sculpture of a {n}."]


def caption():
    t = rng.choice(TEMPL)
    a, n, p = rng.choice(ADJ), rng.choice(NOUN), rng.choice(PLACE)
    s = t.format(a=a, n=n, p=p, A=a.upper(), N=n.capitalize(), P=p.title())
    r = rng.random()
    if r < 0.1:
        s = s.upper()
    elif r < 0.2:
        s = s.title()
    return s


add("ascii_caption", [caption() for _ in range(450)])
add("ascii_caption", ["a photo of a cat", "a photo of a dog", "hello world", "You should've done this",
                      "2024 cats!!", "what's in the image"])

PUNCT = list("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'") + ["...", "--", "?!", "!!!", "()", "[]", "{}", "<>", "://", "#1"]
add("punctuation", ["".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 8))) for _ in range(60)])
add("punctuation", [" ".join(rng.choice([rng.choice(NOUN), "".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 4)))])
                             for _ in range(rng.randint(2, 9))) for _ in range(90)])
add("punctuation", ["http://example.com/a_b-c?d=1&e=2", "user@example.org", "C++ and C#", "#hashtag @mention",
                    "(parenthesised) [bracketed] {braced}", "semi;colon:colon", "a/b\\c|d", "~tilde~ ^caret^",
                    "«guillemets» „quotes“ “curly” ‘single’", "em—dash en–dash", "ellipsis… bullet •", "§ ¶ † ‡ ©®™"])


def number():
    k = rng.randint(0, 9)
    if k == 0:
        return str(rng.randint(0, 10 ** rng.randint(1, 12)))
    if k == 1:
        return f"{rng.uniform(-1000, 1000):.{rng.randint(1, 5)}f}"
    if k == 2:
        return f"{rng.randint(1, 999)},{rng.randint(0, 999):03d},{rng.randint(0, 999):03d}"
    if k == 3:
        return f"${rng.randint(1, 9999)}.{rng.randint(0, 99):02d}"
    if k == 4:
        return f"{rng.randint(1, 31)}/{rng.randint(1, 12)}/{rng.randint(1900, 2100)}"
    if k == 5:
        return f"{rng.randint(1, 100)}{rng.choice(['st', 'nd', 'rd', 'th', 'km', 'kg', '%', 'x', 'px', 'GB'])}"
    if k == 6:
        return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
    if k == 7:
        return f"{rng.randint(100, 999)}-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
    if k == 8:
        return f"{rng.randint(1, 9)}e{rng.randint(-20, 20)}"
    return f"{rng.choice(NOUN)} {rng.randint(0, 99999)} {rng.choice(NOUN)}s"


add("numbers", [number() for _ in range(120)])
add("numbers", ["²³¹ ½ ¾ ⅓", "Ⅻ Ⅳ ⅷ", "① ② ⑳", "٠١٢٣٤٥٦٧٨٩", "०१२३४५", "〇一二三", "𝟎𝟏𝟐 𝟘𝟙", "１２３ ＡＢＣ",
                "0x1F 0b1010 0o17", "3.14159265358979323846", "10^6", "-0", "+1", "1e-9", "½cup", "x²+y²=z²"])

CONTR = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]
add("contractions", [f"{rng.choice(['it', 'he', 'she', 'they', 'we', 'you', 'I', 'that', 'who'])}{c} {rng.choice(NOUN)}"
                     for c in CONTR for _ in range(6)])
add("contractions", [w for c in CONTR for w in (c, c.upper(), "x" + c.upper(), c + "a", "'" + c, "!" + c, c + "'",
                                                 c[0] + " " + c[1:], c + c, c + "1")])
add("contractions", ["don't", "DON'T", "Don'T", "y'all", "rock'n'roll", "o'clock", "'hello'", "''", "'", "'s'",
                     "isn't it's they're we've I'm you'll he'd", "ISN'T IT'S THEY'RE WE'VE I'M YOU'LL HE'D",
                     "the '90s", "'tis", "ma'am", "ne'er-do-well", "Jack's cat's toy", "it’s curly", "it`s backtick",
                     "it´s acute", "rock 'n' roll", "'re'", "'ll've", "'d've", "''s", "'''t"])

WORDS_ACCENT = ["café", "résumé", "naïve", "façade", "jalapeño", "crème brûlée", "Ångström", "Zürich", "São Paulo",
                "Dvořák", "Łódź", "Kraków", "Tiếng Việt", "Ελληνικά", "Ωμέγα", "Ђорђе", "Português", "señor",
                "coöperate", "Brontë", "Œuvre", "straße", "STRASSE", "İstanbul", "ıi", "ǅemal", "ǈ ǋ ǲ", "ﬁsh ﬂower",
                "ΟΔΟΣ", "Σίσυφος", "ὈΔΥΣΣΕΎΣ", "ΐ ΰ", "K Å Ω", "ẞ", "Ꭰ Ꭱ Ꭲ", "Ა Ბ", "ᲀ ᲁ", "ﬀ ﬃ"]
COMBINING = [0x300, 0x301, 0x302, 0x303, 0x308, 0x30A, 0x30C, 0x323, 0x327, 0x328, 0x316, 0x334, 0x345, 0x5B0,
             0x5B4, 0x5BC, 0x5C1, 0x64B, 0x650, 0x651, 0x93C, 0x94D, 0xE48, 0x1DC0, 0x20D7, 0x302A, 0x3099, 0x309A]
add("accents", WORDS_ACCENT)
add("accents", [unicodedata.normalize(form, w) for w in WORDS_ACCENT for form in ("NFD", "NFKD", "NFKC")])
add("accents", ["".join(rng.choice("aeiouAEIOUnNcCsSzZyYwW") + "".join(chr(rng.choice(COMBINING))
                                                                     for _ in range(rng.randint(0, 4)))
                        for _ in range(rng.randint(1, 8))) for _ in range(150)])
add("accents", ["e\u0301", "e\u0301\u0301", "a\u0328\u0301", "a\u0301\u0328", "o\u031b\u0323", "o\u0323\u031b",
                "\u0301", "\u0301a", " \u0301", "\u0345\u0301", "\u1100\u1161\u11a8", "\u1100\u1161", "\uac00\u11a8",
                "\u1100\u1100\u1161\u1161", "\u0958\u0959", "\u0915\u093c", "\u2126", "\u212b", "\u00c5\u030a",
                "\u0f73\u0f75\u0f81", "\u0f71\u0f72", "\u05d1\u05bc\u05b0", "\u05d1\u05b0\u05bc", "\u0627\u0651\u064e",
                "\u0627\u064e\u0651", "\u1e0b\u0323", "\u1e0d\u0307", "q\u0307\u0323", "\u0344", "\u0340\u0341",
                "\u212a\u0301", "\u0041\u030a\u0301", "\u0dd9\u0dca\u0dcf", "\u0b47\u0b3e", "\u0bc6\u0bbe",
                "\u1025\u102e", "\U0001109a", "\U00011099\U000110ba", "\U0001d15e", "\U0001d157\U0001d165",
                "\u7e8a", "\uf900", "\U0002f800", "\u2000\u2001", "\u0e01\u0e48\u0e33", "\u00e9\u0300", "\u1ea5\u0328"])

CJK = ["一只猫坐在桌子上", "東京タワーの写真", "서울의 밤 풍경", "猫が好きです。", "ｶﾀｶﾅ ﾊﾝｶｸ", "中文、日本語と한국어",
       "漢字かなカナ", "「引用」『二重』", "ㄱㄴㄷ ㅏㅑ", "ひらがなだけ", "カタカナダケ", "𠀀𠀁𪚥", "〆々〇", "鬱蒼", "ⓐⓑ",
       "今天天气很好，我们去公园玩吧！", "これはペンです", "안녕하세요 세계", "㈱㍻", "Ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ"]
add("cjk", CJK)
add("cjk", ["".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(rng.randint(1, 30))) for _ in range(50)])
add("cjk", ["".join(chr(rng.randint(0xAC00, 0xD7A3)) for _ in range(rng.randint(1, 12))) for _ in range(30)])
add("cjk", ["".join(chr(rng.randint(0x3041, 0x30FF)) for _ in range(rng.randint(1, 15))) for _ in range(30)])
add("cjk", [unicodedata.normalize("NFD", "".join(chr(rng.randint(0xAC00, 0xD7A3)) for _ in range(rng.randint(1, 6))))
            for _ in range(20)])
add("cjk", [rng.choice(CJK) + " " + caption() for _ in range(20)])

EMOJI = ["😀", "🐱", "🐶", "❤️", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵", "🇺🇸🇬🇧", "1️⃣", "#️⃣", "©️", "☺", "✨",
         "🧑🏿‍🦱", "🫠", "🪿", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "👁️‍🗨️", "🤷‍♀️", "⌚", "🀄", "🅰️", "🆗"]
add("emoji", EMOJI)
add("emoji", ["".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 6))) for _ in range(60)])
add("emoji", [f"{caption()} {rng.choice(EMOJI)}" for _ in range(40)])
add("emoji", [rng.choice(EMOJI) + rng.choice(NOUN) + rng.choice(EMOJI) for _ in range(30)])

SPACES = [" ", "  ", "\t", "\n", "\r\n", "\r", "\x0b", "\x0c", "\u00a0", "\u3000", "\u2000", "\u2003", "\u2009",
          "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u1680", "\u0085", "\u200b", "\ufeff", "\u180e",
          "\x1c", "\x1d", "\x1e", "\x1f", " \t\n ", "\u00a0\u00a0", "\u2060"]
add("whitespace", [rng.choice(SPACES).join(rng.choice(NOUN) for _ in range(rng.randint(2, 6))) for _ in range(90)])
add("whitespace", ["".join(rng.choice(SPACES) for _ in range(rng.randint(1, 5))) for _ in range(30)])
add("whitespace", [rng.choice(SPACES) + caption() + rng.choice(SPACES) for _ in range(40)])
add("whitespace", ["a" + s + "b" for s in SPACES] + [s for s in SPACES])

SPECIAL = ["<|startoftext|>", "<|endoftext|>"]
add("special_tokens", SPECIAL + ["".join(SPECIAL), SPECIAL[1] * 3, " ".join(SPECIAL) + " ",
                                 "<|STARTOFTEXT|>", "<|EndOfText|>", "<|endoftext", "endoftext|>", "<|endoftext|",
                                 "<|<|endoftext|>|>", "<<|endoftext|>>", "<| endoftext |>", "<|end of text|>",
                                 "<|startoftext|><|endoftext|>", "x<|ENDOFTEXT|>!", "!<|endoftext|>", "!<|ENDOFTEXT|>",
                                 "<|endoftext|>\u0301", "\u0301<|endoftext|>", "<|ENDOFTEXT|>\u0301",
                                 "<|startoftext|>\n<|endoftext|>", "<\uff5cendoftext\uff5c>", "<|endoftext|>'s",
                                 "<|ENDOFTEXT|>'S", "<|endoftext|>2024", "<|endof\u0074ext|>", "<|\u212aat|>",
                                 "<|startofte\u0301xt|>", "<|Startoftext|>cat"])
add("special_tokens", [f"{caption()}{rng.choice(SPECIAL)}{caption()}" for _ in range(20)]
    + [rng.choice(SPECIAL).upper() + rng.choice(["", " ", "a", "!", "1"]) + rng.choice(SPECIAL) for _ in range(20)]
    + ["".join(rng.choice(SPECIAL + ["a", " ", "!", "<|", "|>", "X"]) for _ in range(rng.randint(2, 8))) for _ in range(30)])

LANG = ["Le chat est sur la table.", "Der Hund läuft im Park.", "El perro corre en la playa.",
        "Кошка сидит на окне.", "Η γάτα κοιμάται.", "القط يجلس على الطاولة", "הַחָתוּל יוֹשֵׁב עַל הַשֻּׁלְחָן",
        "बिल्ली मेज़ पर बैठी है", "แมวนั่งอยู่บนโต๊ะ", "பூனை மேசையில் உள்ளது", "Con mèo ngồi trên bàn.",
        "Kedi masanın üzerinde.", "Kot siedzi na stole.", "Mačka sedí na stole.", "ماهی در آب است", "ኢትዮጵያ",
        "ქართული ენა", "Հայերեն", "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ", "ᠮᠣᠩᠭᠣᠯ", "ꦗꦮ", "ଓଡ଼ିଆ", "ਪੰਜਾਬੀ", "සිංහල", "ພາສາລາວ", "ဗမာ", "ᜆᜄᜎᜓᜄ᜔"]
add("languages", LANG + [unicodedata.normalize("NFD", s) for s in LANG] + [s.upper() for s in LANG])

NON_BMP = ["𝐀𝐁𝐂 𝒜𝒷", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𐐀𐐁𐐂 𐐨", "𞤀𞤁 𞤢", "𐌰𐌱𐌲", "𒀀𒀁", "𝄞𝄢", "🜁🜂", "𓀀𓀁", "𖬀", "𐒰𐓘",
           "\U00010c80\U00010cc0", "\U00016e40\U00016e60", "\U0001e900", "\U000118a0\U000118c0", "\U00016ea0\U00016ebb",
           "\U00010d50\U00010d70", "\U0001e030", "\U000f0000\U0010fffd", "\U0001fbf0\U0001fbf9", "\U00010d40\U00010d49",
           "\U000e0041\U000e007f", "\U0001f1e6", "\U00020000x", "\U0001d7ce\U0001d7ff"]
add("non_bmp", NON_BMP)
add("non_bmp", ["".join(chr(rng.randint(0x10000, 0x10FFFF)) for _ in range(rng.randint(1, 10))) for _ in range(60)])
add("non_bmp", ["".join(chr(rng.randint(0x1D400, 0x1D7FF)) for _ in range(rng.randint(1, 10))) for _ in range(20)])

# Code points where Python's Unicode data and tokenizers' disagree (newer letters, lowercase pairs,
# marks unknown to its NFC), around letters so each property is visible in the ids.
tables_diff = [0x1C89, 0x1C8A, 0xA7CB, 0xA7CC, 0xA7CD, 0xA7DC, 0x105C0, 0x10D50, 0x10D70, 0x16EA0, 0x16EBB, 0x10D40,
               0x116D0, 0x11BF0, 0x7FD, 0x898, 0x8CA, 0x9FE, 0xC3C, 0xD3B, 0x1715, 0x1ABF, 0x1ACE, 0x1DF6, 0x1DFA,
               0xA82C, 0x10D24, 0x10EAB, 0x10F46, 0x11070, 0x1133B, 0x11938, 0x11935, 0x11930, 0x16FF0, 0x1E130,
               0x1E2EC, 0x2C2F, 0x2C5F, 0x1E030, 0x10570, 0x10597, 0x1DF00, 0x1E4D0, 0x1E7E0, 0x31350, 0x2B739,
               0x1F7D9, 0x0C5D, 0x0CF3, 0x11F00, 0x13460, 0x1E5D0, 0x16D40]
add("unicode_versions", ["a" + chr(c) + "b" for c in tables_diff] + ["e" + chr(c) + "\u0301" for c in tables_diff]
    + ["A" + chr(c) + chr(c) + "Z" for c in tables_diff] + ["\u0301" + chr(c) + "\u0316" for c in tables_diff[:30]])


def random_cp():
    while True:
        r = rng.random()
        c = rng.randint(0, 0x2FFF) if r < 0.5 else rng.randint(0, 0xFFFF) if r < 0.8 else rng.randint(0, 0x10FFFF)
        if not 0xD800 <= c < 0xE000:
            return c


add("random_unicode", ["".join(chr(random_cp()) for _ in range(rng.randint(1, 12))) for _ in range(300)])
add("random_unicode", ["".join(rng.choice([chr(random_cp()), rng.choice(SPACES), rng.choice(PUNCT), rng.choice(CONTR),
                                           rng.choice(NOUN), chr(rng.choice(COMBINING))])
                               for _ in range(rng.randint(1, 15))) for _ in range(150)])

add("control", ["\x00", "a\x00b", "\x07bell", "del\x7f", "\x1b[31mred\x1b[0m", "\x80\x81\x9f", "nul\x00\x00end",
                "\x01\x02\x03", "tab\tand\x0bvt", "\ufffd", "\ufffe\uffff", "\U0010ffff", "\u200e\u200f\u202a",
                "soft\u00adhyphen", "zero\u200bwidth", "join\u200dnon\u200cjoin", "\ue000\uf8ff"])
add("control", ["".join(chr(rng.choice(list(range(0, 32)) + list(range(0x7F, 0xA0)))) + rng.choice(NOUN)
                        for _ in range(rng.randint(1, 5))) for _ in range(30)])

add("long", [" ".join(caption() for _ in range(rng.randint(8, 40))) for _ in range(40)])
add("long", ["a" * 300, "ab" * 200, "1" * 200, "!" * 500, "😀" * 100, "猫" * 300, "e\u0301" * 200,
             "supercalifragilisticexpialidocious" * 10, " ".join(str(i) for i in range(200)),
             "<|endoftext|>" * 90, "it's " * 100, "x" * 5000, " ".join(["word"] * 2000)])
add("long", ["".join(chr(rng.randint(0x61, 0x7A)) for _ in range(rng.randint(100, 2000))) for _ in range(10)])
add("empty", ["", " ", "  ", "\n", "\t\n\r ", "\u3000", "\u00a0", "\u2028\u2029"])

texts = [t for _, t in corpus]
categories = sorted({c for c, _ in corpus})
assert len(texts) >= 2000, len(texts)

# ---- Hugging Face ids -----------------------------------------------------------------------------
tok = CLIPTokenizer.from_pretrained(os.path.join(OUT, "hf"))
assert tok.model_max_length == 77
with open(os.path.join(OUT, "corpus.txt"), "w", encoding="utf-8") as f:
    for t in texts:
        f.write(json.dumps(t, ensure_ascii=True) + "\n")

records = []
for i, t in enumerate(texts):
    ids = tok(t)["input_ids"]
    records.append({"i": i, "ids": ids, "decode": tok.decode(ids)})

batches = []
brng = random.Random(7)
long_ix = [i for i, (c, _) in enumerate(corpus) if c == "long"]
setting_list = [
    {"padding": "max_length", "max_length": 77, "truncation": True},
    {"padding": True},
    {"padding": True, "truncation": True, "max_length": 77},
    {"padding": "max_length", "max_length": 16, "truncation": True},
    {"padding": True, "truncation": True, "max_length": 5},
]
for b in range(12):
    ix = brng.sample(range(len(texts)), brng.randint(1, 9))
    if b % 3 == 0:
        ix.append(brng.choice(long_ix))
    for args in setting_list:
        if args.get("padding") is True and not args.get("truncation") and any(i in long_ix for i in ix):
            continue  # untruncated long rows would make this batch thousands of columns wide
        enc = tok([texts[i] for i in ix], **args)
        batches.append({"batch": ix, "args": args, "input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})

tmp = tempfile.mkdtemp()
for name in ("vocab.json", "merges.txt"):
    shutil.copy(os.path.join(OUT, "hf", name), tmp)
shutil.copy(os.path.join(OUT, "hub_style", "tokenizer_config.json"), tmp)
hub_tok = CLIPTokenizer.from_pretrained(tmp)
hub_texts = [t for c, t in corpus if c in ("special_tokens", "contractions")]
hub_records = [{"config": "hub_style", "text": t, "ids": hub_tok(t)["input_ids"]} for t in hub_texts]
shutil.rmtree(tmp)

# A small vocabulary (the 512 byte symbols, the first 1,000 merges, the specials) saved by
# transformers itself, which writes only tokenizer.json + tokenizer_config.json in v5.
tmp = tempfile.mkdtemp()
small_merges = merges[:1000]
small_vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in small_merges]
small_vocab += ["<|startoftext|>", "<|endoftext|>"]
with open(os.path.join(tmp, "vocab.json"), "w", encoding="utf-8") as f:
    json.dump({t: i for i, t in enumerate(small_vocab)}, f, ensure_ascii=False)
with open(os.path.join(tmp, "merges.txt"), "w", encoding="utf-8") as f:
    f.write("#version: 0.2\n" + "\n".join(small_merges) + "\n")
small_tok = CLIPTokenizer.from_pretrained(tmp, model_max_length=77)
shutil.rmtree(tmp)
small_dir = os.path.join(OUT, "small_tokenizer_json")
shutil.rmtree(small_dir, ignore_errors=True)
small_tok.save_pretrained(small_dir)
assert sorted(os.listdir(small_dir)) == ["tokenizer.json", "tokenizer_config.json"], os.listdir(small_dir)
for name in ("tokenizer.json", "tokenizer_config.json"):  # drop the machine-specific path fields
    path = os.path.join(small_dir, name)
    d = json.load(open(path, encoding="utf-8"))
    for k in ("name_or_path", "is_local", "local_files_only"):
        d.pop(k, None)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(d, f, ensure_ascii=False, indent=None if name == "tokenizer.json" else 2)
small_records = [{"config": "small_tokenizer_json", "i": i, "ids": small_tok(texts[i])["input_ids"]}
                 for i in range(0, len(texts), 5)]

meta = {"meta": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                 "python": sys.version.split()[0], "unicodedata": unicodedata.unidata_version,
                 "bpe_sha256": GZ_SHA256, "strings": len(texts), "categories": categories,
                 "call": "CLIPTokenizer.from_pretrained('hf')(text)['input_ids'], decode(ids)"}}
with open(os.path.join(OUT, "hf_ids.jsonl"), "w", encoding="utf-8") as f:
    for r in [meta] + records + batches + hub_records + small_records:
        f.write(json.dumps(r, ensure_ascii=True, separators=(",", ":")) + "\n")
counts = {c: sum(1 for cc, _ in corpus if cc == c) for c in categories}
print(f"{len(texts)} strings {counts}; {len(batches)} batch records; {len(hub_records)} hub-style records; "
      f"{len(small_records)} small tokenizer.json records")
