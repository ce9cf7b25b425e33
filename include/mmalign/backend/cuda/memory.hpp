// mmalign/backend/cuda/memory.hpp — where DeviceTensor's memory comes from: a caching pool per
// device, built on CUDA's stream-ordered allocator.
//
// cudaFree waits for the whole device, so a tensor that dies inside a loop (a model output, an
// upload per batch) would stall the host on every iteration, and cudaMalloc is a driver call
// each time. Instead each device gets one memory pool of its own (cudaMemPoolCreate, not the
// device's default pool, whose settings other libraries in the process may rely on) that keeps
// the memory it is given back (release threshold: everything), and tensors allocate with
// cudaMallocFromPoolAsync and free with cudaFreeAsync, both ordered on the legacy default stream —
// the stream DeviceTensor's own operations use. The legacy stream waits for every earlier
// operation of every blocking stream (CudaBackend only accepts blocking streams), so memory freed
// there is reused only after the kernels that read it have finished, with no host wait.
//
//   cuda::set_allocator(cuda::Allocator::direct);  // plain cudaMalloc / cudaFree from now on
//   cuda::pool_reserved_bytes();                   // what the current device's pool holds
//   cuda::trim_pool();                             // give unused pool memory back to the driver
//
// Devices without memory-pool support (cudaDevAttrMemoryPoolsSupported = 0), or where creating
// the pool fails, use cudaMalloc. Memory the pool keeps is not available to plain cudaMalloc (the
// backend's scratch arena and cuBLAS workspace): the arena gives the pool's unused memory back
// and retries once when cudaMalloc runs out.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "mmalign/backend/cuda/error.hpp"

namespace mmalign::cuda {

enum class Allocator {
    pool,    // the device's mmalign pool (default)
    direct,  // cudaMalloc / cudaFree (each free waits for the device)
};

/// One device allocation, with what is needed to give it back the way it was taken.
struct Allocation {
    void* data = nullptr;
    int device = 0;
    bool pooled = false;
};

namespace detail {

struct PoolRegistry {
    std::mutex mutex;
    Allocator allocator = Allocator::pool;
    std::vector<cudaMemPool_t> pools;  // per device; null: not created yet
    std::vector<signed char> usable;   // per device: -1 not asked yet, 0 no pool support, 1 pool made
};

inline PoolRegistry& registry() {
    // Never destroyed: DeviceTensors with static storage may be freed after other statics, and the
    // driver takes the pools back at exit anyway.
    static PoolRegistry* r = new PoolRegistry;
    return *r;
}

/// The pool of `device`, made on first use; null where the device has no memory pools. With
/// `for_allocation`, also null while the direct allocator is chosen.
inline cudaMemPool_t pool_for(int device, bool for_allocation = false) {
    PoolRegistry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    if (for_allocation && r.allocator != Allocator::pool) return nullptr;
    if (device >= static_cast<int>(r.pools.size())) {
        r.pools.resize(static_cast<std::size_t>(device) + 1, nullptr);
        r.usable.resize(static_cast<std::size_t>(device) + 1, -1);
    }
    if (r.usable[device] < 0) {
        int supported = 0;
        MMALIGN_CUDA_CHECK(cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, device));
        cudaMemPool_t pool = nullptr;
        if (supported) {
            cudaMemPoolProps props{};
            props.allocType = cudaMemAllocationTypePinned;
            props.location.type = cudaMemLocationTypeDevice;
            props.location.id = device;
            std::uint64_t keep = UINT64_MAX;  // never trim on synchronisation; trim_pool() does it on request
            // A device that reports pools but cannot make one (some virtualised setups) uses
            // cudaMalloc instead of failing every allocation.
            if (cudaMemPoolCreate(&pool, &props) != cudaSuccess) {
                pool = nullptr;
            } else if (cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep) != cudaSuccess) {
                (void)cudaMemPoolDestroy(pool);
                pool = nullptr;
            }
            (void)cudaGetLastError();  // a failure above is handled; do not leave it for the next check
        }
        r.pools[device] = pool;
        r.usable[device] = pool ? 1 : 0;
    }
    return r.pools[device];
}

