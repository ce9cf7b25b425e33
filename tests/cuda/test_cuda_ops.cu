// CudaBackend<float> op by op against CpuBackend<float> on random inputs. Every output buffer is
// poisoned with NaN before the op (accumulated outputs start from the same random values on both
// sides), so an element the kernel fails to write shows up as a mismatch. Tolerance: 1e-5
// relative to the largest reference value (absolute below 1).
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "cuda/cuda_support.hpp"

using namespace mmalign;
using test::Cpu;
using test::Gpu;
using test::check_device;
using test::download;
using test::poisoned;
using test::random_host;
using test::upload;

namespace {

constexpr float nan_f = std::numeric_limits<float>::quiet_NaN();
constexpr float inf_f = std::numeric_limits<float>::infinity();

const char* name(Trans t) { return t == Trans::N ? "N" : "T"; }

}  // namespace

TEST_CASE("gemm: every transpose pair, padded leading dimensions, beta 0 (C poisoned) and beta != 0") {
    Cpu cpu;
    Gpu gpu;
    const index_t m = 37, n = 29, k = 53;
    for (Trans ta : {Trans::N, Trans::T})
        for (Trans tb : {Trans::N, Trans::T})
            for (float beta : {0.0f, -1.25f}) {
                const index_t a_rows = ta == Trans::N ? m : k, a_cols = ta == Trans::N ? k : m;
                const index_t b_rows = tb == Trans::N ? k : n, b_cols = tb == Trans::N ? n : k;
                const index_t lda = a_cols + 3, ldb = b_cols + 5, ldc = n + 7;
                const Tensor<float> a = random_host({a_rows, lda}, 1), b = random_host({b_rows, ldb}, 2);
                Tensor<float> c_cpu = beta == 0.0f ? Tensor<float>(Shape{m, ldc}, nan_f) : random_host({m, ldc}, 3);
                auto da = upload(gpu, a), db = upload(gpu, b), dc = upload(gpu, c_cpu);
                cpu.gemm(ta, tb, m, n, k, 0.75f, a.data(), lda, b.data(), ldb, beta, c_cpu.data(), ldc);
                gpu.gemm(ta, tb, m, n, k, 0.75f, da.data(), lda, db.data(), ldb, beta, dc.data(), ldc);
                check_device(gpu, std::string("gemm ") + name(ta) + name(tb) + " beta " + std::to_string(beta),
                             dc.view(), c_cpu.view());
            }
}

TEST_CASE("gemm with k = 0 scales C by beta; invalid sizes throw ArgumentError") {
    Gpu gpu;
    const Tensor<float> c = random_host({4, 6}, 4);
    auto dc = upload(gpu, c);
    gpu.gemm(Trans::N, Trans::N, 4, 6, 0, 1.0f, dc.data(), 1, dc.data(), 6, 2.0f, dc.data(), 6);
    Tensor<float> want = c;
    for (auto& v : want) v *= 2.0f;
    check_device(gpu, "gemm k=0 beta=2", dc.view(), want.view());
    gpu.gemm(Trans::N, Trans::N, 4, 6, 0, 1.0f, dc.data(), 1, dc.data(), 6, 0.0f, dc.data(), 6);
    check_device(gpu, "gemm k=0 beta=0", dc.view(), Tensor<float>(Shape{4, 6}, 0.0f).view());
    CHECK_THROWS_AS(gpu.gemm(Trans::N, Trans::N, 4, 6, 3, 1.0f, dc.data(), 2, dc.data(), 6, 0.0f, dc.data(), 6),
                    ArgumentError);
}

TEST_CASE("strided batched gemm: every transpose pair, padded strides, and attention's per-head column slices") {
    Cpu cpu;
    Gpu gpu;
    const index_t m = 13, n = 11, k = 17, batch = 3;
    for (Trans ta : {Trans::N, Trans::T})
        for (Trans tb : {Trans::N, Trans::T}) {
            const index_t a_rows = ta == Trans::N ? m : k, a_cols = ta == Trans::N ? k : m;
            const index_t b_rows = tb == Trans::N ? k : n, b_cols = tb == Trans::N ? n : k;
            const index_t lda = a_cols + 2, ldb = b_cols + 1, ldc = n + 3;
            const index_t sa = a_rows * lda + 5, sb = b_rows * ldb + 7, sc = m * ldc + 9;
            const Tensor<float> a = random_host({batch * sa}, 5), b = random_host({batch * sb}, 6);
            Tensor<float> c_cpu = random_host({batch * sc}, 7);
            auto da = upload(gpu, a), db = upload(gpu, b), dc = upload(gpu, c_cpu);
            cpu.gemm_strided_batched(ta, tb, m, n, k, 1.5f, a.data(), lda, sa, b.data(), ldb, sb, 0.5f, c_cpu.data(),
                                     ldc, sc, batch);
            gpu.gemm_strided_batched(ta, tb, m, n, k, 1.5f, da.data(), lda, sa, db.data(), ldb, sb, 0.5f, dc.data(),
                                     ldc, sc, batch);
            check_device(gpu, std::string("batched gemm ") + name(ta) + name(tb), dc.view(), c_cpu.view());
        }
    // Scores of H heads of q, k [T, D] (heads side by side in D), as MultiHeadAttention issues them.
    const index_t T = 9, D = 24, H = 4, dh = D / H;
    const Tensor<float> q = random_host({T, D}, 8), kk = random_host({T, D}, 9);
    Tensor<float> s_cpu(Shape{H, T, T});
    auto dq = upload(gpu, q), dk = upload(gpu, kk);
    auto ds = poisoned(gpu, {H, T, T});
    cpu.gemm_strided_batched(Trans::N, Trans::T, T, T, dh, 1.0f, q.data(), D, dh, kk.data(), D, dh, 0.0f, s_cpu.data(),
                             T, T * T, H);
    gpu.gemm_strided_batched(Trans::N, Trans::T, T, T, dh, 1.0f, dq.data(), D, dh, dk.data(), D, dh, 0.0f, ds.data(), T,
                             T * T, H);
    check_device(gpu, "per-head scores", ds.view(), s_cpu.view());
}

