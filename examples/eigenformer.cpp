// The `eigenformer` command line. Needs CLI11 and nlohmann-json besides Eigen.
//
//   eigenformer logits --model DIR --tokens "464 2068 7586" [--out FILE.npy] [--precision f32|f64]
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <eigenformer/eigenformer.hpp>

namespace {

namespace ef = eigenformer;

/// A one-line user error: printed as "eigenformer: error: ..." with exit code 1.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Parses "464 2068 7586" (spaces, tabs or commas between ids) into token ids.
std::vector<ef::token_id> parse_token_ids(const std::string& text) {
  std::vector<ef::token_id> ids;
  const auto is_separator = [](char c) { return c == ' ' || c == ',' || c == '\t' || c == '\n'; };
  std::size_t i = 0;
  while (i < text.size()) {
    if (is_separator(text[i])) {
      ++i;
      continue;
    }
    std::size_t end = i;
    while (end < text.size() && !is_separator(text[end])) ++end;
    const std::string word = text.substr(i, end - i);
    long long value = 0;
    const auto [ptr, ec] = std::from_chars(word.data(), word.data() + word.size(), value);
    if (ec == std::errc::result_out_of_range ||
        (ec == std::errc() && ptr == word.data() + word.size() &&
         (value < 0 || value > INT32_MAX))) {
      throw usage_error("token id '" + word + "' is out of range");
    }
    if (ec != std::errc() || ptr != word.data() + word.size()) {
      throw usage_error("token id '" + word + "' is not a non-negative integer");
    }
    ids.push_back(static_cast<ef::token_id>(value));
    i = end;
  }
  if (ids.empty()) throw usage_error("--tokens is empty: give at least one token id");
  return ids;
}

void check_model_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) throw usage_error("model directory '" + dir + "' does not exist");
  for (const char* file : {"config.json", "model.safetensors"}) {
    if (!fs::is_regular_file(fs::path(dir) / file)) {
      throw usage_error("model directory '" + dir + "' has no " + file);
    }
  }
}

struct logits_options {
  std::string model_dir, tokens, out, precision = "f32";
};

template <class Scalar>
int run_logits(const logits_options& opt, const std::vector<ef::token_id>& tokens) {
  const auto model = ef::load_hf_gpt2<Scalar>(opt.model_dir);
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
    return 0;
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
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"eigenformer: GPT-2-style transformers on Eigen"};
  app.require_subcommand(1);

  logits_options opt;
  auto* logits = app.add_subcommand("logits", "next-token logits for every position");
  logits
      ->add_option("--model", opt.model_dir,
                   "Hugging Face GPT-2 directory (config.json + model.safetensors)")
      ->required();
  logits->add_option("--tokens", opt.tokens, "token ids, e.g. \"464 2068 7586\"")->required();
  logits->add_option("--out", opt.out, "write all logits [T, V] to this .npy file");
  logits->add_option("--precision", opt.precision, "f32 (default) or f64")
      ->check(CLI::IsMember({"f32", "f64"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string message = e.what();
    std::replace(message.begin(), message.end(), '\n', ' ');
    std::fprintf(stderr, "eigenformer: error: %s (see --help)\n", message.c_str());
    return e.get_exit_code() != 0 ? e.get_exit_code() : 2;
  }

  try {
    if (logits->parsed()) {
      const auto tokens = parse_token_ids(opt.tokens);
      check_model_dir(opt.model_dir);
      return opt.precision == "f64" ? run_logits<double>(opt, tokens)
                                    : run_logits<float>(opt, tokens);
    }
  } catch (const std::exception& e) {
    std::string message = e.what();
    std::replace(message.begin(), message.end(), '\n', ' ');
    std::fprintf(stderr, "eigenformer: error: %s\n", message.c_str());
    return 1;
  }
  return 0;
}
