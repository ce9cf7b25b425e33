// mmalign/io/wordpiece_tokenizer.hpp — BERT's WordPiece tokenizer, id for id equal to Hugging
// Face's BertTokenizer (transformers v5; BertTokenizerFast in v4), the tokenizer of BERT models and
// of BLIP (whose BlipProcessor wraps one, with [DEC] as bos_token and [ENC] as an extra special
// token, as the original BLIP's init_tokenizer adds them).
//
//   1. added and special tokens ([CLS], [DEC], ...) are cut out of the raw text first; those with
//      normalized = true are cut out of the normalized text instead (detail/added_tokens.hpp);
//   2. each other piece goes through BERT's normalizer (clean text, spaces around CJK ideographs,
//      accent stripping and lowercasing when configured) and pre-tokenizer (split on white space
//      and around punctuation): detail/bert_normalizer.hpp;
//   3. each word becomes greedy longest-match WordPiece ids ("##" pieces; [UNK] for a word that
//      cannot be spelled or is longer than 100 characters): detail/wordpiece.hpp;
//   4. [CLS] ids [SEP] (a pair: [CLS] A [SEP] B [SEP], token types 0 then 1), truncated and padded
//      as HF's `tokenizer(texts, padding=..., truncation=..., max_length=...)`.
// decode() is HF's `tokenizer.decode(ids, skip_special_tokens=...)`: the WordPiece decoder (tokens
// joined by spaces, "##" pieces glued, " ." → "." and the like per token), then transformers'
// clean_up_tokenization when the tokenizer's clean_up_tokenization_spaces is set (false unless
// tokenizer_config.json says true: transformers v5's default, also for BERT and BLIP folders).
// Text is bytes: invalid UTF-8 throws InvalidUtf8Error (an ArgumentError) with the byte offset.
// A tokenizer is immutable after loading; copies share their tables.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mmalign/core/error.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/core/tensor.hpp"
#include "mmalign/io/detail/added_tokens.hpp"
#include "mmalign/io/detail/bert_normalizer.hpp"
#include "mmalign/io/detail/tokenizer_files.hpp"
#include "mmalign/io/detail/unicode_normalization.hpp"
#include "mmalign/io/detail/utf8.hpp"
#include "mmalign/io/detail/wordpiece.hpp"

namespace mmalign::io {

namespace detail::wordpiece_files {

inline constexpr std::string_view who = "WordPieceTokenizer";

/// The largest tokenizer file read: far above any WordPiece vocabulary (multilingual BERT's
/// tokenizer.json is under 3 MB), far below what could exhaust memory.
inline constexpr std::uintmax_t max_file_bytes = std::uintmax_t{32} << 20;

[[noreturn]] inline void fail(const std::string& file, const std::string& what) {
    throw IoError(std::string(who) + ": '" + file + "': " + what);
}

/// "a string", "an array", ... for messages.
inline std::string kind(const nlohmann::json& v) { return json_value_kind(v); }

/// A regular file's bytes, checked before anything is allocated for them: it exists, is a
/// regular file (not a directory, FIFO or device, whose read could block or never end) and is at
/// most max_file_bytes long.
inline std::string read_file(const std::string& path) { return read_tokenizer_file(path, who, max_file_bytes); }

inline nlohmann::json parse_json(const std::string& text, const std::string& path) {
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        fail(path, "not valid JSON: " + json_error_text(e.what()));
    }
}

inline nlohmann::json read_json_object(const std::string& path) {
    nlohmann::json j = parse_json(read_file(path), path);
    if (!j.is_object()) fail(path, "expected a JSON object at the top, found " + kind(j));
    return j;
}

inline bool exists(const std::string& path) {
    std::error_code ec;
    return std::filesystem::exists(path, ec);
}

/// obj[key] as a boolean; absent or null gives `fallback`.
inline bool get_bool(const nlohmann::json& obj, const char* key, bool fallback, const std::string& file,
                     const std::string& at = "") {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) fail(file, "field '" + at + key + "': expected a boolean, found " + kind(*it));
    return it->get<bool>();
}

inline std::optional<bool> get_optional_bool(const nlohmann::json& obj, const char* key, const std::string& file,
                                             const std::string& at = "") {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return std::nullopt;
    if (!it->is_boolean()) fail(file, "field '" + at + key + "': expected a boolean or null, found " + kind(*it));
    return it->get<bool>();
}

inline std::optional<std::string> get_string(const nlohmann::json& obj, const char* key, const std::string& file,
                                             const std::string& at = "") {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return std::nullopt;
    if (!it->is_string()) fail(file, "field '" + at + key + "': expected a string, found " + kind(*it));
    return it->get<std::string>();
}

/// A text length limit: a positive whole number. transformers writes 1e30 (VERY_LARGE_INTEGER)
/// for "no limit" and older files 1e9; anything from 2^24 tokens up (far beyond any model's
/// positions) gives nullopt, so that padding to it can never ask for an absurd allocation.
inline std::optional<index_t> get_length(const nlohmann::json& obj, const char* key, const std::string& file) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return std::nullopt;
    if (!it->is_number())
        fail(file, std::string("field '") + key + "': expected a positive whole number, found " + kind(*it));
    const double v = it->get<double>();
    if (!(v >= 1) || v != std::floor(v))
        fail(file, std::string("field '") + key + "': expected a positive whole number, found " + it->dump());
    if (v >= 16777216.0) return std::nullopt;
    return static_cast<index_t>(v);
}

