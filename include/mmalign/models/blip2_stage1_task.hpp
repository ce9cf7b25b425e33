// mmalign/models/blip2_stage1_task.hpp — BLIP-2's first training stage as a task for
// train/train_step.hpp (Li et al. 2023, §3.2; LAVIS's Blip2Qformer.forward in blip2_qformer.py):
// the sum of three objectives over models/blip2_qformer_pretraining.hpp, each run forward and
// backward in turn.
//
//   image_embeds = vision_model(pixels)        frozen: run without saved activations, no gradient
//   ITC  queries ⨯ image → vision_projection ─┐ max over queries, /temp, symmetric CE with label
//        text alone → [CLS] → text_projection ─┘ smoothing (objectives/query_text_contrastive.hpp)
//   ITM  negatives drawn from the ITC similarities (LAVIS: softmax + 1e-4, own pair 0; seeded), or
//        given; rows texts [pos, pos, neg] × images [pos, neg, pos], labels [1]*N + [0]*2N;
//        [queries; text] bidirectional with cross-attention; itm_head on the mean of the Q query
//        rows (the mean of the head's rows, as LAVIS takes it: the head is linear); plain CE
//        (objectives/matching.hpp)
//   ITG  decoder ids = ids with position 0 replaced by [DEC]; labels = those ids, pads → −100;
//        [queries; text] under the multimodal-causal mask with cross-attention, BERT's LM head on
//        the text rows, shifted CE with label smoothing (objectives/language_modeling.hpp).
//        LAVIS runs the queries once and lets the text attend to their cached keys and values;
//        query rows under the multimodal-causal mask see only query columns, so one pass over
//        [queries; text] computes the same values and the same gradients
//        (tests/models/test_blip2_stage1.cpp checks it against the two-pass form).
//   loss = ITC + ITM + ITG
// loss_and_backward seeds every backward with `seed` and adds into the gradients. When a
// vision_model parameter is trainable (not frozen by train/gradients.hpp's freeze), the tower runs
// with saved activations and the image gradient of all three objectives reaches it.
// after_update clamps the temperature only with Options::clamp_temp: LAVIS's BLIP-2 never clamps
// it (BLIP did, to [0.001, 0.5]).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mmalign/models/blip2_qformer_pretraining.hpp"
#include "mmalign/objectives/language_modeling.hpp"
#include "mmalign/objectives/query_text_contrastive.hpp"

namespace mmalign {

template <Backend B>
struct Blip2Stage1Task {
    using T = typename B::Scalar;
    using C = typename B::Compute;
    using Buffer = typename B::Tensor;

    struct Options {
        double itc_label_smoothing = 0.1, itg_label_smoothing = 0.1;  // LAVIS
        std::int32_t dec_token_id = -1;  // [DEC] bos (required > 0 for ITG)
        std::int32_t pad_token_id = 0;
        std::uint64_t seed = 0;          // the hard-negative sampler's
        bool itc = true, itm = true, itg = true;
        bool clamp_temp = false;         // after_update clamps temp to [min_temp, max_temp] (BLIP; not LAVIS BLIP-2)
        double min_temp = 0.001, max_temp = 0.5;
        double negative_floor = 1e-4;    // LAVIS's + 1e-4 on the sampling weights
        bool itg_accuracy = true;        // copies the logits to the host for the token accuracy
    };
    struct Batch {
        ConstView<T> pixels;                                 // [N, C, S, S]
        std::span<const std::int32_t> ids;                   // [N·T] WordPiece ids starting with [CLS], right padded
        std::span<const std::int32_t> attention_mask;        // [N·T] or empty (every token kept)
        std::span<const index_t> negative_image_for_text = {}, negative_text_for_image = {};  // [N] each, or empty: sampled
        std::span<const std::int64_t> image_ids = {};        // [N] or empty: ITC positives by image id
    };
    struct Result {
        double loss = 0, itc = 0, itm = 0, itg = 0;
        double itc_accuracy = 0, itm_accuracy = 0, itg_accuracy = 0;
        std::vector<index_t> negative_image_for_text, negative_text_for_image;  // the ITM negatives used
    };

