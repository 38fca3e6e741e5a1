// eigenformer bench-parallel [--model DIR | --shape NAME] [--parallel 1,2,4,8,16] [-p 32]
//                            [-n 64] [--dtype f32] [--threads N] [-r 3] [--json]
// Decoding throughput against the number of sequences decoded together: for each P, P requests
// (-p prompt tokens each, -n new tokens, greedy) start at once in the continuous batcher and run
// to their end. Reports the aggregate decode rate (tokens after each request's first, per
// second of the steps after the prefill), its ratio to P = 1, and time-to-first-token and
// inter-token latency percentiles.
#include <algorithm>
#include <chrono>
#include <map>

#include <eigenformer/serving/continuous_batcher.hpp>

#include "../cli_common.hpp"
#include "../commands.hpp"
#include "../model_shapes.hpp"

namespace eigenformer_cli {
namespace {

struct parallel_options {
  std::string model_dir, shape = "gpt2", parallel = "1,2,4,8,16", dtype = "f32";
  long long prompt = 32, n_gen = 64, repetitions = 3;
  int threads = 0;
  bool json = false;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const double rank = p / 100.0 * double(v.size() - 1);
  const auto lo = std::size_t(rank);
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - double(lo));
}

struct run_result {
  double decode_rate = 0;               // tokens/s after the first token of each request
  std::vector<double> ttft_ms, itl_ms;  // per request; per gap between tokens
};

run_result run_once(const ef::model& m, long long parallel, long long prompt, long long n_gen) {
  using clock = std::chrono::steady_clock;
  ef::batcher_options options;
  options.max_sequences = ef::index_t(parallel);
  options.prefill_chunk = ef::index_t(prompt);
  options.kv_budget_bytes = 0;
  ef::continuous_batcher batcher(m, options);
  const auto start = clock::now();
  std::map<ef::sequence_id, std::vector<clock::time_point>> times;
  for (long long i = 0; i < parallel; ++i) {
    ef::generation_request r;
    r.prompt.resize(std::size_t(prompt));
    for (std::size_t k = 0; k < r.prompt.size(); ++k)
      r.prompt[k] = ef::token_id((std::size_t(i) * 7919 + k * 104729 + 13) %
                                 std::size_t(m.config.vocab_size));
    r.max_tokens = ef::index_t(n_gen);
    r.sampling.temperature = 0;  // no stop tokens: every request makes n_gen tokens
    times[batcher.submit(r)];
  }
  while (!batcher.idle()) {
    const auto events = batcher.step();
    const auto now = clock::now();
    for (const auto& e : events)
      if (e.token >= 0) times[e.id].push_back(now);
  }
  run_result out;
  clock::time_point last_first = start, end = start;
  long long after_first = 0;
  for (const auto& [id, t] : times) {
    const auto ms = [](clock::duration d) {
      return std::chrono::duration<double, std::milli>(d).count();
    };
    out.ttft_ms.push_back(ms(t.front() - start));
    for (std::size_t k = 1; k < t.size(); ++k) out.itl_ms.push_back(ms(t[k] - t[k - 1]));
    last_first = std::max(last_first, t.front());
    end = std::max(end, t.back());
    after_first += (long long)t.size() - 1;
  }
  out.decode_rate = double(after_first) / std::chrono::duration<double>(end - last_first).count();
  return out;
}

void run_bench_parallel(const parallel_options& opt) {
  const auto levels = parse_list(opt.parallel, "--parallel");
  if (opt.prompt < 1 || opt.n_gen < 2 || opt.repetitions < 1)
    throw usage_error("-p must be >= 1, -n >= 2 and -r >= 1");
  if (opt.threads > 0) ef::set_num_threads(opt.threads);
  ef::model m;
  std::string name;
  if (!opt.model_dir.empty()) {
    check_model_dir(opt.model_dir);
    m = ef::load_model<float>(opt.model_dir);
    name = opt.model_dir;
  } else {
    m = random_model(opt.shape);
    name = opt.shape + " (random)";
  }
  apply_dtype(m, opt.dtype);
  if (opt.prompt + opt.n_gen > m.config.n_ctx) {
    throw usage_error(ef::detail::concat("-p ", opt.prompt, " + -n ", opt.n_gen,
                                         " exceeds the context of ", m.config.n_ctx));
  }
  run_once(m, 1, opt.prompt, 4);  // warm the thread pool and the caches
  double single = 0;
  if (!opt.json) {
    std::printf("%s, %s, %d threads, prompt %lld, %lld new tokens each\n\n", name.c_str(),
                opt.dtype.c_str(), ef::num_threads(), opt.prompt, opt.n_gen);
    std::printf(
        "| parallel | decode tok/s | x P=1 | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | "
        "ITL p90 ms | ITL p99 ms |\n|---|---|---|---|---|---|---|---|\n");
  }
  for (const long long p : levels) {
    run_result best;
    for (long long r = 0; r < opt.repetitions; ++r) {  // the best of -r runs: the least noise
      run_result one = run_once(m, p, opt.prompt, opt.n_gen);
      if (one.decode_rate > best.decode_rate) best = std::move(one);
    }
    if (p == levels.front() && p == 1) single = best.decode_rate;
    const double ratio = single > 0 ? best.decode_rate / single : 0.0;
    if (opt.json) {
      const nlohmann::json j = {{"model", name},
                                {"dtype", opt.dtype},
                                {"threads", ef::num_threads()},
                                {"parallel", p},
                                {"n_prompt", opt.prompt},
                                {"n_gen", opt.n_gen},
                                {"decode_tokens_per_s", best.decode_rate},
                                {"ratio_to_single", ratio},
                                {"ttft_ms_p50", percentile(best.ttft_ms, 50)},
                                {"ttft_ms_p99", percentile(best.ttft_ms, 99)},
                                {"itl_ms_p50", percentile(best.itl_ms, 50)},
                                {"itl_ms_p90", percentile(best.itl_ms, 90)},
                                {"itl_ms_p99", percentile(best.itl_ms, 99)}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("| %lld | %.1f | %.2f | %.1f | %.1f | %.2f | %.2f | %.2f |\n", p,
                  best.decode_rate, ratio, percentile(best.ttft_ms, 50),
                  percentile(best.ttft_ms, 99), percentile(best.itl_ms, 50),
                  percentile(best.itl_ms, 90), percentile(best.itl_ms, 99));
    }
    std::fflush(stdout);
  }
}

}  // namespace

void add_bench_parallel_command(CLI::App& app) {
  auto opt = std::make_shared<parallel_options>();
  auto* cmd = app.add_subcommand(
      "bench-parallel", "aggregate decode rate and latency against sequences decoded together");
  cmd->add_option("--model", opt->model_dir, "model directory or GGUF file (default: --shape)");
  cmd->add_option("--shape", opt->shape, "random weights of a known shape (default gpt2)");
  cmd->add_option("--parallel", opt->parallel, "sequence counts (default 1,2,4,8,16)");
  cmd->add_option("-p", opt->prompt, "prompt tokens per request (default 32)");
  cmd->add_option("-n", opt->n_gen, "new tokens per request (default 64)");
  cmd->add_option("--dtype", opt->dtype, "weight storage, as for bench (default f32)")
      ->check(CLI::IsMember(dtype_names()));
  cmd->add_option("--threads", opt->threads, "threads (default: all cores)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("-r", opt->repetitions, "runs per count, the best reported (default 3)");
  cmd->add_flag("--json", opt->json, "one JSON object per line");
  cmd->callback([opt] { run_bench_parallel(*opt); });
}

}  // namespace eigenformer_cli
