// eigenformer/quant/blocks.hpp — ggml's quantized block formats, bit for bit, so the bytes of a
// GGUF tensor are used as they are: a row of K weights is K / 32 consecutive blocks.
//
//   q8_0: 34 bytes = fp16 scale d + 32 int8 q;            weight = d * q
//   q4_0: 18 bytes = fp16 scale d + 16 bytes of nibbles;  weight = d * (nibble - 8), the low
//         nibbles of the 16 bytes are weights 0..15 of the block, the high nibbles 16..31
//   q5_0: 22 bytes = fp16 scale d + 32 fifth bits + 16 bytes of nibbles; weight = d * (q - 16),
//         bit j of the 32-bit qh is the fifth bit of weight j. llama-quantize falls back to
//         q5_0 in a Q4_K_M file for tensors whose rows are not a multiple of 256 (SmolLM2's 576).
//   q5_1: 24 bytes = fp16 scale d + fp16 min m + 32 fifth bits + 16 bytes of nibbles; weight =
//         d * q + m (the product rounded first), q in [0, 31]. llama-quantize's fallback for
//         q5_k (a Q4_K_M file's fused attn_qkv) where rows are not whole super-blocks.
//
// Quantizing follows ggml's reference rounding (ggml-quants.c, quantize_row_*_ref) as
// llama-quantize computes it (without FMA: see rounded_product), so our blocks equal llama.cpp's:
//   q8_0: d = max|x| / 127, q = roundf(x / d) (computed as x * (1/d), half away from zero)
//   q4_0: d = (the x of largest |x|) / -8, nibble = min(15, trunc(x * (1/d) + 8.5))
//   q5_0: d = (the x of largest |x|) / -16, q = min(31, trunc(x * (1/d) + 16.5))
//   q5_1: d = (max - min) / 31, m = min, q = the low 5 bits of trunc((x - min) * (1/d) + 0.5)
// tests/test_quant_blocks.cpp compares with llama.cpp's gguf-py on the same numbers.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <Eigen/Core>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"

namespace eigenformer {

/// Weights per block of q8_0 and q4_0.
inline constexpr index_t quant_block_weights = 32;

struct block_q8_0 {
  std::uint16_t d;  // fp16 bits
  std::int8_t q[32];
};
struct block_q4_0 {
  std::uint16_t d;     // fp16 bits
  std::uint8_t q[16];  // q[j] & 15: weight j; q[j] >> 4: weight j + 16
};
struct block_q5_0 {
  std::uint16_t d;      // fp16 bits
  std::uint8_t qh[4];   // little-endian uint32: bit j is the fifth bit of weight j
  std::uint8_t qs[16];  // qs[j] & 15: low bits of weight j; qs[j] >> 4: of weight j + 16
};
struct block_q5_1 {
  std::uint16_t d;      // fp16 bits
  std::uint16_t m;      // fp16 bits: the block's minimum
  std::uint8_t qh[4];   // little-endian uint32: bit j is the fifth bit of weight j
  std::uint8_t qs[16];  // qs[j] & 15: low bits of weight j; qs[j] >> 4: of weight j + 16
};
static_assert(sizeof(block_q8_0) == 34 && sizeof(block_q4_0) == 18 && sizeof(block_q5_0) == 22 &&
                  sizeof(block_q5_1) == 24,
              "ggml's block sizes: the structs must have no padding");

namespace detail {
inline std::uint16_t fp16_bits(float v) {
  return Eigen::numext::bit_cast<std::uint16_t>(Eigen::half(v));  // round to nearest even
}
inline float fp16_value(std::uint16_t bits) {
  return static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(bits));
}
/// a * b rounded to float on its own. ggml's reference quantizers (ggml-quants.c) are built
/// without FMA — ggml-base gets no -march, even in a native build — so their products are
/// always rounded before a sum; a compiler allowed to contract (GCC's default
/// -ffp-contract=fast) could otherwise fuse a * b + c here and change a code now and then (on
/// a SmolLM2-size file, a few weights).
inline float rounded_product(float a, float b) {
  float p = a * b;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __asm__("" : "+x"(p));  // the optimizer cannot see through it: nothing to fuse
#elif defined(__GNUC__)
  __asm__("" : "+m"(p));
#else
  volatile float stored = p;
  p = stored;
#endif
  return p;
}
inline void check_block_multiple(index_t n, const char* what) {
  if (n % quant_block_weights != 0)
    throw shape_error(
        concat(what, ": ", n, " weights are not a multiple of the block of ", quant_block_weights));
}
}  // namespace detail

