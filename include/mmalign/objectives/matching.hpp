// mmalign/objectives/matching.hpp — image–text matching (ITM) with hard negatives (BLIP, BLIP-2;
// Li et al. 2022 §3.2 and BLIP's models/blip_pretrain.py; Li et al. 2023 §3.2 and LAVIS's
// blip2_qformer.py).
//
// Negatives: for each text a negative image is drawn with probability softmax(sim_t2i[t, :]) over
// the other images, and for each image a negative text from softmax(sim_i2t[i, :]) — the own pair
// is excluded (BLIP-2 sets it to −10000 before the softmax; here it gets probability exactly 0).
// The sampler is seeded, so a run is reproducible. The model then encodes the batch
//   [positives (B) ; text + negative image (B) ; negative text + image (B)],  labels [1]*B + [0]*2B
// and the objective is the head  logits = h·Wᵀ + b  (h [3B, D] the multimodal [CLS] or the mean
// over query outputs, W [2, D]: HF "itm_head") followed by plain cross-entropy.
// Backward: d_h assigned; head gradients accumulated.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "mmalign/nn/linear.hpp"

namespace mmalign {

/// Row-wise draws from softmax(sim[r, :]) excluding column r. sim [N, N] on the host.
/// With `floor` > 0 the weights are LAVIS's exactly: softmax over the whole row (own column
/// included) plus `floor` (BLIP and BLIP-2 add 1e-4, blip_pretrain.py / blip2_qformer.py), then the
/// own column set to 0, so no other column's chance is ever zero.
struct HardNegativeSampler {
    std::mt19937_64 rng;
    double floor = 0;

    explicit HardNegativeSampler(std::uint64_t seed, double floor_weight = 0) : rng(seed), floor(floor_weight) {}

    template <class T>
    std::vector<index_t> sample(ConstView<T> sim) {
        expect_shape(sim.shape(), {-1, sim.dim(0)}, "HardNegativeSampler similarities");
        const index_t N = sim.dim(0);
        if (N < 2) throw ArgumentError("HardNegativeSampler: a batch of " + std::to_string(N) + " has no negatives");
        std::vector<index_t> out(static_cast<std::size_t>(N));
        std::vector<double> w(static_cast<std::size_t>(N));
        for (index_t r = 0; r < N; ++r) {
            const T* row = sim.data() + r * N;
            double mx = -INFINITY, z = 0;
            for (index_t c = 0; c < N; ++c)
                if (c != r || floor > 0) mx = std::max(mx, double(row[c]));
            if (floor > 0)
                for (index_t c = 0; c < N; ++c) z += std::exp(double(row[c]) - mx);
            for (index_t c = 0; c < N; ++c)
                w[static_cast<std::size_t>(c)] = c == r ? 0.0 : floor > 0 ? std::exp(double(row[c]) - mx) / z + floor
                                                                           : std::exp(double(row[c]) - mx);
            std::discrete_distribution<index_t> pick(w.begin(), w.end());
            out[static_cast<std::size_t>(r)] = pick(rng);
        }
        return out;
    }
};

template <Backend B>
struct ImageTextMatching {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;

    struct Config {
        index_t dim = 0;
        std::string head_name = "itm_head";
    };
    struct Result {
        typename B::Compute loss = 0;
        double accuracy = 0;
    };
    struct Saved {
        typename Linear<B>::Saved head;
        Buffer logits;  // [3B, 2]
        typename B::ComputeTensor lse;  // [3B]
        std::vector<std::int32_t> labels;
        std::vector<T> host;  // [3B, 2] logits on the host, for the accuracy
        index_t count = 0;
    };

    Config config;
    Linear<B> head;

    ImageTextMatching() = default;
    explicit ImageTextMatching(Config c) : config(c), head({.in = c.dim, .out = 2}) {}

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        head.visit(f, join_name(prefix, config.head_name));
    }

    /// The labels of the batch layout above: [1]*B + [0]*2B.
    static std::vector<std::int32_t> labels_for(index_t positives) {
        std::vector<std::int32_t> y(static_cast<std::size_t>(3 * positives), 0);
        std::fill(y.begin(), y.begin() + positives, 1);
        return y;
    }

    /// h [M, D] with labels [M] (1 = matching pair).
    Result forward(B& be, ConstView<T> h, std::span<const std::int32_t> labels, Saved& s) const {
        expect_shape(h.shape(), {-1, config.dim}, "ImageTextMatching input");
        const index_t M = h.dim(0);
        if (static_cast<index_t>(labels.size()) != M)
            throw ShapeError("ImageTextMatching labels: expected " + std::to_string(M) + ", found " +
                             std::to_string(labels.size()));
        s.logits.resize(Shape{M, 2});
        s.lse.resize(Shape{M});
        s.labels.assign(labels.begin(), labels.end());
        head.forward(be, h, s.logits.view(), &s.head);
        auto ce = be.cross_entropy_forward(s.logits.view(), s.labels.data(), -100, T(0), s.lse.data());
        s.count = ce.count;
        std::vector<T>& host = s.host;
        host.resize(static_cast<std::size_t>(2 * M));
        be.to_host(s.logits.view(), TensorView<T>(host.data(), Shape{M, 2}));
        index_t hits = 0;
        for (index_t i = 0; i < M; ++i) hits += (host[2 * i + 1] > host[2 * i]) == (labels[i] == 1);
        return {ce.loss, M ? double(hits) / double(M) : 0.0};
    }

    void backward(B& be, Saved& s, typename B::Compute d_loss, TensorView<T> d_h, GradMode mode) {
        auto sc = be.scope();
        auto d_logits = sc.tensor(s.logits.shape());
        be.cross_entropy_backward(s.logits.view(), s.labels.data(), s.lse.data(), -100, T(0), s.count, d_loss, d_logits);
        head.backward(be, s.head, d_logits, d_h, mode);
    }
};

}  // namespace mmalign
