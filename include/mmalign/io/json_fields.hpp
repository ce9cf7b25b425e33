// mmalign/io/json_fields.hpp — reading typed fields from JSON files with errors a user can act on.
//
// Hugging Face config files are JSON objects whose absent fields take the class defaults. These
// helpers read one field: absent → the default; present with the wrong JSON type → IoError naming
// the file, the field path, what was expected and what was found.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "mmalign/core/error.hpp"

namespace mmalign::io {

/// Parses a whole JSON file; a missing file or invalid JSON throws IoError naming the file.
inline nlohmann::json read_json_file(const std::string& path) {
    // A regular file of bounded size only: a FIFO would block the open, /dev/zero never ends, and
    // no configuration file is anywhere near 64 MiB.
    constexpr std::uintmax_t max_bytes = std::uintmax_t(64) << 20;
    std::error_code ec;
    const auto st = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(st)) throw IoError(path + ": cannot open file (no such file)");
    if (!std::filesystem::is_regular_file(st)) throw IoError(path + ": not a regular file (a directory, FIFO or device)");
    const std::uintmax_t size = std::filesystem::file_size(path, ec);
    if (ec) throw IoError(path + ": cannot read its size (" + ec.message() + ")");
    if (size > max_bytes)
        throw IoError(path + ": " + std::to_string(size) + " bytes, larger than the 64 MiB a JSON configuration may have");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw IoError(path + ": cannot open file");
    std::stringstream ss;
    ss << in.rdbuf();
    try {
        return nlohmann::json::parse(ss.str());
    } catch (const nlohmann::json::exception& e) {
        throw IoError(path + ": not valid JSON (" + e.what() + ")");
    }
}

namespace detail {
inline std::string json_type(const nlohmann::json& v) { return v.is_null() ? "null" : v.type_name(); }
}  // namespace detail

/// obj[key] as T, or `fallback` when absent (or null, as HF writes unset optional fields).
/// `where` is "<file>: <path>" for messages.
template <class T>
T json_field(const nlohmann::json& obj, const char* key, T fallback, const std::string& where) {
    if (!obj.is_object()) throw IoError(where + ": expected a JSON object, found " + detail::json_type(obj));
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return fallback;
    const nlohmann::json& v = *it;
    const std::string field = where + "." + key;
    if constexpr (std::is_same_v<T, bool>) {
        if (!v.is_boolean()) throw IoError(field + ": expected a boolean, found " + detail::json_type(v));
        return v.get<bool>();
    } else if constexpr (std::is_integral_v<T>) {
        // Checked before any conversion: a float or unsigned value outside T's range has no T
        // (converting it is undefined, or wraps 2^64 − 1 to −1).
        constexpr double lo = static_cast<double>(std::numeric_limits<T>::min());
        constexpr double hi = static_cast<double>(std::numeric_limits<T>::max());  // rounded up to 2^63 for int64
        if (v.is_number_float()) {
            const double d = v.get<double>();
            if (!(d >= lo && d < hi) || d != std::floor(d))
                throw IoError(field + ": expected an integer, found " + v.dump());
            return static_cast<T>(d);
        }
        if (!v.is_number_integer()) throw IoError(field + ": expected an integer, found " + detail::json_type(v));
        if (v.is_number_unsigned()) {
            if (v.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<T>::max()))
                throw IoError(field + ": " + v.dump() + " is out of range");
            return static_cast<T>(v.get<std::uint64_t>());
        }
        const std::int64_t i = v.get<std::int64_t>();
        if (static_cast<double>(i) < lo || static_cast<double>(i) > hi ||
            (std::is_unsigned_v<T> && i < 0))
            throw IoError(field + ": " + v.dump() + " is out of range");
        return static_cast<T>(i);
    } else if constexpr (std::is_floating_point_v<T>) {
        if (!v.is_number()) throw IoError(field + ": expected a number, found " + detail::json_type(v));
        return v.get<T>();
    } else if constexpr (std::is_same_v<T, std::string>) {
        if (!v.is_string()) throw IoError(field + ": expected a string, found " + detail::json_type(v));
        return v.get<std::string>();
    } else {
        static_assert(sizeof(T) == 0, "json_field reads bool, integers, floating point and std::string.");
    }
}

}  // namespace mmalign::io
