// eigenformer/model/sampler.hpp — choosing the next token from a row of logits.
//
// Order of operations (as in Hugging Face / llama.cpp): repetition penalty on the raw logits,
// then temperature 0 = greedy argmax; otherwise logits / temperature, keep the top-k, softmax,
// keep the top-p nucleus, renormalise, draw. All filters combine; a seed makes runs reproducible.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"

namespace eigenformer {

struct sampling_params {
  double temperature = 1.0;         // 0 = greedy; must be >= 0
  index_t top_k = 0;                // keep the k most likely tokens; 0 = no limit
  double top_p = 1.0;               // keep the smallest set whose probability reaches p, in (0, 1]
  double repetition_penalty = 1.0;  // > 1 discourages tokens already in the history; 1 = off
  std::uint64_t seed = 0;

  void validate() const {
    if (!(temperature >= 0.0) || !std::isfinite(temperature)) {
      throw value_error(
          detail::concat("sampling: temperature ", temperature, " must be finite and >= 0"));
    }
    if (top_k < 0) throw value_error(detail::concat("sampling: top-k ", top_k, " must be >= 0"));
    if (!(top_p > 0.0 && top_p <= 1.0)) {
      throw value_error(detail::concat("sampling: top-p ", top_p, " must be in (0, 1]"));
    }
    if (!(repetition_penalty > 0.0) || !std::isfinite(repetition_penalty)) {
      throw value_error(detail::concat("sampling: repetition penalty ", repetition_penalty,
                                       " must be finite and > 0"));
    }
  }
};

class sampler {
 public:
  explicit sampler(const sampling_params& params) : params_(params), rng_(params.seed) {
    params_.validate();
  }

  const sampling_params& params() const { return params_; }

  /// Picks the next token from `logits` [1 x V] (any row expression); `history` holds the
  /// tokens the repetition penalty applies to (usually prompt + generated so far).
  template <class Derived>
  token_id sample(const Eigen::DenseBase<Derived>& logits, const std::vector<token_id>& history) {
    const index_t vocab = logits.size();
    if (vocab == 0) throw shape_error("sampling: empty logits");
    scores_.resize(static_cast<std::size_t>(vocab));
    for (index_t i = 0; i < vocab; ++i) {
      scores_[static_cast<std::size_t>(i)] = {static_cast<double>(logits(i)),
                                              static_cast<token_id>(i)};
    }
    if (params_.repetition_penalty != 1.0) apply_repetition_penalty(history);

    // Best first; ties broken by the smaller id so results do not depend on sort internals.
    const auto better = [](const std::pair<double, token_id>& a,
                           const std::pair<double, token_id>& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    };
    if (params_.temperature == 0.0) {
      return std::min_element(scores_.begin(), scores_.end(), better)->second;
    }
    std::size_t kept = scores_.size();
    if (params_.top_k > 0) kept = std::min(kept, static_cast<std::size_t>(params_.top_k));
    // Only the filters need the candidates in order; plain sampling skips the O(V log V) sort.
    if (kept < scores_.size() || params_.top_p < 1.0) {
      std::partial_sort(scores_.begin(), scores_.begin() + static_cast<std::ptrdiff_t>(kept),
                        scores_.end(), better);
    }

    // Softmax of the kept candidates at this temperature (the max subtracted).
    double best = scores_.front().first;
    for (std::size_t i = 1; i < kept; ++i) best = std::max(best, scores_[i].first);
    double total = 0.0;
    for (std::size_t i = 0; i < kept; ++i) {
      scores_[i].first = std::exp((scores_[i].first - best) / params_.temperature);
      total += scores_[i].first;
    }
    // Nucleus: the smallest prefix whose probability mass reaches top_p.
    if (params_.top_p < 1.0) {
      double mass = 0.0;
      std::size_t n = 0;
      while (n < kept) {
        mass += scores_[n++].first / total;
        if (mass >= params_.top_p) break;
      }
      kept = n;
      total = 0.0;
      for (std::size_t i = 0; i < kept; ++i) total += scores_[i].first;
    }
    double draw = uniform() * total;
    for (std::size_t i = 0; i < kept; ++i) {
      draw -= scores_[i].first;
      if (draw < 0.0) return scores_[i].second;
    }
    return scores_[kept - 1].second;  // rounding left a sliver: the last kept candidate
  }

 private:
  /// CTRL-style penalty (as transformers' RepetitionPenaltyLogitsProcessor): a seen token's
  /// positive logit is divided by the penalty, a negative one multiplied, each token once.
  void apply_repetition_penalty(const std::vector<token_id>& history) {
    penalized_.assign(scores_.size(), false);  // reuses its storage: no allocation per token
    for (const token_id t : history) {
      const auto i = static_cast<std::size_t>(t);
      if (t < 0 || i >= scores_.size() || penalized_[i]) continue;
      penalized_[i] = true;
      double& s = scores_[i].first;
      s = s > 0 ? s / params_.repetition_penalty : s * params_.repetition_penalty;
    }
  }

  /// Uniform in [0, 1) from the top 53 bits: the same stream on every platform, unlike
  /// std::uniform_real_distribution.
  double uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

  sampling_params params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<double, token_id>> scores_;  // (score, id), reused across calls
  std::vector<bool> penalized_;                      // per vocabulary entry, reused across calls
};

}  // namespace eigenformer
