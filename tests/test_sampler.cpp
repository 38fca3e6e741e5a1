#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include <eigenformer/model/sampler.hpp>

namespace {

using eigenformer::sampler;
using eigenformer::sampling_params;
using eigenformer::token_id;
using row = Eigen::RowVectorXd;

row log_probs(std::initializer_list<double> p) {
  row r(static_cast<Eigen::Index>(p.size()));
  Eigen::Index i = 0;
  for (double v : p) r(i++) = std::log(v);
  return r;
}

std::map<token_id, double> frequencies(sampler& s, const row& logits, int draws) {
  std::map<token_id, double> f;
  for (int i = 0; i < draws; ++i) f[s.sample(logits, {})] += 1.0 / draws;
  return f;
}

TEST(Sampler, TemperatureZeroIsGreedy) {
  const row logits = (row(5) << 0.1, 3.0, -2.0, 2.9, 3.0).finished();
  for (std::uint64_t seed = 0; seed < 5; ++seed) {
    sampler s({0.0, 0, 1.0, 1.0, seed});
    EXPECT_EQ(s.sample(logits, {}), 1);  // ties go to the smaller id
  }
}

TEST(Sampler, TemperatureOneFollowsTheSoftmax) {
  sampler s({1.0, 0, 1.0, 1.0, 42});
  const auto f = frequencies(s, log_probs({0.1, 0.2, 0.3, 0.4}), 40000);
  EXPECT_NEAR(f.at(0), 0.1, 0.01);
  EXPECT_NEAR(f.at(1), 0.2, 0.01);
  EXPECT_NEAR(f.at(2), 0.3, 0.01);
  EXPECT_NEAR(f.at(3), 0.4, 0.01);
}

TEST(Sampler, LowTemperatureSharpens) {
  sampler s({0.5, 0, 1.0, 1.0, 1});
  // p^(1/0.5) = p^2: 0.01, 0.04, 0.09, 0.16 over 0.30
  const auto f = frequencies(s, log_probs({0.1, 0.2, 0.3, 0.4}), 40000);
  EXPECT_NEAR(f.at(3), 0.16 / 0.30, 0.01);
  EXPECT_NEAR(f.at(0), 0.01 / 0.30, 0.01);
}

TEST(Sampler, TopKNeverLeavesTheKBest) {
  Eigen::RowVectorXf logits(50);
  for (int i = 0; i < 50; ++i)
    logits(i) = std::sin(float(i) * 1.7f) * 3.0f;  // best: ids of the 3 largest
  std::vector<int> order(50);
  for (int i = 0; i < 50; ++i) order[size_t(i)] = i;
  std::sort(order.begin(), order.end(), [&](int a, int b) { return logits(a) > logits(b); });
  sampler s({2.0, 3, 1.0, 1.0, 7});  // high temperature: everything would be likely
  std::map<token_id, int> seen;
  for (int i = 0; i < 5000; ++i) ++seen[s.sample(logits, {})];
  EXPECT_EQ(seen.size(), 3u);
  for (int k = 0; k < 3; ++k) EXPECT_GT(seen[order[size_t(k)]], 0);
}

TEST(Sampler, TopPKeepsTheSmallestSetReachingP) {
  const row logits = log_probs({0.05, 0.5, 0.15, 0.3});
  {
    sampler s({1.0, 0, 0.75, 1.0, 3});  // 0.5 < 0.75 <= 0.5 + 0.3: keeps {1, 3}
    const auto f = frequencies(s, logits, 20000);
    EXPECT_EQ(f.size(), 2u);
    EXPECT_NEAR(f.at(1), 0.5 / 0.8, 0.015);
    EXPECT_NEAR(f.at(3), 0.3 / 0.8, 0.015);
  }
  {
    sampler s({1.0, 0, 0.5, 1.0, 3});  // the top token alone reaches 0.5
    EXPECT_EQ(frequencies(s, logits, 2000).size(), 1u);
  }
  {
    sampler s({1.0, 0, 0.9, 1.0, 3});  // 0.8 < 0.9: needs the third
    const auto f = frequencies(s, logits, 20000);
    EXPECT_EQ(f.size(), 3u);
    EXPECT_EQ(f.count(0), 0u);
  }
}

TEST(Sampler, TopKAndTopPCombine) {
  sampler s({1.0, 2, 0.99, 1.0, 5});  // k = 2 keeps {1, 3}; p over those keeps both
  const auto f = frequencies(s, log_probs({0.05, 0.5, 0.15, 0.3}), 10000);
  EXPECT_EQ(f.size(), 2u);
  EXPECT_NEAR(f.at(1), 0.5 / 0.8, 0.02);
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  sampler greedy({0.0, 0, 1.0, 1.2, 0});
  EXPECT_EQ(greedy.sample((row(2) << 2.0, 1.9).finished(), {}), 0);
  EXPECT_EQ(greedy.sample((row(2) << 2.0, 1.9).finished(), {0, 0, 0}), 1);  // 2 / 1.2 < 1.9
  EXPECT_EQ(greedy.sample((row(2) << -1.0, -1.1).finished(), {0}), 1);      // -1.2 < -1.1
  EXPECT_EQ(greedy.sample((row(2) << 2.0, 1.5).finished(), {0}), 0);        // 1.67 > 1.5
}

TEST(Sampler, SeedMakesRunsReproducible) {
  const row logits = log_probs({0.2, 0.2, 0.2, 0.2, 0.2});
  sampler a({1.0, 0, 1.0, 1.0, 99}), b({1.0, 0, 1.0, 1.0, 99}), c({1.0, 0, 1.0, 1.0, 100});
  std::vector<token_id> ra, rb, rc;
  for (int i = 0; i < 64; ++i) {
    ra.push_back(a.sample(logits, {}));
    rb.push_back(b.sample(logits, {}));
    rc.push_back(c.sample(logits, {}));
  }
  EXPECT_EQ(ra, rb);
  EXPECT_NE(ra, rc);
}

TEST(Sampler, InvalidParametersThrow) {
  EXPECT_THROW(sampler({-0.1, 0, 1.0, 1.0, 0}), eigenformer::value_error);
  EXPECT_THROW(sampler({NAN, 0, 1.0, 1.0, 0}), eigenformer::value_error);
  EXPECT_THROW(sampler({1.0, -1, 1.0, 1.0, 0}), eigenformer::value_error);
  EXPECT_THROW(sampler({1.0, 0, 0.0, 1.0, 0}), eigenformer::value_error);
  EXPECT_THROW(sampler({1.0, 0, 1.5, 1.0, 0}), eigenformer::value_error);
  EXPECT_THROW(sampler({1.0, 0, 1.0, 0.0, 0}), eigenformer::value_error);
}

}  // namespace
