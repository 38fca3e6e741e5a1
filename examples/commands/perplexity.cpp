// eigenformer perplexity --model M --text FILE [--ctx 512] [--chunks N] [--dtype TYPE]
//                        [--reference M0] [--threads N]
// Perplexity of a text, and the KL divergence of the model's next-token distributions from a
// reference's, computed as llama.cpp's llama-perplexity (and its --kl-divergence) computes them,
// so the two programs' numbers compare on the same files:
//  - the text is tokenized whole (with BOS when the tokenizer adds one) and cut into chunks of
//    --ctx tokens; each chunk is one forward pass, its first token replaced by BOS;
//  - only the second half of each chunk is scored: the logits at positions ctx/2 .. ctx-2 predict
//    the tokens after them (each prediction then has at least ctx/2 tokens of context);
//  - PPL = exp(mean negative log-likelihood), with the standard error of the mean;
//  - KLD: the mean over the scored positions of KL(reference || model), in double (llama.cpp
//    stores the reference's log-probabilities in 16 bits; we keep them exact), and how often the
//    two agree on the most likely token.
// The reference is --reference (e.g. the F32 file a quantized one was made from) or, when --dtype
// quantizes at load, the same model unquantized.
#include <cmath>
#include <optional>

#include "../cli_common.hpp"
#include "../commands.hpp"

