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

#include "gradient_check.hpp"

namespace {

TEST(MlpBackward, MatchesFiniteDifferences) {
  constexpr index_t N = 4, C = 5, H = 12;
  ref::rng r(81);
  eigenformer::mlp_weights<double> w{
      {ref::random_matrix<double>(C, H, r), ref::random_row<double>(H, r, 0.5)},
      {ref::random_matrix<double>(H, C, r), ref::random_row<double>(C, r, 0.5)}};
  eigenformer::matrix<double> x = ref::random_matrix<double>(N, C, r);
  const eigenformer::matrix<double> probe = ref::random_matrix<double>(N, C, r);
  eigenformer::mlp_activations<double> acts(N, H);
  const auto forward = [&] {
    eigenformer::matrix<double> out(N, C);
    eigenformer::mlp_forward_train<double>(x, w, acts, out);
    return out;
  };
  EXPECT_LT(ref::relative_error(forward(), ref::mlp(ref::to_grid(x), w)), 1e-12);
  eigenformer::mlp_weights<double> grad{
      {eigenformer::matrix<double>::Zero(C, H), eigenformer::row_vector<double>::Zero(H)},
      {eigenformer::matrix<double>::Zero(H, C), eigenformer::row_vector<double>::Zero(C)}};
  eigenformer::matrix<double> d_hidden(N, H), d_x = eigenformer::matrix<double>::Zero(N, C);
  eigenformer::mlp_backward<double>(x, w, acts, probe, grad, d_hidden, d_x);
  const auto loss = [&] { return gradcheck::probe_loss(forward(), probe); };
  EXPECT_LT(gradcheck::relative_error(w.fc.weight, grad.fc.weight, loss), gradcheck::tolerance);
  EXPECT_LT(gradcheck::relative_error(w.fc.bias, grad.fc.bias, loss), gradcheck::tolerance);
  EXPECT_LT(gradcheck::relative_error(w.proj.weight, grad.proj.weight, loss), gradcheck::tolerance);
  EXPECT_LT(gradcheck::relative_error(w.proj.bias, grad.proj.bias, loss), gradcheck::tolerance);
  EXPECT_LT(gradcheck::relative_error(x, d_x, loss), gradcheck::tolerance);
}

}  // namespace
