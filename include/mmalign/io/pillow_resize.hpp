// mmalign/io/pillow_resize.hpp — Pillow's `Image.resize(size, resample)` on 8-bit images,
// reproduced bit for bit (Pillow src/libImaging/Resample.c and Geometry.c).
//
// Bicubic (a = −0.5, support 2) and bilinear (support 1), per axis: scale = in/out, the support
// widened by max(scale, 1); for output i, center = (i + 0.5)·scale, taps xmin = (int)(center −
// support + 0.5) ≥ 0 .. xmax = (int)(center + support + 0.5) ≤ in; weights f((k + xmin − center
// + 0.5) · (1 / max(scale, 1))) normalised by their double sum, then rounded half away from zero to
// 22-bit fixed point (PRECISION_BITS = 32 − 8 − 2) without renormalising. A pass computes
// acc = 2²¹ + Σ src·w in int32 and stores clamp(acc >> 22, 0, 255): each pass rounds to uint8.
// A pass runs only if its axis changes size; an unchanged size returns a copy. The pass order
// depends on the Pillow version (PillowVersion). Nearest is Pillow's affine nearest: source
// index (int)(a·(i + 0.5)) accumulated in double with a = in/out. LA/RGBA images are resized
// premultiplied ("La"/"RGBa") as Image.resize does, except with nearest. Only the default box
// (the whole image) and reducing_gap=None, which is what transformers passes, are covered.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "mmalign/core/error.hpp"
#include "mmalign/io/image.hpp"

