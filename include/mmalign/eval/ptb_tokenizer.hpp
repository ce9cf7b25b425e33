// mmalign/eval/ptb_tokenizer.hpp — the tokenization step of pycocoevalcap (the COCO caption
// evaluation code, tokenizer/ptbtokenizer.py): Stanford CoreNLP 3.4.1's PTBTokenizer run with
// -preserveLines -lowerCase on each caption, then the removal of the tokens pycocoevalcap lists as
// punctuation ('' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;).
//
// What is reproduced (each case is checked against the Java tokenizer's output in
// tests/eval/test_ptb_tokenizer.cpp, see docs/evaluation.md):
//  * white space separates tokens; a run of letters/digits is a word, with inner hyphens
//    ("t-shirt"), inner apostrophes followed by a letter ("l'oreal") and, between digits, inner
//    '.', ',', ':' and '/' ("3,000.50", "5:30", "12/25");
//  * clitics split off as in the Penn Treebank: "don't" → do n't, "can't" → ca n't, "it's" → it 's,
//    'm 're 've 'll 'd, with ’ read as an apostrophe; "gonna" → gon na, "gotta", "wanna", "cannot",
//    "gimme", "lemme" likewise;
//  * quotes become `` '' ` ' (opening at the start of a word or after an opening bracket), brackets
//    -LRB- -RRB- -LSB- -RSB- -LCB- -RCB-, a run of two or more '-' or an en/em dash "--", a run of
//    two or more '.' "...", a run of '!'/'?' one token; other punctuation is one token per character;
//  * a final '.' stays on letter-dot abbreviations ("p.m.", "u.s.") and on a few titles and units
//    ("mr.", "dr.", "ft."), and splits off anything else;
//  * -lowerCase lowers each token after escaping, so the brackets come out as "-lrb-"… and are NOT
//    removed by pycocoevalcap's list (which spells them in capitals): that is what it scores.
// Not reproduced: CoreNLP's sentence-final extra "." after an abbreviation followed by a capital,
// its special cases for e-mail addresses, URLs, "@name", "AT&T"-style names, fractions with a space,
// and SGML; a caption with those may tokenize differently from the Java tool.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "mmalign/io/detail/unicode_properties.hpp"
#include "mmalign/io/detail/utf8.hpp"

