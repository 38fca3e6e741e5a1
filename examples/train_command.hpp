// examples/train_command.hpp — `eigenformer train`: trains a GPT-2 on a text file and saves it in
// the Hugging Face layout, with its tokenizer, a CSV log and a loss-curve PNG. Included by
// cli_parse.hpp (usage_error); stb's implementation is compiled in commands/attention.cpp.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <eigenformer/eigenformer.hpp>
#include <eigenformer/tokenizer/bytes.hpp>
#include <eigenformer/tokenizer/gpt2_bpe.hpp>
#include <eigenformer/train/trainer.hpp>

#include "cli_parse.hpp"
#include "loss_plot.hpp"

namespace eigenformer_cli {

struct train_options {
  std::string data, out, tokenizer = "bytes", tokenizer_dir, init;
  // The architecture of a new model (ignored with --init); the vocabulary comes from the tokenizer.
  eigenformer::index_t layers = 4, heads = 4, embd = 128, ctx = 128;
  eigenformer::index_t batch = 16, seq_len = 0, steps = 1000, grad_accum = 1, warmup = -1;
  eigenformer::index_t eval_every = 100, eval_batches = 8;
  double lr = 1e-3, min_lr = -1, weight_decay = 0.1, grad_clip = 1.0, eval_fraction = 0.1;
  std::uint64_t seed = 1;
  int threads = 0;
  std::string command_line;  // recorded in config.json
};

namespace train_detail {

namespace fs = std::filesystem;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw usage_error("--data '" + path + "' cannot be read");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.empty()) throw usage_error("--data '" + path + "' is empty");
  return text;
}

std::string duration(double seconds) {
  char buf[32];
  const long s = long(std::lround(std::max(seconds, 0.0)));
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, s / 60 % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  }
  return buf;
}

/// One status line: a bar, the step, the loss, tokens/s and the time left.
std::string progress_line(eigenformer::index_t step, eigenformer::index_t total, double loss,
                          double tokens_per_s, double eta_s) {
  constexpr int width = 24;
  const int filled = int(width * step / std::max<eigenformer::index_t>(total, 1));
  std::string bar(std::size_t(filled), '#');
  bar.resize(width, '.');
  char buf[160];
  std::snprintf(buf, sizeof buf, "[%s] step %lld/%lld  loss %.4f  %.0f tok/s  ETA %s", bar.c_str(),
                static_cast<long long>(step), static_cast<long long>(total), loss, tokens_per_s,
                duration(eta_s).c_str());
  return buf;
}

}  // namespace train_detail

