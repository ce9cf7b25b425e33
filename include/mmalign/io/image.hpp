// mmalign/io/image.hpp — image files decoded to the 8-bit pixels Pillow gives, and Pillow's and
// transformers' conversions to RGB. Needs the mmalign::image target (libjpeg-turbo, libpng).
//
//   Image, ImageLimits           io/decoded_image.hpp
//   load_image(path)             the file opened through io::open_input_file (regular files only,
//                                at most ImageLimits::max_file_bytes), then load_image_from_memory.
//   load_image_from_memory(bytes, name)
//                                format from the magic bytes:
//                                JPEG through libjpeg-turbo with Pillow's decoder settings
//                                (io/detail/jpeg_decoder.hpp); PNG through libpng with Pillow's
//                                rules for palettes, tRNS and 16-bit samples
//                                (io/detail/png_decoder.hpp); BMP by Pillow's BmpImagePlugin rules
//                                (io/detail/bmp_decoder.hpp). EXIF orientation is not applied, as
//                                in PIL.Image.open (Pillow rotates only in ImageOps.exif_transpose,
//                                which transformers' image_utils.load_image calls; rotate first to
//                                match that entry point).
//   to_rgb(img)                  Pillow's img.convert("RGB"): L replicated, alpha dropped, no premultiply.
//   to_rgb_on_white(img)         transformers' convert_to_rgb (5.24): alpha composited onto opaque
//                                white with Pillow's integer Image.alpha_composite, then RGB.
// Failures (missing, not a regular file, empty, too large, truncated, corrupt, unknown format,
// beyond ImageLimits) throw IoError "load_image: '<file>': <reason>" on one line.
// docs/robustness.md lists the limits and what each kind of bad file gets.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include "mmalign/core/error.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/io/decoded_image.hpp"
#include "mmalign/io/detail/bmp_decoder.hpp"
#include "mmalign/io/detail/jpeg_decoder.hpp"
#include "mmalign/io/detail/png_decoder.hpp"
#include "mmalign/io/input_file.hpp"

namespace mmalign::io {

/// Decodes a JPEG, PNG or BMP held in memory (see the top of this header); `name` stands for the
/// source in messages. Throws IoError.
inline Image load_image_from_memory(std::span<const std::uint8_t> bytes, const std::string& name,
                                    const ImageLimits& limits = {}) {
    const unsigned char* b = bytes.data();
    const std::size_t n = bytes.size();
    if (n == 0) detail::image_fail(name, "the file is empty");
    auto starts = [&](std::initializer_list<unsigned char> magic) {
        return n >= magic.size() && std::equal(magic.begin(), magic.end(), b);
    };
    if (starts({0xFF, 0xD8, 0xFF})) return detail::decode_jpeg(name, b, n, limits);
    if (starts({0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'})) return detail::decode_png(name, b, n, limits);
    if (starts({'B', 'M'})) return detail::decode_bmp(name, b, n, limits);
    std::string known;
    if (starts({'G', 'I', 'F', '8'}))
        known = "GIF";
    else if (starts({'R', 'I', 'F', 'F'}) && n >= 12 && std::memcmp(b + 8, "WEBP", 4) == 0)
        known = "WebP";
    else if (starts({'I', 'I', 42, 0}) || starts({'M', 'M', 0, 42}))
        known = "TIFF";
    if (!known.empty()) detail::image_fail(name, known + " files are not supported (JPEG, PNG and BMP are)");
    detail::image_fail(name, "unknown image format (not JPEG, PNG or BMP by its first bytes)");
}

/// Decodes a JPEG, PNG or BMP file (see the top of this header). Throws IoError naming `path`.
inline Image load_image(const std::string& path, const ImageLimits& limits = {}) {
    const std::string data = read_input_file(path, limits.max_file_bytes, "load_image");
    return load_image_from_memory({reinterpret_cast<const std::uint8_t*>(data.data()), data.size()}, path, limits);
}

/// Pillow's `img.convert("RGB")` for L, LA, RGB and RGBA: grey replicated, alpha dropped as is
/// (no premultiplication, no background).
inline Image to_rgb(const Image& img) {
    if (img.channels < 1 || img.channels > 4)
        throw ArgumentError("to_rgb: channels must be 1..4, found " + std::to_string(img.channels));
    if (img.channels == 3) return img;
    Image out(img.height, img.width, 3);
    const index_t n = img.height * img.width, c = img.channels;
    for (index_t i = 0; i < n; ++i) {
        const std::uint8_t* p = &img.pixels[static_cast<std::size_t>(i * c)];
        std::uint8_t* q = &out.pixels[static_cast<std::size_t>(i * 3)];
        if (c <= 2)
            q[0] = q[1] = q[2] = p[0];
        else
            q[0] = p[0], q[1] = p[1], q[2] = p[2];
    }
    return out;
}

/// transformers' `convert_to_rgb` (image_transforms.py, 5.24): an image with alpha is converted
/// to RGBA, `Image.alpha_composite`d over an opaque white RGBA image, and converted to RGB; one
/// without alpha is `convert("RGB")`. The blend is Pillow's integer one (AlphaComposite.c) with
/// an opaque white destination: coef = a·128, out = div255(c·a·128 + 255·(255−a)·128 + 2¹⁴) >> 7,
/// and a fully transparent pixel becomes white.
inline Image to_rgb_on_white(const Image& img) {
    if (!img.has_alpha()) return to_rgb(img);
    Image out(img.height, img.width, 3);
    const index_t n = img.height * img.width, c = img.channels;
    for (index_t i = 0; i < n; ++i) {
        const std::uint8_t* p = &img.pixels[static_cast<std::size_t>(i * c)];
        std::uint8_t* q = &out.pixels[static_cast<std::size_t>(i * 3)];
        const std::uint32_t a = p[c - 1];
        for (int k = 0; k < 3; ++k) {
            const std::uint32_t v = c == 2 ? p[0] : p[k];
            if (a == 0) {
                q[k] = 255;
                continue;
            }
            // Pillow: blend = 255·(255−a), outa255 = 255·255, coef1 = a·255·255·128 / outa255
            // (= a·128 exactly), coef2 = 255·128 − coef1.
            const std::uint32_t coef1 = a * 255u * 255u * 128u / (255u * 255u);
            const std::uint32_t coef2 = 255u * 128u - coef1;
            const std::uint32_t t = v * coef1 + 255u * coef2;
            q[k] = static_cast<std::uint8_t>(detail::shift_div255(t + (0x80u << 7)) >> 7);
        }
    }
    return out;
}

}  // namespace mmalign::io
