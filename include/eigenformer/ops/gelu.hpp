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

/// Backward of gelu_tanh, in place: on entry `grad` holds dL/d gelu(pre), on return dL/d pre.
/// pre, grad: same shape. With u = sqrt(2/pi) (x + 0.044715 x^3) and t = tanh(u):
///   gelu'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2).
template <class Scalar>
void gelu_tanh_backward_inplace(matrix_cref<Scalar> pre, matrix_ref<Scalar> grad) {
  const Scalar sqrt_2_over_pi = Scalar(0.7978845608028654);
  const Scalar cubic = Scalar(0.044715);
  for (index_t i = 0; i < pre.rows(); ++i) {
    for (index_t j = 0; j < pre.cols(); ++j) {
      const Scalar x = pre(i, j);
      const Scalar t = std::tanh(sqrt_2_over_pi * (x + cubic * x * x * x));
      const Scalar slope =
          Scalar(0.5) * (Scalar(1) + t) + Scalar(0.5) * x * (Scalar(1) - t * t) * sqrt_2_over_pi *
                                              (Scalar(1) + Scalar(3) * cubic * x * x);
      grad(i, j) *= slope;
    }
  }
}

}  // namespace eigenformer
