// mmalign/io/detail/bert_normalizer.hpp — BERT's text normalizer and pre-tokenizer, as Hugging
// Face tokenizers computes them (tokenizers/src/normalizers/bert.rs, pre_tokenizers/bert.rs; the
// original is BasicTokenizer in google-research/bert's tokenization.py).
//
// Normalizer, in this order (each step optional):
//   1. clean_text: NUL, U+FFFD and control/format/private-use characters are removed, every other
//      white space character becomes U+0020 (tab, LF and CR count as white space);
//   2. handle_chinese_chars: a space on each side of every CJK ideograph, so each is a word;
//   3. strip_accents: NFD, then every nonspacing mark removed; unset, it follows lowercase;
//   4. lowercase: Rust's char::to_lowercase per character.
// Pre-tokenizer: split on white space (dropped), then every punctuation character becomes a word
// of its own (ASCII punctuation, which includes $ + < = > ^ ` | ~, and Unicode P*).
// The character classes are tokenizers' own (detail/unicode_bert.hpp, read back from it).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>

#include "mmalign/io/detail/unicode_bert.hpp"
#include "mmalign/io/detail/unicode_normalization.hpp"
#include "mmalign/io/detail/unicode_properties.hpp"

namespace mmalign::io::detail {

namespace bert {

template <std::size_t N>
constexpr bool in_ranges(const unicode::CodeRange (&ranges)[N], char32_t c) {
    const auto it = std::upper_bound(std::begin(ranges), std::end(ranges), c,
                                     [](char32_t v, const unicode::CodeRange& r) { return v < r.first; });
    return it != std::begin(ranges) && c <= (it - 1)->last;
}

// The classes of the ASCII characters, one bit each, computed from the tables at compile time:
// most text is ASCII, and this spares it the binary searches.
enum : std::uint8_t { dropped = 1, space = 2, whitespace = 4, punctuation = 8 };
struct AsciiClasses {
    std::uint8_t bits[128] = {};
};
constexpr AsciiClasses make_ascii_classes() {
    AsciiClasses a;
    for (char32_t c = 0; c < 128; ++c)
        a.bits[c] = static_cast<std::uint8_t>((in_ranges(unicode::bert_dropped, c) ? dropped : 0) |
                                              (in_ranges(unicode::bert_space, c) ? space : 0) |
                                              (in_ranges(unicode::bert_whitespace, c) ? whitespace : 0) |
                                              (in_ranges(unicode::bert_punctuation, c) ? punctuation : 0));
    return a;
}
inline constexpr AsciiClasses ascii = make_ascii_classes();

}  // namespace bert

/// Removed by clean_text.
inline bool is_bert_dropped(char32_t c) {
    return c < 0x80 ? (bert::ascii.bits[c] & bert::dropped) != 0 : bert::in_ranges(unicode::bert_dropped, c);
}
/// Turned into U+0020 by clean_text (U+0020 itself excluded).
inline bool is_bert_space(char32_t c) {
    return c < 0x80 ? (bert::ascii.bits[c] & bert::space) != 0 : bert::in_ranges(unicode::bert_space, c);
}
/// Rust's char::is_whitespace (Unicode White_Space): the pre-tokenizer's word separators.
inline bool is_bert_whitespace(char32_t c) {
    return c < 0x80 ? (bert::ascii.bits[c] & bert::whitespace) != 0 : bert::in_ranges(unicode::bert_whitespace, c);
}
/// A character the pre-tokenizer isolates.
inline bool is_bert_punctuation(char32_t c) {
    return c < 0x80 ? (bert::ascii.bits[c] & bert::punctuation) != 0 : bert::in_ranges(unicode::bert_punctuation, c);
}
/// A CJK ideograph that handle_chinese_chars surrounds with spaces.
inline bool is_bert_chinese(char32_t c) { return c >= 0x3400 && bert::in_ranges(unicode::bert_chinese, c); }

/// tokenizers' BertNormalizer; the defaults are BERT-uncased's.
struct BertNormalizer {
    bool clean_text = true;
    bool handle_chinese_chars = true;
    std::optional<bool> strip_accents = std::nullopt;  // unset: follows lowercase
    bool lowercase = true;

    bool strips_accents() const { return strip_accents.value_or(lowercase); }

    std::u32string normalize(std::u32string_view s) const {
        std::u32string out;
        out.reserve(s.size() + 8);
        for (char32_t c : s) {
            if (clean_text) {
                if (is_bert_dropped(c)) continue;
                if (is_bert_space(c)) c = U' ';
            }
            if (handle_chinese_chars && is_bert_chinese(c)) {
                out.push_back(U' ');
                out.push_back(c);
                out.push_back(U' ');
            } else {
                out.push_back(c);
            }
        }
        // Below U+00C0 NFD changes nothing and there are no nonspacing marks.
        if (strips_accents() && std::any_of(out.begin(), out.end(), [](char32_t c) { return c >= 0xC0; }))
            out = detail::strip_accents(out);
        if (lowercase) out = to_lower(out);
        return out;
    }
};

/// BertPreTokenizer: calls word(std::u32string_view) for each word of `s`, in order.
template <class F>
void bert_pre_tokenize(std::u32string_view s, F&& word) {
    std::size_t start = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char32_t c = s[i];
        const bool space = is_bert_whitespace(c);
        if (!space && !is_bert_punctuation(c)) continue;
        if (start < i) word(s.substr(start, i - start));
        if (!space) word(s.substr(i, 1));
        start = i + 1;
    }
    if (start < s.size()) word(s.substr(start));
}

}  // namespace mmalign::io::detail
