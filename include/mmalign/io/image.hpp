// mmalign/io/image.hpp — image files decoded to the 8-bit pixels Pillow gives, and Pillow's and
// transformers' conversions to RGB. Needs the mmalign::image target (libjpeg-turbo, stb_image).
//
//   Image                 HWC uint8; channels 1 (L), 2 (LA), 3 (RGB), 4 (RGBA).
//   load_image(path)      format from the magic bytes. JPEG through libjpeg-turbo with Pillow's
//                         decoder settings (ISLOW IDCT, fancy upsampling, no DCT scaling); a
//                         4-component (CMYK/YCCK) JPEG comes back as RGB by Pillow's formula.
//                         PNG and BMP through stb_image, palettes expanded (tRNS → RGBA), then
//                         Pillow's rules for 16-bit PNG and 32-bit BMP. EXIF orientation is not
//                         applied, as in PIL.Image.open (Pillow rotates only in
//                         ImageOps.exif_transpose, which transformers' image_utils.load_image
//                         calls; rotate first to match that entry point).
//   to_rgb(img)           Pillow's img.convert("RGB"): L replicated, alpha dropped, no premultiply.
//   to_rgb_on_white(img)  transformers' convert_to_rgb (5.24): alpha composited onto opaque white
//                         with Pillow's integer Image.alpha_composite, then RGB.
// Failures (missing, empty, truncated, corrupt, unknown format, beyond ImageLimits) throw IoError
// naming the file.
#pragma once

#include <algorithm>
#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <cstdio>  // jpeglib.h needs FILE and size_t declared first
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

#include <jerror.h>
#include <jpeglib.h>

#include "mmalign/core/error.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/io/detail/stb_image.hpp"

namespace mmalign::io {

struct Image {
    index_t height = 0, width = 0, channels = 0;
    std::vector<std::uint8_t> pixels;  // HWC, row-major, height * width * channels bytes

    Image() = default;
    Image(index_t h, index_t w, index_t c, std::uint8_t fill = 0) : height(h), width(w), channels(c) {
        if (h < 0 || w < 0 || c < 0)
            throw ArgumentError("Image: negative size " + std::to_string(h) + "x" + std::to_string(w) + "x" +
                                std::to_string(c));
        pixels.assign(static_cast<std::size_t>(h * w * c), fill);
    }

