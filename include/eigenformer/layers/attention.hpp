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
//
// That is the definition; the computation never holds S or P whole. It walks tiles of 64
// queries x 512 keys with an online softmax (detail::attention_head_tiled), skips tiles that lie
// entirely in the future, and needs O(T x d) memory. Only an attention observer, which asks to
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

/// Queries and keys per tile of the attention core (see causal_attention_heads).
inline constexpr index_t attention_query_block = 64;
inline constexpr index_t attention_key_block = 512;

/// Reusable buffers of one attention call, sized once for the longest sequence.
template <class Scalar>
struct attention_scratch {
  matrix<Scalar> qkv;                  // [max_T x 3C]
  std::vector<matrix<Scalar>> scores;  // one [query block x key block] tile per group of heads
  matrix<Scalar> heads;                // [max_T x C], concatenated head outputs

  attention_scratch() = default;
  /// `groups`: how many groups of heads may run at once (default: the thread count). The score
  /// tiles do not grow with the sequence: attention memory is O(T x C), never O(T^2).
  attention_scratch(index_t max_tokens, index_t channels, int groups = 0)
      : qkv(max_tokens, 3 * channels),
        scores(static_cast<std::size_t>(groups > 0 ? groups : num_threads()),
               matrix<Scalar>(attention_query_block, attention_key_block)),
        heads(max_tokens, channels) {}
};

/// One layer's keys and values of the tokens seen so far (rows [0, n_past) are filled).
/// Owned by a model::kv_cache; one per sequence, never shared between threads.
template <class Scalar>
struct kv_cache_layer {
  matrix<Scalar> keys;    // [n_ctx x C]
  matrix<Scalar> values;  // [n_ctx x C]
};

namespace detail {

/// One head's attention, the whole [T x Tk] weight matrix at once — for an observer to see.
template <class Scalar>
void attention_head_untiled(matrix_cref<Scalar> q, matrix_cref<Scalar> k, matrix_cref<Scalar> v,
                            index_t n_past, Scalar scale, matrix_ref<Scalar> weights,
                            matrix_ref<Scalar> out) {
  weights.noalias() = (q * scale) * k.transpose();
  causal_softmax_rows_inplace<Scalar>(weights, n_past);
  out.noalias() = weights * v;
}

/// One head's attention in tiles with an online softmax (FlashAttention's recurrence): for each
/// block of queries, walk the key blocks it can see, keeping per query the running maximum m and
/// the running sum l of exp(score - m); when m grows, what was accumulated is rescaled by
/// exp(m_old - m_new). Only a [query block x key block] tile of scores exists at a time.
/// q: [T x d]; k, v: [Tk x d]; tile: at least [min(T, 64) x min(Tk, 512)]; out: [T x d].
template <class Scalar>
void attention_head_tiled(matrix_cref<Scalar> q, matrix_cref<Scalar> k, matrix_cref<Scalar> v,
                          index_t n_past, Scalar scale, matrix_ref<Scalar> tile,
                          matrix_ref<Scalar> out) {
  const index_t n_query = q.rows();
  Scalar running_max[attention_query_block], running_sum[attention_query_block];
  for (index_t r = 0; r < n_query; r += attention_query_block) {
    const index_t rows = std::min(attention_query_block, n_query - r);
    const index_t keys = n_past + r + rows;  // keys beyond are invisible to every query here
    auto acc = out.middleRows(r, rows);      // accumulates P V, normalized at the end
    acc.setZero();
    std::fill(running_max, running_max + rows, -std::numeric_limits<Scalar>::infinity());
    std::fill(running_sum, running_sum + rows, Scalar(0));
    for (index_t c = 0; c < keys; c += attention_key_block) {
      const index_t width = std::min(attention_key_block, keys - c);
      auto s = tile.topLeftCorner(rows, width);
      s.noalias() = (q.middleRows(r, rows) * scale) * k.middleRows(c, width).transpose();
      for (index_t i = 0; i < rows; ++i) {
        // Query i sits at position n_past + r + i and sees keys j <= that position: the
        // causal rule. Invisible scores are never read and their weights are exact zeros.
        const index_t visible = std::min(width, n_past + r + i - c + 1);
        if (visible <= 0) {
          s.row(i).setZero();
          continue;
        }
        auto row = s.row(i).head(visible).array();
        const Scalar new_max = std::max(running_max[i], row.maxCoeff());
        const Scalar rescale = std::exp(running_max[i] - new_max);  // 0 on the first block
        row = (row - new_max).exp();
        s.row(i).tail(width - visible).setZero();
        running_sum[i] = running_sum[i] * rescale + row.sum();
        running_max[i] = new_max;
        if (rescale != Scalar(1)) acc.row(i) *= rescale;
      }
      acc.noalias() += s * v.middleRows(c, width);
    }
    for (index_t i = 0; i < rows; ++i) acc.row(i) /= running_sum[i];
  }
}

}  // namespace detail

