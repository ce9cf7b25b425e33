// mmalign/io/detail/png_decoder.hpp — PNG through libpng 1.6, to the 8-bit pixels Pillow gives,
// within ImageLimits. Used by io/image.hpp.
//
// Pixels (Pillow's PngImagePlugin modes, then the layout of io/image.hpp): grey 1/2/4-bit scaled
// to 8 bits (mode "1" → L as 0/255, "L;2"/"L;4"); 16-bit grey is "I;16", whose conversion to L
// clips at 255; 16-bit grey+alpha, RGB and RGBA keep the high byte of each sample; a palette is
// expanded to RGB, or RGBA when a tRNS chunk is present (entries past tRNS opaque, indices past
// the palette black, as in Pillow); an RGB tRNS colour key becomes an alpha channel, the key's
// samples compared by their low byte as Pillow's convert_transparent (rgbT2rgba) does; a grey
// tRNS key is ignored, as the L layout has no alpha. No gamma or colour management (Pillow
// applies none on open).
//
// Robustness:
//   * every chunk's CRC is checked (critical and ancillary) up to the end of the image data, as
//     Pillow does (it raises "broken PNG file (bad header checksum ...)"); here the IDAT CRCs
//     too, which Pillow does not check; chunks after the image data are not read (nor by Pillow);
//   * ancillary chunks are skipped unread (no zTXt/iTXt/iCCP inflation), png_set_user_limits
//     applies ImageLimits::max_side, png_set_chunk_malloc_max / chunk_cache_max bound chunk
//     buffers;
//   * the image is decoded a row at a time straight into the 8-bit output (a 16-bit image never
//     exists at 16 bits in memory), so the memory is the output plus two rows;
//   * decoding stops soon after the last row is complete: libpng would otherwise inflate whatever
//     is left of the zlib stream to check its end (a 1×1 image whose stream inflates to 1.5 GiB
//     takes seconds). It may read 64 KiB more, enough for a normal file's last IDAT CRC. Pillow
//     also stops there, and accepts a file cut after the image data (no IEND), as is done here.
// libpng reports errors through an error function that must not return; it longjmps back to the
// phase function that called libpng (see the comment in jpeg_decoder.hpp: no objects with
// destructors live in those functions, and their state lives in PngState).
#pragma once

#include <algorithm>
#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <png.h>

#include "mmalign/io/decoded_image.hpp"

