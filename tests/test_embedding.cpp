#include <gtest/gtest.h>

#include <eigenformer/layers/embedding.hpp>

#include "reference.hpp"

namespace {

template <class Scalar>
class Embedding : public ::testing::Test {};
TYPED_TEST_SUITE(Embedding, ref::scalar_types);

TYPED_TEST(Embedding, AddsTokenAndPositionRows) {
  using S = TypeParam;
  ref::rng r(2);
  const auto wte = ref::random_matrix<S>(10, 4, r), wpe = ref::random_matrix<S>(6, 4, r);
  const std::vector<eigenformer::token_id> tokens{3, 9, 3};
  eigenformer::matrix<S> out(3, 4);
  eigenformer::embedding_forward<S>(tokens, wte, wpe, 2, out);
  for (int t = 0; t < 3; ++t)
    for (int c = 0; c < 4; ++c) EXPECT_EQ(out(t, c), wte(tokens[size_t(t)], c) + wpe(2 + t, c));
}

TYPED_TEST(Embedding, RejectsBadIdsAndPositions) {
  using S = TypeParam;
  ref::rng r(2);
  const auto wte = ref::random_matrix<S>(10, 4, r), wpe = ref::random_matrix<S>(6, 4, r);
  eigenformer::matrix<S> out(2, 4);
  try {
    eigenformer::embedding_forward<S>({1, 10}, wte, wpe, 0, out);
    FAIL() << "expected value_error";
  } catch (const eigenformer::value_error& e) {
    EXPECT_STREQ(e.what(), "token id 10 at position 1 is outside the vocabulary [0, 10)");
  }
  EXPECT_THROW(eigenformer::embedding_forward<S>({-1, 0}, wte, wpe, 0, out),
               eigenformer::value_error);
  try {
    eigenformer::embedding_forward<S>({1, 2}, wte, wpe, 5, out);
    FAIL() << "expected shape_error";
  } catch (const eigenformer::shape_error& e) {
    EXPECT_NE(std::string(e.what()).find("exceed the context of 6 positions by 1"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace

#include "gradient_check.hpp"

namespace {

TEST(EmbeddingBackward, SumsOverRepeatedTokensAndOverTheBatch) {
  ref::rng r(101);
  eigenformer::matrix<double> wte = ref::random_matrix<double>(6, 3, r);
  eigenformer::matrix<double> wpe = ref::random_matrix<double>(4, 3, r);
  const std::vector<eigenformer::token_id> tokens{2, 5, 2, 0, 2, 1};  // B = 2, T = 3
  const eigenformer::matrix<double> probe = ref::random_matrix<double>(6, 3, r);
  const auto loss = [&] {
    eigenformer::matrix<double> out(6, 3);
    for (index_t b = 0; b < 2; ++b) {
      const std::vector<eigenformer::token_id> seq(tokens.begin() + b * 3,
                                                   tokens.begin() + b * 3 + 3);
      eigenformer::embedding_forward<double>(seq, wte, wpe, 0, out.middleRows(b * 3, 3));
    }
    return gradcheck::probe_loss(out, probe);
  };
  eigenformer::matrix<double> d_wte = eigenformer::matrix<double>::Zero(6, 3);
  eigenformer::matrix<double> d_wpe = eigenformer::matrix<double>::Zero(4, 3);
  eigenformer::embedding_backward<double>(tokens, 2, probe, d_wte, d_wpe);
  EXPECT_LT(gradcheck::relative_error(wte, d_wte, loss), gradcheck::tolerance);
  EXPECT_LT(gradcheck::relative_error(wpe, d_wpe, loss), gradcheck::tolerance);
  EXPECT_EQ(d_wte.row(3).norm(), 0.0);  // never used
  EXPECT_EQ(d_wpe.row(3).norm(), 0.0);  // position 3 is beyond T
  EXPECT_THROW(eigenformer::embedding_backward<double>({9, 0, 0, 0, 0, 0}, 2, probe, d_wte, d_wpe),
               eigenformer::value_error);
}

}  // namespace
