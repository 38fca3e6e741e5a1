// train/adamw.hpp against torch.optim.AdamW + clip_grad_norm_ (tests/make_training_fixture.py),
// and against the update rule written out in double.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <eigenformer/io/hf_gpt2.hpp>
#include <eigenformer/train/adamw.hpp>

#include "reference.hpp"

namespace {

using eigenformer::index_t;

struct fixture {
  std::string dir = std::string(EIGENFORMER_FIXTURES_DIR) + "/train_tiny";
  eigenformer::model m = eigenformer::load_hf_gpt2<float>(dir);
  nlohmann::json adamw;
  fixture() {
    std::ifstream in(dir + "/batch.json");
    adamw = nlohmann::json::parse(in)["adamw"];
  }
  eigenformer::model_weights read(const std::string& file) const {
    return eigenformer::read_hf_gpt2_weights<float>(
        m.config, eigenformer::safetensors_file(dir + "/" + file));
  }
  eigenformer::adamw_options options() const {
    eigenformer::adamw_options o;
    o.beta1 = adamw["beta1"];
    o.beta2 = adamw["beta2"];
    o.eps = adamw["eps"];
    o.weight_decay = adamw["weight_decay"];
    o.max_grad_norm = adamw["max_grad_norm"];
    return o;
  }
};

/// max |a - b| over every parameter of two weight sets of the same shape.
double max_difference(const eigenformer::model_config& c, eigenformer::model_weights& a,
                      eigenformer::model_weights& b) {
  std::vector<const float*> pa;
  std::vector<index_t> sizes;
  eigenformer::for_each_parameter(c, a, [&](const std::string&, const auto& t, const auto&) {
    pa.push_back(t.data());
    sizes.push_back(t.size());
  });
  double max_diff = 0;
  std::size_t i = 0;
  eigenformer::for_each_parameter(c, b, [&](const std::string&, const auto& t, const auto&) {
    for (index_t j = 0; j < sizes[i]; ++j)
      max_diff = std::max(max_diff, std::abs(double(pa[i][j]) - double(t.data()[j])));
    ++i;
  });
  return max_diff;
}

TEST(AdamW, TwoStepsEqualTorchOptimAdamWWithClipping) {
  fixture f;
  auto weights = f.m.weights;
  eigenformer::adamw_state state(f.m.config, weights);
  const auto options = f.options();
  for (int step = 1; step <= 2; ++step) {
    auto grads = f.read("grads.safetensors");  // torch feeds the same gradients each step
    const double norm = eigenformer::adamw_step(f.m.config, weights, grads, state, options,
                                                f.adamw["lr"].get<double>());
    EXPECT_NEAR(norm, 2 * options.max_grad_norm, 1e-5 * norm);  // the fixture clips to half
    auto expected = f.read("adamw_step" + std::to_string(step) + ".safetensors");
    // Parameters move by ~lr = 1e-2 per step; float rounding is ~1e-7 of values ~1.
    EXPECT_LT(max_difference(f.m.config, weights, expected), 2e-6) << "step " << step;
    // And they did move: the comparison is not between two unchanged copies.
    EXPECT_GT(max_difference(f.m.config, weights, f.m.weights), 1e-3);
  }
  EXPECT_EQ(state.step, 2);
}

TEST(AdamW, UpdateRuleWrittenOutInDouble) {
  // One scalar of a matrix (decayed) and one of a vector (not decayed), three steps.
  eigenformer::model_config c;
  c.n_layer = 1, c.n_head = 1, c.n_embd = 2, c.vocab_size = 3, c.n_ctx = 2;
  auto w = eigenformer::init_gpt2_weights<double>(c, 5);
  auto g = eigenformer::zeros_like(c, w);
  eigenformer::basic_adamw_state<double> state(c, w);
  eigenformer::adamw_options o;
  o.max_grad_norm = 0;  // off
  const double lr = 0.1, g_matrix = 0.3, g_vector = -2.0;
  double p_matrix = w.wte(1, 1), p_vector = w.ln_f.bias(0);
  double m1 = 0, v1 = 0, m2 = 0, v2 = 0;
  for (int t = 1; t <= 3; ++t) {
    eigenformer::set_zero(c, g);
    g.wte(1, 1) = g_matrix;
    g.ln_f.bias(0) = g_vector;
    eigenformer::adamw_step(c, w, g, state, o, lr);
    const auto expect = [&](double& p, double grad, double& m, double& v, bool decay) {
      if (decay) p *= 1 - lr * o.weight_decay;
      m = o.beta1 * m + (1 - o.beta1) * grad;
      v = o.beta2 * v + (1 - o.beta2) * grad * grad;
      const double m_hat = m / (1 - std::pow(o.beta1, t)), v_hat = v / (1 - std::pow(o.beta2, t));
      p -= lr * m_hat / (std::sqrt(v_hat) + o.eps);
    };
    expect(p_matrix, g_matrix, m1, v1, true);
    expect(p_vector, g_vector, m2, v2, false);
    EXPECT_NEAR(w.wte(1, 1), p_matrix, 1e-12) << "step " << t;
    EXPECT_NEAR(w.ln_f.bias(0), p_vector, 1e-12) << "step " << t;
  }
}

TEST(AdamW, ClipsTheGlobalNormAndRejectsNonFiniteGradients) {
  eigenformer::model_config c;
  c.n_layer = 1, c.n_head = 1, c.n_embd = 2, c.vocab_size = 3, c.n_ctx = 2;
  auto w = eigenformer::init_gpt2_weights<double>(c, 6);
  auto g = eigenformer::zeros_like(c, w);
  g.wte(0, 0) = 3, g.wpe(1, 1) = 4;  // norm 5
  eigenformer::basic_adamw_state<double> state(c, w);
  eigenformer::adamw_options o;
  o.max_grad_norm = 1;
  EXPECT_NEAR(eigenformer::adamw_step(c, w, g, state, o, 1e-3), 5.0, 1e-12);
  EXPECT_NEAR(g.wte(0, 0), 3.0 / (5 + 1e-6), 1e-12);  // clipped in place, as torch does
  EXPECT_NEAR(g.wpe(1, 1), 4.0 / (5 + 1e-6), 1e-12);
  g.wte(0, 0) = std::nan("");
  EXPECT_THROW(eigenformer::adamw_step(c, w, g, state, o, 1e-3), eigenformer::value_error);
  g.wte(0, 0) = 0;
  EXPECT_THROW(eigenformer::adamw_step(c, w, g, state, o, -1.0), eigenformer::value_error);
  o.beta2 = 1.0;
  EXPECT_THROW(eigenformer::adamw_step(c, w, g, state, o, 1e-3), eigenformer::value_error);
}

}  // namespace
