// train/trainer.hpp (with train/data.hpp): a tiny model memorises a tiny text, reproducibly.
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <eigenformer/train/trainer.hpp>

namespace {

using eigenformer::index_t;
using eigenformer::token_id;

const std::string tiny_text =
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the "
    "age of foolishness. ";

std::vector<token_id> bytes_of(const std::string& s) {
  return std::vector<token_id>(s.begin(), s.end());
}

eigenformer::model_config tiny_model() {
  eigenformer::model_config c;
  c.n_layer = 2, c.n_head = 2, c.n_embd = 32, c.vocab_size = 128, c.n_ctx = 32;
  return c;
}

eigenformer::training_options tiny_options(index_t steps) {
  eigenformer::training_options o;
  o.batch = 4, o.seq_len = 32, o.seed = 42;
  o.adamw.weight_decay = 0.0;
  o.schedule = {1e-2, 1e-3, 10, steps};
  return o;
}

TEST(Trainer, TinyModelOverfitsATinyText) {
  // Stated target: from ~log(128) = 4.85 to below 0.25 nats per byte within 300 steps.
  const auto config = tiny_model();
  auto w = eigenformer::init_gpt2_weights<float>(config, 1);
  eigenformer::trainer t(config, w, tiny_options(300));
  const auto tokens = bytes_of(tiny_text + tiny_text);
  const double initial = t.evaluate(tokens, 2);
  EXPECT_NEAR(initial, std::log(128.0), 0.1);
  double last = 0;
  for (int s = 0; s < 300; ++s) last = t.step(tokens).loss;
  const double final_eval = t.evaluate(tokens, 2);
  EXPECT_LT(last, 0.25);
  EXPECT_LT(final_eval, 0.25);
}

TEST(Trainer, TheSameSeedReproducesTheRunBitForBit) {
  const auto config = tiny_model();
  const auto tokens = bytes_of(tiny_text);
  std::vector<double> losses[2];
  eigenformer::model_weights weights[2];
  for (int run = 0; run < 2; ++run) {
    weights[run] = eigenformer::init_gpt2_weights<float>(config, 3);
    eigenformer::trainer t(config, weights[run], tiny_options(5));
    for (int s = 0; s < 5; ++s) losses[run].push_back(t.step(tokens).loss);
  }
  EXPECT_EQ(losses[0], losses[1]);
  EXPECT_EQ(weights[0].wte, weights[1].wte);
  EXPECT_EQ(weights[0].blocks[1].mlp.fc.weight, weights[1].blocks[1].mlp.fc.weight);
}

TEST(Trainer, GradientAccumulationOfTwoHalvesEqualsOneBatch) {
  // Same samples either way: B = 4 in one micro-batch vs B = 2 twice from the same generator
  // stream (sample_batch draws one offset per sequence, in order).
  const auto config = tiny_model();
  const auto tokens = bytes_of(tiny_text);
  auto w1 = eigenformer::init_gpt2_weights<float>(config, 4), w2 = w1;
  auto whole = tiny_options(1), halves = tiny_options(1);
  halves.batch = 2, halves.grad_accum = 2;
  const auto r1 = eigenformer::trainer(config, w1, whole).step(tokens);
  const auto r2 = eigenformer::trainer(config, w2, halves).step(tokens);
  EXPECT_NEAR(r1.loss, r2.loss, 1e-6);
  EXPECT_NEAR(r1.grad_norm, r2.grad_norm, 1e-5 * r1.grad_norm);
  EXPECT_LT((w1.wte - w2.wte).cwiseAbs().maxCoeff(), 1e-6);
}

TEST(TrainingData, SplitKeepsTheTailForEvaluationAndChecksLength) {
  std::vector<token_id> t(100);
  for (int i = 0; i < 100; ++i) t[size_t(i)] = i;
  const auto s = eigenformer::split_tokens(t, 0.1, 8);
  ASSERT_EQ(s.train.size(), 90u);
  ASSERT_EQ(s.eval.size(), 10u);
  EXPECT_EQ(s.eval.front(), 90);
  EXPECT_THROW(eigenformer::split_tokens(t, 0.1, 10), eigenformer::value_error);
  EXPECT_THROW(eigenformer::split_tokens(t, 1.5, 2), eigenformer::value_error);
  std::mt19937_64 rng(1);
  std::vector<token_id> x, y;
  eigenformer::sample_batch(t, 3, 5, rng, x, y);
  for (int b = 0; b < 3; ++b) {
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(y[size_t(b * 5 + i)], x[size_t(b * 5 + i)] + 1);  // the next token
      if (i > 0) {
        EXPECT_EQ(x[size_t(b * 5 + i)], x[size_t(b * 5 + i - 1)] + 1);  // contiguous
      }
    }
  }
  EXPECT_THROW(eigenformer::sample_batch(std::vector<token_id>(5), 1, 5, rng, x, y),
               eigenformer::value_error);
}

// --- Data parallelism, with the ranks as threads of this process (MPI's version: ctest mpi) ---

