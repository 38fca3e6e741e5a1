// eigenformer/layers/attention.hpp — causal multi-head self-attention.
//
// Shapes: T new tokens (queries), n_past tokens already seen, Tk = n_past + T keys,
// C channels, H heads, d = C / H. Head h owns columns [h*d, (h+1)*d) of Q, K, V and the output.
//
//   qkv = x W_qkv + b                     [T x 3C]   (fused projection; Q | K | V column blocks)
//   per head h:
//     S = Q_h K_h^T / sqrt(d)             [T x Tk]   row i = query i, column j = key j
//     P = causal softmax of each ROW      [T x Tk]   P[i][j] = 0 exactly when j > n_past + i
//     O_h = P V_h                         [T x d]
//   out = concat_h(O_h) W_proj + b        [T x C]
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>

#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/parallel.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/layers/linear.hpp"
#include "eigenformer/ops/softmax.hpp"

namespace eigenformer {

template <class Scalar>
struct attention_weights {
  linear_weights<Scalar> qkv;   // c_attn: [C x 3C], bias [3C]
  linear_weights<Scalar> proj;  // c_proj: [C x C],  bias [C]
};

/// Called once per head with that head's attention weights P [T x Tk] (rows = queries, columns =
/// keys) while they are still in the scratch buffer; for inspection and attention maps. An empty
/// observer costs one branch per head.
template <class Scalar>
using attention_observer = std::function<void(index_t head, matrix_cref<Scalar> weights)>;

/// Reusable buffers of one attention call, sized once for the longest sequence.
template <class Scalar>
struct attention_scratch {
  matrix<Scalar> qkv;                  // [max_T x 3C]
  std::vector<matrix<Scalar>> scores;  // one [max_T x max_Tk] per parallel group of heads
  matrix<Scalar> heads;                // [max_T x C], concatenated head outputs

