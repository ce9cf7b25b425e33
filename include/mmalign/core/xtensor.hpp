// mmalign/core/xtensor.hpp — host tensors as xtensor expressions and back, at the API boundary.
//
// mmalign computes on its own row-major Tensor/TensorView (Eigen and the backends do the
// arithmetic); xtensor is the numpy-like algebra for what callers do with inputs and outputs
// (similarities, softmax, argsort, top-k). The names say whether memory is shared:
//
//   as_xtensor(t), as_xtensor<N>(t)  zero-copy: an xtensor adaptor over a Tensor/TensorView's
//                                    elements (dynamic rank, or fixed rank N)
//   as_tensor_view(e)                zero-copy: a TensorView over an xtensor container, adaptor or
//                                    view; ArgumentError unless e is row-major contiguous
//   to_xtensor<N>(t), to_xtensor(t)  owning copies: xt::xtensor<T, N> / xt::xarray<T>
//   to_tensor(e), to_tensor<T>(e)    owning copy: evaluates any xtensor expression (stepped or
//                                    transposed views, column-major containers, lazy expressions)
//                                    into a Tensor, converting the element type to T when given
//
// Lifetimes: an as_* result owns nothing. It is valid while the memory it was made from lives
// and is not reallocated (Tensor::resize to more elements, an xarray's resize or assignment of
// another shape). as_* refuses a temporary Tensor for that reason; a view taken of a
// temporary (as_xtensor(make().view())) still compiles and dangles after the full expression. A to_* result owns its elements and
// outlives its source.
//
// Row-major is spelled out in every type below, so a program that changes
// XTENSOR_DEFAULT_LAYOUT still gets mmalign's layout.
//
// This header is not part of mmalign/mmalign.hpp: xtensor's headers add about a fifth to the
// compile time of a translation unit that includes the umbrella (0.8 s of 3.9 s with GCC 12 at
// -O3), so only code that uses xtensor pays for it, by including this header.
#pragma once

#include <array>
#include <cstddef>
#include <iterator>
#include <memory>
#include <span>
#include <string>
#include <type_traits>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xbuffer_adaptor.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xoperation.hpp>
#include <xtensor/xtensor.hpp>

#include "mmalign/core/error.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/core/tensor.hpp"

