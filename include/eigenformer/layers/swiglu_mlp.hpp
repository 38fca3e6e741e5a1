// eigenformer/layers/swiglu_mlp.hpp — the Llama family's gated MLP:
//
//   out = down(silu(gate(x)) * up(x))
//
// Sibling of layers/mlp.hpp (GPT-2's fc -> GELU -> proj) on the same mlp_weights struct: `fc`
// holds the gate and up projections side by side, [C x 2I] (gate in columns [0, I), up in
// [I, 2I)), so both are one GEMM over x; `proj` is the down projection [I x C].
#pragma once

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/layers/linear.hpp"
#include "eigenformer/layers/mlp.hpp"
#include "eigenformer/ops/silu.hpp"

namespace eigenformer {

/// x: [T x C]; hidden: scratch with at least T rows of 2I; out: [T x C].
template <class Scalar>
void swiglu_mlp_forward(matrix_cref<Scalar> x, const mlp_weights<Scalar>& w,
                        matrix_ref<Scalar> hidden, matrix_ref<Scalar> out) {
  const index_t width = w.fc.out_features();
  if (width % 2 != 0 || hidden.rows() < x.rows() || hidden.cols() != width ||
      w.proj.in_features() != width / 2) {
    throw shape_error(detail::concat("swiglu_mlp_forward: gate|up has ", width,
                                     " columns, down takes ", w.proj.in_features(),
                                     ", hidden buffer is [", hidden.rows(), " x ", hidden.cols(),
                                     "] for ", x.rows(), " tokens"));
  }
  auto gate_up = hidden.topRows(x.rows());  // [T x 2I]
  linear_forward<Scalar>(x, w.fc, gate_up);
  detail::for_row_blocks<Scalar>(
      gate_up, [](matrix_ref<Scalar> rows) { swiglu_gate_inplace<Scalar>(rows); });
  linear_forward<Scalar>(gate_up.leftCols(width / 2), w.proj, out);  // [T x I] -> [T x C]
}

/// swiglu_mlp_forward for training: acts.pre = gate | up, acts.hidden's first I columns =
/// silu(gate) * up. x: [B*T x C], out: [B*T x C].
template <class Scalar>
void swiglu_mlp_forward_train(matrix_cref<Scalar> x, const mlp_weights<Scalar>& w,
                              mlp_activations<Scalar>& acts, matrix_ref<Scalar> out) {
  const index_t width = w.fc.out_features();
  if (acts.pre.rows() != x.rows() || acts.pre.cols() != width || acts.hidden.cols() != width) {
    throw shape_error(detail::concat("swiglu_mlp_forward_train: activations [", acts.pre.rows(),
                                     " x ", acts.pre.cols(), "] for ", x.rows(),
                                     " tokens of gate|up width ", width));
  }
  linear_forward<Scalar>(x, w.fc, acts.pre);
  acts.hidden = acts.pre;
  detail::for_row_blocks<Scalar>(
      acts.hidden, [](matrix_ref<Scalar> rows) { swiglu_gate_inplace<Scalar>(rows); });
  linear_forward<Scalar>(acts.hidden.leftCols(width / 2), w.proj, out);
}

/// Backward of swiglu_mlp_forward_train, given d_out = dL/d out [B*T x C]; x is the forward's
/// input and d_hidden a [B*T x 2I] scratch: dL/d(silu(gate) * up) lands in its first I columns,
/// then the gate's backward turns the whole of it into dL/d(gate | up). Adds to grad and d_x.
template <class Scalar>
void swiglu_mlp_backward(matrix_cref<Scalar> x, const mlp_weights<Scalar>& w,
                         const mlp_activations<Scalar>& acts, matrix_cref<Scalar> d_out,
                         mlp_weights<Scalar>& grad, matrix_ref<Scalar> d_hidden,
                         matrix_ref<Scalar> d_x) {
  const index_t width = w.fc.out_features();
  if (d_hidden.rows() != acts.pre.rows() || d_hidden.cols() != width) {
    throw shape_error(detail::concat("swiglu_mlp_backward: d_hidden is [", d_hidden.rows(), " x ",
                                     d_hidden.cols(), "], gate|up [", acts.pre.rows(), " x ", width,
                                     "]"));
  }
  auto d_gated = d_hidden.leftCols(width / 2);
  d_gated.setZero();
  linear_backward<Scalar>(acts.hidden.leftCols(width / 2), w.proj, d_out, grad.proj, d_gated);
  const auto pre = matrix_cref<Scalar>(acts.pre);
  detail::for_row_blocks<Scalar>(d_hidden, [&](matrix_ref<Scalar> rows, index_t first) {
    swiglu_gate_backward<Scalar>(pre.middleRows(first, rows.rows()), rows.leftCols(width / 2),
                                 rows);
  });
  linear_backward<Scalar>(x, w.fc, d_hidden, grad.fc, d_x);
}

}  // namespace eigenformer