inline int run_train(train_options opt) {
  namespace ef = eigenformer;
  using namespace train_detail;
  if (opt.threads > 0) ef::set_num_threads(opt.threads);
  if (opt.tokenizer != "bytes" && opt.tokenizer != "gpt2") {
    throw usage_error("--tokenizer must be bytes or gpt2");
  }
  const std::string text = read_text(opt.data);

  // The model: a checkpoint to fine-tune, or GPT-2's initialisation of the requested shape.
  ef::model m;
  std::string tokenizer_source = opt.tokenizer_dir;
  if (!opt.init.empty()) {
    m = ef::load_hf_gpt2<float>(opt.init);
    ef::validate_weights(m.config, m.weights);
    if (tokenizer_source.empty()) tokenizer_source = opt.init;
  }
  std::vector<ef::token_id> tokens;
  std::unique_ptr<ef::gpt2_tokenizer> bpe;
  const ef::byte_tokenizer bytes;
  ef::index_t vocab = 0;
  if (opt.tokenizer == "bytes") {
    tokens = bytes.encode(text);
    vocab = bytes.vocab_size();
  } else {
    if (tokenizer_source.empty()) {
      throw usage_error("--tokenizer gpt2 needs --tokenizer-dir DIR (vocab.json + merges.txt)");
    }
    bpe =
        std::make_unique<ef::gpt2_tokenizer>(ef::gpt2_tokenizer::from_directory(tokenizer_source));
    tokens = bpe->encode(text);
    vocab = bpe->vocab_size();
  }
  if (opt.init.empty()) {
    m.config = ef::model_config::gpt2(opt.layers, opt.heads, opt.embd, vocab, opt.ctx);
    m.config.validate();
    m.weights = ef::init_gpt2_weights<float>(m.config, opt.seed);
  } else if (vocab > m.config.vocab_size) {
    throw usage_error(ef::detail::concat("the ", opt.tokenizer, " tokenizer has ", vocab,
                                         " tokens, the model in --init only ",
                                         m.config.vocab_size));
  }

  ef::training_options t;
  t.batch = opt.batch;
  t.seq_len = opt.seq_len > 0 ? opt.seq_len : m.config.n_ctx;
  t.grad_accum = opt.grad_accum;
  t.seed = opt.seed;
  t.adamw.weight_decay = opt.weight_decay;
  t.adamw.max_grad_norm = opt.grad_clip;
  const ef::index_t warmup =
      opt.warmup >= 0 ? opt.warmup : std::max<ef::index_t>(1, opt.steps / 20);
  t.schedule = {opt.lr, opt.min_lr >= 0 ? opt.min_lr : opt.lr / 10, warmup, opt.steps};
  if (opt.steps < 1 || opt.eval_every < 1 || opt.eval_batches < 1) {
    throw usage_error("--steps, --eval-every and --eval-batches must be at least 1");
  }
  t.validate(m.config);
  const auto split = ef::split_tokens(tokens, opt.eval_fraction, t.seq_len);

  fs::create_directories(opt.out);
  const fs::path out(opt.out);
  std::ofstream csv(out / "log.csv");
  if (!csv) throw usage_error("cannot write " + (out / "log.csv").string());
  csv << "step,train_loss,eval_loss,lr,tokens_per_s\n";

  ef::index_t n_params = 0;
  ef::for_each_parameter(
      m.config, m.weights,
      [&](const std::string&, const auto& tensor, const auto&) { n_params += tensor.size(); });
  std::fprintf(stderr,
               "train: %lld parameters (%lld layers, %lld heads, C = %lld, V = %lld, ctx %lld); "
               "%zu tokens (%zu train, %zu held out); B = %lld x T = %lld x %lld accumulation; "
               "%d threads\n",
               static_cast<long long>(n_params), static_cast<long long>(m.config.n_layer),
               static_cast<long long>(m.config.n_head), static_cast<long long>(m.config.n_embd),
               static_cast<long long>(m.config.vocab_size), static_cast<long long>(m.config.n_ctx),
               tokens.size(), split.train.size(), split.eval.size(),
               static_cast<long long>(t.batch), static_cast<long long>(t.seq_len),
               static_cast<long long>(t.grad_accum), ef::num_threads());

  ef::trainer trainer(m.config, m.weights, t);
  std::vector<loss_point> train_curve, eval_curve;
  const double initial_eval = trainer.evaluate(split.eval, opt.eval_batches);
  eval_curve.push_back({0.0, initial_eval});
  csv << 0 << ",," << initial_eval << ",,\n";
  std::fprintf(stderr, "train: step 0: held-out loss %.4f\n", initial_eval);

  const bool tty = isatty(fileno(stderr)) != 0;
  const double tokens_per_step = double(t.batch * t.seq_len * t.grad_accum);
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  double train_seconds = 0, last_loss = 0, last_eval = initial_eval;
  for (ef::index_t step = 1; step <= opt.steps; ++step) {
    const auto t0 = clock::now();
    const auto r = trainer.step(split.train);
    const double dt = std::chrono::duration<double>(clock::now() - t0).count();
    train_seconds += dt;
    last_loss = r.loss;
    if (!std::isfinite(r.loss)) {
      throw ef::value_error(ef::detail::concat("train: the loss became ", r.loss, " at step ", step,
                                               " (try a lower --lr)"));
    }
    const double rate = tokens_per_step / dt;
    const double eta = train_seconds / double(step) * double(opt.steps - step);
    train_curve.push_back({double(step), r.loss});
    const bool evaluate = step % opt.eval_every == 0 || step == opt.steps;
    double eval_loss = NAN;
    if (evaluate) {
      eval_loss = last_eval = trainer.evaluate(split.eval, opt.eval_batches);
      eval_curve.push_back({double(step), eval_loss});
    }
    csv << step << ',' << r.loss << ',';
    if (evaluate) csv << eval_loss;
    csv << ',' << r.lr << ',' << rate << '\n';
    const std::string line = progress_line(step, opt.steps, r.loss, rate, eta);
    if (tty) {
      std::fprintf(stderr, "\r%s", line.c_str());
      if (evaluate) std::fprintf(stderr, "\n");
    } else if (evaluate || step % std::max<ef::index_t>(1, opt.steps / 20) == 0) {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    if (evaluate)
      std::fprintf(stderr, "train: step %lld: held-out loss %.4f\n", static_cast<long long>(step),
                   eval_loss);
  }
  csv.close();
  const double total_seconds = std::chrono::duration<double>(clock::now() - start).count();

  ef::save_hf_gpt2(m, opt.out,
                   {{"eigenformer_training",
                     {{"command", opt.command_line},
                      {"steps", opt.steps},
                      {"final_train_loss", last_loss},
                      {"final_eval_loss", last_eval},
                      {"tokenizer", opt.tokenizer}}}});
  if (opt.tokenizer == "bytes") {
    ef::save_byte_tokenizer(bytes, opt.out);
  } else {
    for (const char* file : {"vocab.json", "merges.txt"}) {
      const fs::path src = fs::path(tokenizer_source) / file, dst = out / file;
      if (fs::weakly_canonical(src) != fs::weakly_canonical(dst)) {
        fs::copy_file(src, dst, fs::copy_options::overwrite_existing);
      }
    }
  }
  const bool plotted = loss_plot(800, 450).write((out / "loss.png").string(), train_curve,
                                                 eval_curve, double(opt.steps));
  std::fprintf(
      stderr,
      "train: %lld steps in %s (%.0f tok/s); train loss %.4f, held-out loss %.4f\n"
      "train: wrote %s/{config.json, model.safetensors, vocab.json, merges.txt, log.csv%s}\n",
      static_cast<long long>(opt.steps), duration(total_seconds).c_str(),
      tokens_per_step * double(opt.steps) / train_seconds, last_loss, last_eval, opt.out.c_str(),
      plotted ? ", loss.png" : "");
  if (!plotted) throw ef::io_error((out / "loss.png").string() + ": cannot write");
  return 0;
}

}  // namespace eigenformer_cli
