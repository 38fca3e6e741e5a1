// eigenformer/train/data.hpp — a token stream split into training and held-out parts, and the
// (input, target) batches drawn from it: a window of T + 1 tokens gives T inputs and, shifted by
// one, the T next tokens to predict.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"

namespace eigenformer {

struct token_split {
  std::vector<token_id> train;  // the first (1 - eval_fraction) of the stream
  std::vector<token_id> eval;   // the held-out tail, never trained on
};

/// Splits `tokens` at (1 - eval_fraction) of its length; both parts must hold a window of
/// `window` + 1 tokens (value_error otherwise: the text is too short for the context).
inline token_split split_tokens(const std::vector<token_id>& tokens, double eval_fraction,
                                index_t window) {
  if (!(eval_fraction > 0 && eval_fraction < 1)) {
    throw value_error(detail::concat("data: eval fraction ", eval_fraction, " not in (0, 1)"));
  }
  const auto n = static_cast<index_t>(tokens.size());
  const auto n_eval = static_cast<index_t>(double(n) * eval_fraction);
  if (n - n_eval < window + 1 || n_eval < window + 1) {
    throw value_error(detail::concat("data: ", n,
                                     " tokens are too few: training and held-out "
                                     "parts (",
                                     n - n_eval, " and ", n_eval,
                                     ") each need at least T + 1 = ", window + 1));
  }
  token_split s;
  s.train.assign(tokens.begin(), tokens.end() - n_eval);
  s.eval.assign(tokens.end() - n_eval, tokens.end());
  return s;
}

namespace detail {
inline void copy_window(const std::vector<token_id>& tokens, index_t start, index_t T, index_t row,
                        std::vector<token_id>& inputs, std::vector<token_id>& targets) {
  for (index_t t = 0; t < T; ++t) {
    inputs[std::size_t(row * T + t)] = tokens[std::size_t(start + t)];
    targets[std::size_t(row * T + t)] = tokens[std::size_t(start + t + 1)];
  }
}

inline void check_windows(const std::vector<token_id>& tokens, index_t B, index_t T) {
  if (B <= 0 || T <= 0 || static_cast<index_t>(tokens.size()) < T + 1) {
    throw value_error(detail::concat("data: cannot cut ", B, " windows of ", T + 1, " from ",
                                     tokens.size(), " tokens"));
  }
}
}  // namespace detail

/// B windows at uniformly random offsets (from `rng`, so a seed reproduces the run). inputs and
/// targets are resized to B*T, row b*T + t as training_forward expects.
inline void sample_batch(const std::vector<token_id>& tokens, index_t B, index_t T,
                         std::mt19937_64& rng, std::vector<token_id>& inputs,
                         std::vector<token_id>& targets) {
  detail::check_windows(tokens, B, T);
  inputs.resize(std::size_t(B * T));
  targets.resize(std::size_t(B * T));
  const auto n_starts = std::uint64_t(tokens.size()) - std::uint64_t(T);  // start <= n - T - 1
  for (index_t b = 0; b < B; ++b) {
    detail::copy_window(tokens, index_t(rng() % n_starts), T, b, inputs, targets);
  }
}

/// Batch number `batch` of `n_batches` spread evenly over `tokens` — the same windows every time,
/// so held-out losses at different steps are comparable.
inline void evaluation_batch(const std::vector<token_id>& tokens, index_t B, index_t T,
                             index_t batch, index_t n_batches, std::vector<token_id>& inputs,
                             std::vector<token_id>& targets) {
  detail::check_windows(tokens, B, T);
  inputs.resize(std::size_t(B * T));
  targets.resize(std::size_t(B * T));
  const index_t n_starts = static_cast<index_t>(tokens.size()) - T;
  const index_t n_windows = B * n_batches;
  for (index_t b = 0; b < B; ++b) {
    const index_t window = batch * B + b;
    detail::copy_window(tokens, window * n_starts / n_windows, T, b, inputs, targets);
  }
}

}  // namespace eigenformer
