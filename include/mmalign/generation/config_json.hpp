// mmalign/generation/config_json.hpp — GenerationConfig from (and to) Hugging Face JSON: a
// generation_config.json, or the generation fields of a model's config.json.
//
// Fields are read through GenerationConfig::hf_fields under HF's names; absent or null fields keep
// their values, unknown fields are ignored (HF files carry many that generate() does not use). A
// malformed field throws IoError naming the file and the field with what was expected and what was
// found ("generation_config.json.num_beams: expected an integer, found string",
// "generation_config.json: num_beams must be positive, found 0"); sizes and token ids above
// io::max_config_size are refused as absurd before anything is sized from them. A read that fails
// leaves the config as it was.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mmalign/core/error.hpp"
#include "mmalign/generation/config.hpp"
#include "mmalign/io/hf_config.hpp"
#include "mmalign/io/json_fields.hpp"

namespace mmalign::generation {

namespace detail {

/// The `f` of GenerationConfig::hf_fields that reads one JSON object.
class GenerationFieldReader {
public:
    GenerationFieldReader(const nlohmann::json& obj, const std::string& where) : obj_(obj), where_(where) {}

    void operator()(const char* key, index_t& v, index_t min) const {
        if (const nlohmann::json* j = find(key)) v = size(key, *j, min);
    }
    void operator()(const char* key, std::optional<index_t>& v, index_t min) const {
        if (const nlohmann::json* j = find(key)) v = size(key, *j, min);
    }
    void operator()(const char* key, bool& v) const { v = io::json_field<bool>(obj_, key, v, where_); }
    void operator()(const char* key, double& v) const {
        const double read = io::json_field<double>(obj_, key, v, where_);
        // A literal past double's range parses as infinity, which no setting means.
        if (!std::isfinite(read)) throw IoError(field(key) + ": expected a finite number, found one out of range");
        v = read;
    }
    void operator()(const char* key, EarlyStopping& v) const {
        const nlohmann::json* j = find(key);
        if (!j) return;
        if (j->is_boolean()) {
            v = j->get<bool>() ? EarlyStopping::finished : EarlyStopping::heuristic;
        } else if (j->is_string() && j->get<std::string>() == "never") {
            v = EarlyStopping::never;
        } else {
            throw IoError(field(key) + ": expected true, false or \"never\", found " + j->dump());
        }
    }
    void operator()(const char* key, std::optional<std::int32_t>& v) const {
        if (const nlohmann::json* j = find(key)) v = token(key, *j);
    }
    /// eos_token_id: one id or a list of ids.
    void operator()(const char* key, std::vector<std::int32_t>& v) const {
        const nlohmann::json* j = find(key);
        if (!j) return;
        std::vector<std::int32_t> ids;
        if (j->is_array()) {
            for (const nlohmann::json& e : *j) {
                if (!e.is_number())
                    throw IoError(field(key) + ": expected an integer or a list of integers, found a list holding " +
                                  io::detail::json_type(e));
                ids.push_back(token(key, e));
            }
        } else if (j->is_number()) {
            ids.push_back(token(key, *j));
        } else {
            throw IoError(field(key) + ": expected an integer or a list of integers, found " + io::detail::json_type(*j));
        }
        v = std::move(ids);
    }

private:
    const nlohmann::json* find(const char* key) const {
        if (!obj_.is_object()) throw IoError(where_ + ": expected a JSON object, found " + io::detail::json_type(obj_));
        auto it = obj_.find(key);
        return it == obj_.end() || it->is_null() ? nullptr : &*it;
    }
    std::string field(const char* key) const { return where_ + "." + key; }

    /// An integer in [min, max_config_size]; an integral float (4.0) counts, as io::json_field takes it.
    index_t size(const char* key, const nlohmann::json& j, index_t min) const {
        if (!j.is_number()) throw IoError(field(key) + ": expected an integer, found " + io::detail::json_type(j));
        // The range is checked in double, before any conversion: exact for every value that passes.
        const double d = j.get<double>();
        if (j.is_number_float() && d != std::floor(d)) throw IoError(field(key) + ": expected an integer, found " + j.dump());
        if (d < static_cast<double>(min))
            throw IoError(where_ + ": " + key + (min == 1 ? " must be positive" : " must be >= " + std::to_string(min)) +
                          ", found " + j.dump());
        if (!(d <= static_cast<double>(io::max_config_size)))
            throw IoError(where_ + ": " + key + " " + j.dump() + " exceeds " + std::to_string(io::max_config_size) +
                          ", larger than any model has");
        return j.is_number_integer() ? j.get<index_t>() : static_cast<index_t>(d);
    }
    std::int32_t token(const char* key, const nlohmann::json& j) const {
        return static_cast<std::int32_t>(size(key, j, 0));
    }

