// examples/model_shapes.hpp — the real dimensions of well-known models, with random weights,
// for the benchmarks (`eigenformer bench --shape`, `eigenformer bench-parallel --shape`).
#pragma once

#include <string>
#include <vector>

#include "cli_common.hpp"

namespace eigenformer_cli {

/// A Llama-family shape from the model's config.json (sizes only; the weights are random).
inline ef::model_config llama_shape(const char* type, ef::index_t layers, ef::index_t hidden,
                                    ef::index_t inner, ef::index_t heads, ef::index_t kv_heads,
                                    ef::index_t vocab, ef::index_t ctx, double theta) {
  ef::model_config c = ef::model_config::llama();
  c.model_type = type;
  c.n_layer = layers, c.n_embd = hidden, c.n_inner = inner, c.n_head = heads;
  c.n_kv_head = kv_heads, c.vocab_size = vocab, c.n_ctx = ctx, c.rope.theta = theta;
  return c;
}

struct named_shape {
  const char* name;
  ef::model_config config;
  bool tied;
};

inline const std::vector<named_shape>& shapes() {
  static const std::vector<named_shape> list = [] {
    std::vector<named_shape> l;
    ef::model_config gpt2 = ef::model_config::gpt2_124m();
    l.push_back({"gpt2", gpt2, true});
    ef::model_config medium = gpt2;
    medium.n_layer = 24, medium.n_head = 16, medium.n_embd = 1024;
    l.push_back({"gpt2-medium", medium, true});
    ef::model_config tiny = gpt2;
    tiny.n_layer = 2, tiny.n_head = 4, tiny.n_embd = 64;
    l.push_back({"tiny", tiny, true});
    l.push_back(
        {"smollm2-135m", llama_shape("llama", 30, 576, 1536, 9, 3, 49152, 8192, 100000.0), true});
    l.push_back(
        {"smollm2-360m", llama_shape("llama", 32, 960, 2560, 15, 5, 49152, 8192, 100000.0), true});
    auto qwen25 = llama_shape("qwen2", 24, 896, 4864, 14, 2, 151936, 32768, 1e6);
    qwen25.qkv_bias = true;
    qwen25.layer_norm_epsilon = 1e-6;
    l.push_back({"qwen2.5-0.5b", qwen25, true});
    auto qwen3 = llama_shape("qwen3", 28, 1024, 3072, 16, 8, 151936, 40960, 1e6);
    qwen3.head_size = 128;
    qwen3.qk_norm = true;
    qwen3.layer_norm_epsilon = 1e-6;
    l.push_back({"qwen3-0.6b", qwen3, true});
    auto llama32 = llama_shape("llama", 16, 2048, 8192, 32, 8, 128256, 131072, 500000.0);
    llama32.rope.scaling = ef::rope_scaling_kind::llama3;
    llama32.rope.factor = 32.0;
    llama32.rope.original_context = 8192;
    l.push_back({"llama-3.2-1b", llama32, true});
    l.push_back({"tinyllama-1.1b",
                 llama_shape("llama", 22, 2048, 5632, 32, 4, 32000, 2048, 10000.0), false});
    return l;
  }();
  return list;
}

inline std::string shape_names() {
  std::string names;
  for (const auto& s : shapes()) names += (names.empty() ? "" : ", ") + std::string(s.name);
  return names;
}

/// Random weights of a named shape.
inline ef::model random_model(const std::string& shape) {
  for (const auto& s : shapes()) {
    if (shape != s.name) continue;
    ef::model m;
    m.config = s.config;
    m.weights = s.config.positions == ef::position_kind::rotary
                    ? ef::init_llama_weights<float>(s.config, 1, s.tied)
                    : ef::init_gpt2_weights<float>(s.config, 1);
    return m;
  }
  throw usage_error("--shape '" + shape + "' is not one of " + shape_names());
}

}  // namespace eigenformer_cli
