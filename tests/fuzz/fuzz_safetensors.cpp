// libFuzzer target: arbitrary bytes as a .safetensors file. Parsing must either succeed or throw
// eigenformer::error; every tensor the header declares must then be readable within the data
// (no out-of-bounds read, no allocation larger than the input implies).
#include <cstddef>
#include <cstdint>
#include <vector>

#include <eigenformer/io/safetensors.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const eigenformer::safetensors_file file(std::vector<unsigned char>(data, data + size),
                                             "fuzz.safetensors");
    for (const auto& [name, info] : file.tensors()) {
      if (!eigenformer::is_floating_point(info.type) || info.shape.empty() ||
          info.shape.size() > 2) {
        continue;
      }
      const auto m = file.read<float>(name, info.shape);
      if (m.size() != info.numel()) __builtin_trap();
    }
  } catch (const eigenformer::error&) {
  }
  return 0;
}