    Blip2Stage1Task(Blip2QFormerPretraining<B>& model, Options o)
        : model_(model), options_(o),
          itc_({.label_smoothing = o.itc_label_smoothing, .min_temp = o.min_temp, .max_temp = o.max_temp}),
          lm_({.label_smoothing = o.itg_label_smoothing}), sampler_(o.seed, o.negative_floor) {
        if (o.itg && o.dec_token_id <= 0)
            throw ArgumentError("Blip2Stage1Task: ITG needs the [DEC] bos token id (dec_token_id), found " +
                                std::to_string(o.dec_token_id));
        if (o.itg && o.dec_token_id >= model.config.qformer.vocab_size)
            throw ArgumentError("Blip2Stage1Task: dec_token_id " + std::to_string(o.dec_token_id) +
                                " is outside the Q-Former vocabulary of " + std::to_string(model.config.qformer.vocab_size));
    }

    Blip2QFormerPretraining<B>& module() { return model_; }
    const Options& options() const { return options_; }

    Result loss_and_backward(B& be, const Batch& batch, C seed) {
        auto& m = model_;
        const index_t N = batch.pixels.dim(0);
        if (N <= 0 || batch.ids.empty() || batch.ids.size() % static_cast<std::size_t>(N))
            throw ShapeError("Blip2Stage1Task: " + std::to_string(batch.ids.size()) + " ids do not form " + std::to_string(N) + " rows");
        const index_t Tn = static_cast<index_t>(batch.ids.size()) / N;
        mask_.assign(batch.ids.size(), 1);
        if (!batch.attention_mask.empty()) {
            if (batch.attention_mask.size() != batch.ids.size())
                throw ShapeError("Blip2Stage1Task: attention_mask has " + std::to_string(batch.attention_mask.size()) +
                                 " entries for " + std::to_string(batch.ids.size()) + " ids");
            mask_.assign(batch.attention_mask.begin(), batch.attention_mask.end());
        }
        const auto& vc = m.config.vision;
        const index_t Te = vc.tokens(), Dv = vc.hidden;
        bool vision_trains = false;
        m.vision_model.visit([&](const std::string&, auto& p) { vision_trains = vision_trains || p.requires_grad; });
        image_.resize(Shape{N, Te, Dv});
        m.vision_model.forward(be, batch.pixels, image_.view(), {}, vision_trains ? &vision_saved_ : nullptr);
        TensorView<T> d_image;  // [N, Te, Dv], only when the tower trains
        if (vision_trains) {
            d_image_.resize(Shape{N, Te, Dv});
            be.fill(d_image_.view(), T(0));
            d_image = d_image_.view();
        }

        Result r;
        const bool given = !batch.negative_image_for_text.empty() || !batch.negative_text_for_image.empty();
        if (options_.itc || (options_.itm && !given)) contrastive(be, batch, N, Tn, seed, d_image, r);
        if (options_.itm) matching(be, batch, N, Tn, seed, d_image, r);
        if (options_.itg) generation(be, batch, N, Tn, seed, d_image, r);
        if (vision_trains) m.vision_model.backward(be, vision_saved_, {}, d_image_.view(), GradMode::accumulate);
        r.loss = r.itc + r.itm + r.itg;
        return r;
    }

    void after_update(B& be) {
        if (options_.clamp_temp) itc_.clamp_temperature(be, model_.temp);
    }

    /// Restarts the negative sampler from `seed`. A trainer reseeds it from the step number
    /// (train/trainer.hpp), so a resumed run draws the negatives the uninterrupted one drew.
    void reseed(std::uint64_t seed) { sampler_ = HardNegativeSampler(seed, options_.negative_floor); }

private:
    Blip2QFormerPretraining<B>& model_;
    Options options_;
    QueryTextContrastive<B> itc_;
    LanguageModeling<B> lm_;
    HardNegativeSampler sampler_;

