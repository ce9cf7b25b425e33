// mmalign/bridges/qformer_layer.hpp — one layer of BLIP-2's Querying Transformer (transformers'
// Blip2QFormerLayer, modeling_blip_2.py; Li et al. 2023 §3.1), composed of post-norm residual
// sublayers (nn/sublayer.hpp):
//
//   x [B, Q+T, D] = [Q query rows | T text rows]
//   h = LN(x + SelfAttn(x, mask))                           over the whole sequence
//   query rows:  hq = LN(h_q + CrossAttn(h_q, image))       only in layers with cross-attention
//                y_q = LN(hq + Mlp_query(hq))               intermediate_query / output_query
//   text rows:   y_t = LN(h_t + Mlp_text(h_t))              intermediate / output; never see the image
// Q = 0 is HF's query_length 0 (text only: every row goes through the text feed-forward). As in
// HF, a layer with cross-attention and query rows needs the image states (HF raises a ValueError
// without them). image [B, Te, De] (De = encoder_hidden_size); in inference a [1, Te, De] image
// may serve every row (nn/attention.hpp projects its keys and values once).
// Backward: d_x assigned; d_image accumulated (one image feeds every cross-attending layer).
// HF keys (relative to the layer): attention.attention.{query,key,value}, attention.output.dense,
// attention.output.LayerNorm, crossattention.… (the same), intermediate_query.dense,
// output_query.{dense,LayerNorm}, intermediate.dense, output.{dense,LayerNorm} — BlockNames::qformer()
// and the "_query" forms of its feed-forward names.
#pragma once

#include <optional>
#include <string>

#include "mmalign/nn/transformer_block.hpp"

namespace mmalign {

/// dst[b, u0 + i, :] = src[b, t0 + i, :] for i < n: a run of positions of a [B, T, D] sequence
/// copied into another's (the query and text rows of a Q-Former sequence).
template <Backend B>
void copy_positions(B& be, ConstView<typename B::Scalar> src, index_t t0, TensorView<typename B::Scalar> dst, index_t u0,
                    index_t n) {
    using T = typename B::Scalar;
    const index_t D = src.dim(2);
    if (n <= 0) return;
    for (index_t b = 0; b < src.dim(0); ++b)
        be.copy(ConstView<T>(src.data() + (b * src.dim(1) + t0) * D, Shape{n, D}),
                TensorView<T>(dst.data() + (b * dst.dim(1) + u0) * D, Shape{n, D}));
}

template <Backend B>
struct QFormerLayer {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;
    using Attention = Sublayer<B, PostNorm, MultiHeadAttention<B>>;
    using FeedForward = Sublayer<B, PostNorm, Mlp<B>>;

    struct Config {
        index_t dim = 0, heads = 1, mlp_hidden = 0;
        Activation activation = Activation::gelu;
        double eps = 1e-12;
        bool cross_attention = false;  // HF: layer_idx % cross_attention_frequency == 0
        index_t cross_dim = 0;         // encoder_hidden_size; 0: dim
        bool text = false;             // the text feed-forward (use_qformer_text_input)
        BlockNames names = BlockNames::qformer();
    };
    struct Saved {
        typename Attention::Saved attention, cross;
        typename FeedForward::Saved query_ffn, text_ffn;
        index_t queries = 0;
        bool cross_ran = false;
        /// Where forward keeps x; a parent may write x here first (no copy then).
        Buffer& input() { return attention.input(); }
    };

    Config config;
    Attention attention;
    std::optional<Attention> cross;
    FeedForward query_ffn;
    std::optional<FeedForward> text_ffn;

    QFormerLayer() = default;
    explicit QFormerLayer(Config c)
        : config(c),
          attention(attention_sublayer(c, false)),
          query_ffn(ffn_sublayer(c, "_query")) {
        if (c.cross_attention) cross.emplace(attention_sublayer(c, true));
        if (c.text) text_ffn.emplace(ffn_sublayer(c, ""));
    }

    /// HF's order: attention, crossattention, intermediate/output, the query feed-forward.
    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        attention.visit(f, prefix);
        if (cross) cross->visit(f, prefix);
        if (text_ffn) text_ffn->visit(f, prefix);
        query_ffn.visit(f, prefix);
    }

