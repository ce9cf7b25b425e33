// Tests of core/shape.hpp and core/tensor.hpp: extents, views, reshape, slicing and the shape
// errors users see.
#include <doctest/doctest.h>

#include <string>

#include "mmalign/core/tensor.hpp"

using namespace mmalign;

TEST_CASE("Shape reports rank, element count and rows/cols of its matrix view") {
    Shape s{2, 3, 4};
    CHECK(s.rank() == 3);
    CHECK(s.numel() == 24);
    CHECK(s.rows() == 6);
    CHECK(s.cols() == 4);
    CHECK(s[-1] == 4);
    CHECK(s.str() == "[2, 3, 4]");
    CHECK(Shape{}.numel() == 1);
    CHECK(Shape{2, 3} == Shape{2, 3});
    CHECK_FALSE(Shape{2, 3} == Shape{3, 2});
}

TEST_CASE("Shape rejects negative extents, ranks above 4 and out-of-range axes") {
    CHECK_THROWS_AS(Shape({2, -1}), ShapeError);
    CHECK_THROWS_AS(Shape({1, 2, 3, 4, 5}), ShapeError);
    CHECK_THROWS_AS(Shape({1, 2})[2], ShapeError);
}

TEST_CASE("expect_shape names the tensor and prints expected and found extents") {
    Shape s{2, 5, 8};
    CHECK_NOTHROW(expect_shape(s, {2, -1, 8}, "x"));
    try {
        expect_shape(s, {2, 5, 16}, "attention input");
        FAIL("expect_shape accepted a wrong shape");
    } catch (const ShapeError& e) {
        CHECK(std::string(e.what()) == "attention input: expected [2, 5, 16], found [2, 5, 8]");
    }
    CHECK_THROWS_AS(expect_shape(s, {2, 5}, "rank"), ShapeError);
}

TEST_CASE("Tensor owns aligned storage, and views see and change its elements") {
    Tensor<float> t(Shape{2, 3}, 1.5f);
    CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % Tensor<float>::alignment == 0);
    TensorView<float> v = t.view();
    v(1, 2) = 7.f;
    CHECK(t(1, 2) == 7.f);
    ConstView<float> c = v;  // mutable → const converts implicitly
    CHECK(c(0, 0) == 1.5f);
    Tensor<float> copy = t;
    copy(0, 0) = 0.f;
    CHECK(t(0, 0) == 1.5f);  // deep copy
}

TEST_CASE("Tensor::resize keeps storage when the new shape fits, so steady-state steps allocate nothing") {
    Tensor<double> t(Shape{4, 4});
    const double* p = t.data();
    t.resize(Shape{2, 8});
    CHECK(t.data() == p);
    t.resize(Shape{3});
    CHECK(t.data() == p);
    t.resize(Shape{5, 5});
    CHECK(t.numel() == 25);
}

TEST_CASE("reshape and slice give views of the same elements and reject mismatches") {
    Tensor<int> t(Shape{3, 4});
    for (index_t i = 0; i < 12; ++i) t.data()[i] = static_cast<int>(i);
    auto r = t.view().reshape(Shape{2, 6});
    CHECK(r(1, 0) == 6);
    auto s = t.view().slice(1, 3);
    CHECK(s.shape() == Shape{2, 4});
    CHECK(s(0, 0) == 4);
    CHECK_THROWS_AS(t.view().reshape(Shape{5, 2}), ShapeError);
    CHECK_THROWS_AS(t.view().slice(2, 4), ShapeError);
}

TEST_CASE("copy moves elements between views of equal size and refuses others") {
    Tensor<float> a(Shape{2, 2}, 3.f), b(Shape{4});
    copy<float>(a.view(), b.view());
    CHECK(b(3) == 3.f);
    Tensor<float> c(Shape{3});
    CHECK_THROWS_AS(copy<float>(a.view(), c.view()), ShapeError);
}

TEST_CASE("zero-sized tensors and views are empty and safe to slice, fill and count") {
    Tensor<float> none;
    CHECK(none.empty());
    CHECK(none.numel() == 0);
    none.zero();  // no storage, nothing to write
    CHECK(TensorView<float>{}.empty());
    Tensor<float> scalar(Shape{});
    CHECK_FALSE(scalar.empty());
    Tensor<float> rows0(Shape{0, 5});
    CHECK(rows0.view().slice(0, 0).numel() == 0);
    CHECK(Shape({4, 0}).rows() == 4);
    CHECK(Shape({0, 3}).rows() == 0);
}
