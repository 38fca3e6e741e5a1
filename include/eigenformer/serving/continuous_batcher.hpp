// eigenformer/serving/continuous_batcher.hpp — many generations advanced together.
//
// Decoding one token reads every weight once, whatever the number of rows it multiplies, so N
// sequences stepped together cost little more than one. The batcher keeps a set of running
// sequences, each with its own KV cache, position, sampler and stop condition, and each step():
//   1. admits waiting requests, first come first served, while a slot and KV memory are free;
//   2. gathers every running sequence's next rows — one token for a decoding sequence, the next
//      chunk of its prompt for a prefilling one — and runs them through ONE forward_batch pass;
//   3. samples each sequence whose prompt is now all in, and retires finished sequences.
// Sequences join and leave between steps. A long prompt is fed `prefill_chunk` tokens per step,
// so the others keep decoding meanwhile.
//
// Batch invariance: a sequence's chunks are cut from its own prompt alone, forward_batch gives
// each row the arithmetic it has alone, and each sequence samples with its own seeded sampler.
// So a request's tokens are bit-identical whatever it runs beside, and for any thread count.
//
// Memory: each admitted sequence gets a cache for prompt + max_tokens positions, allocated at
// admission (between steps, never inside one) from `kv_budget_bytes`. A request larger than the
// whole budget is refused at submit(); one that does not fit now waits in the queue; a full
// queue refuses at once. The step's activations are allocated once, at construction.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <utility>
#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/model/activations.hpp"
#include "eigenformer/model/decoder.hpp"
#include "eigenformer/model/kv_cache.hpp"
#include "eigenformer/model/sampler.hpp"

namespace eigenformer {

/// A request the batcher cannot take now (its queue is full): retry later (HTTP 429/503).
class busy_error : public error {
 public:
  using error::error;
};

/// A request that can never run with this batcher's memory budget or the model's context.
class capacity_error : public error {
 public:
  using error::error;
};

struct generation_request {
  std::vector<token_id> prompt;       // the tokens to continue; not empty
  index_t max_tokens = 16;            // tokens to generate at most, >= 1
  sampling_params sampling;           // with its seed: the same request gives the same tokens
  std::vector<token_id> stop_tokens;  // generating one ends the sequence (it is not emitted)
};

enum class finish_reason { none, stop, length, cancelled, failed };

inline const char* to_string(finish_reason r) {
  switch (r) {
    case finish_reason::stop:
      return "stop";
    case finish_reason::length:
      return "length";
    case finish_reason::cancelled:
      return "cancelled";
    case finish_reason::failed:
      return "failed";
    case finish_reason::none:
      break;
  }
  return "none";
}

using sequence_id = std::uint64_t;

/// What one step did for one sequence: a new token, its end, or both.
struct sequence_event {
  sequence_id id = 0;
  token_id token = -1;  // the new token, or -1 (the sequence ended on a stop token or cancel)
  finish_reason finished = finish_reason::none;
};

struct batcher_options {
  index_t max_sequences = 8;        // running at once
  index_t prefill_chunk = 64;       // prompt tokens a sequence feeds per step
  index_t max_queue = 64;           // waiting requests beyond the running ones
  std::size_t kv_budget_bytes = 0;  // all caches together; 0 = max_sequences full contexts
};

class continuous_batcher {
 public:
  /// `model` must outlive the batcher and stay unchanged.
  continuous_batcher(const model& m, batcher_options options) : model_(m), options_(options) {
    m.config.validate();
    if (options_.max_sequences < 1 || options_.prefill_chunk < 1 || options_.max_queue < 0) {
      throw value_error(detail::concat(
          "batcher: max_sequences (", options_.max_sequences, ") and prefill_chunk (",
          options_.prefill_chunk, ") must be >= 1 and max_queue (", options_.max_queue, ") >= 0"));
    }
    options_.prefill_chunk = std::min(options_.prefill_chunk, m.config.n_ctx);
    if (options_.kv_budget_bytes == 0)
      options_.kv_budget_bytes = std::size_t(options_.max_sequences) * cache_bytes(m.config.n_ctx);
    // Rows per step at most: every sequence feeding a whole chunk.
    acts_ = activations::for_batch(m.config, options_.max_sequences * options_.prefill_chunk,
                                   options_.max_sequences);
    feeds_.resize(std::size_t(options_.max_sequences));  // never reallocated: batch_ points in
    batch_.reserve(std::size_t(options_.max_sequences));
  }

