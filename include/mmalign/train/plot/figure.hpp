// mmalign/train/plot/figure.hpp — line charts that a reader can take numbers from: a figure title,
// panels side by side, each with a title, a legend, labelled axes with ticks at nice steps
// (train/plot/ticks.hpp), a grid, the series, and each series' final value written beside its
// last point. One call writes the figure twice:
//
//   STEM.svg   text stays text (searchable, sharp at any zoom); SVG 1.1, no scripts
//   STEM.png   the same layout rasterised with the built-in bitmap font (train/plot/bitmap_font.hpp)
//
// Both are drawn from one list of shapes in pixel coordinates (detail::Scene), so they agree.
//
//   Figure fig{.title = "..."};
//   Panel& p = fig.panels.emplace_back();
//   p.title = "Training loss"; p.x.label = "epoch"; p.y.label = "loss (nats)";
//   p.series.push_back({.name = "batch loss", .points = {{0, 5.5}, {1, 3.9}}, .color = colors::red});
//   fig.save(out_dir + "/curves");  // curves.svg and curves.png
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "mmalign/core/error.hpp"
#include "mmalign/io/atomic_file.hpp"
#include "mmalign/io/detail/utf8.hpp"
#include "mmalign/train/plot/bitmap_font.hpp"
#include "mmalign/train/plot/canvas.hpp"
#include "mmalign/train/plot/ticks.hpp"

