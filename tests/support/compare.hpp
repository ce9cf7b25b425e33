// Random host tensors and the comparison of a result with a reference under a tolerance, shared by
// the CUDA-vs-CPU parity tests (tests/cuda) and the CPU 16-bit backend's tests.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "mmalign/core/tensor.hpp"

namespace mmalign::test {

inline Tensor<float> random_host(Shape s, unsigned seed, double lo = -1, double hi = 1) {
    Tensor<float> t(s);
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> d(lo, hi);
    for (auto& v : t) v = static_cast<float>(d(rng));
    return t;
}

struct Comparison {
    double max_abs = 0;      // max |got − want|
    double scale = 0;        // max |want|
    double rel_norm = 0;     // ‖got − want‖₂ / ‖want‖₂
    index_t worst = -1;
    bool finite = true;      // got is NaN or infinite exactly where want is (unwritten outputs stay NaN)
    double rel_max() const { return scale > 0 ? max_abs / scale : max_abs; }
};

inline Comparison compare(ConstView<float> got, ConstView<float> want) {
    Comparison c;
    double diff2 = 0, want2 = 0;
    for (index_t i = 0; i < want.numel(); ++i) {
        const double g = got.data()[i], w = want.data()[i];
        if (!std::isfinite(w) || !std::isfinite(g)) {  // only NaN for NaN and the same infinity pass
            const bool same = std::isnan(w) ? std::isnan(g) : g == w;
            if (!same && c.finite) c.worst = i;
            c.finite = c.finite && same;
            continue;
        }
        const double d = std::abs(g - w);
        if (d > c.max_abs) {
            c.max_abs = d;
            c.worst = i;
        }
        c.scale = std::max(c.scale, std::abs(w));
        diff2 += d * d;
        want2 += w * w;
    }
    c.rel_norm = want2 > 0 ? std::sqrt(diff2 / want2) : std::sqrt(diff2);
    return c;
}

/// Checks that `got` equals `want` to `tol` relative to the largest |want| (absolute below `floor`,
/// 1 by default), and that every element was written (outputs are poisoned with NaN beforehand).
inline void check_close(const std::string& what, ConstView<float> got, ConstView<float> want, double tol = 1e-5,
                        double floor = 1.0) {
    REQUIRE_MESSAGE(got.shape() == want.shape(), what << ": shape " << got.shape().str() << " vs " << want.shape().str());
    const Comparison c = compare(got, want);
    const double err = c.max_abs / std::max(floor, c.scale);
    INFO(what << ": max |diff| " << c.max_abs << " at [" << c.worst << "] (got "
              << (c.worst >= 0 ? got.data()[c.worst] : 0.f) << ", want " << (c.worst >= 0 ? want.data()[c.worst] : 0.f)
              << "), max |want| " << c.scale << ", relative norm error " << c.rel_norm);
    CHECK(c.finite);
    CHECK(err <= tol);
}

}  // namespace mmalign::test
