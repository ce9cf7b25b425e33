// mmalign/nn/attention.hpp — multi-head scaled dot-product attention, self and cross.
//
//   q = x·Wqᵀ + bq [B, Tq, D],  k = c·Wkᵀ + bk, v = c·Wvᵀ + bv [B, Tk, D]   (c = x for self-attention)
//   per head h (columns h·d .. h·d+d, d = D/H):  P = softmax(scale · q_h k_hᵀ + mask)  [B, H, Tq, Tk]
//   o_h = P v_h,  y = o·Woᵀ + bo [B, Tq, D]                                (Vaswani et al. 2017, §3.2)
// Separate q/k/v/out projections with biases (optional: OPT's enable_bias), as HF stores CLIP and BERT attention; names come
// from Config (CLIP "q_proj".."out_proj", BERT "self.query".."output.dense"). scale defaults to
// d^-½ (CLIP's `* scale` and BERT's `/ sqrt(d)` agree to rounding). Masks: core/ops.hpp.
// Saved: x, c (cross only), q, k, v, P, o; with the backend's fused attention (be.fused_attention(),
// cpu/attention.hpp) two softmax statistics per query and a copy of the mask instead of P (its
// key_keep kept in the backend's memory, be.upload_mask, so the backward uploads nothing).
// Backward: d_x assigned (or added with InputGradMode::accumulate); d_c (cross-attention)
// *accumulated*, because one encoder output feeds the cross-attention of many layers; parameter
// gradients accumulated.
// Decoding (inference only) keeps keys and values in a KvCache instead of recomputing them:
//  * forward_cached: incremental causal self-attention — the new positions' k, v are appended and
//    their queries attend to every cached position, equal to the full causal forward;
//  * project_context + forward_cross_cached: a cross-attention's k, v of the encoder states,
//    computed once per image and read at every step (HF's EncoderDecoderCache keeps them the same
//    way: transformers' cache_utils.py);
//  * KvCache::reorder: the rows of a cache gathered for beam search, as HF's `_reorder_cache`
//    (`index_select(0, beam_idx)`).
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "mmalign/nn/linear.hpp"

namespace mmalign {

template <Backend B>
struct MultiHeadAttention {
    using T = typename B::Scalar;
    using C = typename B::Compute;
    using Buffer = typename B::Tensor;  // owning storage in the backend's memory
    using Param = BasicParameter<Buffer>;

    struct Config {
        index_t dim = 0;     // D: query width, projection width and output width
        index_t heads = 1;   // H, divides D
        index_t kv_dim = 0;  // width of the attended sequence for cross-attention; 0: D
        double scale = 0;    // 0: 1/√(D/H)
        std::string q_name = "q_proj", k_name = "k_proj", v_name = "v_proj", out_name = "out_proj";
        bool bias = true;  // false: the four projections without biases (OPT's enable_bias)
    };
    struct Saved {
        Buffer x;      // [B, Tq, D]
        Buffer ctx;    // [B, Tk, Dkv], cross-attention only
        Buffer q;      // [B, Tq, D]
        Buffer k, v;   // [B, Tk, D]
        Buffer probs;  // [B, H, Tq, Tk] (plain path)
        typename B::ComputeTensor stats;  // [B, H, Tq, 2] (fused path: the probabilities are recomputed from these)
        Buffer o;      // [B, Tq, D], heads side by side: the input of out_proj
        bool cross = false;
        bool fused = false;
        // The fused backward needs the mask again: its arrays, copied into the backend's memory, and
        // its other fields (the pointers are set from the copies when backward runs, so a copied
        // Saved stays valid).
        typename B::IndexTensor key_keep;  // [B, Tk]
        Buffer additive;
        AttentionMask<T> mask;
        AttentionMask<T> saved_mask() const {
            AttentionMask<T> m = mask;
            if (m.key_keep) m.key_keep = key_keep.data();
            m.additive = additive.numel() == 0 ? nullptr : additive.data();
            return m;
        }
        /// Where forward keeps x; a parent may write x here first (no copy then).
        Buffer& input() { return x; }
    };
    /// Keys and values kept for decoding: the positions decoded so far (self-attention), or the
    /// encoder states' (cross-attention, filled once by project_context).
    struct KvCache {
        Buffer k, v;         // [B, Tmax, D]
        index_t length = 0;  // positions filled

