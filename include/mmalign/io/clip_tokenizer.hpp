// mmalign/io/clip_tokenizer.hpp — CLIP's byte-level BPE tokenizer, id for id equal to Hugging
// Face's tokenizers-backed CLIPTokenizer (transformers v5; CLIPTokenizerFast in v4), models.md §1.5.
//
//   1. special tokens (<|startoftext|>, <|endoftext|>) are cut out of the raw text first;
//   2. each other segment: NFC, every \s+ run -> " ", lowercase per character;
//   3. Split keeps the matches of <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|
//      [\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+ (ordered alternation); ByteLevel then maps UTF-8 bytes
//      through GPT-2's table, and its own regex cuts a special-token string that normalization
//      produced ("<|ENDOFTEXT|>") into "<|", "endoftext", "|>";
//   4. BPE per piece, "</w>" on the last byte symbol, lowest merge rank first;
//   5. [bos] ids [eos]; a batch is right-padded with pad_id() and a 0/1 attention_mask.
// The Unicode data (detail/unicode_tables.hpp) was read back from `tokenizers` itself.
// Text is bytes: invalid UTF-8 throws InvalidUtf8Error (an ArgumentError) with the byte offset;
// HF never sees such input, since a Python str holds only valid scalar values.
// A tokenizer is immutable after loading; copies share their tables and one thread-safe cache.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "mmalign/core/error.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/core/tensor.hpp"
#include "mmalign/io/detail/unicode_tables.hpp"
#include "mmalign/io/gzip.hpp"

namespace mmalign::io {

/// Text given to the tokenizer is not valid UTF-8; offset() is the byte where the bad sequence starts.
class InvalidUtf8Error : public ArgumentError {
public:
    InvalidUtf8Error(std::size_t offset, const std::string& why)
        : ArgumentError("ClipTokenizer: invalid UTF-8 at byte " + std::to_string(offset) + ": " + why),
          offset_(offset) {}
    std::size_t offset() const { return offset_; }

private:
    std::size_t offset_;
};

namespace detail::clip {

namespace uc = detail::unicode;

// ---- UTF-8 -------------------------------------------------------------------------------------

/// Length of the valid sequence at s[i], or 0 with `why` set. Strict RFC 3629: no overlongs,
/// surrogates or values above U+10FFFF (Rust's str and Python's codec agree).
inline int utf8_length(std::string_view s, std::size_t i, const char** why) {
    auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    unsigned c = b(i);
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
        unsigned d = b(i + static_cast<std::size_t>(k));
        if (d < (k == 1 ? lo : 0x80u) || d > (k == 1 ? hi : 0xBFu)) {
            *why = k == 1 && d >= 0x80 && d <= 0xBF ? (c == 0xED ? "surrogate code point" : c == 0xF4 ? "code point above U+10FFFF" : "overlong encoding")
                                                     : "missing continuation byte";
            return 0;
        }
    }
    return n;
}

inline char32_t utf8_value(std::string_view s, std::size_t i, int n) {
    auto b = [&](std::size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[k])); };
    switch (n) {
        case 1: return b(i);
        case 2: return (b(i) & 0x1F) << 6 | (b(i + 1) & 0x3F);
        case 3: return (b(i) & 0x0F) << 12 | (b(i + 1) & 0x3F) << 6 | (b(i + 2) & 0x3F);
        default: return (b(i) & 0x07) << 18 | (b(i + 1) & 0x3F) << 12 | (b(i + 2) & 0x3F) << 6 | (b(i + 3) & 0x3F);
    }
}

inline void validate_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const char* why = nullptr;
        int n = utf8_length(s, i, &why);
        if (n == 0) throw InvalidUtf8Error(i, why);
        i += static_cast<std::size_t>(n);
    }
}

/// Decodes already-validated UTF-8.
inline std::u32string to_u32(std::string_view s) {
    std::u32string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        const char* why = nullptr;
        int n = utf8_length(s, i, &why);
        out.push_back(utf8_value(s, i, n));
        i += static_cast<std::size_t>(n);
    }
    return out;
}

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

/// Bytes to text the way Rust's String::from_utf8_lossy does (what tokenizers' ByteLevel decoder
/// calls): each maximal invalid subpart becomes one U+FFFD.
inline std::string utf8_lossy(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        const char* why = nullptr;
        int n = utf8_length(s, i, &why);
        if (n > 0) {
            out.append(s.substr(i, static_cast<std::size_t>(n)));
            i += static_cast<std::size_t>(n);
            continue;
        }
        // The maximal subpart: the lead byte plus the continuation bytes that were still valid.
        std::size_t k = 1;
        unsigned c = static_cast<unsigned char>(s[i]);
        if (c >= 0xC2 && c <= 0xF4) {
            unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
            unsigned hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
            std::size_t need = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            while (k < need && i + k < s.size()) {
                unsigned d = static_cast<unsigned char>(s[i + k]);
                if (d < (k == 1 ? lo : 0x80u) || d > (k == 1 ? hi : 0xBFu)) break;
                ++k;
            }
        }
        out += "\xEF\xBF\xBD";
        i += k;
    }
    return out;
}

// ---- Unicode properties (tables generated from tokenizers) -------------------------------------

/// 0 other, 1 \p{L}, 2 \p{N}, as tokenizers' Oniguruma regexes see them.
inline int char_class(char32_t c) {
    if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ? 1 : (c >= '0' && c <= '9') ? 2 : 0;
    auto it = std::upper_bound(std::begin(uc::class_runs), std::end(uc::class_runs), static_cast<std::uint32_t>(c) << 2 | 3u);
    return static_cast<int>(*(it - 1) & 3u);
}

inline bool is_space(char32_t c) {
    if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
    return std::binary_search(std::begin(uc::white_space), std::end(uc::white_space), c);
}

