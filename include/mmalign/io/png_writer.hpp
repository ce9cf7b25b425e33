// mmalign/io/png_writer.hpp — 8-bit PNG files (PNG 1.2 / ISO 15948) written by the library itself.
//
//   encode_png(pixels, width, height, channels)  the bytes of a PNG: grey (1), grey+alpha (2),
//                                                 RGB (3) or RGBA (4), HWC rows, 8 bits each
//   write_png(path, pixels, width, height, channels)   the same, into "<path>.tmp.<pid>.<n>", renamed
//                                                 over `path` so a reader never sees half a file
//
// Why a writer of its own: training plots need no image library (the reader side, io/image.hpp,
// needs libjpeg-turbo and libpng through mmalign::image; training plots must not), and the bytes are a
// function of the pixels alone, so a picture committed under docs/ changes only when it changes.
// Each row takes the PNG filter (None, Sub, Up, Average, Paeth) with the smallest sum of absolute
// filtered bytes, libpng's heuristic; the zlib stream (RFC 1950) is one DEFLATE block (RFC 1951)
// with the fixed Huffman code and greedy LZ77 matching over a 32 KiB window. Plots are mostly
// flat colour, which this compresses about 50:1; it is not meant for photographs.
// Chunk CRCs are zlib's CRC-32, shared with io/gzip.hpp.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <unistd.h>

#include "mmalign/core/error.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/io/atomic_file.hpp"
#include "mmalign/io/gzip.hpp"

