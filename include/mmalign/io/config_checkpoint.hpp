// mmalign/io/config_checkpoint.hpp — a config.json's sizes against its checkpoint's tensor shapes,
// checked before a model is built from them.
//
// A model allocates every parameter from config.json's sizes, and the checkpoint's shapes are only
// compared when the weights are read into it: a hostile or mistaken size (hidden_size 8192 for a
// ViT-B/32 checkpoint) would allocate gigabytes first and then report a tensor's shape. The
// safetensors headers hold every tensor's name and shape without its data (io/safetensors.hpp),
// so a model's loader lists here which config fields give which dimensions of which tensors and
// calls config_checkpoint_problem before constructing anything:
//
//   "vision_config.hidden_size 8192 does not match model.safetensors's
//    vision_model.embeddings.patch_embedding.weight [32, 3, 8, 8]"
//   "vision_config.num_hidden_layers 24 does not match model.safetensors, which holds 2 layers
//    (vision_model.encoder.layers.0 to vision_model.encoder.layers.1)"
//
// A tensor the checkpoint lacks is skipped here (the weight loader names missing keys), so a
// second bound covers whatever the listed tensors do not: the parameter count the config
// describes may not exceed the values the checkpoint holds (parameter_budget_problem), the memory
// estimate that keeps a config from allocating more than its checkpoint could fill.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "mmalign/core/shape.hpp"
#include "mmalign/io/safetensors.hpp"

