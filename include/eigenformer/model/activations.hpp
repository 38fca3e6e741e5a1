// eigenformer/model/activations.hpp — every buffer a forward pass writes, allocated once.
//
// Sized from the config and the longest sequence the caller will run; a forward pass of T tokens
// uses the first T rows of each buffer, so nothing is allocated per call or per token. One
// activations object serves one sequence at a time: threads each need their own.
#pragma once

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/layers/block.hpp"
#include "eigenformer/model/config.hpp"

namespace eigenformer {

/// Which rows of the LM head to compute: all T positions, or only the last one (what generation
/// needs; it skips a [T x C] x [C x V] product and the [T x V] buffer).
enum class logits_for { all_positions, last_position };

template <class Scalar>
struct basic_activations {
  index_t max_tokens = 0;
  matrix<Scalar> residual;      // [max_T x C], the residual stream x
  block_scratch<Scalar> block;  // shared by all blocks, which run one after another
  rope_tables<Scalar> rope;     // [max_T x d/2] cos and sin of the current positions (rotary)
  matrix<Scalar> final_normed;  // [max_T x C], ln_f(x)
  matrix<Scalar> logits;        // [max_T x V] (or [1 x V] when built for the last position only)

  basic_activations() = default;
  basic_activations(const model_config& config, index_t max_tokens_,
                    logits_for rows = logits_for::all_positions) {
    config.validate();
    if (max_tokens_ <= 0 || max_tokens_ > config.n_ctx) {
      throw shape_error(detail::concat("activations: max_tokens = ", max_tokens_,
                                       " must be in [1, n_ctx = ", config.n_ctx, "]"));
    }
    allocate(config, max_tokens_, rows == logits_for::all_positions ? max_tokens_ : 1);
  }

  /// For forward_batch: up to `max_rows` new tokens of up to `max_sequences` sequences per
  /// pass (together they may exceed one sequence's context), and the logits of each
  /// sequence's last token.
  static basic_activations for_batch(const model_config& config, index_t max_rows,
                                     index_t max_sequences) {
    config.validate();
    if (max_rows <= 0 || max_sequences <= 0 || max_sequences > max_rows) {
      throw shape_error(detail::concat("activations: a batch of ", max_sequences, " sequences in ",
                                       max_rows, " rows needs 1 <= sequences <= rows"));
    }
    basic_activations acts;
    acts.allocate(config, max_rows, max_sequences);
    return acts;
  }

 private:
  void allocate(const model_config& config, index_t max_rows, index_t logit_rows) {
    max_tokens = max_rows;
    residual.resize(max_tokens, config.n_embd);
    block = block_scratch<Scalar>(max_tokens, config.n_embd, block_config_of(config).attention,
                                  config.mlp_fc_width());
    if (config.positions == position_kind::rotary) {
      rope = rope_tables<Scalar>(max_tokens, config.rope, config.head_dim());
    }
    final_normed.resize(max_tokens, config.n_embd);
    logits.resize(logit_rows, config.vocab_size);
  }
};

using activations = basic_activations<float>;

}  // namespace eigenformer
