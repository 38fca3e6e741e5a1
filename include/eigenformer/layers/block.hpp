// eigenformer/layers/block.hpp — the pre-norm residual transformer block:
//
//   x = x + attn(norm_1(x))
//   x = x + mlp(norm_2(x))
//
// The norm comes before each sub-layer and the residual stream x itself is never normalized,
// which is what lets deep stacks train (the final norm after the stack normalizes it once).
// Which norm (LayerNorm | RMSNorm), which MLP (GELU | SwiGLU) and the attention's shape come
// from a block_config and are chosen once per call: GPT-2 and the Llama family share this code.
#pragma once

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/layers/attention.hpp"
#include "eigenformer/layers/layer_norm.hpp"
#include "eigenformer/layers/mlp.hpp"
#include "eigenformer/layers/rms_norm.hpp"
#include "eigenformer/layers/swiglu_mlp.hpp"

namespace eigenformer {

enum class norm_kind { layer_norm, rms_norm };  // LayerNorm (gain + bias) | RMSNorm (gain)
enum class mlp_kind { gelu, swiglu };           // fc -> GELU -> proj | down(silu(gate) * up)

/// What one block is: derived once from the model's config (model/decoder.hpp).
struct block_config {
  norm_kind norm = norm_kind::layer_norm;
  double norm_eps = 1e-5;
  mlp_kind mlp = mlp_kind::gelu;
  attention_config attention;
};

template <class Scalar>
struct block_weights {
  layer_norm_weights<Scalar> ln_1;  // before attention (Llama: input_layernorm; bias empty)
  attention_weights<Scalar> attn;
  layer_norm_weights<Scalar> ln_2;  // before the MLP (Llama: post_attention_layernorm)
  mlp_weights<Scalar> mlp;          // GELU: fc [C x H]; SwiGLU: fc = gate | up [C x 2I]
};

/// Buffers of one block call, sized once for the longest sequence and reused by every block.
template <class Scalar>
struct block_scratch {
  matrix<Scalar> normed;    // [max_T x C], norm_1(x) then norm_2(x)
  matrix<Scalar> sublayer;  // [max_T x C], attn(...) then mlp(...) before the residual add
  matrix<Scalar> hidden;    // [max_T x fc width], the MLP's hidden activations
  attention_scratch<Scalar> attention;

