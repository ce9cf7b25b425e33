// mmalign/io/detail/gpt2_pretokenizer.hpp — the pre-tokenizer regex of GPT-2 (OpenAI's gpt-2
// encoder.py; tokenizers' ByteLevel pre-tokenizer with use_regex, which GPT-2, RoBERTa and OPT
// share), computed without a regex engine:
//
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// Ordered alternation at each position, every match kept (no character is dropped). The last two
// alternatives make a run of white space give its final character to the next word: "a   b" is
// "a", "  ", " b" — \s+(?!\S) backtracks until the next character is white space too, and a single
// space before a word falls through to \s+ only when no word follows it (" ?" takes it otherwise).
// \p{L}, \p{N} and \s are tokenizers' classes (unicode_properties.hpp).
#pragma once

#include <cstddef>
#include <string_view>

#include "mmalign/io/detail/unicode_properties.hpp"

namespace mmalign::io::detail {

/// The length of the English contraction 's, 't, 're, 've, 'm, 'll or 'd that `rest` starts with
/// (lower case only, as both GPT-2's and CLIP's regexes write them), or 0.
inline std::size_t contraction_length(std::u32string_view rest) {
    if (rest.size() < 2 || rest[0] != U'\'') return 0;
    switch (rest[1]) {
        case U's': case U't': case U'm': case U'd': return 2;
        case U'r': case U'v': return rest.size() >= 3 && rest[2] == U'e' ? 3 : 0;
        case U'l': return rest.size() >= 3 && rest[2] == U'l' ? 3 : 0;
        default: return 0;
    }
}

/// Calls piece(begin, end) for each match of GPT-2's regex in `s`, in order; the pieces cover s.
template <class F>
void gpt2_split(std::u32string_view s, F&& piece) {
    const std::size_t n = s.size();
    auto run = [&](std::size_t j, auto&& in_class) {
        while (j < n && in_class(s[j])) ++j;
        return j;
    };
    auto is_letter = [](char32_t c) { return char_class(c) == CharClass::letter; };
    auto is_number = [](char32_t c) { return char_class(c) == CharClass::number; };
    auto is_other = [](char32_t c) { return char_class(c) == CharClass::other && !is_space(c); };
    std::size_t i = 0;
    while (i < n) {
        if (const std::size_t c = contraction_length(s.substr(i))) {
            piece(i, i + c);
            i += c;
            continue;
        }
        // " ?X+" for the three classes: an optional ASCII space, then a non-empty run.
        const std::size_t k = s[i] == U' ' && i + 1 < n ? i + 1 : i;
        std::size_t end = i;
        if (is_letter(s[k])) end = run(k, is_letter);
        else if (is_number(s[k])) end = run(k, is_number);
        else if (is_other(s[k])) end = run(k, is_other);
        if (end == i) {
            // s[i] is white space (a lone ' ' before more white space or the end lands here too).
            const std::size_t j = run(i, [](char32_t c) { return is_space(c); });
            // \s+(?!\S): all of the run at the end of the text; else all but its last character,
            // when that leaves any; else (one white space before a non-space) \s+ takes it.
            end = j == n ? j : (j - i >= 2 ? j - 1 : j);
        }
        piece(i, end);
        i = end;
    }
}

}  // namespace mmalign::io::detail
