// examples/cli_common.hpp — what the `eigenformer` subcommands share: model and tokenizer
// directories, the prompt, weight types, small parsers. Each subcommand lives in its own file
// under examples/commands/ and registers itself with add_<name>_command (commands.hpp).
#pragma once

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <eigenformer/eigenformer.hpp>
#include <eigenformer/tokenizer/text_tokenizer.hpp>

#include "cli_parse.hpp"

namespace eigenformer_cli {

namespace ef = eigenformer;
namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

inline double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

/// A GGUF model file, or a Hugging Face model directory: config.json and model.safetensors (or
/// sharded files). The files' contents are checked by the loaders.
inline void check_model_dir(const std::string& dir) {
  if (fs::is_regular_file(dir)) return;  // a GGUF file
  if (!fs::is_directory(dir)) {
    throw usage_error("model '" + dir + "' is neither a GGUF file nor a model directory");
  }
  if (!fs::is_regular_file(fs::path(dir) / "config.json")) {
    throw usage_error("model directory '" + dir + "' has no config.json");
  }
  if (!fs::is_regular_file(fs::path(dir) / "model.safetensors") &&
      !fs::is_regular_file(fs::path(dir) / "model.safetensors.index.json")) {
    throw usage_error("model directory '" + dir +
                      "' has no model.safetensors (nor model.safetensors.index.json)");
  }
}

/// The "eigenformer_note" of a model's config.json (set by `eigenformer init`), if any.
inline std::string model_note(const std::string& dir) {
  std::ifstream in(fs::path(dir) / "config.json");
  const auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_object() && j.contains("eigenformer_note") && j["eigenformer_note"].is_string()) {
    return "this model has " + j["eigenformer_note"].get<std::string>();
  }
  return {};
}

/// The values of --dtype: how the matrices multiplied per token are stored.
inline const std::vector<std::string>& dtype_names() {
  static const std::vector<std::string> names = {"f32",  "bf16", "bf16mix", "q8_0", "q4_0",
                                                 "q5_0", "q4_k", "q5_k",    "q6_k", "q4_k_m"};
  return names;
}

/// Stores the matrices multiplied per token as --dtype asks: bf16 / bf16mix panels
/// (ops/bf16_matmul.hpp) or quantized blocks with ggml's rounding (one type for the layers and
/// the LM head in q8_0, or llama-quantize's Q4_K_M mix); f32 leaves the weights as loaded (a
/// quantized GGUF file stays as it is).
inline void apply_dtype(ef::model& model, const std::string& dtype) {
  ef::model_weights& weights = model.weights;
  if (dtype == "f32") return;
  if (weights.is_compressed()) {
    throw usage_error("--dtype " + dtype +
                      ": the model's weights are already quantized (a quantized GGUF file runs "
                      "as it is stored; use --dtype f32)");
  }
  if (dtype == "bf16") {
    ef::pack_weights_bf16(weights, ef::bf16_compute::float_activations);
  } else if (dtype == "bf16mix") {
    ef::pack_weights_bf16(weights, ef::bf16_compute::bf16_activations);
  } else if (dtype == "q4_k_m") {
    ef::quantize_weights_q4_k_m(model.config, weights);
  } else {
    ef::quantize_weights(weights, ef::parse_quant_type(dtype), ef::quant_type::q8_0);
  }
}

/// --activations int8|exact: how quantized weights multiply the activations
/// (ops/quant_matmul.hpp); set as soon as the option is parsed.
inline void add_activations_option(CLI::App* cmd) {
  cmd->add_option_function<std::string>(
         "--activations",
         [](const std::string& value) {
           ef::set_quant_activations(value == "exact" ? ef::quant_activations::exact
                                                      : ef::quant_activations::int8);
         },
         "quantized weights times activations rounded to int8 per block as ggml does "
         "(int8, the default) or kept in float (exact, slower)")
      ->check(CLI::IsMember({"int8", "exact"}));
}

/// Splits "a,b,c" at the commas (an empty text gives one empty item).
inline std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> items;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    items.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return items;
}

