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

#include "mmalign/backend/cpu/backend.hpp"
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
#include "support/temp_dir.hpp"

using namespace mmalign;
using test::check_norm;
using test::random_rounded;
using test::rounded;
using test::to_backend;
using test::to_float;
using test::unit_roundoff;

namespace {

using Cpu = CpuBackend<float>;

/// Bit-for-bit equality of two float tensors (NaN payloads included).
bool same_bits(ConstView<float> a, ConstView<float> b) {
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(float) * std::size_t(a.numel())) == 0;
}

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
    for (std::int64_t step = 1; step <= 3; ++step) {
        const AdamWHyper h{.lr = 0.01, .weight_decay = 0.1, .step = step};
        cpu.adamw_step(p.view(), g0.view(), m.view(), v.view(), h);
        AdamWHyper hs = h;
        hs.grad_scale = 1.0 / 1024.0;
        be.adamw_step(gp.view(), gg.cview(), gm.view(), gv.view(), hs, master.view());
    }
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

namespace {
/// A CLIP-style pre-norm stack (3 layers, quick_gelu, causal + padding) forward and backward in
/// float on CpuBackend<float> and in 16-bit storage on CpuBackend<T>, the given attention path
/// on both (tests/cuda/test_cuda_half.cu's check_stack).
template <class T>
void check_stack(bool fused) {
    using G = CpuBackend<T>;
    Cpu cpu;
    G be;
    be.set_fused_attention(fused);  // the float reference takes the plain path, as in the CUDA test
    typename TransformerStack<Cpu, PreNorm>::Config cc;
    cc.layers = 3;
    cc.block.dim = 64, cc.block.heads = 4, cc.block.mlp_hidden = 128, cc.block.activation = Activation::quick_gelu;
    typename TransformerStack<G, PreNorm>::Config gc;
    gc.layers = 3;
    gc.block.dim = 64, gc.block.heads = 4, gc.block.mlp_hidden = 128, gc.block.activation = Activation::quick_gelu;
    TransformerStack<Cpu, PreNorm> cm(cc);
    TransformerStack<G, PreNorm> gm(gc);
    unsigned seed = 40;
    cm.visit([&](const std::string& name, Parameter<float>& p) {
        p.value = random_rounded<T>(p.shape(), seed++, -0.3, 0.3);
        if (name.find("norm") != std::string::npos && name.find("weight") != std::string::npos)
            for (auto& v : p.value) v = static_cast<float>(T(v + 1.0f));
    });
    copy_parameters(be, gm, cm);
    std::vector<Parameter<float>*> host;
    cm.visit([&](const std::string&, Parameter<float>& p) { host.push_back(&p); });
    const Tensor<float> x = random_rounded<T>({3, 11, 64}, 90), dy = random_rounded<T>({3, 11, 64}, 91);
    const std::vector<std::int32_t> keep = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0,
                                            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    Tensor<float> y(x.shape()), dx(x.shape());
    typename TransformerStack<Cpu, PreNorm>::Saved cs;
    typename TransformerStack<G, PreNorm>::Saved gs;
    cm.forward(cpu, x.view(), {}, AttentionMask<float>{.key_keep = keep.data(), .causal = true}, {}, y.view(), &cs);
    cm.backward(cpu, cs, dy.view(), dx.view(), {}, GradMode::accumulate);
    auto gx = to_backend(be, x), gdy = to_backend(be, dy);
    typename G::Tensor gy(x.shape(), std::numeric_limits<T>::quiet_NaN()), gdx(x.shape(), std::numeric_limits<T>::quiet_NaN());
    gm.forward(be, gx.cview(), {}, AttentionMask<T>{.key_keep = keep.data(), .causal = true}, {}, gy.view(), &gs);
    gm.backward(be, gs, gdy.cview(), gdx.view(), {}, GradMode::accumulate);
    const double u = unit_roundoff<T>;
    check_norm("stack y", to_float(be, gy.cview()).view(), y.view(), 8 * u);
    check_norm("stack d_x", to_float(be, gdx.cview()).view(), dx.view(), 16 * u);
    std::size_t i = 0;
    gm.visit([&](const std::string& name, auto& p) {
        CAPTURE(name);
        REQUIRE(p.has_grad());
        const Parameter<float>& ref = *host[i++];
        // The key projection's bias has an exactly zero gradient (softmax is shift invariant):
        // both sides hold rounding noise only; it must be small next to the other gradients.
        if (name.find("k_proj.bias") != std::string::npos) {
            const Tensor<float> g = to_float(be, p.grad.cview());
            double worst = 0, scale = 0;
            for (float v : g) worst = std::max(worst, double(std::abs(v)));
            for (const Parameter<float>* q : host)
                for (float v : q->grad) scale = std::max(scale, double(std::abs(v)));
            CHECK(worst <= 16 * u * scale);
            return;
        }
        check_norm("d " + name, to_float(be, p.grad.cview()).view(), ref.grad.view(), 16 * u);
    });
}
}  // namespace

