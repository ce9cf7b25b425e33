// mmalign/io/gpt2_tokenizer.hpp — GPT-2's byte-level BPE tokenizer as OPT and BLIP-2 use it, id
// for id equal to what transformers 5's AutoTokenizer gives for such a folder: the
// tokenizers-backed `GPT2Tokenizer` (tokenization_gpt2.py on TokenizersBackend,
// tokenization_utils_tokenizers.py; GPT2TokenizerFast in transformers 4).
//
//   1. added tokens (<image>, </s>, <pad>, ...) are cut out of the text first (tokenizers'
//      AddedVocabulary: normalized = false ones in the raw text, then the others; leftmost-longest,
//      with their lstrip / rstrip / single_word flags); there is no normalizer;
//   2. each other piece gets a space in front when add_prefix_space is set and it has none, is split
//      by GPT-2's regex (detail/gpt2_pretokenizer.hpp), and each match is mapped byte by byte through
//      GPT-2's byte table (detail/byte_level.hpp);
//   3. BPE per match, lowest merge rank first, no end-of-word suffix; a symbol missing from the
//      vocabulary is dropped (GPT2Tokenizer builds its BPE without an unknown token);
//   4. the post-processor adds bos / eos: when tokenizer_config.json says add_bos_token or
//      add_eos_token, the template "[bos] $A [eos]" those two flags describe (OPT: add_bos_token
//      true, so "</s>" first and nothing appended); otherwise tokenizer.json's post_processor.
//
// Decoding maps each token's characters back to bytes (an added token outside the byte alphabet
// is its own text), turns invalid UTF-8 into U+FFFD as Rust's from_utf8_lossy does, and skips ids
// the tokenizer does not know; skip_special_tokens drops the added tokens marked special.
// transformers' clean_up_tokenization_spaces is never applied to a BPE model (it warns and skips).
//
// Which files are read, as transformers 5.25's from_pretrained reads them:
//  * tokenizer.json when present (its model.vocab, model.merges, post_processor and — only when
//    tokenizer_config.json has no added_tokens_decoder — its added_tokens; GPT2Tokenizer rebuilds
//    its pre-tokenizer and decoder itself, so tokenizer.json's are not used), else vocab.json +
//    merges.txt;
//  * tokenizer_config.json: bos/eos/unk/pad tokens (strings or AddedToken dicts), add_bos_token,
//    add_eos_token, add_prefix_space, padding_side, added_tokens_decoder,
//    extra_special_tokens.image_token;
//  * only without added_tokens_decoder: special_tokens_map.json (overrides the config's named
//    tokens) and added_tokens.json ({token: id}; special when it is a named special token).
// Named special tokens missing from the vocabulary are added after it, as transformers does;
// GPT2Tokenizer's defaults are "<|endoftext|>" for bos, eos and unk, and no pad token.
//
// Text is bytes: invalid UTF-8 throws InvalidUtf8Error (an ArgumentError) with the byte offset; a
// Python str holds only valid scalar values, so HF never sees such input. Files are read with
// bounded sizes; malformed ones throw IoError naming the file and the field.
// A tokenizer is immutable after loading; copies share their tables and one thread-safe cache.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "mmalign/core/error.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/io/detail/added_tokens.hpp"
#include "mmalign/io/detail/bpe.hpp"
#include "mmalign/io/detail/bpe_files.hpp"
#include "mmalign/io/detail/byte_level.hpp"
#include "mmalign/io/detail/gpt2_pretokenizer.hpp"
#include "mmalign/io/detail/tokenizer_files.hpp"
#include "mmalign/io/detail/utf8.hpp"

namespace mmalign::io {

/// Which side of a batch row gets the padding (HF's padding_side).
enum class PaddingSide { right, left };

class Gpt2Tokenizer {
public:
    static constexpr std::string_view who = "Gpt2Tokenizer";

    /// A Hugging Face folder: tokenizer.json, else vocab.json + merges.txt, with
    /// tokenizer_config.json, special_tokens_map.json and added_tokens.json where present.
    static Gpt2Tokenizer from_folder(const std::string& dir) {
        Gpt2Tokenizer t;
        t.m_->load(dir);
        return t;
    }

