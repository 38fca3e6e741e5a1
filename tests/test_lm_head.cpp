#include <gtest/gtest.h>

#include <eigenformer/layers/lm_head.hpp>

#include "gradient_check.hpp"
#include "reference.hpp"

namespace {

TEST(LmHead, LogitsAreDotProductsWithEachVocabularyRow) {
  ref::rng r(111);
  const eigenformer::matrix<double> x = ref::random_matrix<double>(3, 4, r);
  const eigenformer::matrix<double> e = ref::random_matrix<double>(450, 4, r);  // > 2 blocks
  eigenformer::matrix<double> logits(3, 450);
  eigenformer::lm_head_forward<double>(x, e, logits);
  for (index_t t = 0; t < 3; ++t) {
    for (index_t v = 0; v < 450; ++v) {
      double dot = 0;
      for (index_t c = 0; c < 4; ++c) dot += x(t, c) * e(v, c);
      EXPECT_NEAR(logits(t, v), dot, 1e-12);
    }
  }
}

TEST(LmHeadBackward, MatchesFiniteDifferences) {
  ref::rng r(112);
  eigenformer::matrix<double> x = ref::random_matrix<double>(3, 5, r);
  eigenformer::matrix<double> e = ref::random_matrix<double>(7, 5, r);
  const eigenformer::matrix<double> probe = ref::random_matrix<double>(3, 7, r);
  const auto loss = [&] {
    eigenformer::matrix<double> logits(3, 7);
    eigenformer::lm_head_forward<double>(x, e, logits);
    return gradcheck::probe_loss(logits, probe);
  };
  eigenformer::matrix<double> d_e = eigenformer::matrix<double>::Zero(7, 5);
  eigenformer::matrix<double> d_x = eigenformer::matrix<double>::Zero(3, 5);
  eigenformer::lm_head_backward<double>(x, e, probe, d_e, d_x);
  EXPECT_LT(gradcheck::relative_error(e, d_e, loss), gradcheck::tolerance);
  EXPECT_LT(gradcheck::relative_error(x, d_x, loss), gradcheck::tolerance);
}

}  // namespace