TEST_CASE_TEMPLATE("a 16-bit CPU pre-norm transformer stack follows the float one, plain and fused attention", T,
                   mmalign::bfloat16, mmalign::float16) {
    SUBCASE("plain attention") { check_stack<T>(false); }
    SUBCASE("fused attention") { check_stack<T>(true); }
}

TEST_CASE_TEMPLATE("CLIP loaded from an HF float checkpoint into 16-bit CPU storage reproduces HF's embeddings", T,
                   mmalign::bfloat16, mmalign::float16) {
    using G = CpuBackend<T>;
    const std::string root = std::string(MMALIGN_FIXTURE_DIR) + "/clip/";
    for (const std::string name : {"tiny_quick_gelu", "odd_grid_gelu"}) {
        CAPTURE(name);
        G be;
        auto model = Clip<G>::from_pretrained(be, root + name);  // float checkpoint, rounded on load
        auto exp = io::SafetensorsFile::open(root + name + "/expected.safetensors");
        const Tensor<float> pixels = exp.read<float>("pixel_values");
        const Tensor<float> idf = exp.read<float>("input_ids"), mf = exp.read<float>("attention_mask");
        const std::vector<std::int32_t> ids(idf.begin(), idf.end()), mask(mf.begin(), mf.end());
        auto px = to_backend(be, pixels);
        auto out = model.forward(be, px.cview(), ids, mask, idf.dim(0));
        const double u = unit_roundoff<T>;
        check_norm("image_embeds", to_float(be, out.image_embeds.cview()).view(), exp.read<float>("image_embeds").view(), 8 * u);
        check_norm("text_embeds", to_float(be, out.text_embeds.cview()).view(), exp.read<float>("text_embeds").view(), 8 * u);
    }
}

