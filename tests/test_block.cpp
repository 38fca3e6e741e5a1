#include <gtest/gtest.h>

#include <eigenformer/layers/block.hpp>

#include "reference.hpp"

namespace {

template <class Scalar>
class Block : public ::testing::Test {};
TYPED_TEST_SUITE(Block, ref::scalar_types);

TYPED_TEST(Block, PreLayerNormResidualMatchesNaiveLoops) {
  using S = TypeParam;
  const auto config = ref::tiny_config<S>();
  const auto weights = ref::random_weights<S>(config, 23);
  ref::rng r(1);
  const eigenformer::index_t T = 7;
  eigenformer::matrix<S> x = ref::random_matrix<S>(T, config.n_embd, r, 1.0);
  const auto expected = ref::block(ref::to_grid(x), weights.blocks[0], int(config.n_head), 1e-5);
  eigenformer::block_scratch<S> scratch(T, config.n_embd, config.mlp_hidden());
  eigenformer::block_forward<S>(x, weights.blocks[0], config.n_head, S(1e-5), scratch);
  EXPECT_LT(ref::relative_error(x, expected), (std::is_same_v<S, float> ? 1e-5 : 1e-12));
}

}  // namespace
