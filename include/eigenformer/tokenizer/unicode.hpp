// eigenformer/tokenizer/unicode.hpp — the UTF-8 and Unicode pieces a tokenizer needs: walking
// code points, validating input, Unicode normalization forms, White_Space, numeric characters,
// Rust's lossy UTF-8 decoding, and a PCRE2 regex that finds every match of a pattern.
// Requires utf8proc (Debian: libutf8proc-dev; link utf8proc) for the normalization forms and
// character categories, and PCRE2 (libpcre2-dev; link pcre2-8) for the regex.
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "eigenformer/core/error.hpp"

namespace eigenformer {
namespace unicode {

/// Byte length of the UTF-8 character starting with lead byte `c` (1 for a stray byte, so a walk
/// over text that has been validated never stalls).
inline std::size_t char_length(unsigned char c) {
  if (c < 0xC0) return 1;
  if (c < 0xE0) return 2;
  if (c < 0xF0) return 3;
  return 4;
}

/// Decodes the code point at text[i] (text must be valid UTF-8 there).
inline char32_t code_point_at(const std::string& text, std::size_t i) {
  utf8proc_int32_t cp = 0;
  utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + i),
                   static_cast<utf8proc_ssize_t>(text.size() - i), &cp);
  return cp < 0 ? U'\uFFFD' : static_cast<char32_t>(cp);
}

inline void append_utf8(std::string& out, char32_t cp) {
  utf8proc_uint8_t buffer[4];
  const auto n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(cp), buffer);
  out.append(reinterpret_cast<const char*>(buffer), static_cast<std::size_t>(n));
}

inline std::string to_utf8(char32_t cp) {
  std::string s;
  append_utf8(s, cp);
  return s;
}

/// Byte offset of the first invalid UTF-8 sequence (overlong forms and surrogates are invalid,
/// as in Rust's str), or npos when the whole text is valid.
inline std::size_t first_invalid_utf8(const std::string& text) {
  std::size_t i = 0;
  while (i < text.size()) {
    utf8proc_int32_t cp = 0;
    const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + i),
                                    static_cast<utf8proc_ssize_t>(text.size() - i), &cp);
    if (n <= 0 || cp < 0) return i;
    i += static_cast<std::size_t>(n);
  }
  return std::string::npos;
}

/// Rust's String::from_utf8_lossy: every maximal invalid subsequence becomes one U+FFFD.
inline std::string utf8_lossy(const std::string& bytes) {
  std::string out;
  out.reserve(bytes.size());
  std::size_t i = 0;
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(bytes[k]); };
  while (i < bytes.size()) {
    const unsigned char c = byte(i);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    // The accepted range of the second byte depends on the lead (Unicode table 3-7).
    std::size_t need = 0;
    unsigned char low = 0x80, high = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2, low = c == 0xE0 ? 0xA0 : 0x80, high = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3, low = c == 0xF0 ? 0x90 : 0x80, high = c == 0xF4 ? 0x8F : 0xBF;
    }
    std::size_t k = 1;
    bool valid = need > 0;
    while (valid && k <= need) {
      if (i + k >= bytes.size()) {
        valid = false;
        break;
      }
      const unsigned char lo = k == 1 ? low : 0x80, hi = k == 1 ? high : 0xBF;
      if (byte(i + k) < lo || byte(i + k) > hi) {
        valid = false;
        break;
      }
      ++k;
    }
    if (valid) {
      out.append(bytes, i, need + 1);
      i += need + 1;
    } else {
      out += "\xEF\xBF\xBD";
      i += k;  // the lead and the continuation bytes that were still acceptable
    }
  }
  return out;
}

enum class normal_form { nfc, nfd, nfkc, nfkd };

/// Unicode normalization of valid UTF-8 text.
inline std::string normalize(const std::string& text, normal_form form) {
  int options = UTF8PROC_STABLE;
  switch (form) {
    case normal_form::nfc:
      options |= UTF8PROC_COMPOSE;
      break;
    case normal_form::nfd:
      options |= UTF8PROC_DECOMPOSE;
      break;
    case normal_form::nfkc:
      options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
      break;
    case normal_form::nfkd:
      options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
      break;
  }
  utf8proc_uint8_t* result = nullptr;
  const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                              static_cast<utf8proc_ssize_t>(text.size()), &result,
                              static_cast<utf8proc_option_t>(options));
  if (n < 0) {
    throw value_error(std::string("unicode normalization failed: ") + utf8proc_errmsg(n));
  }
  std::string out(reinterpret_cast<const char*>(result), static_cast<std::size_t>(n));
  std::free(result);
  return out;
}

/// Unicode's White_Space property (what Rust's char::is_whitespace tests).
inline bool is_whitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

/// General categories Nd, Nl, No (Rust's char::is_numeric).
inline bool is_numeric(char32_t c) {
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return category == UTF8PROC_CATEGORY_ND || category == UTF8PROC_CATEGORY_NL ||
         category == UTF8PROC_CATEGORY_NO;
}

/// A "word" character as the regex class \w defines it (letters, marks, decimal and letter
/// numbers, connector punctuation, joiners): what an added token marked single_word must not
/// touch. Checked against the Rust library: "e\u0301" and "Ⅻ" are word characters, "½" is not.
inline bool is_word_char(char32_t c) {
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return (category >= UTF8PROC_CATEGORY_LU && category <= UTF8PROC_CATEGORY_ME) ||
         category == UTF8PROC_CATEGORY_ND || category == UTF8PROC_CATEGORY_NL ||
         category == UTF8PROC_CATEGORY_PC || c == 0x200C || c == 0x200D;
}

/// A compiled Unicode-aware PCRE2 pattern (immutable, cheap to copy, safe to share across
/// threads: every search makes its own match data).
class regex {
 public:
  regex() = default;
  explicit regex(const std::string& pattern) {
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error_code, message, sizeof message);
      throw format_error("regex " + pattern + ": " + reinterpret_cast<const char*>(message) +
                         " at offset " + std::to_string(error_offset));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // optional speed-up; the interpreter remains
    code_ = std::shared_ptr<pcre2_code>(code, pcre2_code_free);
  }

  /// [start, end) byte spans of every non-overlapping match, left to right, in valid UTF-8
  /// text. An empty match is skipped and the search resumes one character later.
  std::vector<std::pair<std::size_t, std::size_t>> find_all(const std::string& text) const {
    std::vector<std::pair<std::size_t, std::size_t>> spans;
    std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> match(
        pcre2_match_data_create_from_pattern(code_.get(), nullptr), pcre2_match_data_free);
    const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    std::size_t offset = 0;
    while (offset < text.size()) {
      const int rc =
          pcre2_match(code_.get(), subject, text.size(), offset, 0, match.get(), nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) throw value_error("regex search failed with PCRE2 error " + std::to_string(rc));
      const PCRE2_SIZE* span = pcre2_get_ovector_pointer(match.get());
      if (span[1] == span[0]) {
        if (span[0] >= text.size()) break;
        offset = span[0] + char_length(static_cast<unsigned char>(text[span[0]]));
        continue;
      }
      spans.emplace_back(span[0], span[1]);
      offset = span[1];
    }
    return spans;
  }

 private:
  std::shared_ptr<pcre2_code> code_;
};

}  // namespace unicode
}  // namespace eigenformer
