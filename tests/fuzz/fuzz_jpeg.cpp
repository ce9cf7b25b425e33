// libFuzzer entry point for the JPEG decoder (io/detail/jpeg_decoder.hpp: libjpeg-turbo with the
// scan budget, the decoded-bytes budget and truncation as an error).
// Limits are lowered (4 Mpixel, 64 MiB decoded, the default 500 scans) so that a valid huge
// image fits -rss_limit_mb=512. Each input either decodes or throws IoError; anything else, or a
// sanitizer report, is a finding. Seeds: tests/fuzz/corpus/fuzz_jpeg/.
#include <mmalign/io/image.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    mmalign::io::ImageLimits lim;
    lim.max_pixels = 1 << 22;
    lim.max_decoded_bytes = std::uint64_t(64) << 20;
    try {
        const mmalign::io::Image img = mmalign::io::detail::decode_jpeg("fuzz.jpg", data, size, lim);
        if (img.pixels.size() != static_cast<std::size_t>(img.height * img.width * img.channels)) std::abort();
    } catch (const mmalign::IoError&) {
    }
    return 0;
}
