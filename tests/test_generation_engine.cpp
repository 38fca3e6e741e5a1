// The engine thread: requests from many threads at once get the tokens they get alone (the
// batcher stepped by hand with the request by itself), events arrive in order and end once;
// a full engine refuses at once; cancel and shutdown end what runs. Also run under TSan.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <eigenformer/eigenformer.hpp>
#include <eigenformer/serving/generation_engine.hpp>

#include "reference.hpp"

namespace {

namespace ef = eigenformer;
using ef::index_t;
using ef::token_id;

ef::model test_model() {
  auto c = ef::model_config::llama();
  c.n_layer = 2, c.n_head = 4, c.n_kv_head = 2, c.n_embd = 64, c.n_inner = 96;
  c.vocab_size = 61, c.n_ctx = 48;
  return {c, ef::init_llama_weights<float>(c, 51)};
}

ef::generation_request request_number(int i, const ef::model_config& c) {
  ref::rng r(std::uint64_t(100 + i));
  ef::generation_request q;
  q.prompt.resize(std::size_t(1 + (i * 7) % 20));
  for (auto& t : q.prompt) t = r.below(int(c.vocab_size));
  q.max_tokens = 3 + i % 9;
  q.sampling.temperature = i % 2 ? 0.0 : 0.9;
  q.sampling.seed = std::uint64_t(i);
  return q;
}

// What a request gives by itself: a batcher of its own, stepped until it ends.
std::vector<token_id> alone(const ef::model& m, const ef::generation_request& q) {
  ef::continuous_batcher b(m, {});
  b.submit(q);
  std::vector<token_id> tokens;
  while (!b.idle())
    for (const auto& e : b.step())
      if (e.token >= 0) tokens.push_back(e.token);
  return tokens;
}

// Collects one request's events; wait() returns once its last event came.
struct collector {
  std::mutex mutex;
  std::condition_variable done_cv;
  std::vector<token_id> tokens;
  ef::finish_reason finished = ef::finish_reason::none;
  int events_after_end = 0;
  void operator()(const ef::sequence_event& e) {
    std::lock_guard<std::mutex> lock(mutex);
    if (finished != ef::finish_reason::none) ++events_after_end;
    if (e.token >= 0) tokens.push_back(e.token);
    finished = e.finished;
    if (finished != ef::finish_reason::none) done_cv.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mutex);
    done_cv.wait(lock, [&] { return finished != ef::finish_reason::none; });
  }
};

TEST(GenerationEngine, ConcurrentRequestsGetTheirTokensAlone) {
  const auto m = test_model();
  const bool invariant = ef::batch_invariant_kernels;
  ef::batcher_options options;
  options.max_sequences = 4;
  options.max_queue = 64;
  ef::generation_engine engine(m, options);
  constexpr int clients = 6, per_client = 4;
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0}, lost{0};
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      for (int k = 0; k < per_client; ++k) {
        const auto q = request_number(c * per_client + k, m.config);
        collector got;
        engine.submit(q, [&got](const ef::sequence_event& e) { got(e); });
        got.wait();
        if (got.events_after_end != 0) ++lost;
        if (invariant && got.tokens != alone(m, q)) ++wrong;
        if (got.tokens.empty()) ++lost;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(lost.load(), 0);
  EXPECT_EQ(engine.in_flight(), 0);
}

TEST(GenerationEngine, AFullEngineRefusesAtOnceAndCancelFreesItsPlace) {
  const auto m = test_model();
  ef::batcher_options options;
  options.max_sequences = 1;
  options.max_queue = 1;
  ef::generation_engine engine(m, options);
  auto q = request_number(0, m.config);
  q.max_tokens = m.config.n_ctx - index_t(q.prompt.size());  // long enough to still be running
  collector a, b;
  // a's first event holds the engine thread until released: nothing ends meanwhile.
  std::mutex gate_mutex;
  std::condition_variable gate_cv;
  bool held = false, released = false;
  const auto id_a = engine.submit(q, [&](const ef::sequence_event& e) {
    {
      std::unique_lock<std::mutex> lock(gate_mutex);
      if (!held) {
        held = true;
        gate_cv.notify_all();
        gate_cv.wait(lock, [&] { return released; });
      }
    }
    a(e);
  });
  {
    std::unique_lock<std::mutex> lock(gate_mutex);
    gate_cv.wait(lock, [&] { return held; });
  }
  engine.submit(q, [&b](const ef::sequence_event& e) { b(e); });
  EXPECT_THROW(engine.submit(q, [](const ef::sequence_event&) {}), ef::busy_error);
  EXPECT_EQ(engine.in_flight(), 2);
  engine.cancel(id_a);
  {
    std::lock_guard<std::mutex> lock(gate_mutex);
    released = true;
    gate_cv.notify_all();
  }
  a.wait();
  EXPECT_EQ(a.finished, ef::finish_reason::cancelled);
  b.wait();  // b took a's place and finished
  EXPECT_EQ(b.finished, ef::finish_reason::length);
  EXPECT_EQ(b.tokens.size(), std::size_t(q.max_tokens));
  EXPECT_THROW(engine.submit(ef::generation_request{}, [](const ef::sequence_event&) {}),
               ef::value_error);
}

TEST(GenerationEngine, ShutdownDrainsOrCancels) {
  const auto m = test_model();
  for (const bool drain : {true, false}) {
    ef::generation_engine engine(m, {});
    auto q = request_number(3, m.config);
    q.max_tokens = m.config.n_ctx - index_t(q.prompt.size());
    collector got;
    engine.submit(q, [&got](const ef::sequence_event& e) { got(e); });
    engine.shutdown(drain);
    EXPECT_EQ(got.finished, drain ? ef::finish_reason::length : ef::finish_reason::cancelled);
    EXPECT_THROW(engine.submit(q, [](const ef::sequence_event&) {}), ef::busy_error);
  }
}

}  // namespace
