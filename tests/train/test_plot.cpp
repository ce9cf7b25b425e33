// Tests of train/plot.hpp: nice ticks on known ranges and their defining properties over many
// ranges, the bitmap font's coverage of printable ASCII, and a two-panel Figure written as SVG
// (its texts present and escaped, tags balanced) and PNG (decoded through io/image.hpp's reader
// to the raster's exact pixels, with ink inside every text's box and paper outside the drawing).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "mmalign/train/plot.hpp"
#include "support/temp_dir.hpp"
#if defined(MMALIGN_WITH_IMAGE)
#include "mmalign/io/image.hpp"
#endif

using namespace mmalign;
using namespace mmalign::plot;

namespace {

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    REQUIRE_MESSAGE(f, "cannot open " << path);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

bool is_nice_step(double step) {
    const double k = std::floor(std::log10(step) + 1e-9), m = step / std::pow(10.0, k);
    return std::abs(m - 1) < 1e-9 || std::abs(m - 2) < 1e-9 || std::abs(m - 5) < 1e-9;
}

/// The next smaller step of the 1-2-5 sequence.
double smaller_step(double step) {
    const double k = std::floor(std::log10(step) + 1e-9), m = std::round(step / std::pow(10.0, k));
    return m == 1 ? 0.5 * step : m == 2 ? 0.5 * step : 0.4 * step;
}

/// The figure of the Fashion-MNIST example, with made-up numbers.
Figure sample_figure() {
    Figure fig;
    fig.title = "CLIP on Fashion-MNIST & friends <test>";
    Panel& a = fig.panels.emplace_back();
    a.title = "Training loss";
    a.x.label = "epoch";
    a.y.label = "loss (nats)";
    Series loss{.name = "batch loss", .color = colors::red};
    for (int i = 0; i <= 120; ++i) loss.points.emplace_back(i / 10.0, 3.3 + 2.2 * std::exp(-i / 10.0 * 3));
    a.series.push_back(loss);
    Panel& b = fig.panels.emplace_back();
    b.title = "Zero-shot top-1";
    b.x.label = "epoch";
    b.y.label = "accuracy (%)";
    b.series.push_back({.name = "2,000 test images", .points = {{1, 82.3}, {2, 84.1}, {3, 85.0}}, .color = colors::blue,
                        .marker_radius = 3, .decimals = 2, .unit = "%"});
    b.series.push_back({.name = "10,000 test images",
                        .points = {{3, 89.86}},
                        .color = colors::green,
                        .line_width = 0,
                        .marker_radius = 5,
                        .decimals = 2,
                        .unit = "%"});
    return fig;
}

/// Tag names in document order; a closing tag pops, and a mismatch or leftover fails.
bool tags_balanced(const std::string& xml, std::string& why) {
    std::vector<std::string> stack;
    for (std::size_t p = xml.find('<'); p != std::string::npos; p = xml.find('<', p + 1)) {
        if (xml.compare(p, 2, "<?") == 0) continue;
        const std::size_t end = xml.find('>', p);
        if (end == std::string::npos) return why = "unterminated tag", false;
        const std::string tag = xml.substr(p + 1, end - p - 1);
        if (tag.empty()) return why = "empty tag", false;
        if (tag[0] == '/') {
            const std::string name = tag.substr(1);
            if (stack.empty() || stack.back() != name) return why = "</" + name + "> closes nothing open", false;
            stack.pop_back();
        } else if (tag.back() != '/') {
            stack.push_back(tag.substr(0, tag.find_first_of(" \n")));
        }
    }
    if (!stack.empty()) return why = "<" + stack.back() + "> left open", false;
    return true;
}

}  // namespace

