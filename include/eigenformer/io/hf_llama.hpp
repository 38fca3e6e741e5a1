// eigenformer/io/hf_llama.hpp — loads and saves Hugging Face checkpoints of the Llama family:
// model_type llama (Llama 2/3.x, SmolLM2, TinyLlama), mistral, qwen2 (Qwen2.5) and qwen3.
// Requires nlohmann-json in addition to Eigen.
//
// Tensor names follow transformers' LlamaForCausalLM and its siblings:
//   model.embed_tokens.weight [V, C]          model.norm.weight [C]      lm_head.weight [V, C]
//   model.layers.{i}.input_layernorm.weight [C]     .post_attention_layernorm.weight [C]
//   model.layers.{i}.self_attn.q_proj.weight [H d, C]   .k_proj / .v_proj.weight [G d, C]
//   model.layers.{i}.self_attn.o_proj.weight [C, H d]   (+ .bias where the family has them)
//   model.layers.{i}.self_attn.q_norm.weight / k_norm.weight [d]   (Qwen3)
//   model.layers.{i}.mlp.gate_proj / up_proj.weight [I, C]   .down_proj.weight [C, I]
// These are nn.Linear weights, stored [out, in]. The library multiplies y = x W with W [in x out]
// (the layout its kernels stream), so each is transposed once while it is copied out of the
// file — into the fused q|k|v and gate|up matrices of model/weights.hpp. No second float copy
// is kept. Extra tensors (rotary_emb.inv_freq, biases a config does not enable) are ignored, as
// transformers ignores them.
//
// config.json: every field that changes the math is read; a value the code does not compute (an
// activation other than silu, a rope type other than default/linear/llama3, per-layer sliding
// windows, partial rotary) is refused with an error naming the field.
#pragma once

#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/parallel.hpp"
#include "eigenformer/io/hf_gpt2.hpp"
#include "eigenformer/io/json_fields.hpp"
#include "eigenformer/io/safetensors.hpp"
#include "eigenformer/io/safetensors_writer.hpp"
#include "eigenformer/model/config.hpp"
#include "eigenformer/model/decoder.hpp"
#include "eigenformer/model/weights.hpp"
#include "eigenformer/ops/transpose.hpp"