TEST_CASE("CPU mixed-precision training: float16 storage, loss scaling and float master weights follow the float run") {
    using G = CpuBackend<mmalign::float16>;
    const std::string dir = std::string(MMALIGN_FIXTURE_DIR) + "/clip/tiny_quick_gelu";
    const test::ClipBatch batch = test::half_batch<mmalign::float16>();
    const Tensor<float>& pixels = batch.pixels;
    const index_t N = batch.pairs;
    Cpu cpu;
    G be;
    auto cm = test::tiny_clip<Cpu>();
    cm.visit([](const std::string&, Parameter<float>& p) { p.value = rounded<mmalign::float16>(p.value); });
    auto gm = Clip<G>::from_pretrained(be, dir);  // the same weights, rounded on load
    AdamW<Cpu> copt(test::HalfRun<Cpu>::adamw_config());
    AdamW<G> gopt(test::HalfRun<G>::adamw_config());
    // 2^10, not torch's 2^16: this model's scaled feature gradients reach ~7·2^10 and float16
    // overflows at 65504, where GradScaler would skip the first steps and back off to the same.
    LossScaler<G>::Config sc;
    sc.init_scale = 1024.0;
    LossScaler<G> scaler(sc);
    auto gpx = to_backend(be, pixels);
    std::vector<Tensor<float>> initial;
    cm.visit([&](const std::string&, Parameter<float>& p) { initial.push_back(p.value); });
    const double logit_scale = std::exp(double(cm.logit_scale.value.data()[0]));
    for (int step = 0; step < 3; ++step) {
        CAPTURE(step);
        const float lc = test::clip_infonce_backward(cpu, cm, pixels.view(), batch.ids, batch.mask, N);
        copt.step(cpu, cm);
        const float lg = test::clip_infonce_backward(be, gm, gpx.cview(), batch.ids, batch.mask, N, float(scaler.scale()));
        // The logits are cosines × exp(logit_scale); the mean cross-entropy moves by at most twice
        // the largest logit change, and cosines of 8u-close features differ by at most 16u.
        CHECK(std::abs(lg - lc) <= 16 * unit_roundoff<mmalign::float16> * logit_scale);
        CHECK(scaler.step(be, gopt, gm));
    }
    CHECK(scaler.skipped_steps() == 0);
    CHECK(gopt.step_count() == 3);
    // The three updates point the float run's way (the whole update's direction: Adam's first
    // steps move weights whose gradient is rounding noise by about ±lr either way).
    std::vector<const Tensor<float>*> ref;
    cm.visit([&](const std::string&, Parameter<float>& p) { ref.push_back(&p.value); });
    std::size_t i = 0;
    double dot = 0, n_cpu = 0, n_half = 0;
    gm.visit([&](const std::string&, auto& p) {
        const Tensor<float> w = to_float(be, p.value.cview());
        for (index_t j = 0; j < w.numel(); ++j) {
            const double dc = double(ref[i]->data()[j]) - initial[i].data()[j];
            const double dg = double(w.data()[j]) - initial[i].data()[j];
            dot += dc * dg, n_cpu += dc * dc, n_half += dg * dg;
        }
        ++i;
    });
    const double cosine = dot / std::sqrt(n_cpu * n_half);
    INFO("cosine of the float16 and float updates " << cosine << ", norms " << std::sqrt(n_half) << " / "
                                                    << std::sqrt(n_cpu));
    CHECK(cosine >= 0.95);
    CHECK(std::abs(std::sqrt(n_half) / std::sqrt(n_cpu) - 1) <= 0.05);
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
    using G = CpuBackend<T>;
    G be;
    const test::ClipBatch batch = test::half_batch<T>();
    auto px = to_backend(be, batch.pixels);
    test::TempDir tmp;
    const std::string path = tmp / "resume.safetensors";

    test::HalfRun<G> whole(be);
    test::half_steps(be, whole, batch, px.cview(), 4);

    test::HalfRun<G> first(be);
    test::half_steps(be, first, batch, px.cview(), 2);
    save_checkpoint(be, path, first.model, first.opt, 2, {.scaler = &first.scaler});
    {
        auto f = io::SafetensorsFile::open(path);
        CHECK(f.metadata().at("master_weights") == "true");
        for (const auto& entry : first.opt.state()) {
            const std::string& name = entry.first;
            CAPTURE(name);
            REQUIRE(f.contains("optim." + name + ".master"));
            CHECK(f.dtype("optim." + name + ".master") == "F32");
            CHECK(f.dtype("model." + name) == "F32");
        }
    }
    test::HalfRun<G> resumed(be);  // the initial weights, no optimizer state, the initial scale
    CHECK(load_checkpoint(be, path, resumed.model, resumed.opt, {.scaler = &resumed.scaler}) == 2);
    CHECK(resumed.scaler.scale() == first.scaler.scale());
    CHECK(resumed.scaler.growth_tracker() == 2);
    REQUIRE(resumed.opt.state().size() == first.opt.state().size());
    for (auto& [name, st] : resumed.opt.state()) {
        CAPTURE(name);
        CHECK(test::same_values(be, st.master.cview(), first.opt.state().at(name).master.cview()));
    }
    test::half_steps(be, resumed, batch, px.cview(), 2);

    CHECK(resumed.opt.step_count() == whole.opt.step_count());
    CHECK(resumed.scaler.scale() == whole.scaler.scale());
    CHECK(resumed.scaler.scale() == 2048.0);  // grew after step 3, in the resumed half
    CHECK(resumed.scaler.growth_tracker() == whole.scaler.growth_tracker());
    CHECK(resumed.scaler.skipped_steps() == whole.scaler.skipped_steps());
    std::vector<ConstView<T>> want;
    whole.model.visit([&](const std::string&, auto& p) { want.push_back(p.value.cview()); });
    std::size_t i = 0;
    resumed.model.visit([&](const std::string& name, auto& p) {
        CAPTURE(name);
        CHECK(test::same_values(be, p.value.cview(), want[i++]));
    });
    for (auto& [name, st] : resumed.opt.state()) {
        CAPTURE(name);
        const auto& w = whole.opt.state().at(name);
        CHECK(test::same_values(be, st.master.cview(), w.master.cview()));
        CHECK(test::same_values(be, st.exp_avg.cview(), w.exp_avg.cview()));
        CHECK(test::same_values(be, st.exp_avg_sq.cview(), w.exp_avg_sq.cview()));
    }
}