    /// HF's `tokenizer(text, add_special_tokens=...)["input_ids"]`.
    std::vector<std::int32_t> encode(std::string_view text, bool add_special_tokens = true) const {
        std::vector<std::int32_t> ids;
        if (add_special_tokens) ids = m_->prefix;
        m_->encode(text, ids);
        if (add_special_tokens) ids.insert(ids.end(), m_->suffix.begin(), m_->suffix.end());
        return ids;
    }

    /// HF's `tokenizer.decode(ids, skip_special_tokens=...)`. The default skips them, as BLIP-2's
    /// captions and answers are decoded (`batch_decode(ids, skip_special_tokens=True)`); HF's
    /// default is false.
    std::string decode(std::span<const std::int32_t> ids, bool skip_special_tokens = true) const {
        std::string bytes;
        for (const std::int32_t id : ids) {
            const auto e = m_->entry(id);
            if (!e || (skip_special_tokens && e->special)) continue;
            if (!detail::byte_level_decode(*e->token, bytes)) bytes += *e->token;
        }
        return detail::utf8_lossy(bytes);
    }

    /// The id of a token (byte-level form, e.g. "Ġcat", or an added token's content); throws
    /// ArgumentError when absent.
    std::int32_t token_to_id(std::string_view token) const {
        if (auto id = find(token)) return *id;
        throw ArgumentError(std::string(who) + ": token " + detail::json_quoted(token) + " is not in the vocabulary");
    }
    /// The id of a token, if any (added tokens first, as tokenizers looks them up).
    std::optional<std::int32_t> find(std::string_view token) const {
        if (auto it = m_->added_ids.find(std::string(token)); it != m_->added_ids.end()) return it->second;
        const std::int32_t id = m_->bpe->id_of(token);
        if (id < 0) return std::nullopt;
        return id;
    }
    /// The token of an id (byte-level form or an added token's content); empty when unknown.
    std::string id_to_token(std::int32_t id) const {
        const auto e = m_->entry(id);
        return e ? *e->token : std::string();
    }

    std::int32_t bos_id() const { return m_->special_id("bos_token"); }
    std::int32_t eos_id() const { return m_->special_id("eos_token"); }
    /// The pad token's id; ArgumentError when the folder names none (GPT-2's own has none).
    std::int32_t pad_id() const { return m_->special_id("pad_token"); }
    std::int32_t unk_id() const { return m_->special_id("unk_token"); }
    std::optional<std::int32_t> pad_id_if_any() const { return m_->special_id_if_any("pad_token"); }
    /// HF's len(tokenizer): the distinct tokens of the vocabulary and the added tokens.
    index_t vocab_size() const { return m_->size; }
    /// tokenizer_config.json's padding_side (HF's default: right).
    PaddingSide padding_side() const { return m_->padding_side; }
    /// Whether encode(text) puts special tokens before / after the text (OPT: </s> before only).
    bool add_bos_token() const { return !m_->prefix.empty(); }
    bool add_eos_token() const { return !m_->suffix.empty(); }
    /// tokenizer_config.json's extra_special_tokens.image_token (transformers 5), if any.
    const std::optional<std::string>& image_token() const { return m_->image_token; }

    /// Registers an added token as transformers' add_tokens does: an existing token (vocabulary or
    /// added) keeps its id and takes the given flags, a new one gets the next id. Copies made
    /// before are not affected.
    std::int32_t add_token(const detail::AddedToken& token) {
        if (m_.use_count() != 1) m_ = std::make_shared<Model>(*m_);
        const std::int32_t id = m_->add(token);
        m_->build_matchers();
        return id;
    }

private:
    struct Model {
        struct Entry {
            const std::string* token;
            bool special;
        };

