// Tests of backend/cpu: every op of the CPU backend against plain loops written from its formula,
// every backward against central finite differences (double), and the thread-count invariance.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/testing/gradcheck.hpp"
#include "support/reference.hpp"

using namespace mmalign;
using mmalign::testing::check_gradient;
using mmalign::testing::fill_uniform;

namespace {

Tensor<double> random_tensor(Shape s, unsigned seed, double lo = -1, double hi = 1) {
    Tensor<double> t(s);
    fill_uniform(t.view(), seed, lo, hi);
    return t;
}

template <class T>
void check_gemm_all_transposes(CpuBackend<T>& be, double tol, index_t m = 37, index_t n = 29, index_t k = 41) {
    const index_t pad = 3;  // padded leading dimensions
    for (Trans ta : {Trans::N, Trans::T})
        for (Trans tb : {Trans::N, Trans::T}) {
            const index_t a_rows = ta == Trans::N ? m : k, a_cols = ta == Trans::N ? k : m;
            const index_t b_rows = tb == Trans::N ? k : n, b_cols = tb == Trans::N ? n : k;
            Tensor<T> a(Shape{a_rows, a_cols + pad}), b(Shape{b_rows, b_cols + pad}), c(Shape{m, n + pad}), ref;
            fill_uniform(a.view(), 1), fill_uniform(b.view(), 2), fill_uniform(c.view(), 3);
            ref = c;
            be.gemm(ta, tb, m, n, k, T(0.5), a.data(), a_cols + pad, b.data(), b_cols + pad, T(2), c.data(), n + pad);
            test::naive_gemm(ta == Trans::T, tb == Trans::T, m, n, k, T(0.5), a.data(), a_cols + pad, b.data(),
                             b_cols + pad, T(2), ref.data(), n + pad);
            CHECK(test::max_abs_diff<T>(c.view(), ref.view()) < tol);
        }
}

}  // namespace

TEST_CASE("gemm equals the triple loop for every transpose pair, leading dimension, alpha and beta") {
    CpuBackend<double> bd({.threads = 2, .gemm = cpu::GemmImpl::eigen});
    check_gemm_all_transposes(bd, 1e-12);
    CpuBackend<float> bf({.threads = 2, .gemm = cpu::GemmImpl::eigen});
    check_gemm_all_transposes(bf, 1e-4);
    if constexpr (cpu::blas_available) {
        CpuBackend<float> bb({.threads = 2, .gemm = cpu::GemmImpl::blas});
        check_gemm_all_transposes(bb, 1e-4);
    } else {
        CHECK_THROWS_AS(CpuBackend<float>({.threads = 1, .gemm = cpu::GemmImpl::blas}), ArgumentError);
        float x = 1, y = 0;
        CHECK_THROWS_AS(cpu::gemm<float>(cpu::GemmImpl::blas, 1, Trans::N, Trans::N, 1, 1, 1, 1.f, &x, 1, &x, 1, 0.f, &y, 1),
                        ArgumentError);
    }
}

TEST_CASE("products split over two threads by rows or by columns equal the triple loop") {
    CpuBackend<double> bd({.threads = 2, .gemm = cpu::GemmImpl::eigen});
    check_gemm_all_transposes(bd, 1e-10, 301, 70, 61);  // tall: row blocks
    check_gemm_all_transposes(bd, 1e-10, 40, 403, 81);  // wide and short: column blocks
    if constexpr (cpu::blas_available) {
        CpuBackend<float> bb({.threads = 2, .gemm = cpu::GemmImpl::blas});
        check_gemm_all_transposes(bb, 1e-3, 301, 70, 61);
        check_gemm_all_transposes(bb, 1e-3, 40, 403, 81);
    }
}

TEST_CASE("gemm rejects leading dimensions smaller than the operand rows") {
    CpuBackend<double> be;
    std::vector<double> a(16), b(16), c(16);
    CHECK_THROWS_AS(be.gemm(Trans::N, Trans::N, 4, 4, 4, 1.0, a.data(), 3, b.data(), 4, 0.0, c.data(), 4),
                    ArgumentError);
}

