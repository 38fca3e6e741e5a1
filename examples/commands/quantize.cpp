// eigenformer quantize --model FILE.gguf --out FILE.gguf --dtype q8_0|q4_0|q4_k_m
// Rewrites a GGUF file of float weights (F32/F16/BF16) with quantized weights, tensor for tensor
// as llama.cpp's llama-quantize does (io/gguf_quantize.hpp); llama.cpp loads the result.
#include <cstdio>

#include <eigenformer/io/gguf_quantize.hpp>

#include "../cli_common.hpp"
#include "../commands.hpp"

namespace eigenformer_cli {

void add_quantize_command(CLI::App& app) {
  struct quantize_options {
    std::string model, out, dtype;
  };
  auto opt = std::make_shared<quantize_options>();
  auto* cmd = app.add_subcommand(
      "quantize", "write a GGUF file's float weights quantized as llama-quantize does");
  cmd->add_option("--model", opt->model, "GGUF file of F32, F16 or BF16 weights")->required();
  cmd->add_option("--out", opt->out, "GGUF file to write")->required();
  cmd->add_option("--dtype", opt->dtype, "q8_0, q4_0 or q4_k_m")
      ->required()
      ->check(CLI::IsMember({"q8_0", "q4_0", "q4_k_m"}));
  cmd->callback([opt] {
    if (!ef::is_model_file(opt->model)) {
      throw usage_error("--model " + opt->model +
                        ": quantize reads GGUF files (a Hugging Face directory: run it with "
                        "--dtype at load instead)");
    }
    const ef::gguf_file in(opt->model);
    ef::quantize_gguf(in, opt->out, ef::parse_gguf_file_type(opt->dtype));
    std::printf("wrote %s\n", opt->out.c_str());
  });
}

}  // namespace eigenformer_cli
