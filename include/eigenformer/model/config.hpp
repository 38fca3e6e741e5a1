// eigenformer/model/config.hpp — the hyper-parameters of a decoder, and what its layers are.
//
// One config describes every family the library runs. The first fields are GPT-2's; the rest
// say, once, which variant each layer is — LayerNorm or RMSNorm, learned or rotary positions, a
// GELU or SwiGLU MLP, how many key/value heads, which biases — so the decoder stays one loop
// that picks whole layer calls from this description (model/decoder.hpp). GPT-2 is the default
// description; model_config::llama() and the loaders (io/) set the others.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/layers/block.hpp"
#include "eigenformer/layers/rope.hpp"

namespace eigenformer {

enum class position_kind { learned, rotary };  // a wpe table | rotary embeddings of q and k

struct model_config {
  index_t n_layer = 12;
  index_t n_head = 12;
  index_t n_embd = 768;        // C, the residual stream's width
  index_t vocab_size = 50257;  // V
  index_t n_ctx = 1024;        // longest sequence (learned positions / max_position_embeddings)
  index_t n_inner = 0;         // MLP hidden width; 0 means 4 * n_embd, as in GPT-2
  double layer_norm_epsilon = 1e-5;  // the norms' eps (RMSNorm's rms_norm_eps too)

  // --- What the layers are (GPT-2's values by default) ---
  norm_kind norm = norm_kind::layer_norm;
  position_kind positions = position_kind::learned;
  mlp_kind mlp = mlp_kind::gelu;
  index_t n_kv_head = 0;            // key/value heads (grouped-query attention); 0 means n_head
  index_t head_size = 0;            // d, the width of one head; 0 means n_embd / n_head
  bool qkv_bias = true;             // q, k, v projections have biases
  bool out_bias = true;             // the attention output projection has a bias
  bool mlp_bias = true;             // the MLP's projections have biases
  bool qk_norm = false;             // Qwen3: RMSNorm of each head of q and k (over d) before RoPE
  index_t sliding_window = 0;       // W: query i sees key j iff i - W < j <= i; 0 means no window
  rope_config rope;                 // used when positions == rotary
  std::string model_type = "gpt2";  // as named in config.json, for messages and saving
  token_id bos_token_id = -1;       // -1: none known
  std::vector<token_id> eos_token_ids;  // generation stops at any of these

  index_t head_dim() const { return head_size > 0 ? head_size : n_embd / n_head; }
  index_t kv_heads() const { return n_kv_head > 0 ? n_kv_head : n_head; }
  index_t mlp_hidden() const { return n_inner > 0 ? n_inner : 4 * n_embd; }
  index_t q_width() const { return n_head * head_dim(); }       // columns of Q (all heads)
  index_t kv_width() const { return kv_heads() * head_dim(); }  // columns of K (and of V)
  index_t qkv_width() const { return q_width() + 2 * kv_width(); }
  /// Columns of the MLP's first projection: GELU's fc, or SwiGLU's gate and up side by side.
  index_t mlp_fc_width() const { return mlp == mlp_kind::swiglu ? 2 * mlp_hidden() : mlp_hidden(); }

  /// The 124M-parameter GPT-2 ("gpt2" on Hugging Face).
  static model_config gpt2_124m() { return model_config{}; }

  /// A GPT-2 of other sizes.
  static model_config gpt2(index_t layers, index_t heads, index_t embd, index_t vocab, index_t ctx,
                           index_t inner = 0) {
    model_config c;
    c.n_layer = layers, c.n_head = heads, c.n_embd = embd, c.vocab_size = vocab;
    c.n_ctx = ctx, c.n_inner = inner;
    return c;
  }

  /// A Llama-style description: RMSNorm, rotary positions, SwiGLU, no biases; the caller sets
  /// the sizes (and n_kv_head, head_size, rope, ... as the model has them).
  static model_config llama() {
    model_config c;
    c.norm = norm_kind::rms_norm;
    c.positions = position_kind::rotary;
    c.mlp = mlp_kind::swiglu;
    c.qkv_bias = c.out_bias = c.mlp_bias = false;
    c.layer_norm_epsilon = 1e-5;
    c.model_type = "llama";
    return c;
  }