TEST_CASE("strided batched gemm multiplies each head's sub-matrices independently") {
    // Two heads of width 3 inside rows of width 6, as attention lays out q and k.
    CpuBackend<double> be({.threads = 2});
    const index_t T = 5, H = 2, dh = 3, D = H * dh;
    Tensor<double> q = random_tensor({T, D}, 4), k = random_tensor({T, D}, 5), s(Shape{H, T, T}), ref(Shape{H, T, T});
    be.gemm_strided_batched(Trans::N, Trans::T, T, T, dh, 1.0, q.data(), D, dh, k.data(), D, dh, 0.0, s.data(), T, T * T,
                            H);
    for (index_t h = 0; h < H; ++h)
        test::naive_gemm(false, true, T, T, dh, 1.0, q.data() + h * dh, D, k.data() + h * dh, D, 0.0,
                         ref.data() + h * T * T, T);
    CHECK(test::max_abs_diff<double>(s.view(), ref.view()) < 1e-12);
}

TEST_CASE("linear_forward applies bias and each activation in its epilogue and keeps the pre-activation") {
    CpuBackend<double> be;
    const index_t M = 6, K = 5, N = 4;
    Tensor<double> x = random_tensor({M, K}, 6), w = random_tensor({N, K}, 7), b = random_tensor({N}, 8);
    for (Activation act : {Activation::none, Activation::relu, Activation::gelu, Activation::gelu_tanh,
                           Activation::quick_gelu, Activation::tanh}) {
        Tensor<double> y(Shape{M, N}), pre(Shape{M, N});
        be.linear_forward(x.view(), w.view(), b.data(), act, y.view(), pre.data());
        double worst = 0;
        for (index_t i = 0; i < M; ++i)
            for (index_t j = 0; j < N; ++j) {
                double z = b(j);
                for (index_t p = 0; p < K; ++p) z += x(i, p) * w(j, p);
                worst = std::max({worst, std::abs(pre(i, j) - z), std::abs(y(i, j) - cpu::activate(act, z))});
            }
        CHECK_MESSAGE(worst < 1e-12, "activation ", to_string(act));
    }
    Tensor<double> bad(Shape{M, N + 1});
    CHECK_THROWS_AS(be.linear_forward(x.view(), w.view(), nullptr, Activation::none, bad.view(), nullptr), ShapeError);
}

TEST_CASE("activations match their closed forms at known points") {
    // Φ(1) = 0.841344746…, tanh approximation at 1: 0.841191990…, σ(1.702) = 0.845798…
    CHECK(cpu::activate(Activation::gelu, 1.0) == doctest::Approx(0.8413447460685429).epsilon(1e-14));
    CHECK(cpu::activate(Activation::gelu_tanh, 1.0) == doctest::Approx(0.8411919906082768).epsilon(1e-14));
    CHECK(cpu::activate(Activation::quick_gelu, 1.0) == doctest::Approx(1.0 / (1.0 + std::exp(-1.702))).epsilon(1e-14));
    CHECK(cpu::activate(Activation::relu, -2.0) == 0.0);
    CHECK(cpu::activate(Activation::tanh, 0.5) == doctest::Approx(0.46211715726000974).epsilon(1e-14));
    CHECK(cpu::activate(Activation::gelu, -10.0) == doctest::Approx(0.0).epsilon(1e-20));
}

TEST_CASE("activation backward equals finite differences for every activation") {
    CpuBackend<double> be;
    for (Activation act : {Activation::relu, Activation::gelu, Activation::gelu_tanh, Activation::quick_gelu,
                           Activation::tanh}) {
        Tensor<double> x = random_tensor({40}, 9, -3, 3), r = random_tensor({40}, 10), y(Shape{40}), dx(Shape{40});
        be.activation_backward(act, x.view(), r.view(), dx.view());
        auto loss = [&] {
            be.activation_forward(act, x.view(), y.view());
            return testing::dot<double>(r.view(), y.view());
        };
        auto rep = check_gradient(std::string(to_string(act)), x.view(), dx.view(), loss);
        CHECK_MESSAGE(rep.max_rel_error < 1e-6, rep.str());
    }
}