TEST_CASE("two-level batched gemm: attention's (batch, head) products, collapsible strides, one level, k = 0") {
    Cpu cpu;
    Gpu gpu;
    // q, k [B, T, D] with heads as column blocks: outer stride T·D, inner stride dh — a pointer-array batch.
    const index_t B = 3, T = 9, D = 24, H = 4, dh = D / H;
    const Tensor<float> q = random_host({B, T, D}, 50), kk = random_host({B, T, D}, 51);
    for (Trans tb : {Trans::T, Trans::N}) {
        Tensor<float> s_cpu = random_host({B, H, T, T}, 52);
        auto dq = upload(gpu, q), dk = upload(gpu, kk), ds = upload(gpu, s_cpu);
        // tb = T: scores q·kᵀ [T, T]; tb = N: q_h [T, dh] · k viewed as [dh, T] blocks (shapes only).
        const index_t n = tb == Trans::T ? T : dh, k = tb == Trans::T ? dh : dh;
        cpu.gemm_batched_2d(Trans::N, tb, T, n, k, 0.5f, q.data(), D, T * D, dh, kk.data(), D, T * D, dh, 0.25f,
                            s_cpu.data(), T, H * T * T, T * T, B, H);
        gpu.gemm_batched_2d(Trans::N, tb, T, n, k, 0.5f, dq.data(), D, T * D, dh, dk.data(), D, T * D, dh, 0.25f,
                            ds.data(), T, H * T * T, T * T, B, H);
        check_device(gpu, std::string("batched 2d, attention layout, tb ") + name(tb), ds.view(), s_cpu.view());
    }
    // Outer strides that are inner × inner strides (one strided batch), and outer = 1 / inner = 1.
    const index_t m = 5, n = 6, k = 7, mats = 6;
    const Tensor<float> a = random_host({mats * m * k}, 53), b = random_host({mats * k * n}, 54);
    struct Split {
        index_t outer, inner;
    };
    for (Split sp : {Split{2, 3}, Split{1, 6}, Split{6, 1}}) {
        Tensor<float> c = random_host({mats * m * n}, 55);
        auto da = upload(gpu, a), db = upload(gpu, b), dc = upload(gpu, c);
        cpu.gemm_batched_2d(Trans::N, Trans::N, m, n, k, 1.0f, a.data(), k, sp.inner * m * k, m * k, b.data(), n,
                            sp.inner * k * n, k * n, -1.0f, c.data(), n, sp.inner * m * n, m * n, sp.outer, sp.inner);
        gpu.gemm_batched_2d(Trans::N, Trans::N, m, n, k, 1.0f, da.data(), k, sp.inner * m * k, m * k, db.data(), n,
                            sp.inner * k * n, k * n, -1.0f, dc.data(), n, sp.inner * m * n, m * n, sp.outer, sp.inner);
        check_device(gpu, "batched 2d " + std::to_string(sp.outer) + " x " + std::to_string(sp.inner), dc.view(), c.view());
    }
    // k = 0 through the pointer-array path: C = beta · C.
    Tensor<float> c = random_host({B, H, T, T}, 56);
    auto dc = upload(gpu, c);
    auto dq = upload(gpu, q);
    gpu.gemm_batched_2d(Trans::N, Trans::T, T, T, 0, 1.0f, dq.data(), D, T * D, dh, dq.data(), D, T * D, dh, 3.0f,
                        dc.data(), T, H * T * T, T * T, B, H);
    for (auto& v : c) v *= 3.0f;
    check_device(gpu, "batched 2d, k = 0", dc.view(), c.view());
}

