// Golden tests: logits of the committed fixtures (tests/make_fixtures.py, PyTorch float64)
// and the checkpoint loader's error paths.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <eigenformer/io/hf_gpt2.hpp>
#include <nlohmann/json.hpp>

#include "reference.hpp"

namespace {

namespace fs = std::filesystem;
const std::string fixtures = EIGENFORMER_FIXTURES_DIR;

struct golden_case {
  std::vector<eigenformer::token_id> tokens;
  ref::grid logits;
};

std::vector<golden_case> read_expected(const std::string& dir) {
  std::ifstream in(dir + "/expected.json");
  const auto j = nlohmann::json::parse(in);
  std::vector<golden_case> cases;
  for (const auto& c : j.at("cases")) {
    cases.push_back({c.at("tokens").get<std::vector<eigenformer::token_id>>(),
                     c.at("logits").get<ref::grid>()});
  }
  return cases;
}

template <class Scalar>
class Golden : public ::testing::Test {};
TYPED_TEST_SUITE(Golden, ref::scalar_types);

TYPED_TEST(Golden, LogitsMatchPyTorch) {
  using S = TypeParam;
  const double tolerance = std::is_same_v<S, float> ? 1e-5 : 1e-10;
  for (const char* name : {"tiny_f32", "tiny_bf16_prefixed", "tiny_f16"}) {
    const std::string dir = fixtures + "/" + name;
    const auto model = eigenformer::load_hf_gpt2<S>(dir);
    EXPECT_NO_THROW(eigenformer::validate_weights(model.config, model.weights));
    const auto cases = read_expected(dir);
    ASSERT_EQ(cases.size(), 3u);
    eigenformer::basic_activations<S> acts(model.config, model.config.n_ctx);
    for (const auto& c : cases) {
      const auto logits = eigenformer::forward(model.config, model.weights, c.tokens, acts);
      const double err = ref::relative_error(logits, c.logits);
      EXPECT_LT(err, tolerance) << name << ", " << c.tokens.size() << " tokens";
      this->RecordProperty(std::string(name) + "_T" + std::to_string(c.tokens.size()), [&] {
        char b[32];
        std::snprintf(b, sizeof b, "%.3g", err);
        return std::string(b);
      }());
    }
  }
}

// A BF16 file packed as bf16 keeps its exact values: the fixture tolerance still holds, with
// the weights read as bf16 and the activations in float.
TEST(Bf16Weights, PackedBf16FileMatchesPyTorch) {
  const std::string dir = fixtures + "/tiny_bf16_prefixed";
  auto model = eigenformer::load_hf_gpt2<float>(dir);
  eigenformer::pack_weights_bf16(model.weights, eigenformer::bf16_compute::float_activations);
  EXPECT_EQ(model.weights.lm_head.size(), 0);
  EXPECT_EQ(model.weights.blocks[0].mlp.fc.weight.size(), 0);
  eigenformer::activations acts(model.config, model.config.n_ctx);
  for (const auto& c : read_expected(dir)) {
    const auto logits = eigenformer::forward(model.config, model.weights, c.tokens, acts);
    EXPECT_LT(ref::relative_error(logits, c.logits), 1e-5) << c.tokens.size() << " tokens";
  }
}

// bf16mix rounds activations to bf16 too: its error against float64 PyTorch is bounded by 1e-2
// on every fixture (the README quotes the largest measured).
TEST(Bf16Weights, MixedPrecisionErrorIsBounded) {
  for (const char* name : {"tiny_f32", "tiny_bf16_prefixed", "tiny_f16"}) {
    const std::string dir = fixtures + "/" + name;
    auto model = eigenformer::load_hf_gpt2<float>(dir);
    eigenformer::pack_weights_bf16(model.weights, eigenformer::bf16_compute::bf16_activations);
    eigenformer::activations acts(model.config, model.config.n_ctx);
    double worst = 0;
    for (const auto& c : read_expected(dir)) {
      const auto logits = eigenformer::forward(model.config, model.weights, c.tokens, acts);
      worst = std::max(worst, ref::relative_error(logits, c.logits));
    }
    EXPECT_LT(worst, 1e-2) << name;
    EXPECT_GT(worst, 1e-6) << name << ": activations were not rounded";
    char b[32];
    std::snprintf(b, sizeof b, "%.3g", worst);
    RecordProperty(std::string("bf16mix_") + name, b);
    std::printf("bf16mix relative error on %s: %s\n", name, b);
  }
}

TEST(HfGpt2, ReadsConfigAndKeyLayouts) {
  const auto bare = eigenformer::load_hf_gpt2<float>(fixtures + "/tiny_f32");
  EXPECT_EQ(bare.config.n_layer, 2);
  EXPECT_EQ(bare.config.n_ctx, 24);
  EXPECT_TRUE(bare.weights.tied_lm_head());
  const auto prefixed = eigenformer::load_hf_gpt2<float>(fixtures + "/tiny_bf16_prefixed");
  EXPECT_FALSE(prefixed.weights.tied_lm_head());  // carries its own lm_head.weight
  const auto f16 = eigenformer::load_hf_gpt2<double>(fixtures + "/tiny_f16/");
  EXPECT_EQ(f16.config.n_layer, 3);
  EXPECT_EQ(f16.config.layer_norm_epsilon, 1e-6);
}

std::string config_error(const std::string& text) {
  try {
    eigenformer::parse_hf_gpt2_config(text, "config.json");
  } catch (const eigenformer::format_error& e) {
    return e.what();
  }
  return "no exception";
}

TEST(HfGpt2, ConfigErrors) {
  const std::string ok =
      R"("n_layer": 2, "n_head": 4, "n_embd": 32, "vocab_size": 10, "n_positions": 8)";
  EXPECT_EQ(config_error("{" + ok + "}"), "no exception");
  EXPECT_EQ(
      config_error(R"({"n_layer": 2, "n_head": 4, "n_embd": 32, "vocab_size": 10, "n_ctx": 8})"),
      "no exception");
  EXPECT_NE(config_error("{" + ok).find("config.json: malformed JSON"), std::string::npos);
  EXPECT_EQ(config_error(R"({"n_layer": 2})"), "config.json: missing integer 'n_head'");
  EXPECT_EQ(config_error(R"({"n_layer": "2", "n_head": 4})"),
            "config.json: 'n_layer' is \"2\", not an integer");
  EXPECT_EQ(config_error(
                R"({"n_layer": 2, "n_head": 5, "n_embd": 32, "vocab_size": 10, "n_positions": 8})"),
            "config.json: config: n_embd = 32 is not divisible by n_head = 5");
  EXPECT_EQ(config_error(
                R"({"n_layer": 0, "n_head": 4, "n_embd": 32, "vocab_size": 10, "n_positions": 8})"),
            "config.json: config: n_layer = 0 is outside [1, 1024]");
  EXPECT_EQ(config_error(
                R"({"n_layer": 2, "n_head": 4, "n_embd": 32, "vocab_size": -3, "n_positions": 8})"),
            "config.json: config: vocab_size = -3 is outside [1, 16777216]");
  EXPECT_EQ(config_error(R"({"n_layer": 2, "n_head": 4, "n_embd": 1000000, "vocab_size": 10,)"
                         R"( "n_positions": 8})"),
            "config.json: config: n_embd = 1000000 is outside [1, 65536]");
  EXPECT_EQ(config_error("{" + ok + R"(, "layer_norm_epsilon": 0})"),
            "config.json: config: layer_norm_epsilon = 0 must be positive and finite");
  EXPECT_EQ(config_error("{" + ok + R"(, "activation_function": "relu"})"),
            "config.json: activation_function 'relu' is not supported (only the tanh GELU: "
            "gelu_new, gelu_pytorch_tanh)");
  EXPECT_EQ(config_error("{" + ok + R"(, "scale_attn_by_inverse_layer_idx": true})"),
            "config.json: 'scale_attn_by_inverse_layer_idx' = true is not supported");
}

/// Copies a fixture to a temporary directory whose model.safetensors is replaced by `bytes`.
class BrokenCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("eigenformer_test_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::create_directories(dir_);
    fs::copy_file(fixtures + "/tiny_f32/config.json", dir_ / "config.json",
                  fs::copy_options::overwrite_existing);
    std::ifstream in(fixtures + "/tiny_f32/model.safetensors", std::ios::binary);
    original_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string load_error(const std::string& file_bytes) {
    std::ofstream(dir_ / "model.safetensors", std::ios::binary) << file_bytes;
    try {
      eigenformer::load_hf_gpt2<float>(dir_.string());
    } catch (const eigenformer::error& e) {
      return e.what();
    }
    return "no exception";
  }
  /// The original file with one substring of its JSON header replaced (same length keeps the
  /// offsets valid).
  std::string with_header_edit(const std::string& from, const std::string& to) {
    std::string copy = original_;
    const auto at = copy.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    copy.replace(at, from.size(), to);
    return copy;
  }

  fs::path dir_;
  std::string original_;
};

// A config that claims the largest sizes validation allows (a 2.7e13-parameter model) next to a
// small file: loading fails on the first tensor whose shape the file does not have, before any
// weight memory is allocated from the config's claims.
TEST(HfGpt2, HugeConfigWithSmallFileFailsBeforeAllocating) {
  const auto dir = fs::temp_directory_path() / "eigenformer_huge_config";
  fs::create_directories(dir);
  fs::copy_file(fixtures + "/tiny_f32/model.safetensors", dir / "model.safetensors",
                fs::copy_options::overwrite_existing);
  std::ofstream(dir / "config.json") << R"({"n_layer": 1024, "n_head": 1024, "n_embd": 65536,)"
                                        R"( "vocab_size": 16777216, "n_positions": 1048576})";
  try {
    eigenformer::load_hf_gpt2<float>(dir.string());
    ADD_FAILURE() << "no exception";
  } catch (const eigenformer::format_error& e) {
    EXPECT_NE(std::string(e.what()).find("wte.weight"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST_F(BrokenCheckpoint, MissingTensorIsNamed) {
  const std::string err = load_error(with_header_edit("\"h.1.ln_2.bias\"", "\"h.1.ln_2.bia_\""));
  EXPECT_NE(err.find("model.safetensors: tensor 'h.1.ln_2.bias' is missing"), std::string::npos)
      << err;
}

TEST_F(BrokenCheckpoint, MisshapenTensorIsNamed) {
  // c_attn.weight [32, 96] relabelled as [96, 32]: same bytes, transposed shape.
  const std::string err = load_error(
      with_header_edit("\"h.0.attn.c_attn.weight\":{\"dtype\":\"F32\",\"shape\":[32,96]",
                       "\"h.0.attn.c_attn.weight\":{\"dtype\":\"F32\",\"shape\":[96,32]"));
  EXPECT_NE(err.find("tensor 'h.0.attn.c_attn.weight' has shape [96, 32], expected [32, 96]"),
            std::string::npos)
      << err;
}

TEST_F(BrokenCheckpoint, WrongDtypeIsNamed) {
  // wpe as I32 instead of F32: same size, not a float.
  const std::string err = load_error(
      with_header_edit("\"wpe.weight\":{\"dtype\":\"F32\"", "\"wpe.weight\":{\"dtype\":\"I32\""));
  EXPECT_NE(err.find("tensor 'wpe.weight' has dtype I32"), std::string::npos) << err;
}

TEST_F(BrokenCheckpoint, TruncatedFile) {
  const std::string err = load_error(original_.substr(0, original_.size() - 100));
  EXPECT_NE(err.find("model.safetensors: "), std::string::npos) << err;
  EXPECT_NE(err.find("lie outside the data section"), std::string::npos) << err;
}

TEST_F(BrokenCheckpoint, HeaderCutInHalf) {
  const std::string err = load_error(original_.substr(0, 300));
  EXPECT_NE(err.find("is larger than the 292 bytes after the size field"), std::string::npos)
      << err;
}

TEST_F(BrokenCheckpoint, MissingFiles) {
  fs::remove(dir_ / "config.json");
  EXPECT_NE(load_error(original_).find("config.json: cannot open file"), std::string::npos);
  EXPECT_THROW(eigenformer::load_hf_gpt2<float>((dir_ / "nope").string()), eigenformer::io_error);
}

}  // namespace

namespace {

TEST(HfGpt2, SaveThenLoadKeepsEveryWeight) {
  auto original = eigenformer::load_hf_gpt2<float>(fixtures + "/tiny_bf16_prefixed");
  const auto dir = std::filesystem::temp_directory_path() / "eigenformer_save_test";
  std::filesystem::create_directories(dir);
  eigenformer::save_hf_gpt2(original, dir.string(), {{"note", "test"}});
  const auto loaded = eigenformer::load_hf_gpt2<float>(dir.string());
  std::filesystem::remove_all(dir);
  EXPECT_EQ(loaded.config.n_layer, original.config.n_layer);
  EXPECT_EQ(loaded.weights.wte, original.weights.wte);
  EXPECT_EQ(loaded.weights.lm_head, original.weights.lm_head);
  EXPECT_EQ(loaded.weights.blocks[1].mlp.proj.weight, original.weights.blocks[1].mlp.proj.weight);
  EXPECT_EQ(loaded.weights.blocks[0].attn.qkv.bias, original.weights.blocks[0].attn.qkv.bias);
  EXPECT_EQ(loaded.weights.ln_f.gain, original.weights.ln_f.gain);
}

}  // namespace
