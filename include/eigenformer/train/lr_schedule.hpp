// eigenformer/train/lr_schedule.hpp — learning rate per step: linear warm-up, then a cosine decay.
#pragma once

#include <algorithm>
#include <cmath>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"

namespace eigenformer {

/// lr(step), step = 0, 1, ...: rises linearly to max_lr over the first warmup_steps (so the
/// first step is not taken at full rate while Adam's moment estimates are still noise), then
/// follows half a cosine from max_lr down to min_lr at total_steps, and stays there.
struct warmup_cosine_schedule {
  double max_lr = 1e-3;
  double min_lr = 1e-4;
  index_t warmup_steps = 0;
  index_t total_steps = 1;

  void validate() const {
    if (!(max_lr >= 0) || !(min_lr >= 0) || min_lr > max_lr || warmup_steps < 0 ||
        total_steps < 1 || !std::isfinite(max_lr)) {
      throw value_error(detail::concat(
          "lr schedule: need 0 <= min_lr <= max_lr, warm-up >= 0, "
          "steps >= 1; got max ",
          max_lr, ", min ", min_lr, ", warm-up ", warmup_steps, ", steps ", total_steps));
    }
  }

  double at(index_t step) const {
    if (step < warmup_steps) return max_lr * double(step + 1) / double(warmup_steps);
    if (step >= total_steps) return min_lr;
    const double decay_steps = double(std::max<index_t>(total_steps - warmup_steps, 1));
    const double progress = double(step - warmup_steps) / decay_steps;  // [0, 1)
    const double pi = 3.14159265358979323846;
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + std::cos(pi * progress));
  }
};

}  // namespace eigenformer