    bool has_alpha() const { return channels == 2 || channels == 4; }
    std::uint8_t* row(index_t y) { return pixels.data() + y * width * channels; }
    const std::uint8_t* row(index_t y) const { return pixels.data() + y * width * channels; }
    std::uint8_t& at(index_t y, index_t x, index_t c) {
        return pixels[static_cast<std::size_t>((y * width + x) * channels + c)];
    }
    std::uint8_t at(index_t y, index_t x, index_t c) const {
        return pixels[static_cast<std::size_t>((y * width + x) * channels + c)];
    }
};

/// Sizes load_image accepts, checked from the header before any pixel memory is allocated.
/// The pixel cap is Pillow's DecompressionBombError threshold (2 × Image.MAX_IMAGE_PIXELS).
struct ImageLimits {
    index_t max_side = index_t(1) << 15;
    index_t max_pixels = 178'956'970;
};

namespace detail {

[[noreturn]] inline void image_fail(const std::string& path, const std::string& what) {
    throw IoError("load_image: '" + path + "': " + what);
}

inline void check_image_size(const std::string& path, index_t w, index_t h, const ImageLimits& lim) {
    if (w <= 0 || h <= 0) image_fail(path, "zero-sized image (" + std::to_string(w) + "x" + std::to_string(h) + ")");
    if (w > lim.max_side || h > lim.max_side || w * h > lim.max_pixels)
        image_fail(path, "image of " + std::to_string(w) + "x" + std::to_string(h) +
                             " pixels exceeds the limits (side <= " + std::to_string(lim.max_side) +
                             ", pixels <= " + std::to_string(lim.max_pixels) + ")");
}

// Pillow's integer helpers (libImaging/ImagingUtils.h): x/255 rounded, without a division.
constexpr std::uint32_t shift_div255(std::uint32_t a) { return ((a >> 8) + a) >> 8; }
constexpr std::uint8_t mul_div255(std::uint32_t a, std::uint32_t b) {
    return static_cast<std::uint8_t>(shift_div255(a * b + 128));
}

// ---- JPEG -----------------------------------------------------------------------------------
// libjpeg reports fatal errors through error_exit, which must not return. A C++ exception cannot
// safely cross libjpeg's C frames, so error_exit longjmps back to the setjmp in the phase function
// that called libjpeg. Those phase functions hold no objects with destructors, and everything
// they write lives in JpegState (not in locals), so the jump skips no destructor and reads no
// clobbered local. The caller turns the recorded message into an IoError.
struct JpegState {
    jpeg_decompress_struct cinfo;
    jpeg_error_mgr err;
    std::jmp_buf jump;
    bool created;
    bool past_header;  // a "premature end of file" warning from here on means a truncated file
    char message[JMSG_LENGTH_MAX];
};

inline JpegState* jpeg_state(j_common_ptr c) {
    // err is JpegState's second member; recover the state from the error manager pointer.
    return reinterpret_cast<JpegState*>(reinterpret_cast<char*>(c->err) - offsetof(JpegState, err));
}

inline void jpeg_error_exit(j_common_ptr c) {
    JpegState* s = jpeg_state(c);
    (*c->err->format_message)(c, s->message);
    std::longjmp(s->jump, 1);
}

// Warnings (level -1) are silent, as in Pillow, except that running out of data after the header
// is a truncated file: libjpeg would pad the image with grey, Pillow raises "image file is
// truncated" (even when only the EOI marker is missing).
inline void jpeg_emit_message(j_common_ptr c, int level) {
    JpegState* s = jpeg_state(c);
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF && s->past_header) {
        std::snprintf(s->message, sizeof s->message, "truncated file (premature end of JPEG data)");
        std::longjmp(s->jump, 1);
    }
    if (level < 0) ++c->err->num_warnings;
}

inline void jpeg_output_message(j_common_ptr) {}

// Phase 1: header. Returns false after a libjpeg error (message in s->message).
inline bool jpeg_read_header_phase(JpegState* s, const unsigned char* data, unsigned long size) {
    if (setjmp(s->jump)) return false;
    jpeg_create_decompress(&s->cinfo);
    s->created = true;
    jpeg_mem_src(&s->cinfo, data, size);
    jpeg_read_header(&s->cinfo, TRUE);
    return true;
}

// Phase 2: pixels into `out` (an h × w × comps buffer), then the trailer. Pillow's decoder settings
// (libImaging/JpegDecode.c without draft mode) are libjpeg's defaults; they are set explicitly
// here so that a changed default cannot change the pixels.
inline bool jpeg_read_pixels_phase(JpegState* s, unsigned char* out, JDIMENSION w, JDIMENSION h, int comps) {
    if (setjmp(s->jump)) return false;
    s->cinfo.dct_method = JDCT_ISLOW;
    s->cinfo.do_fancy_upsampling = TRUE;
    s->cinfo.do_block_smoothing = TRUE;
    s->cinfo.scale_num = 1;
    s->cinfo.scale_denom = 1;
    s->cinfo.quantize_colors = FALSE;
    s->past_header = true;  // progressive files are read whole by jpeg_start_decompress
    jpeg_start_decompress(&s->cinfo);
    if (s->cinfo.output_width != w || s->cinfo.output_height != h || s->cinfo.output_components != comps) {
        std::snprintf(s->message, sizeof s->message, "the decoder returned an unexpected layout");
        return false;
    }
    const std::size_t stride = static_cast<std::size_t>(w) * static_cast<std::size_t>(comps);
    while (s->cinfo.output_scanline < s->cinfo.output_height) {
        JSAMPROW row = out + s->cinfo.output_scanline * stride;
        jpeg_read_scanlines(&s->cinfo, &row, 1);
    }
    // Reads up to EOI; Pillow fails on errors here too ("broken data stream").
    jpeg_finish_decompress(&s->cinfo);
    return true;
}

struct JpegGuard {
    JpegState* s;
    ~JpegGuard() {
        if (s->created) jpeg_destroy_decompress(&s->cinfo);
    }
};

inline Image decode_jpeg(const std::string& path, const std::vector<unsigned char>& bytes, const ImageLimits& lim) {
    JpegState state;
    std::memset(&state, 0, sizeof state);
    JpegGuard guard{&state};
    state.cinfo.err = jpeg_std_error(&state.err);
    state.err.error_exit = jpeg_error_exit;
    state.err.emit_message = jpeg_emit_message;
    state.err.output_message = jpeg_output_message;

    if (!jpeg_read_header_phase(&state, bytes.data(), static_cast<unsigned long>(bytes.size())))
        image_fail(path, std::string("JPEG error: ") + state.message);
    jpeg_decompress_struct& ci = state.cinfo;
    // Pillow (JpegImagePlugin.SOF) accepts 8-bit data with 1, 3 or 4 components only.
    if (ci.data_precision != 8)
        image_fail(path, "cannot handle " + std::to_string(ci.data_precision) + "-bit JPEG data");
    check_image_size(path, static_cast<index_t>(ci.image_width), static_cast<index_t>(ci.image_height), lim);
    // 1 → L, 3 → RGB (libjpeg converts from YCbCr as it guesses from JFIF/Adobe markers), 4 →
    // CMYK. Pillow reads 4-component data as "CMYK;I" (inverted: Adobe's convention) and
    // converts YCCK to CMYK inside libjpeg.
    bool cmyk = false;
    switch (ci.num_components) {
        case 1:
            ci.out_color_space = JCS_GRAYSCALE;
            break;
        case 3:
            ci.out_color_space = JCS_RGB;
            break;
        case 4:
            ci.out_color_space = JCS_CMYK;
            cmyk = true;
            break;
        default:
            image_fail(path, "cannot handle " + std::to_string(ci.num_components) + "-component JPEG");
    }
    const index_t h = ci.image_height, w = ci.image_width;
    const index_t comps = cmyk ? 4 : ci.num_components;
    std::vector<std::uint8_t> raw(static_cast<std::size_t>(h * w * comps));
    if (!jpeg_read_pixels_phase(&state, raw.data(), ci.image_width, ci.image_height, static_cast<int>(comps)))
        image_fail(path, std::string("JPEG error: ") + state.message);

    Image img;
    img.height = h;
    img.width = w;
    if (!cmyk) {
        img.channels = comps;
        img.pixels = std::move(raw);
        return img;
    }
    // "CMYK;I" inverts, then Pillow's cmyk2rgb (libImaging/Convert.c) gives RGB.
    img.channels = 3;
    img.pixels.resize(static_cast<std::size_t>(h * w * 3));
    for (index_t i = 0; i < h * w; ++i) {
        const std::uint8_t* p = &raw[static_cast<std::size_t>(i * 4)];
        const int nk = p[3];  // 255 − K after the inversion
        for (int c = 0; c < 3; ++c) {
            const int v = nk - mul_div255(255u - p[c], static_cast<std::uint32_t>(nk));
            img.pixels[static_cast<std::size_t>(i * 3 + c)] = static_cast<std::uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    return img;
}

// ---- PNG, BMP (stb_image) -------------------------------------------------------------------
inline std::uint32_t le32(const unsigned char* p) {
    return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 | std::uint32_t(p[3]) << 24;
}

inline Image decode_stb(const std::string& path, const std::vector<unsigned char>& bytes, bool is_bmp,
                        const ImageLimits& lim) {
    const int len = static_cast<int>(bytes.size());
    int w = 0, h = 0, n = 0;
    if (!stbi_info_from_memory(bytes.data(), len, &w, &h, &n))
        image_fail(path, std::string(is_bmp ? "BMP" : "PNG") + " error: " + stbi_failure_reason());
    check_image_size(path, w, h, lim);
    // BITMAPINFOHEADER and later (header size >= 40 at offset 14) carry the compression at 30.
    const bool bmp_info_header = is_bmp && bytes.size() >= 34 && le32(&bytes[14]) >= 40;
    const std::uint32_t bmp_compression = bmp_info_header ? le32(&bytes[30]) : 0;
    // Pillow (BmpImagePlugin) also reads run-length and embedded JPEG/PNG BMPs; stb_image not.
    if (bmp_compression == 1 || bmp_compression == 2 || bmp_compression == 4 || bmp_compression == 5)
        image_fail(path, "BMP compression " + std::to_string(bmp_compression) + " (RLE/JPEG/PNG) is not supported");

    Image img;
    if (!is_bmp && stbi_is_16_bit_from_memory(bytes.data(), len)) {
        std::uint16_t* p = stbi_load_16_from_memory(bytes.data(), len, &w, &h, &n, 0);
        if (!p) image_fail(path, std::string("PNG error: ") + stbi_failure_reason());
        img = Image(h, w, n);
        // Pillow (PngImagePlugin._MODES): 16-bit grey opens as "I;16", whose conversion to L/RGB
        // clips at 255 (Convert.c I16_L, I16_RGB); 16-bit grey+alpha and colour are unpacked
        // keeping the high byte of each sample ("LA;16B", "RGB;16B", "RGBA;16B").
        const std::size_t count = img.pixels.size();
        for (std::size_t i = 0; i < count; ++i)
            img.pixels[i] =
                n == 1 ? static_cast<std::uint8_t>(p[i] > 255 ? 255 : p[i]) : static_cast<std::uint8_t>(p[i] >> 8);
        stbi_image_free(p);
        return img;
    }
    unsigned char* p = stbi_load_from_memory(bytes.data(), len, &w, &h, &n, 0);
    if (!p) image_fail(path, std::string(is_bmp ? "BMP" : "PNG") + " error: " + stbi_failure_reason());
    img = Image(h, w, n);
    std::memcpy(img.pixels.data(), p, img.pixels.size());
    stbi_image_free(p);
    // Pillow reads a 32-bit uncompressed BMP as "BGRX": RGB, the fourth byte ignored. stb_image
    // keeps it as alpha (or sets it opaque when all zero). Bitfield BMPs with an alpha mask are
    // RGBA in both.
    if (is_bmp && n == 4 && bmp_info_header && bmp_compression == 0) {
        Image rgb(h, w, 3);
        for (index_t i = 0; i < index_t(h) * w; ++i)
            for (int c = 0; c < 3; ++c)
                rgb.pixels[static_cast<std::size_t>(i * 3 + c)] = img.pixels[static_cast<std::size_t>(i * 4 + c)];
        return rgb;
    }
    return img;
}

inline std::vector<unsigned char> read_file_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) image_fail(path, "cannot open the file for reading");
    const std::streamoff size = in.tellg();
    if (size < 0) image_fail(path, "cannot determine the file size");
    if (size == 0) image_fail(path, "the file is empty");
    if (size > std::streamoff(0x7fffffff)) image_fail(path, "file larger than 2 GiB");
    std::vector<unsigned char> bytes(static_cast<std::size_t>(size));
    in.seekg(0);
    if (!in.read(reinterpret_cast<char*>(bytes.data()), size))
        image_fail(path, "read failed after " + std::to_string(in.gcount()) + " bytes");
    return bytes;
}

}  // namespace detail