/// x[0:n] -> n / 32 q8_0 blocks.
inline void quantize_row_q8_0(const float* x, block_q8_0* out, index_t n) {
  detail::check_block_multiple(n, "quantize_row_q8_0");
  for (index_t b = 0; b < n / quant_block_weights; ++b, x += quant_block_weights) {
    float amax = 0.0f;
    for (index_t j = 0; j < quant_block_weights; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
    out[b].d = detail::fp16_bits(d);
    for (index_t j = 0; j < quant_block_weights; ++j)
      out[b].q[j] = static_cast<std::int8_t>(std::round(x[j] * inverse));
  }
}

namespace detail {
/// The first x of the largest magnitude in a block, with its sign (q4_0's and q5_0's scale).
inline float signed_absolute_max(const float* x) {
  float amax = 0.0f, signed_max = 0.0f;
  for (index_t j = 0; j < quant_block_weights; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      signed_max = x[j];
    }
  }
  return signed_max;
}
/// The unsigned code of x in a block of scale d with codes [0, 2 * half - 1]:
/// min(2 half - 1, trunc(x * (1 / d) + half + 0.5)), the product rounded before the sum.
inline int offset_code(float x, float inverse, int half) {
  const float shifted = rounded_product(x, inverse) + (float(half) + 0.5f);  // [0.5, 2 half + 0.5]
  return std::min(2 * half - 1, static_cast<int>(shifted));
}
}  // namespace detail

/// x[0:n] -> n / 32 q4_0 blocks.
inline void quantize_row_q4_0(const float* x, block_q4_0* out, index_t n) {
  detail::check_block_multiple(n, "quantize_row_q4_0");
  for (index_t b = 0; b < n / quant_block_weights; ++b, x += quant_block_weights) {
    const float d = detail::signed_absolute_max(x) / -8.0f;
    const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
    out[b].d = detail::fp16_bits(d);
    for (index_t j = 0; j < 16; ++j) {
      out[b].q[j] = static_cast<std::uint8_t>(detail::offset_code(x[j], inverse, 8) |
                                              (detail::offset_code(x[j + 16], inverse, 8) << 4));
    }
  }
}

/// x[0:n] -> n / 32 q5_0 blocks.
inline void quantize_row_q5_0(const float* x, block_q5_0* out, index_t n) {
  detail::check_block_multiple(n, "quantize_row_q5_0");
  for (index_t b = 0; b < n / quant_block_weights; ++b, x += quant_block_weights) {
    const float d = detail::signed_absolute_max(x) / -16.0f;
    const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
    out[b].d = detail::fp16_bits(d);
    std::uint32_t fifth_bits = 0;
    for (index_t j = 0; j < 16; ++j) {
      const int lo = detail::offset_code(x[j], inverse, 16);
      const int hi = detail::offset_code(x[j + 16], inverse, 16);
      out[b].qs[j] = static_cast<std::uint8_t>((lo & 15) | ((hi & 15) << 4));
      fifth_bits |= std::uint32_t(lo >> 4) << j;
      fifth_bits |= std::uint32_t(hi >> 4) << (j + 16);
    }
    for (int i = 0; i < 4; ++i) out[b].qh[i] = static_cast<std::uint8_t>(fifth_bits >> (8 * i));
  }
}