namespace eigenformer {

/// Whether `model_type` names a family this header loads.
inline bool is_llama_family(const std::string& model_type) {
  return model_type == "llama" || model_type == "mistral" || model_type == "qwen2" ||
         model_type == "qwen3";
}

namespace detail {

inline bool file_exists(const std::string& path) {
  return std::ifstream(path).good();
}

/// rope_scaling (transformers <= 4.x) or rope_parameters (v5, which also carries rope_theta).
inline void parse_rope(const nlohmann::json& j, const std::string& source, rope_config& rope) {
  const json_fields f(j, source);
  rope.theta = f.number("rope_theta", 10000.0);
  const nlohmann::json* scaling = f.find("rope_scaling");
  std::string key = "rope_scaling";
  if (!scaling && f.find("rope_parameters")) {
    scaling = f.find("rope_parameters");
    key = "rope_parameters";
  }
  if (!scaling) return;
  if (!scaling->is_object()) {
    throw format_error(source + ": '" + key + "' is " + scaling->dump() + ", not an object");
  }
  const json_fields s(*scaling, source + ": " + key);
  rope.theta = s.number("rope_theta", rope.theta);
  std::string type = s.string("rope_type", s.string("type", "default"));
  if (type == "default") return;
  rope.factor = s.number("factor", 1.0);
  if (type == "linear") {
    rope.scaling = rope_scaling_kind::linear;
  } else if (type == "llama3") {
    rope.scaling = rope_scaling_kind::llama3;
    rope.low_freq_factor = s.number("low_freq_factor", 1.0);
    rope.high_freq_factor = s.number("high_freq_factor", 4.0);
    rope.original_context = s.integer("original_max_position_embeddings", true, 0);
  } else {
    throw format_error(source + ": " + key + ".rope_type '" + type +
                       "' is not supported (default, linear and llama3 are)");
  }
}

}  // namespace detail

/// Parses a Llama-family `config.json` (given as text; `source` names it in errors).
inline model_config parse_hf_llama_config(const std::string& text, const std::string& source) {
  const nlohmann::json j = detail::parse_json_object(text, source);
  const detail::json_fields f(j, source);
  model_config c = model_config::llama();
  c.model_type = f.string("model_type", "");
  if (!is_llama_family(c.model_type)) {
    throw format_error(source + ": model_type '" + c.model_type +
                       "' is not a Llama-family model (llama, mistral, qwen2, qwen3)");
  }
  c.n_embd = f.integer("hidden_size", true, 0);
  c.n_inner = f.integer("intermediate_size", true, 0);
  c.n_layer = f.integer("num_hidden_layers", true, 0);
  c.n_head = f.integer("num_attention_heads", true, 0);
  c.n_kv_head = f.integer("num_key_value_heads", false, c.n_head);
  c.head_size = f.integer("head_dim", false, 0);
  c.vocab_size = f.integer("vocab_size", true, 0);
  c.n_ctx = f.integer("max_position_embeddings", true, 0);
  c.layer_norm_epsilon = f.number("rms_norm_eps", 1e-6);
  detail::parse_rope(j, source, c.rope);
  if (const std::string act = f.string("hidden_act", "silu"); act != "silu") {
    throw format_error(source + ": hidden_act '" + act + "' is not supported (only silu)");
  }
  if (const double partial = f.number("partial_rotary_factor", 1.0); partial != 1.0) {
    throw format_error(detail::concat(source, ": partial_rotary_factor = ", partial,
                                      " is not supported (only 1)"));
  }
  const bool attention_bias = f.boolean("attention_bias", false);
  if (c.model_type == "qwen2") {  // Qwen2 has q/k/v biases whatever attention_bias says
    c.qkv_bias = true;
    c.out_bias = false;
  } else {
    c.qkv_bias = c.out_bias = attention_bias;
  }
  c.mlp_bias = c.model_type == "llama" && f.boolean("mlp_bias", false);
  c.qk_norm = c.model_type == "qwen3";
  // Mistral: a window whenever sliding_window is set. Qwen2/Qwen3 carry a value that applies
  // only with use_sliding_window, and then only from layer max_window_layers on: refused.
  const index_t window = f.integer("sliding_window", false, 0);
  if (c.model_type == "mistral") {
    c.sliding_window = window;
  } else if (f.boolean("use_sliding_window", false)) {
    throw format_error(source +
                       ": use_sliding_window = true (per-layer sliding windows) is not "
                       "supported");
  }
  if (const auto* types = f.find("layer_types"); types && types->is_array()) {
    for (const auto& t : *types) {
      if (t != "full_attention" && !(c.model_type == "mistral" && t == "sliding_attention")) {
        throw format_error(source + ": layer_types entry " + t.dump() + " is not supported");
      }
    }
  }
  c.bos_token_id = f.ids("bos_token_id").empty() ? -1 : f.ids("bos_token_id").front();
  c.eos_token_ids = f.ids("eos_token_id");
  try {
    c.validate();
  } catch (const error& e) {
    throw format_error(source + ": " + e.what());
  }
  if (c.n_kv_head > c.n_head || c.n_head % c.kv_heads() != 0) {
    throw format_error(detail::concat(source, ": num_attention_heads = ", c.n_head,
                                      " is not a multiple of num_key_value_heads = ", c.n_kv_head));
  }
  return c;
}

/// Whether the checkpoint's LM head is the token embedding (tie_word_embeddings; transformers'
/// default is false for these families).
inline bool hf_llama_tied(const std::string& config_text, const std::string& source) {
  const nlohmann::json j = detail::parse_json_object(config_text, source);
  return detail::json_fields(j, source).boolean("tie_word_embeddings", false);
}

/// The tensors of one or more safetensors files, found by name: a single model.safetensors, or
/// the shards listed by model.safetensors.index.json.
class safetensors_shards {
 public:
  /// Opens `dir/model.safetensors`, or every shard named in `dir/model.safetensors.index.json`.
  explicit safetensors_shards(const std::string& dir) {
    const std::string index_path = detail::join_path(dir, "model.safetensors.index.json");
    if (!detail::file_exists(index_path)) {
      files_.push_back(
          std::make_unique<safetensors_file>(detail::join_path(dir, "model.safetensors")));
      for (const auto& kv : files_.back()->tensors()) where_[kv.first] = 0;
      return;
    }
    const nlohmann::json index =
        detail::parse_json_object(detail::read_text_file(index_path), index_path);
    const auto map = index.find("weight_map");
    if (map == index.end() || !map->is_object()) {
      throw format_error(index_path + ": no 'weight_map' object");
    }
    std::map<std::string, std::size_t> file_number;
    for (const auto& [name, file] : map->items()) {
      if (!file.is_string()) {
        throw format_error(index_path + ": weight_map['" + name + "'] is not a file name");
      }
      const std::string shard = file.get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..") {
        throw format_error(index_path + ": shard name '" + shard + "' is not a file in " + dir);
      }
      auto it = file_number.find(shard);
      if (it == file_number.end()) {
        it = file_number.emplace(shard, files_.size()).first;
        files_.push_back(std::make_unique<safetensors_file>(detail::join_path(dir, shard)));
      }
      if (!files_[it->second]->contains(name)) {
        throw format_error(index_path + ": tensor '" + name + "' is not in " + shard);
      }
      where_[name] = it->second;
    }
  }

  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  const safetensors_file& file_of(const std::string& name) const {
    const auto it = where_.find(name);
    if (it == where_.end()) {
      throw format_error(detail::concat("checkpoint: tensor '", name, "' is missing"));
    }
    return *files_[it->second];
  }
  template <class Scalar>
  matrix<Scalar> read(const std::string& name, const std::vector<std::int64_t>& shape) const {
    return file_of(name).template read<Scalar>(name, shape);
  }

