// eigenformer/layers/mlp.hpp — the position-wise feed-forward network: Linear -> GELU -> Linear.
#pragma once

#include <algorithm>
#include <type_traits>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/parallel.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/layers/linear.hpp"
#include "eigenformer/ops/gelu.hpp"

namespace eigenformer {

namespace detail {
/// Runs body(rows) — or body(rows, first_row) — on blocks of 16 rows of m, in parallel.
/// For element-wise work: any split gives the same bits, and a block is contiguous.
/// (tanh is the costliest op outside the GEMMs: serial, it took ~8% of a prefill.)
template <class Scalar, class Body>
void for_row_blocks(matrix_ref<Scalar> m, const Body& body) {
  constexpr index_t rows_per_block = 16;
  parallel_for((m.rows() + rows_per_block - 1) / rows_per_block, [&](index_t block) {
    const index_t first = block * rows_per_block;
    auto rows = m.middleRows(first, std::min(rows_per_block, m.rows() - first));
    if constexpr (std::is_invocable_v<Body, matrix_ref<Scalar>, index_t>) {
      body(rows, first);
    } else {
      body(rows);
    }
  });
}
}  // namespace detail

template <class Scalar>
struct mlp_weights {
  linear_weights<Scalar> fc;    // c_fc:   [C x 4C] (4C = n_inner), bias [4C]
  linear_weights<Scalar> proj;  // c_proj: [4C x C], bias [C]
};

/// out = gelu(x W_fc + b_fc) W_proj + b_proj.
/// x: [T x C], hidden: scratch with at least T rows of 4C, out: [T x C].
template <class Scalar>
void mlp_forward(matrix_cref<Scalar> x, const mlp_weights<Scalar>& w, matrix_ref<Scalar> hidden,
                 matrix_ref<Scalar> out) {
  if (hidden.rows() < x.rows() || hidden.cols() != w.fc.out_features()) {
    throw shape_error(detail::concat("mlp_forward: hidden buffer [", hidden.rows(), " x ",
                                     hidden.cols(), "] cannot hold [", x.rows(), " x ",
                                     w.fc.out_features(), "]"));
  }
  auto h = hidden.topRows(x.rows());
  linear_forward<Scalar>(x, w.fc, h);
  detail::for_row_blocks<Scalar>(h,
                                 [](matrix_ref<Scalar> rows) { gelu_tanh_inplace<Scalar>(rows); });
  linear_forward<Scalar>(h, w.proj, out);
}

/// What the MLP's backward pass needs from the forward pass of B*T tokens. `fc_width` is the
/// hidden width H for GELU and 2I (gate | up) for SwiGLU (layers/swiglu_mlp.hpp).
template <class Scalar>
struct mlp_activations {
  matrix<Scalar> pre;     // [B*T x fc_width], x W_fc + b_fc: GELU's input, or SwiGLU's gate | up
  matrix<Scalar> hidden;  // [B*T x fc_width], the activation of `pre`; its first proj-input
                          // columns are the input of proj (all of them for GELU, I for SwiGLU)

  mlp_activations() = default;
  mlp_activations(index_t rows, index_t fc_width) : pre(rows, fc_width), hidden(rows, fc_width) {}
};

/// mlp_forward for training: keeps the hidden activations before and after GELU.
/// x: [B*T x C], out: [B*T x C].
template <class Scalar>
void mlp_forward_train(matrix_cref<Scalar> x, const mlp_weights<Scalar>& w,
                       mlp_activations<Scalar>& acts, matrix_ref<Scalar> out) {
  linear_forward<Scalar>(x, w.fc, acts.pre);
  acts.hidden = acts.pre;
  detail::for_row_blocks<Scalar>(acts.hidden,
                                 [](matrix_ref<Scalar> rows) { gelu_tanh_inplace<Scalar>(rows); });
  linear_forward<Scalar>(acts.hidden, w.proj, out);
}

/// Backward of mlp_forward_train, given d_out = dL/d out [B*T x C]; x is the forward's input and
/// d_hidden a [B*T x 4C] scratch. Adds to grad and d_x (see linear_backward).
template <class Scalar>
void mlp_backward(matrix_cref<Scalar> x, const mlp_weights<Scalar>& w,
                  const mlp_activations<Scalar>& acts, matrix_cref<Scalar> d_out,
                  mlp_weights<Scalar>& grad, matrix_ref<Scalar> d_hidden, matrix_ref<Scalar> d_x) {
  if (d_hidden.rows() != acts.hidden.rows() || d_hidden.cols() != acts.hidden.cols()) {
    throw shape_error(detail::concat("mlp_backward: d_hidden is [", d_hidden.rows(), " x ",
                                     d_hidden.cols(), "], the hidden activations [",
                                     acts.hidden.rows(), " x ", acts.hidden.cols(), "]"));
  }
  d_hidden.setZero();
  linear_backward<Scalar>(acts.hidden, w.proj, d_out, grad.proj, d_hidden);
  const auto pre = matrix_cref<Scalar>(acts.pre);
  detail::for_row_blocks<Scalar>(d_hidden, [&](matrix_ref<Scalar> rows, index_t first) {
    gelu_tanh_backward_inplace<Scalar>(pre.middleRows(first, rows.rows()), rows);
  });
  linear_backward<Scalar>(x, w.fc, d_hidden, grad.fc, d_x);
}

}  // namespace eigenformer
