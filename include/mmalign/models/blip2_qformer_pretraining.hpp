// mmalign/models/blip2_qformer_pretraining.hpp — BLIP-2's first-stage model (Li et al. 2023, §3.2,
// Fig. 2; LAVIS's Blip2Qformer in blip2_qformer.py): a frozen image encoder, the Q-Former with its
// learned queries and text path, and the three heads its objectives train.
//
//   vision_model (EVA ViT + its final LayerNorm, LAVIS's ln_vision)  ──► image_embeds [N, Te, Dv]
//   query_tokens, qformer, embeddings (Blip2TextEmbeddings)           the Q-Former (bridges/qformer.hpp)
//   vision_projection, text_projection  Dq → image_text_hidden_size   ITC (objectives/query_text_contrastive.hpp)
//   itm_head  Dq → 2                                                  ITM (objectives/matching.hpp)
//   cls.predictions  BERT's LM head, decoder tied to the word table   ITG (nn/lm_prediction_head.hpp)
//   temp []  ITC's learnable temperature (LAVIS `temp`, 0.07)
//
// Names: transformers' Blip2ForImageTextRetrieval keys (modeling_blip_2.py) for everything that
// class holds, and two extras it lacks: LAVIS's `cls.predictions.{transform.dense, transform.LayerNorm,
// bias}` (the decoder weight is the word-embedding table and is not listed again) and `temp`.
// A transformers Blip2ForImageTextRetrieval folder therefore loads with the ITG head and the
// temperature initialised (from_pretrained reports which parameters it initialised).
// models/blip2_stage1_task.hpp runs the three objectives over this model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mmalign/io/tensor_map.hpp"
#include "mmalign/models/blip2_vision_queries.hpp"
#include "mmalign/nn/linear.hpp"
#include "mmalign/nn/lm_prediction_head.hpp"
#include "mmalign/objectives/matching.hpp"

namespace mmalign {

template <Backend B>
struct Blip2QFormerPretraining {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;
    using Param = BasicParameter<Buffer>;

    Blip2Config<B> config;
    VisionTransformer<B> vision_model;
    QFormer<B> qformer;
    Linear<B> vision_projection, text_projection;  // [E, Dq] each
    ImageTextMatching<B> itm;                       // its head is HF's itm_head [2, Dq]
    LmPredictionHead<B> lm_head;                    // "cls.predictions"
    Param temp;                                     // []
    /// The parameters the last from_pretrained initialised instead of reading (visit names).
    std::vector<std::string> initialised;

    explicit Blip2QFormerPretraining(Blip2Config<B> c)
        : config(checked(std::move(c))), vision_model(config.vision), qformer(config.qformer),
          vision_projection({.in = config.qformer.hidden, .out = config.image_text_hidden_size}),
          text_projection({.in = config.qformer.hidden, .out = config.image_text_hidden_size}),
          itm({.dim = config.qformer.hidden}),
          lm_head({.dim = config.qformer.hidden, .vocab = config.qformer.vocab_size,
                   .activation = config.qformer.activation, .eps = config.qformer.eps}),
          temp(Shape{}) {}

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        vision_model.visit(f, join_name(prefix, "vision_model"));
        qformer.visit_query_tokens(f, join_name(prefix, "query_tokens"));
        qformer.visit(f, join_name(prefix, "qformer"));
        qformer.visit_text_embeddings(f, join_name(prefix, "embeddings"));
        vision_projection.visit(f, join_name(prefix, "vision_projection"));
        text_projection.visit(f, join_name(prefix, "text_projection"));
        itm.visit(f, prefix);
        lm_head.visit(f, join_name(prefix, "cls.predictions"));
        f(join_name(prefix, "temp"), temp);
    }
    template <class Map>
    void hf_layout(Map& map, const std::string& prefix = "") { vision_model.hf_layout(map, join_name(prefix, "vision_model")); }

    /// The word-embedding table, which the ITG head's decoder shares.
    Param& word_embeddings() { return qformer.word_embeddings->params.weight; }

    /// Every parameter but the vision tower's as BERT and LAVIS initialise them: weights and the
    /// query tokens N(0, 0.02²) (LAVIS init_Qformer, BertPreTrainedModel._init_weights), biases 0,
    /// LayerNorm 1 and 0; temp 0.07. Host parameters only (initialise on the CPU, then copy).
    void init_weights(std::uint64_t seed) {
        BeyondVision trainable{*this};
        init_normal(trainable, static_cast<unsigned>(seed ^ (seed >> 32)), 0.02);
        temp.value.fill(T(0.07));
    }

    /// A Hugging Face BLIP-2 folder (config.json + safetensors) with the Q-Former's text path
    /// (use_qformer_text_input). vision_model.* must be present; every other parameter is read
    /// where the file has it and initialised (init_weights(seed)) where not, listed in
    /// `initialised`. Keys the model does not name (a stage-2 folder's language model, LAVIS's
    /// repeated cls.predictions.decoder.*) are ignored.
    static Blip2QFormerPretraining from_pretrained(B& be, const std::string& dir, std::uint64_t seed) {
        Blip2Config<B> c = Blip2Config<B>::from_folder(dir);
        const io::Checkpoint file = io::Checkpoint::open(dir);
        Blip2VisionQueries<B>::adapt_to(c, file);
        // Before anything is allocated; the Q-Former may be initialised here rather than read.
        c.check_against(file, dir + "/config.json", /*language_model=*/false, /*qformer_in_file=*/false);
        Blip2QFormerPretraining m(std::move(c));
        m.init_weights(seed);
        io::TensorMap map = io::hf_tensor_map(m);
        std::string missing_vision;
        for (const auto& [key, shape] : io::mapped_shapes(m, map)) {
            if (file.contains(key)) continue;
            if (key.rfind("vision_model.", 0) == 0) {
                missing_vision += (missing_vision.empty() ? "" : ", ") + key;
            } else {
                map.optional(key);
                m.initialised.push_back(key);
            }
        }
        if (!missing_vision.empty())
            throw IoError(dir + ": the frozen image encoder's weights are missing: " + missing_vision);
        io::load_mapped(be, m, file, map, "", io::LoadOptions{.allow_unexpected = true});
        return m;
    }

private:
    /// The parameters init_weights draws: all but the vision tower's and temp.
    struct BeyondVision {
        Blip2QFormerPretraining& m;
        template <class F>
        void visit(F&& f) {
            m.visit([&](const std::string& name, Param& p) {
                if (name.rfind("vision_model.", 0) != 0 && name != "temp") f(name, p);
            });
        }
    };

    static Blip2Config<B> checked(Blip2Config<B> c) {
        if (!c.qformer.text)
            throw ArgumentError("Blip2QFormerPretraining: qformer_config.use_qformer_text_input is false; "
                                "stage-1 pretraining needs the Q-Former's text path");
        if (c.num_query_tokens <= 0)
            throw ArgumentError("Blip2QFormerPretraining: num_query_tokens must be positive, found " +
                                std::to_string(c.num_query_tokens));
        return c;
    }
};

}  // namespace mmalign