        // GPT-2's BPE (no suffix, no prefix, no unknown token), shared by copies: only the added
        // tokens differ between a tokenizer and one a processor extended.
        std::shared_ptr<detail::BpeModel> bpe = std::make_shared<detail::BpeModel>();
        std::vector<detail::AddedToken> added;  // in the order they were added
        std::unordered_map<std::string, std::int32_t> added_ids;
        std::unordered_map<std::int32_t, std::size_t> added_by_id;  // id → index in `added`
        detail::AddedTokenMatcher raw_added, normalized_added;
        std::map<std::string, std::string> named;  // "bos_token" → content
        std::vector<std::int32_t> prefix, suffix;  // what the post-processor puts around a text
        std::optional<std::string> image_token;
        PaddingSide padding_side = PaddingSide::right;
        bool add_prefix_space = false;
        index_t size = 0;

        std::optional<Entry> entry(std::int32_t id) const {
            if (auto it = added_by_id.find(id); it != added_by_id.end())
                return Entry{&added[it->second].content, added[it->second].special};
            if (const std::string* tok = bpe->token_of(id)) return Entry{tok, false};
            return std::nullopt;
        }

        std::optional<std::int32_t> special_id_if_any(const std::string& key) const {
            auto it = named.find(key);
            if (it == named.end()) return std::nullopt;
            if (auto a = added_ids.find(it->second); a != added_ids.end()) return a->second;
            const std::int32_t id = bpe->id_of(it->second);
            if (id < 0) return std::nullopt;
            return id;
        }
        std::int32_t special_id(const std::string& key) const {
            if (auto id = special_id_if_any(key)) return *id;
            throw ArgumentError(std::string(who) + ": the tokenizer has no " + key);
        }

        std::int32_t next_id() const {
            std::int32_t n = static_cast<std::int32_t>(bpe->id_bound());
            for (const auto& t : added) n = std::max(n, t.id + 1);
            return n;
        }

        std::int32_t add(detail::AddedToken t) {
            if (auto it = added_ids.find(t.content); it != added_ids.end()) {
                t.id = it->second;
                added[added_by_id[t.id]] = t;
                return t.id;
            }
            const std::int32_t in_vocab = bpe->id_of(t.content);
            t.id = in_vocab >= 0 ? in_vocab : next_id();
            if (in_vocab < 0) ++size;
            added_ids[t.content] = t.id;
            added_by_id[t.id] = added.size();
            added.push_back(t);
            return t.id;
        }

        void build_matchers() {
            std::vector<detail::AddedToken> raw, normalized;
            std::vector<std::u32string> raw_patterns, normalized_patterns;
            for (const auto& t : added) {
                // There is no normalizer: a normalized token is matched in the same text, but in
                // the second pass (tokenizers' AddedVocabulary::extract_and_normalize).
                (t.normalized ? normalized : raw).push_back(t);
                (t.normalized ? normalized_patterns : raw_patterns).push_back(detail::to_u32(t.content));
            }
            raw_added = detail::AddedTokenMatcher(std::move(raw), std::move(raw_patterns));
            normalized_added = detail::AddedTokenMatcher(std::move(normalized), std::move(normalized_patterns));
        }

        void encode(std::string_view text, std::vector<std::int32_t>& out) const {
            detail::validate_utf8(text, who);
            const std::u32string u = detail::to_u32(text);
            for (const auto& piece : raw_added.split(u)) {
                if (piece.token) {
                    out.push_back(piece.token->id);
                    continue;
                }
                const std::u32string_view part = std::u32string_view(u).substr(piece.begin, piece.end - piece.begin);
                for (const auto& p2 : normalized_added.split(part)) {
                    if (p2.token) out.push_back(p2.token->id);
                    else encode_segment(part.substr(p2.begin, p2.end - p2.begin), out);
                }
            }
        }

        void encode_segment(std::u32string_view segment, std::vector<std::int32_t>& out) const {
            std::u32string prefixed;
            if (add_prefix_space && (segment.empty() || segment[0] != U' ')) {
                if (segment.empty()) return;  // tokenizers prefixes nothing to an empty piece
                prefixed = U" ";
                prefixed += segment;
                segment = prefixed;
            }
            detail::gpt2_split(segment, [&](std::size_t b, std::size_t e) {
                bpe->encode_word(detail::byte_level_encode(detail::to_utf8(segment.substr(b, e - b))), out);
            });
        }

