// eigenformer init --out DIR [--arch gpt2|llama|mistral|qwen2|qwen3] [--layers L --heads H
//                  --kv-heads G --head-dim D --embd C --inner I --ctx T --vocab V --window W
//                  --seed S]
// Writes a model with random weights in the Hugging Face layout of its family (a demo model, or a
// checkpoint to test a program against).
#include "../cli_common.hpp"
#include "../commands.hpp"

namespace eigenformer_cli {

void add_init_command(CLI::App& app) {
  struct init_options {
    std::string out, arch = "gpt2";
    long long layers = 2, heads = 4, kv_heads = 0, head_dim = 0, embd = 64, inner = 0, ctx = 128,
              vocab = 50257, window = 0;
    std::uint64_t seed = 1;
  };
  auto opt = std::make_shared<init_options>();
  auto* cmd = app.add_subcommand("init", "write a model with random weights (a demo model)");
  cmd->add_option("--out", opt->out, "directory to write")->required();
  cmd->add_option("--arch", opt->arch, "gpt2 (default), llama, mistral, qwen2 or qwen3")
      ->check(CLI::IsMember({"gpt2", "llama", "mistral", "qwen2", "qwen3"}));
  cmd->add_option("--layers", opt->layers, "layers (default 2)");
  cmd->add_option("--heads", opt->heads, "query heads (default 4)");
  cmd->add_option("--kv-heads", opt->kv_heads, "key/value heads (Llama family; default: heads)");
  cmd->add_option("--head-dim", opt->head_dim, "head width (Llama family; default embd / heads)");
  cmd->add_option("--embd", opt->embd, "channels (default 64)");
  cmd->add_option("--inner", opt->inner, "MLP width (default 4 embd; Llama family: 8/3 embd)");
  cmd->add_option("--ctx", opt->ctx, "context length (default 128)");
  cmd->add_option("--vocab", opt->vocab, "vocabulary size (default 50257)");
  cmd->add_option("--window", opt->window, "sliding window (mistral; default none)");
  cmd->add_option("--seed", opt->seed, "seed (default 1)");
  cmd->callback([opt] {
    ef::model m;
    if (opt->arch == "gpt2") {
      if (opt->kv_heads || opt->head_dim || opt->window) {
        throw usage_error("--kv-heads, --head-dim and --window need a Llama-family --arch");
      }
      m.config = ef::model_config::gpt2(opt->layers, opt->heads, opt->embd, opt->vocab, opt->ctx,
                                        opt->inner);
      m.config.validate();
      m.weights = ef::init_gpt2_weights<float>(m.config, opt->seed);
    } else {
      if (opt->window && opt->arch != "mistral") throw usage_error("--window needs --arch mistral");
      m.config = ef::model_config::llama();
      m.config.model_type = opt->arch;
      m.config.n_layer = opt->layers, m.config.n_head = opt->heads, m.config.n_embd = opt->embd;
      m.config.n_kv_head = opt->kv_heads, m.config.head_size = opt->head_dim;
      m.config.n_inner = opt->inner > 0 ? opt->inner : (8 * opt->embd / 3 + 15) / 16 * 16;
      m.config.n_ctx = opt->ctx, m.config.vocab_size = opt->vocab;
      m.config.sliding_window = opt->window;
      m.config.qkv_bias = opt->arch == "qwen2";
      m.config.qk_norm = opt->arch == "qwen3";
      m.config.validate();
      m.weights = ef::init_llama_weights<float>(m.config, opt->seed);
    }
    fs::create_directories(opt->out);
    ef::save_hf_model(
        m, opt->out,
        {{"eigenformer_note", "random weights (eigenformer init, seed " +
                                  std::to_string(opt->seed) + "): its text is noise"}});
    std::printf("wrote a %s with random weights to %s\n",
                opt->arch == "gpt2" ? "GPT-2" : opt->arch.c_str(), opt->out.c_str());
  });
}

}  // namespace eigenformer_cli
