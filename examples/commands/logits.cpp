// eigenformer logits --model DIR --tokens "464 2068 7586" [--out FILE.npy]
//                    [--precision f32|f64|bf16|bf16mix]
// Next-token logits of a token sequence: the top five after the last position, or all [T x V]
// to a .npy file. Needs no tokenizer, so any model runs on ids.
#include <numeric>

#include "../cli_common.hpp"
#include "../commands.hpp"

namespace eigenformer_cli {
namespace {

struct logits_options {
  std::string model_dir, tokens, out, precision = "f32";
};

template <class Scalar>
void run_logits(const logits_options& opt, const std::vector<ef::token_id>& tokens) {
  auto model = ef::load_model<Scalar>(opt.model_dir);
  if constexpr (std::is_same_v<Scalar, float>) apply_dtype(model, opt.precision);
  const auto n_tokens = static_cast<ef::index_t>(tokens.size());
  if (n_tokens > model.config.n_ctx) {
    throw usage_error(ef::detail::concat(n_tokens, " tokens exceed the model's context of ",
                                         model.config.n_ctx, " by ",
                                         n_tokens - model.config.n_ctx));
  }
  ef::check_token_ids(tokens, model.config.vocab_size);
  const auto rows = opt.out.empty() ? ef::logits_for::last_position : ef::logits_for::all_positions;
  ef::basic_activations<Scalar> acts(model.config, n_tokens, rows);
  const auto logits = ef::forward(model.config, model.weights, tokens, acts, rows);
  if (!opt.out.empty()) {
    ef::write_npy<Scalar>(opt.out, logits);
    std::printf("wrote logits [%ld x %ld] (%s) to %s\n", static_cast<long>(logits.rows()),
                static_cast<long>(logits.cols()), opt.precision == "f64" ? "float64" : "float32",
                opt.out.c_str());
    return;
  }
  const auto last = logits.row(logits.rows() - 1);
  std::vector<ef::index_t> order(static_cast<std::size_t>(last.size()));
  std::iota(order.begin(), order.end(), 0);
  const std::size_t k = std::min<std::size_t>(5, order.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                    [&](ef::index_t a, ef::index_t b) { return last(a) > last(b); });
  std::printf("top %zu next tokens after position %ld:\n", k, static_cast<long>(n_tokens - 1));
  for (std::size_t i = 0; i < k; ++i) {
    std::printf("  %6ld  %.6f\n", static_cast<long>(order[i]), static_cast<double>(last(order[i])));
  }
}

}  // namespace

void add_logits_command(CLI::App& app) {
  auto opt = std::make_shared<logits_options>();
  auto* cmd = app.add_subcommand("logits", "next-token logits for every position");
  cmd->add_option("--model", opt->model_dir,
                  "GGUF file or Hugging Face directory: GPT-2, Llama, Mistral, Qwen2, Qwen3")
      ->required();
  cmd->add_option("--tokens", opt->tokens, "token ids, e.g. \"464 2068 7586\"")->required();
  cmd->add_option("--out", opt->out, "write all logits [T, V] to this .npy file");
  add_activations_option(cmd);
  cmd->add_option("--precision", opt->precision,
                  "f32 (default), f64, bf16 (bf16 weights), bf16mix (bf16 weights and inputs), "
                  "q8_0, q4_0, q5_0, q5_1, q4_k, q5_k, q6_k or q4_k_m (quantized weights)")
      ->check(CLI::IsMember([] {
        auto names = dtype_names();
        names.push_back("f64");
        return names;
      }()));
  cmd->callback([opt] {
    const auto tokens = parse_token_ids(opt->tokens);
    check_model_dir(opt->model_dir);
    if (opt->precision == "f64") {
      run_logits<double>(*opt, tokens);
    } else {
      run_logits<float>(*opt, tokens);
    }
  });
}

}  // namespace eigenformer_cli
