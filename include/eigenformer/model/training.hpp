// eigenformer/model/training.hpp — the decoder's forward and backward pass over a batch, for
// training.
//
// A batch is B sequences of T tokens, stored row after row: row b*T + t is token t of sequence b
// (tokens and targets are vectors of B*T ids; target = the next token). The forward pass keeps
// every activation the backward pass needs in basic_training_activations (llm.c's layout: one
// plain struct, allocated once for a (B, T)); gradients live in a basic_model_weights, shaped
// exactly like the weights they belong to.
//
//   forward:  x0 = wte[tokens] (+ wpe[t] with learned positions); x_{l+1} = block_l(x_l);
//             logits = norm_f(x_L) E^T; loss = mean cross-entropy(logits, targets)
//
// Every family the decoder runs trains: the block's norm, MLP, attention shape (grouped-query,
// q/k norms, window) and positions come from the config (block_config_of), as in inference.
//   backward: the same steps in reverse, each layer's *_backward next to its forward.
#pragma once

#include <algorithm>
#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/parallel.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/layers/block.hpp"
#include "eigenformer/layers/embedding.hpp"
#include "eigenformer/layers/layer_norm.hpp"
#include "eigenformer/layers/linear.hpp"
#include "eigenformer/layers/lm_head.hpp"
#include "eigenformer/model/config.hpp"
#include "eigenformer/model/weights.hpp"
#include "eigenformer/ops/cross_entropy.hpp"

namespace eigenformer {

/// Gradients have the shape of the weights: the same struct, the same parameter names.
template <class Scalar>
using basic_model_gradients = basic_model_weights<Scalar>;
using model_gradients = basic_model_gradients<float>;

/// Zeros shaped like `w` (an untied lm_head included, a tied one left empty). Also the shape of
/// AdamW's moment estimates.
template <class Scalar>
basic_model_weights<Scalar> zeros_like(const model_config& config,
                                       const basic_model_weights<Scalar>& w) {
  validate_weights(config, w);
  basic_model_weights<Scalar> z;
  z.blocks.resize(w.blocks.size());
  if (!w.tied_lm_head()) z.lm_head.resize(w.lm_head.rows(), w.lm_head.cols());
  for_each_parameter(config, z, [](const std::string&, auto& tensor, const auto& shape) {
    const index_t rows = shape.size() == 2 ? shape[0] : 1;
    tensor.setZero(rows, shape.back());
  });
  return z;
}

namespace detail {

template <class Scalar>
struct parameter_span {
  Scalar* data;
  index_t size;
  bool is_matrix;
};

/// Every parameter tensor of `w` as a flat span, in for_each_parameter's order.
template <class Scalar>
std::vector<parameter_span<Scalar>> parameter_spans(const model_config& config,
                                                    basic_model_weights<Scalar>& w) {
  std::vector<parameter_span<Scalar>> spans;
  for_each_parameter(config, w, [&](const std::string&, auto& tensor, const auto& shape) {
    spans.push_back({tensor.data(), tensor.size(), shape.size() == 2});
  });
  return spans;
}

/// A piece of one span: elements [first, first + size) of spans[span].
struct parameter_chunk {
  std::size_t span;
  index_t first, size;
};

/// The element-wise passes over all parameters (zeroing, adding shards, the gradient norm,
/// AdamW) work on chunks of at most this many elements, so one large embedding is split across
/// threads too. The chunks depend on the shapes alone, never on the thread count: a reduction
/// summed chunk by chunk in chunk order gives the same bits on any number of threads.
inline constexpr index_t parameter_chunk_size = 1 << 15;

template <class Scalar>
std::vector<parameter_chunk> parameter_chunks(const std::vector<parameter_span<Scalar>>& spans) {
  std::vector<parameter_chunk> chunks;
  for (std::size_t i = 0; i < spans.size(); ++i) {
    for (index_t first = 0; first < spans[i].size; first += parameter_chunk_size) {
      chunks.push_back({i, first, std::min(parameter_chunk_size, spans[i].size - first)});
    }
  }
  return chunks;
}

}  // namespace detail

/// Sets every tensor of `g` to zero, keeping its storage (in parallel: a model's gradients are
/// hundreds of megabytes, and one core alone cannot fill the memory bandwidth).
template <class Scalar>
void set_zero(const model_config& config, basic_model_weights<Scalar>& g) {
  const auto spans = detail::parameter_spans(config, g);
  const auto chunks = detail::parameter_chunks(spans);
  parallel_for(index_t(chunks.size()), [&](index_t k) {
    const auto& c = chunks[std::size_t(k)];
    std::fill_n(spans[c.span].data + c.first, c.size, Scalar(0));
  });
}

/// Everything the backward pass reads, and its scratch. Shapes [B*T x C] unless noted.
template <class Scalar>
struct basic_training_activations {
  index_t n_sequences = 0, n_tokens = 0;  // B, T
  matrix<Scalar> embedded;                // wte[tokens] (+ wpe[t]), the input of block 0
  rope_tables<Scalar> rope;               // [T x d/2] cos/sin of positions 0..T-1 (rotary)
  std::vector<block_activations<Scalar>> blocks;
  matrix<Scalar> final_normed;     // ln_f(x_L)
  matrix<Scalar> logits;           // [B*T x V]; dL/dlogits after the backward pass
  std::vector<double> row_losses;  // [B*T], each position's cross-entropy
  // Backward scratch, shared by all layers.
  block_backward_scratch<Scalar> backward;
  matrix<Scalar> d_residual;  // dL/dx of the residual stream, carried down through the blocks

