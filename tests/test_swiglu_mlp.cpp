#include <gtest/gtest.h>

#include <cmath>

#include <eigenformer/layers/swiglu_mlp.hpp>

#include "gradient_check.hpp"
#include "reference.hpp"

namespace {

using eigenformer::index_t;
using eigenformer::matrix;

template <class Scalar>
class SwigluMlp : public ::testing::Test {};
TYPED_TEST_SUITE(SwigluMlp, ref::scalar_types);

TYPED_TEST(SwigluMlp, MatchesNaiveLoops) {
  using S = TypeParam;
  ref::rng r(8);
  const index_t T = 37, C = 16, I = 40;  // T > 16: several parallel row blocks
  eigenformer::mlp_weights<S> w;
  w.fc.weight = ref::random_matrix<S>(C, 2 * I, r, 0.5);
  w.proj.weight = ref::random_matrix<S>(I, C, r, 0.5);
  const auto x = ref::random_matrix<S>(T, C, r, 2.0);
  matrix<S> hidden(T + 2, 2 * I), out(T, C);
  eigenformer::swiglu_mlp_forward<S>(x, w, hidden, out);
  EXPECT_LT(ref::relative_error(out, ref::swiglu_mlp(ref::to_grid(x), w)), ref::tolerance<S>());
  matrix<S> one(1, C);  // the decoding path (one row)
  eigenformer::swiglu_mlp_forward<S>(x.topRows(1), w, hidden, one);
  EXPECT_LT(ref::relative_error(one, ref::swiglu_mlp(ref::to_grid(x.topRows(1)), w)),
            ref::tolerance<S>());
  matrix<S> narrow(T, 2 * I - 2);
  EXPECT_THROW(eigenformer::swiglu_mlp_forward<S>(x, w, narrow, out), eigenformer::shape_error);
}

TYPED_TEST(SwigluMlp, SiluIsFiniteAtTheExtremes) {
  using S = TypeParam;
  matrix<S> x(1, 4);
  x << S(-1000), S(-20), S(0), S(1000);
  eigenformer::silu_inplace<S>(x);
  EXPECT_EQ(x(0, 0), S(0));
  EXPECT_NEAR(double(x(0, 1)), -20 / (1 + std::exp(20.0)), 1e-12);
  EXPECT_EQ(x(0, 2), S(0));
  EXPECT_EQ(x(0, 3), S(1000));
}

TEST(SwigluGateBackward, MatchesFiniteDifferences) {
  ref::rng r(71);
  const index_t T = 4, I = 6;
  matrix<double> gate_up = ref::random_matrix<double>(T, 2 * I, r, 3.0);
  gate_up(0, 0) = -30.0;  // far into the flat part of the sigmoid
  gate_up(1, 1) = 25.0;
  const matrix<double> probe = ref::random_matrix<double>(T, I, r);
  const auto loss = [&] {
    matrix<double> g = gate_up;
    eigenformer::swiglu_gate_inplace<double>(g);
    return gradcheck::probe_loss(g.leftCols(I), probe);
  };
  matrix<double> d_gate_up(T, 2 * I);
  eigenformer::swiglu_gate_backward<double>(gate_up, probe, d_gate_up);
  EXPECT_LT(gradcheck::relative_error(gate_up, d_gate_up, loss), gradcheck::tolerance);
  EXPECT_TRUE(d_gate_up.allFinite());
}

}  // namespace
