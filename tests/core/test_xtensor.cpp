// Tests of core/xtensor.hpp: zero-copy views in both directions (shared memory, shapes, strides),
// the row-major contiguity rule and its error, owning copies of any expression, lifetimes.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include <xtensor/xarray.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xstrided_view.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include "mmalign/core/xtensor.hpp"

using namespace mmalign;

namespace {

// 0, 1, 2, … in memory order, so an element's value is its row-major offset.
template <class T>
void iota(Tensor<T>& t) {
    for (index_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<T>(i);
}

// xtensor's row-major strides for `s`: the product of the later extents, 0 on axes of extent 1.
xt::dynamic_shape<std::ptrdiff_t> row_major_strides(const Shape& s) {
    xt::dynamic_shape<std::ptrdiff_t> st(static_cast<std::size_t>(s.rank()));
    std::ptrdiff_t step = 1;
    for (int i = s.rank(); i-- > 0;) {
        st[static_cast<std::size_t>(i)] = s[i] == 1 ? 0 : step;
        step *= s[i];
    }
    return st;
}

template <class T>
concept ViewOfTemporaryCompiles = requires { as_xtensor(std::declval<T>()); };
template <class T>
concept TensorViewOfTemporaryCompiles = requires { as_tensor_view(std::declval<T>()); };

std::string argument_error_of(auto&& f) {
    try {
        f();
    } catch (const ArgumentError& e) {
        return e.what();
    }
    FAIL_CHECK("expected ArgumentError");
    return {};
}

}  // namespace

TEST_CASE("as_xtensor shares the Tensor's memory: a write through either side is read through the other") {
    Tensor<float> t(Shape{2, 3}, 0.f);  // [2, 3]
    auto x = as_xtensor(t);
    auto x2 = as_xtensor<2>(t);
    CHECK(x.data() == t.data());
    CHECK(x2.data() == t.data());
    x(1, 2) = 5.f;
    CHECK(t(1, 2) == 5.f);
    t(0, 1) = 7.f;
    CHECK(x(0, 1) == 7.f);
    CHECK(x2(0, 1) == 7.f);
    x2(1, 0) = -2.f;
    CHECK(t(1, 0) == -2.f);
    // xtensor algebra over the view writes into the tensor too.
    x2 = x2 * 2.f;
    CHECK(t(1, 2) == 10.f);
    CHECK(t(0, 1) == 14.f);
}

TEST_CASE("as_xtensor carries the Shape and row-major strides for ranks 1 to 4 (and rank 0)") {
    for (Shape s : {Shape{}, Shape{5}, Shape{3, 4}, Shape{2, 3, 4}, Shape{2, 3, 4, 5}, Shape{2, 1, 3, 1}}) {
        CAPTURE(s.str());
        Tensor<double> t(s);  // [s]
        iota(t);
        auto x = as_xtensor(t);
        REQUIRE(x.dimension() == static_cast<std::size_t>(s.rank()));
        for (int i = 0; i < s.rank(); ++i) CHECK(x.shape()[static_cast<std::size_t>(i)] == static_cast<std::size_t>(s[i]));
        CHECK(std::equal(x.strides().begin(), x.strides().end(), row_major_strides(s).begin()));
        CHECK(x.size() == static_cast<std::size_t>(t.numel()));
        // Row-major: element (i, j, …) sits at the offset that TensorView's operator() computes.
        if (s == Shape{2, 3, 4, 5}) {
            CHECK(x(1, 2, 3, 4) == t(1, 2, 3, 4));
            CHECK(x(1, 2, 3, 4) == double(((1 * 3 + 2) * 4 + 3) * 5 + 4));
        }
        if (s.rank() == 3) CHECK(x(1, 2, 3) == t(1, 2, 3));
        if (s.rank() == 2) CHECK(x(2, 1) == t(2, 1));
        if (s == Shape{2, 1, 3, 1}) CHECK(x(1, 0, 2, 0) == t(1, 0, 2, 0));
        if (s.rank() == 0) CHECK(x() == 0.0);
    }
    Tensor<float> t4(Shape{2, 3, 4, 5});  // [2, 3, 4, 5]
    iota(t4);
    auto f4 = as_xtensor<4>(t4);
    CHECK(f4.strides() == std::array<std::ptrdiff_t, 4>{60, 20, 5, 1});
    CHECK(f4(1, 0, 2, 3) == t4(1, 0, 2, 3));
    auto f1 = as_xtensor<1>(ConstView<float>(t4.view().reshape(Shape{120})));
    CHECK(f1(119) == 119.f);
}

TEST_CASE("as_xtensor<N> and to_xtensor<N> reject a tensor of another rank with ShapeError") {
    Tensor<float> t(Shape{2, 3, 4});  // [2, 3, 4]
    CHECK_THROWS_WITH_AS(as_xtensor<2>(t), "as_xtensor: expected a tensor of rank 2, found [2, 3, 4]", ShapeError);
    CHECK_THROWS_WITH_AS(to_xtensor<4>(t), "to_xtensor: expected a tensor of rank 4, found [2, 3, 4]", ShapeError);
}

TEST_CASE("as_xtensor of const memory is read-only, and a view of a temporary Tensor does not compile") {
    const Tensor<float> t(Shape{2, 2}, 1.f);  // [2, 2]
    auto x = as_xtensor(t);
    auto v = as_xtensor<2>(t.view());
    static_assert(std::is_const_v<std::remove_reference_t<decltype(x(0, 0))>>);
    static_assert(std::is_const_v<std::remove_reference_t<decltype(v(0, 0))>>);
    CHECK(x.data() == t.data());
    static_assert(!ViewOfTemporaryCompiles<Tensor<float>>, "a view of a temporary Tensor would dangle");
    static_assert(!ViewOfTemporaryCompiles<const Tensor<float>>, "a view of a temporary Tensor would dangle");
    static_assert(ViewOfTemporaryCompiles<TensorView<float>>, "a view of a view is fine: the view does not own");
    static_assert(!TensorViewOfTemporaryCompiles<xt::xtensor<float, 2>>, "a view of a temporary container would dangle");
}

TEST_CASE("as_tensor_view shares the memory of xtensor, xarray and adaptors, with their shapes, ranks 1 to 4") {
    xt::xtensor<float, 3> a = xt::zeros<float>({2, 3, 4});  // [2, 3, 4]
    TensorView<float> v = as_tensor_view(a);
    CHECK(v.data() == a.data());
    CHECK(v.shape() == Shape{2, 3, 4});
    v(1, 2, 3) = 4.f;
    CHECK(a(1, 2, 3) == 4.f);
    a(0, 1, 2) = 9.f;
    CHECK(v(0, 1, 2) == 9.f);

    xt::xarray<double> b = xt::zeros<double>({2, 3, 4, 5});  // [2, 3, 4, 5]
    auto vb = as_tensor_view(b);
    static_assert(std::is_same_v<decltype(vb), TensorView<double>>);
    CHECK(vb.shape() == Shape{2, 3, 4, 5});
    vb(1, 2, 3, 4) = 1.5;
    CHECK(b(1, 2, 3, 4) == 1.5);

    xt::xtensor<std::int32_t, 1> c = {1, 2, 3};  // [3]
    const auto& cc = c;
    auto vc = as_tensor_view(cc);
    static_assert(std::is_same_v<decltype(vc), ConstView<std::int32_t>>, "a const container gives a ConstView");
    CHECK(vc.shape() == Shape{3});
    CHECK(vc(2) == 3);

    // A round trip: mmalign → xtensor adaptor → mmalign is the same memory and shape.
    Tensor<float> t(Shape{4, 5});  // [4, 5]
    auto x = as_xtensor<2>(t);
    TensorView<float> back = as_tensor_view(x);
    CHECK(back.data() == t.data());
    CHECK(back.shape() == t.shape());
}

TEST_CASE("as_tensor_view of a contiguous xt::view (rows, one row) points at the view's first element") {
    xt::xtensor<float, 2> a = xt::zeros<float>({5, 3});  // [5, 3]
    auto rows = xt::view(a, xt::range(1, 4), xt::all());  // [3, 3]
    auto vr = as_tensor_view(rows);
    CHECK(vr.data() == a.data() + 3);
    CHECK(vr.shape() == Shape{3, 3});
    vr(0, 1) = 2.f;
    CHECK(a(1, 1) == 2.f);
    auto row = xt::view(a, 4);  // [3]
    auto v4 = as_tensor_view(row);
    CHECK(v4.data() == a.data() + 12);
    CHECK(v4.shape() == Shape{3});
    // A column of a one-column array is contiguous too: extent-1 axes carry any stride.
    xt::xtensor<float, 2> col = xt::zeros<float>({4, 1});  // [4, 1]
    auto vcol = as_tensor_view(col);
    CHECK(vcol.shape() == Shape{4, 1});
}

TEST_CASE("as_tensor_view rejects non-contiguous input with ArgumentError naming expected and found strides") {
    xt::xtensor<float, 2> a = xt::zeros<float>({4, 3});  // [4, 3]
    auto stepped = xt::view(a, xt::range(0, 4, 2), xt::all());  // [2, 3], strides [6, 1]
    CHECK_FALSE(is_row_major_contiguous(stepped));
    CHECK(argument_error_of([&] { (void)as_tensor_view(stepped); }) ==
          "as_tensor_view: a TensorView needs row-major contiguous strides [3, 1] for shape [2, 3], found strides [6, 1] "
          "(in elements); copy it with to_tensor(e)");
    auto transposed = xt::transpose(a);  // [3, 4], strides [1, 3]
    CHECK_FALSE(is_row_major_contiguous(transposed));
    const std::string transposed_error = argument_error_of([&] { (void)as_tensor_view(transposed); });
    CHECK(transposed_error.find("strides [4, 1] for shape [3, 4], found strides [1, 3]") != std::string::npos);
    xt::xarray<float, xt::layout_type::column_major> cm = xt::zeros<float>({2, 3});  // [2, 3], strides [1, 2]
    CHECK_FALSE(is_row_major_contiguous(cm));
    CHECK_THROWS_AS((void)as_tensor_view(cm), ArgumentError);
    auto column = xt::view(a, xt::all(), 1);  // [4], stride 3
    CHECK_THROWS_AS((void)as_tensor_view(column), ArgumentError);
    using xt::placeholders::_;
    auto reversed = xt::view(a, xt::range(_, _, -1), xt::all());  // [4, 3], strides [-3, 1]
    CHECK_FALSE(is_row_major_contiguous(reversed));
    CHECK(argument_error_of([&] { (void)as_tensor_view(reversed); }).find("found strides [-3, 1]") != std::string::npos);
    // A lazy expression has no memory: as_tensor_view does not compile for it (static_assert).
    CHECK_FALSE(is_row_major_contiguous(a + 1.f));
}

TEST_CASE("to_tensor evaluates stepped, transposed, column-major and lazy expressions into an owning row-major Tensor") {
    xt::xtensor<float, 2> a = {{0, 1, 2}, {3, 4, 5}, {6, 7, 8}, {9, 10, 11}};  // [4, 3]
    auto stepped = xt::view(a, xt::range(0, 4, 2), xt::all());              // [2, 3]
    Tensor<float> s = to_tensor(stepped);                                    // [2, 3]
    CHECK(s.shape() == Shape{2, 3});
    CHECK(s(1, 0) == 6.f);
    CHECK(s(1, 2) == 8.f);
    Tensor<float> t = to_tensor(xt::transpose(a));  // [3, 4]
    CHECK(t.shape() == Shape{3, 4});
    for (index_t i = 0; i < 3; ++i)
        for (index_t j = 0; j < 4; ++j) CHECK(t(i, j) == a(std::size_t(j), std::size_t(i)));
    xt::xarray<float, xt::layout_type::column_major> cm = {{1, 2, 3}, {4, 5, 6}};  // [2, 3]
    Tensor<float> c = to_tensor(cm);                                                // [2, 3]
    CHECK(c.data()[1] == 2.f);  // row-major order in memory: 1 2 3 4 5 6
    CHECK(c.data()[3] == 4.f);
    Tensor<float> lazy = to_tensor(a * 2.f + 1.f);  // [4, 3]
    CHECK(lazy(3, 2) == 23.f);
    // A copy, not a view: changing the source leaves it alone.
    Tensor<float> copy = to_tensor(a);  // [4, 3]
    a(0, 0) = 100.f;
    CHECK(copy(0, 0) == 0.f);
    CHECK(copy.data() != a.data());
}

TEST_CASE("to_tensor<T> converts the element type (int64 ids to int32, double to float)") {
    xt::xtensor<std::int64_t, 2> ids = {{49406, 320, 49407}, {49406, 49407, 0}};  // [2, 3]
    Tensor<std::int32_t> i32 = to_tensor<std::int32_t>(ids);                        // [2, 3]
    static_assert(std::is_same_v<decltype(to_tensor<std::int32_t>(ids)), Tensor<std::int32_t>>);
    CHECK(i32.shape() == Shape{2, 3});
    CHECK(i32(0, 0) == 49406);
    CHECK(i32(1, 1) == 49407);
    xt::xarray<double> d = {0.5, 0.25};  // [2]
    Tensor<float> f = to_tensor<float>(d);  // [2]
    CHECK(f(1) == 0.25f);
}

TEST_CASE("owning results outlive their source: to_xtensor after the Tensor is gone, to_tensor after the xarray is") {
    xt::xtensor<float, 2, xt::layout_type::row_major> kept;  // [3, 4]
    xt::xarray<float, xt::layout_type::row_major> kept_dyn;  // [3, 4]
    {
        Tensor<float> t(Shape{3, 4});  // [3, 4]
        iota(t);
        kept = to_xtensor<2>(t);
        kept_dyn = to_xtensor(t.view());
        CHECK(kept.data() != t.data());
        t(2, 3) = -1.f;  // a copy: the source's later writes are not seen
        CHECK(kept(2, 3) == 11.f);
    }
    CHECK(kept(2, 3) == 11.f);
    CHECK(kept(1, 0) == 4.f);
    REQUIRE(kept_dyn.dimension() == 2);
    CHECK(kept_dyn(2, 1) == 9.f);

    Tensor<double> owned;
    {
        xt::xarray<double> src = {{1.0, 2.0}, {3.0, 4.0}};  // [2, 2]
        owned = to_tensor(src);
    }
    CHECK(owned.shape() == Shape{2, 2});
    CHECK(owned(1, 0) == 3.0);
}

TEST_CASE("ranks above mmalign's 4 are refused with ShapeError, empty arrays are views of nothing") {
    xt::xarray<float> five = xt::zeros<float>({1, 1, 1, 1, 2});  // [1, 1, 1, 1, 2]
    CHECK_THROWS_WITH_AS((void)as_tensor_view(five), "as_tensor_view: rank 5 exceeds mmalign's maximum of 4", ShapeError);
    CHECK_THROWS_WITH_AS((void)to_tensor(five), "to_tensor: rank 5 exceeds mmalign's maximum of 4", ShapeError);
    xt::xtensor<float, 2> none = xt::zeros<float>({0, 3});  // [0, 3]
    auto v = as_tensor_view(none);
    CHECK(v.shape() == Shape{0, 3});
    CHECK(v.empty());
    Tensor<float> t(Shape{0, 3});  // [0, 3]
    CHECK(as_xtensor<2>(t).size() == 0);
    CHECK(as_xtensor(Tensor<float>{}.cview()).size() == 0);  // a default Tensor: [0], no memory
}

TEST_CASE("a default TensorView (rank 0, no memory) is refused rather than read as one element") {
    CHECK_THROWS_WITH_AS(as_xtensor(TensorView<float>{}), "as_xtensor: the view [] has no memory (a default TensorView)",
                         ArgumentError);
    CHECK_THROWS_AS(to_xtensor<0>(ConstView<float>{}), ArgumentError);
}
