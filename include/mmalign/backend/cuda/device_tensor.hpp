// mmalign/backend/cuda/device_tensor.hpp — DeviceTensor<T>: an owning, row-major tensor in the
// memory of the current CUDA device, the `Tensor` of CudaBackend.
//
// It has the interface modules use from the host Tensor<T> (resize keeping capacity, view, data,
// shape, numel, rank, dim, zero, fill, deep copies, moves) but no element access from the host:
// bring data over with CudaBackend::from_host / to_host (or copy_from_host / to_host below).
// zero(), fill() and copies run on the legacy default stream, which orders them after every
// earlier operation of the backend's (blocking) stream and before every later one; so a module
// can be built, zeroed and reloaded between steps without explicit synchronisation. Storage comes
// from the device's caching pool (memory.hpp), allocated and freed in the same stream order, so
// creating and destroying tensors in a loop neither calls the driver nor waits for the device.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "mmalign/backend/cuda/error.hpp"
#include "mmalign/backend/cuda/kernels/pointwise.cuh"
#include "mmalign/backend/cuda/memory.hpp"
#include "mmalign/core/tensor.hpp"

namespace mmalign {

template <class T>
class DeviceTensor {
    static_assert(std::is_trivially_copyable_v<T>, "mmalign::DeviceTensor holds plain numeric elements only.");

public:
    DeviceTensor() = default;
    explicit DeviceTensor(Shape s) { resize(s); }
    DeviceTensor(Shape s, T value) {
        resize(s);
        fill(value);
    }
    DeviceTensor(const DeviceTensor& o) : DeviceTensor(o.shape_) { copy_device(o); }
    DeviceTensor(DeviceTensor&& o) noexcept { swap(o); }
    DeviceTensor& operator=(const DeviceTensor& o) {
        if (this != &o) {
            resize(o.shape_);
            copy_device(o);
        }
        return *this;
    }
    DeviceTensor& operator=(DeviceTensor&& o) noexcept {
        if (this != &o) {
            DeviceTensor tmp(std::move(o));
            swap(tmp);
        }
        return *this;
    }
    ~DeviceTensor() { release(); }

    void swap(DeviceTensor& o) noexcept {
        std::swap(alloc_, o.alloc_);
        std::swap(data_, o.data_);
        std::swap(capacity_, o.capacity_);
        std::swap(shape_, o.shape_);
    }

    /// Gives the tensor shape `s`. Storage is kept when it is large enough, so a buffer resized to
    /// the same shape every step allocates once. Contents are unspecified afterwards.
    void resize(Shape s) {
        const index_t n = s.numel();
        if (n > capacity_) {
            // Freed in stream order: the pool hands the old storage out again only after every
            // kernel queued so far (on any blocking stream) has finished with it.
            // If the allocation fails the tensor is left empty, not holding a stale shape.
            release();
            shape_ = Shape{0};
            alloc_ = cuda::allocate(static_cast<std::size_t>(n) * sizeof(T));
            data_ = static_cast<T*>(alloc_.data);
            capacity_ = n;
        }
        shape_ = s;
    }
    void zero() {
        if (numel()) MMALIGN_CUDA_CHECK(cudaMemsetAsync(data_, 0, bytes(), cudaStreamLegacy));
    }
    void fill(T v) {
        if (!numel()) return;
        cuda::kernels::fill_kernel<T><<<cuda::kernels::pointwise_blocks(numel()), cuda::kernels::pointwise_threads, 0,
                                        cudaStreamLegacy>>>(data_, numel(), v);
        MMALIGN_CUDA_CHECK_LAUNCH(cudaStreamLegacy);
    }

    T* data() { return data_; }
    const T* data() const { return data_; }
    const Shape& shape() const { return shape_; }
    int rank() const { return shape_.rank(); }
    index_t dim(int i) const { return shape_[i]; }
    index_t numel() const { return shape_.numel(); }
    bool empty() const { return numel() == 0; }
    /// Elements the storage holds (>= numel()).
    index_t capacity() const { return capacity_; }

    TensorView<T> view() { return {data_, shape_}; }
    ConstView<T> view() const { return {data_, shape_}; }
    ConstView<T> cview() const { return {data_, shape_}; }
    operator TensorView<T>() { return view(); }
    operator ConstView<T>() const { return view(); }

    /// Synchronous transfers, for tests and setup code (the backend's from_host/to_host order
    /// them on its stream instead).
    void copy_from_host(ConstView<T> host) {
        check_same_size(host.shape(), shape_, "DeviceTensor::copy_from_host");
        if (numel()) MMALIGN_CUDA_CHECK(cudaMemcpy(data_, host.data(), bytes(), cudaMemcpyHostToDevice));
    }
    Tensor<T> to_host() const {
        Tensor<T> t(shape_);
        if (numel()) MMALIGN_CUDA_CHECK(cudaMemcpy(t.data(), data_, bytes(), cudaMemcpyDeviceToHost));
        return t;
    }

private:
    std::size_t bytes() const { return static_cast<std::size_t>(numel()) * sizeof(T); }
    void copy_device(const DeviceTensor& o) {
        if (numel())
            MMALIGN_CUDA_CHECK(cudaMemcpyAsync(data_, o.data_, bytes(), cudaMemcpyDeviceToDevice, cudaStreamLegacy));
    }
    void release() noexcept {
        cuda::release(alloc_);
        data_ = nullptr;
        capacity_ = 0;
    }

    cuda::Allocation alloc_;
    T* data_ = nullptr;
    index_t capacity_ = 0;
    Shape shape_{0};  // a default DeviceTensor holds no elements
};

}  // namespace mmalign
