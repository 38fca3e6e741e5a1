// examples/train_command.hpp — `eigenformer train`: trains a GPT-2 or a Llama-family model (from
// scratch, or fine-tuning a Hugging Face checkpoint) on a text file and saves it in the Hugging
// Face layout of its family, with its tokenizer, a CSV log and a loss-curve PNG.
//
// A run never loses more than --save-every steps: every N steps (and on SIGINT/SIGTERM) it writes
// <out>/checkpoints/step-<N> atomically (train/checkpoint.hpp), and `--resume DIR` continues from
// the newest intact checkpoint there, bit-identical to a run that was never stopped. Included by
// cli_parse.hpp (usage_error); stb's implementation is compiled in commands/attention.cpp.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <eigenformer/eigenformer.hpp>
#include <eigenformer/tokenizer/bytes.hpp>
#include <eigenformer/tokenizer/text_tokenizer.hpp>
#include <eigenformer/train/checkpoint.hpp>
#include <eigenformer/train/trainer.hpp>

#ifdef EIGENFORMER_HAVE_MPI
#include <eigenformer/train/mpi.hpp>
#endif

#include "cli_parse.hpp"
#include "loss_plot.hpp"
#include "model_shapes.hpp"

namespace eigenformer_cli {

struct train_options {
  std::string data, out, tokenizer, tokenizer_dir, init, resume;
  architecture_options shape;  // a new model's (not with --init); the vocabulary: the tokenizer's
  eigenformer::index_t batch = 16, seq_len = 0, steps = 1000, grad_accum = 1, warmup = -1;
  eigenformer::index_t eval_every = 100, eval_batches = 8, save_every = 0;
  double lr = 1e-3, min_lr = -1, weight_decay = 0.1, grad_clip = 1.0, eval_fraction = 0.1;
  std::uint64_t seed = 1;
  int threads = 0;
  std::string command_line;  // recorded in config.json

  train_options() { shape.layers = 4, shape.heads = 4, shape.embd = 128, shape.ctx = 128; }

  /// The options that define the run: a resumed run must be given the same ones (--threads,
  /// --save-every, --out and --resume may change; the data is checked by its checksum).
  nlohmann::json defining() const {
    return {{"arch", shape.arch},
            {"layers", shape.layers},
            {"heads", shape.heads},
            {"kv-heads", shape.kv_heads},
            {"head-dim", shape.head_dim},
            {"embd", shape.embd},
            {"inner", shape.inner},
            {"ctx", shape.ctx},
            {"window", shape.window},
            {"rope-theta", shape.rope_theta},
            {"init", init},
            {"tokenizer", tokenizer},
            {"tokenizer-dir", tokenizer_dir},
            {"batch", batch},
            {"seq-len", seq_len},
            {"steps", steps},
            {"grad-accum", grad_accum},
            {"warmup", warmup},
            {"eval-every", eval_every},
            {"eval-batches", eval_batches},
            {"eval-fraction", eval_fraction},
            {"lr", lr},
            {"min-lr", min_lr},
            {"weight-decay", weight_decay},
            {"grad-clip", grad_clip},
            {"seed", seed}};
  }
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

/// The tokenizer of a run: the byte tokenizer, or a directory's (tokenizer.json, or GPT-2's
/// vocab.json + merges.txt), with the files that travel with the model.
struct run_tokenizer {
  std::unique_ptr<eigenformer::text_tokenizer> text;  // null: bytes
  eigenformer::byte_tokenizer bytes;
  std::vector<std::string> files;  // copied next to the model and into checkpoints

