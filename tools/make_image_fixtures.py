#!/usr/bin/env python3
"""Image fixtures for tests/io/test_image.cpp: files, Pillow's pixels, Hugging Face's pixel_values.

Run by hand from the repository root (not part of the build):

    pip install pillow==13.0.0 scikit-image transformers==5.24.0 numpy
    python3 tools/make_image_fixtures.py

writes tests/fixtures/images/
  *.jpg *.png *.bmp         real photos from scikit-image's data module (downscaled first, see
                            LICENSE.md) and small synthetic edge cases (1×N, N×1, grey, 1-bit,
                            16-bit, LA, RGBA, palette, tRNS, BMP 8/24/32-bit, CMYK, EXIF-rotated,
                            smaller than the crop, very wide, very tall)
  configs/*.json            HF preprocessor_config.json files (clip_b32 is the hub file of
                            openai/clip-vit-base-patch32, legacy int sizes)
  expected.safetensors      one file, tensors named "<file>|<what>":
      |decoded              U8 [H,W,C]: Pillow's pixels in the layout mmalign's load_image returns
                            (L, LA, RGB, RGBA; P expanded; "1" and I;16 as L; CMYK as RGB)
      |rgb                  U8 [H,W,3]: Pillow's convert("RGB"), when it differs from decoded
      |hf_rgb               U8 [H,W,3]: transformers' convert_to_rgb (alpha onto white), when it
                            differs from rgb
      |resize|<src>|<filter>|<h>x<w>   U8: Pillow's Image.resize of the rgb (src=rgb) or of the
                            decoded L/LA/RGBA image (src=native)
      |pv|<config>          F32 [3,H,W]: CLIPImageProcessorPil(**config)(Image.open(file)) pixel_values
                            (U8 for configs that neither rescale nor normalize)
  __metadata__ records the Pillow, libjpeg-turbo, transformers and numpy versions.

The test reads U8 as well as F32 entries, so the file is written here with the standard library
and numpy (layout: u64 header length, JSON header padded with spaces to 8 bytes, data).
"""

import io
import json
import os
import shutil
import struct
import sys
import tempfile
import warnings
import zlib

import numpy as np
import PIL
from PIL import Image, features
import skimage
import skimage.data
import transformers
from transformers import CLIPImageProcessorPil
from transformers.image_transforms import convert_to_rgb

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "images")
CONFIGS = os.path.join(OUT, "configs")

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# HF preprocessor configs. clip_b32 is openai/clip-vit-base-patch32's preprocessor_config.json
# (legacy int size / crop_size). The others exercise the other forms and paths.
CONFIG_FILES = {
    "clip_b32": {
        "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD, "resample": 3, "size": 224,
    },
    # clip_b32 without rescale/normalize: HF returns the uint8 crop (stored compactly as U8)
    "clip_b32_uint8": {
        "crop_size": 224, "do_center_crop": True, "do_normalize": False, "do_rescale": False,
        "do_resize": True, "resample": 3, "size": 224,
    },
    "small": {
        "image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 32},
        "crop_size": {"height": 28, "width": 28}, "do_convert_rgb": True, "do_rescale": True,
        "rescale_factor": 0.00392156862745098, "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
    },
    # exact height×width resize (BLIP style) that leaves the height shorter than the crop: pads
    "pad_bilinear": {
        "size": {"height": 20, "width": 30}, "crop_size": {"height": 24, "width": 26},
        "resample": 2, "image_mean": 0.5, "image_std": 0.5,
    },
    # no resize: images smaller than the crop are zero-padded, larger ones cropped
    "crop_only": {"do_resize": False, "crop_size": 28},
    # legacy int size, [h, w] crop list, nearest, rescale without normalize
    "nearest": {"size": 40, "crop_size": [30, 36], "resample": 0, "do_normalize": False},
}

rng = np.random.default_rng(20240611)


