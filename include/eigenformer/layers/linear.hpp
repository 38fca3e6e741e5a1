// eigenformer/layers/linear.hpp — the affine layer y = x W + b.
//
// W is stored [in x out], the layout of Hugging Face's GPT-2 `Conv1D` weights, so a checkpoint's
// bytes are used as they are (no transpose on load) and y = x W is a plain row-major GEMM.
#pragma once

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"

namespace eigenformer {

template <class Scalar>
struct linear_weights {
  matrix<Scalar> weight;    // [in x out]
  row_vector<Scalar> bias;  // [1 x out]

  index_t in_features() const { return weight.rows(); }
  index_t out_features() const { return weight.cols(); }
};

/// out = x W + b.  x: [T x in], out: [T x out] (must not alias x).
template <class Scalar>
void linear_forward(matrix_cref<Scalar> x, const linear_weights<Scalar>& w,
                    matrix_ref<Scalar> out) {
  if (x.cols() != w.in_features() || out.rows() != x.rows() || out.cols() != w.out_features() ||
      w.bias.size() != w.out_features()) {
    throw shape_error(detail::concat("linear_forward: x is [", x.rows(), " x ", x.cols(),
                                     "], W is [", w.weight.rows(), " x ", w.weight.cols(),
                                     "], b has ", w.bias.size(), ", out is [", out.rows(), " x ",
                                     out.cols(), "]"));
  }
  out.noalias() = x * w.weight;
  out.rowwise() += w.bias;
}

}  // namespace eigenformer
