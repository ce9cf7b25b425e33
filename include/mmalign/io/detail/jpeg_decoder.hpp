// mmalign/io/detail/jpeg_decoder.hpp — JPEG through libjpeg-turbo (jpeglib API) with Pillow's
// decoder settings, within ImageLimits. Used by io/image.hpp.
//
// Pixels: ISLOW IDCT, fancy upsampling, no DCT scaling (libImaging/JpegDecode.c without draft
// mode); 1 component → L, 3 → RGB, 4 (CMYK/YCCK) → RGB by Pillow's "CMYK;I" + cmyk2rgb.
// Budgets: the header's size (ImageLimits sides and pixels); the decoded bytes (our output plus
// libjpeg's own memory, which for a progressive file holds every DCT coefficient of the image:
// libjpeg's max_memory_to_use, as TurboJPEG's TJPARAM_MAXMEMORY sets it); the number of scans of
// a progressive file, counted by a progress monitor as djpeg -maxscans and TurboJPEG's
// TJPARAM_SCANLIMIT do (libjpeg-turbo's "Two Issues with the JPEG Standard": each scan may revisit
// the whole image, so a small file with thousands of scans takes minutes).
// Truncation: libjpeg pads a short file with grey and warns; Pillow raises "image file is
// truncated", so the warning is an error here once the header is read.
#pragma once

#include <algorithm>
#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <cstdio>  // jpeglib.h needs FILE and size_t declared first
#include <cstring>
#include <string>
#include <vector>

#include <jerror.h>
#include <jpeglib.h>

#include "mmalign/io/decoded_image.hpp"

namespace mmalign::io::detail {

// libjpeg reports fatal errors through error_exit, which must not return. A C++ exception cannot
// safely cross libjpeg's C frames, so error_exit longjmps back to the setjmp in the phase function
// that called libjpeg. Those phase functions hold no objects with destructors, and everything
// they write lives in JpegState (not in locals), so the jump skips no destructor and reads no
// clobbered local. The caller turns the recorded message into an IoError.
struct JpegState {
    jpeg_decompress_struct cinfo;
    jpeg_error_mgr err;
    jpeg_progress_mgr progress;
    std::jmp_buf jump;
    bool created;
    bool past_header;  // a "premature end of file" warning from here on means a truncated file
    int max_scans;     // 0: no limit
    std::uint64_t memory_budget;  // bytes libjpeg may allocate (reported when it runs out)
    char message[JMSG_LENGTH_MAX + 128];
};

inline JpegState* jpeg_state(j_common_ptr c) { return static_cast<JpegState*>(c->client_data); }

inline void jpeg_error_exit(j_common_ptr c) {
    JpegState* s = jpeg_state(c);
    const int code = c->err->msg_code;
    // Without a backing store (libjpeg-turbo's jmemnobs), a request beyond max_memory_to_use
    // ends here: name the budget rather than "backing store not supported".
    if (code == JERR_NO_BACKING_STORE || code == JERR_OUT_OF_MEMORY)
        std::snprintf(s->message, sizeof s->message,
                      "decoding needs more than the %llu bytes left of ImageLimits::max_decoded_bytes",
                      static_cast<unsigned long long>(s->memory_budget));
    else
        (*c->err->format_message)(c, s->message);
    std::longjmp(s->jump, 1);
}

// Warnings (level -1) are silent, as in Pillow, except that running out of data after the header
// is a truncated file: libjpeg would pad the image with grey, Pillow raises "image file is
// truncated" (even when only the EOI marker is missing).
inline void jpeg_emit_message(j_common_ptr c, int level) {
    JpegState* s = jpeg_state(c);
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF && s->past_header) {
        std::snprintf(s->message, sizeof s->message, "truncated file (premature end of JPEG data)");
        std::longjmp(s->jump, 1);
    }
    if (level < 0) ++c->err->num_warnings;
}

inline void jpeg_output_message(j_common_ptr) {}

// Called by libjpeg while it consumes input (for a progressive or multi-scan file, scan after
// scan inside jpeg_start_decompress); input_scan_number counts the SOS markers seen.
inline void jpeg_progress_monitor(j_common_ptr c) {
    JpegState* s = jpeg_state(c);
    const int scans = reinterpret_cast<j_decompress_ptr>(c)->input_scan_number;
    if (s->max_scans > 0 && scans > s->max_scans) {
        std::snprintf(s->message, sizeof s->message,
                      "more than %d scans (ImageLimits::max_jpeg_scans; encoders write about 10)", s->max_scans);
        std::longjmp(s->jump, 1);
    }
}

// Phase 1: header. Returns false after a libjpeg error (message in s->message).
inline bool jpeg_read_header_phase(JpegState* s, const unsigned char* data, unsigned long size) {
    if (setjmp(s->jump)) return false;
    jpeg_create_decompress(&s->cinfo);
    s->created = true;
    s->cinfo.client_data = s;
    s->cinfo.progress = &s->progress;
    jpeg_mem_src(&s->cinfo, data, size);
    jpeg_read_header(&s->cinfo, TRUE);
    return true;
}