# ---- writers -------------------------------------------------------------------------------
def png16(path, arr, color_type):
    """A 16-bit PNG (Pillow cannot write 16-bit colour): arr uint16 [H,W,C]."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def write_safetensors(path, tensors, metadata):
    dt = {np.dtype(np.uint8): "U8", np.dtype(np.float32): "F32"}
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        b = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def smooth_noise(h, w, c):
    """Random but compressible content: a random low-resolution field upscaled, plus noise."""
    lo = rng.integers(0, 256, (max(2, h // 4), max(2, w // 4), c), dtype=np.uint8)
    im = Image.fromarray(lo if c > 1 else lo[..., 0]).resize((w, h), Image.BILINEAR)
    a = np.asarray(im).astype(np.int16).reshape(h, w, c)
    a = a + rng.integers(-12, 13, a.shape)
    return np.clip(a, 0, 255).astype(np.uint8)


def down(a, w, h):
    return Image.fromarray(a).resize((w, h), Image.LANCZOS)


# ---- the fixture files -----------------------------------------------------------------------
# name -> (pixel_values configs, resize targets as (h, w)); configs always include "small".
FIXTURES = {}


def add(name, pv=(), targets=()):
    FIXTURES[name] = (("small",) + tuple(pv), tuple(targets))


def make_files():
    os.makedirs(CONFIGS, exist_ok=True)
    astro, coffee, chelsea = skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()
    camera, rocket = skimage.data.camera(), skimage.data.rocket()

    # photos
    down(astro, 232, 232).save(os.path.join(OUT, "astronaut_420.jpg"), quality=90, subsampling=2)
    add("astronaut_420.jpg", ["clip_b32", "pad_bilinear", "crop_only", "nearest"], [(58, 77)])
    down(coffee, 225, 150).save(os.path.join(OUT, "coffee_444.jpg"), quality=90, subsampling=0)
    add("coffee_444.jpg", ["clip_b32_uint8", "pad_bilinear"], [(50, 75), (150, 40), (23, 225)])
    down(chelsea, 240, 160).save(os.path.join(OUT, "chelsea_422_progressive.jpg"), quality=90, subsampling=1, progressive=True)
    add("chelsea_422_progressive.jpg", ["nearest"], [(53, 80)])
    down(camera[64:448], 256, 192).save(os.path.join(OUT, "camera_gray.jpg"), quality=90)
    add("camera_gray.jpg", ["crop_only"], [(48, 64)])
    down(rocket[:, 300:460], 64, 170).save(os.path.join(OUT, "rocket_tall.png"))
    add("rocket_tall.png", ["clip_b32_uint8", "pad_bilinear", "nearest"], [(40, 30), (85, 32), (60, 64), (170, 20)])
    down(chelsea[60:252, 150:406], 128, 96).save(os.path.join(OUT, "cat_crop.png"))
    add("cat_crop.png", ["crop_only", "nearest"], [(31, 47), (120, 150)])
    down(coffee, 48, 40).convert("CMYK").save(os.path.join(OUT, "cmyk.jpg"), quality=90)
    add("cmyk.jpg", [], [(17, 19)])
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° CW to display; not applied on decode
    down(astro, 24, 40).save(os.path.join(OUT, "exif_rotated.jpg"), quality=90, exif=exif.tobytes())
    add("exif_rotated.jpg", [], [(20, 13)])

    # synthetic edge cases
    Image.fromarray(smooth_noise(1, 37, 3)).save(os.path.join(OUT, "strip_1x37.png"))
    add("strip_1x37.png", ["crop_only"], [(1, 11), (5, 37), (3, 74)])
    Image.fromarray(smooth_noise(41, 1, 3)).save(os.path.join(OUT, "strip_41x1.png"))
    add("strip_41x1.png", ["pad_bilinear"], [(13, 1), (41, 4), (80, 2)])
    Image.fromarray(smooth_noise(33, 45, 1)[..., 0]).save(os.path.join(OUT, "gray_33x45.png"))
    add("gray_33x45.png", ["nearest"], [(11, 17), (40, 50)])
    Image.fromarray(smooth_noise(9, 17, 1)[..., 0] > 128).save(os.path.join(OUT, "bilevel_9x17.png"))
    add("bilevel_9x17.png", [], [(5, 7)])
    g16 = rng.integers(0, 1000, (16, 20, 1)).astype(np.uint16)  # Pillow's I;16 → L clips at 255
    png16(os.path.join(OUT, "gray16_16x20.png"), g16, 0)
    add("gray16_16x20.png", [], [(7, 9)])
    png16(os.path.join(OUT, "rgb16_13x19.png"), rng.integers(0, 65536, (13, 19, 3)).astype(np.uint16), 2)
    add("rgb16_13x19.png", [], [(5, 8)])
    la16 = rng.integers(0, 65536, (11, 13, 2)).astype(np.uint16)
    png16(os.path.join(OUT, "la16_11x13.png"), la16, 4)
    add("la16_11x13.png", [], [(4, 6)])
    rgba = smooth_noise(30, 40, 4)
    rgba[0, :5, 3], rgba[1, :5, 3] = 0, 255
    Image.fromarray(rgba).save(os.path.join(OUT, "rgba_30x40.png"))
    add("rgba_30x40.png", ["pad_bilinear", "nearest"], [(11, 13), (30, 71)])
    la = smooth_noise(20, 30, 2)
    la[0, :4, 1] = 0
    Image.fromarray(la).save(os.path.join(OUT, "la_20x30.png"))
    add("la_20x30.png", [], [(7, 9), (33, 30)])
    Image.fromarray(np.asarray(down(coffee, 50, 40))).quantize(200).save(os.path.join(OUT, "palette_40x50.png"))
    add("palette_40x50.png", ["crop_only"], [(15, 20)])
    Image.fromarray(np.asarray(down(chelsea, 23, 17))).quantize(10).save(os.path.join(OUT, "palette4_17x23.png"))
    add("palette4_17x23.png", [], [(7, 9)])
    pt = Image.fromarray(np.asarray(down(astro, 30, 30))).quantize(16)
    pt.info["transparency"] = bytes([0, 64, 128, 200] + [255] * 12)
    pt.save(os.path.join(OUT, "palette_trns_30x30.png"), transparency=pt.info["transparency"])
    add("palette_trns_30x30.png", ["pad_bilinear"], [(10, 10)])
    key = smooth_noise(20, 24, 3)
    key[2:6, 3:9] = (10, 200, 30)
    Image.fromarray(key).save(os.path.join(OUT, "rgb_trns_20x24.png"), transparency=(10, 200, 30))
    add("rgb_trns_20x24.png", [], [(9, 11)])
    Image.fromarray(smooth_noise(21, 33, 3)).save(os.path.join(OUT, "bmp24_21x33.bmp"))
    add("bmp24_21x33.bmp", ["crop_only"], [(8, 13)])
    Image.fromarray(np.asarray(down(coffee, 29, 19))).quantize(64).save(os.path.join(OUT, "bmp8_19x29.bmp"))
    add("bmp8_19x29.bmp", [], [(9, 10)])
    b32 = smooth_noise(15, 27, 4)
    b32[..., 3] = rng.integers(1, 255, (15, 27))  # alpha bytes that Pillow ignores (BGRX)
    Image.fromarray(b32).save(os.path.join(OUT, "bmp32_15x27.bmp"))
    add("bmp32_15x27.bmp", [], [(6, 9)])
    # the "small" config keeps 32×63 (shortest edge already 32) and crops at left (63 − 28) // 2 = 17,
    # where torchvision/OpenAI's round-half-even would take 18
    Image.fromarray(smooth_noise(32, 63, 3)).save(os.path.join(OUT, "odd_32x63.png"))
    add("odd_32x63.png", ["crop_only"], [(32, 17)])
    Image.fromarray(smooth_noise(10, 12, 3)).save(os.path.join(OUT, "small_10x12.png"))
    add("small_10x12.png", ["crop_only", "pad_bilinear", "nearest"], [(3, 5), (25, 31)])
    Image.fromarray(smooth_noise(20, 300, 3)).save(os.path.join(OUT, "wide_20x300.png"))
    add("wide_20x300.png", ["pad_bilinear", "nearest"], [(7, 90), (20, 37)])
    Image.fromarray(smooth_noise(500, 4, 3)).save(os.path.join(OUT, "tall_500x4.png"))
    add("tall_500x4.png", ["nearest"], [(60, 3), (61, 4), (300, 2), (499, 5)])


# ---- what Pillow and HF make of them -----------------------------------------------------------
def decoded_layout(im):
    """Pillow's pixels in the layout mmalign's load_image returns."""
    m = im.mode
    if m in ("L", "LA", "RGBA"):
        return np.asarray(im)
    if m == "RGB":
        return np.asarray(im.convert("RGBA") if "transparency" in im.info else im)
    if m == "P":
        return np.asarray(im.convert("RGBA") if "transparency" in im.info else im.convert("RGB"))
    if m in ("1", "I;16", "I;16B", "I"):
        return np.asarray(im.convert("L"))
    if m == "CMYK":
        return np.asarray(im.convert("RGB"))
    raise ValueError(f"unexpected mode {m}")


def hf_processor(config_name):
    d = tempfile.mkdtemp()
    try:
        shutil.copy(os.path.join(CONFIGS, config_name + ".json"), os.path.join(d, "preprocessor_config.json"))
        return CLIPImageProcessorPil.from_pretrained(d)
    finally:
        shutil.rmtree(d)


def main():
    warnings.filterwarnings("ignore", message="Palette images with Transparency")
    if os.path.isdir(OUT):
        for f in os.listdir(OUT):
            if f.rsplit(".", 1)[-1] in ("jpg", "png", "bmp", "safetensors"):
                os.remove(os.path.join(OUT, f))
    os.makedirs(OUT, exist_ok=True)
    make_files()
    for name, cfg in CONFIG_FILES.items():
        with open(os.path.join(CONFIGS, name + ".json"), "w") as f:
            json.dump(cfg, f, indent=2)
            f.write("\n")
    procs = {name: hf_processor(name) for name in CONFIG_FILES}

    T = {}
    for name, (pv_configs, targets) in FIXTURES.items():
        path = os.path.join(OUT, name)
        im = Image.open(path)
        dec = decoded_layout(im)
        if name == "la16_11x13.png":  # Pillow opens 16-bit LA as RGBA with R = G = B
            assert im.mode == "RGBA" and (dec[..., 0] == dec[..., 1]).all() and (dec[..., 0] == dec[..., 2]).all()
            dec = dec[..., [0, 3]]
        dec = dec.reshape(dec.shape[0], dec.shape[1], -1).astype(np.uint8)
        T[f"{name}|decoded"] = dec
        rgb = np.asarray(Image.open(path).convert("RGB"))
        # convert("RGB") of a large grey photo is its replication; small fixtures check that
        if not (dec.shape == rgb.shape and (dec == rgb).all()) and (dec.shape[2] != 1 or dec.size <= 4096):
            T[f"{name}|rgb"] = rgb
        hf = convert_to_rgb(Image.open(path), return_numpy=True)
        if not (hf == rgb).all():
            T[f"{name}|hf_rgb"] = hf

        srcs = [("rgb", Image.fromarray(rgb))]
        if dec.shape[2] != 3:
            native = Image.fromarray(dec[..., 0] if dec.shape[2] == 1 else dec)
            assert native.mode == {1: "L", 2: "LA", 4: "RGBA"}[dec.shape[2]], native.mode
            srcs.append(("native", native))
        for i, (h, w) in enumerate(targets):
            for src_name, src in srcs:
                filters = [("bicubic", Image.BICUBIC)]
                if i == 0:
                    filters += [("bilinear", Image.BILINEAR), ("nearest", Image.NEAREST)]
                for fname, f in filters:
                    out = np.asarray(src.resize((w, h), f))
                    T[f"{name}|resize|{src_name}|{fname}|{h}x{w}"] = out.reshape(h, w, -1)

        for cfg in pv_configs:
            pv = procs[cfg](Image.open(path), return_tensors="np")["pixel_values"][0]
            if cfg == "clip_b32_uint8":
                assert pv.dtype == np.uint8 or (pv == np.round(pv)).all()
                pv = pv.astype(np.uint8)
            else:
                assert pv.dtype == np.float32, pv.dtype
            T[f"{name}|pv|{cfg}"] = pv

    meta = {
        "generator": "tools/make_image_fixtures.py",
        "pillow": PIL.__version__,
        "pillow_libjpeg_turbo": str(features.version("libjpeg_turbo")),
        "pillow_zlib": str(features.version("zlib")),
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "scikit_image": skimage.__version__,
        "processor": "CLIPImageProcessorPil.from_pretrained(dir with configs/<config>.json as preprocessor_config.json)",
    }
    write_safetensors(os.path.join(OUT, "expected.safetensors"), T, meta)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print(json.dumps(meta, indent=1))
    print(f"{len(FIXTURES)} images, {len(T)} tensors, fixture dir {total / 1e6:.2f} MB")
    for f in sorted(os.listdir(OUT)):
        p = os.path.join(OUT, f)
        if os.path.isfile(p):
            print(f"  {f:32s} {os.path.getsize(p):9d}")


if __name__ == "__main__":
    sys.exit(main())
