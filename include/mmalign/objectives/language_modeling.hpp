// mmalign/objectives/language_modeling.hpp — next-token cross-entropy (LM / ITG objectives).
//
//   logits [B, T, V], labels [B, T] (int32; −100 = ignore, as HF's labels)
//   loss = mean over {(b, t) : t < T−1, labels[b, t+1] ≠ −100} of CE(logits[b, t], labels[b, t+1])
// with optional label smoothing ε (torch's CE; BLIP's LM and BLIP-2's ITG use 0.1: BLIP's
// models/med.py, LAVIS's blip2_qformer.py).
// The shift is done on the labels (the last position of each row becomes ignored), so the logits
// are used in place. With `shift = false` labels are already aligned with the logits.
// Backward: d_logits assigned, zero on ignored rows.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mmalign/core/backend.hpp"

namespace mmalign {

template <Backend B>
struct LanguageModeling {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;

    struct Config {
        double label_smoothing = 0.0;
        std::int32_t ignore_index = -100;
        bool shift = true;
    };
    struct Result {
        typename B::Compute loss = 0;
        index_t tokens = 0;     // positions that count
        double accuracy = 0;    // fraction of counted positions whose argmax is the label
    };
    struct Saved {
        std::vector<std::int32_t> targets;  // [B·T], shifted labels
        typename B::ComputeTensor lse;      // [B·T]
        index_t count = 0;
    };

    Config config;

    LanguageModeling() = default;
    explicit LanguageModeling(Config c) : config(c) {}

    Result forward(B& be, ConstView<T> logits, std::span<const std::int32_t> labels, Saved& s,
                   bool with_accuracy = false) const {
        expect_shape(logits.shape(), {-1, -1, -1}, "LanguageModeling logits");
        const index_t Bn = logits.dim(0), Tn = logits.dim(1), V = logits.dim(2);
        if (static_cast<index_t>(labels.size()) != Bn * Tn)
            throw ShapeError("LanguageModeling labels: expected " + std::to_string(Bn * Tn) + " entries ([" +
                             std::to_string(Bn) + ", " + std::to_string(Tn) + "]), found " + std::to_string(labels.size()));
        s.targets.resize(static_cast<std::size_t>(Bn * Tn));
        for (index_t b = 0; b < Bn; ++b)
            for (index_t t = 0; t < Tn; ++t) {
                const index_t src = config.shift ? t + 1 : t;
                s.targets[static_cast<std::size_t>(b * Tn + t)] =
                    src < Tn ? labels[static_cast<std::size_t>(b * Tn + src)] : config.ignore_index;
            }
        s.lse.resize(Shape{Bn * Tn});
        const ConstView<T> flat = logits.reshape(Shape{Bn * Tn, V});
        auto ce = be.cross_entropy_forward(flat, s.targets.data(), config.ignore_index,
                                           static_cast<typename B::Compute>(config.label_smoothing), s.lse.data());
        s.count = ce.count;
        Result r{ce.loss, ce.count, 0.0};
        if (with_accuracy && ce.count) {
            std::vector<T> host(static_cast<std::size_t>(Bn * Tn * V));
            be.to_host(flat, TensorView<T>(host.data(), flat.shape()));
            index_t hits = 0;
            for (index_t i = 0; i < Bn * Tn; ++i) {
                const std::int32_t y = s.targets[static_cast<std::size_t>(i)];
                if (y == config.ignore_index) continue;
                const T* row = host.data() + i * V;
                hits += std::max_element(row, row + V) - row == y;
            }
            r.accuracy = double(hits) / double(ce.count);
        }
        return r;
    }

    void backward(B& be, const Saved& s, ConstView<T> logits, typename B::Compute d_loss, TensorView<T> d_logits) const {
        const index_t V = logits.shape().cols(), rows = logits.numel() / V;
        be.cross_entropy_backward(logits.reshape(Shape{rows, V}), s.targets.data(), s.lse.data(), config.ignore_index,
                                  static_cast<typename B::Compute>(config.label_smoothing), s.count, d_loss,
                                  d_logits.reshape(Shape{rows, V}));
    }
};

}  // namespace mmalign
