// mmalign/models/blip2_retrieval.hpp — BLIP-2's stage-1 heads (Li et al. 2023, §3.2, Fig. 2), as
// transformers' Blip2ForImageTextRetrieval computes them (modeling_blip_2.py; the blip2-itm-vit-g
// checkpoint).
//
//   ITM: [queries; text] ──► Q-Former (bidirectional mask, queries cross-attend the image)
//        ──► itm_head on each query row ──► mean over the Q queries ──► [Bt, 2] (index 1 = "match")
//   ITC: queries ──► Q-Former (image) ──► vision_projection ──► unit rows [Bi, Q, E] ─┐ cosine per query,
//        text ──► Q-Former (text only) ──► [CLS] ──► text_projection ──► unit [Bt, E] ─┘ max over queries [Bi, Bt]
// No temperature: HF returns the raw cosine. The text is BERT WordPiece (the folder's tokenizer);
// rows that start with the processor's Q image tokens have them dropped first, as HF slices
// input_ids[:, num_query_tokens:] when config.json has image_token_index. HF slices whatever the
// rows start with; rows without the image tokens are taken whole here (docs/blip2.md).
// HF keys: vision_model.*, query_tokens, qformer.*, embeddings.{word,position}_embeddings.weight,
// vision_projection.*, text_projection.*, itm_head.*.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "mmalign/io/tensor_map.hpp"
#include "mmalign/models/blip2_vision_queries.hpp"
#include "mmalign/nn/linear.hpp"
#include "mmalign/nn/scaled_cosine_similarity.hpp"

namespace mmalign {

template <Backend B>
struct Blip2ForImageTextRetrieval {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;

    Blip2Config<B> config;
    Blip2VisionQueries<B> vision_queries;
    Linear<B> vision_projection, text_projection, itm_head;

    explicit Blip2ForImageTextRetrieval(Blip2Config<B> c)
        : config(checked(std::move(c))), vision_queries(config),
          vision_projection({.in = config.qformer.hidden, .out = config.image_text_hidden_size}),
          text_projection({.in = config.qformer.hidden, .out = config.image_text_hidden_size}),
          itm_head({.in = config.qformer.hidden, .out = 2}) {}

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        vision_queries.visit(f, prefix);
        vision_queries.qformer.visit_text_embeddings(f, join_name(prefix, "embeddings"));
        vision_projection.visit(f, join_name(prefix, "vision_projection"));
        text_projection.visit(f, join_name(prefix, "text_projection"));
        itm_head.visit(f, join_name(prefix, "itm_head"));
    }
    template <class Map>
    void hf_layout(Map& map, const std::string& prefix = "") { vision_queries.hf_layout(map, prefix); }

    /// pixels [Bi, C, S, S] → the vision model's last_hidden_state [Bi, N+1, Dv].
    Buffer image_embeds(B& be, ConstView<T> pixels) const { return vision_queries.image_embeds(be, pixels); }

    /// ITM logits [Bt, 2] of each text against its image (Bi = Bt) or against the one image (Bi = 1).
    Buffer itm_logits(B& be, ConstView<T> image_embeds, const Blip2Tokens& texts) const {
        const Text t = text_part(texts);
        const index_t Bi = image_embeds.dim(0), Bt = texts.batch, Q = config.num_query_tokens, D = config.qformer.hidden;
        if (Bi != Bt && Bi != 1)
            throw ShapeError("Blip2ForImageTextRetrieval: " + std::to_string(Bi) + " images for " + std::to_string(Bt) +
                             " texts (expected one image, or one per text)");
        auto sc = be.scope();
        // One image (Bi = 1) is passed as it is: every text's queries read the same keys and values,
        // projected once (bridges/qformer.hpp accepts a shared [1, Te, De] image in inference).
        auto h = sc.tensor({Bt, Q + t.length, D});  // [Bt, Q+T, D]
        vision_queries.qformer.forward(be, {.batch = Bt, .queries = true, .ids = t.ids, .attention_mask = t.mask, .image = image_embeds}, h);
        auto per_query = sc.tensor({Bt * Q, 2});  // [Bt·Q, 2]
        auto queries = sc.tensor({Bt * Q, D});    // [Bt·Q, D]
        for (index_t b = 0; b < Bt; ++b)
            be.copy(ConstView<T>(h.data() + b * (Q + t.length) * D, Shape{Q * D}), TensorView<T>(queries.data() + b * Q * D, Shape{Q * D}));
        itm_head.forward(be, queries, per_query);
        std::vector<T> host(static_cast<std::size_t>(Bt * Q * 2));
        be.to_host(per_query, TensorView<T>(host.data(), Shape{Bt * Q, 2}));
        std::vector<T> mean(static_cast<std::size_t>(Bt * 2), T(0));
        for (index_t b = 0; b < Bt; ++b)
            for (index_t k = 0; k < 2; ++k) {
                double s = 0;
                for (index_t q = 0; q < Q; ++q) s += static_cast<double>(host[static_cast<std::size_t>((b * Q + q) * 2 + k)]);
                mean[static_cast<std::size_t>(b * 2 + k)] = static_cast<T>(s / static_cast<double>(Q));
            }
        Buffer out(Shape{Bt, 2});  // [Bt, 2]
        be.from_host(ConstView<T>(mean.data(), Shape{Bt, 2}), out.view());
        return out;
    }

