// Every nn module on CudaBackend<float> against the same module on CpuBackend<float>: the CPU
// module gets random parameters, the CUDA module receives them through `visit` (both visit the
// same names in the same order), both run forward with saved activations and backward, and the
// outputs, input gradients and every parameter gradient come back to the host for comparison.
// Tolerance: 1e-5 relative to the largest reference value (absolute below 1); parameter gradients
// relative to the module's largest gradient (see check_gradients).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "cuda/cuda_support.hpp"
#include "mmalign/nn/attention.hpp"
#include "mmalign/nn/embedding.hpp"
#include "mmalign/nn/layer_norm.hpp"
#include "mmalign/nn/linear.hpp"
#include "mmalign/nn/mlp.hpp"
#include "mmalign/nn/transformer_block.hpp"
#include "mmalign/nn/transformer_stack.hpp"

using namespace mmalign;
using test::Cpu;
using test::Gpu;
using test::check_close;
using test::check_device;
using test::download;
using test::random_host;
using test::upload;

namespace {

constexpr double tol = 1e-5;

bool is_norm_weight(const std::string& name) {
    const bool norm = name.find("norm") != std::string::npos || name.find("LayerNorm") != std::string::npos;
    return norm && name.size() > 6 && name.compare(name.size() - 6, 6, "weight") == 0;
}

/// Every parameter ~ U(-0.5, 0.5), LayerNorm scales around 1, gradients zero.
template <class M>
void randomize(M& m, unsigned seed) {
    m.visit([&](const std::string& name, Parameter<float>& p) {
        p.value = random_host(p.shape(), seed++, -0.5, 0.5);
        if (is_norm_weight(name))
            for (auto& v : p.value) v += 1.0f;
        p.grad.zero();
    });
}

/// Copies every parameter of the CPU module into the CUDA module, checking that both visit the
/// same names and shapes in the same order; zeroes the CUDA gradients.
template <class CpuModule, class GpuModule>
void load(Gpu& gpu, CpuModule& cm, GpuModule& gm) {
    std::vector<std::pair<std::string, Parameter<float>*>> host;
    cm.visit([&](const std::string& name, Parameter<float>& p) { host.emplace_back(name, &p); });
    std::size_t i = 0;
    gm.visit([&](const std::string& name, BasicParameter<DeviceTensor<float>>& p) {
        REQUIRE_MESSAGE(i < host.size(), "CUDA module visits more parameters than the CPU module: " << name);
        CHECK(name == host[i].first);
        REQUIRE_MESSAGE(p.shape() == host[i].second->shape(), name << ": " << p.shape().str() << " vs "
                                                                   << host[i].second->shape().str());
        gpu.from_host(host[i].second->value.view(), p.value.view());
        p.requires_grad = host[i].second->requires_grad;
        p.grad.zero();
        ++i;
    });
    CHECK(i == host.size());
}

/// Compares every parameter gradient of the two modules, relative to the largest gradient of the
/// module (at least 1). A per-tensor scale would be wrong for gradients that vanish in exact
/// arithmetic: the key projection's bias cannot change the softmax, so its gradient is pure
/// rounding (measured, CpuBackend<float> against <double> on these stacks: 3.8e-6 of the
/// per-tensor scale, 6e-7 of the module's).
template <class CpuModule, class GpuModule>
void check_gradients(Gpu& gpu, CpuModule& cm, GpuModule& gm, double tolerance = tol) {
    std::vector<std::pair<std::string, const Tensor<float>*>> host;
    double scale = 1.0;
    cm.visit([&](const std::string& name, Parameter<float>& p) {
        host.emplace_back(name, &p.grad);
        for (float g : p.grad) scale = std::max(scale, double(std::abs(g)));
    });
    std::size_t i = 0;
    gm.visit([&](const std::string& name, BasicParameter<DeviceTensor<float>>& p) {
        REQUIRE(i < host.size());
        check_device(gpu, "d " + name, p.grad.view(), host[i].second->view(), tolerance, scale);
        ++i;
    });
    CHECK(i == host.size());
}

}  // namespace

