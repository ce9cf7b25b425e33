// Helpers of the CUDA-vs-CPU parity tests: the skip-without-device rule and transfers; random host
// tensors and the comparison with a tolerance are support/compare.hpp's.
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
#include "support/compare.hpp"

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

/// Downloads a device view and checks it against the host reference.
inline void check_device(Gpu& be, const std::string& what, ConstView<float> got_device, ConstView<float> want,
                         double tol = 1e-5, double floor = 1.0) {
    const Tensor<float> got = download(be, got_device);
    check_close(what, got.view(), want, tol, floor);
}

}  // namespace mmalign::test
