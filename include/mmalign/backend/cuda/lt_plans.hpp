// mmalign/backend/cuda/lt_plans.hpp — Linear's product with its epilogue fused, through cuBLASLt,
// with a cache of plans (descriptors, layouts and the heuristic's algorithm per shape).
//
//   y[M, N] = act(x[M, K] · w[N, K]ᵀ + bias[N])      act ∈ {none, relu, gelu_tanh}
//
// cuBLASLt applies the bias, ReLU and GELU in the product's epilogue, so y is written once
// instead of written by the product and read and written again by a pointwise kernel. Its GELU is
// the tanh form (what PyTorch's fused addmm+GELU also restricts itself to), so only gelu_tanh maps
// onto it; erf GELU and quick_gelu (CLIP) keep the separate kernel, as does any call that must
// also return the pre-activation. In cuBLASLt's column-major terms y is D = op(w)·x with D [N, M],
// so the bias runs along D's rows, as the epilogue requires. Plans are keyed by shape, precision,
// epilogue and the operands' alignment (cuBLASLt's heuristic otherwise assumes 256-byte aligned
// buffers, which views into larger tensors need not be); the bias pointer is set per call. Only
// nvcc compiles this header.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <tuple>

#include "mmalign/backend/cuda/error.hpp"
#include "mmalign/core/ops.hpp"
#include "mmalign/core/shape.hpp"

namespace mmalign::cuda {

class LtPlanCache {
public:
    LtPlanCache() = default;
    LtPlanCache(const LtPlanCache&) = delete;
    LtPlanCache& operator=(const LtPlanCache&) = delete;
    ~LtPlanCache() { release(); }

    /// Whether linear() can fuse this activation (with or without a bias) when no pre-activation
    /// is asked for.
    static bool fusable(Activation act, bool has_bias) {
        return act == Activation::relu || act == Activation::gelu_tanh || (act == Activation::none && has_bias);
    }

    /// y = act(x·wᵀ + bias) on `stream`; false (nothing queued) when cuBLASLt offers no algorithm
    /// for this shape, so the caller falls back. `type` is the storage type of x, w, bias and y.
    bool linear(cudaStream_t stream, cudaDataType_t type, bool tf32, index_t M, index_t N, index_t K, const void* x,
                const void* w, const void* bias, Activation act, void* y, void* workspace, std::size_t workspace_bytes) {
        if (!handle_) MMALIGN_CUBLAS_CHECK(cublasLtCreate(&handle_));
        const Key key{M, N, K, static_cast<int>(type), tf32, static_cast<int>(epilogue(act, bias != nullptr)),
                      alignment({x, w, y})};
        auto it = plans_.find(key);
        if (it == plans_.end()) it = plans_.emplace(key, make_plan(key, workspace_bytes)).first;
        Plan& p = it->second;
        if (!p.found) return false;
        if (bias)
            MMALIGN_CUBLAS_CHECK(
                cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
        const float one = 1.0f, zero = 0.0f;
        MMALIGN_CUBLAS_CHECK(cublasLtMatmul(handle_, p.desc, &one, w, p.a, x, p.b, &zero, y, p.d, y, p.d, &p.algo,
                                            workspace, workspace_bytes, stream));
        return true;
    }

    std::size_t size() const { return plans_.size(); }

    void release() noexcept {
        for (auto& [key, p] : plans_) p.destroy();
        plans_.clear();
        if (handle_) (void)cublasLtDestroy(handle_);
        handle_ = nullptr;
    }

private:
    struct Key {
        index_t M, N, K;
        int type;
        bool tf32;
        int epilogue;
        std::uint32_t align;  // bytes every operand's address is a multiple of (at most 256)
        auto operator<=>(const Key&) const = default;
    };
    struct Plan {
        cublasLtMatmulDesc_t desc = nullptr;
        cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
        cublasLtMatmulAlgo_t algo{};
        bool found = false;
        void destroy() noexcept {
            if (desc) (void)cublasLtMatmulDescDestroy(desc);
            for (cublasLtMatrixLayout_t l : {a, b, d})
                if (l) (void)cublasLtMatrixLayoutDestroy(l);
            desc = nullptr, a = b = d = nullptr;
        }
    };

    static std::uint32_t alignment(std::initializer_list<const void*> ptrs) {
        std::uintptr_t a = 256;
        for (const void* p : ptrs) {
            const auto v = reinterpret_cast<std::uintptr_t>(p);
            if (v) a = std::min<std::uintptr_t>(a, v & (~v + 1));  // the lowest set bit
        }
        return static_cast<std::uint32_t>(a);
    }

    static cublasLtEpilogue_t epilogue(Activation act, bool has_bias) {
        switch (act) {
            case Activation::relu: return has_bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
            case Activation::gelu_tanh: return has_bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
            default: return has_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
        }
    }

    Plan make_plan(const Key& k, std::size_t workspace_bytes) {
        Plan p;
        cublasLtMatmulPreference_t pref = nullptr;
        try {
            const auto type = static_cast<cudaDataType_t>(k.type);
            const cublasComputeType_t compute =
                k.tf32 && type == CUDA_R_32F ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
            MMALIGN_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, compute, CUDA_R_32F));
            const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
            const auto epi = static_cast<cublasLtEpilogue_t>(k.epilogue);
            MMALIGN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
            MMALIGN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
            MMALIGN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
            // w [N, K] row-major is column-major K × N (ld K), used transposed; x [M, K] is K × M;
            // y [M, N] is N × M (ld N).
            MMALIGN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, type, std::uint64_t(k.K), std::uint64_t(k.N), k.K));
            MMALIGN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, type, std::uint64_t(k.K), std::uint64_t(k.M), k.K));
            MMALIGN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.d, type, std::uint64_t(k.N), std::uint64_t(k.M), k.N));
            MMALIGN_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
            MMALIGN_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                                      &workspace_bytes, sizeof(workspace_bytes)));
            for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                              CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
                MMALIGN_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &k.align, sizeof(k.align)));
            if (type != CUDA_R_32F) {  // 16-bit output: split-K partials are summed in fp32, never in 16 bits
                const std::uint32_t schemes = CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_INPLACE |
                                              CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
                MMALIGN_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
                    pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &schemes, sizeof(schemes)));
            }
            cublasLtMatmulHeuristicResult_t result{};
            int found = 0;
            const cublasStatus_t st =
                cublasLtMatmulAlgoGetHeuristic(handle_, p.desc, p.a, p.b, p.d, p.d, pref, 1, &result, &found);
            if (st == CUBLAS_STATUS_SUCCESS && found > 0) {
                p.algo = result.algo;
                p.found = true;
            } else if (st != CUBLAS_STATUS_NOT_SUPPORTED) {
                MMALIGN_CUBLAS_CHECK(st);
            }
            (void)cublasLtMatmulPreferenceDestroy(pref);
        } catch (...) {
            if (pref) (void)cublasLtMatmulPreferenceDestroy(pref);
            p.destroy();
            throw;
        }
        return p;
    }

    cublasLtHandle_t handle_ = nullptr;
    std::map<Key, Plan> plans_;
};

}  // namespace mmalign::cuda
