// The continuous batcher against a plain one-sequence loop: every request's tokens, run beside
// others that join and leave (prompts prefilled in chunks), for 1-4 threads, equal the tokens
// of the request run alone. Plus admission by the KV budget, the queue, cancellation and bad
// requests.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include <eigenformer/eigenformer.hpp>
#include <eigenformer/serving/continuous_batcher.hpp>

#include "reference.hpp"

namespace {

namespace ef = eigenformer;
using ef::index_t;
using ef::token_id;

std::vector<ef::model> test_models() {
  std::vector<ef::model> models;
  auto c = ef::model_config::llama();
  c.n_layer = 2, c.n_head = 4, c.n_kv_head = 2, c.n_embd = 64, c.n_inner = 96;
  c.vocab_size = 61, c.n_ctx = 48;
  models.push_back({c, ef::init_llama_weights<float>(c, 31)});
  auto g = ref::tiny_config<float>();
  g.n_embd = 64, g.n_ctx = 48;
  models.push_back({g, ref::random_weights<float>(g, 32, /*untied=*/true)});
  ef::quantize_weights(models.back().weights, ef::quant_type::q4_0, ef::quant_type::q8_0);
  return models;
}

// The request alone, written out: prefill in chunks of `chunk` through the cache, then sample
// one token per step until max_tokens or a stop token.
std::vector<token_id> run_alone(const ef::model& m, const ef::generation_request& r, index_t chunk,
                                ef::finish_reason& finished) {
  ef::kv_cache cache(m.config);
  ef::activations acts(m.config, m.config.n_ctx);
  ef::sampler sampler(r.sampling);
  std::vector<token_id> history = r.prompt, generated;
  ef::matrix<float> logits;
  for (std::size_t pos = 0; pos < r.prompt.size(); pos += std::size_t(chunk)) {
    const std::size_t n = std::min(r.prompt.size() - pos, std::size_t(chunk));
    const std::vector<token_id> piece(r.prompt.begin() + long(pos),
                                      r.prompt.begin() + long(pos + n));
    logits = ef::forward(m.config, m.weights, cache, piece, acts);
  }
  while (true) {
    const token_id t = sampler.sample(logits.row(0), history);
    if (std::find(r.stop_tokens.begin(), r.stop_tokens.end(), t) != r.stop_tokens.end()) {
      finished = ef::finish_reason::stop;
      return generated;
    }
    generated.push_back(t);
    history.push_back(t);
    if (index_t(generated.size()) == r.max_tokens) {
      finished = ef::finish_reason::length;
      return generated;
    }
    logits = ef::forward(m.config, m.weights, cache, std::vector<token_id>{t}, acts);
  }
}

std::vector<ef::generation_request> test_requests(const ef::model_config& c) {
  ref::rng r(41);
  std::vector<ef::generation_request> requests;
  const index_t prompts[] = {1, 7, 23, 3, 12, 30, 5, 9, 17, 2};
  for (int i = 0; i < 10; ++i) {
    ef::generation_request q;
    q.prompt.resize(std::size_t(prompts[i]));
    for (auto& t : q.prompt) t = r.below(int(c.vocab_size));
    q.max_tokens = 4 + (i * 5) % 14;
    if (i % 3 != 0) {  // seeded sampling with filters; the others greedy
      q.sampling.temperature = 0.7 + 0.1 * i;
      q.sampling.top_k = i % 2 ? 0 : 20;
      q.sampling.top_p = i % 4 == 1 ? 0.9 : 1.0;
      q.sampling.repetition_penalty = i % 5 == 2 ? 1.3 : 1.0;
      q.sampling.seed = std::uint64_t(1000 + i);
    } else {
      q.sampling.temperature = 0.0;
    }
    if (i % 4 == 3) q.stop_tokens = {token_id(i), token_id(i + 1), token_id(i + 2)};
    requests.push_back(q);
  }
  return requests;
}

struct outcome {
  std::vector<token_id> tokens;
  ef::finish_reason finished = ef::finish_reason::none;
};

// Submits request i at step 2 i (so sequences join while others decode) and steps until done.
std::vector<outcome> run_batched(const ef::model& m,
                                 const std::vector<ef::generation_request>& requests,
                                 const ef::batcher_options& options) {
  ef::continuous_batcher batcher(m, options);
  std::map<ef::sequence_id, std::size_t> which;
  std::vector<outcome> out(requests.size());
  std::size_t next = 0;
  for (int step = 0; step < 1000 && (next < requests.size() || !batcher.idle()); ++step) {
    if (step % 2 == 0 && next < requests.size()) {
      which[batcher.submit(requests[next])] = next;
      ++next;
    }
    for (const auto& e : batcher.step()) {
      outcome& o = out[which.at(e.id)];
      EXPECT_EQ(o.finished, ef::finish_reason::none) << "an event after the end";
      if (e.token >= 0) o.tokens.push_back(e.token);
      o.finished = e.finished;
    }
    EXPECT_LE(batcher.running(), options.max_sequences);
  }
  EXPECT_TRUE(batcher.idle());
  EXPECT_EQ(batcher.kv_bytes_in_use(), 0u);
  return out;
}

TEST(ContinuousBatcher, EveryRequestGetsTheTokensItGetsAlone) {
  if (!ef::batch_invariant_kernels) GTEST_SKIP() << "the portable build is not batch-invariant";
  const int saved_threads = ef::num_threads();
  for (const auto& m : test_models()) {
    const auto requests = test_requests(m.config);
    for (const index_t chunk : {index_t(4), index_t(64)}) {
      std::vector<outcome> alone;
      for (const auto& r : requests) {
        outcome o;
        o.tokens = run_alone(m, r, chunk, o.finished);
        alone.push_back(o);
      }
      for (const int threads : {1, 2, 3, 4}) {
        ef::set_num_threads(threads);
        ef::batcher_options options;
        options.max_sequences = threads == 3 ? 3 : 8;  // 3: requests queue for a slot
        options.prefill_chunk = chunk;
        const auto batched = run_batched(m, requests, options);
        for (std::size_t i = 0; i < requests.size(); ++i) {
          EXPECT_EQ(batched[i].tokens, alone[i].tokens)
              << m.config.model_type << " request " << i << " chunk " << chunk << " threads "
              << threads;
          EXPECT_EQ(batched[i].finished, alone[i].finished) << "request " << i;
        }
      }
    }
  }
  ef::set_num_threads(saved_threads);
}

// A long prompt is prefilled a chunk per step while the others keep producing a token a step.
TEST(ContinuousBatcher, ALongPromptDoesNotStallTheOthers) {
  const auto m = test_models().front();
  ef::batcher_options options;
  options.prefill_chunk = 4;
  ef::continuous_batcher batcher(m, options);
  ef::generation_request shortq, longq;
  shortq.prompt = {1, 2};
  shortq.max_tokens = 20;
  shortq.sampling.temperature = 0;
  longq = shortq;
  longq.prompt.assign(24, 3);
  const auto a = batcher.submit(shortq);
  batcher.step();  // a prefilled and sampled its first token
  const auto b = batcher.submit(longq);
  for (int step = 0; step < 6; ++step) {  // b's 24 prompt tokens take 6 steps
    const auto events = batcher.step();
    const bool a_stepped = std::any_of(events.begin(), events.end(),
                                       [&](const auto& e) { return e.id == a && e.token >= 0; });
    const bool b_sampled =
        std::any_of(events.begin(), events.end(), [&](const auto& e) { return e.id == b; });
    EXPECT_TRUE(a_stepped) << "step " << step;
    EXPECT_EQ(b_sampled, step == 5) << "step " << step;
  }
}

TEST(ContinuousBatcher, TheKvBudgetAdmitsWhatFitsAndQueuesTheRest) {
  const auto m = test_models().front();
  ef::batcher_options options;
  options.max_sequences = 4;
  options.max_queue = 2;
  ef::continuous_batcher probe(m, options);
  ef::generation_request q;
  q.prompt = {1, 2, 3, 4};
  q.max_tokens = 6;
  q.sampling.temperature = 0;
  const std::size_t one = probe.cache_bytes(10);
  EXPECT_EQ(one, std::size_t(m.config.n_layer) * 2 * 10 * std::size_t(m.config.kv_width()) * 4);
  options.kv_budget_bytes = 2 * one + one / 2;  // room for two such requests
  ef::continuous_batcher batcher(m, options);

  // Larger than the whole budget, or than the context: refused at once.
  auto big = q;
  big.max_tokens = 30;
  EXPECT_THROW(batcher.submit(big), ef::capacity_error);
  big.max_tokens = m.config.n_ctx;
  EXPECT_THROW(batcher.submit(big), ef::capacity_error);

  // 4 free slots + 2 queue places: the 7th request is refused, nothing is lost.
  std::vector<ef::sequence_id> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(batcher.submit(q));
  EXPECT_THROW(batcher.submit(q), ef::busy_error);
  batcher.step();
  EXPECT_EQ(batcher.running(), 2);  // the budget holds two caches
  EXPECT_EQ(batcher.queued(), 4);
  EXPECT_EQ(batcher.kv_bytes_in_use(), 2 * one);
  std::map<ef::sequence_id, int> tokens;
  int steps = 1;
  while (!batcher.idle() && steps++ < 100) {
    for (const auto& e : batcher.step()) tokens[e.id] += e.token >= 0;
    EXPECT_LE(batcher.kv_bytes_in_use(), options.kv_budget_bytes);
  }
  EXPECT_TRUE(batcher.idle());
  EXPECT_EQ(batcher.kv_bytes_in_use(), 0u);
  for (std::size_t i = 2; i < ids.size(); ++i) EXPECT_EQ(tokens[ids[i]], 6) << i;
}

TEST(ContinuousBatcher, CancelledSequencesLeaveAndFreeTheirSlot) {
  const auto m = test_models().front();
  ef::batcher_options options;
  options.max_sequences = 1;
  ef::continuous_batcher batcher(m, options);
  ef::generation_request q;
  q.prompt = {5, 6};
  q.max_tokens = 40;
  q.sampling.temperature = 0;
  const auto running = batcher.submit(q), waiting = batcher.submit(q);
  batcher.step();
  EXPECT_EQ(batcher.running(), 1);
  batcher.cancel(running);
  const auto events = batcher.step();  // running leaves, waiting takes its slot and starts
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[0].id, running);
  EXPECT_EQ(events[0].finished, ef::finish_reason::cancelled);
  EXPECT_EQ(events[1].id, waiting);
  EXPECT_GE(events[1].token, 0);
  batcher.cancel(waiting);
  batcher.cancel(12345);  // unknown ids are ignored
  batcher.step();
  EXPECT_TRUE(batcher.idle());
  EXPECT_EQ(batcher.kv_bytes_in_use(), 0u);
}

TEST(ContinuousBatcher, BadRequestsAreClearErrors) {
  const auto m = test_models().front();
  ef::continuous_batcher batcher(m, {});
  ef::generation_request q;
  EXPECT_THROW(batcher.submit(q), ef::value_error);  // empty prompt
  q.prompt = {1, token_id(m.config.vocab_size)};
  EXPECT_THROW(batcher.submit(q), ef::value_error);
  q.prompt = {1, -1};
  EXPECT_THROW(batcher.submit(q), ef::value_error);
  q.prompt = {1};
  q.max_tokens = 0;
  EXPECT_THROW(batcher.submit(q), ef::value_error);
  q.max_tokens = 2;
  q.sampling.top_p = 0;
  EXPECT_THROW(batcher.submit(q), ef::value_error);
  EXPECT_TRUE(batcher.idle());
  ef::batcher_options bad;
  bad.max_sequences = 0;
  EXPECT_THROW(ef::continuous_batcher(m, bad), ef::value_error);
}

}  // namespace
