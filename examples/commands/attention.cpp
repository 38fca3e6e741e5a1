// eigenformer attention --model DIR (--prompt TEXT | --tokens IDS) --layer L [--head H] --out F.png
// A heatmap of the attention weights P of one layer (rows = queries, columns = keys): one head,
// or all heads as a grid. The masked part (the future, and keys outside a sliding window) is
// exactly zero and drawn white.
#include <cmath>

#define STB_IMAGE_WRITE_IMPLEMENTATION  // the one translation unit with stb's implementation
#include <stb/stb_image_write.h>

#include "../cli_common.hpp"
#include "../commands.hpp"

namespace eigenformer_cli {
namespace {

struct attention_options {
  prompt_options prompt;
  long long layer = 0, head = -1;
  std::string out;
};

/// Maps a weight in [0, 1] to a colour from near-white through orange to dark red, so that small
/// weights stay visible against the exact zeros of the masked upper triangle (drawn white).
void heat_colour(double w, unsigned char* rgb) {
  const double t = std::sqrt(std::clamp(w, 0.0, 1.0));  // sqrt: attention is mostly small
  rgb[0] = static_cast<unsigned char>(255 - 115 * t * t);
  rgb[1] = static_cast<unsigned char>(250 - 250 * t);
  rgb[2] = static_cast<unsigned char>(240 - 240 * std::min(1.0, 1.6 * t));
}

void run_attention(const attention_options& opt) {
  if (opt.out.empty()) throw usage_error("--out is required");
  if (opt.prompt.prompt.empty() && opt.prompt.tokens.empty())
    throw usage_error("the prompt is empty");
  check_model_dir(opt.prompt.model_dir);
  const auto config = ef::read_model_config(opt.prompt.model_dir);
  if (opt.layer < 0 || opt.layer >= config.n_layer) {
    throw usage_error(
        ef::detail::concat("--layer ", opt.layer, " is outside [0, ", config.n_layer, ")"));
  }
  if (opt.head < -1 || opt.head >= config.n_head) {
    throw usage_error(
        ef::detail::concat("--head ", opt.head, " is outside [0, ", config.n_head, ")"));
  }
  std::unique_ptr<ef::text_tokenizer> tokenizer;
  const auto tokens = prompt_ids(opt.prompt, config, tokenizer, false);
  const auto model = ef::load_model<float>(opt.prompt.model_dir);
  const auto T = static_cast<ef::index_t>(tokens.size());

  std::vector<ef::matrix<float>> maps;  // the requested heads of the requested layer, [T x T] each
  ef::activations acts(model.config, T, ef::logits_for::last_position);
  ef::forward<float>(model.config, model.weights, tokens, acts, ef::logits_for::last_position,
                     [&](ef::index_t layer, ef::index_t head, ef::matrix_cref<float> p) {
                       if (layer == opt.layer && (opt.head < 0 || head == opt.head))
                         maps.emplace_back(p);
                     });
  // Grid of heads, each T x T cells of `cell` pixels, separated by a 4-pixel gap.
  const int n = static_cast<int>(maps.size());
  const int grid_cols = static_cast<int>(std::ceil(std::sqrt(double(n))));
  const int grid_rows = (n + grid_cols - 1) / grid_cols;
  const int cell = std::max(1, std::min(24, 480 / static_cast<int>(T)));
  const int side = cell * static_cast<int>(T), gap = 4;
  const int width = grid_cols * side + (grid_cols - 1) * gap,
            height = grid_rows * side + (grid_rows - 1) * gap;
  std::vector<unsigned char> image(static_cast<std::size_t>(width) * height * 3, 96);
  for (int h = 0; h < n; ++h) {
    const int x0 = (h % grid_cols) * (side + gap), y0 = (h / grid_cols) * (side + gap);
    for (int y = 0; y < side; ++y)
      for (int x = 0; x < side; ++x)
        heat_colour(maps[static_cast<std::size_t>(h)](y / cell, x / cell),
                    &image[(static_cast<std::size_t>(y0 + y) * width + x0 + x) * 3]);
  }
  if (!stbi_write_png(opt.out.c_str(), width, height, 3, image.data(), width * 3)) {
    throw usage_error("cannot write '" + opt.out + "'");
  }
  std::printf("wrote %s: layer %lld, %s, %ld tokens (rows = queries, columns = keys)\n",
              opt.out.c_str(), opt.layer,
              opt.head < 0 ? "all heads" : ("head " + std::to_string(opt.head)).c_str(),
              static_cast<long>(T));
}

}  // namespace

void add_attention_command(CLI::App& app) {
  auto opt = std::make_shared<attention_options>();
  auto* cmd = app.add_subcommand("attention", "heatmap PNG of attention weights");
  add_prompt_options(cmd, opt->prompt);
  cmd->add_option("--layer", opt->layer, "layer index")->required();
  cmd->add_option("--head", opt->head, "head index (default: all heads as a grid)");
  cmd->add_option("--out", opt->out, "PNG file to write")->required();
  cmd->callback([opt] { run_attention(*opt); });
}

}  // namespace eigenformer_cli
