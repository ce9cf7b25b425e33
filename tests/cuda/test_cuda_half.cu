// The 16-bit CUDA backends, CudaBackend<bfloat16> and CudaBackend<float16>, against the CPU's float
// backend on the same inputs rounded to the format. Tolerances follow from the format's unit
// roundoff u (bfloat16 2^-8, float16 2^-11), fixed before the first GPU run:
//  * one op: inputs are exactly representable, the device computes in float and rounds the
//    output once, so each element is within u·|want| plus float accumulation noise: 2u of the
//    largest |want|.
//  * modules and models: every stored activation is rounded, so errors compound over layers; the
//    relative norm of the difference must stay within 8u (forward) and 16u (gradients).
//  * statistics (LayerNorm mean/rstd, log-sum-exps, losses) are float: 1e-5 of the CPU's.
// Mixed-precision training: float16 with loss scaling and float master weights follows the CPU's
// float run (losses within the bound above, the 3-step update's direction within cosine 0.95);
// a checkpointed float16 run resumes bit for bit, its float master weights restored.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <unistd.h>
#include <vector>

#include "cuda/cuda_support.hpp"
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
#include "support/half.hpp"
#include "support/half_cases.hpp"
#include "support/temp_dir.hpp"
#include "support/errors.hpp"

using namespace mmalign;
using test::check_norm;
using test::Cpu;
using test::random_host;
using test::random_rounded;
using test::rounded;
using test::unit_roundoff;

namespace {

template <class T>
DeviceTensor<T> up(CudaBackend<T>& be, const Tensor<float>& h) {
    DeviceTensor<T> d(h.shape());
    be.from_host(h.cview(), d.view());
    return d;
}
template <class T>
Tensor<float> down(CudaBackend<T>& be, ConstView<T> d) {
    Tensor<float> h(d.shape());
    be.to_host(d, h.view());
    return h;
}
template <class T>
DeviceTensor<T> poisoned(Shape s) {
    return DeviceTensor<T>(s, std::numeric_limits<T>::quiet_NaN());
}
/// Element-wise: max |got − want| ≤ tol · max(1, max |want|), every element written.
template <class T>
void check_op(CudaBackend<T>& be, const std::string& what, ConstView<T> got, ConstView<float> want, double tol) {
    const Tensor<float> g = down(be, got);
    test::check_close(what, g.view(), want, tol);
}
}  // namespace

TEST_CASE_TEMPLATE("16-bit storage: the device rounds float like the host, and widening is exact", T, mmalign::bfloat16, float16) {
    CudaBackend<T> be;
    Tensor<float> x = random_host({1000}, 1, -3, 3);
    x.data()[0] = 1e-7f, x.data()[1] = 70000.f, x.data()[2] = -0.f, x.data()[3] = 1.00390625f;
    DeviceTensor<T> d = up(be, x);  // rounded on the host
    DeviceTensor<float> f(x.shape());
    f.copy_from_host(x.cview());  // float on the device
    DeviceTensor<T> c(x.shape());
    be.cast(f.cview(), c.view());  // rounded by the kernel
    std::vector<T> a(1000), b(1000);
    be.to_host(d.cview(), TensorView<T>(a.data(), x.shape()));
    be.to_host(c.cview(), TensorView<T>(b.data(), x.shape()));
    for (std::size_t i = 0; i < a.size(); ++i) {
        CAPTURE(i);
        REQUIRE(a[i].bits == T(x.data()[i]).bits);
        REQUIRE(b[i].bits == a[i].bits);
    }
    DeviceTensor<float> w(x.shape());
    be.cast(c.cview(), w.view());
    Tensor<float> back(x.shape());
    be.to_host(w.cview(), back.view());  // float statistics-style transfer
    for (index_t i = 0; i < x.numel(); ++i) REQUIRE(back.data()[i] == static_cast<float>(a[static_cast<std::size_t>(i)]));
}

