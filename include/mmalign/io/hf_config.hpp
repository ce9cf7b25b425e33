// mmalign/io/hf_config.hpp — Hugging Face `config.json` of CLIP models, with HF's defaults.
//
// Fields and defaults follow transformers' CLIPTextConfig, CLIPVisionConfig and CLIPConfig
// (models.md §1.1): an absent field takes the class default, a field of the wrong type is an
// IoError naming the file and field. `hidden_act` becomes an Activation (quick_gelu, gelu,
// gelu_new/gelu_pytorch_tanh → gelu_tanh, relu); others are rejected by name. A CLIPConfig file
// nests the towers under "text_config" and "vision_config"; a tower's own config.json (a
// CLIPTextModel or CLIPVisionModel checkpoint) holds its fields at the top level.
#pragma once

#include <cstdint>
#include <string>

#include "mmalign/core/ops.hpp"
#include "mmalign/io/json_fields.hpp"

namespace mmalign::io {

/// HF's `hidden_act` names → Activation; `where` names the file and field for the error.
inline Activation parse_activation(const std::string& name, const std::string& where) {
    if (name == "quick_gelu") return Activation::quick_gelu;
    if (name == "gelu") return Activation::gelu;
    if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") return Activation::gelu_tanh;
    if (name == "relu") return Activation::relu;
    throw IoError(where + ": unsupported hidden_act \"" + name +
                  "\" (expected quick_gelu, gelu, gelu_new, gelu_pytorch_tanh or relu)");
}

struct ClipTextConfig {
    index_t vocab_size = 49408;
    index_t hidden_size = 512;
    index_t intermediate_size = 2048;
    index_t projection_dim = 512;
    index_t num_hidden_layers = 12;
    index_t num_attention_heads = 8;
    index_t max_position_embeddings = 77;
    Activation hidden_act = Activation::quick_gelu;
    double layer_norm_eps = 1e-5;
    std::int64_t pad_token_id = 1;
    std::int64_t bos_token_id = 49406;
    std::int64_t eos_token_id = 49407;
};

struct ClipVisionConfig {
    index_t hidden_size = 768;
    index_t intermediate_size = 3072;
    index_t projection_dim = 512;
    index_t num_hidden_layers = 12;
    index_t num_attention_heads = 12;
    index_t num_channels = 3;
    index_t image_size = 224;
    index_t patch_size = 32;
    Activation hidden_act = Activation::quick_gelu;
    double layer_norm_eps = 1e-5;
};

struct ClipConfig {
    ClipTextConfig text;
    ClipVisionConfig vision;
    index_t projection_dim = 512;
    double logit_scale_init_value = 2.6592;
};

inline ClipTextConfig parse_clip_text_config(const nlohmann::json& j, const std::string& where) {
    ClipTextConfig c;
    c.vocab_size = json_field<index_t>(j, "vocab_size", c.vocab_size, where);
    c.hidden_size = json_field<index_t>(j, "hidden_size", c.hidden_size, where);
    c.intermediate_size = json_field<index_t>(j, "intermediate_size", c.intermediate_size, where);
    c.projection_dim = json_field<index_t>(j, "projection_dim", c.projection_dim, where);
    c.num_hidden_layers = json_field<index_t>(j, "num_hidden_layers", c.num_hidden_layers, where);
    c.num_attention_heads = json_field<index_t>(j, "num_attention_heads", c.num_attention_heads, where);
    c.max_position_embeddings = json_field<index_t>(j, "max_position_embeddings", c.max_position_embeddings, where);
    c.hidden_act = parse_activation(json_field<std::string>(j, "hidden_act", "quick_gelu", where), where + ".hidden_act");
    c.layer_norm_eps = json_field<double>(j, "layer_norm_eps", c.layer_norm_eps, where);
    c.pad_token_id = json_field<std::int64_t>(j, "pad_token_id", c.pad_token_id, where);
    c.bos_token_id = json_field<std::int64_t>(j, "bos_token_id", c.bos_token_id, where);
    c.eos_token_id = json_field<std::int64_t>(j, "eos_token_id", c.eos_token_id, where);
    return c;
}

inline ClipVisionConfig parse_clip_vision_config(const nlohmann::json& j, const std::string& where) {
    ClipVisionConfig c;
    c.hidden_size = json_field<index_t>(j, "hidden_size", c.hidden_size, where);
    c.intermediate_size = json_field<index_t>(j, "intermediate_size", c.intermediate_size, where);
    c.projection_dim = json_field<index_t>(j, "projection_dim", c.projection_dim, where);
    c.num_hidden_layers = json_field<index_t>(j, "num_hidden_layers", c.num_hidden_layers, where);
    c.num_attention_heads = json_field<index_t>(j, "num_attention_heads", c.num_attention_heads, where);
    c.num_channels = json_field<index_t>(j, "num_channels", c.num_channels, where);
    c.image_size = json_field<index_t>(j, "image_size", c.image_size, where);
    c.patch_size = json_field<index_t>(j, "patch_size", c.patch_size, where);
    c.hidden_act = parse_activation(json_field<std::string>(j, "hidden_act", "quick_gelu", where), where + ".hidden_act");
    c.layer_norm_eps = json_field<double>(j, "layer_norm_eps", c.layer_norm_eps, where);
    return c;
}

/// Checks the sizes a model is built from, so a bad config fails here, naming the field, rather
/// than as a shape error deep inside a layer.
inline void validate(const ClipConfig& c, const std::string& where) {
    auto positive = [&](index_t v, const char* field) {
        if (v <= 0) throw IoError(where + ": " + field + " must be positive, found " + std::to_string(v));
    };
    positive(c.projection_dim, "projection_dim");
    positive(c.text.vocab_size, "text_config.vocab_size");
    positive(c.text.hidden_size, "text_config.hidden_size");
    positive(c.text.intermediate_size, "text_config.intermediate_size");
    positive(c.text.num_attention_heads, "text_config.num_attention_heads");
    positive(c.text.max_position_embeddings, "text_config.max_position_embeddings");
    positive(c.vision.hidden_size, "vision_config.hidden_size");
    positive(c.vision.intermediate_size, "vision_config.intermediate_size");
    positive(c.vision.num_attention_heads, "vision_config.num_attention_heads");
    positive(c.vision.num_channels, "vision_config.num_channels");
    positive(c.vision.patch_size, "vision_config.patch_size");
    positive(c.vision.image_size, "vision_config.image_size");
    if (c.text.num_hidden_layers < 0 || c.vision.num_hidden_layers < 0)
        throw IoError(where + ": num_hidden_layers must be >= 0");
    if (c.text.hidden_size % c.text.num_attention_heads)
        throw IoError(where + ": text_config.hidden_size " + std::to_string(c.text.hidden_size) +
                      " is not a multiple of num_attention_heads " + std::to_string(c.text.num_attention_heads));
    if (c.vision.hidden_size % c.vision.num_attention_heads)
        throw IoError(where + ": vision_config.hidden_size " + std::to_string(c.vision.hidden_size) +
                      " is not a multiple of num_attention_heads " + std::to_string(c.vision.num_attention_heads));
    if (c.vision.image_size % c.vision.patch_size)
        throw IoError(where + ": vision_config.image_size " + std::to_string(c.vision.image_size) +
                      " is not a multiple of patch_size " + std::to_string(c.vision.patch_size));
}

/// A CLIPModel config.json ("text_config", "vision_config", "projection_dim", …).
inline ClipConfig parse_clip_config(const nlohmann::json& j, const std::string& where) {
    ClipConfig c;
    c.projection_dim = json_field<index_t>(j, "projection_dim", c.projection_dim, where);
    c.logit_scale_init_value = json_field<double>(j, "logit_scale_init_value", c.logit_scale_init_value, where);
    static const nlohmann::json empty = nlohmann::json::object();
    auto sub = [&](const char* key) -> const nlohmann::json& {
        auto it = j.find(key);
        if (it == j.end() || it->is_null()) return empty;
        if (!it->is_object()) throw IoError(where + "." + key + ": expected an object, found " + detail::json_type(*it));
        return *it;
    };
    c.text = parse_clip_text_config(sub("text_config"), where + ".text_config");
    c.vision = parse_clip_vision_config(sub("vision_config"), where + ".vision_config");
    // CLIPConfig hands its projection_dim to both towers.
    c.text.projection_dim = c.vision.projection_dim = c.projection_dim;
    validate(c, where);
    return c;
}

inline ClipConfig load_clip_config(const std::string& path) {
    return parse_clip_config(read_json_file(path), path);
}

}  // namespace mmalign::io