TEST_CASE("nice_ticks picks 1-2-5 steps on known ranges") {
    Ticks t = nice_ticks(0, 12, 7);
    CHECK(t.step == 2);
    CHECK(t.values == std::vector<double>{0, 2, 4, 6, 8, 10, 12});
    CHECK(t.decimals == 0);

    t = nice_ticks(3.21, 5.6, 6);  // 0.5 would need 3.0 .. 6.0 = 7 ticks
    CHECK(t.step == 1);
    CHECK(t.values == std::vector<double>{3, 4, 5, 6});
    t = nice_ticks(3.21, 5.6, 7);
    CHECK(t.step == 0.5);
    CHECK(t.lo == 3.0);
    CHECK(t.hi == 6.0);
    CHECK(t.values.size() == 7);
    CHECK(t.decimals == 1);

    t = nice_ticks(0.8115, 0.8986, 6);
    CHECK(t.step == doctest::Approx(0.02));
    CHECK(t.lo == doctest::Approx(0.80));
    CHECK(t.hi == doctest::Approx(0.90));
    CHECK(t.values.size() == 6);
    CHECK(t.decimals == 2);
    std::vector<std::string> labels;
    for (double v : t.values) labels.push_back(format_tick(v, t.decimals));
    CHECK(labels == std::vector<std::string>{"0.80", "0.82", "0.84", "0.86", "0.88", "0.90"});

    t = nice_ticks(-1, 1, 5);
    CHECK(t.step == 0.5);
    CHECK(t.values == std::vector<double>{-1, -0.5, 0, 0.5, 1});
    CHECK(format_tick(t.values[2], t.decimals) == "0.0");

    t = nice_ticks(250, 49000, 6);
    CHECK(t.step == 10000);
    CHECK(t.lo == 0);
    CHECK(t.hi == 50000);

    t = nice_ticks(5, 5, 6);  // a flat series: widened by 10% each way
    CHECK(t.step == 0.5);
    CHECK(t.values == std::vector<double>{4.5, 5.0, 5.5});
    t = nice_ticks(NAN, 1, 6);  // no usable data: 0 .. 1
    CHECK(t.lo == 0);
    CHECK(t.hi == 1);
    CHECK(t.step == doctest::Approx(0.2));
    CHECK(format_tick(-1e-17, 1) == "0.0");
    CHECK(format_tick(0.1 + 0.2, 1) == "0.3");
}

TEST_CASE("nice_ticks covers the range with at most max_ticks and no smaller 1-2-5 step would do") {
    std::mt19937 rng(7);
    std::uniform_real_distribution<double> mag(-6, 6), frac(0, 1);
    for (int i = 0; i < 2000; ++i) {
        const double scale = std::pow(10.0, mag(rng));
        double lo = (frac(rng) - 0.5) * scale, hi = lo + frac(rng) * scale + 1e-12 * scale;
        const int max_ticks = 3 + int(frac(rng) * 8);
        const Ticks t = nice_ticks(lo, hi, max_ticks);
        CAPTURE(lo);
        CAPTURE(hi);
        CAPTURE(max_ticks);
        REQUIRE(is_nice_step(t.step));
        CHECK(int(t.values.size()) <= max_ticks);
        CHECK(t.lo <= lo + 1e-9 * scale);
        CHECK(t.hi >= hi - 1e-9 * scale);
        CHECK(t.values.front() == doctest::Approx(t.lo));
        CHECK(t.values.back() == doctest::Approx(t.hi));
        const double s = smaller_step(t.step);
        const double count = std::ceil(hi / s - 1e-9) - std::floor(lo / s + 1e-9) + 1;
        CHECK(count > max_ticks);
        // Labels at the chosen decimals tell neighbouring ticks apart.
        for (std::size_t k = 1; k < t.values.size(); ++k)
            CHECK(format_tick(t.values[k - 1], t.decimals) != format_tick(t.values[k], t.decimals));
    }
}

TEST_CASE("the bitmap font has a distinct glyph for every printable ASCII character") {
    std::set<std::vector<bool>> seen;
    for (char c = BitmapFont::first; c <= BitmapFont::last; ++c) {
        std::vector<bool> bits;
        int ink = 0;
        for (int y = 0; y < BitmapFont::glyph_height; ++y)
            for (int x = 0; x < BitmapFont::glyph_width; ++x) bits.push_back(glyph_pixel(c, x, y)), ink += bits.back();
        CAPTURE(c);
        if (c == ' ') CHECK(ink == 0);
        else CHECK(ink > 0);
        CHECK(seen.insert(bits).second);
        const bool descends = std::string("gjpqy,;_|").find(c) != std::string::npos;
        bool below = false;
        for (int x = 0; x < BitmapFont::glyph_width; ++x) below |= glyph_pixel(c, x, 7) || glyph_pixel(c, x, 8);
        CHECK(below == descends);
        if (c == '~') break;  // char may be signed: ++ past '~' would overflow
    }
    CHECK(glyph_pixel('\x01', 1, 0) == glyph_pixel('?', 1, 0));  // unprintable characters show as '?'
    CHECK(text_width("abc", 2) == (3 * 6 - 1) * 2);
}

TEST_CASE("canvas text puts the glyph's pixels at the given corner and scale") {
    Canvas c(40, 30);
    c.text(3, 4, "L", {0, 0, 0}, 2);  // 'L': the first column and the last row of the capital
    for (int y = 0; y < 30; ++y)
        for (int x = 0; x < 40; ++x) {
            const bool in_glyph = x >= 3 && y >= 4 && glyph_pixel('L', (x - 3) / 2, (y - 4) / 2) && x < 13 && y < 22;
            CAPTURE(x);
            CAPTURE(y);
            CHECK((c.at(x, y) == Rgb{0, 0, 0}) == in_glyph);
        }
    CHECK(c.at(3, 4) == Rgb{0, 0, 0});   // column 0, row 0
    CHECK(c.at(5, 4) == Rgb{255, 255, 255});
    CHECK(c.at(12, 17) == Rgb{0, 0, 0});  // column 4 of the base row 6
}

