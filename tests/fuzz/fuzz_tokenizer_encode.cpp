// libFuzzer target: arbitrary bytes (valid UTF-8 or not) through the GPT-2 tokenizer.
// Property: decode(encode(x)) == x, and every id is inside the vocabulary.
#include <cstddef>
#include <cstdint>
#include <string>

#include <eigenformer/tokenizer/gpt2_bpe.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto tokenizer =
      eigenformer::gpt2_tokenizer::from_directory(EIGENFORMER_FIXTURES_DIR "/gpt2_tokenizer");
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto ids = tokenizer.encode(text);
  for (const auto id : ids) {
    if (id < 0 || id >= tokenizer.vocab_size()) __builtin_trap();
  }
  if (tokenizer.decode(ids) != text) __builtin_trap();
  return 0;
}
