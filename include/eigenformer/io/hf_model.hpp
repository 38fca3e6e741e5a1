// eigenformer/io/hf_model.hpp — loads any Hugging Face checkpoint directory the library runs,
// choosing the loader by config.json's model_type: gpt2 (io/hf_gpt2.hpp) or the Llama family
// llama, mistral, qwen2, qwen3 (io/hf_llama.hpp). Requires nlohmann-json in addition to Eigen.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "eigenformer/core/error.hpp"
#include "eigenformer/io/hf_gpt2.hpp"
#include "eigenformer/io/hf_llama.hpp"

namespace eigenformer {

/// config.json's model_type; a file without one that has GPT-2's keys counts as gpt2.
inline std::string hf_model_type(const std::string& dir) {
  const std::string path = detail::join_path(dir, "config.json");
  const nlohmann::json j = detail::parse_json_object(detail::read_text_file(path), path);
  const detail::json_fields f(j, path);
  const std::string type = f.string("model_type", j.contains("n_embd") ? "gpt2" : "");
  if (type != "gpt2" && !is_llama_family(type)) {
    throw format_error(path + ": model_type '" + type +
                       "' is not supported (gpt2, llama, mistral, qwen2, qwen3 are)");
  }
  return type;
}

/// Reads `dir`'s config (and, for the Llama family, generation_config.json's eos ids).
inline model_config read_hf_model_config(const std::string& dir) {
  if (hf_model_type(dir) == "gpt2") {
    return read_hf_gpt2_config(detail::join_path(dir, "config.json"));
  }
  return read_hf_llama_config(dir);
}

/// Loads `dir` whatever its supported family.
template <class Scalar>
basic_model<Scalar> load_hf_model(const std::string& dir) {
  if (hf_model_type(dir) == "gpt2") return load_hf_gpt2<Scalar>(dir);
  return load_hf_llama<Scalar>(dir);
}

/// config.json of a model of `c`'s family, in the Hugging Face layout.
inline nlohmann::json hf_config_json(const model_config& c, bool tied) {
  return c.positions == position_kind::learned ? hf_gpt2_config_json(c, tied)
                                               : hf_llama_config_json(c, tied);
}

/// Writes `m` as a Hugging Face directory of its family.
template <class Scalar>
void save_hf_model(const basic_model<Scalar>& m, const std::string& dir,
                   const nlohmann::json& extra_config = nlohmann::json::object()) {
  if (m.config.positions == position_kind::learned) {
    save_hf_gpt2(m, dir, extra_config);
  } else {
    save_hf_llama(m, dir, extra_config);
  }
}

}  // namespace eigenformer