    /// x [B, Q+T, D] → y [B, Q+T, D] (distinct buffers); the first `queries` rows are queries.
    void forward(B& be, ConstView<T> x, index_t queries, ConstView<T> image, const AttentionMask<T>& self_mask,
                 TensorView<T> y, Saved* s = nullptr) const {
        expect_shape(x.shape(), {-1, -1, config.dim}, "QFormerLayer input");
        expect_shape(y.shape(), {x.dim(0), x.dim(1), config.dim}, "QFormerLayer output");
        const index_t Bn = x.dim(0), N = x.dim(1), D = config.dim, nq = queries, nt = N - queries;
        if (nq < 0 || nt < 0) throw ShapeError("QFormerLayer: " + std::to_string(nq) + " query rows in a sequence of " + std::to_string(N));
        if (nt > 0 && !text_ffn) throw ArgumentError("QFormerLayer: text rows given to a layer without a text feed-forward");
        const bool run_cross = cross.has_value() && nq > 0;
        if (run_cross && image.empty())
            throw ArgumentError("QFormerLayer: this layer cross-attends, but no image states were given for its query rows");
        auto sc = be.scope();
        auto slot = [&](Buffer* saved, Shape shape) -> TensorView<T> {  // a saved input, or scratch
            if (!saved) return sc.tensor(shape);
            saved->resize(shape);
            return saved->view();
        };
        // All rows are text rows when there are no queries: the attention writes straight into the
        // text feed-forward's input then.
        TensorView<T> h = nq == 0 && s ? slot(&s->text_ffn.input(), x.shape()) : sc.tensor(x.shape());  // [B, N, D]
        attention.forward(be, x, h, s ? &s->attention : nullptr, ConstView<T>{}, self_mask);
        if (nq > 0) {
            Buffer* first = !s ? nullptr : run_cross ? &s->cross.input() : &s->query_ffn.input();
            TensorView<T> hq = nt == 0 && !s ? h : slot(first, Shape{Bn, nq, D});  // [B, Q, D]
            if (hq.data() != h.data()) copy_positions(be, ConstView<T>(h), 0, hq, 0, nq);
            if (run_cross) {
                TensorView<T> hc = slot(s ? &s->query_ffn.input() : nullptr, Shape{Bn, nq, D});  // [B, Q, D]
                cross->forward(be, hq, hc, s ? &s->cross : nullptr, image, AttentionMask<T>{});
                hq = hc;
            }
            if (nt == 0) {
                query_ffn.forward(be, hq, y, s ? &s->query_ffn : nullptr);
            } else {
                TensorView<T> yq = sc.tensor({Bn, nq, D});  // [B, Q, D]
                query_ffn.forward(be, hq, yq, s ? &s->query_ffn : nullptr);
                copy_positions(be, ConstView<T>(yq), 0, y, 0, nq);
            }
        }
        if (nt > 0) {
            if (nq == 0) {
                text_ffn->forward(be, h, y, s ? &s->text_ffn : nullptr);
            } else {
                TensorView<T> ht = slot(s ? &s->text_ffn.input() : nullptr, Shape{Bn, nt, D});  // [B, T, D]
                TensorView<T> yt = sc.tensor({Bn, nt, D});                                     // [B, T, D]
                copy_positions(be, ConstView<T>(h), nq, ht, 0, nt);
                text_ffn->forward(be, ht, yt, s ? &s->text_ffn : nullptr);
                copy_positions(be, ConstView<T>(yt), 0, y, nq, nt);
            }
        }
        if (s) s->queries = nq, s->cross_ran = run_cross;
    }

    /// d_y [B, Q+T, D] → d_x (assigned; may be empty); d_image (accumulated; may be empty).
    void backward(B& be, Saved& s, ConstView<T> d_y, TensorView<T> d_x, TensorView<T> d_image, GradMode mode) {
        const index_t Bn = d_y.dim(0), N = d_y.dim(1), D = config.dim, nq = s.queries, nt = N - nq;
        auto sc = be.scope();
        TensorView<T> d_h = sc.tensor(d_y.shape());  // [B, N, D]: d of the self-attention sublayer's output
        if (nq > 0) {
            TensorView<T> g = sc.tensor({Bn, nq, D}), d_hq = sc.tensor({Bn, nq, D});  // [B, Q, D] each
            copy_positions(be, d_y, 0, g, 0, nq);
            query_ffn.backward(be, s.query_ffn, g, d_hq, mode);
            if (s.cross_ran) cross->backward(be, s.cross, d_hq, d_hq, mode, InputGradMode::assign, d_image);
            copy_positions(be, ConstView<T>(d_hq), 0, d_h, 0, nq);
        }
        if (nt > 0) {
            TensorView<T> g = sc.tensor({Bn, nt, D}), d_ht = sc.tensor({Bn, nt, D});  // [B, T, D] each
            copy_positions(be, d_y, nq, g, 0, nt);
            text_ffn->backward(be, s.text_ffn, g, d_ht, mode);
            copy_positions(be, ConstView<T>(d_ht), 0, d_h, nq, nt);
        }
        attention.backward(be, s.attention, d_h, d_x, mode, InputGradMode::assign, TensorView<T>{});
    }

private:
    static Attention attention_sublayer(const Config& c, bool is_cross) {
        const BlockNames& n = c.names;
        const std::string& prefix = is_cross ? n.cross_attn : n.attn;
        return Attention({.dim = c.dim, .eps = c.eps, .inner_name = prefix,
                          .norm_name = is_cross ? n.norm_cross : n.norm1},
                         MultiHeadAttention<B>({.dim = c.dim, .heads = c.heads,
                                                .kv_dim = is_cross ? (c.cross_dim > 0 ? c.cross_dim : c.dim) : 0,
                                                .q_name = n.q, .k_name = n.k, .v_name = n.v, .out_name = n.out}));
    }
    /// "intermediate.dense" → "intermediate_query.dense" for suffix "_query" (HF's query feed-forward).
    static std::string suffixed(const std::string& name, const std::string& suffix) {
        const auto dot = name.find('.');
        return dot == std::string::npos ? name + suffix : name.substr(0, dot) + suffix + name.substr(dot);
    }
    static FeedForward ffn_sublayer(const Config& c, const std::string& suffix) {
        const BlockNames& n = c.names;
        return FeedForward({.dim = c.dim, .eps = c.eps, .inner_name = n.mlp, .norm_name = suffixed(n.norm2, suffix)},
                           Mlp<B>({.dim = c.dim, .hidden = c.mlp_hidden, .activation = c.activation,
                                   .fc1_name = suffixed(n.fc1, suffix), .fc2_name = suffixed(n.fc2, suffix)}));
    }
};

}  // namespace mmalign