/// Rust's char::to_lowercase, which tokenizers' Lowercase applies to each character on its own
/// (so a final capital sigma becomes σ, not Python's ς).
inline void append_lower(std::u32string& out, char32_t c) {
    if (c < 0x80) {
        out.push_back(c >= 'A' && c <= 'Z' ? c + 32 : c);
        return;
    }
    for (const auto& m : uc::lower_multi) {
        if (m.cp == c) {
            for (char32_t x : m.to)
                if (x) out.push_back(x);
            return;
        }
    }
    auto it = std::upper_bound(std::begin(uc::lower_runs), std::end(uc::lower_runs), c,
                               [](char32_t v, const uc::LowerRun& r) { return v < r.first; });
    if (it != std::begin(uc::lower_runs)) {
        const auto& r = *(it - 1);
        if (c <= r.last && (c - r.first) % r.stride == 0) {
            out.push_back(static_cast<char32_t>(static_cast<std::int64_t>(c) + r.delta));
            return;
        }
    }
    out.push_back(c);
}

inline int combining_class(char32_t c) {
    if (c < 0x300) return 0;
    auto it = std::upper_bound(std::begin(uc::ccc_runs), std::end(uc::ccc_runs), static_cast<std::uint32_t>(c) << 8 | 0xFFu);
    return it == std::begin(uc::ccc_runs) ? 0 : static_cast<int>(*(it - 1) & 0xFFu);
}

inline constexpr char32_t s_base = 0xAC00, l_base = 0x1100, v_base = 0x1161, t_base = 0x11A7;
inline constexpr char32_t l_count = 19, v_count = 21, t_count = 28, s_count = 11172;

inline void append_nfd(std::u32string& out, char32_t c) {
    if (c >= s_base && c < s_base + s_count) {  // Hangul syllables decompose algorithmically
        char32_t i = c - s_base;
        out.push_back(l_base + i / (v_count * t_count));
        out.push_back(v_base + (i % (v_count * t_count)) / t_count);
        if (i % t_count) out.push_back(t_base + i % t_count);
        return;
    }
    if (c < 0xC0) {
        out.push_back(c);
        return;
    }
    auto it = std::lower_bound(std::begin(uc::decompositions), std::end(uc::decompositions), c,
                               [](const uc::Decomposition& d, char32_t v) { return d.cp < v; });
    if (it == std::end(uc::decompositions) || it->cp != c) {
        out.push_back(c);
        return;
    }
    append_nfd(out, it->first);
    if (it->second) append_nfd(out, it->second);
}

struct CompositionTable {
    std::vector<std::pair<std::uint64_t, char32_t>> pairs;  // (first << 21 | second) -> composite, sorted
    CompositionTable() {
        for (const auto& d : uc::decompositions) {
            if (!d.second || std::binary_search(std::begin(uc::composition_exclusions),
                                                std::end(uc::composition_exclusions), d.cp))
                continue;
            pairs.emplace_back(static_cast<std::uint64_t>(d.first) << 21 | d.second, d.cp);
        }
        std::sort(pairs.begin(), pairs.end());
    }
};

inline char32_t compose(char32_t a, char32_t b) {
    if (a >= l_base && a < l_base + l_count && b >= v_base && b < v_base + v_count)
        return s_base + ((a - l_base) * v_count + (b - v_base)) * t_count;
    if (a >= s_base && a < s_base + s_count && (a - s_base) % t_count == 0 && b > t_base && b < t_base + t_count)
        return a + (b - t_base);
    static const CompositionTable table;
    std::uint64_t key = static_cast<std::uint64_t>(a) << 21 | b;
    auto it = std::lower_bound(table.pairs.begin(), table.pairs.end(), std::pair<std::uint64_t, char32_t>{key, 0});
    return it != table.pairs.end() && it->first == key ? it->second : 0;
}

/// Unicode NFC (decompose, canonical order, compose), with the Unicode version tokenizers uses.
inline std::u32string nfc(std::u32string_view s) {
    // Below U+0300 nothing decomposes into, or composes with, anything that follows.
    if (std::all_of(s.begin(), s.end(), [](char32_t c) { return c < 0x300; })) return std::u32string(s);
    std::u32string d;
    d.reserve(s.size() + 8);
    for (char32_t c : s) append_nfd(d, c);
    std::vector<std::pair<int, char32_t>> marks(d.size());  // (combining class, character)
    for (std::size_t i = 0; i < d.size(); ++i) marks[i] = {combining_class(d[i]), d[i]};
    // Canonical order: a stable sort of each run of non-starters by class (O(n log n), so a
    // long run of marks costs no more than it does in tokenizers).
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
    std::vector<int> cc(d.size());
    for (std::size_t i = 0; i < d.size(); ++i) cc[i] = marks[i].first, d[i] = marks[i].second;
    std::u32string out;
    out.reserve(d.size());
    std::size_t starter = std::u32string::npos;
    int last_cc = 0;
    for (std::size_t i = 0; i < d.size(); ++i) {
        char32_t c = d[i];
        // Not blocked: nothing uncomposed between the starter and c, or everything between has a
        // lower, non-zero class.
        if (starter != std::u32string::npos && (last_cc < cc[i] || (last_cc == 0 && out.size() == starter + 1))) {
            if (char32_t comp = compose(out[starter], c)) {
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

/// tokenizers' CLIP normalizer: NFC, then Replace(\s+, " "), then Lowercase.
inline std::u32string normalize(std::u32string_view s) {
    std::u32string n = nfc(s);
    std::u32string out;
    out.reserve(n.size());
    for (std::size_t i = 0; i < n.size();) {
        if (is_space(n[i])) {
            out.push_back(U' ');
            while (i < n.size() && is_space(n[i])) ++i;
        } else {
            append_lower(out, n[i++]);
        }
    }
    return out;
}

// ---- GPT-2 byte <-> unicode table ----------------------------------------------------------------

/// bytes_to_unicode(): printable bytes 33-126, 161-172, 174-255 map to themselves; the other 68,
/// in increasing byte order, to U+0100 + n. The table order (printable first) is also the order
/// of the first 256 vocabulary ids.
inline const std::array<char32_t, 256>& byte_to_char() {
    static const std::array<char32_t, 256> table = [] {
        std::array<char32_t, 256> t{};
        char32_t n = 0;
        for (int b = 0; b < 256; ++b) {
            bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
            t[static_cast<std::size_t>(b)] = printable ? static_cast<char32_t>(b) : 0x100 + n++;
        }
        return t;
    }();
    return table;
}

/// The bytes in table order (printable ranges first), as OpenAI's vocabulary lists them.
inline std::vector<int> bytes_in_table_order() {
    std::vector<int> order;
    for (int b = 0; b < 256; ++b)
        if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) order.push_back(b);
    for (int b = 0; b < 256; ++b)
        if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) order.push_back(b);
    return order;
}

inline std::string read_file(const std::string& path, const char* what) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw IoError(std::string(what) + ": cannot open '" + path + "'");
    std::ostringstream ss;
    ss << f.rdbuf();
    if (f.bad()) throw IoError(std::string(what) + ": error reading '" + path + "'");
    return ss.str();
}

struct SpecialToken {
    std::string content;
    std::int32_t id = -1;
    bool normalized = false;  // matched in the normalized text instead of the raw text
    bool special = true;      // dropped by decode(..., skip_special_tokens = true)
};

}  // namespace detail::clip

