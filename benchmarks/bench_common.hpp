// Shared helpers of the benchmarks: the GPT-2 124M shape with random weights.
#pragma once

#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include <eigenformer/eigenformer.hpp>

namespace bench {

namespace ef = eigenformer;

inline const ef::model_config& gpt2_config() {
  static const ef::model_config config = ef::model_config::gpt2_124m();
  return config;
}

inline const ef::basic_model_weights<float>& gpt2_weights() {
  static const auto weights = ef::init_gpt2_weights<float>(gpt2_config(), 1234);
  return weights;
}

/// A [rows x cols] matrix of N(0, 1) values, the same for every run.
inline ef::matrix<float> random_activations(ef::index_t rows, ef::index_t cols) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.f, 1.f);
  ef::matrix<float> m(rows, cols);
  for (ef::index_t i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
  return m;
}

/// FLOPs of a whole-sequence forward pass over T tokens without the LM head.
inline double forward_flops(const ef::model_config& c, double T) {
  return ef::forward_flops(c, 0, static_cast<ef::index_t>(T), 0);
}

inline void set_counters(benchmark::State& state, double tokens_per_iter, double flops_per_iter) {
  state.counters["tokens/s"] =
      benchmark::Counter(tokens_per_iter, benchmark::Counter::kIsIterationInvariantRate);
  if (flops_per_iter > 0) {  // element-wise ops (softmax, GELU) report tokens/s only
    state.counters["GFLOP/s"] =
        benchmark::Counter(flops_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  }
}

}  // namespace bench