    const nlohmann::json& obj_;
    std::string where_;
};

/// The `f` of GenerationConfig::hf_fields that writes every set field.
class GenerationFieldWriter {
public:
    explicit GenerationFieldWriter(nlohmann::json& out) : out_(out) {}
    void operator()(const char* key, index_t& v, index_t) const { out_[key] = v; }
    void operator()(const char* key, std::optional<index_t>& v, index_t) const {
        if (v) out_[key] = *v;
    }
    void operator()(const char* key, bool& v) const { out_[key] = v; }
    void operator()(const char* key, double& v) const { out_[key] = v; }
    void operator()(const char* key, EarlyStopping& v) const {
        if (v == EarlyStopping::never) {
            out_[key] = "never";
        } else {
            out_[key] = v == EarlyStopping::finished;
        }
    }
    void operator()(const char* key, std::optional<std::int32_t>& v) const {
        if (v) out_[key] = *v;
    }
    void operator()(const char* key, std::vector<std::int32_t>& v) const {
        if (v.size() == 1) {
            out_[key] = v[0];
        } else if (!v.empty()) {
            out_[key] = v;
        }
    }

private:
    nlohmann::json& out_;
};

}  // namespace detail

/// Reads the generation fields of the JSON object `obj` (a generation_config.json, or one level of a
/// config.json) into `config`; `where` names the file (and path) in messages.
inline void read_generation_fields(GenerationConfig& config, const nlohmann::json& obj, const std::string& where) {
    GenerationConfig read = config;  // a failed read leaves `config` as it was
    read.hf_fields(detail::GenerationFieldReader(obj, where));
    config = std::move(read);
}

/// A generation_config.json: transformers' defaults, then every field the file sets.
inline GenerationConfig load_generation_config(const std::string& path) {
    GenerationConfig c;
    read_generation_fields(c, io::read_json_file(path), path);
    return c;
}

/// The generation settings a model's config.json implies, as transformers'
/// GenerationConfig.from_model_config takes them (for folders without a generation_config.json):
/// the top-level fields, and for fields the top level does not set, those of the decoder's nested
/// config (the first of "decoder", "generator", "text_config" present: BLIP's text_config holds its
/// eos and pad ids). max_position_embeddings comes from the top level, else from that nested config.
inline GenerationConfig generation_config_from_model_config(const nlohmann::json& config, const std::string& where) {
    if (!config.is_object()) throw IoError(where + ": expected a JSON object, found " + io::detail::json_type(config));
    GenerationConfig c;
    // transformers 5 leaves unset fields None, so "not set at the top level" is "absent there": the
    // nested values go in first and the top level's are read over them.
    for (const char* name : {"decoder", "generator", "text_config"}) {
        auto it = config.find(name);
        if (it == config.end() || it->is_null()) continue;
        const std::string nested_where = where + "." + name;
        if (!it->is_object()) throw IoError(nested_where + ": expected an object, found " + io::detail::json_type(*it));
        read_generation_fields(c, *it, nested_where);
        c.max_position_embeddings = io::json_field<index_t>(*it, "max_position_embeddings", 0, nested_where);
        break;
    }
    read_generation_fields(c, config, where);
    c.max_position_embeddings = io::json_field<index_t>(config, "max_position_embeddings", c.max_position_embeddings, where);
    if (c.max_position_embeddings < 0 || c.max_position_embeddings > io::max_config_size)
        throw IoError(where + ": max_position_embeddings " + std::to_string(c.max_position_embeddings) +
                      " is outside [0, " + std::to_string(io::max_config_size) + "]");
    return c;
}

/// The generation_config.json form of `config`: every field of hf_fields, optional ones when set.
inline nlohmann::json to_json(GenerationConfig config) {
    nlohmann::json out = nlohmann::json::object();
    config.hf_fields(detail::GenerationFieldWriter(out));
    return out;
}

}  // namespace mmalign::generation
