#include <gtest/gtest.h>

#include <eigenformer/layers/rms_norm.hpp>

#include "gradient_check.hpp"
#include "reference.hpp"

namespace {

using eigenformer::index_t;
using eigenformer::matrix;

template <class Scalar>
class RmsNorm : public ::testing::Test {};
TYPED_TEST_SUITE(RmsNorm, ref::scalar_types);

TYPED_TEST(RmsNorm, MatchesNaiveLoops) {
  using S = TypeParam;
  ref::rng r(3);
  const index_t T = 7, C = 24;
  const auto x = ref::random_matrix<S>(T, C, r, 3.0);
  const auto gain = ref::random_row<S>(C, r, 0.5, 1.0);
  matrix<S> out(T, C);
  eigenformer::rms_norm_forward<S>(x, gain, S(1e-6), out);
  EXPECT_LT(ref::relative_error(out, ref::rms_norm(ref::to_grid(x), gain, 1e-6)),
            ref::tolerance<S>());
  matrix<S> in_place = x;  // may alias
  eigenformer::rms_norm_forward<S>(in_place, gain, S(1e-6), in_place);
  EXPECT_TRUE(in_place == out);
}

TYPED_TEST(RmsNorm, EpsIsInsideTheSquareRootAndTheMeanIsNotSubtracted) {
  using S = TypeParam;
  matrix<S> x(1, 4), out(1, 4);
  x << 1, 1, 1, 1;  // mean 1: LayerNorm would give 0, RMSNorm gives 1 / sqrt(1 + eps)
  const eigenformer::row_vector<S> gain = eigenformer::row_vector<S>::Constant(4, S(2));
  eigenformer::rms_norm_forward<S>(x, gain, S(0.25), out);
  for (index_t c = 0; c < 4; ++c) EXPECT_NEAR(double(out(0, c)), 2 / std::sqrt(1.25), 1e-6);
  x.setZero();  // a zero row stays finite: eps keeps the division defined
  eigenformer::rms_norm_forward<S>(x, gain, S(1e-6), out);
  EXPECT_TRUE(out.isZero(0));
}

TYPED_TEST(RmsNorm, HeadsAreNormalizedSeparately) {
  using S = TypeParam;
  ref::rng r(4);
  const index_t T = 3, H = 4, d = 8;
  auto x = ref::random_matrix<S>(T, H * d, r, 2.0);
  const auto gain = ref::random_row<S>(d, r, 0.5, 1.0);
  const auto original = ref::to_grid(x);
  eigenformer::rms_norm_heads_inplace<S>(x, H, gain, S(1e-6));
  for (index_t h = 0; h < H; ++h) {
    ref::grid head(T, std::vector<double>(d));
    for (index_t t = 0; t < T; ++t)
      for (index_t j = 0; j < d; ++j)
        head[size_t(t)][size_t(j)] = original[size_t(t)][size_t(h * d + j)];
    EXPECT_LT(ref::relative_error(x.middleCols(h * d, d), ref::rms_norm(head, gain, 1e-6)),
              ref::tolerance<S>());
  }
  EXPECT_THROW(eigenformer::rms_norm_heads_inplace<S>(x, 3, gain, S(1e-6)),
               eigenformer::shape_error);
}

TEST(RmsNormBackward, MatchesFiniteDifferences) {
  ref::rng r(61);
  eigenformer::row_vector<double> gain = ref::random_row<double>(7, r, 0.5, 1.0);
  matrix<double> x = ref::random_matrix<double>(5, 7, r, 2.0);
  x.row(1).array() *= 1e-3;  // a row whose eps matters
  x.row(2).array() += 30.0;  // a large mean (not subtracted: RMSNorm does not center)
  const matrix<double> probe = ref::random_matrix<double>(5, 7, r);
  const double eps = 1e-5;
  const auto loss = [&] {
    matrix<double> y(5, 7);
    eigenformer::rms_norm_forward<double>(x, gain, eps, y);
    return gradcheck::probe_loss(y, probe);
  };
  eigenformer::row_vector<double> d_gain = eigenformer::row_vector<double>::Zero(7);
  matrix<double> d_x = matrix<double>::Zero(5, 7);
  eigenformer::rms_norm_backward<double>(x, gain, eps, probe, d_gain, d_x);
  EXPECT_LT(gradcheck::relative_error(gain, d_gain, loss), gradcheck::tolerance);
  EXPECT_LT(gradcheck::relative_error(x, d_x, loss), gradcheck::tolerance);
}

// Qwen3's q/k norms: one gain shared by every head, so its gradient sums over the heads.
TEST(RmsNormBackward, HeadsShareTheirGain) {
  ref::rng r(62);
  const index_t heads = 3, d = 4;
  eigenformer::row_vector<double> gain = ref::random_row<double>(d, r, 0.5, 1.0);
  matrix<double> x = ref::random_matrix<double>(5, heads * d, r, 2.0);
  const matrix<double> probe = ref::random_matrix<double>(5, heads * d, r);
  const double eps = 1e-6;
  const auto loss = [&] {
    matrix<double> y = x;
    eigenformer::rms_norm_heads_inplace<double>(y, heads, gain, eps);
    return gradcheck::probe_loss(y, probe);
  };
  eigenformer::row_vector<double> d_gain = eigenformer::row_vector<double>::Zero(d);
  matrix<double> d_x = matrix<double>::Zero(5, heads * d);
  eigenformer::rms_norm_heads_backward<double>(x, heads, gain, eps, probe, d_gain, d_x);
  EXPECT_LT(gradcheck::relative_error(gain, d_gain, loss), gradcheck::tolerance);
  EXPECT_LT(gradcheck::relative_error(x, d_x, loss), gradcheck::tolerance);
}

}  // namespace
