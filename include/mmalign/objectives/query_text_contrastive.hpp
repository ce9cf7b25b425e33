// mmalign/objectives/query_text_contrastive.hpp — BLIP-2's image-text contrastive loss (Li et al.
// 2023, §3.2 "Image-Text Contrastive Learning"; LAVIS's blip2_qformer.py, Blip2Qformer.forward).
//
// An image is Q query embeddings, a text one [CLS] embedding; their similarity is the best match
// over the queries:
//   î = img / ‖img‖ [N, Q, E],  t̂ = txt / ‖txt‖ [N, E]
//   M[b, c] = max_q î[b, q]·t̂[c]                          [N, N]
//   sim_i2t = M / temp,  sim_t2i = Mᵀ / temp              (LAVIS computes both products; one batch,
//                                                          so sim_t2i is exactly sim_i2tᵀ)
//   loss = ½ [CE(sim_i2t, arange N) + CE(sim_t2i, arange N)]
// with torch's label smoothing ε (LAVIS: 0.1), i.e. soft targets Y = (1 − ε)·I + ε/N. With image
// ids, every pair that shares an image is a positive: Y = (1 − ε)·P/rowsum(P) + ε/N, P[b, c] =
// [id_b = id_c] (BLIP's retrieval fine-tuning form, blip_retrieval.py; LAVIS's BLIP-2 stage 1
// passes no ids).
// temp is the learnable temperature (LAVIS `temp`, initialised 0.07), a divisor, not a log scale.
// LAVIS's BLIP-2 stage 1 never clamps it; BLIP (blip_pretrain.py) clamps it to [0.001, 0.5] under
// no_grad at every forward: clamp_temperature does that clamp, for callers that want it.
//
// The per-query cosines are one product on the backend (nn/scaled_cosine_similarity.hpp at scale
// 1); the N×N maximum, softmax and cross-entropy run on the host in double (N is the batch).
// Backward: dS = ½·d_loss·(softmax(S) − Y)/N per direction, summed onto S = sim_i2t; the gradient
// reaches only the arg-max query of each (image, text) pair; ∂S/∂temp = −S/temp. d_img, d_txt are
// assigned; temp's gradient is accumulated.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mmalign/core/backend.hpp"
#include "mmalign/core/parameter.hpp"
#include "mmalign/nn/scaled_cosine_similarity.hpp"

namespace mmalign {

template <Backend B>
struct QueryTextContrastive {
    using T = typename B::Scalar;
    using C = typename B::Compute;
    using Buffer = typename B::Tensor;
    using Param = BasicParameter<Buffer>;

    struct Config {
        double label_smoothing = 0.1;              // LAVIS's F.cross_entropy(..., label_smoothing=0.1)
        double min_temp = 0.001, max_temp = 0.5;   // BLIP's clamp (clamp_temperature)
    };
    struct Result {
        C loss = 0;
        double image_to_text_accuracy = 0;  // rows of sim_i2t whose arg-max is the own text
        double text_to_image_accuracy = 0;
    };
    struct Saved {
        typename ScaledCosineSimilarity<B>::Saved unit;  // î [N·Q, E], t̂ [N, E]
        Buffer per_query;                 // [N·Q, N] cosines î[b, q]·t̂[c]
        std::vector<T> host;              // [N·Q, N] the same on the host
        std::vector<double> sim;          // [N, N] sim_i2t = M / temp (sim_t2i is its transpose)
        std::vector<index_t> best;        // [N, N] the arg-max query of each (image, text)
        std::vector<double> targets;      // [N, N] Y (rows sum to 1)
        double temp = 0;
        index_t images = 0, queries = 0;

        /// sim_i2t [N, N] on the host (what hard negatives are drawn from; sim_t2i = its transpose).
        ConstView<double> sim_i2t() const { return {sim.data(), Shape{images, images}}; }
        /// sim_t2i [N, N] on the host, as a new matrix.
        std::vector<double> sim_t2i() const {
            std::vector<double> t(sim.size());
            for (index_t b = 0; b < images; ++b)
                for (index_t c = 0; c < images; ++c) t[static_cast<std::size_t>(c * images + b)] = sim[static_cast<std::size_t>(b * images + c)];
            return t;
        }
    };