 private:
  std::vector<std::unique_ptr<safetensors_file>> files_;
  std::map<std::string, std::size_t> where_;
};

/// Calls `visit(name, file_shape, dest, transposed)` for every tensor of a Llama-family
/// checkpoint in the HF layout: `dest` is the part of the library's weights it fills (a block of
/// the fused q|k|v or gate|up matrices, a norm's gain, ...) and `transposed` says that the file's
/// [out, in] tensor is dest^T. The one mapping that loading and saving share. The weights must
/// already have their shapes (for_each_parameter's).
template <class Scalar, class Weights, class Visitor>
void for_each_hf_llama_tensor(const model_config& c, Weights& w, Visitor&& visit) {
  using shape = std::vector<std::int64_t>;
  const std::int64_t C = c.n_embd, V = c.vocab_size, I = c.mlp_hidden(), d = c.head_dim();
  const std::int64_t Q = c.q_width(), KV = c.kv_width();
  visit(std::string("model.embed_tokens.weight"), shape{V, C}, w.wte, false);
  for (std::size_t l = 0; l < w.blocks.size(); ++l) {
    auto& b = w.blocks[l];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    visit(p + "input_layernorm.weight", shape{C}, b.ln_1.gain.segment(0, C), false);
    auto& qkv = b.attn.qkv.weight;
    visit(p + "self_attn.q_proj.weight", shape{Q, C}, qkv.middleCols(0, Q), true);
    visit(p + "self_attn.k_proj.weight", shape{KV, C}, qkv.middleCols(Q, KV), true);
    visit(p + "self_attn.v_proj.weight", shape{KV, C}, qkv.middleCols(Q + KV, KV), true);
    if (c.qkv_bias) {
      visit(p + "self_attn.q_proj.bias", shape{Q}, b.attn.qkv.bias.segment(0, Q), false);
      visit(p + "self_attn.k_proj.bias", shape{KV}, b.attn.qkv.bias.segment(Q, KV), false);
      visit(p + "self_attn.v_proj.bias", shape{KV}, b.attn.qkv.bias.segment(Q + KV, KV), false);
    }
    if (c.qk_norm) {
      visit(p + "self_attn.q_norm.weight", shape{d}, b.attn.q_norm.segment(0, d), false);
      visit(p + "self_attn.k_norm.weight", shape{d}, b.attn.k_norm.segment(0, d), false);
    }
    visit(p + "self_attn.o_proj.weight", shape{C, Q}, b.attn.proj.weight, true);
    if (c.out_bias)
      visit(p + "self_attn.o_proj.bias", shape{C}, b.attn.proj.bias.segment(0, C), false);
    visit(p + "post_attention_layernorm.weight", shape{C}, b.ln_2.gain.segment(0, C), false);
    auto& gate_up = b.mlp.fc.weight;
    visit(p + "mlp.gate_proj.weight", shape{I, C}, gate_up.middleCols(0, I), true);
    visit(p + "mlp.up_proj.weight", shape{I, C}, gate_up.middleCols(I, I), true);
    if (c.mlp_bias) {
      visit(p + "mlp.gate_proj.bias", shape{I}, b.mlp.fc.bias.segment(0, I), false);
      visit(p + "mlp.up_proj.bias", shape{I}, b.mlp.fc.bias.segment(I, I), false);
    }
    visit(p + "mlp.down_proj.weight", shape{C, I}, b.mlp.proj.weight, true);
    if (c.mlp_bias) visit(p + "mlp.down_proj.bias", shape{C}, b.mlp.proj.bias.segment(0, C), false);
  }
  visit(std::string("model.norm.weight"), shape{C}, w.ln_f.gain.segment(0, C), false);
  if (!w.tied_lm_head()) {
    visit(std::string("lm_head.weight"), shape{V, C}, w.lm_head, false);
  }
}

