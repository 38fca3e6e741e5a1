// eigenformer/tokenizer/bytes.hpp — the byte-level tokenizer: token id b is the byte b, plus an
// optional end-of-text id 256. Any text round-trips; the vocabulary is tiny, which suits small
// models trained from scratch.
//
// Requires nlohmann-json and PCRE2, through gpt2_bpe.hpp (GPT-2's byte alphabet). It is saved as a
// GPT-2 BPE tokenizer with no merges — vocab.json maps each byte, in GPT-2's byte alphabet, to its
// own value — so gpt2_tokenizer, `eigenformer generate` and Hugging Face's GPT2Tokenizer all read
// it and produce the same ids.
#pragma once

#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/tokenizer/gpt2_bpe.hpp"

namespace eigenformer {

struct byte_tokenizer {
  static constexpr token_id end_of_text_id = 256;
  bool with_end_of_text = true;

  index_t vocab_size() const { return with_end_of_text ? 257 : 256; }

  std::vector<token_id> encode(const std::string& text) const {
    std::vector<token_id> ids(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
    return ids;
  }

  std::string decode(const std::vector<token_id>& ids) const {
    std::string out;
    for (const token_id id : ids) {
      if (id < 0 || id >= vocab_size()) {
        throw value_error(
            detail::concat("byte tokenizer: id ", id, " is outside [0, ", vocab_size(), ")"));
      }
      if (id < 256) out.push_back(static_cast<char>(id));
    }
    return out;
  }
};

/// Writes dir/vocab.json and dir/merges.txt (throws io_error if it cannot).
inline void save_byte_tokenizer(const byte_tokenizer& tokenizer, const std::string& dir) {
  const auto code_points = detail::gpt2_byte_code_points();
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) {
    std::string utf8;
    const char32_t cp = code_points[std::size_t(b)];
    if (cp < 0x80) {
      utf8.push_back(char(cp));
    } else {  // every code point of the alphabet is below 0x800: two UTF-8 bytes
      utf8.push_back(char(0xC0 | (cp >> 6)));
      utf8.push_back(char(0x80 | (cp & 0x3F)));
    }
    vocab[utf8] = b;
  }
  if (tokenizer.with_end_of_text)
    vocab[gpt2_tokenizer::end_of_text] = byte_tokenizer::end_of_text_id;
  const std::string base = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  std::ofstream vocab_file(base + "vocab.json", std::ios::binary);
  vocab_file << vocab.dump() << "\n";
  std::ofstream merges_file(base + "merges.txt", std::ios::binary);
  merges_file << "#version: 0.2\n";
  if (!vocab_file || !merges_file) throw io_error(base + ": cannot write the byte tokenizer");
}

}  // namespace eigenformer