        void reset(index_t batch, index_t max_positions, index_t dim) {
            k.resize(Shape{batch, max_positions, dim});
            v.resize(Shape{batch, max_positions, dim});
            length = 0;
        }
        index_t batch() const { return k.rank() == 3 ? k.dim(0) : 0; }
        index_t capacity() const { return k.rank() == 3 ? k.dim(1) : 0; }

        /// Beam search: row b of the reordered cache is row rows[b] of this one, as HF's
        /// `_reorder_cache` (`index_select(0, beam_idx)`). Rows may repeat (one prompt expanded to
        /// several beams) or be dropped; rows.size() is the new batch size. Only the filled
        /// positions are copied.
        void reorder(B& be, std::span<const std::int32_t> rows) {
            if (k.rank() != 3) throw ShapeError("KvCache::reorder: the cache holds nothing (call reset first)");
            const index_t old_batch = batch();
            for (std::size_t b = 0; b < rows.size(); ++b)
                if (rows[b] < 0 || rows[b] >= old_batch)
                    throw ArgumentError("KvCache::reorder: row " + std::to_string(rows[b]) + " at position " +
                                        std::to_string(b) + " is outside the cache's batch of " +
                                        std::to_string(old_batch));
            gather(be, k, rows);
            gather(be, v, rows);
        }

    private:
        // [B', Tmax, D]: the gather's destination, swapped in; kept, so reordering every step allocates once.
        Buffer spare_;

        void gather(B& be, Buffer& t, std::span<const std::int32_t> rows) {
            const index_t Tmax = t.dim(1), D = t.dim(2), row = Tmax * D, filled = length * D;
            spare_.resize(Shape{static_cast<index_t>(rows.size()), Tmax, D});
            for (std::size_t b = 0; b < rows.size(); ++b)
                if (filled)
                    be.copy(ConstView<T>(t.data() + rows[b] * row, Shape{filled}),
                            TensorView<T>(spare_.data() + static_cast<index_t>(b) * row, Shape{filled}));
            std::swap(t, spare_);
        }
    };

    Config config;
    Linear<B> q_proj, k_proj, v_proj, out_proj;

    MultiHeadAttention() = default;
    explicit MultiHeadAttention(Config c) : config(c) {
        if (c.dim <= 0 || c.heads <= 0 || c.dim % c.heads != 0)
            throw ArgumentError("MultiHeadAttention: dim " + std::to_string(c.dim) + " must be a positive multiple of heads " +
                                std::to_string(c.heads));
        const index_t kv = kv_dim();
        q_proj = Linear<B>({.in = c.dim, .out = c.dim, .bias = c.bias});
        k_proj = Linear<B>({.in = kv, .out = c.dim, .bias = c.bias});
        v_proj = Linear<B>({.in = kv, .out = c.dim, .bias = c.bias});
        out_proj = Linear<B>({.in = c.dim, .out = c.dim, .bias = c.bias});
    }

    index_t kv_dim() const { return config.kv_dim > 0 ? config.kv_dim : config.dim; }
    index_t head_dim() const { return config.dim / config.heads; }
    C scale() const { return static_cast<C>(config.scale > 0 ? config.scale : 1.0 / std::sqrt(double(head_dim()))); }

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        q_proj.visit(f, join_name(prefix, config.q_name));
        k_proj.visit(f, join_name(prefix, config.k_name));
        v_proj.visit(f, join_name(prefix, config.v_name));
        out_proj.visit(f, join_name(prefix, config.out_name));
    }

