// eigenformer/ops/gelu.hpp — GELU, tanh approximation (GPT-2's `gelu_new`).
#pragma once

#include <cmath>

#include "eigenformer/core/types.hpp"

namespace eigenformer {

/// gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), applied element-wise in place.
/// This is the approximation GPT-2 was trained with; the erf form differs by up to ~1e-3.
template <class Scalar>
void gelu_tanh_inplace(matrix_ref<Scalar> x) {
  const Scalar sqrt_2_over_pi = Scalar(0.7978845608028654);
  const Scalar cubic = Scalar(0.044715);
  auto a = x.array();
  a = Scalar(0.5) * a * (Scalar(1) + (sqrt_2_over_pi * (a + cubic * a.cube())).tanh());
}

}  // namespace eigenformer
