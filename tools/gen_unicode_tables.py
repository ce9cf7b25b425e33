#!/usr/bin/env python3
"""Generates include/mmalign/io/detail/unicode_tables.hpp, the Unicode data behind
mmalign::io::ClipTokenizer's normalizer and pre-tokenizer.

The tables must reproduce what Hugging Face `tokenizers` computes, not what one Unicode version
says: its NFC comes from the unicode-normalization-alignments crate (an older Unicode than
Python's), its Lowercase from Rust's `char::to_lowercase` (a newer one), and `\\s`, `\\p{L}`,
`\\p{N}` from Oniguruma's tables. So the structure comes from Python's `unicodedata`
(decompositions, combining classes) and every property is then read back from `tokenizers`
itself, code point by code point, which decides wherever the two disagree. The generated NFC is
checked against `tokenizers` on every code point and on sequences of combining marks before the
header is written.

Usage: python3 tools/gen_unicode_tables.py [output.hpp]   (needs: pip install tokenizers)
"""
import random
import sys
import unicodedata

import tokenizers
from tokenizers import Regex, normalizers

OUT = sys.argv[1] if len(sys.argv) > 1 else "include/mmalign/io/detail/unicode_tables.hpp"
MAX_CP = 0x110000
SBASE, SCOUNT = 0xAC00, 11172


def scalar_values():
    return (c for c in range(MAX_CP) if not 0xD800 <= c < 0xE000)


nfc = normalizers.NFC()
nfd = normalizers.NFD()
lower = normalizers.Lowercase()


def removed_by(pattern):
    n = normalizers.Replace(Regex(pattern), "")
    return lambda ch: n.normalize_str(ch) == ""


is_space, is_letter, is_number = removed_by(r"\s"), removed_by(r"[\p{L}]"), removed_by(r"[\p{N}]")

# ---- \s, \p{L}, \p{N} (Oniguruma, as tokenizers' Regex sees them) --------------------------------
white = []
class_runs = []  # (first code point, class) where the class changes; 0 other, 1 letter, 2 number
prev = None
for c in range(MAX_CP):
    ch = chr(c)
    if 0xD800 <= c < 0xE000:
        cls = 0
    else:
        cls = 1 if is_letter(ch) else 2 if is_number(ch) else 0
        if is_space(ch):
            white.append(c)
    if cls != prev:
        class_runs.append((c, cls))
        prev = cls

# ---- lowercase (Rust char::to_lowercase, applied per character by tokenizers) ---------------------
single = {}
multi = {}
for c in scalar_values():
    low = lower.normalize_str(chr(c))
    if low == chr(c):
        continue
    if len(low) == 1:
        single[c] = ord(low) - c
    else:
        multi[c] = [ord(x) for x in low]
# Runs of equal delta over consecutive code points (stride 1) or every other one (stride 2).
lower_runs = []
keys = sorted(single)
i = 0
while i < len(keys):
    c, d = keys[i], single[keys[i]]
    best = (1, 1)
    for stride in (1, 2):
        # A run covers [first, last] alone: a stride-2 run stops before a skipped code point that
        # has a mapping of its own, so the runs stay disjoint and one binary search finds any.
        n = 1
        while (i + n < len(keys) and keys[i + n] == c + n * stride and single[keys[i + n]] == d
               and (stride == 1 or c + n * stride - 1 not in single)):
            n += 1
        if n > best[0]:
            best = (n, stride)
    n, stride = best
    lower_runs.append((c, c + (n - 1) * stride, d, stride if n > 1 else 1))
    i += n
assert all(a[1] < b[0] for a, b in zip(lower_runs, lower_runs[1:]))

# ---- canonical decomposition, combining classes, composition --------------------------------------
decomp = {}  # one step: cp -> (first, second or 0)
for c in scalar_values():
    if SBASE <= c < SBASE + SCOUNT:
        continue  # Hangul syllables are algorithmic
    d = unicodedata.decomposition(chr(c))
    if not d or d.startswith("<"):
        continue
    parts = [int(x, 16) for x in d.split()]
    decomp[c] = (parts[0], parts[1] if len(parts) > 1 else 0)


