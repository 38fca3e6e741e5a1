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

/// The shape of a new model (`init`, `train`): GPT-2 or a Llama-family architecture.
struct architecture_options {
  std::string arch = "gpt2";  // gpt2 | llama | mistral | qwen2 | qwen3
  long long layers = 2, heads = 4, kv_heads = 0, head_dim = 0, embd = 64, inner = 0, ctx = 128,
            window = 0;
  double rope_theta = 0;  // 0: the family's default (10000 for llama/mistral, 1e6 for Qwen)

  /// Adds --arch, --layers, ... to `cmd`; each excludes `exclude` when given (train --init).
  void add_to(CLI::App& cmd, CLI::Option* exclude = nullptr) {
    const auto add = [&](const char* name, auto& value, const char* help) {
      auto* o = cmd.add_option(name, value, help);
      if (exclude) o->excludes(exclude);
      return o;
    };
    add("--arch", arch, "gpt2 (default), llama, mistral, qwen2 or qwen3")
        ->check(CLI::IsMember({"gpt2", "llama", "mistral", "qwen2", "qwen3"}));
    add("--layers", layers, "layers");
    add("--heads", heads, "query heads");
    add("--kv-heads", kv_heads, "key/value heads (Llama family; default: heads)");
    add("--head-dim", head_dim, "head width (Llama family; default embd / heads)");
    add("--embd", embd, "channels C");
    add("--inner", inner, "MLP width (default 4 embd; Llama family: 8/3 embd)");
    add("--ctx", ctx, "context length n_ctx");
    add("--window", window, "sliding window (mistral; default none)");
    add("--rope-theta", rope_theta, "rotary base (Llama family; default 10000, Qwen 1e6)");
  }

  /// The config of a new model of this shape over `vocab` tokens (usage_error if it makes none).
  ef::model_config config(ef::index_t vocab) const {
    ef::model_config c;
    if (arch == "gpt2") {
      if (kv_heads || head_dim || window || rope_theta) {
        throw usage_error(
            "--kv-heads, --head-dim, --window and --rope-theta need a Llama-family --arch");
      }
      c = ef::model_config::gpt2(layers, heads, embd, vocab, ctx, inner);
    } else {
      if (window && arch != "mistral") throw usage_error("--window needs --arch mistral");
      const bool qwen = arch == "qwen2" || arch == "qwen3";
      c = ef::model_config::llama();
      c.model_type = arch;
      c.n_layer = layers, c.n_head = heads, c.n_embd = embd;
      c.n_kv_head = kv_heads, c.head_size = head_dim;
      c.n_inner = inner > 0 ? inner : (8 * embd / 3 + 15) / 16 * 16;
      c.n_ctx = ctx, c.vocab_size = vocab;
      c.sliding_window = window;
      c.qkv_bias = arch == "qwen2";
      c.qk_norm = arch == "qwen3";
      c.layer_norm_epsilon = qwen ? 1e-6 : 1e-5;
      c.rope.theta = rope_theta > 0 ? rope_theta : qwen ? 1e6 : 10000.0;
    }
    c.validate();
    return c;
  }
};

/// A new model with the family's initialisation (GPT-2's, or N(0, 0.02) with a tied head).
inline ef::model new_model(const ef::model_config& config, std::uint64_t seed) {
  ef::model m;
  m.config = config;
  m.weights = config.positions == ef::position_kind::rotary
                  ? ef::init_llama_weights<float>(config, seed)
                  : ef::init_gpt2_weights<float>(config, seed);
  return m;
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
