// The decoder's training forward/backward (model/training.hpp): finite differences in double for
// the whole model, PyTorch autograd on a committed fixture, and the inference path for B = 1.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <eigenformer/io/hf_gpt2.hpp>
#include <eigenformer/io/hf_llama.hpp>
#include <eigenformer/model/training.hpp>
#include <eigenformer/train/adamw.hpp>

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
void check_model_gradients(const model_config& config, eigenformer::basic_model_weights<double> w,
                           std::size_t n_tensors) {
  // Thousands of tiny forward passes: one thread avoids waking a team for each small product.
  const int threads = eigenformer::num_threads();
  eigenformer::set_num_threads(1);
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
  ASSERT_EQ(params.size(), n_tensors);
  for (std::size_t i = 0; i < params.size(); ++i) {
    EXPECT_LT(gradcheck::relative_error(params[i].second, analytic[i].second, loss),
              gradcheck::tolerance)
        << params[i].first;
  }
  eigenformer::set_num_threads(threads);
}

TEST(TrainingBackward, WholeModelMatchesFiniteDifferencesTiedHead) {
  const auto config = small_config();
  check_model_gradients(config, ref::random_weights<double>(config, 131, false), 28);
}
TEST(TrainingBackward, WholeModelMatchesFiniteDifferencesUntiedHead) {
  const auto config = small_config();
  check_model_gradients(config, ref::random_weights<double>(config, 131, true), 29);
}

/// A two-layer Llama-family model: GQA (4 query heads, 2 kv heads), rotary positions, RMSNorm,
/// SwiGLU, and the variant's extras.
model_config small_llama(const char* variant) {
  auto c = model_config::llama();
  c.n_layer = 2, c.n_head = 4, c.n_kv_head = 2, c.n_embd = 16, c.n_inner = 24;
  c.vocab_size = 23, c.n_ctx = 6, c.rope.theta = 500.0;
  c.model_type = variant;
  if (std::string(variant) == "qwen3") c.qk_norm = true, c.head_size = 6;  // d != C / H
  if (std::string(variant) == "qwen2") c.qkv_bias = true;
  if (std::string(variant) == "mistral") c.sliding_window = 3;
  return c;
}

eigenformer::basic_model_weights<double> random_llama_weights(const model_config& c, bool untied) {
  auto w = eigenformer::init_llama_weights<double>(c, 171, !untied);
  gradcheck::randomize(c, w, 172);
  return w;
}

TEST(TrainingBackward, LlamaWholeModelMatchesFiniteDifferences) {
  const auto c = small_llama("llama");
  check_model_gradients(c, random_llama_weights(c, false), 1 + 2 * 6 + 1);
}
TEST(TrainingBackward, Qwen3WholeModelWithQkNormsAndUntiedHeadMatchesFiniteDifferences) {
  const auto c = small_llama("qwen3");
  check_model_gradients(c, random_llama_weights(c, true), 1 + 2 * 8 + 2);
}
TEST(TrainingBackward, Qwen2WholeModelWithBiasesMatchesFiniteDifferences) {
  const auto c = small_llama("qwen2");
  check_model_gradients(c, random_llama_weights(c, false), 1 + 2 * 7 + 1);
}
TEST(TrainingBackward, MistralWholeModelWithAWindowMatchesFiniteDifferences) {
  const auto c = small_llama("mistral");
  check_model_gradients(c, random_llama_weights(c, false), 1 + 2 * 6 + 1);
}

template <class Scalar>
class TrainingForward : public ::testing::Test {};
TYPED_TEST_SUITE(TrainingForward, ref::scalar_types);

