// mmalign/io/detail/added_tokens.hpp — cutting added (special) tokens out of text before the
// model sees it, as tokenizers' AddedVocabulary does (tokenizers/src/tokenizer/added_vocabulary.rs;
// transformers' AddedToken carries the same flags).
//
// A tokenizer splits twice: tokens with normalized = false are matched in the raw text, then each
// remaining piece is normalized and the tokens with normalized = true are matched in it (against
// their content normalized the same way). Each pass is one AddedTokenMatcher:
//  * matches are leftmost-longest and do not overlap (aho-corasick's LeftmostLongest iteration:
//    the scan resumes after a match, also after one that single_word then rejects);
//  * single_word: a match is kept only when the character before and the one after are not word
//    characters (regex \w);
//  * lstrip / rstrip: the match takes in the white space (regex \s) to its left / right, so that
//    space never reaches the model; lstrip never reaches back into an earlier match.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mmalign/io/detail/unicode_normalization.hpp"
#include "mmalign/io/detail/unicode_properties.hpp"

namespace mmalign::io::detail {

/// A token matched in text before the model runs, with HF's AddedToken flags. The defaults are
/// those of a special token given by its string in a config (special, matched in the raw text).
struct AddedToken {
    std::string content;
    std::int32_t id = -1;
    bool special = true;       // skipped by decode(..., skip_special_tokens = true)
    bool normalized = false;   // matched in the normalized text instead of the raw text
    bool lstrip = false;       // takes in the white space on its left
    bool rstrip = false;       // takes in the white space on its right
    bool single_word = false;  // matches only between non-word characters
};

/// Regex \w as Rust's regex crate defines it (Alphabetic, marks, decimal digits, connector
/// punctuation, joiners), from the tables at hand: exact for ASCII; beyond it letters and numbers
/// stand for Alphabetic and Nd (so No characters such as '²' count, and spacing vowel signs with
/// combining class 0 do not).
inline bool is_word_char(char32_t c) {
    if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (char_class(c) != CharClass::other || is_nonspacing_mark(c) || combining_class(c) != 0) return true;
    switch (c) {  // Pc and Join_Control
        case 0x200C: case 0x200D: case 0x203F: case 0x2040: case 0x2054: case 0xFE33: case 0xFE34:
        case 0xFE4D: case 0xFE4E: case 0xFE4F: case 0xFF3F: return true;
        default: return false;
    }
}

/// One matching pass over a set of added tokens.
class AddedTokenMatcher {
public:
    /// A piece of the text: [begin, end) in characters; `token` is the added token matched there
    /// (lstrip/rstrip white space included in the range), or null for text the model encodes.
    struct Piece {
        std::size_t begin, end;
        const AddedToken* token;
    };

    AddedTokenMatcher() = default;
    /// patterns[k] is what tokens[k] matches in this pass's text (its content, normalized for the
    /// normalized pass); empty patterns never match.
    AddedTokenMatcher(std::vector<AddedToken> tokens, std::vector<std::u32string> patterns)
        : tokens_(std::move(tokens)), patterns_(std::move(patterns)) {
        if (patterns_.size() != tokens_.size()) patterns_.resize(tokens_.size());
        for (std::size_t k = 0; k < patterns_.size(); ++k)
            if (!patterns_[k].empty()) by_first_[patterns_[k][0]].push_back(k);
        // Longest first, so the first pattern that matches at a position is the longest one; a
        // tie keeps the earlier token.
        for (auto& [c, list] : by_first_)
            std::stable_sort(list.begin(), list.end(),
                             [&](std::size_t a, std::size_t b) { return patterns_[a].size() > patterns_[b].size(); });
    }

    bool empty() const { return by_first_.empty(); }
    const std::vector<AddedToken>& tokens() const { return tokens_; }

    /// The pieces of `text`, in order, covering it exactly.
    std::vector<Piece> split(std::u32string_view text) const {
        std::vector<Piece> pieces;
        std::size_t covered = 0;  // text before this is in pieces already
        std::size_t scan = 0;     // where the search for the next match starts
        while (scan < text.size()) {
            std::size_t start = text.size(), k = 0;
            if (!find(text, scan, start, k)) break;
            std::size_t stop = start + patterns_[k].size();
            scan = stop;
            const AddedToken& t = tokens_[k];
            if (t.single_word && ((start > 0 && is_word_char(text[start - 1])) ||
                                  (stop < text.size() && is_word_char(text[stop]))))
                continue;
            if (t.lstrip)
                while (start > covered && is_space(text[start - 1])) --start;
            if (t.rstrip)
                while (stop < text.size() && is_space(text[stop])) ++stop;
            start = std::max(start, covered);  // a match inside an earlier rstrip's white space
            if (covered < start) pieces.push_back({covered, start, nullptr});
            pieces.push_back({start, stop, &t});
            covered = stop;
        }
        if (covered < text.size()) pieces.push_back({covered, text.size(), nullptr});
        return pieces;
    }

private:
    // The leftmost position at or after `from` where a pattern matches, and the longest pattern
    // there.
    bool find(std::u32string_view text, std::size_t from, std::size_t& start, std::size_t& k) const {
        for (std::size_t i = from; i < text.size(); ++i) {
            auto it = by_first_.find(text[i]);
            if (it == by_first_.end()) continue;
            for (std::size_t cand : it->second) {
                const std::u32string& p = patterns_[cand];
                if (text.compare(i, p.size(), p) == 0) {
                    start = i, k = cand;
                    return true;
                }
            }
        }
        return false;
    }

    std::vector<AddedToken> tokens_;
    std::vector<std::u32string> patterns_;
    std::unordered_map<char32_t, std::vector<std::size_t>> by_first_;  // first character → tokens, longest first
};

}  // namespace mmalign::io::detail