TEST_CASE("Linear on CUDA equals Linear on the CPU: forward, d_x (assigned and accumulated), d_W, d_b") {
    Cpu cpu;
    Gpu gpu;
    for (auto cfg : {Linear<Cpu>::Config{.in = 24, .out = 16, .bias = true, .activation = Activation::gelu},
                     Linear<Cpu>::Config{.in = 24, .out = 16, .bias = false, .activation = Activation::none}}) {
        Linear<Cpu> cm(cfg);
        Linear<Gpu> gm({.in = cfg.in, .out = cfg.out, .bias = cfg.bias, .activation = cfg.activation});
        randomize(cm, 1);
        load(gpu, cm, gm);
        const Tensor<float> x = random_host({2, 5, 24}, 2), dy = random_host({2, 5, 16}, 3);
        Tensor<float> y(Shape{2, 5, 16}), dx(x.shape());
        auto gx = upload(gpu, x), gdy = upload(gpu, dy);
        auto gy = test::poisoned(gpu, y.shape()), gdx = test::poisoned(gpu, x.shape());
        Linear<Cpu>::Saved cs;
        Linear<Gpu>::Saved gs;
        cm.forward(cpu, x.view(), y.view(), &cs);
        gm.forward(gpu, gx.view(), gy.view(), &gs);
        check_device(gpu, "Linear y", gy.view(), y.view());
        cm.backward(cpu, cs, dy.view(), dx.view(), GradMode::accumulate);
        gm.backward(gpu, gs, gdy.view(), gdx.view(), GradMode::accumulate);
        check_device(gpu, "Linear d_x", gdx.view(), dx.view());
        check_gradients(gpu, cm, gm);
        // Residual-stream form: d_x added to what it holds; parameter gradients accumulate again.
        cm.backward_from(cpu, cs.x.view(), cs.pre.view(), dy.view(), dx.view(), GradMode::accumulate, InputGradMode::accumulate);
        gm.backward_from(gpu, gs.x.view(), gs.pre.view(), gdy.view(), gdx.view(), GradMode::accumulate, InputGradMode::accumulate);
        check_device(gpu, "Linear d_x accumulated", gdx.view(), dx.view());
        check_gradients(gpu, cm, gm);
    }
}

TEST_CASE("LayerNorm on CUDA equals LayerNorm on the CPU, forward and backward") {
    Cpu cpu;
    Gpu gpu;
    LayerNorm<Cpu> cm({.dim = 40, .eps = 1e-5});
    LayerNorm<Gpu> gm({.dim = 40, .eps = 1e-5});
    randomize(cm, 4);
    load(gpu, cm, gm);
    const Tensor<float> x = random_host({3, 7, 40}, 5, -2, 4), dy = random_host({3, 7, 40}, 6);
    Tensor<float> y(x.shape()), dx = random_host({3, 7, 40}, 7);
    auto gx = upload(gpu, x), gdy = upload(gpu, dy), gdx = upload(gpu, dx);
    auto gy = test::poisoned(gpu, x.shape());
    LayerNorm<Cpu>::Saved cs;
    LayerNorm<Gpu>::Saved gs;
    cm.forward(cpu, x.view(), y.view(), &cs);
    gm.forward(gpu, gx.view(), gy.view(), &gs);
    check_device(gpu, "LayerNorm y", gy.view(), y.view());
    cm.backward(cpu, cs, dy.view(), dx.view(), GradMode::accumulate, InputGradMode::accumulate);
    gm.backward(gpu, gs, gdy.view(), gdx.view(), GradMode::accumulate, InputGradMode::accumulate);
    check_device(gpu, "LayerNorm d_x (accumulated)", gdx.view(), dx.view());
    check_gradients(gpu, cm, gm);
}

