// libFuzzer target: arbitrary text as a Hugging Face config.json, read both as GPT-2's and as a
// Llama-family config (llama, mistral, qwen2, qwen3). Either a validated config or an
// eigenformer::error; a config that passes must describe a model whose sizes can be computed
// without overflow, and whose rotary frequencies are finite.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include <eigenformer/io/hf_gpt2.hpp>
#include <eigenformer/io/hf_llama.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto config = eigenformer::parse_hf_gpt2_config(text, "fuzz/config.json");
    config.validate();
    if (eigenformer::decode_weight_bytes(config, 4.0) <= 0) __builtin_trap();
  } catch (const eigenformer::error&) {
  }
  try {
    const auto config = eigenformer::parse_hf_llama_config(text, "fuzz/config.json");
    config.validate();
    if (eigenformer::decode_weight_bytes(config, 4.0) <= 0) __builtin_trap();
    if (config.head_dim() <= 4096) {
      for (double f : eigenformer::rope_inverse_frequencies(config.rope, config.head_dim())) {
        if (!std::isfinite(f)) __builtin_trap();
      }
    }
  } catch (const eigenformer::error&) {
  }
  return 0;
}
