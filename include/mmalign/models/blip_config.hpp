// mmalign/models/blip_config.hpp — the configuration every BLIP model shares (transformers'
// BlipConfig, BlipTextConfig and BlipVisionConfig, configuration_blip.py), read from a Hugging
// Face folder's config.json.
//
//   config.json: { "text_config": {...}, "vision_config": {...}, "projection_dim", "image_text_hidden_size",
//                  "logit_scale_init_value" }
// Fields a file lacks keep transformers' class defaults (BlipTextConfig: 8 heads, which the hub
// checkpoints override with 12). The text tower has cross-attention in every layer when
// text_config.is_decoder (the default, BlipTextLayer), of width encoder_hidden_size.
#pragma once

#include <string>
#include <vector>

#include "mmalign/encoders/bert_transformer.hpp"
#include "mmalign/encoders/vision_transformer.hpp"
#include "mmalign/io/config_checkpoint.hpp"
#include "mmalign/io/hf_config.hpp"

namespace mmalign {

template <Backend B>
struct BlipTextConfig {
    typename BertTransformer<B>::Config bert = BertTransformer<B>::Config::blip_text();
    std::int64_t bos_token_id = 30522;  // [DEC]: the decoder's first token
    std::int64_t eos_token_id = 2;
    std::int64_t pad_token_id = 0;
    std::int64_t sep_token_id = 102;    // [SEP]: where generation stops
    index_t encoder_hidden_size = 768;

    template <class F>
    void hf_fields(F&& f) {
        bert.hf_fields(f);
        f("is_decoder", bert.cross_attention);
        f("encoder_hidden_size", encoder_hidden_size, 1);
        f("bos_token_id", bos_token_id);
        f("eos_token_id", eos_token_id);
        f("pad_token_id", pad_token_id);
        f("sep_token_id", sep_token_id);
        bert.cross_dim = encoder_hidden_size;
    }
    std::string hf_problem() const {
        for (auto [name, id] : {std::pair{"bos_token_id", bos_token_id}, {"pad_token_id", pad_token_id},
                                {"sep_token_id", sep_token_id}})
            if (id < 0 || id >= bert.vocab_size)
                return std::string(name) + " " + std::to_string(id) + " is outside the vocabulary [0, " +
                       std::to_string(bert.vocab_size) + ")";
        return bert.hf_problem();
    }
};

template <Backend B>
struct BlipConfig {
    typename VisionTransformer<B>::Config vision = VisionTransformer<B>::Config::blip();
    BlipTextConfig<B> text{};
    index_t projection_dim = 512;          // BlipModel's contrastive projections
    index_t image_text_hidden_size = 256;  // BlipForImageTextRetrieval's vision_proj / text_proj
    double logit_scale_init = 2.6592;

    template <class F>
    void hf_fields(F&& f) {
        f("projection_dim", projection_dim, 1);
        f("image_text_hidden_size", image_text_hidden_size, 1);
        f("logit_scale_init_value", logit_scale_init);
        f("text_config", text);
        f("vision_config", vision);
    }
    std::string hf_problem() const {
        if (text.bert.cross_attention && text.encoder_hidden_size != vision.hidden)
            return "text_config.encoder_hidden_size " + std::to_string(text.encoder_hidden_size) +
                   " differs from vision_config.hidden_size " + std::to_string(vision.hidden);
        return {};
    }

    /// What in config.json (read from `where`) the checkpoint `file` contradicts, from its header
    /// alone, as one IoError naming the field and the tensor; then the memory estimate (the
    /// towers' blocks, a lower bound) against the values the checkpoint holds. Every BLIP model's
    /// from_pretrained calls it before it allocates (io/config_checkpoint.hpp).
    template <class S>
    void check_against(const S& file, const std::string& where) const {
        const auto& v = vision;
        const auto& t = text.bert;
        std::vector<io::ConfigTensor> tensors =
            io::vision_tower_tensors("vision_config", v.hidden, v.channels, v.patch_size, v.image_size, v.tokens(), v.mlp_hidden);
        // BlipModel's text_model, the retrieval and VQA text_encoder, the captioning and VQA text_decoder.
        static constexpr const char* towers[] = {"text_model.", "text_encoder.", "text_decoder.bert."};
        for (const char* p : towers) {
            const auto more = io::bert_tower_tensors(p, "text_config", t.vocab_size, t.max_positions, t.hidden, t.mlp_hidden);
            tensors.insert(tensors.end(), more.begin(), more.end());
        }
        std::string why = io::config_checkpoint_problem(file, tensors);
        if (why.empty())
            why = io::layer_count_problem(file, "vision_model.encoder.layers.", "vision_config.num_hidden_layers", v.layers);
        for (const char* p : towers)
            if (why.empty())
                why = io::layer_count_problem(file, std::string(p) + "encoder.layer.", "text_config.num_hidden_layers", t.layers);
        if (why.empty())
            why = io::parameter_budget_problem(file,
                                               io::transformer_blocks_lower_bound(v.layers, v.hidden, v.mlp_hidden) +
                                                   io::transformer_blocks_lower_bound(t.layers, t.hidden, t.mlp_hidden),
                                               "a BLIP model", true);
        if (!why.empty()) throw IoError(where + ": " + why);
    }

    /// The config of a Hugging Face BLIP folder (`dir`/config.json).
    static BlipConfig from_folder(const std::string& dir) {
        BlipConfig c;
        io::read_hf_fields(c, io::load_hf_config(dir + "/config.json"));
        return c;
    }
};

}  // namespace mmalign