    /// x [B, Tq, D] → y [B, Tq, D]. `ctx` [B, Tk, Dkv] for cross-attention; an empty view means
    /// self-attention (ctx = x). In inference (no Saved) a cross-attention context may also be
    /// [1, Tk, Dkv], shared by every row: its keys and values are projected once and read by all B
    /// rows, as torch's broadcasting matmul does when transformers' BlipTextSelfAttention scores
    /// one image against many texts (modeling_blip_text.py).
    void forward(B& be, ConstView<T> x, ConstView<T> ctx, const AttentionMask<T>& mask, TensorView<T> y,
                 Saved* s = nullptr) const {
        const bool cross = !ctx.empty();
        const ConstView<T> c = cross ? ctx : x;
        expect_shape(x.shape(), {-1, -1, config.dim}, "MultiHeadAttention input");
        const bool shared = cross && !s && c.rank() == 3 && c.dim(0) == 1 && x.dim(0) > 1;
        expect_shape(c.shape(), {shared ? 1 : x.dim(0), -1, kv_dim()}, "MultiHeadAttention context");
        expect_shape(y.shape(), {x.dim(0), x.dim(1), config.dim}, "MultiHeadAttention output");
        const index_t Bn = x.dim(0), Tq = x.dim(1), Tk = c.dim(1), D = config.dim, Bc = c.dim(0);
        auto sc = be.scope();
        TensorView<T> q, k, v, p, o;
        C* stats = nullptr;
        if (s) {
            s->cross = cross;
            if (s->x.data() != x.data()) {  // a parent may have written x straight into s->x
                s->x.resize(x.shape());
                be.copy(x, s->x.view());
            }
            if (cross) {
                s->ctx.resize(c.shape());
                be.copy(c, s->ctx.view());
            }
            for (Buffer* t : {&s->q, &s->o}) t->resize(Shape{Bn, Tq, D});
            for (Buffer* t : {&s->k, &s->v}) t->resize(Shape{Bn, Tk, D});
            s->fused = be.fused_attention();
            if (s->fused) {
                s->stats.resize(Shape{Bn, config.heads, Tq, 2});
                keep_mask(be, mask, Bn, Tq, Tk, *s);
                stats = s->stats.data();
            } else {
                s->probs.resize(Shape{Bn, config.heads, Tq, Tk});
                p = s->probs.view();
            }
            q = s->q.view(), k = s->k.view(), v = s->v.view(), o = s->o.view();
        } else {
            q = sc.tensor({Bn, Tq, D}), k = sc.tensor({Bc, Tk, D}), v = sc.tensor({Bc, Tk, D});  // k, v [Bc, Tk, D]
            o = sc.tensor({Bn, Tq, D});
            if (!be.fused_attention()) p = sc.tensor({Bn, config.heads, Tq, Tk});
        }
        q_proj.forward(be, x, q);
        k_proj.forward(be, c, k);
        v_proj.forward(be, c, v);
        attend(be, q.data(), k.data(), v.data(), shared ? 0 : Tk * D, Bn, Tq, Tk, mask, p, stats, o.data());
        out_proj.forward(be, o, y);
    }

    /// d_x is assigned, or added to with InputGradMode::accumulate (a residual branch); d_ctx
    /// (cross-attention) is always added to. Either may be empty.
    void backward(B& be, Saved& s, ConstView<T> d_y, TensorView<T> d_x, TensorView<T> d_ctx, GradMode mode,
                  InputGradMode d_x_mode = InputGradMode::assign) {
        const index_t Bn = s.q.dim(0), Tq = s.q.dim(1), Tk = s.k.dim(1), D = config.dim, H = config.heads;
        const index_t dh = head_dim();
        expect_shape(d_y.shape(), {Bn, Tq, D}, "MultiHeadAttention backward d_y");
        auto sc = be.scope();
        auto d_o = sc.tensor({Bn, Tq, D});
        out_proj.backward_from(be, s.o.view(), {}, d_y, d_o, mode);
        auto d_q = sc.tensor({Bn, Tq, D}), d_k = sc.tensor({Bn, Tk, D}), d_v = sc.tensor({Bn, Tk, D});
        if (s.fused)
            be.attention_backward(s.q.data(), s.k.data(), s.v.data(), Tk * D, Bn, H, Tq, Tk, dh, scale(), s.saved_mask(),
                                  s.o.data(), d_o.data(), s.stats.data(), d_q.data(), d_k.data(), d_v.data());
        else
            plain_attention_backward(be, s, d_o, d_q, d_k, d_v);
        constexpr InputGradMode add = InputGradMode::accumulate;
        q_proj.backward_from(be, s.x.view(), {}, d_q, d_x, mode, d_x_mode);
        if (s.cross) {
            k_proj.backward_from(be, s.ctx.view(), {}, d_k, d_ctx, mode, add);
            v_proj.backward_from(be, s.ctx.view(), {}, d_v, d_ctx, mode, add);
        } else {
            k_proj.backward_from(be, s.x.view(), {}, d_k, d_x, mode, add);
            v_proj.backward_from(be, s.x.view(), {}, d_v, d_x, mode, add);
        }
    }

private:
    // d_o → d_q, d_k, d_v through the stored probabilities.
    void plain_attention_backward(B& be, Saved& s, TensorView<T> d_o, TensorView<T> d_q, TensorView<T> d_k,
                                  TensorView<T> d_v) const {
        const index_t Bn = s.q.dim(0), Tq = s.q.dim(1), Tk = s.k.dim(1), D = config.dim, H = config.heads;
        const index_t dh = head_dim();
        auto sc = be.scope();
        auto d_p = sc.tensor({Bn, H, Tq, Tk});
        const T* P = s.probs.data();
        // Per (batch, head): d_P = d_o · vᵀ, d_v = Pᵀ · d_o   (heads are column blocks of width dh)
        const index_t PQ = H * Tq * Tk, XQ = Tq * D, XK = Tk * D;
        be.gemm_batched_2d(Trans::N, Trans::T, Tq, Tk, dh, T(1), d_o.data(), D, XQ, dh, s.v.data(), D, XK, dh, T(0),
                           d_p.data(), Tk, PQ, Tq * Tk, Bn, H);
        be.gemm_batched_2d(Trans::T, Trans::N, Tk, dh, Tq, T(1), P, Tk, PQ, Tq * Tk, d_o.data(), D, XQ, dh, T(0),
                           d_v.data(), D, XK, dh, Bn, H);
        be.attention_softmax_backward(s.probs.view(), d_p, scale());
        // d_q = d_S · k,   d_k = d_Sᵀ · q
        be.gemm_batched_2d(Trans::N, Trans::N, Tq, dh, Tk, T(1), d_p.data(), Tk, PQ, Tq * Tk, s.k.data(), D, XK, dh, T(0),
                           d_q.data(), D, XQ, dh, Bn, H);
        be.gemm_batched_2d(Trans::T, Trans::N, Tk, dh, Tq, T(1), d_p.data(), Tk, PQ, Tq * Tk, s.q.data(), D, XQ, dh, T(0),
                           d_k.data(), D, XK, dh, Bn, H);
    }