  block_scratch() = default;
  block_scratch(index_t max_tokens, index_t channels, const attention_config& attention_shape,
                index_t mlp_fc_width)
      : normed(max_tokens, channels),
        sublayer(max_tokens, channels),
        hidden(max_tokens, mlp_fc_width),
        attention(max_tokens, attention_shape) {}
  /// GPT-2's block: multi-head attention over C channels.
  block_scratch(index_t max_tokens, index_t channels, index_t n_inner)
      : normed(max_tokens, channels),
        sublayer(max_tokens, channels),
        hidden(max_tokens, n_inner),
        attention(max_tokens, channels) {}
};

/// norm(x) into out: LayerNorm or RMSNorm (which reads only the gain). x, out: [T x C].
template <class Scalar>
void norm_forward(norm_kind kind, matrix_cref<Scalar> x, const layer_norm_weights<Scalar>& w,
                  Scalar eps, matrix_ref<Scalar> out) {
  if (kind == norm_kind::rms_norm) {
    rms_norm_forward<Scalar>(x, w.gain, eps, out);
  } else {
    layer_norm_forward<Scalar>(x, w, eps, out);
  }
}

/// x: [R x C], the new rows of several sequences (`segments`, see
/// batched_self_attention_forward), updated in place (the residual stream). The norms and the
/// MLP are row by row; only the attention looks at a sequence as a whole.
template <class Scalar>
void block_forward(matrix_ref<Scalar> x, const block_weights<Scalar>& w, const block_config& config,
                   block_scratch<Scalar>& scratch,
                   const std::vector<attention_segment<Scalar>>& segments,
                   const rope_tables<Scalar>* rope = nullptr,
                   const attention_observer<Scalar>& observe = nullptr) {
  const index_t n_tokens = x.rows();
  if (scratch.normed.rows() < n_tokens || scratch.normed.cols() != x.cols()) {
    throw shape_error(detail::concat("block_forward: scratch sized for ", scratch.normed.rows(),
                                     " tokens of ", scratch.normed.cols(), " channels, got ",
                                     n_tokens, " tokens of ", x.cols()));
  }
  auto normed = scratch.normed.topRows(n_tokens);
  auto sublayer = scratch.sublayer.topRows(n_tokens);
  const auto eps = Scalar(config.norm_eps);

  norm_forward<Scalar>(config.norm, x, w.ln_1, eps, normed);
  batched_self_attention_forward<Scalar>(normed, w.attn, config.attention, scratch.attention,
                                         sublayer, segments, rope, observe);
  x += sublayer;

  norm_forward<Scalar>(config.norm, x, w.ln_2, eps, normed);
  if (config.mlp == mlp_kind::swiglu) {
    swiglu_mlp_forward<Scalar>(normed, w.mlp, scratch.hidden, sublayer);
  } else {
    mlp_forward<Scalar>(normed, w.mlp, scratch.hidden, sublayer);
  }
  x += sublayer;
}

/// x: [T x C] of one sequence, updated in place (the residual stream). `rope` (rotary models:
/// cos/sin of the T positions), `observe`, `cache` and `n_past` are passed to the attention (see
/// causal_self_attention_forward).
template <class Scalar>
void block_forward(matrix_ref<Scalar> x, const block_weights<Scalar>& w, const block_config& config,
                   block_scratch<Scalar>& scratch,
                   const attention_observer<Scalar>& observe = nullptr,
                   kv_cache_layer<Scalar>* cache = nullptr, index_t n_past = 0,
                   const rope_tables<Scalar>* rope = nullptr) {
  block_forward<Scalar>(x, w, config, scratch,
                        {attention_segment<Scalar>{0, x.rows(), cache, n_past}}, rope, observe);
}

/// GPT-2's block: LayerNorm, multi-head attention with n_head heads, GELU MLP.
template <class Scalar>
void block_forward(matrix_ref<Scalar> x, const block_weights<Scalar>& w, index_t n_head,
                   Scalar layer_norm_eps, block_scratch<Scalar>& scratch,
                   const attention_observer<Scalar>& observe = nullptr,
                   kv_cache_layer<Scalar>* cache = nullptr, index_t n_past = 0) {
  if (n_head <= 0 || x.cols() % n_head != 0) {
    throw shape_error(detail::concat("block_forward: ", x.cols(), " channels cannot be split into ",
                                     n_head, " heads"));
  }
  const block_config config{norm_kind::layer_norm, double(layer_norm_eps), mlp_kind::gelu,
                            attention_config::multi_head(n_head, x.cols())};
  block_forward<Scalar>(x, w, config, scratch, observe, cache, n_past);
}

/// Backward of norm_forward: adds to grad (gain, and LayerNorm's bias) and d_x.
template <class Scalar>
void norm_backward(norm_kind kind, matrix_cref<Scalar> x, const layer_norm_weights<Scalar>& w,
                   Scalar eps, matrix_cref<Scalar> d_out, layer_norm_weights<Scalar>& grad,
                   matrix_ref<Scalar> d_x) {
  if (kind == norm_kind::rms_norm) {
    rms_norm_backward<Scalar>(x, w.gain, eps, d_out, grad.gain, d_x);
  } else {
    layer_norm_backward<Scalar>(x, w, eps, d_out, grad, d_x);
  }
}

/// What one block's backward pass needs from its forward pass over B*T tokens (its input x is
/// the previous block's `out`, or the embedding). Shapes [B*T x C] unless noted.
template <class Scalar>
struct block_activations {
  matrix<Scalar> ln_1;  // norm_1(x)
  attention_activations<Scalar> attn;
  matrix<Scalar> mid;   // x + attn(norm_1(x)), the residual stream between the two sub-layers
  matrix<Scalar> ln_2;  // norm_2(mid)
  mlp_activations<Scalar> mlp;
  matrix<Scalar> out;  // mid + mlp(norm_2(mid)), the block's output

  block_activations() = default;
  /// `qk_norm`: the attention has q/k norms (its backward then keeps their input).
  block_activations(index_t batch, index_t tokens, index_t channels, const block_config& config,
                    index_t mlp_fc_width, bool qk_norm = false)
      : ln_1(batch * tokens, channels),
        attn(batch, tokens, config.attention, qk_norm),
        mid(batch * tokens, channels),
        ln_2(batch * tokens, channels),
        mlp(batch * tokens, mlp_fc_width),
        out(batch * tokens, channels) {}
  /// GPT-2's block.
  block_activations(index_t batch, index_t tokens, index_t channels, index_t n_head,
                    index_t n_inner)
      : block_activations(batch, tokens, channels, gpt2_block_config(n_head, channels), n_inner) {}

  static block_config gpt2_block_config(index_t n_head, index_t channels, double eps = 1e-5) {
    return {norm_kind::layer_norm, eps, mlp_kind::gelu,
            attention_config::multi_head(n_head, channels)};
  }
};

/// Buffers of a block's backward pass, shared by all blocks.
template <class Scalar>
struct block_backward_scratch {
  matrix<Scalar> d_normed;  // [B*T x C], dL/d norm(x) of the sub-layer being differentiated
  matrix<Scalar> d_hidden;  // [B*T x fc width]
  attention_backward_scratch<Scalar> attention;