  eigenformer::index_t vocab_size() const { return text ? text->vocab_size() : bytes.vocab_size(); }
  std::vector<eigenformer::token_id> encode(const std::string& s) const {
    return text ? text->encode(s, /*add_special_tokens=*/false) : bytes.encode(s);
  }
  void save(const fs::path& out) const {
    if (!text) return eigenformer::save_byte_tokenizer(bytes, out.string());
    for (const auto& file : files) {
      const fs::path dst = out / fs::path(file).filename();
      if (!fs::exists(dst) || fs::weakly_canonical(file) != fs::weakly_canonical(dst)) {
        fs::copy_file(file, dst, fs::copy_options::overwrite_existing);
      }
    }
  }
};

run_tokenizer load_tokenizer(const std::string& kind, const std::string& dir) {
  run_tokenizer t;
  if (kind == "bytes") return t;
  if (dir.empty()) {
    throw usage_error("--tokenizer " + kind + " needs --tokenizer-dir DIR (or --init DIR)");
  }
  t.text =
      std::make_unique<eigenformer::text_tokenizer>(eigenformer::text_tokenizer::from_path(dir));
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                           "vocab.json", "merges.txt"}) {
    const fs::path p = fs::path(dir) / name;
    if (fs::is_regular_file(p)) t.files.push_back(p.string());
  }
  return t;
}

/// The text file's checksum and size: a resumed run must read the same data.
nlohmann::json data_identity(const std::string& path) {
  return {{"bytes", fs::file_size(path)},
          {"fnv1a64", eigenformer::detail::hex64(eigenformer::file_checksum(path))}};
}

/// The first option whose value differs between a checkpoint's run and this command, or "".
std::string first_difference(const nlohmann::json& saved, const nlohmann::json& now) {
  for (const auto& [key, value] : now.items()) {
    if (!saved.contains(key) || saved[key] != value) {
      return "--" + key + " is " + value.dump() + ", the checkpoint's run had " +
             (saved.contains(key) ? saved[key].dump() : std::string("none"));
    }
  }
  return "";
}

/// log.csv rows up to `step` (a resumed run drops what came after its checkpoint), and the
/// curves for the plot.
struct log_rows {
  std::vector<std::string> lines;  // without the header
  std::vector<loss_point> train, eval;
};

log_rows read_log(const fs::path& path, eigenformer::index_t up_to_step) {
  log_rows rows;
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) cells.push_back(cell);
    if (cells.size() < 3) continue;
    const double step = std::atof(cells[0].c_str());
    if (step > double(up_to_step)) break;
    rows.lines.push_back(line);
    if (!cells[1].empty()) rows.train.push_back({step, std::atof(cells[1].c_str())});
    if (!cells[2].empty()) rows.eval.push_back({step, std::atof(cells[2].c_str())});
  }
  return rows;
}

/// How many processes mpirun started (1 when not under mpirun).
int mpirun_world_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"}) {
    if (const char* v = std::getenv(name)) return std::max(1, std::atoi(v));
  }
  return 1;
}

/// Threads per rank by default: the cores shared among the ranks on this host.
int default_threads() {
  const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  const int ranks_here = local ? std::max(1, std::atoi(local)) : 1;
  return std::max(1, eigenformer::num_threads() / ranks_here);
}

volatile std::sig_atomic_t stop_signal = 0;
extern "C" inline void on_stop_signal(int sig) {
  stop_signal = sig;
}

}  // namespace train_detail

/// The processes of a run: one, or the ranks mpirun started. Rank 0 alone evaluates, logs and
/// writes files; every rank trains on its share of each batch.
struct run_ranks {
  int rank = 0, world = 1;
  eigenformer::gradient_communicator communicator;
  std::function<bool(bool)> any = [](bool mine) { return mine; };  // agreed over all ranks
  std::function<void()> barrier = [] {};
  bool lead() const { return rank == 0; }
};

inline int run_train_on(train_options opt, const run_ranks& ranks);

