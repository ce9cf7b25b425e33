// Layers of other architectures composed from nn/sublayer.hpp in a few lines each, checked for
// their Hugging Face state-dict keys and their gradients: a Q-Former layer (transformers'
// modeling_blip_2.py, Blip2QFormerLayer: self-attention over queries and text, cross-attention on
// the query rows only, one feed-forward for the query rows and one for the text rows) and an OPT
// decoder layer (modeling_opt.py, OPTDecoderLayer with do_layer_norm_before), which also equals
// TransformerBlock<PreNorm> with BlockNames::opt().
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mmalign/nn/transformer_block.hpp"
#include "support/module_check.hpp"
#include "support/reference.hpp"

using namespace mmalign;
using test::Be;

namespace {

/// dst[b, u0 + i, :] = src[b, t0 + i, :] for i < n (positions of a [B, T, D] sequence).
template <class B>
void copy_positions(B& be, ConstView<typename B::Scalar> src, index_t t0, TensorView<typename B::Scalar> dst, index_t u0,
                    index_t n) {
    using T = typename B::Scalar;
    const index_t D = src.dim(2);
    for (index_t b = 0; b < src.dim(0); ++b)
        be.copy(ConstView<T>(src.data() + (b * src.dim(1) + t0) * D, Shape{n, D}),
                TensorView<T>(dst.data() + (b * dst.dim(1) + u0) * D, Shape{n, D}));
}

/// Blip2QFormerLayer: x [B, Nq + Tt, D] holds Nq learned queries, then text.
template <Backend B>
struct QFormerLayer {
    using T = typename B::Scalar;
    using Attention = Sublayer<B, PostNorm, MultiHeadAttention<B>>;
    using FeedForward = Sublayer<B, PostNorm, Mlp<B>>;
    struct Config {
        index_t dim = 0, heads = 1, hidden = 0, enc_dim = 0;
        bool cross_attention = true;
    };
    struct Saved {
        typename Attention::Saved attention, cross;
        typename FeedForward::Saved query_ffn, text_ffn;
        index_t queries = 0;
        bool cross_ran = false;
    };

    Attention attention;
    std::optional<Attention> cross;
    FeedForward query_ffn, text_ffn;

    static Attention attention_sublayer(const Config& c, const std::string& name, index_t kv_dim) {
        return Attention({.dim = c.dim, .eps = 1e-12, .inner_name = name, .norm_name = name + ".output.LayerNorm"},
                         MultiHeadAttention<B>({.dim = c.dim, .heads = c.heads, .kv_dim = kv_dim,
                                                .q_name = "attention.query", .k_name = "attention.key",
                                                .v_name = "attention.value", .out_name = "output.dense"}));
    }
    static FeedForward ffn_sublayer(const Config& c, const std::string& suffix) {
        return FeedForward({.dim = c.dim, .eps = 1e-12, .inner_name = "", .norm_name = "output" + suffix + ".LayerNorm"},
                           Mlp<B>({.dim = c.dim, .hidden = c.hidden, .activation = Activation::gelu,
                                   .fc1_name = "intermediate" + suffix + ".dense",
                                   .fc2_name = "output" + suffix + ".dense"}));
    }
    explicit QFormerLayer(Config c)
        : attention(attention_sublayer(c, "attention", 0)),
          query_ffn(ffn_sublayer(c, "_query")),
          text_ffn(ffn_sublayer(c, "")) {
        if (c.cross_attention) cross.emplace(attention_sublayer(c, "crossattention", c.enc_dim));
    }

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        attention.visit(f, prefix);
        if (cross) cross->visit(f, prefix);
        text_ffn.visit(f, prefix);
        query_ffn.visit(f, prefix);
    }

