// mmalign/io/caption_text.hpp — LAVIS's `blip_caption` text processing (BlipCaptionProcessor in
// lavis/processors/blip_processors.py), which BLIP and BLIP-2 apply to every training caption:
//
//   caption = re.sub(r"([.!\"()*#:;~])", " ", caption.lower())
//   caption = re.sub(r"\s{2,}", " ", caption)
//   caption = caption.rstrip("\n").strip(" ")
//   words = caption.split(" "); if len(words) > max_words: caption = " ".join(words[:max_words])
//   return prompt + caption
//
// reproduced with Python's semantics, quirks included: \s is Python's str.isspace() class, and
// only RUNS of two or more such characters become one space, so a lone tab or newline inside the
// text stays; rstrip("\n") then strip(" ") trim only those two characters; words are counted by
// single spaces. str.lower() is Unicode's full lower-case mapping (İ → "i̇"), with Python's
// Final_Sigma rule for Σ, whose Cased and Case_Ignorable properties come from Python itself
// (detail/unicode_case_context.hpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <string>
#include <string_view>

#include "mmalign/io/detail/unicode_case_context.hpp"
#include "mmalign/io/detail/unicode_properties.hpp"
#include "mmalign/io/detail/utf8.hpp"

namespace mmalign::io {

namespace detail {

/// Python's str.isspace(): bidirectional class WS, B or S, or category Zs (Objects/unicodetype_db.h).
/// Unlike Unicode White_Space it includes U+001C..U+001F.
constexpr bool python_isspace(char32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

/// The characters LAVIS's pre_caption replaces by a space: the class [.!"()*#:;~].
constexpr bool blip_caption_strips(char32_t c) {
    return c == '.' || c == '!' || c == '"' || c == '(' || c == ')' || c == '*' || c == '#' || c == ':' ||
           c == ';' || c == '~';
}

/// Whether c lies in one of the sorted, disjoint runs.
template <std::size_t N>
bool in_case_runs(const unicode::CaseRun (&runs)[N], char32_t c) {
    const auto it = std::upper_bound(std::begin(runs), std::end(runs), c,
                                     [](char32_t v, const unicode::CaseRun& r) { return v < r.first; });
    return it != std::begin(runs) && c <= (it - 1)->last;
}

/// Case_Ignorable and Cased as Python's Final_Sigma rule sees them (see the top).
inline bool case_ignorable(char32_t c) { return in_case_runs(unicode::case_ignorable_runs, c); }
inline bool cased(char32_t c) { return in_case_runs(unicode::cased_runs, c); }

/// Python's str.lower(): the full lower-case mapping per character, and Σ (U+03A3) becoming final
/// ς when a cased letter precedes it and none follows (case-ignorable characters skipped), as
/// CPython's handle_capital_sigma decides on the original text.
inline std::u32string python_lower(std::u32string_view s) {
    std::u32string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != U'\u03A3') {
            append_lower(out, s[i]);
            continue;
        }
        std::size_t j = i;
        while (j > 0 && case_ignorable(s[j - 1])) --j;
        bool final_sigma = j > 0 && cased(s[j - 1]);
        if (final_sigma) {
            std::size_t k = i + 1;
            while (k < s.size() && case_ignorable(s[k])) ++k;
            final_sigma = k == s.size() || !cased(s[k]);
        }
        out.push_back(final_sigma ? U'\u03C2' : U'\u03C3');
    }
    return out;
}

}  // namespace detail

/// LAVIS's BlipCaptionProcessor(prompt, max_words)(text) (see the top of this header). `text` must
/// be valid UTF-8 (InvalidUtf8Error otherwise, naming the byte offset).
inline std::string blip_caption(std::string_view text, std::size_t max_words = 50, std::string_view prompt = "") {
    detail::validate_utf8(text, "blip_caption");
    const std::u32string lowered = detail::python_lower(detail::to_u32(text));

    // re.sub(punctuation, " ") then re.sub(r"\s{2,}", " "): a run of two or more white-space
    // characters (after the replacement) becomes one space; a single one is kept as it is.
    std::u32string s;
    s.reserve(lowered.size());
    for (std::size_t i = 0; i < lowered.size();) {
        auto mapped = [&](std::size_t k) { return detail::blip_caption_strips(lowered[k]) ? U' ' : lowered[k]; };
        if (!detail::python_isspace(mapped(i))) {
            s.push_back(mapped(i++));
            continue;
        }
        std::size_t end = i;
        while (end < lowered.size() && detail::python_isspace(mapped(end))) ++end;
        if (end - i >= 2)
            s.push_back(U' ');
        else
            s.push_back(mapped(i));
        i = end;
    }

    // rstrip("\n"), then strip(" ").
    std::size_t last = s.size();
    while (last > 0 && s[last - 1] == U'\n') --last;
    s.resize(last);
    std::size_t first = s.find_first_not_of(U' ');
    if (first == std::u32string::npos) first = s.size();
    last = s.size();
    while (last > first && s[last - 1] == U' ') --last;
    std::u32string_view kept(s.data() + first, last - first);

    // split(" ") and keep the first max_words words: cut before the max_words-th space.
    std::size_t spaces = 0;
    for (std::size_t i = 0; i < kept.size(); ++i) {
        if (kept[i] != U' ') continue;
        if (++spaces == max_words) {
            kept = kept.substr(0, i);
            break;
        }
    }
    if (max_words == 0) kept = {};  // [""] * (n > 0 words) joined: the empty string

    std::string out(prompt);
    out += detail::to_utf8(kept);
    return out;
}

}  // namespace mmalign::io
