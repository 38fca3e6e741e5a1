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

/// Backward of rms_norm_forward, given d_out = dL/dout [T x C]. With r = 1/sqrt(mean(x^2) + eps),
/// xhat = x r and g = d_out * gain (elementwise):
///
///   dL/dgain += sum over rows of d_out * xhat
///   dL/dx     = r (g - xhat mean(g * xhat))
///
/// The mean is the gradient flowing back through the row's r: every output of a row depends on
/// every input of it. Adds to d_gain and d_x (as the other backward functions do).
template <class Scalar>
void rms_norm_backward(matrix_cref<Scalar> x, row_vector_cref<Scalar> gain, Scalar eps,
                       matrix_cref<Scalar> d_out, row_vector<Scalar>& d_gain,
                       matrix_ref<Scalar> d_x) {
  const index_t channels = x.cols();
  if (gain.size() != channels || d_gain.size() != channels || d_out.rows() != x.rows() ||
      d_out.cols() != channels || d_x.rows() != x.rows() || d_x.cols() != channels) {
    throw shape_error(detail::concat("rms_norm_backward: x is [", x.rows(), " x ", channels,
                                     "], gain has ", gain.size(), ", d_out is [", d_out.rows(),
                                     " x ", d_out.cols(), "], d_x is [", d_x.rows(), " x ",
                                     d_x.cols(), "]"));
  }
  for (index_t t = 0; t < x.rows(); ++t) {
    const Scalar mean_square = x.row(t).squaredNorm() / Scalar(channels);
    const Scalar inv_rms = Scalar(1) / std::sqrt(mean_square + eps);
    const auto xhat = x.row(t).array() * inv_rms;
    const auto g = d_out.row(t).array() * gain.array();
    const Scalar mean_g_xhat = (g * xhat).sum() / Scalar(channels);
    d_gain.array() += d_out.row(t).array() * xhat;
    d_x.row(t).array() += inv_rms * (g - xhat * mean_g_xhat);
  }
}

/// Backward of rms_norm_heads_inplace: `x` is the input before normalization [T x n_heads*d],
/// d_out the gradient of the normalized heads. Every head shares the gain, so its gradient sums
/// over heads. Adds to d_gain [1 x d] and d_x.
template <class Scalar>
void rms_norm_heads_backward(matrix_cref<Scalar> x, index_t n_heads, row_vector_cref<Scalar> gain,
                             Scalar eps, matrix_cref<Scalar> d_out, row_vector<Scalar>& d_gain,
                             matrix_ref<Scalar> d_x) {
  const index_t d = gain.size();
  if (n_heads <= 0 || x.cols() != n_heads * d || d_out.cols() != x.cols() ||
      d_x.cols() != x.cols()) {
    throw shape_error(detail::concat("rms_norm_heads_backward: x has ", x.cols(), " columns, not ",
                                     n_heads, " heads of ", d));
  }
  for (index_t h = 0; h < n_heads; ++h) {
    rms_norm_backward<Scalar>(x.middleCols(h * d, d), gain, eps, d_out.middleCols(h * d, d), d_gain,
                              d_x.middleCols(h * d, d));
  }
}

}  // namespace eigenformer
