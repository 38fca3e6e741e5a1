// eigenformer tokenize --tokenizer DIR (--text TEXT | --file F | --decode IDS)
// GPT-2 byte-level BPE (vocab.json + merges.txt): text to ids, or ids back to text.
#include "../cli_common.hpp"
#include "../commands.hpp"

namespace eigenformer_cli {

void add_tokenize_command(CLI::App& app) {
  struct tokenize_options {
    std::string tokenizer_dir, text, file, decode;
  };
  auto opt = std::make_shared<tokenize_options>();
  auto* cmd = app.add_subcommand("tokenize", "GPT-2 BPE: text to ids, or ids to text");
  cmd->add_option("--tokenizer", opt->tokenizer_dir, "directory with vocab.json + merges.txt")
      ->required();
  auto* text = cmd->add_option("--text", opt->text, "text to encode");
  auto* file = cmd->add_option("--file", opt->file, "file to encode");
  auto* decode = cmd->add_option("--decode", opt->decode, "ids to decode");
  text->excludes(file)->excludes(decode);
  file->excludes(decode);
  cmd->callback([opt, cmd] {
    if (cmd->count("--text") + cmd->count("--file") + cmd->count("--decode") == 0) {
      throw usage_error("tokenize needs --text, --file or --decode");
    }
    check_tokenizer_dir(opt->tokenizer_dir);
    const auto tokenizer = ef::gpt2_tokenizer::from_directory(opt->tokenizer_dir);
    if (!opt->decode.empty()) {
      const std::string bytes = tokenizer.decode(parse_token_ids(opt->decode));
      std::fwrite(bytes.data(), 1, bytes.size(), stdout);
      return;
    }
    std::string input = opt->text;
    if (!opt->file.empty()) {
      std::ifstream in(opt->file, std::ios::binary);
      if (!in) throw usage_error("cannot open --file '" + opt->file + "'");
      input.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    const auto ids = tokenizer.encode(input);
    for (std::size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? " " : "", ids[i]);
    std::printf("\n");
  });
}

}  // namespace eigenformer_cli
