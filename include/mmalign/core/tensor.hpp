// mmalign/core/tensor.hpp — dense row-major tensors: an owning Tensor<T> and a TensorView<T>.
//
// A Tensor owns 64-byte aligned storage; a TensorView is a pointer plus a Shape and never owns.
// Every kernel works on views, so the same code runs over library-owned buffers, memory-mapped
// checkpoints and xtensor containers adapted at the API boundary. T is the element type
// (float, double; bf16/f16 types slot in later as further element types).
#pragma once

#include <algorithm>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>

#include "mmalign/core/shape.hpp"

namespace mmalign {

template <class T>
class TensorView {
public:
    using value_type = std::remove_const_t<T>;

    TensorView() = default;
    TensorView(T* data, Shape shape) : data_(data), shape_(shape) {}
    // A view of mutable elements converts to a view of const elements, never the reverse.
    template <class U>
        requires(std::is_const_v<T> && std::is_same_v<std::remove_const_t<T>, U>)
    TensorView(TensorView<U> other) : data_(other.data()), shape_(other.shape()) {}

    T* data() const { return data_; }
    const Shape& shape() const { return shape_; }
    int rank() const { return shape_.rank(); }
    index_t dim(int i) const { return shape_[i]; }
    index_t numel() const { return shape_.numel(); }
    /// True for a view of nothing: no data (the default view, "no gradient wanted") or no elements.
    bool empty() const { return data_ == nullptr || numel() == 0; }

    T* begin() const { return data_; }
    T* end() const { return data_ + numel(); }

    /// The same elements under another shape of equal element count.
    TensorView reshape(Shape s) const {
        if (s.numel() != numel())
            throw ShapeError("reshape: cannot view " + shape_.str() + " as " + s.str());
        return {data_, s};
    }
    /// Rows [begin, end) along the first axis.
    TensorView slice(index_t begin, index_t end) const {
        if (rank() == 0 || begin < 0 || end < begin || end > dim(0))
            throw ShapeError("slice: [" + std::to_string(begin) + ", " + std::to_string(end) +
                             ") out of range for " + shape_.str());
        index_t inner = 1;
        for (int i = 1; i < rank(); ++i) inner *= dim(i);
        return {data_ + begin * inner, with_first(shape_, end - begin)};
    }

    T& operator()(index_t i) const { return data_[i]; }
    T& operator()(index_t i, index_t j) const { return data_[i * shape_[1] + j]; }
    T& operator()(index_t i, index_t j, index_t k) const {
        return data_[(i * shape_[1] + j) * shape_[2] + k];
    }
    T& operator()(index_t i, index_t j, index_t k, index_t l) const {
        return data_[((i * shape_[1] + j) * shape_[2] + k) * shape_[3] + l];
    }

private:
    static Shape with_first(const Shape& s, index_t n) {
        switch (s.rank()) {
            case 1: return {n};
            case 2: return {n, s[1]};
            case 3: return {n, s[1], s[2]};
            default: return {n, s[1], s[2], s[3]};
        }
    }

    T* data_ = nullptr;
    Shape shape_;
};

template <class T>
using ConstView = TensorView<const T>;

template <class T>
class Tensor {
    static_assert(std::is_trivially_copyable_v<T>, "mmalign::Tensor holds plain numeric elements only.");

public:
    static constexpr std::size_t alignment = 64;

    Tensor() = default;
    explicit Tensor(Shape s) { resize(s); }
    Tensor(Shape s, T fill) {
        resize(s);
        std::fill(begin(), end(), fill);
    }
    Tensor(const Tensor& o) : Tensor(o.shape_) { std::copy(o.begin(), o.end(), begin()); }
    Tensor(Tensor&&) noexcept = default;
    Tensor& operator=(const Tensor& o) {
        if (this != &o) {
            resize(o.shape_);
            std::copy(o.begin(), o.end(), begin());
        }
        return *this;
    }
    Tensor& operator=(Tensor&&) noexcept = default;

    /// Gives the tensor shape `s`. Storage is kept when it is large enough, so a buffer that is
    /// resized to the same shape every step allocates once. Contents are unspecified afterwards.
    void resize(Shape s) {
        index_t n = s.numel();
        if (n > capacity_) {
            data_.reset(static_cast<T*>(::operator new[](static_cast<std::size_t>(n) * sizeof(T),
                                                          std::align_val_t(alignment))));
            capacity_ = n;
        }
// GCC 12 at -O2/-O3 follows `s ? &s->child : nullptr` (modules' optional Saved*) into an
// impossible path and reports this store as an overflow; the store is to a live object.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif
        shape_ = s;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
    }
    void fill(T v) { std::fill(begin(), end(), v); }
    void zero() { fill(T(0)); }

    T* data() { return data_.get(); }
    const T* data() const { return data_.get(); }
    const Shape& shape() const { return shape_; }
    int rank() const { return shape_.rank(); }
    index_t dim(int i) const { return shape_[i]; }
    index_t numel() const { return shape_.numel(); }
    bool empty() const { return numel() == 0; }
    T* begin() { return data(); }
    T* end() { return data() + numel(); }
    const T* begin() const { return data(); }
    const T* end() const { return data() + numel(); }

    TensorView<T> view() { return {data(), shape_}; }
    ConstView<T> view() const { return {data(), shape_}; }
    ConstView<T> cview() const { return {data(), shape_}; }
    operator TensorView<T>() { return view(); }
    operator ConstView<T>() const { return view(); }

    T& operator()(index_t i) { return view()(i); }
    T& operator()(index_t i, index_t j) { return view()(i, j); }
    T& operator()(index_t i, index_t j, index_t k) { return view()(i, j, k); }
    T& operator()(index_t i, index_t j, index_t k, index_t l) { return view()(i, j, k, l); }
    T operator()(index_t i) const { return view()(i); }
    T operator()(index_t i, index_t j) const { return view()(i, j); }
    T operator()(index_t i, index_t j, index_t k) const { return view()(i, j, k); }
    T operator()(index_t i, index_t j, index_t k, index_t l) const { return view()(i, j, k, l); }

private:
    struct AlignedDelete {
        void operator()(T* p) const { ::operator delete[](p, std::align_val_t(alignment)); }
    };
    std::unique_ptr<T, AlignedDelete> data_;
    index_t capacity_ = 0;
    Shape shape_{0};  // a default Tensor holds no elements (Tensor(Shape{}) is a real scalar)
};

/// The rule of every copy and conversion between tensors (host or device, any element types):
/// the same number of elements. ShapeError names the operation and both shapes.
[[noreturn]] inline void throw_size_mismatch(const Shape& src, const Shape& dst, const char* what) {
    throw ShapeError(std::string(what) + ": source " + src.str() + " and destination " + dst.str() + " differ in size");
}
inline void check_same_size(const Shape& src, const Shape& dst, const char* what) {
    if (src.numel() != dst.numel()) throw_size_mismatch(src, dst, what);  // noreturn: callers' copies see the sizes agree
}

/// Copies `src` into `dst`; both must hold the same number of elements.
template <class T>
void copy(ConstView<T> src, TensorView<T> dst) {
    check_same_size(src.shape(), dst.shape(), "copy");
    if (src.numel()) std::memcpy(dst.data(), src.data(), static_cast<std::size_t>(src.numel()) * sizeof(T));
}

}  // namespace mmalign
