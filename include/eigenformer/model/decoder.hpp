// eigenformer/model/decoder.hpp — the decoder: token ids in, next-token logits out.
//
//   x = wte[ids] (+ wpe[0..T) for learned positions)       [T x C]
//   for each block: x = block(x)    pre-norm attention + MLP, residual (rotary models rotate
//                                   q and k by position inside the attention)
//   logits = norm_f(x) E^T                                 [T x V], E = wte (tied) or lm_head
// One loop for every family: the config says, once per call, which norm, positions, MLP and
// attention shape the blocks use (block_config_of). With a KV cache, the T tokens continue a
// sequence of n_past tokens: positions start at n_past and attention sees the cached keys and
// values (model/kv_cache.hpp).
#pragma once

#include <functional>
#include <type_traits>
#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/layers/block.hpp"
#include "eigenformer/layers/embedding.hpp"
#include "eigenformer/layers/layer_norm.hpp"
#include "eigenformer/layers/lm_head.hpp"
#include "eigenformer/model/activations.hpp"
#include "eigenformer/model/config.hpp"
#include "eigenformer/model/kv_cache.hpp"
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

/// Receives the attention weights P [T x Tk] of every (layer, head) during a forward pass.
template <class Scalar>
using model_attention_observer =
    std::function<void(index_t layer, index_t head, matrix_cref<Scalar> weights)>;

/// One sequence's part of a batched forward pass: its new tokens, and the cache holding the
/// tokens before them (which the pass appends to).
template <class Scalar>
struct batch_sequence {
  const std::vector<token_id>* tokens = nullptr;
  basic_kv_cache<Scalar>* cache = nullptr;
};

