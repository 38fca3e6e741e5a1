#include <gtest/gtest.h>

#include <cmath>

#include <eigenformer/layers/rope.hpp>

#include "gradient_check.hpp"
#include "reference.hpp"

namespace {

using eigenformer::index_t;
using eigenformer::matrix;

template <class Scalar>
class Rope : public ::testing::Test {};
TYPED_TEST_SUITE(Rope, ref::scalar_types);

TYPED_TEST(Rope, RotatesHalvesNotNeighboursLikeHuggingFace) {
  using S = TypeParam;
  ref::rng r(5);
  const index_t T = 6, H = 3, d = 8, first = 11;
  auto x = ref::random_matrix<S>(T, H * d, r, 1.0);
  const auto expected = ref::rope(ref::to_grid(x), size_t(d), int(first), 10000.0);
  eigenformer::rope_tables<S> tables(T, eigenformer::rope_config{}, d);
  eigenformer::rope_fill_tables<S>(first, T, tables);
  eigenformer::rope_apply_inplace<S>(x, H, tables.cos, tables.sin);
  EXPECT_LT(ref::relative_error(x, expected), ref::tolerance<S>());
}

TYPED_TEST(Rope, ScoresDependOnlyOnTheDistance) {
  using S = TypeParam;
  ref::rng r(6);
  const index_t d = 16;
  const auto q = ref::random_matrix<S>(1, d, r, 1.0), k = ref::random_matrix<S>(1, d, r, 1.0);
  eigenformer::rope_tables<S> tables(1, eigenformer::rope_config{}, d);
  const auto score = [&](index_t pq, index_t pk) {
    matrix<S> a = q, b = k;
    eigenformer::rope_fill_tables<S>(pq, 1, tables);
    eigenformer::rope_apply_inplace<S>(a, 1, tables.cos, tables.sin);
    eigenformer::rope_fill_tables<S>(pk, 1, tables);
    eigenformer::rope_apply_inplace<S>(b, 1, tables.cos, tables.sin);
    return double(a.row(0).dot(b.row(0)));
  };
  const double tolerance = std::is_same_v<S, float> ? 1e-4 : 1e-12;
  EXPECT_NEAR(score(7, 3), score(104, 100), tolerance);
  EXPECT_GT(std::abs(score(7, 3) - score(7, 6)), 1e-3);  // and it does depend on it
}

TEST(RopeFrequencies, Llama3ScalingKeepsHighDividesLowAndBlendsBetween) {
  eigenformer::rope_config rope;
  rope.theta = 500000.0;
  rope.scaling = eigenformer::rope_scaling_kind::llama3;
  rope.factor = 32.0;
  rope.low_freq_factor = 1.0;
  rope.high_freq_factor = 4.0;
  rope.original_context = 8192;
  const index_t d = 64;
  const auto scaled = eigenformer::rope_inverse_frequencies(rope, d);
  const double pi = 3.14159265358979323846;
  int kept = 0, divided = 0, blended = 0;
  for (index_t j = 0; j < d / 2; ++j) {
    const double f = std::pow(500000.0, -2.0 * double(j) / double(d));
    const double wavelen = 2 * pi / f;
    double expected;
    if (wavelen < 8192.0 / 4.0) {
      expected = f, ++kept;
    } else if (wavelen > 8192.0 / 1.0) {
      expected = f / 32.0, ++divided;
    } else {
      const double smooth = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
      expected = (1 - smooth) * f / 32.0 + smooth * f, ++blended;
    }
    EXPECT_NEAR(scaled[size_t(j)], expected, 1e-15 * f) << j;
  }
  EXPECT_GT(kept, 0);  // Llama 3.2's values exercise all three regimes
  EXPECT_GT(divided, 0);
  EXPECT_GT(blended, 0);
  rope.scaling = eigenformer::rope_scaling_kind::linear;
  rope.factor = 4.0;
  const auto linear = eigenformer::rope_inverse_frequencies(rope, d);
  EXPECT_DOUBLE_EQ(linear[3], std::pow(500000.0, -6.0 / 64.0) / 4.0);
}

TEST(RopeFrequencies, AnglesAreComputedInDoubleAtLargePositions) {
  // Position 100000 x frequency 1: a float angle would be off by ~4e-3 rad.
  eigenformer::rope_tables<float> tables(1, eigenformer::rope_config{}, 4);
  eigenformer::rope_fill_tables<float>(100000, 1, tables);
  EXPECT_EQ(tables.cos(0, 0), float(std::cos(100000.0)));
  EXPECT_EQ(tables.sin(0, 0), float(std::sin(100000.0)));
  EXPECT_THROW(eigenformer::rope_inverse_frequencies({}, 7), eigenformer::shape_error);
}

TEST(RopeBackward, MatchesFiniteDifferences) {
  ref::rng r(81);
  const index_t T = 5, H = 2, d = 8;
  matrix<double> x = ref::random_matrix<double>(T, H * d, r, 1.0);
  eigenformer::rope_tables<double> tables(T, eigenformer::rope_config{}, d);
  eigenformer::rope_fill_tables<double>(37, T, tables);  // positions 37..41
  const matrix<double> probe = ref::random_matrix<double>(T, H * d, r);
  const auto loss = [&] {
    matrix<double> y = x;
    eigenformer::rope_apply_inplace<double>(y, H, tables.cos, tables.sin);
    return gradcheck::probe_loss(y, probe);
  };
  matrix<double> d_x = probe;
  eigenformer::rope_backward_inplace<double>(d_x, H, tables.cos, tables.sin);
  EXPECT_LT(gradcheck::relative_error(x, d_x, loss), gradcheck::tolerance);
  // Rotating back undoes the rotation (the transpose is the inverse).
  matrix<double> round_trip = x;
  eigenformer::rope_apply_inplace<double>(round_trip, H, tables.cos, tables.sin);
  eigenformer::rope_backward_inplace<double>(round_trip, H, tables.cos, tables.sin);
  EXPECT_LT((round_trip - x).cwiseAbs().maxCoeff(), 1e-14);
}

}  // namespace