namespace mmalign::io::detail {

struct PngState {
    png_structp png;
    png_infop info;
    std::jmp_buf jump;
    const unsigned char* data;
    std::size_t size, pos;
    png_uint_32 max_side;
    // IHDR and tRNS
    png_uint_32 width, height;
    int bit_depth, color_type, interlace;
    bool has_trns;
    png_uint_16 key[3];  // RGB tRNS colour
    // decoding
    enum Transform { none, gray16_to_8, rgb_key_to_alpha } transform;
    int passes;
    std::size_t rowbytes;
    int channels;
    std::uint64_t rows_total, rows_done;
    bool image_complete;       // every row has been decoded
    bool stopped_after_image;  // the read function refused to read past a complete image
    std::size_t read_after_image;
    char message[512];
};

/// Compressed bytes libpng may read once the image is complete: at most ~64 MiB inflated (zlib's
/// ratio is at most ~1032:1), a few milliseconds.
inline constexpr std::size_t png_read_after_image_budget = std::size_t(64) << 10;

inline void png_error_fn(png_structp png, png_const_charp msg) {
    auto* s = static_cast<PngState*>(png_get_error_ptr(png));
    std::snprintf(s->message, sizeof s->message, "%s", msg ? msg : "unknown error");
    std::longjmp(s->jump, 1);
}

inline void png_warning_fn(png_structp, png_const_charp) {}  // silent, as in Pillow

inline void png_read_fn(png_structp png, png_bytep out, std::size_t length) {
    auto* s = static_cast<PngState*>(png_get_io_ptr(png));
    if (s->image_complete) {
        // After the last row libpng reads on to the end of the zlib stream and the IDAT CRC. A
        // little is allowed, so that a normal file's last CRC is still checked; beyond that (or
        // at the end of a file cut after its image data) the image is complete and kept.
        s->read_after_image += length;
        if (s->read_after_image > png_read_after_image_budget || length > s->size - s->pos) {
            s->stopped_after_image = true;
            png_error(png, "stopped after the last row");
        }
    }
    if (length > s->size - s->pos) {
        char msg[160];
        std::snprintf(msg, sizeof msg, "truncated file (libpng asked for %zu bytes at byte %zu, the file ends at %zu)",
                      length, s->pos, s->size);
        png_error(png, msg);
    }
    std::memcpy(out, s->data + s->pos, length);
    s->pos += length;
}

// The last step of libpng's row transformations, on every decoded row of every pass: the
// conversions libpng has no transform for, and the row count that tells png_read_fn to stop.
inline void png_row_transform(png_structp png, png_row_infop ri, png_bytep row) {
    auto* s = static_cast<PngState*>(png_get_user_transform_ptr(png));
    const std::size_t n = ri->width;
    if (s->transform == PngState::gray16_to_8) {
        // Pillow: "I;16" → L clips at 255 (Convert.c I16_L). Big-endian samples; in place, forward.
        for (std::size_t i = 0; i < n; ++i) {
            const unsigned v = unsigned(row[2 * i]) << 8 | row[2 * i + 1];
            row[i] = static_cast<png_byte>(v > 255 ? 255 : v);
        }
    } else if (s->transform == PngState::rgb_key_to_alpha) {
        // 8-bit RGB (16-bit already reduced to its high bytes) → RGBA; in place, backward.
        const unsigned kr = s->key[0] & 0xffu, kg = s->key[1] & 0xffu, kb = s->key[2] & 0xffu;
        for (std::size_t i = n; i-- > 0;) {
            const png_byte r = row[3 * i], g = row[3 * i + 1], b = row[3 * i + 2];
            row[4 * i] = r, row[4 * i + 1] = g, row[4 * i + 2] = b;
            row[4 * i + 3] = (r == kr && g == kg && b == kb) ? 0 : 255;
        }
        ri->color_type = PNG_COLOR_TYPE_RGB_ALPHA;
    }
    if (++s->rows_done >= s->rows_total) s->image_complete = true;
}

// Phase 1: signature, chunks up to the first IDAT, IHDR values. false on a libpng error.
inline bool png_header_phase(PngState* s) {
    if (setjmp(s->jump)) return false;
    s->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, s, png_error_fn, png_warning_fn);
    if (!s->png) {
        std::snprintf(s->message, sizeof s->message, "cannot create the libpng decoder");
        return false;
    }
    s->info = png_create_info_struct(s->png);
    if (!s->info) {
        std::snprintf(s->message, sizeof s->message, "cannot create the libpng decoder");
        return false;
    }
    png_set_read_fn(s->png, s, png_read_fn);
    png_set_user_limits(s->png, s->max_side, s->max_side);
    // Only PLTE and tRNS are kept besides the image; 1 MiB is Pillow's MAX_TEXT_CHUNK.
    png_set_chunk_cache_max(s->png, 128);
    png_set_chunk_malloc_max(s->png, png_alloc_size_t(1) << 20);
    png_set_crc_action(s->png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    // Every chunk but IHDR, PLTE, tRNS, IDAT and IEND is skipped (its CRC still checked).
    png_set_keep_unknown_chunks(s->png, PNG_HANDLE_CHUNK_NEVER, nullptr, -1);
    png_read_info(s->png, s->info);
    png_uint_32 w = 0, h = 0;
    int depth = 0, type = 0, interlace = 0;
    png_get_IHDR(s->png, s->info, &w, &h, &depth, &type, &interlace, nullptr, nullptr);
    s->width = w, s->height = h, s->bit_depth = depth, s->color_type = type, s->interlace = interlace;
    s->has_trns = png_get_valid(s->png, s->info, PNG_INFO_tRNS) != 0;
    if (s->has_trns && type == PNG_COLOR_TYPE_RGB) {
        png_color_16p c = nullptr;
        png_get_tRNS(s->png, s->info, nullptr, nullptr, &c);
        if (c) s->key[0] = c->red, s->key[1] = c->green, s->key[2] = c->blue;
    }
    return true;
}

// Phase 2: the transformations to Pillow's pixels (see the top of this file).
inline bool png_setup_phase(PngState* s) {
    if (setjmp(s->jump)) return false;
    int user_depth = 0, user_channels = 0;
    switch (s->color_type) {
        case PNG_COLOR_TYPE_PALETTE:
            png_set_palette_to_rgb(s->png);
            if (s->has_trns) png_set_tRNS_to_alpha(s->png);
            break;
        case PNG_COLOR_TYPE_GRAY:
            if (s->bit_depth < 8) png_set_expand_gray_1_2_4_to_8(s->png);
            if (s->bit_depth == 16) s->transform = PngState::gray16_to_8, user_depth = 8, user_channels = 1;
            break;
        case PNG_COLOR_TYPE_RGB:
            if (s->bit_depth == 16) png_set_strip_16(s->png);
            if (s->has_trns) s->transform = PngState::rgb_key_to_alpha, user_depth = 8, user_channels = 4;
            break;
        default:  // grey+alpha, RGBA
            if (s->bit_depth == 16) png_set_strip_16(s->png);
            break;
    }
    png_set_read_user_transform_fn(s->png, png_row_transform);
    png_set_user_transform_info(s->png, s, user_depth, user_channels);
    s->passes = png_set_interlace_handling(s->png);
    png_read_update_info(s->png, s->info);
    s->rowbytes = png_get_rowbytes(s->png, s->info);
    s->channels = png_get_channels(s->png, s->info);
    return true;
}

// Phase 3: the rows, into `out` (reserved for the whole image). A non-interlaced image grows it
// a row at a time, so that a file that ends early never touches the memory of its declared
// size; an interlaced one revisits every row in each pass and needs it whole from the start.
inline bool png_rows_phase(PngState* s, std::vector<std::uint8_t>* out) {
    if (setjmp(s->jump)) return s->stopped_after_image;
    if (s->passes > 1) out->resize(s->rowbytes * s->height);
    for (int pass = 0; pass < s->passes; ++pass)
        for (png_uint_32 y = 0; y < s->height; ++y) {
            if (s->passes == 1) out->resize(s->rowbytes * (std::size_t(y) + 1));
            png_read_row(s->png, out->data() + s->rowbytes * y, nullptr);
        }
    return true;
}

struct PngGuard {
    PngState* s;
    ~PngGuard() {
        if (s->png) png_destroy_read_struct(&s->png, s->info ? &s->info : nullptr, nullptr);
    }
};

/// Bytes of filtered image data (a filter byte and the packed samples, per row of each Adam7
/// pass) that IHDR declares.
inline std::uint64_t png_filtered_bytes(const PngState& s) {
    const int samples = s.color_type == PNG_COLOR_TYPE_RGB          ? 3
                        : s.color_type == PNG_COLOR_TYPE_RGB_ALPHA  ? 4
                        : s.color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                                                                    : 1;
    const std::uint64_t bits = std::uint64_t(samples) * std::uint64_t(s.bit_depth);
    auto rows = [&](std::uint64_t w, std::uint64_t h) { return w == 0 || h == 0 ? 0 : h * (1 + (w * bits + 7) / 8); };
    if (s.interlace == PNG_INTERLACE_NONE) return rows(s.width, s.height);
    std::uint64_t total = 0;
    for (int pass = 0; pass < 7; ++pass) total += rows(PNG_PASS_COLS(s.width, pass), PNG_PASS_ROWS(s.height, pass));
    return total;
}

inline std::uint32_t be32(const unsigned char* p) {
    return std::uint32_t(p[0]) << 24 | std::uint32_t(p[1]) << 16 | std::uint32_t(p[2]) << 8 | std::uint32_t(p[3]);
}

inline Image decode_png(const std::string& name, const unsigned char* data, std::size_t size,
                        const ImageLimits& lim) {
    PngState state;
    std::memset(&state, 0, sizeof state);
    state.data = data;
    state.size = size;
    state.max_side = static_cast<png_uint_32>(std::clamp<index_t>(lim.max_side, 1, 0x7fffffff));
    PngGuard guard{&state};

    if (!png_header_phase(&state)) {
        // libpng refuses an IHDR beyond png_set_user_limits as "Invalid IHDR data" (the reason
        // goes to a warning): say it in the words of every other size refusal.
        if (size >= 24 && std::memcmp(data + 12, "IHDR", 4) == 0)
            check_image_size(name, be32(data + 16), be32(data + 20), lim);
        image_fail(name, std::string("PNG error: ") + state.message);
    }
    const index_t w = state.width, h = state.height;
    check_image_size(name, w, h, lim);
    if (!png_setup_phase(&state)) image_fail(name, std::string("PNG error: ") + state.message);
    if (state.channels < 1 || state.channels > 4 || state.rowbytes != static_cast<std::size_t>(w * state.channels))
        image_fail(name, "PNG error: the decoder returned an unexpected layout");
    const std::uint64_t bytes = static_cast<std::uint64_t>(state.rowbytes) * static_cast<std::uint64_t>(h);
    check_decoded_bytes(name, bytes, lim, "the decoded image");
    // Deflate expands at most 1032:1 (a 258-byte match in 2 bits), so a file whose remaining
    // bytes cannot inflate to the filtered rows the header declares ends before the image does:
    // refuse it before allocating (an interlaced image's buffer is needed whole from the start).
    const std::uint64_t needed = png_filtered_bytes(state);
    const std::uint64_t left = size - state.pos;
    if (needed > left * 1032 + 1024)
        image_fail(name, "PNG error: truncated file (" + std::to_string(left) + " bytes left cannot hold the " +
                             std::to_string(needed) + " bytes of image data the header declares)");
    if (state.passes > 1) {
        for (int pass = 0; pass < 7; ++pass)
            if (PNG_PASS_COLS(state.width, pass) > 0) state.rows_total += PNG_PASS_ROWS(state.height, pass);
    } else {
        state.rows_total = state.height;
    }

    Image img;
    img.height = h;
    img.width = w;
    img.channels = state.channels;
    img.pixels.reserve(static_cast<std::size_t>(bytes));
    if (!png_rows_phase(&state, &img.pixels)) image_fail(name, std::string("PNG error: ") + state.message);
    if (img.pixels.size() != bytes) image_fail(name, "PNG error: the image data ended early");
    return img;
}

}  // namespace mmalign::io::detail
