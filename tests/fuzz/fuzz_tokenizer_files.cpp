// libFuzzer target: arbitrary vocab.json and merges.txt (the input split at its first NUL byte).
// Loading either succeeds or throws eigenformer::error; a loaded tokenizer must round-trip text.
#include <cstddef>
#include <cstdint>
#include <string>

#include <eigenformer/tokenizer/gpt2_bpe.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const std::size_t split = input.find('\0');
  const std::string vocab = input.substr(0, split);
  const std::string merges = split == std::string::npos ? "" : input.substr(split + 1);
  try {
    const eigenformer::gpt2_tokenizer tokenizer(vocab, "fuzz/vocab.json", merges,
                                                "fuzz/merges.txt");
    const std::string text = "Hello, world! 123 <|endoftext|> \xc3\xa9";
    const auto ids = tokenizer.encode(text);
    if (tokenizer.decode(ids) != text) __builtin_trap();
  } catch (const eigenformer::error&) {
  }
  return 0;
}