    Buffer image_, d_image_;  // [N, Te, Dv]
    typename VisionTransformer<B>::Saved vision_saved_;
    typename QFormer<B>::Saved query_pass_, text_pass_, itm_pass_, itg_pass_;
    typename Linear<B>::Saved vision_projection_, text_projection_;
    typename QueryTextContrastive<B>::Saved itc_saved_;
    typename ImageTextMatching<B>::Saved itm_saved_;
    typename LmPredictionHead<B>::Saved lm_head_saved_;
    typename LanguageModeling<B>::Saved lm_saved_;
    std::vector<std::int32_t> mask_, ids3_, mask3_, dec_ids_, labels_;  // host rows

    /// ITC forward (always, when negatives are to be drawn from it) and, with options.itc, backward.
    void contrastive(B& be, const Batch& batch, index_t N, index_t Tn, C seed, TensorView<T> d_image, Result& r) {
        auto& m = model_;
        const index_t Q = m.config.num_query_tokens, D = m.config.qformer.hidden, E = m.config.image_text_hidden_size;
        auto sc = be.scope();
        auto hq = sc.tensor({N, Q, D});  // [N, Q, D] query outputs
        m.qformer.forward(be, {.batch = N, .queries = true, .image = image_.view()}, hq, &query_pass_);
        auto img = sc.tensor({N, Q, E});  // [N, Q, E]
        m.vision_projection.forward(be, hq.reshape(Shape{N * Q, D}), img.reshape(Shape{N * Q, E}), &vision_projection_);
        auto ht = sc.tensor({N, Tn, D});  // [N, T, D] text-only outputs
        m.qformer.forward(be, {.batch = N, .queries = false, .ids = batch.ids, .attention_mask = mask_}, ht, &text_pass_);
        auto cls = sc.tensor({N, D}), txt = sc.tensor({N, E});  // [N, D], [N, E]
        copy_positions(be, ConstView<T>(ht), 0, cls.reshape(Shape{N, 1, D}), 0, 1);
        m.text_projection.forward(be, cls, txt, &text_projection_);
        const auto c = itc_.forward(be, img, txt, m.temp, itc_saved_, batch.image_ids);
        if (!options_.itc) return;
        r.itc = double(c.loss);
        r.itc_accuracy = 0.5 * (c.image_to_text_accuracy + c.text_to_image_accuracy);
        auto d_img = sc.tensor({N, Q, E}), d_txt = sc.tensor({N, E});  // [N, Q, E], [N, E]
        itc_.backward(be, itc_saved_, seed, d_img, d_txt, m.temp, GradMode::accumulate);
        auto d_hq = sc.tensor({N, Q, D});  // [N, Q, D]
        m.vision_projection.backward(be, vision_projection_, d_img.reshape(Shape{N * Q, E}), d_hq.reshape(Shape{N * Q, D}),
                                     GradMode::accumulate);
        m.qformer.backward(be, query_pass_, d_hq, d_image, GradMode::accumulate);
        auto d_cls = sc.tensor({N, D}), d_ht = sc.tensor({N, Tn, D});  // [N, D], [N, T, D]
        m.text_projection.backward(be, text_projection_, d_txt, d_cls, GradMode::accumulate);
        be.fill(d_ht, T(0));
        copy_positions(be, ConstView<T>(d_cls.reshape(Shape{N, 1, D})), 0, d_ht, 0, 1);
        m.qformer.backward(be, text_pass_, d_ht, TensorView<T>{}, GradMode::accumulate);
    }