/// Reads the weights of `config` from a Llama-family checkpoint, checking every tensor's
/// presence, dtype and shape; F32/F16/BF16 (and F64) are converted to `Scalar`. `tied`: whether
/// the LM head is the token embedding (then a stored lm_head.weight is ignored, as transformers
/// does).
template <class Scalar>
basic_model_weights<Scalar> read_hf_llama_weights(const model_config& config,
                                                  const safetensors_shards& files, bool tied) {
  basic_model_weights<Scalar> w;
  w.blocks.resize(static_cast<std::size_t>(config.n_layer));
  if (!tied) w.lm_head.resize(config.vocab_size, config.n_embd);
  for_each_parameter(config, w,
                     [](const std::string&, auto& tensor, const std::vector<std::int64_t>& shape) {
                       tensor.resize(shape.size() == 2 ? shape[0] : 1, shape.back());
                     });
  for_each_hf_llama_tensor<Scalar>(
      config, w,
      [&](const std::string& name, const std::vector<std::int64_t>& shape, matrix_ref<Scalar> dest,
          bool transposed) {
        const matrix<Scalar> stored = files.read<Scalar>(name, shape);  // [1 x n] for vectors
        if (transposed) {
          assign_transposed<Scalar>(stored, dest);
        } else {
          dest = stored;
        }
      });
  return w;
}

/// Reads `dir/config.json` of a Llama-family model, with the bos/eos ids of
/// `dir/generation_config.json` when it has them (what generation uses, as transformers does).
inline model_config read_hf_llama_config(const std::string& dir) {
  const std::string config_path = detail::join_path(dir, "config.json");
  model_config c = parse_hf_llama_config(detail::read_text_file(config_path), config_path);
  const std::string generation_path = detail::join_path(dir, "generation_config.json");
  if (detail::file_exists(generation_path)) {
    const nlohmann::json g =
        detail::parse_json_object(detail::read_text_file(generation_path), generation_path);
    const detail::json_fields f(g, generation_path);
    if (auto eos = f.ids("eos_token_id"); !eos.empty()) c.eos_token_ids = eos;
    if (auto bos = f.ids("bos_token_id"); !bos.empty()) c.bos_token_id = bos.front();
  }
  return c;
}