namespace mmalign::eval {

namespace detail {

inline bool ptb_is_apostrophe(char32_t c) { return c == U'\'' || c == U'\u2019'; }

/// Letters, digits and any character outside ASCII that is not punctuation the lexer knows: the
/// characters a word is made of.
inline bool ptb_is_word_char(char32_t c) {
    if (c < 0x80) return io::detail::char_class(c) != io::detail::CharClass::other;
    switch (c) {
        case U'\u2013': case U'\u2014': case U'\u2018': case U'\u2019': case U'\u201C': case U'\u201D':
            return false;
        default:
            return !io::detail::is_space(c);
    }
}
inline bool ptb_is_digit(char32_t c) { return c >= U'0' && c <= U'9'; }
inline bool ptb_is_letter(char32_t c) { return ptb_is_word_char(c) && !ptb_is_digit(c); }

/// The clitic after an apostrophe at s[i] (i at the apostrophe), when one ends a word there: its
/// length without the apostrophe, else 0. "n't" is handled by the word scan (the n is the word's).
inline std::size_t ptb_clitic_after(std::u32string_view s, std::size_t i) {
    if (i >= s.size() || !ptb_is_apostrophe(s[i])) return 0;
    constexpr std::array<std::u32string_view, 6> clitics = {U"s", U"m", U"d", U"re", U"ve", U"ll"};
    for (std::u32string_view c : clitics) {
        if (i + 1 + c.size() > s.size()) continue;
        bool same = true;
        for (std::size_t k = 0; k < c.size(); ++k) same = same && (s[i + 1 + k] | 0x20) == c[k];
        if (same && (i + 1 + c.size() == s.size() || !ptb_is_letter(s[i + 1 + c.size()]))) return c.size();
    }
    return 0;
}

/// Whether "n't" starts at s[i - 1] (the word's last letter is the n): s[i] an apostrophe, then t,
/// then the end of the word.
inline bool ptb_nt_at(std::u32string_view s, std::size_t i) {
    return i >= 1 && (s[i - 1] | 0x20) == U'n' && i + 1 < s.size() && ptb_is_apostrophe(s[i]) &&
           (s[i + 1] | 0x20) == U't' && (i + 2 == s.size() || !ptb_is_letter(s[i + 2]));
}

/// "'" followed by a clitic's letters ('s, 're, …), built by appending (GCC 12 misreports the
/// operator+ of a one-character u32string literal under -Wrestrict).
inline std::u32string ptb_clitic(std::u32string_view letters) {
    std::u32string t(1, U'\'');
    t.append(letters);
    return t;
}

inline std::u32string ptb_lower(std::u32string_view s) { return io::detail::to_lower(s); }

/// Whole words the Penn Treebank splits in two, lower case, with the split point.
inline std::size_t ptb_split_word(std::u32string_view lower) {
    constexpr std::array<std::pair<std::u32string_view, std::size_t>, 6> words = {{
        {U"gonna", 3}, {U"gotta", 3}, {U"wanna", 3}, {U"cannot", 3}, {U"gimme", 3}, {U"lemme", 3}}};
    for (const auto& [w, at] : words)
        if (lower == w) return at;
    return 0;
}

/// Words that keep a following '.' (titles and units the CoreNLP lexer lists as abbreviations).
inline bool ptb_keeps_period(std::u32string_view lower) {
    constexpr std::array<std::u32string_view, 10> abbreviations = {U"mr", U"mrs", U"ms", U"dr", U"ft",
                                                                   U"st", U"jr", U"sr", U"prof", U"vs"};
    for (std::u32string_view a : abbreviations)
        if (lower == a) return true;
    return false;
}

/// The PTB tokens of one white-space-free chunk, appended lower-cased and escaped to `out`.
inline void ptb_tokenize_chunk(std::u32string_view s, std::vector<std::u32string>& out) {
    bool opening = true;  // a quote here opens: at the chunk start or after an opening bracket/quote
    std::size_t i = 0;
    auto emit = [&](std::u32string t, bool opens) {
        out.push_back(ptb_lower(t));
        opening = opens;
    };
    while (i < s.size()) {
        const char32_t c = s[i];
        if (ptb_is_word_char(c)) {
            // Letter-dot abbreviations "p.m.", "u.s.": single letters each followed by '.'.
            // Each letter must be followed by '.' and then by the end, a non-word character, or
            // another letter-dot pair.
            auto letter_dot = [&](std::size_t k) { return k + 1 < s.size() && ptb_is_letter(s[k]) && s[k + 1] == U'.'; };
            std::size_t k = i;
            while (letter_dot(k) && (k + 2 == s.size() || !ptb_is_word_char(s[k + 2]) || letter_dot(k + 2))) k += 2;
            if (k - i >= 4) {
                emit(std::u32string(s.substr(i, k - i)), false);
                i = k;
                continue;
            }
            std::size_t j = i + 1;
            while (j < s.size()) {
                const char32_t d = s[j];
                const bool next_word = j + 1 < s.size() && ptb_is_word_char(s[j + 1]);
                if (ptb_is_word_char(d)) {
                    ++j;
                } else if (d == U'-' && next_word) {
                    ++j;
                } else if ((d == U'.' || d == U',' || d == U':' || d == U'/') && ptb_is_digit(s[j - 1]) &&
                           j + 1 < s.size() && ptb_is_digit(s[j + 1])) {
                    ++j;
                } else if (ptb_is_apostrophe(d) && next_word && !ptb_nt_at(s, j) && ptb_clitic_after(s, j) == 0) {
                    ++j;  // an inner apostrophe of a name: l'oreal
                } else {
                    break;
                }
            }
            std::u32string word(s.substr(i, j - i));
            const std::u32string lower = ptb_lower(word);
            if (ptb_nt_at(s, j)) {
                if (word.size() > 1) emit(word.substr(0, word.size() - 1), false);
                emit(U"n't", false);
                i = j + 2;
                continue;
            }
            if (j < s.size() && s[j] == U'.' && ptb_keeps_period(lower)) {
                word.push_back(U'.');
                emit(word, false);
                i = j + 1;
                continue;
            }
            if (const std::size_t at = ptb_split_word(lower); at != 0) {
                emit(word.substr(0, at), false);
                emit(word.substr(at), false);
            } else {
                emit(word, false);
            }
            i = j;
            if (const std::size_t n = ptb_clitic_after(s, i); n != 0) {
                emit(ptb_clitic(s.substr(i + 1, n)), false);
                i += n + 1;
            }
            continue;
        }
        std::size_t run = 1;
        auto run_of = [&](auto pred) {
            while (i + run < s.size() && pred(s[i + run])) ++run;
        };
        switch (c) {
            case U'"': emit(opening ? U"``" : U"''", opening); break;
            case U'\u201C': emit(U"``", true); break;
            case U'\u201D': emit(U"''", false); break;
            case U'\u2018': emit(U"`", true); break;
            case U'\'': case U'\u2019':
                if (const std::size_t n = ptb_clitic_after(s, i); n != 0 && !opening) {
                    emit(ptb_clitic(s.substr(i + 1, n)), false);
                    run = n + 1;
                } else if (opening && c == U'\'' && i + 1 < s.size() && ptb_is_word_char(s[i + 1])) {
                    emit(U"`", true);
                } else {
                    emit(U"'", false);
                }
                break;
            case U'(': emit(U"-LRB-", true); break;
            case U')': emit(U"-RRB-", false); break;
            case U'[': emit(U"-LSB-", true); break;
            case U']': emit(U"-RSB-", false); break;
            case U'{': emit(U"-LCB-", true); break;
            case U'}': emit(U"-RCB-", false); break;
            case U'\u2013': case U'\u2014': emit(U"--", false); break;
            case U'-':
                run_of([](char32_t d) { return d == U'-'; });
                emit(run == 1 ? U"-" : U"--", false);
                break;
            case U'.':
                run_of([](char32_t d) { return d == U'.'; });
                emit(run == 1 ? U"." : U"...", false);
                break;
            case U'!': case U'?':
                run_of([](char32_t d) { return d == U'!' || d == U'?'; });
                emit(std::u32string(s.substr(i, run)), false);
                break;
            default: emit(std::u32string(1, c), false); break;
        }
        i += run;
    }
}

/// pycocoevalcap's PUNCTUATIONS: the tokens it drops after tokenizing (compared after
/// lower-casing, so the capitalised bracket escapes in its list never match).
inline bool ptb_is_removed_punctuation(std::u32string_view t) {
    constexpr std::array<std::u32string_view, 17> removed = {U"''", U"'", U"``", U"`", U"-LRB-", U"-RRB-",
                                                             U"-LCB-", U"-RCB-", U".", U"?", U"!", U",",
                                                             U":", U"-", U"--", U"...", U";"};
    for (std::u32string_view r : removed)
        if (t == r) return true;
    return false;
}

}  // namespace detail

/// The tokens of one caption as pycocoevalcap hands them to its scorers: PTB-tokenized, lower
/// case, punctuation tokens removed. A caption with a line break is one line (pycocoevalcap
/// replaces "\n" by a space before tokenizing). Invalid UTF-8 throws InvalidUtf8Error.
inline std::vector<std::string> ptb_tokenize(std::string_view text) {
    io::detail::validate_utf8(text, "ptb_tokenize");
    const std::u32string u = io::detail::to_u32(text);
    std::vector<std::u32string> tokens;
    std::size_t i = 0;
    while (i < u.size()) {
        while (i < u.size() && io::detail::is_space(u[i])) ++i;
        std::size_t j = i;
        while (j < u.size() && !io::detail::is_space(u[j])) ++j;
        if (j > i) detail::ptb_tokenize_chunk(std::u32string_view(u).substr(i, j - i), tokens);
        i = j;
    }
    std::vector<std::string> out;
    for (const std::u32string& t : tokens)
        if (!detail::ptb_is_removed_punctuation(t)) out.push_back(io::detail::to_utf8(t));
    return out;
}

}  // namespace mmalign::eval
