// eigenformer quantize --model FILE.gguf|DIR --out FILE.gguf --dtype f32|q8_0|q4_0|q4_k_m
// Writes a GGUF file with quantized weights, tensor for tensor as llama.cpp's llama-quantize does
// (io/gguf_quantize.hpp); llama.cpp loads the result. The input is a GGUF file of float weights
// (F32/F16/BF16) or a Hugging Face directory, first converted as llama.cpp's convert_hf_to_gguf.py
// would (io/gguf_convert.hpp, with its tokenizer's metadata from tokenizer/gguf_tokenizer.hpp);
// --dtype f32 writes that conversion as it is.
#include <cstdio>

#include <eigenformer/io/gguf_convert.hpp>
#include <eigenformer/io/gguf_quantize.hpp>
#include <eigenformer/tokenizer/gguf_tokenizer.hpp>

#include "../cli_common.hpp"
#include "../commands.hpp"

namespace eigenformer_cli {

namespace {
/// A Hugging Face directory as the F32 GGUF contents llama.cpp's converter writes; `tokenizer`
/// says whether the directory had one to put in the metadata.
ef::gguf_contents convert_directory(const std::string& dir, bool& tokenizer) {
  check_model_dir(dir);
  const ef::model model = ef::load_model<float>(dir);
  ef::gguf_contents g =
      ef::gguf_from_model(model.config, model.weights, fs::path(dir).filename().string());
  const fs::path p(dir);
  tokenizer = fs::is_regular_file(p / "tokenizer.json") ||
              (fs::is_regular_file(p / "vocab.json") && fs::is_regular_file(p / "merges.txt"));
  if (tokenizer) {
    for (auto& [key, value] :
         ef::gguf_tokenizer_metadata(dir, model.config.vocab_size, model.config))
      g.set(key, std::move(value));
  } else {
    g.set("tokenizer.ggml.model", ef::gguf_string("none"));  // noted once the file is written
  }
  return g;
}
}  // namespace

void add_quantize_command(CLI::App& app) {
  struct quantize_options {
    std::string model, out, dtype;
  };
  auto opt = std::make_shared<quantize_options>();
  auto* cmd = app.add_subcommand(
      "quantize", "write a GGUF file of a model's weights quantized as llama-quantize does");
  cmd->add_option("--model", opt->model,
                  "GGUF file of F32, F16 or BF16 weights, or Hugging Face directory")
      ->required();
  cmd->add_option("--out", opt->out, "GGUF file to write")->required();
  cmd->add_option("--dtype", opt->dtype, "f32 (directories only), q8_0, q4_0 or q4_k_m")
      ->required()
      ->check(CLI::IsMember({"f32", "q8_0", "q4_0", "q4_k_m"}));
  cmd->callback([opt] {
    bool tokenizer = true;
    if (fs::is_directory(opt->model)) {
      const ef::gguf_contents g = convert_directory(opt->model, tokenizer);
      if (opt->dtype == "f32") {
        ef::write_gguf(opt->out, g.metadata, g.tensors);
      } else {
        const ef::gguf_file converted(ef::gguf_bytes(g.metadata, g.tensors), opt->model);
        ef::quantize_gguf(converted, opt->out, ef::parse_gguf_file_type(opt->dtype));
      }
    } else {
      if (!ef::is_model_file(opt->model)) {
        throw usage_error("--model " + opt->model +
                          " is neither a GGUF file nor a Hugging Face model directory");
      }
      if (opt->dtype == "f32") throw usage_error("--dtype f32 converts directories only");
      const ef::gguf_file in(opt->model);
      ef::quantize_gguf(in, opt->out, ef::parse_gguf_file_type(opt->dtype));
    }
    std::printf("wrote %s\n", opt->out.c_str());
    if (!tokenizer) {
      std::fprintf(stderr, "note: %s has no tokenizer; the file has none (llama.cpp needs one)\n",
                   opt->model.c_str());
    }
  });
}

}  // namespace eigenformer_cli
