// eigenformer/layers/layer_norm.hpp — LayerNorm over the feature axis of each token.
#pragma once

#include <cmath>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"

namespace eigenformer {

template <class Scalar>
struct layer_norm_weights {
  row_vector<Scalar> gain;  // [1 x C], "weight" in checkpoints
  row_vector<Scalar> bias;  // [1 x C]
};

/// out[t] = (x[t] - mean) / sqrt(var + eps) * gain + bias, per token row.
/// x, out: [T x C] (may be the same matrix). The variance is the biased one (divide by C), as in
/// PyTorch; it is computed from the centered values (two passes) so a large mean cannot cancel
/// it away, and eps keeps a constant row (variance 0) finite.
template <class Scalar>
void layer_norm_forward(matrix_cref<Scalar> x, const layer_norm_weights<Scalar>& w, Scalar eps,
                        matrix_ref<Scalar> out) {
  const index_t channels = x.cols();
  if (w.gain.size() != channels || w.bias.size() != channels || out.rows() != x.rows() ||
      out.cols() != channels) {
    throw shape_error(detail::concat("layer_norm_forward: x is [", x.rows(), " x ", channels,
                                     "], gain has ", w.gain.size(), ", bias has ", w.bias.size(),
                                     ", out is [", out.rows(), " x ", out.cols(), "]"));
  }
  for (index_t t = 0; t < x.rows(); ++t) {
    const Scalar mean = x.row(t).mean();
    const auto centered = (x.row(t).array() - mean);
    const Scalar variance = centered.square().sum() / Scalar(channels);
    const Scalar inv_std = Scalar(1) / std::sqrt(variance + eps);
    out.row(t) = ((centered * inv_std) * w.gain.array() + w.bias.array()).matrix();
  }
}

/// Backward of layer_norm_forward, given d_out = dL/d out [T x C]. With xhat = (x - mean) * rstd
/// (rstd = 1 / sqrt(var + eps), recomputed here from x rather than stored) and g = d_out * gain:
///   d gain += sum over rows of d_out * xhat      d bias += sum over rows of d_out
///   dx     += rstd * (g - mean(g) - xhat * mean(g * xhat))          per row
/// The two means are the gradient flowing back through the row's mean and variance: every
/// output of a row depends on every input of it. Adds to grad and d_x (see linear_backward).
template <class Scalar>
void layer_norm_backward(matrix_cref<Scalar> x, const layer_norm_weights<Scalar>& w, Scalar eps,
                         matrix_cref<Scalar> d_out, layer_norm_weights<Scalar>& grad,
                         matrix_ref<Scalar> d_x) {
  const index_t channels = x.cols();
  if (w.gain.size() != channels || grad.gain.size() != channels || grad.bias.size() != channels ||
      d_out.rows() != x.rows() || d_out.cols() != channels || d_x.rows() != x.rows() ||
      d_x.cols() != channels) {
    throw shape_error(detail::concat("layer_norm_backward: x is [", x.rows(), " x ", channels,
                                     "], d_out is [", d_out.rows(), " x ", d_out.cols(),
                                     "], d_x is [", d_x.rows(), " x ", d_x.cols(), "]"));
  }
  for (index_t t = 0; t < x.rows(); ++t) {
    const Scalar mean = x.row(t).mean();
    const Scalar variance = (x.row(t).array() - mean).square().sum() / Scalar(channels);
    const Scalar rstd = Scalar(1) / std::sqrt(variance + eps);
    const auto xhat = (x.row(t).array() - mean) * rstd;
    const auto g = d_out.row(t).array() * w.gain.array();
    const Scalar mean_g = g.sum() / Scalar(channels);
    const Scalar mean_g_xhat = (g * xhat).sum() / Scalar(channels);
    grad.gain.array() += d_out.row(t).array() * xhat;
    grad.bias += d_out.row(t);
    d_x.row(t).array() += rstd * (g - mean_g - xhat * mean_g_xhat);
  }
}

}  // namespace eigenformer
