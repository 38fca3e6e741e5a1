// eigenformer/io/hf_gpt2.hpp — loads a Hugging Face GPT-2 checkpoint directory
// (config.json + model.safetensors). Requires nlohmann-json in addition to Eigen.
//
// Tensor names follow transformers' GPT2LMHeadModel, with or without the "transformer." prefix:
//   wte.weight [V, C]   wpe.weight [n_ctx, C]   ln_f.{weight,bias} [C]
//   h.{i}.ln_1.{weight,bias} [C]      h.{i}.attn.c_attn.weight [C, 3C]   .bias [3C]
//   h.{i}.attn.c_proj.weight [C, C]   h.{i}.ln_2.{weight,bias} [C]
//   h.{i}.mlp.c_fc.weight [C, 4C]     h.{i}.mlp.c_proj.weight [4C, C]    (+ biases)
//   lm_head.weight [V, C] (optional; absent = tied to wte)
// GPT-2's Conv1D stores weights as [in, out], which is exactly our y = x W layout: no transpose.
// The buffers h.{i}.attn.bias / masked_bias (a stored causal mask) are ignored: the mask is
// computed, not read.
#pragma once

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "eigenformer/core/error.hpp"
#include "eigenformer/io/safetensors.hpp"
#include "eigenformer/io/safetensors_writer.hpp"
#include "eigenformer/model/config.hpp"
#include "eigenformer/model/decoder.hpp"
#include "eigenformer/model/weights.hpp"

namespace eigenformer {

namespace detail {

inline std::string join_path(const std::string& dir, const std::string& file) {
  if (dir.empty() || dir.back() == '/') return dir + file;
  return dir + "/" + file;
}

}  // namespace detail

/// Parses a Hugging Face GPT-2 `config.json` (given as text; `source` names it in errors).
inline model_config parse_hf_gpt2_config(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw format_error(source + ": malformed JSON: " + e.what());
  }
  if (!j.is_object()) throw format_error(source + ": the top level is not a JSON object");

  const auto integer = [&](const char* key, bool required, index_t fallback) -> index_t {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
      if (required) throw format_error(source + ": missing integer '" + key + "'");
      return fallback;
    }
    if (!it->is_number_integer()) {
      throw format_error(source + ": '" + key + "' is " + it->dump() + ", not an integer");
    }
    return it->get<index_t>();
  };
  model_config c;
  c.n_layer = integer("n_layer", true, 0);
  c.n_head = integer("n_head", true, 0);
  c.n_embd = integer("n_embd", true, 0);
  c.vocab_size = integer("vocab_size", true, 0);
  // Newer files use n_positions; very old ones only n_ctx.
  c.n_ctx = j.contains("n_positions") ? integer("n_positions", true, 0) : integer("n_ctx", true, 0);
  c.n_inner = integer("n_inner", false, 0);
  if (const auto it = j.find("layer_norm_epsilon"); it != j.end()) {
    if (!it->is_number()) {
      throw format_error(source + ": 'layer_norm_epsilon' is " + it->dump() + ", not a number");
    }
    c.layer_norm_epsilon = it->get<double>();
  }
  // Variants this implementation does not compute: refuse them instead of producing garbage.
  if (const auto it = j.find("activation_function"); it != j.end()) {
    const std::string act = it->is_string() ? it->get<std::string>() : it->dump();
    if (act != "gelu_new" && act != "gelu_pytorch_tanh") {
      throw format_error(source + ": activation_function '" + act +
                         "' is not supported (only the tanh GELU: gelu_new, gelu_pytorch_tanh)");
    }
  }
  const auto flag = [&](const char* key, bool expected) {
    const auto it = j.find(key);
    if (it != j.end() && it->is_boolean() && it->get<bool>() != expected) {
      throw format_error(source + ": '" + key + "' = " + it->dump() + " is not supported");
    }
  };
  flag("scale_attn_weights", true);
  flag("scale_attn_by_inverse_layer_idx", false);
  flag("reorder_and_upcast_attn", false);
  try {
    c.validate();
  } catch (const error& e) {
    throw format_error(source + ": " + e.what());
  }
  return c;
}

inline model_config read_hf_gpt2_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error(path + ": cannot open file");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_hf_gpt2_config(text, path);
}

