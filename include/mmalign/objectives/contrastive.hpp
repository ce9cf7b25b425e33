// mmalign/objectives/contrastive.hpp — CLIP's symmetric InfoNCE (Radford et al. 2021; HF
// `clip_loss` in modeling_clip.py, open_clip `ClipLoss`).
//
//   L_i = s·î·t̂ᵀ, L_t = s·t̂·îᵀ [N, N]   (nn/scaled_cosine_similarity.hpp: unit rows, s = exp(logit_scale))
//   loss = ½ [CE(L_i, arange N) + CE(L_t, arange N)]
// with optional label smoothing ε (torch's CE), or soft targets Y_i, Y_t [N, N] (rows summing to 1:
// CE = −mean_rows Σ_j Y log softmax L), as BLIP's momentum distillation uses.
// logit_scale is the *log* of the multiplier (HF key "logit_scale"); open_clip clamps it to
// [0, ln 100] after each optimizer step: call clamp_logit_scale then.
// Backward: d_img, d_txt assigned (through the normalisation); d logit_scale accumulated
// (∂loss/∂logit_scale = Σ d_L ⊙ L, since L is linear in s = exp(logit_scale)).
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "mmalign/core/backend.hpp"
#include "mmalign/core/parameter.hpp"
#include "mmalign/nn/scaled_cosine_similarity.hpp"

namespace mmalign {

template <Backend B>
struct SymmetricInfoNce {
    using T = typename B::Scalar;
    using C = typename B::Compute;
    using Buffer = typename B::Tensor;
    using Param = BasicParameter<Buffer>;

    struct Config {
        double label_smoothing = 0.0;
        double max_log_scale = 4.605170185988092;  // ln 100 (open_clip, OpenAI)
    };
    struct Result {
        C loss = 0;
        double image_to_text_accuracy = 0;  // fraction of rows of L_i whose argmax is the pair
        double text_to_image_accuracy = 0;
    };
    struct Saved {
        typename ScaledCosineSimilarity<B>::Saved unit;  // î, t̂ [N, E], their norms and s
        Buffer li, lt;            // [N, N] logits
        typename B::ComputeTensor lse_i, lse_t;    // [N]
        Buffer soft_i, soft_t;    // [N, N], only with soft targets
        std::vector<std::int32_t> targets;  // arange(N)
        std::vector<T> host;                // [N, N] logits on the host, for the accuracies
        index_t count = 0;
        bool soft = false;
    };

    Config config;
    ScaledCosineSimilarity<B> similarity;

    SymmetricInfoNce() = default;
    explicit SymmetricInfoNce(Config c) : config(c) {}

