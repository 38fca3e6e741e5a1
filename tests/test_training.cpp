// The decoder's training forward/backward (model/training.hpp): finite differences in double for
// the whole model, PyTorch autograd on a committed fixture, and the inference path for B = 1.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <eigenformer/io/hf_gpt2.hpp>
#include <eigenformer/model/training.hpp>

#include "gradient_check.hpp"
#include "reference.hpp"

namespace {

using eigenformer::model_config;
using eigenformer::token_id;

eigenformer::model_config small_config() {
  model_config c = ref::tiny_config<double>();  // 2 layers, 4 heads, C = 16, V = 37
  c.n_ctx = 6;
  return c;
}

std::vector<token_id> random_tokens(std::size_t n, int vocab, std::uint64_t seed) {
  ref::rng r(seed);
  std::vector<token_id> t(n);
  for (auto& id : t) id = r.below(vocab);
  return t;
}

/// Every parameter's gradient, whole model, against central differences of the loss.
void check_model_gradients(bool untied) {
  // Thousands of tiny forward passes: one thread avoids waking a team for each small product.
  const int threads = eigenformer::num_threads();
  eigenformer::set_num_threads(1);
  const auto config = small_config();
  auto w = ref::random_weights<double>(config, 131, untied);
  constexpr index_t B = 2, T = 5;
  const auto tokens = random_tokens(B * T, int(config.vocab_size), 132);
  auto targets = random_tokens(B * T, int(config.vocab_size), 133);
  targets[3] = tokens[0];  // a token that is both input and target: the tied head's two paths
  eigenformer::basic_training_activations<double> acts(config, B, T);
  const auto loss = [&] { return eigenformer::training_forward(config, w, tokens, targets, acts); };
  loss();
  auto grads = eigenformer::zeros_like(config, w);
  eigenformer::training_backward(config, w, tokens, targets, acts, grads);

  std::vector<std::pair<std::string, Eigen::Map<Eigen::VectorXd>>> params, analytic;
  const auto collect = [](auto& list) {
    return [&list](const std::string& name, auto& t, const auto&) {
      list.emplace_back(name, Eigen::Map<Eigen::VectorXd>(t.data(), t.size()));
    };
  };
  eigenformer::for_each_parameter(config, w, collect(params));
  eigenformer::for_each_parameter(config, grads, collect(analytic));
  ASSERT_EQ(params.size(), untied ? 29u : 28u);
  for (std::size_t i = 0; i < params.size(); ++i) {
    EXPECT_LT(gradcheck::relative_error(params[i].second, analytic[i].second, loss),
              gradcheck::tolerance)
        << params[i].first;
  }
  eigenformer::set_num_threads(threads);
}

TEST(TrainingBackward, WholeModelMatchesFiniteDifferencesTiedHead) {
  check_model_gradients(false);
}
TEST(TrainingBackward, WholeModelMatchesFiniteDifferencesUntiedHead) {
  check_model_gradients(true);
}

template <class Scalar>
class TrainingForward : public ::testing::Test {};
TYPED_TEST_SUITE(TrainingForward, ref::scalar_types);

TYPED_TEST(TrainingForward, BatchOfOneEqualsTheInferencePath) {
  using S = TypeParam;
  const auto config = ref::tiny_config<S>();
  const auto w = ref::random_weights<S>(config, 141);
  const index_t T = config.n_ctx;
  const auto tokens = random_tokens(std::size_t(T), int(config.vocab_size), 142);
  const auto targets = random_tokens(std::size_t(T), int(config.vocab_size), 143);
  eigenformer::basic_training_activations<S> acts(config, 1, T);
  const double loss = eigenformer::training_forward(config, w, tokens, targets, acts);
  eigenformer::basic_activations<S> inference(config, T);
  const auto logits = eigenformer::forward(config, w, tokens, inference);
  const double tol = std::is_same_v<S, float> ? 1e-5 : 1e-12;
  EXPECT_LT(ref::relative_error(acts.logits, ref::to_grid(logits)), tol);
  // And the loss is the mean of -log softmax(logits)[target], from the inference logits.
  double expected = 0;
  for (index_t t = 0; t < T; ++t) {
    double m = -1e300, sum = 0;
    for (index_t v = 0; v < logits.cols(); ++v) m = std::max(m, double(logits(t, v)));
    for (index_t v = 0; v < logits.cols(); ++v) sum += std::exp(double(logits(t, v)) - m);
    expected += (m + std::log(sum) - double(logits(t, targets[size_t(t)]))) / double(T);
  }
  EXPECT_NEAR(loss, expected, tol * 10);
}

TEST(TrainingBackward, AccumulatingHalfBatchesEqualsTheWholeBatch) {
  const auto config = small_config();
  const auto w = ref::random_weights<double>(config, 151);
  constexpr index_t T = 5;
  const auto tokens = random_tokens(2 * T, int(config.vocab_size), 152);
  const auto targets = random_tokens(2 * T, int(config.vocab_size), 153);
  eigenformer::basic_training_activations<double> whole(config, 2, T), half(config, 1, T);
  auto g_whole = eigenformer::zeros_like(config, w), g_acc = eigenformer::zeros_like(config, w);
  eigenformer::training_forward(config, w, tokens, targets, whole);
  eigenformer::training_backward(config, w, tokens, targets, whole, g_whole);
  for (index_t b = 0; b < 2; ++b) {
    const std::vector<token_id> x(tokens.begin() + b * T, tokens.begin() + (b + 1) * T);
    const std::vector<token_id> y(targets.begin() + b * T, targets.begin() + (b + 1) * T);
    eigenformer::training_forward(config, w, x, y, half);
    eigenformer::training_backward(config, w, x, y, half, g_acc, 0.5);
  }
  double max_diff = 0, max_abs = 0;
  std::vector<const double*> a, b;
  std::vector<index_t> sizes;
  eigenformer::for_each_parameter(config, g_whole,
                                  [&](const std::string&, const auto& t, const auto&) {
                                    a.push_back(t.data());
                                    sizes.push_back(t.size());
                                  });
  eigenformer::for_each_parameter(
      config, g_acc,
      [&](const std::string&, const auto& t, const auto&) { b.push_back(t.data()); });
  for (std::size_t i = 0; i < a.size(); ++i) {
    for (index_t j = 0; j < sizes[i]; ++j) {
      max_diff = std::max(max_diff, std::abs(a[i][j] - b[i][j]));
      max_abs = std::max(max_abs, std::abs(a[i][j]));
    }
  }
  EXPECT_GT(max_abs, 0.0);
  EXPECT_LT(max_diff / max_abs, 1e-12);
}

TEST(Training, RejectsBadBatches) {
  const auto config = small_config();
  auto w = ref::random_weights<double>(config, 161);
  eigenformer::basic_training_activations<double> acts(config, 2, 3);
  const std::vector<token_id> ok(6, 1);
  EXPECT_THROW(eigenformer::training_forward(config, w, std::vector<token_id>(5, 1), ok, acts),
               eigenformer::shape_error);
  EXPECT_THROW(eigenformer::training_forward(config, w, {1, 2, 3, 4, 5, 99}, ok, acts),
               eigenformer::value_error);
  EXPECT_THROW(eigenformer::training_forward(config, w, ok, {1, 2, 3, 4, 5, -1}, acts),
               eigenformer::value_error);
  EXPECT_THROW(eigenformer::basic_training_activations<double>(config, 1, config.n_ctx + 1),
               eigenformer::shape_error);
  EXPECT_THROW(eigenformer::basic_training_activations<double>(config, 0, 2),
               eigenformer::shape_error);
}

// --- Against PyTorch autograd (tests/make_training_fixture.py) ---

struct torch_fixture {
  std::string dir = std::string(EIGENFORMER_FIXTURES_DIR) + "/train_tiny";
  eigenformer::model m = eigenformer::load_hf_gpt2<float>(dir);
  nlohmann::json batch;
  std::vector<token_id> tokens, targets;
  torch_fixture() {
    std::ifstream in(dir + "/batch.json");
    batch = nlohmann::json::parse(in);
    tokens = batch["tokens"].get<std::vector<token_id>>();
    targets = batch["targets"].get<std::vector<token_id>>();
  }
  template <class Scalar>
  eigenformer::basic_model_weights<Scalar> read(const std::string& file) const {
    return eigenformer::read_hf_gpt2_weights<Scalar>(
        m.config, eigenformer::safetensors_file(dir + "/" + file));
  }
};

TEST(TrainingTorch, LossAndEveryGradientMatchAutograd) {
  torch_fixture f;
  const index_t B = f.batch["B"], T = f.batch["T"];
  eigenformer::training_activations acts(f.m.config, B, T);
  const double loss =
      eigenformer::training_forward(f.m.config, f.m.weights, f.tokens, f.targets, acts);
  EXPECT_NEAR(loss, f.batch["loss"].get<double>(), 1e-5 * f.batch["loss"].get<double>());
  auto grads = eigenformer::zeros_like(f.m.config, f.m.weights);
  eigenformer::training_backward(f.m.config, f.m.weights, f.tokens, f.targets, acts, grads);
  auto expected = f.read<double>("grads.safetensors");
  std::vector<std::tuple<std::string, const float*, index_t>> ours;
  eigenformer::for_each_parameter(f.m.config, grads,
                                  [&](const std::string& n, const auto& t, const auto&) {
                                    ours.emplace_back(n, t.data(), t.size());
                                  });
  std::size_t i = 0;
  eigenformer::for_each_parameter(
      f.m.config, expected, [&](const std::string& n, const auto& t, const auto&) {
        const auto& [name, data, size] = ours[i++];
        ASSERT_EQ(name, n);
        ASSERT_EQ(size, t.size());
        double max_diff = 0, max_abs = 0;
        for (index_t j = 0; j < size; ++j) {
          max_diff = std::max(max_diff, std::abs(double(data[j]) - t.data()[j]));
          max_abs = std::max(max_abs, std::abs(t.data()[j]));
        }
        EXPECT_GT(max_abs, 0.0) << n;
        EXPECT_LT(max_diff / max_abs, 1e-5) << n;
      });
  EXPECT_EQ(i, ours.size());
}

}  // namespace
