// mmalign/io/idx.hpp — the IDX format of MNIST and Fashion-MNIST (LeCun et al.), raw or gzipped.
//
//   u8 0, u8 0, u8 type (0x08 = unsigned byte), u8 rank; rank × u32 big-endian extents; data
// Only unsigned-byte data is read (all that (Fashion-)MNIST uses). The header is validated
// against the file: the magic, a rank of 1–4, extents whose product equals the bytes that
// follow. Anything else throws IoError naming the file and what was expected and found.
#pragma once

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "mmalign/core/error.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/io/gzip.hpp"

namespace mmalign::io {

struct IdxArray {
    Shape shape;
    std::vector<std::uint8_t> data;  // row-major
};

inline IdxArray parse_idx(std::string_view bytes, const std::string& name) {
    if (bytes.size() < 4) throw IoError(name + ": IDX file of " + std::to_string(bytes.size()) + " bytes has no header");
    const auto u8 = [&](std::size_t i) { return static_cast<std::uint8_t>(bytes[i]); };
    if (u8(0) != 0 || u8(1) != 0)
        throw IoError(name + ": not an IDX file (expected magic 00 00, found " + std::to_string(u8(0)) + " " +
                      std::to_string(u8(1)) + ")");
    if (u8(2) != 0x08)
        throw IoError(name + ": IDX element type " + std::to_string(u8(2)) + " is not unsigned byte (8)");
    const int rank = u8(3);
    if (rank < 1 || rank > Shape::max_rank) throw IoError(name + ": IDX rank " + std::to_string(rank) + " is not 1..4");
    if (bytes.size() < 4 + 4 * std::size_t(rank)) throw IoError(name + ": IDX header truncated");
    index_t dims[4] = {1, 1, 1, 1};
    std::uint64_t count = 1;
    for (int d = 0; d < rank; ++d) {
        const std::size_t o = 4 + 4 * std::size_t(d);
        dims[d] = index_t(u8(o)) << 24 | index_t(u8(o + 1)) << 16 | index_t(u8(o + 2)) << 8 | index_t(u8(o + 3));
        count *= std::uint64_t(dims[d]);
        if (count > (std::uint64_t(1) << 34)) throw IoError(name + ": IDX extents are implausibly large");
    }
    const std::size_t header = 4 + 4 * std::size_t(rank);
    if (bytes.size() - header != count)
        throw IoError(name + ": IDX header promises " + std::to_string(count) + " bytes of data, found " +
                      std::to_string(bytes.size() - header));
    IdxArray a;
    switch (rank) {
        case 1: a.shape = Shape{dims[0]}; break;
        case 2: a.shape = Shape{dims[0], dims[1]}; break;
        case 3: a.shape = Shape{dims[0], dims[1], dims[2]}; break;
        default: a.shape = Shape{dims[0], dims[1], dims[2], dims[3]}; break;
    }
    a.data.assign(bytes.begin() + std::ptrdiff_t(header), bytes.end());
    return a;
}

/// Reads an IDX file, gunzipping it first when it starts with the gzip magic.
inline IdxArray load_idx(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw IoError(path + ": cannot open file");
    std::stringstream ss;
    ss << in.rdbuf();
    std::string bytes = ss.str();
    if (is_gzip(bytes)) bytes = gunzip(bytes, path);
    return parse_idx(bytes, path);
}

}  // namespace mmalign::io