    /// img, txt [N, E] (paired by row); logit_scale [] (log of the multiplier). Soft targets are
    /// both given or both empty.
    Result forward(B& be, ConstView<T> img, ConstView<T> txt, const Param& logit_scale, Saved& s,
                   ConstView<T> soft_i2t = {}, ConstView<T> soft_t2i = {}) const {
        expect_shape(img.shape(), {-1, -1}, "SymmetricInfoNce image features");
        expect_shape(txt.shape(), {img.dim(0), img.dim(1)}, "SymmetricInfoNce text features");
        const index_t N = img.dim(0);
        if (soft_i2t.empty() != soft_t2i.empty())
            throw ArgumentError("SymmetricInfoNce: give both soft target matrices or neither");
        s.soft = !soft_i2t.empty();
        if (s.soft) {
            expect_shape(soft_i2t.shape(), {N, N}, "SymmetricInfoNce soft_i2t");
            expect_shape(soft_t2i.shape(), {N, N}, "SymmetricInfoNce soft_t2i");
        }
        for (auto* b : {&s.lse_i, &s.lse_t}) b->resize(Shape{N});
        for (Buffer* b : {&s.li, &s.lt}) b->resize(Shape{N, N});
        s.targets.resize(static_cast<std::size_t>(N));
        std::iota(s.targets.begin(), s.targets.end(), 0);
        similarity.forward(be, img, txt, logit_scale, s.li.view(), s.lt.view(), s.unit);
        const C eps = s.soft ? C(0) : static_cast<C>(config.label_smoothing);
        auto ci = be.cross_entropy_forward(s.li.view(), s.targets.data(), -100, eps, s.lse_i.data());
        auto ct = be.cross_entropy_forward(s.lt.view(), s.targets.data(), -100, eps, s.lse_t.data());
        s.count = N;
        Result r;
        if (!s.soft) {
            r.loss = T(0.5) * (ci.loss + ct.loss);
        } else {
            s.soft_i.resize(Shape{N, N});
            s.soft_t.resize(Shape{N, N});
            be.copy(soft_i2t, s.soft_i.view());
            be.copy(soft_t2i, s.soft_t.view());
            // −mean_i Σ_j Y_ij (L_ij − lse_i) = mean(lse) − ⟨Y, L⟩/N for rows of Y summing to 1.
            const C n = static_cast<C>(N);
            r.loss = T(0.5) * (be.sum(s.lse_i.view()) / n - be.dot(soft_i2t, s.li.view()) / n + be.sum(s.lse_t.view()) / n -
                               be.dot(soft_t2i, s.lt.view()) / n);
        }
        r.image_to_text_accuracy = diagonal_accuracy(be, s.li.view(), s.host);
        r.text_to_image_accuracy = diagonal_accuracy(be, s.lt.view(), s.host);
        return r;
    }

    /// d_img, d_txt [N, E] assigned; logit_scale.grad accumulated (when mode allows).
    void backward(B& be, Saved& s, C d_loss, TensorView<T> d_img, TensorView<T> d_txt, Param& logit_scale,
                  GradMode mode) const {
        const index_t N = s.li.dim(0);
        auto sc = be.scope();
        auto d_li = sc.tensor({N, N}), d_lt = sc.tensor({N, N});
        const C half = C(0.5) * d_loss;
        if (!s.soft) {
            const C eps = static_cast<C>(config.label_smoothing);
            be.cross_entropy_backward(s.li.view(), s.targets.data(), s.lse_i.data(), -100, eps, s.count, half, d_li);
            be.cross_entropy_backward(s.lt.view(), s.targets.data(), s.lse_t.data(), -100, eps, s.count, half, d_lt);
        } else {
            be.softmax(s.li.view(), d_li);
            be.axpy(T(-1), s.soft_i.view(), d_li);
            be.scale(half / static_cast<C>(N), d_li);
            be.softmax(s.lt.view(), d_lt);
            be.axpy(T(-1), s.soft_t.view(), d_lt);
            be.scale(half / static_cast<C>(N), d_lt);
        }
        similarity.backward(be, s.unit, s.li.view(), d_li, s.lt.view(), d_lt, d_img, d_txt, logit_scale, mode);
    }

    /// open_clip's in-place clamp of the log scale to [0, max_log_scale], after an optimizer step.
    void clamp_logit_scale(B& be, Param& logit_scale) const {
        T v = 0;
        be.to_host(logit_scale.value.view(), TensorView<T>(&v, Shape{}));
        v = std::clamp(v, T(0), static_cast<T>(config.max_log_scale));
        be.from_host(ConstView<T>(&v, Shape{}), logit_scale.value.view());
    }

private:
    static double diagonal_accuracy(B& be, ConstView<T> logits, std::vector<T>& host) {
        const index_t N = logits.dim(0);
        host.resize(static_cast<std::size_t>(N * N));  // kept in Saved: no allocation per step
        be.to_host(logits, TensorView<T>(host.data(), logits.shape()));
        index_t hits = 0;
        for (index_t i = 0; i < N; ++i) {
            const T* row = host.data() + i * N;
            hits += std::max_element(row, row + N) - row == i;
        }
        return N ? double(hits) / double(N) : 0.0;
    }
};

}  // namespace mmalign
