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
#include "eigenformer/io/json_fields.hpp"
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
  const nlohmann::json j = detail::parse_json_object(text, source);
  const detail::json_fields f(j, source);
  model_config c;
  c.n_layer = f.integer("n_layer", true, 0);
  c.n_head = f.integer("n_head", true, 0);
  c.n_embd = f.integer("n_embd", true, 0);
  c.vocab_size = f.integer("vocab_size", true, 0);
  // Newer files use n_positions; very old ones only n_ctx.
  c.n_ctx = f.find("n_positions") ? f.integer("n_positions", true, 0) : f.integer("n_ctx", true, 0);
  c.n_inner = f.integer("n_inner", false, 0);
  c.layer_norm_epsilon = f.number("layer_norm_epsilon", c.layer_norm_epsilon);
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
  return parse_hf_gpt2_config(detail::read_text_file(path), path);
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
  basic_model_weights<Scalar> w;
  w.blocks.resize(static_cast<std::size_t>(config.n_layer));
  for_each_parameter(
      config, w,
      [&](const std::string& name, auto& tensor, const std::vector<std::int64_t>& shape) {
        tensor = file.read<Scalar>(prefix + name, shape);  // [1 x n] for vectors
      });
  // lm_head sits outside "transformer." in GPT2LMHeadModel; accept it either way.
  for (const std::string& name : {std::string("lm_head.weight"), prefix + "lm_head.weight"}) {
    if (file.contains(name)) {
      w.lm_head = file.read<Scalar>(name, {config.vocab_size, config.n_embd});
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
/// config.json of a GPT-2 with config `c` (`tied`: the LM head is the token embedding).
inline nlohmann::json hf_gpt2_config_json(const model_config& c, bool tied) {
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
                           {"tie_word_embeddings", tied}};
  if (c.n_inner > 0) config["n_inner"] = c.n_inner;
  return config;
}

template <class Scalar>
void save_hf_gpt2(const basic_model<Scalar>& m, const std::string& dir,
                  const nlohmann::json& extra_config = nlohmann::json::object()) {
  validate_weights(m.config, m.weights);
  const auto& c = m.config;
  nlohmann::json config = hf_gpt2_config_json(c, m.weights.tied_lm_head());
  for (const auto& [key, value] : extra_config.items()) config[key] = value;
  {
    const std::string path = detail::join_path(dir, "config.json");
    std::ofstream out(path);
    if (!(out << config.dump(2) << "\n")) throw io_error(path + ": cannot write");
  }
  safetensors_writer w;
  for_each_parameter(
      c, m.weights,
      [&](const std::string& name, const auto& tensor, const std::vector<std::int64_t>& shape) {
        w.add<Scalar>(name, tensor, shape);
      });
  w.write(detail::join_path(dir, "model.safetensors"));
}

}  // namespace eigenformer