class ClipTokenizer {
public:
    struct Options {
        enum class Padding {
            longest,     // HF padding=True: to the longest row of the batch
            max_length,  // HF padding="max_length": to the context length
            none         // HF padding=False: every row must already have the same length
        };
        /// Longest row, bos and eos included; empty means model_max_length() (77 for CLIP).
        std::optional<index_t> context_length = std::nullopt;
        /// Cut longer rows to the context length, keeping bos first and eos last (HF
        /// truncation=True). Without it a longer row is an ArgumentError under max_length
        /// padding, and pads the batch to its own length under longest padding.
        bool truncate = true;
        Padding padding = Padding::longest;
    };

    /// [N, T] row-major, as HF's `tokenizer(texts, ...)` returns them.
    struct Batch {
        Tensor<std::int32_t> input_ids;
        Tensor<std::int32_t> attention_mask;  // 1 for tokens, 0 for padding
    };

    /// vocab.json + merges.txt as in a Hugging Face model folder; special tokens take CLIP's
    /// defaults (<|startoftext|>, <|endoftext|> as eos, pad and unk), model_max_length 77.
    static ClipTokenizer from_hf_files(const std::string& vocab_json, const std::string& merges_txt) {
        ClipTokenizer t;
        auto& m = *t.m_;
        m.load_vocab_json(vocab_json);
        m.load_merges_txt(merges_txt);
        m.set_specials({}, vocab_json);
        return t;
    }

    /// A Hugging Face folder: vocab.json and merges.txt (or, without vocab.json, a tokenizer.json
    /// whose pipeline is checked to be CLIP's), plus tokenizer_config.json and
    /// special_tokens_map.json when present (special tokens, their `normalized` flag,
    /// model_max_length). As in transformers, special_tokens_map.json overrides the config's
    /// token entries unless the config has `added_tokens_decoder`.
    static ClipTokenizer from_hf_folder(const std::string& dir) {
        std::string base = dir.empty() || dir.back() == '/' ? dir : dir + "/";
        ClipTokenizer t;
        auto& m = *t.m_;
        SpecialConfig config;
        if (!exists(base + "vocab.json") && !exists(base + "tokenizer.json"))
            throw IoError("ClipTokenizer: '" + dir + "' has neither vocab.json (+ merges.txt) nor tokenizer.json");
        if (!exists(base + "vocab.json")) {
            auto added = m.load_tokenizer_json(base + "tokenizer.json");
            config = read_special_config(base);
            config.added.insert(config.added.begin(), added.begin(), added.end());
        } else {
            m.load_vocab_json(base + "vocab.json");
            m.load_merges_txt(base + "merges.txt");
            config = read_special_config(base);
        }
        m.set_specials(config, base);
        return t;
    }

    /// OpenAI's bpe_simple_vocab_16e6.txt, gzip-compressed or not (detected by its magic bytes).
    /// Built as clip/simple_tokenizer.py builds it: merges are lines 1..48894, and the vocabulary
    /// is the 256 byte symbols, the same with "</w>", each merge's result, then the two specials.
    static ClipTokenizer from_openai_bpe(const std::string& bpe_path) {
        ClipTokenizer t;
        t.m_->load_openai_bpe(bpe_path);
        t.m_->set_specials({}, bpe_path);
        return t;
    }

    /// Ids of `text` without bos/eos and without truncation (HF: `tokenizer(text,
    /// add_special_tokens=False)["input_ids"]`). Throws InvalidUtf8Error on invalid UTF-8.
    std::vector<std::int32_t> encode(std::string_view text) const {
        std::vector<std::int32_t> ids;
        m_->encode(text, ids);
        return ids;
    }

    /// HF's `tokenizer(texts, padding=True, truncation=True, max_length=model_max_length())`.
    // (A separate overload: GCC rejects `Options opt = {}` inside the class that defines Options.)
    Batch operator()(const std::vector<std::string>& texts) const { return (*this)(texts, Options{}); }

    /// HF's `tokenizer(texts, padding=..., truncation=..., max_length=...)`: each row is
    /// [bos] ids [eos], right-padded with pad_id().
    Batch operator()(const std::vector<std::string>& texts, const Options& opt) const {
        index_t ctx = opt.context_length.value_or(m_->model_max_length);
        bool needs_ctx = opt.truncate || opt.padding == Options::Padding::max_length;
        if (needs_ctx && ctx < 2)
            throw ArgumentError("ClipTokenizer: context_length " + std::to_string(ctx) +
                                " leaves no room for bos and eos (need at least 2)");
        std::vector<std::vector<std::int32_t>> rows(texts.size());
        index_t longest = 0;
        for (std::size_t i = 0; i < texts.size(); ++i) {
            auto& r = rows[i];
            r.push_back(m_->bos.id);
            m_->encode(texts[i], r);
            // HF truncation (longest_first, one sequence) drops content tokens from the end so
            // that content + 2 specials fit; eos stays last.
            if (opt.truncate && static_cast<index_t>(r.size()) + 1 > ctx) r.resize(static_cast<std::size_t>(ctx - 1));
            r.push_back(m_->eos.id);
            longest = std::max(longest, static_cast<index_t>(r.size()));
        }
        index_t width = longest;
        if (opt.padding == Options::Padding::max_length) {
            for (std::size_t i = 0; i < rows.size(); ++i)
                if (static_cast<index_t>(rows[i].size()) > ctx)
                    throw ArgumentError("ClipTokenizer: text " + std::to_string(i) + " has " +
                                        std::to_string(rows[i].size()) + " tokens, more than context_length " +
                                        std::to_string(ctx) + " (set truncate to cut it)");
            width = ctx;
        } else if (opt.padding == Options::Padding::none) {
            for (std::size_t i = 0; i < rows.size(); ++i)
                if (static_cast<index_t>(rows[i].size()) != longest)
                    throw ArgumentError("ClipTokenizer: padding none needs rows of equal length; text " +
                                        std::to_string(i) + " has " + std::to_string(rows[i].size()) +
                                        " tokens, the longest " + std::to_string(longest));
        }
        Batch b{Tensor<std::int32_t>({static_cast<index_t>(rows.size()), width}, m_->pad.id),
                Tensor<std::int32_t>({static_cast<index_t>(rows.size()), width}, 0)};
        for (std::size_t i = 0; i < rows.size(); ++i) {
            for (std::size_t j = 0; j < rows[i].size(); ++j) {
                b.input_ids(static_cast<index_t>(i), static_cast<index_t>(j)) = rows[i][j];
                b.attention_mask(static_cast<index_t>(i), static_cast<index_t>(j)) = 1;
            }
        }
        return b;
    }