  const batcher_options& options() const { return options_; }

  /// Bytes of KV cache a sequence of `positions` tokens takes.
  std::size_t cache_bytes(index_t positions) const {
    return std::size_t(model_.config.n_layer) * 2 * std::size_t(positions) *
           std::size_t(model_.config.kv_width()) * sizeof(float);
  }

  /// Throws value_error for a malformed request, capacity_error for one that can never run
  /// here (longer than the context, or a cache larger than the whole budget). Reads only the
  /// model and the options: safe to call from any thread.
  void check(const generation_request& r) const {
    const auto& c = model_.config;
    if (r.prompt.empty()) throw value_error("batcher: the prompt is empty");
    for (const token_id t : r.prompt) {
      if (t < 0 || t >= c.vocab_size) {
        throw value_error(
            detail::concat("batcher: token id ", t, " is outside [0, ", c.vocab_size, ")"));
      }
    }
    if (r.max_tokens < 1) {
      throw value_error(detail::concat("batcher: max_tokens ", r.max_tokens, " must be >= 1"));
    }
    r.sampling.validate();
    const index_t positions = positions_of(r);
    if (positions > c.n_ctx) {
      throw capacity_error(detail::concat("batcher: a ", r.prompt.size(),
                                          "-token prompt plus max_tokens ", r.max_tokens,
                                          " exceeds the context of ", c.n_ctx));
    }
    if (cache_bytes(positions) > options_.kv_budget_bytes) {
      throw capacity_error(detail::concat(
          "batcher: a ", r.prompt.size(), "-token prompt with max_tokens ", r.max_tokens, " needs ",
          cache_bytes(positions), " bytes of KV cache, more than the ", options_.kv_budget_bytes,
          "-byte budget"));
    }
  }

  /// Requests that may be running or waiting at once; beyond them submit() is refused.
  index_t capacity() const { return options_.max_sequences + options_.max_queue; }

  /// Queues a request; it starts at a later step(). Throws as check() does, and busy_error
  /// when the queue is full.
  sequence_id submit(generation_request request) {
    check(request);
    // Waiting room: the free slots (filled at the next step) plus the queue.
    const index_t free_slots = std::max<index_t>(0, options_.max_sequences - running());
    if (queued() >= free_slots + options_.max_queue) {
      throw busy_error(detail::concat("batcher: the queue of ", options_.max_queue,
                                      " waiting requests is full"));
    }
    auto s = std::make_unique<sequence>(std::move(request), next_id_++);
    const sequence_id id = s->id;
    queue_.push_back(std::move(s));
    return id;
  }

  /// Ends a running or queued sequence; its `cancelled` event comes with the next step().
  /// Unknown or finished ids are ignored (a client may cancel after its last token).
  void cancel(sequence_id id) {
    for (auto& s : running_)
      if (s->id == id) s->cancelled = true;
    for (auto& s : queue_)
      if (s->id == id) s->cancelled = true;
  }

  /// Drops every running and queued sequence (no events) and frees their caches.
  void clear() {
    running_.clear();
    queue_.clear();
    kv_in_use_ = 0;
  }

  bool idle() const { return running_.empty() && queue_.empty(); }
  index_t running() const { return index_t(running_.size()); }
  index_t queued() const { return index_t(queue_.size()); }
  std::size_t kv_bytes_in_use() const { return kv_in_use_; }

