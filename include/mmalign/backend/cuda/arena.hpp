// mmalign/backend/cuda/arena.hpp — device scratch memory for the temporaries of one call.
//
// The same contract as cpu::ScratchArena: `auto sc = be.scope(); auto t = sc.tensor({B, T, D});`
// takes device memory that lives until the scope ends, and blocks are kept, so once a model has
// run one step, later steps of the same sizes allocate nothing. Reuse is safe without
// synchronisation because every op of a backend runs on its one stream: a kernel that writes a
// recycled range is queued after every kernel that read it.
// Besides elements of T, a scope hands out raw buffers (`buffer<U>(n)`), which the backend uses
// to upload integer arrays (token ids, targets, key masks) and to hold reduction partials.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "mmalign/backend/cuda/error.hpp"
#include "mmalign/backend/cuda/memory.hpp"
#include "mmalign/core/tensor.hpp"

namespace mmalign::cuda {

class DeviceArena {
public:
    /// Every allocation is aligned to this many bytes (cudaMalloc's own alignment).
    static constexpr std::size_t alignment = 256;

    template <class T>
    class Scope {
    public:
        Scope(DeviceArena& a, cudaStream_t stream) : arena_(a), stream_(stream), block_(a.block_), used_(a.used_) {}
        Scope(const Scope&) = delete;
        Scope& operator=(const Scope&) = delete;
        ~Scope() {
            arena_.block_ = block_;
            arena_.used_ = used_;
        }
        /// An uninitialised device tensor of shape s, valid until this Scope ends.
        TensorView<T> tensor(Shape s) { return {buffer<T>(s.numel()), s}; }
        /// A device tensor of zeros (set on the backend's stream).
        TensorView<T> zeros(Shape s) {
            auto v = tensor(s);
            if (v.numel())
                MMALIGN_CUDA_CHECK(
                    cudaMemsetAsync(v.data(), 0, static_cast<std::size_t>(v.numel()) * sizeof(T), stream_));
            return v;
        }
        /// n uninitialised elements of any trivial type U.
        template <class U>
        U* buffer(index_t n) {
            return static_cast<U*>(arena_.allocate(static_cast<std::size_t>(n) * sizeof(U)));
        }

    private:
        DeviceArena& arena_;
        cudaStream_t stream_;
        std::size_t block_;
        std::size_t used_;
    };

    DeviceArena() = default;
    DeviceArena(const DeviceArena&) = delete;
    DeviceArena& operator=(const DeviceArena&) = delete;
    ~DeviceArena() {
        for (auto& b : blocks_) (void)cudaFree(b.data);  // no check: destructors must not throw
    }

    /// Bytes held by the arena (for tests and memory reports).
    std::size_t capacity_bytes() const {
        std::size_t n = 0;
        for (const auto& b : blocks_) n += b.size;
        return n;
    }

private:
    struct Block {
        char* data;
        std::size_t size;
    };

    void* allocate(std::size_t n) {
        n = (n + alignment - 1) / alignment * alignment;
        while (block_ < blocks_.size()) {
            Block& b = blocks_[block_];
            if (used_ + n <= b.size) {
                char* p = b.data + used_;
                used_ += n;
                return p;
            }
            ++block_;
            used_ = 0;
        }
        const std::size_t last = blocks_.empty() ? 0 : blocks_.back().size;
        const std::size_t size = std::max({n, 2 * last, std::size_t(1) << 20});
        char* p = nullptr;
        cudaError_t e = cudaMalloc(reinterpret_cast<void**>(&p), size);
        if (e == cudaErrorMemoryAllocation) {  // the tensor pool may hold unused memory: give it back, retry
            (void)cudaGetLastError();
            trim_pool();
            e = cudaMalloc(reinterpret_cast<void**>(&p), size);
        }
        detail::check_cuda(e, "cudaMalloc (scratch arena block)", __FILE__, __LINE__);
        blocks_.push_back({p, size});
        block_ = blocks_.size() - 1;
        used_ = n;
        return p;
    }

    std::vector<Block> blocks_;
    std::size_t block_ = 0;
    std::size_t used_ = 0;
};

}  // namespace mmalign::cuda
