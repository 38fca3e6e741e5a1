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
//
// Quantizing (q4_k, q5_k, q6_k) follows ggml's reference search (ggml-quants.c
// quantize_row_q4_K_ref, quantize_row_q5_K_ref, quantize_row_q6_K_ref, no importance matrix) as
// llama-quantize computes it — every product rounded before it is added (ggml-base is built without
// FMA; see rounded_product) — so our blocks equal llama.cpp's (tests/test_k_quants.cpp, against
// llama-quantize's output):
//   q4_k: each sub-block of 32 gets a scale and a min from a weighted least-squares search over
//         21 candidate grids (weights av_x + |x|, av_x the sub-block's RMS), the 8 scales and 8
//         mins are themselves quantized to 6 bits against the largest, and every weight is then
//         re-rounded to the final grid: q = round((x + dmin min) / (d scale)) in [0, 15].
//   q5_k: the same with codes [0, 31] and 16 candidate grids.
//   q6_k: each sub-block of 16 gets a symmetric scale from a search over 19 grids weighted by
//         x^2, the 16 scales become int8 against the largest |scale| (d = scale / -128), and the
//         weights are re-rounded: q = round(x / (d scale)) in [-32, 31], stored + 32.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

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

namespace detail {
/// ggml's nearest_int: round half to even by adding 1.5 * 2^23 (exact for |x| < 2^22; larger
/// values give what ggml's bit trick gives).
inline int ggml_nearest_int(float x) {
  const float shifted = x + 12582912.0f;  // callers pass a rounded_product, never a bare a * b
  std::int32_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  return (bits & 0x007fffff) - 0x00400000;
}

/// A scale and a min for one sub-block of n weights x with codes [0, nmax]: the weighted
/// least-squares fit over the grids (nmax + rmin + rdelta i) / (max - min), i = 0..steps,
/// keeping the smallest weighted squared error (ggml's make_qkx2_quants). Returns the scale,
/// sets the codes and `negative_min` (the min, negated: what the format subtracts).
inline float fit_scale_and_min(int n, int nmax, const float* x, const float* weights,
                               std::uint8_t* codes, float& negative_min, float rmin, float rdelta,
                               int steps) {
  float min = x[0], max = x[0];
  float sum_w = weights[0], sum_x = rounded_product(sum_w, x[0]);
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sum_w += weights[i];
    sum_x += rounded_product(weights[i], x[i]);
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::memset(codes, 0, std::size_t(n));
    negative_min = -min;
    return 0.0f;
  }
  const auto code_of = [&](float iscale, float v, float lo) {
    return std::uint8_t(std::clamp(ggml_nearest_int(rounded_product(iscale, v - lo)), 0, nmax));
  };
  float iscale = float(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    codes[i] = code_of(iscale, x[i], min);
    const float diff = rounded_product(scale, float(codes[i])) + min - x[i];
    best_error += rounded_product(weights[i], diff * diff);
  }
  std::uint8_t trial[32];
  for (int step = 0; step <= steps; ++step) {
    iscale = (rmin + rounded_product(rdelta, float(step)) + float(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      trial[i] = code_of(iscale, x[i], min);
      const float wl = rounded_product(weights[i], float(trial[i]));
      sum_l += wl;
      sum_l2 += rounded_product(wl, float(trial[i]));
      sum_xl += rounded_product(wl, x[i]);
    }
    const float det = rounded_product(sum_w, sum_l2) - rounded_product(sum_l, sum_l);
    if (!(det > 0)) continue;
    float this_scale = (rounded_product(sum_w, sum_xl) - rounded_product(sum_x, sum_l)) / det;
    float this_min = (rounded_product(sum_l2, sum_x) - rounded_product(sum_l, sum_xl)) / det;
    if (this_min > 0) {
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    float error = 0;
    for (int i = 0; i < n; ++i) {
      const float diff = rounded_product(this_scale, float(trial[i])) + this_min - x[i];
      error += rounded_product(weights[i], diff * diff);
    }
    if (error < best_error) {
      std::memcpy(codes, trial, std::size_t(n));
      best_error = error;
      scale = this_scale;
      min = this_min;
    }
  }
  negative_min = -min;
  return scale;
}

/// A symmetric scale for n weights x with signed codes [-nmax, nmax - 1] stored + nmax: the
/// x^2-weighted least-squares fit over the grids -(nmax + 0.1 i) / max, i = -9..9, max the x of
/// largest |x| (ggml's make_qx_quants, rmse_type 1). Returns the scale, sets the codes.
inline float fit_symmetric_scale(int n, int nmax, const float* x, std::int8_t* codes) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax < 1e-15f) {
    std::memset(codes, 0, std::size_t(n));
    return 0.0f;
  }
  const auto code_of = [&](float iscale, float v) {
    return std::clamp(ggml_nearest_int(rounded_product(iscale, v)), -nmax, nmax - 1);
  };
  // The weighted sums of x l and l^2 over the codes l of one grid.
  const auto sums = [&](float iscale, float& sum_lx, float& sum_l2) {
    sum_lx = sum_l2 = 0;
    for (int i = 0; i < n; ++i) {
      const float l = float(code_of(iscale, x[i]));
      const float w = x[i] * x[i];
      sum_lx += rounded_product(w * x[i], l);
      sum_l2 += rounded_product(w * l, l);
    }
  };
  const auto set_codes = [&](float iscale) {
    for (int i = 0; i < n; ++i) codes[i] = std::int8_t(nmax + code_of(iscale, x[i]));
  };
  float iscale = -float(nmax) / max;
  float sum_lx, sum_l2;
  sums(iscale, sum_lx, sum_l2);
  set_codes(iscale);
  float scale = sum_l2 != 0 ? sum_lx / sum_l2 : 0.0f;
  float best = scale * sum_lx;
  for (int step = -9; step <= 9; ++step) {
    if (step == 0) continue;
    iscale = -(float(nmax) + rounded_product(0.1f, float(step))) / max;
    sums(iscale, sum_lx, sum_l2);
    if (sum_l2 > 0 && sum_lx * sum_lx > best * sum_l2) {
      set_codes(iscale);
      scale = sum_lx / sum_l2;
      best = scale * sum_lx;
    }
  }
  return scale;
}
}  // namespace detail

