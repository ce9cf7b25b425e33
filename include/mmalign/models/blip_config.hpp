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

#include "mmalign/encoders/bert_transformer.hpp"
#include "mmalign/encoders/vision_transformer.hpp"
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

    /// The config of a Hugging Face BLIP folder (`dir`/config.json).
    static BlipConfig from_folder(const std::string& dir) {
        BlipConfig c;
        io::read_hf_fields(c, io::load_hf_config(dir + "/config.json"));
        return c;
    }
};

}  // namespace mmalign
