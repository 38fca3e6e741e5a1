#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <tuple>

#include <eigenformer/layers/attention.hpp>

#include "reference.hpp"

namespace {

using eigenformer::index_t;
using eigenformer::matrix;

template <class Scalar>
class Attention : public ::testing::Test {};
TYPED_TEST_SUITE(Attention, ref::scalar_types);

template <class S>
eigenformer::attention_weights<S> random_attention(index_t C, ref::rng& r, double scale) {
  return {{ref::random_matrix<S>(C, 3 * C, r, scale), ref::random_row<S>(3 * C, r, 0.1)},
          {ref::random_matrix<S>(C, C, r, 0.5), ref::random_row<S>(C, r, 0.1)}};
}

template <class S>
bool rows_bit_identical(const matrix<S>& a, const matrix<S>& b, index_t rows) {
  return std::memcmp(a.data(), b.data(), sizeof(S) * size_t(rows * a.cols())) == 0;
}

// The smallest case that tells the axes apart, computed by hand: one head, d = 1,
// q = [1, 2], k = [1, 3], v = [10, 20]. Scores S = q k^T = [[1, 3], [2, 6]].
//   row 0 (query 0) sees key 0 only:        P = [1, 0]
//   row 1 softmax over KEYS of [2, 6]:      P = [1/(1+e^4), e^4/(1+e^4)]
// A softmax over the query axis would give P[0][0] = 1/(1+e^1); transposed scores would give
// row 1 = softmax([3, 6]).
TYPED_TEST(Attention, HandComputedCaseFixesTheSoftmaxAxis) {
  using S = TypeParam;
  matrix<S> q(2, 1), k(2, 1), v(2, 1), out(2, 1), scores(2, 2);
  q << 1, 2;
  k << 1, 3;
  v << 10, 20;
  matrix<S> weights;
  eigenformer::causal_attention_heads<S>(
      q, k, v, 1, 0, scores, out, [&](index_t, eigenformer::matrix_cref<S> p) { weights = p; });
  const double p10 = 1 / (1 + std::exp(4.0)), p11 = 1 - p10;
  EXPECT_EQ(weights(0, 0), S(1));
  EXPECT_EQ(weights(0, 1), S(0));
  EXPECT_NEAR(double(weights(1, 0)), p10, 1e-6);
  EXPECT_NEAR(double(weights(1, 1)), p11, 1e-6);
  EXPECT_NEAR(double(out(0, 0)), 10.0, 1e-5);
  EXPECT_NEAR(double(out(1, 0)), 10 * p10 + 20 * p11, 1e-5);
}

TYPED_TEST(Attention, CoreMatchesNaiveLoopsWithCachedKeys) {
  using S = TypeParam;
  ref::rng r(21);
  const index_t T = 5, n_past = 4, C = 12, H = 3;
  const auto q = ref::random_matrix<S>(T, C, r, 2.0);
  const auto k = ref::random_matrix<S>(n_past + T, C, r, 2.0);
  const auto v = ref::random_matrix<S>(n_past + T, C, r, 2.0);
  matrix<S> scores(T, n_past + T), out(T, C);
  eigenformer::causal_attention_heads<S>(q, k, v, H, n_past, scores, out);
  const auto expected =
      ref::attention_core(ref::to_grid(q), ref::to_grid(k), ref::to_grid(v), int(H), int(n_past));
  EXPECT_LT(ref::relative_error(out, expected), ref::tolerance<S>());
}

// Longer than one query block (attention_query_block), with a partial last block and cached keys.
TYPED_TEST(Attention, ManyQueryBlocksMatchNaiveLoopsAndKeepTheMask) {
  using S = TypeParam;
  ref::rng r(31);
  const index_t T = 2 * eigenformer::attention_query_block + 22, n_past = 7, C = 8, H = 2;
  const auto q = ref::random_matrix<S>(T, C, r, 2.0);
  auto k = ref::random_matrix<S>(n_past + T, C, r, 2.0);
  auto v = ref::random_matrix<S>(n_past + T, C, r, 2.0);
  matrix<S> scores(T, n_past + T), out(T, C);
  eigenformer::causal_attention_heads<S>(q, k, v, H, n_past, scores, out);
  EXPECT_LT(ref::relative_error(out, ref::attention_core(ref::to_grid(q), ref::to_grid(k),
                                                         ref::to_grid(v), int(H), int(n_past))),
            ref::tolerance<S>());
  // Keys/values after query t's position never change its row.
  for (const index_t t : {index_t(0), index_t(63), index_t(64), index_t(100), T - 2}) {
    auto k2 = k, v2 = v;
    k2.bottomRows(T - t - 1).setConstant(S(1e3));
    v2.bottomRows(T - t - 1).setConstant(S(-7));
    matrix<S> out2(T, C);
    eigenformer::causal_attention_heads<S>(q, k2, v2, H, n_past, scores, out2);
    EXPECT_TRUE(rows_bit_identical(out, out2, t + 1)) << "t = " << t;
  }
}

// More keys than one tile (attention_key_block): the online softmax rescales what it has
// accumulated whenever a later key block raises a query's running maximum. Large score scales
// make those rescales large; queries straddle a query-block boundary and the last key block is
// partial.
TYPED_TEST(Attention, ManyKeyBlocksMatchNaiveLoops) {
  using S = TypeParam;
  ref::rng r(32);
  const index_t n_past = 2 * eigenformer::attention_key_block + 9;
  const index_t T = eigenformer::attention_query_block + 5, C = 8, H = 2;
  for (const double scale : {1.0, 6.0}) {
    const auto q = ref::random_matrix<S>(T, C, r, scale);
    const auto k = ref::random_matrix<S>(n_past + T, C, r, scale);
    const auto v = ref::random_matrix<S>(n_past + T, C, r, 2.0);
    matrix<S> scores(eigenformer::attention_query_block, eigenformer::attention_key_block),
        out(T, C);
    eigenformer::causal_attention_heads<S>(q, k, v, H, n_past, scores, out);
    EXPECT_LT(ref::relative_error(out, ref::attention_core(ref::to_grid(q), ref::to_grid(k),
                                                           ref::to_grid(v), int(H), int(n_past))),
              ref::tolerance<S>())
        << "score scale " << scale;
  }
}

// Scores in the hundreds of thousands (sharply peaked softmax, exp underflowing to 0 for all but
// one key) across several key tiles: still finite and equal to the reference.
TYPED_TEST(Attention, HugeScoresStayFiniteAcrossTiles) {
  using S = TypeParam;
  ref::rng r(33);
  const index_t n_past = eigenformer::attention_key_block + 3, T = 9, C = 8, H = 2;
  const auto q = ref::random_matrix<S>(T, C, r, 300.0);
  const auto k = ref::random_matrix<S>(n_past + T, C, r, 300.0);
  const auto v = ref::random_matrix<S>(n_past + T, C, r, 1.0);
  matrix<S> scores(T, eigenformer::attention_key_block), out(T, C);
  eigenformer::causal_attention_heads<S>(q, k, v, H, n_past, scores, out);
  EXPECT_TRUE(out.allFinite());
  EXPECT_LT(ref::relative_error(out, ref::attention_core(ref::to_grid(q), ref::to_grid(k),
                                                         ref::to_grid(v), int(H), int(n_past))),
            (std::is_same_v<S, float> ? 1e-4 : 1e-10));
}

TYPED_TEST(Attention, SelfAttentionMatchesNaiveLoops) {
  using S = TypeParam;
  ref::rng r(4);
  const index_t T = 9, C = 16, H = 4;
  const auto w = random_attention<S>(C, r, 0.8);
  const auto x = ref::random_matrix<S>(T, C, r, 1.0);
  eigenformer::attention_scratch<S> scratch(T + 3, C);  // larger than needed on purpose
  matrix<S> out(T, C);
  eigenformer::causal_self_attention_forward<S>(x, w, H, scratch, out);
  EXPECT_LT(ref::relative_error(out, ref::self_attention(ref::to_grid(x), w, int(H))),
            ref::tolerance<S>());
}

TYPED_TEST(Attention, WeightsAreZeroAboveDiagonalAndRowsSumToOne) {
  using S = TypeParam;
  for (const double scale : {0.5, 1e3}) {  // 1e3: huge-magnitude scores
    ref::rng r(8);
    const index_t T = 11, C = 16, H = 4;
    const auto w = random_attention<S>(C, r, scale);
    const auto x = ref::random_matrix<S>(T, C, r, 1.0);
    eigenformer::attention_scratch<S> scratch(T, C);
    matrix<S> out(T, C);
    int heads_seen = 0;
    eigenformer::causal_self_attention_forward<S>(
        x, w, H, scratch, out, [&](index_t, eigenformer::matrix_cref<S> p) {
          ++heads_seen;
          ASSERT_EQ(p.rows(), T);
          ASSERT_EQ(p.cols(), T);
          for (index_t i = 0; i < T; ++i) {
            for (index_t j = i + 1; j < T; ++j) EXPECT_EQ(p(i, j), S(0)) << i << "," << j;
            EXPECT_NEAR(double(p.row(i).sum()), 1.0, 1e-5);
            EXPECT_TRUE((p.row(i).array() >= S(0)).all());
          }
        });
    EXPECT_EQ(heads_seen, H);
    EXPECT_TRUE(out.allFinite());
  }
}

TYPED_TEST(Attention, FutureTokensDoNotChangeEarlierOutputsBitForBit) {
  using S = TypeParam;
  for (const double scale : {0.5, 1e3}) {
    ref::rng r(13);
    const index_t T = 10, C = 16, H = 4;
    const auto w = random_attention<S>(C, r, scale);
    const auto x = ref::random_matrix<S>(T, C, r, 1.0);
    eigenformer::attention_scratch<S> scratch(T, C);
    matrix<S> base(T, C);
    eigenformer::causal_self_attention_forward<S>(x, w, H, scratch, base);
    for (index_t t = 0; t < T - 1; ++t) {
      matrix<S> changed = x;
      changed.bottomRows(T - t - 1) = ref::random_matrix<S>(T - t - 1, C, r, 50.0);
      matrix<S> out(T, C);
      eigenformer::causal_self_attention_forward<S>(changed, w, H, scratch, out);
      EXPECT_TRUE(rows_bit_identical(base, out, t + 1)) << "t = " << t << ", scale " << scale;
      EXPECT_FALSE(rows_bit_identical(base, out, T)) << "the change must reach later rows";
    }
  }
}

TYPED_TEST(Attention, RejectsHeadsThatDoNotDivideChannels) {
  using S = TypeParam;
  matrix<S> q(2, 6), out(2, 6), scores(2, 2);
  q.setZero();
  EXPECT_THROW(eigenformer::causal_attention_heads<S>(q, q, q, 4, 0, scores, out),
               eigenformer::shape_error);
}

}  // namespace