    /// HF's `tokenizer.decode(ids)`: tokens joined, GPT-2 bytes mapped back (invalid UTF-8 becomes
    /// U+FFFD), every "</w>" replaced by a space, then Python's str.strip(). Ids outside the
    /// vocabulary are skipped, as tokenizers does.
    std::string decode(std::span<const std::int32_t> ids, bool skip_special_tokens = false) const {
        return m_->decode(ids, skip_special_tokens);
    }

    std::int32_t bos_id() const { return m_->bos.id; }
    std::int32_t eos_id() const { return m_->eos.id; }
    std::int32_t pad_id() const { return m_->pad.id; }
    std::int32_t unk_id() const { return m_->unk.id; }
    /// Number of distinct ids (HF `len(tokenizer)`): 49,408 for CLIP.
    index_t vocab_size() const { return static_cast<index_t>(m_->id_to_token.size()); }
    /// The default context length: tokenizer_config.json's model_max_length, else 77.
    index_t model_max_length() const { return m_->model_max_length; }
    /// The id of a vocabulary entry (byte-level form, e.g. "cat</w>"), if any.
    std::optional<std::int32_t> token_to_id(std::string_view token) const {
        auto it = m_->vocab.find(std::string(token));
        if (it == m_->vocab.end()) return std::nullopt;
        return it->second;
    }
    /// The vocabulary entry of `id` (byte-level form); empty for an unknown id.
    std::string id_to_token(std::int32_t id) const {
        if (id < 0 || static_cast<std::size_t>(id) >= m_->id_to_token.size()) return {};
        return m_->id_to_token[static_cast<std::size_t>(id)];
    }

private:
    struct SpecialConfig {
        std::map<std::string, detail::clip::SpecialToken> named;  // bos_token, eos_token, unk_token, pad_token
        std::vector<detail::clip::SpecialToken> added;            // added_tokens_decoder entries
        std::optional<index_t> model_max_length;
    };

    // Reads one special-token entry: a string, or an AddedToken dict {"content": .., "normalized": ..}.
    static std::optional<detail::clip::SpecialToken> parse_token(const nlohmann::json& v, const std::string& file,
                                                                 const std::string& key) {
        detail::clip::SpecialToken t;
        if (v.is_null()) return std::nullopt;
        if (v.is_string()) {
            t.content = v.get<std::string>();
        } else if (v.is_object() && v.contains("content") && v["content"].is_string()) {
            t.content = v["content"].get<std::string>();
            if (v.contains("normalized") && v["normalized"].is_boolean()) t.normalized = v["normalized"].get<bool>();
            if (v.contains("special") && v["special"].is_boolean()) t.special = v["special"].get<bool>();
        } else {
            throw IoError(file + ": '" + key + "' must be a string or an object with a string 'content'");
        }
        return t;
    }

    static nlohmann::json read_json(const std::string& path) {
        std::string text = detail::clip::read_file(path, "ClipTokenizer");
        try {
            return nlohmann::json::parse(text);
        } catch (const nlohmann::json::exception& e) {
            throw IoError("ClipTokenizer: '" + path + "' is not valid JSON: " + e.what());
        }
    }

    static bool exists(const std::string& path) { return static_cast<bool>(std::ifstream(path)); }

