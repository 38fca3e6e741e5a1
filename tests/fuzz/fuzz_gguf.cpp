// libFuzzer target: arbitrary bytes as a GGUF file. Parsing must either succeed or throw
// eigenformer::error; then every tensor's bytes must lie inside the input (each one's first and
// last byte is read, so AddressSanitizer sees any escape), every tensor must read as a matrix
// (dequantized), and a file that describes a model must load or be refused with an error.
#include <cstddef>
#include <cstdint>
#include <vector>

#include <eigenformer/io/gguf_model.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const eigenformer::gguf_file file(std::vector<unsigned char>(data, data + size), "fuzz.gguf");
    unsigned sum = 0;
    std::uint64_t total_elements = 0;
    for (const auto& t : file.tensors()) {
      const unsigned char* bytes = file.tensor_data(t);
      if (t.bytes == 0) __builtin_trap();
      sum += bytes[0] + bytes[t.bytes - 1];
      total_elements += t.elements();
      if (t.ne.size() <= 2 && t.elements() <= (1u << 20)) {
        try {
          const auto m = file.read_float<float>(t.name);
          if (std::uint64_t(m.size()) != t.elements()) __builtin_trap();
        } catch (const eigenformer::format_error&) {  // e.g. a row not made of whole blocks
        }
      }
    }
    for (const auto& [key, value] : file.metadata()) {
      if (value.is_integer()) (void)file.integer(key, INT64_MIN);
    }
    if (total_elements <= (1u << 22)) {  // weights a model of this size would read
      try {
        const auto config = eigenformer::read_gguf_config(file);
        const auto weights = eigenformer::read_gguf_weights<float>(
            config, file, eigenformer::gguf_quantized::dequantize);
        eigenformer::validate_weights(config, weights);
        (void)eigenformer::read_gguf_weights<float>(config, file);  // quantized blocks kept
      } catch (const eigenformer::error&) {
      }
    }
    if (sum == 0xFFFFFFFFu) return 1;
  } catch (const eigenformer::error&) {
  }
  return 0;
}