TEST_CASE("Embedding and LearnedPositions on CUDA equal the CPU's, with repeated ids and a position offset") {
    Cpu cpu;
    Gpu gpu;
    Embedding<Cpu> ce({.rows = 50, .dim = 16});
    Embedding<Gpu> ge({.rows = 50, .dim = 16});
    randomize(ce, 8);
    load(gpu, ce, ge);
    const std::vector<std::int32_t> ids = {4, 9, 4, 49, 0, 4, 17, 9, 9, 33, 2, 4};
    Tensor<float> out(Shape{2, 6, 16});
    auto gout = test::poisoned(gpu, out.shape());
    Embedding<Cpu>::Saved cs;
    Embedding<Gpu>::Saved gs;
    ce.forward(cpu, ids, out.view(), &cs);
    ge.forward(gpu, ids, gout.view(), &gs);
    check_device(gpu, "Embedding out", gout.view(), out.view());
    const Tensor<float> d = random_host(out.shape(), 9);
    auto gd = upload(gpu, d);
    ce.backward(cpu, cs, d.view(), GradMode::accumulate);
    ge.backward(gpu, gs, gd.view(), GradMode::accumulate);
    check_gradients(gpu, ce, ge);

    LearnedPositions<Cpu> cp({.max_positions = 12, .dim = 16});
    LearnedPositions<Gpu> gp({.max_positions = 12, .dim = 16});
    randomize(cp, 10);
    load(gpu, cp, gp);
    const Tensor<float> x = random_host({2, 5, 16}, 11), dy = random_host({2, 5, 16}, 12);
    Tensor<float> y(x.shape());
    auto gx = upload(gpu, x), gdy = upload(gpu, dy);
    auto gy = test::poisoned(gpu, x.shape());
    LearnedPositions<Cpu>::Saved cps;
    LearnedPositions<Gpu>::Saved gps;
    cp.forward(cpu, x.view(), y.view(), 3, &cps);
    gp.forward(gpu, gx.view(), gy.view(), 3, &gps);
    check_device(gpu, "LearnedPositions y", gy.view(), y.view());
    cp.backward(cpu, cps, dy.view(), GradMode::accumulate);
    gp.backward(gpu, gps, gdy.view(), GradMode::accumulate);
    check_gradients(gpu, cp, gp);
}

TEST_CASE("Mlp on CUDA equals Mlp on the CPU for every activation") {
    Cpu cpu;
    Gpu gpu;
    for (Activation act : {Activation::relu, Activation::gelu, Activation::gelu_tanh, Activation::quick_gelu}) {
        INFO("activation " << to_string(act));
        Mlp<Cpu> cm({.dim = 24, .hidden = 64, .activation = act});
        Mlp<Gpu> gm({.dim = 24, .hidden = 64, .activation = act});
        randomize(cm, 13);
        load(gpu, cm, gm);
        const Tensor<float> x = random_host({2, 7, 24}, 14), dy = random_host({2, 7, 24}, 15);
        Tensor<float> y(x.shape()), dx(x.shape());
        auto gx = upload(gpu, x), gdy = upload(gpu, dy);
        auto gy = test::poisoned(gpu, x.shape()), gdx = test::poisoned(gpu, x.shape());
        Mlp<Cpu>::Saved cs;
        Mlp<Gpu>::Saved gs;
        cm.forward(cpu, x.view(), y.view(), &cs);
        gm.forward(gpu, gx.view(), gy.view(), &gs);
        check_device(gpu, "Mlp y", gy.view(), y.view());
        gm.forward(gpu, gx.view(), gy.view());  // inference path: scratch instead of saved tensors
        check_device(gpu, "Mlp y (inference)", gy.view(), y.view());
        cm.backward(cpu, cs, dy.view(), dx.view(), GradMode::accumulate);
        gm.backward(gpu, gs, gdy.view(), gdx.view(), GradMode::accumulate);
        check_device(gpu, "Mlp d_x", gdx.view(), dx.view());
        check_gradients(gpu, cm, gm);
    }
}

TEST_CASE("self-attention on CUDA equals the CPU's with padding and causal masks, forward and backward") {
    Cpu cpu;
    Gpu gpu;
    MultiHeadAttention<Cpu> cm({.dim = 32, .heads = 4});
    MultiHeadAttention<Gpu> gm({.dim = 32, .heads = 4});
    randomize(cm, 16);
    load(gpu, cm, gm);
    const Tensor<float> x = random_host({2, 7, 32}, 17), dy = random_host({2, 7, 32}, 18);
    const std::vector<std::int32_t> keep = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0};
    const AttentionMask<float> mask{.key_keep = keep.data(), .causal = true};
    Tensor<float> y(x.shape()), dx(x.shape());
    auto gx = upload(gpu, x), gdy = upload(gpu, dy);
    auto gy = test::poisoned(gpu, x.shape()), gdx = test::poisoned(gpu, x.shape());
    MultiHeadAttention<Cpu>::Saved cs;
    MultiHeadAttention<Gpu>::Saved gs;
    cm.forward(cpu, x.view(), {}, mask, y.view(), &cs);
    gm.forward(gpu, gx.view(), {}, mask, gy.view(), &gs);
    check_device(gpu, "self-attention y", gy.view(), y.view());
    check_device(gpu, "self-attention probabilities", gs.probs.view(), cs.probs.view());
    cm.backward(cpu, cs, dy.view(), dx.view(), {}, GradMode::accumulate);
    gm.backward(gpu, gs, gdy.view(), gdx.view(), {}, GradMode::accumulate);
    check_device(gpu, "self-attention d_x", gdx.view(), dx.view());
    check_gradients(gpu, cm, gm);
    // A frozen module: parameter gradients stay as they are, d_x still flows.
    zero_grad(gm);
    gpu.fill(gdx.view(), std::numeric_limits<float>::quiet_NaN());
    gm.backward(gpu, gs, gdy.view(), gdx.view(), {}, GradMode::ignore);
    check_device(gpu, "self-attention d_x (frozen)", gdx.view(), dx.view());
    gm.visit([&](const std::string& name, BasicParameter<DeviceTensor<float>>& p) {
        check_device(gpu, "frozen d " + name, p.grad.view(), Tensor<float>(p.shape(), 0.0f).view(), 0.0);
    });
}

