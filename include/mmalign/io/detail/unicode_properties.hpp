// mmalign/io/detail/unicode_properties.hpp — the per-character Unicode properties tokenizers'
// normalizers and pre-tokenizers test: letter / number (regex \p{L}, \p{N}), white space (regex
// \s) and lowercasing, as Hugging Face `tokenizers` computes them (tables read back from that
// library by tools/gen_unicode_tables.py, so they follow its Unicode versions, not one standard).
#pragma once

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <string>

#include "mmalign/io/detail/unicode_tables.hpp"

namespace mmalign::io::detail {

/// What a character is to the \p{L} / \p{N} classes of tokenizers' (Oniguruma) regexes.
enum class CharClass { other = 0, letter = 1, number = 2 };

inline CharClass char_class(char32_t c) {
    if (c < 0x80)
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ? CharClass::letter
               : (c >= '0' && c <= '9')                         ? CharClass::number
                                                                : CharClass::other;
    // Runs are (first << 2 | class), sorted: the last run starting at or before c holds it.
    const auto it = std::upper_bound(std::begin(unicode::class_runs), std::end(unicode::class_runs),
                                     static_cast<std::uint32_t>(c) << 2 | 3u);
    return static_cast<CharClass>(*(it - 1) & 3u);
}

/// The regex class \s of tokenizers (Unicode White_Space as Oniguruma has it).
inline bool is_space(char32_t c) {
    if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
    return std::binary_search(std::begin(unicode::white_space), std::end(unicode::white_space), c);
}

/// Appends Rust's char::to_lowercase(c), which tokenizers' Lowercase (and BertNormalizer's
/// lowercase) applies to each character on its own: no context rules, so a final capital sigma
/// becomes σ, not Python's ς; İ becomes "i̇" (two characters).
inline void append_lower(std::u32string& out, char32_t c) {
    if (c < 0x80) {
        out.push_back(c >= 'A' && c <= 'Z' ? c + 32 : c);
        return;
    }
    for (const auto& m : unicode::lower_multi) {
        if (m.cp == c) {
            for (char32_t x : m.to)
                if (x) out.push_back(x);
            return;
        }
    }
    const auto it = std::upper_bound(std::begin(unicode::lower_runs), std::end(unicode::lower_runs), c,
                                     [](char32_t v, const unicode::LowerRun& r) { return v < r.first; });
    if (it != std::begin(unicode::lower_runs)) {
        const auto& r = *(it - 1);
        if (c <= r.last && (c - r.first) % r.stride == 0) {
            out.push_back(static_cast<char32_t>(static_cast<std::int64_t>(c) + r.delta));
            return;
        }
    }
    out.push_back(c);
}

inline std::u32string to_lower(std::u32string_view s) {
    std::u32string out;
    out.reserve(s.size());
    for (char32_t c : s) append_lower(out, c);
    return out;
}

}  // namespace mmalign::io::detail
