// mmalign/io/detail/tokenizer_files.hpp — reading the files of a Hugging Face tokenizer folder
// (vocab.json, merges.txt, tokenizer.json, tokenizer_config.json, special_tokens_map.json,
// added_tokens.json) with errors a user can act on, shared by the byte-level BPE tokenizers.
//
// Every read goes through io/input_file.hpp: the path must be a regular, non-empty file (a FIFO
// would block the open, /dev/zero never ends) of at most max_tokenizer_file_bytes, checked from
// fstat before anything is allocated. Errors are IoError "<who>: '<file>': <what>", one line.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "mmalign/core/error.hpp"
#include "mmalign/io/input_file.hpp"
#include "mmalign/io/json_fields.hpp"

namespace mmalign::io::detail {

/// The largest tokenizer file read (vocab.json, merges.txt, tokenizer.json, vocab.txt and the small
/// JSON files beside them): the biggest Hub tokenizer.json files are tens of MiB (a 256k-token
/// Unigram/BPE vocabulary with its merges stays under 40 MiB).
inline constexpr std::uintmax_t max_tokenizer_file_bytes = std::uintmax_t(256) << 20;

[[noreturn]] inline void tokenizer_file_fail(std::string_view who, const std::string& file, const std::string& what) {
    input_file_fail(who, file, what);
}

/// A JSON value's kind for messages: "a string", "an integer (5)", "null", ...
inline std::string json_value_kind(const nlohmann::json& v) {
    if (v.is_null()) return "null";
    if (v.is_boolean()) return "a boolean";
    if (v.is_number_integer()) return "an integer (" + v.dump() + ")";
    if (v.is_number()) return "a number (" + v.dump() + ")";
    if (v.is_string()) return "a string";
    if (v.is_array()) return "an array";
    if (v.is_object()) return "an object";
    return v.type_name();
}

/// A JSON string for messages, invalid UTF-8 replaced.
inline std::string json_quoted(std::string_view s) {
    return nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

/// The bytes of a regular file of 1 to max_bytes bytes (0 to max_bytes with allow_empty), through
/// io/input_file.hpp: a FIFO, directory or device is refused by its kind without blocking, and an
/// oversized file by its size before a byte is read.
inline std::string read_tokenizer_file(const std::string& path, std::string_view who,
                                       std::uintmax_t max_bytes = max_tokenizer_file_bytes, bool allow_empty = false) {
    return read_input_file(path, max_bytes, who, allow_empty);
}

/// A tokenizer JSON file, parsed (any JSON value).
inline nlohmann::json read_tokenizer_json(const std::string& path, std::string_view who) {
    const std::string text = read_tokenizer_file(path, who);
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        tokenizer_file_fail(who, path, "not valid JSON: " + json_error_text(e.what()));
    }
}

/// A tokenizer JSON file whose top level must be an object.
inline nlohmann::json read_tokenizer_json_object(const std::string& path, std::string_view who) {
    nlohmann::json j = read_tokenizer_json(path, who);
    if (!j.is_object()) tokenizer_file_fail(who, path, "expected a JSON object at the top, found " + json_value_kind(j));
    return j;
}

/// Whether a folder entry exists (of any type: reading it then says what is wrong with it).
inline bool tokenizer_file_exists(const std::string& path) {
    std::error_code ec;
    return std::filesystem::exists(path, ec);
}

/// `dir` joined with a file name.
inline std::string in_folder(const std::string& dir, std::string_view name) {
    return (std::filesystem::path(dir) / std::string(name)).string();
}

}  // namespace mmalign::io::detail