namespace mmalign::io {

namespace detail::png {

/// Adler-32 (RFC 1950 §9), the zlib stream's trailer.
inline std::uint32_t adler32(const std::uint8_t* p, std::size_t n) {
    std::uint32_t a = 1, b = 0;
    while (n > 0) {
        const std::size_t chunk = std::min<std::size_t>(n, 5552);  // the longest run without overflow
        for (std::size_t i = 0; i < chunk; ++i) a += p[i], b += a;
        a %= 65521u, b %= 65521u;
        p += chunk, n -= chunk;
    }
    return b << 16 | a;
}

/// Bits into bytes, least significant bit first (RFC 1951 §3.1.1).
class BitWriter {
public:
    explicit BitWriter(std::string& out) : out_(out) {}
    void bits(std::uint32_t value, int count) {
        buf_ |= std::uint64_t(value) << fill_;
        fill_ += count;
        while (fill_ >= 8) out_.push_back(char(buf_ & 0xFF)), buf_ >>= 8, fill_ -= 8;
    }
    /// A Huffman code is sent most significant bit first, so it goes in bit-reversed.
    void code(std::uint32_t code, int length) {
        std::uint32_t r = 0;
        for (int i = 0; i < length; ++i) r = r << 1 | ((code >> i) & 1u);
        bits(r, length);
    }
    void flush() {
        if (fill_ > 0) out_.push_back(char(buf_ & 0xFF));
        buf_ = 0, fill_ = 0;
    }

private:
    std::string& out_;
    std::uint64_t buf_ = 0;
    int fill_ = 0;
};

inline constexpr std::array<std::uint16_t, 29> len_base = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                                           31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
inline constexpr std::array<std::uint8_t, 29> len_extra = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                                           2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
inline constexpr std::array<std::uint16_t, 30> dist_base = {1,    2,    3,    4,    5,    7,     9,     13,    17,  25,
                                                            33,   49,   65,   97,   129,  193,   257,   385,   513, 769,
                                                            1025, 1537, 2049, 3073, 4097, 6145,  8193,  12289, 16385, 24577};
inline constexpr std::array<std::uint8_t, 30> dist_extra = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                                            6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

/// A literal/length symbol in the fixed Huffman code (RFC 1951 §3.2.6).
inline void fixed_symbol(BitWriter& w, int sym) {
    if (sym < 144) w.code(0x30u + std::uint32_t(sym), 8);
    else if (sym < 256) w.code(0x190u + std::uint32_t(sym - 144), 9);
    else if (sym < 280) w.code(std::uint32_t(sym - 256), 7);
    else w.code(0xC0u + std::uint32_t(sym - 280), 8);
}

inline void fixed_match(BitWriter& w, std::size_t length, std::size_t distance) {
    int l = 28;
    while (len_base[std::size_t(l)] > length) --l;
    fixed_symbol(w, 257 + l);
    w.bits(std::uint32_t(length - len_base[std::size_t(l)]), len_extra[std::size_t(l)]);
    int d = 29;
    while (dist_base[std::size_t(d)] > distance) --d;
    w.code(std::uint32_t(d), 5);
    w.bits(std::uint32_t(distance - dist_base[std::size_t(d)]), dist_extra[std::size_t(d)]);
}

/// `data` as a zlib stream: one final fixed-Huffman block, greedy LZ77 with hash chains.
inline std::string zlib_compress(const std::uint8_t* data, std::size_t n) {
    constexpr std::size_t window = 32768, min_match = 3, max_match = 258;
    constexpr int hash_bits = 15, max_chain = 64;
    std::string out = {char(0x78), char(0x01)};  // deflate, 32 KiB window; (0x7801 % 31 == 0)
    BitWriter w(out);
    w.bits(1, 1);  // BFINAL
    w.bits(1, 2);  // BTYPE 01: fixed Huffman codes
    std::vector<std::int64_t> head(std::size_t(1) << hash_bits, -1), prev(n, -1);
    auto hash = [&](std::size_t i) {
        const std::uint32_t v = std::uint32_t(data[i]) | std::uint32_t(data[i + 1]) << 8 | std::uint32_t(data[i + 2]) << 16;
        return (v * 2654435761u) >> (32 - hash_bits);
    };
    auto insert = [&](std::size_t i) {
        if (i + min_match > n) return;
        const auto h = hash(i);
        prev[i] = head[h];
        head[h] = std::int64_t(i);
    };
    for (std::size_t i = 0; i < n;) {
        std::size_t best = 0, best_dist = 0;
        if (i + min_match <= n) {
            const std::size_t limit = std::min(max_match, n - i);
            int chain = max_chain;
            for (std::int64_t c = head[hash(i)]; c >= 0 && i - std::size_t(c) <= window && chain-- > 0; c = prev[std::size_t(c)]) {
                const std::uint8_t* a = data + c;
                const std::uint8_t* b = data + i;
                std::size_t len = 0;
                while (len < limit && a[len] == b[len]) ++len;
                if (len > best) best = len, best_dist = i - std::size_t(c);
                if (best == limit) break;
            }
        }
        if (best >= min_match) {
            fixed_match(w, best, best_dist);
            for (std::size_t k = 0; k < best; ++k) insert(i + k);
            i += best;
        } else {
            fixed_symbol(w, data[i]);
            insert(i);
            ++i;
        }
    }
    fixed_symbol(w, 256);  // end of block
    w.flush();
    const std::uint32_t adler = adler32(data, n);
    for (int s = 24; s >= 0; s -= 8) out.push_back(char((adler >> s) & 0xFF));
    return out;
}

inline void put_u32_be(std::string& out, std::uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(char((v >> s) & 0xFF));
}

inline void chunk(std::string& out, const char type[4], std::string_view body) {
    put_u32_be(out, std::uint32_t(body.size()));
    const std::size_t start = out.size();
    out.append(type, 4);
    out.append(body);
    put_u32_be(out, gzip::crc32(out.data() + start, out.size() - start));
}

inline int paeth(int a, int b, int c) {
    const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

}  // namespace detail::png

/// The bytes of a PNG holding `pixels` (height × width × channels, row-major, 8 bits per sample;
/// channels 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA). Throws ArgumentError for other channel counts
/// or a size PNG cannot hold (each side 1 .. 2^31 − 1).
inline std::string encode_png(const std::uint8_t* pixels, index_t width, index_t height, index_t channels) {
    if (channels < 1 || channels > 4)
        throw ArgumentError("encode_png: " + std::to_string(channels) + " channels; PNG holds 1 (grey), 2 (grey+alpha), "
                            "3 (RGB) or 4 (RGBA)");
    if (width < 1 || height < 1 || width > 0x7FFFFFFF || height > 0x7FFFFFFF)
        throw ArgumentError("encode_png: image of " + std::to_string(width) + "x" + std::to_string(height) +
                            " pixels; PNG needs each side in 1 .. 2^31-1");
    const std::size_t bpp = std::size_t(channels), stride = std::size_t(width) * bpp, rows = std::size_t(height);
    // Filtered rows: one filter-type byte, then the row (PNG §9.2).
    std::vector<std::uint8_t> filtered((stride + 1) * rows);
    std::array<std::vector<std::uint8_t>, 5> trial;
    for (auto& t : trial) t.resize(stride);
    const std::vector<std::uint8_t> zero_row(stride, 0);
    for (std::size_t y = 0; y < rows; ++y) {
        const std::uint8_t* cur = pixels + y * stride;
        const std::uint8_t* up = y ? pixels + (y - 1) * stride : zero_row.data();
        for (std::size_t x = 0; x < stride; ++x) {
            const int a = x >= bpp ? cur[x - bpp] : 0, b = up[x], c = x >= bpp ? up[x - bpp] : 0;
            trial[0][x] = cur[x];
            trial[1][x] = std::uint8_t(cur[x] - a);
            trial[2][x] = std::uint8_t(cur[x] - b);
            trial[3][x] = std::uint8_t(cur[x] - (a + b) / 2);
            trial[4][x] = std::uint8_t(cur[x] - detail::png::paeth(a, b, c));
        }
        std::size_t best = 0, best_cost = SIZE_MAX;
        for (std::size_t f = 0; f < 5; ++f) {
            std::size_t cost = 0;
            for (std::uint8_t v : trial[f]) cost += std::size_t(v < 128 ? v : 256 - v);
            if (cost < best_cost) best_cost = cost, best = f;
        }
        filtered[y * (stride + 1)] = std::uint8_t(best);
        std::copy(trial[best].begin(), trial[best].end(), filtered.begin() + std::ptrdiff_t(y * (stride + 1) + 1));
    }

    static constexpr std::uint8_t color_type[5] = {0, 0, 4, 2, 6};
    std::string out = "\x89PNG\r\n\x1a\n";
    std::string ihdr;
    detail::png::put_u32_be(ihdr, std::uint32_t(width));
    detail::png::put_u32_be(ihdr, std::uint32_t(height));
    ihdr += {char(8), char(color_type[channels]), char(0), char(0), char(0)};  // depth, type, deflate, filter 0, no interlace
    detail::png::chunk(out, "IHDR", ihdr);
    detail::png::chunk(out, "IDAT", detail::png::zlib_compress(filtered.data(), filtered.size()));
    detail::png::chunk(out, "IEND", {});
    return out;
}

/// Writes encode_png(...) to `path` atomically (io/atomic_file.hpp: a temporary file, then a rename).
/// Throws IoError naming the file when it cannot be written.
inline void write_png(const std::string& path, const std::uint8_t* pixels, index_t width, index_t height,
                      index_t channels) {
    const std::string bytes = encode_png(pixels, width, height, channels);
    write_file_atomic(path, {bytes}, "write_png");
}

}  // namespace mmalign::io
