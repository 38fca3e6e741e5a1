// The `eigenformer` command line. Needs CLI11, nlohmann-json, PCRE2 and stb besides Eigen.
//
//   eigenformer logits    --model DIR --tokens "464 2068 7586" [--out FILE.npy] [--precision
//   f32|f64] eigenformer generate  --model DIR (--prompt TEXT | --tokens IDS) [-n 64]
//   [--temperature T]
//                         [--top-k K] [--top-p P] [--repeat-penalty R] [--seed S] [--ids]
//   eigenformer tokenize  --tokenizer DIR (--text TEXT | --file F | --decode IDS)
//   eigenformer attention --model DIR (--prompt TEXT | --tokens IDS) --layer L [--head H] --out
//   F.png eigenformer init      --out DIR [--layers L --heads H --embd C --ctx T --vocab V --seed
//   S]
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

#include <CLI/CLI.hpp>
#include <eigenformer/eigenformer.hpp>
#include <eigenformer/tokenizer/gpt2_bpe.hpp>

#include "cli_parse.hpp"
#include "train_command.hpp"

namespace {

namespace ef = eigenformer;
using eigenformer_cli::parse_token_ids;
using eigenformer_cli::usage_error;

void check_model_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) throw usage_error("model directory '" + dir + "' does not exist");
  for (const char* file : {"config.json", "model.safetensors"}) {
    if (!fs::is_regular_file(fs::path(dir) / file)) {
      throw usage_error("model directory '" + dir + "' has no " + file);
    }
  }
}

/// The "eigenformer_note" of a model's config.json (set by `eigenformer init`), if any.
std::string model_note(const std::string& dir) {
  std::ifstream in(std::filesystem::path(dir) / "config.json");
  const auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_object() && j.contains("eigenformer_note") && j["eigenformer_note"].is_string()) {
    return "this model has " + j["eigenformer_note"].get<std::string>();
  }
  return {};
}

/// Stores the matrices multiplied per token as bf16 for --dtype bf16 / bf16mix
/// (ops/bf16_matmul.hpp); f32 leaves the weights as loaded.
void apply_dtype(ef::model_weights& weights, const std::string& dtype) {
  if (dtype == "bf16") ef::pack_weights_bf16(weights, ef::bf16_compute::float_activations);
  if (dtype == "bf16mix") ef::pack_weights_bf16(weights, ef::bf16_compute::bf16_activations);
}

struct logits_options {
  std::string model_dir, tokens, out, precision = "f32";
};

