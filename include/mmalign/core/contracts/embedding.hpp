// mmalign/core/contracts/embedding.hpp — the id check of every backend's embedding lookup and
// scatter-add.
//
// Ids are host memory on every backend (core/backend.hpp). An id outside the table would read
// (forward) or write (backward) outside it, so each backend checks them all on the host before
// the op runs, with this one message.
#pragma once

#include <cstdint>
#include <string>

#include "mmalign/core/error.hpp"
#include "mmalign/core/shape.hpp"

namespace mmalign {

/// Throws ArgumentError naming the first of ids[0, n) outside [0, rows); `what` names the op.
inline void check_table_ids(const std::int32_t* ids, index_t n, index_t rows, const char* what) {
    for (index_t i = 0; i < n; ++i)
        if (ids[i] < 0 || ids[i] >= rows)
            throw ArgumentError(std::string(what) + ": id " + std::to_string(ids[i]) + " at position " +
                                std::to_string(i) + " is outside the table of " + std::to_string(rows) + " rows");
}

}  // namespace mmalign
