// eigenformer/quant/k_quants.hpp — ggml's "k-quant" super-block formats, bit for bit: a row of K
// weights is K / 256 consecutive super-blocks, each of 8 (q4_k, q5_k) or 16 (q6_k) sub-blocks
// with their own small integer scales. These make up llama.cpp's Q4_K_M files (Q4_K in most
// tensors, Q6_K in the output and some value/down projections, Q5_K where Q4_K_M asks for more).
//
//   q4_k: 144 bytes = fp16 d, fp16 dmin, 12 bytes of 6-bit (scale, min) pairs for 8 sub-blocks of
//         32, 128 bytes of nibbles.        weight = d * scale_s * q - dmin * min_s, q in [0, 15]
//   q5_k: 176 bytes = the same plus 32 bytes of fifth bits (qh).                  q in [0, 31]
//   q6_k: 210 bytes = 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 int8 scales
//         (sub-blocks of 16), fp16 d.      weight = d * scale_s * (q - 32),       q in [0, 63]
// Nibble order: each 64 weights use 32 bytes, low nibbles for the first 32, high for the next.
// tests/test_quant_blocks.cpp checks dequantization against llama.cpp's gguf-py.
#pragma once

#include <cstdint>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/quant/blocks.hpp"

namespace eigenformer {

/// Weights per k-quant super-block.
inline constexpr index_t k_quant_block_weights = 256;

struct block_q4_k {
  std::uint16_t d;          // fp16 bits: scale of the sub-block scales
  std::uint16_t dmin;       // fp16 bits: scale of the sub-block mins
  std::uint8_t scales[12];  // 8 x (6-bit scale, 6-bit min), packed (k_quant_scale_min)
  std::uint8_t qs[128];     // 256 nibbles
};
struct block_q5_k {
  std::uint16_t d;
  std::uint16_t dmin;
  std::uint8_t scales[12];
  std::uint8_t qh[32];   // bit 2c / 2c+1 of qh[l]: the fifth bit of weight l / l + 32 of chunk c
  std::uint8_t qs[128];  // low nibbles
};
struct block_q6_k {
  std::uint8_t ql[128];  // low 4 bits
  std::uint8_t qh[64];   // high 2 bits, four weights per byte
  std::int8_t scales[16];
  std::uint16_t d;  // fp16 bits
};
static_assert(sizeof(block_q4_k) == 144 && sizeof(block_q5_k) == 176 && sizeof(block_q6_k) == 210,
              "ggml's super-block sizes: the structs must have no padding");

namespace detail {
inline void check_k_block_multiple(index_t n, const char* what) {
  if (n % k_quant_block_weights != 0)
    throw shape_error(concat(what, ": ", n, " weights are not a multiple of the super-block of ",
                             k_quant_block_weights));
}

/// The 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes: sub-blocks 0-3 keep
/// theirs in the low 6 bits of bytes j and j + 4; sub-blocks 4-7 put their low 4 bits in the
/// nibbles of byte j + 4 and their top 2 bits in the spare top bits of bytes j - 4 and j.
inline void k_quant_scale_min(int j, const std::uint8_t* packed, int& scale, int& min) {
  if (j < 4) {
    scale = packed[j] & 63;
    min = packed[j + 4] & 63;
  } else {
    scale = (packed[j + 4] & 0xF) | ((packed[j - 4] >> 6) << 4);
    min = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
  }
}

/// One q4_k or q5_k super-block -> y[0:256]; `qh` is null for q4_k.
inline void dequantize_q45_k(std::uint16_t d_bits, std::uint16_t dmin_bits,
                             const std::uint8_t* scales, const std::uint8_t* qs,
                             const std::uint8_t* qh, float* y) {
  const float d = fp16_value(d_bits), dmin = fp16_value(dmin_bits);
  for (int chunk = 0; chunk < 4; ++chunk, qs += 32, y += 64) {  // 64 weights, two sub-blocks
    int scale_lo, min_lo, scale_hi, min_hi;
    k_quant_scale_min(2 * chunk, scales, scale_lo, min_lo);
    k_quant_scale_min(2 * chunk + 1, scales, scale_hi, min_hi);
    const float d_lo = d * float(scale_lo), m_lo = dmin * float(min_lo);
    const float d_hi = d * float(scale_hi), m_hi = dmin * float(min_hi);
    for (int l = 0; l < 32; ++l) {
      const int fifth_lo = qh ? ((qh[l] >> (2 * chunk)) & 1) << 4 : 0;
      const int fifth_hi = qh ? ((qh[l] >> (2 * chunk + 1)) & 1) << 4 : 0;
      y[l] = d_lo * float((qs[l] & 0xF) + fifth_lo) - m_lo;
      y[l + 32] = d_hi * float((qs[l] >> 4) + fifth_hi) - m_hi;
    }
  }
}
}  // namespace detail

/// n / 256 q4_k super-blocks -> y[0:n].
inline void dequantize_row_q4_k(const block_q4_k* in, float* y, index_t n) {
  detail::check_k_block_multiple(n, "dequantize_row_q4_k");
  for (index_t b = 0; b < n / k_quant_block_weights; ++b, y += k_quant_block_weights)
    detail::dequantize_q45_k(in[b].d, in[b].dmin, in[b].scales, in[b].qs, nullptr, y);
}

/// n / 256 q5_k super-blocks -> y[0:n].
inline void dequantize_row_q5_k(const block_q5_k* in, float* y, index_t n) {
  detail::check_k_block_multiple(n, "dequantize_row_q5_k");
  for (index_t b = 0; b < n / k_quant_block_weights; ++b, y += k_quant_block_weights)
    detail::dequantize_q45_k(in[b].d, in[b].dmin, in[b].scales, in[b].qs, in[b].qh, y);
}

/// n / 256 q6_k super-blocks -> y[0:n].
inline void dequantize_row_q6_k(const block_q6_k* in, float* y, index_t n) {
  detail::check_k_block_multiple(n, "dequantize_row_q6_k");
  for (index_t b = 0; b < n / k_quant_block_weights; ++b) {
    const float d = detail::fp16_value(in[b].d);
    const std::uint8_t* ql = in[b].ql;
    const std::uint8_t* qh = in[b].qh;
    const std::int8_t* sc = in[b].scales;
    for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, y += 128) {
      for (int l = 0; l < 32; ++l) {
        const int s = l / 16;  // sub-blocks of 16 weights
        const int q0 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q1 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q2 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q3 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * float(sc[s]) * float(q0);
        y[l + 32] = d * float(sc[s + 2]) * float(q1);
        y[l + 64] = d * float(sc[s + 4]) * float(q2);
        y[l + 96] = d * float(sc[s + 6]) * float(q3);
      }
    }
  }
}

}  // namespace eigenformer
