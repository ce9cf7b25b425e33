// mmalign/io/clip_tokenizer.hpp — CLIP's byte-level BPE tokenizer, id for id equal to Hugging
// Face's tokenizers-backed CLIPTokenizer (transformers v5; CLIPTokenizerFast in v4; the pipeline is
// transformers' convert_slow_tokenizer.py, CLIPConverter).
//
//   1. special tokens (<|startoftext|>, <|endoftext|>) are cut out of the raw text first;
//   2. each other segment: NFC, every \s+ run -> " ", lowercase per character;
//   3. Split keeps the matches of <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|
//      [\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+ (ordered alternation); ByteLevel then maps UTF-8 bytes
//      through GPT-2's table, and its own regex cuts a special-token string that normalization
//      produced ("<|ENDOFTEXT|>") into "<|", "endoftext", "|>";
//   4. BPE per piece, "</w>" on the last byte symbol, lowest merge rank first;
//   5. [bos] ids [eos]; a batch is right-padded with pad_id() and a 0/1 attention_mask.
// The pieces any Hugging Face tokenizer is built from live in io/detail/ and are shared with the
// other tokenizers: UTF-8 (utf8.hpp), NFC and the character properties (unicode_normalization.hpp,
// unicode_properties.hpp; data read back from `tokenizers` itself), GPT-2's byte map
// (byte_level.hpp), the BPE model (bpe.hpp) and the added-token split (added_tokens.hpp). What
// stays here is CLIP's: its normalizer, its Split regex, its files and its decode.
// Text is bytes: invalid UTF-8 throws InvalidUtf8Error (an ArgumentError) with the byte offset;
// HF never sees such input, since a Python str holds only valid scalar values.
// A tokenizer is immutable after loading; copies share their tables and one thread-safe cache.
#pragma once

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mmalign/core/error.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/core/tensor.hpp"
#include "mmalign/io/detail/added_tokens.hpp"
#include "mmalign/io/detail/bpe.hpp"
#include "mmalign/io/detail/bpe_files.hpp"
#include "mmalign/io/detail/byte_level.hpp"
#include "mmalign/io/detail/gpt2_pretokenizer.hpp"
#include "mmalign/io/detail/tokenizer_files.hpp"
#include "mmalign/io/detail/unicode_normalization.hpp"
#include "mmalign/io/detail/unicode_properties.hpp"
#include "mmalign/io/detail/utf8.hpp"
#include "mmalign/io/gzip.hpp"

namespace mmalign::io {

namespace detail::clip {

inline constexpr std::string_view who = "ClipTokenizer";

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

// Bounded: a regular file of limited size (detail/tokenizer_files.hpp).
inline std::string read_file(const std::string& path, const char* what) { return read_tokenizer_file(path, what); }

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
            detail::tokenizer_file_fail("ClipTokenizer", base + "tokenizer.json", "no such file, nor vocab.json + merges.txt beside it");
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
    index_t vocab_size() const { return static_cast<index_t>(m_->bpe.id_bound()); }
    /// The default context length: tokenizer_config.json's model_max_length, else 77.
    index_t model_max_length() const { return m_->model_max_length; }
    /// The id of a vocabulary entry (byte-level form, e.g. "cat</w>"), if any.
    std::optional<std::int32_t> token_to_id(std::string_view token) const {
        const std::int32_t id = m_->bpe.id_of(token);
        if (id < 0) return std::nullopt;
        return id;
    }
    /// The vocabulary entry of `id` (byte-level form); empty for an unknown id.
    std::string id_to_token(std::int32_t id) const {
        const std::string* tok = m_->bpe.token_of(id);
        return tok ? *tok : std::string();
    }

private:
    struct SpecialConfig {
        std::map<std::string, detail::AddedToken> named;  // bos_token, eos_token, unk_token, pad_token
        std::vector<detail::AddedToken> added;            // added_tokens_decoder entries
        std::optional<index_t> model_max_length;
    };

    // Reads one special-token entry: a string, or an AddedToken dict {"content": .., "normalized": ..}.
    static std::optional<detail::AddedToken> parse_token(const nlohmann::json& v, const std::string& file,
                                                         const std::string& key) {
        return detail::parse_added_token(v, file, key, detail::clip::who);
    }

