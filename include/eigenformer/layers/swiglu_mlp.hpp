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

}  // namespace eigenformer
