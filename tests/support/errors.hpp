// The message of the IoError a callable throws, for tests of error reporting.
#pragma once

#include <doctest/doctest.h>

#include <exception>
#include <string>

#include "mmalign/core/error.hpp"

namespace mmalign::test {

/// The IoError message `f` throws; fails the check if it throws nothing or something else.
template <class F>
std::string io_error_of(F&& f) {
    try {
        f();
    } catch (const IoError& e) {
        return e.what();
    } catch (const std::exception& e) {
        FAIL_CHECK("expected IoError, got another exception: ", e.what());
        return {};
    }
    FAIL_CHECK("expected IoError, nothing was thrown");
    return {};
}

}  // namespace mmalign::test
