// tests/fuzz/fuzz_idx.cpp — libFuzzer target for the IDX reader and the gzip decoder under it.
//
// Each input is a whole file given to parse_idx, which gunzips it when it starts with the gzip
// magic (so mutations reach zlib through io/gzip.hpp's bounds: truncations, bad trailers, extra
// members, bombs), and the same bytes gzipped first (so mutated IDX headers are also read through
// the streaming gzip path). An accepted array must hold exactly the elements its shape names.
// mmalign::Error is the reader's only permitted way to refuse; anything else — another exception,
// a sanitizer report, a crash, an allocation over the RSS limit — is a bug.
// Seeds: tests/fuzz/corpus/fuzz_idx/ (raw and gzipped IDX files of rank 1, 3 and 4).
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "mmalign/io/idx.hpp"

namespace {

void parse(std::string_view bytes) {
    try {
        const mmalign::io::IdxArray a = mmalign::io::parse_idx(bytes, "fuzz");
        if (a.shape.rank() < 1 || a.shape.numel() < 1 || static_cast<std::size_t>(a.shape.numel()) != a.data.size())
            __builtin_trap();  // the header must describe the data exactly
        unsigned sum = 0;
        for (const std::uint8_t x : a.data) sum += x;
        volatile unsigned sink = sum;
        (void)sink;
    } catch (const mmalign::Error&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    parse(bytes);
    if (mmalign::io::is_gzip(bytes)) return 0;
    // The same bytes as one gzip member (zlib's deflate, level 1: the cheapest valid stream).
    z_stream z{};
    if (deflateInit2(&z, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) return 0;
    std::string gz(deflateBound(&z, static_cast<uLong>(size)), '\0');
    z.next_in = const_cast<Bytef*>(reinterpret_cast<const Bytef*>(data));
    z.avail_in = static_cast<uInt>(size);
    z.next_out = reinterpret_cast<Bytef*>(gz.data());
    z.avail_out = static_cast<uInt>(gz.size());
    const int r = deflate(&z, Z_FINISH);
    gz.resize(z.total_out);
    deflateEnd(&z);
    if (r != Z_STREAM_END) __builtin_trap();
    parse(gz);
    return 0;
}
