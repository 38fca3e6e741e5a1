// eigenformer/layers/rms_norm.hpp — RMSNorm over the feature axis of each token (Llama family).
//
//   out[t] = gain * x[t] / sqrt(mean(x[t]^2) + eps)
//
// LayerNorm without the centering and the bias: only the scale of a row is normalized. eps sits
// inside the square root, as in every Hugging Face implementation. The same function normalizes
// Qwen3's query and key heads (rows of d values).
#pragma once

#include <cmath>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"

namespace eigenformer {

/// x, out: [T x C] (may be the same matrix); gain: [1 x C] ("weight" in checkpoints).
template <class Scalar>
void rms_norm_forward(matrix_cref<Scalar> x, row_vector_cref<Scalar> gain, Scalar eps,
                      matrix_ref<Scalar> out) {
  const index_t channels = x.cols();
  if (gain.size() != channels || out.rows() != x.rows() || out.cols() != channels) {
    throw shape_error(detail::concat("rms_norm_forward: x is [", x.rows(), " x ", channels,
                                     "], gain has ", gain.size(), ", out is [", out.rows(), " x ",
                                     out.cols(), "]"));
  }
  for (index_t t = 0; t < x.rows(); ++t) {
    const Scalar mean_square = x.row(t).squaredNorm() / Scalar(channels);
    const Scalar inv_rms = Scalar(1) / std::sqrt(mean_square + eps);
    out.row(t) = ((x.row(t).array() * inv_rms) * gain.array()).matrix();
  }
}

/// RMSNorm of every head of `x` [T x n_heads*d] in place: each row's d-wide column blocks are
/// normalized separately with the same gain [1 x d] (Qwen3's q_norm / k_norm).
template <class Scalar>
void rms_norm_heads_inplace(matrix_ref<Scalar> x, index_t n_heads, row_vector_cref<Scalar> gain,
                            Scalar eps) {
  const index_t d = gain.size();
  if (n_heads <= 0 || x.cols() != n_heads * d) {
    throw shape_error(detail::concat("rms_norm_heads: x has ", x.cols(), " columns, not ", n_heads,
                                     " heads of ", d));
  }
  for (index_t h = 0; h < n_heads; ++h) {
    auto head = x.middleCols(h * d, d);
    rms_norm_forward<Scalar>(head, gain, eps, head);
  }
}

}  // namespace eigenformer
