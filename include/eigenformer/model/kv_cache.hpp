// eigenformer/model/kv_cache.hpp — keys and values of every layer for one sequence.
//
// Prefill a prompt with one forward() call, then feed one token (or a chunk) per call: each call
// computes only the new rows and attends to the cached ones. The cache is sized once for n_ctx
// positions; feeding more raises shape_error — call reset() to start over, or truncate(n) to drop
// everything after the first n tokens (e.g. keep a prefix and re-feed a shortened tail).
// Each sequence (and each thread) owns its cache; the weights stay shared and const.
#pragma once

#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/layers/attention.hpp"
#include "eigenformer/model/config.hpp"

namespace eigenformer {

template <class Scalar>
struct basic_kv_cache {
  std::vector<kv_cache_layer<Scalar>> layers;  // n_layer entries, each [n_ctx x C] keys/values
  index_t n_past = 0;                          // tokens stored so far

  basic_kv_cache() = default;
  explicit basic_kv_cache(const model_config& config) {
    config.validate();
    layers.resize(static_cast<std::size_t>(config.n_layer));
    for (auto& layer : layers) {
      layer.keys.resize(config.n_ctx, config.n_embd);
      layer.values.resize(config.n_ctx, config.n_embd);
    }
  }

  index_t capacity() const { return layers.empty() ? 0 : layers.front().keys.rows(); }
  index_t remaining() const { return capacity() - n_past; }
  void reset() { n_past = 0; }
  void truncate(index_t n_tokens) {
    if (n_tokens < 0 || n_tokens > n_past) {
      throw value_error(
          detail::concat("kv_cache: cannot truncate ", n_past, " tokens to ", n_tokens));
    }
    n_past = n_tokens;
  }
};

using kv_cache = basic_kv_cache<float>;

}  // namespace eigenformer
