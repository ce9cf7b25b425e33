// mmalign/models/blip2_config.hpp — the configuration every BLIP-2 model shares (transformers'
// Blip2Config, Blip2VisionConfig and Blip2QFormerConfig, configuration_blip_2.py; the language
// model's OPTConfig, configuration_opt.py), read from a Hugging Face folder's config.json.
//
//   config.json: { "vision_config": {...}, "qformer_config": {...}, "text_config": {"model_type": "opt", ...},
//                  "num_query_tokens", "image_text_hidden_size", "image_token_index" }
// Fields a file lacks keep transformers' class defaults (EVA ViT-g/14, a BERT-base Q-Former with
// cross-attention every second layer, OPTConfig's defaults). As Blip2Config.__post_init__ does, the
// Q-Former's encoder_hidden_size is the vision tower's hidden_size whatever qformer_config says.
// Only decoder-only OPT language models are built here; a Flan-T5 folder is refused by name.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "mmalign/bridges/qformer.hpp"
#include "mmalign/decoders/opt_decoder.hpp"
#include "mmalign/encoders/vision_transformer.hpp"
#include "mmalign/io/config_checkpoint.hpp"
#include "mmalign/io/hf_config.hpp"

namespace mmalign {

template <Backend B>
struct Blip2Config {
    typename VisionTransformer<B>::Config vision = VisionTransformer<B>::Config::blip2();
    typename QFormer<B>::Config qformer{};
    typename OptDecoder<B>::Config text{};
    index_t num_query_tokens = 32;
    index_t image_text_hidden_size = 256;   // Blip2ForImageTextRetrieval's vision/text projections
    std::int64_t image_token_index = -1;    // -1: the file has none (prompts then carry no <image> tokens)

    template <class F>
    void hf_fields(F&& f) {
        f("vision_config", vision);
        f("qformer_config", qformer);
        f("text_config", text);
        f("num_query_tokens", num_query_tokens, 1);
        f("image_text_hidden_size", image_text_hidden_size, 1);
        f("image_token_index", image_token_index);
        qformer.encoder_width = vision.hidden;
        qformer.num_queries = num_query_tokens;
    }
    /// Checked after every field is read: qformer_config's own check ran before num_query_tokens and
    /// the vision width reached it, so it runs again here, and the projections between the parts are
    /// bounded as every table is (2^32 elements), before a model allocates from them.
    std::string hf_problem() const {
        if (image_token_index < -1) return "image_token_index must be >= 0, found " + std::to_string(image_token_index);
        if (const std::string q = qformer.hf_problem(); !q.empty())
            return "qformer_config with num_query_tokens " + std::to_string(num_query_tokens) +
                   " and vision_config.hidden_size " + std::to_string(vision.hidden) + ": " + q;
        constexpr double limit = 4294967296.0;
        const double widest = std::max(double(image_text_hidden_size), double(text.hidden));
        if (widest * double(qformer.hidden) > limit)
            return "qformer_config.hidden_size " + std::to_string(qformer.hidden) + " with image_text_hidden_size " +
                   std::to_string(image_text_hidden_size) + " and text_config.hidden_size " + std::to_string(text.hidden) +
                   " gives a projection of more than 2^32 elements";
        return {};
    }
    /// What keeps the language model from reading the image tokens (models with a language model
    /// only: the retrieval heads' image_token_index is a Q-Former token), or empty.
    std::string language_model_problem() const {
        if (image_token_index >= text.vocab_size)
            return "image_token_index " + std::to_string(image_token_index) + " is outside text_config.vocab_size " +
                   std::to_string(text.vocab_size);
        return {};
    }

