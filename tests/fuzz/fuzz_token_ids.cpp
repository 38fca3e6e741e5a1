// libFuzzer target: the command line's --tokens / --ids text. Either ids in [0, INT32_MAX] or a
// usage_error (printed as one line by the program).
#include <cstddef>
#include <cstdint>
#include <string>

#include "cli_parse.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto ids =
        eigenformer_cli::parse_token_ids(std::string(reinterpret_cast<const char*>(data), size));
    if (ids.empty()) __builtin_trap();
    for (const auto id : ids) {
      if (id < 0) __builtin_trap();
    }
  } catch (const eigenformer_cli::usage_error&) {
  }
  return 0;
}
