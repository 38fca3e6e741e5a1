// eigenformer/serving/generation_engine.hpp — the continuous batcher on its own thread, for
// callers on many threads (an HTTP server's handlers).
//
// submit() hands a request and a callback to the engine thread and returns at once: a full
// engine refuses with busy_error, an impossible request with value_error/capacity_error, before
// anything is queued. The engine thread steps the batcher while it has work and sleeps while it
// has none, and calls each request's callback with its events, in order, the last one carrying
// the finish reason. Callbacks run on the engine thread: they must be quick (hand the event to
// the waiting handler) and must not call back into the engine except cancel().
//
// shutdown(drain): new requests are refused; with drain, what is running and queued finishes;
// without, it is cancelled. The destructor shuts down without draining.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "eigenformer/serving/continuous_batcher.hpp"

namespace eigenformer {

class generation_engine {
 public:
  using callback = std::function<void(const sequence_event&)>;
  using request_id = std::uint64_t;

  /// `m` must outlive the engine and stay unchanged.
  generation_engine(const model& m, const batcher_options& options)
      : batcher_(m, options), worker_([this] { run(); }) {}

  generation_engine(const generation_engine&) = delete;
  generation_engine& operator=(const generation_engine&) = delete;

  ~generation_engine() { shutdown(false); }

  const continuous_batcher& batcher() const { return batcher_; }

  /// Queues `request`; `on_event` receives its events on the engine thread. Throws
  /// value_error/capacity_error (a bad request) or busy_error (the engine is full or stopping).
  request_id submit(generation_request request, callback on_event) {
    batcher_.check(request);  // const: reads only the model and the options
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) throw busy_error("engine: shutting down");
    if (in_flight_ >= batcher_.capacity()) {
      throw busy_error(detail::concat("engine: ", in_flight_, " requests are running or waiting, ",
                                      "the most it takes"));
    }
    const request_id id = next_id_++;
    ++in_flight_;
    submitted_.push_back({id, std::move(request), std::move(on_event)});
    wake_.notify_one();
    return id;
  }

  /// Ends a request early (its callback gets a `cancelled` event, unless it already ended).
  void cancel(request_id id) {
    std::lock_guard<std::mutex> lock(mutex_);
    cancelled_.push_back(id);
    wake_.notify_one();
  }

  /// Requests running or waiting.
  index_t in_flight() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return in_flight_;
  }

  /// Stops taking requests; finishes (drain) or cancels the others; joins the engine thread.
  void shutdown(bool drain) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      if (!drain) cancel_all_ = true;
      wake_.notify_one();
    }
    if (worker_.joinable()) worker_.join();
  }

 private:
  struct submission {
    request_id id;
    generation_request request;
    callback on_event;
  };
  struct live {
    request_id id;
    callback on_event;
  };

  void run() {
    std::unordered_map<sequence_id, live> by_sequence;
    std::unordered_map<request_id, sequence_id> by_request;
    std::vector<submission> submitted;
    std::vector<request_id> cancelled;
    std::vector<std::pair<callback*, sequence_event>> calls;
    for (;;) {
      bool cancel_all = false;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] {
          return !submitted_.empty() || !cancelled_.empty() || cancel_all_ ||
                 (stopping_ && batcher_.idle()) || !batcher_.idle();
        });
        submitted.swap(submitted_);
        cancelled.swap(cancelled_);
        cancel_all = cancel_all_;
        if (stopping_ && batcher_.idle() && submitted.empty()) return;
      }
      for (auto& s : submitted) {
        try {
          const sequence_id seq = batcher_.submit(std::move(s.request));  // room was checked
          by_request[s.id] = seq;
          by_sequence[seq] = {s.id, std::move(s.on_event)};
        } catch (const std::exception&) {  // not expected: check() and the count came first
          release_place();
          try {
            s.on_event({0, -1, finish_reason::failed});
          } catch (...) {
          }
        }
      }
      submitted.clear();
      for (const request_id id : cancelled) {
        if (const auto it = by_request.find(id); it != by_request.end())
          batcher_.cancel(it->second);
      }
      cancelled.clear();
      if (cancel_all) {
        for (const auto& [request, seq] : by_request) batcher_.cancel(seq);
      }

      std::vector<sequence_event> events;
      try {
        events = batcher_.step();
      } catch (const std::exception&) {
        // Not expected (requests are checked before they are queued), but a failed step must
        // not take the process down: every sequence ends with `failed` and the batcher starts
        // over empty.
        batcher_.clear();
        for (const auto& [seq, l] : by_sequence) events.push_back({seq, -1, finish_reason::failed});
      }
      for (const sequence_event& e : events) {
        const auto it = by_sequence.find(e.id);
        if (it == by_sequence.end()) continue;
        // A request's place is free before its last event is delivered: a client that has
        // its answer can submit again at once, and in_flight() never counts an ended request.
        const bool last = e.finished != finish_reason::none;
        if (last) release_place();
        try {
          it->second.on_event(e);
        } catch (...) {  // a callback's failure is its own request's business
        }
        if (last) {
          by_request.erase(it->second.id);
          by_sequence.erase(it);
        }
      }
    }
  }

  void release_place() {
    std::lock_guard<std::mutex> lock(mutex_);
    --in_flight_;
  }

  continuous_batcher batcher_;  // stepped by the engine thread only (check() is const)
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<submission> submitted_;  // handed over, not yet in the batcher
  std::vector<request_id> cancelled_;
  index_t in_flight_ = 0;
  request_id next_id_ = 1;
  bool stopping_ = false, cancel_all_ = false;
  std::thread worker_;  // last: starts once everything above exists
};

}  // namespace eigenformer