    static nlohmann::json read_json(const std::string& path) {
        std::string text = detail::clip::read_file(path, "ClipTokenizer");
        try {
            return nlohmann::json::parse(text);
        } catch (const nlohmann::json::exception& e) {
            detail::tokenizer_file_fail("ClipTokenizer", path, "not valid JSON: " + json_error_text(e.what()));
        }
    }

    // Asks the file system, never opens: opening a FIFO would block until a writer came.
    static bool exists(const std::string& path) { return detail::tokenizer_file_exists(path); }

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
        // CLIP's BPE: "</w>" ends a word's last symbol; a byte without a symbol becomes unk
        // (tokenizers' BPE with fuse_unk = false).
        detail::BpeModel bpe{{.end_of_word_suffix = "</w>", .continuing_subword_prefix = ""}};
        detail::AddedToken bos, eos, pad, unk;
        detail::AddedTokenMatcher raw_specials, normalized_specials;  // the two passes of the split
        std::vector<bool> is_special;
        index_t model_max_length = 77;

        void add_token(const std::string& tok, std::int32_t id) { bpe.add_token(tok, id); }
        std::int32_t lookup(const std::string& tok) const { return bpe.id_of(tok); }

        void load_vocab_json(const std::string& path) { load_vocab(read_json(path), "'" + path + "'"); }

        void load_vocab(const nlohmann::json& j, const std::string& where) {
            detail::load_bpe_vocab(bpe, j, where, detail::clip::who);
        }

        // A tokenizer.json (what transformers v5's save_pretrained writes): vocabulary, merges and
        // added tokens, after checking that its pipeline is CLIP's. A pre-v4.17 file with a bare
        // ByteLevel pre-tokenizer (transformers#12648) tokenizes differently and is refused.
        std::vector<detail::AddedToken> load_tokenizer_json(const std::string& path) {
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
            detail::load_json_merges(bpe, model["merges"], where + " model.merges", detail::clip::who);
            std::vector<detail::AddedToken> added;
            for (const auto& t : j.value("added_tokens", nlohmann::json::array())) {
                if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") ||
                    !t["content"].is_string())
                    fail("added_tokens entries need an integer \"id\" and a string \"content\"");
                detail::AddedToken s{t["content"].get<std::string>()};
                detail::read_added_token_flags(t, s);
                auto id = t["id"].get<std::int64_t>();
                if (lookup(s.content) != id)
                    fail("added token " + nlohmann::json(s.content).dump() + " has id " + t["id"].dump() +
                         " but the vocabulary gives it " + std::to_string(lookup(s.content)));
                added.push_back(s);
            }
            return added;
        }

        void add_merge(const std::string& a, const std::string& b, std::int32_t rank, const std::string& where) {
            detail::add_bpe_merge(bpe, a, b, rank, where, detail::clip::who);
        }

