// mmalign/nn/embedding.hpp — token embeddings and learned absolute positions.
//
// Embedding:        ids [N] → out [N, D] = weight[ids];  weight [V, D]  (HF "<name>.weight").
//                   Backward: d_weight[ids[n]] += d_out[n], except for Config::padding_idx
//                   (nn.Embedding's padding_idx: that row never learns). Saved: the ids.
// LearnedPositions: x [B, T, D] → y = x + weight[offset .. offset+T)   (CLIP/BERT/OPT position
//                   tables; `offset` is the number of positions already consumed, as in
//                   incremental decoding). Backward: d_x = d_y, d_weight[offset+t] += Σ_b d_y[b, t].
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "mmalign/core/backend.hpp"
#include "mmalign/core/parameter.hpp"

namespace mmalign {

template <Backend B>
struct Embedding {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;  // owning storage in the backend's memory
    using Param = BasicParameter<Buffer>;

    struct Config {
        index_t rows = 0;  // vocabulary or table size
        index_t dim = 0;
        /// torch's nn.Embedding(padding_idx): backward never changes this row's gradient; −1: none.
        std::int64_t padding_idx = -1;
    };
    struct Params {
        Param weight;  // [V, D]
    };
    struct Saved {
        std::vector<std::int32_t> ids;  // [N]
    };

    Config config;
    Params params;

    Embedding() = default;
    explicit Embedding(Config c) : config(c) {
        if (c.rows <= 0 || c.dim <= 0)
            throw ArgumentError("Embedding: rows and dim must be positive, found rows=" + std::to_string(c.rows) +
                                " dim=" + std::to_string(c.dim));
        params.weight = Param(Shape{c.rows, c.dim});
    }

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        f(join_name(prefix, "weight"), params.weight);
    }

    /// ids [N] (any N-element id tensor, e.g. [B, T]) → out [N.., D]; an id outside [0, V)
    /// throws ArgumentError naming it and its position.
    void forward(B& be, std::span<const std::int32_t> ids, TensorView<T> out, Saved* s = nullptr) const {
        be.embedding_forward(ids.data(), static_cast<index_t>(ids.size()), params.weight.value.view(), out);
        if (s) s->ids.assign(ids.begin(), ids.end());
    }

    void backward(B& be, const Saved& s, ConstView<T> d_out, GradMode mode) {
        T* g = params.weight.grad_target(mode == GradMode::accumulate);
        if (!g) return;
        const bool padding = config.padding_idx >= 0 && config.padding_idx < config.rows;
        auto sc = be.scope();
        TensorView<T> pad_row(g + (padding ? config.padding_idx : 0) * config.dim, Shape{config.dim});
        TensorView<T> kept;  // [D]: the padding row's gradient before this backward, put back after it
        if (padding) {
            kept = sc.tensor({config.dim});
            be.copy(pad_row, kept);
        }
        be.embedding_backward(s.ids.data(), static_cast<index_t>(s.ids.size()), d_out,
                              TensorView<T>(g, params.weight.grad.shape()));
        if (padding) be.copy(kept, pad_row);
    }
};

template <Backend B>
struct LearnedPositions {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;
    using Param = BasicParameter<Buffer>;

    struct Config {
        index_t max_positions = 0;
        index_t dim = 0;
    };
    struct Params {
        Param weight;  // [P, D]
    };
    struct Saved {
        index_t offset = 0;
    };

    Config config;
    Params params;

    LearnedPositions() = default;
    explicit LearnedPositions(Config c) : config(c) {
        if (c.max_positions <= 0 || c.dim <= 0)
            throw ArgumentError("LearnedPositions: max_positions and dim must be positive");
        params.weight = Param(Shape{c.max_positions, c.dim});
    }

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        f(join_name(prefix, "weight"), params.weight);
    }

    /// x [B, T, D] → y [B, T, D] (y may alias x).
    void forward(B& be, ConstView<T> x, TensorView<T> y, index_t offset = 0, Saved* s = nullptr) const {
        expect_shape(x.shape(), {-1, -1, config.dim}, "LearnedPositions input");
        expect_shape(y.shape(), {x.dim(0), x.dim(1), config.dim}, "LearnedPositions output");
        const index_t Tn = x.dim(1);
        if (offset < 0 || offset + Tn > config.max_positions)
            throw ShapeError("LearnedPositions: positions [" + std::to_string(offset) + ", " +
                             std::to_string(offset + Tn) + ") exceed the table of " +
                             std::to_string(config.max_positions) + " positions");
        ConstView<T> rows(params.weight.value.data() + offset * config.dim, Shape{Tn, config.dim});
        for (index_t b = 0; b < x.dim(0); ++b) {
            ConstView<T> xb(x.data() + b * Tn * config.dim, rows.shape());
            be.add(xb, rows, TensorView<T>(y.data() + b * Tn * config.dim, rows.shape()));
        }
        if (s) s->offset = offset;
    }

    /// Only the table's gradient: d_x equals d_y, which the caller passes on unchanged.
    void backward(B& be, const Saved& s, ConstView<T> d_y, GradMode mode) {
        T* g = params.weight.grad_target(mode == GradMode::accumulate);
        if (!g) return;
        const index_t Tn = d_y.dim(1), D = config.dim;
        TensorView<T> rows(g + s.offset * D, Shape{Tn, D});
        if constexpr (!std::is_same_v<T, typename B::Compute>)  // 16-bit storage: sum the batch, round once
            be.sum_rows_accumulate(d_y.reshape(Shape{d_y.dim(0), Tn * D}), rows.data());
        else
            for (index_t b = 0; b < d_y.dim(0); ++b)
                be.axpy(T(1), ConstView<T>(d_y.data() + b * Tn * D, rows.shape()), rows);
    }
};

}  // namespace mmalign
