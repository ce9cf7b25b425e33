// CpuBackend<bfloat16> and CpuBackend<float16>: the CPU reference of CudaBackend's 16-bit storage,
// which runs the 16-bit paths of modules, models, io and training where no GPU is.
//
// Op level: the backend's rounding points, exactly (transfers, products rounded once, Linear's
// epilogue after the rounded product, embedding gradients summed in float, AdamW's master copy).
// Model level: the cases of tests/cuda/test_cuda_half.cu, against CpuBackend<float> with the same
// tolerances, fixed from the format's unit roundoff u (bfloat16 2^-8, float16 2^-11): relative norm
// of the difference within 8u (forward) and 16u (gradients); float16 mixed-precision training
// follows the float run; checkpoints resume bit for bit and cross storage types.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "mmalign/backend/cpu/backend16.hpp"
#include "mmalign/core/float16.hpp"
#include "mmalign/io/hf_config.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/models/clip.hpp"
#include "mmalign/nn/transformer_stack.hpp"
#include "mmalign/objectives/contrastive.hpp"
#include "mmalign/train/adamw.hpp"
#include "mmalign/train/checkpoint.hpp"
#include "mmalign/train/loss_scaler.hpp"
#include "support/clip_step.hpp"
#include "support/compare.hpp"
#include "support/errors.hpp"
#include "support/half.hpp"
#include "support/half_cases.hpp"
#include "support/temp_dir.hpp"

using namespace mmalign;
using test::check_norm;
using test::random_rounded;
using test::rounded;
using test::same_bits;
using test::to_backend;
using test::to_float;
using test::unit_roundoff;

namespace {
using Cpu = CpuBackend<float>;
}  // namespace

// ---- ops ------------------------------------------------------------------------------------

TEST_CASE_TEMPLATE("16-bit CPU transfers: from_host rounds float to nearest even, to_host and cast widen exactly", T,
                   mmalign::bfloat16, mmalign::float16) {
    CpuBackend<T> be;
    Tensor<float> x = test::random_host({1000}, 1, -3, 3);
    x.data()[0] = 1e-7f, x.data()[1] = 70000.f, x.data()[2] = -0.f, x.data()[3] = 1.00390625f;
    x.data()[4] = std::numeric_limits<float>::infinity();
    Tensor<T> d(x.shape()), c(x.shape());
    be.from_host(x.cview(), d.view());
    be.cast(x.cview(), c.view());
    for (index_t i = 0; i < x.numel(); ++i) {
        CAPTURE(i);
        REQUIRE(d.data()[i].bits == T(x.data()[i]).bits);
        REQUIRE(c.data()[i].bits == d.data()[i].bits);
    }
    const Tensor<float> back = to_float(be, d.cview());
    Tensor<float> master(x.shape());
    be.cast(d.cview(), master.view());
    CHECK(same_bits(back.view(), rounded<T>(x).view()));
    CHECK(same_bits(master.view(), back.view()));
    Tensor<T> again(x.shape());
    be.from_host(back.cview(), again.view());  // rounding a widened value is the identity
    CHECK(std::memcmp(again.data(), d.data(), sizeof(T) * std::size_t(x.numel())) == 0);
    Tensor<float> f(x.shape()), g(x.shape());  // float ↔ float: plain copies (statistics, masters)
    be.from_host(x.cview(), f.view());
    be.to_host(f.cview(), g.view());
    CHECK(same_bits(g.view(), x.view()));
}

