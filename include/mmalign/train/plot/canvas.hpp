// mmalign/train/plot/canvas.hpp — an RGB raster for plots: rectangles, anti-aliased lines and
// dots, text in the built-in bitmap font (train/plot/bitmap_font.hpp), saved as PNG
// (io/png_writer.hpp).
//
// Lines are drawn by coverage: a pixel's ink is how far its centre lies inside the stroke
// (half-width + ½ − distance, clamped to [0, 1]). A polyline keeps the largest coverage over its
// segments and blends once, so joints are not darker than the stroke. Text is drawn at an integer
// scale (each font pixel an s × s block), horizontal or turned 90° anticlockwise for y-axis labels.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mmalign/io/png_writer.hpp"
#include "mmalign/train/plot/bitmap_font.hpp"

namespace mmalign::plot {

struct Rgb {
    std::uint8_t r = 0, g = 0, b = 0;
    friend bool operator==(const Rgb&, const Rgb&) = default;
};

/// A pixel rectangle [x0, x1) × [y0, y1).
struct PixelRect {
    int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
};

class Canvas {
public:
    Canvas(int width, int height, Rgb background = {255, 255, 255})
        : w_(std::max(width, 1)), h_(std::max(height, 1)), px_(std::size_t(w_) * std::size_t(h_) * 3) {
        for (std::size_t i = 0; i < px_.size(); i += 3) px_[i] = background.r, px_[i + 1] = background.g, px_[i + 2] = background.b;
        clip_ = {0, 0, w_, h_};
    }

    int width() const { return w_; }
    int height() const { return h_; }
    /// Rows top to bottom, RGB interleaved: height × width × 3 bytes.
    const std::vector<std::uint8_t>& pixels() const { return px_; }
    Rgb at(int x, int y) const {
        const std::uint8_t* p = &px_[(std::size_t(y) * std::size_t(w_) + std::size_t(x)) * 3];
        return {p[0], p[1], p[2]};
    }

    /// Later drawing stays inside `r` (and the canvas); reset_clip() lifts it.
    void set_clip(PixelRect r) {
        clip_ = {std::max(r.x0, 0), std::max(r.y0, 0), std::min(r.x1, w_), std::min(r.y1, h_)};
    }
    void reset_clip() { clip_ = {0, 0, w_, h_}; }

    /// Mixes `c` into pixel (x, y) with weight `alpha` in [0, 1].
    void blend(int x, int y, Rgb c, double alpha) {
        if (x < clip_.x0 || y < clip_.y0 || x >= clip_.x1 || y >= clip_.y1 || alpha <= 0) return;
        alpha = std::min(alpha, 1.0);
        std::uint8_t* p = &px_[(std::size_t(y) * std::size_t(w_) + std::size_t(x)) * 3];
        auto mix = [&](std::uint8_t& dst, std::uint8_t src) { dst = std::uint8_t(std::lround(dst + (src - dst) * alpha)); };
        mix(p[0], c.r), mix(p[1], c.g), mix(p[2], c.b);
    }

    void fill_rect(PixelRect r, Rgb c) {
        for (int y = std::max(r.y0, clip_.y0); y < std::min(r.y1, clip_.y1); ++y)
            for (int x = std::max(r.x0, clip_.x0); x < std::min(r.x1, clip_.x1); ++x) blend(x, y, c, 1.0);
    }

