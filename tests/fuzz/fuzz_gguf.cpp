// libFuzzer target: arbitrary bytes as a GGUF file. Parsing must either succeed or throw
// eigenformer::error; then every tensor's bytes must lie inside the input (each one's first and
// last byte is read, so AddressSanitizer sees any escape) and float tensors must be readable.
#include <cstddef>
#include <cstdint>
#include <vector>

#include <eigenformer/io/gguf.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const eigenformer::gguf_file file(std::vector<unsigned char>(data, data + size), "fuzz.gguf");
    unsigned sum = 0;
    for (const auto& t : file.tensors()) {
      const unsigned char* bytes = file.tensor_data(t);
      if (t.bytes == 0) __builtin_trap();
      sum += bytes[0] + bytes[t.bytes - 1];
      if (t.ne.size() <= 2 && t.elements() <= (1u << 20)) {
        try {
          const auto m = file.read_float<float>(t.name);
          if (std::uint64_t(m.size()) != t.elements()) __builtin_trap();
        } catch (const eigenformer::format_error&) {  // a quantized tensor
        }
      }
    }
    for (const auto& [key, value] : file.metadata()) {
      if (value.is_integer()) (void)file.integer(key, INT64_MIN);
    }
    if (sum == 0xFFFFFFFFu) return 1;
  } catch (const eigenformer::error&) {
  }
  return 0;
}