TEST_CASE_TEMPLATE("16-bit CPU gemms equal the float gemm of the widened operands rounded once, and leave C's gaps alone",
                   T, mmalign::bfloat16, mmalign::float16) {
    Cpu cpu;
    CpuBackend<T> be;
    for (Trans ta : {Trans::N, Trans::T})
        for (Trans tb : {Trans::N, Trans::T}) {
            CAPTURE(int(ta));
            CAPTURE(int(tb));
            const index_t m = 37, n = 45, k = 70, ldc = n + 3;
            const Tensor<float> a = random_rounded<T>({m * k}, 2), b = random_rounded<T>({k * n}, 3);
            const Tensor<float> c0 = random_rounded<T>({m * ldc}, 4);
            const index_t lda = ta == Trans::N ? k : m, ldb = tb == Trans::N ? n : k;
            Tensor<float> want = c0;
            cpu.gemm(ta, tb, m, n, k, 0.5f, a.data(), lda, b.data(), ldb, 0.25f, want.data(), ldc);
            want = rounded<T>(want);  // the gap columns hold c0's values, which are already rounded
            auto da = to_backend(be, a), db = to_backend(be, b), dc = to_backend(be, c0);
            be.gemm(ta, tb, m, n, k, 0.5f, da.data(), lda, db.data(), ldb, 0.25f, dc.data(), ldc);
            CHECK(same_bits(to_float(be, dc.cview()).view(), want.view()));
        }
    // Attention's (batch, head) products over [B, T, H·dh] rows, beta 0 over NaN.
    const index_t B = 2, H = 3, Tq = 5, dh = 8, D = H * dh;
    const Tensor<float> q = random_rounded<T>({B, Tq, D}, 5), k = random_rounded<T>({B, Tq, D}, 6);
    Tensor<float> want(Shape{B, H, Tq, Tq});
    cpu.gemm_batched_2d(Trans::N, Trans::T, Tq, Tq, dh, 1.f, q.data(), D, Tq * D, dh, k.data(), D, Tq * D, dh, 0.f,
                        want.data(), Tq, H * Tq * Tq, Tq * Tq, B, H);
    auto dq = to_backend(be, q), dk = to_backend(be, k);
    typename CpuBackend<T>::Tensor ds(want.shape(), std::numeric_limits<T>::quiet_NaN());
    be.gemm_batched_2d(Trans::N, Trans::T, Tq, Tq, dh, 1.f, dq.data(), D, Tq * D, dh, dk.data(), D, Tq * D, dh, 0.f,
                       ds.data(), Tq, H * Tq * Tq, Tq * Tq, B, H);
    CHECK(same_bits(to_float(be, ds.cview()).view(), rounded<T>(want).view()));
    const Tensor<float> x = random_rounded<T>({3, 5, 6}, 7), y = random_rounded<T>({3, 6, 4}, 8);
    Tensor<float> want_s(Shape{3, 5, 4});
    cpu.gemm_strided_batched(Trans::N, Trans::N, 5, 4, 6, 1.f, x.data(), 6, 30, y.data(), 4, 24, 0.f, want_s.data(), 4,
                             20, 3);
    auto dx = to_backend(be, x), dy = to_backend(be, y);
    typename CpuBackend<T>::Tensor dz(want_s.shape(), std::numeric_limits<T>::quiet_NaN());
    be.gemm_strided_batched(Trans::N, Trans::N, 5, 4, 6, 1.f, dx.data(), 6, 30, dy.data(), 4, 24, 0.f, dz.data(), 4, 20,
                            3);
    CHECK(same_bits(to_float(be, dz.cview()).view(), rounded<T>(want_s).view()));
}

TEST_CASE_TEMPLATE("16-bit CPU linear rounds the product, then adds the bias in float and rounds pre and act(pre) once "
                   "each (CUDA's epilogue)",
                   T, mmalign::bfloat16, mmalign::float16) {
    Cpu cpu;
    CpuBackend<T> be;
    const index_t M = 13, K = 24, N = 40;
    const Tensor<float> x = random_rounded<T>({M, K}, 10), w = random_rounded<T>({N, K}, 11),
                        bias = random_rounded<T>({N}, 12);
    auto dx = to_backend(be, x), dw = to_backend(be, w), db = to_backend(be, bias);
    for (Activation act : {Activation::none, Activation::gelu, Activation::quick_gelu}) {
        CAPTURE(int(act));
        Tensor<float> v(Shape{M, N});
        cpu.gemm(Trans::N, Trans::T, M, N, K, 1.f, x.data(), K, w.data(), K, 0.f, v.data(), N);
        v = rounded<T>(v);
        for (index_t r = 0; r < M; ++r)
            for (index_t j = 0; j < N; ++j) v.data()[r * N + j] += bias.data()[j];
        Tensor<float> y(v.shape());
        cpu.activation_forward(act, v.view(), y.view());
        typename CpuBackend<T>::Tensor gy(Shape{M, N}), gp(Shape{M, N});
        be.linear_forward(dx.cview(), dw.cview(), db.data(), act, gy.view(), gp.data());
        CHECK(same_bits(to_float(be, gp.cview()).view(), rounded<T>(v).view()));
        CHECK(same_bits(to_float(be, gy.cview()).view(), rounded<T>(y).view()));
    }
}

