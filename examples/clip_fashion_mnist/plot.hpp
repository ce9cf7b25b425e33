// A small line-plot writer for the example's training curves: two panels (loss, accuracy) drawn
// into an RGB raster and saved as PNG with stb_image_write (Debian libstb-dev). No text: the
// panels' ranges are printed by the example and stated in its README section.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#endif
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace plot {

struct Series {
    std::vector<std::pair<double, double>> points;  // (x, y)
    unsigned char r, g, b;
};

class Canvas {
public:
    Canvas(int w, int h) : w_(w), h_(h), px_(std::size_t(w) * h * 3, 255) {}
    void set(int x, int y, unsigned char r, unsigned char g, unsigned char b) {
        if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
        unsigned char* p = &px_[(std::size_t(y) * w_ + x) * 3];
        p[0] = r, p[1] = g, p[2] = b;
    }
    void line(double x0, double y0, double x1, double y1, unsigned char r, unsigned char g, unsigned char b) {
        const int n = int(std::max(std::abs(x1 - x0), std::abs(y1 - y0))) + 1;
        for (int i = 0; i <= n; ++i) {
            const double t = double(i) / n;
            const int x = int(std::lround(x0 + t * (x1 - x0))), y = int(std::lround(y0 + t * (y1 - y0)));
            set(x, y, r, g, b), set(x, y + 1, r, g, b);
        }
    }
    /// One panel at (ox, oy) of size (pw, ph): frame, grid, and the series scaled to [x0,x1]×[y0,y1].
    void panel(int ox, int oy, int pw, int ph, const std::vector<Series>& series, double x0, double x1, double y0,
               double y1) {
        for (int k = 0; k <= 4; ++k) {
            const double gy = oy + ph - ph * k / 4.0, gx = ox + pw * k / 4.0;
            line(ox, gy, ox + pw, gy, 225, 225, 225);
            line(gx, oy, gx, oy + ph, 225, 225, 225);
        }
        line(ox, oy + ph, ox + pw, oy + ph, 0, 0, 0);
        line(ox, oy, ox, oy + ph, 0, 0, 0);
        for (const Series& s : series)
            for (std::size_t i = 1; i < s.points.size(); ++i) {
                auto map = [&](std::pair<double, double> p) {
                    return std::pair{ox + (p.first - x0) / (x1 - x0) * pw, oy + ph - (p.second - y0) / (y1 - y0) * ph};
                };
                auto [a, b] = map(s.points[i - 1]);
                auto [c, d] = map(s.points[i]);
                line(a, b, c, d, s.r, s.g, s.b);
            }
    }
    bool save(const std::string& path) const { return stbi_write_png(path.c_str(), w_, h_, 3, px_.data(), w_ * 3) != 0; }

private:
    int w_, h_;
    std::vector<unsigned char> px_;
};

}  // namespace plot