TEST_CASE("cross-attention on CUDA equals the CPU's with a wider context, key padding and an additive mask") {
    Cpu cpu;
    Gpu gpu;
    using CM = MultiHeadAttention<Cpu>;
    using GM = MultiHeadAttention<Gpu>;
    CM cm({.dim = 32, .heads = 4, .kv_dim = 20, .q_name = "self.query", .k_name = "self.key", .v_name = "self.value",
           .out_name = "output.dense"});
    GM gm({.dim = 32, .heads = 4, .kv_dim = 20, .q_name = "self.query", .k_name = "self.key", .v_name = "self.value",
           .out_name = "output.dense"});
    randomize(cm, 19);
    load(gpu, cm, gm);
    const Tensor<float> x = random_host({2, 7, 32}, 20), c = random_host({2, 9, 20}, 21), dy = random_host({2, 7, 32}, 22);
    const Tensor<float> additive = random_host({2, 7, 9}, 23, -1, 1);
    const std::vector<std::int32_t> keep = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0};
    auto gadd = upload(gpu, additive);
    const AttentionMask<float> cmask{.key_keep = keep.data(), .additive = additive.data()};
    const AttentionMask<float> gmask{.key_keep = keep.data(), .additive = gadd.data()};
    Tensor<float> y(x.shape()), dx(x.shape()), dc = random_host(c.shape(), 24);  // d_ctx accumulates
    auto gx = upload(gpu, x), gc = upload(gpu, c), gdy = upload(gpu, dy), gdc = upload(gpu, dc);
    auto gy = test::poisoned(gpu, x.shape()), gdx = test::poisoned(gpu, x.shape());
    CM::Saved cs;
    GM::Saved gs;
    cm.forward(cpu, x.view(), c.view(), cmask, y.view(), &cs);
    gm.forward(gpu, gx.view(), gc.view(), gmask, gy.view(), &gs);
    check_device(gpu, "cross-attention y", gy.view(), y.view());
    cm.backward(cpu, cs, dy.view(), dx.view(), dc.view(), GradMode::accumulate);
    gm.backward(gpu, gs, gdy.view(), gdx.view(), gdc.view(), GradMode::accumulate);
    check_device(gpu, "cross-attention d_x", gdx.view(), dx.view());
    check_device(gpu, "cross-attention d_ctx (accumulated)", gdc.view(), dc.view());
    check_gradients(gpu, cm, gm);
}