  /// Throws shape_error / value_error for any value a forward pass could not run with.
  /// The upper bounds reject sizes no real model has, so a corrupt config cannot make the
  /// library try to allocate terabytes.
  void validate() const {
    const auto check_range = [](const char* name, index_t value, index_t lo, index_t hi) {
      if (value < lo || value > hi) {
        throw value_error(
            detail::concat("config: ", name, " = ", value, " is outside [", lo, ", ", hi, "]"));
      }
    };
    check_range("n_layer", n_layer, 1, 1024);
    check_range("n_head", n_head, 1, 1024);
    check_range("n_embd", n_embd, 1, 65536);
    check_range("vocab_size", vocab_size, 1, index_t(1) << 24);
    check_range("n_ctx", n_ctx, 1, index_t(1) << 24);
    check_range("n_inner", n_inner, 0, index_t(1) << 20);
    check_range("n_kv_head", n_kv_head, 0, n_head);
    check_range("head_size", head_size, 0, 4096);
    check_range("sliding_window", sliding_window, 0, index_t(1) << 24);
    if (head_size == 0 && n_embd % n_head != 0) {
      throw shape_error(
          detail::concat("config: n_embd = ", n_embd, " is not divisible by n_head = ", n_head));
    }
    if (n_head % kv_heads() != 0) {
      throw shape_error(detail::concat("config: n_head = ", n_head,
                                       " is not a multiple of n_kv_head = ", kv_heads()));
    }
    if (positions == position_kind::rotary && head_dim() % 2 != 0) {
      throw shape_error(
          detail::concat("config: rotary embeddings need an even head_dim, got ", head_dim()));
    }
    if (!(layer_norm_epsilon > 0.0) || !std::isfinite(layer_norm_epsilon)) {
      throw value_error(detail::concat("config: layer_norm_epsilon = ", layer_norm_epsilon,
                                       " must be positive and finite"));
    }
    if (positions == position_kind::rotary) {
      const auto positive = [](const char* name, double v) {
        if (!(v > 0.0) || !std::isfinite(v)) {
          throw value_error(
              detail::concat("config: rope ", name, " = ", v, " must be positive and finite"));
        }
      };
      positive("theta", rope.theta);
      positive("factor", rope.factor);
      if (rope.scaling == rope_scaling_kind::llama3) {
        positive("low_freq_factor", rope.low_freq_factor);
        positive("high_freq_factor", rope.high_freq_factor);
        if (!(rope.high_freq_factor > rope.low_freq_factor)) {
          throw value_error("config: rope high_freq_factor must exceed low_freq_factor");
        }
        check_range("rope original_context", rope.original_context, 1, index_t(1) << 24);
      }
      (void)rope_inverse_frequencies(rope, head_dim());  // throws if a frequency is not finite
    }
    if (norm == norm_kind::rms_norm && positions == position_kind::learned) {
      // Not a family anyone ships; refusing keeps the set of tested combinations closed.
      throw value_error("config: RMSNorm with learned positions is not a supported combination");
    }
  }
};

/// What every block of `c` is: its norm, MLP and attention shape.
inline block_config block_config_of(const model_config& c) {
  return block_config{c.norm, c.layer_norm_epsilon, c.mlp,
                      attention_config{c.n_head, c.kv_heads(), c.head_dim(), c.sliding_window,
                                       c.layer_norm_epsilon}};
}

namespace detail {
/// Sum over the T new queries at positions [P, P + T) of the keys each one sees (causal, and
/// at most W of them with a sliding window).
inline double visible_key_pairs(index_t window, double P, double T) {
  const double full = T * P + T * (T + 1) / 2;
  if (window <= 0) return full;
  const double W = double(window);
  // Positions p < W see p + 1 keys, later ones W.
  const double first_full = std::min(std::max(W - 1 - P, -1.0) + 1, T);  // queries with p < W
  const double early = first_full * P + first_full * (first_full + 1) / 2;
  return early + (T - first_full) * W;
}
}  // namespace detail

/// FLOPs (2 per multiply-add) of one forward pass of `n_tokens` new tokens after `n_past` cached
/// ones: the projections (q, k, v, output and the MLP's two or three matrices per token per
/// layer), the part of attention actually needed (Q K^T and P V over the visible keys), and
/// `lm_rows` rows of the LM head. What benchmarks divide by time.
inline double forward_flops(const model_config& c, index_t n_past, index_t n_tokens,
                            index_t lm_rows) {
  const double C = double(c.n_embd), H = double(c.mlp_hidden()), L = double(c.n_layer);
  const double T = double(n_tokens), P = double(n_past);
  const double projections =
      C * double(c.qkv_width()) + double(c.q_width()) * C + C * double(c.mlp_fc_width()) + H * C;
  const double pairs = detail::visible_key_pairs(c.sliding_window, P, T);
  return L * (2.0 * projections * T + 4.0 * double(c.q_width()) * pairs) +
         2.0 * C * double(c.vocab_size) * double(lm_rows);
}

/// Bytes of weights one decoding step reads: every block matrix and the LM head (the embedding
/// rows and the vectors are negligible), at `bytes_per_weight`.
inline double decode_weight_bytes(const model_config& c, double bytes_per_weight) {
  const double C = double(c.n_embd), H = double(c.mlp_hidden());
  const double per_layer =
      C * double(c.qkv_width()) + double(c.q_width()) * C + C * double(c.mlp_fc_width()) + H * C;
  return bytes_per_weight * (double(c.n_layer) * per_layer + C * double(c.vocab_size));
}

}  // namespace eigenformer
