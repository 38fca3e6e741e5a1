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
  std::vector<kv_cache_layer<Scalar>> layers;  // n_layer entries, [capacity x G d] keys/values
  index_t n_past = 0;                          // tokens stored so far

  basic_kv_cache() = default;
  /// Room for `capacity` tokens (0: the model's whole context, n_ctx).
  explicit basic_kv_cache(const model_config& config, index_t capacity = 0) {
    config.validate();
    if (capacity < 0 || capacity > config.n_ctx) {
      throw shape_error(detail::concat("kv_cache: capacity ", capacity,
                                       " is outside [0, n_ctx = ", config.n_ctx, "]"));
    }
    if (capacity == 0) capacity = config.n_ctx;
    layers.resize(static_cast<std::size_t>(config.n_layer));
    for (auto& layer : layers) {  // only the key/value heads are stored (grouped-query attention)
      layer.keys.resize(capacity, config.kv_width());
      layer.values.resize(capacity, config.kv_width());
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
