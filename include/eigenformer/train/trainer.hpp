// eigenformer/train/trainer.hpp — the training loop's step: sample micro-batches, forward,
// backward, accumulate, AdamW at the scheduled learning rate. Owns everything a run allocates
// (gradients, optimizer state, activations, the random generator), once.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/model/config.hpp"
#include "eigenformer/model/training.hpp"
#include "eigenformer/model/weights.hpp"
#include "eigenformer/train/adamw.hpp"
#include "eigenformer/train/data.hpp"
#include "eigenformer/train/lr_schedule.hpp"

namespace eigenformer {

struct training_options {
  index_t batch = 8;       // B sequences per micro-batch
  index_t seq_len = 64;    // T tokens per sequence
  index_t grad_accum = 1;  // micro-batches per optimizer step: an effective batch of B * this
  std::uint64_t seed = 1;  // batch sampling; the same seed and data reproduce a run exactly
  adamw_options adamw;
  warmup_cosine_schedule schedule;

  void validate(const model_config& config) const {
    if (batch < 1 || seq_len < 1 || seq_len > config.n_ctx || grad_accum < 1) {
      throw value_error(detail::concat("training: need B >= 1, 1 <= T <= n_ctx = ", config.n_ctx,
                                       ", accumulation >= 1; got B = ", batch, ", T = ", seq_len,
                                       ", accumulation ", grad_accum));
    }
    adamw.validate();
    schedule.validate();
  }
};

struct train_step_result {
  double loss;       // mean over the step's B * T * grad_accum predictions
  double grad_norm;  // before clipping
  double lr;
};

/// Data parallelism (train/mpi.hpp provides one over MPI): this process is rank `rank` of
/// `world`, and sum() adds a buffer over all ranks in place, giving every rank the same bits.
/// The default is one process.
struct gradient_communicator {
  int rank = 0, world = 1;
  std::function<void(float*, index_t)> sum_float;
  std::function<void(double*, index_t)> sum_double;

  template <class Scalar>
  void sum(Scalar* data, index_t n) const {
    if (world == 1) return;
    if constexpr (std::is_same_v<Scalar, float>) {
      sum_float(data, n);
    } else {
      sum_double(data, n);
    }
  }
};

/// One optimizer step's batch is B sequences (the global batch). With R ranks each takes B / R of
/// them; the gradient is the mean over shards, each shard's gradient (the mean over its rows)
/// computed on its own and the shards summed at the end. A single process splits an even B into
/// two shards, so that one process and two ranks do exactly the same arithmetic — the two
/// halves' gradients added once, a + b = b + a — and end bit-identical. More ranks sum more
/// shards, in MPI's order: equal to the single process within rounding (README: Training).
template <class Scalar>
class basic_trainer {
 public:
  basic_trainer(const model_config& config, basic_model_weights<Scalar>& weights,
                const training_options& options, gradient_communicator comm = {})
      : config_(config),
        weights_(weights),
        options_((options.validate(config), options)),
        comm_(std::move(comm)),
        local_shards_(local_shards(options.batch, comm_.world)),
        shard_sequences_(options.batch / comm_.world / local_shards_),
        grads_(zeros_like(config, weights)),
        second_shard_(local_shards_ == 2 ? zeros_like(config, weights)
                                         : basic_model_gradients<Scalar>{}),
        state_(config, weights),
        acts_(config, shard_sequences_, options.seq_len),
        rng_(options.seed) {}

  /// One optimizer step on batches drawn from `tokens` (at least T + 1 of them).
  train_step_result step(const std::vector<token_id>& tokens) {
    const double lr = options_.schedule.at(steps_);
    set_zero(config_, grads_);
    if (local_shards_ == 2) set_zero(config_, second_shard_);
    double shard_loss[2] = {0, 0};
    const auto scale = Scalar(1.0 / double(options_.grad_accum));
    const index_t T = options_.seq_len, per_rank = options_.batch / comm_.world;
    for (index_t micro = 0; micro < options_.grad_accum; ++micro) {
      // Every rank draws the whole global batch (the same generator), then takes its share.
      sample_batch(tokens, options_.batch, T, rng_, batch_inputs_, batch_targets_);
      for (index_t s = 0; s < local_shards_; ++s) {
        take_shard(comm_.rank * per_rank + s * shard_sequences_);
        shard_loss[s] += training_forward(config_, weights_, inputs_, targets_, acts_);
        training_backward(config_, weights_, inputs_, targets_, acts_,
                          s == 0 ? grads_ : second_shard_, scale);
      }
    }
    double loss = shard_loss[0] + shard_loss[1];
    comm_.sum(&loss, 1);
    // The gradient: the mean over all shards (the two local ones added first, then the ranks').
    const auto shards = Scalar(local_shards_ * comm_.world);
    const auto spans = detail::parameter_spans(config_, grads_);
    const auto chunks = detail::parameter_chunks(spans);
    using flat = Eigen::Map<Eigen::Array<Scalar, Eigen::Dynamic, 1>>;
    if (local_shards_ == 2) {  // one process (world 1): add and divide in one pass
      const auto other = detail::parameter_spans(config_, second_shard_);
      parallel_for(index_t(chunks.size()), [&](index_t k) {
        const auto& c = chunks[std::size_t(k)];
        flat g(spans[c.span].data + c.first, c.size);
        g = (g + flat(other[c.span].data + c.first, c.size)) / shards;
      });
    } else if (shards != Scalar(1)) {
      for (const auto& span : spans) comm_.sum(span.data, span.size);
      parallel_for(index_t(chunks.size()), [&](index_t k) {
        const auto& c = chunks[std::size_t(k)];
        flat(spans[c.span].data + c.first, c.size) /= shards;
      });
    }
    const double norm = adamw_step(config_, weights_, grads_, state_, options_.adamw, lr);
    ++steps_;
    return {loss / double(options_.grad_accum) / double(shards), norm, lr};
  }

