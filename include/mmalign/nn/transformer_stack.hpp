// mmalign/nn/transformer_stack.hpp — L transformer layers applied in turn (an encoder, or the
// layer stack of a decoder or Q-Former).
//
//   x [B, T, D] → layer 0 → … → layer L−1 → y [B, T, D]      (HF "<prefix>.layers.{i}" for CLIP,
//   "<prefix>.layer.{i}" for BERT: Config::layer_name). Layers are a std::vector of one block
//   type, so their sizes and per-layer choices (cross-attention or not) are run-time values.
// The masks' key_keep arrays are placed in a device backend's memory once per forward (be.upload_mask),
// not once per layer. When training, each layer writes its output straight into the next layer's
// saved input. Backward walks the layers in reverse; d_enc accumulates over every cross-attending
// layer.
// Decoding: a Cache holds one TransformerBlock::Cache per layer, which positions of each row are
// padding (left padding of a batched prompt, or right padding before the continuation: either is
// hidden through key_keep over the cache positions), and the encoder states' padding. Each step
// uploads its key_keep once for all layers; the cross-attention keys and values are projected
// once by start_cache. Cache::reorder gathers rows for beam search, as transformers'
// `_reorder_cache(past_key_values, beam_idx)` does with index_select (modeling_opt.py,
// cache_utils.py).
#pragma once