    Config config;

    QueryTextContrastive() = default;
    explicit QueryTextContrastive(Config c) : config(c) {}

    /// img [N, Q, E] (the projected query outputs), txt [N, E] (the projected [CLS]), temp [];
    /// image_ids [N] or empty (then image b's only positive is text b).
    Result forward(B& be, ConstView<T> img, ConstView<T> txt, const Param& temp, Saved& s,
                   std::span<const std::int64_t> image_ids = {}) const {
        expect_shape(img.shape(), {-1, -1, -1}, "QueryTextContrastive image features");
        const index_t N = img.dim(0), Q = img.dim(1), E = img.dim(2);
        expect_shape(txt.shape(), {N, E}, "QueryTextContrastive text features");
        if (N <= 0 || Q <= 0) throw ShapeError("QueryTextContrastive: " + img.shape().str() + " holds no query embedding");
        if (!image_ids.empty() && static_cast<index_t>(image_ids.size()) != N)
            throw ShapeError("QueryTextContrastive: " + std::to_string(image_ids.size()) + " image ids for a batch of " + std::to_string(N));
        T t = 0;
        be.to_host(temp.value.view(), TensorView<T>(&t, Shape{}));
        s.temp = static_cast<double>(t);
        if (!(s.temp > 0)) throw ArgumentError("QueryTextContrastive: the temperature " + std::to_string(s.temp) + " is not positive");
        s.images = N, s.queries = Q;
        s.per_query.resize(Shape{N * Q, N});
        similarity_.forward(be, img.reshape(Shape{N * Q, E}), txt, unit_scale_, s.per_query.view(), {}, s.unit);
        s.host.resize(static_cast<std::size_t>(N * Q * N));
        be.to_host(s.per_query.view(), TensorView<T>(s.host.data(), Shape{N * Q, N}));
        const auto at = [N](index_t r, index_t c) { return static_cast<std::size_t>(r * N + c); };
        s.sim.assign(static_cast<std::size_t>(N * N), 0.0);
        s.best.assign(static_cast<std::size_t>(N * N), 0);
        for (index_t b = 0; b < N; ++b)
            for (index_t c = 0; c < N; ++c) {
                index_t k = 0;  // torch's max: the first of equal maxima
                for (index_t q = 1; q < Q; ++q)
                    if (s.host[at(b * Q + q, c)] > s.host[at(b * Q + k, c)]) k = q;
                s.best[at(b, c)] = k;
                s.sim[at(b, c)] = static_cast<double>(s.host[at(b * Q + k, c)]) / s.temp;
            }
        fill_targets(N, image_ids, s.targets);
        Result r;
        std::vector<double> p;
        double loss = 0;
        for (const bool transposed : {false, true}) {
            for (index_t b = 0; b < N; ++b) {
                const double lse = row_softmax(s, b, transposed, p);
                double row = 0;  // −Σ_c Y log p_c, log p_c = S_bc − lse
                for (index_t c = 0; c < N; ++c)
                    row -= s.targets[at(b, c)] * (s.sim[transposed ? at(c, b) : at(b, c)] - lse);
                loss += row;
                const index_t arg = std::max_element(p.begin(), p.end()) - p.begin();
                (transposed ? r.text_to_image_accuracy : r.image_to_text_accuracy) += arg == b ? 1.0 / double(N) : 0.0;
            }
        }
        r.loss = static_cast<C>(0.5 * loss / double(N));
        return r;
    }

