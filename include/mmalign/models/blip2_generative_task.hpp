// mmalign/models/blip2_generative_task.hpp — BLIP-2's second training stage (Li et al. 2023, §3.3:
// generative learning from a frozen LLM) as a task for train/train_step.hpp, the loss LAVIS's
// Blip2OPT.forward (blip2_opt.py) and transformers' Blip2ForConditionalGeneration.forward(labels=…)
// (modeling_blip_2.py) compute:
//
//   pixels ──► vision_model ──► image_embeds [N, Te, Dv]       frozen unless Options::train_vision
//          ──► Q-Former (query_tokens cross-attending) ──► [N, Q, Dq]           trainable
//          ──► language_projection ──► soft prompt [N, Q, D]                     trainable
//   [soft prompt rows ×Q, caption ids] with mask [1]×Q + caption mask ──► OPT ──► logits [N, Q+T, V]
//   labels [−100]×Q + caption labels ──► shifted cross-entropy, mean over the counted tokens
//   (OPTForCausalLM's loss; transformers' ForCausalLMLoss in loss/loss_utils.py: no smoothing)
//
// The caption ids carry no image tokens: the task puts the Q soft rows in front (LAVIS's
// concatenation). Transformers 5.x instead takes Q image tokens at the front of input_ids and
// masked_scatters the soft prompt into them; the language model then reads the same rows, and
// with labels [−100]×Q + caption labels its loss (logits[:, -labels.size(1):], all of them) is
// this one (tests/models/test_blip2_stage2.cpp checks it against that form). Rows that already
// hold Q image tokens are taken as they are (Blip2Model::soft_prompted), their labels ignored there.
//
// Frozen parts (train/gradients.hpp's freeze: requires_grad false) receive no gradient: every
// layer's backward skips the weight products of a parameter that does not require one, so the
// frozen OPT computes only the gradients of its inputs, down to the soft prompt. What each part
// keeps from its forward:
//   vision_model  nothing when frozen (run without a Saved: no gradient flows into it); with
//                 train_vision every layer's activations, as any trained tower
//   Q-Former, language_projection  their activations (their weights train)
//   OPT           per layer what its input gradient needs (both LayerNorms' inputs and
//                 statistics, the attention's q, k, v and probabilities or their softmax
//                 statistics, fc1's pre-activation) and the inputs of its Linear layers (q/k/v's,
//                 out_proj's, fc1's, fc2's), which only weight gradients read: nn/linear.hpp keeps
//                 them whether or not the weights train (OPT-2.7b: 3D + ffn of the 8D + 2·ffn +
//                 heads·L values a row and layer keep); then the logits [N, Q+T, V] for the
//                 cross-entropy.
// loss_and_backward seeds the backward with `seed` (1, a loss scale, or 1/k for one of k
// micro-batches) and adds into the gradients; zeroing them is the step's job. The activations and
// gradients of the intermediate tensors live in the task and keep their memory from step to step.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mmalign/models/blip2_model.hpp"
#include "mmalign/objectives/language_modeling.hpp"

namespace mmalign {

/// LAVIS's stage-2 targets for OPT-tokenized text (ids [batch·T] starting with </s>, right padded):
/// labels = ids; pads (attention 0) → −100; the first prompt_length tokens of each row → −100
/// (blip2_opt.py: `targets[:, :self.prompt_length] = -100`, prompt_length counting the </s>).
inline std::vector<std::int32_t> blip2_caption_labels(const Blip2Tokens& text, index_t prompt_length = 0) {
    const index_t Tn = text.length("blip2_caption_labels");
    if (prompt_length < 0) throw ArgumentError("blip2_caption_labels: prompt_length " + std::to_string(prompt_length) + " is negative");
    std::vector<std::int32_t> labels(text.ids.begin(), text.ids.end());  // [batch·T]
    for (index_t b = 0; b < text.batch; ++b)
        for (index_t t = 0; t < Tn; ++t) {
            const auto i = static_cast<std::size_t>(b * Tn + t);
            if (t < prompt_length || (!text.attention_mask.empty() && text.attention_mask[i] == 0)) labels[i] = -100;
        }
    return labels;
}

template <Backend B>
struct Blip2GenerativeTask {
    using T = typename B::Scalar;
    using C = typename B::Compute;
    using Buffer = typename B::Tensor;

    struct Options {
        bool train_vision = false;  // finetune-caption may unfreeze the ViT: then backprop into its trainable parameters
        bool accuracy = true;       // copies the logits to the host for the token accuracy
    };
    /// N images with their captions; the ids and labels on the host.
    struct Batch {
        ConstView<T> pixels;                    // [N, C, S, S]
        Blip2Tokens text;                       // OPT ids/mask [N·T], no image tokens (the task puts the Q soft rows first)
        std::span<const std::int32_t> labels;   // [N·T] aligned with text.ids (−100 ignored), e.g. blip2_caption_labels
    };
    struct Result {
        double loss = 0;
        index_t tokens = 0;    // label positions counted
        double accuracy = 0;   // fraction of them whose argmax is the label
    };

    Blip2GenerativeTask(Blip2Model<B>& model, Options o = {}) : model_(model), options_(o) {}

    /// The module whose parameters the step zeroes, clips and updates.
    Blip2Model<B>& module() { return model_; }
    const Options& options() const { return options_; }

