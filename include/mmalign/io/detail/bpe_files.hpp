// mmalign/io/detail/bpe_files.hpp — filling a BpeModel from Hugging Face's files: a vocabulary
// object {token: id} (vocab.json, tokenizer.json's model.vocab), merge rules (merges.txt,
// tokenizer.json's model.merges in both its forms) and AddedToken entries (tokenizer_config.json's
// added_tokens_decoder, tokenizer.json's added_tokens, special-token fields). Shared by the CLIP
// and GPT-2/OPT tokenizers; `who` names the tokenizer and `where` the file (and field) in errors.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "mmalign/core/error.hpp"
#include "mmalign/io/detail/added_tokens.hpp"
#include "mmalign/io/detail/bpe.hpp"
#include "mmalign/io/detail/tokenizer_files.hpp"
#include "mmalign/io/detail/utf8.hpp"

namespace mmalign::io::detail {

/// Adds a vocabulary object {token: id} to `bpe`. Ids must be integers in [0, 2^31), distinct, and
/// not far beyond the vocabulary's size (ids index a dense table, so a stray huge id must not
/// become a huge allocation); tokens must be valid UTF-8.
inline void load_bpe_vocab(BpeModel& bpe, const nlohmann::json& j, const std::string& where, std::string_view who) {
    const std::string w = std::string(who) + ": " + where + ": ";
    if (!j.is_object() || j.empty())
        throw IoError(w + "the vocabulary must be a non-empty JSON object {token: id}, found " + json_value_kind(j));
    for (const auto& [tok, v] : j.items()) {
        if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > 0x7FFFFFFF)
            throw IoError(w + "token " + json_quoted(tok) + " has id " + v.dump() + ", expected an integer in [0, 2^31)");
        if (auto bad = find_invalid_utf8(tok))
            throw IoError(w + "token " + json_quoted(tok) + " is not valid UTF-8 (byte " + std::to_string(bad->offset) + ")");
        const auto id = static_cast<std::int32_t>(v.get<std::int64_t>());
        if (static_cast<std::size_t>(id) > 16 * j.size() + 1024)
            throw IoError(w + "id " + std::to_string(id) + " of token " + json_quoted(tok) +
                          " is far beyond the vocabulary size " + std::to_string(j.size()));
        if (const std::string* other = bpe.token_of(id))
            throw IoError(w + "id " + std::to_string(id) + " is given to both " + json_quoted(*other) + " and " + json_quoted(tok));
        bpe.add_token(tok, id);
    }
}

/// One merge rule "a b": a, b and a + b must all be in the vocabulary.
inline void add_bpe_merge(BpeModel& bpe, const std::string& a, const std::string& b, std::int32_t rank,
                          const std::string& where, std::string_view who) {
    const std::string merged = bpe.merge_result(a, b);
    const std::int32_t ia = bpe.id_of(a), ib = bpe.id_of(b), im = bpe.id_of(merged);
    const std::string& missing = ia < 0 ? a : ib < 0 ? b : merged;
    if (ia < 0 || ib < 0 || im < 0)
        throw IoError(std::string(who) + ": " + where + ": merge '" + a + " " + b + "': '" + missing +
                      "' is not in the vocabulary");
    bpe.add_merge(ia, ib, rank, im);  // a repeated pair keeps its last rank (bpe.hpp)
}

/// tokenizers' merges.txt reader: "#version" lines are skipped, every other line is exactly two
/// space-separated symbols, rank = order of appearance. An empty file is an error.
inline void load_merges_txt(BpeModel& bpe, const std::string& text, const std::string& path, std::string_view who) {
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
        const std::string where = "'" + path + "' line " + std::to_string(line_no);
        const std::size_t sp = line.find(' ');
        if (sp == std::string::npos || sp == 0 || sp + 1 == line.size() || line.find(' ', sp + 1) != std::string::npos)
            throw IoError(std::string(who) + ": " + where + ": expected two space-separated symbols, found " + json_quoted(line));
        if (auto bad = find_invalid_utf8(line))
            throw IoError(std::string(who) + ": " + where + ": invalid UTF-8 at byte " + std::to_string(bad->offset) +
                          " of the line");
        add_bpe_merge(bpe, line.substr(0, sp), line.substr(sp + 1), rank++, where, who);
    }
    if (rank == 0) throw IoError(std::string(who) + ": '" + path + "' has no merges");
}

/// tokenizer.json's model.merges: "a b" strings (tokenizers < 0.20) or ["a", "b"] pairs.
inline void load_json_merges(BpeModel& bpe, const nlohmann::json& merges, const std::string& where, std::string_view who) {
    if (!merges.is_array() || merges.empty())
        throw IoError(std::string(who) + ": " + where + ": expected a non-empty array of merges, found " + json_value_kind(merges));
    std::int32_t rank = 0;
    for (const auto& m : merges) {
        const std::string at = where + "[" + std::to_string(rank) + "]";
        std::string a, b;
        if (m.is_string()) {
            const std::string line = m.get<std::string>();
            const std::size_t sp = line.find(' ');
            if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos)
                throw IoError(std::string(who) + ": " + at + ": expected two space-separated symbols, found " + json_quoted(line));
            a = line.substr(0, sp), b = line.substr(sp + 1);
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
            a = m[0].get<std::string>(), b = m[1].get<std::string>();
        } else {
            throw IoError(std::string(who) + ": " + at + ": expected \"a b\" or [\"a\", \"b\"], found " + json_value_kind(m));
        }
        add_bpe_merge(bpe, a, b, rank++, at, who);
    }
}

/// The flags of an AddedToken dict that are present (booleans; others keep their value).
inline void read_added_token_flags(const nlohmann::json& v, AddedToken& t) {
    auto flag = [&](const char* key, bool& out) {
        if (v.contains(key) && v[key].is_boolean()) out = v[key].get<bool>();
    };
    flag("normalized", t.normalized);
    flag("special", t.special);
    flag("lstrip", t.lstrip);
    flag("rstrip", t.rstrip);
    flag("single_word", t.single_word);
}

/// A token entry of a config: a string, or an AddedToken dict {"content": .., flags..}; null gives
/// nothing. `base` holds the flags a plain string (and a dict's absent flags) take.
inline std::optional<AddedToken> parse_added_token(const nlohmann::json& v, const std::string& file,
                                                   const std::string& key, std::string_view who,
                                                   const AddedToken& base = {}) {
    AddedToken t = base;
    if (v.is_null()) return std::nullopt;
    if (v.is_string()) {
        t.content = v.get<std::string>();
    } else if (v.is_object() && v.contains("content") && v["content"].is_string()) {
        t.content = v["content"].get<std::string>();
        read_added_token_flags(v, t);
    } else {
        throw IoError(std::string(who) + ": '" + file + "': '" + key +
                      "' must be a string or an object with a string 'content', found " + json_value_kind(v));
    }
    if (auto bad = find_invalid_utf8(t.content))
        throw IoError(std::string(who) + ": '" + file + "': '" + key + "' is not valid UTF-8 (byte " +
                      std::to_string(bad->offset) + ")");
    return t;
}

}  // namespace mmalign::io::detail
