// eigenformer/layers/attention.hpp — causal multi-head self-attention, with the Llama family's
// variants: grouped-query attention, rotary positions, q/k norms and a sliding window.
//
// Shapes: T new tokens (queries), n_past tokens already seen, Tk = n_past + T keys,
// C channels, H query heads, G key/value heads (G divides H; G = H is plain multi-head
// attention), d the head width (C / H unless the config says otherwise).
//
//   qkv = x W_qkv + b                     [T x (H d + 2 G d)]   Q | K | V column blocks
//   (q/k norm: RMSNorm of each head of Q and K over d — Qwen3)
//   (rotary: rotate each head of Q and K by its position — layers/rope.hpp)
//   per query head h, using key/value head g = h / (H / G):
//     S = Q_h K_g^T / sqrt(d)             [T x Tk]   row i = query i, column j = key j
//     P = masked softmax of each ROW      [T x Tk]   P[i][j] = 0 exactly unless j is visible
//     O_h = P V_g                         [T x d]
//   out = concat_h(O_h) W_proj + b        [T x C]
//
// The mask is one rule: query i, at position n_past + i, sees key j iff j <= n_past + i and,
// with a sliding window W, j > n_past + i - W. Prefill and decoding use the same rule.
// Grouped-query attention repeats each key/value head for H / G consecutive query heads; the KV
// cache stores only the G heads (after rotation), which is its memory saving.
//
// That is the definition; the computation never holds S or P whole. It walks tiles of 64
// queries x 512 keys with an online softmax (detail::attention_head_tiled), skips tiles that lie
// entirely outside the mask, and needs O(T x d) memory. Only an attention observer, which asks to
// see P, gets the untiled path.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/parallel.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/layers/linear.hpp"
#include "eigenformer/layers/rms_norm.hpp"
#include "eigenformer/layers/rope.hpp"
#include "eigenformer/ops/softmax.hpp"

namespace eigenformer {

/// The shape of one attention layer (model_config has the same numbers; see attention_config_of
/// in model/decoder.hpp).
struct attention_config {
  index_t n_head = 0;      // H, query heads
  index_t n_kv_head = 0;   // G, key/value heads; H / G query heads share one
  index_t head_dim = 0;    // d
  index_t window = 0;      // W, sliding window; 0 means none
  double qk_norm_eps = 0;  // eps of the q/k RMSNorms (used when the weights have them)

  /// Plain multi-head attention over `channels` columns: G = H, d = channels / H.
  static attention_config multi_head(index_t n_head, index_t channels) {
    return attention_config{n_head, n_head, n_head > 0 ? channels / n_head : 0, 0, 0};
  }
  index_t q_width() const { return n_head * head_dim; }
  index_t kv_width() const { return n_kv_head * head_dim; }
  index_t qkv_width() const { return q_width() + 2 * kv_width(); }
  /// The key/value head that query head h reads.
  index_t kv_head_of(index_t h) const { return h / (n_head / n_kv_head); }

  void validate(const char* where) const {
    if (n_head <= 0 || n_kv_head <= 0 || head_dim <= 0 || n_head % n_kv_head != 0 || window < 0) {
      throw shape_error(detail::concat(where, ": ", n_head, " query heads, ", n_kv_head,
                                       " key/value heads of ", head_dim, " and window ", window,
                                       " do not fit together"));
    }
  }
};

template <class Scalar>
struct attention_weights {
  linear_weights<Scalar> qkv;   // [C x (H d + 2 G d)], bias [H d + 2 G d] (GPT-2: c_attn [C x 3C])
  linear_weights<Scalar> proj;  // [H d x C], bias [C] (GPT-2: c_proj)
  row_vector<Scalar> q_norm{};  // [1 x d] RMSNorm gain of each query head; empty: no q/k norm
  row_vector<Scalar> k_norm{};  // [1 x d] of each key head
};

/// Called once per head with that head's attention weights P [T x Tk] (rows = queries, columns =
/// keys) while they are still in the scratch buffer; for inspection and attention maps. An empty
/// observer costs one branch per head.
template <class Scalar>
using attention_observer = std::function<void(index_t head, matrix_cref<Scalar> weights)>;

/// Queries and keys per tile of the attention core (see causal_attention_heads).
inline constexpr index_t attention_query_block = 64;
inline constexpr index_t attention_key_block = 512;

/// Reusable buffers of one attention call, sized once for the longest sequence.
template <class Scalar>
struct attention_scratch {
  matrix<Scalar> qkv;                  // [max_T x (H d + 2 G d)]
  std::vector<matrix<Scalar>> scores;  // one [query block x key block] tile per group of heads
  matrix<Scalar> heads;                // [max_T x H d], concatenated head outputs

