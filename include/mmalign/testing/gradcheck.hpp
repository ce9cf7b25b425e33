// mmalign/testing/gradcheck.hpp — finite-difference checks of analytic gradients.
//
// For a scalar loss L(x) the central difference (L(x + h·e_i) − L(x − h·e_i)) / 2h approximates
// ∂L/∂x_i with error O(h²). Run in double precision (CpuBackend<double>), an exact backward agrees
// to ~1e-9; a wrong one is off by O(1). Users check their own modules with the same function.
// A module with output y is checked through the loss L = Σ r ⊙ y for a fixed random r, whose
// d_y is r.
#pragma once

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "mmalign/core/tensor.hpp"

namespace mmalign::testing {

struct GradientReport {
    std::string name;
    double max_abs_error = 0;  // max |analytic − numeric|
    double max_rel_error = 0;  // max |analytic − numeric| / max(|analytic|, |numeric|, floor)
    index_t worst_index = -1;
    double worst_analytic = 0, worst_numeric = 0;
    index_t checked = 0;

    std::string str() const {
        return name + ": checked " + std::to_string(checked) + ", max rel error " + std::to_string(max_rel_error) +
               " at [" + std::to_string(worst_index) + "] analytic " + std::to_string(worst_analytic) + " numeric " +
               std::to_string(worst_numeric);
    }
};

/// Compares `analytic` (the gradient of `loss` with respect to `x`) with central differences at up
/// to `max_checks` evenly spread entries of x. `loss()` must read x's current values.
template <class F>
GradientReport check_gradient(const std::string& name, TensorView<double> x, ConstView<double> analytic, F&& loss,
                              index_t max_checks = 48, double h = 1e-5, double floor = 1e-3) {
    if (x.numel() != analytic.numel())
        throw ShapeError("check_gradient " + name + ": gradient " + analytic.shape().str() + " does not match " +
                         x.shape().str());
    GradientReport r;
    r.name = name;
    const index_t n = x.numel();
    const index_t step = std::max<index_t>(1, n / std::max<index_t>(1, max_checks));
    for (index_t i = 0; i < n; i += step) {
        const double saved = x.data()[i];
        x.data()[i] = saved + h;
        const double lp = loss();
        x.data()[i] = saved - h;
        const double lm = loss();
        x.data()[i] = saved;
        const double numeric = (lp - lm) / (2 * h), a = analytic.data()[i];
        const double abs_err = std::abs(a - numeric);
        const double rel = abs_err / std::max({std::abs(a), std::abs(numeric), floor});
        r.max_abs_error = std::max(r.max_abs_error, abs_err);
        if (rel > r.max_rel_error || r.worst_index < 0) {
            r.max_rel_error = std::max(r.max_rel_error, rel);
            r.worst_index = i, r.worst_analytic = a, r.worst_numeric = numeric;
        }
        ++r.checked;
    }
    return r;
}

/// Fills t with uniform values in [lo, hi) from a seeded generator.
template <class T>
void fill_uniform(TensorView<T> t, unsigned seed, double lo = -1, double hi = 1) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> d(lo, hi);
    for (auto& v : t) v = static_cast<std::remove_const_t<T>>(d(rng));
}

/// Σ r ⊙ y, the scalar through which a module's output is checked.
template <class T>
double dot(ConstView<T> r, ConstView<T> y) {
    double s = 0;
    for (index_t i = 0; i < r.numel(); ++i) s += static_cast<double>(r.data()[i]) * static_cast<double>(y.data()[i]);
    return s;
}

}  // namespace mmalign::testing
