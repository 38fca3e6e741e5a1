// eigenformer/layers/block.hpp — the pre-LayerNorm residual transformer block of GPT-2:
//
//   x = x + attn(ln_1(x))
//   x = x + mlp(ln_2(x))
//
// LayerNorm comes before each sub-layer and the residual stream x itself is never normalized,
// which is what lets deep stacks train (the final LayerNorm after the stack normalizes it once).
#pragma once

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/layers/attention.hpp"
#include "eigenformer/layers/layer_norm.hpp"
#include "eigenformer/layers/mlp.hpp"

namespace eigenformer {

template <class Scalar>
struct block_weights {
  layer_norm_weights<Scalar> ln_1;
  attention_weights<Scalar> attn;
  layer_norm_weights<Scalar> ln_2;
  mlp_weights<Scalar> mlp;
};

/// Buffers of one block call, sized once for the longest sequence and reused by every block.
template <class Scalar>
struct block_scratch {
  matrix<Scalar> normed;    // [max_T x C], ln_1(x) then ln_2(x)
  matrix<Scalar> sublayer;  // [max_T x C], attn(...) then mlp(...) before the residual add
  matrix<Scalar> hidden;    // [max_T x n_inner], the MLP's hidden activations
  attention_scratch<Scalar> attention;

  block_scratch() = default;
  block_scratch(index_t max_tokens, index_t channels, index_t n_inner)
      : normed(max_tokens, channels),
        sublayer(max_tokens, channels),
        hidden(max_tokens, n_inner),
        attention(max_tokens, channels) {}
};

/// x: [T x C], updated in place (the residual stream). `observe`, `cache` and `n_past` are
/// passed to the attention (see causal_self_attention_forward).
template <class Scalar>
void block_forward(matrix_ref<Scalar> x, const block_weights<Scalar>& w, index_t n_head,
                   Scalar layer_norm_eps, block_scratch<Scalar>& scratch,
                   const attention_observer<Scalar>& observe = nullptr,
                   kv_cache_layer<Scalar>* cache = nullptr, index_t n_past = 0) {
  const index_t n_tokens = x.rows();
  if (scratch.normed.rows() < n_tokens || scratch.normed.cols() != x.cols()) {
    throw shape_error(detail::concat("block_forward: scratch sized for ", scratch.normed.rows(),
                                     " tokens of ", scratch.normed.cols(), " channels, got ",
                                     n_tokens, " tokens of ", x.cols()));
  }
  auto normed = scratch.normed.topRows(n_tokens);
  auto sublayer = scratch.sublayer.topRows(n_tokens);

  layer_norm_forward<Scalar>(x, w.ln_1, layer_norm_eps, normed);
  causal_self_attention_forward<Scalar>(normed, w.attn, n_head, scratch.attention, sublayer,
                                        observe, cache, n_past);
  x += sublayer;

  layer_norm_forward<Scalar>(x, w.ln_2, layer_norm_eps, normed);
  mlp_forward<Scalar>(normed, w.mlp, scratch.hidden, sublayer);
  x += sublayer;
}

}  // namespace eigenformer
