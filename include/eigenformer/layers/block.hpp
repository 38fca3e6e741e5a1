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

/// What one block's backward pass needs from its forward pass over B*T tokens (its input x is
/// the previous block's `out`, or the embedding). Shapes [B*T x C] unless noted.
template <class Scalar>
struct block_activations {
  matrix<Scalar> ln_1;  // ln_1(x)
  attention_activations<Scalar> attn;
  matrix<Scalar> mid;   // x + attn(ln_1(x)), the residual stream between the two sub-layers
  matrix<Scalar> ln_2;  // ln_2(mid)
  mlp_activations<Scalar> mlp;
  matrix<Scalar> out;  // mid + mlp(ln_2(mid)), the block's output

  block_activations() = default;
  block_activations(index_t batch, index_t tokens, index_t channels, index_t n_head,
                    index_t n_inner)
      : ln_1(batch * tokens, channels),
        attn(batch, tokens, channels, n_head),
        mid(batch * tokens, channels),
        ln_2(batch * tokens, channels),
        mlp(batch * tokens, n_inner),
        out(batch * tokens, channels) {}
};

/// Buffers of a block's backward pass, shared by all blocks.
template <class Scalar>
struct block_backward_scratch {
  matrix<Scalar> d_normed;  // [B*T x C], dL/d ln(x) of the sub-layer being differentiated
  matrix<Scalar> d_hidden;  // [B*T x 4C]
  attention_backward_scratch<Scalar> attention;

  block_backward_scratch() = default;
  block_backward_scratch(index_t batch, index_t tokens, index_t channels, index_t n_head,
                         index_t n_inner)
      : d_normed(batch * tokens, channels),
        d_hidden(batch * tokens, n_inner),
        attention(batch, tokens, channels, n_head) {}
};

/// block_forward for training: x [B*T x C] in, acts.out = the block's output.
template <class Scalar>
void block_forward_train(matrix_cref<Scalar> x, const block_weights<Scalar>& w, index_t n_head,
                         Scalar layer_norm_eps, block_activations<Scalar>& acts) {
  if (acts.out.rows() != x.rows() || acts.out.cols() != x.cols()) {
    throw shape_error(detail::concat("block_forward_train: activations for [", acts.out.rows(),
                                     " x ", acts.out.cols(), "], x is [", x.rows(), " x ", x.cols(),
                                     "]"));
  }
  layer_norm_forward<Scalar>(x, w.ln_1, layer_norm_eps, acts.ln_1);
  causal_self_attention_forward_train<Scalar>(acts.ln_1, w.attn, n_head, acts.attn, acts.mid);
  acts.mid += x;
  layer_norm_forward<Scalar>(acts.mid, w.ln_2, layer_norm_eps, acts.ln_2);
  mlp_forward_train<Scalar>(acts.ln_2, w.mlp, acts.mlp, acts.out);
  acts.out += acts.mid;
}

/// Backward of block_forward_train. On entry d_residual = dL/d out, on return dL/d x: the skip
/// connections pass the gradient through unchanged and each branch adds its own,
///   dL/d mid = dL/d out + ln_2^T(mlp^T(dL/d out)),   dL/d x = dL/d mid + ln_1^T(attn^T(dL/d mid)),
/// so one buffer is updated in place. Adds to grad.
template <class Scalar>
void block_backward(matrix_cref<Scalar> x, const block_weights<Scalar>& w, index_t n_head,
                    Scalar layer_norm_eps, const block_activations<Scalar>& acts,
                    block_weights<Scalar>& grad, block_backward_scratch<Scalar>& scratch,
                    matrix_ref<Scalar> d_residual) {
  if (d_residual.rows() != x.rows() || d_residual.cols() != x.cols() ||
      scratch.d_normed.rows() != x.rows() || scratch.d_normed.cols() != x.cols()) {
    throw shape_error(detail::concat("block_backward: x is [", x.rows(), " x ", x.cols(),
                                     "], d_residual is [", d_residual.rows(), " x ",
                                     d_residual.cols(), "], scratch for ", scratch.d_normed.rows(),
                                     " rows"));
  }
  auto& d_normed = scratch.d_normed;
  d_normed.setZero();
  mlp_backward<Scalar>(acts.ln_2, w.mlp, acts.mlp, d_residual, grad.mlp, scratch.d_hidden,
                       d_normed);
  layer_norm_backward<Scalar>(acts.mid, w.ln_2, layer_norm_eps, d_normed, grad.ln_2, d_residual);
  d_normed.setZero();
  causal_self_attention_backward<Scalar>(acts.ln_1, w.attn, n_head, acts.attn, d_residual,
                                         grad.attn, scratch.attention, d_normed);
  layer_norm_backward<Scalar>(x, w.ln_1, layer_norm_eps, d_normed, grad.ln_1, d_residual);
}

}  // namespace eigenformer