TEST_CASE_TEMPLATE("16-bit gemms accumulate in float and round once: plain, strided and (batch, head) products", T,
                   mmalign::bfloat16, float16) {
    const double tol = 2 * unit_roundoff<T>;
    Cpu cpu;
    CudaBackend<T> be;
    for (Trans ta : {Trans::N, Trans::T})
        for (Trans tb : {Trans::N, Trans::T}) {
            CAPTURE(int(ta));
            CAPTURE(int(tb));
            const index_t m = 37, n = 45, k = 70;
            const Tensor<float> a = random_rounded<T>({m * k}, 2), b = random_rounded<T>({k * n}, 3);
            const Tensor<float> c0 = random_rounded<T>({m * n}, 4);
            const index_t lda = ta == Trans::N ? k : m, ldb = tb == Trans::N ? n : k;
            Tensor<float> want = c0;
            cpu.gemm(ta, tb, m, n, k, 0.5f, a.data(), lda, b.data(), ldb, 0.25f, want.data(), n);
            auto da = up(be, a), db = up(be, b), dc = up(be, c0);
            be.gemm(ta, tb, m, n, k, 0.5f, da.data(), lda, db.data(), ldb, 0.25f, dc.data(), n);
            check_op(be, "gemm", dc.cview(), want.view(), tol);
        }
    // Attention's score product over [B, T, H·dh] rows: a pointer-array batch.
    const index_t B = 2, H = 3, Tq = 5, dh = 8, D = H * dh;
    const Tensor<float> q = random_rounded<T>({B, Tq, D}, 5), k = random_rounded<T>({B, Tq, D}, 6);
    Tensor<float> want(Shape{B, H, Tq, Tq});
    cpu.gemm_batched_2d(Trans::N, Trans::T, Tq, Tq, dh, 1.f, q.data(), D, Tq * D, dh, k.data(), D, Tq * D, dh, 0.f,
                        want.data(), Tq, H * Tq * Tq, Tq * Tq, B, H);
    auto dq = up(be, q), dk = up(be, k);
    auto ds = poisoned<T>(want.shape());
    be.gemm_batched_2d(Trans::N, Trans::T, Tq, Tq, dh, 1.f, dq.data(), D, Tq * D, dh, dk.data(), D, Tq * D, dh, 0.f,
                       ds.data(), Tq, H * Tq * Tq, Tq * Tq, B, H);
    check_op(be, "batched scores", ds.cview(), want.view(), tol);
    Tensor<float> want_s(Shape{3, 5, 4});
    const Tensor<float> x = random_rounded<T>({3, 5, 6}, 7), y = random_rounded<T>({3, 6, 4}, 8);
    cpu.gemm_strided_batched(Trans::N, Trans::N, 5, 4, 6, 1.f, x.data(), 6, 30, y.data(), 4, 24, 0.f, want_s.data(), 4,
                             20, 3);
    auto dx = up(be, x), dy = up(be, y);
    auto dz = poisoned<T>(want_s.shape());
    be.gemm_strided_batched(Trans::N, Trans::N, 5, 4, 6, 1.f, dx.data(), 6, 30, dy.data(), 4, 24, 0.f, dz.data(), 4, 20,
                            3);
    check_op(be, "strided batch", dz.cview(), want_s.view(), tol);
}