// Phase 2: pixels into `out` (reserved for h × w × comps bytes, grown a row at a time so that a
// file that fails early never touches the memory of its declared size), then the trailer.
// Pillow's decoder settings are libjpeg's defaults; they are set explicitly here so that a
// changed default cannot change the pixels.
inline bool jpeg_read_pixels_phase(JpegState* s, std::vector<std::uint8_t>* out, JDIMENSION w, JDIMENSION h,
                                   int comps) {
    if (setjmp(s->jump)) return false;
    s->cinfo.dct_method = JDCT_ISLOW;
    s->cinfo.do_fancy_upsampling = TRUE;
    s->cinfo.do_block_smoothing = TRUE;
    s->cinfo.scale_num = 1;
    s->cinfo.scale_denom = 1;
    s->cinfo.quantize_colors = FALSE;
    s->past_header = true;  // progressive files are read whole by jpeg_start_decompress
    jpeg_start_decompress(&s->cinfo);
    if (s->cinfo.output_width != w || s->cinfo.output_height != h || s->cinfo.output_components != comps) {
        std::snprintf(s->message, sizeof s->message, "the decoder returned an unexpected layout");
        return false;
    }
    const std::size_t stride = static_cast<std::size_t>(w) * static_cast<std::size_t>(comps);
    while (s->cinfo.output_scanline < s->cinfo.output_height) {
        out->resize(out->size() + stride);
        JSAMPROW row = out->data() + s->cinfo.output_scanline * stride;
        jpeg_read_scanlines(&s->cinfo, &row, 1);
    }
    // Reads up to EOI; Pillow fails on errors here too ("broken data stream").
    jpeg_finish_decompress(&s->cinfo);
    return true;
}

struct JpegGuard {
    JpegState* s;
    ~JpegGuard() {
        if (s->created) jpeg_destroy_decompress(&s->cinfo);
    }
};

inline Image decode_jpeg(const std::string& name, const unsigned char* data, std::size_t size,
                         const ImageLimits& lim) {
    JpegState state;
    std::memset(&state, 0, sizeof state);
    JpegGuard guard{&state};
    state.cinfo.err = jpeg_std_error(&state.err);
    state.err.error_exit = jpeg_error_exit;
    state.err.emit_message = jpeg_emit_message;
    state.err.output_message = jpeg_output_message;
    state.progress.progress_monitor = jpeg_progress_monitor;
    state.max_scans = lim.max_jpeg_scans;

    if (!jpeg_read_header_phase(&state, data, static_cast<unsigned long>(size)))
        image_fail(name, std::string("JPEG error: ") + state.message);
    jpeg_decompress_struct& ci = state.cinfo;
    // Pillow (JpegImagePlugin.SOF) accepts 8-bit data with 1, 3 or 4 components only.
    if (ci.data_precision != 8)
        image_fail(name, "cannot handle " + std::to_string(ci.data_precision) + "-bit JPEG data");
    check_image_size(name, static_cast<index_t>(ci.image_width), static_cast<index_t>(ci.image_height), lim);
    // 1 → L, 3 → RGB (libjpeg converts from YCbCr as it guesses from JFIF/Adobe markers), 4 →
    // CMYK. Pillow reads 4-component data as "CMYK;I" (inverted: Adobe's convention) and
    // converts YCCK to CMYK inside libjpeg.
    bool cmyk = false;
    switch (ci.num_components) {
        case 1:
            ci.out_color_space = JCS_GRAYSCALE;
            break;
        case 3:
            ci.out_color_space = JCS_RGB;
            break;
        case 4:
            ci.out_color_space = JCS_CMYK;
            cmyk = true;
            break;
        default:
            image_fail(name, "cannot handle " + std::to_string(ci.num_components) + "-component JPEG");
    }
    const index_t h = ci.image_height, w = ci.image_width;
    const index_t comps = cmyk ? 4 : ci.num_components;
    const std::uint64_t out_bytes = static_cast<std::uint64_t>(h * w * comps) + (cmyk ? std::uint64_t(h * w * 3) : 0);
    check_decoded_bytes(name, out_bytes, lim, "the decoded image");
    // What is left of the budget bounds libjpeg's own allocations (0 would mean "no limit").
    state.memory_budget = lim.max_decoded_bytes - out_bytes;
    const std::uint64_t cap = static_cast<std::uint64_t>(static_cast<unsigned long>(-1) >> 1);
    ci.mem->max_memory_to_use = static_cast<long>(std::max<std::uint64_t>(1, std::min(state.memory_budget, cap)));

    std::vector<std::uint8_t> raw;
    raw.reserve(static_cast<std::size_t>(h * w * comps));
    if (!jpeg_read_pixels_phase(&state, &raw, ci.image_width, ci.image_height, static_cast<int>(comps)))
        image_fail(name, std::string("JPEG error: ") + state.message);

    Image img;
    img.height = h;
    img.width = w;
    if (!cmyk) {
        img.channels = comps;
        img.pixels = std::move(raw);
        return img;
    }
    // "CMYK;I" inverts, then Pillow's cmyk2rgb (libImaging/Convert.c) gives RGB.
    img.channels = 3;
    img.pixels.resize(static_cast<std::size_t>(h * w * 3));
    for (index_t i = 0; i < h * w; ++i) {
        const std::uint8_t* p = &raw[static_cast<std::size_t>(i * 4)];
        const int nk = p[3];  // 255 − K after the inversion
        for (int c = 0; c < 3; ++c) {
            const int v = nk - mul_div255(255u - p[c], static_cast<std::uint32_t>(nk));
            img.pixels[static_cast<std::size_t>(i * 3 + c)] = static_cast<std::uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    return img;
}

}  // namespace mmalign::io::detail
