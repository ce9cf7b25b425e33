#!/usr/bin/env python3
"""Tiny safetensors files for tests/io/test_safetensors.cpp and the fuzzer's seed corpus.

Run by hand from the repository root (standard library only; not part of the build):

    python3 tools/make_bad_safetensors.py

writes
  tests/fixtures/safetensors_bad/*.safetensors   one malformed file per fault the reader must reject
  tests/fixtures/safetensors_good/*.safetensors  valid files (layout as the reference writer's,
                                                 plus F16/BF16/integer dtypes and edge cases)

Format (huggingface/safetensors README, "Format"): u64 little-endian header length n, n bytes of
UTF-8 JSON starting with '{' (trailing spaces allowed), then the data region, which the tensors'
data_offsets must cover exactly. The F16 values in good/dtypes.safetensors are packed by Python's
struct ('<e'), independently of the C++ conversion they test; the BF16 ones are fixed bit patterns.
"""

import json
import math
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
BAD = os.path.join(ROOT, "safetensors_bad")
GOOD = os.path.join(ROOT, "safetensors_good")


def file_bytes(header, data=b"", length=None, pad=True):
    """length field · header · data. `header` is a str (written verbatim) or a dict (dumped
    compactly, as the reference writer does); `pad` adds trailing spaces up to a multiple of 8."""
    h = header if isinstance(header, (bytes, bytearray)) else (
        header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))).encode("utf-8")
    if pad:
        h += b" " * (-len(h) % 8)
    n = len(h) if length is None else length
    return struct.pack("<Q", n) + h + data


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def f32(*values):
    return struct.pack("<%df" % len(values), *values)


def write(directory, name, content):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name + ".safetensors"), "wb") as f:
        f.write(content)


def bad_cases():
    t4 = {"t": entry("F32", [4], 0, 16)}
    data16 = f32(1, 2, 3, 4)
    whole = file_bytes(t4, data16)
    header_len = struct.unpack("<Q", whole[:8])[0]
    nested = '{"t":' + "[" * 100 + "]" * 100 + "}"
    return {
        "too_short": b"\x10\x00\x00",
        "truncated_header": whole[:8 + header_len // 2],
        "header_length_past_end": file_bytes(t4, data16, length=header_len + 100),
        "header_length_too_big": file_bytes(t4, data16, length=header_len + 8),  # swallows data bytes
        "header_length_too_small": file_bytes(t4, data16, length=header_len - 10),
        "header_length_over_limit": file_bytes(t4, data16, length=1 << 62),
        "empty_header": struct.pack("<Q", 0) + data16,
        "header_not_json": file_bytes("{this is not json}", data16),
        "header_not_object": file_bytes("[1, 2, 3]", data16),
        "header_leading_space": file_bytes(" " + json.dumps(t4), data16),
        "non_utf8_json": file_bytes(b'{"t\xff":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', data16),
        "overlong_utf8_json": file_bytes(b'{"t\xc0\xaf":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', data16),
        "overlapping_ranges": file_bytes({"a": entry("F32", [4], 0, 16), "b": entry("F32", [4], 8, 24)}, f32(*range(6))),
        "out_of_file_range": file_bytes(t4, f32(1, 2)),
        "hole_in_data": file_bytes({"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 16, 24)}, f32(*range(6))),
        "trailing_bytes": file_bytes(t4, data16 + b"polyglot"),
        "huge_shape": file_bytes({"t": entry("F32", [1 << 32, 1 << 32, 4], 0, 16)}, data16),
        "byte_count_overflow": file_bytes({"t": entry("F64", [1 << 61], 0, 16)}, data16),
        "negative_shape": file_bytes({"t": entry("F32", [-4], 0, 16)}, data16),
        "fractional_shape": file_bytes({"t": entry("F32", [4.0], 0, 16)}, data16),
        "wrong_dtype_string": file_bytes({"t": entry("F17", [4], 0, 16)}, data16),
        "dtype_not_string": file_bytes({"t": entry(32, [4], 0, 16)}, data16),
        "subbyte_dtype": file_bytes({"t": entry("F4", [32], 0, 16)}, data16),
        "dtype_size_mismatch": file_bytes({"t": entry("F16", [4], 0, 16)}, data16),
        "duplicate_key": file_bytes('{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                                    '"t":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}', data16),
        "duplicate_field": file_bytes('{"t":{"dtype":"F32","dtype":"F64","shape":[4],"data_offsets":[0,16]}}', data16),
        "rank_above_4": file_bytes({"t": entry("F32", [1, 1, 1, 1, 4], 0, 16)}, data16),
        "offsets_backwards": file_bytes({"t": entry("F32", [0], 16, 0)}, data16),
        "offsets_not_a_pair": file_bytes({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0]}}, data16),
        "missing_field": file_bytes({"t": {"dtype": "F32", "shape": [4]}}, data16),
        "entry_not_object": file_bytes({"t": 5}, data16),
        "metadata_not_string": file_bytes({"__metadata__": {"k": 1}, "t": entry("F32", [4], 0, 16)}, data16),
        "deep_nesting": file_bytes(nested, data16),
    }


def good_cases():
    out = {}
    # As the reference writer lays it out: descending element size, then name; 8-byte padded header.
    out["small_model"] = file_bytes(
        {"__metadata__": {"format": "pt"},
         "position_ids": entry("I64", [1, 4], 0, 32),
         "b": entry("F32", [3], 32, 44),
         "w": entry("F32", [2, 3], 44, 68)},
        struct.pack("<4q", 0, 1, 2, 3) + f32(0.5, -0.5, 1.5) + f32(1, 2, 3, 4, 5, 6))
    f16_values = [1.0, 65504.0, 2.0 ** -24, -2.0, 0.0, -0.0, math.inf, -math.inf, 2.0 ** -14, 1023 * 2.0 ** -24,
                  0.333251953125, -65504.0]
    f16 = b"".join(struct.pack("<e", v) for v in f16_values) + struct.pack("<H", 0x7E00)  # + a quiet NaN
    # BF16: 1.0, -2.0, +inf, the smallest subnormal 2^-133, the largest finite (2 - 2^-7)·2^127, NaN.
    bf16 = struct.pack("<6H", 0x3F80, 0xC000, 0x7F80, 0x0001, 0x7F7F, 0x7FC0)
    f64 = struct.pack("<2d", 0.1, -3.0)
    i32 = struct.pack("<3i", -7, 0, 2147483647)
    u8 = bytes([0, 255, 7])
    boolean = bytes([0, 1, 1])
    # Unaligned on purpose: F16 at an odd offset would be invalid packing for C, fine for the format.
    blobs = [("u8", "U8", [3], u8), ("f16", "F16", [13], f16), ("bool", "BOOL", [3], boolean),
             ("bf16", "BF16", [2, 3], bf16), ("f64", "F64", [2], f64), ("i32", "I32", [3], i32)]
    header, data = {}, b""
    for name, dt, shape, raw in blobs:
        header[name] = entry(dt, shape, len(data), len(data) + len(raw))
        data += raw
    out["dtypes"] = file_bytes(header, data)
    out["empty"] = file_bytes({}, b"")
    out["zero_size_and_scalar"] = file_bytes(
        {"s": entry("F32", [], 0, 4), "z": entry("F32", [0, 3], 4, 4), "z2": entry("F64", [3, 0], 4, 4)}, f32(2.5))
    return out


def main():
    for name, content in bad_cases().items():
        write(BAD, name, content)
    for name, content in good_cases().items():
        write(GOOD, name, content)


if __name__ == "__main__":
    main()