namespace mmalign::plot {

/// Colours dark enough to read as text on white and distinct from each other.
namespace colors {
inline constexpr Rgb blue{31, 90, 170}, red{190, 40, 40}, green{30, 130, 60}, orange{205, 100, 0}, purple{120, 60, 160},
                     grey{110, 110, 110}, pink{230, 150, 150}, light_blue{140, 180, 225};
}  // namespace colors

struct Series {
    std::string name{};                             // legend text; empty: left out of the legend
    std::vector<std::pair<double, double>> points{};  // (x, y) in data units; a non-finite point breaks the line
    Rgb color = colors::blue;
    double line_width = 2;     // pixels; 0 draws no line
    double marker_radius = 0;  // pixels; > 0 draws a dot at every point
    bool annotate_last = true;  // write the last point's y value beside it
    int decimals = -1;          // digits after the point in that value; -1: four significant digits
    std::string unit{};         // appended to the value ("%")
};

struct Axis {
    std::string label{};              // with its unit, e.g. "loss (nats)"
    std::optional<double> min{}, max{};  // fixed ends; otherwise the data's range widened to ticks
    bool include_zero = false;        // widen the automatic range to reach 0
    int max_ticks = 7;
};

struct Panel {
    std::string title{};
    Axis x{}, y{};
    std::vector<Series> series{};
};

namespace detail {

enum class Anchor { start, middle, end };

// (x, y) is the anchor point on the text's baseline; `up` turns the text 90° anticlockwise
// about it.
struct TextItem {
    double x, y;
    std::string text;
    Rgb color;
    int scale;
    Anchor anchor;
    bool up = false;
    bool bold = false;
};
struct RectItem {
    PixelRect r;
    Rgb fill;
    double opacity = 1;
};
struct PathItem {
    std::vector<std::pair<double, double>> points;
    Rgb color;
    double width;
    int clip = -1;  // index into Scene::clips, -1: none
};
struct DotItem {
    double x, y, r;
    Rgb color;
};

struct Scene {
    int width = 0, height = 0;
    std::string title;
    std::vector<PixelRect> clips;
    std::vector<std::variant<TextItem, RectItem, PathItem, DotItem>> items;
};

inline constexpr int text_scale = 2, title_scale = 3;
inline constexpr int cap = 7;  // rows of a capital above the baseline (bitmap_font.hpp)
inline constexpr Rgb ink{30, 30, 30}, grid{225, 225, 225}, frame{90, 90, 90};

/// `c` darkened until its luma (ITU-R BT.601 weights) is at most 120 of 255, so that a light
/// series colour still reads as text on white.
inline Rgb text_color(Rgb c) {
    const double luma = 0.299 * c.r + 0.587 * c.g + 0.114 * c.b;
    if (luma <= 120) return c;
    const double k = 120 / luma;
    return {std::uint8_t(c.r * k), std::uint8_t(c.g * k), std::uint8_t(c.b * k)};
}

/// The largest scale up to `preferred` at which `text` fits in `width` pixels (at least 1).
inline int fit_scale(const std::string& text, int width, int preferred) {
    int sc = preferred;
    while (sc > 1 && text_width(text, sc) > width) --sc;
    return sc;
}

inline std::string format_value(double v, int decimals, const std::string& unit) {
    char buf[64];
    if (decimals >= 0) std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    else std::snprintf(buf, sizeof buf, "%.4g", v);
    return buf + unit;
}

/// The axis range and its ticks for the finite values in `data`.
inline Ticks axis_ticks(const Axis& a, const std::vector<double>& data) {
    double lo = INFINITY, hi = -INFINITY;
    for (double v : data)
        if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
    if (a.include_zero) lo = std::min(lo, 0.0), hi = std::max(hi, 0.0);
    if (a.min) lo = *a.min;
    if (a.max) hi = *a.max;
    Ticks t = nice_ticks(lo, hi, a.max_ticks);
    if (a.min || a.max) {  // fixed ends stay where they were put; ticks outside them go
        if (a.min) t.lo = *a.min;
        if (a.max) t.hi = *a.max;
        const double eps = (t.hi - t.lo) * 1e-9;
        std::erase_if(t.values, [&](double v) { return v < t.lo - eps || v > t.hi + eps; });
    }
    return t;
}

inline void layout_panel(Scene& s, const Panel& p, int x0, int x1, int top, int bottom) {
    const int sc = text_scale, line = BitmapFont::line_height * sc;
    std::vector<double> xs, ys;
    for (const Series& se : p.series)
        for (auto [x, y] : se.points)
            if (std::isfinite(x) && std::isfinite(y)) xs.push_back(x), ys.push_back(y);
    const Ticks xt = axis_ticks(p.x, xs), yt = axis_ticks(p.y, ys);
    std::vector<std::string> ylabels;
    int ylabel_width = 0;
    for (double v : yt.values) {
        ylabels.push_back(format_tick(v, yt.decimals));
        ylabel_width = std::max(ylabel_width, text_width(ylabels.back(), sc));
    }
    // Horizontal: [y-axis label][gap][tick labels][gap][plot][margin].
    const int left = x0 + 12 + (p.y.label.empty() ? 0 : BitmapFont::glyph_height * sc + 12) + ylabel_width + 10;
    const int right = x1 - 28;
    // Vertical: title, legend rows, plot, tick labels, x-axis label.
    int y = top + cap * sc;
    if (!p.title.empty())
        s.items.push_back(TextItem{(left + right) / 2.0, double(y), p.title, ink, fit_scale(p.title, x1 - x0 - 8, sc), Anchor::middle});
    // Legend entries wrap into rows as wide as the plot.
    const int swatch = 28;
    int lx = left, ly = y + line + 6;
    bool any_legend = false;
    for (const Series& se : p.series) {
        if (se.name.empty()) continue;
        const int w = swatch + 8 + text_width(se.name, sc);
        if (lx > left && lx + w > right) lx = left, ly += line + 4;
        const double mid = ly - cap * sc / 2.0;
        if (se.line_width > 0) s.items.push_back(PathItem{{{double(lx), mid}, {double(lx + swatch), mid}}, se.color, se.line_width});
        if (se.marker_radius > 0 || se.line_width <= 0)
            s.items.push_back(DotItem{lx + swatch / 2.0, mid, std::max(se.marker_radius, 3.0), se.color});
        s.items.push_back(TextItem{double(lx + swatch + 8), double(ly), se.name, ink, sc, Anchor::start});
        lx += w + 24;
        any_legend = true;
    }
    const int plot_top = (any_legend ? ly : y) + 22;
    const int plot_bottom = bottom - (p.x.label.empty() ? 34 : 64);
    if (plot_bottom - plot_top < 20 || right - left < 20)
        throw ArgumentError("plot: panel '" + p.title + "' has no room for its plot area (figure too small)");
    const double xspan = xt.hi - xt.lo, yspan = yt.hi - yt.lo;
    auto X = [&](double v) { return left + (v - xt.lo) / xspan * (right - left); };
    auto Y = [&](double v) { return plot_bottom - (v - yt.lo) / yspan * (plot_bottom - plot_top); };

    // Grid and ticks (1-pixel rectangles, crisp in both outputs), then the frame.
    for (std::size_t i = 0; i < xt.values.size(); ++i) {
        const int gx = int(std::lround(X(xt.values[i])));
        s.items.push_back(RectItem{{gx, plot_top, gx + 1, plot_bottom}, grid});
        s.items.push_back(RectItem{{gx, plot_bottom, gx + 1, plot_bottom + 6}, frame});
        s.items.push_back(TextItem{double(gx), double(plot_bottom + 10 + cap * sc), format_tick(xt.values[i], xt.decimals),
                                   ink, sc, Anchor::middle});
    }
    for (std::size_t i = 0; i < yt.values.size(); ++i) {
        const int gy = int(std::lround(Y(yt.values[i])));
        s.items.push_back(RectItem{{left, gy, right, gy + 1}, grid});
        s.items.push_back(RectItem{{left - 6, gy, left, gy + 1}, frame});
        s.items.push_back(TextItem{double(left - 10), gy + cap * sc / 2.0, ylabels[i], ink, sc, Anchor::end});
    }
    s.items.push_back(RectItem{{left, plot_top, right + 1, plot_top + 1}, frame});
    s.items.push_back(RectItem{{left, plot_bottom, right + 1, plot_bottom + 1}, frame});
    s.items.push_back(RectItem{{left, plot_top, left + 1, plot_bottom + 1}, frame});
    s.items.push_back(RectItem{{right, plot_top, right + 1, plot_bottom + 1}, frame});
    if (!p.x.label.empty())
        s.items.push_back(TextItem{(left + right) / 2.0, double(plot_bottom + 10 + cap * sc + 16 + cap * sc), p.x.label, ink,
                                   sc, Anchor::middle});
    if (!p.y.label.empty())
        s.items.push_back(TextItem{double(x0 + 12 + cap * sc), (plot_top + plot_bottom) / 2.0, p.y.label, ink, sc,
                                   Anchor::middle, /*up=*/true});

    // Series: lines clipped to the plot area, a non-finite point ending one stroke; dots whole
    // (a point on the frame stays round) but only for points inside the area.
    const int clip = int(s.clips.size());
    s.clips.push_back({left, plot_top, right + 1, plot_bottom + 1});
    auto inside = [&](double px, double py) {
        return px >= left - 0.5 && px <= right + 0.5 && py >= plot_top - 0.5 && py <= plot_bottom + 0.5;
    };
    struct Label {
        double px, py;
        std::string text;
        Rgb color;
    };
    const std::size_t first_series_item = s.items.size();
    std::vector<Label> labels;
    for (const Series& se : p.series) {
        std::vector<std::pair<double, double>> run;
        std::optional<std::pair<double, double>> last;
        auto flush = [&] {
            if (se.line_width > 0 && run.size() > 1) s.items.push_back(PathItem{run, se.color, se.line_width, clip});
            run.clear();
        };
        for (auto [x, y] : se.points) {
            if (!std::isfinite(x) || !std::isfinite(y)) {
                flush();
                continue;
            }
            run.emplace_back(X(x), Y(y));
            last = {x, y};
            if (se.marker_radius > 0 && inside(X(x), Y(y))) s.items.push_back(DotItem{X(x), Y(y), se.marker_radius, se.color});
        }
        if (se.line_width > 0 && run.size() == 1 && se.marker_radius <= 0 && inside(run[0].first, run[0].second))
            s.items.push_back(DotItem{run[0].first, run[0].second, std::max(se.line_width, 3.0), se.color});  // a lone point
        flush();
        if (se.annotate_last && last) {
            const double px = X(last->first), py = Y(last->second);
            if (se.marker_radius <= 0 && inside(px, py)) s.items.push_back(DotItem{px, py, 4, se.color});
            labels.push_back({px, py, format_value(last->second, se.decimals, se.unit), text_color(se.color)});
        }
    }
    // Final-value labels. Each goes to whichever place around its point (above-left, below-left,
    // left, above-right, below-right, right, then further up or down in steps of a label height;
    // the earlier on a tie) stays inside the plot area, overlaps no label placed before it and
    // covers the fewest markers and line samples of any series, with a cost for each step away;
    // a white box behind the text keeps it legible over the grid.
    struct Box {
        double x0, y0, x1, y1;
        bool contains(double x, double y, double pad = 0) const { return x >= x0 - pad && x <= x1 + pad && y >= y0 - pad && y <= y1 + pad; }
        bool overlaps(const Box& o) const { return x0 < o.x1 && o.x0 < x1 && y0 < o.y1 && o.y0 < y1; }
    };
    std::vector<std::pair<double, double>> samples;  // every 2 pixels along the lines
    std::vector<DotItem> dots;
    for (std::size_t i = first_series_item; i < s.items.size(); ++i) {
        if (const auto* path = std::get_if<PathItem>(&s.items[i])) {
            for (std::size_t k = 1; k < path->points.size(); ++k) {
                const auto [ax, ay] = path->points[k - 1];
                const auto [bx, by] = path->points[k];
                const int n = 1 + int(std::min(std::hypot(bx - ax, by - ay), 4000.0) / 2);
                for (int j = 0; j <= n; ++j) samples.emplace_back(ax + (bx - ax) * j / n, ay + (by - ay) * j / n);
            }
        } else if (const auto* dot = std::get_if<DotItem>(&s.items[i])) {
            dots.push_back(*dot);
        }
    }
    std::vector<Box> placed;
    for (const Label& l : labels) {
        const double w = text_width(l.text, sc), gap = 8, step = (cap + 2) * sc + 8;
        const double up = l.py - gap - 2 * sc, down = l.py + gap + cap * sc + 2, mid = l.py + cap * sc / 2.0;
        struct Spot {
            double x, baseline;
            bool left;
            int ring;  // how many label heights further out than the nearest places
        };
        std::vector<Spot> spots = {{l.px - gap - w, up, true, 0},  {l.px - gap - w, down, true, 0}, {l.px - 2 * gap - w, mid, true, 0},
                                   {l.px + gap, up, false, 0},     {l.px + gap, down, false, 0},    {l.px + 2 * gap, mid, false, 0}};
        for (int ring = 1; ring <= 6; ++ring)  // further out, for labels crowding one point
            for (bool side_left : {true, false}) {
                const double x = side_left ? l.px - gap - w : l.px + gap;
                spots.push_back({x, up - ring * step, side_left, ring});
                spots.push_back({x, down + ring * step, side_left, ring});
            }
        double best_cost = INFINITY;
        Box best{};
        bool best_left = true;
        for (const Spot& sp : spots) {
            const Box b{sp.x - 3, sp.baseline - cap * sc - 3, sp.x + w + 3, sp.baseline + 2 * sc + 3};
            double cost = 40.0 * sp.ring;  // a label far from its point reads worse than one over a line
            if (b.x0 < left + 1 || b.x1 > right - 1 || b.y0 < plot_top + 1 || b.y1 > plot_bottom - 1) cost += 1e9;
            for (const Box& o : placed) cost += b.overlaps(o) ? 1e6 : 0;
            for (const DotItem& d : dots) cost += b.contains(d.x, d.y, d.r / 2) ? 50 : 0;  // not the label's own dot
            for (const auto& [x, y] : samples) cost += b.contains(x, y, 1) ? 1 : 0;
            if (cost < best_cost) best_cost = cost, best = b, best_left = sp.left;
        }
        placed.push_back(best);
        s.items.push_back(RectItem{{int(std::floor(best.x0)), int(std::floor(best.y0)), int(std::ceil(best.x1)), int(std::ceil(best.y1))},
                                   {255, 255, 255}, 0.85});
        // Anchored on the side facing the point, so a wider SVG font grows away from it.
        s.items.push_back(TextItem{best_left ? best.x1 - 3 : best.x0 + 3, best.y1 - 3 - 2 * sc, l.text, l.color, sc,
                                   best_left ? Anchor::end : Anchor::start});
    }
}

inline int anchored_left(const TextItem& t) {
    const int w = text_width(t.text, t.scale);
    const double x = t.anchor == Anchor::start ? t.x : t.anchor == Anchor::middle ? t.x - w / 2.0 : t.x - w;
    return int(std::lround(x));
}

/// Text as XML 1.0 character data: invalid UTF-8 becomes U+FFFD (io::detail::utf8_lossy), control
/// characters XML forbids become '?', and the five markup characters become entities.
inline std::string svg_escape(const std::string& text) {
    const std::string s = io::detail::utf8_lossy(text);
    std::string out;
    for (char c : s) {
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') {
            out += '?';
            continue;
        }
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&apos;"; break;
            default: out += c;
        }
    }
    return out;
}