  /// One step: admit, one forward pass over every running sequence's next rows, sample, retire.
  /// Returns what happened to each sequence that produced a token or ended.
  std::vector<sequence_event> step() {
    std::vector<sequence_event> events;
    retire_cancelled(events);
    admit();
    if (running_.empty()) return events;

    // Each sequence's next rows: its next prompt chunk, or its last token.
    batch_.clear();
    for (std::size_t i = 0; i < running_.size(); ++i) {
      sequence& s = *running_[i];
      std::vector<token_id>& feed = feeds_[i];
      const index_t fed = s.cache.n_past, prompt = index_t(s.request.prompt.size());
      if (fed < prompt) {
        const index_t n = std::min(options_.prefill_chunk, prompt - fed);
        feed.assign(s.request.prompt.begin() + fed, s.request.prompt.begin() + fed + n);
      } else {
        feed.assign(1, s.history.back());
      }
      batch_.push_back({&feed, &s.cache});
    }
    const auto logits = forward_batch(model_.config, model_.weights, batch_, acts_);

    for (std::size_t i = 0; i < running_.size(); ++i) {
      sequence& s = *running_[i];
      if (s.cache.n_past < index_t(s.request.prompt.size())) continue;  // still prefilling
      const token_id token = s.sampling.sample(logits.row(index_t(i)), s.history);
      ++s.generated;
      sequence_event e{s.id, token, finish_reason::none};
      const auto& stops = s.request.stop_tokens;
      if (std::find(stops.begin(), stops.end(), token) != stops.end()) {
        e.token = -1;
        e.finished = finish_reason::stop;
      } else {
        s.history.push_back(token);
        if (s.generated >= s.request.max_tokens) e.finished = finish_reason::length;
      }
      s.done = e.finished != finish_reason::none;
      events.push_back(e);
    }
    retire_done();
    return events;
  }

 private:
  struct sequence {
    sequence(generation_request r, sequence_id id_)
        : request(std::move(r)), id(id_), sampling(request.sampling), history(request.prompt) {}
    generation_request request;
    sequence_id id;
    sampler sampling;
    std::vector<token_id> history;  // prompt + generated: the repetition penalty's view
    kv_cache cache;
    index_t generated = 0;
    bool cancelled = false, done = false;
  };

  index_t positions_of(const generation_request& r) const {
    return index_t(r.prompt.size()) + r.max_tokens;
  }

  void retire_cancelled(std::vector<sequence_event>& events) {
    for (auto& s : running_) {
      if (s->cancelled) {
        events.push_back({s->id, -1, finish_reason::cancelled});
        s->done = true;
      }
    }
    retire_done();
    for (auto it = queue_.begin(); it != queue_.end();) {
      if ((*it)->cancelled) {
        events.push_back({(*it)->id, -1, finish_reason::cancelled});
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // First come, first served: the head of the queue waits for room rather than being passed.
  void admit() {
    while (!queue_.empty() && index_t(running_.size()) < options_.max_sequences) {
      sequence& s = *queue_.front();
      const std::size_t bytes = cache_bytes(positions_of(s.request));
      if (kv_in_use_ + bytes > options_.kv_budget_bytes) break;
      s.cache = kv_cache(model_.config, positions_of(s.request));
      kv_in_use_ += bytes;
      running_.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
  }

  void retire_done() {
    for (auto it = running_.begin(); it != running_.end();) {
      if ((*it)->done) {
        kv_in_use_ -= cache_bytes((*it)->cache.capacity());
        it = running_.erase(it);
      } else {
        ++it;
      }
    }
  }

  const model& model_;
  batcher_options options_;
  activations acts_;
  std::vector<std::unique_ptr<sequence>> running_;  // in admission order
  std::deque<std::unique_ptr<sequence>> queue_;
  std::vector<std::vector<token_id>> feeds_;  // feeds_[i]: running_[i]'s rows this step
  std::vector<batch_sequence<float>> batch_;
  std::size_t kv_in_use_ = 0;
  sequence_id next_id_ = 1;
};

}  // namespace eigenformer
