// eigenformer serve --model DIR|FILE.gguf [--host 127.0.0.1] [--port 8080] [--parallel 4]
//                   [--queue 64] [--api-key KEY] [--max-body BYTES] [--kv-budget MIB]
//                   [--prefill-chunk N] [--name ID] [--dtype T] [--threads N]
// An OpenAI-compatible HTTP server (cpp-httplib): GET /health, GET /v1/models,
// POST /v1/completions, POST /v1/chat/completions, streamed as server-sent events or not.
// Requests go to the continuous batcher (serving/generation_engine.hpp), up to --parallel at
// once and --queue more waiting; past that a 429 at once. A streaming client that disconnects
// cancels its sequence. SIGINT/SIGTERM: stop accepting, finish what runs, exit 0.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include <eigenformer/serving/generation_engine.hpp>
#include <eigenformer/serving/model_chat_template.hpp>
#include <eigenformer/serving/openai_api.hpp>

#include "../cli_common.hpp"
#include "../commands.hpp"

// After Eigen: httplib.h includes <resolv.h>, whose `_res` macro breaks Eigen's headers.
#include <httplib.h>

namespace eigenformer_cli {
namespace {

namespace api = ef::openai;

struct serve_options {
  std::string model, host = "127.0.0.1", api_key, name, dtype = "f32";
  int port = 8080, threads = 0;
  long long parallel = 4, queue = 64, max_body = 1 << 20, kv_budget_mib = 0, prefill_chunk = 64;
};

// Events of one request, from the engine thread to its handler.
struct event_channel {
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<ef::sequence_event> events;
  void push(const ef::sequence_event& e) {
    std::lock_guard<std::mutex> lock(mutex);
    events.push_back(e);
    ready.notify_one();
  }
  bool pop(ef::sequence_event& e, std::chrono::milliseconds wait) {
    std::unique_lock<std::mutex> lock(mutex);
    if (!ready.wait_for(lock, wait, [&] { return !events.empty(); })) return false;
    e = events.front();
    events.pop_front();
    return true;
  }
};

// One request in flight: its events turned into text, stop strings applied.
struct generation {
  api::api_request request;
  std::vector<ef::token_id> prompt;
  std::shared_ptr<event_channel> channel = std::make_shared<event_channel>();
  std::unique_ptr<ef::text_stream> text;
  ef::index_t text_vocab = 0;  // the tokenizer's ids
  api::stop_text stops{{}};
  ef::generation_engine::request_id id = 0;
  api::usage_counts usage;
  std::string finish_reason;  // "" while running
  std::string id_text;
  std::int64_t created = 0;
  bool first_chunk = true;

  // Waits for the next event; returns the new text (maybe empty), sets finish_reason at the end.
  std::string next(ef::generation_engine& engine) {
    ef::sequence_event e;
    if (!channel->pop(e, std::chrono::milliseconds(200))) return {};
    std::string out;
    if (e.token >= 0) {
      ++usage.completion_tokens;
      // A model's vocabulary may be padded past its tokenizer's (Qwen's): such ids have no text.
      if (e.token < text_vocab) out = stops.push(text->push(e.token));
      if (stops.stopped) {
        engine.cancel(id);
        finish_reason = "stop";
        return out;
      }
    }
    if (e.finished != ef::finish_reason::none) {
      out += stops.push(text->finish());
      out += stops.finish();
      finish_reason = e.finished == ef::finish_reason::length ? "length" : "stop";
      if (e.finished == ef::finish_reason::failed) {
        throw api::api_error(500, "server_error", "the generation failed");
      }
    }
    return out;
  }
};

class server {
 public:
  explicit server(const serve_options& opt) : opt_(opt) {
    check_model_dir(opt.model);
    model_ = ef::load_model<float>(opt.model);
    apply_dtype(model_, opt.dtype);
    tokenizer_ = std::make_unique<ef::text_tokenizer>(open_tokenizer(opt.model));
    try {
      chat_ = std::make_unique<ef::model_chat_template>(ef::load_model_chat_template(opt.model));
    } catch (const ef::value_error&) {  // a base model: completions only
    }
    name_ = opt.name.empty() ? model_name(opt.model) : opt.name;
    ef::batcher_options b;
    b.max_sequences = ef::index_t(opt.parallel);
    b.max_queue = ef::index_t(opt.queue);
    b.prefill_chunk = ef::index_t(opt.prefill_chunk);
    b.kv_budget_bytes = std::size_t(opt.kv_budget_mib) << 20;
    engine_ = std::make_unique<ef::generation_engine>(model_, b);
  }

