// eigenformer/ops/gelu.hpp — GELU, tanh approximation (GPT-2's `gelu_new`).
#pragma once

#include <cmath>

#include "eigenformer/core/types.hpp"
#include "eigenformer/ops/matmul.hpp"

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
  // t per row in a per-thread buffer, so that tanh runs vectorized once per element.
  auto* t_data = detail::thread_buffer<Scalar, detail::buffer_use::activation_scratch>(
      std::size_t(pre.cols()));
  for (index_t i = 0; i < pre.rows(); ++i) {
    const auto x = pre.row(i).array();
    Eigen::Map<Eigen::Array<Scalar, 1, Eigen::Dynamic>> t(t_data, pre.cols());
    t = (sqrt_2_over_pi * (x + cubic * x.cube())).tanh();
    grad.row(i).array() *= Scalar(0.5) * (Scalar(1) + t) +
                           Scalar(0.5) * x * (Scalar(1) - t.square()) * sqrt_2_over_pi *
                               (Scalar(1) + Scalar(3) * cubic * x.square());
  }
}

}  // namespace eigenformer