    /// The first `nq` rows are queries: they alone cross-attend to enc (skipped when enc is empty)
    /// and go through query_ffn; the text rows go through text_ffn.
    void forward(B& be, ConstView<T> x, index_t nq, ConstView<T> enc, const AttentionMask<T>& self_mask,
                 const AttentionMask<T>& cross_mask, TensorView<T> y, Saved* s = nullptr) const {
        const index_t Bn = x.dim(0), N = x.dim(1), D = x.dim(2), nt = N - nq;
        const bool run_cross = cross && !enc.empty() && nq > 0;
        auto sc = be.scope();
        auto slot = [&](typename B::Tensor* saved, Shape shape) -> TensorView<T> {  // a saved input, or scratch
            if (!saved) return sc.tensor(shape);
            saved->resize(shape);
            return saved->view();
        };
        TensorView<T> h = sc.tensor(x.shape());
        attention.forward(be, x, h, s ? &s->attention : nullptr, ConstView<T>{}, self_mask);
        if (nq > 0) {
            TensorView<T> hq = slot(!s ? nullptr : run_cross ? &s->cross.input() : &s->query_ffn.input(), Shape{Bn, nq, D});
            copy_positions(be, h, 0, hq, 0, nq);
            if (run_cross) {
                TensorView<T> hc = slot(s ? &s->query_ffn.input() : nullptr, Shape{Bn, nq, D});
                cross->forward(be, hq, hc, s ? &s->cross : nullptr, enc, cross_mask);
                hq = hc;
            }
            TensorView<T> yq = sc.tensor({Bn, nq, D});
            query_ffn.forward(be, hq, yq, s ? &s->query_ffn : nullptr);
            copy_positions(be, yq, 0, y, 0, nq);
        }
        if (nt > 0) {
            TensorView<T> ht = slot(s ? &s->text_ffn.input() : nullptr, Shape{Bn, nt, D}), yt = sc.tensor({Bn, nt, D});
            copy_positions(be, h, nq, ht, 0, nt);
            text_ffn.forward(be, ht, yt, s ? &s->text_ffn : nullptr);
            copy_positions(be, yt, 0, y, nq, nt);
        }
        if (s) s->queries = nq, s->cross_ran = run_cross;
    }

    void backward(B& be, Saved& s, ConstView<T> d_y, TensorView<T> d_x, TensorView<T> d_enc, GradMode mode) {
        const index_t Bn = d_y.dim(0), N = d_y.dim(1), D = d_y.dim(2), nq = s.queries, nt = N - nq;
        auto sc = be.scope();
        TensorView<T> d_h = sc.tensor(d_y.shape());
        if (nq > 0) {
            TensorView<T> g = sc.tensor({Bn, nq, D}), d_hq = sc.tensor({Bn, nq, D});
            copy_positions(be, d_y, 0, g, 0, nq);
            query_ffn.backward(be, s.query_ffn, g, d_hq, mode);
            if (s.cross_ran) cross->backward(be, s.cross, d_hq, d_hq, mode, InputGradMode::assign, d_enc);
            copy_positions(be, d_hq, 0, d_h, 0, nq);
        }
        if (nt > 0) {
            TensorView<T> g = sc.tensor({Bn, nt, D}), d_ht = sc.tensor({Bn, nt, D});
            copy_positions(be, d_y, nq, g, 0, nt);
            text_ffn.backward(be, s.text_ffn, g, d_ht, mode);
            copy_positions(be, d_ht, 0, d_h, nq, nt);
        }
        attention.backward(be, s.attention, d_h, d_x, mode, InputGradMode::assign, TensorView<T>{});
    }
};

/// OPTDecoderLayer (do_layer_norm_before = True): h = x + SelfAttn(LN(x)), y = h + fc2(relu(fc1(LN(h)))).
template <Backend B>
struct OptDecoderLayer {
    using T = typename B::Scalar;
    using Attention = Sublayer<B, PreNorm, MultiHeadAttention<B>>;
    using FeedForward = Sublayer<B, PreNorm, Mlp<B>>;
    struct Saved {
        typename Attention::Saved self_attn;
        typename FeedForward::Saved ffn;
    };
    Attention self_attn;
    FeedForward ffn;

    OptDecoderLayer(index_t dim, index_t heads, index_t ffn_dim)
        : self_attn({.dim = dim, .inner_name = "self_attn", .norm_name = "self_attn_layer_norm"},
                    MultiHeadAttention<B>({.dim = dim, .heads = heads})),
          ffn({.dim = dim, .inner_name = "", .norm_name = "final_layer_norm"},
              Mlp<B>({.dim = dim, .hidden = ffn_dim, .activation = Activation::relu})) {}

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        self_attn.visit(f, prefix);
        ffn.visit(f, prefix);
    }
    void forward(B& be, ConstView<T> x, const AttentionMask<T>& mask, TensorView<T> y, Saved* s = nullptr) const {
        auto sc = be.scope();
        if (s) s->ffn.input().resize(x.shape());
        TensorView<T> h = s ? s->ffn.input().view() : sc.tensor(x.shape());  // straight into ffn's saved input
        self_attn.forward(be, x, h, s ? &s->self_attn : nullptr, ConstView<T>{}, mask);
        ffn.forward(be, h, y, s ? &s->ffn : nullptr);
    }
    void backward(B& be, Saved& s, ConstView<T> d_y, TensorView<T> d_x, GradMode mode) {
        auto sc = be.scope();
        TensorView<T> d = d_x.empty() ? sc.tensor(d_y.shape()) : d_x;
        ffn.backward(be, s.ffn, d_y, d, mode);
        self_attn.backward(be, s.self_attn, d, d_x, mode, InputGradMode::assign, TensorView<T>{});
    }
};