        // ---- loading -----------------------------------------------------------------------
        void load(const std::string& dir) {
            using namespace detail;
            const std::string json_path = in_folder(dir, "tokenizer.json");
            const std::string vocab_path = in_folder(dir, "vocab.json"), merges_path = in_folder(dir, "merges.txt");
            const std::string config_path = in_folder(dir, "tokenizer_config.json");
            const bool has_json = tokenizer_file_exists(json_path);
            if (!has_json && !tokenizer_file_exists(vocab_path))
                tokenizer_file_fail(who, json_path, "no such file, nor vocab.json + merges.txt beside it");
            nlohmann::json config = nlohmann::json::object();
            if (tokenizer_file_exists(config_path)) config = read_tokenizer_json_object(config_path, who);
            check_class(config, config_path);

            nlohmann::json post_processor;  // null: none
            std::vector<AddedToken> json_added;
            if (has_json) {
                const nlohmann::json j = read_tokenizer_json_object(json_path, who);
                load_tokenizer_json(j, json_path, json_added);
                if (j.contains("post_processor")) post_processor = j["post_processor"];
                if (!config.contains("padding_side") && j.contains("padding") && j["padding"].is_object() &&
                    j["padding"].contains("direction") && j["padding"]["direction"] == "Left")
                    padding_side = PaddingSide::left;
            } else {
                load_bpe_vocab(*bpe, read_tokenizer_json(vocab_path, who), "'" + vocab_path + "'", who);
                if (!tokenizer_file_exists(merges_path))
                    tokenizer_file_fail(who, merges_path, "no such file (vocab.json needs it beside it)");
                load_merges_txt(*bpe, read_tokenizer_file(merges_path, who), merges_path, who);
            }
            bpe->set_unknown({.id = -1, .fuse = false, .byte_fallback = false});
            size = static_cast<index_t>(bpe->vocab_size());

            read_config(dir, config, config_path, has_json ? json_added : std::vector<AddedToken>{});
            set_post_processor(config, post_processor, json_path);
            build_matchers();
        }

        static void check_class(const nlohmann::json& config, const std::string& path) {
            if (!config.contains("tokenizer_class") || config["tokenizer_class"].is_null()) return;
            const auto& c = config["tokenizer_class"];
            if (!c.is_string() || (c != "GPT2Tokenizer" && c != "GPT2TokenizerFast"))
                detail::tokenizer_file_fail(who, path, "tokenizer_class: expected \"GPT2Tokenizer\" or "
                                                       "\"GPT2TokenizerFast\", found " + c.dump());
        }

        void load_tokenizer_json(const nlohmann::json& j, const std::string& path, std::vector<detail::AddedToken>& added_out) {
            using namespace detail;
            const std::string where = "'" + path + "'";
            if (!j.contains("model") || !j["model"].is_object()) tokenizer_file_fail(who, path, "no \"model\" object");
            const auto& model = j["model"];
            if (model.contains("type") && model["type"] != "BPE")
                tokenizer_file_fail(who, path, "model.type: expected \"BPE\", found " + model["type"].dump());
            for (const char* key : {"end_of_word_suffix", "continuing_subword_prefix"})
                if (model.contains(key) && !model[key].is_null() && model[key] != "")
                    tokenizer_file_fail(who, path, std::string("model.") + key + ": expected none for GPT-2's BPE, found " +
                                                       model[key].dump());
            if (!model.contains("vocab")) tokenizer_file_fail(who, path, "model.vocab is missing");
            load_bpe_vocab(*bpe, model["vocab"], where + " model.vocab", who);
            if (!model.contains("merges")) tokenizer_file_fail(who, path, "model.merges is missing");
            load_json_merges(*bpe, model["merges"], where + " model.merges", who);
            const nlohmann::json list = j.value("added_tokens", nlohmann::json::array());
            if (!list.is_array()) tokenizer_file_fail(who, path, "added_tokens: expected an array, found " + json_value_kind(list));
            for (std::size_t k = 0; k < list.size(); ++k) {
                const auto& t = list[k];
                const std::string key = "added_tokens[" + std::to_string(k) + "]";
                if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer())
                    tokenizer_file_fail(who, path, key + ": expected an object with an integer \"id\"");
                // tokenizers' AddedToken defaults: not special, normalized unless special.
                AddedToken a{.content = {}, .special = false, .normalized = true};
                auto parsed = parse_added_token(t, path, key, who, a);
                if (!parsed) tokenizer_file_fail(who, path, key + ": null");
                if (!t.contains("normalized")) parsed->normalized = !parsed->special;
                added_out.push_back(*parsed);
            }
        }