/// Parses "64,256,1024" into positive integers.
inline std::vector<long long> parse_list(const std::string& text, const char* option) {
  std::vector<long long> values;
  for (const std::string& word : split_commas(text)) {
    long long v = 0;
    const auto [ptr, ec] = std::from_chars(word.data(), word.data() + word.size(), v);
    if (ec != std::errc() || ptr != word.data() + word.size() || v < 1) {
      throw usage_error(std::string(option) + ": '" + word + "' is not a positive integer");
    }
    values.push_back(v);
  }
  return values;
}

/// Where the prompt comes from: text through the tokenizer, or ids.
struct prompt_options {
  std::string model_dir, tokenizer_dir, prompt, tokens;
  std::string tokenizer_directory() const {
    return tokenizer_dir.empty() ? model_dir : tokenizer_dir;
  }
};

inline void add_prompt_options(CLI::App* cmd, prompt_options& p) {
  cmd->add_option("--model", p.model_dir,
                  "GGUF file or Hugging Face directory (GPT-2 or Llama family)")
      ->required();
  auto* text = cmd->add_option("--prompt", p.prompt, "prompt text (needs the tokenizer)");
  auto* ids = cmd->add_option("--tokens", p.tokens, "prompt token ids instead of text");
  text->excludes(ids);
  cmd->add_option("--tokenizer", p.tokenizer_dir,
                  "tokenizer.json, or a directory with it or with vocab.json + merges.txt "
                  "(default: the model directory)");
}

/// --temperature, --top-k, --top-p, --repeat-penalty and --seed (setting `seed_given`).
inline void add_sampling_options(CLI::App* cmd, ef::sampling_params& sampling, bool& seed_given) {
  cmd->add_option("--temperature", sampling.temperature, "0 = greedy (default 1)");
  cmd->add_option("--top-k", sampling.top_k, "keep the k most likely tokens; 0 = all");
  cmd->add_option("--top-p", sampling.top_p, "nucleus mass in (0, 1] (default 1)");
  cmd->add_option("--repeat-penalty", sampling.repetition_penalty, "> 1 discourages repeats");
  cmd->add_option("--seed", sampling.seed, "random seed (default: random)")
      ->each([&seed_given](const std::string&) { seed_given = true; });
}

/// The tokenizer at `path` (a tokenizer.json file or a directory), as a usage error if missing.
inline ef::text_tokenizer open_tokenizer(const std::string& path) {
  const fs::path p(path);
  const bool found =
      fs::is_regular_file(p) || fs::is_regular_file(p / "tokenizer.json") ||
      (fs::is_regular_file(p / "vocab.json") && fs::is_regular_file(p / "merges.txt"));
  if (!found) {
    throw usage_error("'" + path + "' has no tokenizer.json and no vocab.json + merges.txt " +
                      "(give --tokenizer PATH, or --tokens instead of --prompt)");
  }
  return ef::text_tokenizer::from_path(path);
}

/// Reads the tokenizer if needed and turns the prompt into ids, all checked against `config`
/// before the weights are loaded.
inline std::vector<ef::token_id> prompt_ids(const prompt_options& opt,
                                            const ef::model_config& config,
                                            std::unique_ptr<ef::text_tokenizer>& tokenizer,
                                            bool need_tokenizer) {
  std::vector<ef::token_id> ids;
  if (need_tokenizer || !opt.prompt.empty()) {
    tokenizer = std::make_unique<ef::text_tokenizer>(open_tokenizer(opt.tokenizer_directory()));
  }
  if (!opt.prompt.empty()) {
    ids = tokenizer->encode_prompt(opt.prompt);
  } else {
    ids = parse_token_ids(opt.tokens);
  }
  if (ids.empty()) throw usage_error("the prompt is empty");
  const auto n = static_cast<ef::index_t>(ids.size());
  if (n > config.n_ctx) {
    throw usage_error(ef::detail::concat("the prompt has ", n, " tokens, more than the context of ",
                                         config.n_ctx, " by ", n - config.n_ctx));
  }
  ef::check_token_ids(ids, config.vocab_size);
  return ids;
}

}  // namespace eigenformer_cli
