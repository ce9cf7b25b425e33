// mmalign/nn/transformer_stack.hpp — L transformer layers applied in turn (an encoder, or the
// layer stack of a decoder or Q-Former).
//
//   x [B, T, D] → layer 0 → … → layer L−1 → y [B, T, D]      (HF "<prefix>.layers.{i}" for CLIP,
//   "<prefix>.layer.{i}" for BERT: Config::layer_name). Layers are a std::vector of one block
//   type, so their sizes and per-layer choices (cross-attention or not) are run-time values.
// Backward walks the layers in reverse; d_enc accumulates over every cross-attending layer.
#pragma once

#include <string>
#include <vector>

#include "mmalign/nn/transformer_block.hpp"

namespace mmalign {

template <Backend B, NormPlacement Norm>
struct TransformerStack {
    using T = typename B::Scalar;
    using Block = TransformerBlock<B, Norm>;

    struct Config {
        index_t layers = 0;
        typename Block::Config block;
        std::string layer_name = "layers";
        /// Layer i has cross-attention iff block.cross_attention and i % cross_attention_every == 0
        /// (the Q-Former's cross_attention_frequency: LAVIS `layer_num % cross_attention_freq == 0`).
        index_t cross_attention_every = 1;
    };
    struct Saved {
        std::vector<typename Block::Saved> layers;
    };

    Config config;
    std::vector<Block> layers;

    TransformerStack() = default;
    explicit TransformerStack(Config c) : config(c) {
        if (c.layers < 0 || c.cross_attention_every < 1)
            throw ArgumentError("TransformerStack: layers must be >= 0 and cross_attention_every >= 1");
        layers.reserve(static_cast<std::size_t>(c.layers));
        for (index_t i = 0; i < c.layers; ++i) {
            typename Block::Config bc = c.block;
            bc.cross_attention = c.block.cross_attention && i % c.cross_attention_every == 0;
            layers.emplace_back(bc);
        }
    }

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        for (std::size_t i = 0; i < layers.size(); ++i)
            layers[i].visit(f, join_name(prefix, config.layer_name + "." + std::to_string(i)));
    }

    void forward(B& be, ConstView<T> x, ConstView<T> enc, const AttentionMask<T>& self_mask,
                 const AttentionMask<T>& cross_mask, TensorView<T> y, Saved* s = nullptr) const {
        const index_t L = static_cast<index_t>(layers.size());
        if (L == 0) {
            be.copy(x, y);
            return;
        }
        if (s) s->layers.resize(layers.size());
        auto sc = be.scope();
        // Alternate between y and one scratch buffer so that the last layer writes into y.
        TensorView<T> other = sc.tensor(x.shape());
        ConstView<T> in = x;
        for (index_t i = 0; i < L; ++i) {
            TensorView<T> out = (L - 1 - i) % 2 == 0 ? y : other;
            const Block& layer = layers[static_cast<std::size_t>(i)];
            layer.forward(be, in, layer.cross ? enc : ConstView<T>{}, self_mask, cross_mask, out,
                          s ? &s->layers[static_cast<std::size_t>(i)] : nullptr);
            in = out;
        }
    }

    void backward(B& be, Saved& s, ConstView<T> d_y, TensorView<T> d_x, TensorView<T> d_enc, GradMode mode) {
        const index_t L = static_cast<index_t>(layers.size());
        if (L == 0) {
            if (!d_x.empty()) be.copy(d_y, d_x);
            return;
        }
        auto sc = be.scope();
        TensorView<T> bufs[2] = {sc.tensor(d_y.shape()), sc.tensor(d_y.shape())};
        ConstView<T> d_out = d_y;
        for (index_t i = L - 1; i >= 0; --i) {
            TensorView<T> d_in = i == 0 ? d_x : bufs[i % 2];
            auto& layer = layers[static_cast<std::size_t>(i)];
            layer.backward(be, s.layers[static_cast<std::size_t>(i)], d_out, d_in, layer.cross ? d_enc : TensorView<T>{},
                           mode);
            d_out = d_in;
        }
    }
};

}  // namespace mmalign
