// One training step — forward, backward and AdamW — at the GPT-2 124M shape (B = 4, T = 64), at
// the demo model's shape (4 layers, C = 128, bytes vocabulary, B = 16, T = 128) and at the
// SmolLM2-135M shape (B = 4, T = 64).
//   ./build/bench_train --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
// GFLOP/s counts the usual 3x forward FLOPs (the backward pass does two products per forward
// one), LM head included; AdamW and the element-wise work are not counted.
#include <random>

#include <eigenformer/train/trainer.hpp>

#include "bench_common.hpp"

namespace {

void run_train_step(benchmark::State& state, const bench::ef::model_config& c) {
  const auto B = state.range(0), T = state.range(1);
  auto w = c.positions == bench::ef::position_kind::rotary
               ? bench::ef::init_llama_weights<float>(c, 1234)
               : bench::ef::init_gpt2_weights<float>(c, 1234);
  auto grads = bench::ef::zeros_like(c, w);
  bench::ef::adamw_state adam(c, w);
  bench::ef::training_activations acts(c, B, T);
  std::mt19937_64 rng(1);
  std::vector<bench::ef::token_id> tokens(std::size_t(B * T)), targets(tokens.size());
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = bench::ef::token_id(rng() % std::uint64_t(c.vocab_size));
    targets[i] = bench::ef::token_id(rng() % std::uint64_t(c.vocab_size));
  }
  const bench::ef::adamw_options options;
  const auto step = [&] {
    bench::ef::set_zero(c, grads);
    const double loss = bench::ef::training_forward(c, w, tokens, targets, acts);
    bench::ef::training_backward(c, w, tokens, targets, acts, grads);
    bench::ef::adamw_step(c, w, grads, adam, options, 1e-4);
    return loss;
  };
  step();  // untimed: the first step touches every buffer's pages for the first time
  for (auto _ : state) benchmark::DoNotOptimize(step());
  bench::set_counters(state, double(B * T), 3.0 * double(B) * bench::ef::forward_flops(c, 0, T, T));
}

void BM_TrainStepGPT2(benchmark::State& state) {
  run_train_step(state, bench::gpt2_config());
}

void BM_TrainStepDemo(benchmark::State& state) {
  bench::ef::model_config c;
  c.n_layer = 4, c.n_head = 4, c.n_embd = 128, c.vocab_size = 257, c.n_ctx = 128;
  run_train_step(state, c);
}

/// SmolLM2-135M (a Llama: 30 layers, C = 576, 9 query / 3 key-value heads, SwiGLU 1536, tied
/// 49152-token head).
void BM_TrainStepSmolLM2(benchmark::State& state) {
  auto c = bench::ef::model_config::llama();
  c.n_layer = 30, c.n_embd = 576, c.n_inner = 1536, c.n_head = 9, c.n_kv_head = 3;
  c.vocab_size = 49152, c.n_ctx = 2048, c.rope.theta = 100000.0;
  run_train_step(state, c);
}

/// The same step through the trainer that `eigenformer train` runs: batch sampling, the two
/// half-batch shards a single process computes (so that it equals two MPI ranks bit for bit),
/// clipping and AdamW.
void BM_TrainerStepSmolLM2(benchmark::State& state) {
  auto c = bench::ef::model_config::llama();
  c.n_layer = 30, c.n_embd = 576, c.n_inner = 1536, c.n_head = 9, c.n_kv_head = 3;
  c.vocab_size = 49152, c.n_ctx = 2048, c.rope.theta = 100000.0;
  const auto B = state.range(0), T = state.range(1);
  auto w = bench::ef::init_llama_weights<float>(c, 1234);
  bench::ef::training_options options;
  options.batch = B, options.seq_len = T;
  options.schedule = {1e-4, 1e-5, 10, 1000};
  bench::ef::trainer trainer(c, w, options);
  std::mt19937_64 rng(1);
  std::vector<bench::ef::token_id> corpus(100000);
  for (auto& t : corpus) t = bench::ef::token_id(rng() % std::uint64_t(c.vocab_size));
  trainer.step(corpus);  // untimed: the first step touches every buffer's pages for the first time
  for (auto _ : state) benchmark::DoNotOptimize(trainer.step(corpus).loss);
  bench::set_counters(state, double(B * T), 3.0 * double(B) * bench::ef::forward_flops(c, 0, T, T));
}

BENCHMARK(BM_TrainStepGPT2)->Args({4, 64})->Unit(benchmark::kMillisecond)->MinTime(3.0);
BENCHMARK(BM_TrainStepDemo)->Args({16, 128})->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_TrainStepSmolLM2)->Args({4, 64})->Unit(benchmark::kMillisecond)->MinTime(3.0);
BENCHMARK(BM_TrainerStepSmolLM2)->Args({4, 64})->Unit(benchmark::kMillisecond)->MinTime(3.0);

}  // namespace

BENCHMARK_MAIN();
