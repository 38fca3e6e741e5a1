// eigenformer/layers/mlp.hpp — the position-wise feed-forward network: Linear -> GELU -> Linear.
#pragma once

#include <algorithm>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/parallel.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/layers/linear.hpp"
#include "eigenformer/ops/gelu.hpp"

namespace eigenformer {

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
  // Element-wise, so any split gives the same bits; blocks of rows keep each thread's part
  // contiguous. (tanh is the costliest op outside the GEMMs: serial, it took ~8% of a prefill.)
  constexpr index_t rows_per_block = 16;
  parallel_for((h.rows() + rows_per_block - 1) / rows_per_block, [&](index_t block) {
    const index_t first = block * rows_per_block;
    gelu_tanh_inplace<Scalar>(h.middleRows(first, std::min(rows_per_block, h.rows() - first)));
  });
  linear_forward<Scalar>(h, w.proj, out);
}

}  // namespace eigenformer