TEST_CASE("layer_norm_forward normalises each row and layer_norm_backward matches finite differences") {
    CpuBackend<double> be;
    const index_t M = 7, C = 12;
    Tensor<double> x = random_tensor({M, C}, 11, -2, 3), w = random_tensor({C}, 12), b = random_tensor({C}, 13);
    Tensor<double> y(Shape{M, C}), mean(Shape{M}), rstd(Shape{M}), r = random_tensor({M, C}, 14);
    be.layer_norm_forward(x.view(), w.view(), b.view(), 1e-5, y.view(), mean.data(), rstd.data());
    for (index_t i = 0; i < M; ++i) {
        double m = 0, v = 0;
        for (index_t j = 0; j < C; ++j) m += x(i, j) / C;
        for (index_t j = 0; j < C; ++j) v += (x(i, j) - m) * (x(i, j) - m) / C;
        for (index_t j = 0; j < C; ++j) CHECK(y(i, j) == doctest::Approx((x(i, j) - m) / std::sqrt(v + 1e-5) * w(j) + b(j)));
    }
    Tensor<double> dx(Shape{M, C}), dw(Shape{C}, 0.0), db(Shape{C}, 0.0);
    be.layer_norm_backward(r.view(), x.view(), w.view(), mean.data(), rstd.data(), dx.view(), dw.data(), db.data());
    auto loss = [&] {
        be.layer_norm_forward(x.view(), w.view(), b.view(), 1e-5, y.view(), nullptr, nullptr);
        return testing::dot<double>(r.view(), y.view());
    };
    for (auto [name, t, g] : {std::tuple{"x", &x, &dx}, {"weight", &w, &dw}, {"bias", &b, &db}}) {
        auto rep = check_gradient(name, t->view(), g->view(), loss);
        CHECK_MESSAGE(rep.max_rel_error < 1e-6, rep.str());
    }
}

TEST_CASE("attention softmax hides padded and future keys exactly and adds custom masks") {
    CpuBackend<double> be;
    const index_t B = 2, H = 2, Tq = 3, Tk = 4;
    Tensor<double> s = random_tensor({B, H, Tq, Tk}, 15), raw = s, add = random_tensor({B, Tq, Tk}, 16);
    std::vector<std::int32_t> keep = {1, 1, 1, 1, 1, 0, 1, 0};
    AttentionMask<double> mask{.key_keep = keep.data(), .causal = true, .causal_offset = 1, .additive = add.data()};
    be.attention_softmax_forward(s.view(), 0.5, mask);
    for (index_t b = 0; b < B; ++b)
        for (index_t h = 0; h < H; ++h)
            for (index_t i = 0; i < Tq; ++i) {
                double mx = -1e300, sum = 0;
                auto visible = [&](index_t j) { return keep[b * Tk + j] && j <= i + 1; };
                for (index_t j = 0; j < Tk; ++j)
                    if (visible(j)) mx = std::max(mx, 0.5 * raw(b, h, i, j) + add(b, i, j));
                for (index_t j = 0; j < Tk; ++j)
                    if (visible(j)) sum += std::exp(0.5 * raw(b, h, i, j) + add(b, i, j) - mx);
                for (index_t j = 0; j < Tk; ++j) {
                    const double want = visible(j) ? std::exp(0.5 * raw(b, h, i, j) + add(b, i, j) - mx) / sum : 0.0;
                    CHECK(s.view()(b, h, i, j) == doctest::Approx(want).epsilon(1e-12));
                    if (!visible(j)) CHECK(s.view()(b, h, i, j) == 0.0);
                }
            }
}

