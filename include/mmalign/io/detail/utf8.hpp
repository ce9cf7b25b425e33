// mmalign/io/detail/utf8.hpp — strict UTF-8 validation and decoding, shared by the tokenizers.
//
// Text reaches a tokenizer as bytes. Strict RFC 3629 (https://www.rfc-editor.org/rfc/rfc3629):
// no overlong forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF — the rules of Rust's
// str and Python's codec, so every text Hugging Face's tokenizers can see (a Python str) is
// accepted here and nothing else is. Errors carry the byte offset where the bad sequence starts.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "mmalign/core/error.hpp"

namespace mmalign::io {

/// Text given to a tokenizer is not valid UTF-8; offset() is the byte where the bad sequence
/// starts, reason() what is wrong with it.
class InvalidUtf8Error : public ArgumentError {
public:
    /// `who` names the reader in the message ("ClipTokenizer").
    InvalidUtf8Error(std::string_view who, std::size_t offset, std::string reason)
        : ArgumentError(std::string(who) + ": invalid UTF-8 at byte " + std::to_string(offset) + ": " + reason),
          offset_(offset),
          reason_(std::move(reason)) {}
    std::size_t offset() const { return offset_; }
    const std::string& reason() const { return reason_; }

private:
    std::size_t offset_;
    std::string reason_;
};

namespace detail {

/// Length (1 to 4) of the valid sequence that starts at s[i], or 0 with *why set to the reason.
/// The second byte's range depends on the lead byte (RFC 3629 §4): E0 needs A0..BF (no overlong),
/// ED 80..9F (no surrogate), F0 90..BF (no overlong), F4 80..8F (nothing above U+10FFFF).
inline int utf8_length(std::string_view s, std::size_t i, const char** why) {
    auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned c = b(i);
    if (c < 0x80) return 1;
    int n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else {
        *why = c < 0xC0 ? "unexpected continuation byte" : c < 0xC2 ? "overlong encoding" : "byte is never valid in UTF-8";
        return 0;
    }
    for (int k = 1; k < n; ++k) {
        if (i + static_cast<std::size_t>(k) >= s.size()) {
            *why = "truncated sequence";
            return 0;
        }
        const unsigned d = b(i + static_cast<std::size_t>(k));
        if (d < (k == 1 ? lo : 0x80u) || d > (k == 1 ? hi : 0xBFu)) {
            *why = k == 1 && d >= 0x80 && d <= 0xBF ? (c == 0xED   ? "surrogate code point"
                                                       : c == 0xF4 ? "code point above U+10FFFF"
                                                                   : "overlong encoding")
                                                    : "missing continuation byte";
            return 0;
        }
    }
    return n;
}

/// The code point of the valid n-byte sequence at s[i] (n from utf8_length).
inline char32_t utf8_value(std::string_view s, std::size_t i, int n) {
    auto b = [&](std::size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[k])); };
    switch (n) {
        case 1: return b(i);
        case 2: return (b(i) & 0x1F) << 6 | (b(i + 1) & 0x3F);
        case 3: return (b(i) & 0x0F) << 12 | (b(i + 1) & 0x3F) << 6 | (b(i + 2) & 0x3F);
        default: return (b(i) & 0x07) << 18 | (b(i + 1) & 0x3F) << 12 | (b(i + 2) & 0x3F) << 6 | (b(i + 3) & 0x3F);
    }
}

/// Where the first invalid sequence of s starts, and why.
struct Utf8Problem {
    std::size_t offset;
    const char* reason;
};

/// The first invalid sequence of s, or nothing when s is valid UTF-8.
inline std::optional<Utf8Problem> find_invalid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const char* why = nullptr;
        const int n = utf8_length(s, i, &why);
        if (n == 0) return Utf8Problem{i, why};
        i += static_cast<std::size_t>(n);
    }
    return std::nullopt;
}

/// Throws InvalidUtf8Error (naming `who`) at the first invalid sequence of s.
inline void validate_utf8(std::string_view s, std::string_view who) {
    if (auto bad = find_invalid_utf8(s)) throw InvalidUtf8Error(who, bad->offset, bad->reason);
}

/// Decodes text already checked by validate_utf8 (or produced by this library).
inline std::u32string to_u32(std::string_view valid) {
    std::u32string out;
    out.reserve(valid.size());
    for (std::size_t i = 0; i < valid.size();) {
        const char* why = nullptr;
        const int n = utf8_length(valid, i, &why);
        out.push_back(utf8_value(valid, i, n));
        i += static_cast<std::size_t>(n);
    }
    return out;
}

/// Appends the UTF-8 form of a Unicode scalar value.
inline void append_utf8(std::string& out, char32_t c) {
    if (c < 0x80) {
        out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (c >> 6)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (c >> 12)));
        out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (c >> 18)));
        out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
}

inline std::string to_utf8(std::u32string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char32_t c : s) append_utf8(out, c);
    return out;
}

/// Bytes to text as Rust's String::from_utf8_lossy does (what tokenizers' byte-level decoders
/// call): each maximal subpart of an invalid sequence (the Unicode Standard, §3.9, "U+FFFD
/// Substitution of Maximal Subparts") becomes one U+FFFD.
inline std::string utf8_lossy(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        const char* why = nullptr;
        const int n = utf8_length(s, i, &why);
        if (n > 0) {
            out.append(s.substr(i, static_cast<std::size_t>(n)));
            i += static_cast<std::size_t>(n);
            continue;
        }
        // The maximal subpart: the lead byte plus the continuation bytes that were still valid.
        std::size_t k = 1;
        const unsigned c = static_cast<unsigned char>(s[i]);
        if (c >= 0xC2 && c <= 0xF4) {
            const unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
            const unsigned hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
            const std::size_t need = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            while (k < need && i + k < s.size()) {
                const unsigned d = static_cast<unsigned char>(s[i + k]);
                if (d < (k == 1 ? lo : 0x80u) || d > (k == 1 ? hi : 0xBFu)) break;
                ++k;
            }
        }
        out += "\xEF\xBF\xBD";
        i += k;
    }
    return out;
}

}  // namespace detail
}  // namespace mmalign::io
