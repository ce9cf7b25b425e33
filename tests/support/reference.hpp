// Plain loop implementations the tests compare the backends against, written from the
// formulas in each op's header, with no shared code.
#pragma once

#include <cmath>
#include <vector>

#include "mmalign/core/tensor.hpp"

namespace mmalign::test {

/// C = alpha·op(A)·op(B) + beta·C on row-major storage with leading dimensions.
template <class T>
void naive_gemm(bool ta, bool tb, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda, const T* b,
                index_t ldb, T beta, T* c, index_t ldc) {
    for (index_t i = 0; i < m; ++i)
        for (index_t j = 0; j < n; ++j) {
            double s = 0;
            for (index_t p = 0; p < k; ++p) {
                const double av = ta ? a[p * lda + i] : a[i * lda + p];
                const double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
                s += av * bv;
            }
            c[i * ldc + j] = static_cast<T>(alpha * s + (beta == T(0) ? 0.0 : beta * c[i * ldc + j]));
        }
}

template <class T>
double max_abs_diff(ConstView<T> a, ConstView<T> b) {
    double m = 0;
    for (index_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(double(a.data()[i]) - double(b.data()[i])));
    return m;
}

}  // namespace mmalign::test