    // Copies the mask's arrays into s, in the backend's memory.
    static void keep_mask(B& be, const AttentionMask<T>& mask, index_t Bn, index_t Tq, index_t Tk, Saved& s) {
        s.mask = be.upload_mask(mask, Bn * Tk, s.key_keep);
        s.mask.additive = nullptr;
        s.additive.resize(Shape{0});
        if (mask.additive) {
            const index_t stride = mask.additive_batch_stride < 0 ? Tq * Tk : mask.additive_batch_stride;
            s.additive.resize(Shape{stride * (Bn - 1) + Tq * Tk});
            be.copy(ConstView<T>(mask.additive, s.additive.shape()), s.additive.view());
            s.mask.additive_batch_stride = stride;
        }
    }

public:

    /// Incremental causal self-attention: x [B, Tn, D] holds the next Tn positions; their keys and
    /// values are appended to `cache` and each query attends to all positions up to its own.
    /// `mask.key_keep`, if set, spans all cached positions [B, length + Tn] (padding anywhere in
    /// the cache, left or right, is hidden by it); causality is implied.
    void forward_cached(B& be, ConstView<T> x, KvCache& cache, AttentionMask<T> mask, TensorView<T> y) const {
        expect_shape(x.shape(), {-1, -1, config.dim}, "MultiHeadAttention cached input");
        const index_t Bn = x.dim(0), Tn = x.dim(1), D = config.dim;
        if (cache.k.rank() != 3 || cache.k.dim(0) != Bn || cache.k.dim(2) != D)
            throw ShapeError("MultiHeadAttention cache: expected [" + std::to_string(Bn) + ", *, " + std::to_string(D) +
                             "], found " + cache.k.shape().str() + " (call reset first)");
        const index_t Tmax = cache.k.dim(1), L = cache.length, Tk = L + Tn;
        if (Tk > Tmax)
            throw ShapeError("MultiHeadAttention cache: " + std::to_string(Tk) + " positions exceed its capacity of " +
                             std::to_string(Tmax));
        expect_shape(y.shape(), {Bn, Tn, D}, "MultiHeadAttention cached output");
        auto sc = be.scope();
        auto q = sc.tensor({Bn, Tn, D}), kn = sc.tensor({Bn, Tn, D}), vn = sc.tensor({Bn, Tn, D});
        q_proj.forward(be, x, q);
        k_proj.forward(be, x, kn);
        v_proj.forward(be, x, vn);
        for (index_t b = 0; b < Bn; ++b) {
            const Shape rows{Tn, D};
            be.copy(ConstView<T>(kn.data() + b * Tn * D, rows), TensorView<T>(cache.k.data() + (b * Tmax + L) * D, rows));
            be.copy(ConstView<T>(vn.data() + b * Tn * D, rows), TensorView<T>(cache.v.data() + (b * Tmax + L) * D, rows));
        }
        cache.length = Tk;
        mask.causal = true;
        mask.causal_offset = L;
        auto o = sc.tensor({Bn, Tn, D});
        TensorView<T> p;
        if (!be.fused_attention()) p = sc.tensor({Bn, config.heads, Tn, Tk});
        attend(be, q.data(), cache.k.data(), cache.v.data(), Tmax * D, Bn, Tn, Tk, mask, p, nullptr, o.data());
        out_proj.forward(be, o, y);
    }

