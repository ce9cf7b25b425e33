#!/usr/bin/env python3
"""BMP and PNG variants for tests/io/test_image.cpp and what Pillow decodes from them.

Run by hand from the repository root (not part of the build):

    pip install pillow==13.0.0 numpy
    python3 tools/make_decoder_fixtures.py

writes tests/fixtures/images/decoders/
  *.bmp                  small BMPs written byte by byte (Pillow writes only bottom-up BI_RGB):
                         top-down (negative height) 24- and 8-bit, 1/4/8-bit palettes, a grey
                         ramp palette (Pillow: mode L), a black/white palette (mode 1), a palette
                         shorter than the indices used, 16-bit 5-5-5 and 5-6-5 (BI_BITFIELDS),
                         32-bit BI_BITFIELDS with alpha (V5 header) and X-B-G-R (V3 header), the
                         12-byte OS/2 header
  *.png                  small PNGs written byte by byte (Pillow writes neither Adam7 interlacing
                         nor 16-bit colour): interlaced 8-bit RGB, 4-bit palette + tRNS, 16-bit
                         grey and RGBA, 1×1 and 3×2 (empty Adam7 passes); 2- and 4-bit grey;
                         16-bit RGB with a tRNS colour key; 8-bit grey with a tRNS key
  expected.safetensors   "<file>|decoded": U8 [H,W,C], Pillow's pixels in load_image's layout
                         (L for modes 1 and L, RGB for P and RGB, RGBA)
"""

import json
import os
import struct
import sys
import zlib

import numpy as np
import PIL
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "images", "decoders")
rng = np.random.default_rng(20261205)


def bmp(rows, w, h, bits, *, palette=None, header=40, compression=0, masks=None, top_down=False,
        colors=0, palette_entry=4):
    """rows: h byte strings in file order, unpadded. masks: (r, g, b[, a]) for BI_BITFIELDS."""
    stride = ((w * bits + 31) >> 3) & ~3
    data = b"".join(r + b"\0" * (stride - len(r)) for r in rows)
    pal = b""
    if palette is not None:
        pal = b"".join(bytes([b, g, r]) + (b"\0" if palette_entry == 4 else b"") for r, g, b in palette)
    extra = b""
    if header == 12:
        info = struct.pack("<IHHHH", 12, w, h, 1, bits)
    else:
        info = struct.pack("<IiiHHIIiiII", header, w, -h if top_down else h, 1, bits, compression, len(data),
                           2835, 2835, colors, 0)
        if masks is not None and header == 40:
            extra = struct.pack("<III", *masks[:3])
        elif header > 40:
            m = list(masks or (0, 0, 0, 0)) + [0] * 4
            tail = struct.pack("<IIII", *m[:4]) if header >= 56 else struct.pack("<III", *m[:3])
            info += (tail + b"\0" * header)[: header - 40]
    offset = 14 + len(info) + len(extra) + len(pal)
    size = offset + len(data)
    return b"BM" + struct.pack("<IHHI", size, 0, 0, offset) + info + extra + pal + data


def rand_bytes(n):
    return bytes(rng.integers(0, 256, n, dtype=np.uint8))


def files():
    out = {}
    w, h = 7, 5
    out["top_down_24_7x5.bmp"] = bmp([rand_bytes(3 * w) for _ in range(h)], w, h, 24, top_down=True)
    pal = [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(40)]
    out["top_down_8_9x6.bmp"] = bmp([bytes(rng.integers(0, 40, 9, dtype=np.uint8)) for _ in range(6)], 9, 6, 8,
                                    palette=pal, top_down=True, colors=40)
    out["pal1_13x5.bmp"] = bmp([rand_bytes(2) for _ in range(5)], 13, 5, 1, palette=[(200, 10, 30), (5, 90, 250)])
    out["mono1_10x3.bmp"] = bmp([rand_bytes(2) for _ in range(3)], 10, 3, 1, palette=[(0, 0, 0), (255, 255, 255)])
    pal16 = [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(16)]
    out["pal4_11x6.bmp"] = bmp([rand_bytes(6) for _ in range(6)], 11, 6, 4, palette=pal16)
    ramp = [(i, i, i) for i in range(256)]
    out["gray8_10x4.bmp"] = bmp([rand_bytes(10) for _ in range(4)], 10, 4, 8, palette=ramp)
    # indices 0..9 with a 4-entry palette
    out["short_palette_8x3.bmp"] = bmp([bytes(rng.integers(0, 10, 8, dtype=np.uint8)) for _ in range(3)], 8, 3, 8,
                                       palette=pal[:4], colors=4)
    out["rgb555_9x5.bmp"] = bmp([rand_bytes(18) for _ in range(5)], 9, 5, 16)
    out["rgb565_9x5.bmp"] = bmp([rand_bytes(18) for _ in range(5)], 9, 5, 16, compression=3,
                                masks=(0xF800, 0x07E0, 0x001F))
    out["bgra_v5_8x5.bmp"] = bmp([rand_bytes(32) for _ in range(5)], 8, 5, 32, header=124, compression=3,
                                 masks=(0xFF0000, 0xFF00, 0xFF, 0xFF000000), top_down=True)
    out["xbgr_v3_6x4.bmp"] = bmp([rand_bytes(24) for _ in range(4)], 6, 4, 32, header=56, compression=3,
                                 masks=(0xFF000000, 0xFF0000, 0xFF00, 0))
    out["os2_24_6x4.bmp"] = bmp([rand_bytes(18) for _ in range(4)], 6, 4, 24, header=12)
    out["os2_pal8_5x3.bmp"] = bmp([bytes(rng.integers(0, 40, 5, dtype=np.uint8)) for _ in range(3)], 5, 3, 8,
                                  header=12, palette=pal[:256] + [(0, 0, 0)] * 216, palette_entry=3)
    return out