template <class Scalar>
int run_logits(const logits_options& opt, const std::vector<ef::token_id>& tokens) {
  auto model = ef::load_hf_gpt2<Scalar>(opt.model_dir);
  if constexpr (std::is_same_v<Scalar, float>) apply_dtype(model.weights, opt.precision);
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

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

/// Where the prompt comes from: text through the tokenizer, or ids.
struct prompt_options {
  std::string model_dir, tokenizer_dir, prompt, tokens;
  std::string tokenizer_directory() const {
    return tokenizer_dir.empty() ? model_dir : tokenizer_dir;
  }
};

void check_tokenizer_dir(const std::string& dir) {
  for (const char* file : {"vocab.json", "merges.txt"}) {
    if (!fs::is_regular_file(fs::path(dir) / file)) {
      throw usage_error("tokenizer directory '" + dir + "' has no " + file +
                        " (give --tokenizer DIR, or --tokens instead of --prompt)");
    }
  }
}

/// Reads config.json, loads the tokenizer if needed and turns the prompt into ids, all checked
/// before the weights are loaded.
std::vector<ef::token_id> prompt_ids(const prompt_options& opt, const ef::model_config& config,
                                     std::unique_ptr<ef::gpt2_tokenizer>& tokenizer,
                                     bool need_tokenizer) {
  std::vector<ef::token_id> ids;
  if (need_tokenizer || !opt.prompt.empty()) {
    check_tokenizer_dir(opt.tokenizer_directory());
    tokenizer = std::make_unique<ef::gpt2_tokenizer>(
        ef::gpt2_tokenizer::from_directory(opt.tokenizer_directory()));
  }
  if (!opt.prompt.empty()) {
    ids = tokenizer->encode(opt.prompt);
  } else {
    ids = parse_token_ids(opt.tokens);
  }
  if (ids.empty()) throw usage_error("the prompt is empty");
  const auto n = static_cast<ef::index_t>(ids.size());
  if (n > config.n_ctx) {
    throw usage_error(ef::detail::concat("the prompt has ", n, " tokens, more than the context of ",
                                         config.n_ctx, " by ", n - config.n_ctx));
  }
  ef::check_token_ids(ids, config.vocab_size);
  return ids;
}

struct generate_options {
  prompt_options prompt;
  long long n_tokens = 64;
  ef::sampling_params sampling;
  bool seed_given = false, ids_only = false;
  std::string dtype = "f32";
};

int run_generate(generate_options opt) {
  opt.sampling.validate();  // bad sampling parameters fail before any work
  if (opt.prompt.prompt.empty() && opt.prompt.tokens.empty())
    throw usage_error("the prompt is empty");
  check_model_dir(opt.prompt.model_dir);
  const auto config =
      ef::read_hf_gpt2_config((fs::path(opt.prompt.model_dir) / "config.json").string());
  std::unique_ptr<ef::gpt2_tokenizer> tokenizer;
  const auto prompt = prompt_ids(opt.prompt, config, tokenizer, !opt.ids_only);
  const auto room = config.n_ctx - static_cast<ef::index_t>(prompt.size());
  if (opt.n_tokens < 1 || opt.n_tokens > room) {
    throw usage_error(ef::detail::concat(
        "-n ", opt.n_tokens, " must be in [1, ", room, "]: the context of ", config.n_ctx, " has ",
        room, " positions left after a ", prompt.size(), "-token prompt"));
  }
  if (!opt.seed_given) opt.sampling.seed = std::random_device{}();

  auto model = ef::load_hf_gpt2<float>(opt.prompt.model_dir);
  apply_dtype(model.weights, opt.dtype);
  if (tokenizer && tokenizer->vocab_size() > model.config.vocab_size) {
    throw usage_error(ef::detail::concat("the tokenizer has ", tokenizer->vocab_size(),
                                         " tokens but the model only ", model.config.vocab_size));
  }
  if (const auto note = model_note(opt.prompt.model_dir); !note.empty()) {
    std::fprintf(stderr, "note: %s\n", note.c_str());
  }
  ef::kv_cache cache(model.config);
  ef::activations acts(model.config, static_cast<ef::index_t>(prompt.size()),
                       ef::logits_for::last_position);
  ef::sampler sampler(opt.sampling);
  std::vector<ef::token_id> history = prompt, generated;

  if (!opt.ids_only) {
    std::fwrite(opt.prompt.prompt.data(), 1, opt.prompt.prompt.size(), stdout);
    std::fflush(stdout);
  }
  // The first step prefills the whole prompt; each later step feeds one token.
  double prefill_s = 0.0;
  const auto start = clock_type::now();
  std::vector<ef::token_id> feed = prompt;
  for (long long i = 0; i < opt.n_tokens; ++i) {
    const auto logits = ef::forward(model.config, model.weights, cache, feed, acts);
    if (i == 0) prefill_s = seconds_since(start);
    const ef::token_id next = sampler.sample(logits.row(0), history);
    generated.push_back(next);
    history.push_back(next);
    if (!opt.ids_only) {
      const std::string& bytes = tokenizer->token_bytes(next);
      std::fwrite(bytes.data(), 1, bytes.size(), stdout);
      std::fflush(stdout);
    }
    feed = {next};
  }
  // Generation time: every step after the prefill (sampling included), n - 1 forward passes
  // plus n samples; reported per generated token as llama.cpp does.
  const double decode_s = std::max(1e-9, seconds_since(start) - prefill_s);
  if (opt.ids_only) {
    for (std::size_t i = 0; i < generated.size(); ++i)
      std::printf("%s%d", i ? " " : "", generated[i]);
  }
  std::printf("\n");
  std::fprintf(stderr,
               "prompt: %zu tokens in %.1f ms (%.1f tokens/s); generated: %zu tokens in %.1f ms "
               "(%.1f tokens/s)\n",
               prompt.size(), prefill_s * 1e3, double(prompt.size()) / prefill_s, generated.size(),
               decode_s * 1e3, double(generated.size()) / decode_s);
  return 0;
}

struct tokenize_options {
  std::string tokenizer_dir, text, file, decode;
};

int run_tokenize(const tokenize_options& opt) {
  check_tokenizer_dir(opt.tokenizer_dir);
  const auto tokenizer = ef::gpt2_tokenizer::from_directory(opt.tokenizer_dir);
  if (!opt.decode.empty()) {
    const std::string bytes = tokenizer.decode(parse_token_ids(opt.decode));
    std::fwrite(bytes.data(), 1, bytes.size(), stdout);
    return 0;
  }
  std::string text = opt.text;
  if (!opt.file.empty()) {
    std::ifstream in(opt.file, std::ios::binary);
    if (!in) throw usage_error("cannot open --file '" + opt.file + "'");
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const auto ids = tokenizer.encode(text);
  for (std::size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? " " : "", ids[i]);
  std::printf("\n");
  return 0;
}

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

int run_attention(const attention_options& opt) {
  if (opt.out.empty()) throw usage_error("--out is required");
  if (opt.prompt.prompt.empty() && opt.prompt.tokens.empty())
    throw usage_error("the prompt is empty");
  check_model_dir(opt.prompt.model_dir);
  const auto config =
      ef::read_hf_gpt2_config((fs::path(opt.prompt.model_dir) / "config.json").string());
  if (opt.layer < 0 || opt.layer >= config.n_layer) {
    throw usage_error(
        ef::detail::concat("--layer ", opt.layer, " is outside [0, ", config.n_layer, ")"));
  }
  if (opt.head < -1 || opt.head >= config.n_head) {
    throw usage_error(
        ef::detail::concat("--head ", opt.head, " is outside [0, ", config.n_head, ")"));
  }
  std::unique_ptr<ef::gpt2_tokenizer> tokenizer;
  const auto tokens = prompt_ids(opt.prompt, config, tokenizer, false);
  const auto model = ef::load_hf_gpt2<float>(opt.prompt.model_dir);
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
  return 0;
}

struct init_options {
  std::string out;
  ef::model_config config{2, 4, 64, 50257, 128, 0, 1e-5};
  std::uint64_t seed = 1;
};

int run_init(const init_options& opt) {
  opt.config.validate();
  fs::create_directories(opt.out);
  ef::model m{opt.config, ef::init_gpt2_weights<float>(opt.config, opt.seed)};
  ef::save_hf_gpt2(m, opt.out,
                   {{"eigenformer_note", "random weights (eigenformer init, seed " +
                                             std::to_string(opt.seed) + "): its text is noise"}});
  std::printf("wrote a GPT-2 with random weights to %s\n", opt.out.c_str());
  return 0;
}

/// Parses "64,256,1024" into positive integers.
/// Splits "a,b,c" at the commas (an empty text gives one empty item).
std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> items;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    items.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return items;
}

/// Parses "64,256,1024" into positive integers.
std::vector<long long> parse_list(const std::string& text, const char* option) {
  std::vector<long long> values;
  for (const std::string& word : split_commas(text)) {
    long long v = 0;
    const auto [ptr, ec] = std::from_chars(word.data(), word.data() + word.size(), v);
    if (ec != std::errc() || ptr != word.data() + word.size() || v < 1) {
      throw usage_error(std::string(option) + ": '" + word + "' is not a positive integer");
    }
    values.push_back(v);
  }
  return values;
}

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

ef::model_config shape_config(const std::string& shape) {
  ef::model_config c = ef::model_config::gpt2_124m();
  if (shape == "gpt2") return c;
  if (shape == "gpt2-medium") {
    c.n_layer = 24, c.n_head = 16, c.n_embd = 1024;
    return c;
  }
  if (shape == "tiny") {
    c.n_layer = 2, c.n_head = 4, c.n_embd = 64, c.n_ctx = 1024;
    return c;
  }
  throw usage_error("--shape '" + shape + "' is not one of gpt2, gpt2-medium, tiny");
}

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

int run_bench(const bench_options& opt) {
  const auto prompts = parse_list(opt.prompts, "-p");
  const auto gens = parse_list(opt.gens, "-n");
  const auto threads = parse_list(
      opt.threads.empty() ? std::to_string(ef::num_threads()) : opt.threads, "--threads");
  if (opt.repetitions < 1) throw usage_error("-r must be >= 1");
  if (opt.depth < 0) throw usage_error("--depth must be >= 0");
  // Packing is one-way (f32 -> bf16 -> bf16mix only flips the mode), so dtypes run in that order.
  std::vector<std::string> dtypes;
  const auto requested = split_commas(opt.dtypes);
  for (const std::string& d : requested) {
    if (d != "f32" && d != "bf16" && d != "bf16mix") {
      throw usage_error("--dtype '" + d + "' is not one of f32, bf16, bf16mix");
    }
  }
  for (const char* d : {"f32", "bf16", "bf16mix"}) {
    if (std::find(requested.begin(), requested.end(), d) != requested.end()) dtypes.push_back(d);
  }
  ef::model m;
  std::string model_name;
  if (!opt.model_dir.empty()) {
    check_model_dir(opt.model_dir);
    const auto start = clock_type::now();
    m = ef::load_hf_gpt2<float>(opt.model_dir);
    std::fprintf(stderr, "bench: loaded %s in %.3f s\n", opt.model_dir.c_str(),
                 seconds_since(start));
    model_name = fs::path(opt.model_dir).filename().string();
  } else {
    m.config = shape_config(opt.shape);
    std::fprintf(stderr, "bench: building %s-shaped random weights...\n", opt.shape.c_str());
    m.weights = ef::init_gpt2_weights<float>(m.config, 1);
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
    apply_dtype(m.weights, dtype);
    const double bytes_per_weight = dtype == "f32" ? 4.0 : 2.0;
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
          ef::forward(c, m.weights, tokens, acts, ef::logits_for::last_position);
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
        ef::kv_cache cache(c);
        ef::activations prefill_acts(c, std::max<long long>(opt.depth, 1),
                                     ef::logits_for::last_position);
        ef::activations acts(c, 1, ef::logits_for::last_position);
        std::vector<double> rates;
        for (long long run = 0; run <= opt.repetitions; ++run) {
          cache.reset();
          ef::token_id next = 0;
          if (opt.depth > 0) {  // the prompt is not timed
            const auto logits = ef::forward(c, m.weights, cache, prompt, prefill_acts);
            logits.row(0).maxCoeff(&next);
          }
          const auto start = clock_type::now();
          for (long long i = 0; i < n; ++i) {
            const auto logits = ef::forward(c, m.weights, cache, {next}, acts);
            ef::index_t best = 0;
            logits.row(0).maxCoeff(&best);
            next = ef::token_id(best);
          }
          if (run > 0) rates.push_back(double(n) / seconds_since(start));
        }
        bench_result r;
        r.test = "tg" + std::to_string(n), r.n_gen = n, r.depth = opt.depth;
        std::tie(r.mean, r.stddev) = mean_sd(rates);
        r.rate = ef::decode_weight_bytes(c, bytes_per_weight) * r.mean * 1e-9;
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
  logits
      ->add_option("--precision", opt.precision,
                   "f32 (default), f64, bf16 (bf16 weights) or bf16mix (bf16 weights and inputs)")
      ->check(CLI::IsMember({"f32", "f64", "bf16", "bf16mix"}));

  generate_options gen;
  auto* generate = app.add_subcommand("generate", "generate text with a KV cache");
  const auto add_prompt = [](CLI::App* cmd, prompt_options& p) {
    cmd->add_option("--model", p.model_dir, "Hugging Face GPT-2 directory")->required();
    auto* text = cmd->add_option("--prompt", p.prompt, "prompt text (needs the tokenizer)");
    auto* ids = cmd->add_option("--tokens", p.tokens, "prompt token ids instead of text");
    text->excludes(ids);
    cmd->add_option("--tokenizer", p.tokenizer_dir,
                    "directory with vocab.json + merges.txt (default: the model directory)");
  };
  add_prompt(generate, gen.prompt);
  generate->add_option("-n", gen.n_tokens, "tokens to generate (default 64)");
  generate->add_option("--dtype", gen.dtype, "weights: f32 (default), bf16 or bf16mix")
      ->check(CLI::IsMember({"f32", "bf16", "bf16mix"}));
  generate->add_option("--temperature", gen.sampling.temperature, "0 = greedy (default 1)");
  generate->add_option("--top-k", gen.sampling.top_k, "keep the k most likely tokens; 0 = all");
  generate->add_option("--top-p", gen.sampling.top_p, "nucleus mass in (0, 1] (default 1)");
  generate->add_option("--repeat-penalty", gen.sampling.repetition_penalty,
                       "> 1 discourages repeats");
  generate->add_option("--seed", gen.sampling.seed, "random seed (default: random)")
      ->each([&](const std::string&) { gen.seed_given = true; });
  generate->add_flag("--ids", gen.ids_only, "print generated token ids instead of text");

  tokenize_options tok;
  auto* tokenize = app.add_subcommand("tokenize", "GPT-2 BPE: text to ids, or ids to text");
  tokenize->add_option("--tokenizer", tok.tokenizer_dir, "directory with vocab.json + merges.txt")
      ->required();
  auto* tok_text = tokenize->add_option("--text", tok.text, "text to encode");
  auto* tok_file = tokenize->add_option("--file", tok.file, "file to encode");
  auto* tok_decode = tokenize->add_option("--decode", tok.decode, "ids to decode");
  tok_text->excludes(tok_file)->excludes(tok_decode);
  tok_file->excludes(tok_decode);

  attention_options att;
  auto* attention = app.add_subcommand("attention", "heatmap PNG of attention weights");
  add_prompt(attention, att.prompt);
  attention->add_option("--layer", att.layer, "layer index")->required();
  attention->add_option("--head", att.head, "head index (default: all heads as a grid)");
  attention->add_option("--out", att.out, "PNG file to write")->required();

  init_options init;
  auto* init_cmd = app.add_subcommand("init", "write a GPT-2 with random weights (a demo model)");
  init_cmd->add_option("--out", init.out, "directory to write")->required();
  init_cmd->add_option("--layers", init.config.n_layer, "layers (default 2)");
  init_cmd->add_option("--heads", init.config.n_head, "heads (default 4)");
  init_cmd->add_option("--embd", init.config.n_embd, "channels (default 64)");
  init_cmd->add_option("--ctx", init.config.n_ctx, "context length (default 128)");
  init_cmd->add_option("--vocab", init.config.vocab_size, "vocabulary size (default 50257)");
  init_cmd->add_option("--seed", init.seed, "seed (default 1)");

  eigenformer_cli::train_options train;
  auto* train_cmd = app.add_subcommand("train", "train a GPT-2 on a text file");
  train_cmd->add_option("--data", train.data, "UTF-8 (or any) text file to train on")->required();
  train_cmd->add_option("--out", train.out, "directory for the model, tokenizer, log.csv, loss.png")
      ->required();
  train_cmd
      ->add_option("--tokenizer", train.tokenizer,
                   "bytes (default: 256 bytes + end of text) or gpt2")
      ->check(CLI::IsMember({"bytes", "gpt2"}));
  train_cmd->add_option("--tokenizer-dir", train.tokenizer_dir,
                        "vocab.json + merges.txt for --tokenizer gpt2 (default: the --init model)");
  auto* init_dir = train_cmd->add_option("--init", train.init, "fine-tune this checkpoint");
  for (auto [name, value, help] :
       {std::tuple{"--layers", &train.layers, "layers of a new model (default 4)"},
        std::tuple{"--heads", &train.heads, "heads (default 4)"},
        std::tuple{"--embd", &train.embd, "channels C (default 128)"},
        std::tuple{"--ctx", &train.ctx, "context length n_ctx (default 128)"}}) {
    train_cmd->add_option(name, *value, help)->excludes(init_dir);
  }
  train_cmd->add_option("--batch", train.batch, "sequences per micro-batch B (default 16)");
  train_cmd->add_option("--seq-len", train.seq_len, "tokens per sequence T (default: n_ctx)");
  train_cmd->add_option("--steps", train.steps, "optimizer steps (default 1000)");
  train_cmd->add_option("--grad-accum", train.grad_accum, "micro-batches per step (default 1)");
  train_cmd->add_option("--lr", train.lr, "peak learning rate (default 1e-3)");
  train_cmd->add_option("--min-lr", train.min_lr, "final learning rate (default lr / 10)");
  train_cmd->add_option("--warmup", train.warmup, "warm-up steps (default steps / 20)");
  train_cmd->add_option("--weight-decay", train.weight_decay, "AdamW weight decay (default 0.1)");
  train_cmd->add_option("--grad-clip", train.grad_clip, "max gradient norm, 0 = off (default 1)");
  train_cmd->add_option("--eval-every", train.eval_every,
                        "held-out evaluation period (default 100)");
  train_cmd->add_option("--eval-batches", train.eval_batches, "batches per evaluation (default 8)");
  train_cmd->add_option("--eval-fraction", train.eval_fraction,
                        "held-out tail of the text (default 0.1)");
  train_cmd->add_option("--seed", train.seed, "initialisation and batch sampling (default 1)");
  train_cmd->add_option("--threads", train.threads, "threads (default: all cores)");

  bench_options bench;
  auto* bench_cmd =
      app.add_subcommand("bench", "prefill (ppN) and generation (tgN) speed, llama-bench style");
  auto* bench_model =
      bench_cmd->add_option("--model", bench.model_dir, "Hugging Face GPT-2 directory");
  bench_cmd
      ->add_option("--shape", bench.shape,
                   "random weights of this shape: gpt2 (default), gpt2-medium, tiny")
      ->excludes(bench_model);
  bench_cmd->add_option("-p", bench.prompts, "prefill sizes, comma separated (default 256)");
  bench_cmd->add_option("-n", bench.gens, "generated tokens, comma separated (default 128)");
  bench_cmd->add_option("--depth", bench.depth, "prompt tokens before generation (default 128)");
  bench_cmd->add_option("--threads", bench.threads,
                        "thread counts, comma separated (default: all cores)");
  bench_cmd->add_option("--dtype", bench.dtypes,
                        "weight types, comma separated: f32, bf16, bf16mix (default f32)");
  bench_cmd->add_option("-r", bench.repetitions,
                        "timed runs per test after one warm-up (default 5)");
  bench_cmd->add_flag("--json", bench.json, "one JSON object per line instead of the table");

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
    if (generate->parsed()) return run_generate(gen);
    if (tokenize->parsed()) {
      if (tokenize->count("--text") + tokenize->count("--file") + tokenize->count("--decode") ==
          0) {
        throw usage_error("tokenize needs --text, --file or --decode");
      }
      return run_tokenize(tok);
    }
    if (attention->parsed()) return run_attention(att);
    if (init_cmd->parsed()) return run_init(init);
    if (bench_cmd->parsed()) return run_bench(bench);
    if (train_cmd->parsed()) {
      for (int i = 0; i < argc; ++i) train.command_line += (i ? " " : "") + std::string(argv[i]);
      return eigenformer_cli::run_train(train);
    }
  } catch (const std::exception& e) {
    std::string message = e.what();
    std::replace(message.begin(), message.end(), '\n', ' ');
    std::fprintf(stderr, "eigenformer: error: %s\n", message.c_str());
    return 1;
  }
  return 0;
}
