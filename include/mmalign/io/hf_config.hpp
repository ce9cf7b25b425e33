// mmalign/io/hf_config.hpp — a Hugging Face `config.json` read into (and written from) a module's
// own Config, through one field table that the Config declares.
//
// A module Config lists its HF fields once, in a member template
//     template <class F> void hf_fields(F&& f) {
//         f("hidden_size", hidden, 1);            // a size: an integer >= its minimum (1 or 0)
//         f("hidden_act", activation);            // a value: bool, integer, number, Activation
//         f("vision_config", vision);             // a nested object, itself a Config with hf_fields
//     }
// and may add `std::string hf_problem() const`, naming what is inconsistent across fields ("patch_size
// 40 exceeds image_size 30", empty when all is well). read_hf_fields walks that table
// over a JSON object: an absent (or null) field keeps the Config's value, which is the HF class
// default in the model's preset (VisionTransformer::Config::blip() holds BlipVisionConfig's), so
// there is no second struct that mirrors the fields. The encoders do not include this header: the
// table is generic over `f`, as `visit` is over its function.
//
// Errors (IoError) name the file and the field path: "config.json.vision_config.hidden_act:
// expected a string, found number" for a wrong type, "config.json: text_config.hidden_size must be
// positive, found 0" for a size out of range, sizes above max_config_size are rejected as absurd
// before a model allocates from them, and hf_problem() comes back as "config.json: vision_config.
// patch_size 40 exceeds image_size 30". `hidden_act` names map to Activation as
// transformers' ACT2FN does (quick_gelu, gelu, gelu_new/gelu_pytorch_tanh/gelu_fast → gelu_tanh,
// relu); others are rejected by name.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "mmalign/core/ops.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/io/json_fields.hpp"

namespace mmalign::io {

/// The largest size a config field may give: far above any HF model's (vocabularies of 256k,
/// widths of 16k, contexts of 1M), far below sizes whose tensors could not be allocated.
inline constexpr index_t max_config_size = index_t(1) << 24;

/// HF's `hidden_act` names → Activation; `where` names the file and field for the error.
inline Activation parse_activation(const std::string& name, const std::string& where) {
    if (name == "quick_gelu") return Activation::quick_gelu;
    if (name == "gelu") return Activation::gelu;
    if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") return Activation::gelu_tanh;
    if (name == "relu") return Activation::relu;
    if (name == "tanh") return Activation::tanh;
    throw IoError(where + ": unsupported hidden_act \"" + name +
                  "\" (expected quick_gelu, gelu, gelu_new, gelu_pytorch_tanh, relu or tanh)");
}

/// The `hidden_act` name HF gives an Activation (the inverse of parse_activation).
inline std::string hf_activation_name(Activation a) {
    switch (a) {
        case Activation::quick_gelu: return "quick_gelu";
        case Activation::gelu: return "gelu";
        case Activation::gelu_tanh: return "gelu_new";
        case Activation::relu: return "relu";
        case Activation::tanh: return "tanh";
        default: throw ArgumentError("hf_activation_name: this activation has no hidden_act name");
    }
}

/// A parsed config.json and the name its messages use (the file's path).
struct HfConfig {
    nlohmann::json json;
    std::string where;
};

inline HfConfig load_hf_config(const std::string& path) { return {read_json_file(path), path}; }
/// The config.json of a CLIP folder (CLIPConfig, or a tower's own config): load_hf_config.
inline HfConfig load_clip_config(const std::string& path) { return load_hf_config(path); }

namespace detail {

/// Accepts any field: probes whether a type has an hf_fields table.
struct AnyField {
    template <class... A>
    void operator()(A&&...) const {}
};
template <class C>
concept HasHfFields = requires(C& c, AnyField f) { c.hf_fields(f); };

/// The `f` of a Config's hf_fields that reads: one JSON object, its file and its path in the file.
class HfFieldReader {
public:
    HfFieldReader(const nlohmann::json& obj, std::string file, std::string path)
        : obj_(obj), file_(std::move(file)), path_(std::move(path)) {}

