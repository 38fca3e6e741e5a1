// eigenformer generate --model DIR (--prompt TEXT | --tokens IDS) [-n 64] [--dtype
// f32|bf16|bf16mix]
//                      [--temperature T] [--top-k K] [--top-p P] [--repeat-penalty R]
//                      [--seed S] [--ids] [--ignore-eos] [--chat [--system TEXT]]
// The prompt is encoded with the tokenizer's special tokens (BOS once, even if the text starts
// with it). Prefills the prompt in one call, then samples one token per step through the KV cache;
// stops after -n tokens or at the model's end-of-sequence id(s) (config.json /
// generation_config.json).
#include <random>

#include <eigenformer/serving/model_chat_template.hpp>

#include "../cli_common.hpp"
#include "../commands.hpp"

namespace eigenformer_cli {
namespace {

struct generate_options {
  prompt_options prompt;
  long long n_tokens = 64;
  ef::sampling_params sampling;
  bool seed_given = false, ids_only = false, ignore_eos = false, chat = false;
  std::string system;
  std::string dtype = "f32";
};

void run_generate(generate_options opt) {
  opt.sampling.validate();  // bad sampling parameters fail before any work
  if (opt.prompt.prompt.empty() && opt.prompt.tokens.empty())
    throw usage_error("the prompt is empty");
  check_model_dir(opt.prompt.model_dir);
  if (opt.chat) {  // the prompt is the user's message, in the model's chat template
    if (opt.prompt.prompt.empty()) throw usage_error("--chat needs --prompt (the user's message)");
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    if (!opt.system.empty()) messages.push_back({{"role", "system"}, {"content", opt.system}});
    messages.push_back({{"role", "user"}, {"content", opt.prompt.prompt}});
    opt.prompt.prompt = ef::load_model_chat_template(opt.prompt.model_dir).render(messages, true);
  } else if (!opt.system.empty()) {
    throw usage_error("--system needs --chat");
  }
  const auto config = ef::read_model_config(opt.prompt.model_dir);
  std::unique_ptr<ef::text_tokenizer> tokenizer;
  const auto prompt = prompt_ids(opt.prompt, config, tokenizer, !opt.ids_only);
  const auto room = config.n_ctx - static_cast<ef::index_t>(prompt.size());
  if (opt.n_tokens < 1 || opt.n_tokens > room) {
    throw usage_error(ef::detail::concat(
        "-n ", opt.n_tokens, " must be in [1, ", room, "]: the context of ", config.n_ctx, " has ",
        room, " positions left after a ", prompt.size(), "-token prompt"));
  }
  if (!opt.seed_given) opt.sampling.seed = std::random_device{}();

  auto model = ef::load_model<float>(opt.prompt.model_dir);
  apply_dtype(model, opt.dtype);
  if (tokenizer && tokenizer->vocab_size() > model.config.vocab_size) {
    throw usage_error(ef::detail::concat("the tokenizer has ", tokenizer->vocab_size(),
                                         " tokens but the model only ", model.config.vocab_size));
  }
  if (const auto note = model_note(opt.prompt.model_dir); !note.empty()) {
    std::fprintf(stderr, "note: %s\n", note.c_str());
  }
  // Room for this run only: a Llama 3.2 file allows 131072 positions.
  ef::kv_cache cache(model.config, static_cast<ef::index_t>(prompt.size()) + opt.n_tokens);
  ef::activations acts(model.config, static_cast<ef::index_t>(prompt.size()),
                       ef::logits_for::last_position);
  ef::sampler sampler(opt.sampling);
  std::vector<ef::token_id> history = prompt, generated;
  std::unique_ptr<ef::text_stream> stream;
  if (tokenizer) stream = std::make_unique<ef::text_stream>(*tokenizer, prompt);
  const auto& eos = model.config.eos_token_ids;

  if (!opt.ids_only && !opt.chat) {  // (a chat prints the reply only)
    std::fwrite(opt.prompt.prompt.data(), 1, opt.prompt.prompt.size(), stdout);
    std::fflush(stdout);
  }
  // The first step prefills the whole prompt; each later step feeds one token.
  double prefill_s = 0.0;
  const auto start = clock_type::now();
  std::vector<ef::token_id> feed = prompt;
  for (long long i = 0; i < opt.n_tokens; ++i) {
    const auto logits = ef::forward(model.config, model.weights, cache, feed, acts);
    if (i == 0) prefill_s = seconds_since(start);
    const ef::token_id next = sampler.sample(logits.row(0), history);
    if (!opt.ignore_eos && std::find(eos.begin(), eos.end(), next) != eos.end()) break;
    generated.push_back(next);
    history.push_back(next);
    if (!opt.ids_only) {
      const std::string text = stream->push(next);
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
    }
    feed = {next};
  }
  if (!opt.ids_only) {
    const std::string rest = stream->finish();
    std::fwrite(rest.data(), 1, rest.size(), stdout);
  }
  // Generation time: every step after the prefill (sampling included), reported per generated
  // token as llama.cpp does.
  const double decode_s = std::max(1e-9, seconds_since(start) - prefill_s);
  if (opt.ids_only) {
    for (std::size_t i = 0; i < generated.size(); ++i)
      std::printf("%s%d", i ? " " : "", generated[i]);
  }
  std::printf("\n");
  std::fprintf(stderr,
               "prompt: %zu tokens in %.1f ms (%.1f tokens/s); generated: %zu tokens in %.1f ms "
               "(%.1f tokens/s)\n",
               prompt.size(), prefill_s * 1e3, double(prompt.size()) / prefill_s, generated.size(),
               decode_s * 1e3, double(generated.size()) / decode_s);
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto opt = std::make_shared<generate_options>();
  auto* cmd = app.add_subcommand("generate", "generate text with a KV cache");
  add_prompt_options(cmd, opt->prompt);
  cmd->add_option("-n", opt->n_tokens, "tokens to generate (default 64)");
  cmd->add_option(
         "--dtype", opt->dtype,
         "weights: f32 (default: as loaded), bf16, bf16mix, q8_0, q4_0, q5_0, q5_1, q4_k, q5_k, "
         "q6_k or q4_k_m (llama-quantize's mix)")
      ->check(CLI::IsMember(dtype_names()));
  add_activations_option(cmd);
  add_sampling_options(cmd, opt->sampling, opt->seed_given);
  cmd->add_flag("--chat", opt->chat,
                "the prompt is a user message: apply the model's chat template, print the reply");
  cmd->add_option("--system", opt->system, "a system message first (with --chat)");
  cmd->add_flag("--ids", opt->ids_only, "print generated token ids instead of text");
  cmd->add_flag("--ignore-eos", opt->ignore_eos,
                "keep going past the model's end-of-sequence token(s)");
  cmd->callback([opt] { run_generate(*opt); });
}

}  // namespace eigenformer_cli
