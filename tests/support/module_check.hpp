// Finite-difference checks of a whole module: every input gradient the test names and every
// parameter the module visits, in double precision.
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/core/parameter.hpp"
#include "mmalign/testing/gradcheck.hpp"

namespace mmalign::test {

using Be = CpuBackend<double>;

struct InputGrad {
    std::string name;
    TensorView<double> value;
    ConstView<double> grad;
};

/// `loss()` runs the module's inference forward on the current inputs and returns Σ r ⊙ y; the
/// caller has already run the training forward and backward with d_y = r on zeroed gradients.
template <class M, class F>
void check_module_gradients(M& module, const std::vector<InputGrad>& inputs, F&& loss, double tol = 1e-6) {
    for (const auto& in : inputs) {
        auto rep = testing::check_gradient(in.name, in.value, in.grad, loss);
        CHECK_MESSAGE(rep.max_rel_error < tol, rep.str());
    }
    module.visit([&](const std::string& name, Parameter<double>& p) {
        auto rep = testing::check_gradient(name, p.value.view(), p.grad.view(), loss, 24);
        CHECK_MESSAGE(rep.max_rel_error < tol, rep.str());
    });
}

/// Every parameter ~ U(-a, a), LayerNorm scales around 1, so no gradient is trivially zero.
template <class M>
void randomize(M& module, unsigned seed, double a = 0.5) {
    module.visit([&](const std::string& name, Parameter<double>& p) {
        testing::fill_uniform(p.value.view(), seed++, -a, a);
        if (name.find("norm") != std::string::npos || name.find("LayerNorm") != std::string::npos)
            if (name.size() > 6 && name.compare(name.size() - 6, 6, "weight") == 0)
                for (auto& v : p.value) v += 1.0;
    });
}

inline Tensor<double> random_tensor(Shape s, unsigned seed, double lo = -1, double hi = 1) {
    Tensor<double> t(s);
    testing::fill_uniform(t.view(), seed, lo, hi);
    return t;
}

}  // namespace mmalign::test
