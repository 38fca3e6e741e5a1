// eigenformer/serving/model_chat_template.hpp — a model's chat template and the special tokens
// it refers to, from where Hugging Face and llama.cpp keep them:
//  - a model directory: chat_template.jinja, else chat_template.json's "chat_template", else
//    tokenizer_config.json's "chat_template" (a string, or a list of named templates); the
//    bos/eos/unk/pad tokens from tokenizer_config.json (a string, or {"content": ...});
//  - a GGUF file: tokenizer.chat_template, and the tokens of tokenizer.ggml.bos/eos_token_id.
// Requires nlohmann-json.
#pragma once

#include <fstream>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "eigenformer/core/error.hpp"
#include "eigenformer/io/gguf.hpp"
#include "eigenformer/io/json_fields.hpp"
#include "eigenformer/serving/chat_template.hpp"

namespace eigenformer {

/// A model's chat template with the variables it expects besides the messages.
struct model_chat_template {
  chat_template source;
  nlohmann::ordered_json variables = nlohmann::ordered_json::object();  // bos_token, ...
  std::string where;  // the file it came from, for messages

  /// The prompt for `messages` (see chat_template::render).
  std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                     const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const {
    nlohmann::ordered_json all = variables;
    for (const auto& [key, v] : extra.items()) all[key] = v;
    return source.render(messages, add_generation_prompt, all);
  }
  /// The BOS token's text ("" when the model has none).
  std::string bos_token() const {
    return variables.contains("bos_token") && variables["bos_token"].is_string()
               ? variables["bos_token"].get<std::string>()
               : std::string();
  }
};

namespace detail {
inline bool readable(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return bool(in);
}

/// A named template from a list of {"name", "template"}: `name`, else "default".
inline std::string pick_named_template(const nlohmann::ordered_json& list, const std::string& name,
                                       const std::string& where) {
  std::string names;
  for (const auto& t : list) {
    if (!t.is_object() || !t.contains("name") || !t.contains("template") ||
        !t["template"].is_string())
      throw format_error(where + ": chat_template: a list entry is not {name, template}");
    if (t["name"] == name) return t["template"].get<std::string>();
    names += (names.empty() ? "" : ", ") + t["name"].get<std::string>();
  }
  throw value_error(where + ": no chat template named '" + name + "' (it has " + names + ")");
}
}  // namespace detail

/// The chat template of a model directory or GGUF file (see the top of this file); `name`
/// picks one of several named templates. value_error when the model has none.
inline model_chat_template load_model_chat_template(const std::string& path,
                                                    const std::string& name = "default") {
  const bool gguf = path.size() >= 5 && path.compare(path.size() - 5, 5, ".gguf") == 0;
  if (gguf) {
    const gguf_file f(path);
    if (!f.has("tokenizer.chat_template"))
      throw value_error(path + " has no chat template (tokenizer.chat_template)");
    model_chat_template t{chat_template(f.string("tokenizer.chat_template")), {}, path};
    if (f.has("tokenizer.ggml.tokens")) {
      const auto tokens = f.strings("tokenizer.ggml.tokens");
      for (const char* which : {"bos", "eos", "unk", "pad"}) {
        const std::string key = std::string("tokenizer.ggml.") + which + "_token_id";
        if (!f.has(key)) continue;
        const std::int64_t id = f.integer(key);
        if (id >= 0 && std::size_t(id) < tokens.size())
          t.variables[std::string(which) + "_token"] = tokens[std::size_t(id)];
      }
    }
    return t;
  }
  const std::string base = path.empty() || path.back() == '/' ? path : path + "/";
  const std::string config_path = base + "tokenizer_config.json";
  nlohmann::ordered_json config = nlohmann::ordered_json::object();
  if (detail::readable(config_path)) {
    try {
      config = nlohmann::ordered_json::parse(detail::read_text_file(config_path));
    } catch (const nlohmann::json::exception& e) {
      throw format_error(config_path + ": malformed JSON: " + e.what());
    }
  }
  std::string source, where;
  if (detail::readable(base + "chat_template.jinja")) {
    source = detail::read_text_file(base + "chat_template.jinja");
    where = base + "chat_template.jinja";
  } else if (detail::readable(base + "chat_template.json")) {
    where = base + "chat_template.json";
    nlohmann::ordered_json j;
    try {
      j = nlohmann::ordered_json::parse(detail::read_text_file(where));
    } catch (const nlohmann::json::exception& e) {
      throw format_error(where + ": malformed JSON: " + e.what());
    }
    if (!j.is_object() || !j.contains("chat_template") || !j["chat_template"].is_string())
      throw format_error(where + ": no \"chat_template\" string");
    source = j["chat_template"].get<std::string>();
  } else if (config.is_object() && config.contains("chat_template")) {
    where = config_path;
    const auto& c = config["chat_template"];
    if (c.is_string()) {
      source = c.get<std::string>();
    } else if (c.is_array()) {
      source = detail::pick_named_template(c, name, where);
    } else {
      throw format_error(where + ": chat_template is neither a string nor a list");
    }
  } else {
    throw value_error(path + " has no chat template (tokenizer_config.json's chat_template, " +
                      "chat_template.json or chat_template.jinja)");
  }
  model_chat_template t{chat_template(source), nlohmann::ordered_json::object(), where};
  if (config.is_object()) {
    for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
      if (!config.contains(key)) continue;
      const auto& v = config[key];
      if (v.is_string()) t.variables[key] = v;
      if (v.is_object() && v.contains("content") && v["content"].is_string())
        t.variables[key] = v["content"];
    }
  }
  return t;
}

}  // namespace eigenformer