    /// The negatives: given (checked), or drawn from the ITC similarities as LAVIS draws them.
    void negatives(const Batch& batch, index_t N, Result& r) {
        const bool given = !batch.negative_image_for_text.empty() || !batch.negative_text_for_image.empty();
        if (given) {
            for (const auto* v : {&batch.negative_image_for_text, &batch.negative_text_for_image}) {
                if (static_cast<index_t>(v->size()) != N)
                    throw ShapeError("Blip2Stage1Task: give both negative index lists with " + std::to_string(N) +
                                     " entries each, found " + std::to_string(batch.negative_image_for_text.size()) +
                                     " and " + std::to_string(batch.negative_text_for_image.size()));
                for (const index_t i : *v)
                    if (i < 0 || i >= N)
                        throw ArgumentError("Blip2Stage1Task: negative index " + std::to_string(i) +
                                            " is outside the batch of " + std::to_string(N));
            }
            r.negative_image_for_text.assign(batch.negative_image_for_text.begin(), batch.negative_image_for_text.end());
            r.negative_text_for_image.assign(batch.negative_text_for_image.begin(), batch.negative_text_for_image.end());
            return;
        }
        if (N < 2) throw ArgumentError("Blip2Stage1Task: ITM needs a batch of at least 2 to draw negatives from");
        // A negative image for each text from sim_t2i, then a negative text for each image from sim_i2t.
        const std::vector<double> t2i = itc_saved_.sim_t2i();
        r.negative_image_for_text = sampler_.sample<double>(ConstView<double>(t2i.data(), Shape{N, N}));
        r.negative_text_for_image = sampler_.sample<double>(itc_saved_.sim_i2t());
    }

    void matching(B& be, const Batch& batch, index_t N, index_t Tn, C seed, TensorView<T> d_image, Result& r) {
        auto& m = model_;
        negatives(batch, N, r);
        const index_t Q = m.config.num_query_tokens, D = m.config.qformer.hidden, L = Q + Tn, M = 3 * N;
        const index_t Te = image_.dim(1), Dv = image_.dim(2);
        // Rows: (text b, image b), (text b, negative image of text b), (negative text of image b, image b).
        ids3_.resize(static_cast<std::size_t>(M * Tn));
        mask3_.resize(ids3_.size());
        std::vector<index_t> text_of(static_cast<std::size_t>(M)), image_of(static_cast<std::size_t>(M));
        for (index_t b = 0; b < N; ++b) {
            const auto u = static_cast<std::size_t>(b);
            text_of[u] = b, image_of[u] = b;
            text_of[u + N] = b, image_of[u + N] = r.negative_image_for_text[u];
            text_of[u + 2 * N] = r.negative_text_for_image[u], image_of[u + 2 * N] = b;
        }
        for (index_t i = 0; i < M; ++i)
            for (index_t t = 0; t < Tn; ++t) {
                const auto dst = static_cast<std::size_t>(i * Tn + t);
                const auto src = static_cast<std::size_t>(text_of[static_cast<std::size_t>(i)] * Tn + t);
                ids3_[dst] = batch.ids[src];
                mask3_[dst] = mask_[src];
            }
        auto sc = be.scope();
        auto image3 = sc.tensor({M, Te, Dv});  // [3N, Te, Dv]
        for (index_t i = 0; i < M; ++i)
            be.copy(ConstView<T>(image_.data() + image_of[static_cast<std::size_t>(i)] * Te * Dv, Shape{Te, Dv}),
                    TensorView<T>(image3.data() + i * Te * Dv, Shape{Te, Dv}));
        auto h = sc.tensor({M, L, D});  // [3N, Q+T, D]
        m.qformer.forward(be, {.batch = M, .queries = true, .ids = ids3_, .attention_mask = mask3_, .image = image3}, h, &itm_pass_);
        // The mean of each row's Q query outputs: (1/Q)·1ᵀ·h[i, :Q].
        auto ones = sc.tensor({Q});  // [Q]
        be.fill(ones, T(1));
        auto mean = sc.tensor({M, D});  // [3N, D]
        const C inv_q = C(1) / static_cast<C>(Q);
        for (index_t i = 0; i < M; ++i)
            be.gemm(Trans::N, Trans::N, 1, D, Q, inv_q, ones.data(), Q, h.data() + i * L * D, D, C(0), mean.data() + i * D, D);
        const auto labels = ImageTextMatching<B>::labels_for(N);
        const auto res = m.itm.forward(be, mean, labels, itm_saved_);
        r.itm = double(res.loss);
        r.itm_accuracy = res.accuracy;
        auto d_mean = sc.tensor({M, D});  // [3N, D]
        m.itm.backward(be, itm_saved_, seed, d_mean, GradMode::accumulate);
        auto d_h = sc.tensor({M, L, D});  // [3N, Q+T, D]: d_mean/Q on every query row, 0 on the text
        be.fill(d_h, T(0));
        for (index_t i = 0; i < M; ++i)
            be.gemm(Trans::N, Trans::N, Q, D, 1, inv_q, ones.data(), 1, d_mean.data() + i * D, D, C(0), d_h.data() + i * L * D, D);
        TensorView<T> d_image3;  // [3N, Te, Dv], folded back onto the N images
        if (!d_image.empty()) {
            d_image3 = sc.tensor({M, Te, Dv});
            be.fill(d_image3, T(0));
        }
        m.qformer.backward(be, itm_pass_, d_h, d_image3, GradMode::accumulate);
        if (!d_image.empty())
            for (index_t i = 0; i < M; ++i)
                be.axpy(T(1), ConstView<T>(d_image3.data() + i * Te * Dv, Shape{Te, Dv}),
                        TensorView<T>(d_image.data() + image_of[static_cast<std::size_t>(i)] * Te * Dv, Shape{Te, Dv}));
    }

