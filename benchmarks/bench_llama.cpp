// The Llama family's blocks at the SmolLM2-135M shape (C = 576, 9 query heads and 3 key/value
// heads of d = 64, SwiGLU width 1536), T = 1 (decoding), 64, 256:
//   ./build/bench_llama --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <random>

#include "bench_common.hpp"

namespace {

using bench::ef::index_t;
using bench::ef::matrix;
using bench::random_activations;

const bench::ef::model_config& smollm2_config() {
  static const bench::ef::model_config config = [] {
    auto c = bench::ef::model_config::llama();
    c.n_layer = 1, c.n_embd = 576, c.n_inner = 1536, c.n_head = 9, c.n_kv_head = 3;
    c.vocab_size = 49152, c.n_ctx = 8192, c.rope.theta = 100000.0;
    return c;
  }();
  return config;
}

const bench::ef::basic_model_weights<float>& smollm2_layer() {
  static const auto weights = bench::ef::init_llama_weights<float>(smollm2_config(), 99);
  return weights;
}

void BM_RmsNorm(benchmark::State& state) {
  const index_t T = state.range(0), C = smollm2_config().n_embd;
  const auto x = random_activations(T, C);
  matrix<float> out(T, C);
  const auto& gain = smollm2_layer().blocks[0].ln_1.gain;
  for (auto _ : state) {
    bench::ef::rms_norm_forward<float>(x, gain, 1e-5f, out);
    benchmark::DoNotOptimize(out.data());
  }
  bench::set_counters(state, double(T), 4.0 * double(T * C));
}

void BM_Rope(benchmark::State& state) {  // q and k of one layer, tables filled once per call
  const auto& c = smollm2_config();
  const index_t T = state.range(0);
  auto qk = random_activations(T, c.q_width() + c.kv_width());
  bench::ef::rope_tables<float> tables(T, c.rope, c.head_dim());
  for (auto _ : state) {
    bench::ef::rope_fill_tables<float>(100, T, tables);
    bench::ef::rope_apply_inplace<float>(qk.leftCols(c.q_width()), c.n_head, tables.cos,
                                         tables.sin);
    bench::ef::rope_apply_inplace<float>(qk.rightCols(c.kv_width()), c.kv_heads(), tables.cos,
                                         tables.sin);
    benchmark::DoNotOptimize(qk.data());
  }
  bench::set_counters(state, double(T), 6.0 * double(T * (c.q_width() + c.kv_width()) / 2));
}

void BM_SwigluMlp(benchmark::State& state) {
  const auto& c = smollm2_config();
  const index_t T = state.range(0), C = c.n_embd;
  const auto x = random_activations(T, C);
  matrix<float> hidden(T, c.mlp_fc_width()), out(T, C);
  for (auto _ : state) {
    bench::ef::swiglu_mlp_forward<float>(x, smollm2_layer().blocks[0].mlp, hidden, out);
    benchmark::DoNotOptimize(out.data());
  }
  bench::set_counters(state, double(T), 2.0 * 3.0 * double(T * C * c.mlp_hidden()));
}

// Grouped-query self-attention with RoPE through a KV cache holding `depth` = 128 earlier tokens
// (for T = 1 this is one decoding step): projections, rotation, attention over 3 kv heads.
void BM_GqaAttention(benchmark::State& state) {
  const auto& c = smollm2_config();
  const index_t T = state.range(0), C = c.n_embd, depth = 128;
  const auto config = bench::ef::block_config_of(c).attention;
  const auto x = random_activations(T, C);
  bench::ef::attention_scratch<float> scratch(T, config);
  bench::ef::kv_cache_layer<float> cache{random_activations(depth + T, c.kv_width()),
                                         random_activations(depth + T, c.kv_width())};
  bench::ef::rope_tables<float> tables(T, c.rope, c.head_dim());
  bench::ef::rope_fill_tables<float>(depth, T, tables);
  matrix<float> out(T, C);
  for (auto _ : state) {
    bench::ef::causal_self_attention_forward<float>(x, smollm2_layer().blocks[0].attn, config,
                                                    scratch, out, nullptr, &cache, depth, &tables);
    benchmark::DoNotOptimize(out.data());
  }
  const double pairs = double(T) * double(depth) + double(T) * double(T + 1) / 2;
  bench::set_counters(state, double(T),
                      2.0 * double(T) * double(C) * double(c.qkv_width() + c.q_width()) +
                          4.0 * double(c.q_width()) * pairs);
}

}  // namespace

#define EIGENFORMER_LLAMA_SIZES ->Arg(1)->Arg(64)->Arg(256)->Unit(benchmark::kMicrosecond)
BENCHMARK(BM_RmsNorm) EIGENFORMER_LLAMA_SIZES;
BENCHMARK(BM_Rope) EIGENFORMER_LLAMA_SIZES;
BENCHMARK(BM_SwigluMlp) EIGENFORMER_LLAMA_SIZES;
BENCHMARK(BM_GqaAttention) EIGENFORMER_LLAMA_SIZES;

BENCHMARK_MAIN();