TEST_CASE("TF32 is off by default and can be switched on (products then agree to about 1e-3)") {
    Cpu cpu;
    Gpu gpu;
    CHECK_FALSE(gpu.tf32());
    const index_t n = 256;
    const Tensor<float> a = random_host({n, n}, 10), b = random_host({n, n}, 11);
    Tensor<float> c(Shape{n, n});
    cpu.gemm(Trans::N, Trans::N, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    auto da = upload(gpu, a), db = upload(gpu, b);
    auto dc = poisoned(gpu, {n, n});
    gpu.gemm(Trans::N, Trans::N, n, n, n, 1.0f, da.data(), n, db.data(), n, 0.0f, dc.data(), n);
    check_device(gpu, "fp32 gemm 256", dc.view(), c.view());
    gpu.set_tf32(true);
    CHECK(gpu.tf32());
    gpu.fill(dc.view(), nan_f);
    gpu.gemm(Trans::N, Trans::N, n, n, n, 1.0f, da.data(), n, db.data(), n, 0.0f, dc.data(), n);
    const auto cmp = test::compare(download(gpu, dc.view()).view(), c.view());
    MESSAGE("TF32 gemm 256: relative norm error " << cmp.rel_norm);
    CHECK(cmp.finite);
    CHECK(cmp.rel_norm < 5e-3);
    Gpu tf32_backend({.tf32 = true});
    CHECK(tf32_backend.tf32());
}

TEST_CASE("linear_forward: bias and every activation, with and without the pre-activation") {
    Cpu cpu;
    Gpu gpu;
    const Tensor<float> x = random_host({2, 5, 24}, 12), w = random_host({16, 24}, 13, -0.5, 0.5),
                        bias = random_host({16}, 14);
    auto dx = upload(gpu, x), dw = upload(gpu, w), dbias = upload(gpu, bias);
    for (Activation act : {Activation::none, Activation::relu, Activation::gelu, Activation::gelu_tanh,
                           Activation::quick_gelu})
        for (bool with_bias : {false, true}) {
            Tensor<float> y(Shape{2, 5, 16}), pre(Shape{10, 16});
            auto dy = poisoned(gpu, {2, 5, 16});
            auto dpre = poisoned(gpu, {10, 16});
            const bool want_pre = act != Activation::none;
            cpu.linear_forward(x.view(), w.view(), with_bias ? bias.data() : nullptr, act, y.view(),
                               want_pre ? pre.data() : nullptr);
            gpu.linear_forward(dx.view(), dw.view(), with_bias ? dbias.data() : nullptr, act, dy.view(),
                               want_pre ? dpre.data() : nullptr);
            const std::string what = std::string("linear ") + std::string(to_string(act)) + (with_bias ? " +bias" : "");
            check_device(gpu, what + " y", dy.view(), y.view());
            if (want_pre) check_device(gpu, what + " pre", dpre.view(), pre.view());
        }
}

TEST_CASE("linear_forward through cuBLASLt: bias, ReLU and tanh-GELU epilogues fused; other cases fall back") {
    Cpu cpu;
    Gpu gpu;
    gpu.set_lt_epilogue(true);
    const Tensor<float> x = random_host({3, 7, 40}, 15), w = random_host({24, 40}, 16, -0.5, 0.5),
                        bias = random_host({24}, 17);
    auto dx = upload(gpu, x), dw = upload(gpu, w), dbias = upload(gpu, bias);
    for (Activation act : {Activation::none, Activation::relu, Activation::gelu_tanh, Activation::gelu,
                           Activation::quick_gelu})
        for (bool with_bias : {false, true})
            for (bool want_pre : {false, true}) {
                if (act == Activation::none && want_pre) continue;
                Tensor<float> y(Shape{3, 7, 24}), pre(Shape{21, 24});
                auto dy = poisoned(gpu, {3, 7, 24});
                auto dpre = poisoned(gpu, {21, 24});
                cpu.linear_forward(x.view(), w.view(), with_bias ? bias.data() : nullptr, act, y.view(),
                                   want_pre ? pre.data() : nullptr);
                gpu.linear_forward(dx.view(), dw.view(), with_bias ? dbias.data() : nullptr, act, dy.view(),
                                   want_pre ? dpre.data() : nullptr);
                const std::string what = std::string("lt linear ") + std::string(to_string(act)) +
                                         (with_bias ? " +bias" : "") + (want_pre ? " +pre" : "");
                // cuBLASLt's GELU epilogue may evaluate tanh with the hardware approximation
                // (PTX tanh.approx.f32: relative error up to about 2^-11), so that case gets 1e-3.
                check_device(gpu, what + " y", dy.view(), y.view(), act == Activation::gelu_tanh ? 1e-3 : 1e-5);
                if (want_pre) check_device(gpu, what + " pre", dpre.view(), pre.view());
            }
    // One plan per (shape, precision, epilogue): bias, ReLU, ReLU+bias, GELU, GELU+bias.
    CHECK(gpu.lt_plans() == 5);
    gpu.set_tf32(true);  // a TF32 plan is a plan of its own
    auto dy = poisoned(gpu, {3, 7, 24});
    gpu.linear_forward(dx.view(), dw.view(), dbias.data(), Activation::none, dy.view(), nullptr);
    CHECK(gpu.lt_plans() == 6);
    Tensor<float> y(Shape{3, 7, 24});
    cpu.linear_forward(x.view(), w.view(), bias.data(), Activation::none, y.view(), nullptr);
    check_device(gpu, "lt linear tf32", dy.view(), y.view(), 1e-2);
}

TEST_CASE("layer_norm forward and backward (statistics, d_x, accumulated d_w and d_b; skipped outputs)") {
    Cpu cpu;
    Gpu gpu;
    const index_t C = 40;
    for (index_t rows : {index_t(21), index_t(300)}) {
        Tensor<float> x = random_host({rows, C}, 15);
        for (auto& v : x) v += 3.0f;  // a large mean: statistics in double matter
        const Tensor<float> w = random_host({C}, 16, 0.5, 1.5), b = random_host({C}, 17);
        Tensor<float> y(Shape{rows, C}), mean(Shape{rows}), rstd(Shape{rows});
        auto dx = upload(gpu, x), dw = upload(gpu, w), db = upload(gpu, b);
        auto dy = poisoned(gpu, {rows, C});
        auto dmean = poisoned(gpu, {rows}), drstd = poisoned(gpu, {rows});
        cpu.layer_norm_forward(x.view(), w.view(), b.view(), 1e-5, y.view(), mean.data(), rstd.data());
        gpu.layer_norm_forward(dx.view(), dw.view(), db.view(), 1e-5, dy.view(), dmean.data(), drstd.data());
        check_device(gpu, "layer_norm y", dy.view(), y.view());
        check_device(gpu, "layer_norm mean", dmean.view(), mean.view());
        check_device(gpu, "layer_norm rstd", drstd.view(), rstd.view());
        // Inference: no statistics.
        gpu.fill(dy.view(), nan_f);
        gpu.layer_norm_forward(dx.view(), dw.view(), db.view(), 1e-5, dy.view(), nullptr, nullptr);
        check_device(gpu, "layer_norm y (inference)", dy.view(), y.view());

        const Tensor<float> g = random_host({rows, C}, 18);
        Tensor<float> d_x(Shape{rows, C}), d_w = random_host({C}, 19), d_b = random_host({C}, 20);
        auto dg = upload(gpu, g), ddw = upload(gpu, d_w), ddb = upload(gpu, d_b);
        auto ddx = poisoned(gpu, {rows, C});
        cpu.layer_norm_backward(g.view(), x.view(), w.view(), mean.data(), rstd.data(), d_x.view(), d_w.data(), d_b.data());
        gpu.layer_norm_backward(dg.view(), dx.view(), dw.view(), dmean.data(), drstd.data(), ddx.view(), ddw.data(),
                                ddb.data());
        check_device(gpu, "layer_norm d_x", ddx.view(), d_x.view());
        check_device(gpu, "layer_norm d_w", ddw.view(), d_w.view());
        check_device(gpu, "layer_norm d_b", ddb.view(), d_b.view());
        // Only parameter gradients (d_x empty), then only d_x (frozen parameters).
        cpu.layer_norm_backward(g.view(), x.view(), w.view(), mean.data(), rstd.data(), {}, d_w.data(), nullptr);
        gpu.layer_norm_backward(dg.view(), dx.view(), dw.view(), dmean.data(), drstd.data(), {}, ddw.data(), nullptr);
        check_device(gpu, "layer_norm d_w (no d_x)", ddw.view(), d_w.view());
        check_device(gpu, "layer_norm d_b untouched", ddb.view(), d_b.view());
        gpu.fill(ddx.view(), nan_f);
        gpu.layer_norm_backward(dg.view(), dx.view(), dw.view(), dmean.data(), drstd.data(), ddx.view(), nullptr, nullptr);
        check_device(gpu, "layer_norm d_x (frozen)", ddx.view(), d_x.view());
    }
}

TEST_CASE("attention softmax forward under every mask kind, and its backward") {
    Cpu cpu;
    Gpu gpu;
    const index_t B = 2, H = 3, Tq = 5, Tk = 7;
    const Tensor<float> s = random_host({B, H, Tq, Tk}, 21, -3, 3);
    std::vector<std::int32_t> keep = {1, 1, 0, 1, 1, 1, 0,   // batch 0: two padded keys
                                      0, 0, 0, 0, 0, 0, 0};  // batch 1: no visible key at all
    Tensor<float> additive = random_host({B, Tq, Tk}, 22), shared = random_host({1, Tq, Tk}, 23);
    additive(0, 1, 3) = -inf_f;
    additive(1, 2, 0) = -inf_f;
    auto d_add = upload(gpu, additive), d_shared = upload(gpu, shared);
    struct Case {
        const char* name;
        AttentionMask<float> host, device;
    };
    const std::vector<Case> cases = {
        {"no mask", {}, {}},
        {"key_keep", {.key_keep = keep.data()}, {.key_keep = keep.data()}},
        {"causal, offset Tk - Tq", {.causal = true, .causal_offset = Tk - Tq}, {.causal = true, .causal_offset = Tk - Tq}},
        {"causal, offset -1 (first row hidden)", {.causal = true, .causal_offset = -1}, {.causal = true, .causal_offset = -1}},
        {"additive per batch row", {.additive = additive.data()}, {.additive = d_add.data()}},
        {"additive broadcast", {.additive = shared.data(), .additive_batch_stride = 0},
         {.additive = d_shared.data(), .additive_batch_stride = 0}},
        {"key_keep + causal + additive",
         {.key_keep = keep.data(), .causal = true, .causal_offset = 1, .additive = additive.data()},
         {.key_keep = keep.data(), .causal = true, .causal_offset = 1, .additive = d_add.data()}},
    };
    for (const Case& c : cases) {
        Tensor<float> p = s;
        auto dp = upload(gpu, s);
        cpu.attention_softmax_forward(p.view(), 0.37f, c.host);
        gpu.attention_softmax_forward(dp.view(), 0.37f, c.device);
        check_device(gpu, std::string("attention softmax, ") + c.name, dp.view(), p.view());

        const Tensor<float> g = random_host({B, H, Tq, Tk}, 24);
        Tensor<float> d = g;
        auto dd = upload(gpu, g);
        cpu.attention_softmax_backward(p.view(), d.view(), 0.37f);
        gpu.attention_softmax_backward(dp.view(), dd.view(), 0.37f);
        check_device(gpu, std::string("attention softmax backward, ") + c.name, dd.view(), d.view());
    }
    // Wide rows (more keys than a warp has lanes, several per lane).
    const Tensor<float> wide = random_host({1, 2, 3, 301}, 25, -5, 5);
    Tensor<float> pw = wide;
    auto dpw = upload(gpu, wide);
    std::vector<std::int32_t> keep_wide(301, 1);
    keep_wide[7] = keep_wide[300] = 0;
    cpu.attention_softmax_forward(pw.view(), 1.0f, {.key_keep = keep_wide.data(), .causal = true, .causal_offset = 150});
    gpu.attention_softmax_forward(dpw.view(), 1.0f, {.key_keep = keep_wide.data(), .causal = true, .causal_offset = 150});
    check_device(gpu, "attention softmax, 301 keys", dpw.view(), pw.view());
}

TEST_CASE("softmax over rows, out of place and in place") {
    Cpu cpu;
    Gpu gpu;
    const Tensor<float> x = random_host({17, 45}, 26, -6, 6);
    Tensor<float> y(x.shape());
    cpu.softmax(x.view(), y.view());
    auto dx = upload(gpu, x);
    auto dy = poisoned(gpu, x.shape());
    gpu.softmax(dx.view(), dy.view());
    check_device(gpu, "softmax", dy.view(), y.view());
    gpu.softmax(dx.view(), dx.view());
    check_device(gpu, "softmax in place", dx.view(), y.view());
}

TEST_CASE("activations forward and backward, every kind") {
    Cpu cpu;
    Gpu gpu;
    const Tensor<float> x = random_host({3, 1001}, 27, -5, 5), g = random_host({3, 1001}, 28);
    auto dx = upload(gpu, x), dg = upload(gpu, g);
    for (Activation act : {Activation::none, Activation::relu, Activation::gelu, Activation::gelu_tanh,
                           Activation::quick_gelu}) {
        const std::string what = std::string("activation ") + std::string(to_string(act));
        Tensor<float> y(x.shape()), d(x.shape());
        cpu.activation_forward(act, x.view(), y.view());
        cpu.activation_backward(act, x.view(), g.view(), d.view());
        auto dy = poisoned(gpu, x.shape()), dd = poisoned(gpu, x.shape());
        gpu.activation_forward(act, dx.view(), dy.view());
        gpu.activation_backward(act, dx.view(), dg.view(), dd.view());
        check_device(gpu, what + " forward", dy.view(), y.view());
        check_device(gpu, what + " backward", dd.view(), d.view());
    }
}

TEST_CASE("add, axpy, scale, fill, copy and the host transfers") {
    Cpu cpu;
    Gpu gpu;
    const Tensor<float> a = random_host({5, 333}, 29), b = random_host({5, 333}, 30);
    auto da = upload(gpu, a), db = upload(gpu, b);
    check_device(gpu, "from_host/to_host round trip", da.view(), a.view(), 0.0);
    Tensor<float> y(a.shape());
    cpu.add(a.view(), b.view(), y.view());
    auto dy = poisoned(gpu, a.shape());
    gpu.add(da.view(), db.view(), dy.view());
    check_device(gpu, "add", dy.view(), y.view());
    cpu.axpy(-0.3f, a.view(), y.view());
    gpu.axpy(-0.3f, da.view(), dy.view());
    check_device(gpu, "axpy", dy.view(), y.view());
    cpu.scale(1.7f, y.view());
    gpu.scale(1.7f, dy.view());
    check_device(gpu, "scale", dy.view(), y.view());
    gpu.fill(dy.view(), 2.5f);
    check_device(gpu, "fill", dy.view(), Tensor<float>(a.shape(), 2.5f).view(), 0.0);
    auto dc = poisoned(gpu, a.shape());
    gpu.copy(db.view(), dc.view());
    check_device(gpu, "copy", dc.view(), b.view(), 0.0);
    CHECK_THROWS_AS(gpu.add(da.view(), db.view().reshape(Shape{333, 5}), dy.view()), ShapeError);
    CHECK_THROWS_AS(gpu.copy(da.view(), dy.view().slice(0, 2)), ShapeError);
    Tensor<float> small(Shape{3});
    CHECK_THROWS_AS(gpu.to_host(da.view(), small.view()), ShapeError);
}

TEST_CASE("embedding gather and scatter-add with repeated ids (host ids), and ids outside the table") {
    Cpu cpu;
    Gpu gpu;
    const index_t V = 10, D = 33;
    const Tensor<float> table = random_host({V, D}, 31);
    const std::vector<std::int32_t> ids = {3, 7, 3, 0, 9, 3, 1, 1, 7, 2, 3, 9};
    const index_t n = static_cast<index_t>(ids.size());
    Tensor<float> out(Shape{3, 4, D});
    auto dtable = upload(gpu, table);
    auto dout = poisoned(gpu, {3, 4, D});
    cpu.embedding_forward(ids.data(), n, table.view(), out.view());
    gpu.embedding_forward(ids.data(), n, dtable.view(), dout.view());
    check_device(gpu, "embedding forward", dout.view(), out.view(), 0.0);

    const Tensor<float> g = random_host({3, 4, D}, 32);
    Tensor<float> d_table = random_host({V, D}, 33);
    auto dg = upload(gpu, g), dd = upload(gpu, d_table);
    cpu.embedding_backward(ids.data(), n, g.view(), d_table.view());
    gpu.embedding_backward(ids.data(), n, dg.view(), dd.view());
    check_device(gpu, "embedding backward", dd.view(), d_table.view());

    const std::vector<std::int32_t> bad = {1, 10};
    CHECK_THROWS_AS(gpu.embedding_forward(bad.data(), 2, dtable.view(), dout.view().reshape(Shape{12, D}).slice(0, 2)),
                    ArgumentError);
}

TEST_CASE("cross-entropy forward and backward: ignore_index, label smoothing, all rows ignored, bad targets") {
    Cpu cpu;
    Gpu gpu;
    const index_t N = 9, C = 37;
    const Tensor<float> logits = random_host({N, C}, 34, -4, 4);
    auto dlogits = upload(gpu, logits);
    const std::vector<std::int32_t> targets = {3, -100, 36, 0, 5, -100, 17, 17, 2};
    for (float ls : {0.0f, 0.1f}) {
        Tensor<float> lse(Shape{N}), d(Shape{N, C});
        auto dlse = poisoned(gpu, {N});
        auto dd = poisoned(gpu, {N, C});
        const auto want = cpu.cross_entropy_forward(logits.view(), targets.data(), -100, ls, lse.data());
        const auto got = gpu.cross_entropy_forward(dlogits.view(), targets.data(), -100, ls, dlse.data());
        INFO("label smoothing " << ls << ": loss " << got.loss << " vs " << want.loss);
        CHECK(got.count == want.count);
        CHECK(std::abs(got.loss - want.loss) <= 1e-5 * std::max(1.0f, std::abs(want.loss)));
        check_device(gpu, "cross_entropy lse", dlse.view(), lse.view());
        cpu.cross_entropy_backward(logits.view(), targets.data(), lse.data(), -100, ls, want.count, 1.7f, d.view());
        gpu.cross_entropy_backward(dlogits.view(), targets.data(), dlse.data(), -100, ls, got.count, 1.7f, dd.view());
        check_device(gpu, "cross_entropy d_logits", dd.view(), d.view());
    }
    const std::vector<std::int32_t> ignored(N, -100);
    auto dlse = poisoned(gpu, {N});
    const auto none = gpu.cross_entropy_forward(dlogits.view(), ignored.data(), -100, 0.0f, dlse.data());
    CHECK(none.count == 0);
    CHECK(none.loss == 0.0f);
    auto dd = poisoned(gpu, {N, C});
    gpu.cross_entropy_backward(dlogits.view(), ignored.data(), dlse.data(), -100, 0.0f, 0, 1.0f, dd.view());
    check_device(gpu, "cross_entropy d_logits, all ignored", dd.view(), Tensor<float>(Shape{N, C}, 0.0f).view(), 0.0);
    const std::vector<std::int32_t> bad = {0, 1, 2, 3, 37, 0, 0, 0, 0};
    CHECK_THROWS_AS(gpu.cross_entropy_forward(dlogits.view(), bad.data(), -100, 0.0f, dlse.data()), ArgumentError);
}

TEST_CASE("cross-entropy over a vocabulary wider than a block, lse left to scratch") {
    Cpu cpu;
    Gpu gpu;
    const index_t N = 4, C = 5003;
    const Tensor<float> logits = random_host({N, C}, 35, -8, 8);
    const std::vector<std::int32_t> targets = {0, 5002, 77, 4096};
    Tensor<float> lse(Shape{N});
    const auto want = cpu.cross_entropy_forward(logits.view(), targets.data(), -100, 0.05f, lse.data());
    auto dlogits = upload(gpu, logits);
    const auto got = gpu.cross_entropy_forward(dlogits.view(), targets.data(), -100, 0.05f, nullptr);
    CHECK(got.count == want.count);
    CHECK(std::abs(got.loss - want.loss) <= 1e-5 * std::max(1.0f, std::abs(want.loss)));
}

TEST_CASE("l2_normalize forward and backward, including rows floored at eps") {
    Cpu cpu;
    Gpu gpu;
    const index_t R = 6, C = 77;
    Tensor<float> x = random_host({R, C}, 36);
    for (index_t c = 0; c < C; ++c) x(2, c) *= 1e-6f;  // ‖x‖ < eps: the floored branch
    const Tensor<float> g = random_host({R, C}, 37);
    Tensor<float> y(x.shape()), norm(Shape{R}), d(x.shape());
    cpu.l2_normalize_forward(x.view(), y.view(), norm.data(), 1e-3f);
    cpu.l2_normalize_backward(g.view(), y.view(), norm.data(), d.view());
    auto dx = upload(gpu, x), dg = upload(gpu, g);
    auto dy = poisoned(gpu, x.shape()), dnorm = poisoned(gpu, {R}), dd = poisoned(gpu, x.shape());
    gpu.l2_normalize_forward(dx.view(), dy.view(), dnorm.data(), 1e-3f);
    gpu.l2_normalize_backward(dg.view(), dy.view(), dnorm.data(), dd.view());
    check_device(gpu, "l2_normalize y", dy.view(), y.view());
    check_device(gpu, "l2_normalize norm", dnorm.view(), norm.view());
    check_device(gpu, "l2_normalize d_x", dd.view(), d.view());
}

TEST_CASE("column sums accumulate (bias gradients), and sum, dot, mean come back to the host") {
    Cpu cpu;
    Gpu gpu;
    for (Shape s : {Shape{3, 5}, Shape{300, 45}, Shape{2, 50, 70}, Shape{1000, 3}}) {
        const Tensor<float> x = random_host(s, 38);
        Tensor<float> out = random_host({s.cols()}, 39);
        auto dx = upload(gpu, x), dout = upload(gpu, out);
        cpu.sum_rows_accumulate(x.view(), out.data());
        gpu.sum_rows_accumulate(dx.view(), dout.data());
        check_device(gpu, "sum_rows_accumulate " + s.str(), dout.view(), out.view());
    }
    const Tensor<float> a = random_host({12345}, 40), b = random_host({12345}, 41);
    auto da = upload(gpu, a), db = upload(gpu, b);
    CHECK(gpu.sum(da.view()) == doctest::Approx(cpu.sum(a.view())).epsilon(1e-5));
    CHECK(gpu.dot(da.view(), db.view()) == doctest::Approx(cpu.dot(a.view(), b.view())).epsilon(1e-5));
    CHECK(gpu.mean(da.view()) == doctest::Approx(cpu.mean(a.view())).epsilon(1e-5));
    CHECK(gpu.sum(ConstView<float>(da.data(), Shape{0})) == 0.0f);
}

TEST_CASE("adamw_step matches the CPU's update, with and without weight decay, over several steps") {
    Cpu cpu;
    Gpu gpu;
    for (double wd : {0.0, 0.1}) {
        Tensor<float> p = random_host({7, 301}, 60), m(Shape{7, 301}, 0.0f), v(Shape{7, 301}, 0.0f);
        auto dp = upload(gpu, p), dm = upload(gpu, m), dv = upload(gpu, v);
        for (std::int64_t step = 1; step <= 3; ++step) {
            const Tensor<float> g = random_host({7, 301}, 61 + static_cast<unsigned>(step));
            auto dg = upload(gpu, g);
            const AdamWHyper h{.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = wd, .step = step};
            cpu.adamw_step(p.view(), g.view(), m.view(), v.view(), h);
            gpu.adamw_step(dp.view(), dg.view(), dm.view(), dv.view(), h);
        }
        const std::string what = "adamw (weight decay " + std::to_string(wd) + ")";
        check_device(gpu, what + " p", dp.view(), p.view());
        check_device(gpu, what + " exp_avg", dm.view(), m.view());
        check_device(gpu, what + " exp_avg_sq", dv.view(), v.view());
    }
}

TEST_CASE("patchify matches the CPU layout") {
    Cpu cpu;
    Gpu gpu;
    const Tensor<float> px = random_host({2, 3, 8, 12}, 42);
    Tensor<float> patches(Shape{2, 6, 48});
    cpu.patchify(px.view(), 4, patches.view());
    auto dpx = upload(gpu, px);
    auto dpatches = poisoned(gpu, {2, 6, 48});
    gpu.patchify(dpx.view(), 4, dpatches.view());
    check_device(gpu, "patchify", dpatches.view(), patches.view(), 0.0);
    CHECK_THROWS_AS(gpu.patchify(dpx.view(), 5, dpatches.view()), ShapeError);
}

TEST_CASE("DeviceTensor: resize keeps capacity, copies are deep, moves transfer ownership, zero and fill") {
    Gpu gpu;
    DeviceTensor<float> t(Shape{4, 8}, 1.5f);
    check_device(gpu, "fill constructor", t.view(), Tensor<float>(Shape{4, 8}, 1.5f).view(), 0.0);
    const float* storage = t.data();
    t.resize(Shape{2, 3});
    CHECK(t.data() == storage);
    CHECK(t.capacity() == 32);
    t.resize(Shape{4, 8});
    CHECK(t.data() == storage);
    DeviceTensor<float> copy = t;
    CHECK(copy.data() != t.data());
    t.zero();
    check_device(gpu, "zero", t.view(), Tensor<float>(Shape{4, 8}, 0.0f).view(), 0.0);
    check_device(gpu, "deep copy", copy.view(), Tensor<float>(Shape{4, 8}, 1.5f).view(), 0.0);
    DeviceTensor<float> moved = std::move(copy);
    CHECK(copy.data() == nullptr);
    CHECK(copy.numel() == 0);
    check_device(gpu, "moved", moved.view(), Tensor<float>(Shape{4, 8}, 1.5f).view(), 0.0);
    const Tensor<float> h = random_host({4, 8}, 43);
    moved.copy_from_host(h.view());
    const Tensor<float> back = moved.to_host();
    test::check_close("DeviceTensor host round trip", back.view(), h.view(), 0.0);
    DeviceTensor<float> empty;
    CHECK(empty.numel() == 0);
    CHECK(empty.data() == nullptr);
}

TEST_CASE("the scratch arena hands out device memory per scope and reuses it: a second step allocates nothing") {
    Gpu gpu;
    auto step = [&] {
        auto sc = gpu.scope();
        auto a = sc.tensor({100, 1000});
        auto z = sc.zeros({7, 9});
        check_device(gpu, "scope zeros", z, Tensor<float>(Shape{7, 9}, 0.0f).view(), 0.0);
        {
            auto inner = gpu.scope();
            auto b = inner.tensor({5000, 300});
            gpu.fill(b, 1.0f);
        }
        gpu.fill(a, 2.0f);
        return a.data();
    };
    const float* first = step();
    const std::size_t bytes = gpu.arena().capacity_bytes();
    CHECK(bytes >= (100 * 1000 + 5000 * 300) * sizeof(float));
    const float* second = step();
    CHECK(first == second);
    CHECK(gpu.arena().capacity_bytes() == bytes);
}

bool memory_pools_supported() {
    int device = 0, supported = 0;
    MMALIGN_CUDA_CHECK(cudaGetDevice(&device));
    MMALIGN_CUDA_CHECK(cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, device));
    return supported != 0;
}

