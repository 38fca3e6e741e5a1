// The whole GPT-2 124M forward pass (random weights), T = 64, 256, 1024 tokens.
//   ./build/bench_model --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// "prefill": logits of the last position only (what generation needs);
// "all_logits": the [T x V] logits of every position as well.
#include "bench_common.hpp"

namespace {

void run_forward(benchmark::State& state, bench::ef::logits_for rows) {
  const auto& c = bench::gpt2_config();
  const auto& w = bench::gpt2_weights();
  const auto T = state.range(0);
  std::vector<bench::ef::token_id> tokens(static_cast<size_t>(T));
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = bench::ef::token_id((i * 7919) % 50257);
  bench::ef::basic_activations<float> acts(c, T, rows);
  for (auto _ : state) {
    const auto logits = bench::ef::forward(c, w, tokens, acts, rows);
    benchmark::DoNotOptimize(logits.data());
  }
  const auto lm_rows = rows == bench::ef::logits_for::all_positions ? T : 1;
  bench::set_counters(state, double(T), bench::ef::forward_flops(c, 0, T, lm_rows));
}

void BM_Prefill(benchmark::State& state) {
  run_forward(state, bench::ef::logits_for::last_position);
}
void BM_AllLogits(benchmark::State& state) {
  run_forward(state, bench::ef::logits_for::all_positions);
}

// One decoding step (KV cache, last-position logits) after a prompt of state.range(0) tokens;
// the cache is truncated back after each step so every iteration decodes at the same length.
void BM_Decode(benchmark::State& state) {
  const auto& c = bench::gpt2_config();
  const auto& w = bench::gpt2_weights();
  const auto n_prompt = state.range(0);
  std::vector<bench::ef::token_id> prompt(static_cast<size_t>(n_prompt));
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = bench::ef::token_id((i * 7919) % 50257);
  bench::ef::kv_cache cache(c);
  bench::ef::activations prefill_acts(c, n_prompt, bench::ef::logits_for::last_position);
  bench::ef::forward(c, w, cache, prompt, prefill_acts);
  bench::ef::activations acts(c, 1, bench::ef::logits_for::last_position);
  const std::vector<bench::ef::token_id> next{464};
  for (auto _ : state) {
    const auto logits = bench::ef::forward(c, w, cache, next, acts);
    benchmark::DoNotOptimize(logits.data());
    cache.truncate(n_prompt);
  }
  bench::set_counters(state, 1.0, bench::ef::forward_flops(c, n_prompt, 1, 1));
  state.counters["weight_GB/s"] = benchmark::Counter(bench::ef::decode_weight_bytes(c, 4.0) * 1e-9,
                                                     benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_Decode)->Arg(128)->Arg(896)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_Prefill)->Arg(64)->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_AllLogits)->Arg(64)->Arg(256)->Unit(benchmark::kMillisecond)->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