TEST_CASE("attention softmax gives all-zero probabilities to a row with no visible key") {
    CpuBackend<double> be;
    Tensor<double> s = random_tensor({1, 1, 2, 3}, 17);
    std::vector<std::int32_t> keep = {0, 0, 0};
    be.attention_softmax_forward(s.view(), 1.0, {.key_keep = keep.data()});
    for (double v : s) CHECK(v == 0.0);
}

TEST_CASE("attention softmax backward equals finite differences through scale and masks") {
    CpuBackend<double> be;
    const index_t B = 2, H = 1, Tq = 3, Tk = 3;
    Tensor<double> s = random_tensor({B, H, Tq, Tk}, 18), r = random_tensor({B, H, Tq, Tk}, 19), p(Shape{B, H, Tq, Tk});
    std::vector<std::int32_t> keep = {1, 1, 0, 1, 1, 1};
    AttentionMask<double> mask{.key_keep = keep.data(), .causal = true};
    auto loss = [&] {
        copy<double>(s.view(), p.view());
        be.attention_softmax_forward(p.view(), 0.7, mask);
        return testing::dot<double>(r.view(), p.view());
    };
    loss();
    Tensor<double> d = r;
    be.attention_softmax_backward(p.view(), d.view(), 0.7);
    auto rep = check_gradient("scores", s.view(), d.view(), loss);
    CHECK_MESSAGE(rep.max_rel_error < 1e-6, rep.str());
}

TEST_CASE("embedding gathers rows, scatter-adds repeated ids, and names an id outside the table") {
    CpuBackend<float> be;
    Tensor<float> table(Shape{4, 3});
    for (index_t i = 0; i < 12; ++i) table.data()[i] = float(i);
    std::vector<std::int32_t> ids = {2, 0, 2};
    Tensor<float> out(Shape{3, 3});
    be.embedding_forward(ids.data(), 3, table.view(), out.view());
    CHECK(out(0, 1) == 7.f);
    CHECK(out(1, 2) == 2.f);
    Tensor<float> d_table(Shape{4, 3}, 0.f), d_out(Shape{3, 3}, 1.f);
    be.embedding_backward(ids.data(), 3, d_out.view(), d_table.view());
    CHECK(d_table(2, 0) == 2.f);
    CHECK(d_table(0, 0) == 1.f);
    CHECK(d_table(1, 0) == 0.f);
    std::vector<std::int32_t> bad = {1, 4};
    CHECK_THROWS_WITH_AS(be.embedding_forward(bad.data(), 2, table.view(), out.view().slice(0, 2)),
                         "embedding: id 4 at position 1 is outside the table of 4 rows", ArgumentError);
}

TEST_CASE("cross_entropy matches the smoothed NLL formula, skips ignore_index, and its backward matches finite differences") {
    CpuBackend<double> be;
    const index_t N = 5, C = 7;
    Tensor<double> logits = random_tensor({N, C}, 20, -3, 3), lse(Shape{N}), d(Shape{N, C});
    std::vector<std::int32_t> t = {3, -100, 0, 6, 2};
    for (double eps : {0.0, 0.1}) {
        auto res = be.cross_entropy_forward(logits.view(), t.data(), -100, eps, lse.data());
        double want = 0;
        for (index_t n = 0; n < N; ++n) {
            if (t[n] == -100) continue;
            double z = 0;
            for (index_t c = 0; c < C; ++c) z += std::exp(logits(n, c));
            double nll = std::log(z) - logits(n, t[n]), smooth = 0;
            for (index_t c = 0; c < C; ++c) smooth += (std::log(z) - logits(n, c)) / C;
            want += (1 - eps) * nll + eps * smooth;
        }
        CHECK(res.count == 4);
        CHECK(res.loss == doctest::Approx(want / 4).epsilon(1e-12));
        be.cross_entropy_backward(logits.view(), t.data(), lse.data(), -100, eps, res.count, 1.0, d.view());
        auto loss = [&] { return double(be.cross_entropy_forward(logits.view(), t.data(), -100, eps, lse.data()).loss); };
        auto rep = check_gradient("logits", logits.view(), d.view(), loss);
        CHECK_MESSAGE(rep.max_rel_error < 1e-6, rep.str());
    }
    std::vector<std::int32_t> bad = {3, 7, 0, 0, 0};
    CHECK_THROWS_AS(be.cross_entropy_forward(logits.view(), bad.data(), -100, 0.0, lse.data()), ArgumentError);
    std::vector<std::int32_t> none(N, -100);
    auto empty = be.cross_entropy_forward(logits.view(), none.data(), -100, 0.0, lse.data());
    CHECK(empty.count == 0);
    CHECK(empty.loss == 0.0);
}