TEST_CASE_TEMPLATE("16-bit row kernels: linear epilogue, LayerNorm (float statistics), softmaxes, activations", T,
                   mmalign::bfloat16, float16) {
    const double tol = 2 * unit_roundoff<T>;
    Cpu cpu;
    CudaBackend<T> be;
    const index_t M = 13, K = 24, N = 40;
    const Tensor<float> x = random_rounded<T>({M, K}, 10), w = random_rounded<T>({N, K}, 11),
                        bias = random_rounded<T>({N}, 12);
    for (Activation act : {Activation::none, Activation::gelu, Activation::quick_gelu, Activation::relu}) {
        Tensor<float> y(Shape{M, N}), pre(Shape{M, N});
        cpu.linear_forward(x.view(), w.view(), bias.data(), act, y.view(), pre.data());
        auto dx = up(be, x), dw = up(be, w), db = up(be, bias);
        auto gy = poisoned<T>({M, N}), gp = poisoned<T>({M, N});
        be.linear_forward(dx.cview(), dw.cview(), db.data(), act, gy.view(), gp.data());
        // The product is rounded once before the epilogue reads it: two roundings on y.
        check_op(be, "linear y", gy.cview(), y.view(), 2 * tol);
        check_op(be, "linear pre", gp.cview(), pre.view(), tol);
    }
    // The cuBLASLt path fuses bias and activation into the product: one rounding of a float result
    // (tanh GELU gets another u for cuBLASLt's approximate tanh).
    be.set_lt_epilogue(true);
    for (Activation act : {Activation::none, Activation::relu, Activation::gelu_tanh}) {
        Tensor<float> y(Shape{M, N});
        cpu.linear_forward(x.view(), w.view(), bias.data(), act, y.view(), nullptr);
        auto dx = up(be, x), dw = up(be, w), db = up(be, bias);
        auto gy = poisoned<T>({M, N});
        be.linear_forward(dx.cview(), dw.cview(), db.data(), act, gy.view(), nullptr);
        check_op(be, "lt linear y", gy.cview(), y.view(), act == Activation::gelu_tanh ? 3 * unit_roundoff<T> : tol);
    }
    CHECK(be.lt_plans() == 3);
    be.set_lt_epilogue(false);
    // LayerNorm with a large common offset: float statistics keep it exact enough.
    const index_t C = 48;
    Tensor<float> xn = random_rounded<T>({M, C}, 13, -2, 2);
    for (index_t i = 0; i < xn.numel(); ++i) xn.data()[i] = static_cast<float>(T(xn.data()[i] + 8.0f));
    const Tensor<float> g = random_rounded<T>({C}, 14, 0.5, 1.5), b = random_rounded<T>({C}, 15),
                        dy = random_rounded<T>({M, C}, 16);
    Tensor<float> y(xn.shape()), mean(Shape{M}), rstd(Shape{M}), dxn(xn.shape()), dg(Shape{C}, 0.f), dbn(Shape{C}, 0.f);
    cpu.layer_norm_forward(xn.view(), g.view(), b.view(), 1e-5, y.view(), mean.data(), rstd.data());
    cpu.layer_norm_backward(dy.view(), xn.view(), g.view(), mean.data(), rstd.data(), dxn.view(), dg.data(), dbn.data());
    auto gx = up(be, xn), gg = up(be, g), gb = up(be, b), gdy = up(be, dy);
    auto gyn = poisoned<T>(xn.shape()), gdx = poisoned<T>(xn.shape());
    DeviceTensor<float> gmean(Shape{M}), grstd(Shape{M});
    auto gdg = up(be, Tensor<float>(Shape{C}, 0.f)), gdb = up(be, Tensor<float>(Shape{C}, 0.f));
    be.layer_norm_forward(gx.cview(), gg.cview(), gb.cview(), 1e-5, gyn.view(), gmean.data(), grstd.data());
    be.layer_norm_backward(gdy.cview(), gx.cview(), gg.cview(), gmean.data(), grstd.data(), gdx.view(), gdg.data(),
                           gdb.data());
    check_op(be, "layer_norm y", gyn.cview(), y.view(), tol);
    Tensor<float> hm(Shape{M}), hr(Shape{M});
    be.to_host(gmean.cview(), hm.view());
    be.to_host(grstd.cview(), hr.view());
    test::check_close("layer_norm mean (float)", hm.view(), mean.view(), 1e-5);
    test::check_close("layer_norm rstd (float)", hr.view(), rstd.view(), 1e-5);
    check_op(be, "layer_norm d_x", gdx.cview(), dxn.view(), tol);
    check_op(be, "layer_norm d_w", gdg.cview(), dg.view(), tol);
    check_op(be, "layer_norm d_b", gdb.cview(), dbn.view(), tol);
    // Attention softmax under padding + causal masks, then its backward.
    const index_t B = 2, H = 2, Tq = 6, Tk = 6;
    const Tensor<float> s = random_rounded<T>({B, H, Tq, Tk}, 17, -4, 4), dp = random_rounded<T>({B, H, Tq, Tk}, 18);
    const std::vector<std::int32_t> keep = {1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1};
    Tensor<float> p = s, dsc = dp;
    cpu.attention_softmax_forward(p.view(), 0.5f, AttentionMask<float>{.key_keep = keep.data(), .causal = true});
    cpu.attention_softmax_backward(p.view(), dsc.view(), 0.5f);
    auto gs = up(be, s);
    be.attention_softmax_forward(gs.view(), 0.5f, AttentionMask<T>{.key_keep = keep.data(), .causal = true});
    check_op(be, "attention softmax", gs.cview(), p.view(), tol);
    // The backward reads the stored (rounded) probabilities: compare with the CPU on those.
    const Tensor<float> p16 = rounded<T>(p);
    Tensor<float> dsc16 = dp;
    cpu.attention_softmax_backward(p16.view(), dsc16.view(), 0.5f);
    auto gd = up(be, dp);
    be.attention_softmax_backward(gs.cview(), gd.view(), 0.5f);
    check_op(be, "attention softmax backward", gd.cview(), dsc16.view(), tol);
    for (Activation act : {Activation::gelu, Activation::gelu_tanh, Activation::quick_gelu, Activation::relu}) {
        const Tensor<float> a = random_rounded<T>({300}, 19, -4, 4), da = random_rounded<T>({300}, 20);
        Tensor<float> fa(a.shape()), dfa(a.shape());
        cpu.activation_forward(act, a.view(), fa.view());
        cpu.activation_backward(act, a.view(), da.view(), dfa.view());
        auto ga = up(be, a), gda = up(be, da);
        auto gfa = poisoned<T>(a.shape()), gdfa = poisoned<T>(a.shape());
        be.activation_forward(act, ga.cview(), gfa.view());
        be.activation_backward(act, ga.cview(), gda.cview(), gdfa.view());
        check_op(be, "activation", gfa.cview(), fa.view(), tol);
        check_op(be, "activation backward", gdfa.cview(), dfa.view(), tol);
    }
}

