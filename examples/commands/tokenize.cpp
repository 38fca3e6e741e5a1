// eigenformer tokenize --tokenizer PATH (--text TEXT | --file F | --decode IDS) [--no-special]
//                      [--skip-special]
// PATH is a tokenizer.json file or a directory holding tokenizer.json (Hugging Face: Llama,
// Qwen, Mistral, SmolLM2, ...) or vocab.json + merges.txt (GPT-2). Encodes as Hugging Face's
// encode(text) does — with the post-processor's special tokens (e.g. BOS) unless --no-special —
// or decodes ids back to text.
#include "../cli_common.hpp"
#include "../commands.hpp"

namespace eigenformer_cli {

void add_tokenize_command(CLI::App& app) {
  struct tokenize_options {
    std::string tokenizer_path, text, file, decode;
    bool no_special = false, skip_special = false;
  };
  auto opt = std::make_shared<tokenize_options>();
  auto* cmd = app.add_subcommand("tokenize", "text to token ids, or ids to text");
  cmd->add_option("--tokenizer", opt->tokenizer_path,
                  "tokenizer.json, or a directory with it or with vocab.json + merges.txt")
      ->required();
  auto* text = cmd->add_option("--text", opt->text, "text to encode");
  auto* file = cmd->add_option("--file", opt->file, "file to encode");
  auto* decode = cmd->add_option("--decode", opt->decode, "ids to decode");
  text->excludes(file)->excludes(decode);
  file->excludes(decode);
  cmd->add_flag("--no-special", opt->no_special,
                "encode without the post-processor's special tokens (e.g. BOS)");
  cmd->add_flag("--skip-special", opt->skip_special, "decode without special tokens");
  cmd->callback([opt, cmd] {
    if (cmd->count("--text") + cmd->count("--file") + cmd->count("--decode") == 0) {
      throw usage_error("tokenize needs --text, --file or --decode");
    }
    const auto tokenizer = open_tokenizer(opt->tokenizer_path);
    if (!opt->decode.empty()) {
      const std::string bytes = tokenizer.decode(parse_token_ids(opt->decode), opt->skip_special);
      std::fwrite(bytes.data(), 1, bytes.size(), stdout);
      return;
    }
    std::string input = opt->text;
    if (!opt->file.empty()) {
      std::ifstream in(opt->file, std::ios::binary);
      if (!in) throw usage_error("cannot open --file '" + opt->file + "'");
      input.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    const auto ids = tokenizer.encode(input, !opt->no_special);
    for (std::size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? " " : "", ids[i]);
    std::printf("\n");
  });
}

}  // namespace eigenformer_cli
