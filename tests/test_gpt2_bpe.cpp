#include <gtest/gtest.h>

#include <fstream>

#include <eigenformer/tokenizer/gpt2_bpe.hpp>
#include <nlohmann/json.hpp>

#include "reference.hpp"

namespace {

const std::string dir = std::string(EIGENFORMER_FIXTURES_DIR) + "/gpt2_tokenizer";

const eigenformer::gpt2_tokenizer& tokenizer() {
  static const auto t = eigenformer::gpt2_tokenizer::from_directory(dir);
  return t;
}

TEST(Gpt2Bpe, MatchesTiktokenOnHundredsOfTrickyStrings) {
  std::ifstream in(dir + "/reference.json");
  const auto j = nlohmann::json::parse(in);
  ASSERT_GE(j.at("cases").size(), 400u);
  int checked = 0;
  for (const auto& c : j.at("cases")) {
    const auto text = c.at("text").get<std::string>();
    const auto expected = c.at("ids").get<std::vector<eigenformer::token_id>>();
    EXPECT_EQ(tokenizer().encode(text), expected) << nlohmann::json(text).dump();
    EXPECT_EQ(tokenizer().decode(expected), text) << nlohmann::json(text).dump();
    ++checked;
  }
  EXPECT_EQ(checked, int(j.at("cases").size()));
}

TEST(Gpt2Bpe, KnownIds) {
  EXPECT_EQ(tokenizer().vocab_size(), 50257);
  EXPECT_EQ(tokenizer().end_of_text_id(), 50256);
  // "The quick brown fox" in GPT-2 is 464 2068 7586 21831.
  EXPECT_EQ(tokenizer().encode("The quick brown fox"),
            (std::vector<eigenformer::token_id>{464, 2068, 7586, 21831}));
}

TEST(Gpt2Bpe, ArbitraryBytesRoundTrip) {
  const std::vector<std::string> texts = {std::string("\xff\xfe\x00\x01", 4),
                                          "abc\xc3(def",
                                          "\xe2\x82",
                                          "ok \xf0\x9f\x98 broken emoji",
                                          std::string(1, '\0'),
                                          "\xed\xa0\x80 surrogate",
                                          "caf\xe9 latin1"};
  for (const auto& t : texts) EXPECT_EQ(tokenizer().decode(tokenizer().encode(t)), t);
  ref::rng r(1);
  for (int i = 0; i < 200; ++i) {
    std::string s(size_t(1 + r.below(40)), '\0');
    for (auto& ch : s) ch = char(r.below(256));
    EXPECT_EQ(tokenizer().decode(tokenizer().encode(s)), s);
  }
}

TEST(Gpt2Bpe, BadFilesAndIds) {
  EXPECT_THROW(eigenformer::gpt2_tokenizer::from_directory("/nonexistent"), eigenformer::io_error);
  const std::string merges = "#version: 0.2\n";
  EXPECT_THROW(eigenformer::gpt2_tokenizer("{", "vocab.json", merges, "merges.txt"),
               eigenformer::format_error);
  try {
    eigenformer::gpt2_tokenizer(R"({"a": 0})", "vocab.json", merges, "merges.txt");
    FAIL();
  } catch (const eigenformer::format_error& e) {
    EXPECT_STREQ(e.what(), "vocab.json: byte 0 has no token, so some text could not be encoded");
  }
  EXPECT_THROW(tokenizer().decode({50257}), eigenformer::value_error);
  EXPECT_THROW(tokenizer().decode({-1}), eigenformer::value_error);
}

}  // namespace