TEST_CASE_TEMPLATE("16-bit losses keep float log-sum-exps; AdamW updates a float master copy; overflow is detected", T,
                   mmalign::bfloat16, float16) {
    const double tol = 2 * unit_roundoff<T>;
    Cpu cpu;
    CudaBackend<T> be;
    const index_t R = 9, V = 700;
    const Tensor<float> logits = random_rounded<T>({R, V}, 30, -5, 5);
    const std::vector<std::int32_t> tgt = {3, 699, -100, 0, 5, 5, 17, 650, 1};
    Tensor<float> lse(Shape{R}), dl(Shape{R, V});
    const auto ref = cpu.cross_entropy_forward(logits.view(), tgt.data(), -100, 0.1f, lse.data());
    cpu.cross_entropy_backward(logits.view(), tgt.data(), lse.data(), -100, 0.1f, ref.count, 1.f, dl.view());
    auto gl = up(be, logits);
    DeviceTensor<float> glse(Shape{R});
    const auto got = be.cross_entropy_forward(gl.cview(), tgt.data(), -100, 0.1f, glse.data());
    CHECK(got.count == ref.count);
    CHECK(std::abs(got.loss - ref.loss) <= 1e-5 * std::abs(ref.loss));
    auto gdl = poisoned<T>(dl.shape());
    be.cross_entropy_backward(gl.cview(), tgt.data(), glse.data(), -100, 0.1f, got.count, 1.f, gdl.view());
    check_op(be, "cross_entropy d_logits", gdl.cview(), dl.view(), tol);
    // L2 normalisation with float norms.
    const Tensor<float> f = random_rounded<T>({6, 32}, 31), df = random_rounded<T>({6, 32}, 32);
    Tensor<float> nf(f.shape()), norms(Shape{6}), dnf(f.shape());
    cpu.l2_normalize_forward(f.view(), nf.view(), norms.data());
    const Tensor<float> nf16 = rounded<T>(nf);
    cpu.l2_normalize_backward(df.view(), nf16.view(), norms.data(), dnf.view());
    auto gf = up(be, f), gdf = up(be, df);
    auto gnf = poisoned<T>(f.shape()), gdnf = poisoned<T>(f.shape());
    DeviceTensor<float> gnorm(Shape{6});
    be.l2_normalize_forward(gf.cview(), gnf.view(), gnorm.data());
    be.l2_normalize_backward(gdf.cview(), gnf.cview(), gnorm.data(), gdnf.view());
    check_op(be, "l2_normalize", gnf.cview(), nf.view(), tol);
    check_op(be, "l2_normalize backward", gdnf.cview(), dnf.view(), tol);
    CHECK(std::abs(be.sum(glse.cview()) - cpu.sum(lse.view())) <= 1e-5 * std::abs(cpu.sum(lse.view())));
    // AdamW with a float master copy and an unscale factor: the master follows the CPU's float
    // update exactly (up to float rounding); the parameter holds the master rounded.
    const Tensor<float> p0 = random_rounded<T>({257}, 33), g0 = random_rounded<T>({257}, 34);
    Tensor<float> p = p0, m(Shape{257}, 0.f), v(Shape{257}, 0.f);
    DeviceTensor<T> gp = up(be, p0), gg = up(be, rounded<T>([&] {
                                        Tensor<float> s = g0;
                                        for (float& e : s) e *= 1024.f;
                                        return s;
                                    }()));
    DeviceTensor<float> master(p0.shape()), gm(p0.shape(), 0.f), gv(p0.shape(), 0.f);
    be.cast(gp.cview(), master.view());
    test::adamw_three_steps(cpu, p.view(), g0.view(), m.view(), v.view(), be, gp.view(), gg.cview(), gm.view(),
                            gv.view(), master.view());
    Tensor<float> hm(p0.shape());
    be.to_host(master.cview(), hm.view());
    test::check_close("master weights", hm.view(), p.view(), 1e-6);
    check_op(be, "16-bit weights", gp.cview(), rounded<T>(hm).view(), 0.0);  // the device master, rounded
    // Overflow detection over several tensors.
    std::vector<ConstView<T>> views = {gp.cview(), gg.cview()};
    CHECK(be.all_finite(std::span<const ConstView<T>>(views)));
    Tensor<float> bad = p0;
    bad.data()[100] = std::numeric_limits<float>::infinity();
    DeviceTensor<T> gbad = up(be, bad);
    views.push_back(gbad.cview());
    CHECK_FALSE(be.all_finite(std::span<const ConstView<T>>(views)));
}