/// The attention core without projections: for every head, softmax(Q K^T / sqrt(d)) V with the
/// causal rule "query i sees key j iff j <= n_past + i".
/// q: [T x C]; k, v: [n_past + T x C]; out: [T x C]. scores: a scratch tile of at least
/// [min(T, attention_query_block) x min(n_past + T, attention_key_block)] — or, with an
/// observer, the whole [T x n_past + T], since the observer sees each head's full weights.
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
  const index_t need_rows = observe ? n_query : std::min(n_query, attention_query_block);
  const index_t need_cols = observe ? n_key : std::min(n_key, attention_key_block);
  if (n_past < 0 || n_key != n_past + n_query || v.rows() != n_key || k.cols() != channels ||
      v.cols() != channels || out.rows() != n_query || out.cols() != channels ||
      scores.rows() < need_rows || scores.cols() < need_cols) {
    throw shape_error(detail::concat(
        "attention: q [", n_query, " x ", channels, "], k [", n_key, " x ", k.cols(), "], v [",
        v.rows(), " x ", v.cols(), "], n_past ", n_past, ", scores buffer [", scores.rows(), " x ",
        scores.cols(), "], out [", out.rows(), " x ", out.cols(), "] do not fit together"));
  }
  const index_t head_dim = channels / n_head;
  const Scalar scale = Scalar(1) / std::sqrt(Scalar(head_dim));
  for (index_t h = 0; h < n_head; ++h) {
    const index_t col = h * head_dim;
    const auto q_h = q.middleCols(col, head_dim), k_h = k.middleCols(col, head_dim),
               v_h = v.middleCols(col, head_dim);
    if (observe) {
      auto weights = scores.topLeftCorner(n_query, n_key);
      detail::attention_head_untiled<Scalar>(q_h, k_h, v_h, n_past, scale, weights,
                                             out.middleCols(col, head_dim));
      observe(h, weights);
    } else {
      detail::attention_head_tiled<Scalar>(q_h, k_h, v_h, n_past, scale, scores,
                                           out.middleCols(col, head_dim));
    }
  }
}

