// mmalign/train/plot/ticks.hpp — axis ticks at "nice" steps (1, 2 or 5 × 10^k) and their labels.
//
// nice_ticks(lo, hi, max_ticks) picks the smallest such step that puts at most `max_ticks` ticks
// on the range widened outwards to multiples of the step, so the axis starts and ends on a
// labelled tick (Heckbert, "Nice numbers for graph labels", Graphics Gems, 1990, with his
// {1, 2, 5} steps). Labels show as many decimals as the step needs and no more.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace mmalign::plot {

struct Ticks {
    double lo = 0, hi = 1;       // the widened axis range: lo and hi are ticks
    double step = 1;             // 1, 2 or 5 × 10^k
    std::vector<double> values;  // lo, lo + step, …, hi
    int decimals = 0;            // digits after the point that label every tick exactly
};

/// Ticks covering [lo, hi] with at most `max_ticks` values (fewer than 3 is taken as 3: two
/// ticks cannot always cover a range that straddles a multiple of every step). A range of zero width (or an
/// empty one, lo > hi, e.g. no data) is widened around its value first; non-finite bounds give
/// the range [0, 1].
inline Ticks nice_ticks(double lo, double hi, int max_ticks = 6) {
    max_ticks = std::max(max_ticks, 3);
    if (!std::isfinite(lo) || !std::isfinite(hi) || lo > hi) lo = 0, hi = 1;
    if (hi == lo) {
        const double pad = lo == 0 ? 1 : std::abs(lo) * 0.1;
        lo -= pad, hi += pad;
    }
    // Beyond 2^52 neighbouring doubles are whole numbers apart and a span can overflow: keep the
    // range at least a relative 1e-9 wide and finite, so the step below is representable.
    if (hi - lo < 1e-9 * std::max(std::abs(lo), std::abs(hi))) {
        const double pad = 1e-9 * std::max(std::abs(lo), std::abs(hi));
        lo -= pad, hi += pad;
    }
    Ticks t;
    const double raw = hi / (max_ticks - 1) - lo / (max_ticks - 1);  // finite even when hi − lo is not
    int k = int(std::floor(std::log10(raw)));
    for (;; ++k) {
        for (double m : {1.0, 2.0, 5.0}) {
            const double step = m * std::pow(10.0, k);
            // The small tolerances keep a bound that is a multiple up to rounding (0.3 / 0.1) on it.
            const double first = std::floor(lo / step + 1e-9), last = std::ceil(hi / step - 1e-9);
            if (last - first + 1 <= max_ticks) {
                t.step = step;
                t.lo = first * step, t.hi = last * step;
                const auto count = static_cast<long long>(last - first);  // ≤ max_ticks − 1
                for (long long j = 0; j <= count; ++j) {
                    const double v = (first + double(j)) * step;
                    t.values.push_back(v == 0 ? 0.0 : v);
                }
                t.decimals = std::max(0, -int(std::floor(std::log10(step) + 1e-9)));
                return t;
            }
        }
    }
}

/// `value` with `decimals` digits after the point ("-0" printed as "0").
inline std::string format_tick(double value, int decimals) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
    std::string s = buf;
    if (s.find_first_not_of("-0.") == std::string::npos && s[0] == '-') s.erase(0, 1);
    return s;
}

}  // namespace mmalign::plot
