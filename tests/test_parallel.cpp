// Threads split work over output blocks only, so results are bit-identical for any thread count.
#include <gtest/gtest.h>

#include <cstring>

#include <eigenformer/eigenformer.hpp>

#include "reference.hpp"

namespace {

using eigenformer::token_id;

template <class S>
eigenformer::matrix<S> logits_with_threads(int threads, const eigenformer::model_config& c,
                                           const eigenformer::basic_model_weights<S>& w,
                                           const std::vector<token_id>& tokens, bool cached) {
  eigenformer::set_num_threads(threads);
  eigenformer::basic_activations<S> acts(c, c.n_ctx);  // scratch sized for this thread count
  eigenformer::matrix<S> out;
  if (cached) {  // prefill half, then token by token
    eigenformer::basic_kv_cache<S> cache(c);
    const size_t half = tokens.size() / 2;
    out = eigenformer::forward(c, w, cache, {tokens.begin(), tokens.begin() + long(half)}, acts,
                               eigenformer::logits_for::all_positions);
    for (size_t i = half; i < tokens.size(); ++i) {
      const eigenformer::matrix<S> row = eigenformer::forward(c, w, cache, {tokens[i]}, acts);
      out.conservativeResize(out.rows() + 1, Eigen::NoChange);
      out.bottomRows(1) = row;
    }
  } else {
    out = eigenformer::forward(c, w, tokens, acts);
  }
  return out;
}

template <class Scalar>
class Parallel : public ::testing::Test {};
TYPED_TEST_SUITE(Parallel, ref::scalar_types);

TYPED_TEST(Parallel, LogitsAreBitIdenticalForEveryThreadCount) {
  using S = TypeParam;
  eigenformer::model_config c;
  // Wide enough that every linear layer and the LM head have several column blocks.
  c.n_layer = 2, c.n_head = 6, c.n_embd = 192, c.vocab_size = 1000, c.n_ctx = 40;
  const auto w = ref::random_weights<S>(c, 3);
  ref::rng r(2);
  std::vector<token_id> tokens(30);
  for (auto& t : tokens) t = r.below(int(c.vocab_size));
  const int saved = eigenformer::num_threads();
  for (const bool cached : {false, true}) {
    const auto one = logits_with_threads<S>(1, c, w, tokens, cached);
    EXPECT_LT(ref::relative_error(one, ref::model_logits(c, w, tokens)),
              (std::is_same_v<S, float> ? 1e-5 : 1e-12));
    for (const int threads : {2, 3, 4}) {
      const auto many = logits_with_threads<S>(threads, c, w, tokens, cached);
      ASSERT_EQ(many.size(), one.size());
      EXPECT_EQ(std::memcmp(one.data(), many.data(), sizeof(S) * size_t(one.size())), 0)
          << threads << " threads, cached = " << cached;
    }
  }
  eigenformer::set_num_threads(saved);
}

TEST(Parallel, PackedBf16LogitsAreBitIdenticalForEveryThreadCount) {
  eigenformer::model_config c;
  c.n_layer = 2, c.n_head = 6, c.n_embd = 192, c.vocab_size = 1000, c.n_ctx = 40;
  ref::rng r(4);
  std::vector<token_id> tokens(30);
  for (auto& t : tokens) t = r.below(int(c.vocab_size));
  const int saved = eigenformer::num_threads();
  for (const auto compute : {eigenformer::bf16_compute::float_activations,
                             eigenformer::bf16_compute::bf16_activations}) {
    auto w = ref::random_weights<float>(c, 3);
    eigenformer::pack_weights_bf16(w, compute);
    for (const bool cached : {false, true}) {
      const auto one = logits_with_threads<float>(1, c, w, tokens, cached);
      for (const int threads : {2, 3}) {
        const auto many = logits_with_threads<float>(threads, c, w, tokens, cached);
        EXPECT_EQ(std::memcmp(one.data(), many.data(), sizeof(float) * size_t(one.size())), 0)
            << threads << " threads, cached = " << cached;
      }
    }
  }
  eigenformer::set_num_threads(saved);
}

TEST(Parallel, TrainingStepsAreBitIdenticalForEveryThreadCount) {
  // Forward, backward (every layer's, the LM head's over > 1 vocabulary block) and AdamW.
  eigenformer::model_config c;
  c.n_layer = 2, c.n_head = 4, c.n_embd = 64, c.vocab_size = 500, c.n_ctx = 16;
  std::vector<token_id> text(400);
  ref::rng r(5);
  for (auto& t : text) t = r.below(int(c.vocab_size));
  eigenformer::training_options o;
  o.batch = 3, o.seq_len = 16, o.grad_accum = 2, o.seed = 9;
  o.schedule = {1e-3, 1e-4, 2, 4};
  const int saved = eigenformer::num_threads();
  std::vector<double> losses[3];
  eigenformer::model_weights w[3];
  for (int threads = 1; threads <= 3; ++threads) {
    eigenformer::set_num_threads(threads);
    auto& weights = w[threads - 1];
    weights = eigenformer::init_gpt2_weights<float>(c, 8);
    eigenformer::trainer t(c, weights, o);
    for (int step = 0; step < 4; ++step) losses[threads - 1].push_back(t.step(text).loss);
  }
  eigenformer::set_num_threads(saved);
  for (int k = 1; k < 3; ++k) {
    EXPECT_EQ(losses[0], losses[k]) << k + 1 << " threads";
    EXPECT_EQ(w[0].wte, w[k].wte) << k + 1 << " threads";
    EXPECT_EQ(w[0].blocks[1].attn.qkv.weight, w[k].blocks[1].attn.qkv.weight);
    EXPECT_EQ(w[0].blocks[0].mlp.fc.bias, w[k].blocks[0].mlp.fc.bias);
  }
}

}  // namespace