def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


def pack_row(samples, depth):
    """One row of samples (ints) at `depth` bits, big-endian, as PNG stores them."""
    if depth == 16:
        return b"".join(struct.pack(">H", int(v)) for v in samples)
    if depth == 8:
        return bytes(int(v) for v in samples)
    per = 8 // depth
    out = bytearray((len(samples) + per - 1) // per)
    for i, v in enumerate(samples):
        out[i // per] |= int(v) << (8 - depth * (i % per + 1))
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png(arr, depth, color_type, *, interlace=False, extra=b""):
    """arr: [H, W, C] samples. Filter 0 on every row; Adam7 passes when interlaced."""
    h, w, c = arr.shape
    raw = b""
    if interlace:
        for x0, y0, dx, dy in ADAM7:
            sub = arr[y0::dy, x0::dx]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue
            raw += b"".join(b"\0" + pack_row(sub[y].reshape(-1), depth) for y in range(sub.shape[0]))
    else:
        raw = b"".join(b"\0" + pack_row(arr[y].reshape(-1), depth) for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 1 if interlace else 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw, 9)) +
            chunk(b"IEND", b""))


def samples(h, w, c, top):
    return rng.integers(0, top, (h, w, c))


def png_files():
    out = {}
    out["adam7_rgb8_13x11.png"] = png(samples(11, 13, 3, 256), 8, 2, interlace=True)
    pal = bytes(int(v) for v in rng.integers(0, 256, 3 * 12))
    out["adam7_pal4_trns_9x10.png"] = png(samples(10, 9, 1, 14), 4, 3, interlace=True,
                                         extra=chunk(b"PLTE", pal) + chunk(b"tRNS", bytes([0, 90, 180, 255, 33])))
    out["adam7_gray16_7x9.png"] = png(samples(9, 7, 1, 1200), 16, 0, interlace=True)
    out["adam7_rgba16_6x5.png"] = png(samples(5, 6, 4, 65536), 16, 6, interlace=True)
    out["adam7_1x1.png"] = png(samples(1, 1, 3, 256), 8, 2, interlace=True)
    out["adam7_la8_3x2.png"] = png(samples(2, 3, 2, 256), 8, 4, interlace=True)
    out["gray2_11x3.png"] = png(samples(3, 11, 1, 4), 2, 0)
    out["gray4_9x4.png"] = png(samples(4, 9, 1, 16), 4, 0)
    key = (0x0A01, 0xC8FF, 0x1E1E)  # Pillow compares the key's low bytes with the 8-bit samples
    rgb16 = samples(4, 6, 3, 65536)
    rgb16[1, 2] = (0x01AB, 0xFF00, 0x1E77)  # high bytes 0x01, 0xFF, 0x1E: the key's low bytes
    rgb16[2, 3] = key
    out["rgb16_key_6x4.png"] = png(rgb16, 16, 2, extra=chunk(b"tRNS", struct.pack(">HHH", *key)))
    g8 = samples(3, 5, 1, 256)
    g8[0, 0] = 7
    out["gray8_key_5x3.png"] = png(g8, 8, 0, extra=chunk(b"tRNS", struct.pack(">H", 7)))
    return out


def decoded_layout(im):
    """Pillow's pixels in load_image's layout (as in tools/make_image_fixtures.py)."""
    m = im.mode
    if m in ("L", "LA", "RGBA"):
        return np.asarray(im)
    if m == "RGB":
        return np.asarray(im.convert("RGBA") if "transparency" in im.info else im)
    if m == "P":
        return np.asarray(im.convert("RGBA") if "transparency" in im.info else im.convert("RGB"))
    if m in ("1", "I;16", "I;16B", "I"):
        return np.asarray(im.convert("L"))
    raise ValueError(f"unexpected mode {m}")


def write_safetensors(path, tensors, metadata):
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        b = np.ascontiguousarray(tensors[name], dtype=np.uint8).tobytes()
        header[name] = {"dtype": "U8", "shape": list(tensors[name].shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    os.makedirs(OUT, exist_ok=True)
    T = {}
    for name, data in {**files(), **png_files()}.items():
        path = os.path.join(OUT, name)
        with open(path, "wb") as f:
            f.write(data)
        im = Image.open(path)
        dec = decoded_layout(im)
        dec = dec.reshape(dec.shape[0], dec.shape[1], -1).astype(np.uint8)
        T[f"{name}|decoded"] = dec
        print(f"  {name:26s} {len(data):5d} bytes, Pillow mode {im.mode}, decoded {list(dec.shape)}")
    write_safetensors(os.path.join(OUT, "expected.safetensors"), T,
                      {"generator": "tools/make_bmp_fixtures.py", "pillow": PIL.__version__})


if __name__ == "__main__":
    sys.exit(main())
