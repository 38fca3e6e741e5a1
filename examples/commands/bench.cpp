// eigenformer bench [--model DIR | --shape NAME] [-p 256] [-n 128] [--depth 128] [--threads 1,2]
//                   [--dtype f32,bf16,bf16mix] [-r 5] [--json]
// llama-bench style: prefill (ppN) and generation (tgN after --depth tokens) in tokens/s, with
// GFLOP/s or weight GB/s and peak RSS, on a checkpoint or on random weights of a known shape.
#include <cmath>
#include <tuple>

#include "../cli_common.hpp"
#include "../commands.hpp"
#include "../model_shapes.hpp"

namespace eigenformer_cli {
namespace {

/// Peak resident memory since the last reset_peak_rss(), in MiB (Linux; 0 elsewhere).
double peak_rss_mib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0.0;
}
void reset_peak_rss() {
  std::ofstream("/proc/self/clear_refs") << "5";
}

struct bench_options {
  std::string model_dir, shape = "gpt2", prompts = "256", gens = "128", threads, dtypes = "f32";
  long long depth = 128, repetitions = 5;
  bool json = false;
};

struct bench_result {
  std::string test, dtype;
  long long n_prompt = 0, n_gen = 0, depth = 0;
  int threads = 1;
  double mean = 0, stddev = 0, rate = 0;  // tokens/s, and GFLOP/s (pp) or weight GB/s (tg)
  double peak_rss = 0;
};

/// Mean and sample standard deviation of tokens/s over the runs.
std::pair<double, double> mean_sd(const std::vector<double>& v) {
  double mean = 0, var = 0;
  for (double x : v) mean += x / double(v.size());
  for (double x : v)
    var += (x - mean) * (x - mean) / double(std::max<std::size_t>(1, v.size() - 1));
  return {mean, std::sqrt(var)};
}

void run_bench(const bench_options& opt) {
  const auto prompts = parse_list(opt.prompts, "-p");
  const auto gens = parse_list(opt.gens, "-n");
  const auto threads = parse_list(
      opt.threads.empty() ? std::to_string(ef::num_threads()) : opt.threads, "--threads");
  if (opt.repetitions < 1) throw usage_error("-r must be >= 1");
  if (opt.depth < 0) throw usage_error("--depth must be >= 0");
  const auto dtypes = split_commas(opt.dtypes);
  for (const std::string& d : dtypes) {
    const auto& names = dtype_names();
    if (std::find(names.begin(), names.end(), d) == names.end()) {
      std::string list;
      for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
      throw usage_error("--dtype '" + d + "' is not one of " + list);
    }
  }
  ef::model m;
  std::string model_name;
  if (!opt.model_dir.empty()) {
    check_model_dir(opt.model_dir);
    const auto start = clock_type::now();
    m = ef::load_model<float>(opt.model_dir);
    std::fprintf(stderr, "bench: loaded %s in %.3f s\n", opt.model_dir.c_str(),
                 seconds_since(start));
    model_name = fs::path(opt.model_dir).filename().string();
  } else {
    const auto start = clock_type::now();
    m = random_model(opt.shape);
    std::fprintf(stderr, "bench: built %s-shaped random weights in %.1f s\n", opt.shape.c_str(),
                 seconds_since(start));
    model_name = opt.shape + " (random)";
  }
  const auto& c = m.config;
  for (const long long p : prompts) {
    if (p > c.n_ctx)
      throw usage_error(ef::detail::concat("-p ", p, " exceeds the context of ", c.n_ctx));
  }
  for (const long long n : gens) {
    if (opt.depth + n > c.n_ctx) {
      throw usage_error(ef::detail::concat("--depth ", opt.depth, " + -n ", n,
                                           " exceeds the context of ", c.n_ctx));
    }
  }
  const auto tokens_of = [&](long long n) {
    std::vector<ef::token_id> t(static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < t.size(); ++i)
      t[i] = ef::token_id((i * 7919 + 13) % std::size_t(c.vocab_size));
    return t;
  };

  std::vector<bench_result> results;
  const std::size_t total = dtypes.size() * threads.size() * (prompts.size() + gens.size());
  for (const std::string& dtype : dtypes) {
    // Each dtype starts from the weights as loaded (packing and quantizing are one-way).
    ef::model converted = m;
    apply_dtype(converted, dtype);
    for (const long long t : threads) {
      ef::set_num_threads(int(t));
      const auto report = [&](bench_result r) {
        r.threads = int(t);
        r.dtype = dtype;
        if (opt.json) {
          const nlohmann::json j = {{"model", model_name},
                                    {"test", r.test},
                                    {"n_prompt", r.n_prompt},
                                    {"n_gen", r.n_gen},
                                    {"depth", r.depth},
                                    {"dtype", r.dtype},
                                    {"threads", r.threads},
                                    {"tokens_per_s", r.mean},
                                    {"stddev", r.stddev},
                                    {"gflops", r.n_prompt > 0 ? r.rate : 0.0},
                                    {"weight_gb_per_s", r.n_gen > 0 ? r.rate : 0.0},
                                    {"peak_rss_mib", r.peak_rss}};
          std::printf("%s\n", j.dump().c_str());
          std::fflush(stdout);
        }
        results.push_back(r);
      };
      for (const long long p : prompts) {
        std::fprintf(stderr, "bench: [%zu/%zu] pp%lld %s threads=%lld\n", results.size() + 1, total,
                     p, dtype.c_str(), t);
        reset_peak_rss();
        const auto tokens = tokens_of(p);
        ef::activations acts(c, p, ef::logits_for::last_position);
        std::vector<double> rates;
        for (long long run = 0; run <= opt.repetitions; ++run) {  // run 0 is the warm-up
          const auto start = clock_type::now();
          ef::forward(c, converted.weights, tokens, acts, ef::logits_for::last_position);
          if (run > 0) rates.push_back(double(p) / seconds_since(start));
        }
        bench_result r;
        r.test = "pp" + std::to_string(p), r.n_prompt = p;
        std::tie(r.mean, r.stddev) = mean_sd(rates);
        r.rate = ef::forward_flops(c, 0, p, 1) / (double(p) / r.mean) * 1e-9;
        r.peak_rss = peak_rss_mib();
        report(r);
      }
      for (const long long n : gens) {
        std::fprintf(stderr, "bench: [%zu/%zu] tg%lld depth=%lld %s threads=%lld\n",
                     results.size() + 1, total, n, opt.depth, dtype.c_str(), t);
        reset_peak_rss();
        const auto prompt = tokens_of(std::max<long long>(opt.depth, 1));
        ef::kv_cache cache(c, opt.depth + n);  // not n_ctx: Llama 3.2 allows 131072
        ef::activations prefill_acts(c, std::max<long long>(opt.depth, 1),
                                     ef::logits_for::last_position);
        ef::activations acts(c, 1, ef::logits_for::last_position);
        std::vector<double> rates;
        for (long long run = 0; run <= opt.repetitions; ++run) {
          cache.reset();
          ef::token_id next = 0;
          if (opt.depth > 0) {  // the prompt is not timed
            const auto logits = ef::forward(c, converted.weights, cache, prompt, prefill_acts);
            logits.row(0).maxCoeff(&next);
          }
          const auto start = clock_type::now();
          for (long long i = 0; i < n; ++i) {
            const auto logits = ef::forward(c, converted.weights, cache, {next}, acts);
            ef::index_t best = 0;
            logits.row(0).maxCoeff(&best);
            next = ef::token_id(best);
          }
          if (run > 0) rates.push_back(double(n) / seconds_since(start));
        }
        bench_result r;
        r.test = "tg" + std::to_string(n), r.n_gen = n, r.depth = opt.depth;
        std::tie(r.mean, r.stddev) = mean_sd(rates);
        r.rate = ef::decode_weight_bytes(converted.weights) * r.mean * 1e-9;
        r.peak_rss = peak_rss_mib();
        report(r);
      }
    }
  }
  if (!opt.json) {
    std::printf(
        "| model | test | dtype | threads | tokens/s | GFLOP/s or weight GB/s | peak RSS MiB |\n");
    std::printf("|---|---|---|---:|---:|---:|---:|\n");
    for (const auto& r : results) {
      const std::string test = r.n_gen > 0 ? r.test + " @ d" + std::to_string(r.depth) : r.test;
      std::printf("| %s | %s | %s | %d | %.1f ± %.1f | %.1f %s | %.0f |\n", model_name.c_str(),
                  test.c_str(), r.dtype.c_str(), r.threads, r.mean, r.stddev, r.rate,
                  r.n_gen > 0 ? "GB/s" : "GFLOP/s", r.peak_rss);
    }
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto opt = std::make_shared<bench_options>();
  auto* cmd =
      app.add_subcommand("bench", "prefill (ppN) and generation (tgN) speed, llama-bench style");
  auto* model =
      cmd->add_option("--model", opt->model_dir, "GGUF file or Hugging Face model directory");
  cmd->add_option("--shape", opt->shape,
                  "random weights of this shape (default gpt2): " + shape_names())
      ->excludes(model);
  cmd->add_option("-p", opt->prompts, "prefill sizes, comma separated (default 256)");
  cmd->add_option("-n", opt->gens, "generated tokens, comma separated (default 128)");
  cmd->add_option("--depth", opt->depth, "prompt tokens before generation (default 128)");
  cmd->add_option("--threads", opt->threads, "thread counts, comma separated (default: all cores)");
  cmd->add_option(
      "--dtype", opt->dtypes,
      "weight types, comma separated: f32, bf16, bf16mix, q8_0, q4_0, q5_0, q5_1, q4_k, "
      "q5_k, q6_k, q4_k_m (default f32)");
  add_activations_option(cmd);
  cmd->add_option("-r", opt->repetitions, "timed runs per test after one warm-up (default 5)");
  cmd->add_flag("--json", opt->json, "one JSON object per line instead of the table");
  cmd->callback([opt] { run_bench(*opt); });
}

}  // namespace eigenformer_cli