TEST_CASE("l2_normalize gives unit rows and its backward matches finite differences") {
    CpuBackend<double> be;
    const index_t N = 4, D = 6;
    Tensor<double> x = random_tensor({N, D}, 21), y(Shape{N, D}), norm(Shape{N}), r = random_tensor({N, D}, 22);
    Tensor<double> dx(Shape{N, D});
    be.l2_normalize_forward(x.view(), y.view(), norm.data());
    for (index_t n = 0; n < N; ++n) {
        double s = 0;
        for (index_t i = 0; i < D; ++i) s += y(n, i) * y(n, i);
        CHECK(s == doctest::Approx(1.0).epsilon(1e-12));
    }
    be.l2_normalize_backward(r.view(), y.view(), norm.data(), dx.view());
    auto loss = [&] {
        be.l2_normalize_forward(x.view(), y.view(), nullptr);
        return testing::dot<double>(r.view(), y.view());
    };
    auto rep = check_gradient("x", x.view(), dx.view(), loss);
    CHECK_MESSAGE(rep.max_rel_error < 1e-6, rep.str());
}

TEST_CASE("sum_rows_accumulate adds column sums into its output, for any thread count") {
    for (int threads : {1, 2}) {
        CpuBackend<double> be({.threads = threads});
        Tensor<double> x = random_tensor({300, 130}, 23), out(Shape{130}, 1.0);
        be.sum_rows_accumulate(x.view(), out.data());
        for (index_t c = 0; c < 130; ++c) {
            double s = 1.0;
            for (index_t r = 0; r < 300; ++r) s += x(r, c);
            CHECK(out(c) == doctest::Approx(s).epsilon(1e-12));
        }
    }
}

TEST_CASE("row-parallel ops give bit-identical results with 1 and 2 threads") {
    const index_t M = 256, C = 200;
    Tensor<float> x(Shape{M, C}), w(Shape{C}, 1.5f), b(Shape{C}, 0.25f);
    fill_uniform(x.view(), 24);
    Tensor<float> y1(Shape{M, C}), y2(Shape{M, C});
    CpuBackend<float> one({.threads = 1}), two({.threads = 2});
    one.layer_norm_forward(x.view(), w.view(), b.view(), 1e-5, y1.view(), nullptr, nullptr);
    two.layer_norm_forward(x.view(), w.view(), b.view(), 1e-5, y2.view(), nullptr, nullptr);
    CHECK(test::max_abs_diff<float>(y1.view(), y2.view()) == 0.0);
    one.activation_forward(Activation::gelu, x.view(), y1.view());
    two.activation_forward(Activation::gelu, x.view(), y2.view());
    CHECK(test::max_abs_diff<float>(y1.view(), y2.view()) == 0.0);
}

TEST_CASE("the scratch arena reuses its blocks, so a repeated call pattern allocates nothing new") {
    CpuBackend<float> be;
    auto run = [&] {
        auto sc = be.scope();
        auto a = sc.tensor({1000, 100});
        auto b = sc.tensor({50000});
        a(0, 0) = 1.f, b(0) = 2.f;
        auto inner = be.scope();
        (void)inner.tensor({70000});
    };
    run();
    const auto bytes = be.arena().capacity_bytes();
    for (int i = 0; i < 5; ++i) run();
    CHECK(be.arena().capacity_bytes() == bytes);
}
