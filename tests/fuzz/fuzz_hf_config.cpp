// libFuzzer target: arbitrary text as a Hugging Face GPT-2 config.json. Either a validated
// config or an eigenformer::error; a config that passes must describe a model whose sizes can be
// computed without overflow.
#include <cstddef>
#include <cstdint>
#include <string>

#include <eigenformer/io/hf_gpt2.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto config = eigenformer::parse_hf_gpt2_config(
        std::string(reinterpret_cast<const char*>(data), size), "fuzz/config.json");
    config.validate();
    if (eigenformer::decode_weight_bytes(config, 4.0) <= 0) __builtin_trap();
  } catch (const eigenformer::error&) {
  }
  return 0;
}
