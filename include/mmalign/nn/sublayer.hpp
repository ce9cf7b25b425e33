// mmalign/nn/sublayer.hpp — a residual sublayer: one inner module F (attention, feed-forward, …),
// a LayerNorm placed before or after it, and the residual connection around both. Transformer
// layers are compositions of these.
//
//   PreNorm  (CLIP, ViT, OPT with do_layer_norm_before, GPT-2; Xiong et al. 2020):  y = x + F(LN(x))
//   PostNorm (BERT, BLIP's text model, the Q-Former; Vaswani et al. 2017, §3.1
//             "LayerNorm(x + Sublayer(x))"):                                        y = LN(x + F(x))
//
// x, y [B, T, D] (any rows of D). The placement changes the computation graph, so it is a type;
// F is any module whose Saved exposes input() (Linear, Mlp, MultiHeadAttention): the buffer where
// its forward keeps its input. The sublayer writes LN(x) (pre-norm) straight into that buffer, and
// x + F(x) (post-norm) straight into the norm's, so every activation is stored once — and a parent
// does the same with Saved::input() of the sublayer, writing one sublayer's output into the next
// one's saved input.
//
// Backward: d_x assigned or added to (InputGradMode), and may be d_y itself (the gradient of the
// residual stream then flows through a whole stack of sublayers in one buffer); parameter
// gradients accumulated. Arguments the inner module takes besides its input (attention's context
// and mask; in backward, its d_context) follow the Saved pointer / the gradient mode.
#pragma once

#include <concepts>
#include <string>
#include <type_traits>
#include <utility>

#include "mmalign/nn/layer_norm.hpp"

namespace mmalign {

/// Normalisation before each sub-layer, inside the residual branch.
struct PreNorm {};
/// Normalisation after each residual sum.
struct PostNorm {};

template <class P>
concept NormPlacement = std::is_same_v<P, PreNorm> || std::is_same_v<P, PostNorm>;

template <Backend B, NormPlacement P, class Inner>
struct Sublayer {
    static_assert(requires(typename Inner::Saved& s) {
        { s.input() } -> std::same_as<typename B::Tensor&>;
    }, "Sublayer: the inner module's Saved must expose input(), the buffer where its forward keeps its input "
       "(as Linear, Mlp and MultiHeadAttention do), so that the norm can write into it.");

    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;  // owning storage in the backend's memory
    static constexpr bool pre_norm = std::is_same_v<P, PreNorm>;

    struct Config {
        index_t dim = 0;     // D: the width of x, y and the LayerNorm
        double eps = 1e-5;   // the LayerNorm's
        std::string inner_name, norm_name;  // state-dict prefixes relative to the parent ("self_attn", "layer_norm1")
    };
    struct Saved {
        typename Inner::Saved inner;
        typename LayerNorm<B>::Saved norm;
        /// Where forward keeps x: the norm's input (pre-norm) or the inner module's (post-norm). A
        /// parent may write x here first; forward then skips its copy.
        Buffer& input() {
            if constexpr (pre_norm) return norm.input();
            else return inner.input();
        }
    };

    Config config;
    Inner inner;
    LayerNorm<B> norm;

    Sublayer() = default;
    Sublayer(Config c, Inner m) : config(std::move(c)), inner(std::move(m)), norm({.dim = config.dim, .eps = config.eps}) {}

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        inner.visit(f, join_name(prefix, config.inner_name));
        norm.visit(f, join_name(prefix, config.norm_name));
    }

