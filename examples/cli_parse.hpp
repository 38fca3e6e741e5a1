// examples/cli_parse.hpp — parsing of the command line's own text arguments, kept apart from
// main() so the fuzz target tests/fuzz/fuzz_token_ids.cpp runs exactly this code.
#pragma once

#include <charconv>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <eigenformer/core/types.hpp>

namespace eigenformer_cli {

/// A one-line user error: printed as "eigenformer: error: ..." with exit code 1.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Parses "464 2068 7586" (spaces, tabs or commas between ids) into token ids.
inline std::vector<eigenformer::token_id> parse_token_ids(const std::string& text) {
  std::vector<eigenformer::token_id> ids;
  const auto is_separator = [](char c) { return c == ' ' || c == ',' || c == '\t' || c == '\n'; };
  std::size_t i = 0;
  while (i < text.size()) {
    if (is_separator(text[i])) {
      ++i;
      continue;
    }
    std::size_t end = i;
    while (end < text.size() && !is_separator(text[end])) ++end;
    const std::string word = text.substr(i, end - i);
    long long value = 0;
    const auto [ptr, ec] = std::from_chars(word.data(), word.data() + word.size(), value);
    if (ec == std::errc::result_out_of_range ||
        (ec == std::errc() && ptr == word.data() + word.size() &&
         (value < 0 || value > INT32_MAX))) {
      throw usage_error("token id '" + word + "' is out of range");
    }
    if (ec != std::errc() || ptr != word.data() + word.size()) {
      throw usage_error("token id '" + word + "' is not a non-negative integer");
    }
    ids.push_back(static_cast<eigenformer::token_id>(value));
    i = end;
  }
  if (ids.empty()) throw usage_error("--tokens is empty: give at least one token id");
  return ids;
}

}  // namespace eigenformer_cli
