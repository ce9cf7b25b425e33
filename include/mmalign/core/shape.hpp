// mmalign/core/shape.hpp — extents of a row-major tensor of rank 0..4.
//
// Sizes are run-time values (structure lives in types, sizes in values). A Shape is a small
// value type; comparing and printing it is all the checking code needs.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "mmalign/core/error.hpp"

namespace mmalign {

using index_t = std::int64_t;

class Shape {
public:
    static constexpr int max_rank = 4;

    constexpr Shape() = default;
    Shape(std::initializer_list<index_t> dims) {
        if (dims.size() > max_rank)
            throw ShapeError("Shape: rank " + std::to_string(dims.size()) + " exceeds the maximum of 4");
        for (index_t d : dims) {
            if (d < 0) throw ShapeError("Shape: negative extent " + std::to_string(d));
            dims_[static_cast<std::size_t>(rank_++)] = d;
        }
    }

    constexpr int rank() const { return rank_; }
    index_t operator[](int i) const {
        if (i < 0) i += rank_;
        if (i < 0 || i >= rank_)
            throw ShapeError("Shape: axis " + std::to_string(i) + " out of range for " + str());
        return dims_[static_cast<std::size_t>(i)];
    }
    /// The element count; a product beyond index_t's range (sizes from an absurd config) throws
    /// instead of wrapping around to a small count.
    index_t numel() const { return product(rank_); }
    /// Product of all extents but the last: the row count when viewed as a matrix.
    index_t rows() const { return product(rank_ > 0 ? rank_ - 1 : 0); }
    index_t cols() const { return rank_ == 0 ? 1 : dims_[static_cast<std::size_t>(rank_ - 1)]; }

    friend bool operator==(const Shape& a, const Shape& b) {
        if (a.rank_ != b.rank_) return false;
        for (int i = 0; i < a.rank_; ++i)
            if (a.dims_[static_cast<std::size_t>(i)] != b.dims_[static_cast<std::size_t>(i)]) return false;
        return true;
    }

    std::string str() const {
        std::string s = "[";
        for (int i = 0; i < rank_; ++i) {
            if (i) s += ", ";
            s += std::to_string(dims_[static_cast<std::size_t>(i)]);
        }
        return s + "]";
    }

private:
    index_t product(int axes) const {
        index_t n = 1;
        for (int i = 0; i < axes; ++i)
            if (__builtin_mul_overflow(n, dims_[static_cast<std::size_t>(i)], &n))
                throw ShapeError("Shape " + str() + ": the element count overflows");
        return n;
    }

    std::array<index_t, max_rank> dims_{};
    int rank_ = 0;
};

/// Throws ShapeError "<what>: expected [..], found [..]" unless `found` equals `expected`.
/// An expected extent of -1 matches any extent (rank must still agree).
inline void expect_shape(const Shape& found, std::initializer_list<index_t> expected, const char* what) {
    bool ok = static_cast<int>(expected.size()) == found.rank();
    int i = 0;
    for (index_t e : expected) {
        if (!ok) break;
        if (e >= 0 && found[i] != e) ok = false;
        ++i;
    }
    if (ok) return;  // the message is built only on failure: this runs on every module call
    std::string want = "[";
    i = 0;
    for (index_t e : expected) want += (i++ ? ", " : "") + (e < 0 ? std::string("*") : std::to_string(e));
    throw ShapeError(std::string(what) + ": expected " + want + "], found " + found.str());
}

}  // namespace mmalign
