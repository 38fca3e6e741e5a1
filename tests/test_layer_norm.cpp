#include <gtest/gtest.h>

#include <cmath>

#include <eigenformer/layers/layer_norm.hpp>

#include "reference.hpp"

namespace {

template <class Scalar>
class LayerNorm : public ::testing::Test {};
TYPED_TEST_SUITE(LayerNorm, ref::scalar_types);

TYPED_TEST(LayerNorm, MatchesNaiveLoops) {
  using S = TypeParam;
  ref::rng r(9);
  const eigenformer::layer_norm_weights<S> w{ref::random_row<S>(24, r, 0.5, 1.0),
                                             ref::random_row<S>(24, r, 0.5)};
  eigenformer::matrix<S> x = ref::random_matrix<S>(6, 24, r, 3.0);
  x.row(2).array() += S(1000);  // a large mean must not cancel the variance
  eigenformer::matrix<S> y(6, 24);
  eigenformer::layer_norm_forward<S>(x, w, S(1e-5), y);
  EXPECT_LT(ref::relative_error(y, ref::layer_norm(ref::to_grid(x), w, 1e-5)),
            (std::is_same_v<S, float> ? 2e-5 : 1e-12));
}

TYPED_TEST(LayerNorm, ConstantRowStaysFiniteThanksToEpsilon) {
  using S = TypeParam;
  const eigenformer::layer_norm_weights<S> w{eigenformer::row_vector<S>::Ones(8),
                                             eigenformer::row_vector<S>::Constant(8, S(0.5))};
  eigenformer::matrix<S> x = eigenformer::matrix<S>::Constant(1, 8, S(42));
  eigenformer::layer_norm_forward<S>(x, w, S(1e-5), x);  // in place is allowed
  EXPECT_TRUE((x.array() == S(0.5)).all());
}

TYPED_TEST(LayerNorm, EpsilonIsUsed) {
  using S = TypeParam;
  // Row [-1, 1]: variance 1, so the output is +-1/sqrt(1 + eps).
  const eigenformer::layer_norm_weights<S> w{eigenformer::row_vector<S>::Ones(2),
                                             eigenformer::row_vector<S>::Zero(2)};
  eigenformer::matrix<S> x(1, 2), y(1, 2);
  x << -1, 1;
  eigenformer::layer_norm_forward<S>(x, w, S(0.5), y);
  EXPECT_NEAR(double(y(0, 1)), 1 / std::sqrt(1.5), 1e-6);
}

}  // namespace

#include "gradient_check.hpp"

namespace {

TEST(LayerNormBackward, MatchesFiniteDifferences) {
  ref::rng r(51);
  eigenformer::layer_norm_weights<double> w{ref::random_row<double>(7, r, 0.5, 1.0),
                                            ref::random_row<double>(7, r, 0.5)};
  eigenformer::matrix<double> x = ref::random_matrix<double>(5, 7, r, 2.0);
  x.row(1).array() += 50.0;  // a large mean
  const eigenformer::matrix<double> probe = ref::random_matrix<double>(5, 7, r);
  const double eps = 1e-5;
  const auto loss = [&] {
    eigenformer::matrix<double> y(5, 7);
    eigenformer::layer_norm_forward<double>(x, w, eps, y);
    return gradcheck::probe_loss(y, probe);
  };
  eigenformer::layer_norm_weights<double> grad{eigenformer::row_vector<double>::Zero(7),
                                               eigenformer::row_vector<double>::Zero(7)};
  eigenformer::matrix<double> d_x = eigenformer::matrix<double>::Zero(5, 7);
  eigenformer::layer_norm_backward<double>(x, w, eps, probe, grad, d_x);
  EXPECT_LT(gradcheck::relative_error(w.gain, grad.gain, loss), gradcheck::tolerance);
  EXPECT_LT(gradcheck::relative_error(w.bias, grad.bias, loss), gradcheck::tolerance);
  EXPECT_LT(gradcheck::relative_error(x, d_x, loss), gradcheck::tolerance);
}

}  // namespace
