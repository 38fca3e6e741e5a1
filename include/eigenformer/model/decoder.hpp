// eigenformer/model/decoder.hpp — the GPT-2 decoder: token ids in, next-token logits out.
//
//   x = wte[ids] + wpe[0..T)                 [T x C]
//   for each block: x = block(x)             pre-LN attention + MLP, residual
//   logits = ln_f(x) E^T                     [T x V], E = wte (tied) or lm_head
#pragma once

#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/layers/block.hpp"
#include "eigenformer/layers/embedding.hpp"
#include "eigenformer/layers/layer_norm.hpp"
#include "eigenformer/model/activations.hpp"
#include "eigenformer/model/config.hpp"
#include "eigenformer/model/weights.hpp"

namespace eigenformer {

/// A config and its weights, the unit that loaders return and programs pass around.
template <class Scalar>
struct basic_model {
  model_config config;
  basic_model_weights<Scalar> weights;
};

using model = basic_model<float>;

/// Throws shape_error if `n_tokens` cannot be run: empty, longer than the context, or longer than
/// the activations were sized for.
inline void check_sequence_length(index_t n_tokens, index_t n_ctx, index_t max_tokens) {
  if (n_tokens == 0) throw shape_error("forward: the token sequence is empty");
  if (n_tokens > n_ctx) {
    throw shape_error(detail::concat("forward: ", n_tokens, " tokens exceed the context of ", n_ctx,
                                     " by ", n_tokens - n_ctx));
  }
  if (n_tokens > max_tokens) {
    throw shape_error(detail::concat("forward: ", n_tokens, " tokens exceed the ", max_tokens,
                                     " the activations were sized for by ", n_tokens - max_tokens));
  }
}

/// Runs the embedding and every block; returns ln_f(x): [T x C], a view into `acts`.
template <class Scalar>
matrix_cref<Scalar> forward_hidden(const model_config& config,
                                   const basic_model_weights<Scalar>& weights,
                                   const std::vector<token_id>& tokens,
                                   basic_activations<Scalar>& acts) {
  const auto n_tokens = static_cast<index_t>(tokens.size());
  check_sequence_length(n_tokens, config.n_ctx, acts.max_tokens);
  auto x = acts.residual.topRows(n_tokens);
  embedding_forward<Scalar>(tokens, weights.wte, weights.wpe, 0, x);
  const auto eps = Scalar(config.layer_norm_epsilon);
  for (const auto& block : weights.blocks) {
    block_forward<Scalar>(x, block, config.n_head, eps, acts.block);
  }
  auto normed = acts.final_normed.topRows(n_tokens);
  layer_norm_forward<Scalar>(x, weights.ln_f, eps, normed);
  return normed;
}

/// Next-token logits. Returns [T x V] (logits_for::all_positions) or [1 x V] for the last
/// position; the result is a view into `acts`, valid until its next use.
template <class Scalar>
matrix_cref<Scalar> forward(const model_config& config, const basic_model_weights<Scalar>& weights,
                            const std::vector<token_id>& tokens, basic_activations<Scalar>& acts,
                            logits_for rows = logits_for::all_positions) {
  const auto normed = forward_hidden(config, weights, tokens, acts);
  const index_t n_rows = rows == logits_for::all_positions ? normed.rows() : 1;
  if (acts.logits.rows() < n_rows || acts.logits.cols() != config.vocab_size) {
    throw shape_error(detail::concat("forward: the logits buffer [", acts.logits.rows(), " x ",
                                     acts.logits.cols(), "] cannot hold [", n_rows, " x ",
                                     config.vocab_size, "]"));
  }
  auto logits = acts.logits.topRows(n_rows);
  logits.noalias() = normed.bottomRows(n_rows) * weights.output_embedding().transpose();
  return logits;
}

/// Convenience overload for one-off calls: allocates activations for this sequence.
template <class Scalar>
matrix<Scalar> forward(const basic_model<Scalar>& m, const std::vector<token_id>& tokens) {
  check_sequence_length(static_cast<index_t>(tokens.size()), m.config.n_ctx, m.config.n_ctx);
  basic_activations<Scalar> acts(m.config, static_cast<index_t>(tokens.size()));
  return forward(m.config, m.weights, tokens, acts);
}

}  // namespace eigenformer