TEST_CASE_TEMPLATE("16-bit CPU embedding gradients sum each row's occurrences in float and round once", T,
                   mmalign::bfloat16, mmalign::float16) {
    CpuBackend<T> be;
    const index_t V = 5, D = 3;
    const float u = float(unit_roundoff<T>);
    // Row 2 starts at 1 and gets four contributions of u/2: each alone rounds away (1 + u/2 is
    // below the half-way point to the next value, 1 + 2u), their float sum 2u does not.
    const std::vector<std::int32_t> ids = {2, 0, 2, 2, 4, 2};
    Tensor<float> table0(Shape{V, D}, 0.f), d_out(Shape{6, D}, u / 2);
    for (index_t c = 0; c < D; ++c) table0(2, c) = 1.f, d_out(1, c) = 0.25f, d_out(4, c) = -0.5f;
    auto dt = to_backend(be, table0), dd = to_backend(be, d_out);
    be.embedding_backward(ids.data(), 6, dd.cview(), dt.view());
    const Tensor<float> got = to_float(be, dt.cview());
    for (index_t c = 0; c < D; ++c) {
        CHECK(got(2, c) == 1.f + 2 * u);
        CHECK(got(0, c) == 0.25f);
        CHECK(got(4, c) == -0.5f);
        CHECK(got(1, c) == 0.f);
    }
    // One at a time, as a 16-bit running sum would: the row stays at 1.
    auto dt1 = to_backend(be, table0);
    for (index_t i = 0; i < 6; ++i)
        be.embedding_backward(ids.data() + i, 1, ConstView<T>(dd.data() + i * D, Shape{1, D}), dt1.view());
    CHECK(to_float(be, dt1.cview())(2, 0) == 1.f);
    auto go = test::to_backend(be, Tensor<float>(Shape{6, D}, 0.f));
    be.embedding_forward(ids.data(), 6, dt.cview(), go.view());
    CHECK(to_float(be, go.cview())(0, 0) == 1.f + 2 * u);
}

TEST_CASE_TEMPLATE("16-bit CPU AdamW updates the float master while the parameter is its rounding, restarts it from a "
                   "rewritten parameter, and all_finite finds an overflow",
                   T, mmalign::bfloat16, mmalign::float16) {
    Cpu cpu;
    CpuBackend<T> be;
    const Tensor<float> p0 = random_rounded<T>({257}, 33), g0 = random_rounded<T>({257}, 34);
    Tensor<float> p = p0, m(Shape{257}, 0.f), v(Shape{257}, 0.f);
    Tensor<float> scaled = g0;
    for (float& e : scaled) e *= 1024.f;
    auto gp = to_backend(be, p0), gg = to_backend(be, scaled);  // g·1024 is exact in both formats
    Tensor<float> master(p0.shape()), gm(p0.shape(), 0.f), gv(p0.shape(), 0.f);
    be.cast(gp.cview(), master.view());
    test::adamw_three_steps(cpu, p.view(), g0.view(), m.view(), v.view(), be, gp.view(), gg.cview(), gm.view(),
                            gv.view(), master.view());
    test::check_close("master weights", master.view(), p.view(), 1e-6);
    CHECK(same_bits(to_float(be, gp.cview()).view(), rounded<T>(master).view()));
    // A parameter element written between steps restarts its master from the written value.
    index_t j = 8;  // an element whose master holds more than its 16-bit value
    while (j < p0.numel() && master.data()[j] == float(gp.data()[j])) ++j;
    REQUIRE(j < p0.numel());
    gp.data()[7] = T(0.5f);
    const float kept = master.data()[j];
    Tensor<float> zero_g(p0.shape(), 0.f);
    auto gz = to_backend(be, zero_g);
    be.adamw_step(gp.view(), gz.cview(), gm.view(), gv.view(), AdamWHyper{.lr = 0.0, .step = 4}, master.view());
    CHECK(master.data()[7] == 0.5f);
    CHECK(master.data()[j] == kept);
    // Overflow detection over several tensors.
    std::vector<ConstView<T>> views = {gp.cview(), gg.cview()};
    CHECK(be.all_finite(std::span<const ConstView<T>>(views)));
    Tensor<float> bad = p0;
    bad.data()[100] = 1e30f;  // finite in float, beyond float16's range; bfloat16 holds it
    auto gbad = to_backend(be, bad);
    views.push_back(gbad.cview());
    CHECK(be.all_finite(std::span<const ConstView<T>>(views)) == std::is_same_v<T, mmalign::bfloat16>);
    bad.data()[100] = std::numeric_limits<float>::quiet_NaN();
    auto gnan = to_backend(be, bad);
    views.push_back(gnan.cview());
    CHECK_FALSE(be.all_finite(std::span<const ConstView<T>>(views)));
}

