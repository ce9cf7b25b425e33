// mmalign/io/detail/bpe.hpp — byte-pair encoding of one word (Sennrich et al. 2016,
// https://arxiv.org/abs/1508.07909), as Hugging Face tokenizers' BPE model computes it; shared by
// CLIP's tokenizer and the coming GPT-2/OPT (byte-level) ones.
//
// A word (one pre-token, UTF-8) becomes one symbol per character — with an optional prefix on
// every symbol but the first (continuing_subword_prefix) and an optional suffix on the last
// (end_of_word_suffix: "</w>" for CLIP, none for GPT-2) — and the merge rules then join adjacent
// pairs, the pair of lowest rank first and the leftmost among equal ranks, until no pair has a
// rule. A character without a symbol becomes the unknown token (consecutive ones fused into one
// when fuse_unk is set), or its bytes' "<0xXX>" tokens with byte_fallback, or is dropped when the
// model has neither (tokenizers' BPE::merge_word).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mmalign/io/detail/utf8.hpp"

namespace mmalign::io::detail {

/// Merge rules: a pair of symbol ids → its rank (lower merges first) and the id of the merged symbol.
class BpeMerges {
public:
    struct Merge {
        std::int32_t rank;
        std::int32_t merged;
    };

    /// A repeated pair keeps its last rank: tokenizers collects the merges into a HashMap and
    /// OpenAI's bpe_ranks is a dict, so a later entry overwrites an earlier one in both.
    void add(std::int32_t left, std::int32_t right, std::int32_t rank, std::int32_t merged) {
        rules_[key(left, right)] = {rank, merged};
    }
    const Merge* find(std::int32_t left, std::int32_t right) const {
        auto it = rules_.find(key(left, right));
        return it == rules_.end() ? nullptr : &it->second;
    }
    std::size_t size() const { return rules_.size(); }

private:
    static std::uint64_t key(std::int32_t a, std::int32_t b) {
        return static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32 | static_cast<std::uint32_t>(b);
    }
    std::unordered_map<std::uint64_t, Merge> rules_;
};

/// Applies `merges` to the symbols in place (tokenizers' Word::merge_all): a heap of
/// (rank, position) candidates, lowest rank first and leftmost among equals; a candidate made
/// stale by an earlier merge (a neighbour merged away, or the pair changed) is skipped when popped.
inline void bpe_merge(std::vector<std::int32_t>& symbols, const BpeMerges& merges) {
    struct Sym {
        std::int32_t id;
        std::int32_t prev, next;  // neighbours still present; -1 at the ends
    };
    const auto n = static_cast<std::int32_t>(symbols.size());
    if (n < 2) return;
    std::vector<Sym> sym(symbols.size());
    for (std::int32_t k = 0; k < n; ++k) sym[static_cast<std::size_t>(k)] = {symbols[static_cast<std::size_t>(k)], k - 1, k + 1};
    sym.back().next = -1;
    struct Candidate {
        std::int32_t rank, pos, merged;
        bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
    auto at = [&](std::int32_t k) -> Sym& { return sym[static_cast<std::size_t>(k)]; };
    auto push = [&](std::int32_t pos) {
        const std::int32_t nx = at(pos).next;
        if (nx < 0) return;
        if (const auto* m = merges.find(at(pos).id, at(nx).id)) heap.push({m->rank, pos, m->merged});
    };
    for (std::int32_t k = 0; k + 1 < n; ++k) push(k);
    while (!heap.empty()) {
        const Candidate c = heap.top();
        heap.pop();
        Sym& left = at(c.pos);
        if (left.id < 0 || left.next < 0) continue;  // merged away, or now the last symbol
        Sym& right = at(left.next);
        const auto* m = merges.find(left.id, right.id);
        if (!m || m->merged != c.merged) continue;  // the pair here changed since the push
        left.id = c.merged;
        right.id = -1;
        left.next = right.next;
        if (right.next >= 0) at(right.next).prev = c.pos;
        if (left.prev >= 0) push(left.prev);
        push(c.pos);
    }
    std::size_t out = 0;
    for (std::int32_t k = 0; k >= 0; k = at(k).next) symbols[out++] = at(k).id;
    symbols.resize(out);
}

/// Hashes std::string keys and std::string_view probes alike, so that a lookup allocates nothing.
struct TransparentStringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

/// Words already encoded, shared by every copy of a tokenizer (thread-safe). Bounded: when full
/// it starts over, and only short words are kept, since long ones rarely repeat.
class BpeCache {
public:
    static constexpr std::size_t capacity = 20000, max_word_bytes = 64;

    bool lookup(std::string_view word, std::vector<std::int32_t>& out) const {
        if (word.size() > max_word_bytes) return false;
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = map_.find(word);
        if (it == map_.end()) return false;
        out.insert(out.end(), it->second.begin(), it->second.end());
        return true;
    }
    void insert(std::string_view word, std::vector<std::int32_t> ids) const {
        if (word.size() > max_word_bytes) return;
        std::lock_guard<std::mutex> lock(mutex_);
        if (map_.size() >= capacity) map_.clear();
        map_.emplace(std::string(word), std::move(ids));
    }

private:
    mutable std::mutex mutex_;
    mutable std::unordered_map<std::string, std::vector<std::int32_t>, TransparentStringHash, std::equal_to<>> map_;
};

/// A BPE model: vocabulary, merge rules, the symbol affixes and the unknown-character policy.
/// Filled once (add_token, add_merge, set_unknown), then used read-only from any thread.
class BpeModel {
public:
    struct Affixes {
        std::string end_of_word_suffix;         // after a word's last symbol ("</w>" for CLIP)
        std::string continuing_subword_prefix;  // before every symbol but the first
    };
    struct Unknown {
        std::int32_t id = -1;        // the unknown token; -1: characters without a symbol are dropped
        bool fuse = false;           // consecutive unknown characters become one unknown token
        bool byte_fallback = false;  // try the character's bytes as "<0x41>"-style tokens first
    };

    BpeModel() = default;
    explicit BpeModel(Affixes affixes) : affixes_(std::move(affixes)) {}
    BpeModel(const BpeModel&) = delete;  // the cache holds a mutex; share a model instead
    BpeModel& operator=(const BpeModel&) = delete;

    const Affixes& affixes() const { return affixes_; }
    const Unknown& unknown() const { return unknown_; }
    void set_unknown(Unknown u) { unknown_ = u; }

    // ---- vocabulary ----------------------------------------------------------------------------
    /// Adds token ↔ id; ids need not be dense, but the id table is as long as the largest id, so
    /// callers bound ids before adding them.
    void add_token(const std::string& token, std::int32_t id) {
        vocab_[token] = id;
        if (static_cast<std::size_t>(id) >= tokens_.size()) tokens_.resize(static_cast<std::size_t>(id) + 1);
        tokens_[static_cast<std::size_t>(id)] = token;
        index_single_character(token, id);
    }
    /// The id of a token, or -1.
    std::int32_t id_of(std::string_view token) const {
        auto it = vocab_.find(token);
        return it == vocab_.end() ? -1 : it->second;
    }
    /// The token of an id; null for an id no token has.
    const std::string* token_of(std::int32_t id) const {
        if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size()) return nullptr;
        const std::string& t = tokens_[static_cast<std::size_t>(id)];
        if (t.empty()) {  // a hole in the ids, unless "" itself is the token of this id
            auto it = vocab_.find(t);
            if (it == vocab_.end() || it->second != id) return nullptr;
        }
        return &t;
    }
    /// One more than the largest id (HF's len(tokenizer) when ids are dense).
    std::size_t id_bound() const { return tokens_.size(); }
    std::size_t vocab_size() const { return vocab_.size(); }

    // ---- merges --------------------------------------------------------------------------------
    /// The token a merge of the symbols a and b produces: a + b, without b's continuing-subword
    /// prefix (tokenizers' BpeBuilder names merged tokens so).
    std::string merge_result(std::string_view a, std::string_view b) const {
        const std::string& prefix = affixes_.continuing_subword_prefix;
        if (!prefix.empty() && b.starts_with(prefix)) b.remove_prefix(prefix.size());
        return std::string(a) + std::string(b);
    }
    void add_merge(std::int32_t left, std::int32_t right, std::int32_t rank, std::int32_t merged) {
        merges_.add(left, right, rank, merged);
    }
    const BpeMerges& merges() const { return merges_; }

    // ---- encoding ------------------------------------------------------------------------------
    /// The first symbols of a word (valid UTF-8), one per character, before any merge.
    std::vector<std::int32_t> initial_symbols(std::string_view word) const {
        std::vector<std::int32_t> ids;
        ids.reserve(word.size());
        bool unknown_pending = false;  // an unknown token not yet emitted (fuse extends it)
        std::string affixed;
        for (std::size_t i = 0; i < word.size();) {
            const char* why = nullptr;
            const int n = utf8_length(word, i, &why);
            const std::size_t len = n > 0 ? static_cast<std::size_t>(n) : 1;
            const bool first = i == 0, last = i + len >= word.size();
            const std::string_view ch = word.substr(i, len);
            i += len;
            const std::int32_t id = symbol_id(ch, first, last, affixed);
            if (id >= 0) {
                if (unknown_pending) ids.push_back(unknown_.id), unknown_pending = false;
                ids.push_back(id);
                continue;
            }
            // As tokenizers does, the fallback bytes are those of the affixed symbol, and they do
            // not emit a pending unknown token first (it follows them).
            if (unknown_.byte_fallback && append_fallback_bytes(affix(ch, first, last, affixed), ids)) continue;
            if (unknown_.id < 0) continue;  // no unknown token: the character is dropped
            if (unknown_pending && !unknown_.fuse) ids.push_back(unknown_.id);
            unknown_pending = true;
        }
        if (unknown_pending) ids.push_back(unknown_.id);
        return ids;
    }

    /// Appends the ids of one word (valid UTF-8): initial symbols, then the merges. Cached.
    void encode_word(std::string_view word, std::vector<std::int32_t>& out) const {
        if (cache_.lookup(word, out)) return;
        std::vector<std::int32_t> ids = initial_symbols(word);
        bpe_merge(ids, merges_);
        out.insert(out.end(), ids.begin(), ids.end());
        cache_.insert(word, std::move(ids));
    }

private:
    // Single characters below U+0180 (ASCII and the byte-level alphabet, which is U+0021..U+0143)
    // are looked up in arrays: most symbols of a byte-level word are such characters.
    static constexpr char32_t indexed_below = 0x180;

    void index_single_character(const std::string& token, std::int32_t id) {
        if (!affixes_.continuing_subword_prefix.empty()) return;  // the arrays serve only prefix-free models
        const std::string& suffix = affixes_.end_of_word_suffix;
        const bool with_suffix = !suffix.empty() && token.size() > suffix.size() && token.ends_with(suffix);
        std::string_view ch(token.data(), with_suffix ? token.size() - suffix.size() : token.size());
        const char* why = nullptr;
        if (ch.empty() || utf8_length(ch, 0, &why) != static_cast<int>(ch.size())) return;
        const char32_t c = utf8_value(ch, 0, static_cast<int>(ch.size()));
        if (c >= indexed_below) return;
        (with_suffix ? last_char_id_ : char_id_)[c] = id;
        if (!with_suffix && suffix.empty()) last_char_id_[c] = id;
    }

    /// The id of ch as a symbol at that place in the word, or -1.
    std::int32_t symbol_id(std::string_view ch, bool first, bool last, std::string& scratch) const {
        if (affixes_.continuing_subword_prefix.empty()) {
            const char* why = nullptr;
            if (utf8_length(ch, 0, &why) == static_cast<int>(ch.size())) {
                const char32_t c = utf8_value(ch, 0, static_cast<int>(ch.size()));
                if (c < indexed_below) return (last ? last_char_id_ : char_id_)[c];
            }
        }
        return id_of(affix(ch, first, last, scratch));
    }

    /// ch with the prefix (not first) and suffix (last) it takes as a symbol, built in `out`.
    const std::string& affix(std::string_view ch, bool first, bool last, std::string& out) const {
        out.clear();
        if (!first) out += affixes_.continuing_subword_prefix;
        out += ch;
        if (last) out += affixes_.end_of_word_suffix;
        return out;
    }

    // "<0xE6>"-style tokens for each byte of an unknown symbol (tokenizers' byte_fallback, the
    // format of SentencePiece's byte pieces); all or nothing.
    bool append_fallback_bytes(std::string_view symbol, std::vector<std::int32_t>& ids) const {
        const std::size_t start = ids.size();
        for (char b : symbol) {
            char name[8];
            std::snprintf(name, sizeof name, "<0x%02X>", static_cast<unsigned>(static_cast<unsigned char>(b)));
            const std::int32_t id = id_of(name);
            if (id < 0) {
                ids.resize(start);
                return false;
            }
            ids.push_back(id);
        }
        return true;
    }

    static std::array<std::int32_t, indexed_below> unset() {
        std::array<std::int32_t, indexed_below> a;
        a.fill(-1);
        return a;
    }

    Affixes affixes_;
    Unknown unknown_;
    std::unordered_map<std::string, std::int32_t, TransparentStringHash, std::equal_to<>> vocab_;
    std::vector<std::string> tokens_;
    std::array<std::int32_t, indexed_below> char_id_ = unset(), last_char_id_ = unset();
    BpeMerges merges_;
    BpeCache cache_;
};

}  // namespace mmalign::io::detail