  attention_scratch() = default;
  /// `max_keys`: the most keys a query can see (n_ctx when a KV cache is used). `groups`: how
  /// many groups of heads may run at once (default: the thread count).
  attention_scratch(index_t max_tokens, index_t channels, index_t max_keys = 0, int groups = 0)
      : qkv(max_tokens, 3 * channels),
        scores(static_cast<std::size_t>(groups > 0 ? groups : num_threads()),
               matrix<Scalar>(max_tokens, std::max(max_keys, max_tokens))),
        heads(max_tokens, channels) {}
};

/// One layer's keys and values of the tokens seen so far (rows [0, n_past) are filled).
/// Owned by a model::kv_cache; one per sequence, never shared between threads.
template <class Scalar>
struct kv_cache_layer {
  matrix<Scalar> keys;    // [n_ctx x C]
  matrix<Scalar> values;  // [n_ctx x C]
};

/// Queries per block of the attention core (see causal_attention_heads).
inline constexpr index_t attention_query_block = 64;

/// The attention core without projections: for every head, softmax(Q K^T / sqrt(d)) V with the
/// causal rule "query i sees key j iff j <= n_past + i".
/// q: [T x C]; k, v: [n_past + T x C]; scores: scratch with at least [T x n_past + T];
/// out: [T x C].
template <class Scalar>
void causal_attention_heads(matrix_cref<Scalar> q, matrix_cref<Scalar> k, matrix_cref<Scalar> v,
                            index_t n_head, index_t n_past, matrix_ref<Scalar> scores,
                            matrix_ref<Scalar> out,
                            const attention_observer<Scalar>& observe = nullptr) {
  const index_t n_query = q.rows(), channels = q.cols(), n_key = k.rows();
  if (n_head <= 0 || channels % n_head != 0) {
    throw shape_error(detail::concat("attention: ", channels, " channels cannot be split into ",
                                     n_head, " heads"));
  }
  if (n_past < 0 || n_key != n_past + n_query || v.rows() != n_key || k.cols() != channels ||
      v.cols() != channels || out.rows() != n_query || out.cols() != channels ||
      scores.rows() < n_query || scores.cols() < n_key) {
    throw shape_error(detail::concat(
        "attention: q [", n_query, " x ", channels, "], k [", n_key, " x ", k.cols(), "], v [",
        v.rows(), " x ", v.cols(), "], n_past ", n_past, ", scores buffer [", scores.rows(), " x ",
        scores.cols(), "], out [", out.rows(), " x ", out.cols(), "] do not fit together"));
  }
  const index_t head_dim = channels / n_head;
  const Scalar scale = Scalar(1) / std::sqrt(Scalar(head_dim));
  for (index_t h = 0; h < n_head; ++h) {
    const index_t col = h * head_dim;
    if (observe) {  // the whole [T x Tk] weight matrix at once, for the observer to see
      auto head_scores = scores.topLeftCorner(n_query, n_key);
      head_scores.noalias() =
          (q.middleCols(col, head_dim) * scale) * k.middleCols(col, head_dim).transpose();
      causal_softmax_rows_inplace<Scalar>(head_scores, n_past);
      observe(h, head_scores);
      out.middleCols(col, head_dim).noalias() = head_scores * v.middleCols(col, head_dim);
      continue;
    }
    // Blocks of queries: block [r, r + rows) needs only keys [0, n_past + r + rows), so the
    // keys no query of the block can see are never multiplied (half the work of a full square).
    for (index_t r = 0; r < n_query; r += attention_query_block) {
      const index_t rows = std::min(attention_query_block, n_query - r);
      const index_t keys = n_past + r + rows;
      auto block_scores = scores.topLeftCorner(rows, keys);
      block_scores.noalias() =
          (q.block(r, col, rows, head_dim) * scale) * k.block(0, col, keys, head_dim).transpose();
      causal_softmax_rows_inplace<Scalar>(block_scores, n_past + r);
      out.block(r, col, rows, head_dim).noalias() = block_scores * v.block(0, col, keys, head_dim);
    }
  }
}

/// causal_attention_heads split over groups of heads, one scores buffer per group, groups in
/// parallel. A head's result does not depend on its group, so any grouping gives the same bits.
/// With an observer the heads run in one group, in order, on the calling thread.
template <class Scalar>
void causal_attention_head_groups(matrix_cref<Scalar> q, matrix_cref<Scalar> k,
                                  matrix_cref<Scalar> v, index_t n_head, index_t n_past,
                                  std::vector<matrix<Scalar>>& scores, matrix_ref<Scalar> out,
                                  const attention_observer<Scalar>& observe) {
  if (scores.empty()) throw shape_error("attention: no scores buffer");
  const index_t head_dim = q.cols() / std::max<index_t>(n_head, 1);
  const index_t n_groups =
      observe ? 1 : std::min<index_t>(n_head, static_cast<index_t>(scores.size()));
  if (n_groups <= 1 || q.cols() % n_head != 0) {
    causal_attention_heads<Scalar>(q, k, v, n_head, n_past, scores.front(), out, observe);
    return;
  }
  parallel_for(n_groups, [&](index_t g) {
    const index_t first = g * n_head / n_groups, last = (g + 1) * n_head / n_groups;
    const index_t col = first * head_dim, width = (last - first) * head_dim;
    causal_attention_heads<Scalar>(q.middleCols(col, width), k.middleCols(col, width),
                                   v.middleCols(col, width), last - first, n_past,
                                   scores[static_cast<std::size_t>(g)], out.middleCols(col, width));
  });
}

/// Causal self-attention of T new tokens.
/// x: [T x C] (already layer-normed), out: [T x C], scratch sized for at least T tokens.
/// Without a cache the tokens are the whole sequence. With `cache`, the tokens sit at positions
/// [n_past, n_past + T): their keys and values are appended to the cache rows, and each query
/// attends to the cached keys as well — the work is proportional to the keys, not a re-run of
/// the prefix.
template <class Scalar>
void causal_self_attention_forward(matrix_cref<Scalar> x, const attention_weights<Scalar>& w,
                                   index_t n_head, attention_scratch<Scalar>& scratch,
                                   matrix_ref<Scalar> out,
                                   const attention_observer<Scalar>& observe = nullptr,
                                   kv_cache_layer<Scalar>* cache = nullptr, index_t n_past = 0) {
  const index_t n_tokens = x.rows(), channels = x.cols();
  if (scratch.qkv.rows() < n_tokens || scratch.qkv.cols() != 3 * channels ||
      scratch.heads.rows() < n_tokens || scratch.heads.cols() != channels) {
    throw shape_error(detail::concat("attention: scratch sized for ", scratch.qkv.rows(),
                                     " tokens of ", scratch.heads.cols(), " channels, got ",
                                     n_tokens, " tokens of ", channels));
  }
  auto qkv = scratch.qkv.topRows(n_tokens);
  linear_forward<Scalar>(x, w.qkv, qkv);
  auto heads = scratch.heads.topRows(n_tokens);
  if (cache == nullptr) {
    causal_attention_head_groups<Scalar>(qkv.leftCols(channels), qkv.middleCols(channels, channels),
                                         qkv.rightCols(channels), n_head, 0, scratch.scores, heads,
                                         observe);
  } else {
    const index_t n_keys = n_past + n_tokens;
    if (n_past < 0 || n_keys > cache->keys.rows() || cache->keys.cols() != channels ||
        cache->values.rows() != cache->keys.rows() || cache->values.cols() != channels) {
      throw shape_error(detail::concat("attention: ", n_past, " cached + ", n_tokens,
                                       " new tokens do not fit a KV cache of [", cache->keys.rows(),
                                       " x ", cache->keys.cols(), "]"));
    }
    cache->keys.middleRows(n_past, n_tokens) = qkv.middleCols(channels, channels);
    cache->values.middleRows(n_past, n_tokens) = qkv.rightCols(channels);
    causal_attention_head_groups<Scalar>(qkv.leftCols(channels), cache->keys.topRows(n_keys),
                                         cache->values.topRows(n_keys), n_head, n_past,
                                         scratch.scores, heads, observe);
  }
  linear_forward<Scalar>(heads, w.proj, out);
}

}  // namespace eigenformer
