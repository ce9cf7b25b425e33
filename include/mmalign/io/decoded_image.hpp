// mmalign/io/decoded_image.hpp — the decoded image (8-bit HWC pixels) and the limits a decoder
// works within. Shared by io/image.hpp and its decoders (io/detail/{png,jpeg,bmp}_decoder.hpp);
// needs no image library.
//
//   Image         HWC uint8; channels 1 (L), 2 (LA), 3 (RGB), 4 (RGBA).
//   ImageLimits   what load_image accepts: file size, sides, pixels (Pillow's bomb threshold),
//                 bytes the decoder may hold for pixels, progressive JPEG scans. docs/robustness.md
//                 lists the defaults and why.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mmalign/core/error.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/io/input_file.hpp"

namespace mmalign::io {

struct Image {
    index_t height = 0, width = 0, channels = 0;
    std::vector<std::uint8_t> pixels;  // HWC, row-major, height * width * channels bytes

    Image() = default;
    Image(index_t h, index_t w, index_t c, std::uint8_t fill = 0) : height(h), width(w), channels(c) {
        if (h < 0 || w < 0 || c < 0)
            throw ArgumentError("Image: negative size " + std::to_string(h) + "x" + std::to_string(w) + "x" +
                                std::to_string(c));
        pixels.assign(static_cast<std::size_t>(h * w * c), fill);
    }

    bool has_alpha() const { return channels == 2 || channels == 4; }
    std::uint8_t* row(index_t y) { return pixels.data() + y * width * channels; }
    const std::uint8_t* row(index_t y) const { return pixels.data() + y * width * channels; }
    std::uint8_t& at(index_t y, index_t x, index_t c) {
        return pixels[static_cast<std::size_t>((y * width + x) * channels + c)];
    }
    std::uint8_t at(index_t y, index_t x, index_t c) const {
        return pixels[static_cast<std::size_t>((y * width + x) * channels + c)];
    }
};

/// What load_image accepts. Sizes are checked from the header before any pixel memory is
/// allocated; the other budgets while decoding.
struct ImageLimits {
    /// Longest side, either direction.
    index_t max_side = index_t(1) << 15;
    /// Pillow's DecompressionBombError threshold (2 × Image.MAX_IMAGE_PIXELS).
    index_t max_pixels = 178'956'970;
    /// Bytes the decoder may hold for pixels: the decoded image, plus the whole-image
    /// coefficient buffers libjpeg keeps for a progressive JPEG. The default lets every image
    /// within max_pixels decode (the most demanding, a progressive 4:4:4 JPEG at the pixel cap,
    /// needs about 1.6 GB); lower it to bound the memory one image may take.
    std::uint64_t max_decoded_bytes = std::uint64_t(2) << 30;
    /// Scans of a progressive JPEG; 0 means no limit (TurboJPEG's TJPARAM_SCANLIMIT convention).
    /// Encoders write about 10; a file with thousands makes the decoder redo the whole image each scan.
    int max_jpeg_scans = 500;
    /// Size of the file itself (it is read whole before decoding).
    std::uintmax_t max_file_bytes = std::uintmax_t(1) << 30;
};

namespace detail {

/// "load_image: '<name>': <what>" as IoError, on one line (io/input_file.hpp's vocabulary).
[[noreturn]] inline void image_fail(const std::string& name, const std::string& what) {
    input_file_fail("load_image", name, what);
}

inline void check_image_size(const std::string& name, index_t w, index_t h, const ImageLimits& lim) {
    if (w <= 0 || h <= 0) image_fail(name, "zero-sized image (" + std::to_string(w) + "x" + std::to_string(h) + ")");
    if (w > lim.max_side || h > lim.max_side || w * h > lim.max_pixels)
        image_fail(name, "image of " + std::to_string(w) + "x" + std::to_string(h) +
                             " pixels exceeds the limits (side <= " + std::to_string(lim.max_side) +
                             ", pixels <= " + std::to_string(lim.max_pixels) + ")");
}

/// Refuses a decode that would hold more than ImageLimits::max_decoded_bytes, before allocating.
inline void check_decoded_bytes(const std::string& name, std::uint64_t bytes, const ImageLimits& lim,
                                const std::string& what) {
    if (bytes > lim.max_decoded_bytes)
        image_fail(name, what + " needs " + std::to_string(bytes) + " bytes, more than the " +
                             std::to_string(lim.max_decoded_bytes) + " of ImageLimits::max_decoded_bytes");
}

inline std::uint32_t le16(const unsigned char* p) { return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8; }
inline std::uint32_t le32(const unsigned char* p) {
    return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 | std::uint32_t(p[3]) << 24;
}

// Pillow's integer helpers (libImaging/ImagingUtils.h): x/255 rounded, without a division.
constexpr std::uint32_t shift_div255(std::uint32_t a) { return ((a >> 8) + a) >> 8; }
constexpr std::uint8_t mul_div255(std::uint32_t a, std::uint32_t b) {
    return static_cast<std::uint8_t>(shift_div255(a * b + 128));
}

}  // namespace detail
}  // namespace mmalign::io
