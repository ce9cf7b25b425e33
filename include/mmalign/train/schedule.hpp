// mmalign/train/schedule.hpp — learning-rate schedules.
//
// WarmupCosine follows open_clip's `cosine_lr`: for step < warmup, lr = base·(step+1)/warmup;
// afterwards lr = ½(1 + cos(π·e/es))·base with e = step − warmup, es = total − warmup
// (steps counted from 0), reaching 0 at step = total.
#pragma once

#include <cmath>
#include <numbers>

namespace mmalign {

struct WarmupCosine {
    double base_lr = 1e-3;
    long warmup = 0;
    long total = 1;

    double operator()(long step) const {
        if (step < warmup) return base_lr * double(step + 1) / double(warmup);
        const double e = double(step - warmup), es = double(std::max(1L, total - warmup));
        return 0.5 * (1.0 + std::cos(std::numbers::pi * std::min(e, es) / es)) * base_lr;
    }
};

}  // namespace mmalign
