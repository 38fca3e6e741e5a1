#include <gtest/gtest.h>

#include <eigenformer/layers/linear.hpp>

#include "reference.hpp"

namespace {

template <class Scalar>
class Linear : public ::testing::Test {};
TYPED_TEST_SUITE(Linear, ref::scalar_types);

TYPED_TEST(Linear, MatchesNaiveLoops) {
  using S = TypeParam;
  ref::rng r(5);
  const eigenformer::linear_weights<S> w{ref::random_matrix<S>(13, 7, r), ref::random_row<S>(7, r)};
  const eigenformer::matrix<S> x = ref::random_matrix<S>(4, 13, r);
  eigenformer::matrix<S> y(4, 7);
  eigenformer::linear_forward<S>(x, w, y);
  EXPECT_LT(ref::relative_error(y, ref::linear(ref::to_grid(x), w)), ref::tolerance<S>());
}

TYPED_TEST(Linear, WeightIsInByOutNotTransposed) {
  using S = TypeParam;
  // x = [1, 0] picks row 0 of W (the [in x out] layout of HF Conv1D).
  eigenformer::linear_weights<S> w{eigenformer::matrix<S>(2, 3), eigenformer::row_vector<S>(3)};
  w.weight << 1, 2, 3, 4, 5, 6;
  w.bias << 10, 20, 30;
  eigenformer::matrix<S> x(1, 2), y(1, 3);
  x << 1, 0;
  eigenformer::linear_forward<S>(x, w, y);
  EXPECT_EQ(y(0, 0), S(11));
  EXPECT_EQ(y(0, 1), S(22));
  EXPECT_EQ(y(0, 2), S(33));
}

TYPED_TEST(Linear, ShapeMismatchThrows) {
  using S = TypeParam;
  ref::rng r(1);
  const eigenformer::linear_weights<S> w{ref::random_matrix<S>(3, 2, r), ref::random_row<S>(2, r)};
  eigenformer::matrix<S> x(1, 4), y(1, 2);
  EXPECT_THROW(eigenformer::linear_forward<S>(x, w, y), eigenformer::shape_error);
}

}  // namespace
