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
