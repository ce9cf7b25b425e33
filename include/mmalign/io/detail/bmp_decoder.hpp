// mmalign/io/detail/bmp_decoder.hpp — uncompressed Windows/OS2 BMP decoded as Pillow 13's
// BmpImagePlugin decodes it, within ImageLimits. Used by io/image.hpp.
//
// A BMP is a header and raw rows, so the decoder is written out here rather than borrowed: the
// rules that decide the pixels are Pillow's, and a general decoder (stb_image) follows its own
// (it padded a truncated file with zeros where Pillow raises "image file is truncated").
//
// Accepted as Pillow accepts them: header sizes 12 (OS/2 1.x), 40, 52, 56, 64, 108, 124; rows
// bottom-up or top-down (a negative height, read as Pillow reads it: the height's top byte 0xFF);
//   1/4/8-bit palettes     → RGB; a palette that is exactly the grey ramp 0, 1, 2, … is dropped
//                            (Pillow's mode L: the index is the grey) and a black/white
//                            2-colour one gives mode "1" (0/255); indices past the palette are black
//   16-bit                 → RGB 5-5-5 (BI_RGB, or BI_BITFIELDS 7C00/3E0/1F) or 5-6-5
//                            (BI_BITFIELDS F800/7E0/1F), each field scaled as v·255/max
//   24-bit                 → RGB
//   32-bit BI_RGB          → RGB, the fourth byte ignored (Pillow's "BGRX")
//   32-bit BI_BITFIELDS    → Pillow's eight mask layouts: RGB, or RGBA when the masks include alpha
// Refused, naming why: run-length (RLE4/RLE8, which Pillow reads), embedded JPEG/PNG and other
// compressions; other depths and bitfield layouts (Pillow raises too); a file shorter than its
// last row's pixels (Pillow: "image file is truncated"; like Pillow, the last row's padding may
// be missing).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "mmalign/io/decoded_image.hpp"