/// Decodes a JPEG, PNG or BMP file (see the top of this header). Throws IoError naming `path`.
inline Image load_image(const std::string& path, const ImageLimits& limits = {}) {
    const std::vector<unsigned char> b = detail::read_file_bytes(path);
    auto starts = [&](std::initializer_list<unsigned char> magic) {
        if (b.size() < magic.size()) return false;
        return std::equal(magic.begin(), magic.end(), b.begin());
    };
    if (starts({0xFF, 0xD8, 0xFF})) return detail::decode_jpeg(path, b, limits);
    if (starts({0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'})) return detail::decode_stb(path, b, false, limits);
    if (starts({'B', 'M'})) return detail::decode_stb(path, b, true, limits);
    std::string known;
    if (starts({'G', 'I', 'F', '8'}))
        known = "GIF";
    else if (starts({'R', 'I', 'F', 'F'}) && b.size() >= 12 && std::memcmp(&b[8], "WEBP", 4) == 0)
        known = "WebP";
    else if (starts({'I', 'I', 42, 0}) || starts({'M', 'M', 0, 42}))
        known = "TIFF";
    if (!known.empty()) detail::image_fail(path, known + " files are not supported (JPEG, PNG and BMP are)");
    detail::image_fail(path, "unknown image format (not JPEG, PNG or BMP by its first bytes)");
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
