// One training step — forward, backward and AdamW — at the GPT-2 124M shape (B = 4, T = 64) and
// at the demo model's shape (4 layers, C = 128, bytes vocabulary, B = 16, T = 128).
//   ./build/bench_train --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
// GFLOP/s counts the usual 3x forward FLOPs (the backward pass does two products per forward
// one), LM head included; AdamW and the element-wise work are not counted.
#include <random>

#include <eigenformer/train/trainer.hpp>

#include "bench_common.hpp"

namespace {

void run_train_step(benchmark::State& state, const bench::ef::model_config& c) {
  const auto B = state.range(0), T = state.range(1);
  auto w = bench::ef::init_gpt2_weights<float>(c, 1234);
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
  for (auto _ : state) {
    bench::ef::set_zero(c, grads);
    const double loss = bench::ef::training_forward(c, w, tokens, targets, acts);
    bench::ef::training_backward(c, w, tokens, targets, acts, grads);
    bench::ef::adamw_step(c, w, grads, adam, options, 1e-4);
    benchmark::DoNotOptimize(loss);
  }
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

BENCHMARK(BM_TrainStepGPT2)->Args({4, 64})->Unit(benchmark::kMillisecond)->MinTime(3.0);
BENCHMARK(BM_TrainStepDemo)->Args({16, 128})->Unit(benchmark::kMillisecond)->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