    static SpecialConfig read_special_config(const std::string& base) {
        SpecialConfig c;
        static constexpr const char* keys[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
        bool has_decoder = false;
        std::string config = base + "tokenizer_config.json";
        if (exists(config)) {
            nlohmann::json j = read_json(config);
            if (!j.is_object()) throw IoError("ClipTokenizer: '" + config + "' is not a JSON object");
            for (const char* k : keys)
                if (j.contains(k))
                    if (auto t = parse_token(j[k], config, k)) c.named[k] = *t;
            if (j.contains("model_max_length") && j["model_max_length"].is_number()) {
                double v = j["model_max_length"].get<double>();
                // transformers writes 1e30 (VERY_LARGE_INTEGER) for "no limit"; CLIP's is 77.
                if (v >= 2 && v < 1e9) c.model_max_length = static_cast<index_t>(v);
            }
            if (j.contains("added_tokens_decoder") && j["added_tokens_decoder"].is_object()) {
                has_decoder = true;
                for (const auto& [id, v] : j["added_tokens_decoder"].items())
                    if (auto t = parse_token(v, config, "added_tokens_decoder." + id)) c.added.push_back(*t);
            }
        }
        std::string map = base + "special_tokens_map.json";
        if (!has_decoder && exists(map)) {
            nlohmann::json j = read_json(map);
            if (!j.is_object()) throw IoError("ClipTokenizer: '" + map + "' is not a JSON object");
            for (const char* k : keys)
                if (j.contains(k))
                    if (auto t = parse_token(j[k], map, k)) c.named[k] = *t;
        }
        return c;
    }

    struct Model {
        std::unordered_map<std::string, std::int32_t> vocab;
        std::vector<std::string> id_to_token;
        // (left id << 32 | right id) -> (rank, merged id)
        std::unordered_map<std::uint64_t, std::pair<std::int32_t, std::int32_t>> merges;
        std::array<std::int32_t, 256> byte_id{}, byte_eow_id{};  // a byte's symbol alone / with "</w>"
        detail::clip::SpecialToken bos, eos, pad, unk;
        std::vector<detail::clip::SpecialToken> raw_specials, normalized_specials;
        std::vector<bool> is_special;
        index_t model_max_length = 77;

        mutable std::mutex cache_mutex;
        mutable std::unordered_map<std::string, std::vector<std::int32_t>> cache;
        static constexpr std::size_t cache_capacity = 20000, cache_max_word = 64;

        void add_token(const std::string& tok, std::int32_t id) {
            vocab[tok] = id;
            if (static_cast<std::size_t>(id) >= id_to_token.size()) id_to_token.resize(static_cast<std::size_t>(id) + 1);
            id_to_token[static_cast<std::size_t>(id)] = tok;
        }

        void load_vocab_json(const std::string& path) { load_vocab(read_json(path), "'" + path + "'"); }

        void load_vocab(const nlohmann::json& j, const std::string& where) {
            if (!j.is_object() || j.empty())
                throw IoError("ClipTokenizer: " + where + ": the vocabulary must be a non-empty JSON object {token: id}");
            for (const auto& [tok, v] : j.items()) {
                if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > 0x7FFFFFFF)
                    throw IoError("ClipTokenizer: " + where + ": token " + nlohmann::json(tok).dump() + " has id " +
                                  v.dump() + ", expected an integer in [0, 2^31)");
                auto id = static_cast<std::int32_t>(v.get<std::int64_t>());
                // Ids index a dense table, so a stray huge id must not become a huge allocation.
                if (static_cast<std::size_t>(id) > 16 * j.size() + 1024)
                    throw IoError("ClipTokenizer: " + where + ": id " + std::to_string(id) + " of token " +
                                  nlohmann::json(tok).dump() + " is far beyond the vocabulary size " +
                                  std::to_string(j.size()));
                if (static_cast<std::size_t>(id) < id_to_token.size() && !id_to_token[static_cast<std::size_t>(id)].empty())
                    throw IoError("ClipTokenizer: " + where + ": id " + std::to_string(id) + " is given to both " +
                                  nlohmann::json(id_to_token[static_cast<std::size_t>(id)]).dump() + " and " +
                                  nlohmann::json(tok).dump());
                add_token(tok, id);
            }
        }

        // A tokenizer.json (what transformers v5's save_pretrained writes): vocabulary, merges and
        // added tokens, after checking that its pipeline is CLIP's. A pre-v4.17 file with a bare
        // ByteLevel pre-tokenizer (transformers#12648) tokenizes differently and is refused.
        std::vector<detail::clip::SpecialToken> load_tokenizer_json(const std::string& path) {
            nlohmann::json j = read_json(path);
            std::string where = "'" + path + "'";
            auto fail = [&](const std::string& what) -> void {
                throw IoError("ClipTokenizer: " + where + ": " + what);
            };
            if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) fail("no \"model\" object");
            const auto& model = j["model"];
            if (model.value("type", "BPE") != "BPE") fail("model type is not BPE");
            auto str_or_empty = [&](const char* key) {
                return model.contains(key) && model[key].is_string() ? model[key].get<std::string>() : std::string();
            };
            if (str_or_empty("end_of_word_suffix") != "</w>" || !str_or_empty("continuing_subword_prefix").empty())
                fail("BPE model is not CLIP's (end_of_word_suffix \"</w>\", no continuing_subword_prefix)");
            const nlohmann::json clip_normalizer = nlohmann::json::parse(
                R"({"type":"Sequence","normalizers":[{"type":"NFC"},{"type":"Replace","pattern":{"Regex":"\\s+"},"content":" "},{"type":"Lowercase"}]})");
            if (!j.contains("normalizer") || j["normalizer"] != clip_normalizer)
                fail("normalizer is not CLIP's Sequence[NFC, Replace(\\s+, \" \"), Lowercase]");
            const auto& pre = j.value("pre_tokenizer", nlohmann::json());
            const std::string pattern =
                R"(<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+)";
            bool clip_pre = pre.is_object() && pre.value("type", "") == "Sequence" && pre.contains("pretokenizers") &&
                            pre["pretokenizers"].is_array() && pre["pretokenizers"].size() == 2;
            if (clip_pre) {
                const auto& split = pre["pretokenizers"][0];
                const auto& byte_level = pre["pretokenizers"][1];
                clip_pre = split.value("type", "") == "Split" && split.contains("pattern") &&
                           split["pattern"].is_object() && split["pattern"].value("Regex", "") == pattern &&
                           split.value("behavior", "") == "Removed" && split.value("invert", false) &&
                           byte_level.value("type", "") == "ByteLevel" && !byte_level.value("add_prefix_space", true) &&
                           byte_level.value("use_regex", true);
            }
            if (!clip_pre)
                fail("pre_tokenizer is not CLIP's Sequence[Split(<CLIP regex>, removed, invert), ByteLevel(no prefix "
                     "space)]; tokenizer.json files written before transformers v4.17 tokenize differently");
            if (!model.contains("vocab")) fail("model has no vocab");
            load_vocab(model["vocab"], where + " model.vocab");
            if (!model.contains("merges") || !model["merges"].is_array() || model["merges"].empty())
                fail("model has no merges");
            std::int32_t rank = 0;
            for (const auto& m : model["merges"]) {
                std::string at = where + " model.merges[" + std::to_string(rank) + "]";
                std::string a, b;
                if (m.is_string()) {  // "a b" (tokenizers < 0.20)
                    std::string line = m.get<std::string>();
                    std::size_t sp = line.find(' ');
                    if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos)
                        throw IoError("ClipTokenizer: " + at + ": expected two space-separated symbols");
                    a = line.substr(0, sp), b = line.substr(sp + 1);
                } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {  // ["a", "b"]
                    a = m[0].get<std::string>(), b = m[1].get<std::string>();
                } else {
                    throw IoError("ClipTokenizer: " + at + ": expected \"a b\" or [\"a\", \"b\"]");
                }
                add_merge(a, b, rank++, at);
            }
            std::vector<detail::clip::SpecialToken> added;
            for (const auto& t : j.value("added_tokens", nlohmann::json::array())) {
                if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") ||
                    !t["content"].is_string())
                    fail("added_tokens entries need an integer \"id\" and a string \"content\"");
                detail::clip::SpecialToken s{t["content"].get<std::string>()};
                s.normalized = t.value("normalized", false);
                s.special = t.value("special", true);
                auto id = t["id"].get<std::int64_t>();
                if (lookup(s.content) != id)
                    fail("added token " + nlohmann::json(s.content).dump() + " has id " + std::to_string(id) +
                         " but the vocabulary gives it " + std::to_string(lookup(s.content)));
                added.push_back(s);
            }
            return added;
        }

        std::int32_t lookup(const std::string& tok) const {
            auto it = vocab.find(tok);
            return it == vocab.end() ? -1 : it->second;
        }

        void add_merge(const std::string& a, const std::string& b, std::int32_t rank, const std::string& where) {
            std::int32_t ia = lookup(a), ib = lookup(b), im = lookup(a + b);
            const std::string& missing = ia < 0 ? a : ib < 0 ? b : a + b;
            if (ia < 0 || ib < 0 || im < 0)
                throw IoError("ClipTokenizer: " + where + ": merge '" + a + " " + b + "': '" + missing +
                              "' is not in the vocabulary");
            // A repeated pair keeps its last rank: tokenizers collects the merges into a HashMap
            // and OpenAI's bpe_ranks is a dict, so the later entry overwrites the earlier in both.
            merges[static_cast<std::uint64_t>(static_cast<std::uint32_t>(ia)) << 32 | static_cast<std::uint32_t>(ib)] = {rank, im};
        }

        // tokenizers' merges.txt reader: "#version" lines are skipped, every other line is
        // exactly two space-separated symbols, rank = order of appearance.
        void load_merges_txt(const std::string& path) {
            std::string text = detail::clip::read_file(path, "ClipTokenizer");
            std::size_t line_no = 0, start = 0;
            std::int32_t rank = 0;
            while (start < text.size()) {
                std::size_t end = text.find('\n', start);
                if (end == std::string::npos) end = text.size();
                std::string line = text.substr(start, end - start);
                start = end + 1;
                ++line_no;
                if (!line.empty() && line.back() == '\r') line.pop_back();
                if (line.starts_with("#version")) continue;
                std::string where = "'" + path + "' line " + std::to_string(line_no);
                std::size_t sp = line.find(' ');
                if (sp == std::string::npos || sp == 0 || sp + 1 == line.size() || line.find(' ', sp + 1) != std::string::npos)
                    throw IoError("ClipTokenizer: " + where + ": expected two space-separated symbols, found " +
                                  nlohmann::json(line).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
                try {
                    detail::clip::validate_utf8(line);
                } catch (const InvalidUtf8Error& e) {
                    throw IoError("ClipTokenizer: " + where + ": invalid UTF-8 at byte " + std::to_string(e.offset()) + " of the line");
                }
                add_merge(line.substr(0, sp), line.substr(sp + 1), rank++, where);
            }
            if (rank == 0) throw IoError("ClipTokenizer: '" + path + "' has no merges");
        }

        void load_openai_bpe(const std::string& path) {
            std::string data = detail::clip::read_file(path, "ClipTokenizer");
            if (is_gzip(data)) data = gunzip(data, path, std::size_t{256} << 20);
            // simple_tokenizer.py: merges = text.split('\n')[1:49152-256-2+1], each line.split().
            constexpr std::int32_t n_merges = 49152 - 256 - 2;
            std::vector<std::pair<std::string, std::string>> pairs;
            pairs.reserve(n_merges);
            std::size_t start = data.find('\n');
            if (start == std::string::npos)
                throw IoError("ClipTokenizer: '" + path + "' has no merge lines (expected " + std::to_string(n_merges) + ")");
            ++start;
            for (std::size_t line_no = 2; static_cast<std::int32_t>(pairs.size()) < n_merges; ++line_no) {
                if (start >= data.size())
                    throw IoError("ClipTokenizer: '" + path + "' ends at line " + std::to_string(line_no - 1) +
                                  " after " + std::to_string(pairs.size()) + " merges; OpenAI's file has " +
                                  std::to_string(n_merges) + " used merges");
                std::size_t end = data.find('\n', start);
                if (end == std::string::npos) end = data.size();
                std::string_view line(data.data() + start, end - start);
                start = end + 1;
                std::vector<std::string> parts;
                for (std::size_t i = 0; i < line.size();) {  // Python str.split(): ASCII whitespace suffices here
                    while (i < line.size() && (line[i] == ' ' || (line[i] >= '\t' && line[i] <= '\r'))) ++i;
                    std::size_t j = i;
                    while (j < line.size() && !(line[j] == ' ' || (line[j] >= '\t' && line[j] <= '\r'))) ++j;
                    if (j > i) parts.emplace_back(line.substr(i, j - i));
                    i = j;
                }
                std::string where = "'" + path + "' line " + std::to_string(line_no);
                if (parts.size() != 2)
                    throw IoError("ClipTokenizer: " + where + ": expected two symbols separated by a space, found " +
                                  std::to_string(parts.size()));
                try {
                    detail::clip::validate_utf8(line);
                } catch (const InvalidUtf8Error& e) {
                    throw IoError("ClipTokenizer: " + where + ": invalid UTF-8 at byte " + std::to_string(e.offset()) + " of the line");
                }
                pairs.emplace_back(std::move(parts[0]), std::move(parts[1]));
            }
            std::int32_t id = 0;
            std::vector<std::string> bytes;
            for (int b : detail::clip::bytes_in_table_order()) {
                std::string s;
                detail::clip::append_utf8(s, detail::clip::byte_to_char()[static_cast<std::size_t>(b)]);
                bytes.push_back(s);
            }
            for (const auto& s : bytes) add_token(s, id++);
            for (const auto& s : bytes) add_token(s + "</w>", id++);
            for (const auto& [a, b] : pairs) add_token(a + b, id++);
            add_token("<|startoftext|>", id++);
            add_token("<|endoftext|>", id++);
            for (std::size_t k = 0; k < pairs.size(); ++k)
                add_merge(pairs[k].first, pairs[k].second, static_cast<std::int32_t>(k),
                          "'" + path + "' line " + std::to_string(k + 2));
        }

        void set_specials(const SpecialConfig& c, const std::string& where) {
            auto pick = [&](const char* key, const char* fallback) {
                auto it = c.named.find(key);
                detail::clip::SpecialToken t = it != c.named.end() ? it->second : detail::clip::SpecialToken{fallback};
                t.id = lookup(t.content);
                if (t.id < 0)
                    throw IoError("ClipTokenizer: " + where + ": " + key + " " + nlohmann::json(t.content).dump() +
                                  " is not in the vocabulary");
                return t;
            };
            bos = pick("bos_token", "<|startoftext|>");
            eos = pick("eos_token", "<|endoftext|>");
            unk = pick("unk_token", "<|endoftext|>");
            pad = pick("pad_token", "<|endoftext|>");
            if (c.model_max_length) model_max_length = *c.model_max_length;
            // One entry per string. When bos/eos/unk/pad name the same string with different
            // `normalized` flags, transformers v5 keeps the last in that order (the hub's old
            // config makes eos a normalized AddedToken and pad a plain string: <|endoftext|> ends
            // up raw-matched); added_tokens_decoder entries decide for their own strings.
            std::vector<detail::clip::SpecialToken> all;
            auto put = [&](const detail::clip::SpecialToken& t) {
                auto it = std::find_if(all.begin(), all.end(), [&](const auto& u) { return u.content == t.content; });
                if (it == all.end()) all.push_back(t);
                else *it = t;
            };
            for (const auto* t : {&bos, &eos, &unk, &pad}) put(*t);
            for (auto t : c.added) {
                t.id = lookup(t.content);
                if (t.id >= 0 && !t.content.empty()) put(t);
            }
            is_special.assign(id_to_token.size(), false);
            for (const auto& t : all) {
                if (t.special) is_special[static_cast<std::size_t>(t.id)] = true;
                (t.normalized ? normalized_specials : raw_specials).push_back(t);
            }
            for (int b = 0; b < 256; ++b) {
                std::string s;
                detail::clip::append_utf8(s, detail::clip::byte_to_char()[static_cast<std::size_t>(b)]);
                // A byte without a symbol becomes unk (tokenizers' BPE with fuse_unk = false).
                byte_id[static_cast<std::size_t>(b)] = lookup(s);
                byte_eow_id[static_cast<std::size_t>(b)] = lookup(s + "</w>");
            }
        }

        // Leftmost-longest match of any of `list` (tokenizers' AddedVocabulary), calling
        // text_fn(begin, end) for the text between and special_fn(id) for each match.
        template <class Str, class Text, class Special>
        static void split_specials(const Str& s, const std::vector<detail::clip::SpecialToken>& list,
                                   const std::vector<Str>& contents, Text text_fn, Special special_fn) {
            std::size_t last = 0, i = 0;
            while (i < s.size()) {
                std::size_t best = 0, best_k = 0;
                for (std::size_t k = 0; k < list.size(); ++k) {
                    const Str& c = contents[k];
                    if (c.size() > best && s.compare(i, c.size(), c) == 0) best = c.size(), best_k = k;
                }
                if (best == 0) {
                    ++i;
                    continue;
                }
                if (i > last) text_fn(last, i);
                special_fn(list[best_k].id);
                i += best;
                last = i;
            }
            if (last < s.size()) text_fn(last, s.size());
        }

        void encode(std::string_view text, std::vector<std::int32_t>& out) const {
            detail::clip::validate_utf8(text);
            std::vector<std::string> raw;
            for (const auto& t : raw_specials) raw.push_back(t.content);
            std::string s(text);
            split_specials(
                s, raw_specials, raw, [&](std::size_t b, std::size_t e) { encode_segment(std::string_view(s).substr(b, e - b), out); },
                [&](std::int32_t id) { out.push_back(id); });
        }

        void encode_segment(std::string_view segment, std::vector<std::int32_t>& out) const {
            std::u32string norm = detail::clip::normalize(detail::clip::to_u32(segment));
            if (normalized_specials.empty()) {
                pre_tokenize(norm, out);
                return;
            }
            std::vector<std::u32string> contents;
            for (const auto& t : normalized_specials) contents.push_back(detail::clip::to_u32(t.content));
            split_specials(
                norm, normalized_specials, contents,
                [&](std::size_t b, std::size_t e) { pre_tokenize(std::u32string_view(norm).substr(b, e - b), out); },
                [&](std::int32_t id) { out.push_back(id); });
        }

        // CLIP's Split regex, ordered alternation at each position: the two special strings,
        // the contractions, a letter run, one digit, a run of other non-space characters.
        // Unmatched characters (whitespace) are dropped.
        void pre_tokenize(std::u32string_view s, std::vector<std::int32_t>& out) const {
            static constexpr std::u32string_view specials[] = {U"<|startoftext|>", U"<|endoftext|>"};
            static constexpr std::u32string_view contractions[] = {U"'s", U"'t", U"'re", U"'ve", U"'m", U"'ll", U"'d"};
            std::size_t i = 0;
            while (i < s.size()) {
                std::u32string_view rest = s.substr(i);
                bool done = false;
                for (auto sp : specials) {
                    if (rest.starts_with(sp)) {
                        // ByteLevel's GPT-2 regex splits the piece into "<|", the name, "|>".
                        bpe_piece(sp.substr(0, 2), out);
                        bpe_piece(sp.substr(2, sp.size() - 4), out);
                        bpe_piece(sp.substr(sp.size() - 2), out);
                        i += sp.size();
                        done = true;
                        break;
                    }
                }
                if (done) continue;
                for (auto c : contractions) {
                    if (rest.starts_with(c)) {
                        bpe_piece(c, out);
                        i += c.size();
                        done = true;
                        break;
                    }
                }
                if (done) continue;
                int cls = detail::clip::char_class(s[i]);
                std::size_t j = i + 1;
                if (cls == 1) {
                    while (j < s.size() && detail::clip::char_class(s[j]) == 1) ++j;
                } else if (cls == 0) {
                    if (detail::clip::is_space(s[i])) {
                        ++i;
                        continue;
                    }
                    while (j < s.size() && detail::clip::char_class(s[j]) == 0 && !detail::clip::is_space(s[j])) ++j;
                }
                bpe_piece(s.substr(i, j - i), out);
                i = j;
            }
        }

        void bpe_piece(std::u32string_view piece, std::vector<std::int32_t>& out) const {
            std::string bytes = detail::clip::to_utf8(piece);
            if (bytes.size() <= cache_max_word) {
                std::lock_guard<std::mutex> lock(cache_mutex);
                auto it = cache.find(bytes);
                if (it != cache.end()) {
                    out.insert(out.end(), it->second.begin(), it->second.end());
                    return;
                }
            }
            std::vector<std::int32_t> ids = bpe(bytes);
            out.insert(out.end(), ids.begin(), ids.end());
            if (bytes.size() <= cache_max_word) {
                std::lock_guard<std::mutex> lock(cache_mutex);
                if (cache.size() >= cache_capacity) cache.clear();
                cache.emplace(std::move(bytes), std::move(ids));
            }
        }

        // tokenizers' Word::merge_all: a heap of (rank, position) pairs, lowest rank first and
        // leftmost among equals; entries made stale by an earlier merge are skipped when popped.
        std::vector<std::int32_t> bpe(const std::string& word) const {
            struct Sym {
                std::int32_t id;
                std::int32_t prev, next;
            };
            std::vector<Sym> sym;
            sym.reserve(word.size());
            for (std::size_t k = 0; k < word.size(); ++k) {
                auto b = static_cast<unsigned char>(word[k]);
                std::int32_t id = k + 1 == word.size() ? byte_eow_id[b] : byte_id[b];
                if (id < 0) id = unk.id;
                sym.push_back({id, static_cast<std::int32_t>(k) - 1, static_cast<std::int32_t>(k) + 1});
            }
            if (!sym.empty()) sym.back().next = -1;
            struct Cand {
                std::int32_t rank, pos, merged;
                bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
            };
            std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
            auto pair_of = [&](std::int32_t a, std::int32_t b) -> const std::pair<std::int32_t, std::int32_t>* {
                auto it = merges.find(static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32 | static_cast<std::uint32_t>(b));
                return it == merges.end() ? nullptr : &it->second;
            };
            auto push = [&](std::int32_t pos) {
                std::int32_t nx = sym[static_cast<std::size_t>(pos)].next;
                if (nx < 0) return;
                if (auto m = pair_of(sym[static_cast<std::size_t>(pos)].id, sym[static_cast<std::size_t>(nx)].id))
                    heap.push({m->first, pos, m->second});
            };
            for (std::size_t k = 0; k + 1 < sym.size(); ++k) push(static_cast<std::int32_t>(k));
            while (!heap.empty()) {
                Cand c = heap.top();
                heap.pop();
                auto& left = sym[static_cast<std::size_t>(c.pos)];
                if (left.id < 0 || left.next < 0) continue;  // removed, or last symbol
                auto& right = sym[static_cast<std::size_t>(left.next)];
                auto m = pair_of(left.id, right.id);
                if (!m || m->second != c.merged) continue;  // the pair here changed since the push
                left.id = c.merged;
                right.id = -1;  // removed
                left.next = right.next;
                if (right.next >= 0) sym[static_cast<std::size_t>(right.next)].prev = c.pos;
                if (left.prev >= 0) push(left.prev);
                push(c.pos);
            }
            std::vector<std::int32_t> ids;
            for (std::int32_t k = sym.empty() ? -1 : 0; k >= 0; k = sym[static_cast<std::size_t>(k)].next)
                if (sym[static_cast<std::size_t>(k)].id >= 0) ids.push_back(sym[static_cast<std::size_t>(k)].id);
            return ids;
        }

        std::string decode(std::span<const std::int32_t> ids, bool skip_special) const {
            static const std::map<char32_t, unsigned char> char_to_byte = [] {
                std::map<char32_t, unsigned char> m;
                for (int b = 0; b < 256; ++b)
                    m[detail::clip::byte_to_char()[static_cast<std::size_t>(b)]] = static_cast<unsigned char>(b);
                return m;
            }();
            std::string bytes;
            for (std::int32_t id : ids) {
                if (id < 0 || static_cast<std::size_t>(id) >= id_to_token.size()) continue;
                if (skip_special && is_special[static_cast<std::size_t>(id)]) continue;
                const std::string& tok = id_to_token[static_cast<std::size_t>(id)];
                // tokenizers' ByteLevel decoder: a token whose characters are all in the byte table
                // becomes those bytes, any other token its own UTF-8.
                std::string mapped;
                bool all = true;
                for (char32_t c : detail::clip::to_u32(tok)) {
                    auto it = char_to_byte.find(c);
                    if (it == char_to_byte.end()) {
                        all = false;
                        break;
                    }
                    mapped.push_back(static_cast<char>(it->second));
                }
                bytes += all ? mapped : tok;
            }
            std::string text = detail::clip::utf8_lossy(bytes);
            // transformers' CLIPTokenizer wraps decode: text.replace("</w>", " ").strip().
            std::string replaced;
            for (std::size_t i = 0; i < text.size();) {
                if (text.compare(i, 4, "</w>") == 0) {
                    replaced.push_back(' ');
                    i += 4;
                } else {
                    replaced.push_back(text[i++]);
                }
            }
            std::u32string u = detail::clip::to_u32(replaced);
            // Python's str.isspace: Unicode White_Space plus U+001C..U+001F.
            auto py_space = [](char32_t c) { return detail::clip::is_space(c) || (c >= 0x1C && c <= 0x1F); };
            std::size_t b = 0, e = u.size();
            while (b < e && py_space(u[b])) ++b;
            while (e > b && py_space(u[e - 1])) --e;
            return detail::clip::to_utf8(std::u32string_view(u).substr(b, e - b));
        }
    };

    ClipTokenizer() : m_(std::make_shared<Model>()) {}

    std::shared_ptr<Model> m_;
};

}  // namespace mmalign::io