TEST_CASE("fused attention on CUDA equals the CPU's plain path: self and cross, every mask kind, head widths 8 to 128") {
    // The GPU backend computes attention with its fused kernels (no probabilities stored), the CPU
    // backend with gemm + softmax + gemm: outputs, d_x, d_ctx and every parameter gradient agree.
    using CM = MultiHeadAttention<Cpu>;
    using GM = MultiHeadAttention<Gpu>;
    struct Case {
        index_t dim, heads, kv_dim;
        bool causal;
    };
    for (const Case& k : {Case{32, 4, 0, true}, Case{128, 2, 0, true}, Case{256, 2, 24, false}, Case{96, 1, 0, false}}) {
        INFO("dim ", k.dim, " heads ", k.heads, " kv_dim ", k.kv_dim);
        Cpu cpu;
        Gpu gpu({.fused_attention = true});
        const bool cross = k.kv_dim > 0;
        CM cm({.dim = k.dim, .heads = k.heads, .kv_dim = k.kv_dim});
        GM gm({.dim = k.dim, .heads = k.heads, .kv_dim = k.kv_dim});
        randomize(cm, 60);
        load(gpu, cm, gm);
        const index_t B = 2, Tq = 7, Tk = cross ? 9 : 7;
        const Tensor<float> x = random_host({B, Tq, k.dim}, 61), dy = random_host({B, Tq, k.dim}, 62);
        const Tensor<float> c = random_host({B, Tk, cross ? k.kv_dim : k.dim}, 63);
        Tensor<float> additive = random_host({B, Tq, Tk}, 64);
        additive.data()[5] = -std::numeric_limits<float>::infinity();
        for (index_t j = 0; j < Tk; ++j) additive(0, 1, j) = std::numeric_limits<float>::lowest();  // as HF pads
        std::vector<std::int32_t> keep(static_cast<std::size_t>(B * Tk), 1);
        keep[2] = 0;
        if (cross) std::fill(keep.begin() + Tk, keep.end(), 0);  // batch 1 sees no key at all
        auto gadd = upload(gpu, additive);
        const AttentionMask<float> cmask{.key_keep = keep.data(), .causal = k.causal, .additive = additive.data()};
        const AttentionMask<float> gmask{.key_keep = keep.data(), .causal = k.causal, .additive = gadd.data()};
        Tensor<float> y(x.shape()), dx(x.shape()), dc(c.shape(), 0.0f);
        auto gx = upload(gpu, x), gc = upload(gpu, c), gdy = upload(gpu, dy), gdc = upload(gpu, dc);
        auto gy = test::poisoned(gpu, x.shape()), gdx = test::poisoned(gpu, x.shape());
        CM::Saved cs;
        GM::Saved gs;
        cm.forward(cpu, x.view(), cross ? c.view() : ConstView<float>(), cmask, y.view(), &cs);
        gm.forward(gpu, gx.view(), cross ? gc.view() : ConstView<float>(), gmask, gy.view(), &gs);
        CHECK(gs.fused);
        CHECK(gs.probs.numel() == 0);
        check_device(gpu, "fused attention y", gy.view(), y.view());
        cm.backward(cpu, cs, dy.view(), dx.view(), cross ? dc.view() : TensorView<float>(), GradMode::accumulate);
        gm.backward(gpu, gs, gdy.view(), gdx.view(), cross ? gdc.view() : TensorView<float>(), GradMode::accumulate);
        check_device(gpu, "fused attention d_x", gdx.view(), dx.view());
        if (cross) check_device(gpu, "fused attention d_ctx", gdc.view(), dc.view());
        check_gradients(gpu, cm, gm);
    }
    Gpu gpu({.fused_attention = true});
    DeviceTensor<float> q({1, 1, 129});
    CHECK_THROWS_AS(gpu.attention_forward(q.data(), q.data(), q.data(), 129, 1, 1, 1, 1, 129, 1.0f, {}, q.data(), nullptr),
                    ArgumentError);
}

TEST_CASE("KV-cached decoding on CUDA equals the CPU's step by step and the full causal forward") {
    Cpu cpu;
    Gpu gpu;
    MultiHeadAttention<Cpu> cm({.dim = 16, .heads = 2});
    MultiHeadAttention<Gpu> gm({.dim = 16, .heads = 2});
    randomize(cm, 25);
    load(gpu, cm, gm);
    const index_t B = 2, T = 6, D = 16;
    const Tensor<float> x = random_host({B, T, D}, 26);
    Tensor<float> full(Shape{B, T, D});
    cm.forward(cpu, x.view(), {}, {.causal = true}, full.view());
    MultiHeadAttention<Cpu>::KvCache ccache;
    MultiHeadAttention<Gpu>::KvCache gcache;
    ccache.reset(B, T, D);
    gcache.reset(B, T, D);
    index_t t0 = 0;
    for (index_t n : {index_t(1), index_t(2), index_t(3)}) {
        Tensor<float> xs(Shape{B, n, D}), ys(Shape{B, n, D}), want(Shape{B, n, D});
        for (index_t b = 0; b < B; ++b)
            for (index_t t = 0; t < n; ++t)
                for (index_t e = 0; e < D; ++e) {
                    xs(b, t, e) = x(b, t0 + t, e);
                    want(b, t, e) = full(b, t0 + t, e);
                }
        auto gxs = upload(gpu, xs);
        auto gys = test::poisoned(gpu, ys.shape());
        cm.forward_cached(cpu, xs.view(), ccache, {}, ys.view());
        gm.forward_cached(gpu, gxs.view(), gcache, {}, gys.view());
        const std::string what = "cached positions " + std::to_string(t0) + ".." + std::to_string(t0 + n - 1);
        check_device(gpu, what, gys.view(), ys.view());
        check_device(gpu, what + " vs full forward", gys.view(), want.view());
        t0 += n;
    }
    CHECK(gcache.length == T);
}

