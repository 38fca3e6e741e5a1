// eigenformer/model/weights.hpp — all parameters of a decoder, as plain structs.
//
// Weights are const once built and may be shared by any number of threads; everything that
// changes during a forward pass lives in model/activations.hpp.
#pragma once

#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/layers/block.hpp"
#include "eigenformer/model/config.hpp"

namespace eigenformer {

template <class Scalar>
struct basic_model_weights {
  matrix<Scalar> wte;  // [V x C] token embedding; also the LM head unless lm_head is set
  matrix<Scalar> wpe;  // [n_ctx x C] learned position embedding; empty for rotary models
  std::vector<block_weights<Scalar>> blocks;  // n_layer blocks
  layer_norm_weights<Scalar> ln_f;            // final norm (RMSNorm: bias empty)
  matrix<Scalar> lm_head;  // [V x C] untied output projection; empty = tied to wte
  /// The LM head E^T [C x V] in bf16 after pack_weights_bf16(); then the float E is freed (the
  /// embedding lookup of a tied model reads its rows from here).
  packed_bf16_matrix output_packed;
  /// The LM head E^T [C x V] in quantized blocks after quantize_weights() (likewise).
  quantized_matrix output_quantized;

  /// Whether wte is also the LM head. Compressing frees the float head: a tied model's wte,
  /// an untied model's lm_head.
  bool tied_lm_head() const { return is_compressed() ? wte.size() == 0 : lm_head.size() == 0; }
  bool is_packed() const { return !output_packed.empty(); }
  bool is_quantized() const { return !output_quantized.empty(); }
  /// Whether the LM head (and the per-token matrices) are stored in bf16 or quantized blocks.
  bool is_compressed() const { return is_packed() || is_quantized(); }
  /// The matrix whose rows score each vocabulary entry: [V x C].
  const matrix<Scalar>& output_embedding() const { return tied_lm_head() ? wte : lm_head; }
};

using model_weights = basic_model_weights<float>;

/// Calls `visit(name, tensor, shape)` for every parameter, in checkpoint order, with the shape
/// `config` expects ({n} for vectors, {rows, cols} for matrices); `tensor` is a matrix<Scalar> or
/// row_vector<Scalar> (const if `w` is). The one list of names and shapes that validation,
/// initialisation, training and GPT-2's loading and saving share. `w.blocks` must already hold
/// n_layer blocks. lm_head.weight is visited only when the head is untied.
///
/// GPT-2: the Hugging Face names (no "transformer." prefix) and layouts, exactly the file's.
/// Rotary (Llama-family) models: the tensors as this library stores them — q|k|v fused into one
/// [C x (H d + 2 G d)] matrix, gate|up into one [C x 2I], every linear weight [in x out] — named
/// after the HF tensors they come from; io/hf_llama.hpp maps the files' separate [out, in]
/// tensors onto these. Biases and q/k norms are visited only where the config has them.
template <class Weights, class Visitor>
void for_each_parameter(const model_config& config, Weights& w, Visitor&& visit) {
  if (static_cast<index_t>(w.blocks.size()) != config.n_layer) {
    throw shape_error(detail::concat("weights: ", w.blocks.size(),
                                     " blocks, config has n_layer = ", config.n_layer));
  }
  using shape = std::vector<std::int64_t>;
  const std::int64_t C = config.n_embd, V = config.vocab_size, H = config.mlp_hidden();
  if (config.positions == position_kind::rotary) {
    const std::int64_t QKV = config.qkv_width(), Q = config.q_width(), d = config.head_dim();
    const std::int64_t FC = config.mlp_fc_width();
    visit(std::string("model.embed_tokens.weight"), w.wte, shape{V, C});
    for (std::size_t i = 0; i < w.blocks.size(); ++i) {
      auto& b = w.blocks[i];
      const std::string p = "model.layers." + std::to_string(i) + ".";
      visit(p + "input_layernorm.weight", b.ln_1.gain, shape{C});
      visit(p + "self_attn.qkv_proj.weight", b.attn.qkv.weight, shape{C, QKV});
      if (config.qkv_bias) visit(p + "self_attn.qkv_proj.bias", b.attn.qkv.bias, shape{QKV});
      if (config.qk_norm) {
        visit(p + "self_attn.q_norm.weight", b.attn.q_norm, shape{d});
        visit(p + "self_attn.k_norm.weight", b.attn.k_norm, shape{d});
      }
      visit(p + "self_attn.o_proj.weight", b.attn.proj.weight, shape{Q, C});
      if (config.out_bias) visit(p + "self_attn.o_proj.bias", b.attn.proj.bias, shape{C});
      visit(p + "post_attention_layernorm.weight", b.ln_2.gain, shape{C});
      visit(p + "mlp.gate_up_proj.weight", b.mlp.fc.weight, shape{C, FC});
      if (config.mlp_bias) visit(p + "mlp.gate_up_proj.bias", b.mlp.fc.bias, shape{FC});
      visit(p + "mlp.down_proj.weight", b.mlp.proj.weight, shape{H, C});
      if (config.mlp_bias) visit(p + "mlp.down_proj.bias", b.mlp.proj.bias, shape{C});
    }
    visit(std::string("model.norm.weight"), w.ln_f.gain, shape{C});
    if (!w.tied_lm_head()) visit(std::string("lm_head.weight"), w.lm_head, shape{V, C});
    return;
  }
  visit(std::string("wte.weight"), w.wte, shape{V, C});
  visit(std::string("wpe.weight"), w.wpe, shape{config.n_ctx, C});
  for (std::size_t i = 0; i < w.blocks.size(); ++i) {
    auto& b = w.blocks[i];
    const std::string p = "h." + std::to_string(i) + ".";
    visit(p + "ln_1.weight", b.ln_1.gain, shape{C});
    visit(p + "ln_1.bias", b.ln_1.bias, shape{C});
    visit(p + "attn.c_attn.weight", b.attn.qkv.weight, shape{C, 3 * C});
    visit(p + "attn.c_attn.bias", b.attn.qkv.bias, shape{3 * C});
    visit(p + "attn.c_proj.weight", b.attn.proj.weight, shape{C, C});
    visit(p + "attn.c_proj.bias", b.attn.proj.bias, shape{C});
    visit(p + "ln_2.weight", b.ln_2.gain, shape{C});
    visit(p + "ln_2.bias", b.ln_2.bias, shape{C});
    visit(p + "mlp.c_fc.weight", b.mlp.fc.weight, shape{C, H});
    visit(p + "mlp.c_fc.bias", b.mlp.fc.bias, shape{H});
    visit(p + "mlp.c_proj.weight", b.mlp.proj.weight, shape{H, C});
    visit(p + "mlp.c_proj.bias", b.mlp.proj.bias, shape{C});
  }
  visit(std::string("ln_f.weight"), w.ln_f.gain, shape{C});
  visit(std::string("ln_f.bias"), w.ln_f.bias, shape{C});
  if (!w.tied_lm_head()) visit(std::string("lm_head.weight"), w.lm_head, shape{V, C});
}

/// Stores every matrix that is multiplied per token — the linear layers and the LM head — as
/// bfloat16 panels (rounded to nearest; exact for weights loaded from BF16 files) and frees their
/// float copies: about half the memory and half the bytes to read per decoded token. `compute`
/// picks float activations (bf16) or bf16 activations with bf16 dot products (bf16mix); see
/// ops/bf16_matmul.hpp. Embeddings of positions and LayerNorms stay float. Not reversible.
inline void pack_weights_bf16(basic_model_weights<float>& w, bf16_compute compute) {
  if (w.is_quantized()) throw value_error("pack_weights_bf16: the weights are quantized");
  for (auto& b : w.blocks) {
    for (auto* layer : {&b.attn.qkv, &b.attn.proj, &b.mlp.fc, &b.mlp.proj}) {
      pack_linear(*layer, compute);
    }
  }
  // The LM head keeps float activations in both modes: it multiplies one row per generated token
  // (bound by reading weights, where bf16 dot products gain nothing), and the logits are where
  // rounding error shows.
  if (!w.is_packed()) {
    const bool tied = w.tied_lm_head();  // asked before compressing changes the answer's basis
    w.output_packed = pack_bf16_transposed(w.output_embedding(), bf16_compute::float_activations);
    if (tied) {
      w.wte.resize(0, 0);
    } else {
      w.lm_head.resize(0, 0);
    }
  }
}

/// Stores the linear layers in quantized blocks of type `layers` and the LM head (the tied
/// embedding too: its rows are then read from the head) in type `head`, with ggml's reference
/// rounding, freeing the floats. Kept in float: norms, biases, GPT-2's position embedding, and
/// any matrix whose input width is not whole blocks of its type (as llama.cpp does). Not
/// reversible. llama-quantize gives the head more bits than the layers (Q6_K, or Q8_0 where rows
/// are not whole super-blocks), since the logits are where rounding error shows.
inline void quantize_weights(basic_model_weights<float>& w, quant_type layers, quant_type head) {
  if (w.is_compressed()) throw value_error("quantize_weights: the weights are already compressed");
  for (auto& b : w.blocks) {
    for (auto* layer : {&b.attn.qkv, &b.attn.proj, &b.mlp.fc, &b.mlp.proj})
      quantize_linear(*layer, layers);
  }
  const matrix<float>& e = w.output_embedding();
  if (!fits_blocks(head, e.cols())) return;
  const bool tied = w.tied_lm_head();  // asked before compressing changes the answer's basis
  w.output_quantized = quantize_matrix_transposed(e, head);
  if (tied) {
    w.wte.resize(0, 0);
  } else {
    w.lm_head.resize(0, 0);
  }
}

namespace detail {
/// A linear layer stored as consecutive column ranges of the given types (each with
/// llama-quantize's fallback, fall_back_to_fit); stays float when a range fits no type.
inline void quantize_linear_columns(linear_weights<float>& w,
                                    std::vector<std::pair<quant_type, index_t>> ranges) {
  const index_t K = w.weight.rows();
  for (auto& [t, cols] : ranges)
    if (!fall_back_to_fit(t, K)) return;
  quantized_matrix q;
  q.rows = K;
  index_t first = 0;
  for (const auto& [t, cols] : ranges) {
    const quantized_matrix part = quantize_matrix(w.weight.middleCols(first, cols), t);
    q.append_columns(t, cols, part.segments.front().ggml_bytes().data());
    first += cols;
  }
  if (first != w.weight.cols())
    throw shape_error(
        concat("quantize_linear_columns: ", first, " of ", w.weight.cols(), " columns"));
  w.quantized = std::move(q);
  w.weight.resize(0, 0);
}
}  // namespace detail

/// llama-quantize's Q4_K_M, tensor by tensor (its rules for these architectures, without an
/// importance matrix): q4_k everywhere but the value projection and the MLP's down projection
/// of the layers use_more_bits picks (the first and last eighth, and every third between:
/// q6_k), a fused q|k|v as GPT-2 files hold it (q5_k), and the LM head (q6_k). Where rows are
/// not whole super-blocks: q5_0 for q4_k, q8_0 for q6_k (SmolLM2's 576); float for q5_k. Kept
/// in float otherwise as quantize_weights does.
inline void quantize_weights_q4_k_m(const model_config& c, basic_model_weights<float>& w) {
  if (w.is_compressed()) throw value_error("quantize_weights: the weights are already compressed");
  // GPT-2's files hold q, k and v as one tensor (attn_qkv); the Llama family's as three.
  const bool fused_qkv = c.norm == norm_kind::layer_norm;
  for (index_t i = 0; i < index_t(w.blocks.size()); ++i) {
    auto& b = w.blocks[std::size_t(i)];
    const quant_type more =
        llama_uses_more_bits(i, c.n_layer) ? quant_type::q6_k : quant_type::q4_k;
    if (fused_qkv) {
      detail::quantize_linear_columns(b.attn.qkv, {{quant_type::q5_k, c.qkv_width()}});
    } else {
      detail::quantize_linear_columns(b.attn.qkv, {{quant_type::q4_k, c.q_width()},
                                                   {quant_type::q4_k, c.kv_width()},
                                                   {more, c.kv_width()}});
    }
    detail::quantize_linear_columns(b.attn.proj, {{quant_type::q4_k, b.attn.proj.out_features()}});
    detail::quantize_linear_columns(b.mlp.fc, {{quant_type::q4_k, b.mlp.fc.out_features()}});
    detail::quantize_linear_columns(b.mlp.proj, {{more, b.mlp.proj.out_features()}});
  }
  quant_type head = quant_type::q6_k;
  const matrix<float>& e = w.output_embedding();
  if (!fall_back_to_fit(head, e.cols())) return;
  const bool tied = w.tied_lm_head();  // asked before compressing changes the answer's basis
  w.output_quantized = quantize_matrix_transposed(e, head);
  if (tied) {
    w.wte.resize(0, 0);
  } else {
    w.lm_head.resize(0, 0);
  }
}

/// Bytes of the matrices a decoding step reads once per token — the linear layers and the LM
/// head — as they are stored (f32, bf16 panels or quantized blocks): the memory traffic that
/// bounds decoding speed.
inline double decode_weight_bytes(const basic_model_weights<float>& w) {
  const auto bytes_of = [](const linear_weights<float>& l) {
    if (l.is_packed()) return double(l.packed.data.size()) * 2.0;
    if (l.is_quantized()) return double(l.quantized.bytes());
    return double(l.weight.size()) * 4.0;
  };
  double total = 0;
  for (const auto& b : w.blocks) {
    for (const auto* layer : {&b.attn.qkv, &b.attn.proj, &b.mlp.fc, &b.mlp.proj})
      total += bytes_of(*layer);
  }
  if (w.is_packed()) return total + double(w.output_packed.data.size()) * 2.0;
  if (w.is_quantized()) return total + double(w.output_quantized.bytes());
  return total + double(w.output_embedding().size()) * 4.0;
}

/// Throws shape_error naming the first tensor whose shape does not match `config`.
template <class Scalar>
void validate_weights(const model_config& config, const basic_model_weights<Scalar>& w) {
  config.validate();
  if (w.is_compressed())
    throw value_error("weights: validate before pack_weights_bf16() or quantize_weights()");
  for_each_parameter(
      config, w,
      [](const std::string& name, const auto& tensor, const std::vector<std::int64_t>& shape) {
        const index_t rows = shape.size() == 2 ? shape[0] : 1;
        if (tensor.rows() != rows || tensor.cols() != shape.back()) {
          throw shape_error(detail::concat("weights: ", name, " is [", tensor.rows(), " x ",
                                           tensor.cols(), "], expected [", rows, " x ",
                                           shape.back(), "]"));
        }
      });
}

/// GPT-2's initialisation: N(0, 0.02) matrices, residual projections scaled by 1/sqrt(2 n_layer),
/// LayerNorm gain 1 and bias 0. For building models from code and for benchmarks.
template <class Scalar>
basic_model_weights<Scalar> init_gpt2_weights(const model_config& config, std::uint64_t seed) {
  config.validate();
  if (config.positions != position_kind::learned || config.mlp != mlp_kind::gelu ||
      config.norm != norm_kind::layer_norm || config.kv_heads() != config.n_head ||
      config.head_dim() * config.n_head != config.n_embd) {
    throw value_error("init_gpt2_weights: the config is not a GPT-2 model");
  }
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  const auto randn = [&](index_t rows, index_t cols, double stddev) {
    matrix<Scalar> m(rows, cols);
    for (index_t i = 0; i < m.size(); ++i) m.data()[i] = Scalar(stddev * normal(rng));
    return m;
  };
  const auto zeros = [](index_t n) { return row_vector<Scalar>::Zero(n).eval(); };
  const auto unit_norm = [&](index_t n) {
    return layer_norm_weights<Scalar>{row_vector<Scalar>::Ones(n), zeros(n)};
  };
  const index_t C = config.n_embd, H = config.mlp_hidden();
  const double std_dev = 0.02, residual_std = 0.02 / std::sqrt(2.0 * double(config.n_layer));

  basic_model_weights<Scalar> w;
  w.wte = randn(config.vocab_size, C, std_dev);
  w.wpe = randn(config.n_ctx, C, 0.01);
  for (index_t l = 0; l < config.n_layer; ++l) {
    block_weights<Scalar> b;
    b.ln_1 = unit_norm(C);
    b.attn.qkv = {randn(C, 3 * C, std_dev), zeros(3 * C)};
    b.attn.proj = {randn(C, C, residual_std), zeros(C)};
    b.ln_2 = unit_norm(C);
    b.mlp.fc = {randn(C, H, std_dev), zeros(H)};
    b.mlp.proj = {randn(H, C, residual_std), zeros(C)};
    w.blocks.push_back(std::move(b));
  }
  w.ln_f = unit_norm(C);
  return w;
}

/// Random weights for a rotary (Llama-family) config, as transformers initialises them:
/// N(0, 0.02) matrices, norm gains 1, biases 0. For building models from code and benchmarks.
template <class Scalar>
basic_model_weights<Scalar> init_llama_weights(const model_config& config, std::uint64_t seed,
                                               bool tied_lm_head = true) {
  config.validate();
  if (config.positions != position_kind::rotary) {
    throw value_error("init_llama_weights: the config is not a rotary (Llama-family) model");
  }
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  basic_model_weights<Scalar> w;
  w.blocks.resize(static_cast<std::size_t>(config.n_layer));
  if (!tied_lm_head) w.lm_head.resize(config.vocab_size, config.n_embd);
  for_each_parameter(
      config, w,
      [&](const std::string& name, auto& tensor, const std::vector<std::int64_t>& shape) {
        const index_t rows = shape.size() == 2 ? shape[0] : 1;
        tensor.resize(rows, shape.back());
        if (shape.size() == 2) {
          for (index_t i = 0; i < tensor.size(); ++i) tensor.data()[i] = Scalar(0.02 * normal(rng));
        } else if (name.size() > 11 && name.compare(name.size() - 11, 11, "norm.weight") == 0) {
          tensor.setOnes();
        } else {
          tensor.setZero();
        }
      });
  return w;
}

}  // namespace eigenformer