TEST_CASE("DeviceTensor memory comes from the caching pool: tensors made and dropped in a loop reserve nothing new") {
    if (!memory_pools_supported()) {
        MESSAGE("this device has no memory pools: DeviceTensor uses cudaMalloc");
        return;
    }
    REQUIRE(cuda::allocator() == cuda::Allocator::pool);
    const index_t n = index_t(16) << 20;  // 64 MiB of floats
    {
        DeviceTensor<float> first(Shape{n});
        first.fill(1.0f);
    }
    MMALIGN_CUDA_CHECK(cudaDeviceSynchronize());
    const std::size_t reserved = cuda::pool_reserved_bytes(), used = cuda::pool_used_bytes();
    CHECK(reserved >= static_cast<std::size_t>(n) * sizeof(float));
    for (int i = 0; i < 10; ++i) {
        DeviceTensor<float> t(Shape{n}, static_cast<float>(i));
        if (i == 9) CHECK(t.to_host()(n - 1) == 9.0f);
    }
    MMALIGN_CUDA_CHECK(cudaDeviceSynchronize());
    CHECK(cuda::pool_reserved_bytes() == reserved);
    CHECK(cuda::pool_used_bytes() == used);
    // Given back on request (memory for another library in the process).
    cuda::trim_pool();
    CHECK(cuda::pool_reserved_bytes() < reserved);
}