namespace mmalign::io::detail {

inline Image decode_bmp(const std::string& name, const unsigned char* p, std::size_t n, const ImageLimits& lim) {
    auto need = [&](std::uint64_t end, const char* what) {
        if (end > n)
            image_fail(name, std::string("BMP error: truncated file (") + what + " needs " + std::to_string(end) +
                                 " bytes, the file has " + std::to_string(n) + ")");
    };
    need(18, "the file header");
    const std::uint32_t bf_offset = le32(p + 10);
    const std::uint32_t header = le32(p + 14);
    if (header != 12 && header != 40 && header != 52 && header != 56 && header != 64 && header != 108 &&
        header != 124)
        image_fail(name, "BMP error: unsupported header size " + std::to_string(header));
    need(14 + std::uint64_t(header), "the info header");
    const unsigned char* hd = p + 18;  // the info header after its size field
    std::uint64_t width = 0, height = 0;
    std::uint32_t bits = 0, compression = 0, colors = 0, entry = 4;
    bool top_down = false;
    std::uint64_t pos = 14 + std::uint64_t(header);
    std::array<std::uint32_t, 4> mask{};  // r, g, b, a
    if (header == 12) {
        width = le16(hd), height = le16(hd + 2), bits = le16(hd + 6);
        entry = 3;
    } else {
        top_down = hd[7] == 0xFF;  // Pillow's test for a negative height
        width = le32(hd);
        height = top_down ? (std::uint64_t(1) << 32) - le32(hd + 4) : le32(hd + 4);
        bits = le16(hd + 10), compression = le32(hd + 12), colors = le32(hd + 28);
        if (compression == 3) {
            if (header >= 52) {
                for (int i = 0; i < (header >= 56 ? 4 : 3); ++i) mask[std::size_t(i)] = le32(hd + 36 + 4 * i);
            } else {  // BITMAPINFOHEADER: three masks follow the header
                need(pos + 12, "the bitfield masks");
                for (int i = 0; i < 3; ++i) mask[std::size_t(i)] = le32(p + pos + 4 * std::uint64_t(i));
                pos += 12;
            }
        }
    }
    const index_t w = static_cast<index_t>(width), h = static_cast<index_t>(height);
    check_image_size(name, w, h, lim);
    if (bits != 1 && bits != 4 && bits != 8 && bits != 16 && bits != 24 && bits != 32)
        image_fail(name, "BMP error: unsupported pixel depth (" + std::to_string(bits) + " bits)");

    // How each pixel is unpacked: Pillow's raw mode.
    enum class Raw { pal, one, grey, bgr15, bgr16, bgr, bgrx, xbgr, bgxr, abgr, rgba, bgra, bgar };
    Raw raw = bits <= 8 ? Raw::pal : bits == 16 ? Raw::bgr15 : bits == 24 ? Raw::bgr : Raw::bgrx;
    if (compression == 3) {
        using M = std::array<std::uint32_t, 4>;
        struct Layout {
            std::uint32_t bits;
            M mask;
            Raw raw;
        };
        static constexpr Layout layouts[] = {
            {32, {0xFF0000, 0xFF00, 0xFF, 0}, Raw::bgrx},
            {32, {0xFF000000, 0xFF0000, 0xFF00, 0}, Raw::xbgr},
            {32, {0xFF000000, 0xFF00, 0xFF, 0}, Raw::bgxr},
            {32, {0xFF000000, 0xFF0000, 0xFF00, 0xFF}, Raw::abgr},
            {32, {0xFF, 0xFF00, 0xFF0000, 0xFF000000}, Raw::rgba},
            {32, {0xFF0000, 0xFF00, 0xFF, 0xFF000000}, Raw::bgra},
            {32, {0xFF000000, 0xFF00, 0xFF, 0xFF0000}, Raw::bgar},
            {32, {0, 0, 0, 0}, Raw::bgra},
            {24, {0xFF0000, 0xFF00, 0xFF, 0}, Raw::bgr},
            {16, {0xF800, 0x7E0, 0x1F, 0}, Raw::bgr16},
            {16, {0x7C00, 0x3E0, 0x1F, 0}, Raw::bgr15},
        };
        bool found = false;
        for (const Layout& l : layouts) {
            // 24- and 16-bit layouts are matched on the colour masks alone.
            const bool same = l.bits == bits && l.mask[0] == mask[0] && l.mask[1] == mask[1] &&
                              l.mask[2] == mask[2] && (bits != 32 || l.mask[3] == mask[3]);
            if (same) {
                raw = l.raw;
                found = true;
                break;
            }
        }
        if (!found) image_fail(name, "BMP error: unsupported bitfields layout");
    } else if (compression == 1 || compression == 2) {
        image_fail(name, "BMP error: run-length encoded (RLE" + std::string(compression == 1 ? "8" : "4") +
                             ") BMP files are not supported");
    } else if (compression != 0) {
        image_fail(name, "BMP error: unsupported compression (" + std::to_string(compression) + ")");
    }

    // The palette follows the header (and masks); Pillow reads `colors` entries, 2^bits when 0.
    std::array<std::array<std::uint8_t, 3>, 256> palette{};  // RGB; entries past `colors` black
    std::uint64_t offset = bf_offset;
    if (raw == Raw::pal) {
        const std::uint64_t count = colors ? colors : std::uint64_t(1) << bits;
        if (count > 65536) image_fail(name, "BMP error: unsupported palette size (" + std::to_string(count) + ")");
        need(pos + count * entry, "the palette");
        if (offset == 14 + std::uint64_t(header)) offset += count * entry;  // Pillow: offset at the palette
        bool grey = true;
        for (std::uint64_t i = 0; i < count; ++i) {
            const unsigned char* e = p + pos + i * entry;  // B, G, R[, X]
            const unsigned v = count == 2 ? (i == 0 ? 0u : 255u) : static_cast<unsigned>(i & 255);
            if (e[0] != v || e[1] != v || e[2] != v) grey = false;
            if (i < 256) palette[i] = {e[2], e[1], e[0]};
        }
        if (grey) raw = count <= 2 ? Raw::one : Raw::grey;
        pos += count * entry;
    }
    if (offset == 0) offset = pos;

    const std::uint64_t stride = ((std::uint64_t(w) * bits + 31) >> 3) & ~std::uint64_t(3);
    const std::uint32_t raw_bits = raw == Raw::one ? 1 : raw == Raw::grey ? 8 : bits;
    const std::uint64_t row_bytes = (std::uint64_t(w) * raw_bits + 7) / 8;
    if (row_bytes > stride)  // Pillow's raw decoder refuses a row longer than the stride
        image_fail(name, "BMP error: a grey palette on " + std::to_string(bits) + "-bit pixels is not supported");
    need(offset + stride * std::uint64_t(h - 1) + row_bytes, "the pixel data");

    const bool alpha = raw == Raw::abgr || raw == Raw::rgba || raw == Raw::bgra || raw == Raw::bgar;
    const index_t channels = (raw == Raw::one || raw == Raw::grey) ? 1 : alpha ? 4 : 3;
    check_decoded_bytes(name, std::uint64_t(w) * std::uint64_t(h) * std::uint64_t(channels), lim,
                        "the decoded image");
    Image img(h, w, channels);
    for (index_t y = 0; y < h; ++y) {
        const index_t file_row = top_down ? y : h - 1 - y;
        const unsigned char* s = p + offset + stride * std::uint64_t(file_row);
        std::uint8_t* d = img.row(y);
        for (index_t x = 0; x < w; ++x) {
            switch (raw) {
                case Raw::pal: {
                    const unsigned i = bits == 8   ? s[x]
                                       : bits == 4 ? (s[x >> 1] >> (x & 1 ? 0 : 4)) & 15u
                                                   : (s[x >> 3] >> (7 - (x & 7))) & 1u;
                    d[3 * x] = palette[i][0], d[3 * x + 1] = palette[i][1], d[3 * x + 2] = palette[i][2];
                    break;
                }
                case Raw::one:
                    d[x] = (s[x >> 3] >> (7 - (x & 7))) & 1u ? 255 : 0;
                    break;
                case Raw::grey:
                    d[x] = s[x];
                    break;
                case Raw::bgr15:
                case Raw::bgr16: {  // Pillow's ImagingUnpackBGR15 / BGR16
                    const unsigned v = le16(s + 2 * x);
                    const bool six = raw == Raw::bgr16;
                    d[3 * x] = static_cast<std::uint8_t>(((v >> (six ? 11 : 10)) & 31u) * 255 / 31);
                    d[3 * x + 1] = static_cast<std::uint8_t>(six ? ((v >> 5) & 63u) * 255 / 63 : ((v >> 5) & 31u) * 255 / 31);
                    d[3 * x + 2] = static_cast<std::uint8_t>((v & 31u) * 255 / 31);
                    break;
                }
                case Raw::bgr:
                    d[3 * x] = s[3 * x + 2], d[3 * x + 1] = s[3 * x + 1], d[3 * x + 2] = s[3 * x];
                    break;
                default: {
                    // Byte positions of R, G, B, A in each 4-byte pixel, by raw mode name.
                    static constexpr int order[][4] = {
                        {2, 1, 0, -1},  // BGRX
                        {3, 2, 1, -1},  // XBGR
                        {3, 1, 0, -1},  // BGXR
                        {3, 2, 1, 0},   // ABGR
                        {0, 1, 2, 3},   // RGBA
                        {2, 1, 0, 3},   // BGRA
                        {3, 1, 0, 2},   // BGAR
                    };
                    const int* o = order[static_cast<int>(raw) - static_cast<int>(Raw::bgrx)];
                    const unsigned char* q = s + 4 * x;
                    std::uint8_t* t = d + channels * x;
                    t[0] = q[o[0]], t[1] = q[o[1]], t[2] = q[o[2]];
                    if (alpha) t[3] = q[o[3]];
                }
            }
        }
    }
    return img;
}

}  // namespace mmalign::io::detail