inline std::string svg_color(Rgb c) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "#%02x%02x%02x", c.r, c.g, c.b);
    return buf;
}

inline std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f", v);
    std::string s = buf;
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
    return s == "-0" ? "0" : s;
}

}  // namespace detail

struct Figure {
    std::string title{};
    std::vector<Panel> panels{};  // side by side, left to right
    int panel_width = 600, height = 540;

    /// The shapes of the figure in pixel coordinates, shared by svg() and raster().
    detail::Scene scene() const {
        using namespace detail;
        Scene s;
        s.width = panel_width * int(std::max<std::size_t>(panels.size(), 1));
        s.height = height;
        s.title = title;
        int top = 14;
        if (!title.empty()) {
            const int sc = fit_scale(title, s.width - 16, title_scale);
            s.items.push_back(TextItem{s.width / 2.0, double(top + cap * sc), title, ink, sc, Anchor::middle, false, true});
            top += (cap + 2) * sc + 22;
        }
        for (std::size_t i = 0; i < panels.size(); ++i)
            layout_panel(s, panels[i], int(i) * panel_width, int(i + 1) * panel_width, top, height - 8);
        return s;
    }

    /// The figure as an SVG document.
    std::string svg() const {
        using namespace detail;
        const Scene s = scene();
        std::string o;
        o += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
        o += "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" + std::to_string(s.width) + "\" height=\"" +
             std::to_string(s.height) + "\" viewBox=\"0 0 " + std::to_string(s.width) + " " + std::to_string(s.height) +
             "\" font-family=\"DejaVu Sans, Verdana, Arial, sans-serif\">\n";
        if (!s.title.empty()) o += "<title>" + svg_escape(s.title) + "</title>\n";
        o += "<defs>\n";
        for (std::size_t i = 0; i < s.clips.size(); ++i) {
            const PixelRect& r = s.clips[i];
            o += "<clipPath id=\"plot" + std::to_string(i) + "\"><rect x=\"" + std::to_string(r.x0) + "\" y=\"" +
                 std::to_string(r.y0) + "\" width=\"" + std::to_string(r.x1 - r.x0) + "\" height=\"" +
                 std::to_string(r.y1 - r.y0) + "\"/></clipPath>\n";
        }
        o += "</defs>\n";
        o += "<rect width=\"" + std::to_string(s.width) + "\" height=\"" + std::to_string(s.height) + "\" fill=\"#ffffff\"/>\n";
        auto clip_attr = [](int c) { return c < 0 ? std::string() : " clip-path=\"url(#plot" + std::to_string(c) + ")\""; };
        for (const auto& item : s.items) {
            if (const auto* t = std::get_if<TextItem>(&item)) {
                // A bitmap capital is 7 font pixels tall; a sans-serif capital is about 0.72 em.
                const double size = cap * t->scale / 0.72;
                const char* anchor = t->anchor == Anchor::start ? "start" : t->anchor == Anchor::middle ? "middle" : "end";
                o += "<text x=\"" + num(t->x) + "\" y=\"" + num(t->y) + "\" font-size=\"" + num(size) + "\" fill=\"" +
                     svg_color(t->color) + "\" text-anchor=\"" + anchor + "\"";
                if (t->bold) o += " font-weight=\"bold\"";
                if (t->up) o += " transform=\"rotate(-90 " + num(t->x) + " " + num(t->y) + ")\"";
                o += ">" + svg_escape(t->text) + "</text>\n";
            } else if (const auto* r = std::get_if<RectItem>(&item)) {
                o += "<rect x=\"" + std::to_string(r->r.x0) + "\" y=\"" + std::to_string(r->r.y0) + "\" width=\"" +
                     std::to_string(r->r.x1 - r->r.x0) + "\" height=\"" + std::to_string(r->r.y1 - r->r.y0) + "\" fill=\"" +
                     svg_color(r->fill) + "\"";
                if (r->opacity < 1) o += " fill-opacity=\"" + num(r->opacity) + "\"";
                o += "/>\n";
            } else if (const auto* p = std::get_if<PathItem>(&item)) {
                o += "<polyline fill=\"none\" stroke=\"" + svg_color(p->color) + "\" stroke-width=\"" + num(p->width) +
                     "\" stroke-linejoin=\"round\" stroke-linecap=\"round\"" + clip_attr(p->clip) + " points=\"";
                for (std::size_t i = 0; i < p->points.size(); ++i)
                    o += (i ? " " : "") + num(p->points[i].first) + "," + num(p->points[i].second);
                o += "\"/>\n";
            } else if (const auto* d = std::get_if<DotItem>(&item)) {
                o += "<circle cx=\"" + num(d->x) + "\" cy=\"" + num(d->y) + "\" r=\"" + num(d->r) + "\" fill=\"" +
                     svg_color(d->color) + "\"/>\n";
            }
        }
        o += "</svg>\n";
        return o;
    }

