// eigenformer/train/adamw.hpp — the AdamW optimizer (Loshchilov & Hutter), as torch.optim.AdamW
// computes it, with gradient-norm clipping.
//
// Per parameter p with gradient g, at step t (1-based), learning rate lr:
//   p <- p (1 - lr wd)                                   decoupled weight decay
//   m <- beta1 m + (1 - beta1) g;  v <- beta2 v + (1 - beta2) g^2
//   p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// Weight decay applies to the matrices (embeddings, linear weights), not to biases and LayerNorm
// parameters — the split GPT-2 training uses (nanoGPT, llm.c).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/parallel.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/model/config.hpp"
#include "eigenformer/model/training.hpp"
#include "eigenformer/model/weights.hpp"

namespace eigenformer {

struct adamw_options {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  double max_grad_norm = 1.0;  // clip the global L2 norm of all gradients to this; 0 = off

  void validate() const {
    if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1) || !(eps > 0) ||
        !(weight_decay >= 0) || !(max_grad_norm >= 0)) {
      throw value_error(
          detail::concat("adamw: need 0 <= beta1, beta2 < 1, eps > 0, weight decay "
                         ">= 0, max grad norm >= 0; got ",
                         beta1, ", ", beta2, ", ", eps, ", ", weight_decay, ", ", max_grad_norm));
    }
  }
};

/// The optimizer's state: first and second moment estimates shaped like the weights.
template <class Scalar>
struct basic_adamw_state {
  basic_model_weights<Scalar> m, v;
  std::int64_t step = 0;  // steps taken

  basic_adamw_state() = default;
  basic_adamw_state(const model_config& config, const basic_model_weights<Scalar>& w)
      : m(zeros_like(config, w)), v(zeros_like(config, w)) {}
};

using adamw_state = basic_adamw_state<float>;

/// Global L2 norm of all gradients: squares summed in double, chunk by chunk in parallel, the
/// chunks' sums added in chunk order (the same bits on any number of threads).
template <class Scalar>
double gradient_norm(const model_config& config, basic_model_gradients<Scalar>& grads) {
  const auto spans = detail::parameter_spans(config, grads);
  const auto chunks = detail::parameter_chunks(spans);
  std::vector<double> chunk_sums(chunks.size());
  parallel_for(index_t(chunks.size()), [&](index_t k) {
    const auto& c = chunks[std::size_t(k)];
    chunk_sums[std::size_t(k)] = Eigen::Map<const Eigen::Array<Scalar, Eigen::Dynamic, 1>>(
                                     spans[c.span].data + c.first, c.size)
                                     .template cast<double>()
                                     .square()
                                     .sum();
  });
  double sum = 0;
  for (const double s : chunk_sums) sum += s;
  return std::sqrt(sum);
}

/// One AdamW step at learning rate `lr`: clips the gradients (scaling them in place when their
/// global norm exceeds options.max_grad_norm, as torch.nn.utils.clip_grad_norm_ does), then
/// updates weights and state. Returns the gradient norm before clipping. Grads are not zeroed.
template <class Scalar>
double adamw_step(const model_config& config, basic_model_weights<Scalar>& weights,
                  basic_model_gradients<Scalar>& grads, basic_adamw_state<Scalar>& state,
                  const adamw_options& options, double lr) {
  options.validate();
  if (!(lr >= 0) || !std::isfinite(lr)) {
    throw value_error(detail::concat("adamw: learning rate ", lr, " must be finite and >= 0"));
  }
  const auto w = detail::parameter_spans(config, weights);
  const auto g = detail::parameter_spans(config, grads);
  const auto m = detail::parameter_spans(config, state.m);
  const auto v = detail::parameter_spans(config, state.v);
  for (std::size_t i = 0; i < w.size(); ++i) {
    if (g[i].size != w[i].size || m[i].size != w[i].size || v[i].size != w[i].size) {
      throw shape_error(detail::concat("adamw: tensor ", i, " has ", w[i].size, " weights, ",
                                       g[i].size, " gradients, ", m[i].size, "/", v[i].size,
                                       " moments"));
    }
  }
  const double norm = gradient_norm(config, grads);
  if (!std::isfinite(norm)) {
    throw value_error("adamw: the gradients are not finite (NaN or infinity); step skipped");
  }
  // torch: clip_coef = max_norm / (norm + 1e-6), applied when < 1.
  const double clip = options.max_grad_norm > 0 ? options.max_grad_norm / (norm + 1e-6) : 1.0;
  const Scalar grad_scale = Scalar(clip < 1.0 ? clip : 1.0);

  state.step += 1;
  const double t = double(state.step);
  const Scalar step_size = Scalar(lr / (1.0 - std::pow(options.beta1, t)));
  const Scalar bias_correction2_sqrt = Scalar(std::sqrt(1.0 - std::pow(options.beta2, t)));
  const Scalar beta1 = Scalar(options.beta1), beta2 = Scalar(options.beta2);
  const Scalar eps = Scalar(options.eps);

  const auto chunks = detail::parameter_chunks(w);
  parallel_for(index_t(chunks.size()), [&](index_t k) {
    const auto& c = chunks[std::size_t(k)];
    const auto i = c.span;
    const Scalar decay = Scalar(w[i].is_matrix ? 1.0 - lr * options.weight_decay : 1.0);
    using array = Eigen::Map<Eigen::Array<Scalar, Eigen::Dynamic, 1>>;
    array p(w[i].data + c.first, c.size), grad(g[i].data + c.first, c.size);
    array m1(m[i].data + c.first, c.size), m2(v[i].data + c.first, c.size);
    if (grad_scale != Scalar(1)) grad *= grad_scale;
    p *= decay;
    m1 += (Scalar(1) - beta1) * (grad - m1);
    m2 = beta2 * m2 + (Scalar(1) - beta2) * grad.square();
    p -= step_size * m1 / (m2.sqrt() / bias_correction2_sqrt + eps);
  });
  return norm;
}

}  // namespace eigenformer
