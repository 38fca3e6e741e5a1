// eigenformer/core/bfloat16.hpp — bfloat16 <-> float conversion.
//
// bfloat16 is the upper half of an IEEE float: same exponent range, 8 mantissa bits. A bf16 value
// widens to float exactly (shift left by 16), which is why checkpoints stored in BF16 keep their
// exact values when loaded as float and packed back (ops/bf16_matmul.hpp).
#pragma once

#include <cstdint>
#include <cstring>

namespace eigenformer {

/// The bits of a bfloat16 value.
using bf16_bits = std::uint16_t;

/// Rounds to the nearest bfloat16, ties to even (what PyTorch and vcvtneps2bf16 do); NaN stays NaN.
inline bf16_bits float_to_bf16(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<bf16_bits>((bits >> 16) | 0x0040u);
  const std::uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<bf16_bits>((bits + rounding) >> 16);
}

inline float bf16_to_float(bf16_bits value) {
  const std::uint32_t bits = static_cast<std::uint32_t>(value) << 16;
  float result;
  std::memcpy(&result, &bits, sizeof result);
  return result;
}

/// The float nearest to `value` that bfloat16 can hold.
inline float round_to_bf16(float value) {
  return bf16_to_float(float_to_bf16(value));
}

}  // namespace eigenformer