TEST_CASE_TEMPLATE("a transformer block with cross-attention on CUDA equals the CPU's, forward and backward", Norm,
                   PreNorm, PostNorm) {
    Cpu cpu;
    Gpu gpu;
    const BlockNames names = std::is_same_v<Norm, PreNorm> ? BlockNames::clip() : BlockNames::bert();
    const Activation act = std::is_same_v<Norm, PreNorm> ? Activation::quick_gelu : Activation::gelu;
    TransformerBlock<Cpu, Norm> cm({.dim = 32, .heads = 4, .mlp_hidden = 48, .activation = act, .eps = 1e-5,
                                    .cross_attention = true, .cross_dim = 24, .names = names});
    TransformerBlock<Gpu, Norm> gm({.dim = 32, .heads = 4, .mlp_hidden = 48, .activation = act, .eps = 1e-5,
                                    .cross_attention = true, .cross_dim = 24, .names = names});
    randomize(cm, 27);
    load(gpu, cm, gm);
    const Tensor<float> x = random_host({2, 6, 32}, 28), enc = random_host({2, 5, 24}, 29),
                        dy = random_host({2, 6, 32}, 30);
    const std::vector<std::int32_t> keep = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, enc_keep = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    const AttentionMask<float> self_mask{.key_keep = keep.data(), .causal = true}, cross_mask{.key_keep = enc_keep.data()};
    Tensor<float> y(x.shape()), dx(x.shape()), denc(enc.shape(), 0.0f);
    auto gx = upload(gpu, x), genc = upload(gpu, enc), gdy = upload(gpu, dy), gdenc = upload(gpu, denc);
    auto gy = test::poisoned(gpu, x.shape()), gdx = test::poisoned(gpu, x.shape());
    typename TransformerBlock<Cpu, Norm>::Saved cs;
    typename TransformerBlock<Gpu, Norm>::Saved gs;
    cm.forward(cpu, x.view(), enc.view(), self_mask, cross_mask, y.view(), &cs);
    gm.forward(gpu, gx.view(), genc.view(), self_mask, cross_mask, gy.view(), &gs);
    check_device(gpu, "block y", gy.view(), y.view());
    gpu.fill(gy.view(), std::numeric_limits<float>::quiet_NaN());
    gm.forward(gpu, gx.view(), genc.view(), self_mask, cross_mask, gy.view());
    check_device(gpu, "block y (inference)", gy.view(), y.view());
    cm.backward(cpu, cs, dy.view(), dx.view(), denc.view(), GradMode::accumulate);
    gm.backward(gpu, gs, gdy.view(), gdx.view(), gdenc.view(), GradMode::accumulate);
    check_device(gpu, "block d_x", gdx.view(), dx.view());
    check_device(gpu, "block d_enc", gdenc.view(), denc.view());
    check_gradients(gpu, cm, gm);
}

