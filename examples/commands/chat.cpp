// eigenformer chat --model DIR|FILE.gguf [--system TEXT] [-n 512] [--temperature T] [--top-k K]
//                  [--top-p P] [--repeat-penalty R] [--seed S] [--dtype T]
// An interactive chat in the terminal: each line read is a user message; the reply streams as
// it is generated and joins the history. `/reset` starts over, `/exit` (or end of input) quits.
// Each turn renders the whole conversation with the model's chat template; the KV cache keeps
// the tokens the new prompt shares with the last one, so only the new part is computed.
#include <iostream>
#include <random>

#include <eigenformer/serving/model_chat_template.hpp>

#include "../cli_common.hpp"
#include "../commands.hpp"

namespace eigenformer_cli {
namespace {

struct chat_options {
  std::string model, system, dtype = "f32";
  long long max_reply = 512;
  ef::sampling_params sampling;
  bool seed_given = false;
};

void run_chat(chat_options opt) {
  opt.sampling.validate();
  if (opt.max_reply < 1) throw usage_error("-n must be >= 1");
  check_model_dir(opt.model);
  const auto chat = ef::load_model_chat_template(opt.model);
  const auto tokenizer = open_tokenizer(opt.model);
  auto model = ef::load_model<float>(opt.model);
  apply_dtype(model, opt.dtype);
  if (!opt.seed_given) opt.sampling.seed = std::random_device{}();
  const auto& config = model.config;
  ef::kv_cache cache(config);
  ef::activations acts(config, config.n_ctx, ef::logits_for::last_position);
  ef::sampler sampler(opt.sampling);
  const auto& eos = config.eos_token_ids;

  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  const auto start_over = [&] {
    messages = nlohmann::ordered_json::array();
    if (!opt.system.empty()) messages.push_back({{"role", "system"}, {"content", opt.system}});
    cache.reset();
  };
  start_over();
  std::vector<ef::token_id> cached;  // the tokens the cache holds
  std::fprintf(stderr, "chat with %s: /reset starts over, /exit quits\n", opt.model.c_str());
  std::string line;
  while (std::fprintf(stderr, "> "), std::getline(std::cin, line)) {
    if (line == "/exit") break;
    if (line == "/reset") {
      start_over();
      cached.clear();
      continue;
    }
    if (line.empty()) continue;
    messages.push_back({{"role", "user"}, {"content", line}});
    const std::vector<ef::token_id> prompt = tokenizer.encode_prompt(chat.render(messages, true));
    const auto room = config.n_ctx - ef::index_t(prompt.size());
    if (room < 1) {
      std::fprintf(stderr, "the conversation has outgrown the context of %lld tokens: /reset\n",
                   static_cast<long long>(config.n_ctx));
      messages.erase(messages.end() - 1);
      continue;
    }
    // Keep what the cache shares with the new prompt; compute the rest.
    std::size_t shared = 0;
    while (shared < cached.size() && shared < prompt.size() - 1 && cached[shared] == prompt[shared])
      ++shared;
    cache.truncate(ef::index_t(shared));
    cached.resize(shared);
    std::vector<ef::token_id> feed(prompt.begin() + long(shared), prompt.end());
    std::vector<ef::token_id> history = prompt, reply;
    ef::text_stream stream(tokenizer, prompt);
    const long long limit = std::min<long long>(opt.max_reply, room);
    for (long long i = 0; i < limit; ++i) {
      const auto logits = ef::forward(config, model.weights, cache, feed, acts);
      const ef::token_id next = sampler.sample(logits.row(0), history);
      cached.insert(cached.end(), feed.begin(), feed.end());
      if (std::find(eos.begin(), eos.end(), next) != eos.end()) break;
      reply.push_back(next);
      history.push_back(next);
      if (next < tokenizer.vocab_size()) {
        const std::string text = stream.push(next);
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
      }
      feed = {next};
    }
    const std::string rest = stream.finish();
    std::fwrite(rest.data(), 1, rest.size(), stdout);
    std::printf("\n");
    std::fflush(stdout);
    messages.push_back({{"role", "assistant"}, {"content", tokenizer.decode(reply, true)}});
  }
}

}  // namespace

void add_chat_command(CLI::App& app) {
  auto opt = std::make_shared<chat_options>();
  auto* cmd = app.add_subcommand("chat", "chat with a model in the terminal");
  cmd->add_option("--model", opt->model, "model directory or GGUF file")->required();
  cmd->add_option("--system", opt->system, "a system message");
  cmd->add_option("-n", opt->max_reply, "tokens per reply at most (default 512)");
  add_sampling_options(cmd, opt->sampling, opt->seed_given);
  cmd->add_option("--dtype", opt->dtype, "weight storage, as for generate (default f32)")
      ->check(CLI::IsMember(dtype_names()));
  cmd->callback([opt] { run_chat(*opt); });
}

}  // namespace eigenformer_cli