        // tokenizers' merges.txt reader (detail/bpe_files.hpp).
        void load_merges_txt(const std::string& path) {
            detail::load_merges_txt(bpe, detail::clip::read_file(path, "ClipTokenizer"), path, detail::clip::who);
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
                if (auto bad = detail::find_invalid_utf8(line))
                    throw IoError("ClipTokenizer: " + where + ": invalid UTF-8 at byte " + std::to_string(bad->offset) + " of the line");
                pairs.emplace_back(std::move(parts[0]), std::move(parts[1]));
            }
            std::int32_t id = 0;
            std::vector<std::string> bytes;
            for (int b : detail::bytes_in_table_order()) bytes.push_back(detail::byte_level_encode(std::string(1, static_cast<char>(b))));
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
                detail::AddedToken t = it != c.named.end() ? it->second : detail::AddedToken{fallback};
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
            std::vector<detail::AddedToken> all;
            auto put = [&](const detail::AddedToken& t) {
                auto it = std::find_if(all.begin(), all.end(), [&](const auto& u) { return u.content == t.content; });
                if (it == all.end()) all.push_back(t);
                else *it = t;
            };
            for (const auto* t : {&bos, &eos, &unk, &pad}) put(*t);
            for (auto t : c.added) {
                t.id = lookup(t.content);
                if (t.id >= 0 && !t.content.empty()) put(t);
            }
            is_special.assign(bpe.id_bound(), false);
            std::vector<detail::AddedToken> raw, normalized;
            std::vector<std::u32string> raw_patterns, normalized_patterns;
            for (const auto& t : all) {
                if (t.special) is_special[static_cast<std::size_t>(t.id)] = true;
                // A normalized token is matched in normalized text, so its content is normalized
                // too (tokenizers' AddedVocabulary::refresh_added_tokens).
                const std::u32string content = detail::to_u32(t.content);
                (t.normalized ? normalized : raw).push_back(t);
                (t.normalized ? normalized_patterns : raw_patterns).push_back(t.normalized ? detail::clip::normalize(content) : content);
            }
            raw_specials = detail::AddedTokenMatcher(std::move(raw), std::move(raw_patterns));
            normalized_specials = detail::AddedTokenMatcher(std::move(normalized), std::move(normalized_patterns));
            bpe.set_unknown({.id = unk.id, .fuse = false, .byte_fallback = false});
        }

        // tokenizers' AddedVocabulary::extract_and_normalize: specials cut out of the raw text,
        // then each remaining piece normalized, specials with normalized = true cut out of it,
        // and the rest pre-tokenized.
        void encode(std::string_view text, std::vector<std::int32_t>& out) const {
            detail::validate_utf8(text, detail::clip::who);
            const std::u32string u = detail::to_u32(text);
            for (const auto& piece : raw_specials.split(u)) {
                if (piece.token) out.push_back(piece.token->id);
                else encode_segment(std::u32string_view(u).substr(piece.begin, piece.end - piece.begin), out);
            }
        }

        void encode_segment(std::u32string_view segment, std::vector<std::int32_t>& out) const {
            const std::u32string norm = detail::clip::normalize(segment);
            for (const auto& piece : normalized_specials.split(norm)) {
                if (piece.token) out.push_back(piece.token->id);
                else pre_tokenize(std::u32string_view(norm).substr(piece.begin, piece.end - piece.begin), out);
            }
        }

        // CLIP's Split regex, ordered alternation at each position: the two special strings,
        // the contractions, a letter run, one digit, a run of other non-space characters.
        // Unmatched characters (whitespace) are dropped.
        void pre_tokenize(std::u32string_view s, std::vector<std::int32_t>& out) const {
            static constexpr std::u32string_view specials[] = {U"<|startoftext|>", U"<|endoftext|>"};
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
                if (const std::size_t c = detail::contraction_length(rest)) {
                    bpe_piece(rest.substr(0, c), out);
                    i += c;
                    continue;
                }
                using detail::CharClass;
                const CharClass cls = detail::char_class(s[i]);
                std::size_t j = i + 1;
                if (cls == CharClass::letter) {
                    while (j < s.size() && detail::char_class(s[j]) == CharClass::letter) ++j;
                } else if (cls == CharClass::other) {
                    if (detail::is_space(s[i])) {
                        ++i;
                        continue;
                    }
                    while (j < s.size() && detail::char_class(s[j]) == CharClass::other && !detail::is_space(s[j])) ++j;
                }
                bpe_piece(s.substr(i, j - i), out);
                i = j;
            }
        }

        // ByteLevel (no prefix space, no regex of its own here) maps the piece's UTF-8 bytes to
        // GPT-2's characters; the BPE model then encodes that word.
        void bpe_piece(std::u32string_view piece, std::vector<std::int32_t>& out) const {
            bpe.encode_word(detail::byte_level_encode(detail::to_utf8(piece)), out);
        }

        std::string decode(std::span<const std::int32_t> ids, bool skip_special) const {
            std::string bytes;
            for (std::int32_t id : ids) {
                const std::string* tok = bpe.token_of(id);
                if (!tok) continue;
                if (skip_special && is_special[static_cast<std::size_t>(id)]) continue;
                // tokenizers' ByteLevel decoder: a token whose characters are all in the byte table
                // becomes those bytes, any other token its own UTF-8.
                if (!detail::byte_level_decode(*tok, bytes)) bytes += *tok;
            }
            std::string text = detail::utf8_lossy(bytes);
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
            std::u32string u = detail::to_u32(replaced);
            // Python's str.isspace: Unicode White_Space plus U+001C..U+001F.
            auto py_space = [](char32_t c) { return detail::is_space(c) || (c >= 0x1C && c <= 0x1F); };
            std::size_t b = 0, e = u.size();
            while (b < e && py_space(u[b])) ++b;
            while (e > b && py_space(u[e - 1])) --e;
            return detail::to_utf8(std::u32string_view(u).substr(b, e - b));
        }
    };

    ClipTokenizer() : m_(std::make_shared<Model>()) {}

    std::shared_ptr<Model> m_;
};

}  // namespace mmalign::io