TEST_CASE("the figure's SVG holds its title, axis labels, tick values, legend and final values, escaped and balanced") {
    const Figure fig = sample_figure();
    const std::string svg = fig.svg();
    CHECK(svg.rfind("<?xml", 0) == 0);
    auto has_text = [&](const std::string& t) { return svg.find(">" + t + "</text>") != std::string::npos; };
    CHECK(has_text("CLIP on Fashion-MNIST &amp; friends &lt;test&gt;"));
    CHECK(svg.find("<title>CLIP on Fashion-MNIST &amp; friends &lt;test&gt;</title>") != std::string::npos);
    for (const char* t : {"Training loss", "Zero-shot top-1", "epoch", "loss (nats)", "accuracy (%)", "batch loss",
                          "2,000 test images", "10,000 test images"})
        CHECK_MESSAGE(has_text(t), std::string(t));
    // Ticks: loss 3.0 .. 5.5 by 0.5 (the data spans 3.30 .. 5.50), epochs 0 .. 12 by 2.
    for (const char* t : {"3.0", "3.5", "5.0", "5.5", "0", "2", "12"}) CHECK_MESSAGE(has_text(t), std::string(t));
    CHECK_FALSE(has_text("6.0"));
    // Final values: the loss's last point, the accuracy series' last points.
    char loss_end[32];
    std::snprintf(loss_end, sizeof loss_end, "%.4g", 3.3 + 2.2 * std::exp(-12.0 * 3));
    CHECK(has_text(loss_end));
    CHECK(has_text("85.00%"));
    CHECK(has_text("89.86%"));
    CHECK(svg.find("transform=\"rotate(-90") != std::string::npos);  // the y-axis labels stand upright
    std::string why;
    CHECK_MESSAGE(tags_balanced(svg, why), why);
    CHECK(svg.find("<svg ") != std::string::npos);
    CHECK(svg.substr(svg.size() - 7) == "</svg>\n");
}

TEST_CASE("the figure's PNG decodes to the raster, with ink in every text's box and the margins blank") {
    const Figure fig = sample_figure();
    test::TempDir tmp;
    fig.save(tmp / "curves");
    CHECK(tmp.listing() == std::vector<std::string>{"curves.png", "curves.svg"});  // no temporary left behind
    CHECK(read_file(tmp / "curves.svg") == fig.svg());
    const Canvas raster = fig.raster();
    CHECK(raster.width() == 1200);
    CHECK(raster.height() == 540);
    const auto scene = fig.scene();
    int texts = 0;
    for (const auto& item : scene.items) {
        const auto* t = std::get_if<detail::TextItem>(&item);
        if (!t || t->text.empty()) continue;
        ++texts;
        // The box the text occupies, from its anchor and the font's metrics.
        const int w = text_width(t->text, t->scale), h = BitmapFont::glyph_height * t->scale;
        int x0, y0, x1, y1;
        if (!t->up) {
            x0 = detail::anchored_left(*t), y0 = int(std::lround(t->y)) - detail::cap * t->scale, x1 = x0 + w, y1 = y0 + h;
        } else {
            x0 = int(std::lround(t->x)) - detail::cap * t->scale, x1 = x0 + h;
            y0 = int(std::lround(t->y - w / 2.0)), y1 = y0 + w;
        }
        int ink = 0;
        for (int y = std::max(y0, 0); y < std::min(y1, raster.height()); ++y)
            for (int x = std::max(x0, 0); x < std::min(x1, raster.width()); ++x) ink += raster.at(x, y) != Rgb{255, 255, 255};
        CAPTURE(t->text);
        CHECK(ink >= int(t->text.size()) * t->scale * t->scale);  // at least a few font pixels per character
    }
    CHECK(texts >= 20);
    // The outer margin holds nothing.
    for (int x = 0; x < raster.width(); ++x) CHECK(raster.at(x, raster.height() - 1) == Rgb{255, 255, 255});
    for (int y = 0; y < raster.height(); ++y) CHECK(raster.at(raster.width() - 1, y) == Rgb{255, 255, 255});
#if defined(MMALIGN_WITH_IMAGE)
    const io::Image png = io::load_image(tmp / "curves.png");
    CHECK(png.width == 1200);
    CHECK(png.height == 540);
    CHECK(png.channels == 3);
    CHECK(png.pixels == raster.pixels());
#else
    MESSAGE("mmalign::image not configured: the PNG is checked by tests/io/test_png_writer.cpp's own decoder only");
#endif
}

