#include <gtest/gtest.h>

#include <eigenformer/layers/block.hpp>

#include "reference.hpp"

namespace {

template <class Scalar>
class Block : public ::testing::Test {};
TYPED_TEST_SUITE(Block, ref::scalar_types);

TYPED_TEST(Block, PreLayerNormResidualMatchesNaiveLoops) {
  using S = TypeParam;
  const auto config = ref::tiny_config<S>();
  const auto weights = ref::random_weights<S>(config, 23);
  ref::rng r(1);
  const eigenformer::index_t T = 7;
  eigenformer::matrix<S> x = ref::random_matrix<S>(T, config.n_embd, r, 1.0);
  const auto expected = ref::block(ref::to_grid(x), weights.blocks[0], int(config.n_head), 1e-5);
  eigenformer::block_scratch<S> scratch(T, config.n_embd, config.mlp_hidden());
  eigenformer::block_forward<S>(x, weights.blocks[0], config.n_head, S(1e-5), scratch);
  EXPECT_LT(ref::relative_error(x, expected), (std::is_same_v<S, float> ? 1e-5 : 1e-12));
}

}  // namespace

#include "gradient_check.hpp"

namespace {

TEST(BlockBackward, MatchesFiniteDifferencesForEveryTensor) {
  const auto config = ref::tiny_config<double>();
  auto w = ref::random_weights<double>(config, 91).blocks[0];
  constexpr index_t B = 2, T = 4;
  const index_t C = config.n_embd;
  ref::rng r(92);
  eigenformer::matrix<double> x = ref::random_matrix<double>(B * T, C, r);
  const eigenformer::matrix<double> probe = ref::random_matrix<double>(B * T, C, r);
  eigenformer::block_activations<double> acts(B, T, C, config.n_head, config.mlp_hidden());
  const double eps = 1e-5;
  const auto loss = [&] {
    eigenformer::block_forward_train<double>(x, w, config.n_head, eps, acts);
    return gradcheck::probe_loss(acts.out, probe);
  };
  loss();
  // The training forward equals the inference forward, sequence by sequence.
  for (index_t b = 0; b < B; ++b) {
    const eigenformer::matrix<double> x_b = x.middleRows(b * T, T);
    EXPECT_LT(ref::relative_error(acts.out.middleRows(b * T, T),
                                  ref::block(ref::to_grid(x_b), w, int(config.n_head), eps)),
              1e-12);
  }
  auto grad = gradcheck::zero_block_like(w);
  eigenformer::block_backward_scratch<double> scratch(B, T, C, config.n_head, config.mlp_hidden());
  eigenformer::matrix<double> d_residual = probe;
  eigenformer::block_backward<double>(x, w, config.n_head, eps, acts, grad, scratch, d_residual);
  gradcheck::expect_block_gradients(w, grad, x, d_residual, loss);
}

/// A Llama-family block: RMSNorm, SwiGLU, grouped-query attention with rotary positions, and
/// optionally Qwen3's q/k norms, Qwen2's q/k/v biases and Mistral's window.
void check_llama_block(bool qk_norm, bool qkv_bias, index_t window) {
  auto config = eigenformer::model_config::llama();
  config.n_layer = 1, config.n_head = 4, config.n_kv_head = 2, config.n_embd = 12;
  config.head_size = 4, config.n_inner = 20, config.vocab_size = 11, config.n_ctx = 8;
  config.qk_norm = qk_norm, config.qkv_bias = qkv_bias, config.sliding_window = window;
  auto weights = eigenformer::init_llama_weights<double>(config, 93);
  gradcheck::randomize(config, weights, 94);
  auto& w = weights.blocks[0];
  const auto layer = eigenformer::block_config_of(config);
  constexpr index_t B = 2, T = 5;
  const index_t C = config.n_embd, fc_width = config.mlp_fc_width();
  eigenformer::rope_tables<double> rope(T, config.rope, config.head_dim());
  eigenformer::rope_fill_tables<double>(0, T, rope);
  ref::rng r(95);
  eigenformer::matrix<double> x = ref::random_matrix<double>(B * T, C, r);
  const eigenformer::matrix<double> probe = ref::random_matrix<double>(B * T, C, r);
  eigenformer::block_activations<double> acts(B, T, C, layer, fc_width, qk_norm);
  const auto loss = [&] {
    eigenformer::block_forward_train<double>(x, w, layer, &rope, acts);
    return gradcheck::probe_loss(acts.out, probe);
  };
  loss();
  // The training forward equals the inference block, sequence by sequence.
  for (index_t b = 0; b < B; ++b) {
    eigenformer::matrix<double> x_b = x.middleRows(b * T, T);
    eigenformer::block_scratch<double> scratch(T, C, layer.attention, fc_width);
    eigenformer::block_forward<double>(x_b, w, layer, scratch, nullptr, nullptr, 0, &rope);
    EXPECT_LT(ref::relative_error(acts.out.middleRows(b * T, T), ref::to_grid(x_b)), 1e-12);
  }
  auto grad = gradcheck::zero_block_like(w);
  eigenformer::block_backward_scratch<double> scratch(B, T, C, layer, fc_width, qk_norm);
  eigenformer::matrix<double> d_residual = probe;
  eigenformer::block_backward<double>(x, w, layer, &rope, acts, grad, scratch, d_residual);
  gradcheck::expect_block_gradients(w, grad, x, d_residual, loss);
}

TEST(BlockBackward, LlamaBlockMatchesFiniteDifferences) {
  check_llama_block(false, false, 0);
}
TEST(BlockBackward, Qwen3BlockWithQkNormsMatchesFiniteDifferences) {
  check_llama_block(true, false, 0);
}
TEST(BlockBackward, Qwen2BlockWithBiasesAndAWindowMatchesFiniteDifferences) {
  check_llama_block(false, true, 3);
}

}  // namespace