/// R ranks in one process: sum() adds the ranks' buffers in rank order ((a0 + a1) + a2) + ...,
/// and every rank copies the same result.
class thread_group {
 public:
  explicit thread_group(int world) : world_(world), buffers_(std::size_t(world)) {}

  eigenformer::gradient_communicator communicator(int rank) {
    eigenformer::gradient_communicator c;
    c.rank = rank, c.world = world_;
    c.sum_float = [this, rank](float* data, index_t n) { sum(rank, data, n); };
    c.sum_double = [this, rank](double* data, index_t n) { sum(rank, data, n); };
    return c;
  }

 private:
  template <class T>
  void sum(int rank, T* data, index_t n) {
    buffers_[std::size_t(rank)] = data;
    barrier();
    std::vector<T> total(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) {
      T acc = static_cast<const T*>(buffers_[0])[i];
      for (int r = 1; r < world_; ++r) acc += static_cast<const T*>(buffers_[std::size_t(r)])[i];
      total[std::size_t(i)] = acc;
    }
    barrier();  // everyone has read every buffer
    std::copy(total.begin(), total.end(), data);
    barrier();
  }
  void barrier() {
    std::unique_lock<std::mutex> lock(mutex_);
    const long generation = generation_;
    if (++arrived_ == world_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != generation; });
    }
  }

  int world_;
  std::vector<const void*> buffers_;
  std::mutex mutex_;
  std::condition_variable cv_;
  int arrived_ = 0;
  long generation_ = 0;
};

/// Trains `world` ranks (threads) for `steps` steps; returns rank 0's weights and losses, and
/// checks that every rank ends with the same weights.
std::pair<eigenformer::model_weights, std::vector<double>> train_ranks(int world, int steps) {
  auto config = eigenformer::model_config::llama();
  config.n_layer = 2, config.n_head = 4, config.n_kv_head = 2, config.n_embd = 32;
  config.n_inner = 48, config.vocab_size = 128, config.n_ctx = 32;
  const auto tokens = bytes_of(tiny_text + tiny_text);
  auto options = tiny_options(steps);
  options.batch = 8, options.seq_len = 16, options.grad_accum = 2;
  thread_group group(world);
  std::vector<eigenformer::model_weights> weights(static_cast<std::size_t>(world));
  std::vector<std::vector<double>> losses(static_cast<std::size_t>(world));
  std::vector<std::thread> ranks;
  for (int r = 0; r < world; ++r) {
    ranks.emplace_back([&, r] {
      weights[std::size_t(r)] = eigenformer::init_llama_weights<float>(config, 5);
      eigenformer::trainer t(config, weights[std::size_t(r)], options, group.communicator(r));
      for (int s = 0; s < steps; ++s) losses[std::size_t(r)].push_back(t.step(tokens).loss);
    });
  }
  for (auto& t : ranks) t.join();
  for (int r = 1; r < world; ++r) {
    EXPECT_TRUE(weights[std::size_t(r)].wte == weights[0].wte) << "rank " << r;
    EXPECT_TRUE(weights[std::size_t(r)].blocks[1].attn.qkv.weight ==
                weights[0].blocks[1].attn.qkv.weight)
        << "rank " << r;
  }
  return {weights[0], losses[0]};
}

TEST(DataParallel, TwoRanksAreBitIdenticalToOneProcessAndFourWithinRounding) {
  const int threads = eigenformer::num_threads();
  eigenformer::set_num_threads(1);  // the ranks are the threads here
  const auto [one, one_losses] = train_ranks(1, 4);
  const auto [two, two_losses] = train_ranks(2, 4);
  const auto [four, four_losses] = train_ranks(4, 4);
  eigenformer::set_num_threads(threads);
  EXPECT_EQ(two_losses, one_losses);
  EXPECT_TRUE(two.wte == one.wte);
  EXPECT_TRUE(two.blocks[0].mlp.fc.weight == one.blocks[0].mlp.fc.weight);
  EXPECT_TRUE(two.blocks[1].attn.q_norm == one.blocks[1].attn.q_norm);
  for (std::size_t s = 0; s < one_losses.size(); ++s) {
    EXPECT_NEAR(four_losses[s], one_losses[s], 1e-6 * one_losses[s]);
  }
  const double scale = one.wte.cwiseAbs().maxCoeff();
  EXPECT_LT((four.wte - one.wte).cwiseAbs().maxCoeff(), 1e-5 * scale);
  EXPECT_FALSE(four.wte == one.wte);  // four shards sum in another order: not the same bits
}

TEST(DataParallel, ABatchThatDoesNotSplitOverTheRanksIsRefused) {
  const auto config = tiny_model();
  auto w = eigenformer::init_gpt2_weights<float>(config, 1);
  thread_group group(3);
  auto options = tiny_options(1);
  options.batch = 4;
  EXPECT_THROW(eigenformer::trainer(config, w, options, group.communicator(0)),
               eigenformer::value_error);
}

}  // namespace
