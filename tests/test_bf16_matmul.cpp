#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include <eigenformer/ops/bf16_matmul.hpp>

#include "reference.hpp"

namespace {

using eigenformer::bf16_compute;
using eigenformer::index_t;
using eigenformer::matrix;

// bfloat16 rounding computed independently of the library: keep 8 significant bits of the
// double, ties to even (std::nearbyint in the default rounding mode).
double naive_bf16(double v) {
  if (v == 0 || !std::isfinite(v)) return v;
  int exponent = 0;
  std::frexp(v, &exponent);                           // v = m 2^exponent, 0.5 <= |m| < 1
  const double unit = std::ldexp(1.0, exponent - 8);  // the spacing of 8-bit significands
  return std::nearbyint(v / unit) * unit;
}

TEST(Bf16, RoundingIsNearestTiesToEven) {
  ref::rng r(3);
  for (int i = 0; i < 20000; ++i) {
    const float v = float(r.symmetric(1.0) * std::ldexp(1.0, r.below(60) - 30));
    EXPECT_EQ(double(eigenformer::round_to_bf16(v)), naive_bf16(v)) << v;
  }
  // Exact ties: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7 and goes to the even 1;
  // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6 and goes to the even 1 + 2^-6.
  EXPECT_EQ(eigenformer::round_to_bf16(1.0f + std::ldexp(1.0f, -8)), 1.0f);
  EXPECT_EQ(eigenformer::round_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)),
            1.0f + std::ldexp(1.0f, -6));
  EXPECT_TRUE(std::isnan(eigenformer::round_to_bf16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(eigenformer::round_to_bf16(std::numeric_limits<float>::infinity()),
            std::numeric_limits<float>::infinity());
  EXPECT_EQ(eigenformer::round_to_bf16(-3.4e38f), -std::numeric_limits<float>::infinity());
}

TEST(Bf16, PackKeepsEveryElementInPlace) {
  ref::rng r(4);
  const matrix<float> w = ref::random_matrix<float>(7, 37, r);  // odd K, N not a panel multiple
  for (auto compute : {bf16_compute::float_activations, bf16_compute::bf16_activations}) {
    const auto packed = eigenformer::pack_bf16(w, compute);
    const auto transposed = eigenformer::pack_bf16_transposed(w.transpose(), compute);
    ASSERT_EQ(packed.rows, 7);
    ASSERT_EQ(packed.cols, 37);
    const matrix<float> back = eigenformer::unpack_bf16(packed);
    for (index_t k = 0; k < 7; ++k) {
      for (index_t n = 0; n < 37; ++n) {
        EXPECT_EQ(double(back(k, n)), naive_bf16(w(k, n)));
        EXPECT_EQ(transposed(k, n), packed(k, n));
      }
    }
  }
}

// expected(t, n) = sum_k a(t, k) bf16(W(k, n)) + b(n) in double, a = x or bf16(x).
ref::grid expected_product(const matrix<float>& x, const matrix<float>& w,
                           const eigenformer::row_vector<float>* bias, bool round_x) {
  ref::grid out(size_t(x.rows()), std::vector<double>(size_t(w.cols())));
  for (index_t t = 0; t < x.rows(); ++t) {
    for (index_t n = 0; n < w.cols(); ++n) {
      double sum = bias ? double((*bias)(n)) : 0.0;
      for (index_t k = 0; k < x.cols(); ++k) {
        sum += (round_x ? naive_bf16(x(t, k)) : double(x(t, k))) * naive_bf16(w(k, n));
      }
      out[size_t(t)][size_t(n)] = sum;
    }
  }
  return out;
}

struct product_case {
  index_t rows, inputs, outputs;
};

class Bf16Matmul : public ::testing::TestWithParam<bf16_compute> {};

// Rows cover the direct kernels (<= 8 rows, groups of 4 and 8 plus leftovers) and the widened
// GEMM path; outputs cover partial panels, groups of panels and more than one 256-column block.
TEST_P(Bf16Matmul, MatchesDoublePrecisionDefinition) {
  const bf16_compute compute = GetParam();
  const bool round_x = compute == bf16_compute::bf16_activations;
  ref::rng r(11);
  for (const product_case c :
       {product_case{1, 1, 1}, product_case{1, 64, 16}, product_case{1, 31, 300},
        product_case{3, 64, 37}, product_case{4, 33, 49}, product_case{5, 64, 600},
        product_case{8, 17, 80}, product_case{9, 64, 300}, product_case{17, 65, 33},
        product_case{40, 96, 520}}) {
    const matrix<float> x = ref::random_matrix<float>(c.rows, c.inputs, r);
    const matrix<float> w = ref::random_matrix<float>(c.inputs, c.outputs, r);
    const eigenformer::row_vector<float> bias = ref::random_row<float>(c.outputs, r);
    const auto packed = eigenformer::pack_bf16(w, compute);
    matrix<float> out(c.rows, c.outputs);
    eigenformer::bf16_matmul(x, packed, bias.data(), out);
    EXPECT_LT(ref::relative_error(out, expected_product(x, w, &bias, round_x)), 2e-6)
        << c.rows << " x " << c.inputs << " x " << c.outputs;
    eigenformer::bf16_matmul(x, packed, nullptr, out);
    EXPECT_LT(ref::relative_error(out, expected_product(x, w, nullptr, round_x)), 2e-6)
        << "no bias, " << c.rows << " x " << c.inputs << " x " << c.outputs;
  }
}

TEST_P(Bf16Matmul, BitIdenticalForAnyThreadCount) {
  ref::rng r(12);
  const auto packed = eigenformer::pack_bf16(ref::random_matrix<float>(96, 700, r), GetParam());
  const int saved = eigenformer::num_threads();
  for (index_t rows : {1, 6, 30}) {
    const matrix<float> x = ref::random_matrix<float>(rows, 96, r);
    matrix<float> one(rows, 700), many(rows, 700);
    eigenformer::set_num_threads(1);
    eigenformer::bf16_matmul(x, packed, nullptr, one);
    eigenformer::set_num_threads(3);
    eigenformer::bf16_matmul(x, packed, nullptr, many);
    eigenformer::set_num_threads(saved);
    EXPECT_TRUE((one.array() == many.array()).all()) << rows << " rows";
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, Bf16Matmul,
                         ::testing::Values(bf16_compute::float_activations,
                                           bf16_compute::bf16_activations));

TEST(Bf16, ShapeMismatchThrows) {
  ref::rng r(2);
  const auto packed =
      eigenformer::pack_bf16(ref::random_matrix<float>(8, 5, r), bf16_compute::float_activations);
  matrix<float> x(2, 7), out(2, 5);
  EXPECT_THROW(eigenformer::bf16_matmul(x, packed, nullptr, out), eigenformer::shape_error);
  matrix<float> x8(2, 8), wrong(3, 5);
  EXPECT_THROW(eigenformer::bf16_matmul(x8, packed, nullptr, wrong), eigenformer::shape_error);
}

}  // namespace
