// mmalign/nn/scaled_cosine_similarity.hpp — the logit head of a dual encoder: cosine similarities
// of two sets of embeddings times a learned scale (Radford et al. 2021, CLIP; transformers'
// modeling_clip.py CLIPModel.forward; open_clip's ClipLoss logits).
//
//   â = a/‖a‖ [Na, E],  b̂ = b/‖b‖ [Nb, E]  (no eps: HF's `x / x.norm(p=2, dim=-1)`)
//   s = exp(logit_scale)   (logit_scale [] is the *log* of the multiplier, HF key "logit_scale")
//   ab = s·â·b̂ᵀ [Na, Nb],  ba = s·b̂·âᵀ [Nb, Na]   (CLIP's logits_per_image and logits_per_text)
// Either product may be skipped (an empty view). The unit rows are kept in Saved: a model returns
// them as its normalised embeddings, a loss's backward needs them.
// Backward, with d_ab and d_ba (either empty when that product was not used):
//   d_â = s·(d_ab·b̂ + d_baᵀ·b̂),  d_b̂ = s·(d_abᵀ·â + d_ba·â),  then through the normalisation
//   ∂/∂logit_scale = ⟨d_ab, ab⟩ + ⟨d_ba, ba⟩   (the logits are linear in s and ds = s·d logit_scale)
// d_a, d_b are assigned (an empty view skips one); the logit scale's gradient is accumulated.
// The backward takes the forward's logits back (as a softmax backward takes its output) instead of
// keeping a copy: the objective that consumes them keeps them anyway.
#pragma once

#include <cmath>

#include "mmalign/core/backend.hpp"
#include "mmalign/core/parameter.hpp"

namespace mmalign {

template <Backend B>
struct ScaledCosineSimilarity {
    using T = typename B::Scalar;
    using C = typename B::Compute;
    using Buffer = typename B::Tensor;
    using Param = BasicParameter<Buffer>;

    struct Saved {
        Buffer a, b;                               // [Na, E], [Nb, E] unit rows â, b̂
        typename B::ComputeTensor norm_a, norm_b;  // [Na], [Nb] the norms divided by
        C scale = 1;                               // s = exp(logit_scale)
    };

    /// a [Na, E], b [Nb, E], logit_scale []; writes ab [Na, Nb] and ba [Nb, Na] (each may be empty).
    void forward(B& be, ConstView<T> a, ConstView<T> b, const Param& logit_scale, TensorView<T> ab, TensorView<T> ba,
                 Saved& s) const {
        expect_shape(a.shape(), {-1, -1}, "ScaledCosineSimilarity a");
        expect_shape(b.shape(), {-1, a.dim(1)}, "ScaledCosineSimilarity b");
        const index_t Na = a.dim(0), Nb = b.dim(0), E = a.dim(1);
        if (!ab.empty()) expect_shape(ab.shape(), {Na, Nb}, "ScaledCosineSimilarity ab");
        if (!ba.empty()) expect_shape(ba.shape(), {Nb, Na}, "ScaledCosineSimilarity ba");
        s.a.resize(Shape{Na, E});
        s.b.resize(Shape{Nb, E});
        s.norm_a.resize(Shape{Na});
        s.norm_b.resize(Shape{Nb});
        be.l2_normalize_forward(a, s.a.view(), s.norm_a.data());
        be.l2_normalize_forward(b, s.b.view(), s.norm_b.data());
        T log_scale = 0;
        be.to_host(logit_scale.value.view(), TensorView<T>(&log_scale, Shape{}));
        s.scale = std::exp(static_cast<C>(log_scale));
        if (!ab.empty()) be.gemm(Trans::N, Trans::T, Na, Nb, E, s.scale, s.a.data(), E, s.b.data(), E, C(0), ab.data(), Nb);
        if (!ba.empty()) be.gemm(Trans::N, Trans::T, Nb, Na, E, s.scale, s.b.data(), E, s.a.data(), E, C(0), ba.data(), Na);
    }

    /// ab, ba: the forward's logits; d_ab [Na, Nb], d_ba [Nb, Na]: their gradients (empty where
    /// that product was not computed or not used). d_a [Na, E], d_b [Nb, E] assigned;
    /// logit_scale.grad accumulated when `mode` allows.
    void backward(B& be, const Saved& s, ConstView<T> ab, ConstView<T> d_ab, ConstView<T> ba, ConstView<T> d_ba,
                  TensorView<T> d_a, TensorView<T> d_b, Param& logit_scale, GradMode mode) const {
        const index_t Na = s.a.dim(0), Nb = s.b.dim(0), E = s.a.dim(1);
        if (!d_ab.empty()) {
            expect_shape(d_ab.shape(), {Na, Nb}, "ScaledCosineSimilarity d_ab");
            expect_shape(ab.shape(), {Na, Nb}, "ScaledCosineSimilarity ab (backward)");
        }
        if (!d_ba.empty()) {
            expect_shape(d_ba.shape(), {Nb, Na}, "ScaledCosineSimilarity d_ba");
            expect_shape(ba.shape(), {Nb, Na}, "ScaledCosineSimilarity ba (backward)");
        }
        auto sc = be.scope();
        if (T* g = logit_scale.grad_target(mode == GradMode::accumulate)) {
            C d_log_scale = 0;
            if (!d_ab.empty()) d_log_scale += be.dot(d_ab, ab);
            if (!d_ba.empty()) d_log_scale += be.dot(d_ba, ba);
            auto tmp = sc.tensor(Shape{});  // []
            be.from_host(ConstView<C>(&d_log_scale, Shape{}), tmp);
            be.axpy(T(1), tmp, TensorView<T>(g, Shape{}));
        }
        auto d_na = sc.tensor({Na, E}), d_nb = sc.tensor({Nb, E});  // [Na, E], [Nb, E] gradients of â, b̂
        if (!d_a.empty()) {
            // The first product assigns (beta 0), the second adds; with neither, d_â = 0.
            C beta = 0;
            if (!d_ab.empty()) {
                be.gemm(Trans::N, Trans::N, Na, E, Nb, s.scale, d_ab.data(), Nb, s.b.data(), E, beta, d_na.data(), E);
                beta = 1;
            }
            if (!d_ba.empty()) {
                be.gemm(Trans::T, Trans::N, Na, E, Nb, s.scale, d_ba.data(), Na, s.b.data(), E, beta, d_na.data(), E);
                beta = 1;
            }
            if (beta == C(0)) be.fill(d_na, C(0));
        }
        if (!d_b.empty()) {
            C beta = 0;
            if (!d_ab.empty()) {
                be.gemm(Trans::T, Trans::N, Nb, E, Na, s.scale, d_ab.data(), Nb, s.a.data(), E, beta, d_nb.data(), E);
                beta = 1;
            }
            if (!d_ba.empty()) {
                be.gemm(Trans::N, Trans::N, Nb, E, Na, s.scale, d_ba.data(), Na, s.a.data(), E, beta, d_nb.data(), E);
                beta = 1;
            }
            if (beta == C(0)) be.fill(d_nb, C(0));
        }
        if (!d_a.empty()) be.l2_normalize_backward(d_na, s.a.view(), s.norm_a.data(), d_a);
        if (!d_b.empty()) be.l2_normalize_backward(d_nb, s.b.view(), s.norm_b.data(), d_b);
    }
};

}  // namespace mmalign
