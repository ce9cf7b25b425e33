// Helpers of the CUDA-vs-CPU parity tests: the skip-without-device rule, random host tensors,
// transfers and the comparison with a tolerance.
//
// Without a CUDA device (or driver) the test binary prints why and exits with 77 before any test
// runs, which ctest reports as skipped (SKIP_RETURN_CODE 77 in tests/cuda/CMakeLists.txt). With
// MMALIGN_REQUIRE_CUDA=1 in the environment it fails instead (scripts/gpu-check.sh sets it, so a
// GPU machine that cannot see its GPU is not mistaken for a pass).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/backend/cuda/backend.hpp"

namespace mmalign::test {

inline int cuda_devices_or_exit() {
    const int n = cuda::device_count();
    if (n > 0) return n;
    const char* req = std::getenv("MMALIGN_REQUIRE_CUDA");
    const bool required = req && std::string(req) == "1";
    std::printf("mmalign CUDA tests: no CUDA device visible (cudaGetDeviceCount failed or found none): %s\n",
                required ? "FAILED (MMALIGN_REQUIRE_CUDA=1)" : "skipped");
    std::fflush(stdout);
    std::exit(required ? 1 : 77);
}
/// Evaluated before main (and before doctest runs any test) in every CUDA test binary.
inline const int cuda_devices = cuda_devices_or_exit();

using Cpu = CpuBackend<float>;
using Gpu = CudaBackend<float>;

inline Tensor<float> random_host(Shape s, unsigned seed, double lo = -1, double hi = 1) {
    Tensor<float> t(s);
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> d(lo, hi);
    for (auto& v : t) v = static_cast<float>(d(rng));
    return t;
}

inline DeviceTensor<float> upload(Gpu& be, const Tensor<float>& h) {
    DeviceTensor<float> d(h.shape());
    be.from_host(h.view(), d.view());
    return d;
}
inline Tensor<float> download(Gpu& be, ConstView<float> d) {
    Tensor<float> h(d.shape());
    be.to_host(d, h.view());
    return h;
}
inline DeviceTensor<float> poisoned(Gpu& be, Shape s) {
    DeviceTensor<float> d(s);
    be.fill(d.view(), std::numeric_limits<float>::quiet_NaN());
    return d;
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

/// Downloads a device view and checks it against the host reference.
inline void check_device(Gpu& be, const std::string& what, ConstView<float> got_device, ConstView<float> want,
                         double tol = 1e-5, double floor = 1.0) {
    const Tensor<float> got = download(be, got_device);
    check_close(what, got.view(), want, tol, floor);
}

}  // namespace mmalign::test