inline std::string quoted(std::string_view s) {
    return nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace detail::wordpiece_files

class WordPieceTokenizer {
public:
    enum class Side { right, left };

    /// What tokenizer_config.json holds, for a tokenizer built from a bare vocab.txt; the
    /// defaults are transformers' BertTokenizer's. BLIP's: bos_token = "[DEC]",
    /// additional_special_tokens = {"[ENC]"}.
    struct Config {
        bool do_lower_case = true;
        std::optional<bool> strip_accents = std::nullopt;  // unset: follows do_lower_case
        bool tokenize_chinese_chars = true;
        std::string unk_token = "[UNK]", sep_token = "[SEP]", pad_token = "[PAD]", cls_token = "[CLS]",
                    mask_token = "[MASK]";
        std::string bos_token, eos_token;  // empty: none
        std::vector<std::string> additional_special_tokens;
        std::optional<index_t> model_max_length = std::nullopt;  // unset: no limit
        Side padding_side = Side::right;
        Side truncation_side = Side::right;
        bool clean_up_tokenization_spaces = false;
    };

    /// One call's settings (HF's `tokenizer(texts, padding=..., truncation=..., max_length=...)`).
    struct Options {
        enum class Padding {
            longest,     // HF padding=True: to the longest row of the batch
            max_length,  // HF padding="max_length": to max_length
            none         // HF padding=False: every row must already have the same length
        };
        Padding padding = Padding::longest;
        /// Cut rows to max_length (HF truncation=True, "longest_first" for pairs), keeping the
        /// special tokens; without it a longer row is an ArgumentError under max_length padding.
        bool truncate = true;
        /// Longest row, special tokens included; unset: model_max_length() (no limit when that is
        /// unset too).
        std::optional<index_t> max_length = std::nullopt;
        /// [CLS] … [SEP] around each row (HF add_special_tokens).
        bool add_special_tokens = true;
        /// Unset: the tokenizer's padding_side() / truncation_side().
        std::optional<Side> padding_side = std::nullopt;
        std::optional<Side> truncation_side = std::nullopt;
    };

    /// [N, T] row-major, as HF's `tokenizer(texts, ...)` returns them.
    struct Batch {
        Tensor<std::int32_t> input_ids;       // [N, T]
        Tensor<std::int32_t> attention_mask;  // [N, T] 1 for tokens, 0 for padding
        Tensor<std::int32_t> token_type_ids;  // [N, T] 0 for the first text, 1 for the second of a pair
    };

    /// A Hugging Face folder, as transformers' BertTokenizer.from_pretrained reads it: the
    /// vocabulary from tokenizer.json (its "model", which must be WordPiece) or, without it, from
    /// vocab.txt; the normalizer flags (do_lower_case, strip_accents, tokenize_chinese_chars),
    /// special tokens, model_max_length, padding_side, truncation_side and
    /// clean_up_tokenization_spaces from tokenizer_config.json; added tokens from its
    /// added_tokens_decoder or, when it has none, from special_tokens_map.json, added_tokens.json
    /// and tokenizer.json's added_tokens (transformers' legacy path). As in transformers, the
    /// pipeline written in tokenizer.json (normalizer, decoder, ...) is not read; special tokens
    /// missing from the vocabulary are appended after it.
    static WordPieceTokenizer from_hf_folder(const std::string& dir) {
        namespace F = detail::wordpiece_files;
        const std::string base = dir.empty() || dir.back() == '/' ? dir : dir + "/";
        const std::string json_path = base + "tokenizer.json", txt_path = base + "vocab.txt";
        const bool has_json = F::exists(json_path), has_txt = F::exists(txt_path);
        if (!has_json && !has_txt)
            F::fail(json_path, "no such file, nor vocab.txt beside it");
        WordPieceTokenizer t;
        Model& m = *t.m_;
        nlohmann::json json;
        if (has_json) {
            json = F::read_json_object(json_path);
            m.load_json_vocab(json, json_path);
        } else {
            m.load_vocab_txt(txt_path);
        }
        Setup s = read_folder_setup(base, has_json ? &json : nullptr, json_path);
        m.finish(s);
        return t;
    }

    /// A vocab.txt (one token per line, id = line number − 1) with tokenizer_config.json's
    /// settings given in code: transformers' `BertTokenizer(vocab_file, **config)`.
    static WordPieceTokenizer from_vocab_txt(const std::string& path) { return from_vocab_txt(path, Config{}); }
    static WordPieceTokenizer from_vocab_txt(const std::string& path, const Config& config) {
        WordPieceTokenizer t;
        t.m_->load_vocab_txt(path);
        t.m_->finish(setup_of(config));
        return t;
    }

    /// A tokenizer.json as Hugging Face tokenizers' `Tokenizer.from_file` reads it: its own
    /// BertNormalizer flags, WordPiece settings, post-processor (TemplateProcessing or
    /// BertProcessing), decoder and added tokens. Its "truncation" and "padding" blocks are not
    /// applied (the call's Options decide, as in transformers); padding's pad_token names pad_id().
    static WordPieceTokenizer from_tokenizer_json(const std::string& path) {
        WordPieceTokenizer t;
        t.m_->load_tokenizer_json(detail::wordpiece_files::read_json_object(path), path);
        return t;
    }

    /// Ids of `text` (HF: `tokenizer(text, add_special_tokens=...)["input_ids"]`), never truncated.
    /// Throws InvalidUtf8Error on invalid UTF-8.
    std::vector<std::int32_t> encode(std::string_view text, bool add_special_tokens = false) const {
        std::vector<std::int32_t> ids;
        m_->encode(text, ids);
        if (!add_special_tokens) return ids;
        std::vector<std::int32_t> out;
        m_->apply_template(m_->single, ids, {}, out, nullptr);
        return out;
    }

    /// HF's `tokenizer(texts, padding=True, truncation=True)`.
    // (A separate overload: GCC rejects `Options opt = {}` inside the class that defines Options.)
    Batch operator()(const std::vector<std::string>& texts) const { return (*this)(texts, Options{}); }
    Batch operator()(const std::vector<std::string>& texts, const Options& opt) const {
        return m_->batch(texts, nullptr, opt);
    }
    /// Pairs: HF's `tokenizer(texts, text_pairs, ...)`; row i is [CLS] texts[i] [SEP] pairs[i] [SEP].
    Batch operator()(const std::vector<std::string>& texts, const std::vector<std::string>& pairs,
                     const Options& opt) const {
        if (pairs.size() != texts.size())
            throw ArgumentError("WordPieceTokenizer: " + std::to_string(texts.size()) + " texts but " +
                                std::to_string(pairs.size()) + " text pairs");
        return m_->batch(texts, &pairs, opt);
    }

    /// HF's `tokenizer.decode(ids, skip_special_tokens=...)`. Ids outside the vocabulary are
    /// skipped, as tokenizers does.
    std::string decode(std::span<const std::int32_t> ids, bool skip_special_tokens = false) const {
        return m_->decode(ids, skip_special_tokens);
    }

    std::int32_t cls_id() const { return m_->cls; }
    std::int32_t sep_id() const { return m_->sep; }
    std::int32_t pad_id() const { return m_->pad; }
    std::int32_t unk_id() const { return m_->unk; }
    std::optional<std::int32_t> mask_id() const { return m_->mask; }
    /// BLIP's [DEC] (the decoder's start token); nullopt when the tokenizer names no bos_token.
    std::optional<std::int32_t> bos_id() const { return m_->bos; }
    std::optional<std::int32_t> eos_id() const { return m_->eos; }
    /// Ids of the extra special tokens, in order (BLIP: [ENC]).
    const std::vector<std::int32_t>& additional_special_ids() const { return m_->additional; }
    /// Number of distinct ids, added tokens included (HF `len(tokenizer)`): 30,522 for
    /// bert-base-uncased, 30,524 for BLIP.
    index_t vocab_size() const { return static_cast<index_t>(m_->id_bound); }
    /// The default max_length: tokenizer_config.json's model_max_length (512 for BERT and BLIP);
    /// nullopt when it sets none.
    std::optional<index_t> model_max_length() const { return m_->model_max_length; }
    Side padding_side() const { return m_->padding_side; }
    Side truncation_side() const { return m_->truncation_side; }
    /// Whether the normalizer lowercases, and whether it strips accents (strip_accents, or
    /// lowercasing when that is unset).
    bool lowercases() const { return m_->normalizer.lowercase; }
    bool strips_accents() const { return m_->normalizer.strips_accents(); }
    /// The id of a vocabulary entry or added token ("cat", "##s", "[DEC]"), if any.
    std::optional<std::int32_t> token_to_id(std::string_view token) const {
        const std::int32_t id = m_->lookup(token);
        if (id < 0) return std::nullopt;
        return id;
    }
    /// The entry of `id` (HF convert_ids_to_tokens); empty for an unknown id.
    std::string id_to_token(std::int32_t id) const {
        auto it = m_->added_by_id.find(id);
        if (it != m_->added_by_id.end()) return m_->added[it->second].content;
        const std::string* tok = m_->wp.token_of(id);
        return tok ? *tok : std::string();
    }

private:
    // One element of a post-processing template: the text (A or B) or fixed special ids.
    struct TemplatePiece {
        int sequence = -1;  // 0 for A, 1 for B, -1 for special ids
        std::vector<std::int32_t> ids;
        std::int32_t type_id = 0;
    };
    using Template = std::vector<TemplatePiece>;

    // An added token before ids are assigned, and where it was declared (for messages).
    struct Declared {
        detail::AddedToken token;
        std::int64_t expected_id = -1;  // the id its file gives it, -1 when none
        std::string where;
    };

    // What the loaders gather from the configuration files.
    struct Setup {
        detail::BertNormalizer normalizer;
        std::vector<Declared> tokens;  // in the order transformers adds them
        std::map<std::string, std::string> named;  // "unk_token" → content, ...
        std::vector<std::string> extra;            // extra special tokens' contents, in order
        std::optional<index_t> model_max_length;
        Side padding_side = Side::right, truncation_side = Side::right;
        bool clean_up_tokenization_spaces = false;
        std::string where;  // 'file' that named the special tokens (or Config), for messages
    };

    static constexpr const char* named_keys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                                 "pad_token", "cls_token", "mask_token"};

    // An AddedToken from a string or a dict {"content": ..., flags}. Python's AddedToken defaults
    // apply to absent flags: special = false, normalized = !special.
    static detail::AddedToken parse_token(const nlohmann::json& v, const std::string& file, const std::string& field,
                                          bool special_default) {
        namespace F = detail::wordpiece_files;
        detail::AddedToken t;
        if (v.is_string()) {
            t.content = v.get<std::string>();
            t.special = special_default;
            t.normalized = !t.special;
            return t;
        }
        if (!v.is_object())
            F::fail(file, "field '" + field + "': expected a string or an object with a string \"content\", found " + F::kind(v));
        auto c = F::get_string(v, "content", file, field + ".");
        if (!c)
            F::fail(file, "field '" + field + ".content': expected a string, found " +
                              (v.contains("content") ? F::kind(v["content"]) : std::string("nothing")));
        t.content = *c;
        t.special = F::get_bool(v, "special", special_default, file, field + ".");
        t.normalized = F::get_bool(v, "normalized", !t.special, file, field + ".");
        t.lstrip = F::get_bool(v, "lstrip", false, file, field + ".");
        t.rstrip = F::get_bool(v, "rstrip", false, file, field + ".");
        t.single_word = F::get_bool(v, "single_word", false, file, field + ".");
        return t;
    }

    // A list of tokens (additional_special_tokens): strings are special; see parse_token for dicts.
    static std::vector<detail::AddedToken> token_list(const nlohmann::json& v, const std::string& file,
                                                      const std::string& field, bool dict_special) {
        namespace F = detail::wordpiece_files;
        if (!v.is_array()) F::fail(file, "field '" + field + "': expected an array of tokens, found " + F::kind(v));
        std::vector<detail::AddedToken> out;
        for (std::size_t k = 0; k < v.size(); ++k)
            out.push_back(parse_token(v[k], file, field + "[" + std::to_string(k) + "]", v[k].is_string() || dict_special));
        return out;
    }

    static Side parse_side(const nlohmann::json& cfg, const char* key, const std::string& file) {
        namespace F = detail::wordpiece_files;
        auto v = F::get_string(cfg, key, file);
        if (!v || *v == "right") return Side::right;
        if (*v == "left") return Side::left;
        F::fail(file, std::string("field '") + key + "': expected \"right\" or \"left\", found " + F::quoted(*v));
    }

    // transformers v5's PreTrainedTokenizerBase._from_pretrained and TokenizersBackend.__init__,
    // restricted to what a BertTokenizer folder can hold.
    static Setup read_folder_setup(const std::string& base, const nlohmann::json* tokenizer_json,
                                   const std::string& json_path) {
        namespace F = detail::wordpiece_files;
        Setup s;
        const std::string config_path = base + "tokenizer_config.json";
        nlohmann::json cfg = nlohmann::json::object();
        if (F::exists(config_path)) cfg = F::read_json_object(config_path);
        s.where = "'" + config_path + "'";
        const bool lower = F::get_bool(cfg, "do_lower_case", true, config_path);
        s.normalizer = {.clean_text = true,
                        .handle_chinese_chars = F::get_bool(cfg, "tokenize_chinese_chars", true, config_path),
                        .strip_accents = F::get_optional_bool(cfg, "strip_accents", config_path),
                        .lowercase = lower};
        s.model_max_length = F::get_length(cfg, "model_max_length", config_path);
        s.padding_side = parse_side(cfg, "padding_side", config_path);
        s.truncation_side = parse_side(cfg, "truncation_side", config_path);
        s.clean_up_tokenization_spaces = F::get_bool(cfg, "clean_up_tokenization_spaces", false, config_path);

        // Named special tokens and the extra ones. A string is AddedToken(special=True); a dict in
        // tokenizer_config.json is AddedToken(**dict) (special false unless it says so), one in
        // special_tokens_map.json AddedToken(**dict, special=True). A key set to null names none.
        // Other "<name>_token" string entries are model-specific special tokens, named after them.
        std::map<std::string, std::optional<detail::AddedToken>> named;
        std::vector<std::string> model_specific;
        auto read_named = [&](const nlohmann::json& obj, const std::string& file, bool dict_special) {
            for (const auto& [k, v] : obj.items()) {
                const bool standard = std::find(std::begin(named_keys), std::end(named_keys), k) != std::end(named_keys);
                if (!standard && !(k.size() > 6 && k.ends_with("_token") && v.is_string())) continue;
                if (!standard && std::find(model_specific.begin(), model_specific.end(), k) == model_specific.end())
                    model_specific.push_back(k);
                if (v.is_null()) named[k] = std::nullopt;
                else named[k] = parse_token(v, file, k, v.is_string() || dict_special);
            }
        };
        read_named(cfg, config_path, false);
        std::vector<detail::AddedToken> extra;
        bool has_extra = false;
        for (const char* k : {"extra_special_tokens", "additional_special_tokens"}) {
            if (has_extra || !cfg.contains(k) || cfg[k].is_null() || (cfg[k].is_array() && cfg[k].empty())) continue;
            if (cfg[k].is_object()) {  // {name: token}: more model-specific named tokens
                for (const auto& [name, v] : cfg[k].items()) {
                    model_specific.push_back(name);
                    named[name] = parse_token(v, config_path, std::string(k) + "." + F::quoted(name), true);
                }
                continue;
            }
            extra = token_list(cfg[k], config_path, k, false);
            has_extra = true;
        }

        // index → token; a later declaration of an index replaces an earlier one (a Python dict).
        std::map<std::int64_t, Declared> by_index;
        auto declare = [&](std::int64_t index, const detail::AddedToken& t, const std::string& where) {
            by_index[index] = Declared{t, index, where};
        };
        if (cfg.contains("added_tokens_decoder") && !cfg["added_tokens_decoder"].is_null()) {
            const auto& dec = cfg["added_tokens_decoder"];
            if (!dec.is_object())
                F::fail(config_path, "field 'added_tokens_decoder': expected an object {id: token}, found " + F::kind(dec));
            for (const auto& [key, v] : dec.items()) {
                const std::int64_t index = parse_index(key, config_path);
                const std::string field = "added_tokens_decoder." + key;
                if (!v.is_object()) F::fail(config_path, "field '" + field + "': expected an object, found " + F::kind(v));
                declare(index, parse_token(v, config_path, field, false), "'" + config_path + "': field '" + field + "'");
            }
        } else {
            // The legacy files: special_tokens_map.json overrides the config's entries, then
            // added_tokens.json and tokenizer.json's added_tokens declare ids.
            const std::string map_path = base + "special_tokens_map.json";
            std::vector<detail::AddedToken> map_additional;
            bool map_has_additional = false;
            if (F::exists(map_path)) {
                nlohmann::json map = F::read_json_object(map_path);
                read_named(map, map_path, true);
                if (map.contains("extra_special_tokens") && map["extra_special_tokens"].is_array()) {
                    for (auto& t : token_list(map["extra_special_tokens"], map_path, "extra_special_tokens", true))
                        if (std::none_of(extra.begin(), extra.end(), [&](const auto& e) { return e.content == t.content; }))
                            extra.push_back(t);
                    has_extra = true;
                }
                if (map.contains("additional_special_tokens") && !map["additional_special_tokens"].is_null()) {
                    map_additional = token_list(map["additional_special_tokens"], map_path, "additional_special_tokens", true);
                    map_has_additional = true;
                }
                s.where = "'" + map_path + "'";
            }
            const std::string added_path = base + "added_tokens.json";
            if (F::exists(added_path)) {
                nlohmann::json added = F::read_json_object(added_path);
                // Special here: a standard named token or an extra one, not the map's additional
                // ones (transformers turns those into extra tokens only later).
                std::unordered_set<std::string> special;
                for (const char* k : named_keys)
                    if (auto it = named.find(k); it != named.end() && it->second) special.insert(it->second->content);
                for (const auto& t : extra) special.insert(t.content);
                for (const auto& [content, v] : added.items()) {
                    if (!v.is_number_integer() || v.get<std::int64_t>() < 0)
                        F::fail(added_path, "field " + F::quoted(content) + ": expected a non-negative integer id, found " + F::kind(v));
                    detail::AddedToken t{content};
                    t.special = special.count(content) > 0;
                    t.normalized = !t.special;
                    declare(v.get<std::int64_t>(), t, "'" + added_path + "': field " + F::quoted(content));
                }
            }
            if (tokenizer_json)
                for (const auto& d : json_added_tokens(*tokenizer_json, json_path)) by_index[d.expected_id] = d;
            if (!has_extra && map_has_additional) extra = map_additional;
        }
        // BertTokenizer's defaults for the named tokens a folder leaves out.
        for (auto [k, v] : {std::pair{"unk_token", "[UNK]"}, {"sep_token", "[SEP]"}, {"pad_token", "[PAD]"},
                            {"cls_token", "[CLS]"}, {"mask_token", "[MASK]"}})
            if (!named.count(k)) named[k] = parse_token(nlohmann::json(v), "", k, true);

        // TokenizersBackend.__init__: the declared tokens by index, then the named special tokens
        // and the extra ones that are not declared yet. A token named as a special is special.
        std::unordered_set<std::string> named_contents;
        for (const auto& [k, t] : named)
            if (t) named_contents.insert(t->content);
        for (auto& [index, d] : by_index) {
            if (named_contents.count(d.token.content)) d.token.special = true;
            s.tokens.push_back(d);
        }
        auto declared = [&](const std::string& content) {
            return std::any_of(s.tokens.begin(), s.tokens.end(), [&](const Declared& d) { return d.token.content == content; });
        };
        std::vector<std::string> order(std::begin(named_keys), std::end(named_keys));
        order.insert(order.end(), model_specific.begin(), model_specific.end());
        for (const auto& k : order) {
            auto it = named.find(k);
            if (it == named.end() || !it->second) continue;
            const auto& t = it->second;
            s.named[k] = t->content;
            if (!declared(t->content)) {
                detail::AddedToken u = *t;
                u.special = true;
                s.tokens.push_back(Declared{u, -1, s.where + ": field " + F::quoted(k)});
            }
        }
        for (const auto& t : extra) {
            s.extra.push_back(t.content);
            if (!declared(t.content)) s.tokens.push_back(Declared{t, -1, s.where + ": extra special token " + F::quoted(t.content)});
        }
        return s;
    }

    // A key of added_tokens_decoder: a decimal id.
    static std::int64_t parse_index(const std::string& key, const std::string& file) {
        namespace F = detail::wordpiece_files;
        if (key.empty() || key.size() > 10 || !std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; }))
            F::fail(file, "field 'added_tokens_decoder': expected integer ids as keys, found " + F::quoted(key));
        return std::stoll(key);
    }

    // tokenizer.json's "added_tokens": [{"id", "content", flags}], in file order.
    static std::vector<Declared> json_added_tokens(const nlohmann::json& j, const std::string& path) {
        namespace F = detail::wordpiece_files;
        std::vector<Declared> out;
        if (!j.contains("added_tokens") || j["added_tokens"].is_null()) return out;
        const auto& list = j["added_tokens"];
        if (!list.is_array()) F::fail(path, "field 'added_tokens': expected an array, found " + F::kind(list));
        for (std::size_t k = 0; k < list.size(); ++k) {
            const std::string field = "added_tokens[" + std::to_string(k) + "]";
            const auto& v = list[k];
            if (!v.is_object()) F::fail(path, "field '" + field + "': expected an object, found " + F::kind(v));
            if (!v.contains("id") || !v["id"].is_number_integer() || v["id"].get<std::int64_t>() < 0)
                F::fail(path, "field '" + field + ".id': expected a non-negative integer, found " +
                                  (v.contains("id") ? F::kind(v["id"]) : std::string("nothing")));
            detail::AddedToken t = parse_token(v, path, field, false);
            out.push_back(Declared{t, v["id"].get<std::int64_t>(), "'" + path + "': field '" + field + "'"});
        }
        return out;
    }

    static Setup setup_of(const Config& c) {
        Setup s;
        s.normalizer = {.clean_text = true,
                        .handle_chinese_chars = c.tokenize_chinese_chars,
                        .strip_accents = c.strip_accents,
                        .lowercase = c.do_lower_case};
        s.model_max_length = c.model_max_length;
        s.padding_side = c.padding_side;
        s.truncation_side = c.truncation_side;
        s.clean_up_tokenization_spaces = c.clean_up_tokenization_spaces;
        s.where = "Config";
        const std::pair<const char*, const std::string*> named[] = {
            {"bos_token", &c.bos_token}, {"eos_token", &c.eos_token}, {"unk_token", &c.unk_token},
            {"sep_token", &c.sep_token}, {"pad_token", &c.pad_token}, {"cls_token", &c.cls_token},
            {"mask_token", &c.mask_token}};
        auto declared = [&](const std::string& content) {
            return std::any_of(s.tokens.begin(), s.tokens.end(), [&](const Declared& d) { return d.token.content == content; });
        };
        for (auto [k, v] : named) {
            if (v->empty()) continue;
            s.named[k] = *v;
            if (!declared(*v)) s.tokens.push_back(Declared{detail::AddedToken{*v}, -1, std::string("Config: ") + k});
        }
        for (const auto& v : c.additional_special_tokens) {
            if (v.empty()) throw ArgumentError("WordPieceTokenizer: an additional special token is empty");
            s.extra.push_back(v);
            if (!declared(v)) s.tokens.push_back(Declared{detail::AddedToken{v}, -1, "Config: additional_special_tokens"});
        }
        return s;
    }

    struct Model {
        detail::WordPieceModel wp;
        detail::BertNormalizer normalizer;
        std::vector<detail::AddedToken> added;                 // distinct contents, in the order added
        std::vector<std::string> added_decode;                 // what decode() shows for each
        std::unordered_map<std::int32_t, std::size_t> added_by_id;
        std::unordered_map<std::string, std::int32_t> added_ids;
        std::unordered_set<std::string> special;               // contents decode skips
        detail::AddedTokenMatcher raw_added, normalized_added;  // the two passes of the split
        Template single, pair;
        bool has_decoder = true, decoder_cleanup = true;
        std::string decoder_prefix = "##";
        bool clean_up_tokenization_spaces = false;
        std::int32_t cls = -1, sep = -1, pad = -1, unk = -1;
        std::optional<std::int32_t> mask, bos, eos;
        std::vector<std::int32_t> additional;
        std::optional<index_t> model_max_length;
        Side padding_side = Side::right, truncation_side = Side::right;
        std::size_t id_bound = 0;
        std::string vocab_path;  // the file the vocabulary came from, for messages

        std::int32_t lookup(std::string_view token) const {
            auto it = added_ids.find(std::string(token));
            if (it != added_ids.end()) return it->second;
            return wp.id_of(token);
        }

        // ---- vocabularies ------------------------------------------------------------------------

        // tokenizers' WordPiece::read_file: one token per line (LF or CRLF), trailing white
        // space trimmed, id = line index. A repeated or empty token is refused: tokenizers would
        // silently give the first of two equal lines no token at all.
        void load_vocab_txt(const std::string& path) {
            vocab_path = path;
            namespace F = detail::wordpiece_files;
            const std::string text = F::read_file(path);
            if (auto bad = detail::find_invalid_utf8(text)) {
                const auto before = std::string_view(text).substr(0, bad->offset);
                const std::size_t line = 1 + static_cast<std::size_t>(std::count(before.begin(), before.end(), '\n'));
                F::fail(path, "line " + std::to_string(line) + ": expected UTF-8 text, found an invalid byte sequence at byte " +
                                  std::to_string(bad->offset) + " (" + bad->reason + ")");
            }
            std::int32_t id = 0;
            for (std::size_t start = 0; start < text.size(); ++id) {
                std::size_t end = text.find('\n', start);
                if (end == std::string::npos) end = text.size();
                std::u32string line = detail::to_u32(std::string_view(text).substr(start, end - start));
                start = end + 1;
                while (!line.empty() && (line.back() == U'\r' || detail::is_bert_whitespace(line.back()))) line.pop_back();
                const std::string where = "line " + std::to_string(id + 1);
                if (line.empty()) F::fail(path, where + ": expected a token, found an empty line");
                std::string token = detail::to_utf8(line);
                if (!wp.add(token, id))
                    F::fail(path, where + ": token " + F::quoted(token) + " already on line " + std::to_string(wp.id_of(token) + 1));
            }
            if (id == 0) F::fail(path, "expected one token per line, found an empty file");
            id_bound = wp.id_bound();
        }

        // model.vocab of a tokenizer.json: {token: id} (or a list of tokens), ids exactly 0..n-1.
        void load_json_vocab(const nlohmann::json& j, const std::string& path) {
            vocab_path = path;
            namespace F = detail::wordpiece_files;
            if (!j.contains("model") || !j["model"].is_object())
                F::fail(path, "field 'model': expected an object, found " +
                                  (j.contains("model") ? F::kind(j["model"]) : std::string("nothing")));
            const auto& model = j["model"];
            if (model.contains("type")) {
                if (!model["type"].is_string())
                    F::fail(path, "field 'model.type': expected a string, found " + F::kind(model["type"]));
                if (model["type"] != "WordPiece")
                    F::fail(path, "field 'model.type': expected \"WordPiece\", found " + model["type"].dump());
            } else if (model.contains("merges")) {
                F::fail(path, "field 'model': expected a WordPiece model, found one with merges (BPE)");
            }
            if (!model.contains("vocab")) F::fail(path, "field 'model.vocab': expected an object {token: id}, found nothing");
            const auto& vocab = model["vocab"];
            if (vocab.is_object()) {
                if (vocab.empty()) F::fail(path, "field 'model.vocab': expected at least one token, found none");
                const std::size_t n = vocab.size();
                wp.reserve(n);
                for (const auto& [token, v] : vocab.items()) {
                    const std::string field = "model.vocab." + token;
                    if (!v.is_number_integer())
                        F::fail(path, "field " + F::quoted(field) + ": expected an integer id, found " + F::kind(v));
                    const std::int64_t id = v.get<std::int64_t>();
                    // Ids index dense tables: a stray huge id must not become a huge allocation.
                    if (id < 0 || static_cast<std::uint64_t>(id) >= n)
                        F::fail(path, "field " + F::quoted(field) + ": expected an id in [0, " + std::to_string(n) +
                                          ") (the vocabulary's size), found " + v.dump());
                    if (detail::find_invalid_utf8(token))
                        F::fail(path, "field 'model.vocab': a token is not valid UTF-8");
                    if (!wp.add(token, static_cast<std::int32_t>(id)))
                        F::fail(path, "field " + F::quoted(field) + ": id " + std::to_string(id) + " is also given to " +
                                          F::quoted(*wp.token_of(static_cast<std::int32_t>(id))));
                }
            } else if (vocab.is_array()) {
                if (vocab.empty()) F::fail(path, "field 'model.vocab': expected at least one token, found none");
                wp.reserve(vocab.size());
                for (std::size_t k = 0; k < vocab.size(); ++k) {
                    const auto& v = vocab[k];
                    const nlohmann::json& tok = v.is_array() && !v.empty() ? v[0] : v;
                    const std::string field = "model.vocab[" + std::to_string(k) + "]";
                    if (!tok.is_string()) F::fail(path, "field '" + field + "': expected a token string, found " + F::kind(tok));
                    if (!wp.add(tok.get<std::string>(), static_cast<std::int32_t>(k)))
                        F::fail(path, "field '" + field + "': token " + F::quoted(tok.get<std::string>()) + " repeats");
                }
            } else {
                F::fail(path, "field 'model.vocab': expected an object {token: id}, found " + F::kind(vocab));
            }
            id_bound = wp.id_bound();
        }

        // ---- assembling --------------------------------------------------------------------------

        // tokenizers' AddedVocabulary::add_tokens: a content already known keeps its id (vocabulary
        // or earlier added token; the newer flags win, and special never reverts), a new one takes
        // the next id after the vocabulary and the added tokens.
        std::int32_t add_token(const Declared& d) {
            namespace F = detail::wordpiece_files;
            const detail::AddedToken& t = d.token;
            if (t.content.empty()) return -1;
            if (detail::find_invalid_utf8(t.content)) throw IoError(std::string(F::who) + ": " + d.where + ": the token is not valid UTF-8");
            std::int32_t id = lookup(t.content);
            if (id < 0) id = static_cast<std::int32_t>(id_bound);
            if (d.expected_id >= 0 && d.expected_id != id)
                throw IoError(std::string(F::who) + ": " + d.where + ": token " + F::quoted(t.content) + " is declared with id " +
                              std::to_string(d.expected_id) + " but takes id " + std::to_string(id) +
                              " (the vocabulary of '" + vocab_path + "' has " + std::to_string(wp.size()) +
                              " entries and the added tokens before it fill the ids up to " + std::to_string(id_bound) + ")");
            auto it = added_ids.find(t.content);
            detail::AddedToken stored = t;
            stored.id = id;
            if (it == added_ids.end()) {
                added_ids.emplace(t.content, id);
                added_by_id[id] = added.size();
                added.push_back(stored);
            } else {
                added[added_by_id.at(id)] = stored;
            }
            if (t.special) special.insert(t.content);
            id_bound = std::max(id_bound, static_cast<std::size_t>(id) + 1);
            return id;
        }

        // The two matching passes (raw, then normalized text) and what decode() shows for each
        // added token: a normalized token decodes to its normalized form (tokenizers'
        // normalized_cache).
        void build_matchers() {
            std::vector<detail::AddedToken> raw, norm;
            std::vector<std::u32string> raw_p, norm_p;
            added_decode.assign(added.size(), {});
            for (std::size_t k = 0; k < added.size(); ++k) {
                const auto& t = added[k];
                const std::u32string content = detail::to_u32(t.content);
                if (t.normalized) {
                    std::u32string n = normalizer.normalize(content);
                    added_decode[k] = detail::to_utf8(n);
                    norm.push_back(t);
                    norm_p.push_back(std::move(n));
                } else {
                    added_decode[k] = t.content;
                    raw.push_back(t);
                    raw_p.push_back(content);
                }
            }
            raw_added = detail::AddedTokenMatcher(std::move(raw), std::move(raw_p));
            normalized_added = detail::AddedTokenMatcher(std::move(norm), std::move(norm_p));
        }

        std::int32_t named_id(const Setup& s, const char* key) const {
            auto it = s.named.find(key);
            if (it == s.named.end()) return -1;
            return lookup(it->second);
        }

        // BertTokenizer: WordPiece with its unk_token, "##" and 100 characters; BERT's template.
        void finish(const Setup& s) {
            namespace F = detail::wordpiece_files;
            const std::string unk_token = s.named.count("unk_token") ? s.named.at("unk_token") : "[UNK]";
            wp.configure({.unk_token = unk_token});
            if (wp.unk_id() < 0)
                throw IoError(std::string(F::who) + ": " + s.where + ": unk_token " + F::quoted(unk_token) +
                              " is not in the vocabulary of '" + vocab_path + "' (WordPiece needs it for words it cannot spell)");
            normalizer = s.normalizer;
            for (const auto& d : s.tokens) add_token(d);
            build_matchers();
            cls = named_id(s, "cls_token");
            sep = named_id(s, "sep_token");
            pad = named_id(s, "pad_token");
            unk = wp.unk_id();
            if (auto id = named_id(s, "mask_token"); id >= 0) mask = id;
            if (auto id = named_id(s, "bos_token"); id >= 0) bos = id;
            if (auto id = named_id(s, "eos_token"); id >= 0) eos = id;
            for (const auto& e : s.extra)
                if (const std::int32_t id = lookup(e); id >= 0) additional.push_back(id);
            // BERT's template needs [CLS] and [SEP]; batches need a pad id.
            for (auto [key, id] : {std::pair{"cls_token", cls}, {"sep_token", sep}, {"pad_token", pad}})
                if (id < 0)
                    throw IoError(std::string(F::who) + ": " + s.where + ": " + key + " " +
                                  (s.named.count(key) ? F::quoted(s.named.at(key)) + " has no id" : std::string("is null")) +
                                  " (a BERT tokenizer needs one)");
            single = {{-1, {cls}, 0}, {0, {}, 0}, {-1, {sep}, 0}};
            pair = {{-1, {cls}, 0}, {0, {}, 0}, {-1, {sep}, 0}, {1, {}, 1}, {-1, {sep}, 1}};
            model_max_length = s.model_max_length;
            padding_side = s.padding_side;
            truncation_side = s.truncation_side;
            clean_up_tokenization_spaces = s.clean_up_tokenization_spaces;
        }

        // tokenizers' Tokenizer::from_file for a BERT pipeline.
        void load_tokenizer_json(const nlohmann::json& j, const std::string& path) {
            namespace F = detail::wordpiece_files;
            load_json_vocab(j, path);
            const auto& model = j["model"];
            detail::WordPieceModel::Config wc;
            wc.unk_token = F::get_string(model, "unk_token", path, "model.").value_or("[UNK]");
            wc.continuing_subword_prefix = F::get_string(model, "continuing_subword_prefix", path, "model.").value_or("##");
            if (model.contains("max_input_chars_per_word") && !model["max_input_chars_per_word"].is_null()) {
                const auto& v = model["max_input_chars_per_word"];
                if (!v.is_number_unsigned())
                    F::fail(path, "field 'model.max_input_chars_per_word': expected a non-negative integer, found " + F::kind(v));
                wc.max_input_chars_per_word = static_cast<std::size_t>(std::min<std::uint64_t>(v.get<std::uint64_t>(), SIZE_MAX));
            }
            wp.configure(wc);
            if (wp.unk_id() < 0)
                F::fail(path, "field 'model.unk_token': " + F::quoted(wc.unk_token) + " is not in the vocabulary");

            const auto& norm = j.value("normalizer", nlohmann::json());
            if (norm.is_null()) {
                normalizer = {.clean_text = false, .handle_chinese_chars = false, .strip_accents = false, .lowercase = false};
            } else {
                if (!norm.is_object() || norm.value("type", nlohmann::json()) != "BertNormalizer")
                    F::fail(path, "field 'normalizer': expected {\"type\": \"BertNormalizer\", ...} or null, found " +
                                      (norm.is_object() ? norm.value("type", nlohmann::json()).dump() : F::kind(norm)));
                auto flag = [&](const char* key) {
                    if (!norm.contains(key) || !norm[key].is_boolean())
                        F::fail(path, std::string("field 'normalizer.") + key + "': expected a boolean, found " +
                                          (norm.contains(key) ? F::kind(norm[key]) : std::string("nothing")));
                    return norm[key].get<bool>();
                };
                normalizer = {.clean_text = flag("clean_text"),
                              .handle_chinese_chars = flag("handle_chinese_chars"),
                              .strip_accents = F::get_optional_bool(norm, "strip_accents", path, "normalizer."),
                              .lowercase = flag("lowercase")};
            }
            const auto& pre = j.value("pre_tokenizer", nlohmann::json());
            if (!pre.is_object() || pre.value("type", nlohmann::json()) != "BertPreTokenizer")
                F::fail(path, "field 'pre_tokenizer': expected {\"type\": \"BertPreTokenizer\"}, found " +
                                  (pre.is_object() ? pre.value("type", nlohmann::json()).dump() : F::kind(pre)));

            const auto& dec = j.value("decoder", nlohmann::json());
            if (dec.is_null()) {
                has_decoder = false;
            } else {
                if (!dec.is_object() || dec.value("type", nlohmann::json()) != "WordPiece")
                    F::fail(path, "field 'decoder': expected {\"type\": \"WordPiece\", ...} or null, found " +
                                      (dec.is_object() ? dec.value("type", nlohmann::json()).dump() : F::kind(dec)));
                decoder_prefix = F::get_string(dec, "prefix", path, "decoder.").value_or("##");
                decoder_cleanup = F::get_bool(dec, "cleanup", true, path, "decoder.");
            }

            for (const auto& d : json_added_tokens(j, path)) add_token(d);
            build_matchers();

            // Special ids by BERT's names; pad from the padding block when it names one.
            unk = wp.unk_id();
            auto need = [&](const std::string& token, const std::string& field) {
                const std::int32_t id = lookup(token);
                if (id < 0) F::fail(path, "field '" + field + "': " + F::quoted(token) + " is not in the vocabulary");
                return id;
            };
            std::string pad_token = "[PAD]";
            if (j.contains("padding") && j["padding"].is_object())
                pad_token = F::get_string(j["padding"], "pad_token", path, "padding.").value_or(pad_token);
            pad = need(pad_token, "padding.pad_token");
            if (auto id = lookup("[MASK]"); id >= 0) mask = id;

            const auto& post = j.value("post_processor", nlohmann::json());
            if (post.is_null()) {
                cls = need("[CLS]", "post_processor");
                sep = need("[SEP]", "post_processor");
                single = {{0, {}, 0}};
                pair = {{0, {}, 0}, {1, {}, 1}};
            } else if (post.is_object() && post.value("type", nlohmann::json()) == "BertProcessing") {
                auto special = [&](const char* key) {
                    const auto& v = post.value(key, nlohmann::json());
                    if (!v.is_array() || v.size() != 2 || !v[0].is_string() || !v[1].is_number_integer())
                        F::fail(path, std::string("field 'post_processor.") + key + "': expected [token, id], found " + F::kind(v));
                    const std::int32_t id = need(v[0].get<std::string>(), std::string("post_processor.") + key);
                    if (id != v[1].get<std::int64_t>())
                        F::fail(path, std::string("field 'post_processor.") + key + "': " + v.dump() +
                                          " but the vocabulary gives it id " + std::to_string(id));
                    return id;
                };
                cls = special("cls");
                sep = special("sep");
                single = {{-1, {cls}, 0}, {0, {}, 0}, {-1, {sep}, 0}};
                pair = {{-1, {cls}, 0}, {0, {}, 0}, {-1, {sep}, 0}, {1, {}, 1}, {-1, {sep}, 1}};
            } else if (post.is_object() && post.value("type", nlohmann::json()) == "TemplateProcessing") {
                single = parse_template(post, "single", path);
                pair = parse_template(post, "pair", path);
                cls = need("[CLS]", "post_processor");
                sep = need("[SEP]", "post_processor");
            } else {
                F::fail(path, "field 'post_processor': expected TemplateProcessing, BertProcessing or null, found " +
                                  (post.is_object() ? post.value("type", nlohmann::json()).dump() : F::kind(post)));
            }
        }

        // TemplateProcessing's "single"/"pair": [{"SpecialToken": {"id", "type_id"}} |
        // {"Sequence": {"id": "A"|"B", "type_id"}}], special ids from its "special_tokens" map.
        Template parse_template(const nlohmann::json& post, const char* which, const std::string& path) const {
            namespace F = detail::wordpiece_files;
            const std::string field = std::string("post_processor.") + which;
            const auto& items = post.value(which, nlohmann::json());
            if (!items.is_array()) F::fail(path, "field '" + field + "': expected an array, found " + F::kind(items));
            const auto& specials = post.value("special_tokens", nlohmann::json::object());
            Template out;
            for (std::size_t k = 0; k < items.size(); ++k) {
                const std::string at = field + "[" + std::to_string(k) + "]";
                const auto& it = items[k];
                auto type_id = [&](const nlohmann::json& v) -> std::int32_t {
                    if (!v.contains("type_id") || !v["type_id"].is_number_unsigned() || v["type_id"].get<std::uint64_t>() > 1000)
                        F::fail(path, "field '" + at + ".type_id': expected a small non-negative integer");
                    return static_cast<std::int32_t>(v["type_id"].get<std::uint64_t>());
                };
                if (it.is_object() && it.contains("Sequence") && it["Sequence"].is_object()) {
                    const auto& v = it["Sequence"];
                    const auto id = v.value("id", nlohmann::json());
                    if (id != "A" && id != "B") F::fail(path, "field '" + at + ".Sequence.id': expected \"A\" or \"B\", found " + id.dump());
                    out.push_back({id == "A" ? 0 : 1, {}, type_id(v)});
                } else if (it.is_object() && it.contains("SpecialToken") && it["SpecialToken"].is_object()) {
                    const auto& v = it["SpecialToken"];
                    const auto name = v.value("id", nlohmann::json());
                    if (!name.is_string()) F::fail(path, "field '" + at + ".SpecialToken.id': expected a string, found " + F::kind(name));
                    const auto& sp = specials.is_object() ? specials.value(name.get<std::string>(), nlohmann::json()) : nlohmann::json();
                    if (!sp.is_object() || !sp.contains("ids") || !sp["ids"].is_array())
                        F::fail(path, "field 'post_processor.special_tokens': expected an entry {\"ids\": [...]} for " + name.dump());
                    TemplatePiece p{-1, {}, type_id(v)};
                    for (const auto& id : sp["ids"]) {
                        if (!id.is_number_unsigned() || id.get<std::uint64_t>() >= id_bound)
                            F::fail(path, "field 'post_processor.special_tokens." + name.get<std::string>() +
                                              ".ids': expected ids below " + std::to_string(id_bound) + ", found " + id.dump());
                        p.ids.push_back(static_cast<std::int32_t>(id.get<std::uint64_t>()));
                    }
                    out.push_back(std::move(p));
                } else {
                    F::fail(path, "field '" + at + "': expected {\"Sequence\": ...} or {\"SpecialToken\": ...}, found " + F::kind(it));
                }
            }
            return out;
        }

        // ---- encoding ----------------------------------------------------------------------------

        // tokenizers' encode: added tokens cut from the raw text, each other piece normalized,
        // normalized added tokens cut from it, the rest pre-tokenized and WordPiece-encoded.
        void encode(std::string_view text, std::vector<std::int32_t>& out) const {
            detail::validate_utf8(text, detail::wordpiece_files::who);
            const std::u32string u = detail::to_u32(text);
            for (const auto& piece : raw_added.split(u)) {
                if (piece.token) {
                    out.push_back(piece.token->id);
                    continue;
                }
                const std::u32string norm = normalizer.normalize(std::u32string_view(u).substr(piece.begin, piece.end - piece.begin));
                for (const auto& p : normalized_added.split(norm)) {
                    if (p.token) {
                        out.push_back(p.token->id);
                        continue;
                    }
                    detail::bert_pre_tokenize(std::u32string_view(norm).substr(p.begin, p.end - p.begin),
                                              [&](std::u32string_view word) { wp.encode_word(word, out); });
                }
            }
        }

        static std::size_t added_count(const Template& t) {
            std::size_t n = 0;
            for (const auto& p : t) n += p.ids.size();
            return n;
        }

        // The template with a and b in place; types (when given) gets each id's token type.
        void apply_template(const Template& t, const std::vector<std::int32_t>& a, const std::vector<std::int32_t>& b,
                            std::vector<std::int32_t>& out, std::vector<std::int32_t>* types) const {
            for (const auto& p : t) {
                const auto& ids = p.sequence == 0 ? a : p.sequence == 1 ? b : p.ids;
                out.insert(out.end(), ids.begin(), ids.end());
                if (types) types->insert(types->end(), ids.size(), p.type_id);
            }
        }

        static void cut(std::vector<std::int32_t>& ids, std::size_t n, Side side) {
            if (ids.size() <= n) return;
            if (side == Side::right) ids.resize(n);
            else ids.erase(ids.begin(), ids.end() - static_cast<std::ptrdiff_t>(n));
        }

        // tokenizers' truncate_encodings with LongestFirst.
        static void truncate(std::vector<std::int32_t>& a, std::vector<std::int32_t>* b, std::size_t max, Side side) {
            if (!b) {
                cut(a, max, side);
                return;
            }
            if (a.size() + b->size() <= max) return;
            std::size_t n1 = a.size(), n2 = b->size();
            const bool swap = n1 > n2;
            if (swap) std::swap(n1, n2);
            n2 = n1 > max ? n1 : std::max(n1, max - n1);
            if (n1 + n2 > max) {
                n1 = max / 2;
                n2 = n1 + max % 2;
            }
            if (swap) std::swap(n1, n2);
            cut(a, n1, side);
            cut(*b, n2, side);
        }

        Batch batch(const std::vector<std::string>& texts, const std::vector<std::string>* pairs, const Options& opt) const {
            const std::optional<index_t> max = opt.max_length ? opt.max_length : model_max_length;
            if (opt.max_length && *opt.max_length < 0)
                throw ArgumentError("WordPieceTokenizer: max_length " + std::to_string(*opt.max_length) + " is negative");
            if (opt.padding == Options::Padding::max_length && !max)
                throw ArgumentError("WordPieceTokenizer: padding to max_length needs a max_length (the tokenizer has no model_max_length)");
            const Template& tmpl = pairs ? pair : single;
            const std::size_t n_added = opt.add_special_tokens ? added_count(tmpl) : 0;
            if (opt.truncate && max && static_cast<std::size_t>(*max) < n_added)
                throw ArgumentError("WordPieceTokenizer: max_length " + std::to_string(*max) + " leaves no room for the " +
                                    std::to_string(n_added) + " special tokens");
            const Side tside = opt.truncation_side.value_or(truncation_side);
            const Side pside = opt.padding_side.value_or(padding_side);
            std::vector<std::vector<std::int32_t>> rows(texts.size()), types(texts.size());
            index_t longest = 0;
            for (std::size_t i = 0; i < texts.size(); ++i) {
                std::vector<std::int32_t> a, b;
                encode(texts[i], a);
                if (pairs) encode((*pairs)[i], b);
                if (opt.truncate && max) truncate(a, pairs ? &b : nullptr, static_cast<std::size_t>(*max) - n_added, tside);
                if (opt.add_special_tokens) {
                    apply_template(tmpl, a, b, rows[i], &types[i]);
                } else {
                    rows[i] = a;
                    types[i].assign(a.size(), 0);
                    rows[i].insert(rows[i].end(), b.begin(), b.end());
                    types[i].insert(types[i].end(), b.size(), 1);
                }
                longest = std::max(longest, static_cast<index_t>(rows[i].size()));
            }
            index_t width = longest;
            if (opt.padding == Options::Padding::max_length) {
                for (std::size_t i = 0; i < rows.size(); ++i)
                    if (static_cast<index_t>(rows[i].size()) > *max)
                        throw ArgumentError("WordPieceTokenizer: text " + std::to_string(i) + " has " + std::to_string(rows[i].size()) +
                                            " tokens, more than max_length " + std::to_string(*max) + " (set truncate to cut it)");
                width = *max;
            } else if (opt.padding == Options::Padding::none) {
                for (std::size_t i = 0; i < rows.size(); ++i)
                    if (static_cast<index_t>(rows[i].size()) != longest)
                        throw ArgumentError("WordPieceTokenizer: padding none needs rows of equal length; text " + std::to_string(i) +
                                            " has " + std::to_string(rows[i].size()) + " tokens, the longest " + std::to_string(longest));
            }
            const index_t n = static_cast<index_t>(rows.size());
            Batch out{Tensor<std::int32_t>({n, width}, pad), Tensor<std::int32_t>({n, width}, 0),
                      Tensor<std::int32_t>({n, width}, 0)};
            for (std::size_t i = 0; i < rows.size(); ++i) {
                const index_t len = static_cast<index_t>(rows[i].size());
                const index_t at = pside == Side::right ? 0 : width - len;
                for (index_t j = 0; j < len; ++j) {
                    out.input_ids(static_cast<index_t>(i), at + j) = rows[i][static_cast<std::size_t>(j)];
                    out.attention_mask(static_cast<index_t>(i), at + j) = 1;
                    out.token_type_ids(static_cast<index_t>(i), at + j) = types[i][static_cast<std::size_t>(j)];
                }
            }
            return out;
        }

        // ---- decoding ----------------------------------------------------------------------------

        // tokenizers' Tokenizer::decode (added tokens in their decode form; a token whose string
        // is a special token's is skipped on request), its WordPiece decoder, then transformers'
        // clean_up_tokenization when configured.
        std::string decode(std::span<const std::int32_t> ids, bool skip_special) const {
            std::vector<std::string_view> tokens;
            tokens.reserve(ids.size());
            for (std::int32_t id : ids) {
                std::string_view tok;
                if (auto it = added_by_id.find(id); it != added_by_id.end()) tok = added_decode[it->second];
                else if (const std::string* t = wp.token_of(id)) tok = *t;
                else continue;
                if (skip_special && special.count(std::string(tok))) continue;
                tokens.push_back(tok);
            }
            std::string text;
            if (has_decoder) {
                text = detail::wordpiece_decode(tokens, decoder_prefix, decoder_cleanup);
            } else {
                for (std::size_t k = 0; k < tokens.size(); ++k) (text += k ? " " : "") += tokens[k];
            }
            return clean_up_tokenization_spaces ? detail::clean_up_tokenization(text) : text;
        }
    };

    WordPieceTokenizer() : m_(std::make_shared<Model>()) {}

    std::shared_ptr<Model> m_;
};

}  // namespace mmalign::io
