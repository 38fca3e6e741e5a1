// eigenformer/train/trainer.hpp — the training loop's step: sample micro-batches, forward,
// backward, accumulate, AdamW at the scheduled learning rate. Owns everything a run allocates
// (gradients, optimizer state, activations, the random generator), once.
#pragma once

#include <cstdint>
#include <random>
#include <sstream>
#include <string>
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

template <class Scalar>
class basic_trainer {
 public:
  basic_trainer(const model_config& config, basic_model_weights<Scalar>& weights,
                const training_options& options)
      : config_(config),
        weights_(weights),
        options_((options.validate(config), options)),
        grads_(zeros_like(config, weights)),
        state_(config, weights),
        acts_(config, options.batch, options.seq_len),
        rng_(options.seed) {}

  /// One optimizer step on batches drawn from `tokens` (at least T + 1 of them).
  train_step_result step(const std::vector<token_id>& tokens) {
    const double lr = options_.schedule.at(steps_);
    set_zero(config_, grads_);
    double loss = 0;
    const auto scale = Scalar(1.0 / double(options_.grad_accum));
    for (index_t micro = 0; micro < options_.grad_accum; ++micro) {
      sample_batch(tokens, options_.batch, options_.seq_len, rng_, inputs_, targets_);
      loss += training_forward(config_, weights_, inputs_, targets_, acts_);
      training_backward(config_, weights_, inputs_, targets_, acts_, grads_, scale);
    }
    const double norm = adamw_step(config_, weights_, grads_, state_, options_.adamw, lr);
    ++steps_;
    return {loss / double(options_.grad_accum), norm, lr};
  }

  /// Mean loss over `n_batches` fixed, evenly spread batches of `tokens` (no update).
  double evaluate(const std::vector<token_id>& tokens, index_t n_batches) {
    double loss = 0;
    for (index_t b = 0; b < n_batches; ++b) {
      evaluation_batch(tokens, options_.batch, options_.seq_len, b, n_batches, inputs_, targets_);
      loss += training_forward(config_, weights_, inputs_, targets_, acts_);
    }
    return n_batches > 0 ? loss / double(n_batches) : 0.0;
  }

  index_t steps_taken() const { return steps_; }
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
  model_config config_;
  basic_model_weights<Scalar>& weights_;
  training_options options_;
  basic_model_gradients<Scalar> grads_;
  basic_adamw_state<Scalar> state_;
  basic_training_activations<Scalar> acts_;
  std::mt19937_64 rng_;
  std::vector<token_id> inputs_, targets_;
  index_t steps_ = 0;
};

using trainer = basic_trainer<float>;

}  // namespace eigenformer
