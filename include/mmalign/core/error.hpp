// mmalign/core/error.hpp — the exception hierarchy.
//
// Every failure that a caller can cause (wrong shapes, bad files, bad configs) is reported by
// throwing one of these. Messages name the thing (tensor, file, field) and say what was
// expected and what was found, so a user never needs a debugger to read them.
#pragma once

#include <stdexcept>
#include <string>

namespace mmalign {

/// Base of every exception mmalign throws on purpose.
class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A tensor had the wrong rank or extents: "<what>: expected [..], found [..]".
class ShapeError : public Error {
public:
    using Error::Error;
};

/// A value was out of the range a function accepts (a negative size, an unknown option).
class ArgumentError : public Error {
public:
    using Error::Error;
};

/// Reading or writing outside data failed: a missing file, a corrupt header, a bad dtype.
class IoError : public Error {
public:
    using Error::Error;
};

}  // namespace mmalign