    void generation(B& be, const Batch& batch, index_t N, index_t Tn, C seed, TensorView<T> d_image, Result& r) {
        auto& m = model_;
        const index_t Q = m.config.num_query_tokens, D = m.config.qformer.hidden, V = m.config.qformer.vocab_size, L = Q + Tn;
        dec_ids_.assign(batch.ids.begin(), batch.ids.end());
        for (index_t b = 0; b < N; ++b) dec_ids_[static_cast<std::size_t>(b * Tn)] = options_.dec_token_id;
        labels_.resize(dec_ids_.size());
        for (std::size_t i = 0; i < dec_ids_.size(); ++i)
            labels_[i] = dec_ids_[i] == options_.pad_token_id ? lm_.config.ignore_index : dec_ids_[i];
        auto sc = be.scope();
        auto h = sc.tensor({N, L, D});  // [N, Q+T, D]
        m.qformer.forward(be, {.batch = N, .queries = true, .ids = dec_ids_, .attention_mask = mask_, .image = image_.view(),
                               .attention = QFormerAttention::multimodal_causal},
                          h, &itg_pass_);
        auto ht = sc.tensor({N, Tn, D});  // [N, T, D] the text rows
        copy_positions(be, ConstView<T>(h), Q, ht, 0, Tn);
        auto logits = sc.tensor({N, Tn, V});  // [N, T, V]
        m.lm_head.forward(be, ht, m.word_embeddings().value.view(), logits, &lm_head_saved_);
        const auto res = lm_.forward(be, logits, labels_, lm_saved_, options_.itg_accuracy);
        r.itg = double(res.loss);
        r.itg_accuracy = res.accuracy;
        auto d_logits = sc.tensor({N, Tn, V});  // [N, T, V]
        lm_.backward(be, lm_saved_, logits, seed, d_logits);
        auto d_ht = sc.tensor({N, Tn, D});  // [N, T, D]
        m.lm_head.backward(be, lm_head_saved_, d_logits, d_ht, m.word_embeddings(), GradMode::accumulate);
        auto d_h = sc.tensor({N, L, D});  // [N, Q+T, D]: nothing on the query rows (no loss reads them)
        be.fill(d_h, T(0));
        copy_positions(be, ConstView<T>(d_ht), 0, d_h, Q, Tn);
        m.qformer.backward(be, itg_pass_, d_h, d_image, GradMode::accumulate);
    }
};

}  // namespace mmalign