  basic_training_activations() = default;
  basic_training_activations(const model_config& config, index_t batch, index_t tokens)
      : n_sequences(batch), n_tokens(tokens) {
    config.validate();
    if (batch <= 0 || tokens <= 0 || tokens > config.n_ctx) {
      throw shape_error(detail::concat("training activations: B = ", batch, ", T = ", tokens,
                                       " (need B >= 1 and 1 <= T <= n_ctx = ", config.n_ctx, ")"));
    }
    const index_t rows = batch * tokens, C = config.n_embd, fc_width = config.mlp_fc_width();
    const block_config layer = block_config_of(config);
    embedded.resize(rows, C);
    if (config.positions == position_kind::rotary) {
      rope = rope_tables<Scalar>(tokens, config.rope, config.head_dim());
      rope_fill_tables<Scalar>(0, tokens, rope);
    }
    blocks.assign(static_cast<std::size_t>(config.n_layer),
                  block_activations<Scalar>(batch, tokens, C, layer, fc_width, config.qk_norm));
    final_normed.resize(rows, C);
    logits.resize(rows, config.vocab_size);
    row_losses.resize(static_cast<std::size_t>(rows));
    backward = block_backward_scratch<Scalar>(batch, tokens, C, layer, fc_width, config.qk_norm);
    d_residual.resize(rows, C);
  }