  attention_scratch() = default;
  /// `groups`: how many groups of heads may run at once (default: the thread count). The score
  /// tiles do not grow with the sequence: attention memory is O(T x C), never O(T^2).
  attention_scratch(index_t max_tokens, const attention_config& config, int groups = 0)
      : qkv(max_tokens, config.qkv_width()),
        scores(static_cast<std::size_t>(groups > 0 ? groups : num_threads()),
               matrix<Scalar>(attention_query_block, attention_key_block)),
        heads(max_tokens, config.q_width()) {}
  /// Multi-head attention over `channels` (GPT-2).
  attention_scratch(index_t max_tokens, index_t channels, int groups = 0)
      : attention_scratch(max_tokens, attention_config{1, 1, channels, 0, 0}, groups) {}
};

/// One layer's keys and values of the tokens seen so far (rows [0, n_past) are filled), after
/// rotation; only the G key/value heads. Owned by a model::kv_cache; one per sequence, never
/// shared between threads.
template <class Scalar>
struct kv_cache_layer {
  matrix<Scalar> keys;    // [capacity x G d]
  matrix<Scalar> values;  // [capacity x G d]
};

namespace detail {

/// The keys query `position` sees: [first, position], first = position - W + 1 with a window.
inline index_t first_visible_key(index_t position, index_t window) {
  return window > 0 ? std::max<index_t>(0, position - window + 1) : 0;
}

/// One head's attention, the whole [T x Tk] weight matrix at once — for an observer to see.
template <class Scalar>
void attention_head_untiled(matrix_cref<Scalar> q, matrix_cref<Scalar> k, matrix_cref<Scalar> v,
                            index_t n_past, Scalar scale, matrix_ref<Scalar> weights,
                            matrix_ref<Scalar> out, index_t window = 0) {
  weights.noalias() = (q * scale) * k.transpose();
  causal_softmax_rows_inplace<Scalar>(weights, n_past, window);
  out.noalias() = weights * v;
}

/// One head's attention in tiles with an online softmax (FlashAttention's recurrence): for each
/// block of queries, walk the key blocks it can see, keeping per query the running maximum m and
/// the running sum l of exp(score - m); when m grows, what was accumulated is rescaled by
/// exp(m_old - m_new). Only a [query block x key block] tile of scores exists at a time. Key
/// tiles start at multiples of the key block, so a row's arithmetic is the same whether it is
/// computed in a prompt or while decoding.
/// q: [T x d]; k, v: [Tk x d]; tile: at least [min(T, 64) x min(Tk, 512)]; out: [T x d].
template <class Scalar>
void attention_head_tiled(matrix_cref<Scalar> q, matrix_cref<Scalar> k, matrix_cref<Scalar> v,
                          index_t n_past, Scalar scale, matrix_ref<Scalar> tile,
                          matrix_ref<Scalar> out, index_t window = 0) {
  const index_t n_query = q.rows();
  Scalar running_max[attention_query_block], running_sum[attention_query_block];
  for (index_t r = 0; r < n_query; r += attention_query_block) {
    const index_t rows = std::min(attention_query_block, n_query - r);
    const index_t keys = n_past + r + rows;  // keys beyond are invisible to every query here
    // Keys before the window of the block's first query are invisible to all its queries.
    const index_t first_key = first_visible_key(n_past + r, window);
    auto acc = out.middleRows(r, rows);  // accumulates P V, normalized at the end
    acc.setZero();
    std::fill(running_max, running_max + rows, -std::numeric_limits<Scalar>::infinity());
    std::fill(running_sum, running_sum + rows, Scalar(0));
    for (index_t c = first_key / attention_key_block * attention_key_block; c < keys;
         c += attention_key_block) {
      const index_t width = std::min(attention_key_block, keys - c);
      auto s = tile.topLeftCorner(rows, width);
      s.noalias() = (q.middleRows(r, rows) * scale) * k.middleRows(c, width).transpose();
      for (index_t i = 0; i < rows; ++i) {
        // Query i sits at position n_past + r + i and sees keys [first, position] (the mask
        // rule). Invisible scores are never read and their weights are exact zeros.
        const index_t position = n_past + r + i;
        const index_t begin = std::max<index_t>(first_visible_key(position, window) - c, 0);
        const index_t end = std::min(width, position - c + 1);
        if (end <= begin) {
          s.row(i).setZero();
          continue;
        }
        auto row = s.row(i).segment(begin, end - begin).array();
        const Scalar new_max = std::max(running_max[i], row.maxCoeff());
        const Scalar rescale = std::exp(running_max[i] - new_max);  // 0 on the first block
        row = (row - new_max).exp();
        s.row(i).head(begin).setZero();
        s.row(i).tail(width - end).setZero();
        running_sum[i] = running_sum[i] * rescale + row.sum();
        running_max[i] = new_max;
        if (rescale != Scalar(1)) acc.row(i) *= rescale;
      }
      acc.noalias() += s * v.middleRows(c, width);
    }
    for (index_t i = 0; i < rows; ++i) acc.row(i) /= running_sum[i];
  }
}

/// Query heads [first_head, last_head) of the attention core; q, k, v, out hold all heads.
template <class Scalar>
void attention_head_range(matrix_cref<Scalar> q, matrix_cref<Scalar> k, matrix_cref<Scalar> v,
                          const attention_config& config, index_t n_past, index_t first_head,
                          index_t last_head, matrix_ref<Scalar> scores, matrix_ref<Scalar> out,
                          const attention_observer<Scalar>& observe) {
  const index_t d = config.head_dim;
  const Scalar scale = Scalar(1) / std::sqrt(Scalar(d));
  for (index_t h = first_head; h < last_head; ++h) {
    const index_t g = config.kv_head_of(h);
    const auto q_h = q.middleCols(h * d, d);
    const auto k_g = k.middleCols(g * d, d), v_g = v.middleCols(g * d, d);
    if (observe) {
      auto weights = scores.topLeftCorner(q.rows(), k.rows());
      attention_head_untiled<Scalar>(q_h, k_g, v_g, n_past, scale, weights,
                                     out.middleCols(h * d, d), config.window);
      observe(h, weights);
    } else {
      attention_head_tiled<Scalar>(q_h, k_g, v_g, n_past, scale, scores, out.middleCols(h * d, d),
                                   config.window);
    }
  }
}

inline void check_attention_core(const attention_config& config, index_t n_query, index_t q_cols,
                                 index_t n_key, index_t k_cols, index_t v_rows, index_t v_cols,
                                 index_t n_past, index_t out_rows, index_t out_cols) {
  config.validate("attention");
  if (n_past < 0 || n_key != n_past + n_query || v_rows != n_key || q_cols != config.q_width() ||
      k_cols != config.kv_width() || v_cols != config.kv_width() || out_rows != n_query ||
      out_cols != config.q_width()) {
    throw shape_error(concat("attention: q [", n_query, " x ", q_cols, "], k [", n_key, " x ",
                             k_cols, "], v [", v_rows, " x ", v_cols, "], n_past ", n_past,
                             ", out [", out_rows, " x ", out_cols, "] do not fit ", config.n_head,
                             " query heads and ", config.n_kv_head, " key/value heads of ",
                             config.head_dim));
  }
}

}  // namespace detail

/// The attention core without projections: for every query head h, softmax(Q_h K_g^T / sqrt(d))
/// V_g with g = h / (H / G), under the mask rule (see the top of this file).
/// q: [T x H d]; k, v: [n_past + T x G d]; out: [T x H d]. scores: a scratch tile of at least
/// [min(T, attention_query_block) x min(n_past + T, attention_key_block)] — or, with an
/// observer, the whole [T x n_past + T], since the observer sees each head's full weights.
template <class Scalar>
void causal_attention_heads(matrix_cref<Scalar> q, matrix_cref<Scalar> k, matrix_cref<Scalar> v,
                            const attention_config& config, index_t n_past,
                            matrix_ref<Scalar> scores, matrix_ref<Scalar> out,
                            const attention_observer<Scalar>& observe = nullptr) {
  detail::check_attention_core(config, q.rows(), q.cols(), k.rows(), k.cols(), v.rows(), v.cols(),
                               n_past, out.rows(), out.cols());
  const index_t need_rows = observe ? q.rows() : std::min(q.rows(), attention_query_block);
  const index_t need_cols = observe ? k.rows() : std::min(k.rows(), attention_key_block);
  if (scores.rows() < need_rows || scores.cols() < need_cols) {
    throw shape_error(detail::concat("attention: scores buffer [", scores.rows(), " x ",
                                     scores.cols(), "] is smaller than [", need_rows, " x ",
                                     need_cols, "]"));
  }
  detail::attention_head_range<Scalar>(q, k, v, config, n_past, 0, config.n_head, scores, out,
                                       observe);
}

/// Multi-head attention (G = H, d = C / H) over C = q.cols() channels.
template <class Scalar>
void causal_attention_heads(matrix_cref<Scalar> q, matrix_cref<Scalar> k, matrix_cref<Scalar> v,
                            index_t n_head, index_t n_past, matrix_ref<Scalar> scores,
                            matrix_ref<Scalar> out,
                            const attention_observer<Scalar>& observe = nullptr) {
  if (n_head <= 0 || q.cols() % n_head != 0) {
    throw shape_error(detail::concat("attention: ", q.cols(), " channels cannot be split into ",
                                     n_head, " heads"));
  }
  causal_attention_heads<Scalar>(q, k, v, attention_config::multi_head(n_head, q.cols()), n_past,
                                 scores, out, observe);
}

/// causal_attention_heads split over groups of query heads, one score tile per group, groups in
/// parallel. A head's result does not depend on its group, so any grouping gives the same bits.
/// With an observer the heads run in one group, in order, on the calling thread, untiled.
template <class Scalar>
void causal_attention_head_groups(matrix_cref<Scalar> q, matrix_cref<Scalar> k,
                                  matrix_cref<Scalar> v, const attention_config& config,
                                  index_t n_past, std::vector<matrix<Scalar>>& scores,
                                  matrix_ref<Scalar> out,
                                  const attention_observer<Scalar>& observe) {
  if (scores.empty()) throw shape_error("attention: no scores buffer");
  if (observe) {  // inspection, not the hot path: the full weight matrix is allocated here
    matrix<Scalar> weights(q.rows(), k.rows());
    causal_attention_heads<Scalar>(q, k, v, config, n_past, weights, out, observe);
    return;
  }
  const index_t n_groups = std::min<index_t>(config.n_head, static_cast<index_t>(scores.size()));
  if (n_groups <= 1) {
    causal_attention_heads<Scalar>(q, k, v, config, n_past, scores.front(), out);
    return;
  }
  detail::check_attention_core(config, q.rows(), q.cols(), k.rows(), k.cols(), v.rows(), v.cols(),
                               n_past, out.rows(), out.cols());
  parallel_for(n_groups, [&](index_t g) {
    detail::attention_head_range<Scalar>(q, k, v, config, n_past, g * config.n_head / n_groups,
                                         (g + 1) * config.n_head / n_groups,
                                         scores[static_cast<std::size_t>(g)], out, nullptr);
  });
}

/// One sequence's rows in a batch of new tokens: rows [first, first + n_tokens) continue the
/// sequence whose keys and values `cache` holds (n_past of them) — or, without a cache, are the
/// whole sequence.
template <class Scalar>
struct attention_segment {
  index_t first = 0;
  index_t n_tokens = 0;
  kv_cache_layer<Scalar>* cache = nullptr;
  index_t n_past = 0;
};

/// Causal self-attention of the new tokens of several sequences at once (continuous batching):
/// the projections run once over all R rows — one pass over the weights — and the rotation, the
/// cache and the attention core per sequence. Every step is row by row or per sequence, so a
/// sequence's rows come out bit-identical whatever it is batched with.
/// x: [R x C] (already normed), out: [R x C]; `rope`: cos/sin of each row's own position (rows
/// [0, R)), or nullptr for learned positions (GPT-2). An observer needs a single segment.
template <class Scalar>
void batched_self_attention_forward(matrix_cref<Scalar> x, const attention_weights<Scalar>& w,
                                    const attention_config& config,
                                    attention_scratch<Scalar>& scratch, matrix_ref<Scalar> out,
                                    const std::vector<attention_segment<Scalar>>& segments,
                                    const rope_tables<Scalar>* rope = nullptr,
                                    const attention_observer<Scalar>& observe = nullptr) {
  config.validate("attention");
  const index_t n_rows = x.rows();
  const index_t q_width = config.q_width(), kv_width = config.kv_width();
  if (scratch.qkv.rows() < n_rows || scratch.qkv.cols() != config.qkv_width() ||
      scratch.heads.rows() < n_rows || scratch.heads.cols() != q_width) {
    throw shape_error(detail::concat("attention: scratch [", scratch.qkv.rows(), " x ",
                                     scratch.qkv.cols(), "] does not fit ", n_rows,
                                     " tokens of q|k|v width ", config.qkv_width()));
  }
  index_t covered = 0;
  for (const auto& s : segments) {
    if (s.first != covered || s.n_tokens <= 0) {
      throw shape_error(detail::concat("attention: segment at row ", s.first, " of ", s.n_tokens,
                                       " rows does not continue at row ", covered));
    }
    covered += s.n_tokens;
    if (s.cache &&
        (s.n_past < 0 || s.n_past + s.n_tokens > s.cache->keys.rows() ||
         s.cache->keys.cols() != kv_width || s.cache->values.rows() != s.cache->keys.rows() ||
         s.cache->values.cols() != kv_width)) {
      throw shape_error(detail::concat("attention: ", s.n_past, " cached + ", s.n_tokens,
                                       " new tokens do not fit a KV cache of [",
                                       s.cache->keys.rows(), " x ", s.cache->keys.cols(), "]"));
    }
  }
  if (covered != n_rows)
    throw shape_error(
        detail::concat("attention: segments cover ", covered, " of ", n_rows, " rows"));
  if (observe && segments.size() != 1)
    throw value_error("attention: an observer needs a single sequence");
  auto qkv = scratch.qkv.topRows(n_rows);
  linear_forward<Scalar>(x, w.qkv, qkv);
  auto q = qkv.leftCols(q_width);
  auto k = qkv.middleCols(q_width, kv_width);
  const auto v = qkv.rightCols(kv_width);
  if (w.q_norm.size() > 0) {  // Qwen3: per-head RMSNorm of q and k, before the rotation
    const auto eps = Scalar(config.qk_norm_eps);
    rms_norm_heads_inplace<Scalar>(q, config.n_head, w.q_norm, eps);
    rms_norm_heads_inplace<Scalar>(k, config.n_kv_head, w.k_norm, eps);
  }
  if (rope) {
    rope_apply_inplace<Scalar>(q, config.n_head, rope->cos, rope->sin);
    rope_apply_inplace<Scalar>(k, config.n_kv_head, rope->cos, rope->sin);
  }
  auto heads = scratch.heads.topRows(n_rows);
  // Each sequence's queries against its own keys: the cached ones and its new rows.
  for (const auto& s : segments) {
    if (!s.cache) continue;
    s.cache->keys.middleRows(s.n_past, s.n_tokens) = k.middleRows(s.first, s.n_tokens);
    s.cache->values.middleRows(s.n_past, s.n_tokens) = v.middleRows(s.first, s.n_tokens);
  }
  const auto keys_of = [&](const attention_segment<Scalar>& s) -> matrix_cref<Scalar> {
    return s.cache ? matrix_cref<Scalar>(s.cache->keys.topRows(s.n_past + s.n_tokens))
                   : matrix_cref<Scalar>(k.middleRows(s.first, s.n_tokens));
  };
  const auto values_of = [&](const attention_segment<Scalar>& s) -> matrix_cref<Scalar> {
    return s.cache ? matrix_cref<Scalar>(s.cache->values.topRows(s.n_past + s.n_tokens))
                   : matrix_cref<Scalar>(v.middleRows(s.first, s.n_tokens));
  };
  const auto n_past_of = [](const attention_segment<Scalar>& s) {
    return s.cache ? s.n_past : index_t(0);
  };
  if (segments.size() == 1) {
    const auto& s = segments.front();
    causal_attention_head_groups<Scalar>(q, keys_of(s), values_of(s), config, n_past_of(s),
                                         scratch.scores, heads, observe);
  } else {
    // Groups of heads in parallel, each walking every sequence: a head's result depends only on
    // its own sequence, so any grouping gives the same bits.
    if (scratch.scores.empty()) throw shape_error("attention: no scores buffer");
    for (const auto& s : segments) {
      detail::check_attention_core(config, s.n_tokens, q_width, keys_of(s).rows(), kv_width,
                                   values_of(s).rows(), kv_width, n_past_of(s), s.n_tokens,
                                   q_width);
    }
    const index_t n_groups = std::min<index_t>(config.n_head, index_t(scratch.scores.size()));
    parallel_for(n_groups, [&](index_t g) {
      for (const auto& s : segments) {
        detail::attention_head_range<Scalar>(
            q.middleRows(s.first, s.n_tokens), keys_of(s), values_of(s), config, n_past_of(s),
            g * config.n_head / n_groups, (g + 1) * config.n_head / n_groups,
            scratch.scores[std::size_t(g)], heads.middleRows(s.first, s.n_tokens), nullptr);
      }
    });
  }
  linear_forward<Scalar>(heads, w.proj, out);
}

/// Causal self-attention of T new tokens of one sequence.
/// x: [T x C] (already normed), out: [T x C], scratch sized for at least T tokens of `config`.
/// `rope`: cos/sin of the T new positions (rows [0, T)), or nullptr for models whose positions
/// are learned embeddings (GPT-2). Without a cache the tokens are the whole sequence. With
/// `cache`, the tokens sit at positions [n_past, n_past + T): their keys and values are appended
/// to the cache rows, and each query attends to the cached keys as well — the work is
/// proportional to the keys, not a re-run of the prefix. (A batch of one sequence.)
template <class Scalar>
void causal_self_attention_forward(matrix_cref<Scalar> x, const attention_weights<Scalar>& w,
                                   const attention_config& config,
                                   attention_scratch<Scalar>& scratch, matrix_ref<Scalar> out,
                                   const attention_observer<Scalar>& observe = nullptr,
                                   kv_cache_layer<Scalar>* cache = nullptr, index_t n_past = 0,
                                   const rope_tables<Scalar>* rope = nullptr) {
  batched_self_attention_forward<Scalar>(x, w, config, scratch, out,
                                         {attention_segment<Scalar>{0, x.rows(), cache, n_past}},
                                         rope, observe);
}

/// Multi-head attention with learned positions (GPT-2): H heads of C / H over x's C channels.
template <class Scalar>
void causal_self_attention_forward(matrix_cref<Scalar> x, const attention_weights<Scalar>& w,
                                   index_t n_head, attention_scratch<Scalar>& scratch,
                                   matrix_ref<Scalar> out,
                                   const attention_observer<Scalar>& observe = nullptr,
                                   kv_cache_layer<Scalar>* cache = nullptr, index_t n_past = 0) {
  if (n_head <= 0 || x.cols() % n_head != 0) {
    throw shape_error(detail::concat("attention: ", x.cols(), " channels cannot be split into ",
                                     n_head, " heads"));
  }
  causal_self_attention_forward<Scalar>(x, w, attention_config::multi_head(n_head, x.cols()),
                                        scratch, out, observe, cache, n_past);
}

// --- Training: a batch of B sequences of T tokens; rows [b*T, (b+1)*T) belong to sequence b,
// at positions 0..T-1. ---

/// What the backward pass needs from the forward pass. Training keeps every head's P whole
/// (O(B H T^2) memory), because its gradient needs it; inference never does.
template <class Scalar>
struct attention_activations {
  index_t n_sequences = 0, n_tokens = 0;
  attention_config config;
  matrix<Scalar> projected;  // [B*T x (H d + 2 G d)] x W_qkv + b, before the q/k norms
                             // (kept only when there are q/k norms: their backward reads it)
  matrix<Scalar> qkv;        // [B*T x (H d + 2 G d)] Q | K | V as the attention core saw them
  matrix<Scalar> probs;      // [B*H*T x T]  P of (sequence b, head h) in rows [(b*H + h)*T, +T)
  matrix<Scalar> heads;      // [B*T x H d]  concatenated P V of every head, the input of proj