  block_backward_scratch() = default;
  block_backward_scratch(index_t batch, index_t tokens, index_t channels,
                         const block_config& config, index_t mlp_fc_width, bool qk_norm = false)
      : d_normed(batch * tokens, channels),
        d_hidden(batch * tokens, mlp_fc_width),
        attention(batch, tokens, config.attention, qk_norm) {}
  block_backward_scratch(index_t batch, index_t tokens, index_t channels, index_t n_head,
                         index_t n_inner)
      : block_backward_scratch(batch, tokens, channels,
                               block_activations<Scalar>::gpt2_block_config(n_head, channels),
                               n_inner) {}
};

/// block_forward for training: x [B*T x C] in, acts.out = the block's output. `rope`: cos/sin
/// of positions 0..T-1 for rotary models, else nullptr.
template <class Scalar>
void block_forward_train(matrix_cref<Scalar> x, const block_weights<Scalar>& w,
                         const block_config& config, const rope_tables<Scalar>* rope,
                         block_activations<Scalar>& acts) {
  if (acts.out.rows() != x.rows() || acts.out.cols() != x.cols()) {
    throw shape_error(detail::concat("block_forward_train: activations for [", acts.out.rows(),
                                     " x ", acts.out.cols(), "], x is [", x.rows(), " x ", x.cols(),
                                     "]"));
  }
  const auto eps = Scalar(config.norm_eps);
  norm_forward<Scalar>(config.norm, x, w.ln_1, eps, acts.ln_1);
  causal_self_attention_forward_train<Scalar>(acts.ln_1, w.attn, config.attention, rope, acts.attn,
                                              acts.mid);
  acts.mid += x;
  norm_forward<Scalar>(config.norm, acts.mid, w.ln_2, eps, acts.ln_2);
  if (config.mlp == mlp_kind::swiglu) {
    swiglu_mlp_forward_train<Scalar>(acts.ln_2, w.mlp, acts.mlp, acts.out);
  } else {
    mlp_forward_train<Scalar>(acts.ln_2, w.mlp, acts.mlp, acts.out);
  }
  acts.out += acts.mid;
}

/// GPT-2's block.
template <class Scalar>
void block_forward_train(matrix_cref<Scalar> x, const block_weights<Scalar>& w, index_t n_head,
                         Scalar layer_norm_eps, block_activations<Scalar>& acts) {
  block_forward_train<Scalar>(
      x, w, block_activations<Scalar>::gpt2_block_config(n_head, x.cols(), double(layer_norm_eps)),
      nullptr, acts);
}

/// Backward of block_forward_train. On entry d_residual = dL/d out, on return dL/d x: the skip
/// connections pass the gradient through unchanged and each branch adds its own,
///   dL/d mid = dL/d out + norm_2^T(mlp^T(dL/d out)),
///   dL/d x   = dL/d mid + norm_1^T(attn^T(dL/d mid)),
/// so one buffer is updated in place. Adds to grad.
template <class Scalar>
void block_backward(matrix_cref<Scalar> x, const block_weights<Scalar>& w,
                    const block_config& config, const rope_tables<Scalar>* rope,
                    const block_activations<Scalar>& acts, block_weights<Scalar>& grad,
                    block_backward_scratch<Scalar>& scratch, matrix_ref<Scalar> d_residual) {
  if (d_residual.rows() != x.rows() || d_residual.cols() != x.cols() ||
      scratch.d_normed.rows() != x.rows() || scratch.d_normed.cols() != x.cols()) {
    throw shape_error(detail::concat("block_backward: x is [", x.rows(), " x ", x.cols(),
                                     "], d_residual is [", d_residual.rows(), " x ",
                                     d_residual.cols(), "], scratch for ", scratch.d_normed.rows(),
                                     " rows"));
  }
  const auto eps = Scalar(config.norm_eps);
  auto& d_normed = scratch.d_normed;
  d_normed.setZero();
  if (config.mlp == mlp_kind::swiglu) {
    swiglu_mlp_backward<Scalar>(acts.ln_2, w.mlp, acts.mlp, d_residual, grad.mlp, scratch.d_hidden,
                                d_normed);
  } else {
    mlp_backward<Scalar>(acts.ln_2, w.mlp, acts.mlp, d_residual, grad.mlp, scratch.d_hidden,
                         d_normed);
  }
  norm_backward<Scalar>(config.norm, acts.mid, w.ln_2, eps, d_normed, grad.ln_2, d_residual);
  d_normed.setZero();
  causal_self_attention_backward<Scalar>(acts.ln_1, w.attn, config.attention, rope, acts.attn,
                                         d_residual, grad.attn, scratch.attention, d_normed);
  norm_backward<Scalar>(config.norm, x, w.ln_1, eps, d_normed, grad.ln_1, d_residual);
}

/// GPT-2's block.
template <class Scalar>
void block_backward(matrix_cref<Scalar> x, const block_weights<Scalar>& w, index_t n_head,
                    Scalar layer_norm_eps, const block_activations<Scalar>& acts,
                    block_weights<Scalar>& grad, block_backward_scratch<Scalar>& scratch,
                    matrix_ref<Scalar> d_residual) {
  block_backward<Scalar>(
      x, w, block_activations<Scalar>::gpt2_block_config(n_head, x.cols(), double(layer_norm_eps)),
      nullptr, acts, grad, scratch, d_residual);
}

}  // namespace eigenformer