TEST_CASE("final-value labels of light series colours are darkened to read on white") {
    auto luma = [](Rgb c) { return 0.299 * c.r + 0.587 * c.g + 0.114 * c.b; };
    CHECK(luma(detail::text_color(colors::pink)) <= 120.5);
    CHECK(luma(detail::text_color(Rgb{255, 255, 0})) <= 120.5);
    CHECK(detail::text_color(colors::blue) == colors::blue);  // dark enough already
    Figure fig = sample_figure();
    fig.panels[0].series[0].color = colors::pink;
    const Rgb label = detail::text_color(colors::pink);
    char hex[8];
    std::snprintf(hex, sizeof hex, "#%02x%02x%02x", label.r, label.g, label.b);
    CHECK(fig.svg().find("fill=\"" + std::string(hex) + "\" text-anchor") != std::string::npos);
}

TEST_CASE("final-value labels stay inside the plot and never overlap, even for series ending together") {
    Figure fig;
    Panel& p = fig.panels.emplace_back();
    p.title = "four series ending at one point";
    for (int k = 0; k < 4; ++k) {
        Series se{.name = std::string(1, char('a' + k)), .color = colors::blue, .decimals = 3};
        for (int i = 0; i <= 10; ++i) se.points.emplace_back(i, 1.0 + 0.001 * k + (10 - i) * 0.1 * k);
        p.series.push_back(se);
    }
    const auto scene = fig.scene();
    REQUIRE(scene.clips.size() == 1);
    const PixelRect area = scene.clips[0];
    std::vector<PixelRect> boxes;
    for (const auto& item : scene.items)
        if (const auto* r = std::get_if<detail::RectItem>(&item); r && r->opacity < 1) boxes.push_back(r->r);
    REQUIRE(boxes.size() == 4);
    for (std::size_t i = 0; i < boxes.size(); ++i) {
        CAPTURE(i);
        CHECK(boxes[i].x0 >= area.x0);
        CHECK(boxes[i].x1 <= area.x1);
        CHECK(boxes[i].y0 >= area.y0);
        CHECK(boxes[i].y1 <= area.y1);
        for (std::size_t j = 0; j < i; ++j)
            CHECK_FALSE((boxes[i].x0 < boxes[j].x1 && boxes[j].x0 < boxes[i].x1 && boxes[i].y0 < boxes[j].y1 &&
                         boxes[j].y0 < boxes[i].y1));
    }
}

TEST_CASE("a figure too small for its panels is refused with a message") {
    Figure fig = sample_figure();
    fig.height = 120;
    CHECK_THROWS_AS(fig.scene(), ArgumentError);
}

TEST_CASE("nice_ticks ends on ranges beyond 2^53 and at the ends of the double range, still covering them") {
    for (auto [lo, hi] : {std::pair{1e17, 1e17 + 16}, std::pair{-1e308, 1e308}, std::pair{1e300, 1.5e300},
                          std::pair{-4e18, -4e18 + 1000}}) {
        const Ticks t = nice_ticks(lo, hi, 6);
        CAPTURE(lo);
        CAPTURE(hi);
        REQUIRE(!t.values.empty());
        CHECK(t.values.size() <= 6);
        CHECK(t.lo <= lo);
        CHECK(t.hi >= hi);
        for (double v : t.values) CHECK(std::isfinite(v));
    }
}

TEST_CASE("a failed save leaves the previous SVG and PNG as they were") {
    const auto dir = std::filesystem::temp_directory_path() / ("mmalign_plot_keep_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::string stem = (dir / "curves").string();
    sample_figure().save(stem);
    auto bytes = [](const std::string& p) {
        std::ifstream f(p, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(f), {});
    };
    const std::string svg = bytes(stem + ".svg"), png = bytes(stem + ".png");
    REQUIRE(svg.size() > 100);
    Figure small = sample_figure();
    small.height = 120;  // too small: drawing throws before anything is written
    CHECK_THROWS_AS(small.save(stem), ArgumentError);
    CHECK(bytes(stem + ".svg") == svg);
    CHECK(bytes(stem + ".png") == png);
    std::filesystem::remove_all(dir);
}

TEST_CASE("SVG text stays well-formed XML: control characters and invalid UTF-8 in titles are replaced") {
    Figure fig = sample_figure();
    fig.title = std::string("bad \x01 byte \xff and <tag> & \xc3\xa9");
    const std::string svg = fig.svg();
    CHECK(svg.find('\x01') == std::string::npos);
    CHECK(svg.find("bad ? byte \xef\xbf\xbd and &lt;tag&gt; &amp; \xc3\xa9") != std::string::npos);
}
