// eigenformer/ops/cross_entropy.hpp — the language-modelling loss: the negative log-likelihood of
// each row's target token under the softmax of that row's logits.
//
//   loss_r = logsumexp(logits[r]) - logits[r][target_r]        (one row = one position)
//   dloss_r / dlogits[r] = softmax(logits[r]) - onehot(target_r)
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/parallel.hpp"
#include "eigenformer/core/types.hpp"

namespace eigenformer {

namespace detail {
inline void check_targets(const char* where, index_t rows, index_t vocab,
                          const std::vector<token_id>& targets) {
  if (static_cast<index_t>(targets.size()) != rows) {
    throw shape_error(concat(where, ": ", targets.size(), " targets for ", rows, " rows"));
  }
  for (std::size_t r = 0; r < targets.size(); ++r) {
    if (targets[r] < 0 || targets[r] >= vocab) {
      throw value_error(concat(where, ": target ", targets[r], " at row ", r,
                               " is outside the vocabulary [0, ", vocab, ")"));
    }
  }
}

/// log(sum(exp(row))), shifted by the maximum so that it cannot overflow.
template <class Row>
double log_sum_exp(const Row& row) {
  const auto max_logit = row.maxCoeff();
  return double(max_logit) + std::log(double((row.array() - max_logit).exp().sum()));
}
}  // namespace detail

/// Mean cross-entropy of logits [N x V] against targets (N ids in [0, V)). Rows run in parallel;
/// each row's loss is kept in `row_losses` (resized to N; reused to avoid allocating) and summed
/// in row order in double, so the result does not depend on the thread count.
template <class Scalar>
double cross_entropy_loss(matrix_cref<Scalar> logits, const std::vector<token_id>& targets,
                          std::vector<double>& row_losses) {
  detail::check_targets("cross_entropy_loss", logits.rows(), logits.cols(), targets);
  row_losses.resize(targets.size());
  parallel_for(logits.rows(), [&](index_t r) {
    row_losses[std::size_t(r)] =
        detail::log_sum_exp(logits.row(r)) - double(logits(r, targets[std::size_t(r)]));
  });
  double sum = 0;
  for (const double loss : row_losses) sum += loss;
  return logits.rows() > 0 ? sum / double(logits.rows()) : 0.0;
}

/// Gradient of scale * (sum of the row losses): d_logits = scale * (softmax(logits) - onehot).
/// For the mean loss pass scale = 1 / N. d_logits may be the logits buffer itself.
template <class Scalar>
void cross_entropy_backward(matrix_cref<Scalar> logits, const std::vector<token_id>& targets,
                            Scalar scale, matrix_ref<Scalar> d_logits) {
  detail::check_targets("cross_entropy_backward", logits.rows(), logits.cols(), targets);
  if (d_logits.rows() != logits.rows() || d_logits.cols() != logits.cols()) {
    throw shape_error(detail::concat("cross_entropy_backward: d_logits is [", d_logits.rows(),
                                     " x ", d_logits.cols(), "], logits [", logits.rows(), " x ",
                                     logits.cols(), "]"));
  }
  parallel_for(logits.rows(), [&](index_t r) {
    const Scalar max_logit = logits.row(r).maxCoeff();
    auto out = d_logits.row(r).array();
    out = (logits.row(r).array() - max_logit).exp();
    out *= scale / out.sum();
    out(targets[std::size_t(r)]) -= scale;
  });
}

}  // namespace eigenformer
