// mmalign/train/schedule.hpp — learning-rate schedules.
//
// WarmupCosine follows open_clip's `cosine_lr`: for step < warmup, lr = base·(step+1)/warmup;
// afterwards lr = ½(1 + cos(π·e/es))·base with e = step − warmup, es = total − warmup
// (steps counted from 0), reaching 0 at step = total.
//
// LinearWarmupCosineByEpoch follows LAVIS's `linear_warmup_cosine_lr` (lavis/common/optims.py,
// the schedule of BLIP-2's pretraining configs), which works per epoch: in epoch 0 the rate rises
// linearly from warmup_start_lr to base_lr over the first `warmup` steps of the epoch and then
// stays at base_lr (min(base, start + (base − start)·step/warmup)); from epoch e ≥ 1 on it is
// eta_min + ½(base − eta_min)(1 + cos(π·e/epochs)), constant within the epoch. A one-epoch run
// therefore never decays, as in LAVIS.
#pragma once

#include <algorithm>
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

struct LinearWarmupCosineByEpoch {
    double base_lr = 1e-4;
    double warmup_start_lr = 1e-6;
    double eta_min = 0;
    long warmup = 0;
    long epochs = 1;

    /// The rate of step `step_in_epoch` (from 0) of epoch `epoch` (from 0).
    double operator()(long epoch, long step_in_epoch) const {
        if (epoch == 0)
            return std::min(base_lr, warmup_start_lr + (base_lr - warmup_start_lr) * double(step_in_epoch) /
                                                           double(std::max(1L, warmup)));
        return eta_min + 0.5 * (base_lr - eta_min) * (1.0 + std::cos(std::numbers::pi * double(epoch) / double(std::max(1L, epochs))));
    }
};

}  // namespace mmalign
