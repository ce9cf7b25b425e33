// mmalign/io/idx.hpp — the IDX format of MNIST and Fashion-MNIST (LeCun et al.), raw or gzipped.
//
//   u8 0, u8 0, u8 type, u8 rank; rank × u32 big-endian extents; data (row-major)
//
// Only unsigned-byte data (type 0x08) is read: all that (Fashion-)MNIST stores. The header is
// checked before anything is allocated from it: the magic, the type code, a rank of 1 to 4, no
// zero extent, a product of extents at most max_idx_elements (checked without overflow), and
// that product against the file — equal to the bytes after the header in a raw file; at most
// what the compressed size can inflate to in a gzipped one (1032:1, DEFLATE's limit: zlib's
// "Technical Details", zlib.net/zlib_tech.html), whose data is then read in growing pieces, so
// memory follows the bytes actually there, never the header's claim, and must end exactly where
// the header says. The file is opened through io/input_file.hpp, so a
// FIFO, a directory, a device, an empty or an oversized file is refused by its kind first.
// Every refusal is one IoError line, "IDX: '<path>': <reason>".
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "mmalign/core/error.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/io/gzip.hpp"
#include "mmalign/io/input_file.hpp"

namespace mmalign::io {

/// The largest IDX file (raw or gzipped) load_idx opens: Fashion-MNIST's largest is 47 MB raw.
inline constexpr std::uintmax_t max_idx_file_bytes = std::uintmax_t(1) << 30;
/// The most elements (bytes of data) one IDX array may hold: 2^30, twenty times the
/// 47,040,000 of Fashion-MNIST's training images.
inline constexpr std::uint64_t max_idx_elements = std::uint64_t(1) << 30;

struct IdxArray {
    Shape shape;
    std::vector<std::uint8_t> data;  // row-major
};

namespace detail::idx {

/// Bytes from memory, as the file readers give them.
struct MemorySource {
    std::string_view bytes;
    std::size_t pos = 0;
    std::size_t read(char* dst, std::size_t n) {
        const std::size_t k = std::min(n, bytes.size() - pos);
        if (k) std::memcpy(dst, bytes.data() + pos, k);
        pos += k;
        return k;
    }
};

/// Bytes from a descriptor (a checked regular file).
struct FileSource {
    const InputFile* file;
    std::size_t read(char* dst, std::size_t n) {
        std::size_t got = 0;
        while (got < n) {
            const ssize_t k = ::read(file->fd(), dst + got, n - got);
            if (k < 0) {
                if (errno == EINTR) continue;
                input_file_fail("IDX", file->path(), std::string("read error (") + std::strerror(errno) + ")");
            }
            if (k == 0) break;
            got += static_cast<std::size_t>(k);
        }
        return got;
    }
};

/// Reads as many of n bytes as the source has.
template <class Source>
std::size_t read_full(Source& src, char* dst, std::size_t n) {
    std::size_t got = 0;
    while (got < n) {
        const std::size_t k = src.read(dst + got, n - got);
        if (k == 0) break;
        got += k;
    }
    return got;
}

inline std::string hex2(unsigned v) {
    constexpr char hex[] = "0123456789abcdef";
    return std::string("0x") + hex[(v >> 4) & 15] + hex[v & 15];
}

/// Reads one IDX array from `src`. `total` is the whole input's size when it is known (raw data),
/// `max_inflated` the most the input can decompress to when it is gzipped (0: raw).
template <class Source>
IdxArray read(Source& src, const std::string& path, std::uint64_t total, std::uint64_t max_inflated) {
    auto fail = [&](const std::string& why) { input_file_fail("IDX", path, why); };
    const std::string where = max_inflated ? "the decompressed file" : "the file";
    unsigned char head[4 + 4 * Shape::max_rank] = {};
    const std::size_t got = read_full(src, reinterpret_cast<char*>(head), 4);
    if (got < 4) fail("no IDX header: " + where + " has " + std::to_string(got) + " bytes, the header at least 8");
    if (head[0] != 0 || head[1] != 0)
        fail("not an IDX file (it starts " + hex2(head[0]) + " " + hex2(head[1]) + ", not the magic 0x00 0x00)");
    const unsigned type = head[2];
    if (type != 0x08) {
        const char* known = type == 0x09 ? "signed byte" : type == 0x0B ? "short" : type == 0x0C ? "int"
                          : type == 0x0D ? "float" : type == 0x0E ? "double" : nullptr;
        if (known)
            fail("element type " + hex2(type) + " (" + known +
                 ") is not supported: mmalign reads unsigned bytes (0x08), what (Fashion-)MNIST stores");
        fail("unknown IDX element type code " + hex2(type) + " (the format defines 0x08, 0x09, 0x0b to 0x0e)");
    }
    const int rank = head[3];
    if (rank < 1 || rank > Shape::max_rank) fail("rank " + std::to_string(rank) + " is not 1 to 4");
    const std::size_t header = 4 + 4 * std::size_t(rank);
    if (read_full(src, reinterpret_cast<char*>(head) + 4, header - 4) < header - 4)
        fail("header truncated: rank " + std::to_string(rank) + " needs " + std::to_string(header) + " bytes, " + where +
             " is shorter");
    index_t dims[Shape::max_rank] = {1, 1, 1, 1};
    std::string dims_text;
    std::uint64_t count = 1;
    bool over = false;
    for (int d = 0; d < rank; ++d) {
        const unsigned char* p = head + 4 + 4 * d;
        const std::uint64_t x = std::uint64_t(p[0]) << 24 | std::uint64_t(p[1]) << 16 | std::uint64_t(p[2]) << 8 | p[3];
        dims_text += (d ? " x " : "") + std::to_string(x);
        if (x == 0) fail("dimension " + std::to_string(d) + " is 0 (an IDX array holds at least one element)");
        dims[d] = static_cast<index_t>(x);
        // count <= 2^30 and x < 2^32: the product fits 64 bits before it is compared.
        if (!over) {
            count *= x;
            over = count > max_idx_elements;
        }
    }
    if (over)
        fail("dimensions " + dims_text + " hold more than the " + std::to_string(max_idx_elements) +
             " elements this reader accepts");
    if (total && total - header != count)
        fail("the header (" + dims_text + ") promises " + std::to_string(count) + " bytes of data, the file holds " +
             std::to_string(total - header));
    if (max_inflated && count > max_inflated)
        fail("the header (" + dims_text + ") promises " + std::to_string(count) + " bytes of data, more than the " +
             std::to_string(max_inflated) + " the gzipped file can inflate to (DEFLATE expands at most 1032:1)");

    IdxArray a;
    switch (rank) {
        case 1: a.shape = Shape{dims[0]}; break;
        case 2: a.shape = Shape{dims[0], dims[1]}; break;
        case 3: a.shape = Shape{dims[0], dims[1], dims[2]}; break;
        default: a.shape = Shape{dims[0], dims[1], dims[2], dims[3]}; break;
    }
    // Raw data is as long as the header says (checked above); gzipped data is read in growing
    // pieces, so the memory follows what the stream delivers.
    std::size_t have = 0;
    while (have < count) {
        const std::size_t next = total ? count : std::min<std::uint64_t>(count, std::max<std::size_t>(std::size_t(1) << 20, 2 * have));
        a.data.resize(next);
        const std::size_t k = read_full(src, reinterpret_cast<char*>(a.data.data()) + have, next - have);
        have += k;
        if (have < next) break;
    }
    if (have < count)
        fail("the header (" + dims_text + ") promises " + std::to_string(count) + " bytes of data, " + where +
             " holds " + std::to_string(have));
    char extra;
    if (src.read(&extra, 1) != 0)
        fail(where + " holds more than the " + std::to_string(count) + " bytes of data its header (" + dims_text +
             ") promises");
    return a;
}

/// The name gzip messages carry: "IDX: '<path>'", escaped as input_file_fail escapes paths.
inline std::string gzip_label(const std::string& path) { return "IDX: '" + gzip::shown_name(path) + "'"; }

}  // namespace detail::idx

/// Parses an IDX file's bytes (gunzipping them first when they start with the gzip magic);
/// `name` stands for the file in messages.
inline IdxArray parse_idx(std::string_view bytes, const std::string& name) {
    if (is_gzip(bytes)) {
        GzipReader z(bytes, detail::idx::gzip_label(name));
        return detail::idx::read(z, name, 0, std::max<std::uint64_t>(1, 1032 * std::uint64_t(bytes.size())));
    }
    if (bytes.empty()) input_file_fail("IDX", name, "the file is empty");
    detail::idx::MemorySource src{bytes};
    return detail::idx::read(src, name, bytes.size(), 0);
}

/// Reads an IDX file of at most max_idx_file_bytes, gunzipping it when it starts with the gzip magic.
inline IdxArray load_idx(const std::string& path) {
    const InputFile f = open_input_file(path, max_idx_file_bytes, "IDX");
    char magic[2] = {};
    detail::idx::FileSource src{&f};
    const std::size_t n = detail::idx::read_full(src, magic, 2);
    if (n == 2 && is_gzip(std::string_view(magic, 2))) {
        // The compressed file whole (at most the cap), inflated piece by piece.
        std::string gz(static_cast<std::size_t>(f.size()), '\0');
        std::memcpy(gz.data(), magic, 2);
        if (detail::idx::read_full(src, gz.data() + 2, gz.size() - 2) != gz.size() - 2)
            input_file_fail("IDX", path, "truncated (the file changed while it was read)");
        GzipReader z(gz, detail::idx::gzip_label(path));
        return detail::idx::read(z, path, 0, 1032 * std::uint64_t(gz.size()));
    }
    if (::lseek(f.fd(), 0, SEEK_SET) != 0) input_file_fail("IDX", path, "cannot seek to the start");
    return detail::idx::read(src, path, f.size(), 0);
}

}  // namespace mmalign::io
