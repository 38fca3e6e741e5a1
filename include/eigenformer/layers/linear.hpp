// eigenformer/layers/linear.hpp — the affine layer y = x W + b.
//
// W is stored [in x out], the layout of Hugging Face's GPT-2 `Conv1D` weights, so a checkpoint's
// bytes are used as they are (no transpose on load) and y = x W is a plain row-major GEMM.
#pragma once

#include <algorithm>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/parallel.hpp"
#include "eigenformer/core/types.hpp"

namespace eigenformer {

template <class Scalar>
struct linear_weights {
  matrix<Scalar> weight;    // [in x out]
  row_vector<Scalar> bias;  // [1 x out]

  index_t in_features() const { return weight.rows(); }
  index_t out_features() const { return weight.cols(); }
};

/// Output columns per parallel block. Fixed (not derived from the thread count) so results are
/// bit-identical for any number of threads; a multiple of 16 keeps blocks aligned to AVX-512.
inline constexpr index_t linear_column_block = 256;

/// out = x W + b.  x: [T x in], out: [T x out] (must not alias x).
/// Threads split the output columns: each block is an independent GEMM (GEMV when T = 1, where
/// decoding is bound by reading W, so both cores' memory bandwidth is used).
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
  const index_t n_cols = w.out_features();
  const index_t n_blocks = (n_cols + linear_column_block - 1) / linear_column_block;
  parallel_for(n_blocks, [&](index_t block) {
    const index_t first = block * linear_column_block;
    const index_t width = std::min(linear_column_block, n_cols - first);
    auto out_block = out.middleCols(first, width);
    out_block.noalias() = x * w.weight.middleCols(first, width);
    out_block.rowwise() += w.bias.segment(first, width);
  });
}

}  // namespace eigenformer
