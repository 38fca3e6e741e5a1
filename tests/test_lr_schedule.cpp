#include <gtest/gtest.h>

#include <cmath>

#include <eigenformer/train/lr_schedule.hpp>

namespace {

TEST(WarmupCosine, RisesLinearlyThenFollowsHalfACosine) {
  const eigenformer::warmup_cosine_schedule s{1.0, 0.1, 4, 14};
  EXPECT_DOUBLE_EQ(s.at(0), 0.25);
  EXPECT_DOUBLE_EQ(s.at(3), 1.0);
  EXPECT_DOUBLE_EQ(s.at(4), 1.0);                                        // start of the decay
  EXPECT_NEAR(s.at(9), 0.1 + 0.45 * (1 + std::cos(M_PI * 0.5)), 1e-15);  // half way: the mean
  EXPECT_NEAR(s.at(13), 0.1 + 0.45 * (1 + std::cos(M_PI * 0.9)), 1e-15);
  EXPECT_DOUBLE_EQ(s.at(14), 0.1);
  EXPECT_DOUBLE_EQ(s.at(1000), 0.1);
  for (int t = 4; t < 14; ++t) EXPECT_GE(s.at(t), s.at(t + 1));
}

TEST(WarmupCosine, RejectsInconsistentSettings) {
  EXPECT_THROW((eigenformer::warmup_cosine_schedule{0.1, 1.0, 0, 10}.validate()),
               eigenformer::value_error);
  EXPECT_THROW((eigenformer::warmup_cosine_schedule{1.0, 0.1, -1, 10}.validate()),
               eigenformer::value_error);
  EXPECT_THROW((eigenformer::warmup_cosine_schedule{1.0, 0.1, 0, 0}.validate()),
               eigenformer::value_error);
}

}  // namespace
