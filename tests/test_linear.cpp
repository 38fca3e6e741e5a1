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

#include "gradient_check.hpp"

namespace {

TEST(LinearBackward, MatchesFiniteDifferences) {
  ref::rng r(41);
  eigenformer::linear_weights<double> w(ref::random_matrix<double>(6, 5, r),
                                        ref::random_row<double>(5, r));
  eigenformer::matrix<double> x = ref::random_matrix<double>(4, 6, r);
  const eigenformer::matrix<double> probe = ref::random_matrix<double>(4, 5, r);
  const auto loss = [&] {
    eigenformer::matrix<double> y(4, 5);
    eigenformer::linear_forward<double>(x, w, y);
    return gradcheck::probe_loss(y, probe);
  };
  eigenformer::linear_weights<double> grad(eigenformer::matrix<double>::Zero(6, 5),
                                           eigenformer::row_vector<double>::Zero(5));
  eigenformer::matrix<double> d_x = eigenformer::matrix<double>::Zero(4, 6);
  eigenformer::linear_backward<double>(x, w, probe, grad, d_x);
  EXPECT_LT(gradcheck::relative_error(w.weight, grad.weight, loss), gradcheck::tolerance);
  EXPECT_LT(gradcheck::relative_error(w.bias, grad.bias, loss), gradcheck::tolerance);
  EXPECT_LT(gradcheck::relative_error(x, d_x, loss), gradcheck::tolerance);
}

TEST(LinearBackward, WideFloatLayersTakeTheTiledWeightGradientPath) {
  // n_out >= 4 column blocks: dW runs on the register-tiled kernel with x^T copied; checked
  // against double sums, starting from non-zero gradients (it must add).
  ref::rng r(44);
  const index_t T = 21, in = 37, out = 4 * eigenformer::linear_column_block + 5;
  const eigenformer::linear_weights<float> w(ref::random_matrix<float>(in, out, r),
                                             ref::random_row<float>(out, r));
  const auto x = ref::random_matrix<float>(T, in, r);
  const auto d_out = ref::random_matrix<float>(T, out, r);
  eigenformer::linear_weights<float> grad(ref::random_matrix<float>(in, out, r),
                                          ref::random_row<float>(out, r));
  const auto before = grad.weight;
  eigenformer::matrix<float> d_x = eigenformer::matrix<float>::Zero(T, in);
  eigenformer::linear_backward<float>(x, w, d_out, grad, d_x);
  double max_err = 0;
  for (index_t i = 0; i < in; ++i) {
    for (index_t j = 0; j < out; ++j) {
      double expected = before(i, j);
      for (index_t t = 0; t < T; ++t) expected += double(x(t, i)) * double(d_out(t, j));
      max_err = std::max(max_err, std::abs(expected - double(grad.weight(i, j))));
    }
  }
  EXPECT_LT(max_err, 1e-4);  // sums of 21 products of magnitude <= 1
}

TEST(LinearBackward, AddsToTheGradientsItIsGiven) {
  ref::rng r(42);
  const eigenformer::linear_weights<double> w(ref::random_matrix<double>(3, 2, r),
                                              ref::random_row<double>(2, r));
  const eigenformer::matrix<double> x = ref::random_matrix<double>(2, 3, r);
  const eigenformer::matrix<double> d_out = ref::random_matrix<double>(2, 2, r);
  eigenformer::linear_weights<double> once(eigenformer::matrix<double>::Zero(3, 2),
                                           eigenformer::row_vector<double>::Zero(2));
  eigenformer::matrix<double> d_x_once = eigenformer::matrix<double>::Zero(2, 3);
  eigenformer::linear_backward<double>(x, w, d_out, once, d_x_once);
  auto twice = once;
  eigenformer::matrix<double> d_x_twice = d_x_once;
  eigenformer::linear_backward<double>(x, w, d_out, twice, d_x_twice);
  EXPECT_LT((twice.weight - 2 * once.weight).norm(), 1e-14);
  EXPECT_LT((twice.bias - 2 * once.bias).norm(), 1e-14);
  EXPECT_LT((d_x_twice - 2 * d_x_once).norm(), 1e-14);
}

TEST(LinearBackward, RejectsMismatchedGradientShapes) {
  ref::rng r(43);
  const eigenformer::linear_weights<double> w(ref::random_matrix<double>(3, 2, r),
                                              ref::random_row<double>(2, r));
  eigenformer::linear_weights<double> grad(eigenformer::matrix<double>::Zero(2, 3),
                                           eigenformer::row_vector<double>::Zero(2));
  eigenformer::matrix<double> d_x = eigenformer::matrix<double>::Zero(2, 3);
  EXPECT_THROW(eigenformer::linear_backward<double>(ref::random_matrix<double>(2, 3, r), w,
                                                    ref::random_matrix<double>(2, 2, r), grad, d_x),
               eigenformer::shape_error);
}

// A quantized layer multiplies the weights its blocks dequantize to (a double loop here), adds
// its float bias, and refuses backward; a layer whose rows are not whole blocks stays float.
TEST(Linear, QuantizedLayerMultipliesItsDequantizedWeights) {
  ref::rng r(31);
  eigenformer::linear_weights<float> w{ref::random_matrix<float>(96, 40, r),
                                       ref::random_row<float>(40, r)};
  ASSERT_TRUE(eigenformer::quantize_linear(w, eigenformer::quant_type::q5_0));
  EXPECT_TRUE(w.is_quantized());
  EXPECT_EQ(w.weight.size(), 0);
  EXPECT_EQ(w.in_features(), 96);
  EXPECT_EQ(w.out_features(), 40);
  const eigenformer::matrix<float> dq = eigenformer::dequantize(w.quantized);
  // Activations kept in float: the float rounding of the product alone (the default int8
  // rounding of the activations is tested in test_quant_matmul).
  eigenformer::set_quant_activations(eigenformer::quant_activations::exact);
  for (const eigenformer::index_t T : {1, 9}) {
    const auto x = ref::random_matrix<float>(T, 96, r);
    eigenformer::matrix<float> out(T, 40);
    eigenformer::linear_forward<float>(x, w, out);
    for (eigenformer::index_t t = 0; t < T; ++t) {
      for (eigenformer::index_t n = 0; n < 40; ++n) {
        double want = w.bias(n);
        for (eigenformer::index_t k = 0; k < 96; ++k) want += double(x(t, k)) * dq(k, n);
        EXPECT_NEAR(out(t, n), want, 1e-4) << t << ", " << n;
      }
    }
  }
  eigenformer::set_quant_activations(eigenformer::quant_activations::int8);
  eigenformer::linear_weights<float> grad{eigenformer::matrix<float>::Zero(96, 40),
                                          eigenformer::row_vector<float>::Zero(40)};
  eigenformer::matrix<float> x(2, 96), d_out(2, 40), d_x(2, 96);
  EXPECT_THROW(eigenformer::linear_backward<float>(x, w, d_out, grad, d_x),
               eigenformer::shape_error);
  EXPECT_THROW(eigenformer::quantize_linear(w, eigenformer::quant_type::q8_0),
               eigenformer::value_error);
  eigenformer::linear_weights<float> odd{ref::random_matrix<float>(40, 8, r),
                                         ref::random_row<float>(8, r)};
  EXPECT_FALSE(eigenformer::quantize_linear(odd, eigenformer::quant_type::q8_0));
  EXPECT_FALSE(odd.is_quantized());
  EXPECT_EQ(odd.weight.rows(), 40);
}

}  // namespace
