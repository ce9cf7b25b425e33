// Tests of backend/cpu/vector_math_avx512.hpp: the AVX-512 exp, activations (forward and
// derivative), softmax pieces and LayerNorm row against double-precision scalar definitions,
// over a wide range of inputs including tails, zeros, infinities and NaN. Skipped without AVX-512F.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "mmalign/backend/cpu/activation.hpp"
#include "mmalign/backend/cpu/vector_math_avx512.hpp"

using namespace mmalign;

namespace {

std::vector<float> test_inputs() {
    std::vector<float> x = {0.0f, -0.0f, 1e-30f, -1e-30f, 1.0f, -1.0f, 20.0f, -20.0f, 87.0f, -87.0f, 88.5f, -103.0f};
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> wide(-30, 30), narrow(-4, 4);
    for (int i = 0; i < 2000; ++i) x.push_back(i % 2 ? wide(rng) : narrow(rng));
    x.push_back(5.0f);  // an odd count leaves a masked tail
    return x;
}

}  // namespace

#if MMALIGN_AVX512

TEST_CASE("avx512 exp is within 2 ulp of std::exp and saturates to 0 and inf, keeping NaN") {
    if (!cpu::avx512::supported()) return;
    std::vector<float> x = test_inputs();
    for (float& v : x) v = std::clamp(v * 3.0f, -87.0f, 70.0f);  // the sum of 2,000 stays finite
    std::vector<float> y(x.size());
    const float mx = 0.0f;
    const float sum = cpu::avx512::exp_shifted_span((y = x).data(), static_cast<index_t>(y.size()), mx);
    double ref_sum = 0, worst_ulp = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double ref = std::exp(double(x[i]));
        ref_sum += ref;
        const double ulp = std::nextafter(float(ref), INFINITY) - float(ref);
        worst_ulp = std::max(worst_ulp, std::abs(y[i] - ref) / (ulp > 0 ? ulp : 1e-45));
    }
    CHECK(worst_ulp <= 2.0);
    CHECK(sum == doctest::Approx(ref_sum).epsilon(1e-6));
    float special[4] = {-std::numeric_limits<float>::infinity(), -150.0f, std::numeric_limits<float>::infinity(),
                        std::numeric_limits<float>::quiet_NaN()};
    cpu::avx512::exp_shifted_span(special, 4, 0.0f);
    CHECK(special[0] == 0.0f);
    CHECK(special[1] == 0.0f);
    CHECK(std::isinf(special[2]));
    CHECK(std::isnan(special[3]));
}

TEST_CASE("avx512 activations and their derivatives equal the double-precision definitions") {
    if (!cpu::avx512::supported()) return;
    const std::vector<float> x = test_inputs();
    const index_t n = static_cast<index_t>(x.size());
    std::vector<float> g(x.size());
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-2, 2);
    for (float& v : g) v = u(rng);
    for (Activation a : {Activation::relu, Activation::gelu, Activation::quick_gelu, Activation::gelu_tanh,
                         Activation::tanh}) {
        std::vector<float> y(x.size()), d(x.size());
        cpu::avx512::activate_span(a, x.data(), y.data(), n);
        cpu::avx512::activate_derivative_span(a, x.data(), g.data(), d.data(), n);
        double worst_y = 0, worst_d = 0;
        for (std::size_t i = 0; i < x.size(); ++i) {
            const double xd = x[i], h = 1e-6 * std::max(1.0, std::abs(xd));
            const double ref = cpu::activate(a, xd);
            const double deriv = (cpu::activate(a, xd + h) - cpu::activate(a, xd - h)) / (2 * h);
            worst_y = std::max(worst_y, std::abs(y[i] - ref) / std::max(1.0, std::abs(ref)));
            if (a != Activation::relu || std::abs(xd) > h)
                worst_d = std::max(worst_d, std::abs(d[i] - g[i] * deriv) / std::max(1.0, std::abs(g[i] * deriv)));
        }
        INFO("activation ", to_string(a));
        CHECK(worst_y < 1e-6);
        CHECK(worst_d < 1e-5);  // finite differences in double carry ~1e-9; the rest is float rounding
    }
}

TEST_CASE("bias_activate_span adds the bias, keeps the pre-activation and applies the activation") {
    if (!cpu::avx512::supported()) return;
    const std::vector<float> x = test_inputs();
    const index_t n = static_cast<index_t>(x.size());
    std::vector<float> bias(x.size()), y(x.size()), pre(x.size());
    for (std::size_t i = 0; i < bias.size(); ++i) bias[i] = 0.01f * float(i % 17) - 0.08f;
    cpu::avx512::bias_activate_span(Activation::quick_gelu, x.data(), bias.data(), y.data(), pre.data(), n);
    double worst = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        CHECK(pre[i] == x[i] + bias[i]);
        const double ref = cpu::activate(Activation::quick_gelu, double(pre[i]));
        worst = std::max(worst, std::abs(y[i] - ref) / std::max(1.0, std::abs(ref)));
    }
    CHECK(worst < 1e-6);
}

TEST_CASE("avx512 LayerNorm row equals the double-precision definition, also for a large mean") {
    if (!cpu::avx512::supported()) return;
    for (index_t n : {index_t(1), index_t(7), index_t(768), index_t(1031)}) {
        std::mt19937 rng(static_cast<unsigned>(n));
        std::uniform_real_distribution<float> u(-1, 1);
        std::vector<float> x(n), w(n), b(n), y(n);
        for (index_t i = 0; i < n; ++i) x[i] = 1000.0f + u(rng), w[i] = u(rng), b[i] = u(rng);
        const auto [mean, rstd] = cpu::avx512::layer_norm_row(x.data(), w.data(), b.data(), y.data(), n, 1e-5);
        double m = 0, v = 0;
        for (float xi : x) m += xi;
        m /= double(n);
        for (float xi : x) v += (xi - m) * (xi - m);
        v /= double(n);
        const double s = 1 / std::sqrt(v + 1e-5);
        CHECK(mean == doctest::Approx(m).epsilon(1e-7));
        CHECK(rstd == doctest::Approx(s).epsilon(1e-6));
        double worst = 0;
        for (index_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(y[i] - ((x[i] - m) * s * w[i] + b[i])));
        INFO("n = ", n);
        CHECK(worst < 2e-4 * std::max(1.0, s));  // x − μ carries float rounding of x (≈ 6e-5 at 1000)
    }
}

#endif