    /// A size: an integer in [min, max_config_size].
    void operator()(const char* key, index_t& v, index_t min) const {
        v = json_field<index_t>(obj_, key, v, where());
        const std::string field = qualified(key);
        if (v < min)
            throw IoError(file_ + ": " + field + (min == 1 ? " must be positive" : " must be >= " + std::to_string(min)) +
                          ", found " + std::to_string(v));
        if (v > max_config_size)
            throw IoError(file_ + ": " + field + " " + std::to_string(v) + " exceeds " + std::to_string(max_config_size) +
                          ", larger than any model has");
    }
    template <class V>
    void operator()(const char* key, V& v) const {
        if constexpr (std::is_same_v<V, Activation>) {
            const std::string w = where() + "." + key;
            auto it = obj_.find(key);
            if (it == obj_.end() || it->is_null()) return;
            if (!it->is_string()) throw IoError(w + ": expected a string, found " + json_type(*it));
            v = parse_activation(it->template get<std::string>(), w);
        } else if constexpr (HasHfFields<V>) {
            static const nlohmann::json empty = nlohmann::json::object();
            const nlohmann::json* sub = &empty;
            if (auto it = obj_.find(key); it != obj_.end() && !it->is_null()) {
                if (!it->is_object()) throw IoError(where() + "." + key + ": expected an object, found " + json_type(*it));
                sub = &*it;
            }
            read(v, *sub, file_, qualified(key));
        } else {
            v = json_field<V>(obj_, key, v, where());
        }
    }

    /// Reads every field of `config` from `obj`, then checks its cross-field rules.
    template <class Config>
    static void read(Config& config, const nlohmann::json& obj, const std::string& file, const std::string& path) {
        if (!obj.is_object())
            throw IoError(file + (path.empty() ? "" : "." + path) + ": expected a JSON object, found " + json_type(obj));
        // Read into a copy: a config that fails leaves `config` as it was.
        Config read_config = config;
        read_config.hf_fields(HfFieldReader(obj, file, path));
        if constexpr (requires { read_config.hf_problem(); }) {
            if (const std::string why = read_config.hf_problem(); !why.empty())
                throw IoError(file + ": " + (path.empty() ? "" : path + ".") + why);
        }
        config = std::move(read_config);
    }

private:
    std::string where() const { return path_.empty() ? file_ : file_ + "." + path_; }
    std::string qualified(const char* key) const { return path_.empty() ? std::string(key) : path_ + "." + key; }

    const nlohmann::json& obj_;
    std::string file_, path_;
};

/// The `f` of a Config's hf_fields that writes every field into a JSON object.
class HfFieldWriter {
public:
    explicit HfFieldWriter(nlohmann::json& out) : out_(out) {}
    void operator()(const char* key, index_t& v, index_t) const { out_[key] = v; }
    template <class V>
    void operator()(const char* key, V& v) const {
        if constexpr (std::is_same_v<V, Activation>) {
            out_[key] = hf_activation_name(v);
        } else if constexpr (HasHfFields<V>) {
            nlohmann::json sub = nlohmann::json::object();
            v.hf_fields(HfFieldWriter(sub));
            out_[key] = std::move(sub);
        } else {
            out_[key] = v;
        }
    }

private:
    nlohmann::json& out_;
};

}  // namespace detail

/// Reads `config`'s HF fields from the JSON object `obj` (fields absent there keep their values);
/// `where` names the file in messages.
template <class Config>
void read_hf_fields(Config& config, const nlohmann::json& obj, const std::string& where) {
    static_assert(detail::HasHfFields<Config>,
                  "read_hf_fields needs a Config with `template <class F> void hf_fields(F&& f)` listing its HF fields.");
    detail::HfFieldReader::read(config, obj, where, "");
}
template <class Config>
void read_hf_fields(Config& config, const HfConfig& c) {
    read_hf_fields(config, c.json, c.where);
}

/// The HF fields of `config` as a config.json object (every field its table lists).
template <class Config>
nlohmann::json to_hf_json(Config config) {
    static_assert(detail::HasHfFields<Config>,
                  "to_hf_json needs a Config with `template <class F> void hf_fields(F&& f)` listing its HF fields.");
    nlohmann::json out = nlohmann::json::object();
    config.hf_fields(detail::HfFieldWriter(out));
    return out;
}

}  // namespace mmalign::io