  /// Mean loss over `n_batches` fixed, evenly spread batches of `tokens` (no update; this
  /// process alone, whatever the world).
  double evaluate(const std::vector<token_id>& tokens, index_t n_batches) {
    double loss = 0;
    const index_t n_shards = options_.batch / shard_sequences_;
    for (index_t b = 0; b < n_batches; ++b) {
      evaluation_batch(tokens, options_.batch, options_.seq_len, b, n_batches, batch_inputs_,
                       batch_targets_);
      for (index_t s = 0; s < n_shards; ++s) {
        take_shard(s * shard_sequences_);
        loss += training_forward(config_, weights_, inputs_, targets_, acts_);
      }
    }
    return n_batches > 0 ? loss / double(n_batches * n_shards) : 0.0;
  }

  index_t steps_taken() const { return steps_; }
  /// Sequences per forward pass (B / R, halved when a single process splits B in two).
  index_t shard_sequences() const { return shard_sequences_; }
  const training_options& options() const { return options_; }

  // --- What a checkpoint holds beyond the weights (train/checkpoint.hpp) ---

  const basic_adamw_state<Scalar>& optimizer_state() const { return state_; }
  /// The batch sampler's generator, as text (std::mt19937_64's own serialization): the data
  /// position, since every batch is drawn from it.
  std::string sampler_state() const {
    std::ostringstream out;
    out << rng_;
    return out.str();
  }
  /// Continues a run after `steps` steps: the weights (the reference given at construction) must
  /// already hold that step's values; `optimizer` and `sampler` are what optimizer_state() and
  /// sampler_state() returned then.
  void resume(index_t steps, basic_adamw_state<Scalar> optimizer, const std::string& sampler) {
    if (steps < 0 || optimizer.step != steps) {
      throw value_error(detail::concat("trainer: resuming at step ", steps,
                                       " with an optimizer that has taken ", optimizer.step));
    }
    std::istringstream in(sampler);
    std::mt19937_64 rng;
    in >> rng;
    if (!in) throw format_error("trainer: the sampler state is not a std::mt19937_64 state");
    validate_weights(config_, optimizer.m);
    validate_weights(config_, optimizer.v);
    if (optimizer.m.tied_lm_head() != weights_.tied_lm_head() ||
        optimizer.v.tied_lm_head() != weights_.tied_lm_head()) {
      throw shape_error("trainer: the optimizer state's LM head is not shaped like the model's");
    }
    state_ = std::move(optimizer);
    rng_ = rng;
    steps_ = steps;
  }

 private:
  static index_t local_shards(index_t batch, int world) {
    if (world < 1 || batch % world != 0) {
      throw value_error(detail::concat("training: the global batch of ", batch,
                                       " sequences does not split evenly over ", world, " ranks"));
    }
    return world == 1 && batch % 2 == 0 ? 2 : 1;
  }
  /// inputs_/targets_ = sequences [first, first + shard_sequences_) of the drawn batch.
  void take_shard(index_t first) {
    const auto begin = std::size_t(first * options_.seq_len);
    const auto n = std::size_t(shard_sequences_ * options_.seq_len);
    inputs_.assign(batch_inputs_.begin() + std::ptrdiff_t(begin),
                   batch_inputs_.begin() + std::ptrdiff_t(begin + n));
    targets_.assign(batch_targets_.begin() + std::ptrdiff_t(begin),
                    batch_targets_.begin() + std::ptrdiff_t(begin + n));
  }

  model_config config_;
  basic_model_weights<Scalar>& weights_;
  training_options options_;
  gradient_communicator comm_;
  index_t local_shards_, shard_sequences_;
  basic_model_gradients<Scalar> grads_;
  basic_model_gradients<Scalar> second_shard_;  // the second half's, for a single process
  basic_adamw_state<Scalar> state_;
  basic_training_activations<Scalar> acts_;
  std::mt19937_64 rng_;
  std::vector<token_id> batch_inputs_, batch_targets_;  // the whole drawn batch
  std::vector<token_id> inputs_, targets_;              // one shard of it
  index_t steps_ = 0;
};

using trainer = basic_trainer<float>;

}  // namespace eigenformer