// ---- models ---------------------------------------------------------------------------------

TEST_CASE_TEMPLATE("a 16-bit CPU pre-norm transformer stack follows the float one, plain and fused attention", T,
                   mmalign::bfloat16, mmalign::float16) {
    CpuBackend<T> be;
    SUBCASE("plain attention") { test::stack_follows_float(be, false); }
    SUBCASE("fused attention") { test::stack_follows_float(be, true); }
}

TEST_CASE_TEMPLATE("CLIP loaded from an HF float checkpoint into 16-bit CPU storage reproduces HF's embeddings", T,
                   mmalign::bfloat16, mmalign::float16) {
    test::clip_reproduces_hf_embeddings<CpuBackend<T>>();
}

TEST_CASE("CPU mixed-precision training: float16 storage, loss scaling and float master weights follow the float run") {
    CpuBackend<mmalign::float16> be;
    test::mixed_precision_follows_float(be);
}

TEST_CASE("a float16 CPU run from torch's 2^16 loss scale skips the overflowing steps (parameters, moments and step "
          "count untouched) and backs off until a step applies") {
    using G = CpuBackend<mmalign::float16>;
    G be;
    const test::ClipBatch batch = test::half_batch<mmalign::float16>();
    auto px = to_backend(be, batch.pixels);
    test::HalfRun<G> run(be);
    LossScaler<G> scaler(LossScaler<G>::Config{});  // init_scale 2^16: scaled gradients exceed 65504
    int skipped = 0;
    bool applied = false;
    for (int s = 0; s < 8 && !applied; ++s) {
        CAPTURE(s);
        std::vector<Tensor<float>> before;
        run.model.visit([&](const std::string&, auto& p) { before.push_back(to_float(be, p.value.cview())); });
        test::clip_infonce_backward(be, run.model, px.cview(), batch.ids, batch.mask, 3, float(scaler.scale()));
        applied = scaler.step(be, run.opt, run.model);
        std::size_t i = 0, changed = 0;
        run.model.visit([&](const std::string&, auto& p) {
            changed += !same_bits(to_float(be, p.value.cview()).view(), before[i++].view());
        });
        if (applied) {
            CHECK(changed > 0);
            CHECK(run.opt.step_count() == 1);
        } else {
            ++skipped;
            CHECK(changed == 0);
            CHECK(run.opt.step_count() == 0);
            CHECK(run.opt.state().empty());
        }
    }
    CHECK(applied);
    CHECK(skipped >= 1);
    CHECK(scaler.skipped_steps() == skipped);
    CHECK(scaler.scale() == std::ldexp(65536.0, -skipped));
}

TEST_CASE_TEMPLATE("a 16-bit CPU mixed-precision CLIP run with LossScaler saved after 2 steps and resumed in fresh "
                   "objects equals 4 uninterrupted steps bit for bit (float master weights and scaler restored)",
                   T, mmalign::bfloat16, mmalign::float16) {
    CpuBackend<T> be;
    test::resume_equals_uninterrupted(be);
}

TEST_CASE_TEMPLATE("checkpoints cross storage types on the CPU: float into 16-bit (rounded parameters; masters the "
                   "unrounded values) and 16-bit into float (masters ignored)",
                   T, mmalign::bfloat16, mmalign::float16) {
    CpuBackend<T> be;
    test::checkpoints_cross_storage(be);
}

TEST_CASE_TEMPLATE("load_master_weights starts 16-bit CPU training from a Hugging Face checkpoint's unrounded values, "
                   "and a step-0 checkpoint keeps them",
                   T, mmalign::bfloat16, mmalign::float16) {
    CpuBackend<T> be;
    test::master_weights_from_hf(be);
}
