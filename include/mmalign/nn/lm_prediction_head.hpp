// mmalign/nn/lm_prediction_head.hpp — the language-model head of BERT-family decoders, its output
// weight tied to the word embeddings (transformers' BertLMPredictionHead, BlipTextLMPredictionHead
// in modeling_blip_text.py; Press & Wolf 2017 for the tie).
//
//   h [N, D] → t = LayerNorm(act(transform.dense(h)))  (with Config::transform)
//   logits [N, V] = t · Eᵀ + bias                        E: the word-embedding table [V, D]
// The head owns no output weight: E is passed in, so there is one parameter under two names, and its
// gradient from the head adds to the embedding's own (backward takes the embedding's Parameter).
// Checkpoints store E as `<...>.embeddings.word_embeddings.weight`, and may repeat it as
// `cls.predictions.decoder.weight` and the bias as `cls.predictions.decoder.bias` (HF's
// _tied_weights_keys): the owning model ties those keys (io/tensor_map.hpp).
// Without the transform (OPT's lm_head) the head is the tied product alone.
// HF keys (relative to the head, "cls.predictions"): transform.dense.*, transform.LayerNorm.*, bias.
#pragma once

#include <optional>
#include <string>

#include "mmalign/nn/layer_norm.hpp"
#include "mmalign/nn/linear.hpp"

namespace mmalign {

template <Backend B>
struct LmPredictionHead {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;
    using Param = BasicParameter<Buffer>;

    struct Config {
        index_t dim = 0;
        index_t vocab = 0;
        Activation activation = Activation::gelu;  // HF hidden_act
        double eps = 1e-12;
        bool transform = true;  // dense → act → LayerNorm before the product
        bool bias = true;
    };
    struct Saved {
        typename Linear<B>::Saved dense;
        typename LayerNorm<B>::Saved norm;
        Buffer t;  // [N, D]: the product's input
        /// Where forward keeps h; a parent may write h here first (no copy then).
        Buffer& input() { return config_transform ? dense.input() : t; }
        bool config_transform = true;
    };

    Config config;
    std::optional<Linear<B>> dense;
    std::optional<LayerNorm<B>> norm;
    Param bias;  // [V]

    LmPredictionHead() = default;
    explicit LmPredictionHead(Config c) : config(c) {
        if (c.dim <= 0 || c.vocab <= 0)
            throw ArgumentError("LmPredictionHead: dim and vocab must be positive, found dim=" + std::to_string(c.dim) +
                                " vocab=" + std::to_string(c.vocab));
        if (c.transform) {
            dense.emplace(typename Linear<B>::Config{.in = c.dim, .out = c.dim, .activation = c.activation});
            norm.emplace(typename LayerNorm<B>::Config{.dim = c.dim, .eps = c.eps});
        }
        if (c.bias) bias = Param(Shape{c.vocab});
    }

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        if (dense) dense->visit(f, join_name(prefix, "transform.dense"));
        if (norm) norm->visit(f, join_name(prefix, "transform.LayerNorm"));
        if (config.bias) f(join_name(prefix, "bias"), bias);
    }

    /// h [N.., D] → logits [N.., V]; `embedding` is the tied table [V, D].
    void forward(B& be, ConstView<T> h, ConstView<T> embedding, TensorView<T> logits, Saved* s = nullptr) const {
        const index_t D = config.dim, V = config.vocab;
        if (h.shape().cols() != D) throw ShapeError("LmPredictionHead input: expected last extent " + std::to_string(D) + ", found " + h.shape().str());
        const index_t N = h.numel() / D;
        expect_shape(embedding.shape(), {V, D}, "LmPredictionHead tied embedding");
        if (logits.numel() != N * V || logits.shape().cols() != V)
            throw ShapeError("LmPredictionHead logits: expected " + std::to_string(N) + " rows of " + std::to_string(V) +
                             ", found " + logits.shape().str());
        auto sc = be.scope();
        ConstView<T> t = h.reshape(Shape{N, D});
        if (config.transform) {
            auto a = sc.tensor({N, D});  // [N, D]: act(dense(h))
            dense->forward(be, t, a, s ? &s->dense : nullptr);
            TensorView<T> out = s ? (s->t.resize(Shape{N, D}), s->t.view()) : sc.tensor({N, D});  // [N, D]
            norm->forward(be, a, out, s ? &s->norm : nullptr);
            t = out;
        } else if (s) {
            if (s->t.data() != h.data()) {
                s->t.resize(Shape{N, D});
                be.copy(t, s->t.view());
            }
        }
        if (s) s->config_transform = config.transform;
        be.linear_forward(t, embedding, config.bias ? bias.value.data() : nullptr, Activation::none,
                          logits.reshape(Shape{N, V}), nullptr);
    }

    /// d_logits [N.., V] → d_h [N.., D] (assigned; may be empty); the tied table's gradient goes to
    /// `embedding` (the word-embedding Parameter), the head's own parameters accumulate theirs.
    void backward(B& be, Saved& s, ConstView<T> d_logits, TensorView<T> d_h, Param& embedding, GradMode mode) {
        const index_t D = config.dim, V = config.vocab, N = s.t.numel() / D;
        if (d_logits.numel() != N * V) throw ShapeError("LmPredictionHead backward d_logits: expected " + std::to_string(N) + " rows of " + std::to_string(V) + ", found " + d_logits.shape().str());
        const bool acc = mode == GradMode::accumulate;
        if (T* dw = embedding.grad_target(acc))  // dE += d_logitsᵀ · t
            be.gemm(Trans::T, Trans::N, V, D, N, T(1), d_logits.data(), V, s.t.data(), D, T(1), dw, D);
        if (config.bias)
            if (T* db = bias.grad_target(acc)) be.sum_rows_accumulate(d_logits.reshape(Shape{N, V}), db);
        if (d_h.empty() && !config.transform) return;
        auto sc = be.scope();
        auto d_t = sc.tensor({N, D});  // [N, D]: d_logits · E
        be.gemm(Trans::N, Trans::N, N, D, V, T(1), d_logits.data(), V, embedding.value.data(), D, T(0), d_t.data(), D);
        if (!config.transform) {
            be.copy(d_t, d_h.reshape(Shape{N, D}));
            return;
        }
        auto d_a = sc.tensor({N, D});  // [N, D]
        norm->backward(be, s.norm, d_t, d_a, mode);
        dense->backward(be, s.dense, d_a, d_h.empty() ? TensorView<T>{} : d_h.reshape(Shape{N, D}), mode);
    }
};

}  // namespace mmalign