    /// d_img [N, Q, E] and d_txt [N, E] assigned; temp.grad accumulated (when `mode` allows).
    void backward(B& be, Saved& s, C d_loss, TensorView<T> d_img, TensorView<T> d_txt, Param& temp, GradMode mode) const {
        const index_t N = s.images, Q = s.queries;
        if (N <= 0) throw ArgumentError("QueryTextContrastive backward: this Saved holds no forward pass");
        const auto at = [N](index_t r, index_t c) { return static_cast<std::size_t>(r * N + c); };
        // dS on S = sim_i2t: the i2t rows directly, the t2i rows (rows of Sᵀ) transposed back.
        std::vector<double> dS(static_cast<std::size_t>(N * N), 0.0), p;
        const double half = 0.5 * static_cast<double>(d_loss) / double(N);
        for (const bool transposed : {false, true})
            for (index_t b = 0; b < N; ++b) {
                row_softmax(s, b, transposed, p);
                for (index_t c = 0; c < N; ++c) {
                    const double g = half * (p[static_cast<std::size_t>(c)] - s.targets[at(b, c)]);
                    dS[transposed ? at(c, b) : at(b, c)] += g;
                }
            }
        if (T* g = temp.grad_target(mode == GradMode::accumulate)) {
            double d_temp = 0;  // S = M / temp: ∂S/∂temp = −S / temp
            for (std::size_t i = 0; i < dS.size(); ++i) d_temp -= dS[i] * s.sim[i] / s.temp;
            auto sc = be.scope();
            auto tmp = sc.tensor(Shape{});  // []
            const T v = static_cast<T>(d_temp);
            be.from_host(ConstView<T>(&v, Shape{}), tmp);
            be.axpy(T(1), tmp, TensorView<T>(g, Shape{}));
        }
        // dM = dS / temp, routed to the arg-max query of each pair.
        std::vector<T> d_host(static_cast<std::size_t>(N * Q * N), T(0));
        for (index_t b = 0; b < N; ++b)
            for (index_t c = 0; c < N; ++c)
                d_host[at(b * Q + s.best[at(b, c)], c)] = static_cast<T>(dS[at(b, c)] / s.temp);
        auto sc = be.scope();
        auto d_pq = sc.tensor({N * Q, N});  // [N·Q, N]
        be.from_host(ConstView<T>(d_host.data(), Shape{N * Q, N}), d_pq);
        const index_t E = s.unit.b.dim(1);
        similarity_.backward(be, s.unit, s.per_query.view(), d_pq, {}, {}, d_img.reshape(Shape{N * Q, E}), d_txt,
                             unit_scale_, GradMode::accumulate);
    }

    /// BLIP's in-place clamp of the temperature to [min_temp, max_temp] (blip_pretrain.py).
    void clamp_temperature(B& be, Param& temp) const {
        T v = 0;
        be.to_host(temp.value.view(), TensorView<T>(&v, Shape{}));
        v = static_cast<T>(std::clamp(static_cast<double>(v), config.min_temp, config.max_temp));
        be.from_host(ConstView<T>(&v, Shape{}), temp.value.view());
    }

private:
    ScaledCosineSimilarity<B> similarity_;
    mutable Param unit_scale_ = frozen_zero();  // log scale 0: the plain cosine; never trained

    static Param frozen_zero() {
        Param p(Shape{});
        p.requires_grad = false;
        return p;
    }

    void fill_targets(index_t N, std::span<const std::int64_t> ids, std::vector<double>& y) const {
        const double eps = config.label_smoothing;
        y.assign(static_cast<std::size_t>(N * N), eps / double(N));
        for (index_t b = 0; b < N; ++b) {
            index_t positives = 0;
            for (index_t c = 0; c < N; ++c) positives += ids.empty() ? (b == c) : (ids[b] == ids[c]);
            for (index_t c = 0; c < N; ++c)
                if (ids.empty() ? b == c : ids[b] == ids[c])
                    y[static_cast<std::size_t>(b * N + c)] += (1.0 - eps) / double(positives);
        }
    }
    /// softmax of row b of S (or of Sᵀ) into p [N]; returns the row's log-sum-exp.
    static double row_softmax(const Saved& s, index_t b, bool transposed, std::vector<double>& p) {
        const index_t N = s.images;
        p.resize(static_cast<std::size_t>(N));
        double mx = -INFINITY, z = 0;
        for (index_t c = 0; c < N; ++c) {
            p[static_cast<std::size_t>(c)] = s.sim[static_cast<std::size_t>(transposed ? c * N + b : b * N + c)];
            mx = std::max(mx, p[static_cast<std::size_t>(c)]);
        }
        for (auto& v : p) z += (v = std::exp(v - mx));
        for (auto& v : p) v /= z;
        return mx + std::log(z);
    }
};

}  // namespace mmalign