  /// The residual stream entering block l (l = n_layer: entering ln_f).
  const matrix<Scalar>& block_input(std::size_t l) const {
    return l == 0 ? embedded : blocks[l - 1].out;
  }
  /// The rotary tables, or nullptr for learned positions.
  const rope_tables<Scalar>* rope_or_null() const { return rope.cos.size() > 0 ? &rope : nullptr; }
};

using training_activations = basic_training_activations<float>;

namespace detail {
template <class Scalar>
void check_training_batch(const model_config& config, const basic_model_weights<Scalar>& w,
                          const std::vector<token_id>& tokens, const std::vector<token_id>& targets,
                          const basic_training_activations<Scalar>& acts) {
  const index_t rows = acts.n_sequences * acts.n_tokens;
  if (static_cast<index_t>(tokens.size()) != rows || static_cast<index_t>(targets.size()) != rows ||
      static_cast<index_t>(acts.blocks.size()) != config.n_layer ||
      acts.logits.cols() != config.vocab_size) {
    throw shape_error(concat("training: ", tokens.size(), " tokens and ", targets.size(),
                             " targets for activations of B = ", acts.n_sequences,
                             " x T = ", acts.n_tokens, " (", acts.blocks.size(), " layers)"));
  }
  if (w.is_compressed()) throw value_error("training: bf16 or quantized weights cannot be trained");
  if ((config.positions == position_kind::rotary) != (acts.rope.cos.size() > 0)) {
    throw shape_error("training: activations were made for another model's positions");
  }
  check_token_ids(tokens, config.vocab_size);
}
}  // namespace detail

/// The forward pass of a batch; returns the mean cross-entropy over its B*T positions and keeps
/// in `acts` what training_backward needs (logits included). For B = 1 the logits equal
/// forward()'s (the untiled attention instead of the tiled one: the same math, last-bit
/// differences in float).
template <class Scalar>
double training_forward(const model_config& config, const basic_model_weights<Scalar>& w,
                        const std::vector<token_id>& tokens, const std::vector<token_id>& targets,
                        basic_training_activations<Scalar>& acts) {
  detail::check_training_batch(config, w, tokens, targets, acts);
  const index_t T = acts.n_tokens;
  const bool learned_positions = config.positions == position_kind::learned;
  for (index_t r = 0; r < acts.embedded.rows(); ++r) {
    acts.embedded.row(r) = w.wte.row(tokens[std::size_t(r)]);
    if (learned_positions) acts.embedded.row(r) += w.wpe.row(r % T);
  }
  const block_config layer = block_config_of(config);
  for (std::size_t l = 0; l < acts.blocks.size(); ++l) {
    block_forward_train<Scalar>(acts.block_input(l), w.blocks[l], layer, acts.rope_or_null(),
                                acts.blocks[l]);
  }
  norm_forward<Scalar>(config.norm, acts.block_input(acts.blocks.size()), w.ln_f,
                       Scalar(config.layer_norm_epsilon), acts.final_normed);
  lm_head_forward<Scalar>(acts.final_normed, w.output_embedding(), acts.logits);
  return cross_entropy_loss<Scalar>(acts.logits, targets, acts.row_losses);
}

/// The backward pass of the training_forward just run with the same arguments: adds
/// scale * dL/dθ to `grads` for every parameter θ (scale = 1 / k when accumulating k
/// micro-batches). Overwrites acts.logits with dL/dlogits.
template <class Scalar>
void training_backward(const model_config& config, const basic_model_weights<Scalar>& w,
                       const std::vector<token_id>& tokens, const std::vector<token_id>& targets,
                       basic_training_activations<Scalar>& acts,
                       basic_model_gradients<Scalar>& grads, Scalar scale = Scalar(1)) {
  detail::check_training_batch(config, w, tokens, targets, acts);
  const index_t rows = acts.embedded.rows();
  cross_entropy_backward<Scalar>(acts.logits, targets, scale / Scalar(rows), acts.logits);

  // LM head: logits = normed E^T, so d normed = dlogits E and dE += dlogits^T normed. A tied E is
  // wte, whose gradient also collects the embedding's below.
  auto& d_normed = acts.backward.d_normed;
  d_normed.setZero();
  lm_head_backward<Scalar>(acts.final_normed, w.output_embedding(), acts.logits,
                           w.tied_lm_head() ? grads.wte : grads.lm_head, d_normed);
  acts.d_residual.setZero();
  norm_backward<Scalar>(config.norm, acts.block_input(acts.blocks.size()), w.ln_f,
                        Scalar(config.layer_norm_epsilon), d_normed, grads.ln_f, acts.d_residual);
  const block_config layer = block_config_of(config);
  for (std::size_t l = acts.blocks.size(); l-- > 0;) {
    block_backward<Scalar>(acts.block_input(l), w.blocks[l], layer, acts.rope_or_null(),
                           acts.blocks[l], grads.blocks[l], acts.backward, acts.d_residual);
  }
  embedding_backward<Scalar>(tokens, acts.n_sequences, acts.d_residual, grads.wte, grads.wpe);
}

}  // namespace eigenformer