    /// ITC scores [Bi, Bt]: for each image and text, the largest cosine over the image's Q query
    /// embeddings against the text's [CLS] embedding.
    Buffer itc_scores(B& be, ConstView<T> image_embeds, const Blip2Tokens& texts) const {
        const Text t = text_part(texts);
        const index_t Bi = image_embeds.dim(0), Bt = texts.batch, Q = config.num_query_tokens, D = config.qformer.hidden;
        const index_t E = config.image_text_hidden_size;
        auto sc = be.scope();
        const Buffer q = vision_queries.query_output(be, image_embeds);  // [Bi, Q, D]
        auto img = sc.tensor({Bi * Q, E});  // [Bi·Q, E]
        vision_projection.forward(be, ConstView<T>(q.data(), Shape{Bi * Q, D}), img);
        auto h = sc.tensor({Bt, t.length, D});  // [Bt, T, D]
        vision_queries.qformer.forward(be, {.batch = Bt, .queries = false, .ids = t.ids, .attention_mask = t.mask}, h);
        auto cls = sc.tensor({Bt, D}), txt = sc.tensor({Bt, E});  // [Bt, D], [Bt, E]
        for (index_t b = 0; b < Bt; ++b)
            be.copy(ConstView<T>(h.data() + b * t.length * D, Shape{D}), TensorView<T>(cls.data() + b * D, Shape{D}));
        text_projection.forward(be, cls, txt);
        // Cosines of every query embedding against every text (the library's unit-scale head, as
        // BLIP's retrieval uses it), then the largest over each image's Q queries.
        auto per_query = sc.tensor({Bi * Q, Bt});  // [Bi·Q, Bt]
        BasicParameter<Buffer> no_scale(Shape{});  // logit_scale 0: exp(0) = 1, the raw cosine
        typename ScaledCosineSimilarity<B>::Saved unit;
        ScaledCosineSimilarity<B>{}.forward(be, img, txt, no_scale, per_query, {}, unit);
        std::vector<T> cos(static_cast<std::size_t>(Bi * Q * Bt)), scores(static_cast<std::size_t>(Bi * Bt));
        be.to_host(per_query, TensorView<T>(cos.data(), Shape{Bi * Q, Bt}));
        for (index_t i = 0; i < Bi; ++i)
            for (index_t j = 0; j < Bt; ++j) {
                T best = cos[static_cast<std::size_t>(i * Q * Bt + j)];
                for (index_t k = 1; k < Q; ++k) best = std::max(best, cos[static_cast<std::size_t>((i * Q + k) * Bt + j)]);
                scores[static_cast<std::size_t>(i * Bt + j)] = best;
            }
        Buffer out(Shape{Bi, Bt});  // [Bi, Bt]
        be.from_host(ConstView<T>(scores.data(), Shape{Bi, Bt}), out.view());
        return out;
    }

    /// A Hugging Face Blip2ForImageTextRetrieval folder.
    static Blip2ForImageTextRetrieval from_pretrained(B& be, const std::string& dir) {
        Blip2Config<B> c = Blip2Config<B>::from_folder(dir);
        const io::Checkpoint file = io::Checkpoint::open(dir);
        Blip2VisionQueries<B>::adapt_to(c, file);
        c.check_against(file, dir + "/config.json", /*language_model=*/false);  // before anything is allocated
        Blip2ForImageTextRetrieval m(std::move(c));
        // A folder written by stage-1 pretraining (models/blip2_qformer_pretraining.hpp) also holds
        // LAVIS's ITG head and temperature, which transformers loads as unused keys too.
        io::load_mapped(be, m, file, io::hf_tensor_map(m), "", {.ignored = {"cls.predictions.", "temp"}});
        return m;
    }

private:
    struct Text {
        std::vector<std::int32_t> ids, mask;  // [Bt·T]
        index_t length = 0;
    };
    static Blip2Config<B> checked(Blip2Config<B> c) {
        if (!c.qformer.text)
            throw ArgumentError("Blip2ForImageTextRetrieval: qformer_config.use_qformer_text_input is false; "
                                "the image-text heads need the Q-Former's text path");
        return c;
    }
    /// The texts without the processor's image tokens (HF: input_ids[:, num_query_tokens:]).
    Text text_part(const Blip2Tokens& texts) const {
        const index_t Tn = texts.length("Blip2ForImageTextRetrieval texts");
        const index_t Q = config.num_query_tokens;
        index_t skip = 0;
        if (config.image_token_index >= 0 && Tn > Q &&
            texts.ids[0] == static_cast<std::int32_t>(config.image_token_index))
            skip = Q;
        Text t;
        t.length = Tn - skip;
        for (index_t b = 0; b < texts.batch; ++b)
            for (index_t i = skip; i < Tn; ++i) {
                const auto at = static_cast<std::size_t>(b * Tn + i);
                t.ids.push_back(texts.ids[at]);
                t.mask.push_back(texts.attention_mask.empty() ? 1 : texts.attention_mask[at]);
            }
        return t;
    }
};

}  // namespace mmalign
