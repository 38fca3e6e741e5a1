// eigenformer template --model DIR|FILE.gguf --messages FILE.json [--no-generation-prompt]
//                      [--name NAME]
// Prints the prompt the model's chat template makes of a conversation, byte for byte what the
// model will see (as transformers' apply_chat_template(..., tokenize=False) renders it).
// FILE.json is a list of messages ({"role", "content", ...}), or an object with "messages" and
// further variables for the template (e.g. "tools").
#include <cstdio>
#include <fstream>

#include <eigenformer/serving/model_chat_template.hpp>

#include "../cli_common.hpp"
#include "../commands.hpp"

namespace eigenformer_cli {

void add_template_command(CLI::App& app) {
  struct template_options {
    std::string model, messages, name = "default";
    bool no_generation_prompt = false;
  };
  auto opt = std::make_shared<template_options>();
  auto* cmd = app.add_subcommand("template", "print the prompt a chat template makes of messages");
  cmd->add_option("--model", opt->model, "model directory or GGUF file")->required();
  cmd->add_option("--messages", opt->messages,
                  "JSON file: a list of messages, or {\"messages\": [...], other variables}")
      ->required();
  cmd->add_flag("--no-generation-prompt", opt->no_generation_prompt,
                "do not end with the assistant's turn header");
  cmd->add_option("--name", opt->name, "which of several named templates (default: default)");
  cmd->callback([opt] {
    const auto chat = ef::load_model_chat_template(opt->model, opt->name);
    std::ifstream in(opt->messages, std::ios::binary);
    if (!in) throw usage_error("cannot open --messages '" + opt->messages + "'");
    nlohmann::ordered_json file;
    try {
      file = nlohmann::ordered_json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw usage_error("--messages '" + opt->messages + "' is not JSON: " + e.what());
    }
    nlohmann::ordered_json messages = file, extra = nlohmann::ordered_json::object();
    if (file.is_object()) {
      if (!file.contains("messages"))
        throw usage_error("--messages '" + opt->messages + "' has no \"messages\" list");
      messages = file["messages"];
      for (const auto& [key, v] : file.items())
        if (key != "messages") extra[key] = v;
    }
    if (!messages.is_array())
      throw usage_error("--messages '" + opt->messages + "': the messages are not a list");
    const std::string prompt = chat.render(messages, !opt->no_generation_prompt, extra);
    std::fwrite(prompt.data(), 1, prompt.size(), stdout);
  });
}

}  // namespace eigenformer_cli
