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

}  // namespace eigenformer