/// Loads a Llama-family directory: config.json (+ generation_config.json), model.safetensors or
/// the shards of model.safetensors.index.json.
template <class Scalar>
basic_model<Scalar> load_hf_llama(const std::string& dir) {
  const std::string config_path = detail::join_path(dir, "config.json");
  basic_model<Scalar> m;
  m.config = read_hf_llama_config(dir);
  const safetensors_shards files(dir);
  m.weights = read_hf_llama_weights<Scalar>(
      m.config, files, hf_llama_tied(detail::read_text_file(config_path), config_path));
  return m;
}

/// config.json of `m` in the Hugging Face layout of its model_type.
inline nlohmann::json hf_llama_config_json(const model_config& c, bool tied) {
  nlohmann::json j = {{"model_type", c.model_type},
                      {"hidden_size", c.n_embd},
                      {"intermediate_size", c.mlp_hidden()},
                      {"num_hidden_layers", c.n_layer},
                      {"num_attention_heads", c.n_head},
                      {"num_key_value_heads", c.kv_heads()},
                      {"head_dim", c.head_dim()},
                      {"vocab_size", c.vocab_size},
                      {"max_position_embeddings", c.n_ctx},
                      {"rms_norm_eps", c.layer_norm_epsilon},
                      {"rope_theta", c.rope.theta},
                      {"hidden_act", "silu"},
                      {"tie_word_embeddings", tied},
                      {"torch_dtype", "float32"}};
  const char* architecture = c.model_type == "mistral" ? "MistralForCausalLM"
                             : c.model_type == "qwen2" ? "Qwen2ForCausalLM"
                             : c.model_type == "qwen3" ? "Qwen3ForCausalLM"
                                                       : "LlamaForCausalLM";
  j["architectures"] = {architecture};
  if (c.model_type != "qwen2") j["attention_bias"] = c.qkv_bias;
  if (c.model_type == "llama") j["mlp_bias"] = c.mlp_bias;
  if (c.model_type == "mistral") {
    j["sliding_window"] =
        c.sliding_window > 0 ? nlohmann::json(c.sliding_window) : nlohmann::json();
  }
  if (c.rope.scaling == rope_scaling_kind::linear) {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", c.rope.factor}};
  } else if (c.rope.scaling == rope_scaling_kind::llama3) {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", c.rope.factor},
                         {"low_freq_factor", c.rope.low_freq_factor},
                         {"high_freq_factor", c.rope.high_freq_factor},
                         {"original_max_position_embeddings", c.rope.original_context}};
  }
  if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids.front();
  if (c.eos_token_ids.size() > 1) j["eos_token_id"] = c.eos_token_ids;
  return j;
}

/// Writes `m` as a Hugging Face directory of its family (config.json + F32 model.safetensors
/// with the separate [out, in] projections) that load_hf_llama and transformers read.
/// `extra_config` entries are added to config.json.
template <class Scalar>
void save_hf_llama(const basic_model<Scalar>& m, const std::string& dir,
                   const nlohmann::json& extra_config = nlohmann::json::object()) {
  validate_weights(m.config, m.weights);
  {
    const std::string path = detail::join_path(dir, "config.json");
    std::ofstream out(path);
    nlohmann::json config = hf_llama_config_json(m.config, m.weights.tied_lm_head());
    for (const auto& [key, value] : extra_config.items()) config[key] = value;
    if (!(out << config.dump(2) << "\n")) {
      throw io_error(path + ": cannot write");
    }
  }
  safetensors_writer writer;
  for_each_hf_llama_tensor<Scalar>(
      m.config, m.weights,
      [&](const std::string& name, const std::vector<std::int64_t>& shape,
          matrix_cref<Scalar> source, bool transposed) {
        if (transposed) {
          const matrix<Scalar> stored = source.transpose();
          writer.add<Scalar>(name, stored, shape);
        } else {
          writer.add<Scalar>(name, source, shape);
        }
      });
  writer.write(detail::join_path(dir, "model.safetensors"));
}

}  // namespace eigenformer