    /// Forward and backward of one batch; parameter gradients are added to.
    Result loss_and_backward(B& be, const Batch& batch, C seed) {
        auto& m = model_;
        const index_t N = batch.pixels.dim(0);
        const index_t Te = m.config.vision.tokens(), Dv = m.config.vision.hidden;
        const index_t Q = m.config.num_query_tokens, Dq = m.config.qformer.hidden, D = m.config.text.hidden;
        const index_t V = m.config.text.vocab_size;
        const typename Blip2Model<B>::SoftPrompted p = m.soft_prompted(batch.text, N);
        full_labels(batch, p);
        const bool vision_trains = vision_trains_();

        // vision_model: without a Saved when frozen, so it keeps no activation.
        image_.resize(Shape{N, Te, Dv});
        if (!vision_trains) vision_saved_ = {};  // drops what a trained step kept
        m.vision_queries.vision_model.forward(be, batch.pixels, image_.view(), {}, vision_trains ? &vision_saved_ : nullptr);
        query_.resize(Shape{N, Q, Dq});
        m.vision_queries.qformer.forward(be, {.batch = N, .queries = true, .image = image_.view()}, query_.view(), &qformer_saved_);
        soft_.resize(Shape{N, Q, D});
        m.language_projection.forward(be, query_.view(), soft_.view(), &projection_saved_);
        logits_.resize(Shape{N, p.length, V});
        m.language_model.forward(be, {.batch = N, .ids = p.ids, .attention_mask = p.attention_mask, .soft_prompt = soft_.view(),
                                      .soft_token = p.soft_token},
                                 logits_.view(), &lm_saved_);
        const auto ce = objective_.forward(be, logits_.view(), labels_, ce_saved_, options_.accuracy);

        d_logits_.resize(logits_.shape());
        objective_.backward(be, ce_saved_, logits_.view(), seed, d_logits_.view());
        d_soft_.resize(soft_.shape());
        be.fill(d_soft_.view(), T(0));  // the language model adds into it
        m.language_model.backward(be, lm_saved_, d_logits_.view(), d_soft_.view(), GradMode::accumulate);
        d_query_.resize(query_.shape());
        m.language_projection.backward(be, projection_saved_, d_soft_.view(), d_query_.view(), GradMode::accumulate);
        TensorView<T> d_image;  // [N, Te, Dv], only when the tower trains
        if (vision_trains) {
            d_image_.resize(image_.shape());
            be.fill(d_image_.view(), T(0));  // the Q-Former adds into it
            d_image = d_image_.view();
        }
        m.vision_queries.qformer.backward(be, qformer_saved_, d_query_.view(), d_image, GradMode::accumulate);
        if (vision_trains) m.vision_queries.vision_model.backward(be, vision_saved_, {}, d_image_.view(), GradMode::accumulate);
        return {double(ce.loss), ce.tokens, ce.accuracy};
    }

    /// What the vision tower kept from the last forward (empty unless it trains).
    const typename VisionTransformer<B>::Saved& vision_saved() const { return vision_saved_; }
    /// The labels the language model's rows were scored against, [N·(Q+T)] (−100 on the soft rows).
    std::span<const std::int32_t> labels() const { return labels_; }

private:
    /// Options::train_vision with at least one vision parameter that requires a gradient.
    bool vision_trains_() {
        bool any = false;
        if (options_.train_vision)
            model_.vision_queries.vision_model.visit([&](const std::string&, auto& p) { any = any || p.requires_grad; });
        return any;
    }

    /// labels_ [N·L]: the caption labels at the caption rows, −100 on the soft-prompt rows.
    void full_labels(const Batch& batch, const typename Blip2Model<B>::SoftPrompted& p) {
        const index_t Tn = batch.text.length("Blip2GenerativeTask text");
        if (static_cast<index_t>(batch.labels.size()) != p.batch * Tn)
            throw ShapeError("Blip2GenerativeTask labels: expected " + std::to_string(p.batch * Tn) + " entries ([" +
                             std::to_string(p.batch) + ", " + std::to_string(Tn) + "], as the ids), found " +
                             std::to_string(batch.labels.size()));
        const index_t add = p.length - Tn;  // Q soft rows put in front, or 0 when the ids hold them
        labels_.assign(static_cast<std::size_t>(p.batch * p.length), ignore_index);
        for (index_t b = 0; b < p.batch; ++b)
            for (index_t t = 0; t < Tn; ++t) {
                const auto to = static_cast<std::size_t>(b * p.length + add + t);
                if (p.ids[to] != p.soft_token) labels_[to] = batch.labels[static_cast<std::size_t>(b * Tn + t)];
            }
    }

    static constexpr std::int32_t ignore_index = -100;

    Blip2Model<B>& model_;
    Options options_;
    LanguageModeling<B> objective_{{.label_smoothing = 0.0, .ignore_index = ignore_index, .shift = true}};
    std::vector<std::int32_t> labels_;  // [N·(Q+T)]
    typename VisionTransformer<B>::Saved vision_saved_;
    typename QFormer<B>::Saved qformer_saved_;
    typename Linear<B>::Saved projection_saved_;
    typename OptDecoder<B>::Saved lm_saved_;
    typename LanguageModeling<B>::Saved ce_saved_;
    Buffer image_, d_image_;    // [N, Te, Dv]
    Buffer query_, d_query_;    // [N, Q, Dq]
    Buffer soft_, d_soft_;      // [N, Q, D]
    Buffer logits_, d_logits_;  // [N, Q+T, V]
};

}  // namespace mmalign
