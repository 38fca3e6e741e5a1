#include <gtest/gtest.h>

#include <eigenformer/ops/gelu.hpp>

#include "reference.hpp"

namespace {

template <class Scalar>
class Gelu : public ::testing::Test {};
TYPED_TEST_SUITE(Gelu, ref::scalar_types);

TYPED_TEST(Gelu, MatchesTanhFormula) {
  using S = TypeParam;
  ref::rng r(11);
  eigenformer::matrix<S> x = ref::random_matrix<S>(7, 33, r, 6.0);
  ref::grid expected = ref::to_grid(x);
  for (auto& row : expected)
    for (auto& v : row) v = ref::gelu(v);
  eigenformer::gelu_tanh_inplace<S>(x);
  EXPECT_LT(ref::relative_error(x, expected), ref::tolerance<S>());
}

TYPED_TEST(Gelu, KnownValuesAndTails) {
  using S = TypeParam;
  eigenformer::matrix<S> x(1, 4);
  x << 0, 1, -30, 30;
  eigenformer::gelu_tanh_inplace<S>(x);
  EXPECT_EQ(x(0, 0), S(0));
  // gelu_new(1) = 0.5 * (1 + tanh(sqrt(2/pi) * 1.044715)) = 0.8411919906082768
  EXPECT_NEAR(double(x(0, 1)), 0.8411919906082768, 1e-6);
  EXPECT_EQ(x(0, 2), S(0));  // -30 * (1 + tanh(-large)) underflows to -0 or 0
  EXPECT_EQ(x(0, 3), S(30));
}

}  // namespace

#include "gradient_check.hpp"

namespace {

TEST(GeluBackward, MatchesFiniteDifferences) {
  ref::rng r(61);
  eigenformer::matrix<double> x = ref::random_matrix<double>(3, 9, r, 4.0);
  x(0, 0) = 0.0;
  const eigenformer::matrix<double> probe = ref::random_matrix<double>(3, 9, r);
  const auto loss = [&] {
    eigenformer::matrix<double> y = x;
    eigenformer::gelu_tanh_inplace<double>(y);
    return gradcheck::probe_loss(y, probe);
  };
  eigenformer::matrix<double> grad = probe;
  eigenformer::gelu_tanh_backward_inplace<double>(x, grad);
  EXPECT_LT(gradcheck::relative_error(x, grad, loss), gradcheck::tolerance);
}

}  // namespace
