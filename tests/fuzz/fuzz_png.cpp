// libFuzzer entry point for the PNG decoder (io/detail/png_decoder.hpp through
// load_image_from_memory). The chunk CRCs of the input are recomputed first: the decoder refuses
// a bad CRC at once, so without this almost every mutation would stop at the first chunk and
// never reach libpng's transformations, the interlace passes or the row budget.
// Limits are lowered (4 Mpixel, 64 MiB decoded) so that a valid huge image fits -rss_limit_mb=512.
// Each input either decodes or throws IoError; anything else, or a sanitizer report, is a finding.
// Seeds: tests/fuzz/corpus/fuzz_png/.
#include <mmalign/io/image.hpp>

#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::vector<std::uint8_t> png(data, data + size);
    // Walk the chunks after the signature and make each CRC right.
    std::size_t at = 8;
    while (at + 12 <= png.size()) {
        const std::uint32_t len = std::uint32_t(png[at]) << 24 | std::uint32_t(png[at + 1]) << 16 |
                                  std::uint32_t(png[at + 2]) << 8 | png[at + 3];
        if (len > png.size() - at - 12) break;
        const auto crc = static_cast<std::uint32_t>(crc32(0, png.data() + at + 4, static_cast<uInt>(len + 4)));
        for (int i = 0; i < 4; ++i) png[at + 8 + len + std::size_t(i)] = static_cast<std::uint8_t>(crc >> (24 - 8 * i));
        at += 12 + std::size_t(len);
    }
    mmalign::io::ImageLimits lim;
    lim.max_pixels = 1 << 22;
    lim.max_decoded_bytes = std::uint64_t(64) << 20;
    try {
        const mmalign::io::Image img = mmalign::io::detail::decode_png("fuzz.png", png.data(), png.size(), lim);
        if (img.pixels.size() != static_cast<std::size_t>(img.height * img.width * img.channels)) std::abort();
    } catch (const mmalign::IoError&) {
    }
    return 0;
}