namespace mmalign::io {

/// PIL.Image.Resampling values (NEAREST = 0, BILINEAR = 2, BICUBIC = 3), as in HF's `resample`.
enum class Resample : int { nearest = 0, bilinear = 2, bicubic = 3 };

/// The only 8-bit difference between Pillow releases is the order of the two passes
/// (Resample.c, Image.py; the arithmetic of each pass is the same from 9.4 to 13.0):
///   v9_to_12_1:  horizontal first, always;
///   v12_2_to_12_3: vertical first when in_h > 100·in_w and the height shrinks (two C calls from
///                Image.resize, "Resize tall images vertically first");
///   v13:         vertical first when the height shrinks by more than twice as many pixels as the
///                width: (in_h − out_h) > 0 and (in_h − out_h) > 2·(in_w − out_w) (Resample.c,
///                ImagingResampleInner).
/// Each mode was checked bit for bit against Pillow 12.1.1, 12.3.0 and 13.0.0 (the fixtures'
/// version) on 300 random tall and ordinary images; each of the three disagrees with the others.
/// Vertical first resamples every source row; horizontal first only the rows the vertical pass
/// reads. The intermediate is uint8 either way, so the order changes the result.
enum class PillowVersion { v9_to_12_1, v12_2_to_12_3, v13 };
inline constexpr PillowVersion default_pillow_version = PillowVersion::v13;

namespace detail {

// With FMA available (-march=haswell and later) GCC and clang contract a·b + c by default, which
// rounds the filter polynomials differently from Pillow's baseline x86-64 build (measured: the
// doubles change); turn contraction off for these functions. clang's -ffp-contract=fast ignores
// the pragma by design; use fast-honor-pragmas there. nvcc's front end does not know these
// pragmas (a .cu file's host code is built without -march, so without FMA contraction anyway).
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

inline double pillow_bicubic(double x) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
    constexpr double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

inline double pillow_bilinear(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

/// One axis's taps: output i reads n[i] inputs from xmin[i] with int32 weights k[i*ksize + j].
struct PillowCoeffs {
    int ksize = 0;
    std::vector<int> xmin, n;
    std::vector<std::int32_t> k;
};

// precompute_coeffs + normalize_coeffs_8bpc of Resample.c, for the box [0, in_size].
inline PillowCoeffs pillow_coeffs(int in_size, int out_size, Resample filter) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
    constexpr int precision_bits = 32 - 8 - 2;
    const double filter_support = filter == Resample::bicubic ? 2.0 : 1.0;
    // Pillow holds the box in floats: (double)(in1 − in0) is exact for sizes below 2^24.
    const float in0 = 0.0f, in1 = static_cast<float>(in_size);
    const double scale = static_cast<double>(in1 - in0) / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = filter_support * filterscale;
    PillowCoeffs c;
    c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
    c.xmin.resize(static_cast<std::size_t>(out_size));
    c.n.resize(static_cast<std::size_t>(out_size));
    c.k.assign(static_cast<std::size_t>(out_size) * static_cast<std::size_t>(c.ksize), 0);
    std::vector<double> w(static_cast<std::size_t>(c.ksize));
    const double inv_filterscale = 1.0 / filterscale;  // Pillow multiplies by the reciprocal
    for (int xx = 0; xx < out_size; ++xx) {
        const double center = in0 + (xx + 0.5) * scale;
        int xmin = static_cast<int>(center - support + 0.5);  // C cast: truncation toward zero
        if (xmin < 0) xmin = 0;
        int xmax = static_cast<int>(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double ww = 0.0;
        for (int x = 0; x < xmax; ++x) {
            const double t = (x + xmin - center + 0.5) * inv_filterscale;
            const double v = filter == Resample::bicubic ? pillow_bicubic(t) : pillow_bilinear(t);
            w[static_cast<std::size_t>(x)] = v;
            ww += v;
        }
        std::int32_t* k = &c.k[static_cast<std::size_t>(xx) * static_cast<std::size_t>(c.ksize)];
        for (int x = 0; x < xmax; ++x) {
            double v = w[static_cast<std::size_t>(x)];
            if (ww != 0.0) v /= ww;
            // half away from zero, no renormalisation of the integer sum
            k[x] = v < 0 ? static_cast<std::int32_t>(-0.5 + v * (1 << precision_bits))
                         : static_cast<std::int32_t>(0.5 + v * (1 << precision_bits));
        }
        c.xmin[static_cast<std::size_t>(xx)] = xmin;
        c.n[static_cast<std::size_t>(xx)] = xmax;
    }
    return c;
}

#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#pragma GCC pop_options
#endif

inline std::uint8_t pillow_clip8(std::int32_t acc) {
    const std::int32_t v = acc >> 22;  // arithmetic shift: a negative sum floors, then clamps to 0
    return static_cast<std::uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// Horizontal pass over source rows [row0, row0 + dst.height) into dst (width = out width).
inline void pillow_pass_h(const Image& src, index_t row0, Image& dst, const PillowCoeffs& c) {
    const index_t ch = src.channels;
    for (index_t y = 0; y < dst.height; ++y) {
        const std::uint8_t* in = src.row(row0 + y);
        std::uint8_t* out = dst.row(y);
        for (index_t xx = 0; xx < dst.width; ++xx) {
            const int xmin = c.xmin[static_cast<std::size_t>(xx)], n = c.n[static_cast<std::size_t>(xx)];
            const std::int32_t* k = &c.k[static_cast<std::size_t>(xx * c.ksize)];
            for (index_t ci = 0; ci < ch; ++ci) {
                std::int32_t acc = 1 << 21;
                for (int x = 0; x < n; ++x) acc += in[(xmin + x) * ch + ci] * k[x];
                out[xx * ch + ci] = pillow_clip8(acc);
            }
        }
    }
}

// Vertical pass: output row yy reads rows xmin[yy] − row0 .. of src.
inline void pillow_pass_v(const Image& src, index_t row0, Image& dst, const PillowCoeffs& c) {
    const index_t rowlen = src.width * src.channels;
    std::vector<std::int32_t> acc(static_cast<std::size_t>(rowlen));
    for (index_t yy = 0; yy < dst.height; ++yy) {
        const int ymin = c.xmin[static_cast<std::size_t>(yy)] - static_cast<int>(row0);
        const int n = c.n[static_cast<std::size_t>(yy)];
        const std::int32_t* k = &c.k[static_cast<std::size_t>(yy * c.ksize)];
        std::fill(acc.begin(), acc.end(), 1 << 21);
        for (int y = 0; y < n; ++y) {
            const std::uint8_t* in = src.row(ymin + y);
            const std::int32_t w = k[y];
            for (index_t i = 0; i < rowlen; ++i) acc[static_cast<std::size_t>(i)] += in[i] * w;
        }
        std::uint8_t* out = dst.row(yy);
        for (index_t i = 0; i < rowlen; ++i) out[i] = pillow_clip8(acc[static_cast<std::size_t>(i)]);
    }
}

// ImagingResampleInner for every channel independently.
inline Image pillow_resample(const Image& src, index_t out_h, index_t out_w, Resample filter, PillowVersion v) {
    const index_t in_h = src.height, in_w = src.width;
    const bool need_h = out_w != in_w, need_v = out_h != in_h;
    bool vertical_first = false;
    if (v == PillowVersion::v13)
        vertical_first = (in_h - out_h) > 0 && (in_h - out_h) > (in_w - out_w) * 2;
    else if (v == PillowVersion::v12_2_to_12_3)
        vertical_first = in_h > in_w * 100 && out_h < in_h;

    if (!need_h && !need_v) return src;
    if (vertical_first) {
        Image cur = src;
        if (need_v) {
            const PillowCoeffs cv = pillow_coeffs(static_cast<int>(in_h), static_cast<int>(out_h), filter);
            Image t(out_h, in_w, src.channels);
            pillow_pass_v(cur, 0, t, cv);
            cur = std::move(t);
        }
        if (need_h) {
            const PillowCoeffs chz = pillow_coeffs(static_cast<int>(in_w), static_cast<int>(out_w), filter);
            Image t(out_h, out_w, src.channels);
            pillow_pass_h(cur, 0, t, chz);
            cur = std::move(t);
        }
        return cur;
    }
    // Horizontal first, over only the rows that the vertical taps read (Pillow's ybox).
    const PillowCoeffs cv = pillow_coeffs(static_cast<int>(in_h), static_cast<int>(out_h), filter);
    if (!need_h) {
        Image out(out_h, in_w, src.channels);
        pillow_pass_v(src, 0, out, cv);
        return out;
    }
    const index_t first = cv.xmin.front(), last = cv.xmin.back() + cv.n.back();
    const PillowCoeffs chz = pillow_coeffs(static_cast<int>(in_w), static_cast<int>(out_w), filter);
    Image t(need_v ? last - first : in_h, out_w, src.channels);
    pillow_pass_h(src, need_v ? first : 0, t, chz);
    if (!need_v) return t;
    Image out(out_h, out_w, src.channels);
    pillow_pass_v(t, first, out, cv);
    return out;
}

// ImagingScaleAffine with a = (in/out, 0, 0, 0, in/out, 0): positions accumulate in double.
inline Image pillow_nearest(const Image& src, index_t out_h, index_t out_w) {
    const double ax = static_cast<double>(static_cast<float>(src.width)) / static_cast<double>(out_w);
    const double ay = static_cast<double>(static_cast<float>(src.height)) / static_cast<double>(out_h);
    auto coord = [](double v) { return v < 0.0 ? -1 : static_cast<int>(v); };
    std::vector<index_t> xin(static_cast<std::size_t>(out_w));
    double xo = ax * 0.5;
    for (index_t x = 0; x < out_w; ++x, xo += ax) xin[static_cast<std::size_t>(x)] = coord(xo);
    Image out(out_h, out_w, src.channels);
    const index_t ch = src.channels;
    double yo = ay * 0.5;
    for (index_t y = 0; y < out_h; ++y, yo += ay) {
        const index_t yi = coord(yo);
        if (yi < 0 || yi >= src.height) continue;  // stays 0 (Pillow's fill), unreachable here
        const std::uint8_t* in = src.row(yi);
        std::uint8_t* o = out.row(y);
        for (index_t x = 0; x < out_w; ++x) {
            const index_t xi = xin[static_cast<std::size_t>(x)];
            if (xi < 0 || xi >= src.width) continue;
            for (index_t c = 0; c < ch; ++c) o[x * ch + c] = in[xi * ch + c];
        }
    }
    return out;
}

}  // namespace detail

/// Pillow's `img.resize((out_width, out_height), resample)` for an 8-bit L, LA, RGB or RGBA image
/// (note the (height, width) argument order here). Bit-exact with the Pillow `version` selected.
inline Image pillow_resize(const Image& src, index_t out_height, index_t out_width, Resample filter = Resample::bicubic,
                           PillowVersion version = default_pillow_version) {
    if (src.channels < 1 || src.channels > 4)
        throw ArgumentError("pillow_resize: channels must be 1..4, found " + std::to_string(src.channels));
    if (src.height < 1 || src.width < 1 || out_height < 1 || out_width < 1)
        throw ArgumentError("pillow_resize: sizes must be positive: " + std::to_string(src.height) + "x" +
                            std::to_string(src.width) + " -> " + std::to_string(out_height) + "x" +
                            std::to_string(out_width));
    if (src.pixels.size() != static_cast<std::size_t>(src.height * src.width * src.channels))
        throw ArgumentError(
            "pillow_resize: pixel buffer holds " + std::to_string(src.pixels.size()) +
            " bytes, expected height*width*channels = " + std::to_string(src.height * src.width * src.channels));
    if (filter != Resample::nearest && filter != Resample::bilinear && filter != Resample::bicubic)
        throw ArgumentError("pillow_resize: unsupported resample filter " + std::to_string(static_cast<int>(filter)));
    // Pillow's int coordinates and float box bound the sizes; the limits are far beyond images.
    if (src.height >= (1 << 24) || src.width >= (1 << 24) || out_height >= (1 << 24) || out_width >= (1 << 24))
        throw ArgumentError("pillow_resize: sizes must be below 2^24");
    if (out_height == src.height && out_width == src.width) return src;  // Image.resize: a copy
    if (filter == Resample::nearest) return detail::pillow_nearest(src, out_height, out_width);
    if (!src.has_alpha()) return detail::pillow_resample(src, out_height, out_width, filter, version);

    // Image.resize converts LA/RGBA to premultiplied La/RGBa (Convert.c rgbA2rgba, lA2la),
    // resizes, and converts back (rgba2rgbA, la2lA: 255·c / a truncated, clipped).
    Image pre = src;
    const index_t ch = src.channels, n = src.height * src.width;
    for (index_t i = 0; i < n; ++i) {
        std::uint8_t* p = &pre.pixels[static_cast<std::size_t>(i * ch)];
        const std::uint32_t a = p[ch - 1];
        for (index_t c = 0; c + 1 < ch; ++c) p[c] = detail::mul_div255(p[c], a);
    }
    Image out = detail::pillow_resample(pre, out_height, out_width, filter, version);
    const index_t m = out.height * out.width;
    for (index_t i = 0; i < m; ++i) {
        std::uint8_t* p = &out.pixels[static_cast<std::size_t>(i * ch)];
        const std::uint32_t a = p[ch - 1];
        if (a == 0 || a == 255) continue;
        for (index_t c = 0; c + 1 < ch; ++c) {
            const std::uint32_t v = 255u * p[c] / a;
            p[c] = static_cast<std::uint8_t>(v > 255 ? 255 : v);
        }
    }
    return out;
}

}  // namespace mmalign::io
