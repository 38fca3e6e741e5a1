// tokenizer/bpe_model.hpp against a naive BPE written here: scan every adjacent pair, merge the
// one with the lowest rank (leftmost on a tie), repeat.
#include <gtest/gtest.h>

#include <climits>
#include <map>

#include <eigenformer/tokenizer/bpe_model.hpp>

#include "reference.hpp"

namespace {

using eigenformer::bpe_model;
using eigenformer::token_id;
using ids_t = std::vector<token_id>;

std::vector<std::string> naive_bpe(
    const std::string& text, const std::map<std::pair<std::string, std::string>, int>& ranks) {
  std::vector<std::string> parts;
  for (char c : text) parts.emplace_back(1, c);
  for (;;) {
    int best = INT_MAX;
    std::size_t at = 0;
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
      const auto it = ranks.find({parts[i], parts[i + 1]});
      if (it != ranks.end() && it->second < best) best = it->second, at = i;
    }
    if (best == INT_MAX) return parts;
    parts[at] += parts[at + 1];
    parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(at) + 1);
  }
}

bpe_model small_model(std::map<std::pair<std::string, std::string>, int>& ranks) {
  bpe_model m;
  const auto add = [&](const std::string& t) {
    if (m.vocab.emplace(t, token_id(m.id_to_token.size())).second) m.id_to_token.push_back(t);
  };
  for (const char* c : {"a", "b", "c"}) add(c);
  // Merges in an order that is not the order of their lengths, with overlapping pairs.
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"b", "a"},   {"a", "b"}, {"ab", "a"},   {"a", "a"}, {"c", "ba"},  {"aa", "a"},
      {"ba", "ba"}, {"b", "b"}, {"aba", "ba"}, {"c", "c"}, {"cc", "cc"}, {"a", "c"}};
  int rank = 0;
  for (const auto& [l, r] : merges) {
    add(l + r);
    ranks[{l, r}] = rank;
    m.add_merge(l, r, rank++);
  }
  return m;
}

TEST(BpeModel, MatchesNaiveMergingOnRandomStrings) {
  std::map<std::pair<std::string, std::string>, int> ranks;
  const bpe_model m = small_model(ranks);
  ref::rng r(5);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string s(std::size_t(1 + r.below(30)), 'a');
    for (auto& c : s) c = "abc"[r.below(3)];
    ids_t expected;
    for (const auto& part : naive_bpe(s, ranks)) expected.push_back(m.vocab.at(part));
    ids_t got;
    m.tokenize(s, got);
    ASSERT_EQ(got, expected) << s;
  }
}

TEST(BpeModel, IgnoreMergesTakesAWholeVocabularyPiece) {
  std::map<std::pair<std::string, std::string>, int> ranks;
  bpe_model m = small_model(ranks);
  m.vocab.emplace("abc", 99);
  ids_t ids;
  m.tokenize("abc", ids);
  EXPECT_EQ(ids, (ids_t{m.vocab.at("ab"), m.vocab.at("c")}));
  m.ignore_merges = true;
  ids.clear();
  m.tokenize("abc", ids);
  EXPECT_EQ(ids, ids_t{99});
}

TEST(BpeModel, ByteFallbackAndUnknowns) {
  bpe_model m;
  m.vocab = {{"a", 0}, {"<unk>", 1}, {"<0xC3>", 2}, {"<0xA9>", 3}};
  m.unk_id = 1;
  ids_t ids;
  m.tokenize(
      "a\xC3\xA9\xC3\xA9"
      "a",
      ids);  // é twice, no byte tokens: one unk each
  EXPECT_EQ(ids, (ids_t{0, 1, 1, 0}));
  m.fuse_unk = true;
  ids.clear();
  m.tokenize(
      "a\xC3\xA9\xC3\xA9"
      "a",
      ids);
  EXPECT_EQ(ids, (ids_t{0, 1, 0}));
  m.byte_fallback = true;
  ids.clear();
  m.tokenize(
      "\xC3\xA9"
      "a\xC3\xA8",
      ids);  // è has no <0xA8>: unk
  EXPECT_EQ(ids, (ids_t{2, 3, 0, 1}));
  m.unk_id = -1;
  EXPECT_THROW(m.tokenize("\xC3\xA8", ids), eigenformer::value_error);
}

TEST(BpeModel, MergeOfUnknownTokensIsRefused) {
  bpe_model m;
  m.vocab = {{"a", 0}, {"b", 1}};
  EXPECT_THROW(m.add_merge("a", "b", 0), eigenformer::format_error);  // "ab" missing
}

}  // namespace
