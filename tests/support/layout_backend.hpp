// A CPU backend whose module tensors record a shape and own no storage, so that a full-size model
// (billions of parameters) can be built from its config only to read its parameter names and
// shapes — what the layout tests compare with transformers' state dicts. Building a module
// never runs a kernel; a forward on this backend is a programming error (every view it hands out
// points at nothing: TensorView::empty() is true).
#pragma once

#include "mmalign/backend/cpu/backend.hpp"

namespace mmalign::test {

/// A tensor of `T` that has a shape and no elements in memory.
template <class T>
class ShapeOnlyTensor {
public:
    ShapeOnlyTensor() = default;
    explicit ShapeOnlyTensor(Shape s) : shape_(s) {}

    void resize(Shape s) { shape_ = s; }
    void fill(T) {}  // nothing is stored, so there is nothing to set
    void zero() {}

    T* data() { return nullptr; }
    const T* data() const { return nullptr; }
    const Shape& shape() const { return shape_; }
    int rank() const { return shape_.rank(); }
    index_t dim(int i) const { return shape_[i]; }
    index_t numel() const { return shape_.numel(); }
    TensorView<T> view() { return {nullptr, shape_}; }
    ConstView<T> view() const { return {nullptr, shape_}; }
    ConstView<T> cview() const { return {nullptr, shape_}; }

private:
    Shape shape_{0};
};

/// CpuBackend<float> with storage-free module tensors (parameters, saved activations).
struct LayoutBackend : CpuBackend<float> {
    using Tensor = ShapeOnlyTensor<float>;
};

static_assert(Backend<LayoutBackend>, "LayoutBackend must stay a Backend so that every model template accepts it");

}  // namespace mmalign::test