TEST_CASE("a tensor dropped while a queued kernel still reads it is reused only after that kernel (stream order)") {
    Gpu gpu;
    const index_t n = 1024;
    const Tensor<float> ha = random_host({n, n}, 61), hb = random_host({n, n}, 62);
    DeviceTensor<float> b = upload(gpu, hb), c(Shape{n, n});
    auto a = std::make_unique<DeviceTensor<float>>(upload(gpu, ha));
    auto product = [&] {
        gpu.gemm(Trans::N, Trans::N, n, n, n, 1.0f, a->data(), n, b.data(), n, 0.0f, c.data(), n);
    };
    product();
    const Tensor<float> expected = download(gpu, c.view());  // synchronises
    // Queue enough work to still be running when the host drops `a` and writes a new tensor.
    for (int i = 0; i < 50; ++i) product();
    const float* old = a->data();
    a.reset();
    DeviceTensor<float> z(Shape{n, n}, std::numeric_limits<float>::quiet_NaN());  // likely a's old memory
    MESSAGE("the new tensor " << (z.data() == old ? "reuses" : "does not reuse") << " the dropped tensor's memory");
    test::check_close("product read from a dropped tensor", download(gpu, c.view()).view(), expected.view(), 0.0);
}

TEST_CASE("with the direct allocator DeviceTensor uses cudaMalloc and leaves the pool alone") {
    cuda::set_allocator(cuda::Allocator::direct);
    const std::size_t used = memory_pools_supported() ? cuda::pool_used_bytes() : 0;
    {
        DeviceTensor<float> t(Shape{1 << 20}, 2.5f);
        if (memory_pools_supported()) CHECK(cuda::pool_used_bytes() == used);
        CHECK(t.to_host()(12345) == 2.5f);
        cuda::set_allocator(cuda::Allocator::pool);  // t is still freed with cudaFree, as it was taken
    }
    DeviceTensor<float> u(Shape{1 << 20}, 3.5f);
    CHECK(u.to_host()(54321) == 3.5f);
}

TEST_CASE("failed CUDA and cuBLAS calls throw CudaError naming the call and the status") {
    try {
        MMALIGN_CUDA_CHECK(cudaSetDevice(-5));
        FAIL("no exception");
    } catch (const CudaError& e) {
        CHECK(e.call() == "cudaSetDevice(-5)");
        CHECK(e.status().find("cudaErrorInvalidDevice") != std::string::npos);
        CHECK(std::string(e.what()).find("test_cuda_ops.cu") != std::string::npos);
    }
    try {
        MMALIGN_CUBLAS_CHECK(cublasSetMathMode(nullptr, CUBLAS_DEFAULT_MATH));
        FAIL("no exception");
    } catch (const CudaError& e) {
        CHECK(e.status().find("CUBLAS_STATUS_NOT_INITIALIZED") != std::string::npos);
    }
    CHECK(cuda::device_count() >= 1);
}
