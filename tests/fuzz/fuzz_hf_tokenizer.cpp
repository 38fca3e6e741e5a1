// libFuzzer target: an arbitrary tokenizer.json and a text (the input split at its first NUL).
// Loading succeeds or throws eigenformer::error; a loaded tokenizer encodes the text (or refuses
// it with value_error: invalid UTF-8, a character it has no token for) and decodes any ids it
// gives, and every decode is valid UTF-8, as the Rust library's Strings are.
#include <cstddef>
#include <cstdint>
#include <string>

#include <eigenformer/tokenizer/hf_tokenizer.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const std::size_t split = input.find('\0');
  const std::string json = input.substr(0, split);
  const std::string text = split == std::string::npos ? "Hello world 123" : input.substr(split + 1);
  try {
    const eigenformer::hf_tokenizer tokenizer(json, "fuzz/tokenizer.json");
    for (const bool special : {true, false}) {
      std::vector<eigenformer::token_id> ids;
      try {
        ids = tokenizer.encode(text, special);
      } catch (const eigenformer::value_error&) {
        continue;
      }
      const std::string decoded = tokenizer.decode(ids, !special);
      if (eigenformer::unicode::first_invalid_utf8(decoded) != std::string::npos) __builtin_trap();
    }
    // Arbitrary ids from the text's bytes (those in the vocabulary).
    std::vector<eigenformer::token_id> ids;
    for (std::size_t i = 0; i + 1 < text.size() && tokenizer.vocab_size() > 0; i += 2) {
      const auto id = static_cast<eigenformer::token_id>(
          (static_cast<unsigned char>(text[i]) << 8 | static_cast<unsigned char>(text[i + 1])) %
          tokenizer.vocab_size());
      try {
        tokenizer.token_text(id);
        ids.push_back(id);
      } catch (const eigenformer::value_error&) {
      }
    }
    if (eigenformer::unicode::first_invalid_utf8(tokenizer.decode(ids)) != std::string::npos)
      __builtin_trap();
  } catch (const eigenformer::error&) {
  }
  return 0;
}