template <class M>
std::vector<std::string> sorted_names(M& m) {
    std::vector<std::string> names;
    m.visit([&](const std::string& n, Parameter<double>&) { names.push_back(n); });
    std::sort(names.begin(), names.end());
    return names;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
}

/// Copies every parameter of `src` into the same-named one of `dst`.
template <class Dst, class Src>
void copy_by_name(Dst& dst, Src& src) {
    std::map<std::string, Tensor<double>> values;
    src.visit([&](const std::string& n, Parameter<double>& p) { values.emplace(n, p.value); });
    dst.visit([&](const std::string& n, Parameter<double>& p) { p.value = values.at(n); });
}

using QFormer = QFormerLayer<Be>;

}  // namespace

TEST_CASE("the Q-Former composition visits exactly the keys of HF Blip2QFormerLayer (with text input and cross-attention)") {
    QFormer layer({.dim = 8, .heads = 2, .hidden = 12, .enc_dim = 6});
    // Blip2QFormerLayer(Blip2QFormerConfig(hidden_size=8, num_attention_heads=2, intermediate_size=12,
    // encoder_hidden_size=6, use_qformer_text_input=True), layer_idx=0).state_dict().keys()
    const std::vector<std::string> hf = {
        "attention.attention.query.weight", "attention.attention.query.bias", "attention.attention.key.weight",
        "attention.attention.key.bias", "attention.attention.value.weight", "attention.attention.value.bias",
        "attention.output.dense.weight", "attention.output.dense.bias", "attention.output.LayerNorm.weight",
        "attention.output.LayerNorm.bias", "crossattention.attention.query.weight", "crossattention.attention.query.bias",
        "crossattention.attention.key.weight", "crossattention.attention.key.bias", "crossattention.attention.value.weight",
        "crossattention.attention.value.bias", "crossattention.output.dense.weight", "crossattention.output.dense.bias",
        "crossattention.output.LayerNorm.weight", "crossattention.output.LayerNorm.bias", "intermediate.dense.weight",
        "intermediate.dense.bias", "output.dense.weight", "output.dense.bias", "output.LayerNorm.weight",
        "output.LayerNorm.bias", "intermediate_query.dense.weight", "intermediate_query.dense.bias",
        "output_query.dense.weight", "output_query.dense.bias", "output_query.LayerNorm.weight",
        "output_query.LayerNorm.bias"};
    CHECK(sorted_names(layer) == sorted(hf));
}

TEST_CASE("a Q-Former layer (queries cross-attend, text does not, two feed-forwards) matches finite differences") {
    Be be;
    QFormer layer({.dim = 8, .heads = 2, .hidden = 12, .enc_dim = 6});
    test::randomize(layer, 1, 0.4);
    const index_t nq = 3;
    Tensor<double> x = test::random_tensor({2, 5, 8}, 2), enc = test::random_tensor({2, 4, 6}, 3);
    Tensor<double> r = test::random_tensor({2, 5, 8}, 4), y(x.shape()), dx(x.shape()), denc(enc.shape(), 0.0);
    std::vector<std::int32_t> keep = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0}, enc_keep = {1, 1, 1, 1, 1, 1, 0, 1};
    const AttentionMask<double> self_mask{.key_keep = keep.data()}, cross_mask{.key_keep = enc_keep.data()};
    QFormer::Saved s;
    layer.forward(be, x.view(), nq, enc.view(), self_mask, cross_mask, y.view(), &s);
    zero_grad(layer);
    layer.backward(be, s, r.view(), dx.view(), denc.view(), GradMode::accumulate);
    test::check_module_gradients(layer, {{"x", x.view(), dx.view()}, {"enc", enc.view(), denc.view()}}, [&] {
        layer.forward(be, x.view(), nq, enc.view(), self_mask, cross_mask, y.view());
        return testing::dot<double>(r.view(), y.view());
    });
}