/// causal_attention_heads split over groups of heads, one score tile per group, groups in
/// parallel. A head's result does not depend on its group, so any grouping gives the same bits.
/// With an observer the heads run in one group, in order, on the calling thread, untiled.
template <class Scalar>
void causal_attention_head_groups(matrix_cref<Scalar> q, matrix_cref<Scalar> k,
                                  matrix_cref<Scalar> v, index_t n_head, index_t n_past,
                                  std::vector<matrix<Scalar>>& scores, matrix_ref<Scalar> out,
                                  const attention_observer<Scalar>& observe) {
  if (scores.empty()) throw shape_error("attention: no scores buffer");
  const index_t head_dim = q.cols() / std::max<index_t>(n_head, 1);
  const index_t n_groups =
      observe ? 1 : std::min<index_t>(n_head, static_cast<index_t>(scores.size()));
  if (observe) {  // inspection, not the hot path: the full weight matrix is allocated here
    matrix<Scalar> weights(q.rows(), k.rows());
    causal_attention_heads<Scalar>(q, k, v, n_head, n_past, weights, out, observe);
    return;
  }
  if (n_groups <= 1 || q.cols() % n_head != 0) {
    causal_attention_heads<Scalar>(q, k, v, n_head, n_past, scores.front(), out);
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

// --- Training: a batch of B sequences of T tokens; rows [b*T, (b+1)*T) belong to sequence b. ---

/// What the backward pass needs from the forward pass. Training keeps every head's P whole
/// (O(B H T^2) memory), because its gradient needs it; inference never does.
template <class Scalar>
struct attention_activations {
  index_t n_sequences = 0, n_tokens = 0, n_head = 0;
  matrix<Scalar> qkv;    // [B*T x 3C]   Q | K | V
  matrix<Scalar> probs;  // [B*H*T x T]  P of (sequence b, head h) in rows [(b*H + h)*T, +T)
  matrix<Scalar> heads;  // [B*T x C]    concatenated P V of every head, the input of c_proj

  attention_activations() = default;
  attention_activations(index_t batch, index_t tokens, index_t channels, index_t heads_)
      : n_sequences(batch),
        n_tokens(tokens),
        n_head(heads_),
        qkv(batch * tokens, 3 * channels),
        probs(batch * heads_ * tokens, tokens),
        heads(batch * tokens, channels) {}
};

/// Buffers of the backward pass, shared by all layers.
template <class Scalar>
struct attention_backward_scratch {
  matrix<Scalar> d_qkv;    // [B*T x 3C]
  matrix<Scalar> d_probs;  // [B*H*T x T], dL/dP, then dL/dS
  matrix<Scalar> d_heads;  // [B*T x C]

  attention_backward_scratch() = default;
  attention_backward_scratch(index_t batch, index_t tokens, index_t channels, index_t heads)
      : d_qkv(batch * tokens, 3 * channels),
        d_probs(batch * heads * tokens, tokens),
        d_heads(batch * tokens, channels) {}
};

namespace detail {
inline void check_attention_batch(const char* where, index_t rows, index_t channels, index_t n_head,
                                  index_t batch, index_t tokens, index_t acts_channels,
                                  index_t acts_heads) {
  if (rows != batch * tokens || channels != acts_channels || n_head != acts_heads || n_head <= 0 ||
      channels % n_head != 0) {
    throw shape_error(concat(where, ": input [", rows, " x ", channels, "] with ", n_head,
                             " heads does not match activations for ", batch, " x ", tokens,
                             " tokens of ", acts_channels, " channels and ", acts_heads, " heads"));
  }
}
}  // namespace detail

/// causal_self_attention_forward for training: x [B*T x C] (layer-normed), out [B*T x C].
/// Every (sequence, head) pair is independent; pairs run in parallel.
template <class Scalar>
void causal_self_attention_forward_train(matrix_cref<Scalar> x, const attention_weights<Scalar>& w,
                                         index_t n_head, attention_activations<Scalar>& acts,
                                         matrix_ref<Scalar> out) {
  const index_t T = acts.n_tokens, C = x.cols();
  detail::check_attention_batch("attention (training)", x.rows(), C, n_head, acts.n_sequences, T,
                                acts.heads.cols(), acts.n_head);
  linear_forward<Scalar>(x, w.qkv, acts.qkv);
  const index_t d = C / n_head;
  const Scalar scale = Scalar(1) / std::sqrt(Scalar(d));
  parallel_for(acts.n_sequences * n_head, [&](index_t pair) {
    const index_t row = (pair / n_head) * T, col = (pair % n_head) * d;
    detail::attention_head_untiled<Scalar>(
        acts.qkv.block(row, col, T, d), acts.qkv.block(row, C + col, T, d),
        acts.qkv.block(row, 2 * C + col, T, d), 0, scale, acts.probs.middleRows(pair * T, T),
        acts.heads.block(row, col, T, d));
  });
  linear_forward<Scalar>(acts.heads, w.proj, out);
}

/// Backward of causal_self_attention_forward_train, given d_out = dL/d out [B*T x C]; x is the
/// forward's input. Per (sequence, head), with S = scale Q K^T, P = causal softmax(S), O = P V:
///   dV = P^T dO      dP = dO V^T      dS = P * (dP - rowsum(P * dP))   (softmax, row-wise)
///   dQ = scale dS K  dK = scale dS^T Q
/// The mask holds backwards too: P is exactly 0 above the diagonal, so dS is 0 there and no
/// gradient reaches a key from a query before it. Adds to grad and d_x (see linear_backward).
template <class Scalar>
void causal_self_attention_backward(matrix_cref<Scalar> x, const attention_weights<Scalar>& w,
                                    index_t n_head, const attention_activations<Scalar>& acts,
                                    matrix_cref<Scalar> d_out, attention_weights<Scalar>& grad,
                                    attention_backward_scratch<Scalar>& scratch,
                                    matrix_ref<Scalar> d_x) {
  const index_t T = acts.n_tokens, C = x.cols();
  detail::check_attention_batch("attention backward", x.rows(), C, n_head, acts.n_sequences, T,
                                acts.heads.cols(), acts.n_head);
  if (scratch.d_qkv.rows() != x.rows() || scratch.d_probs.rows() != acts.probs.rows() ||
      scratch.d_probs.cols() != T || scratch.d_heads.cols() != C) {
    throw shape_error("attention backward: scratch does not match the activations");
  }
  scratch.d_heads.setZero();
  linear_backward<Scalar>(acts.heads, w.proj, d_out, grad.proj, scratch.d_heads);
  scratch.d_qkv.setZero();
  const index_t d = C / n_head;
  const Scalar scale = Scalar(1) / std::sqrt(Scalar(d));
  parallel_for(acts.n_sequences * n_head, [&](index_t pair) {
    const index_t row = (pair / n_head) * T, col = (pair % n_head) * d;
    const auto q = acts.qkv.block(row, col, T, d), k = acts.qkv.block(row, C + col, T, d),
               v = acts.qkv.block(row, 2 * C + col, T, d);
    const auto p = acts.probs.middleRows(pair * T, T);
    const auto d_o = scratch.d_heads.block(row, col, T, d);
    auto d_s = scratch.d_probs.middleRows(pair * T, T);
    scratch.d_qkv.block(row, 2 * C + col, T, d).noalias() += p.transpose() * d_o;
    d_s.noalias() = d_o * v.transpose();  // dP
    for (index_t i = 0; i < T; ++i) {
      const index_t visible = i + 1;  // query i sees keys 0..i
      auto d_row = d_s.row(i).head(visible);
      const auto p_row = p.row(i).head(visible);
      const Scalar p_dot_dp = p_row.dot(d_row);
      d_row.array() = p_row.array() * (d_row.array() - p_dot_dp);
      d_s.row(i).tail(T - visible).setZero();
    }
    scratch.d_qkv.block(row, col, T, d).noalias() += scale * (d_s * k);
    scratch.d_qkv.block(row, C + col, T, d).noalias() += scale * (d_s.transpose() * q);
  });
  linear_backward<Scalar>(x, w.qkv, scratch.d_qkv, grad.qkv, d_x);
}

}  // namespace eigenformer