template <class S>
void check_batch_of_one(const model_config& config, const eigenformer::basic_model_weights<S>& w) {
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

TYPED_TEST(TrainingForward, BatchOfOneEqualsTheInferencePath) {
  using S = TypeParam;
  const auto config = ref::tiny_config<S>();
  check_batch_of_one<S>(config, ref::random_weights<S>(config, 141));
}

TYPED_TEST(TrainingForward, LlamaFamilyBatchOfOneEqualsTheInferencePath) {
  using S = TypeParam;
  for (const char* variant : {"llama", "qwen3", "qwen2", "mistral"}) {
    const auto config = small_llama(variant);
    auto w = eigenformer::init_llama_weights<S>(config, 141);
    gradcheck::randomize(config, w, 142);
    SCOPED_TRACE(variant);
    check_batch_of_one<S>(config, w);
  }
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

// --- The Llama family against PyTorch autograd (tests/make_llama_training_fixture.py) ---

/// Per tensor, max |ours - expected| / max |expected|; each tensor must be nonzero in `expected`.
template <class A, class B>
void expect_same_tensors(const model_config& c, const eigenformer::basic_model_weights<A>& ours,
                         const eigenformer::basic_model_weights<B>& expected, double tolerance,
                         const std::string& what) {
  std::vector<std::tuple<std::string, const A*, index_t>> list;
  eigenformer::for_each_parameter(c, ours, [&](const std::string& n, const auto& t, const auto&) {
    list.emplace_back(n, t.data(), t.size());
  });
  std::size_t i = 0;
  eigenformer::for_each_parameter(
      c, expected, [&](const std::string& n, const auto& t, const auto&) {
        const auto& [name, data, size] = list[i++];
        ASSERT_EQ(size, t.size()) << n;
        double max_diff = 0, max_abs = 0;
        for (index_t j = 0; j < size; ++j) {
          max_diff = std::max(max_diff, std::abs(double(data[j]) - double(t.data()[j])));
          max_abs = std::max(max_abs, std::abs(double(t.data()[j])));
        }
        EXPECT_GT(max_abs, 0.0) << what << " " << n;
        EXPECT_LT(max_diff / max_abs, tolerance) << what << " " << n;
      });
  EXPECT_EQ(i, list.size());
}

TEST(TrainingTorch, LlamaFamilyLossGradientsAndAdamWStepMatchAutograd) {
  for (const char* name : {"qwen3", "mistral_tied", "qwen2"}) {
    SCOPED_TRACE(name);
    const std::string dir = std::string(EIGENFORMER_FIXTURES_DIR) + "/train_llama/" + name;
    auto m = eigenformer::load_hf_llama<float>(dir);
    std::ifstream in(dir + "/batch.json");
    const auto batch = nlohmann::json::parse(in);
    const auto tokens = batch["tokens"].get<std::vector<token_id>>();
    const auto targets = batch["targets"].get<std::vector<token_id>>();
    const index_t B = batch["B"], T = batch["T"];
    const bool tied = m.weights.tied_lm_head();
    EXPECT_EQ(tied, std::string(name) == "mistral_tied");

    eigenformer::training_activations acts(m.config, B, T);
    const double loss = eigenformer::training_forward(m.config, m.weights, tokens, targets, acts);
    const double expected_loss = batch["loss"];
    EXPECT_NEAR(loss, expected_loss, 1e-5 * expected_loss);
    auto grads = eigenformer::zeros_like(m.config, m.weights);
    eigenformer::training_backward(m.config, m.weights, tokens, targets, acts, grads);
    const auto torch_grads = eigenformer::read_hf_llama_weights<double>(
        m.config, eigenformer::safetensors_shards(dir + "/grads"), tied);
    expect_same_tensors(m.config, grads, torch_grads, 1e-5, "gradient");

    // One AdamW step from torch's own gradients (rounded to float, as torch's step saw them).
    auto torch_grads_f = eigenformer::read_hf_llama_weights<float>(
        m.config, eigenformer::safetensors_shards(dir + "/grads"), tied);
    eigenformer::adamw_options options;
    const auto& a = batch["adamw"];
    options.beta1 = a["beta1"], options.beta2 = a["beta2"], options.eps = a["eps"];
    options.weight_decay = a["weight_decay"], options.max_grad_norm = a["max_grad_norm"];
    eigenformer::adamw_state state(m.config, m.weights);
    eigenformer::adamw_step(m.config, m.weights, torch_grads_f, state, options,
                            a["lr"].get<double>());
    const auto stepped = eigenformer::read_hf_llama_weights<float>(
        m.config, eigenformer::safetensors_shards(dir + "/adamw_step1"), tied);
    expect_same_tensors(m.config, m.weights, stepped, 2e-6, "after AdamW");
  }
}

}  // namespace
