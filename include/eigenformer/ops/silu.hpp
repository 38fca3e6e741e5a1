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

/// Backward of swiglu_gate_inplace. gate_up: the gate | up values BEFORE the gate was applied
/// [T x 2I]; d_gated: dL/d(silu(gate) * up) [T x I]. Writes dL/dgate | dL/dup into d_gate_up
/// [T x 2I] (d_gated may be its first I columns). With s = sigmoid(gate):
///   d gate = d_gated * up * s * (1 + gate * (1 - s))     (the derivative of gate * s)
///   d up   = d_gated * gate * s
template <class Scalar>
void swiglu_gate_backward(matrix_cref<Scalar> gate_up, matrix_cref<Scalar> d_gated,
                          matrix_ref<Scalar> d_gate_up) {
  const index_t hidden = gate_up.cols() / 2;
  if (gate_up.cols() % 2 != 0 || d_gated.rows() != gate_up.rows() || d_gated.cols() != hidden ||
      d_gate_up.rows() != gate_up.rows() || d_gate_up.cols() != gate_up.cols()) {
    throw shape_error(detail::concat("swiglu_gate_backward: gate|up is [", gate_up.rows(), " x ",
                                     gate_up.cols(), "], d_gated [", d_gated.rows(), " x ",
                                     d_gated.cols(), "], d_gate_up [", d_gate_up.rows(), " x ",
                                     d_gate_up.cols(), "]"));
  }
  const auto gate = gate_up.leftCols(hidden).array();
  const auto up = gate_up.rightCols(hidden).array();
  const auto d = d_gated.array();
  const auto s = Scalar(1) / (Scalar(1) + (-gate).exp());
  // Up first: d_gated may be d_gate_up's own gate columns (the MLP's backward does that), and
  // each element is read before it is overwritten.
  d_gate_up.rightCols(hidden).array() = d * gate * s;
  d_gate_up.leftCols(hidden).array() = d * up * s * (Scalar(1) + gate * (Scalar(1) - s));
}

}  // namespace eigenformer
