// eigenformer/model/weights.hpp — all parameters of a GPT-2-style decoder, as plain structs.
//
// Weights are const once built and may be shared by any number of threads; everything that
// changes during a forward pass lives in model/activations.hpp.
#pragma once

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/layers/block.hpp"
#include "eigenformer/model/config.hpp"

namespace eigenformer {

template <class Scalar>
struct basic_model_weights {
  matrix<Scalar> wte;  // [V x C] token embedding; also the LM head unless lm_head is set
  matrix<Scalar> wpe;  // [n_ctx x C] learned position embedding
  std::vector<block_weights<Scalar>> blocks;  // n_layer blocks
  layer_norm_weights<Scalar> ln_f;            // final LayerNorm
  matrix<Scalar> lm_head;  // [V x C] untied output projection; empty = tied to wte

  bool tied_lm_head() const { return lm_head.size() == 0; }
  /// The matrix whose rows score each vocabulary entry: [V x C].
  const matrix<Scalar>& output_embedding() const { return tied_lm_head() ? wte : lm_head; }
};

using model_weights = basic_model_weights<float>;

namespace detail {

inline void expect_shape(const std::string& name, index_t rows, index_t cols, index_t want_rows,
                         index_t want_cols) {
  if (rows != want_rows || cols != want_cols) {
    throw shape_error(concat("weights: ", name, " is [", rows, " x ", cols, "], expected [",
                             want_rows, " x ", want_cols, "]"));
  }
}

}  // namespace detail

/// Throws shape_error naming the first tensor whose shape does not match `config`.
template <class Scalar>
void validate_weights(const model_config& config, const basic_model_weights<Scalar>& w) {
  config.validate();
  const index_t C = config.n_embd, V = config.vocab_size, H = config.mlp_hidden();
  using detail::expect_shape;
  expect_shape("wte", w.wte.rows(), w.wte.cols(), V, C);
  expect_shape("wpe", w.wpe.rows(), w.wpe.cols(), config.n_ctx, C);
  if (static_cast<index_t>(w.blocks.size()) != config.n_layer) {
    throw shape_error(detail::concat("weights: ", w.blocks.size(),
                                     " blocks, config has n_layer = ", config.n_layer));
  }
  const auto vec = [&](const std::string& name, const row_vector<Scalar>& v, index_t n) {
    expect_shape(name, 1, v.size(), 1, n);
  };
  for (std::size_t i = 0; i < w.blocks.size(); ++i) {
    const auto& b = w.blocks[i];
    const std::string p = "h." + std::to_string(i) + ".";
    vec(p + "ln_1.weight", b.ln_1.gain, C);
    vec(p + "ln_1.bias", b.ln_1.bias, C);
    expect_shape(p + "attn.c_attn.weight", b.attn.qkv.weight.rows(), b.attn.qkv.weight.cols(), C,
                 3 * C);
    vec(p + "attn.c_attn.bias", b.attn.qkv.bias, 3 * C);
    expect_shape(p + "attn.c_proj.weight", b.attn.proj.weight.rows(), b.attn.proj.weight.cols(), C,
                 C);
    vec(p + "attn.c_proj.bias", b.attn.proj.bias, C);
    vec(p + "ln_2.weight", b.ln_2.gain, C);
    vec(p + "ln_2.bias", b.ln_2.bias, C);
    expect_shape(p + "mlp.c_fc.weight", b.mlp.fc.weight.rows(), b.mlp.fc.weight.cols(), C, H);
    vec(p + "mlp.c_fc.bias", b.mlp.fc.bias, H);
    expect_shape(p + "mlp.c_proj.weight", b.mlp.proj.weight.rows(), b.mlp.proj.weight.cols(), H, C);
    vec(p + "mlp.c_proj.bias", b.mlp.proj.bias, C);
  }
  vec("ln_f.weight", w.ln_f.gain, C);
  vec("ln_f.bias", w.ln_f.bias, C);
  if (!w.tied_lm_head()) expect_shape("lm_head.weight", w.lm_head.rows(), w.lm_head.cols(), V, C);
}

/// GPT-2's initialisation: N(0, 0.02) matrices, residual projections scaled by 1/sqrt(2 n_layer),
/// LayerNorm gain 1 and bias 0. For building models from code and for benchmarks.
template <class Scalar>
basic_model_weights<Scalar> init_gpt2_weights(const model_config& config, std::uint64_t seed) {
  config.validate();
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

}  // namespace eigenformer
