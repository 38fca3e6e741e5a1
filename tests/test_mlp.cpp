#include <gtest/gtest.h>

#include <eigenformer/layers/mlp.hpp>

#include "reference.hpp"

namespace {

template <class Scalar>
class Mlp : public ::testing::Test {};
TYPED_TEST_SUITE(Mlp, ref::scalar_types);

TYPED_TEST(Mlp, MatchesNaiveLoops) {
  using S = TypeParam;
  ref::rng r(17);
  const eigenformer::index_t T = 5, C = 8, H = 32;
  const eigenformer::mlp_weights<S> w{
      {ref::random_matrix<S>(C, H, r), ref::random_row<S>(H, r)},
      {ref::random_matrix<S>(H, C, r, 0.3), ref::random_row<S>(C, r)}};
  const auto x = ref::random_matrix<S>(T, C, r, 2.0);
  eigenformer::matrix<S> hidden(T, H), out(T, C);
  eigenformer::mlp_forward<S>(x, w, hidden, out);
  EXPECT_LT(ref::relative_error(out, ref::mlp(ref::to_grid(x), w)), ref::tolerance<S>());
}

}  // namespace