namespace detail {

/// Checks that `tokens` can continue `cache` (or be a whole sequence without one).
template <class Scalar>
void check_continuation(const model_config& config, index_t n_tokens,
                        const basic_kv_cache<Scalar>* cache, index_t max_tokens) {
  const index_t n_past = cache ? cache->n_past : 0;
  if (cache && n_tokens > 0 && n_past + n_tokens > config.n_ctx) {
    throw shape_error(concat("forward: ", n_past, " cached + ", n_tokens,
                             " new tokens exceed the context of ", config.n_ctx, " by ",
                             n_past + n_tokens - config.n_ctx,
                             " (reset() or truncate() the cache)"));
  }
  check_sequence_length(n_tokens, config.n_ctx, max_tokens);
  if (cache && (static_cast<index_t>(cache->layers.size()) != config.n_layer ||
                cache->layers.front().keys.cols() != config.kv_width())) {
    throw shape_error(
        concat("forward: the KV cache has ", cache->layers.size(), " layers of width ",
               cache->layers.empty() ? 0 : cache->layers.front().keys.cols(), ", the model ",
               config.n_layer, " layers of key width ", config.kv_width()));
  }
  if (cache && n_past + n_tokens > cache->capacity()) {
    throw shape_error(concat("forward: ", n_past, " cached + ", n_tokens,
                             " new tokens exceed the KV cache's capacity of ", cache->capacity(),
                             " by ", n_past + n_tokens - cache->capacity(),
                             " (reset() or truncate() the cache)"));
  }
}

/// Embedding + every block + ln_f for the new tokens of each sequence, their rows one after
/// another: sequence i's tokens sit at positions [n_past_i, n_past_i + T_i), where n_past_i is
/// what its cache holds (0 without a cache). Returns ln_f(x): [sum T_i x C], a view into
/// `acts`. Each row's arithmetic depends only on its own sequence.
template <class Scalar>
matrix_cref<Scalar> run_decoder(const model_config& config,
                                const basic_model_weights<Scalar>& weights,
                                const std::vector<batch_sequence<Scalar>>& sequences,
                                basic_activations<Scalar>& acts,
                                const model_attention_observer<Scalar>& observe) {
  if (sequences.empty()) throw shape_error("forward: no sequences");
  index_t n_rows = 0;
  for (const auto& s : sequences) {
    if (!s.tokens) throw shape_error("forward: a sequence without tokens");
    const auto n = static_cast<index_t>(s.tokens->size());
    check_continuation(config, n, s.cache, acts.max_tokens);
    n_rows += n;
  }
  if (n_rows > acts.max_tokens) {
    throw shape_error(concat("forward: ", n_rows, " tokens of ", sequences.size(),
                             " sequences exceed the ", acts.max_tokens,
                             " the activations were sized for by ", n_rows - acts.max_tokens));
  }
  const bool rotary = config.positions == position_kind::rotary;
  auto x = acts.residual.topRows(n_rows);
  // A tied model whose head was compressed reads its embedding rows from the head.
  const bool compressed_tied = weights.wte.size() == 0 && weights.is_compressed();
  std::vector<attention_segment<Scalar>> segments(sequences.size());
  index_t row = 0;
  for (std::size_t i = 0; i < sequences.size(); ++i) {
    const std::vector<token_id>& tokens = *sequences[i].tokens;
    const auto n_tokens = static_cast<index_t>(tokens.size());
    const index_t n_past = sequences[i].cache ? sequences[i].cache->n_past : 0;
    auto rows = x.middleRows(row, n_tokens);
    if constexpr (std::is_same_v<Scalar, float>) {
      const auto embed = [&](const auto& head) {
        if (rotary) {
          token_embedding_forward(tokens, head, rows);
        } else {
          embedding_forward(tokens, head, weights.wpe, n_past, rows);
        }
      };
      if (compressed_tied && weights.is_packed()) embed(weights.output_packed);
      if (compressed_tied && weights.is_quantized()) embed(weights.output_quantized);
    }
    if (!compressed_tied && rotary) {
      token_embedding_forward<Scalar>(tokens, weights.wte, rows);
    } else if (!compressed_tied) {
      embedding_forward<Scalar>(tokens, weights.wte, weights.wpe, n_past, rows);
    }
    // cos/sin of each row's own position, shared by every layer
    if (rotary) rope_fill_tables<Scalar>(n_past, n_tokens, acts.rope, row);
    segments[i] = {row, n_tokens, nullptr, n_past};
    row += n_tokens;
  }
  const rope_tables<Scalar>* rope = rotary ? &acts.rope : nullptr;
  const block_config layer = block_config_of(config);
  for (std::size_t l = 0; l < weights.blocks.size(); ++l) {
    attention_observer<Scalar> observe_layer;
    if (observe) {
      observe_layer = [&observe, l](index_t head, matrix_cref<Scalar> p) {
        observe(static_cast<index_t>(l), head, p);
      };
    }
    for (std::size_t i = 0; i < sequences.size(); ++i)
      segments[i].cache = sequences[i].cache ? &sequences[i].cache->layers[l] : nullptr;
    block_forward<Scalar>(x, weights.blocks[l], layer, acts.block, segments, rope, observe_layer);
  }
  for (const auto& s : sequences)
    if (s.cache) s.cache->n_past += static_cast<index_t>(s.tokens->size());
  auto normed = acts.final_normed.topRows(n_rows);
  norm_forward<Scalar>(config.norm, x, weights.ln_f, Scalar(config.layer_norm_epsilon), normed);
  return normed;
}

/// One sequence: `tokens` at positions [n_past, n_past + T), where n_past is what `cache` holds
/// (0 without a cache). Returns ln_f(x): [T x C], a view into `acts`.
template <class Scalar>
matrix_cref<Scalar> run_decoder(const model_config& config,
                                const basic_model_weights<Scalar>& weights,
                                const std::vector<token_id>& tokens,
                                basic_activations<Scalar>& acts, basic_kv_cache<Scalar>* cache,
                                const model_attention_observer<Scalar>& observe) {
  return run_decoder<Scalar>(config, weights, {batch_sequence<Scalar>{&tokens, cache}}, acts,
                             observe);
}

/// logits = normed E^T for the requested rows; a view into `acts`.
template <class Scalar>
matrix_cref<Scalar> lm_head(const model_config& config, const basic_model_weights<Scalar>& weights,
                            matrix_cref<Scalar> normed, basic_activations<Scalar>& acts,
                            logits_for rows) {
  const index_t n_rows = rows == logits_for::all_positions ? normed.rows() : 1;
  if (acts.logits.rows() < n_rows || acts.logits.cols() != config.vocab_size) {
    throw shape_error(concat("forward: the logits buffer [", acts.logits.rows(), " x ",
                             acts.logits.cols(), "] cannot hold [", n_rows, " x ",
                             config.vocab_size, "]"));
  }
  auto logits = acts.logits.topRows(n_rows);
  const auto x = normed.bottomRows(n_rows);
  if constexpr (std::is_same_v<Scalar, float>) {
    if (weights.is_packed()) {
      bf16_matmul(x, weights.output_packed, nullptr, logits);
      return logits;
    }
    if (weights.is_quantized()) {
      quant_matmul(x, weights.output_quantized, nullptr, logits);
      return logits;
    }
  }
  lm_head_forward<Scalar>(x, weights.output_embedding(), logits);
  return logits;
}

}  // namespace detail

