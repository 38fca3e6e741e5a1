// The `eigenformer` command line. Needs CLI11, nlohmann-json, PCRE2 and stb besides Eigen.
// One file per subcommand under commands/ (see commands.hpp); this file only dispatches:
//
//   eigenformer logits    --model DIR --tokens IDS [--out FILE.npy] [--precision ...]
//   eigenformer generate  --model DIR (--prompt TEXT | --tokens IDS) [-n 64] [sampling ...]
//   eigenformer tokenize  --tokenizer DIR (--text TEXT | --file F | --decode IDS)
//   eigenformer attention --model DIR (--prompt TEXT | --tokens IDS) --layer L --out F.png
//   eigenformer init      --out DIR [--arch gpt2|llama|mistral|qwen2|qwen3] [sizes ...]
//   eigenformer train     --data FILE --out DIR [...]
//   eigenformer bench     [--model DIR | --shape NAME] [-p ...] [-n ...] [--dtype ...]
//   eigenformer quantize  --model F.gguf --out Q.gguf --dtype q8_0|q4_0|q4_k_m
//   eigenformer perplexity --model M --text FILE [--ctx N] [--dtype ...] [--reference M0]
//   eigenformer template  --model M --messages FILE.json [--no-generation-prompt]
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>

#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"eigenformer: GPT-2 and Llama-family transformers on Eigen"};
  app.require_subcommand(1);
  eigenformer_cli::add_logits_command(app);
  eigenformer_cli::add_generate_command(app);
  eigenformer_cli::add_tokenize_command(app);
  eigenformer_cli::add_attention_command(app);
  eigenformer_cli::add_init_command(app);
  eigenformer_cli::add_train_command(app, argc, argv);
  eigenformer_cli::add_bench_command(app);
  eigenformer_cli::add_bench_parallel_command(app);
  eigenformer_cli::add_quantize_command(app);
  eigenformer_cli::add_perplexity_command(app);
  eigenformer_cli::add_template_command(app);
  eigenformer_cli::add_chat_command(app);
#ifdef EIGENFORMER_HAVE_HTTP
  eigenformer_cli::add_serve_command(app);
#endif

  const auto one_line = [](std::string message) {
    std::replace(message.begin(), message.end(), '\n', ' ');
    return message;
  };
  try {
    app.parse(argc, argv);  // the chosen subcommand runs in its callback
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "eigenformer: error: %s (see --help)\n", one_line(e.what()).c_str());
    return e.get_exit_code() != 0 ? e.get_exit_code() : 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "eigenformer: error: %s\n", one_line(e.what()).c_str());
    return 1;
  }
  return 0;
}
