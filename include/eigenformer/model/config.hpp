// eigenformer/model/config.hpp — the hyper-parameters of a GPT-2-style decoder.
#pragma once

#include <cmath>
#include <cstdint>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"

namespace eigenformer {

struct model_config {
  index_t n_layer = 12;
  index_t n_head = 12;
  index_t n_embd = 768;        // C
  index_t vocab_size = 50257;  // V
  index_t n_ctx = 1024;        // longest sequence (number of learned positions)
  index_t n_inner = 0;         // MLP hidden width; 0 means 4 * n_embd, as in GPT-2
  double layer_norm_epsilon = 1e-5;

  index_t head_dim() const { return n_embd / n_head; }
  index_t mlp_hidden() const { return n_inner > 0 ? n_inner : 4 * n_embd; }

  /// The 124M-parameter GPT-2 ("gpt2" on Hugging Face).
  static model_config gpt2_124m() { return model_config{}; }

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
    check_range("n_ctx", n_ctx, 1, index_t(1) << 20);
    check_range("n_inner", n_inner, 0, index_t(1) << 20);
    if (n_embd % n_head != 0) {
      throw shape_error(
          detail::concat("config: n_embd = ", n_embd, " is not divisible by n_head = ", n_head));
    }
    if (!(layer_norm_epsilon > 0.0) || !std::isfinite(layer_norm_epsilon)) {
      throw value_error(detail::concat("config: layer_norm_epsilon = ", layer_norm_epsilon,
                                       " must be positive and finite"));
    }
  }
};

/// FLOPs (2 per multiply-add) of one forward pass of `n_tokens` new tokens after `n_past` cached
/// ones: the projections (2 * (4 C^2 + 2 C H) per token per layer, H = MLP width), the causal
/// part of attention actually needed (Q K^T and P V over the visible keys), and `lm_rows` rows
/// of the LM head. What benchmarks divide by time.
inline double forward_flops(const model_config& c, index_t n_past, index_t n_tokens,
                            index_t lm_rows) {
  const double C = double(c.n_embd), H = double(c.mlp_hidden()), L = double(c.n_layer);
  const double T = double(n_tokens), P = double(n_past);
  // Query i sees P + i + 1 keys: sum over i = T P + T (T + 1) / 2; times 2 products of 2 C FLOPs.
  const double visible_pairs = T * P + T * (T + 1) / 2;
  return L * (2.0 * (4.0 * C * C + 2.0 * C * H) * T + 4.0 * C * visible_pairs) +
         2.0 * C * double(c.vocab_size) * double(lm_rows);
}

/// Bytes of weights one decoding step reads: every block matrix and the LM head (the embedding
/// rows and the vectors are negligible), at `bytes_per_weight`.
inline double decode_weight_bytes(const model_config& c, double bytes_per_weight) {
  const double C = double(c.n_embd), H = double(c.mlp_hidden());
  return bytes_per_weight *
         (double(c.n_layer) * (4.0 * C * C + 2.0 * C * H) + C * double(c.vocab_size));
}

}  // namespace eigenformer