TEST_CASE_TEMPLATE("checkpoints cross storage types on the CPU: float into 16-bit (rounded parameters; masters the "
                   "unrounded values) and 16-bit into float (masters ignored)",
                   T, mmalign::bfloat16, mmalign::float16) {
    using G = CpuBackend<T>;
    G be;
    Cpu cpu;
    const test::ClipBatch batch = test::half_batch<T>();
    auto px = to_backend(be, batch.pixels);
    test::TempDir tmp;
    const std::string from_float = tmp / "from_float.safetensors", from_half = tmp / "from_half.safetensors";

    auto cm = test::tiny_clip<Cpu>();
    AdamW<Cpu> copt(test::HalfRun<Cpu>::adamw_config());
    test::clip_infonce_backward(cpu, cm, batch.pixels.view(), batch.ids, batch.mask, 3);
    copt.step(cpu, cm);
    save_checkpoint(from_float, cm, copt, 1);

    test::HalfRun<G> half(be);
    CHECK(load_checkpoint(be, from_float, half.model, half.opt) == 1);
    std::vector<Tensor<float>> float_values;
    cm.visit([&](const std::string&, Parameter<float>& p) { float_values.push_back(p.value); });
    std::size_t i = 0;
    half.model.visit([&](const std::string& name, auto& p) {
        CAPTURE(name);
        CHECK(same_bits(to_float(be, p.value.cview()).view(), rounded<T>(float_values[i++]).view()));
    });
    test::check_masters_equal(be, half.opt, half.model, float_values);
    test::half_steps(be, half, batch, px.cview(), 1);
    CHECK(half.opt.step_count() == 2);
    test::check_parameters_are_rounded_masters(be, half.opt, half.model);

    save_checkpoint(be, from_half, half.model, half.opt, 2);
    auto cm2 = Clip<Cpu>(Clip<Cpu>::Config::from_hf(
        io::load_clip_config(std::string(MMALIGN_FIXTURE_DIR) + "/clip/tiny_quick_gelu/config.json")));
    AdamW<Cpu> copt2;
    CHECK(load_checkpoint(from_half, cm2, copt2) == 2);
    std::vector<Tensor<float>> half_values;
    half.model.visit([&](const std::string&, auto& p) { half_values.push_back(to_float(be, p.value.cview())); });
    i = 0;
    cm2.visit([&](const std::string& name, Parameter<float>& p) {
        CAPTURE(name);
        CHECK(same_bits(p.value.view(), half_values[i++].view()));
    });
    CHECK(copt2.step_count() == 2);
}

TEST_CASE_TEMPLATE("load_master_weights starts 16-bit CPU training from a Hugging Face checkpoint's unrounded values, "
                   "and a step-0 checkpoint keeps them",
                   T, mmalign::bfloat16, mmalign::float16) {
    using G = CpuBackend<T>;
    G be;
    const test::ClipBatch batch = test::half_batch<T>();
    auto px = to_backend(be, batch.pixels);
    const std::string dir = std::string(MMALIGN_FIXTURE_DIR) + "/clip/tiny_quick_gelu";
    const auto source = io::Checkpoint::open(dir);
    test::HalfRun<G> run(be);  // from_pretrained: the parameters rounded to T
    load_master_weights(be, run.opt, run.model, source);
    std::vector<Tensor<float>> file_values;
    run.model.visit([&](const std::string& name, auto& p) {
        Tensor<float> v(p.shape());
        source.read_into(name, v.view());
        file_values.push_back(std::move(v));
    });
    test::check_masters_equal(be, run.opt, run.model, file_values);
    // Saved before any step (masters without moments) and resumed: the masters survive.
    test::TempDir tmp;
    save_checkpoint(be, tmp / "step0.safetensors", run.model, run.opt, 0);
    test::HalfRun<G> resumed(be);
    CHECK(load_checkpoint(be, tmp / "step0.safetensors", resumed.model, resumed.opt) == 0);
    test::check_masters_equal(be, resumed.opt, resumed.model, file_values);
    test::half_steps(be, run, batch, px.cview(), 2);
    test::check_parameters_are_rounded_masters(be, run.opt, run.model);

    test::HalfRun<G> other(be);
    const std::string msg = test::io_error_of([&] { load_master_weights(be, other.opt, other.model, source, "nope."); });
    CHECK(msg.find("nope.") != std::string::npos);
    CHECK(other.opt.state().empty());
}