    /// A cross-attention's keys and values of the encoder states ctx [B, Te, Dkv], computed once
    /// (per image) into `cache`, for every later forward_cross_cached.
    void project_context(B& be, ConstView<T> ctx, KvCache& cache) const {
        expect_shape(ctx.shape(), {-1, -1, kv_dim()}, "MultiHeadAttention context");
        cache.reset(ctx.dim(0), ctx.dim(1), config.dim);
        k_proj.forward(be, ctx, cache.k.view());
        v_proj.forward(be, ctx, cache.v.view());
        cache.length = ctx.dim(1);
    }

    /// x [B, Tq, D] attends to the keys and values already in `cache` (project_context's) and
    /// adds none: a decoding step's cross-attention. mask.key_keep spans [B, cache.length].
    void forward_cross_cached(B& be, ConstView<T> x, const KvCache& cache, const AttentionMask<T>& mask,
                              TensorView<T> y) const {
        expect_shape(x.shape(), {-1, -1, config.dim}, "MultiHeadAttention cached input");
        const index_t Bn = x.dim(0), Tq = x.dim(1), D = config.dim, Tk = cache.length;
        if (cache.k.rank() != 3 || cache.batch() != Bn || cache.k.dim(2) != D || Tk <= 0)
            throw ShapeError("MultiHeadAttention cross cache: expected [" + std::to_string(Bn) + ", *, " +
                             std::to_string(D) + "] with filled positions, found " + cache.k.shape().str() +
                             " with " + std::to_string(Tk) + " (call project_context first)");
        expect_shape(y.shape(), {Bn, Tq, D}, "MultiHeadAttention cached output");
        auto sc = be.scope();
        auto q = sc.tensor({Bn, Tq, D}), o = sc.tensor({Bn, Tq, D});
        q_proj.forward(be, x, q);
        TensorView<T> p;  // [B, H, Tq, Tk], plain path only
        if (!be.fused_attention()) p = sc.tensor({Bn, config.heads, Tq, Tk});
        attend(be, q.data(), cache.k.data(), cache.v.data(), cache.capacity() * D, Bn, Tq, Tk, mask, p, nullptr,
               o.data());
        out_proj.forward(be, o, y);
    }

private:
    /// P = softmax(scale·q kᵀ + mask) per (batch, head); o = P v. k and v rows have stride D and
    /// batches `kv_batch_stride`; q and o are [B, Tq, D]. With the backend's fused attention
    /// `stats` (nullable) receives each query's score maximum and log-denominator [B, H, Tq, 2],
    /// else `p` the probabilities [B, H, Tq, Tk].
    void attend(B& be, const T* q, const T* k, const T* v, index_t kv_batch_stride, index_t Bn, index_t Tq, index_t Tk,
                const AttentionMask<T>& mask, TensorView<T> p, C* stats, T* o) const {
        const index_t D = config.dim, H = config.heads, dh = head_dim();
        if (be.fused_attention()) {
            be.attention_forward(q, k, v, kv_batch_stride, Bn, H, Tq, Tk, dh, scale(), mask, o, stats);
            return;
        }
        // The scale goes into the product (scores = scale·q kᵀ), so the stored scores are the scaled
        // ones: raw q·kᵀ would overflow float16 √dh times sooner. The softmax backward still
        // multiplies by the scale: d(q kᵀ) = scale · d(scores).
        be.gemm_batched_2d(Trans::N, Trans::T, Tq, Tk, dh, scale(), q, D, Tq * D, dh, k, D, kv_batch_stride, dh, C(0),
                           p.data(), Tk, H * Tq * Tk, Tq * Tk, Bn, H);
        be.attention_softmax_forward(p, C(1), mask);
        be.gemm_batched_2d(Trans::N, Trans::N, Tq, dh, Tk, T(1), p.data(), Tk, H * Tq * Tk, Tq * Tk, v, D, kv_batch_stride,
                           dh, T(0), o, D, Tq * D, dh, Bn, H);
    }
};

}  // namespace mmalign
