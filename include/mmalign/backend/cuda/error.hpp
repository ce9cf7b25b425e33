// mmalign/backend/cuda/error.hpp — CUDA and cuBLAS failures as mmalign exceptions.
//
// Every runtime and cuBLAS call of the CUDA backend goes through MMALIGN_CUDA_CHECK or
// MMALIGN_CUBLAS_CHECK, which throw CudaError naming the call's source text, the status and the
// place. Kernel launches are followed by MMALIGN_CUDA_CHECK_LAUNCH(stream): launch errors are
// reported at once; errors of the kernel's execution surface at the next synchronising call
// (or at once when MMALIGN_CUDA_DEBUG_SYNC is defined, which synchronises after every launch).
// Destructors release resources without checking: they must not throw.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>
#include <utility>

#include "mmalign/core/error.hpp"

namespace mmalign {

/// A CUDA runtime or cuBLAS call failed: what() reads "<call>: <status> (<file>:<line>)".
class CudaError : public Error {
public:
    CudaError(std::string call, std::string status, const char* file, int line)
        : Error(call + ": " + status + " (" + file + ":" + std::to_string(line) + ")"),
          call_(std::move(call)),
          status_(std::move(status)) {}

    /// The source text of the failing call.
    const std::string& call() const { return call_; }
    /// The status as the library spells it, e.g. "cudaErrorMemoryAllocation: out of memory".
    const std::string& status() const { return status_; }

private:
    std::string call_;
    std::string status_;
};

namespace cuda::detail {

inline void check_cuda(cudaError_t e, const char* call, const char* file, int line) {
    if (e == cudaSuccess) return;
    // The runtime also keeps the error as its "last error"; clear it, or the next launch check
    // would report it again (sticky errors, after which the context is unusable, stay anyway).
    (void)cudaGetLastError();
    throw CudaError(call, std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e), file, line);
}

inline void check_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return;
    throw CudaError(call, std::string(cublasGetStatusName(s)) + ": " + cublasGetStatusString(s), file, line);
}

inline void check_launch(cudaStream_t stream, const char* file, int line) {
    check_cuda(cudaGetLastError(), "kernel launch", file, line);
#if defined(MMALIGN_CUDA_DEBUG_SYNC)
    check_cuda(cudaStreamSynchronize(stream), "kernel execution (MMALIGN_CUDA_DEBUG_SYNC)", file, line);
#else
    (void)stream;
#endif
}

}  // namespace cuda::detail

namespace cuda {

/// The number of usable CUDA devices; 0 when there is none or no driver (never throws).
inline int device_count() noexcept {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();  // clear the error so that it does not surface at a later check
        return 0;
    }
    return n;
}

}  // namespace cuda

}  // namespace mmalign

#define MMALIGN_CUDA_CHECK(call) ::mmalign::cuda::detail::check_cuda((call), #call, __FILE__, __LINE__)
#define MMALIGN_CUBLAS_CHECK(call) ::mmalign::cuda::detail::check_cublas((call), #call, __FILE__, __LINE__)
#define MMALIGN_CUDA_CHECK_LAUNCH(stream) ::mmalign::cuda::detail::check_launch((stream), __FILE__, __LINE__)
