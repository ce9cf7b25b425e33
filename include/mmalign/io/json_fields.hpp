// mmalign/io/json_fields.hpp — reading typed fields from JSON files with errors a user can act on.
//
// Hugging Face config files are JSON objects whose absent fields take the class defaults. These
// helpers read one field: absent → the default; present with the wrong JSON type → IoError naming
// the file, the field path, what was expected and what was found.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "mmalign/core/error.hpp"
#include "mmalign/io/input_file.hpp"

namespace mmalign::io {

/// A JSON parser's message for a one-line error: nlohmann quotes the bytes it read last ("last
/// read: '...'"), raw; bytes outside printable ASCII are written as \xNN so that a hostile file
/// cannot put invalid UTF-8 or terminal control sequences into the message.
inline std::string json_error_text(const char* what) {
    std::string out;
    for (const char* p = what; *p; ++p) {
        const auto u = static_cast<unsigned char>(*p);
        if (u < 0x20 || u >= 0x7f) {
            static constexpr char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[u >> 4];
            out += hex[u & 15];
        } else {
            out += *p;
        }
    }
    return out;
}

/// Parses a whole JSON file (config.json, preprocessor_config.json, generation_config.json, ...),
/// opened through io/input_file.hpp with max_json_config_bytes as its cap: a FIFO is refused
/// without blocking, a directory or device by its kind, an empty or oversized file from its size
/// before a byte is read. Every refusal is one IoError line "'<path>': <reason>"; invalid JSON
/// gives "'<path>': not valid JSON (<parser's reason>)".
inline nlohmann::json read_json_file(const std::string& path) {
    const std::string text = read_input_file(path, max_json_config_bytes, "");
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        input_file_fail("", path, "not valid JSON (" + json_error_text(e.what()) + ")");
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