TEST_CASE_TEMPLATE("16-bit embedding gradients: each row summed in float over its occurrences and rounded once", T,
                   mmalign::bfloat16, float16) {
    Cpu cpu;
    CudaBackend<T> be;
    const index_t V = 40, D = 24, n = 700;
    std::vector<std::int32_t> ids(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) ids[static_cast<std::size_t>(i)] = i % 3 == 0 ? 7 : std::int32_t((i * 13) % V);
    // Positive contributions: a 16-bit running sum of ~230 of them would lose several bits.
    const Tensor<float> d_out = random_rounded<T>({n, D}, 60, 0.5, 1.5), table0 = random_rounded<T>({V, D}, 61);
    Tensor<float> want = table0;
    cpu.embedding_backward(ids.data(), n, d_out.view(), want.view());
    auto gd = up(be, d_out);
    auto gt = up(be, table0);
    be.embedding_backward(ids.data(), n, gd.cview(), gt.view());
    check_op(be, "embedding backward", gt.cview(), want.view(), 2 * unit_roundoff<T>);
    auto go = poisoned<T>({n, D});
    be.embedding_forward(ids.data(), n, gt.cview(), go.view());  // any table: checks the gather only
    Tensor<float> want_g(Shape{n, D});
    cpu.embedding_forward(ids.data(), n, down(be, gt.cview()).view(), want_g.view());
    check_op(be, "embedding forward", go.cview(), want_g.view(), 0.0);
}