    /// The figure drawn into an RGB canvas with the bitmap font.
    Canvas raster() const {
        using namespace detail;
        const Scene s = scene();
        Canvas c(s.width, s.height);
        for (const auto& item : s.items) {
            if (const auto* t = std::get_if<TextItem>(&item)) {
                const int w = text_width(t->text, t->scale);
                if (!t->up) {
                    c.text(anchored_left(*t), int(std::lround(t->y)) - cap * t->scale, t->text, t->color, t->scale);
                } else {
                    const double along = t->anchor == Anchor::start ? t->y - w : t->anchor == Anchor::middle ? t->y - w / 2.0 : t->y;
                    c.text_up(int(std::lround(t->x)) - cap * t->scale, int(std::lround(along)), t->text, t->color, t->scale);
                }
            } else if (const auto* r = std::get_if<RectItem>(&item)) {
                for (int y = r->r.y0; y < r->r.y1; ++y)
                    for (int x = r->r.x0; x < r->r.x1; ++x) c.blend(x, y, r->fill, r->opacity);
            } else if (const auto* p = std::get_if<PathItem>(&item)) {
                if (p->clip >= 0) c.set_clip(s.clips[std::size_t(p->clip)]);
                c.polyline(p->points, p->color, p->width);
                c.reset_clip();
            } else if (const auto* d = std::get_if<DotItem>(&item)) {
                c.dot(d->x, d->y, d->r, d->color);
            }
        }
        return c;
    }

    /// Writes STEM.svg and STEM.png. Throws IoError naming the file that could not be written.
    /// Both are drawn before either is written, and each is written atomically, so a failure
    /// leaves the previous pictures as they were.
    void save(const std::string& stem) const {
        const std::string svg_text = svg();
        const auto png = raster();
        io::write_file_atomic(stem + ".svg", {svg_text}, "plot");
        png.save_png(stem + ".png");
    }
};

}  // namespace mmalign::plot
