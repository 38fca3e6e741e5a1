// eigenformer/ops/silu.hpp — SiLU (swish) and the SwiGLU gate of the Llama family's MLP.
#pragma once

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"

namespace eigenformer {

/// silu(x) = x * sigmoid(x) = x / (1 + exp(-x)), element-wise in place. For x -> -inf, exp(-x)
/// overflows to inf and the quotient is -0, the right limit; no NaN for any finite input.
template <class Scalar>
void silu_inplace(matrix_ref<Scalar> x) {
  auto a = x.array();
  a = a / (Scalar(1) + (-a).exp());
}

/// The SwiGLU gate: gate_up [T x 2I] holds gate | up side by side (the fused first projection);
/// on return its first I columns hold silu(gate) * up, the input of the down projection.
template <class Scalar>
void swiglu_gate_inplace(matrix_ref<Scalar> gate_up) {
  if (gate_up.cols() % 2 != 0) {
    throw shape_error(detail::concat("swiglu: ", gate_up.cols(),
                                     " columns cannot be split into gate | up halves"));
  }
  const index_t hidden = gate_up.cols() / 2;
  auto gate = gate_up.leftCols(hidden).array();
  const auto up = gate_up.rightCols(hidden).array();
  gate = gate / (Scalar(1) + (-gate).exp()) * up;
}

}  // namespace eigenformer