inline int run_train(train_options opt) {
  run_ranks ranks;
  if (train_detail::mpirun_world_size() > 1) {
#ifdef EIGENFORMER_HAVE_MPI
    eigenformer::mpi_session mpi;
    ranks.rank = mpi.rank(), ranks.world = mpi.world();
    ranks.communicator = mpi.communicator();
    ranks.any = [&mpi](bool mine) { return mpi.any(mine); };
    ranks.barrier = [] { MPI_Barrier(MPI_COMM_WORLD); };
    try {
      return run_train_on(std::move(opt), ranks);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "eigenformer: error: rank %d: %s\n", ranks.rank, e.what());
      eigenformer::mpi_session::abort(1);  // the other ranks must not wait for this one
    }
#else
    throw usage_error(
        "started by mpirun, but this eigenformer was built without MPI "
        "(install libopenmpi-dev and rebuild)");
#endif
  }
  return run_train_on(std::move(opt), ranks);
}

inline int run_train_on(train_options opt, const run_ranks& ranks) {
  namespace ef = eigenformer;
  using namespace train_detail;
  ef::set_num_threads(opt.threads > 0 ? opt.threads : default_threads());
  if (opt.tokenizer.empty()) opt.tokenizer = opt.init.empty() ? "bytes" : "model";
  if (opt.tokenizer != "bytes" && opt.tokenizer != "gpt2" && opt.tokenizer != "model") {
    throw usage_error("--tokenizer must be bytes, gpt2 or model");
  }
  if (opt.steps < 1 || opt.eval_every < 1 || opt.eval_batches < 1 || opt.save_every < 0) {
    throw usage_error(
        "--steps, --eval-every and --eval-batches must be at least 1, --save-every 0 "
        "or more");
  }
  const std::string text = read_text(opt.data);
  const fs::path out(opt.out);

  // Resuming: the newest intact checkpoint of --resume, if there is one yet.
  std::string checkpoint;
  if (!opt.resume.empty()) {
    std::vector<std::string> skipped;
    checkpoint = ef::find_resume_checkpoint(opt.resume, &skipped);
    if (ranks.lead())
      for (const auto& why : skipped) std::fprintf(stderr, "train: skipped %s\n", why.c_str());
  }

  // The tokenizer: bytes, or a directory's (the --init model's by default).
  std::string tokenizer_dir = opt.tokenizer_dir.empty() ? opt.init : opt.tokenizer_dir;
  if (!checkpoint.empty() && opt.tokenizer != "bytes") tokenizer_dir = checkpoint;  // its copy
  const run_tokenizer tokenizer = load_tokenizer(opt.tokenizer, tokenizer_dir);
  const std::vector<ef::token_id> tokens = tokenizer.encode(text);
  const ef::index_t vocab = tokenizer.vocab_size();

  // The model: a checkpoint's, a checkpoint to fine-tune, or a new one.
  ef::model m;
  ef::checkpoint_contents<float> resumed;
  if (!checkpoint.empty()) {
    resumed = ef::read_checkpoint<float>(checkpoint);
    const auto& record = resumed.run;
    if (!record.contains("options") || !record.contains("data") || !record.contains("sampler") ||
        !record.contains("step")) {
      throw ef::checkpoint_error(checkpoint + "/trainer.json: not written by eigenformer train");
    }
    if (const auto diff = first_difference(record["options"], opt.defining()); !diff.empty()) {
      throw usage_error("--resume " + checkpoint + ": " + diff);
    }
    if (record.value("ranks", 1) != ranks.world) {
      throw usage_error(ef::detail::concat("--resume ", checkpoint, ": the run had ",
                                           record.value("ranks", 1), " ranks, this one has ",
                                           ranks.world, " (resume with the same mpirun -np)"));
    }
    if (record["data"] != data_identity(opt.data)) {
      throw usage_error("--resume " + checkpoint + ": --data '" + opt.data +
                        "' is not the text the run was trained on (size or checksum differs)");
    }
    m.config = resumed.config;
    m.weights = std::move(resumed.weights);
  } else if (!opt.init.empty()) {
    m = ef::load_hf_model<float>(opt.init);
    ef::validate_weights(m.config, m.weights);
    if (m.weights.is_compressed()) throw usage_error("--init: bf16 or quantized weights");
  } else {
    m = new_model(opt.shape.config(vocab), opt.seed);
  }
  if (vocab > m.config.vocab_size) {
    throw usage_error(ef::detail::concat("the ", opt.tokenizer, " tokenizer has ", vocab,
                                         " tokens, the model only ", m.config.vocab_size));
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
  t.validate(m.config);
  const auto split = ef::split_tokens(tokens, opt.eval_fraction, t.seq_len);

  ef::trainer trainer(m.config, m.weights, t, ranks.communicator);
  ef::index_t first_step = 1;
  if (!checkpoint.empty()) {
    const ef::index_t step = resumed.run["step"].get<ef::index_t>();
    trainer.resume(step, std::move(resumed.optimizer), resumed.run["sampler"].get<std::string>());
    first_step = step + 1;
  }

  // Rank 0 alone writes: the log, the checkpoints, the model.
  log_rows history;
  std::ofstream csv;
  if (ranks.lead()) {
    fs::create_directories(opt.out);
    if (first_step > 1) history = read_log(out / "log.csv", first_step - 1);
    csv.open(out / "log.csv", std::ios::trunc);
    if (!csv) throw usage_error("cannot write " + (out / "log.csv").string());
    csv << "step,train_loss,eval_loss,lr,tokens_per_s\n";
    for (const auto& line : history.lines) csv << line << '\n';
    csv.flush();
  }
  FILE* const console = ranks.lead() ? stderr : nullptr;
  const auto say = [console](const char* format, auto... args) {
    if (console) std::fprintf(console, format, args...);
  };

  ef::index_t n_params = 0;
  ef::for_each_parameter(
      m.config, m.weights,
      [&](const std::string&, const auto& tensor, const auto&) { n_params += tensor.size(); });
  say("train: %s, %lld parameters (%lld layers, %lld heads, C = %lld, V = %lld, ctx "
      "%lld); %zu tokens (%zu train, %zu held out); B = %lld x T = %lld x %lld "
      "accumulation; %d rank(s) x %d threads\n",
      m.config.model_type.c_str(), static_cast<long long>(n_params),
      static_cast<long long>(m.config.n_layer), static_cast<long long>(m.config.n_head),
      static_cast<long long>(m.config.n_embd), static_cast<long long>(m.config.vocab_size),
      static_cast<long long>(m.config.n_ctx), tokens.size(), split.train.size(), split.eval.size(),
      static_cast<long long>(t.batch), static_cast<long long>(t.seq_len),
      static_cast<long long>(t.grad_accum), ranks.world, ef::num_threads());

  const nlohmann::json data_id = data_identity(opt.data);
  const auto save_checkpoint = [&](ef::index_t step) {
    const nlohmann::json record = {{"step", step},
                                   {"sampler", trainer.sampler_state()},
                                   {"options", opt.defining()},
                                   {"data", data_id},
                                   {"ranks", ranks.world},
                                   {"command", opt.command_line}};
    return ef::save_run_checkpoint<float>(opt.out, step, m.config, m.weights,
                                          trainer.optimizer_state(), record, tokenizer.files);
  };

  double last_eval = history.eval.empty() ? NAN : history.eval.back().loss;
  double last_loss = history.train.empty() ? NAN : history.train.back().loss;
  // SIGINT/SIGTERM from here on: finish the step, save a checkpoint, then die of the signal.
  // (Before this point nothing has been computed that a checkpoint would keep.)
  train_detail::stop_signal = 0;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  struct sigaction old_int {
  }, old_term{};
  sigaction(SIGINT, &action, &old_int);
  sigaction(SIGTERM, &action, &old_term);

  if (first_step == 1 && ranks.lead()) {
    last_eval = trainer.evaluate(split.eval, opt.eval_batches);
    history.eval.push_back({0.0, last_eval});
    csv << 0 << ",," << last_eval << ",,\n";
    say("train: step 0: held-out loss %.4f\n", last_eval);
  } else if (first_step > 1) {
    say("train: resumed from %s at step %lld\n", checkpoint.c_str(),
        static_cast<long long>(first_step - 1));
  }

  const bool tty = isatty(fileno(stderr)) != 0;
  const double tokens_per_step = double(t.batch * t.seq_len * t.grad_accum);
  using clock = std::chrono::steady_clock;
  double train_seconds = 0;
  ef::index_t steps_run = 0;
  for (ef::index_t step = first_step; step <= opt.steps; ++step) {
    const auto t0 = clock::now();
    const auto r = trainer.step(split.train);
    const double dt = std::chrono::duration<double>(clock::now() - t0).count();
    train_seconds += dt;
    ++steps_run;
    last_loss = r.loss;
    if (!std::isfinite(r.loss)) {
      throw ef::value_error(ef::detail::concat("train: the loss became ", r.loss, " at step ", step,
                                               " (try a lower --lr)"));
    }
    const double rate = tokens_per_step / dt;
    const double eta = train_seconds / double(steps_run) * double(opt.steps - step);
    history.train.push_back({double(step), r.loss});
    const bool evaluate = ranks.lead() && (step % opt.eval_every == 0 || step == opt.steps);
    double eval_loss = NAN;
    if (evaluate) {
      eval_loss = last_eval = trainer.evaluate(split.eval, opt.eval_batches);
      history.eval.push_back({double(step), eval_loss});
    }
    if (ranks.lead()) {
      csv << step << ',' << r.loss << ',';
      if (evaluate) csv << eval_loss;
      csv << ',' << r.lr << ',' << rate << '\n';
      csv.flush();
    }
    const std::string line = progress_line(step, opt.steps, r.loss, rate, eta);
    if (tty) {
      say("\r%s", line.c_str());
      if (evaluate) say("\n");
    } else if (evaluate || step % std::max<ef::index_t>(1, opt.steps / 20) == 0) {
      say("%s\n", line.c_str());
    }
    if (evaluate)
      say("train: step %lld: held-out loss %.4f\n", static_cast<long long>(step), eval_loss);
    // The ranks agree on stopping at this step (a signal may reach them at different steps).
    const bool stopping = ranks.any(train_detail::stop_signal != 0);
    if (stopping || (opt.save_every > 0 && (step % opt.save_every == 0 || step == opt.steps))) {
      const std::string dir = ranks.lead() ? save_checkpoint(step) : std::string();
      if (stopping) {
        ranks.barrier();  // the checkpoint is complete before any rank goes
        const int sig = train_detail::stop_signal != 0 ? int(train_detail::stop_signal) : SIGTERM;
        csv.close();
        say("\ntrain: stopped by %s after step %lld; checkpoint %s\n"
            "train: continue with the same command and --resume %s\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", static_cast<long long>(step), dir.c_str(),
            opt.out.c_str());
        sigaction(SIGINT, &old_int, nullptr);
        sigaction(SIGTERM, &old_term, nullptr);
        std::raise(sig);  // the exit status says what stopped the run
        return 128 + sig;
      }
    }
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  if (!ranks.lead()) return 0;
  csv.close();

  ef::save_hf_model(m, opt.out,
                    {{"eigenformer_training",
                      {{"command", opt.command_line},
                       {"steps", opt.steps},
                       {"final_train_loss", last_loss},
                       {"final_eval_loss", last_eval},
                       {"tokenizer", opt.tokenizer}}}});
  tokenizer.save(out);
  const bool plotted = loss_plot(800, 450).write((out / "loss.png").string(), history.train,
                                                 history.eval, double(opt.steps));
  say("train: %lld steps (%lld in this run, %.0f tok/s); train loss %.4f, held-out loss "
      "%.4f\ntrain: wrote %s/{config.json, model.safetensors, tokenizer, log.csv%s}\n",
      static_cast<long long>(opt.steps), static_cast<long long>(steps_run),
      steps_run > 0 ? tokens_per_step * double(steps_run) / train_seconds : 0.0, last_loss,
      last_eval, opt.out.c_str(), plotted ? ", loss.png" : "");
  if (!plotted) throw ef::io_error((out / "loss.png").string() + ": cannot write");
  return 0;
}

}  // namespace eigenformer_cli