/// Runs the embedding and every block on a whole sequence; returns ln_f(x): [T x C], a view
/// into `acts`.
template <class Scalar>
matrix_cref<Scalar> forward_hidden(const model_config& config,
                                   const basic_model_weights<Scalar>& weights,
                                   const std::vector<token_id>& tokens,
                                   basic_activations<Scalar>& acts) {
  return detail::run_decoder<Scalar>(config, weights, tokens, acts, nullptr, {});
}

/// Next-token logits of a whole sequence. Returns [T x V] (logits_for::all_positions) or
/// [1 x V] for the last position; the result is a view into `acts`, valid until its next use.
template <class Scalar>
matrix_cref<Scalar> forward(const model_config& config, const basic_model_weights<Scalar>& weights,
                            const std::vector<token_id>& tokens, basic_activations<Scalar>& acts,
                            logits_for rows = logits_for::all_positions,
                            const model_attention_observer<Scalar>& observe = nullptr) {
  const auto normed = detail::run_decoder<Scalar>(config, weights, tokens, acts, nullptr, observe);
  return detail::lm_head(config, weights, normed, acts, rows);
}

/// Incremental decoding: `tokens` continue the sequence held by `cache` (positions
/// [cache.n_past, cache.n_past + T)), and are appended to it. Prefill a prompt with one call,
/// then feed each new token; the logits equal a full recomputation of the whole sequence.
template <class Scalar>
matrix_cref<Scalar> forward(const model_config& config, const basic_model_weights<Scalar>& weights,
                            basic_kv_cache<Scalar>& cache, const std::vector<token_id>& tokens,
                            basic_activations<Scalar>& acts,
                            logits_for rows = logits_for::last_position,
                            const model_attention_observer<Scalar>& observe = nullptr) {
  const auto normed = detail::run_decoder<Scalar>(config, weights, tokens, acts, &cache, observe);
  return detail::lm_head(config, weights, normed, acts, rows);
}

/// Continuous batching: the new tokens of several sequences (each continuing its own cache,
/// which the pass appends to) in one pass over the weights. Returns the next-token logits of
/// each sequence's last new token, [n x V] with row i for sequences[i]; a view into `acts`,
/// which must be sized for all the new tokens together (activations::for_batch). With float
/// models where batch_invariant_kernels holds (AVX-512 builds), a sequence's logits are
/// bit-identical to running it alone (forward with its cache), whatever it is batched with.
template <class Scalar>
matrix_cref<Scalar> forward_batch(const model_config& config,
                                  const basic_model_weights<Scalar>& weights,
                                  const std::vector<batch_sequence<Scalar>>& sequences,
                                  basic_activations<Scalar>& acts) {
  for (const auto& s : sequences)
    if (!s.cache) throw shape_error("forward_batch: every sequence needs its KV cache");
  const auto normed = detail::run_decoder<Scalar>(config, weights, sequences, acts, nullptr);
  // Each sequence's last row, gathered into the block scratch (free once the blocks are done).
  const auto n = static_cast<index_t>(sequences.size());
  if (acts.block.normed.rows() < n)
    throw shape_error(
        detail::concat("forward_batch: ", n, " sequences exceed the activations' rows"));
  auto last = acts.block.normed.topRows(n);
  index_t row = 0;
  for (index_t i = 0; i < n; ++i) {
    row += static_cast<index_t>(sequences[std::size_t(i)].tokens->size());
    last.row(i) = normed.row(row - 1);
  }
  return detail::lm_head(config, weights, matrix_cref<Scalar>(last), acts,
                         logits_for::all_positions);
}

/// Convenience overload for one-off calls: allocates activations for this sequence.
template <class Scalar>
matrix<Scalar> forward(const basic_model<Scalar>& m, const std::vector<token_id>& tokens) {
  check_sequence_length(static_cast<index_t>(tokens.size()), m.config.n_ctx, m.config.n_ctx);
  basic_activations<Scalar> acts(m.config, static_cast<index_t>(tokens.size()));
  return forward(m.config, m.weights, tokens, acts);
}

}  // namespace eigenformer
