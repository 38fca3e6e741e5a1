// examples/commands.hpp — the subcommands of `eigenformer`, one file each under commands/.
// Each adds itself to the app with its options and a callback that runs it; errors are thrown
// (usage_error or the library's) and printed by main() as one line with exit code 1.
#pragma once

#include <CLI/CLI.hpp>

namespace eigenformer_cli {

void add_logits_command(CLI::App& app);                        // commands/logits.cpp
void add_generate_command(CLI::App& app);                      // commands/generate.cpp
void add_tokenize_command(CLI::App& app);                      // commands/tokenize.cpp
void add_attention_command(CLI::App& app);                     // commands/attention.cpp
void add_init_command(CLI::App& app);                          // commands/init.cpp
void add_train_command(CLI::App& app, int argc, char** argv);  // commands/train.cpp
void add_bench_command(CLI::App& app);                         // commands/bench.cpp
void add_bench_parallel_command(CLI::App& app);                // commands/bench_parallel.cpp
void add_quantize_command(CLI::App& app);                      // commands/quantize.cpp
void add_perplexity_command(CLI::App& app);                    // commands/perplexity.cpp
void add_template_command(CLI::App& app);                      // commands/template.cpp
void add_chat_command(CLI::App& app);                          // commands/chat.cpp
void add_serve_command(CLI::App& app);  // commands/serve.cpp (with cpp-httplib only)

}  // namespace eigenformer_cli
