// Per-component benchmarks at the GPT-2 124M shape (C = 768, 12 heads), T = 64, 256, 1024.
//   ./build/bench_ops --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <random>

#include "bench_common.hpp"

namespace {

using bench::random_activations;
using bench::ef::index_t;
using bench::ef::matrix;

void BM_LayerNorm(benchmark::State& state) {
  const index_t T = state.range(0), C = bench::gpt2_config().n_embd;
  const auto x = random_activations(T, C);
  matrix<float> out(T, C);
  const auto& w = bench::gpt2_weights().blocks[0].ln_1;
  for (auto _ : state) {
    bench::ef::layer_norm_forward<float>(x, w, 1e-5f, out);
    benchmark::DoNotOptimize(out.data());
  }
  bench::set_counters(state, double(T), 8.0 * double(T * C));
}

void BM_CausalSoftmax(benchmark::State& state) {
  const index_t T = state.range(0);
  const auto scores = random_activations(T, T);
  matrix<float> work(T, T);
  for (auto _ : state) {
    work = scores;
    bench::ef::causal_softmax_rows_inplace<float>(work, 0);
    benchmark::DoNotOptimize(work.data());
  }
  bench::set_counters(state, double(T), 0.0);
}

void BM_Gelu(benchmark::State& state) {
  const index_t T = state.range(0), H = 4 * bench::gpt2_config().n_embd;
  const auto x = random_activations(T, H);
  matrix<float> work(T, H);
  for (auto _ : state) {
    work = x;
    bench::ef::gelu_tanh_inplace<float>(work);
    benchmark::DoNotOptimize(work.data());
  }
  bench::set_counters(state, double(T), 0.0);
}

void BM_Attention(benchmark::State& state) {
  const auto& c = bench::gpt2_config();
  const index_t T = state.range(0), C = c.n_embd;
  const auto x = random_activations(T, C);
  bench::ef::attention_scratch<float> scratch(T, C);
  matrix<float> out(T, C);
  const auto& w = bench::gpt2_weights().blocks[0].attn;  // built before timing starts
  for (auto _ : state) {
    bench::ef::causal_self_attention_forward<float>(x, w, c.n_head, scratch, out);
    benchmark::DoNotOptimize(out.data());
  }
  const double t = double(T), ch = double(C);
  bench::set_counters(state, t, 8.0 * ch * ch * t + 2.0 * t * (t + 1) * ch);
}

// The attention core alone (12 heads of d = 64, causal, no projections) on a synthetic
// n_ctx = 4096 shape: the tiled online softmax against PyTorch's eager attention
// (benchmarks/compare_torch.py). FLOPs: the causal half of Q K^T and P V.
void BM_AttentionCore(benchmark::State& state) {
  const index_t T = state.range(0), C = 768, H = 12;
  const auto q = random_activations(T, C), k = random_activations(T, C),
             v = random_activations(T, C);
  bench::ef::attention_scratch<float> scratch(1, C);
  matrix<float> out(T, C);
  for (auto _ : state) {
    bench::ef::causal_attention_head_groups<float>(
        q, k, v, bench::ef::attention_config::multi_head(H, C), 0, scratch.scores, out, nullptr);
    benchmark::DoNotOptimize(out.data());
  }
  const double t = double(T);
  bench::set_counters(state, t, 2.0 * t * (t + 1) * double(C));
}

void BM_Mlp(benchmark::State& state) {
  const auto& c = bench::gpt2_config();
  const index_t T = state.range(0), C = c.n_embd;
  const auto x = random_activations(T, C);
  matrix<float> hidden(T, 4 * C), out(T, C);
  const auto& w = bench::gpt2_weights().blocks[0].mlp;  // built before timing starts
  for (auto _ : state) {
    bench::ef::mlp_forward<float>(x, w, hidden, out);
    benchmark::DoNotOptimize(out.data());
  }
  bench::set_counters(state, double(T), 16.0 * double(C) * double(C) * double(T));
}

void BM_Block(benchmark::State& state) {
  const auto& c = bench::gpt2_config();
  const index_t T = state.range(0), C = c.n_embd;
  const auto x0 = random_activations(T, C);
  matrix<float> x(T, C);
  bench::ef::block_scratch<float> scratch(T, C, c.mlp_hidden());
  const auto& w = bench::gpt2_weights().blocks[0];  // built before timing starts
  for (auto _ : state) {
    x = x0;
    bench::ef::block_forward<float>(x, w, c.n_head, 1e-5f, scratch);
    benchmark::DoNotOptimize(x.data());
  }
  auto one_layer = c;
  one_layer.n_layer = 1;
  bench::set_counters(state, double(T), bench::forward_flops(one_layer, double(T)));
}

// The MLP's first linear layer [768 x 3072], stored as f32 (0), bf16 (1) or bf16 with bf16
// activations (2); T = 1 is a decoding step (reported as weight GB/s), larger T a prefill GEMM.
void BM_Linear(benchmark::State& state) {
  const index_t T = state.range(0);
  const auto& w = bench::gpt2_weights().blocks[0].mlp.fc;
  const auto x = random_activations(T, w.in_features());
  matrix<float> out(T, w.out_features());
  const int dtype = static_cast<int>(state.range(1));
  const auto packed =
      bench::ef::pack_bf16(w.weight, dtype == 2 ? bench::ef::bf16_compute::bf16_activations
                                                : bench::ef::bf16_compute::float_activations);
  for (auto _ : state) {
    if (dtype == 0) {
      bench::ef::linear_forward<float>(x, w, out);
    } else {
      bench::ef::bf16_matmul(x, packed, w.bias.data(), out);
    }
    benchmark::DoNotOptimize(out.data());
  }
  const double weights = double(w.weight.size());
  bench::set_counters(state, double(T), 2.0 * double(T) * weights);
  state.counters["weight GB/s"] = benchmark::Counter(weights * (dtype == 0 ? 4 : 2) * 1e-9,
                                                     benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(dtype == 0 ? "f32" : dtype == 1 ? "bf16" : "bf16mix");
}

// The same layer [768 x 3072] in quantized blocks (type = ggml's number: 8 q8_0, 2 q4_0, 6 q5_0,
// 7 q5_1, 12 q4_k, 13 q5_k, 14 q6_k), quantized with ggml's rounding. GB/s counts the blocks'
// bytes.
void BM_QuantLinear(benchmark::State& state) {
  const index_t T = state.range(0);
  const auto type = static_cast<bench::ef::quant_type>(state.range(1));
  const auto& w = bench::gpt2_weights().blocks[0].mlp.fc;
  const bench::ef::quantized_matrix q = bench::ef::quantize_matrix(w.weight, type);
  const auto x = random_activations(T, w.in_features());
  matrix<float> out(T, w.out_features());
  for (auto _ : state) {
    bench::ef::quant_matmul(x, q, w.bias.data(), out);
    benchmark::DoNotOptimize(out.data());
  }
  const double weights = double(w.weight.size());
  bench::set_counters(state, double(T), 2.0 * double(T) * weights);
  state.counters["weight GB/s"] =
      benchmark::Counter(double(q.bytes()) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(bench::ef::traits_of(type).name);
}

#define EIGENFORMER_SIZES ->Arg(64)->Arg(256)->Arg(1024)->Unit(benchmark::kMicrosecond)
BENCHMARK(BM_LayerNorm) EIGENFORMER_SIZES;
BENCHMARK(BM_CausalSoftmax) EIGENFORMER_SIZES;
BENCHMARK(BM_Gelu) EIGENFORMER_SIZES;
BENCHMARK(BM_Attention) EIGENFORMER_SIZES;
BENCHMARK(BM_AttentionCore)->Arg(1024)->Arg(4096)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Mlp) EIGENFORMER_SIZES;
BENCHMARK(BM_Block) EIGENFORMER_SIZES;
BENCHMARK(BM_Linear)
    ->ArgsProduct({{1, 256}, {0, 1, 2}})
    ->ArgNames({"T", "dtype"})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_QuantLinear)
    ->ArgsProduct({{1, 64, 256}, {8, 2, 6, 7, 12, 13, 14}})
    ->ArgNames({"T", "type"})
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