#include "gradient_check.hpp"

namespace {

struct attention_backward_case {
  static constexpr index_t B = 2, T = 5, C = 6, H = 2;
  ref::rng r{71};
  eigenformer::attention_weights<double> w{
      {ref::random_matrix<double>(C, 3 * C, r), ref::random_row<double>(3 * C, r, 0.3)},
      {ref::random_matrix<double>(C, C, r), ref::random_row<double>(C, r, 0.3)}};
  eigenformer::matrix<double> x = ref::random_matrix<double>(B * T, C, r);
  eigenformer::matrix<double> probe = ref::random_matrix<double>(B * T, C, r);
  eigenformer::attention_activations<double> acts{B, T, C, H};

  eigenformer::matrix<double> forward() {
    eigenformer::matrix<double> out(B * T, C);
    eigenformer::causal_self_attention_forward_train<double>(x, w, H, acts, out);
    return out;
  }
  /// Runs forward and backward with d_out = probe; returns (grads, d_x).
  std::pair<eigenformer::attention_weights<double>, eigenformer::matrix<double>> backward() {
    forward();
    eigenformer::attention_weights<double> grad{
        {eigenformer::matrix<double>::Zero(C, 3 * C), eigenformer::row_vector<double>::Zero(3 * C)},
        {eigenformer::matrix<double>::Zero(C, C), eigenformer::row_vector<double>::Zero(C)}};
    eigenformer::attention_backward_scratch<double> scratch(B, T, C, H);
    eigenformer::matrix<double> d_x = eigenformer::matrix<double>::Zero(B * T, C);
    eigenformer::causal_self_attention_backward<double>(x, w, H, acts, probe, grad, scratch, d_x);
    return {grad, d_x};
  }
};

TEST(AttentionBackward, TrainingForwardEqualsTheReferenceForEachSequence) {
  attention_backward_case c;
  const auto out = c.forward();
  for (index_t b = 0; b < c.B; ++b) {
    const eigenformer::matrix<double> x_b = c.x.middleRows(b * c.T, c.T);
    EXPECT_LT(ref::relative_error(out.middleRows(b * c.T, c.T),
                                  ref::self_attention(ref::to_grid(x_b), c.w, int(c.H))),
              1e-12);
  }
}

TEST(AttentionBackward, MatchesFiniteDifferences) {
  attention_backward_case c;
  auto [grad, d_x] = c.backward();
  const auto loss = [&] { return gradcheck::probe_loss(c.forward(), c.probe); };
  EXPECT_LT(gradcheck::relative_error(c.w.qkv.weight, grad.qkv.weight, loss), gradcheck::tolerance);
  EXPECT_LT(gradcheck::relative_error(c.w.qkv.bias, grad.qkv.bias, loss), gradcheck::tolerance);
  EXPECT_LT(gradcheck::relative_error(c.w.proj.weight, grad.proj.weight, loss),
            gradcheck::tolerance);
  EXPECT_LT(gradcheck::relative_error(c.w.proj.bias, grad.proj.bias, loss), gradcheck::tolerance);
  EXPECT_LT(gradcheck::relative_error(c.x, d_x, loss), gradcheck::tolerance);
}

TEST(AttentionBackward, NoGradientFlowsFromAQueryToLaterTokens) {
  // The loss reads only output row i of sequence 0: the mask says it depends on tokens 0..i of
  // that sequence, so dL/dx must be exactly zero for every later token and for sequence 1.
  for (index_t i = 0; i < attention_backward_case::T; ++i) {
    attention_backward_case c;
    c.probe.setZero();
    c.probe.row(i).setOnes();
    const auto d_x = c.backward().second;
    for (index_t row = 0; row < c.B * c.T; ++row) {
      const bool can_see = row <= i;  // same sequence, not in the future
      if (can_see) {
        EXPECT_GT(d_x.row(row).norm(), 0.0) << "query " << i << ", token " << row;
      } else {
        EXPECT_EQ(d_x.row(row).norm(), 0.0) << "query " << i << ", token " << row;
      }
    }
  }
}

// --- Grouped-query attention, sliding window, q/k norms and rotary positions ---

TYPED_TEST(Attention, GroupedQueryWindowedCoreMatchesNaiveLoopsAcrossTiles) {
  using S = TypeParam;
  ref::rng r(31);
  // 70 queries after 600 cached keys: two query blocks, keys in two 512-wide tiles, and a
  // window that starts inside the second tile for some queries and the first for others.
  const index_t H = 4, G = 2, d = 8;
  for (const auto& [T, n_past, W] : {std::tuple<index_t, index_t, index_t>{70, 600, 100},
                                     {70, 600, 0},
                                     {9, 0, 3},
                                     {1, 40, 7},
                                     {1, 3, 7}}) {
    const auto q = ref::random_matrix<S>(T, H * d, r, 2.0);
    const auto k = ref::random_matrix<S>(n_past + T, G * d, r, 2.0);
    const auto v = ref::random_matrix<S>(n_past + T, G * d, r, 1.0);
    const eigenformer::attention_config config{H, G, d, W, 0};
    const auto expected = ref::gqa_core(ref::to_grid(q), ref::to_grid(k), ref::to_grid(v), int(H),
                                        int(G), int(d), int(n_past), int(W));
    matrix<S> out(T, H * d), scores(64, 512);
    eigenformer::causal_attention_heads<S>(q, k, v, config, n_past, scores, out);
    EXPECT_LT(ref::relative_error(out, expected), ref::tolerance<S>())
        << "T " << T << " n_past " << n_past << " W " << W;
    std::vector<matrix<S>> tiles(3, matrix<S>(64, 512));  // groups in parallel: same bits
    matrix<S> grouped(T, H * d);
    eigenformer::causal_attention_head_groups<S>(q, k, v, config, n_past, tiles, grouped, nullptr);
    EXPECT_TRUE(grouped == out);
  }
}

TYPED_TEST(Attention, SlidingWindowWeightsAreExactlyZeroOutsideTheWindow) {
  using S = TypeParam;
  ref::rng r(32);
  const index_t T = 12, n_past = 5, H = 2, G = 1, d = 4, W = 4;
  const auto q = ref::random_matrix<S>(T, H * d, r, 2.0);
  const auto k = ref::random_matrix<S>(n_past + T, G * d, r, 2.0);
  const auto v = ref::random_matrix<S>(n_past + T, G * d, r, 1.0);
  std::vector<matrix<S>> seen(H);
  matrix<S> out(T, H * d), scores(T, n_past + T);
  eigenformer::causal_attention_heads<S>(
      q, k, v, eigenformer::attention_config{H, G, d, W, 0}, n_past, scores, out,
      [&](index_t h, eigenformer::matrix_cref<S> p) { seen[size_t(h)] = p; });
  for (index_t h = 0; h < H; ++h) {
    ref::grid expected;
    ref::gqa_core(ref::to_grid(q), ref::to_grid(k), ref::to_grid(v), int(H), int(G), int(d),
                  int(n_past), int(W), &expected, int(h));
    for (index_t i = 0; i < T; ++i) {
      const index_t position = n_past + i;
      for (index_t j = 0; j < n_past + T; ++j) {
        if (j > position || j <= position - W) {
          EXPECT_EQ(seen[size_t(h)](i, j), S(0)) << i << ", " << j;  // exactly, not nearly
        } else {
          EXPECT_NEAR(double(seen[size_t(h)](i, j)), expected[size_t(i)][size_t(j)], 1e-5);
        }
      }
      EXPECT_NEAR(double(seen[size_t(h)].row(i).sum()), 1.0, 1e-5);
    }
  }
}

TYPED_TEST(Attention, LlamaSelfAttentionMatchesNaiveComposition) {
  using S = TypeParam;
  ref::rng r(33);
  const index_t T = 6, n_past = 3, C = 16, H = 4, G = 2, d = 8;  // d != C / H
  const eigenformer::attention_config config{H, G, d, 0, 1e-6};
  eigenformer::attention_weights<S> w;
  w.qkv.weight = ref::random_matrix<S>(C, config.qkv_width(), r, 0.5);
  w.qkv.bias = ref::random_row<S>(config.qkv_width(), r, 0.2);
  w.proj.weight = ref::random_matrix<S>(H * d, C, r, 0.5);  // no bias: empty
  w.q_norm = ref::random_row<S>(d, r, 0.3, 1.0);
  w.k_norm = ref::random_row<S>(d, r, 0.3, 1.0);
  const auto x_past = ref::random_matrix<S>(n_past, C, r, 1.0);
  const auto x = ref::random_matrix<S>(T, C, r, 1.0);

  // Naive: project, norm each head, rotate by absolute position, GQA core, project.
  const auto project = [&](const matrix<S>& rows, int first_position, ref::grid& q, ref::grid& k,
                           ref::grid& v) {
    const ref::grid qkv = ref::linear(ref::to_grid(rows), w.qkv);
    for (size_t t = 0; t < qkv.size(); ++t) {
      q.emplace_back(qkv[t].begin(), qkv[t].begin() + H * d);
      k.emplace_back(qkv[t].begin() + H * d, qkv[t].begin() + (H + G) * d);
      v.emplace_back(qkv[t].begin() + (H + G) * d, qkv[t].end());
    }
    const auto norm_heads = [&](ref::grid& m, const eigenformer::row_vector<S>& gain, size_t from) {
      for (size_t t = from; t < m.size(); ++t)
        for (size_t h = 0; h < m[t].size() / size_t(d); ++h) {
          ref::grid head{
              std::vector<double>(m[t].begin() + long(h) * d, m[t].begin() + long(h + 1) * d)};
          head = ref::rms_norm(head, gain, 1e-6);
          std::copy(head[0].begin(), head[0].end(), m[t].begin() + long(h) * d);
        }
    };
    const size_t from = q.size() - qkv.size();
    norm_heads(q, w.q_norm, from);
    norm_heads(k, w.k_norm, from);
    ref::grid new_q(q.begin() + long(from), q.end()), new_k(k.begin() + long(from), k.end());
    new_q = ref::rope(new_q, size_t(d), first_position, 10000.0);
    new_k = ref::rope(new_k, size_t(d), first_position, 10000.0);
    std::copy(new_q.begin(), new_q.end(), q.begin() + long(from));
    std::copy(new_k.begin(), new_k.end(), k.begin() + long(from));
  };
  ref::grid q_all, k_all, v_all;
  project(x_past, 0, q_all, k_all, v_all);
  project(x, int(n_past), q_all, k_all, v_all);
  const ref::grid q_new(q_all.begin() + n_past, q_all.end());
  const ref::grid heads =
      ref::gqa_core(q_new, k_all, v_all, int(H), int(G), int(d), int(n_past), 0);
  const ref::grid expected = ref::matmul(heads, ref::to_grid(w.proj.weight));

  eigenformer::attention_scratch<S> scratch(T, config);
  eigenformer::kv_cache_layer<S> cache{matrix<S>(20, G * d), matrix<S>(20, G * d)};
  eigenformer::rope_tables<S> rope(T, eigenformer::rope_config{}, d);
  matrix<S> out(T, C), past_out(n_past, C);
  eigenformer::rope_fill_tables<S>(0, n_past, rope);
  eigenformer::causal_self_attention_forward<S>(x_past, w, config, scratch, past_out, nullptr,
                                                &cache, 0, &rope);
  eigenformer::rope_fill_tables<S>(n_past, T, rope);
  eigenformer::causal_self_attention_forward<S>(x, w, config, scratch, out, nullptr, &cache, n_past,
                                                &rope);
  EXPECT_LT(ref::relative_error(out, expected), ref::tolerance<S>());
  // The cache holds only the G key/value heads, rotated: [n_past + T x G d].
  EXPECT_EQ(cache.keys.cols(), G * d);
  EXPECT_LT(ref::relative_error(cache.keys.topRows(n_past + T), k_all), ref::tolerance<S>());
}

}  // namespace