TEST_CASE("transformer stacks on CUDA equal the CPU's: a CLIP-style pre-norm encoder and a Q-Former-style "
          "post-norm stack with cross-attention every other layer") {
    Cpu cpu;
    Gpu gpu;
    SUBCASE("pre-norm, quick_gelu, 3 layers, causal with padding") {
        TransformerStack<Cpu, PreNorm> cm(
            {.layers = 3, .block = {.dim = 32, .heads = 4, .mlp_hidden = 64, .activation = Activation::quick_gelu}});
        TransformerStack<Gpu, PreNorm> gm(
            {.layers = 3, .block = {.dim = 32, .heads = 4, .mlp_hidden = 64, .activation = Activation::quick_gelu}});
        randomize(cm, 31);
        load(gpu, cm, gm);
        const Tensor<float> x = random_host({2, 7, 32}, 32), dy = random_host({2, 7, 32}, 33);
        const std::vector<std::int32_t> keep = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
        const AttentionMask<float> mask{.key_keep = keep.data(), .causal = true};
        Tensor<float> y(x.shape()), dx(x.shape());
        auto gx = upload(gpu, x), gdy = upload(gpu, dy);
        auto gy = test::poisoned(gpu, x.shape()), gdx = test::poisoned(gpu, x.shape());
        TransformerStack<Cpu, PreNorm>::Saved cs;
        TransformerStack<Gpu, PreNorm>::Saved gs;
        cm.forward(cpu, x.view(), {}, mask, {}, y.view(), &cs);
        gm.forward(gpu, gx.view(), {}, mask, {}, gy.view(), &gs);
        check_device(gpu, "pre-norm stack y", gy.view(), y.view());
        cm.backward(cpu, cs, dy.view(), dx.view(), {}, GradMode::accumulate);
        gm.backward(gpu, gs, gdy.view(), gdx.view(), {}, GradMode::accumulate);
        check_device(gpu, "pre-norm stack d_x", gdx.view(), dx.view());
        check_gradients(gpu, cm, gm);
    }
    SUBCASE("post-norm, BERT names, gelu, 3 layers, cross-attention in layers 0 and 2") {
        const typename TransformerBlock<Cpu, PostNorm>::Config cb{
            .dim = 32, .heads = 4, .mlp_hidden = 64, .activation = Activation::gelu, .eps = 1e-12,
            .cross_attention = true, .cross_dim = 24, .names = BlockNames::bert()};
        const typename TransformerBlock<Gpu, PostNorm>::Config gb{
            .dim = 32, .heads = 4, .mlp_hidden = 64, .activation = Activation::gelu, .eps = 1e-12,
            .cross_attention = true, .cross_dim = 24, .names = BlockNames::bert()};
        TransformerStack<Cpu, PostNorm> cm({.layers = 3, .block = cb, .layer_name = "layer", .cross_attention_every = 2});
        TransformerStack<Gpu, PostNorm> gm({.layers = 3, .block = gb, .layer_name = "layer", .cross_attention_every = 2});
        randomize(cm, 34);
        load(gpu, cm, gm);
        const Tensor<float> x = random_host({2, 8, 32}, 35), enc = random_host({2, 5, 24}, 36),
                            dy = random_host({2, 8, 32}, 37);
        const std::vector<std::int32_t> enc_keep = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0};
        const AttentionMask<float> cross_mask{.key_keep = enc_keep.data()};
        Tensor<float> y(x.shape()), dx(x.shape()), denc(enc.shape(), 0.0f);
        auto gx = upload(gpu, x), genc = upload(gpu, enc), gdy = upload(gpu, dy), gdenc = upload(gpu, denc);
        auto gy = test::poisoned(gpu, x.shape()), gdx = test::poisoned(gpu, x.shape());
        TransformerStack<Cpu, PostNorm>::Saved cs;
        TransformerStack<Gpu, PostNorm>::Saved gs;
        cm.forward(cpu, x.view(), enc.view(), {}, cross_mask, y.view(), &cs);
        gm.forward(gpu, gx.view(), genc.view(), {}, cross_mask, gy.view(), &gs);
        check_device(gpu, "post-norm stack y", gy.view(), y.view());
        cm.backward(cpu, cs, dy.view(), dx.view(), denc.view(), GradMode::accumulate);
        gm.backward(gpu, gs, gdy.view(), gdx.view(), gdenc.view(), GradMode::accumulate);
        check_device(gpu, "post-norm stack d_x", gdx.view(), dx.view());
        check_device(gpu, "post-norm stack d_enc", gdenc.view(), denc.view());
        check_gradients(gpu, cm, gm);
    }
}