    /// What in config.json (read from `where`) the checkpoint `file` contradicts, from its header
    /// alone, as one IoError naming the field and the tensor; then the memory estimate (the blocks
    /// of the towers the model builds from the file, a lower bound) against the values the
    /// checkpoint holds. `language_model`: the model builds the OPT decoder; `qformer_in_file`: the
    /// Q-Former must come from the file (stage-1 pretraining may initialise it instead).
    /// Every BLIP-2 model's from_pretrained calls it before it allocates (io/config_checkpoint.hpp).
    template <class S>
    void check_against(const S& file, const std::string& where, bool language_model, bool qformer_in_file = true) const {
        const auto& v = vision;
        const auto& q = qformer;
        const auto& t = text;
        std::vector<io::ConfigTensor> tensors =
            io::vision_tower_tensors("vision_config", v.hidden, v.channels, v.patch_size, v.image_size, v.tokens(), v.mlp_hidden);
        for (const char* p : {"qformer.", ""}) {  // the Q-Former's layers; the retrieval heads' text embeddings
            const auto more = io::bert_tower_tensors(p, "qformer_config", q.vocab_size, q.max_positions, q.hidden, q.intermediate);
            tensors.insert(tensors.end(), more.begin(), more.end());
        }
        const io::ConfigDim dq{"qformer_config.hidden_size", q.hidden};
        tensors.push_back({"query_tokens", {{"", 1}, {"num_query_tokens", num_query_tokens}, dq}});
        if (language_model) {
            const io::ConfigDim dt{"text_config.hidden_size", t.hidden};
            const io::ConfigDim dw = t.word_embed_proj_dim > 0 ? io::ConfigDim{"text_config.word_embed_proj_dim", t.embed_dim()} : dt;
            const std::string rows = "text_config.max_position_embeddings " + std::to_string(t.max_positions) + " (" +
                                     std::to_string(t.max_positions + 2) + " rows: OPT's offset of 2)";
            const std::string lm = "language_model.model.decoder.";
            tensors.push_back({lm + "embed_tokens.weight", {{"text_config.vocab_size", t.vocab_size}, dw}});
            tensors.push_back({lm + "embed_positions.weight", {{"text_config.max_position_embeddings", t.max_positions + 2, rows}, dt}});
            tensors.push_back({lm + "layers.0.fc1.weight", {{"text_config.ffn_dim", t.ffn}, dt}});
            tensors.push_back({"language_projection.weight", {dt, dq}});
        }
        std::string why = io::config_checkpoint_problem(file, tensors);
        if (why.empty())
            why = io::layer_count_problem(file, "vision_model.encoder.layers.", "vision_config.num_hidden_layers", v.layers);
        if (why.empty()) why = io::layer_count_problem(file, "qformer.encoder.layer.", "qformer_config.num_hidden_layers", q.layers);
        if (why.empty() && language_model)
            why = io::layer_count_problem(file, "language_model.model.decoder.layers.", "text_config.num_hidden_layers", t.layers);
        if (why.empty()) {
            double blocks = io::transformer_blocks_lower_bound(v.layers, v.hidden, v.mlp_hidden);
            if (qformer_in_file) blocks += io::transformer_blocks_lower_bound(q.layers, q.hidden, q.intermediate);
            if (language_model) blocks += io::transformer_blocks_lower_bound(t.layers, t.hidden, t.ffn);
            why = io::parameter_budget_problem(file, blocks, "a BLIP-2 model", true);
        }
        if (!why.empty()) throw IoError(where + ": " + why);
    }

    /// The config of a Hugging Face BLIP-2 folder (`dir`/config.json).
    static Blip2Config from_folder(const std::string& dir) {
        const io::HfConfig file = io::load_hf_config(dir + "/config.json");
        if (const auto t = file.json.find("text_config"); t != file.json.end() && t->is_object()) {
            const auto type = t->find("model_type");
            if (type != t->end() && !(type->is_string() && type->template get<std::string>() == "opt"))
                throw IoError(file.where + ": text_config.model_type: expected \"opt\" (BLIP-2 with an OPT language model), found " +
                              (type->is_string() ? "\"" + type->template get<std::string>().substr(0, 40) + "\""
                                                 : io::detail::json_type(*type)));
        }
        Blip2Config c;
        io::read_hf_fields(c, file);
        return c;
    }
};

/// Token rows with their mask, [batch · length] each (io::Blip2Processor::encode gives them).
struct Blip2Tokens {
    std::span<const std::int32_t> ids{}, attention_mask{};
    index_t batch = 0;

    /// length of a row; refuses ids that do not form `batch` rows or a mask of another size.
    index_t length(const char* who) const {
        if (batch <= 0 || ids.empty() || ids.size() % static_cast<std::size_t>(batch))
            throw ShapeError(std::string(who) + ": " + std::to_string(ids.size()) + " ids do not form " +
                             std::to_string(batch) + " rows");
        if (!attention_mask.empty() && attention_mask.size() != ids.size())
            throw ShapeError(std::string(who) + ": attention_mask has " + std::to_string(attention_mask.size()) +
                             " entries for " + std::to_string(ids.size()) + " ids");
        return static_cast<index_t>(ids.size()) / batch;
    }
};

}  // namespace mmalign