namespace detail {
/// One q4_k (nmax 15) or q5_k (nmax 31) super-block of x[0:256]: its scales, mins and fp16 d,
/// dmin, and every weight's code in [0, nmax] (ggml's quantize_row_q4_K_ref / q5_K_ref).
inline void quantize_q45_k(const float* x, int nmax, float rmin, int steps, std::uint16_t& d_bits,
                           std::uint16_t& dmin_bits, std::uint8_t packed[12],
                           std::uint8_t codes[256]) {
  float scales[8], mins[8], weights[32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float* xj = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += rounded_product(xj[l], xj[l]);
    const float rms = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = rms + std::fabs(xj[l]);
    scales[j] =
        fit_scale_and_min(32, nmax, xj, weights, codes + 32 * j, mins[j], rmin, 0.1f, steps);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  // The 8 scales and mins as 6-bit multiples of d = max_scale / 63, dmin = max_min / 63.
  const float inverse_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inverse_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  std::memset(packed, 0, 12);
  for (int j = 0; j < 8; ++j) {
    // As ggml: the rounded value is kept in 8 bits, then capped at 63.
    const int ls = std::min<int>(
        63, std::uint8_t(ggml_nearest_int(rounded_product(inverse_scale, scales[j]))));
    const int lm =
        std::min<int>(63, std::uint8_t(ggml_nearest_int(rounded_product(inverse_min, mins[j]))));
    if (j < 4) {
      packed[j] = std::uint8_t(ls);
      packed[j + 4] = std::uint8_t(lm);
    } else {
      packed[j + 4] = std::uint8_t((ls & 0xF) | (lm & 0xF) << 4);
      packed[j - 4] |= std::uint8_t((ls >> 4) << 6);
      packed[j] |= std::uint8_t((lm >> 4) << 6);
    }
  }
  d_bits = fp16_bits(max_scale / 63.0f);
  dmin_bits = fp16_bits(max_min / 63.0f);
  // Every weight re-rounded to the stored grid (sub-blocks of scale 0 keep the fit's codes).
  for (int j = 0; j < 8; ++j) {
    int scale, min;
    k_quant_scale_min(j, packed, scale, min);
    const float d = fp16_value(d_bits) * float(scale);
    if (d == 0) continue;
    const float dm = fp16_value(dmin_bits) * float(min);
    for (int l = 0; l < 32; ++l)
      codes[32 * j + l] =
          std::uint8_t(std::clamp(ggml_nearest_int((x[32 * j + l] + dm) / d), 0, nmax));
  }
}
}  // namespace detail

/// x[0:n] -> n / 256 q4_k super-blocks (ggml's reference rounding, see the top).
inline void quantize_row_q4_k(const float* x, block_q4_k* out, index_t n) {
  detail::check_k_block_multiple(n, "quantize_row_q4_k");
  for (index_t b = 0; b < n / k_quant_block_weights; ++b, x += k_quant_block_weights) {
    std::uint8_t codes[256];
    block_q4_k& q = out[b];
    detail::quantize_q45_k(x, 15, -1.0f, 20, q.d, q.dmin, q.scales, codes);
    for (int chunk = 0; chunk < 4; ++chunk) {
      for (int l = 0; l < 32; ++l)
        q.qs[32 * chunk + l] =
            std::uint8_t(codes[64 * chunk + l] | codes[64 * chunk + l + 32] << 4);
    }
  }
}

/// x[0:n] -> n / 256 q5_k super-blocks (ggml's reference rounding, see the top).
inline void quantize_row_q5_k(const float* x, block_q5_k* out, index_t n) {
  detail::check_k_block_multiple(n, "quantize_row_q5_k");
  for (index_t b = 0; b < n / k_quant_block_weights; ++b, x += k_quant_block_weights) {
    std::uint8_t codes[256];
    block_q5_k& q = out[b];
    detail::quantize_q45_k(x, 31, -0.5f, 15, q.d, q.dmin, q.scales, codes);
    std::memset(q.qh, 0, sizeof q.qh);
    for (int chunk = 0; chunk < 4; ++chunk) {
      for (int l = 0; l < 32; ++l) {
        const int lo = codes[64 * chunk + l], hi = codes[64 * chunk + l + 32];
        q.qs[32 * chunk + l] = std::uint8_t((lo & 15) | (hi & 15) << 4);
        q.qh[l] |= std::uint8_t((lo >> 4) << (2 * chunk) | (hi >> 4) << (2 * chunk + 1));
      }
    }
  }
}

/// x[0:n] -> n / 256 q6_k super-blocks (ggml's reference rounding, see the top).
inline void quantize_row_q6_k(const float* x, block_q6_k* out, index_t n) {
  detail::check_k_block_multiple(n, "quantize_row_q6_k");
  for (index_t b = 0; b < n / k_quant_block_weights; ++b, x += k_quant_block_weights) {
    std::int8_t codes[256];
    float scales[16];
    float max_scale = 0, max_abs_scale = 0;
    for (int j = 0; j < 16; ++j) {
      scales[j] = detail::fit_symmetric_scale(16, 32, x + 16 * j, codes + 16 * j);
      if (std::fabs(scales[j]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    block_q6_k& q = out[b];
    std::memset(&q, 0, sizeof q);
    if (max_abs_scale < 1e-15f) {  // an all-zero super-block
      q.d = detail::fp16_bits(0.0f);
      continue;
    }
    const float iscale = -128.0f / max_scale;
    q.d = detail::fp16_bits(1 / iscale);
    for (int j = 0; j < 16; ++j)
      q.scales[j] = std::int8_t(
          std::min(127, detail::ggml_nearest_int(detail::rounded_product(iscale, scales[j]))));
    for (int j = 0; j < 16; ++j) {
      const float d = detail::fp16_value(q.d) * float(q.scales[j]);
      if (d == 0) continue;
      for (int l = 0; l < 16; ++l)
        codes[16 * j + l] =
            std::int8_t(32 + std::clamp(detail::ggml_nearest_int(x[16 * j + l] / d), -32, 31));
    }
    for (int half = 0; half < 2; ++half) {
      const std::int8_t* c = codes + 128 * half;
      for (int l = 0; l < 32; ++l) {
        q.ql[64 * half + l] = std::uint8_t((c[l] & 0xF) | (c[l + 64] & 0xF) << 4);
        q.ql[64 * half + l + 32] = std::uint8_t((c[l + 32] & 0xF) | (c[l + 96] & 0xF) << 4);
        q.qh[32 * half + l] = std::uint8_t((c[l] >> 4) | (c[l + 32] >> 4) << 2 |
                                           (c[l + 64] >> 4) << 4 | (c[l + 96] >> 4) << 6);
      }
    }
  }
}

}  // namespace eigenformer