  // Serves until SIGINT/SIGTERM.
  void run() {
    httplib::Server http;
    const std::size_t workers = std::size_t(opt_.parallel + opt_.queue + 8);
    http.new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
    http.set_payload_max_length(std::size_t(opt_.max_body));
    http.set_read_timeout(10, 0);  // a slow sender does not hold a worker forever
    http.set_write_timeout(30, 0);
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (const auto length =
              std::strtoull(req.get_header_value("Content-Length").c_str(), nullptr, 10);
          length > std::uint64_t(opt_.max_body)) {
        send_error(
            res, api::api_error(413, "invalid_request_error",
                                ef::detail::concat("the body of ", length,
                                                   " bytes exceeds the limit of ", opt_.max_body)));
        return httplib::Server::HandlerResponse::Handled;
      }
      if (!opt_.api_key.empty() && req.path != "/health" && !authorized(req)) {
        send_error(res, api::api_error(401, "invalid_request_error",
                                       "a valid 'Authorization: Bearer <key>' header is required",
                                       {}, "invalid_api_key"));
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      const int status = res.status;
      send_error(res,
                 api::api_error(status, "invalid_request_error",
                                status == 404 ? "no such endpoint: " + req.method + " " + req.path
                                              : "the request could not be read"));
    });
    http.set_exception_handler(
        [](const httplib::Request& req, httplib::Response& res, std::exception_ptr error) {
          std::string what = "unknown";
          try {
            std::rethrow_exception(error);
          } catch (const std::exception& e) {
            what = e.what();
          } catch (...) {
          }
          std::fprintf(stderr, "eigenformer: %s %s failed: %s\n", req.method.c_str(),
                       req.path.c_str(), what.c_str());
          send_error(res, api::api_error(500, "server_error", "internal error: " + what));
        });
    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200,
                {{"status", "ok"},
                 {"in_flight", engine_->in_flight()},
                 {"batch_invariant", ef::batch_invariant_kernels}});
    });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200,
                {{"object", "list"},
                 {"data", api::json::array({{{"id", name_},
                                             {"object", "model"},
                                             {"created", started_},
                                             {"owned_by", "eigenformer"}}})}});
    });
    http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      handle(req, res, false);
    });
    http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      handle(req, res, true);
    });

    if (!http.bind_to_port(opt_.host, opt_.port))
      throw usage_error(ef::detail::concat("cannot listen on ", opt_.host, ":", opt_.port));
    // SIGINT/SIGTERM are blocked in every thread and taken here: new requests get 503, the
    // running and queued ones finish and their responses are written, then the server stops.
    // (httplib's stop() would cut streams short, so it comes last.)
    std::thread signals([this, &http] {
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, SIGINT);
      sigaddset(&set, SIGTERM);
      int signal = 0;
      sigwait(&set, &signal);
      engine_->shutdown(true);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (responding_.load() > 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      http.stop();
    });
    std::fprintf(stderr, "eigenformer: serving %s on http://%s:%d (%lld parallel)\n", name_.c_str(),
                 opt_.host.c_str(), opt_.port, opt_.parallel);
    http.listen_after_bind();  // returns once stopped and every handler has finished
    signals.join();
    std::fprintf(stderr, "eigenformer: stopped\n");
  }

 private:
  static std::string model_name(std::string path) {
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    const auto slash = path.find_last_of('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
  }

  bool authorized(const httplib::Request& req) const {
    const std::string given = req.get_header_value("Authorization");
    const std::string expected = "Bearer " + opt_.api_key;
    // Constant time in the key: every byte is compared whatever the first difference.
    unsigned char diff = given.size() == expected.size() ? 0 : 1;
    for (std::size_t i = 0; i < expected.size(); ++i)
      diff |= static_cast<unsigned char>(expected[i] ^ (i < given.size() ? given[i] : 0));
    return diff == 0;
  }

  static void send_json(httplib::Response& res, int status, const api::json& body) {
    res.status = status;
    res.set_content(api::dump(body), "application/json");
  }
  static void send_error(httplib::Response& res, const api::api_error& e) {
    send_json(res, e.status, e.body());
  }

  // Validates, tokenizes and queues a request; throws api_error.
  std::shared_ptr<generation> start(const httplib::Request& req, bool chat) {
    auto g = std::make_shared<generation>();
    g->request = api::parse_request(req.body, chat);
    const api::api_request& r = g->request;
    if (!r.model.empty() && r.model != name_) {
      throw api::api_error(
          404, "invalid_request_error",
          "the model '" + r.model + "' does not exist (this server has '" + name_ + "')", "model",
          "model_not_found");
    }
    std::string text = r.prompt;
    if (chat) {
      if (!chat_) throw api::invalid_request("this model has no chat template", "messages");
      try {
        text = chat_->render(r.messages, true);
      } catch (const ef::error& e) {
        throw api::invalid_request(std::string("the chat template failed: ") + e.what(),
                                   "messages");
      }
    }
    g->prompt = r.prompt_tokens.empty() ? tokenizer_->encode_prompt(text) : r.prompt_tokens;
    const auto n_prompt = ef::index_t(g->prompt.size());
    const ef::index_t n_ctx = model_.config.n_ctx;
    const char* prompt_param = chat ? "messages" : "prompt";
    if (n_prompt == 0) throw api::invalid_request("the prompt is empty", prompt_param);
    for (const ef::token_id t : g->prompt) {
      if (t >= model_.config.vocab_size) {
        throw api::invalid_request(
            ef::detail::concat("token id ", t, " is outside the vocabulary of ",
                               model_.config.vocab_size),
            prompt_param);
      }
    }
    if (n_prompt >= n_ctx) {
      throw api::api_error(
          400, "invalid_request_error",
          ef::detail::concat("the prompt has ", n_prompt, " tokens; the context holds ", n_ctx),
          prompt_param, "context_length_exceeded");
    }
    ef::generation_request q;
    q.prompt = g->prompt;
    q.max_tokens = r.max_tokens > 0 ? r.max_tokens : n_ctx - n_prompt;
    if (n_prompt + q.max_tokens > n_ctx) {
      throw api::api_error(400, "invalid_request_error",
                           ef::detail::concat("the prompt's ", n_prompt, " tokens plus max_tokens ",
                                              q.max_tokens, " exceed the context of ", n_ctx),
                           "max_tokens", "context_length_exceeded");
    }
    q.sampling = r.sampling;
    if (!r.seed_given) q.sampling.seed = std::random_device{}();
    q.stop_tokens = model_.config.eos_token_ids;
    g->usage.prompt_tokens = n_prompt;
    // The last few prompt tokens as context: the first word keeps its leading space.
    const auto context_start = g->prompt.size() > 16 ? g->prompt.end() - 16 : g->prompt.begin();
    g->text = std::make_unique<ef::text_stream>(
        *tokenizer_, std::vector<ef::token_id>(context_start, g->prompt.end()));
    g->text_vocab = tokenizer_->vocab_size();
    g->stops = api::stop_text(r.stop);
    g->created = std::int64_t(std::time(nullptr));
    {
      std::lock_guard<std::mutex> lock(counter_mutex_);
      g->id_text = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(++counter_);
    }
    auto channel = g->channel;
    try {
      g->id = engine_->submit(std::move(q),
                              [channel](const ef::sequence_event& e) { channel->push(e); });
    } catch (const ef::busy_error& e) {
      const bool stopping = std::string(e.what()).find("shutting down") != std::string::npos;
      throw api::api_error(
          stopping ? 503 : 429, stopping ? "server_error" : "rate_limit_error",
          stopping ? "the server is shutting down" : "the server is busy; retry later");
    } catch (const ef::capacity_error& e) {
      throw api::api_error(400, "invalid_request_error", e.what(), "max_tokens",
                           "context_length_exceeded");
    } catch (const ef::value_error& e) {
      throw api::invalid_request(e.what());
    }
    return g;
  }

  // Counts a response being produced, from its handler's start to its last byte handed over.
  struct responding {
    explicit responding(std::atomic<int>& n) : count(n) { ++count; }
    ~responding() { --count; }
    std::atomic<int>& count;
  };

  void handle(const httplib::Request& req, httplib::Response& res, bool chat) {
    auto busy = std::make_shared<responding>(responding_);
    std::shared_ptr<generation> g;
    try {
      g = start(req, chat);
    } catch (const api::api_error& e) {
      send_error(res, e);
      return;
    }
    if (!g->request.stream) {
      std::string text;
      try {
        while (g->finish_reason.empty()) text += g->next(*engine_);
      } catch (const api::api_error& e) {
        send_error(res, e);
        return;
      }
      send_json(res, 200,
                api::response(g->request, g->id_text, g->created, name_, text, g->finish_reason,
                              g->usage));
      return;
    }
    res.set_header("Cache-Control", "no-cache");
    ef::generation_engine* engine = engine_.get();
    const std::string name = name_;
    res.set_chunked_content_provider(
        "text/event-stream",
        [g, engine, name](std::size_t, httplib::DataSink& sink) {
          const auto send = [&sink](const api::json& j) {
            const std::string line = "data: " + api::dump(j) + "\n\n";
            return sink.write(line.data(), line.size());
          };
          std::string text;
          try {
            text = g->next(*engine);
          } catch (const api::api_error& e) {
            send(e.body());
            const std::string done = "data: [DONE]\n\n";
            sink.write(done.data(), done.size());
            sink.done();
            return true;
          }
          if (!text.empty() || (g->first_chunk && g->request.chat)) {
            if (!send(
                    api::chunk(g->request, g->id_text, g->created, name, text, g->first_chunk, "")))
              return false;
            g->first_chunk = false;
          }
          if (g->finish_reason.empty()) return sink.is_writable ? sink.is_writable() : true;
          if (!send(api::chunk(g->request, g->id_text, g->created, name, "", false,
                               g->finish_reason)))
            return false;
          if (g->request.include_usage &&
              !send(api::usage_chunk(g->request, g->id_text, g->created, name, g->usage)))
            return false;
          const std::string done = "data: [DONE]\n\n";
          if (!sink.write(done.data(), done.size())) return false;
          sink.done();
          return true;
        },
        [g, engine, busy](bool success) {
          if (!success || g->finish_reason.empty()) engine->cancel(g->id);  // client went away
        });
  }

  serve_options opt_;
  ef::model model_;
  std::unique_ptr<ef::text_tokenizer> tokenizer_;
  std::unique_ptr<ef::model_chat_template> chat_;
  std::unique_ptr<ef::generation_engine> engine_;
  std::string name_;
  std::int64_t started_ = std::int64_t(std::time(nullptr));
  std::atomic<int> responding_{0};
  std::mutex counter_mutex_;
  std::uint64_t counter_ = 0;
};

}  // namespace

