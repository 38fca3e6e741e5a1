#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include <eigenformer/ops/softmax.hpp>

#include "reference.hpp"

namespace {

using eigenformer::matrix;

template <class Scalar>
class Softmax : public ::testing::Test {};
TYPED_TEST_SUITE(Softmax, ref::scalar_types);

TYPED_TEST(Softmax, RowsMatchNaiveReferenceAndSumToOne) {
  using S = TypeParam;
  ref::rng r(7);
  matrix<S> scores = ref::random_matrix<S>(5, 9, r, 20.0);
  const ref::grid input = ref::to_grid(scores);
  eigenformer::softmax_rows_inplace<S>(scores);
  ref::grid expected = input;
  for (auto& row : expected) {
    double mx = -INFINITY, sum = 0;
    for (double v : row) mx = std::max(mx, v);
    for (double& v : row) sum += (v = std::exp(v - mx));
    for (double& v : row) v /= sum;
  }
  EXPECT_LT(ref::relative_error(scores, expected), ref::tolerance<S>());
  for (int i = 0; i < 5; ++i)
    EXPECT_NEAR(double(scores.row(i).sum()), 1.0, 10 * ref::tolerance<S>());
}

TYPED_TEST(Softmax, HugeScoresDoNotOverflow) {
  using S = TypeParam;
  const S big = std::numeric_limits<S>::max() / S(4);
  matrix<S> scores(1, 3);
  scores << big, big, -big;
  eigenformer::softmax_rows_inplace<S>(scores);
  EXPECT_EQ(scores(0, 0), S(0.5));
  EXPECT_EQ(scores(0, 1), S(0.5));
  EXPECT_EQ(scores(0, 2), S(0));
}

TYPED_TEST(Softmax, CausalMasksFutureKeysToExactZero) {
  using S = TypeParam;
  ref::rng r(3);
  const int n = 6;
  matrix<S> scores = ref::random_matrix<S>(n, n, r, 1e4);  // huge scores in the future too
  eigenformer::causal_softmax_rows_inplace<S>(scores, 0);
  for (int i = 0; i < n; ++i) {
    for (int j = i + 1; j < n; ++j) EXPECT_EQ(scores(i, j), S(0)) << i << "," << j;
    EXPECT_NEAR(double(scores.row(i).sum()), 1.0, 10 * ref::tolerance<S>());
  }
  EXPECT_EQ(scores(0, 0), S(1));  // the first query sees only itself
}

TYPED_TEST(Softmax, CausalOffsetForCachedKeys) {
  using S = TypeParam;
  // 2 new queries after 3 cached tokens: query 0 sees keys 0..3, query 1 sees 0..4.
  matrix<S> scores = matrix<S>::Zero(2, 5);
  eigenformer::causal_softmax_rows_inplace<S>(scores, 3);
  for (int j = 0; j < 4; ++j) EXPECT_EQ(scores(0, j), S(0.25));
  EXPECT_EQ(scores(0, 4), S(0));
  for (int j = 0; j < 5; ++j) EXPECT_EQ(scores(1, j), S(0.2));
}

TYPED_TEST(Softmax, RowWithNothingVisibleIsZeroNotNaN) {
  using S = TypeParam;
  matrix<S> row = matrix<S>::Constant(1, 4, S(3));
  auto r = row.row(0);
  eigenformer::softmax_prefix_inplace(r, 0);
  EXPECT_TRUE((row.array() == S(0)).all());
}

TYPED_TEST(Softmax, InfiniteMaskedScoresAreNeverRead) {
  using S = TypeParam;
  matrix<S> scores(2, 2);
  scores << 1, std::numeric_limits<S>::quiet_NaN(), 2, 2;
  eigenformer::causal_softmax_rows_inplace<S>(scores, 0);
  EXPECT_EQ(scores(0, 0), S(1));
  EXPECT_EQ(scores(0, 1), S(0));
  EXPECT_EQ(scores(1, 0), S(0.5));
}

}  // namespace
