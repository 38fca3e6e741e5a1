// eigenformer/ops/softmax.hpp — numerically stable softmax along each ROW of a matrix.
//
// In attention the scores matrix is [queries x keys]; each query row is one probability
// distribution over the keys, so the softmax runs along a row (the key axis), never a column.
#pragma once

#include <algorithm>

#include "eigenformer/core/types.hpp"

namespace eigenformer {

/// Softmax over the first `n_visible` entries of `row`; the rest are set to exactly zero.
/// The maximum is subtracted before exp() so large scores cannot overflow. Masked entries are
/// never read, so no sentinel such as -1e9 (which overflows or rounds in low precision) is
/// needed, and a row with nothing visible (`n_visible <= 0`) becomes all zeros, never NaN.
template <class Derived>
void softmax_prefix_inplace(Eigen::DenseBase<Derived>& row, index_t n_visible) {
  using Scalar = typename Derived::Scalar;
  n_visible = std::clamp<index_t>(n_visible, 0, row.size());
  auto visible = row.head(n_visible).array();
  if (n_visible > 0) {
    const Scalar max_score = visible.maxCoeff();
    visible = (visible - max_score).exp();
    visible /= visible.sum();  // sum >= 1: the max entry contributed exp(0) = 1
  }
  row.tail(row.size() - n_visible).setZero();
}

/// Plain softmax of every row of `scores` [rows x cols], in place.
template <class Scalar>
void softmax_rows_inplace(matrix_ref<Scalar> scores) {
  for (index_t i = 0; i < scores.rows(); ++i) {
    auto row = scores.row(i);
    softmax_prefix_inplace(row, scores.cols());
  }
}

/// Causal softmax of `scores` [queries x keys], in place. Query i is the token at absolute
/// position `n_past + i` and may attend to key j only if j <= n_past + i — and, with a sliding
/// window W > 0, only if j > n_past + i - W: the same rule serves a full prompt (n_past = 0) and
/// incremental decoding with a KV cache (n_past = cached tokens). Invisible entries are exactly 0.
template <class Scalar>
void causal_softmax_rows_inplace(matrix_ref<Scalar> scores, index_t n_past, index_t window = 0) {
  for (index_t i = 0; i < scores.rows(); ++i) {
    const index_t position = n_past + i;
    const index_t first =
        window > 0 ? std::clamp<index_t>(position - window + 1, 0, scores.cols()) : 0;
    auto row = scores.row(i);
    row.head(first).setZero();
    auto rest = row.tail(row.size() - first);
    softmax_prefix_inplace(rest, position + 1 - first);
  }
}

}  // namespace eigenformer
