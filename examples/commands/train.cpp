// eigenformer train --data FILE --out DIR [--arch ... | --init DIR] [--save-every N]
// [--resume DIR] [options]: trains a GPT-2 or a Llama-family model on a text file (see
// train_command.hpp for what a run writes and how it resumes).
#include "../cli_common.hpp"
#include "../commands.hpp"
#include "../train_command.hpp"

namespace eigenformer_cli {

void add_train_command(CLI::App& app, int argc, char** argv) {
  auto opt = std::make_shared<train_options>();
  auto& train = *opt;
  auto* train_cmd =
      app.add_subcommand("train", "train a GPT-2 or a Llama-family model on a text file");
  train_cmd->add_option("--data", train.data, "UTF-8 (or any) text file to train on")->required();
  train_cmd->add_option("--out", train.out, "directory for the model, tokenizer, log.csv, loss.png")
      ->required();
  train_cmd
      ->add_option("--tokenizer", train.tokenizer,
                   "bytes (256 bytes + end of text; the default for a new model), or model: the "
                   "tokenizer.json or vocab.json + merges.txt of --tokenizer-dir or --init (the "
                   "default with --init; gpt2 is a synonym)")
      ->check(CLI::IsMember({"bytes", "gpt2", "model"}));
  train_cmd->add_option("--tokenizer-dir", train.tokenizer_dir,
                        "the tokenizer's directory (default: the --init model)");
  auto* init_dir = train_cmd->add_option(
      "--init", train.init, "fine-tune this Hugging Face checkpoint (GPT-2 or Llama family)");
  train.shape.add_to(*train_cmd, init_dir);
  train_cmd->add_option("--save-every", train.save_every,
                        "write a checkpoint every N steps and at the end (default 0: only on "
                        "SIGINT/SIGTERM)");
  train_cmd->add_option("--resume", train.resume,
                        "continue from the newest intact checkpoint in DIR (a run's --out, or a "
                        "checkpoint); starts from the beginning if it has none yet");
  train_cmd->add_option("--batch", train.batch, "sequences per micro-batch B (default 16)");
  train_cmd->add_option("--seq-len", train.seq_len, "tokens per sequence T (default: n_ctx)");
  train_cmd->add_option("--steps", train.steps, "optimizer steps (default 1000)");
  train_cmd->add_option("--grad-accum", train.grad_accum, "micro-batches per step (default 1)");
  train_cmd->add_option("--lr", train.lr, "peak learning rate (default 1e-3)");
  train_cmd->add_option("--min-lr", train.min_lr, "final learning rate (default lr / 10)");
  train_cmd->add_option("--warmup", train.warmup, "warm-up steps (default steps / 20)");
  train_cmd->add_option("--weight-decay", train.weight_decay, "AdamW weight decay (default 0.1)");
  train_cmd->add_option("--grad-clip", train.grad_clip, "max gradient norm, 0 = off (default 1)");
  train_cmd->add_option("--eval-every", train.eval_every,
                        "held-out evaluation period (default 100)");
  train_cmd->add_option("--eval-batches", train.eval_batches, "batches per evaluation (default 8)");
  train_cmd->add_option("--eval-fraction", train.eval_fraction,
                        "held-out tail of the text (default 0.1)");
  train_cmd->add_option("--seed", train.seed, "initialisation and batch sampling (default 1)");
  train_cmd->add_option("--threads", train.threads, "threads (default: all cores)");

  std::string command_line;
  for (int i = 0; i < argc; ++i) command_line += (i ? " " : "") + std::string(argv[i]);
  train_cmd->callback([opt, command_line] {
    opt->command_line = command_line;
    run_train(*opt);
  });
}

}  // namespace eigenformer_cli