TEST_CASE("a Q-Former layer's text-only pass (no queries, no image) runs the same weights without cross-attention") {
    Be be;
    QFormer layer({.dim = 8, .heads = 2, .hidden = 12, .enc_dim = 6});
    test::randomize(layer, 5, 0.4);
    Tensor<double> x = test::random_tensor({2, 4, 8}, 6), r = test::random_tensor({2, 4, 8}, 7);
    Tensor<double> y(x.shape()), dx(x.shape()), want(x.shape()), h(x.shape());
    std::vector<std::int32_t> keep = {1, 1, 1, 0, 1, 1, 1, 1};
    const AttentionMask<double> mask{.key_keep = keep.data(), .causal = true};
    QFormer::Saved s;
    layer.forward(be, x.view(), 0, {}, mask, {}, y.view(), &s);
    layer.visit([](const std::string&, Parameter<double>& p) { p.grad_target(true); });  // every gradient allocated, zero
    // HF: query_length == 0 → layer_output = feed_forward_chunk(attention_output)
    layer.attention.forward(be, x.view(), h.view(), nullptr, ConstView<double>{}, mask);
    layer.text_ffn.forward(be, h.view(), want.view(), nullptr);
    CHECK(test::max_abs_diff<double>(y.view(), want.view()) < 1e-14);
    zero_grad(layer);
    layer.backward(be, s, r.view(), dx.view(), {}, GradMode::accumulate);
    layer.cross->visit([](const std::string& n, Parameter<double>& p) {
        for (double g : p.grad) CHECK_MESSAGE(g == 0.0, n, ": the skipped cross-attention gets no gradient");
    });
    test::check_module_gradients(layer, {{"x", x.view(), dx.view()}}, [&] {
        layer.forward(be, x.view(), 0, {}, mask, {}, y.view());
        return testing::dot<double>(r.view(), y.view());
    });
}

TEST_CASE("the OPT composition visits exactly the keys of HF OPTDecoderLayer, as TransformerBlock with "
          "BlockNames::opt() does") {
    OptDecoderLayer<Be> layer(8, 2, 12);
    TransformerBlock<Be, PreNorm> block({.dim = 8, .heads = 2, .mlp_hidden = 12, .activation = Activation::relu,
                                         .names = BlockNames::opt()});
    // OPTDecoderLayer(OPTConfig(hidden_size=8, num_attention_heads=2, ffn_dim=12), 0).state_dict().keys()
    const std::vector<std::string> hf = {
        "self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight", "self_attn.v_proj.bias",
        "self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.out_proj.weight", "self_attn.out_proj.bias",
        "self_attn_layer_norm.weight", "self_attn_layer_norm.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
        "final_layer_norm.weight", "final_layer_norm.bias"};
    CHECK(sorted_names(layer) == sorted(hf));
    CHECK(sorted_names(block) == sorted(hf));
}

TEST_CASE("an OPT decoder layer composed of two pre-norm sublayers matches finite differences and equals the block") {
    Be be;
    OptDecoderLayer<Be> layer(8, 2, 12);
    test::randomize(layer, 8, 0.4);
    Tensor<double> x = test::random_tensor({2, 4, 8}, 9), r = test::random_tensor({2, 4, 8}, 10);
    Tensor<double> y(x.shape()), dx(x.shape()), want(x.shape());
    std::vector<std::int32_t> keep = {0, 1, 1, 1, 1, 1, 1, 1};  // row 0 left-padded
    const AttentionMask<double> mask{.key_keep = keep.data(), .causal = true};
    OptDecoderLayer<Be>::Saved s;
    layer.forward(be, x.view(), mask, y.view(), &s);
    zero_grad(layer);
    layer.backward(be, s, r.view(), dx.view(), GradMode::accumulate);
    test::check_module_gradients(layer, {{"x", x.view(), dx.view()}}, [&] {
        layer.forward(be, x.view(), mask, y.view());
        return testing::dot<double>(r.view(), y.view());
    });

    TransformerBlock<Be, PreNorm> block({.dim = 8, .heads = 2, .mlp_hidden = 12, .activation = Activation::relu,
                                         .names = BlockNames::opt()});
    copy_by_name(block, layer);
    layer.forward(be, x.view(), mask, y.view());
    block.forward(be, x.view(), {}, mask, {}, want.view());
    CHECK(test::max_abs_diff<double>(y.view(), want.view()) == 0.0);
}
