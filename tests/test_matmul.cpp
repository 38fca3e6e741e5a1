#include <gtest/gtest.h>

#include <eigenformer/ops/matmul.hpp>

#include "reference.hpp"

namespace {

using eigenformer::index_t;

template <class Scalar>
class Matmul : public ::testing::Test {};
TYPED_TEST_SUITE(Matmul, ref::scalar_types);

// Row counts cover the 8-row tiles plus leftovers and the matrix-vector case; widths cover
// groups of 3 panels, single panels and columns that are not a multiple of 16; blocks start
// at non-zero columns as they do when threads split a layer.
TYPED_TEST(Matmul, ColumnBlocksMatchDoublePrecision) {
  using S = TypeParam;
  ref::rng r(21);
  for (const index_t rows : {1, 7, 8, 9, 19, 37, 64}) {
    for (const index_t first : {0, 16, 5}) {
      for (const index_t width : {1, 16, 48, 65, 100}) {
        const index_t K = 37, N = first + width + 3;
        const auto x = ref::random_matrix<S>(rows, K, r);
        const auto w = ref::random_matrix<S>(K, N, r);
        const auto bias = ref::random_row<S>(N, r);
        eigenformer::matrix<S> out = eigenformer::matrix<S>::Constant(rows, N, S(7));
        eigenformer::matmul_column_block<S>(x, w, bias.data(), first, width, out);
        ref::grid expected = ref::to_grid(out);  // columns outside the block stay 7
        for (index_t t = 0; t < rows; ++t) {
          for (index_t n = first; n < first + width; ++n) {
            double sum = double(bias(n));
            for (index_t k = 0; k < K; ++k) sum += double(x(t, k)) * double(w(k, n));
            expected[size_t(t)][size_t(n)] = sum;
          }
        }
        EXPECT_LT(ref::relative_error(out, expected), ref::tolerance<S>())
            << rows << " rows, columns [" << first << ", " << first + width << ")";
        eigenformer::matmul_column_block<S>(x, w, nullptr, first, width, out);
        for (index_t t = 0; t < rows; ++t) {
          for (index_t n = first; n < first + width; ++n) {
            expected[size_t(t)][size_t(n)] -= double(bias(n));
          }
        }
        EXPECT_LT(ref::relative_error(out, expected), ref::tolerance<S>()) << "without bias";
      }
    }
  }
}

// accumulate = true (weight gradients): out += x W, starting from what out holds, on the same
// tiles and leftovers; and transposed_copy, which feeds it x^T.
TYPED_TEST(Matmul, AccumulatingColumnBlocksAddToTheOutput) {
  using S = TypeParam;
  ref::rng r(23);
  for (const index_t rows : {1, 8, 19, 37, 64}) {
    for (const index_t width : {16, 48, 65}) {
      const index_t K = 29, first = 16, N = first + width;
      const auto x = ref::random_matrix<S>(rows, K, r);
      const auto w = ref::random_matrix<S>(K, N, r);
      eigenformer::matrix<S> out = ref::random_matrix<S>(rows, N, r);
      ref::grid expected = ref::to_grid(out);
      eigenformer::matmul_column_block<S>(x, w, nullptr, first, width, out, /*accumulate=*/true);
      for (index_t t = 0; t < rows; ++t) {
        for (index_t n = first; n < N; ++n) {
          for (index_t k = 0; k < K; ++k) {
            expected[size_t(t)][size_t(n)] += double(x(t, k)) * double(w(k, n));
          }
        }
      }
      EXPECT_LT(ref::relative_error(out, expected), ref::tolerance<S>())
          << rows << " rows, width " << width;
    }
  }
  const auto m = ref::random_matrix<S>(70, 131, r);  // more than one block of 64 rows of m^T
  const auto t = eigenformer::detail::transposed_copy<S>(m);
  ASSERT_EQ(t.rows(), 131);
  ASSERT_EQ(t.cols(), 70);
  EXPECT_EQ(eigenformer::matrix<S>(t), eigenformer::matrix<S>(m.transpose()));
}

// One row (decoding): chunks of matvec_row_chunk rows of W summed in order, including a partial
// last chunk; bit-identical for any thread count.
TYPED_TEST(Matmul, MatrixVectorChunksMatchDoublePrecision) {
  using S = TypeParam;
  ref::rng r(22);
  for (const index_t K :
       {index_t(1), eigenformer::matvec_row_chunk, 3 * eigenformer::matvec_row_chunk + 17}) {
    const index_t N = 40;
    const auto x = ref::random_matrix<S>(1, K, r);
    const auto w = ref::random_matrix<S>(K, N, r);
    const auto bias = ref::random_row<S>(N, r);
    eigenformer::matrix<S> out(1, N), other(1, N);
    const int saved = eigenformer::num_threads();
    eigenformer::set_num_threads(1);
    eigenformer::matvec_row_chunks<S>(x, w, bias.data(), out);
    eigenformer::set_num_threads(3);
    eigenformer::matvec_row_chunks<S>(x, w, bias.data(), other);
    eigenformer::set_num_threads(saved);
    EXPECT_TRUE((out.array() == other.array()).all()) << "K = " << K;
    ref::grid expected(1, std::vector<double>(size_t(N)));
    for (index_t n = 0; n < N; ++n) {
      double sum = double(bias(n));
      for (index_t k = 0; k < K; ++k) sum += double(x(0, k)) * double(w(k, n));
      expected[0][size_t(n)] = sum;
    }
    EXPECT_LT(ref::relative_error(out, expected), ref::tolerance<S>()) << "K = " << K;
  }
}

}  // namespace