namespace mmalign {

/// A zero-copy xtensor view of dynamic rank over `T` elements (`T` const for read-only memory).
template <class T>
using XarrayView = xt::xarray_adaptor<xt::xbuffer_adaptor<T*, xt::no_ownership, std::allocator<std::remove_const_t<T>>>,
                                      xt::layout_type::row_major, xt::dynamic_shape<std::size_t>>;
/// A zero-copy xtensor view of fixed rank N over `T` elements.
template <class T, std::size_t N>
using XtensorView = xt::xtensor_adaptor<xt::xbuffer_adaptor<T*, xt::no_ownership, std::allocator<std::remove_const_t<T>>>,
                                        N, xt::layout_type::row_major>;

/// Any xtensor expression: containers, adaptors, views and lazy expressions.
template <class E>
concept XtensorExpression = xt::is_xexpression<std::remove_cvref_t<E>>::value;

namespace detail {

/// The mmalign Shape of xtensor extents; ShapeError when the rank exceeds mmalign's 4.
template <class S>
Shape shape_of_extents(const S& extents, const char* what) {
    const std::size_t rank = std::size(extents);
    if (rank > static_cast<std::size_t>(Shape::max_rank))
        throw ShapeError(std::string(what) + ": rank " + std::to_string(rank) + " exceeds mmalign's maximum of " +
                         std::to_string(Shape::max_rank));
    index_t d[Shape::max_rank] = {};
    std::size_t i = 0;
    for (auto e : extents) d[i++] = static_cast<index_t>(e);
    switch (rank) {
        case 0: return Shape{};
        case 1: return Shape{d[0]};
        case 2: return Shape{d[0], d[1]};
        case 3: return Shape{d[0], d[1], d[2]};
        default: return Shape{d[0], d[1], d[2], d[3]};
    }
}

/// A default TensorView (the "not wanted" sentinel) has rank 0, so one element, but no memory.
template <class T>
void check_has_memory(TensorView<T> v, const char* what) {
    if (v.data() == nullptr && v.numel() != 0)
        throw ArgumentError(std::string(what) + ": the view " + v.shape().str() + " has no memory (a default TensorView)");
}

template <class T>
XarrayView<T> adapt_dynamic(TensorView<T> v) {
    check_has_memory(v, "as_xtensor");
    xt::dynamic_shape<std::size_t> shape(static_cast<std::size_t>(v.rank()));
    for (int i = 0; i < v.rank(); ++i) shape[static_cast<std::size_t>(i)] = static_cast<std::size_t>(v.dim(i));
    return XarrayView<T>(typename XarrayView<T>::storage_type(v.data(), static_cast<std::size_t>(v.numel())), shape);
}

template <std::size_t N, class T>
XtensorView<T, N> adapt_fixed(TensorView<T> v, const char* what) {
    check_has_memory(v, what);
    if (static_cast<std::size_t>(v.rank()) != N)
        throw ShapeError(std::string(what) + ": expected a tensor of rank " + std::to_string(N) + ", found " +
                         v.shape().str());
    std::array<std::size_t, N> shape{};
    for (std::size_t i = 0; i < N; ++i) shape[i] = static_cast<std::size_t>(v.dim(static_cast<int>(i)));
    return XtensorView<T, N>(typename XtensorView<T, N>::storage_type(v.data(), static_cast<std::size_t>(v.numel())),
                             shape);
}

template <class S>
std::string sequence_str(const S& s) {
    std::string out = "[";
    bool first = true;
    for (auto v : s) {
        out += first ? "" : ", ";
        out += std::to_string(v);
        first = false;
    }
    return out + "]";
}

}  // namespace detail

// ---- mmalign → xtensor, zero-copy -------------------------------------------------------------

/// An xtensor expression of dynamic rank over the view's elements: writes through it change the
/// tensor. Valid while the viewed memory is.
template <class T>
XarrayView<T> as_xtensor(TensorView<T> v) {
    return detail::adapt_dynamic(v);
}
template <class T>
XarrayView<T> as_xtensor(Tensor<T>& t) {
    return detail::adapt_dynamic(t.view());
}
template <class T>
XarrayView<const T> as_xtensor(const Tensor<T>& t) {
    return detail::adapt_dynamic(t.cview());
}
/// A view of a temporary Tensor would dangle at the end of the statement: keep the Tensor in a
/// variable, or take an owning copy with to_xtensor.
template <class T>
void as_xtensor(Tensor<T>&&) = delete;
template <class T>
void as_xtensor(const Tensor<T>&&) = delete;

/// The same with a fixed rank N (faster xtensor algebra: shapes and strides are std::arrays);
/// ShapeError when the tensor's rank is not N.
template <std::size_t N, class T>
XtensorView<T, N> as_xtensor(TensorView<T> v) {
    return detail::adapt_fixed<N>(v, "as_xtensor");
}
template <std::size_t N, class T>
XtensorView<T, N> as_xtensor(Tensor<T>& t) {
    return detail::adapt_fixed<N>(t.view(), "as_xtensor");
}
template <std::size_t N, class T>
XtensorView<const T, N> as_xtensor(const Tensor<T>& t) {
    return detail::adapt_fixed<N>(t.cview(), "as_xtensor");
}
template <std::size_t N, class T>
void as_xtensor(Tensor<T>&&) = delete;
template <std::size_t N, class T>
void as_xtensor(const Tensor<T>&&) = delete;

// ---- mmalign → xtensor, owning ----------------------------------------------------------------

/// An owning xt::xtensor<T, N> copy of the elements; ShapeError when the rank is not N.
template <std::size_t N, class T>
xt::xtensor<std::remove_const_t<T>, N, xt::layout_type::row_major> to_xtensor(TensorView<T> v) {
    return detail::adapt_fixed<N>(ConstView<std::remove_const_t<T>>(v), "to_xtensor");
}
template <std::size_t N, class T>
xt::xtensor<T, N, xt::layout_type::row_major> to_xtensor(const Tensor<T>& t) {
    return to_xtensor<N>(t.cview());
}
/// An owning xt::xarray<T> copy of the elements.
template <class T>
xt::xarray<std::remove_const_t<T>, xt::layout_type::row_major> to_xtensor(TensorView<T> v) {
    return detail::adapt_dynamic(ConstView<std::remove_const_t<T>>(v));
}
template <class T>
xt::xarray<T, xt::layout_type::row_major> to_xtensor(const Tensor<T>& t) {
    return to_xtensor(t.cview());
}

// ---- xtensor → mmalign, zero-copy -------------------------------------------------------------

/// True when `e` holds memory (a container, an adaptor, a view with data()) laid out as a
/// row-major contiguous block, the layout TensorView describes. Axes of extent 1 may carry any
/// stride (xtensor gives them 0), and an expression with no elements always qualifies.
template <XtensorExpression E>
bool is_row_major_contiguous(const E& e) {
    if constexpr (!(xt::has_data_interface<E>::value && xt::has_strides<E>::value)) {
        return false;
    } else {
        const auto& shape = e.shape();
        const auto& strides = e.strides();
        const std::size_t rank = std::size(shape);
        std::ptrdiff_t step = 1;
        for (std::size_t i = rank; i-- > 0;) {
            const auto n = static_cast<std::ptrdiff_t>(shape[i]);
            if (n == 0) return true;
            if (n != 1 && static_cast<std::ptrdiff_t>(strides[i]) != step) return false;
            step *= n;
        }
        return true;
    }
}

/// A TensorView over the memory of an xtensor container, adaptor or view (xt::view with ranges,
/// xt::strided_view), with e's shape; no copy. A const `e` gives a ConstView. ArgumentError naming
/// the expected and found strides when `e` is not row-major contiguous (a step, a transpose, a
/// column-major container): copy those with to_tensor(e). Valid while e's memory is.
template <XtensorExpression E>
auto as_tensor_view(E& e) {
    using Plain = std::remove_const_t<E>;
    static_assert(xt::has_data_interface<Plain>::value && xt::has_strides<Plain>::value,
                  "as_tensor_view shares memory, so it needs an xtensor expression that holds memory (a container, "
                  "an adaptor or a view of one); evaluate other expressions into a Tensor with to_tensor(e).");
    const Shape shape = detail::shape_of_extents(e.shape(), "as_tensor_view");
    if (!is_row_major_contiguous(e)) {
        std::array<index_t, Shape::max_rank> want{};  // row-major strides: products of the later extents
        index_t step = 1;
        for (int i = shape.rank(); i-- > 0; step *= shape[i]) want[static_cast<std::size_t>(i)] = step;
        const std::span<const index_t> wanted(want.data(), static_cast<std::size_t>(shape.rank()));
        throw ArgumentError("as_tensor_view: a TensorView needs row-major contiguous strides " +
                            detail::sequence_str(wanted) + " for shape " +
                            shape.str() + ", found strides " + detail::sequence_str(e.strides()) +
                            " (in elements); copy it with to_tensor(e)");
    }
    auto* data = e.data() + e.data_offset();
    return TensorView<std::remove_pointer_t<decltype(data)>>(data, shape);
}
/// A view of a temporary would dangle: name the expression first, or copy it with to_tensor.
template <XtensorExpression E>
    requires(!std::is_lvalue_reference_v<E>)
void as_tensor_view(E&&) = delete;

// ---- xtensor → mmalign, owning ----------------------------------------------------------------

/// Evaluates any xtensor expression into an owning Tensor of e's shape (rank ≤ 4, else
/// ShapeError). `to_tensor<T>(e)` converts the elements to T (static_cast), e.g. int64 ids to
/// int32 or double to float; the default keeps e's value type.
template <class T = void, XtensorExpression E>
auto to_tensor(const E& e) {
    using V = std::conditional_t<std::is_void_v<T>, std::remove_cv_t<typename E::value_type>, T>;
    Tensor<V> out(detail::shape_of_extents(e.shape(), "to_tensor"));
    auto dst = detail::adapt_dynamic(out.view());
    if constexpr (std::is_same_v<V, std::remove_cv_t<typename E::value_type>>)
        xt::noalias(dst) = e;
    else
        xt::noalias(dst) = xt::cast<V>(e);
    return out;
}

}  // namespace mmalign