def full_nfd(c):
    if c not in decomp:
        return [c]
    a, b = decomp[c]
    return full_nfd(a) + (full_nfd(b) if b else [])


# A decomposition the crate does not know (added to Unicode after its tables) is dropped.
dropped = [c for c in list(decomp) if nfd.normalize_str(chr(c)) != "".join(map(chr, full_nfd(c)))]
for c in dropped:
    del decomp[c]
for c in scalar_values():
    if not SBASE <= c < SBASE + SCOUNT:
        assert nfd.normalize_str(chr(c)) == "".join(map(chr, full_nfd(c))), hex(c)


def crate_knows_ccc(ch):
    # Canonical ordering swaps a mark of class v in (0, 230) before U+0301 (230) and one of class
    # v > 1 after U+0334 (1). A mark that swaps with neither has class 0 in the crate.
    return nfd.normalize_str("a\u0301" + ch) != "a\u0301" + ch or nfd.normalize_str("a" + ch + "\u0334") != "a" + ch + "\u0334"


ccc, ccc_unknown = {}, []
for c in scalar_values():
    v = unicodedata.combining(chr(c))
    if v and c not in decomp:
        if crate_knows_ccc(chr(c)):
            ccc[c] = v
        else:
            ccc_unknown.append(c)
ccc_runs = []
prev = 0
for c in range(MAX_CP + 1):
    v = ccc.get(c, 0)
    if v != prev:
        ccc_runs.append((c, v))
        prev = v

compose = {}
for c, (a, b) in decomp.items():
    if b and nfc.normalize_str(chr(a) + chr(b)) == chr(c):
        compose[(a, b)] = c

# ---- self-check: an NFC built from these tables equals tokenizers' NFC ----------------------------
LBASE, VBASE, TBASE, LCOUNT, VCOUNT, TCOUNT = 0x1100, 0x1161, 0x11A7, 19, 21, 28


