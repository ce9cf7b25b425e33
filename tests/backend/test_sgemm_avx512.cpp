// Tests of backend/cpu/sgemm_avx512.hpp: the packed AVX-512F sgemm against a double-precision
// triple loop on shapes that cross every blocking edge (MR, NR, KC, MC, NC), all four transpose
// pairs, padded leading dimensions, alpha/beta, and the BLAS rule that beta = 0 never reads C.
// Skipped where the CPU (or compiler) has no AVX-512F.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/backend/cpu/sgemm_avx512.hpp"

using namespace mmalign;

namespace {

struct Case {
    index_t m, n, k;
};

// max |C - C_ref| / (|alpha| · max_ij Σ_p |a_ip||b_pj| + |beta| · max|C0|): an error bound that
// scales with the accumulated magnitudes, so long K sums are held to the same relative standard.
double relative_error(Trans ta, Trans tb, const Case& s, float alpha, float beta, bool poison_c,
                      void (*gemm)(Trans, Trans, index_t, index_t, index_t, float, const float*, index_t,
                                   const float*, index_t, float, float*, index_t)) {
    const index_t pad = 5;
    const index_t a_rows = ta == Trans::N ? s.m : s.k, a_cols = ta == Trans::N ? s.k : s.m;
    const index_t b_rows = tb == Trans::N ? s.k : s.n, b_cols = tb == Trans::N ? s.n : s.k;
    const index_t lda = a_cols + pad, ldb = b_cols + pad, ldc = s.n + pad;
    std::mt19937 rng(static_cast<unsigned>(s.m * 131 + s.n * 17 + s.k));
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<float> a(a_rows * lda), b(b_rows * ldb), c(s.m * ldc);
    for (auto& v : a) v = u(rng);
    for (auto& v : b) v = u(rng);
    for (auto& v : c) v = poison_c ? std::numeric_limits<float>::quiet_NaN() : u(rng);
    const std::vector<float> c0 = c;
    gemm(ta, tb, s.m, s.n, s.k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
    double worst = 0, scale = 0;
    for (index_t i = 0; i < s.m; ++i)
        for (index_t j = 0; j < s.n; ++j) {
            double sum = 0, mag = 0;
            for (index_t p = 0; p < s.k; ++p) {
                const double x = ta == Trans::N ? a[i * lda + p] : a[p * lda + i];
                const double y = tb == Trans::N ? b[p * ldb + j] : b[j * ldb + p];
                sum += x * y, mag += std::abs(x * y);
            }
            const double prev = poison_c ? 0.0 : double(c0[i * ldc + j]);
            const double ref = alpha * sum + (beta == 0 ? 0.0 : beta * prev);
            worst = std::max(worst, std::abs(double(c[i * ldc + j]) - ref));
            if (std::isnan(c[i * ldc + j])) worst = std::numeric_limits<double>::infinity();
            scale = std::max(scale, std::abs(alpha) * mag + std::abs(beta) * std::abs(prev));
        }
    // Columns past n (the padding) must be untouched.
    for (index_t i = 0; i < s.m; ++i)
        for (index_t j = s.n; j < ldc; ++j)
            if (!(c[i * ldc + j] == c0[i * ldc + j] || (std::isnan(c[i * ldc + j]) && std::isnan(c0[i * ldc + j]))))
                return std::numeric_limits<double>::infinity();
    return scale > 0 ? worst / scale : worst;
}

void avx512_sgemm(Trans ta, Trans tb, index_t m, index_t n, index_t k, float alpha, const float* a, index_t lda,
                  const float* b, index_t ldb, float beta, float* c, index_t ldc) {
#if MMALIGN_AVX512
    cpu::avx512::sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#else
    (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b, (void)ldb, (void)beta,
        (void)c, (void)ldc;
#endif
}

}  // namespace

TEST_CASE("avx512 sgemm equals the double-precision triple loop across every blocking edge") {
    if (!cpu::avx512::supported()) {
        MESSAGE("skipped: no AVX-512F on this CPU or compiler");
        return;
    }
#if MMALIGN_AVX512
    using cpu::avx512::KC;
    using cpu::avx512::MC;
    using cpu::avx512::MR;
    using cpu::avx512::NC;
    using cpu::avx512::NR;
    const std::vector<Case> cases = {
        {1, 1, 1},           {MR, NR, 16},           {MR + 1, NR + 1, 17},         {MR - 1, NR - 1, 15},
        {50, 77, 64},        {3, 2 * NR + 5, KC + 3}, {MC + 5, 40, 2 * KC + 1},    {2 * MC + 1, NC + NR + 7, 33},
        {17, 16, KC},        {31, 15, 1},            {1, NC + 1, 300},
        // m ≤ 6 with Bᵀ takes the unpacked few-rows path: every row count, n and k tails.
        {2, 9, 33},          {4, 7, 2 * KC + 5},     {4, 1, 15},                   {3, 4, 16},  {1, 5, 1},
        {5, 11, 47},         {6, 8, 129},            {7, 9, 31},
    };
    for (const Case& s : cases)
        for (Trans ta : {Trans::N, Trans::T})
            for (Trans tb : {Trans::N, Trans::T}) {
                INFO("m=", s.m, " n=", s.n, " k=", s.k, " ta=", int(ta), " tb=", int(tb));
                CHECK(relative_error(ta, tb, s, 0.75f, 0.0f, true, avx512_sgemm) < 1e-6);
                CHECK(relative_error(ta, tb, s, -1.5f, 0.5f, false, avx512_sgemm) < 1e-6);
                CHECK(relative_error(ta, tb, s, 1.0f, 1.0f, false, avx512_sgemm) < 1e-6);
            }
#endif
}

TEST_CASE("avx512 sgemm with k = 0 or alpha = 0 scales C by beta and never reads C when beta = 0") {
    if (!cpu::avx512::supported()) {
        MESSAGE("skipped: no AVX-512F on this CPU or compiler");
        return;
    }
    for (float alpha : {0.0f, 1.0f}) {
        const index_t k = alpha == 0.0f ? 7 : 0;
        std::vector<float> a(3 * 7, 1.0f), b(7 * 4, 1.0f), c(3 * 4, std::numeric_limits<float>::quiet_NaN());
        avx512_sgemm(Trans::N, Trans::N, 3, 4, k, alpha, a.data(), 7, b.data(), 4, 0.0f, c.data(), 4);
        for (float v : c) CHECK(v == 0.0f);
        std::fill(c.begin(), c.end(), 2.0f);
        avx512_sgemm(Trans::N, Trans::N, 3, 4, k, alpha, a.data(), 7, b.data(), 4, 0.25f, c.data(), 4);
        for (float v : c) CHECK(v == 0.5f);
    }
}

TEST_CASE("the backend picks avx512 for float where it runs, splits it over threads, and refuses it elsewhere") {
    CpuBackend<float> be({.threads = 2});
    if (!cpu::avx512::supported()) {
        CHECK(be.gemm_impl() != cpu::GemmImpl::avx512);
        CHECK_THROWS_AS(CpuBackend<float>({.threads = 1, .gemm = cpu::GemmImpl::avx512}), ArgumentError);
        return;
    }
    CHECK(be.gemm_impl() == cpu::GemmImpl::avx512);
    CHECK(CpuBackend<double>().gemm_impl() != cpu::GemmImpl::avx512);
    auto threaded = [](Trans ta, Trans tb, index_t m, index_t n, index_t k, float alpha, const float* a, index_t lda,
                       const float* b, index_t ldb, float beta, float* c, index_t ldc) {
        cpu::gemm<float>(cpu::GemmImpl::avx512, 2, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    };
    for (const Case& s : {Case{301, 70, 61}, Case{40, 403, 81}, Case{50, 2304, 768}})
        for (Trans ta : {Trans::N, Trans::T})
            for (Trans tb : {Trans::N, Trans::T}) {
                INFO("m=", s.m, " n=", s.n, " k=", s.k);
                CHECK(relative_error(ta, tb, s, 1.0f, 0.0f, true, threaded) < 1e-6);
            }
}

TEST_CASE("the gemm epilogue adds the bias, keeps the pre-activation and activates, on every engine and split") {
    // C = act(A·Bᵀ + bias), pre = A·Bᵀ + bias, for a depth over several KC blocks (the epilogue must
    // follow the last one only) and shapes that split by rows and by columns over two threads.
    std::vector<cpu::GemmImpl> engines = {cpu::GemmImpl::eigen};
    if (cpu::blas_available) engines.push_back(cpu::GemmImpl::blas);
    if (cpu::avx512::supported()) engines.push_back(cpu::GemmImpl::avx512);
    for (cpu::GemmImpl impl : engines)
        for (const Case& s : {Case{301, 70, 600}, Case{40, 403, 81}, Case{3, 5, 7}})
            for (int threads : {1, 2}) {
                INFO("engine ", int(impl), " threads ", threads, " m=", s.m, " n=", s.n, " k=", s.k);
                std::mt19937 rng(11);
                std::uniform_real_distribution<float> u(-1, 1);
                std::vector<float> a(s.m * s.k), b(s.n * s.k), bias(s.n), c(s.m * s.n, std::nanf("")),
                    pre(s.m * (s.n + 3), -7.0f);
                for (auto* v : {&a, &b, &bias})
                    for (float& x : *v) x = u(rng);
                cpu::gemm<float>(impl, threads, Trans::N, Trans::T, s.m, s.n, s.k, 1.0f, a.data(), s.k, b.data(), s.k,
                                 0.0f, c.data(), s.n,
                                 GemmEpilogue<float>{.bias = bias.data(), .act = Activation::gelu, .pre = pre.data(),
                                                     .ldpre = s.n + 3});
                double worst_pre = 0, worst_c = 0;
                bool pad_kept = true;
                for (index_t i = 0; i < s.m; ++i) {
                    for (index_t j = 0; j < s.n; ++j) {
                        double z = bias[j];
                        for (index_t p = 0; p < s.k; ++p) z += double(a[i * s.k + p]) * b[j * s.k + p];
                        worst_pre = std::max(worst_pre, std::abs(pre[i * (s.n + 3) + j] - z));
                        worst_c = std::max(worst_c, std::abs(c[i * s.n + j] - cpu::activate(Activation::gelu, z)));
                    }
                    for (index_t j = s.n; j < s.n + 3; ++j) pad_kept = pad_kept && pre[i * (s.n + 3) + j] == -7.0f;
                }
                CHECK(worst_pre < 1e-4);
                CHECK(worst_c < 1e-4);
                CHECK(pad_kept);
            }
}
