// Golden tests of the Llama family: every fixture of tests/make_llama_fixtures.py (an independent
// float64 PyTorch implementation written from transformers' modeling code) — logits of the whole
// sequence, KV-cache decoding row by row, greedy tokens — and the loader's error paths.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <eigenformer/io/hf_model.hpp>
#include <nlohmann/json.hpp>

#include "reference.hpp"

namespace {

namespace fs = std::filesystem;
namespace ef = eigenformer;
const std::string fixtures = std::string(EIGENFORMER_FIXTURES_DIR) + "/llama";

const char* const fixture_names[] = {"llama_gqa",
                                     "llama3_scaled_mqa_tied",
                                     "llama_biases_linear_rope",
                                     "qwen2_window_disabled_bf16",
                                     "qwen3_qknorm_tied_extra_head_f16",
                                     "mistral_window_sharded"};

struct expected_run {
  std::vector<ef::token_id> tokens;
  std::size_t prompt_length = 0;
  ref::grid logits;
};

expected_run read_expected(const std::string& dir) {
  std::ifstream in(dir + "/expected.json");
  const auto j = nlohmann::json::parse(in);
  return {j.at("tokens").get<std::vector<ef::token_id>>(), j.at("prompt_length").get<std::size_t>(),
          j.at("logits").get<ref::grid>()};
}

/// ||a - b|| / ||b|| over all entries (Frobenius): the issue's normwise relative error.
template <class Derived>
double normwise_error(const Eigen::MatrixBase<Derived>& actual, const ref::grid& expected,
                      std::size_t first_row = 0) {
  double diff = 0, norm = 0;
  for (ef::index_t i = 0; i < actual.rows(); ++i) {
    const auto& row = expected.at(first_row + std::size_t(i));
    EXPECT_EQ(std::size_t(actual.cols()), row.size());
    for (ef::index_t j = 0; j < actual.cols(); ++j) {
      const double d = double(actual(i, j)) - row[std::size_t(j)];
      diff += d * d;
      norm += row[std::size_t(j)] * row[std::size_t(j)];
    }
  }
  return std::sqrt(diff / norm);
}

template <class Scalar>
double tolerance() {
  return std::is_same_v<Scalar, float> ? 1e-5 : 1e-10;
}

template <class Scalar>
class LlamaGolden : public ::testing::Test {};
TYPED_TEST_SUITE(LlamaGolden, ref::scalar_types);

TYPED_TEST(LlamaGolden, LogitsMatchTheFloat64Reference) {
  using S = TypeParam;
  for (const char* name : fixture_names) {
    const std::string dir = fixtures + "/" + name;
    const auto model = ef::load_hf_model<S>(dir);
    EXPECT_NO_THROW(ef::validate_weights(model.config, model.weights)) << name;
    const auto expected = read_expected(dir);
    const auto logits = ef::forward(model, expected.tokens);
    const double err = normwise_error(logits, expected.logits);
    EXPECT_LT(err, tolerance<S>()) << name;
    // Every row, not only the norm over all: an error at one position must not hide.
    EXPECT_LT(ref::relative_error(logits, expected.logits), 10 * tolerance<S>()) << name;
  }
}

TYPED_TEST(LlamaGolden, KvCacheDecodingEqualsTheReferenceRowByRow) {
  using S = TypeParam;
  for (const char* name : fixture_names) {
    const std::string dir = fixtures + "/" + name;
    const auto model = ef::load_hf_model<S>(dir);
    const auto expected = read_expected(dir);
    const std::size_t P = expected.prompt_length;
    // A cache smaller than n_ctx (64): just the sequence.
    ef::basic_kv_cache<S> cache(model.config, ef::index_t(expected.tokens.size()));
    ef::basic_activations<S> acts(model.config, ef::index_t(P));
    const std::vector<ef::token_id> prompt(expected.tokens.begin(), expected.tokens.begin() + P);
    const auto prefill = ef::forward(model.config, model.weights, cache, prompt, acts,
                                     ef::logits_for::all_positions);
    EXPECT_LT(normwise_error(prefill, expected.logits, 0), tolerance<S>()) << name << " prefill";
    for (std::size_t t = P; t < expected.tokens.size(); ++t) {
      const auto step = ef::forward(model.config, model.weights, cache, {expected.tokens[t]}, acts);
      EXPECT_LT(normwise_error(step, expected.logits, t), tolerance<S>())
          << name << " position " << t;
    }
    EXPECT_EQ(cache.n_past, ef::index_t(expected.tokens.size()));
    EXPECT_THROW(ef::forward(model.config, model.weights, cache, {1}, acts), ef::shape_error);
  }
}

TYPED_TEST(LlamaGolden, GreedyDecodingThroughTheCacheGivesTheReferenceTokens) {
  using S = TypeParam;
  for (const char* name : fixture_names) {
    const std::string dir = fixtures + "/" + name;
    const auto model = ef::load_hf_model<S>(dir);
    const auto expected = read_expected(dir);
    std::vector<ef::token_id> ids(expected.tokens.begin(),
                                  expected.tokens.begin() + expected.prompt_length);
    ef::basic_kv_cache<S> cache(model.config);
    ef::basic_activations<S> acts(model.config, ef::index_t(ids.size()),
                                  ef::logits_for::last_position);
    const auto argmax = [](const auto& logits) {
      ef::index_t best = 0;
      logits.row(0).maxCoeff(&best);
      return ef::token_id(best);
    };
    ids.push_back(argmax(ef::forward(model.config, model.weights, cache, ids, acts)));
    while (ids.size() < expected.tokens.size()) {
      ids.push_back(argmax(ef::forward(model.config, model.weights, cache, {ids.back()}, acts)));
    }
    EXPECT_EQ(ids, expected.tokens) << name;
  }
}

TEST(LlamaConfig, ReadsTheFieldsThatChangeTheMath) {
  const auto qwen3 = ef::load_hf_model<float>(fixtures + "/qwen3_qknorm_tied_extra_head_f16");
  EXPECT_EQ(qwen3.config.model_type, "qwen3");
  EXPECT_EQ(qwen3.config.head_dim(), 16);  // not hidden / heads = 8
  EXPECT_EQ(qwen3.config.kv_heads(), 2);
  EXPECT_TRUE(qwen3.config.qk_norm);
  EXPECT_TRUE(qwen3.weights.tied_lm_head());  // the file's lm_head.weight is ignored
  const auto qwen2 = ef::load_hf_model<float>(fixtures + "/qwen2_window_disabled_bf16");
  EXPECT_TRUE(qwen2.config.qkv_bias);  // although attention_bias is false
  EXPECT_FALSE(qwen2.config.out_bias);
  EXPECT_EQ(qwen2.config.sliding_window, 0);  // use_sliding_window: false
  const auto mistral = ef::load_hf_model<float>(fixtures + "/mistral_window_sharded");
  EXPECT_EQ(mistral.config.sliding_window, 5);
  EXPECT_EQ(mistral.config.kv_heads(), 1);
  EXPECT_EQ(mistral.config.eos_token_ids, std::vector<ef::token_id>{2});
  EXPECT_EQ(mistral.config.bos_token_id, 1);
  const auto llama3 = ef::load_hf_model<float>(fixtures + "/llama3_scaled_mqa_tied");
  EXPECT_EQ(llama3.config.rope.scaling, ef::rope_scaling_kind::llama3);
  EXPECT_EQ(llama3.config.rope.original_context, 16);
}

std::string config_error(const std::string& text) {
  try {
    ef::parse_hf_llama_config(text, "config.json");
  } catch (const ef::format_error& e) {
    return e.what();
  }
  return "no error";
}

TEST(LlamaConfig, RefusesWhatItDoesNotComputeNamingTheField) {
  const std::string head =
      R"({"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
          "num_attention_heads": 4, "vocab_size": 97, "max_position_embeddings": 64, )";
  EXPECT_EQ(config_error(head + R"("model_type": "llama"})"), "no error");
  EXPECT_EQ(config_error(head + R"("model_type": "gemma"})"),
            "config.json: model_type 'gemma' is not a Llama-family model (llama, mistral, qwen2, "
            "qwen3)");
  EXPECT_EQ(config_error(head + R"("model_type": "llama", "hidden_act": "gelu"})"),
            "config.json: hidden_act 'gelu' is not supported (only silu)");
  EXPECT_EQ(
      config_error(head +
                   R"("model_type": "llama", "rope_scaling": {"rope_type": "yarn", "factor": 4}})"),
      "config.json: rope_scaling.rope_type 'yarn' is not supported (default, linear and llama3 "
      "are)");
  EXPECT_EQ(
      config_error(head + R"("model_type": "llama", "rope_parameters": {"rope_type": "dynamic"}})"),
      "config.json: rope_parameters.rope_type 'dynamic' is not supported (default, linear "
      "and llama3 are)");
  EXPECT_EQ(config_error(head + R"("model_type": "qwen2", "use_sliding_window": true})"),
            "config.json: use_sliding_window = true (per-layer sliding windows) is not supported");
  EXPECT_EQ(config_error(head + R"("model_type": "llama", "num_key_value_heads": 3})"),
            "config.json: config: n_head = 4 is not a multiple of n_kv_head = 3");
  EXPECT_EQ(config_error(head + R"("model_type": "llama", "partial_rotary_factor": 0.5})"),
            "config.json: partial_rotary_factor = 0.5 is not supported (only 1)");
  EXPECT_EQ(config_error(R"({"model_type": "llama", "hidden_size": 32})"),
            "config.json: missing integer 'intermediate_size'");
  EXPECT_EQ(config_error(head + R"("model_type": "llama", "rms_norm_eps": "small"})"),
            "config.json: 'rms_norm_eps' is \"small\", not a number");
  EXPECT_EQ(config_error(head + R"("model_type": "llama", "eos_token_id": [2, -1]})"),
            "config.json: 'eos_token_id' holds -1, not a token id");
  // v5 layout: rope_theta inside rope_parameters.
  const auto c = ef::parse_hf_llama_config(
      head +
          R"("model_type": "llama", "rope_parameters": {"rope_type": "default", "rope_theta": 5e5}})",
      "config.json");
  EXPECT_EQ(c.rope.theta, 5e5);
  EXPECT_EQ(c.rope.scaling, ef::rope_scaling_kind::none);
}

class LlamaFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ef_llama_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(LlamaFiles, SavedCheckpointsAreTheHuggingFaceLayoutBitForBit) {
  for (const char* name : {"llama_gqa", "llama_biases_linear_rope"}) {
    const std::string src = fixtures + "/" + name;
    const auto model = ef::load_hf_model<float>(src);
    ef::save_hf_model(model, dir_.string());
    const ef::safetensors_file original(src + "/model.safetensors");
    const ef::safetensors_file saved((dir_ / "model.safetensors").string());
    std::size_t compared = 0;
    for (const auto& [tensor, info] : original.tensors()) {
      if (tensor.find("rotary_emb") != std::string::npos) {
        EXPECT_FALSE(saved.contains(tensor));
        continue;
      }
      ASSERT_TRUE(saved.contains(tensor)) << tensor;
      EXPECT_EQ(saved.info(tensor).shape, info.shape) << tensor;
      const auto a = original.read<float>(tensor, info.shape);
      const auto b = saved.read<float>(tensor, info.shape);
      EXPECT_TRUE(a == b) << tensor;
      ++compared;
    }
    EXPECT_EQ(compared + 1, original.tensors().size());
    const auto reloaded = ef::load_hf_model<float>(dir_.string());
    const auto expected = read_expected(src);
    EXPECT_TRUE(ef::forward(reloaded, expected.tokens) == ef::forward(model, expected.tokens));
  }
}

