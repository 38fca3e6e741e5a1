// eigenformer init --out DIR [--arch gpt2|llama|mistral|qwen2|qwen3] [--layers L --heads H
//                  --kv-heads G --head-dim D --embd C --inner I --ctx T --vocab V --window W
//                  --seed S]
// Writes a model with random weights in the Hugging Face layout of its family (a demo model, or a
// checkpoint to test a program against).
#include "../cli_common.hpp"
#include "../commands.hpp"
#include "../model_shapes.hpp"

namespace eigenformer_cli {

void add_init_command(CLI::App& app) {
  struct init_options {
    std::string out;
    architecture_options shape;
    long long vocab = 50257;
    std::uint64_t seed = 1;
  };
  auto opt = std::make_shared<init_options>();
  auto* cmd = app.add_subcommand("init", "write a model with random weights (a demo model)");
  cmd->add_option("--out", opt->out, "directory to write")->required();
  opt->shape.add_to(*cmd);
  cmd->add_option("--vocab", opt->vocab, "vocabulary size (default 50257)");
  cmd->add_option("--seed", opt->seed, "seed (default 1)");
  cmd->callback([opt] {
    const ef::model m = new_model(opt->shape.config(opt->vocab), opt->seed);
    fs::create_directories(opt->out);
    ef::save_hf_model(
        m, opt->out,
        {{"eigenformer_note", "random weights (eigenformer init, seed " +
                                  std::to_string(opt->seed) + "): its text is noise"}});
    std::printf("wrote a %s with random weights to %s\n",
                opt->shape.arch == "gpt2" ? "GPT-2" : opt->shape.arch.c_str(), opt->out.c_str());
  });
}

}  // namespace eigenformer_cli