void add_serve_command(CLI::App& app) {
  auto opt = std::make_shared<serve_options>();
  auto* cmd = app.add_subcommand("serve", "an OpenAI-compatible HTTP server (completions, chat)");
  cmd->add_option("--model", opt->model, "model directory or GGUF file")->required();
  cmd->add_option("--host", opt->host, "address to listen on (default 127.0.0.1: this machine)");
  cmd->add_option("--port", opt->port, "port (default 8080)")->check(CLI::Range(1, 65535));
  cmd->add_option("--parallel", opt->parallel, "sequences decoded together (default 4)")
      ->check(CLI::Range(1, 256));
  cmd->add_option("--queue", opt->queue, "requests waiting beyond them (default 64)")
      ->check(CLI::Range(0, 4096));
  cmd->add_option("--api-key", opt->api_key, "require 'Authorization: Bearer KEY'");
  cmd->add_option("--max-body", opt->max_body, "largest request body in bytes (default 1 MiB)")
      ->check(CLI::Range(1024LL, 1LL << 30));
  cmd->add_option("--kv-budget", opt->kv_budget_mib,
                  "MiB of KV cache for all sequences (default: --parallel full contexts)")
      ->check(CLI::Range(0LL, 1LL << 24));
  cmd->add_option("--prefill-chunk", opt->prefill_chunk,
                  "prompt tokens a sequence feeds per step (default 64)")
      ->check(CLI::Range(1, 8192));
  cmd->add_option("--name", opt->name, "the model's id in the API (default: the path's name)");
  cmd->add_option("--dtype", opt->dtype, "weight storage, as for generate (default f32)")
      ->check(CLI::IsMember(dtype_names()));
  cmd->add_option("--threads", opt->threads, "threads per step (default: all cores)")
      ->check(CLI::Range(1, 1024));
  cmd->callback([opt] {
    // Block SIGINT/SIGTERM before any thread starts, so that only the server's waiter takes them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    if (opt->threads > 0) ef::set_num_threads(opt->threads);
    server s(*opt);
    s.run();
  });
}

}  // namespace eigenformer_cli
