// eigenformer/tokenizer/bpe_model.hpp — the BPE model of a Hugging Face tokenizer.json: one
// pre-tokenized piece (a string of characters) to token ids.
// Requires utf8proc and PCRE2 through unicode.hpp.
//
//   1. ignore_merges (Llama 3): a piece that is itself in the vocabulary is that one token.
//   2. Each character is a symbol: its vocabulary id; else, with byte_fallback, one <0xXX> token
//      per UTF-8 byte (Llama 2, Mistral, TinyLlama); else the unk token (consecutive unknowns
//      fused into one when fuse_unk); a character none of these covers is an error.
//   3. Repeatedly merge the adjacent pair with the lowest merge rank, the leftmost on a tie,
//      until no adjacent pair has a merge. A min-heap of candidate pairs over a linked list of
//      symbols makes this O(n log n); stale heap entries are recognised and skipped.
#pragma once

#include <cstdint>
#include <cstdio>
#include <queue>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/tokenizer/unicode.hpp"

namespace eigenformer {

struct bpe_model {
  std::unordered_map<std::string, token_id> vocab;
  std::vector<std::string> id_to_token;  // [max id + 1]; "" where no token has the id
  /// (left id << 32 | right id) -> (rank, merged id)
  std::unordered_map<std::uint64_t, std::pair<std::int32_t, token_id>> merges;
  token_id unk_id = -1;  // -1: no unk token
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;

  static std::uint64_t pair_key(token_id left, token_id right) {
    return static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32 |
           static_cast<std::uint32_t>(right);
  }

  /// Adds merge number `rank`: `left` + `right` -> their concatenation; all three must be in
  /// the vocabulary. A pair listed twice keeps its last rank, as Hugging Face's map does.
  void add_merge(const std::string& left, const std::string& right, std::int32_t rank) {
    const auto a = vocab.find(left), b = vocab.find(right), merged = vocab.find(left + right);
    if (a == vocab.end() || b == vocab.end() || merged == vocab.end()) {
      const std::string& missing = a == vocab.end()   ? left
                                   : b == vocab.end() ? right
                                                      : left + right;
      throw format_error(detail::concat("merge ", rank, " (\"", left, "\" \"", right, "\"): \"",
                                        missing, "\" is not in the vocabulary"));
    }
    merges[pair_key(a->second, b->second)] = std::make_pair(rank, merged->second);
  }

  /// Appends the ids of one non-empty piece of valid UTF-8 to `ids`.
  void tokenize(const std::string& piece, std::vector<token_id>& ids) const {
    if (ignore_merges) {
      const auto whole = vocab.find(piece);
      if (whole != vocab.end()) {
        ids.push_back(whole->second);
        return;
      }
    }
    std::vector<symbol> symbols;
    initial_symbols(piece, symbols);
    merge(symbols);
    for (int i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[std::size_t(i)].next)
      ids.push_back(symbols[std::size_t(i)].id);
  }

 private:
  struct symbol {
    token_id id;
    int prev, next;  // neighbours in the linked list; -1 at the ends
    bool merged_away;
  };
  struct candidate {
    std::int32_t rank;
    int position;  // index of the left symbol
    token_id merged_id;
    bool operator>(const candidate& o) const {
      return rank != o.rank ? rank > o.rank : position > o.position;
    }
  };

  void push_symbol(std::vector<symbol>& symbols, token_id id) const {
    const int n = static_cast<int>(symbols.size());
    symbols.push_back({id, n - 1, -1, false});
    if (n > 0) symbols[std::size_t(n - 1)].next = n;
  }

  void initial_symbols(const std::string& piece, std::vector<symbol>& symbols) const {
    symbols.reserve(piece.size());
    bool unk_pending = false;  // a run of unknown characters not yet emitted (fuse_unk)
    for (std::size_t i = 0; i < piece.size();) {
      const std::size_t length =
          std::min(unicode::char_length(static_cast<unsigned char>(piece[i])), piece.size() - i);
      const std::string character = piece.substr(i, length);
      i += length;
      const auto known = vocab.find(character);
      if (known != vocab.end()) {
        if (unk_pending) push_symbol(symbols, unk_id), unk_pending = false;
        push_symbol(symbols, known->second);
        continue;
      }
      if (byte_fallback && push_byte_tokens(character, symbols)) continue;
      if (unk_id < 0) {
        throw value_error("tokenizer: the character \"" + character +
                          "\" is not in the vocabulary and there is no unk token or byte fallback");
      }
      // Hugging Face keeps one pending unk: a new unknown extends it when fusing, else the
      // pending one is emitted first.
      if (unk_pending && !fuse_unk) push_symbol(symbols, unk_id);
      unk_pending = true;
    }
    if (unk_pending) push_symbol(symbols, unk_id);
  }

  /// One <0xXX> token per byte of `character`; false (nothing pushed) if one is missing.
  bool push_byte_tokens(const std::string& character, std::vector<symbol>& symbols) const {
    token_id byte_ids[4];
    std::size_t n = 0;
    for (const char c : character) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", static_cast<unsigned char>(c));
      const auto it = vocab.find(name);
      if (it == vocab.end()) return false;
      byte_ids[n++] = it->second;
    }
    for (std::size_t k = 0; k < n; ++k) push_symbol(symbols, byte_ids[k]);
    return true;
  }

  const std::pair<std::int32_t, token_id>* find_merge(token_id left, token_id right) const {
    const auto it = merges.find(pair_key(left, right));
    return it == merges.end() ? nullptr : &it->second;
  }

  void merge(std::vector<symbol>& symbols) const {
    std::priority_queue<candidate, std::vector<candidate>, std::greater<candidate>> queue;
    const auto consider = [&](int left) {
      const int right = symbols[std::size_t(left)].next;
      if (right < 0) return;
      if (const auto* m = find_merge(symbols[std::size_t(left)].id, symbols[std::size_t(right)].id))
        queue.push({m->first, left, m->second});
    };
    for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) consider(i);
    while (!queue.empty()) {
      const candidate top = queue.top();
      queue.pop();
      symbol& left = symbols[std::size_t(top.position)];
      if (left.merged_away || left.next < 0) continue;
      symbol& right = symbols[std::size_t(left.next)];
      // Stale entry: the pair at this position changed since it was queued.
      const auto* m = find_merge(left.id, right.id);
      if (m == nullptr || m->second != top.merged_id) continue;
      left.id = top.merged_id;
      right.merged_away = true;
      left.next = right.next;
      if (right.next >= 0) symbols[std::size_t(right.next)].prev = top.position;
      if (left.prev >= 0) consider(left.prev);
      consider(top.position);
    }
  }
};

}  // namespace eigenformer
