#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include <eigenformer/ops/cross_entropy.hpp>

#include "gradient_check.hpp"
#include "reference.hpp"

namespace {

/// -log softmax(row)[target], naively: exp of every entry, no shift (fine for small logits).
double naive_row_loss(const eigenformer::matrix<double>& logits, index_t r, int target) {
  double sum = 0;
  for (index_t v = 0; v < logits.cols(); ++v) sum += std::exp(logits(r, v));
  return -std::log(std::exp(logits(r, target)) / sum);
}

TEST(CrossEntropy, IsTheMeanNegativeLogLikelihoodOfTheTargets) {
  ref::rng r(121);
  const eigenformer::matrix<double> logits = ref::random_matrix<double>(4, 9, r, 3.0);
  const std::vector<eigenformer::token_id> targets{0, 8, 3, 3};
  std::vector<double> rows;
  double expected = 0;
  for (index_t i = 0; i < 4; ++i) expected += naive_row_loss(logits, i, targets[size_t(i)]) / 4;
  EXPECT_NEAR(eigenformer::cross_entropy_loss<double>(logits, targets, rows), expected, 1e-12);
  // Uniform logits: the loss is log V whatever the target.
  const eigenformer::matrix<double> flat = eigenformer::matrix<double>::Constant(4, 9, 2.5);
  EXPECT_NEAR(eigenformer::cross_entropy_loss<double>(flat, targets, rows), std::log(9.0), 1e-12);
}

TEST(CrossEntropy, HugeLogitsStayFinite) {
  eigenformer::matrix<float> logits(1, 3);
  logits << 1e30f, -1e30f, 0.0f;
  std::vector<double> rows;
  EXPECT_NEAR(eigenformer::cross_entropy_loss<float>(logits, {0}, rows), 0.0, 1e-6);
  EXPECT_TRUE(std::isfinite(eigenformer::cross_entropy_loss<float>(logits, {1}, rows)));
  eigenformer::matrix<float> d(1, 3);
  eigenformer::cross_entropy_backward<float>(logits, {1}, 1.0f, d);
  EXPECT_TRUE(d.allFinite());
}

TEST(CrossEntropyBackward, MatchesFiniteDifferences) {
  ref::rng r(122);
  eigenformer::matrix<double> logits = ref::random_matrix<double>(5, 6, r, 2.0);
  const std::vector<eigenformer::token_id> targets{1, 0, 5, 2, 2};
  std::vector<double> rows;
  const auto loss = [&] { return eigenformer::cross_entropy_loss<double>(logits, targets, rows); };
  eigenformer::matrix<double> d(5, 6);
  eigenformer::cross_entropy_backward<double>(logits, targets, 1.0 / 5, d);
  EXPECT_LT(gradcheck::relative_error(logits, d, loss), gradcheck::tolerance);
  // In place, as training does it.
  eigenformer::matrix<double> in_place = logits;
  eigenformer::cross_entropy_backward<double>(in_place, targets, 1.0 / 5, in_place);
  EXPECT_EQ((in_place - d).norm(), 0.0);
}

TEST(CrossEntropy, RejectsTargetsOutsideTheVocabulary) {
  const eigenformer::matrix<double> logits = eigenformer::matrix<double>::Zero(2, 4);
  std::vector<double> rows;
  EXPECT_THROW(eigenformer::cross_entropy_loss<double>(logits, {0, 4}, rows),
               eigenformer::value_error);
  EXPECT_THROW(eigenformer::cross_entropy_loss<double>(logits, {0, -1}, rows),
               eigenformer::value_error);
  EXPECT_THROW(eigenformer::cross_entropy_loss<double>(logits, {0}, rows),
               eigenformer::shape_error);
}

}  // namespace