def model_nfc(s):
    buf = []
    for ch in s:
        c = ord(ch)
        if SBASE <= c < SBASE + SCOUNT:
            i = c - SBASE
            buf += [LBASE + i // (VCOUNT * TCOUNT), VBASE + (i % (VCOUNT * TCOUNT)) // TCOUNT]
            if i % TCOUNT:
                buf.append(TBASE + i % TCOUNT)
        else:
            buf += full_nfd(c)
    for i in range(1, len(buf)):  # stable insertion sort of each run of non-starters
        j = i
        while j > 0 and ccc.get(buf[j], 0) and ccc.get(buf[j - 1], 0) > ccc.get(buf[j], 0):
            buf[j - 1], buf[j] = buf[j], buf[j - 1]
            j -= 1
    out, starter, last_cc = [], -1, 0
    for c in buf:
        cc = ccc.get(c, 0)
        if starter >= 0 and (last_cc < cc or (last_cc == 0 and len(out) - 1 == starter)):
            s = out[starter]
            comp = None
            if LBASE <= s < LBASE + LCOUNT and VBASE <= c < VBASE + VCOUNT:
                comp = SBASE + ((s - LBASE) * VCOUNT + (c - VBASE)) * TCOUNT
            elif SBASE <= s < SBASE + SCOUNT and (s - SBASE) % TCOUNT == 0 and TBASE < c < TBASE + TCOUNT:
                comp = s + (c - TBASE)
            else:
                comp = compose.get((s, c))
            if comp is not None:
                out[starter] = comp
                continue
        if cc == 0:
            starter = len(out)
        last_cc = cc
        out.append(c)
    return "".join(map(chr, out))


for c in scalar_values():
    assert model_nfc(chr(c)) == nfc.normalize_str(chr(c)), hex(c)
rng = random.Random(0)
marks = sorted(ccc) + [c for c in decomp if decomp[c][1]][:400]
starters = [c for c, _ in compose] + [0x61, 0x1100, 0x1161, 0x11A8, 0xAC00, 0xAC01, 0x0F71]
for _ in range(200000):
    s = "".join(chr(rng.choice(starters if rng.random() < 0.4 else marks)) for _ in range(rng.randint(1, 6)))
    assert model_nfc(s) == nfc.normalize_str(s), [hex(ord(x)) for x in s]

# ---- write the header -----------------------------------------------------------------------------


def rows(items, per_line):
    items = list(items)
    return "\n".join("    " + ", ".join(items[i:i + per_line]) + "," for i in range(0, len(items), per_line))


h = []
h.append(f"""// mmalign/io/detail/unicode_tables.hpp — GENERATED by tools/gen_unicode_tables.py; do not edit.
//
// The Unicode properties Hugging Face `tokenizers` {tokenizers.__version__} uses in the CLIP normalizer and
// pre-tokenizer, read back from that library code point by code point (Python unicodedata
// {unicodedata.unidata_version} supplies the decomposition and combining-class structure):
//   class_runs   \\p{{L}} (1) and \\p{{N}} (2) of its Oniguruma regexes, as (first << 2 | class) runs;
//   white_space  its regex \\s;
//   lower_runs / lower_multi   Rust char::to_lowercase, per character (no final-sigma rule);
//   decompositions / ccc_runs / composition_exclusions   the canonical data of its NFC (Hangul
//                is algorithmic and not listed); decompositions unknown to it are left out.
#pragma once

#include <cstdint>

namespace mmalign::io::detail::unicode {{

struct LowerRun {{
    char32_t first, last;
    std::int32_t delta;
    std::uint32_t stride;  // 1: every code point of [first, last]; 2: every other one
}};
struct LowerMulti {{
    char32_t cp;
    char32_t to[3];  // zero-terminated when shorter
}};
struct Decomposition {{
    char32_t cp, first, second;  // one canonical step; second == 0 for a singleton
}};
""")
h.append("inline constexpr std::uint32_t class_runs[] = {\n" +
         rows((f"0x{(c << 2) | k:X}" for c, k in class_runs), 10) + "\n};\n")
h.append("inline constexpr char32_t white_space[] = {\n" + rows((f"0x{c:X}" for c in white), 12) + "\n};\n")
h.append("inline constexpr LowerRun lower_runs[] = {\n" +
         rows((f"{{0x{a:X}, 0x{b:X}, {d}, {s}}}" for a, b, d, s in lower_runs), 5) + "\n};\n")
h.append("inline constexpr LowerMulti lower_multi[] = {\n" +
         rows(("{0x%X, {%s}}" % (c, ", ".join(f"0x{x:X}" for x in v)) for c, v in sorted(multi.items())), 4) + "\n};\n")
h.append("inline constexpr Decomposition decompositions[] = {\n" +
         rows((f"{{0x{c:X}, 0x{a:X}, 0x{b:X}}}" for c, (a, b) in sorted(decomp.items())), 5) + "\n};\n")
h.append("// (first << 8 | class) where the canonical combining class changes.\n"
         "inline constexpr std::uint32_t ccc_runs[] = {\n" + rows((f"0x{(c << 8) | v:X}" for c, v in ccc_runs), 10) + "\n};\n")
excluded = sorted(c for c, (a, b) in decomp.items() if b and compose.get((a, b)) != c)
h.append("// Two-character decompositions that NFC never recomposes (composition exclusions,\n"
         "// non-starter decompositions); every other two-character one is a composition.\n"
         "inline constexpr char32_t composition_exclusions[] = {\n" + rows((f"0x{c:X}" for c in excluded), 10) + "\n};\n")
h.append("}  // namespace mmalign::io::detail::unicode\n")
with open(OUT, "w", encoding="utf-8") as f:
    f.write("\n".join(h))
print(f"{OUT}: {len(class_runs)} class runs, {len(white)} spaces, {len(lower_runs)} lower runs, "
      f"{len(multi)} multi, {len(decomp)} decompositions ({len(dropped)} unknown to tokenizers dropped: "
      f"{[hex(c) for c in dropped]}), {len(ccc_runs)} ccc runs ({len(ccc_unknown)} marks unknown to tokenizers: "
      f"{[hex(c) for c in ccc_unknown]}), {len(compose)} compositions")