  attention_activations() = default;
  attention_activations(index_t batch, index_t tokens, const attention_config& shape,
                        bool qk_norm = false)
      : n_sequences(batch),
        n_tokens(tokens),
        config(shape),
        projected(qk_norm ? batch * tokens : 0, qk_norm ? shape.qkv_width() : 0),
        qkv(batch * tokens, shape.qkv_width()),
        probs(batch * shape.n_head * tokens, tokens),
        heads(batch * tokens, shape.q_width()) {}
  /// GPT-2: multi-head attention over `channels`.
  attention_activations(index_t batch, index_t tokens, index_t channels, index_t n_head)
      : attention_activations(batch, tokens, attention_config::multi_head(n_head, channels)) {}
};

/// Buffers of the backward pass, shared by all layers.
template <class Scalar>
struct attention_backward_scratch {
  matrix<Scalar> d_qkv;        // [B*T x (H d + 2 G d)], dL/d of Q | K | V as the core saw them
  matrix<Scalar> d_projected;  // [B*T x (H d + 2 G d)], dL/d(x W_qkv + b) (with q/k norms)
  matrix<Scalar> d_probs;      // [B*H*T x T], dL/dP, then dL/dS
  matrix<Scalar> d_heads;      // [B*T x H d]

  attention_backward_scratch() = default;
  attention_backward_scratch(index_t batch, index_t tokens, const attention_config& shape,
                             bool qk_norm = false)
      : d_qkv(batch * tokens, shape.qkv_width()),
        d_projected(qk_norm ? batch * tokens : 0, qk_norm ? shape.qkv_width() : 0),
        d_probs(batch * shape.n_head * tokens, tokens),
        d_heads(batch * tokens, shape.q_width()) {}
  attention_backward_scratch(index_t batch, index_t tokens, index_t channels, index_t n_head)
      : attention_backward_scratch(batch, tokens, attention_config::multi_head(n_head, channels)) {}
};

namespace detail {
template <class Scalar>
void check_attention_batch(const char* where, matrix_cref<Scalar> x,
                           const attention_weights<Scalar>& w, const attention_config& config,
                           const attention_activations<Scalar>& acts,
                           const rope_tables<Scalar>* rope) {
  config.validate(where);
  const index_t rows = acts.n_sequences * acts.n_tokens;
  const bool qk_norm = w.q_norm.size() > 0;
  if (x.rows() != rows || acts.qkv.rows() != rows || acts.qkv.cols() != config.qkv_width() ||
      acts.heads.cols() != config.q_width() || acts.probs.rows() != rows * config.n_head ||
      w.qkv.out_features() != config.qkv_width() || w.proj.in_features() != config.q_width() ||
      (qk_norm && (acts.projected.rows() != rows || w.q_norm.size() != config.head_dim ||
                   w.k_norm.size() != config.head_dim))) {
    throw shape_error(concat(where, ": input [", x.rows(), " x ", x.cols(), "] and weights of ",
                             w.qkv.out_features(), " q|k|v columns do not match activations for ",
                             acts.n_sequences, " x ", acts.n_tokens, " tokens of ", config.n_head,
                             " query heads, ", config.n_kv_head, " key/value heads of ",
                             config.head_dim, (qk_norm ? " with q/k norms" : "")));
  }
  if (rope && (rope->cos.rows() < acts.n_tokens || 2 * rope->cos.cols() != config.head_dim)) {
    throw shape_error(concat(where, ": rotary tables for ", rope->cos.rows(), " positions of ",
                             2 * rope->cos.cols(), " do not cover ", acts.n_tokens,
                             " positions of head_dim ", config.head_dim));
  }
}
}  // namespace detail

/// causal_self_attention_forward for training: x [B*T x C] (normed), out [B*T x C]. The same
/// steps as inference — projection, q/k norms, rotation (`rope`: cos/sin of positions 0..T-1,
/// or nullptr), the masked core — keeping what the backward pass reads. Every (sequence, query
/// head) pair is independent; pairs run in parallel.
template <class Scalar>
void causal_self_attention_forward_train(matrix_cref<Scalar> x, const attention_weights<Scalar>& w,
                                         const attention_config& config,
                                         const rope_tables<Scalar>* rope,
                                         attention_activations<Scalar>& acts,
                                         matrix_ref<Scalar> out) {
  detail::check_attention_batch("attention (training)", x, w, config, acts, rope);
  const index_t T = acts.n_tokens, d = config.head_dim, H = config.n_head, G = config.n_kv_head;
  const index_t q_width = config.q_width(), kv_width = config.kv_width();
  const bool qk_norm = w.q_norm.size() > 0;
  if (qk_norm) {
    linear_forward<Scalar>(x, w.qkv, acts.projected);
    acts.qkv = acts.projected;
    const auto eps = Scalar(config.qk_norm_eps);
    rms_norm_heads_inplace<Scalar>(acts.qkv.leftCols(q_width), H, w.q_norm, eps);
    rms_norm_heads_inplace<Scalar>(acts.qkv.middleCols(q_width, kv_width), G, w.k_norm, eps);
  } else {
    linear_forward<Scalar>(x, w.qkv, acts.qkv);
  }
  if (rope) {
    for (index_t b = 0; b < acts.n_sequences; ++b) {
      auto seq = acts.qkv.middleRows(b * T, T);
      rope_apply_inplace<Scalar>(seq.leftCols(q_width), H, rope->cos, rope->sin);
      rope_apply_inplace<Scalar>(seq.middleCols(q_width, kv_width), G, rope->cos, rope->sin);
    }
  }
  const Scalar scale = Scalar(1) / std::sqrt(Scalar(d));
  parallel_for(acts.n_sequences * H, [&](index_t pair) {
    const index_t row = (pair / H) * T, h = pair % H, g = config.kv_head_of(h);
    detail::attention_head_untiled<Scalar>(
        acts.qkv.block(row, h * d, T, d), acts.qkv.block(row, q_width + g * d, T, d),
        acts.qkv.block(row, q_width + kv_width + g * d, T, d), 0, scale,
        acts.probs.middleRows(pair * T, T), acts.heads.block(row, h * d, T, d), config.window);
  });
  linear_forward<Scalar>(acts.heads, w.proj, out);
}

/// GPT-2: multi-head attention with n_head heads, learned positions.
template <class Scalar>
void causal_self_attention_forward_train(matrix_cref<Scalar> x, const attention_weights<Scalar>& w,
                                         index_t n_head, attention_activations<Scalar>& acts,
                                         matrix_ref<Scalar> out) {
  causal_self_attention_forward_train<Scalar>(x, w, attention_config::multi_head(n_head, x.cols()),
                                              nullptr, acts, out);
}

/// Backward of causal_self_attention_forward_train, given d_out = dL/d out [B*T x C]; x is the
/// forward's input. Per (sequence, query head h) with key/value head g, S = scale Q_h K_g^T,
/// P = masked softmax(S), O_h = P V_g:
///   dV_g += P^T dO_h    dP = dO_h V_g^T    dS = P * (dP - rowsum(P * dP))   (softmax, row-wise)
///   dQ_h = scale dS K_g                    dK_g += scale dS^T Q_h
/// A key/value head shared by H / G query heads collects the sum of their gradients; the pairs
/// (sequence, g) run in parallel and each adds its query heads in order, so the sums do not
/// depend on the thread count. The mask holds backwards: P is exactly 0 outside the visible keys
/// (causal, and the window), so dS is 0 there and no gradient reaches a key a query cannot see.
/// Then the rotation's transpose (rotation by minus the angle), the q/k norms' backward, and the
/// projection's. Adds to grad and d_x (see linear_backward).
template <class Scalar>
void causal_self_attention_backward(matrix_cref<Scalar> x, const attention_weights<Scalar>& w,
                                    const attention_config& config, const rope_tables<Scalar>* rope,
                                    const attention_activations<Scalar>& acts,
                                    matrix_cref<Scalar> d_out, attention_weights<Scalar>& grad,
                                    attention_backward_scratch<Scalar>& scratch,
                                    matrix_ref<Scalar> d_x) {
  detail::check_attention_batch("attention backward", x, w, config, acts, rope);
  const index_t T = acts.n_tokens, d = config.head_dim, H = config.n_head, G = config.n_kv_head;
  const index_t q_width = config.q_width(), kv_width = config.kv_width();
  const bool qk_norm = w.q_norm.size() > 0;
  if (scratch.d_qkv.rows() != x.rows() || scratch.d_qkv.cols() != acts.qkv.cols() ||
      scratch.d_probs.rows() != acts.probs.rows() || scratch.d_probs.cols() != T ||
      scratch.d_heads.cols() != q_width || (qk_norm && scratch.d_projected.rows() != x.rows())) {
    throw shape_error("attention backward: scratch does not match the activations");
  }
  scratch.d_heads.setZero();
  linear_backward<Scalar>(acts.heads, w.proj, d_out, grad.proj, scratch.d_heads);
  scratch.d_qkv.setZero();
  const Scalar scale = Scalar(1) / std::sqrt(Scalar(d));
  const index_t heads_per_group = H / G;
  parallel_for(acts.n_sequences * G, [&](index_t pair) {
    const index_t b = pair / G, g = pair % G, row = b * T;
    const auto k = acts.qkv.block(row, q_width + g * d, T, d);
    const auto v = acts.qkv.block(row, q_width + kv_width + g * d, T, d);
    auto d_k = scratch.d_qkv.block(row, q_width + g * d, T, d);
    auto d_v = scratch.d_qkv.block(row, q_width + kv_width + g * d, T, d);
    for (index_t h = g * heads_per_group; h < (g + 1) * heads_per_group; ++h) {
      const index_t probs_row = (b * H + h) * T;
      const auto q = acts.qkv.block(row, h * d, T, d);
      const auto p = acts.probs.middleRows(probs_row, T);
      const auto d_o = scratch.d_heads.block(row, h * d, T, d);
      auto d_s = scratch.d_probs.middleRows(probs_row, T);
      d_v.noalias() += p.transpose() * d_o;
      d_s.noalias() = d_o * v.transpose();  // dP
      for (index_t i = 0; i < T; ++i) {
        const index_t first = detail::first_visible_key(i, config.window), visible = i + 1 - first;
        auto d_row = d_s.row(i).segment(first, visible);
        const auto p_row = p.row(i).segment(first, visible);
        const Scalar p_dot_dp = p_row.dot(d_row);
        d_row.array() = p_row.array() * (d_row.array() - p_dot_dp);
        d_s.row(i).head(first).setZero();
        d_s.row(i).tail(T - i - 1).setZero();
      }
      scratch.d_qkv.block(row, h * d, T, d).noalias() = scale * (d_s * k);
      d_k.noalias() += scale * (d_s.transpose() * q);
    }
  });
  if (rope) {
    for (index_t b = 0; b < acts.n_sequences; ++b) {
      auto seq = scratch.d_qkv.middleRows(b * T, T);
      rope_backward_inplace<Scalar>(seq.leftCols(q_width), H, rope->cos, rope->sin);
      rope_backward_inplace<Scalar>(seq.middleCols(q_width, kv_width), G, rope->cos, rope->sin);
    }
  }
  if (!qk_norm) {
    linear_backward<Scalar>(x, w.qkv, scratch.d_qkv, grad.qkv, d_x);
    return;
  }
  // Through the q/k norms: their input is the projection, kept in acts.projected. V has none.
  auto& d_projected = scratch.d_projected;
  d_projected.leftCols(q_width + kv_width).setZero();
  d_projected.rightCols(kv_width) = scratch.d_qkv.rightCols(kv_width);
  const auto eps = Scalar(config.qk_norm_eps);
  rms_norm_heads_backward<Scalar>(acts.projected.leftCols(q_width), H, w.q_norm, eps,
                                  scratch.d_qkv.leftCols(q_width), grad.q_norm,
                                  d_projected.leftCols(q_width));
  rms_norm_heads_backward<Scalar>(acts.projected.middleCols(q_width, kv_width), G, w.k_norm, eps,
                                  scratch.d_qkv.middleCols(q_width, kv_width), grad.k_norm,
                                  d_projected.middleCols(q_width, kv_width));
  linear_backward<Scalar>(x, w.qkv, d_projected, grad.qkv, d_x);
}

/// GPT-2: multi-head attention with n_head heads, learned positions.
template <class Scalar>
void causal_self_attention_backward(matrix_cref<Scalar> x, const attention_weights<Scalar>& w,
                                    index_t n_head, const attention_activations<Scalar>& acts,
                                    matrix_cref<Scalar> d_out, attention_weights<Scalar>& grad,
                                    attention_backward_scratch<Scalar>& scratch,
                                    matrix_ref<Scalar> d_x) {
  causal_self_attention_backward<Scalar>(x, w, attention_config::multi_head(n_head, x.cols()),
                                         nullptr, acts, d_out, grad, scratch, d_x);
}

}  // namespace eigenformer