namespace eigenformer_cli {
namespace {

struct perplexity_options {
  std::string model, reference, text_path, dtype = "f32";
  long long ctx = 0, chunks = 0;
  int threads = 0;
};

/// Running sums for a mean and its standard error.
struct mean_error {
  double sum = 0, sum_squares = 0;
  long long count = 0;
  void add(double x) { sum += x, sum_squares += x * x, ++count; }
  double mean() const { return sum / double(count); }
  double standard_error() const {
    if (count < 2) return 0;
    const double variance =
        (sum_squares / double(count) - mean() * mean()) * double(count) / double(count - 1);
    return std::sqrt(std::max(variance, 0.0) / double(count));
  }
};

/// log softmax of one row of logits, in double.
void log_softmax(const float* logits, ef::index_t vocab, std::vector<double>& out) {
  out.resize(static_cast<std::size_t>(vocab));
  double max = -INFINITY;
  for (ef::index_t v = 0; v < vocab; ++v) max = std::max(max, double(logits[v]));
  double sum = 0;
  for (ef::index_t v = 0; v < vocab; ++v) sum += std::exp(double(logits[v]) - max);
  const double log_sum = max + std::log(sum);
  for (ef::index_t v = 0; v < vocab; ++v) out[std::size_t(v)] = double(logits[v]) - log_sum;
}

std::size_t arg_max(const std::vector<double>& x) {
  return std::size_t(std::max_element(x.begin(), x.end()) - x.begin());
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw usage_error("--text: cannot read '" + path + "'");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void run_perplexity(const perplexity_options& opt) {
  if (opt.threads > 0) ef::set_num_threads(opt.threads);
  check_model_dir(opt.model);
  if (!opt.reference.empty()) check_model_dir(opt.reference);
  const ef::text_tokenizer tokenizer = open_tokenizer(opt.model);
  const std::string text = read_text(opt.text_path);
  const std::vector<ef::token_id> tokens = tokenizer.encode(text, true);
  const std::vector<ef::token_id> bos = tokenizer.encode("", true);  // [BOS] or nothing

  ef::model model = ef::load_model<float>(opt.model);
  apply_dtype(model, opt.dtype);
  const bool compare = !opt.reference.empty() || opt.dtype != "f32";
  ef::model reference;
  if (compare) reference = ef::load_model<float>(opt.reference.empty() ? opt.model : opt.reference);
  if (compare && (reference.config.vocab_size != model.config.vocab_size)) {
    throw usage_error(ef::detail::concat("--reference has a vocabulary of ",
                                         reference.config.vocab_size, ", the model ",
                                         model.config.vocab_size));
  }
  const ef::index_t ctx =
      opt.ctx > 0 ? ef::index_t(opt.ctx) : std::min<ef::index_t>(512, model.config.n_ctx);
  if (ctx < 4 || ctx > model.config.n_ctx) {
    throw usage_error(ef::detail::concat("--ctx ", ctx, " is outside [4, ", model.config.n_ctx,
                                         "] (the model's context)"));
  }
  if (compare && ctx > reference.config.n_ctx) {
    throw usage_error(ef::detail::concat("--ctx ", ctx, " exceeds the reference's context of ",
                                         reference.config.n_ctx));
  }
  const auto n_tokens = ef::index_t(tokens.size());
  if (n_tokens < 2 * ctx) {
    throw usage_error(ef::detail::concat("the text has ", n_tokens, " tokens; --ctx ", ctx,
                                         " needs at least ", 2 * ctx, " (as llama-perplexity)"));
  }
  ef::check_token_ids(tokens, model.config.vocab_size);
  ef::index_t n_chunks = n_tokens / ctx;
  if (opt.chunks > 0) n_chunks = std::min(n_chunks, ef::index_t(opt.chunks));

  const ef::index_t V = model.config.vocab_size, first = ctx / 2;
  ef::activations acts(model.config, ctx, ef::logits_for::all_positions);
  ef::activations reference_acts;
  if (compare)
    reference_acts = ef::activations(reference.config, ctx, ef::logits_for::all_positions);
  mean_error nll, reference_nll, kld;
  double max_kld = 0;
  long long same_top = 0;
  std::vector<double> log_p, log_q;
  std::vector<ef::token_id> chunk(static_cast<std::size_t>(ctx));
  const auto start = clock_type::now();
  for (ef::index_t c = 0; c < n_chunks; ++c) {
    std::copy_n(tokens.begin() + c * ctx, ctx, chunk.begin());
    if (bos.size() == 1) chunk[0] = bos[0];
    const ef::matrix_cref<float> logits = ef::forward(model.config, model.weights, chunk, acts,
                                                      ef::logits_for::all_positions);  // [ctx x V]
    std::optional<ef::matrix_cref<float>> reference_logits;
    if (compare) {
      reference_logits.emplace(ef::forward(reference.config, reference.weights, chunk,
                                           reference_acts, ef::logits_for::all_positions));
    }
    for (ef::index_t i = first; i < ctx - 1; ++i) {
      const auto next = std::size_t(tokens[std::size_t(c * ctx + i + 1)]);
      log_softmax(logits.row(i).data(), V, log_q);
      nll.add(-log_q[next]);
      if (!compare) continue;
      log_softmax(reference_logits->row(i).data(), V, log_p);
      reference_nll.add(-log_p[next]);
      double kl = 0;
      for (std::size_t v = 0; v < log_p.size(); ++v)
        kl += std::exp(log_p[v]) * (log_p[v] - log_q[v]);
      kld.add(kl);
      max_kld = std::max(max_kld, kl);
      same_top += arg_max(log_p) == arg_max(log_q);
    }
  }
  std::printf("%ld chunks of %ld tokens (%lld scored) in %.1f s\n", long(n_chunks), long(ctx),
              nll.count, seconds_since(start));
  std::printf("PPL = %.4f +/- %.5f\n", std::exp(nll.mean()),
              std::exp(nll.mean()) * nll.standard_error());
  if (!compare) return;
  std::printf("reference PPL = %.4f +/- %.5f\n", std::exp(reference_nll.mean()),
              std::exp(reference_nll.mean()) * reference_nll.standard_error());
  std::printf("Mean KLD = %.6f +/- %.6f\n", kld.mean(), kld.standard_error());
  std::printf("Maximum KLD = %.6f\n", max_kld);
  std::printf("Same top = %.3f %%\n", 100.0 * double(same_top) / double(kld.count));
}

}  // namespace

void add_perplexity_command(CLI::App& app) {
  auto opt = std::make_shared<perplexity_options>();
  auto* cmd = app.add_subcommand(
      "perplexity",
      "perplexity of a text, and KL divergence from a reference, as llama-perplexity");
  cmd->add_option("--model", opt->model, "GGUF file or Hugging Face directory (with a tokenizer)")
      ->required();
  cmd->add_option("--text", opt->text_path, "the text file to score")->required();
  cmd->add_option("--reference", opt->reference,
                  "the model to compare with (default, with --dtype: the model unquantized)");
  cmd->add_option("--ctx", opt->ctx, "tokens per chunk (default: 512 or the model's context)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--chunks", opt->chunks, "score at most this many chunks")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--dtype", opt->dtype, "weight type at load (as in generate)")
      ->check(CLI::IsMember(dtype_names()));
  cmd->add_option("--threads", opt->threads, "threads (default: all cores)")
      ->check(CLI::PositiveNumber);
  add_activations_option(cmd);
  cmd->callback([opt] { run_perplexity(*opt); });
}

}  // namespace eigenformer_cli