// --- Training the Llama family's attention: GQA, rotary positions, q/k norms, the window ---

namespace {

struct llama_attention_case {
  static constexpr index_t B = 2, T = 7, C = 10, H = 4, d = 4;
  eigenformer::attention_config config;
  bool qk_norm;
  ref::rng r{72};
  eigenformer::attention_weights<double> w;
  eigenformer::rope_tables<double> rope{T, eigenformer::rope_config{}, d};
  eigenformer::matrix<double> x = ref::random_matrix<double>(B * T, C, r);
  eigenformer::matrix<double> probe = ref::random_matrix<double>(B * T, C, r);
  eigenformer::attention_activations<double> acts;

  llama_attention_case(index_t kv_heads, index_t window, bool with_qk_norm)
      : config{H, kv_heads, d, window, 1e-6}, qk_norm(with_qk_norm), acts(B, T, config, qk_norm) {
    const index_t qkv = config.qkv_width();
    w.qkv = {ref::random_matrix<double>(C, qkv, r), ref::random_row<double>(qkv, r, 0.3)};
    w.proj = {ref::random_matrix<double>(H * d, C, r), {}};  // no output bias, as in Llama
    if (qk_norm) {
      w.q_norm = ref::random_row<double>(d, r, 0.3, 1.0);
      w.k_norm = ref::random_row<double>(d, r, 0.3, 1.0);
    }
    eigenformer::rope_fill_tables<double>(0, T, rope);
  }
  eigenformer::matrix<double> forward() {
    eigenformer::matrix<double> out(B * T, C);
    eigenformer::causal_self_attention_forward_train<double>(x, w, config, &rope, acts, out);
    return out;
  }
  eigenformer::attention_weights<double> zero_grads() const {
    eigenformer::attention_weights<double> g{
        {eigenformer::matrix<double>::Zero(C, config.qkv_width()),
         eigenformer::row_vector<double>::Zero(config.qkv_width())},
        {eigenformer::matrix<double>::Zero(H * d, C), {}}};
    if (qk_norm) g.q_norm.setZero(d), g.k_norm.setZero(d);
    return g;
  }
  std::pair<eigenformer::attention_weights<double>, eigenformer::matrix<double>> backward() {
    forward();
    auto grad = zero_grads();
    eigenformer::attention_backward_scratch<double> scratch(B, T, config, qk_norm);
    eigenformer::matrix<double> d_x = eigenformer::matrix<double>::Zero(B * T, C);
    eigenformer::causal_self_attention_backward<double>(x, w, config, &rope, acts, probe, grad,
                                                        scratch, d_x);
    return {grad, d_x};
  }
};

struct llama_attention_shape {
  index_t kv_heads, window;
  bool qk_norm;
};
const llama_attention_shape llama_attention_shapes[] = {
    {2, 3, true},   // GQA: two query heads per kv head; window; Qwen3's norms
    {1, 0, false},  // multi-query attention, no window
    {4, 0, true},   // multi-head
    {2, 5, false},  // Mistral-like: GQA and a window
};

TEST(AttentionBackward, LlamaTrainingForwardEqualsInferenceForEachSequence) {
  for (const auto& s : llama_attention_shapes) {
    llama_attention_case c(s.kv_heads, s.window, s.qk_norm);
    const auto out = c.forward();
    for (index_t b = 0; b < c.B; ++b) {
      eigenformer::attention_scratch<double> scratch(c.T, c.config);
      eigenformer::matrix<double> expected(c.T, c.C);
      const eigenformer::matrix<double> x_b = c.x.middleRows(b * c.T, c.T);
      eigenformer::causal_self_attention_forward<double>(x_b, c.w, c.config, scratch, expected,
                                                         nullptr, nullptr, 0, &c.rope);
      EXPECT_LT(ref::relative_error(out.middleRows(b * c.T, c.T), ref::to_grid(expected)), 1e-12)
          << "G " << s.kv_heads << " W " << s.window;
    }
  }
}

TEST(AttentionBackward, GroupedQueryRotaryNormsAndWindowMatchFiniteDifferences) {
  for (const auto& s : llama_attention_shapes) {
    llama_attention_case c(s.kv_heads, s.window, s.qk_norm);
    auto [grad, d_x] = c.backward();
    const auto loss = [&] { return gradcheck::probe_loss(c.forward(), c.probe); };
    const std::string shape = "G " + std::to_string(s.kv_heads) + " W " + std::to_string(s.window) +
                              (s.qk_norm ? " qk norm" : "");
    EXPECT_LT(gradcheck::relative_error(c.w.qkv.weight, grad.qkv.weight, loss),
              gradcheck::tolerance)
        << shape;
    EXPECT_LT(gradcheck::relative_error(c.w.qkv.bias, grad.qkv.bias, loss), gradcheck::tolerance)
        << shape;
    EXPECT_LT(gradcheck::relative_error(c.w.proj.weight, grad.proj.weight, loss),
              gradcheck::tolerance)
        << shape;
    if (s.qk_norm) {
      EXPECT_LT(gradcheck::relative_error(c.w.q_norm, grad.q_norm, loss), gradcheck::tolerance)
          << shape;
      EXPECT_LT(gradcheck::relative_error(c.w.k_norm, grad.k_norm, loss), gradcheck::tolerance)
          << shape;
    }
    EXPECT_LT(gradcheck::relative_error(c.x, d_x, loss), gradcheck::tolerance) << shape;
  }
}

TEST(AttentionBackward, NoGradientReachesAKeyOutsideTheWindow) {
  // The loss reads output row i of sequence 0 only: with window W it depends on tokens
  // i-W+1..i of that sequence and on nothing else, exactly.
  for (index_t i = 0; i < llama_attention_case::T; ++i) {
    llama_attention_case c(2, 3, true);
    c.probe.setZero();
    c.probe.row(i).setOnes();
    const auto d_x = c.backward().second;
    for (index_t row = 0; row < c.B * c.T; ++row) {
      const bool can_see = row <= i && row > i - 3;
      if (can_see) {
        EXPECT_GT(d_x.row(row).norm(), 0.0) << "query " << i << ", token " << row;
      } else {
        EXPECT_EQ(d_x.row(row).norm(), 0.0) << "query " << i << ", token " << row;
      }
    }
  }
}

TEST(AttentionBackward, SharedKeyValueGradientsDoNotDependOnTheThreadCount) {
  const int threads = eigenformer::num_threads();
  std::vector<eigenformer::attention_weights<double>> grads;
  for (const int n : {1, 2, 3}) {
    eigenformer::set_num_threads(n);
    llama_attention_case c(2, 0, true);
    grads.push_back(c.backward().first);
  }
  eigenformer::set_num_threads(threads);
  for (std::size_t i = 1; i < grads.size(); ++i) {
    EXPECT_TRUE(grads[i].qkv.weight == grads[0].qkv.weight);
    EXPECT_TRUE(grads[i].k_norm == grads[0].k_norm);
  }
}

}  // namespace