TEST_CASE("stack decoding on CUDA (padded prompt, cross-attention projected once, masks uploaded once per step, beams "
          "reordered) equals the CPU's") {
    Cpu cpu;
    Gpu gpu;
    const typename TransformerBlock<Cpu, PostNorm>::Config cb{
        .dim = 32, .heads = 4, .mlp_hidden = 48, .activation = Activation::gelu, .eps = 1e-12,
        .cross_attention = true, .cross_dim = 24, .names = BlockNames::bert()};
    const typename TransformerBlock<Gpu, PostNorm>::Config gb{
        .dim = 32, .heads = 4, .mlp_hidden = 48, .activation = Activation::gelu, .eps = 1e-12,
        .cross_attention = true, .cross_dim = 24, .names = BlockNames::bert()};
    TransformerStack<Cpu, PostNorm> cm({.layers = 2, .block = cb, .layer_name = "layer"});
    TransformerStack<Gpu, PostNorm> gm({.layers = 2, .block = gb, .layer_name = "layer"});
    randomize(cm, 60);
    load(gpu, cm, gm);
    const Tensor<float> prompt = random_host({2, 3, 32}, 61), enc = random_host({2, 5, 24}, 62),
                        next = random_host({3, 1, 32}, 63);
    const std::vector<std::int32_t> prompt_keep = {0, 1, 1, 1, 1, 1}, enc_keep = {1, 1, 1, 1, 0, 1, 1, 1, 1, 1};
    const std::vector<std::int32_t> beams = {1, 0, 1};
    auto genc = upload(gpu, enc), gprompt = upload(gpu, prompt), gnext = upload(gpu, next);
    TransformerStack<Cpu, PostNorm>::Cache cc;
    TransformerStack<Gpu, PostNorm>::Cache gc;
    cm.start_cache(cpu, cc, 2, 4, enc.view(), enc_keep);
    gm.start_cache(gpu, gc, 2, 4, genc.view(), enc_keep);
    Tensor<float> y0(prompt.shape()), y1(next.shape());
    auto gy0 = test::poisoned(gpu, prompt.shape()), gy1 = test::poisoned(gpu, next.shape());
    cm.forward_cached(cpu, prompt.view(), cc, prompt_keep, y0.view());
    gm.forward_cached(gpu, gprompt.view(), gc, prompt_keep, gy0.view());
    check_device(gpu, "cached prompt", gy0.view(), y0.view());
    cc.reorder(cpu, beams);
    gc.reorder(gpu, beams);
    cm.forward_cached(cpu, next.view(), cc, {}, y1.view());
    gm.forward_cached(gpu, gnext.view(), gc, {}, gy1.view());
    check_device(gpu, "cached step after reordering", gy1.view(), y1.view());
}

// The HF CLIP fixtures of tests/models/test_clip.cpp, through the CUDA backend: weights loaded
// with load_parameters(be, …) straight into device storage, HF's outputs reproduced to 1e-5.
#include "mmalign/io/hf_config.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/models/clip.hpp"

TEST_CASE("CLIP on CUDA reproduces HF CLIPModel's embeddings and logits (the three tiny fixtures)") {
    const std::string root = std::string(MMALIGN_FIXTURE_DIR) + "/clip/";
    for (const std::string name : {"tiny_quick_gelu", "odd_grid_gelu", "single_head_relu"}) {
        CAPTURE(name);
        Gpu be;
        auto model = Clip<Gpu>::from_pretrained(be, root + name);
        auto exp = io::SafetensorsFile::open(root + name + "/expected.safetensors");
        const Tensor<float> pixels = exp.read<float>("pixel_values");
        const Tensor<float> idf = exp.read<float>("input_ids"), mf = exp.read<float>("attention_mask");
        const std::vector<std::int32_t> ids(idf.begin(), idf.end()), mask(mf.begin(), mf.end());
        DeviceTensor<float> px = test::upload(be, pixels);
        auto out = model.forward(be, px.view(), ids, mask, idf.dim(0));
        for (const std::string key : {"image_embeds", "text_embeds", "logits_per_image", "logits_per_text"}) {
            CAPTURE(key);
            const Tensor<float> want = exp.read<float>(key);
            const DeviceTensor<float>& got_d = key == "image_embeds"       ? out.image_embeds
                                               : key == "text_embeds"      ? out.text_embeds
                                               : key == "logits_per_image" ? out.logits_per_image
                                                                           : out.logits_per_text;
            const Tensor<float> got = test::download(be, got_d.view());
            REQUIRE(got.shape() == want.shape());
            // Absolute below 1, relative above: the logits are cosines times exp(logit_scale) ≤ 100.
            double worst = 0, scale = 1;
            for (index_t i = 0; i < got.numel(); ++i) {
                worst = std::max(worst, std::abs(double(got.data()[i]) - double(want.data()[i])));
                scale = std::max(scale, std::abs(double(want.data()[i])));
            }
            CHECK(worst / scale <= 1e-5);
        }
    }
}