/// x[0:n] -> n / 32 q5_1 blocks.
inline void quantize_row_q5_1(const float* x, block_q5_1* out, index_t n) {
  detail::check_block_multiple(n, "quantize_row_q5_1");
  for (index_t b = 0; b < n / quant_block_weights; ++b, x += quant_block_weights) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (index_t j = 0; j < quant_block_weights; ++j) {
      min = std::min(min, x[j]);
      max = std::max(max, x[j]);
    }
    const float d = (max - min) / 31.0f;
    const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
    out[b].d = detail::fp16_bits(d);
    out[b].m = detail::fp16_bits(min);
    std::uint32_t fifth_bits = 0;
    // ggml converts (x - min) / d + 0.5 to uint8_t: a value that rounds up to 32 keeps its low
    // five bits (0), as there.
    const auto code = [&](float v) {
      return int(static_cast<std::uint8_t>(detail::rounded_product(v - min, inverse) + 0.5f));
    };
    for (index_t j = 0; j < 16; ++j) {
      const int lo = code(x[j]), hi = code(x[j + 16]);
      out[b].qs[j] = static_cast<std::uint8_t>((lo & 15) | ((hi & 15) << 4));
      fifth_bits |= std::uint32_t((lo >> 4) & 1) << j;
      fifth_bits |= std::uint32_t((hi >> 4) & 1) << (j + 16);
    }
    for (int i = 0; i < 4; ++i) out[b].qh[i] = static_cast<std::uint8_t>(fifth_bits >> (8 * i));
  }
}

/// n / 32 q8_0 blocks -> y[0:n].
inline void dequantize_row_q8_0(const block_q8_0* in, float* y, index_t n) {
  detail::check_block_multiple(n, "dequantize_row_q8_0");
  for (index_t b = 0; b < n / quant_block_weights; ++b, y += quant_block_weights) {
    const float d = detail::fp16_value(in[b].d);
    for (index_t j = 0; j < quant_block_weights; ++j) y[j] = d * float(in[b].q[j]);
  }
}

/// n / 32 q4_0 blocks -> y[0:n].
inline void dequantize_row_q4_0(const block_q4_0* in, float* y, index_t n) {
  detail::check_block_multiple(n, "dequantize_row_q4_0");
  for (index_t b = 0; b < n / quant_block_weights; ++b, y += quant_block_weights) {
    const float d = detail::fp16_value(in[b].d);
    for (index_t j = 0; j < 16; ++j) {
      y[j] = d * float(int(in[b].q[j] & 15) - 8);
      y[j + 16] = d * float(int(in[b].q[j] >> 4) - 8);
    }
  }
}

/// n / 32 q5_0 blocks -> y[0:n].
inline void dequantize_row_q5_0(const block_q5_0* in, float* y, index_t n) {
  detail::check_block_multiple(n, "dequantize_row_q5_0");
  for (index_t b = 0; b < n / quant_block_weights; ++b, y += quant_block_weights) {
    const float d = detail::fp16_value(in[b].d);
    std::uint32_t fifth_bits = 0;
    for (int i = 0; i < 4; ++i) fifth_bits |= std::uint32_t(in[b].qh[i]) << (8 * i);
    for (index_t j = 0; j < 16; ++j) {
      const int lo = (in[b].qs[j] & 15) | int((fifth_bits >> j) & 1) << 4;
      const int hi = (in[b].qs[j] >> 4) | int((fifth_bits >> (j + 16)) & 1) << 4;
      y[j] = d * float(lo - 16);
      y[j + 16] = d * float(hi - 16);
    }
  }
}

/// n / 32 q5_1 blocks -> y[0:n].
inline void dequantize_row_q5_1(const block_q5_1* in, float* y, index_t n) {
  detail::check_block_multiple(n, "dequantize_row_q5_1");
  for (index_t b = 0; b < n / quant_block_weights; ++b, y += quant_block_weights) {
    const float d = detail::fp16_value(in[b].d), m = detail::fp16_value(in[b].m);
    std::uint32_t fifth_bits = 0;
    for (int i = 0; i < 4; ++i) fifth_bits |= std::uint32_t(in[b].qh[i]) << (8 * i);
    for (index_t j = 0; j < 16; ++j) {
      const int lo = (in[b].qs[j] & 15) | int((fifth_bits >> j) & 1) << 4;
      const int hi = (in[b].qs[j] >> 4) | int((fifth_bits >> (j + 16)) & 1) << 4;
      y[j] = detail::rounded_product(d, float(lo)) + m;
      y[j + 16] = detail::rounded_product(d, float(hi)) + m;
    }
  }
}

}  // namespace eigenformer