TEST_CASE_TEMPLATE("16-bit fused attention on tensor cores equals the float reference: head widths 32, 64, 128, every mask",
                   T, mmalign::bfloat16, float16) {
    const double u = unit_roundoff<T>;
    Cpu cpu;
    CudaBackend<T> be;
    be.set_fused_attention(true);
    struct Case {
        const char* what;
        index_t B, H, Tq, Tk, dh;
        int mask;  // 0 none, 1 padding (one batch row fully hidden), 2 causal with offset, 3 additive
    };
    for (const Case cs : {Case{"none", 2, 2, 77, 77, 64, 0}, Case{"padding", 3, 2, 70, 150, 32, 1},
                          Case{"causal", 2, 3, 65, 130, 128, 2}, Case{"additive", 2, 2, 257, 257, 64, 3}}) {
        CAPTURE(cs.what);
        CAPTURE(cs.dh);
        const index_t D = cs.H * cs.dh;
        const Tensor<float> q = random_rounded<T>({cs.B, cs.Tq, D}, 70), k = random_rounded<T>({cs.B, cs.Tk, D}, 71),
                            v = random_rounded<T>({cs.B, cs.Tk, D}, 72), d_o = random_rounded<T>({cs.B, cs.Tq, D}, 73);
        std::vector<std::int32_t> keep(static_cast<std::size_t>(cs.B * cs.Tk), 1);
        if (cs.mask == 1) {
            for (index_t j = 0; j < cs.Tk; ++j) keep[static_cast<std::size_t>(j)] = 0;  // batch 0 sees nothing
            for (index_t j = cs.Tk - 40; j < cs.Tk; ++j) keep[static_cast<std::size_t>(cs.Tk + j)] = 0;
        }
        const Tensor<float> add = random_rounded<T>({cs.B, cs.Tq, cs.Tk}, 74, -3, 3);
        DeviceTensor<T> gadd = up(be, add);
        AttentionMask<float> cm;
        AttentionMask<T> gm;
        if (cs.mask == 1) cm.key_keep = gm.key_keep = keep.data();
        if (cs.mask == 2) cm.causal = gm.causal = true, cm.causal_offset = gm.causal_offset = cs.Tk - cs.Tq;
        if (cs.mask == 3) cm.additive = add.data(), gm.additive = gadd.data();
        const float scale = 1.0f / std::sqrt(float(cs.dh));
        Tensor<float> o(q.shape()), st(Shape{cs.B, cs.H, cs.Tq, 2}), dq(q.shape()), dk(k.shape()), dv(v.shape());
        cpu.attention_forward(q.data(), k.data(), v.data(), cs.Tk * D, cs.B, cs.H, cs.Tq, cs.Tk, cs.dh, scale, cm,
                              o.data(), st.data());
        cpu.attention_backward(q.data(), k.data(), v.data(), cs.Tk * D, cs.B, cs.H, cs.Tq, cs.Tk, cs.dh, scale, cm,
                               o.data(), d_o.data(), st.data(), dq.data(), dk.data(), dv.data());
        auto gq = up(be, q), gk = up(be, k), gv = up(be, v), gdo = up(be, d_o);
        for (bool wmma : {true, false}) {
            CAPTURE(wmma);
            be.set_wmma_attention(wmma);
            auto go = poisoned<T>(q.shape()), gdq = poisoned<T>(q.shape()), gdk = poisoned<T>(k.shape()),
                 gdv = poisoned<T>(v.shape());
            DeviceTensor<float> gst(st.shape(), std::numeric_limits<float>::quiet_NaN());
            be.attention_forward(gq.data(), gk.data(), gv.data(), cs.Tk * D, cs.B, cs.H, cs.Tq, cs.Tk, cs.dh, scale, gm,
                                 go.data(), gst.data());
            // P is rounded to the storage type before P·V: a few u on top of the output's rounding.
            check_op(be, "attention o", go.cview(), o.view(), 4 * u);
            Tensor<float> hst(st.shape());
            be.to_host(gst.cview(), hst.view());
            test::check_close("attention stats", hst.view(), st.view(), 1e-5);
            be.attention_backward(gq.data(), gk.data(), gv.data(), cs.Tk * D, cs.B, cs.H, cs.Tq, cs.Tk, cs.dh, scale,
                                  gm, go.data(), gdo.data(), gst.data(), gdq.data(), gdk.data(), gdv.data());
            check_norm("attention d_q", down(be, gdq.cview()).view(), dq.view(), 16 * u);
            check_norm("attention d_k", down(be, gdk.cview()).view(), dk.view(), 16 * u);
            check_norm("attention d_v", down(be, gdv.cview()).view(), dv.view(), 16 * u);
        }
    }
}

TEST_CASE_TEMPLATE("a 16-bit pre-norm transformer stack follows the float one, plain and fused attention", T, mmalign::bfloat16,
                   float16) {
    CudaBackend<T> be;
    SUBCASE("plain attention") { test::stack_follows_float(be, false); }
    SUBCASE("fused attention") { test::stack_follows_float(be, true); }
}

TEST_CASE_TEMPLATE("CLIP loaded from an HF float checkpoint into 16-bit storage reproduces HF's embeddings", T, mmalign::bfloat16,
                   float16) {
    test::clip_reproduces_hf_embeddings<CudaBackend<T>>();
}

TEST_CASE("mixed-precision training: float16 storage, loss scaling and float master weights follow the float run") {
    CudaBackend<float16> be;
    test::mixed_precision_follows_float(be);
}

TEST_CASE("a float16 mixed-precision CLIP run with LossScaler saved after 2 steps and resumed in fresh objects equals "
          "4 uninterrupted steps bit for bit (float master weights and scaler restored)") {
    CudaBackend<float16> be;
    // ... and a checkpoint missing one master beside its moments is an IoError, not a silent restart.
    test::resume_equals_uninterrupted(be, /*check_dropped_master=*/true);
}

TEST_CASE("checkpoints cross storage types: float into float16 (rounded parameters; masters the unrounded values) "
          "and float16 into float (masters ignored)") {
    CudaBackend<float16> be;
    test::checkpoints_cross_storage(be);
}

TEST_CASE("load_master_weights starts float16 training from a Hugging Face checkpoint's unrounded values") {
    CudaBackend<float16> be;
    test::master_weights_from_hf(be);
}