        // tokenizer_config.json and the legacy files, as from_pretrained merges them.
        void read_config(const std::string& dir, const nlohmann::json& config, const std::string& config_path,
                         const std::vector<detail::AddedToken>& json_added) {
            using namespace detail;
            static constexpr const char* keys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                                   "pad_token", "cls_token", "mask_token"};
            std::map<std::string, AddedToken> named_tokens;
            // GPT2Tokenizer's constructor defaults.
            for (const char* k : {"bos_token", "eos_token", "unk_token"}) named_tokens[k] = AddedToken{"<|endoftext|>"};
            auto named_from = [&](const nlohmann::json& j, const std::string& file) {
                for (const char* k : keys) {
                    if (!j.contains(k)) continue;
                    auto t = parse_added_token(j[k], file, k, who);
                    if (t) named_tokens[k] = *t;
                    else named_tokens.erase(k);
                }
            };
            named_from(config, config_path);
            std::vector<AddedToken> ordered;  // added in this order
            auto dec = config.find("added_tokens_decoder");
            if (dec != config.end() && !dec->is_null()) {
                if (!dec->is_object())
                    tokenizer_file_fail(who, config_path, "added_tokens_decoder: expected an object, found " + json_value_kind(*dec));
                std::vector<std::pair<std::int64_t, AddedToken>> byid;
                for (const auto& [id, v] : dec->items()) {
                    std::int64_t n = -1;
                    try {
                        std::size_t used = 0;
                        n = std::stoll(id, &used);
                        if (used != id.size()) n = -1;
                    } catch (const std::exception&) {
                        n = -1;
                    }
                    if (n < 0) tokenizer_file_fail(who, config_path, "added_tokens_decoder: key " + json_quoted(id) + " is not an id");
                    if (!v.is_object())
                        tokenizer_file_fail(who, config_path, "added_tokens_decoder." + id + ": expected an object, found " + json_value_kind(v));
                    // transformers' AddedToken(**dict): absent flags take its defaults.
                    AddedToken base{.content = {}, .special = false};
                    auto t = parse_added_token(v, config_path, "added_tokens_decoder." + id, who, base);
                    if (!v.contains("normalized")) t->normalized = !t->special;
                    byid.emplace_back(n, *t);
                }
                std::stable_sort(byid.begin(), byid.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
                for (const auto& [id, t] : byid) ordered.push_back(t);
            } else {
                const std::string map_path = in_folder(dir, "special_tokens_map.json");
                if (tokenizer_file_exists(map_path)) {
                    const nlohmann::json m = read_tokenizer_json_object(map_path, who);
                    for (const char* k : keys) {
                        if (!m.contains(k)) continue;
                        // special_tokens_map.json's dicts become AddedToken(**value, special=True).
                        // (tokenizers' AddedToken: normalized defaults to !special).
                        auto t = parse_added_token(m[k], map_path, k, who);
                        if (t && m[k].is_object()) t->special = true;
                        if (t && m[k].is_object() && !m[k].contains("normalized")) t->normalized = false;
                        if (t) named_tokens[k] = *t;
                    }
                }
                const std::string added_path = in_folder(dir, "added_tokens.json");
                if (tokenizer_file_exists(added_path)) {
                    const nlohmann::json a = read_tokenizer_json_object(added_path, who);
                    std::vector<std::pair<std::int64_t, AddedToken>> byid;
                    for (const auto& [tok, id] : a.items()) {
                        if (!id.is_number_integer() || id.get<std::int64_t>() < 0)
                            tokenizer_file_fail(who, added_path, "token " + json_quoted(tok) + ": expected a non-negative integer id, found " + json_value_kind(id));
                        if (auto bad = find_invalid_utf8(tok))
                            tokenizer_file_fail(who, added_path, "token " + json_quoted(tok) + " is not valid UTF-8");
                        bool special = false;
                        for (const auto& [k, t] : named_tokens) special = special || t.content == tok;
                        byid.emplace_back(id.get<std::int64_t>(), AddedToken{.content = tok, .special = special, .normalized = !special});
                    }
                    std::stable_sort(byid.begin(), byid.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
                    for (const auto& [id, t] : byid) ordered.push_back(t);
                }
                // tokenizer.json's added_tokens (an entry for the same token replaces one from
                // added_tokens.json, as the dict assignment in from_pretrained does).
                for (const auto& t : json_added) {
                    auto it = std::find_if(ordered.begin(), ordered.end(), [&](const auto& u) { return u.content == t.content; });
                    if (it != ordered.end()) *it = t;
                    else ordered.push_back(t);
                }
            }
            // An added token that names a special token is special (TokenizersBackend.__init__), and
            // named tokens take the flags of the added token of the same string.
            for (auto& a : ordered)
                for (const auto& [k, t] : named_tokens) a.special = a.special || a.content == t.content;
            for (auto& [k, t] : named_tokens)
                for (const auto& a : ordered)
                    if (a.content == t.content) t = a;
            for (auto t : ordered) add(t);
            // Then every named special token not yet known is added (special).
            for (const char* k : keys) {
                auto it = named_tokens.find(k);
                if (it == named_tokens.end()) continue;
                named[k] = it->second.content;
                if (added_ids.count(it->second.content)) continue;
                AddedToken t = it->second;
                t.special = true;
                if (it->second.content.empty()) continue;
                add(t);
            }
            // extra_special_tokens: {"image_token": "<image>", ...} (transformers 5).
            if (auto x = config.find("extra_special_tokens"); x != config.end() && x->is_object()) {
                for (const auto& [name, v] : x->items()) {
                    auto t = parse_added_token(v, config_path, "extra_special_tokens." + name, who);
                    if (!t || t->content.empty()) continue;
                    if (!added_ids.count(t->content)) add(*t);
                    if (name == "image_token") image_token = t->content;
                }
            }
            add_prefix_space = json_bool(config, "add_prefix_space", false, config_path);
            if (auto p = config.find("padding_side"); p != config.end() && !p->is_null()) {
                if (*p == "left") padding_side = PaddingSide::left;
                else if (*p == "right") padding_side = PaddingSide::right;
                else tokenizer_file_fail(who, config_path, "padding_side: expected \"left\" or \"right\", found " + p->dump());
            }
        }

        static bool json_bool(const nlohmann::json& j, const char* key, bool fallback, const std::string& path) {
            auto it = j.find(key);
            if (it == j.end() || it->is_null()) return fallback;
            if (!it->is_boolean())
                detail::tokenizer_file_fail(who, path, std::string(key) + ": expected a boolean, found " + detail::json_value_kind(*it));
            return it->get<bool>();
        }

        std::int32_t id_for(const std::string& content, const std::string& path, const std::string& field) const {
            if (auto it = added_ids.find(content); it != added_ids.end()) return it->second;
            const std::int32_t id = bpe->id_of(content);
            if (id < 0) detail::tokenizer_file_fail(who, path, field + ": " + detail::json_quoted(content) + " is not in the vocabulary");
            return id;
        }

        // transformers' TokenizersBackend: an explicit add_bos_token / add_eos_token in the config
        // (or no post-processor at all) gives update_post_processor()'s template; else
        // tokenizer.json's post-processor stays.
        void set_post_processor(const nlohmann::json& config, const nlohmann::json& pp, const std::string& json_path) {
            const bool explicit_flags = config.contains("add_bos_token") || config.contains("add_eos_token");
            if (explicit_flags || pp.is_null()) {
                const std::string cfg = "tokenizer_config.json";
                if (json_bool(config, "add_bos_token", false, cfg))
                    if (auto id = special_id_if_any("bos_token")) prefix = {*id};
                if (json_bool(config, "add_eos_token", false, cfg))
                    if (auto id = special_id_if_any("eos_token")) suffix = {*id};
                return;
            }
            read_post_processor(pp, json_path, "post_processor");
        }

        void read_post_processor(const nlohmann::json& pp, const std::string& path, const std::string& field) {
            using namespace detail;
            if (!pp.is_object() || !pp.contains("type") || !pp["type"].is_string())
                tokenizer_file_fail(who, path, field + ": expected an object with a \"type\", found " + json_value_kind(pp));
            const std::string type = pp["type"];
            if (type == "ByteLevel") return;  // offsets only
            if (type == "Sequence") {
                const auto& list = pp.value("processors", nlohmann::json());
                if (!list.is_array()) tokenizer_file_fail(who, path, field + ".processors: expected an array");
                for (std::size_t k = 0; k < list.size(); ++k)
                    read_post_processor(list[k], path, field + ".processors[" + std::to_string(k) + "]");
                return;
            }
            if (type == "RobertaProcessing" || type == "BertProcessing") {
                auto token_id = [&](const char* key) {
                    const auto& v = pp.value(key, nlohmann::json());
                    if (!v.is_array() || v.size() != 2 || !v[1].is_number_integer())
                        tokenizer_file_fail(who, path, field + "." + key + ": expected [token, id]");
                    // Checked as the JSON number: 2^64 − 1 must not wrap to −1 (or 2^32 to 0).
                    if (v[1].is_number_unsigned() ? v[1].get<std::uint64_t>() > 0x7FFFFFFF : v[1].get<std::int64_t>() < 0)
                        tokenizer_file_fail(who, path, field + "." + key + ": id " + v[1].dump() + " is out of range [0, 2^31)");
                    return v[1].get<std::int32_t>();
                };
                prefix = {token_id("cls")};
                suffix = {token_id("sep")};
                return;
            }
            if (type == "TemplateProcessing") {
                const auto& single = pp.value("single", nlohmann::json());
                const auto& specials = pp.value("special_tokens", nlohmann::json::object());
                if (!single.is_array()) tokenizer_file_fail(who, path, field + ".single: expected an array");
                bool seen_sequence = false;
                std::vector<std::int32_t> before, after;
                for (std::size_t k = 0; k < single.size(); ++k) {
                    const auto& piece = single[k];
                    const std::string at = field + ".single[" + std::to_string(k) + "]";
                    if (piece.is_object() && piece.contains("Sequence")) {
                        if (seen_sequence) tokenizer_file_fail(who, path, at + ": a second sequence");
                        seen_sequence = true;
                    } else if (piece.is_object() && piece.contains("SpecialToken") && piece["SpecialToken"].is_object() &&
                               piece["SpecialToken"].contains("id") && piece["SpecialToken"]["id"].is_string()) {
                        const std::string name = piece["SpecialToken"]["id"];
                        const auto s = specials.find(name);
                        if (s == specials.end() || !s->is_object() || !s->contains("ids") || !(*s)["ids"].is_array())
                            tokenizer_file_fail(who, path, at + ": special token " + json_quoted(name) + " has no ids in special_tokens");
                        for (const auto& id : (*s)["ids"]) {
                            if (!id.is_number_integer() || id.get<std::int64_t>() < 0 || id.get<std::int64_t>() > 0x7FFFFFFF)
                                tokenizer_file_fail(who, path, at + ": special token " + json_quoted(name) + " has a bad id " + id.dump());
                            (seen_sequence ? after : before).push_back(id.get<std::int32_t>());
                        }
                    } else {
                        tokenizer_file_fail(who, path, at + ": expected {\"Sequence\": ..} or {\"SpecialToken\": {\"id\": ..}}");
                    }
                }
                if (!seen_sequence) tokenizer_file_fail(who, path, field + ".single: no sequence $A");
                prefix = before, suffix = after;
                return;
            }
            tokenizer_file_fail(who, path, field + ".type: " + json_quoted(type) +
                                               " is not supported (ByteLevel, TemplateProcessing, RobertaProcessing, "
                                               "BertProcessing, Sequence)");
        }
    };

    Gpt2Tokenizer() : m_(std::make_shared<Model>()) {}

    std::shared_ptr<Model> m_;
};

}  // namespace mmalign::io
