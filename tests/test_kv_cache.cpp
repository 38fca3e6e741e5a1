// Incremental decoding with a KV cache must equal full recomputation.
#include <gtest/gtest.h>

#include <thread>

#include <eigenformer/eigenformer.hpp>

#include "reference.hpp"

namespace {

using eigenformer::index_t;
using eigenformer::token_id;

template <class Scalar>
class KvCache : public ::testing::Test {};
TYPED_TEST_SUITE(KvCache, ref::scalar_types);

template <class S>
std::vector<eigenformer::basic_model<S>> test_models() {
  std::vector<eigenformer::basic_model<S>> models;
  for (const char* name : {"tiny_f32", "tiny_bf16_prefixed", "tiny_f16"})
    models.push_back(
        eigenformer::load_hf_gpt2<S>(std::string(EIGENFORMER_FIXTURES_DIR) + "/" + name));
  eigenformer::basic_model<S> random{ref::tiny_config<S>(), {}};
  random.weights = ref::random_weights<S>(random.config, 77, /*untied=*/true);
  models.push_back(random);
  return models;
}

template <class S>
index_t argmax(const eigenformer::matrix_cref<S>& row) {
  index_t best = 0;
  row.row(0).maxCoeff(&best);
  return best;
}

// Feeds the sequence in chunks after a prompt and compares every chunk's logits with the
// logits the full sequence gives at the same positions.
TYPED_TEST(KvCache, IncrementalLogitsEqualFullRecomputation) {
  using S = TypeParam;
  const double tolerance = std::is_same_v<S, float> ? 1e-5 : 1e-12;
  for (const auto& m : test_models<S>()) {
    const auto& c = m.config;
    ref::rng r(3);
    std::vector<token_id> sequence(size_t(c.n_ctx));
    for (auto& t : sequence) t = r.below(int(c.vocab_size));
    eigenformer::basic_activations<S> full_acts(c, c.n_ctx);
    const eigenformer::matrix<S> full = eigenformer::forward(c, m.weights, sequence, full_acts);

    for (const index_t prompt : {index_t(1), index_t(5), c.n_ctx - 2}) {
      for (const index_t chunk : {index_t(1), index_t(3)}) {
        eigenformer::basic_kv_cache<S> cache(c);
        eigenformer::basic_activations<S> acts(c, c.n_ctx);
        index_t pos = 0;
        while (pos < c.n_ctx) {
          const index_t n = pos == 0 ? prompt : std::min(chunk, c.n_ctx - pos);
          const std::vector<token_id> piece(sequence.begin() + pos, sequence.begin() + pos + n);
          const auto logits = eigenformer::forward(c, m.weights, cache, piece, acts,
                                                   eigenformer::logits_for::all_positions);
          ASSERT_EQ(logits.rows(), n);
          ref::grid expected;
          for (index_t i = 0; i < n; ++i) expected.push_back(ref::to_grid(full.row(pos + i))[0]);
          EXPECT_LT(ref::relative_error(logits, expected), tolerance)
              << "n_layer " << c.n_layer << " prompt " << prompt << " chunk " << chunk << " pos "
              << pos;
          pos += n;
          EXPECT_EQ(cache.n_past, pos);
        }
      }
    }
  }
}

TYPED_TEST(KvCache, GreedyTokensEqualRecomputingEverything) {
  using S = TypeParam;
  for (const auto& m : test_models<S>()) {
    const auto& c = m.config;
    std::vector<token_id> recomputed{1, 2, 3}, cached = recomputed;
    eigenformer::basic_activations<S> acts(c, c.n_ctx);
    eigenformer::basic_activations<S> step_acts(c, c.n_ctx, eigenformer::logits_for::last_position);
    eigenformer::basic_kv_cache<S> cache(c);
    std::vector<token_id> feed = cached;
    while (index_t(recomputed.size()) < c.n_ctx) {
      recomputed.push_back(token_id(argmax<S>(eigenformer::forward(
          c, m.weights, recomputed, acts, eigenformer::logits_for::last_position))));
      const auto logits = eigenformer::forward(c, m.weights, cache, feed, step_acts);
      cached.push_back(token_id(argmax<S>(logits)));
      feed = {cached.back()};
    }
    EXPECT_EQ(recomputed, cached);
  }
}

TYPED_TEST(KvCache, PastTheContextIsAClearErrorAndResetRecovers) {
  using S = TypeParam;
  eigenformer::basic_model<S> m{ref::tiny_config<S>(), {}};
  m.weights = ref::random_weights<S>(m.config, 5);
  eigenformer::basic_kv_cache<S> cache(m.config);
  eigenformer::basic_activations<S> acts(m.config, m.config.n_ctx);
  eigenformer::forward(m.config, m.weights, cache, std::vector<token_id>(10, 1), acts);
  EXPECT_EQ(cache.remaining(), 2);
  try {
    eigenformer::forward(m.config, m.weights, cache, std::vector<token_id>(3, 1), acts);
    FAIL();
  } catch (const eigenformer::shape_error& e) {
    EXPECT_STREQ(e.what(),
                 "forward: 10 cached + 3 new tokens exceed the context of 12 by 1 (reset() or "
                 "truncate() the cache)");
  }
  EXPECT_EQ(cache.n_past, 10);  // a refused call changes nothing
  cache.truncate(4);
  EXPECT_NO_THROW(
      eigenformer::forward(m.config, m.weights, cache, std::vector<token_id>(8, 1), acts));
  cache.reset();
  EXPECT_EQ(cache.n_past, 0);
  EXPECT_THROW(cache.truncate(1), eigenformer::value_error);
}

// The concurrency contract: one const model shared by 4 threads, each with its own KV cache,
// activations and sampler seed, gives exactly the tokens of the same requests run one after
// another (float and bf16-packed weights). Run under ThreadSanitizer in CI.
TEST(KvCacheThreads, ConcurrentRequestsEqualSequentialRequests) {
  auto config = ref::tiny_config<float>();
  for (const bool packed : {false, true}) {
    auto weights = ref::random_weights<float>(config, 9);
    if (packed)
      eigenformer::pack_weights_bf16(weights, eigenformer::bf16_compute::float_activations);
    const eigenformer::model m{config, std::move(weights)};
    const auto request = [&m](int id) {
      eigenformer::kv_cache cache(m.config);
      eigenformer::activations acts(m.config, m.config.n_ctx);
      eigenformer::sampling_params params;
      params.temperature = 0.9f, params.top_k = 20, params.top_p = 0.95f;
      params.repetition_penalty = 1.1f, params.seed = 100 + std::uint64_t(id);
      eigenformer::sampler sample(params);
      std::vector<token_id> out{token_id(id), token_id(3 * id + 1), token_id(7)};
      std::vector<token_id> feed = out;
      while (index_t(out.size()) < m.config.n_ctx) {
        const auto logits = eigenformer::forward(m.config, m.weights, cache, feed, acts);
        out.push_back(sample.sample(logits.row(0), out));
        feed = {out.back()};
      }
      return out;
    };
    std::vector<std::vector<token_id>> sequential, concurrent(4);
    for (int id = 0; id < 4; ++id) sequential.push_back(request(id));
    std::vector<std::thread> threads;
    for (int id = 0; id < 4; ++id) {
      threads.emplace_back([&, id] { concurrent[size_t(id)] = request(id); });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(sequential, concurrent) << (packed ? "bf16" : "f32");
    EXPECT_NE(sequential[0], sequential[1]);  // the seeds and prompts do make different requests
  }
}

}  // namespace