/// Reads the weights of `config` from an opened safetensors file, checking every tensor's
/// presence and shape; dtypes F64/F32/F16/BF16 are converted to `Scalar`.
template <class Scalar>
basic_model_weights<Scalar> read_hf_gpt2_weights(const model_config& config,
                                                 const safetensors_file& file) {
  std::string prefix;
  if (!file.contains("wte.weight") && file.contains("transformer.wte.weight")) {
    prefix = "transformer.";
  }
  const index_t C = config.n_embd, V = config.vocab_size, H = config.mlp_hidden();
  const auto mat = [&](const std::string& name, index_t rows, index_t cols) {
    return file.read<Scalar>(prefix + name, {rows, cols});
  };
  const auto vec = [&](const std::string& name, index_t n) {
    return row_vector<Scalar>(file.read<Scalar>(prefix + name, {n}));
  };
  const auto norm = [&](const std::string& name) {
    return layer_norm_weights<Scalar>{vec(name + ".weight", C), vec(name + ".bias", C)};
  };
  const auto linear = [&](const std::string& name, index_t in, index_t out) {
    return linear_weights<Scalar>{mat(name + ".weight", in, out), vec(name + ".bias", out)};
  };

  basic_model_weights<Scalar> w;
  w.wte = mat("wte.weight", V, C);
  w.wpe = mat("wpe.weight", config.n_ctx, C);
  for (index_t i = 0; i < config.n_layer; ++i) {
    const std::string p = "h." + std::to_string(i) + ".";
    block_weights<Scalar> b;
    b.ln_1 = norm(p + "ln_1");
    b.attn.qkv = linear(p + "attn.c_attn", C, 3 * C);
    b.attn.proj = linear(p + "attn.c_proj", C, C);
    b.ln_2 = norm(p + "ln_2");
    b.mlp.fc = linear(p + "mlp.c_fc", C, H);
    b.mlp.proj = linear(p + "mlp.c_proj", H, C);
    w.blocks.push_back(std::move(b));
  }
  w.ln_f = norm("ln_f");
  // lm_head sits outside "transformer." in GPT2LMHeadModel; accept it either way.
  for (const std::string& name : {std::string("lm_head.weight"), prefix + "lm_head.weight"}) {
    if (file.contains(name)) {
      w.lm_head = file.read<Scalar>(name, {V, C});
      break;
    }
  }
  return w;
}

/// Loads `dir/config.json` and `dir/model.safetensors`.
template <class Scalar>
basic_model<Scalar> load_hf_gpt2(const std::string& dir) {
  const std::string config_path = detail::join_path(dir, "config.json");
  const std::string weights_path = detail::join_path(dir, "model.safetensors");
  basic_model<Scalar> m;
  m.config = read_hf_gpt2_config(config_path);
  const safetensors_file file(weights_path);
  m.weights = read_hf_gpt2_weights<Scalar>(m.config, file);
  return m;
}

/// Writes `m` as a Hugging Face GPT-2 directory (config.json + F32 model.safetensors, bare keys)
/// that load_hf_gpt2 and transformers' GPT2LMHeadModel read. `extra_config` entries are added to
/// config.json (e.g. a note about how the weights were made).
template <class Scalar>
void save_hf_gpt2(const basic_model<Scalar>& m, const std::string& dir,
                  const nlohmann::json& extra_config = nlohmann::json::object()) {
  validate_weights(m.config, m.weights);
  const auto& c = m.config;
  nlohmann::json config = {{"architectures", {"GPT2LMHeadModel"}},
                           {"model_type", "gpt2"},
                           {"activation_function", "gelu_new"},
                           {"n_layer", c.n_layer},
                           {"n_head", c.n_head},
                           {"n_embd", c.n_embd},
                           {"vocab_size", c.vocab_size},
                           {"n_positions", c.n_ctx},
                           {"n_ctx", c.n_ctx},
                           {"layer_norm_epsilon", c.layer_norm_epsilon},
                           {"tie_word_embeddings", m.weights.tied_lm_head()}};
  if (c.n_inner > 0) config["n_inner"] = c.n_inner;
  for (const auto& [key, value] : extra_config.items()) config[key] = value;
  {
    const std::string path = detail::join_path(dir, "config.json");
    std::ofstream out(path);
    if (!(out << config.dump(2) << "\n")) throw io_error(path + ": cannot write");
  }
  safetensors_writer w;
  const auto mat = [&](const std::string& name, const matrix<Scalar>& x) {
    w.add<Scalar>(name, x, {x.rows(), x.cols()});
  };
  const auto vec = [&](const std::string& name, const row_vector<Scalar>& v) {
    w.add<Scalar>(name, matrix<Scalar>(v), {v.size()});
  };
  mat("wte.weight", m.weights.wte);
  mat("wpe.weight", m.weights.wpe);
  for (std::size_t i = 0; i < m.weights.blocks.size(); ++i) {
    const auto& b = m.weights.blocks[i];
    const std::string p = "h." + std::to_string(i) + ".";
    vec(p + "ln_1.weight", b.ln_1.gain);
    vec(p + "ln_1.bias", b.ln_1.bias);
    mat(p + "attn.c_attn.weight", b.attn.qkv.weight);
    vec(p + "attn.c_attn.bias", b.attn.qkv.bias);
    mat(p + "attn.c_proj.weight", b.attn.proj.weight);
    vec(p + "attn.c_proj.bias", b.attn.proj.bias);
    vec(p + "ln_2.weight", b.ln_2.gain);
    vec(p + "ln_2.bias", b.ln_2.bias);
    mat(p + "mlp.c_fc.weight", b.mlp.fc.weight);
    vec(p + "mlp.c_fc.bias", b.mlp.fc.bias);
    mat(p + "mlp.c_proj.weight", b.mlp.proj.weight);
    vec(p + "mlp.c_proj.bias", b.mlp.proj.bias);
  }
  vec("ln_f.weight", m.weights.ln_f.gain);
  vec("ln_f.bias", m.weights.ln_f.bias);
  if (!m.weights.tied_lm_head()) mat("lm_head.weight", m.weights.lm_head);
  w.write(detail::join_path(dir, "model.safetensors"));
}

}  // namespace eigenformer