#include <algorithm>
#include <span>
#include <string>
#include <type_traits>
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
        /// (the Q-Former's cross_attention_frequency: `layer_idx % cross_attention_frequency == 0`
        /// in transformers' modeling_blip_2.py).
        index_t cross_attention_every = 1;
    };
    struct Saved {
        std::vector<typename Block::Saved> layers;
    };
    /// What decoding keeps between steps (start_cache, forward_cached, reorder).
    struct Cache {
        std::vector<typename Block::Cache> layers;
        std::vector<std::int32_t> keep;      // [B, Tmax] host: 1 token, 0 padding, per cache position
        std::vector<std::int32_t> enc_keep;  // [B, Te] host, empty when the encoder states have no padding
        typename B::IndexTensor keep_uploaded, enc_keep_uploaded;  // the same in the backend's memory
        bool padded = false;                 // some cached position is padding
        index_t batch = 0, max_positions = 0, length = 0, enc_positions = 0;

        /// Row b becomes row rows[b] — every layer's keys and values and the padding of both kinds
        /// (beam search; see MultiHeadAttention::KvCache::reorder).
        void reorder(B& be, std::span<const std::int32_t> rows) {
            for (std::size_t b = 0; b < rows.size(); ++b)
                if (rows[b] < 0 || rows[b] >= batch)
                    throw ArgumentError("TransformerStack cache reorder: row " + std::to_string(rows[b]) +
                                        " at position " + std::to_string(b) + " is outside the batch of " +
                                        std::to_string(batch));
            for (auto& l : layers) l.reorder(be, rows);
            keep = gather(keep, max_positions, rows);
            if (!enc_keep.empty()) {
                enc_keep = gather(enc_keep, enc_positions, rows);
                be.upload_mask(AttentionMask<T>{.key_keep = enc_keep.data()}, static_cast<index_t>(enc_keep.size()),
                               enc_keep_uploaded);
            }
            batch = static_cast<index_t>(rows.size());
        }

    private:
        static std::vector<std::int32_t> gather(const std::vector<std::int32_t>& v, index_t row,
                                                std::span<const std::int32_t> rows) {
            std::vector<std::int32_t> out(rows.size() * static_cast<std::size_t>(row));
            for (std::size_t b = 0; b < rows.size(); ++b)
                std::copy_n(v.begin() + rows[b] * row, row, out.begin() + static_cast<index_t>(b) * row);
            return out;
        }
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

    /// x [B, T, D] → y [B, T, D]. enc [B, Te, De] feeds the cross-attending layers; empty, their
    /// cross-attention is skipped.
    void forward(B& be, ConstView<T> x, ConstView<T> enc, const AttentionMask<T>& self_mask,
                 const AttentionMask<T>& cross_mask, TensorView<T> y, Saved* s = nullptr) const {
        const index_t L = static_cast<index_t>(layers.size());
        if (L == 0) {
            be.copy(x, y);
            return;
        }
        expect_shape(x.shape(), {-1, -1, config.block.dim}, "TransformerStack input");
        typename B::IndexTensor self_keep, cross_keep;  // [B, T] and [B, Te]
        const AttentionMask<T> sm = resident(be, self_mask, x.dim(0) * x.dim(1), self_keep);
        const AttentionMask<T> cm =
            enc.rank() == 3 ? resident(be, cross_mask, enc.dim(0) * enc.dim(1), cross_keep) : cross_mask;
        auto sc = be.scope();
        if (s) {
            s->layers.resize(layers.size());
            ConstView<T> in = x;
            for (index_t i = 0; i < L; ++i) {
                const auto u = static_cast<std::size_t>(i);
                TensorView<T> out = y;
                if (i + 1 < L) {  // straight into the next layer's saved input
                    auto& next = s->layers[u + 1].input();
                    next.resize(x.shape());
                    out = next.view();
                }
                layers[u].forward(be, in, layers[u].cross ? enc : ConstView<T>{}, sm, cm, out, &s->layers[u]);
                in = out;
            }
            return;
        }
        // Alternate between y and one scratch buffer so that the last layer writes into y.
        TensorView<T> other = sc.tensor(x.shape());  // [B, T, D]
        ConstView<T> in = x;
        for (index_t i = 0; i < L; ++i) {
            TensorView<T> out = (L - 1 - i) % 2 == 0 ? y : other;
            const Block& layer = layers[static_cast<std::size_t>(i)];
            layer.forward(be, in, layer.cross ? enc : ConstView<T>{}, sm, cm, out, nullptr);
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
        TensorView<T> bufs[2] = {sc.tensor(d_y.shape()), sc.tensor(d_y.shape())};  // [B, T, D] each
        ConstView<T> d_out = d_y;
        for (index_t i = L - 1; i >= 0; --i) {
            TensorView<T> d_in = i == 0 ? d_x : bufs[i % 2];
            auto& layer = layers[static_cast<std::size_t>(i)];
            layer.backward(be, s.layers[static_cast<std::size_t>(i)], d_out, d_in, layer.cross ? d_enc : TensorView<T>{},
                           mode);
            d_out = d_in;
        }
    }

    /// Prepares `c` for decoding `batch` rows of up to `max_positions` positions. enc
    /// [batch, Te, De] (optional) is projected to every cross-attending layer's keys and values
    /// now, once; enc_keep [batch·Te] (optional, HF's encoder_attention_mask) marks its padding.
    void start_cache(B& be, Cache& c, index_t batch, index_t max_positions, ConstView<T> enc = {},
                     std::span<const std::int32_t> enc_keep = {}) const {
        if (batch <= 0 || max_positions <= 0)
            throw ArgumentError("TransformerStack cache: batch and max_positions must be positive");
        c.layers.resize(layers.size());
        for (std::size_t i = 0; i < layers.size(); ++i)
            layers[i].start_cache(be, c.layers[i], batch, max_positions, layers[i].cross ? enc : ConstView<T>{});
        c.batch = batch, c.max_positions = max_positions, c.length = 0;
        c.keep.assign(static_cast<std::size_t>(batch * max_positions), 1);
        c.padded = false;
        c.enc_positions = enc.empty() ? 0 : enc.dim(1);
        c.enc_keep.clear();
        if (!enc_keep.empty()) {
            if (static_cast<index_t>(enc_keep.size()) != batch * c.enc_positions)
                throw ShapeError("TransformerStack cache: enc_keep holds " + std::to_string(enc_keep.size()) +
                                 " entries, expected " + std::to_string(batch * c.enc_positions));
            if (std::find(enc_keep.begin(), enc_keep.end(), 0) != enc_keep.end()) {
                c.enc_keep.assign(enc_keep.begin(), enc_keep.end());
                be.upload_mask(AttentionMask<T>{.key_keep = c.enc_keep.data()}, static_cast<index_t>(c.enc_keep.size()),
                               c.enc_keep_uploaded);
            }
        }
    }

    /// One decoding step: x [B, Tn, D] holds the next Tn positions of every row → y [B, Tn, D].
    /// keep [B·Tn] (optional; empty: all tokens) marks which of them are padding. Each row's
    /// queries see its own earlier non-padding positions (causal), and the encoder states given
    /// to start_cache.
    void forward_cached(B& be, ConstView<T> x, Cache& c, std::span<const std::int32_t> keep, TensorView<T> y) const {
        expect_shape(x.shape(), {c.batch, -1, config.block.dim}, "TransformerStack cached input");
        expect_shape(y.shape(), {x.dim(0), x.dim(1), x.dim(2)}, "TransformerStack cached output");
        const index_t Bn = x.dim(0), Tn = x.dim(1), L0 = c.length, Tk = L0 + Tn, Tmax = c.max_positions;
        if (Tk > Tmax)
            throw ShapeError("TransformerStack cache: " + std::to_string(Tk) + " positions exceed its capacity of " +
                             std::to_string(Tmax));
        if (!keep.empty() && static_cast<index_t>(keep.size()) != Bn * Tn)
            throw ShapeError("TransformerStack cached keep: expected " + std::to_string(Bn * Tn) + " entries, found " +
                             std::to_string(keep.size()));
        for (index_t b = 0; b < Bn; ++b)
            for (index_t t = 0; t < Tn; ++t) {
                const std::int32_t k = keep.empty() ? 1 : keep[static_cast<std::size_t>(b * Tn + t)];
                c.keep[static_cast<std::size_t>(b * Tmax + L0 + t)] = k;
                c.padded |= k == 0;
            }
        // The key_keep of this step, [B, L0 + Tn], uploaded once for every layer.
        AttentionMask<T> self_mask, cross_mask;
        std::vector<std::int32_t> step_keep;  // [B, L0 + Tn]
        if (c.padded) {
            step_keep.resize(static_cast<std::size_t>(Bn * Tk));
            for (index_t b = 0; b < Bn; ++b)
                std::copy_n(c.keep.begin() + b * Tmax, Tk, step_keep.begin() + b * Tk);
            self_mask = be.upload_mask(AttentionMask<T>{.key_keep = step_keep.data()}, Bn * Tk, c.keep_uploaded);
        }
        if (!c.enc_keep.empty())
            cross_mask = AttentionMask<T>{.key_keep = c.enc_keep_uploaded.data(), .key_keep_resident = true};
        const index_t L = static_cast<index_t>(layers.size());
        c.length = Tk;
        if (L == 0) {
            be.copy(x, y);
            return;
        }
        auto sc = be.scope();
        TensorView<T> other = sc.tensor(x.shape());  // [B, T, D]
        ConstView<T> in = x;
        for (index_t i = 0; i < L; ++i) {
            TensorView<T> out = (L - 1 - i) % 2 == 0 ? y : other;
            const auto u = static_cast<std::size_t>(i);
            layers[u].forward_cached(be, in, c.layers[u], self_mask, cross_mask, out);
            in = out;
        }
    }

private:
    /// The mask with key_keep ([n]) in the backend's memory, stored in `store` unless it is there already.
    /// A backend whose index tensors are host Tensors reads the caller's array where it is: no copy
    /// and no allocation per forward (a fused-attention Saved still keeps its own copy).
    static AttentionMask<T> resident(B& be, const AttentionMask<T>& m, index_t n, typename B::IndexTensor& store) {
        if (!m.key_keep || m.key_keep_resident) return m;
        if constexpr (std::is_same_v<typename B::IndexTensor, Tensor<std::int32_t>>) return m;
        else return be.upload_mask(m, n, store);
    }
};

}  // namespace mmalign
