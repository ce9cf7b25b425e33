// mmalign/io/detail/unicode_normalization.hpp — canonical decomposition and composition (NFD,
// NFC; Unicode Standard Annex #15, https://unicode.org/reports/tr15/) and accent stripping, as
// Hugging Face `tokenizers` computes them: CLIP's normalizer starts with NFC, BERT's strips
// accents (NFD, then every nonspacing mark removed).
//
// The data are tokenizers' own (detail/unicode_tables.hpp, detail/unicode_marks.hpp, read back
// from that library), so the results follow its Unicode versions. Hangul syllables decompose and
// compose algorithmically (Unicode Standard §3.12), as every implementation does.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mmalign/io/detail/unicode_marks.hpp"
#include "mmalign/io/detail/unicode_tables.hpp"

namespace mmalign::io::detail {

/// Canonical combining class (0 for starters).
inline int combining_class(char32_t c) {
    if (c < 0x300) return 0;
    const auto it = std::upper_bound(std::begin(unicode::ccc_runs), std::end(unicode::ccc_runs),
                                     static_cast<std::uint32_t>(c) << 8 | 0xFFu);
    return it == std::begin(unicode::ccc_runs) ? 0 : static_cast<int>(*(it - 1) & 0xFFu);
}

/// A nonspacing mark that accent stripping removes (general category Mn, tokenizers' table).
inline bool is_nonspacing_mark(char32_t c) {
    if (c < 0x300) return false;
    const auto it = std::upper_bound(std::begin(unicode::mark_runs), std::end(unicode::mark_runs), c,
                                     [](char32_t v, const unicode::MarkRun& r) { return v < r.first; });
    return it != std::begin(unicode::mark_runs) && c <= (it - 1)->last;
}

namespace hangul {
inline constexpr char32_t s_base = 0xAC00, l_base = 0x1100, v_base = 0x1161, t_base = 0x11A7;
inline constexpr char32_t l_count = 19, v_count = 21, t_count = 28, s_count = 11172;
}  // namespace hangul

/// Appends the full canonical decomposition of c (not yet in canonical order).
inline void append_canonical_decomposition(std::u32string& out, char32_t c) {
    using namespace hangul;
    if (c >= s_base && c < s_base + s_count) {
        const char32_t i = c - s_base;
        out.push_back(l_base + i / (v_count * t_count));
        out.push_back(v_base + (i % (v_count * t_count)) / t_count);
        if (i % t_count) out.push_back(t_base + i % t_count);
        return;
    }
    if (c < 0xC0) {  // nothing below U+00C0 decomposes
        out.push_back(c);
        return;
    }
    const auto it = std::lower_bound(std::begin(unicode::decompositions), std::end(unicode::decompositions), c,
                                     [](const unicode::Decomposition& d, char32_t v) { return d.cp < v; });
    if (it == std::end(unicode::decompositions) || it->cp != c) {
        out.push_back(c);
        return;
    }
    append_canonical_decomposition(out, it->first);
    if (it->second) append_canonical_decomposition(out, it->second);
}

/// Canonical ordering: each run of non-starters sorted stably by combining class. `cc` receives
/// the classes of the reordered characters (the composition step needs them).
inline void canonical_order(std::u32string& d, std::vector<int>& cc) {
    std::vector<std::pair<int, char32_t>> marks(d.size());  // (combining class, character)
    for (std::size_t i = 0; i < d.size(); ++i) marks[i] = {combining_class(d[i]), d[i]};
    // A stable sort per run (O(n log n)): a long run of marks costs no more than in tokenizers.
    for (std::size_t i = 0; i < marks.size();) {
        if (marks[i].first == 0) {
            ++i;
            continue;
        }
        std::size_t j = i;
        while (j < marks.size() && marks[j].first != 0) ++j;
        std::stable_sort(marks.begin() + static_cast<std::ptrdiff_t>(i), marks.begin() + static_cast<std::ptrdiff_t>(j),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
        i = j;
    }
    cc.resize(d.size());
    for (std::size_t i = 0; i < d.size(); ++i) cc[i] = marks[i].first, d[i] = marks[i].second;
}

/// NFD: full canonical decomposition in canonical order.
inline std::u32string nfd(std::u32string_view s) {
    std::u32string d;
    d.reserve(s.size() + 8);
    for (char32_t c : s) append_canonical_decomposition(d, c);
    std::vector<int> cc;
    canonical_order(d, cc);
    return d;
}

/// The primary composite of the pair (a, b), or 0 when there is none (composition exclusions
/// and singletons never compose).
inline char32_t compose_pair(char32_t a, char32_t b) {
    using namespace hangul;
    if (a >= l_base && a < l_base + l_count && b >= v_base && b < v_base + v_count)
        return s_base + ((a - l_base) * v_count + (b - v_base)) * t_count;
    if (a >= s_base && a < s_base + s_count && (a - s_base) % t_count == 0 && b > t_base && b < t_base + t_count)
        return a + (b - t_base);
    // (first << 21 | second) → composite, sorted; built once from the decomposition table.
    static const std::vector<std::pair<std::uint64_t, char32_t>> pairs = [] {
        std::vector<std::pair<std::uint64_t, char32_t>> p;
        for (const auto& d : unicode::decompositions) {
            if (!d.second || std::binary_search(std::begin(unicode::composition_exclusions),
                                                std::end(unicode::composition_exclusions), d.cp))
                continue;
            p.emplace_back(static_cast<std::uint64_t>(d.first) << 21 | d.second, d.cp);
        }
        std::sort(p.begin(), p.end());
        return p;
    }();
    const std::uint64_t key = static_cast<std::uint64_t>(a) << 21 | b;
    const auto it = std::lower_bound(pairs.begin(), pairs.end(), std::pair<std::uint64_t, char32_t>{key, 0});
    return it != pairs.end() && it->first == key ? it->second : 0;
}

/// NFC: NFD, then canonical composition of every unblocked pair with its starter.
inline std::u32string nfc(std::u32string_view s) {
    // Below U+0300 nothing decomposes into, or composes with, anything that follows.
    if (std::all_of(s.begin(), s.end(), [](char32_t c) { return c < 0x300; })) return std::u32string(s);
    std::u32string d;
    d.reserve(s.size() + 8);
    for (char32_t c : s) append_canonical_decomposition(d, c);
    std::vector<int> cc;
    canonical_order(d, cc);
    std::u32string out;
    out.reserve(d.size());
    std::size_t starter = std::u32string::npos;
    int last_cc = 0;
    for (std::size_t i = 0; i < d.size(); ++i) {
        const char32_t c = d[i];
        // Not blocked: nothing uncomposed between the starter and c, or everything between has a
        // lower, non-zero class.
        if (starter != std::u32string::npos && (last_cc < cc[i] || (last_cc == 0 && out.size() == starter + 1))) {
            if (const char32_t comp = compose_pair(out[starter], c)) {
                out[starter] = comp;
                continue;
            }
        }
        if (cc[i] == 0) starter = out.size();
        last_cc = cc[i];
        out.push_back(c);
    }
    return out;
}

/// Accent stripping of BERT-style normalizers: NFD, then every nonspacing mark removed
/// ("café" → "cafe", "Å" → "A"). The result is in NFD form otherwise (Hangul stays decomposed).
inline std::u32string strip_accents(std::u32string_view s) {
    std::u32string d = nfd(s);
    std::erase_if(d, is_nonspacing_mark);
    return d;
}

}  // namespace mmalign::io::detail
