// mmalign/io/gzip.hpp — a small, validating gzip (RFC 1952) / DEFLATE (RFC 1951) decoder.
//
// Exists so that OpenAI's `bpe_simple_vocab_16e6.txt.gz` (as shipped by openai/CLIP and
// open_clip) loads without a zlib link dependency; it is written for correctness and bounds
// safety, not speed (about 3 MB of text in tens of milliseconds). Every member of a
// multi-member file is decoded, as Python's gzip module does. Each member's CRC-32 and length
// are checked. A malformed or truncated stream, an output beyond `max_output` bytes, or a
// distance reaching before the start of the output throws IoError naming the file (`name`)
// and the compressed byte offset; nothing is ever read or written out of bounds.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>
#include <string_view>

#include "mmalign/core/error.hpp"

namespace mmalign::io {

namespace detail::gzip {

inline constexpr std::array<std::uint32_t, 256> crc_table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t n = 0; n < 256; ++n) {
        std::uint32_t c = n;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        t[n] = c;
    }
    return t;
}();

inline std::uint32_t crc32(const char* p, std::size_t n, std::uint32_t crc = 0) {
    crc = ~crc;
    for (std::size_t i = 0; i < n; ++i) crc = crc_table[(crc ^ static_cast<unsigned char>(p[i])) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

// A canonical Huffman code given by its code lengths, decoded one bit at a time: count[len] codes
// of each length, symbols listed in code order.
struct Huffman {
    std::array<std::uint16_t, 16> count{};
    std::array<std::uint16_t, 320> symbol{};
};

class Inflater {
public:
    Inflater(std::string_view in, const std::string& name, std::size_t max_output)
        : in_(in), name_(name), max_output_(max_output) {}

    [[noreturn]] void fail(const std::string& what) const {
        throw IoError(name_ + ": corrupt gzip data at byte " + std::to_string(pos_) + ": " + what);
    }

    std::size_t pos() const { return pos_; }
    void set_pos(std::size_t p) { pos_ = p, bit_buf_ = 0, bit_count_ = 0; }

    std::uint32_t bits(int n) {
        std::uint32_t v = bit_buf_;
        while (bit_count_ < n) {
            if (pos_ >= in_.size()) fail("unexpected end of data");
            v |= static_cast<std::uint32_t>(static_cast<unsigned char>(in_[pos_++])) << bit_count_;
            bit_count_ += 8;
        }
        bit_buf_ = v >> n;  // n <= 13, so the shifts stay inside 32 bits
        bit_count_ -= n;
        return v & ((1u << n) - 1);
    }

    // Builds a code from `n` lengths. Over-subscribed sets are corrupt; incomplete ones are
    // allowed (RFC 1951 permits a one-code distance tree) and fail only if an unused code is read.
    void build(Huffman& h, const std::uint8_t* lengths, int n) {
        h.count.fill(0);
        for (int s = 0; s < n; ++s) ++h.count[lengths[s]];
        int left = 1;
        for (int len = 1; len < 16; ++len) {
            left = left * 2 - h.count[static_cast<std::size_t>(len)];
            if (left < 0) fail("over-subscribed Huffman code");
        }
        std::array<std::uint16_t, 16> offs{};
        for (int len = 1; len < 15; ++len)
            offs[static_cast<std::size_t>(len + 1)] = static_cast<std::uint16_t>(offs[static_cast<std::size_t>(len)] + h.count[static_cast<std::size_t>(len)]);
        for (int s = 0; s < n; ++s)
            if (lengths[s]) h.symbol[offs[lengths[s]]++] = static_cast<std::uint16_t>(s);
    }

    int decode(const Huffman& h) {
        int code = 0, first = 0, index = 0;
        for (int len = 1; len < 16; ++len) {
            code |= static_cast<int>(bits(1));
            int count = h.count[static_cast<std::size_t>(len)];
            if (code - first < count) return h.symbol[static_cast<std::size_t>(index + code - first)];
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        fail("invalid Huffman code");
    }

    void put(std::string& out, char c) {
        if (out.size() >= max_output_) fail("output exceeds " + std::to_string(max_output_) + " bytes");
        out.push_back(c);
    }

    void codes(std::string& out, std::size_t member_start, const Huffman& lit, const Huffman& dist) {
        static constexpr std::uint16_t len_base[] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                                     31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
        static constexpr std::uint8_t len_extra[] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                                     2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
        static constexpr std::uint16_t dist_base[] = {1,   2,   3,   4,   5,   7,    9,    13,   17,   25,
                                                      33,  49,  65,  97,  129, 193,  257,  385,  513,  769,
                                                      1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
        static constexpr std::uint8_t dist_extra[] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                                      6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
        for (;;) {
            int sym = decode(lit);
            if (sym < 256) {
                put(out, static_cast<char>(sym));
            } else if (sym == 256) {
                return;
            } else {
                sym -= 257;
                if (sym >= 29) fail("invalid length symbol");
                std::size_t len = len_base[sym] + bits(len_extra[sym]);
                int ds = decode(dist);
                if (ds >= 30) fail("invalid distance symbol");
                std::size_t d = dist_base[ds] + bits(dist_extra[ds]);
                if (d > out.size() - member_start) fail("distance reaches before the start of the output");
                for (std::size_t i = 0; i < len; ++i) put(out, out[out.size() - d]);
            }
        }
    }

    void stored(std::string& out) {
        bit_buf_ = 0, bit_count_ = 0;  // a stored block starts on a byte boundary
        if (in_.size() - pos_ < 4) fail("unexpected end of data");
        auto byte = [&](std::size_t i) { return static_cast<unsigned>(static_cast<unsigned char>(in_[pos_ + i])); };
        unsigned len = byte(0) | byte(1) << 8, nlen = byte(2) | byte(3) << 8;
        if (len != (~nlen & 0xFFFFu)) fail("stored block length check failed");
        pos_ += 4;
        if (in_.size() - pos_ < len) fail("unexpected end of data");
        if (out.size() + len > max_output_) fail("output exceeds " + std::to_string(max_output_) + " bytes");
        out.append(in_.substr(pos_, len));
        pos_ += len;
    }

    void dynamic(std::string& out, std::size_t member_start) {
        int nlen = static_cast<int>(bits(5)) + 257, ndist = static_cast<int>(bits(5)) + 1;
        int ncode = static_cast<int>(bits(4)) + 4;
        if (nlen > 286 || ndist > 30) fail("too many length or distance codes");
        static constexpr std::uint8_t order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
        std::uint8_t lengths[320] = {};
        for (int i = 0; i < ncode; ++i) lengths[order[i]] = static_cast<std::uint8_t>(bits(3));
        Huffman lencode;
        build(lencode, lengths, 19);
        for (int i = 0; i < nlen + ndist;) {
            int sym = decode(lencode);
            if (sym < 16) {
                lengths[i++] = static_cast<std::uint8_t>(sym);
                continue;
            }
            std::uint8_t value = 0;
            int repeat;
            if (sym == 16) {
                if (i == 0) fail("repeat with no previous length");
                value = lengths[i - 1];
                repeat = 3 + static_cast<int>(bits(2));
            } else if (sym == 17) {
                repeat = 3 + static_cast<int>(bits(3));
            } else {
                repeat = 11 + static_cast<int>(bits(7));
            }
            if (i + repeat > nlen + ndist) fail("code lengths overrun");
            while (repeat--) lengths[i++] = value;
        }
        if (lengths[256] == 0) fail("no end-of-block code");
        Huffman lit, dist;
        build(lit, lengths, nlen);
        build(dist, lengths + nlen, ndist);
        codes(out, member_start, lit, dist);
    }

    void fixed(std::string& out, std::size_t member_start) {
        std::uint8_t lengths[320];
        for (int s = 0; s < 288; ++s) lengths[s] = s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8;
        for (int s = 288; s < 318; ++s) lengths[s] = 5;
        Huffman lit, dist;
        build(lit, lengths, 288);
        build(dist, lengths + 288, 30);
        codes(out, member_start, lit, dist);
    }

    void inflate(std::string& out) {
        std::size_t member_start = out.size();
        for (bool last = false; !last;) {
            last = bits(1) != 0;
            switch (bits(2)) {
                case 0: stored(out); break;
                case 1: fixed(out, member_start); break;
                case 2: dynamic(out, member_start); break;
                default: fail("invalid block type 3");
            }
        }
    }

private:
    std::string_view in_;
    const std::string& name_;
    std::size_t max_output_;
    std::size_t pos_ = 0;
    std::uint32_t bit_buf_ = 0;
    int bit_count_ = 0;
};

}  // namespace detail::gzip

/// True when `data` begins with the gzip magic bytes 1f 8b.
inline bool is_gzip(std::string_view data) {
    return data.size() >= 2 && static_cast<unsigned char>(data[0]) == 0x1F && static_cast<unsigned char>(data[1]) == 0x8B;
}

/// Decompresses every gzip member of `data`. `name` (a file name) only labels error messages.
inline std::string gunzip(std::string_view data, const std::string& name = "<gzip data>",
                          std::size_t max_output = std::size_t{1} << 30) {
    detail::gzip::Inflater z(data, name, max_output);
    std::string out;
    auto byte = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(data[i])); };
    std::size_t p = 0;
    do {
        z.set_pos(p);
        if (data.size() - p < 18) z.fail("truncated gzip member (shorter than 18 bytes)");
        if (!is_gzip(data.substr(p))) z.fail("not a gzip member (bad magic bytes)");
        if (byte(p + 2) != 8) z.fail("compression method " + std::to_string(byte(p + 2)) + " is not deflate (8)");
        std::uint32_t flags = byte(p + 3);
        if (flags & 0xE0) z.fail("reserved header flags set");
        std::size_t q = p + 10;
        auto need = [&](std::size_t n) {
            if (data.size() - q < n) {
                z.set_pos(q);
                z.fail("truncated gzip header");
            }
        };
        if (flags & 4) {  // FEXTRA
            need(2);
            std::size_t xlen = byte(q) | byte(q + 1) << 8;
            q += 2;
            need(xlen);
            q += xlen;
        }
        for (std::uint32_t f : {8u, 16u}) {  // FNAME, FCOMMENT: zero-terminated
            if (!(flags & f)) continue;
            while (true) {
                need(1);
                if (data[q++] == '\0') break;
            }
        }
        if (flags & 2) {  // FHCRC
            need(2);
            q += 2;
        }
        z.set_pos(q);
        std::size_t start = out.size();
        z.inflate(out);
        q = z.pos();
        if (data.size() - q < 8) z.fail("truncated gzip trailer");
        std::uint32_t crc = byte(q) | byte(q + 1) << 8 | byte(q + 2) << 16 | byte(q + 3) << 24;
        std::uint32_t isize = byte(q + 4) | byte(q + 5) << 8 | byte(q + 6) << 16 | byte(q + 7) << 24;
        z.set_pos(q);
        if (detail::gzip::crc32(out.data() + start, out.size() - start) != crc) z.fail("CRC-32 mismatch");
        if (static_cast<std::uint32_t>(out.size() - start) != isize) z.fail("length mismatch");
        p = q + 8;
        // Python's gzip module ignores zero padding after the last member; so does this.
        while (p < data.size() && data[p] == '\0') ++p;
    } while (p < data.size());
    return out;
}

}  // namespace mmalign::io