    /// A stroke of `width` pixels through the points (pixel coordinates; pixel (i, j) covers
    /// [i, i+1) × [j, j+1)).
    void polyline(const std::vector<std::pair<double, double>>& pts, Rgb c, double width) {
        if (pts.empty()) return;
        const double half = width / 2;
        double xmin = pts[0].first, xmax = xmin, ymin = pts[0].second, ymax = ymin;
        for (auto [x, y] : pts) xmin = std::min(xmin, x), xmax = std::max(xmax, x), ymin = std::min(ymin, y), ymax = std::max(ymax, y);
        const PixelRect box = bounds(xmin - half - 1, ymin - half - 1, xmax + half + 1, ymax + half + 1);
        if (box.x0 >= box.x1 || box.y0 >= box.y1) return;
        const int bw = box.x1 - box.x0;
        std::vector<float> cover(std::size_t(bw) * std::size_t(box.y1 - box.y0), 0.f);
        auto segment = [&](double ax, double ay, double bx, double by) {
            const PixelRect sb = bounds(std::min(ax, bx) - half - 1, std::min(ay, by) - half - 1, std::max(ax, bx) + half + 1,
                                        std::max(ay, by) + half + 1);
            const double dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
            for (int y = std::max(sb.y0, box.y0); y < std::min(sb.y1, box.y1); ++y)
                for (int x = std::max(sb.x0, box.x0); x < std::min(sb.x1, box.x1); ++x) {
                    const double px = x + 0.5, py = y + 0.5;
                    double t = len2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / len2 : 0.0;
                    t = std::clamp(t, 0.0, 1.0);
                    const double ex = px - (ax + t * dx), ey = py - (ay + t * dy);
                    const double a = std::clamp(half + 0.5 - std::sqrt(ex * ex + ey * ey), 0.0, 1.0);
                    float& cv = cover[std::size_t(y - box.y0) * std::size_t(bw) + std::size_t(x - box.x0)];
                    cv = std::max(cv, float(a));
                }
        };
        if (pts.size() == 1) segment(pts[0].first, pts[0].second, pts[0].first, pts[0].second);
        for (std::size_t i = 1; i < pts.size(); ++i) segment(pts[i - 1].first, pts[i - 1].second, pts[i].first, pts[i].second);
        for (int y = box.y0; y < box.y1; ++y)
            for (int x = box.x0; x < box.x1; ++x)
                blend(x, y, c, cover[std::size_t(y - box.y0) * std::size_t(bw) + std::size_t(x - box.x0)]);
    }

    void line(double x0, double y0, double x1, double y1, Rgb c, double width) { polyline({{x0, y0}, {x1, y1}}, c, width); }

    /// A filled disc of radius `r` centred at (cx, cy).
    void dot(double cx, double cy, double r, Rgb c) {
        const PixelRect b = bounds(cx - r - 1, cy - r - 1, cx + r + 1, cy + r + 1);
        for (int y = b.y0; y < b.y1; ++y)
            for (int x = b.x0; x < b.x1; ++x) {
                const double d = std::hypot(x + 0.5 - cx, y + 0.5 - cy);
                blend(x, y, c, std::clamp(r + 0.5 - d, 0.0, 1.0));
            }
    }

    /// `text` with its top-left corner at (x, y); each font pixel is a scale × scale block.
    void text(int x, int y, std::string_view text, Rgb c, int scale) {
        for (std::size_t i = 0; i < text.size(); ++i) {
            const int gx = x + int(i) * BitmapFont::advance * scale;
            for (int row = 0; row < BitmapFont::glyph_height; ++row)
                for (int col = 0; col < BitmapFont::glyph_width; ++col)
                    if (glyph_pixel(text[i], col, row))
                        fill_rect({gx + col * scale, y + row * scale, gx + (col + 1) * scale, y + (row + 1) * scale}, c);
        }
    }

    /// `text` turned 90° anticlockwise (read bottom to top), the glyphs' tops facing left: the
    /// unturned text's top-left corner lands at (x, y + text_width), its top-right at (x, y).
    void text_up(int x, int y, std::string_view text, Rgb c, int scale) {
        const int len = text_width(text, scale);
        for (std::size_t i = 0; i < text.size(); ++i) {
            const int gx = int(i) * BitmapFont::advance * scale;  // along the text
            for (int row = 0; row < BitmapFont::glyph_height; ++row)
                for (int col = 0; col < BitmapFont::glyph_width; ++col)
                    if (glyph_pixel(text[i], col, row)) {
                        const int u = gx + col * scale;   // distance from the text's start
                        const int px = x + row * scale;   // font row → x
                        const int py = y + len - u - scale;  // along the text → up
                        fill_rect({px, py, px + scale, py + scale}, c);
                    }
        }
    }

    /// Writes the canvas as an RGB PNG; throws IoError naming the file on failure.
    void save_png(const std::string& path) const { io::write_png(path, px_.data(), w_, h_, 3); }

private:
    // The pixels a shape spanning [x0, x1] × [y0, y1] can touch, inside the clip. Coordinates are
    // clamped first, so far-away (or non-finite) points cannot overflow the int conversion.
    PixelRect bounds(double x0, double y0, double x1, double y1) const {
        auto lo = [](double v) { return std::isnan(v) ? 0 : int(std::floor(std::clamp(v, -1e7, 1e7))); };
        auto hi = [](double v) { return std::isnan(v) ? 0 : int(std::ceil(std::clamp(v, -1e7, 1e7))) + 1; };
        return {std::max(clip_.x0, lo(x0)), std::max(clip_.y0, lo(y0)), std::min(clip_.x1, hi(x1)), std::min(clip_.y1, hi(y1))};
    }

    int w_, h_;
    std::vector<std::uint8_t> px_;
    PixelRect clip_;
};

}  // namespace mmalign::plot