namespace mmalign::io {

/// One dimension a config field gives a tensor: `field` (its path in config.json, e.g.
/// "vision_config.hidden_size") and the value the config holds. An empty field is a dimension fixed
/// by the architecture (compared too, but blamed on the tensor).
struct ConfigDim {
    std::string field;
    index_t value = 0;
    std::string says = {};  // how a message states it when not "<field> <value>" (a derived size)
};

/// A tensor the model reads and the dimensions its config gives it, in order.
struct ConfigTensor {
    std::string key;
    std::vector<ConfigDim> dims;
};

namespace detail {

inline std::string checkpoint_file_name(const SafetensorsFile& f, const std::string&) {
    return std::filesystem::path(f.path()).filename().string();
}
inline std::string checkpoint_file_name(const Checkpoint& c, const std::string& key) {
    return std::filesystem::path(c.file_of(key).path()).filename().string();
}

inline std::string shape_text(const Shape& s) {
    std::string out = "[";
    for (int i = 0; i < s.rank(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

}  // namespace detail

/// The first listed field whose value differs from the checkpoint's tensor, in words, or empty.
/// Tensors the source lacks are skipped; a rank or a fixed dimension that differs is reported as the
/// tensor's layout.
template <class S>
std::string config_checkpoint_problem(const S& source, const std::vector<ConfigTensor>& expected) {
    for (const ConfigTensor& t : expected) {
        if (!source.contains(t.key)) continue;
        const Shape got = source.shape(t.key);
        const bool same_rank = static_cast<std::size_t>(got.rank()) == t.dims.size();
        for (std::size_t d = 0; d < t.dims.size(); ++d) {
            if (same_rank && got[static_cast<int>(d)] == t.dims[d].value) continue;
            const std::string there = detail::checkpoint_file_name(source, t.key) + "'s " + t.key + " " + detail::shape_text(got);
            // A fixed dimension (or a rank) that differs is the checkpoint's layout, not a field's value.
            if (!same_rank || t.dims[d].field.empty()) return there + " has another layout than this model's";
            const ConfigDim& f = t.dims[d];
            return (f.says.empty() ? f.field + " " + std::to_string(f.value) : f.says) + " does not match " + there;
        }
    }
    return {};
}

/// Whether the checkpoint's numbered blocks `prefix`<i>.… are exactly 0 .. count − 1 (as far as
/// the highest index shows), else the field in words. A checkpoint without any such block passes
/// (the weight loader names the missing keys).
template <class S>
std::string layer_count_problem(const S& source, const std::string& prefix, const std::string& field, index_t count) {
    long long highest = -1;
    std::string file;
    for (const std::string& name : source.names()) {
        if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
        long long i = 0;
        std::size_t p = prefix.size(), digits = 0;
        while (p < name.size() && name[p] >= '0' && name[p] <= '9' && digits < 12) i = i * 10 + (name[p++] - '0'), ++digits;
        if (digits == 0 || p >= name.size() || name[p] != '.') continue;
        if (i > highest) highest = i, file = detail::checkpoint_file_name(source, name);
    }
    if (highest < 0 || highest + 1 == count) return {};
    return field + " " + std::to_string(count) + " does not match " + file + ", which holds " + std::to_string(highest + 1) +
           " layers (" + prefix + "0 to " + prefix + std::to_string(highest) + ")";
}

/// The sized tensors of Hugging Face's ViT layout under "vision_model." (modeling_clip.py,
/// modeling_blip.py and modeling_blip_2.py share these names; CLIP stores the position table as an
/// embedding [N+1, D], BLIP and BLIP-2 as a parameter [1, N+1, D]). `field` is the sub-config's
/// name ("vision_config").
inline std::vector<ConfigTensor> vision_tower_tensors(const std::string& field, index_t hidden, index_t channels,
                                                      index_t patch, index_t image_size, index_t tokens, index_t mlp) {
    const ConfigDim d{field + ".hidden_size", hidden};
    const std::string grid = field + ".image_size " + std::to_string(image_size) + " with patch_size " +
                             std::to_string(patch) + " (" + std::to_string(tokens) + " positions)";
    const ConfigDim n{field + ".image_size", tokens, grid};
    return {
        {"vision_model.embeddings.patch_embedding.weight",
         {d, {field + ".num_channels", channels}, {field + ".patch_size", patch}, {field + ".patch_size", patch}}},
        {"vision_model.embeddings.position_embedding.weight", {n, d}},
        {"vision_model.embeddings.position_embedding", {{"", 1}, n, d}},
        {"vision_model.encoder.layers.0.mlp.fc1.weight", {{field + ".intermediate_size", mlp}, d}},
    };
}

/// The sized tensors of a BERT-layout tower under `prefix` ("text_encoder.", "qformer.", ...):
/// word and position tables [V, D], [M, D] and the first layer's intermediate [F, D] (both of
/// BLIP-2's Q-Former forms).
inline std::vector<ConfigTensor> bert_tower_tensors(const std::string& prefix, const std::string& field, index_t vocab,
                                                    index_t positions, index_t hidden, index_t mlp) {
    const ConfigDim d{field + ".hidden_size", hidden}, f{field + ".intermediate_size", mlp};
    return {
        {prefix + "embeddings.word_embeddings.weight", {{field + ".vocab_size", vocab}, d}},
        {prefix + "embeddings.position_embeddings.weight", {{field + ".max_position_embeddings", positions}, d}},
        {prefix + "encoder.layer.0.intermediate.dense.weight", {f, d}},
        {prefix + "encoder.layer.0.intermediate_query.dense.weight", {f, d}},
    };
}

/// The fewest values `layers` transformer blocks of width d and feed-forward width f hold: the
/// four attention projections and the two feed-forward matrices, without biases or norms. A lower
/// bound of every tower mmalign builds, so a memory estimate from it never refuses a real model.
inline double transformer_blocks_lower_bound(index_t layers, index_t d, index_t f) {
    return double(layers) * (4.0 * double(d) * double(d) + 2.0 * double(d) * double(f));
}

/// The values (elements) every tensor of the checkpoint holds together.
template <class S>
double checkpoint_values(const S& source) {
    double n = 0;
    for (const std::string& name : source.names()) {
        double e = 1;
        const Shape shape = source.shape(name);
        for (int d = 0; d < shape.rank(); ++d) e *= double(shape[d]);
        n += e;
    }
    return n;
}

/// The memory estimate: a model of `parameters` values (what config.json describes) cannot be
/// filled from a checkpoint holding fewer, so it is refused before it is built. `what` names the
/// model ("a CLIP model").
/// With at_least, `parameters` is a lower bound (transformer_blocks_lower_bound) and says so.
template <class S>
std::string parameter_budget_problem(const S& source, double parameters, const std::string& what, bool at_least = false) {
    const double held = checkpoint_values(source);
    if (parameters <= held) return {};
    auto text = [](double v) { return std::to_string(static_cast<long long>(v)); };
    const std::string file = std::filesystem::path(source.path()).filename().string();
    return "its sizes describe " + what + " of " + (at_least ? "at least " : "") + text(parameters) + " parameters (" + text(parameters * 4 / 1048576) +
           " MiB of float), more than the " + text(held) + " values " + file + " holds";
}

}  // namespace mmalign::io