TEST_F(LlamaFiles, MissingOrMisshapenTensorsAreNamed) {
  const std::string src = fixtures + "/llama_gqa";
  fs::copy_file(src + "/config.json", dir_ / "config.json");
  const ef::safetensors_file original(src + "/model.safetensors");
  const auto write_without = [&](const std::string& skip, const std::string& reshape) {
    ef::safetensors_writer w;
    for (const auto& [tensor, info] : original.tensors()) {
      if (tensor == skip) continue;
      auto m = original.read<float>(tensor, info.shape);
      auto shape = info.shape;
      if (tensor == reshape) {
        m.resize(1, m.size());
        shape = {std::int64_t(m.size())};
      }
      w.add<float>(tensor, m, shape);
    }
    w.write((dir_ / "model.safetensors").string());
  };
  const auto error_of = [&] {
    try {
      ef::load_hf_model<float>(dir_.string());
    } catch (const ef::error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  write_without("model.layers.1.self_attn.k_proj.weight", "");
  EXPECT_NE(error_of().find("tensor 'model.layers.1.self_attn.k_proj.weight' is missing"),
            std::string::npos)
      << error_of();
  write_without("", "model.layers.0.mlp.down_proj.weight");
  EXPECT_NE(error_of().find("tensor 'model.layers.0.mlp.down_proj.weight' has shape [1536], "
                            "expected [32, 48]"),
            std::string::npos)
      << error_of();
  write_without("lm_head.weight", "");  // untied config: the head is required
  EXPECT_NE(error_of().find("'lm_head.weight' is missing"), std::string::npos) << error_of();
}

TEST_F(LlamaFiles, ShardIndexErrorsAreClear) {
  const std::string src = fixtures + "/mistral_window_sharded";
  for (const auto& entry : fs::directory_iterator(src)) {
    fs::copy_file(entry.path(), dir_ / entry.path().filename());
  }
  EXPECT_NO_THROW(ef::load_hf_model<float>(dir_.string()));
  const auto error_with_index = [&](const std::string& index) {
    std::ofstream(dir_ / "model.safetensors.index.json") << index;
    try {
      ef::load_hf_model<float>(dir_.string());
    } catch (const ef::error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_with_index("{").find("malformed JSON"), std::string::npos);
  EXPECT_NE(error_with_index(R"({"weight_map": 3})").find("no 'weight_map' object"),
            std::string::npos);
  EXPECT_NE(error_with_index(R"({"weight_map": {"model.norm.weight": "../etc/passwd"}})")
                .find("shard name '../etc/passwd' is not a file"),
            std::string::npos);
  EXPECT_NE(error_with_index(
                R"({"weight_map": {"model.norm.weight": "model-00001-of-00003.safetensors"}})")
                .find("is not in model-00001-of-00003.safetensors"),
            std::string::npos);
  EXPECT_NE(error_with_index(R"({"weight_map": {"model.norm.weight": "absent.safetensors"}})")
                .find("absent.safetensors"),
            std::string::npos);
}

TEST(LlamaThreads, LogitsAreBitIdenticalForAnyThreadCount) {
  const auto model = ef::load_hf_model<float>(fixtures + "/mistral_window_sharded");
  const auto expected = read_expected(fixtures + "/mistral_window_sharded");
  ef::set_num_threads(1);
  const auto one = ef::forward(model, expected.tokens);
  for (int threads : {2, 3}) {
    ef::set_num_threads(threads);
    EXPECT_TRUE(ef::forward(model, expected.tokens) == one) << threads << " threads";
  }
  ef::set_num_threads(2);
}

}  // namespace
