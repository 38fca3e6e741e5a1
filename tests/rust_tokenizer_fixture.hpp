// tests/rust_tokenizer_fixture.hpp — the checks against a fixture of the Rust tokenizers library
// (tests/fixtures/hf_tokenizer/*.json, from tests/make_hf_tokenizer_fixtures.mjs): ids with and
// without special tokens for every string, and the decoded texts of every id list. Shared by the
// tokenizer.json tests and the GGUF-metadata tokenizer tests.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <eigenformer/tokenizer/hf_tokenizer.hpp>
#include <nlohmann/json.hpp>

namespace rust_fixture {

using ids_t = std::vector<eigenformer::token_id>;

inline void expect_encodes_like_rust(const eigenformer::hf_tokenizer& t,
                                     const nlohmann::json& reference) {
  ASSERT_GE(reference.at("cases").size(), 500u);
  for (const auto& e : reference["cases"]) {
    const auto text = e.at("text").get<std::string>();
    EXPECT_EQ(t.encode(text), e.at("ids").get<ids_t>()) << nlohmann::json(text).dump();
    EXPECT_EQ(t.encode(text, false), e.at("ids_no_special").get<ids_t>())
        << nlohmann::json(text).dump();
  }
}

inline void expect_decodes_like_rust(const eigenformer::hf_tokenizer& t,
                                     const nlohmann::json& reference) {
  EXPECT_EQ(t.vocab_size(), reference.at("vocab_size").get<int>());
  for (const char* set : {"cases", "decodes"}) {
    ASSERT_GE(reference.at(set).size(), 150u);
    for (const auto& e : reference[set]) {
      const auto ids = e.at("ids").get<ids_t>();
      EXPECT_EQ(t.decode(ids), e.at("decoded").get<std::string>()) << nlohmann::json(ids).dump();
      EXPECT_EQ(t.decode(ids, true), e.at("decoded_skip_special").get<std::string>())
          << nlohmann::json(ids).dump();
    }
  }
}

}  // namespace rust_fixture
