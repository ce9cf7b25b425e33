// mmalign/io/detail/wordpiece.hpp — the WordPiece model (Schuster & Nakajima 2012; BERT, Devlin
// et al. 2019, https://arxiv.org/abs/1810.04805) and its decoder, as Hugging Face tokenizers
// computes them (tokenizers/src/models/wordpiece/mod.rs, decoders/wordpiece.rs).
//
// Encoding one word (a pre-token): a word longer than max_input_chars_per_word characters is the
// unknown token; otherwise the longest vocabulary entry that starts the word is taken, then the
// longest "##"-prefixed entry that starts the rest, and so on; when some rest has no entry at
// all, the whole word becomes the unknown token (not only the rest).
// Decoding: tokens joined with a space, except that a token starting with the prefix is glued to
// the one before it (prefix removed); with cleanup, each token then goes through the replacements
// of decoder_cleanup (" ." → ".", " 's" → "'s", ...), one token at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mmalign/core/error.hpp"
#include "mmalign/io/detail/utf8.hpp"

namespace mmalign::io::detail {

/// Every occurrence of `from` in s replaced by `to`, scanning left to right without overlaps
/// (Rust's str::replace and Python's str.replace).
inline std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
    std::string out;
    out.reserve(s.size());
    std::size_t i = 0;
    for (std::size_t hit; (hit = s.find(from, i)) != std::string_view::npos; i = hit + from.size()) {
        out.append(s.substr(i, hit - i));
        out.append(to);
    }
    out.append(s.substr(i));
    return out;
}

/// The WordPiece decoder's cleanup (tokenizers' decoders::wordpiece::cleanup), in its order.
inline std::string decoder_cleanup(std::string_view s) {
    // Every rule starts with a space followed by one of . ? ! , ' n d: without such a pair,
    // nothing changes (the common case: a word after its space).
    bool candidate = false;
    for (std::size_t i = s.find(' '); i != std::string_view::npos && !candidate; i = s.find(' ', i + 1))
        candidate = i + 1 < s.size() && std::string_view(".?!,'nd").find(s[i + 1]) != std::string_view::npos;
    if (!candidate) return std::string(s);
    static constexpr std::pair<std::string_view, std::string_view> rules[] = {
        {" .", "."},     {" ?", "?"},     {" !", "!"},           {" ,", ","},     {" ' ", "'"},    {" n't", "n't"},
        {" 'm", "'m"},   {" do not", " don't"}, {" 's", "'s"},   {" 've", "'ve"}, {" 're", "'re"},
    };
    std::string out(s);
    for (const auto& [from, to] : rules)
        if (out.find(from) != std::string::npos) out = replace_all(out, from, to);
    return out;
}

/// transformers' PreTrainedTokenizerBase.clean_up_tokenization (what clean_up_tokenization_spaces
/// applies to the decoded text): the decoder's list without " do not".
inline std::string clean_up_tokenization(std::string_view s) {
    static constexpr std::pair<std::string_view, std::string_view> rules[] = {
        {" .", "."},   {" ?", "?"},     {" !", "!"},   {" ,", ","},     {" ' ", "'"},
        {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
    };
    std::string out(s);
    for (const auto& [from, to] : rules)
        if (out.find(from) != std::string::npos) out = replace_all(out, from, to);
    return out;
}

/// tokenizers' WordPiece decoder over the tokens of one sequence.
inline std::string wordpiece_decode(const std::vector<std::string_view>& tokens, std::string_view prefix, bool cleanup) {
    std::string out;
    std::string piece;
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        std::string_view t = tokens[i];
        piece.clear();
        if (i != 0) {
            // (An empty prefix matches every token, so such a decoder glues all of them.)
            if (t.starts_with(prefix)) t.remove_prefix(prefix.size());
            else piece.push_back(' ');
        }
        piece.append(t);
        out += cleanup ? decoder_cleanup(piece) : piece;
    }
    return out;
}

/// The vocabulary and the greedy longest-match encoder.
class WordPieceModel {
public:
    struct Config {
        std::string unk_token = "[UNK]";
        std::string continuing_subword_prefix = "##";
        std::size_t max_input_chars_per_word = 100;
    };

    WordPieceModel() = default;
    explicit WordPieceModel(Config c) : config_(std::move(c)) {}
    /// Replaces the settings, keeping the vocabulary.
    void configure(Config c) { config_ = std::move(c); }

    /// Adds an entry; false (and nothing added) when the token or the id is already present.
    bool add(std::string token, std::int32_t id) {
        if (id < 0 || ids_.count(token)) return false;
        if (static_cast<std::size_t>(id) >= tokens_.size()) tokens_.resize(static_cast<std::size_t>(id) + 1);
        auto& slot = tokens_[static_cast<std::size_t>(id)];
        if (slot) return false;
        slot = token;
        ids_.emplace(std::move(token), id);
        return true;
    }
    void reserve(std::size_t n) {
        ids_.reserve(n);
        tokens_.reserve(n);
    }

    /// The id of a vocabulary entry, or -1.
    std::int32_t id_of(std::string_view token) const {
        auto it = ids_.find(token);
        return it == ids_.end() ? -1 : it->second;
    }
    /// The entry of `id`, or null.
    const std::string* token_of(std::int32_t id) const {
        if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size() || !tokens_[static_cast<std::size_t>(id)]) return nullptr;
        return &*tokens_[static_cast<std::size_t>(id)];
    }
    /// Number of entries.
    std::size_t size() const { return ids_.size(); }
    /// One past the largest id.
    std::size_t id_bound() const { return tokens_.size(); }
    const Config& config() const { return config_; }
    /// The id of config().unk_token, or -1 when the vocabulary lacks it (encode then refuses
    /// words it cannot spell; tokenizers fails the same way, with MissingUnkToken).
    std::int32_t unk_id() const { return id_of(config_.unk_token); }

    /// Appends the ids of one word (a pre-token, already normalized).
    void encode_word(std::u32string_view word, std::vector<std::int32_t>& out) const {
        if (word.empty()) return;
        if (word.size() > config_.max_input_chars_per_word) {
            out.push_back(checked_unk());
            return;
        }
        const std::string w = to_utf8(word);
        std::vector<std::size_t> at(word.size() + 1);  // byte offset of each character
        for (std::size_t k = 0, b = 0; k <= word.size(); ++k) {
            at[k] = b;
            if (k < word.size()) b += utf8_size(word[k]);
        }
        const std::size_t first = out.size();
        std::string probe;
        for (std::size_t start = 0; start < word.size();) {
            std::int32_t found = -1;
            std::size_t end = word.size();
            for (; end > start; --end) {
                std::string_view piece(w.data() + at[start], at[end] - at[start]);
                if (start > 0) {
                    probe.assign(config_.continuing_subword_prefix);
                    probe.append(piece);
                    piece = probe;
                }
                found = id_of(piece);
                if (found >= 0) break;
            }
            if (found < 0) {
                out.resize(first);
                out.push_back(checked_unk());
                return;
            }
            out.push_back(found);
            start = end;
        }
    }

private:
    static std::size_t utf8_size(char32_t c) { return c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4; }

    std::int32_t checked_unk() const {
        const std::int32_t id = unk_id();
        if (id < 0) throw ArgumentError("WordPieceModel: the unknown token '" + config_.unk_token + "' is not in the vocabulary");
        return id;
    }

    // Transparent hashing: lookups by std::string_view allocate nothing.
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };

    Config config_;
    std::unordered_map<std::string, std::int32_t, Hash, std::equal_to<>> ids_;
    std::vector<std::optional<std::string>> tokens_;
};

}  // namespace mmalign::io::detail