/// Makes `device` current for its lifetime (frees must run on the allocation's device).
class DeviceGuard {
public:
    explicit DeviceGuard(int device) {
        if (cudaGetDevice(&previous_) == cudaSuccess && previous_ != device && cudaSetDevice(device) == cudaSuccess)
            switched_ = true;
    }
    ~DeviceGuard() {
        if (switched_) (void)cudaSetDevice(previous_);
    }
    DeviceGuard(const DeviceGuard&) = delete;
    DeviceGuard& operator=(const DeviceGuard&) = delete;

private:
    int previous_ = 0;
    bool switched_ = false;
};

}  // namespace detail

/// Chooses where later allocations come from; allocations already made are freed as they were
/// taken. Call it before creating tensors to keep every allocation of a program on one path.
inline void set_allocator(Allocator a) {
    detail::PoolRegistry& r = detail::registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.allocator = a;
}
inline Allocator allocator() {
    detail::PoolRegistry& r = detail::registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    return r.allocator;
}

/// `bytes` of memory on the current device, ordered on the legacy default stream (usable by any
/// blocking stream's later work, and by synchronous copies, at once).
inline Allocation allocate(std::size_t bytes) {
    Allocation a;
    MMALIGN_CUDA_CHECK(cudaGetDevice(&a.device));
    if (bytes == 0) return a;
    if (cudaMemPool_t pool = detail::pool_for(a.device, true)) {
        MMALIGN_CUDA_CHECK(cudaMallocFromPoolAsync(&a.data, bytes, pool, cudaStreamLegacy));
        a.pooled = true;
    } else {
        MMALIGN_CUDA_CHECK(cudaMalloc(&a.data, bytes));
    }
    return a;
}

/// Gives `a` back: to its pool in stream order (no host wait), or with cudaFree. Never throws
/// (destructors call it); a failure here means the context is already broken, and the next
/// checked call reports it.
inline void release(Allocation& a) noexcept {
    if (!a.data) return;
    detail::DeviceGuard guard(a.device);
    const cudaError_t e = a.pooled ? cudaFreeAsync(a.data, cudaStreamLegacy) : cudaFree(a.data);
    if (e != cudaSuccess) (void)cudaGetLastError();  // not left to be reported by an unrelated later check
    a = Allocation{};
}

namespace detail {
/// A byte count of the current device's pool; 0 without a pool.
inline std::size_t current_pool_bytes(cudaMemPoolAttr what) {
    int device = 0;
    MMALIGN_CUDA_CHECK(cudaGetDevice(&device));
    cudaMemPool_t pool = pool_for(device);
    if (!pool) return 0;
    std::uint64_t v = 0;
    MMALIGN_CUDA_CHECK(cudaMemPoolGetAttribute(pool, what, &v));
    return static_cast<std::size_t>(v);
}
}  // namespace detail

/// Bytes the current device's pool holds from the driver (in use or cached); 0 without a pool.
inline std::size_t pool_reserved_bytes() { return detail::current_pool_bytes(cudaMemPoolAttrReservedMemCurrent); }
/// Bytes of the current device's pool that tensors hold now.
inline std::size_t pool_used_bytes() { return detail::current_pool_bytes(cudaMemPoolAttrUsedMemCurrent); }

/// Returns the current device's unused pool memory to the driver, keeping at most `keep_bytes`
/// (for handing memory to another library in the same process). Waits for the legacy stream
/// first, so frees queued there have landed in the pool.
inline void trim_pool(std::size_t keep_bytes = 0) {
    int device = 0;
    MMALIGN_CUDA_CHECK(cudaGetDevice(&device));
    cudaMemPool_t pool = detail::pool_for(device);
    if (!pool) return;
    MMALIGN_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));
    MMALIGN_CUDA_CHECK(cudaMemPoolTrimTo(pool, keep_bytes));
}

}  // namespace mmalign::cuda