    /// x → y (distinct buffers of one shape). `extra` go to the inner module after its input.
    template <class... Extra>
    void forward(B& be, ConstView<T> x, TensorView<T> y, Saved* s, const Extra&... extra) const {
        check(x, y);
        auto sc = be.scope();
        // The intermediate goes into the saved input of whichever part reads it next, or scratch.
        auto slot = [&](Buffer& saved) -> TensorView<T> {
            saved.resize(x.shape());
            return saved.view();
        };
        if constexpr (pre_norm) {
            TensorView<T> a = s ? slot(s->inner.input()) : sc.tensor(x.shape());  // [B, T, D]: LN(x)
            norm.forward(be, x, a, s ? &s->norm : nullptr);
            inner.forward(be, a, extra..., y, s ? &s->inner : nullptr);
            be.axpy(T(1), x, y);
        } else {
            TensorView<T> u = s ? slot(s->norm.input()) : sc.tensor(x.shape());  // [B, T, D]: x + F(x)
            inner.forward(be, x, extra..., u, s ? &s->inner : nullptr);
            be.axpy(T(1), x, u);
            norm.forward(be, u, y, s ? &s->norm : nullptr);
        }
    }

    /// Inference with the inner module run by `f(in, out)` instead of its forward: its decoding
    /// forms (a KV-cached step) inside the same norm and residual.
    template <class F>
    void forward_with(B& be, ConstView<T> x, TensorView<T> y, F&& f) const {
        check(x, y);
        auto sc = be.scope();
        TensorView<T> t = sc.tensor(x.shape());  // [B, T, D]: LN(x), or x + F(x)
        if constexpr (pre_norm) {
            norm.forward(be, x, t);
            f(ConstView<T>(t), y);
            be.axpy(T(1), x, y);
        } else {
            f(x, t);
            be.axpy(T(1), x, t);
            norm.forward(be, t, y);
        }
    }

    /// d_x (may be empty, or d_y itself when assigned) assigned or added to; `extra` go to the
    /// inner module's backward after its d_x (attention: d_ctx, accumulated).
    template <class... Extra>
    void backward(B& be, Saved& s, ConstView<T> d_y, TensorView<T> d_x, GradMode mode,
                  InputGradMode d_x_mode = InputGradMode::assign, const Extra&... extra) {
        const bool in_place = !d_x.empty() && d_x.data() == d_y.data();
        if (in_place && d_x_mode == InputGradMode::accumulate)
            throw ArgumentError("Sublayer backward: d_x may be d_y itself only when the gradient is assigned");
        if (!d_x.empty() && !(d_x.shape() == d_y.shape()))
            throw ShapeError("Sublayer backward d_x: expected " + d_y.shape().str() + ", found " + d_x.shape().str());
        auto sc = be.scope();
        // d_x starts as the residual path's share (d_y, or d_u = LNᵀ d_y), then the branch adds its own.
        auto residual = [&](ConstView<T> g) {
            if (d_x.empty() || g.data() == d_x.data()) return;
            if (d_x_mode == InputGradMode::accumulate) be.axpy(T(1), g, d_x);
            else be.copy(g, d_x);
        };
        if constexpr (pre_norm) {
            // y = x + F(LN(x)):  d_x = d_y + LNᵀ(Fᵀ d_y)
            TensorView<T> d_a = sc.tensor(d_y.shape());  // [B, T, D]: d LN(x)
            inner.backward(be, s.inner, d_y, d_a, extra..., mode, InputGradMode::assign);
            residual(d_y);
            norm.backward(be, s.norm, d_a, d_x, mode, InputGradMode::accumulate);
        } else {
            // y = LN(u), u = x + F(x):  d_u = LNᵀ d_y;  d_x = d_u + Fᵀ d_u
            TensorView<T> d_u = sc.tensor(d_y.shape());  // [B, T, D]: d (x + F(x))
            norm.backward(be, s.norm, d_y, d_u, mode, InputGradMode::assign);
            residual(d_u);
            inner.backward(be, s.inner, d_u, d_x, extra..., mode, InputGradMode::accumulate);
        }
    }

private:
    void check(ConstView<T> x, ConstView<T> y) const {
        if (x.shape().cols() != config.dim || !(x.shape() == y.shape()))
            throw ShapeError("Sublayer: input " + x.shape().str() + " and output " + y.shape().str() +
                             " must agree, with last extent " + std::to_string(config.dim));
        if (x.data() == y.data()) throw ArgumentError("Sublayer: x and y must be distinct buffers");
    }
};

}  // namespace mmalign
