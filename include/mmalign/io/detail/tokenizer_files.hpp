// mmalign/io/detail/tokenizer_files.hpp — reading the files of a Hugging Face tokenizer folder
// (vocab.json, merges.txt, tokenizer.json, tokenizer_config.json, special_tokens_map.json,
// added_tokens.json) with errors a user can act on, shared by the byte-level BPE tokenizers.
//
// Every read is bounded: the path must be a regular file (a FIFO would block the open, /dev/zero
// never ends) of at most max_tokenizer_file_bytes, checked before anything is allocated. Errors
// are IoError "<who>: '<file>': <what>", one line.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "mmalign/core/error.hpp"

namespace mmalign::io::detail {

/// The largest tokenizer file read: the biggest Hub tokenizer.json files are tens of MiB.
inline constexpr std::uintmax_t max_tokenizer_file_bytes = std::uintmax_t(256) << 20;

[[noreturn]] inline void tokenizer_file_fail(std::string_view who, const std::string& file, const std::string& what) {
    throw IoError(std::string(who) + ": '" + file + "': " + what);
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

/// The bytes of a regular file of at most max_bytes.
inline std::string read_tokenizer_file(const std::string& path, std::string_view who,
                                       std::uintmax_t max_bytes = max_tokenizer_file_bytes) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (ec || !fs::exists(st)) tokenizer_file_fail(who, path, "cannot open: no such file");
    if (!fs::is_regular_file(st)) tokenizer_file_fail(who, path, "not a regular file (a directory, FIFO or device)");
    const std::uintmax_t size = fs::file_size(path, ec);
    if (ec) tokenizer_file_fail(who, path, "cannot read its size: " + ec.message());
    if (size > max_bytes)
        tokenizer_file_fail(who, path, std::to_string(size) + " bytes, more than the " + std::to_string(max_bytes) +
                                           " this reader accepts");
    std::ifstream f(path, std::ios::binary);
    if (!f) tokenizer_file_fail(who, path, "cannot open for reading");
    std::string data(static_cast<std::size_t>(size), '\0');
    f.read(data.data(), static_cast<std::streamsize>(size));
    if (f.gcount() != static_cast<std::streamsize>(size)) tokenizer_file_fail(who, path, "read fewer bytes than its size");
    return data;
}

/// A tokenizer JSON file, parsed (any JSON value).
inline nlohmann::json read_tokenizer_json(const std::string& path, std::string_view who) {
    const std::string text = read_tokenizer_file(path, who);
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        tokenizer_file_fail(who, path, std::string("not valid JSON: ") + e.what());
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
