// eigenformer/ops/quant_int8.hpp — products of quantized weights with activations rounded to
// int8 per block of 32, as ggml's vec_dot does: the integer dot product of a block is exact, so
// one multiply-add per 4 weights becomes one per block.
//
// What is computed, for a row x and a column w of K weights (K/32 blocks of 32):
//  1. x is quantized per block b as ggml's quantize_row_q8_0 does: d_x = max|x| / 127,
//     q_x = round-half-even(x / d_x) (with ggml's 1 / d_x), so |q_x| <= 127; d_x stays float.
//     S_b is the sum of block b's q_x, S_b0 and S_b1 those of its elements 0-15 and 16-31.
//  2. Each weight is a code u >= 0 (as the format stores it) and scales. Per block b, with
//     exact integer sums I over the block's weights (or its half h) and float products:
//       q8_0, q4_0, q5_0: w = d (u - 2^s), s = 7, 3, 4; d the block's scale.
//         I = sum (u - 2^s) q_x;           acc = fma(float(I), d d_x, acc)
//       q5_1, q4_k, q5_k: w = a u - m; a = d, m = -(the block's min) for q5_1; a = d scale_j,
//         m = dmin min_j of the block's sub-block j for the k-quants.
//         I = sum u q_x;                   acc = fma(fma(float(I), a, float(-S_b) m), d_x, acc)
//       q6_k: w = a_h (u - 32); a_h = d scale of the block's half h (16 weights).
//         for h = 0, 1: I_h = sum (u - 32) q_x over half h;  acc = fma(float(I_h), a_h d_x, acc)
//     One running sum acc per output, over the blocks in increasing order.
//  3. y = acc + the bias.
// Nothing depends on the rows beside x or on threads: a row is bit-identical alone or batched.
// The price is ggml's: x keeps about 8 bits per block instead of 24, an error of at most
// d_x / 2 per activation (tests/test_quant_matmul.cpp bounds it).
//
// How: columns are stored interleaved 16 at a time (quant/quantized_matrix.hpp), so the 16
// lanes of a vector are 16 output columns. The codes are unsigned, so AVX512-VNNI's vpdpbusd
// (unsigned x signed bytes, 4 per lane) applies: 8 of them, each with one broadcast activation
// word, make a block's integer sums for 16 columns, with no shuffles; the offsets 2^s times
// -S_b start the sums. The k-quants' 6-bit and int8 sub-block scales are unpacked once per
// super-block of 256, 16 columns at a time, into floats. Elsewhere the same arithmetic in plain
// C++ (the portable test build proves both give the same bits).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "eigenformer/core/parallel.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/quant/blocks.hpp"
#include "eigenformer/quant/k_quants.hpp"
#include "eigenformer/quant/quantized_matrix.hpp"

namespace eigenformer {
namespace detail {

/// Whether a type's weights are a u - m (q5_1, q4_k, q5_k) rather than a (u - 2^s).
constexpr bool has_min(quant_type t) {
  return t == quant_type::q5_1 || t == quant_type::q4_k || t == quant_type::q5_k;
}

/// Whether a type comes in super-blocks of 256 weights (8 blocks of 32).
constexpr bool is_k_quant(quant_type t) {
  return t == quant_type::q4_k || t == quant_type::q5_k || t == quant_type::q6_k;
}

/// s of the offset 2^s making a type's weights unsigned codes: q_w = u - 2^s.
constexpr int int8_offset_shift(quant_type t) {
  return t == quant_type::q8_0 ? 7 : t == quant_type::q4_0 ? 3 : t == quant_type::q6_k ? 5 : 4;
}

/// Bytes per block (or super-block) of a type, at compile time.
template <quant_type T>
inline constexpr index_t block_bytes_of = T == quant_type::q8_0   ? index_t(sizeof(block_q8_0))
                                          : T == quant_type::q4_0 ? index_t(sizeof(block_q4_0))
                                          : T == quant_type::q5_0 ? index_t(sizeof(block_q5_0))
                                          : T == quant_type::q5_1 ? index_t(sizeof(block_q5_1))
                                          : T == quant_type::q4_k ? index_t(sizeof(block_q4_k))
                                          : T == quant_type::q5_k ? index_t(sizeof(block_q5_k))
                                                                  : index_t(sizeof(block_q6_k));

/// Blocks of 32 per ggml block of a type (a unit of the interleaved layout).
template <quant_type T>
inline constexpr index_t unit_blocks = is_k_quant(T) ? 8 : 1;

/// Bytes of one unit (ggml block) of an interleaved group of 16 columns.
template <quant_type T>
inline constexpr index_t group_unit_bytes = interleave_columns* block_bytes_of<T>;

/// Rows of x quantized per block of 32. Per row: values [blocks x 32] int8 in order, then
/// scales [blocks] float (d_x), then sums [blocks] int32 (-S_b), then half_sums [blocks x 2]
/// int32 (-S_b0, -S_b1).
struct int8_rows {
  index_t blocks = 0;
  unsigned char* data = nullptr;
  static constexpr index_t row_bytes_per_block = 32 + 4 + 4 + 8;
  index_t row_bytes() const { return blocks * row_bytes_per_block; }
  const std::int8_t* values(index_t t) const {
    return reinterpret_cast<const std::int8_t*>(data + t * row_bytes());
  }
  const float* scales(index_t t) const {
    return reinterpret_cast<const float*>(data + t * row_bytes() + blocks * 32);
  }
  const std::int32_t* sums(index_t t) const {
    return reinterpret_cast<const std::int32_t*>(data + t * row_bytes() + blocks * 36);
  }
  const std::int32_t* half_sums(index_t t) const {
    return reinterpret_cast<const std::int32_t*>(data + t * row_bytes() + blocks * 40);
  }
  /// Block b's activations 4j .. 4j + 3 (j < 8).
  const std::int8_t* word(index_t t, index_t b, index_t j) const {
    return values(t) + 32 * b + 4 * j;
  }
  std::int8_t* values(index_t t) {
    return const_cast<std::int8_t*>(std::as_const(*this).values(t));
  }
  float* scales(index_t t) { return const_cast<float*>(std::as_const(*this).scales(t)); }
  std::int32_t* sums(index_t t) { return const_cast<std::int32_t*>(std::as_const(*this).sums(t)); }
  std::int32_t* half_sums(index_t t) {
    return const_cast<std::int32_t*>(std::as_const(*this).half_sums(t));
  }
};

/// ggml's per-block activation scale and its inverse.
inline void int8_scale(float amax, float& d, float& inverse) {
  d = amax / 127.0f;
  inverse = d != 0.0f ? 1.0f / d : 0.0f;
}

/// One row of K activations -> values [K] and scales [K / 32] (the scalar reference; the
/// AVX-512 version below computes the same values).
inline void quantize_int8_row_scalar(const float* x, index_t K, std::int8_t* values,
                                     float* scales) {
  for (index_t b = 0; b < K / 32; ++b) {
    const float* xb = x + 32 * b;
    float amax = 0.0f;
    for (index_t e = 0; e < 32; ++e) amax = std::max(amax, std::fabs(xb[e]));
    float inverse;
    int8_scale(amax, scales[b], inverse);
    for (index_t e = 0; e < 32; ++e) {
      const float r = xb[e] * inverse;
      // NaN becomes -128 as the AVX-512 conversion makes it; finite values are within 127.
      const int q = std::isnan(r) ? -128 : int(std::nearbyint(std::clamp(r, -128.0f, 127.0f)));
      values[32 * b + e] = static_cast<std::int8_t>(q);
    }
  }
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__) && defined(__F16C__)
#define EIGENFORMER_QUANT_VNNI 1

inline void quantize_int8_row(const float* x, index_t K, std::int8_t* values, float* scales) {
  for (index_t b = 0; b < K / 32; ++b) {
    const __m512 lo = _mm512_loadu_ps(x + 32 * b), hi = _mm512_loadu_ps(x + 32 * b + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
    float inverse;
    int8_scale(amax, scales[b], inverse);
    const __m512 inv = _mm512_set1_ps(inverse);
    const __m128i q_lo = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(lo, inv)));
    const __m128i q_hi = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(hi, inv)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(values + 32 * b), q_lo);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(values + 32 * b + 16), q_hi);
  }
}
#else
inline void quantize_int8_row(const float* x, index_t K, std::int8_t* values, float* scales) {
  quantize_int8_row_scalar(x, K, values, scales);
}
#endif

/// x [T x K] -> its int8 rows in `buffer` (grown as needed; the caller's thread keeps it).
template <class Buffer>
int8_rows quantize_int8_rows(matrix_cref<float> x, Buffer& buffer) {
  int8_rows rows;
  const index_t K = x.cols(), T = x.rows();
  rows.blocks = K / 32;
  const std::size_t bytes = std::size_t(T * rows.row_bytes());
  if (buffer.size() < bytes) buffer.resize(bytes);
  rows.data = buffer.data();
  const auto one_row = [&](index_t t) {
    quantize_int8_row(x.data() + t * x.outerStride(), K, rows.values(t), rows.scales(t));
    const std::int8_t* v = rows.values(t);
    for (index_t b = 0; b < rows.blocks; ++b) {
      std::int32_t half[2] = {0, 0};
      for (index_t e = 0; e < 32; ++e) half[e / 16] += v[32 * b + e];
      rows.half_sums(t)[2 * b] = -half[0];
      rows.half_sums(t)[2 * b + 1] = -half[1];
      rows.sums(t)[b] = -(half[0] + half[1]);
    }
  };
  if (T < 16) {
    for (index_t t = 0; t < T; ++t) one_row(t);
  } else {
    parallel_for(T, one_row);
  }
  return rows;
}

inline std::int32_t load_word(const std::int8_t* p) {
  std::int32_t w;
  std::memcpy(&w, p, 4);
  return w;
}

#if defined(EIGENFORMER_QUANT_VNNI)
using int8_lanes = __m512;

/// How far ahead of the block it multiplies a decoding step asks for each group's bytes: the
/// hardware prefetcher alone left SmolLM2-135M's Q4_0 decoding at 102 tokens/s on one thread
/// of the AMX Xeon; 1, 2 and 4 KiB ahead gave 110, 117 and 108 (one run each; that VM's runs
/// vary by about 10%).
inline constexpr index_t interleaved_prefetch_distance = 2048;

inline __m512i load_vector(const unsigned char* p) {
  return _mm512_loadu_si512(p);
}

/// 16 fp16 values (one per column) -> floats.
inline __m512 load_halves(const unsigned char* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

/// The unsigned codes of word v (weights 4v .. 4v + 3) of block j of a unit, 16 columns.
template <quant_type T>
inline __m512i code_word(const unsigned char* unit, int j, int v) {
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  if constexpr (T == quant_type::q8_0) {
    return load_vector(unit + 32 + 64 * v);
  } else if constexpr (T == quant_type::q4_0 || T == quant_type::q5_0 || T == quant_type::q5_1) {
    // [16 d | (q5_1: 16 m) | (q5_0, q5_1: 1 vector of fifth bits) | 4 vectors of nibbles]; words
    // 4-7 are the high nibbles of the bytes of words 0-3.
    constexpr index_t high_bits = T == quant_type::q5_1 ? 64 : 32;
    constexpr index_t codes = T == quant_type::q4_0 ? 32 : high_bits + 64;
    const __m512i raw = load_vector(unit + codes + 64 * (v % 4));
    __m512i u = _mm512_and_si512(v < 4 ? raw : _mm512_srli_epi16(raw, 4), low4);
    if constexpr (T != quant_type::q4_0) {
      // Bit 4v + i of a column's 32-bit qh is the fifth bit of its byte i: bring bits 4v .. 4v
      // + 3 to the bottom, copy the low byte to all 4 bytes, test bit i in byte i.
      const __m512i high = _mm512_srli_epi32(load_vector(unit + high_bits), unsigned(4 * v));
      const __m512i spread =
          _mm512_shuffle_epi8(high, _mm512_set4_epi32(0x0c0c0c0c, 0x08080808, 0x04040404, 0));
      const __mmask64 fifth = _mm512_test_epi8_mask(spread, _mm512_set1_epi32(0x08040201));
      u = _mm512_mask_add_epi8(u, fifth, u, _mm512_set1_epi8(16));
    }
    return u;
  } else if constexpr (T == quant_type::q4_k || T == quant_type::q5_k) {
    // [16 d | 16 dmin | 3 vectors of scales | (q5_k: 8 vectors of fifth bits) | 32 vectors of
    // nibbles]; block j is the low (j even) or high nibbles of vectors 8 (j / 2) .. + 7.
    constexpr index_t codes = T == quant_type::q4_k ? 256 : 768;
    const __m512i raw = load_vector(unit + codes + 64 * (8 * (j / 2) + v));
    __m512i u = _mm512_and_si512(j % 2 == 0 ? raw : _mm512_srli_epi16(raw, 4), low4);
    if constexpr (T == quant_type::q5_k) {
      const __mmask64 fifth =
          _mm512_test_epi8_mask(load_vector(unit + 256 + 64 * v), _mm512_set1_epi8(char(1 << j)));
      u = _mm512_mask_add_epi8(u, fifth, u, _mm512_set1_epi8(16));
    }
    return u;
  } else {
    // q6_k: [32 vectors ql | 16 vectors qh | 4 vectors of scales | 16 d]. Block j = 4h + r:
    // the low (r < 2) or high nibbles of ql vectors 16h + 8 (r % 2) + v, and bits 2r, 2r + 1
    // of qh vector 8h + v.
    const int h = j / 4, r = j % 4;
    const __m512i ql = load_vector(unit + 64 * (16 * h + 8 * (r % 2) + v));
    const __m512i qh = load_vector(unit + 2048 + 64 * (8 * h + v));
    const __m512i low = _mm512_and_si512(r < 2 ? ql : _mm512_srli_epi16(ql, 4), low4);
    const __m512i high = 2 * r <= 4 ? _mm512_slli_epi16(qh, unsigned(4 - 2 * r))
                                    : _mm512_srli_epi16(qh, unsigned(2 * r - 4));
    return _mm512_ternarylogic_epi32(low, high, _mm512_set1_epi8(0x30), 0xf8);  // a | (b & c)
  }
}

/// A unit's scales for 16 columns, as floats: d (32-weight types), a and m of its blocks
/// (q5_1: 1, q4_k, q5_k: 8) or a of the 16 halves (q6_k).
template <quant_type T>
struct unit_scales {
  __m512 d;
};
template <>
struct unit_scales<quant_type::q4_k> {
  __m512 a[8], m[8];
};
template <>
struct unit_scales<quant_type::q5_k> : unit_scales<quant_type::q4_k> {};
template <>
struct unit_scales<quant_type::q5_1> {
  __m512 a[1], m[1];
};
template <>
struct unit_scales<quant_type::q6_k> {
  __m512 a[16];
};

template <quant_type T>
inline void load_unit_scales(const unsigned char* unit, unit_scales<T>& s) {
  if constexpr (T == quant_type::q5_1) {  // w = d u + min: a = d, m = -min (exact)
    s.a[0] = load_halves(unit);
    s.m[0] = _mm512_sub_ps(_mm512_setzero_ps(), load_halves(unit + 32));
  } else if constexpr (has_min(T)) {
    // ggml's 12 bytes of 6-bit scales and mins, as 3 vectors of words: byte i of word w is
    // packed byte 4w + i (k_quant_scale_min).
    const __m512 d = load_halves(unit), dmin = load_halves(unit + 32);
    const __m512i w0 = load_vector(unit + 64), w1 = load_vector(unit + 128);
    const __m512i w2 = load_vector(unit + 192);
    const __m512i six = _mm512_set1_epi32(63), four = _mm512_set1_epi32(15);
    const __m512i top = _mm512_set1_epi32(0x30);
    for (int j = 0; j < 8; ++j) {
      __m512i scale, min;
      if (j < 4) {
        scale = _mm512_and_si512(_mm512_srli_epi32(w0, unsigned(8 * j)), six);
        min = _mm512_and_si512(_mm512_srli_epi32(w1, unsigned(8 * j)), six);
      } else {
        const unsigned k = unsigned(8 * (j - 4));
        scale = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(w2, k), four),
                                _mm512_and_si512(_mm512_srli_epi32(w0, k + 2), top));
        min = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(w2, k + 4), four),
                              _mm512_and_si512(_mm512_srli_epi32(w1, k + 2), top));
      }
      s.a[j] = _mm512_mul_ps(_mm512_cvtepi32_ps(scale), d);
      s.m[j] = _mm512_mul_ps(_mm512_cvtepi32_ps(min), dmin);
    }
  } else if constexpr (T == quant_type::q6_k) {
    const __m512 d = load_halves(unit + 3328);
    for (int i = 0; i < 16; ++i) {  // int8 scale i: byte i % 4 of word i / 4
      const __m512i word = load_vector(unit + 3072 + 64 * (i / 4));
      const __m512i scale =
          _mm512_srai_epi32(_mm512_slli_epi32(word, unsigned(24 - 8 * (i % 4))), 24);
      s.a[i] = _mm512_mul_ps(_mm512_cvtepi32_ps(scale), d);
    }
  } else {
    s.d = load_halves(unit);
  }
}

/// acc[r][g] += sum[r][g] over words [v0, v0 + n) of block j of the units, rows of block b.
template <quant_type T, int R, int G>
inline void add_code_words(const int8_rows& x, index_t t0, const unsigned char* const* unit, int j,
                           index_t b, int v0, int n, __m512i (&sum)[R][G]) {
  for (int v = v0; v < v0 + n; ++v) {
    __m512i u[G];
    for (int g = 0; g < G; ++g) u[g] = code_word<T>(unit[g], j, v);
    for (int r = 0; r < R; ++r) {
      const __m512i xw = _mm512_set1_epi32(load_word(x.word(t0 + r, b, v)));
      for (int g = 0; g < G; ++g) sum[r][g] = _mm512_dpbusd_epi32(sum[r][g], u[g], xw);
    }
  }
}

/// Rows [t0, t0 + R) of x times the interleaved groups group[0 .. G) (K = 32 `blocks`), lane c
/// of acc[r][g] for column c of group g, in the order at the top of this file. The integer sums
/// are exact, so the order of the vpdpbusd does not matter; the float sums go block by block.
template <quant_type T, int R, int G>
inline void interleaved_tile(const int8_rows& x, index_t t0, const unsigned char* const* group,
                             index_t blocks, int8_lanes (&acc)[R][G]) {
  for (int r = 0; r < R; ++r) {
    for (int g = 0; g < G; ++g) acc[r][g] = _mm512_setzero_ps();
  }
  for (index_t first = 0; first < blocks; first += unit_blocks<T>) {
    const unsigned char* unit[G];
    for (int g = 0; g < G; ++g) unit[g] = group[g] + first / unit_blocks<T> * group_unit_bytes<T>;
    if constexpr (R == 1) {  // decoding: each weight is used once, so memory sets the pace
      for (int g = 0; g < G; ++g) {
        for (index_t line = 0; line < group_unit_bytes<T>; line += 64) {
          // An address, not a pointer into the weights: it may lie past their end (a hint never
          // faults), where pointer arithmetic would be undefined.
          const std::uintptr_t ahead = reinterpret_cast<std::uintptr_t>(unit[g]) +
                                       std::uintptr_t(interleaved_prefetch_distance + line);
          _mm_prefetch(reinterpret_cast<const char*>(ahead), _MM_HINT_T0);
        }
      }
    }
    unit_scales<T> scales[G];
    for (int g = 0; g < G; ++g) load_unit_scales<T>(unit[g], scales[g]);
    for (int j = 0; j < int(unit_blocks<T>); ++j) {
      const index_t b = first + j;
      __m512i sum[R][G];
      if constexpr (T == quant_type::q6_k) {
        for (int h = 0; h < 2; ++h) {
          for (int r = 0; r < R; ++r) {
            const __m512i start = _mm512_set1_epi32(x.half_sums(t0 + r)[2 * b + h] * 32);
            for (int g = 0; g < G; ++g) sum[r][g] = start;
          }
          add_code_words<T, R, G>(x, t0, unit, j, b, 4 * h, 4, sum);
          for (int r = 0; r < R; ++r) {
            const __m512 dx = _mm512_set1_ps(x.scales(t0 + r)[b]);
            for (int g = 0; g < G; ++g) {
              acc[r][g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[r][g]),
                                          _mm512_mul_ps(scales[g].a[2 * j + h], dx), acc[r][g]);
            }
          }
        }
      } else if constexpr (has_min(T)) {
        for (int r = 0; r < R; ++r) {
          for (int g = 0; g < G; ++g) sum[r][g] = _mm512_setzero_si512();
        }
        add_code_words<T, R, G>(x, t0, unit, j, b, 0, 8, sum);
        for (int r = 0; r < R; ++r) {
          const __m512 dx = _mm512_set1_ps(x.scales(t0 + r)[b]);
          const __m512 s = _mm512_set1_ps(float(x.sums(t0 + r)[b]));
          for (int g = 0; g < G; ++g) {
            const __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[r][g]), scales[g].a[j],
                                             _mm512_mul_ps(s, scales[g].m[j]));
            acc[r][g] = _mm512_fmadd_ps(v, dx, acc[r][g]);
          }
        }
      } else {
        for (int r = 0; r < R; ++r) {
          const __m512i start = _mm512_set1_epi32(x.sums(t0 + r)[b] * (1 << int8_offset_shift(T)));
          for (int g = 0; g < G; ++g) sum[r][g] = start;
        }
        add_code_words<T, R, G>(x, t0, unit, j, b, 0, 8, sum);
        for (int r = 0; r < R; ++r) {
          const __m512 dx = _mm512_set1_ps(x.scales(t0 + r)[b]);
          for (int g = 0; g < G; ++g) {
            acc[r][g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[r][g]),
                                        _mm512_mul_ps(scales[g].d, dx), acc[r][g]);
          }
        }
      }
    }
  }
}
#else
struct int8_lanes {
  float v[16];
};

/// Block j of a ggml unit (block or super-block) decoded: its 32 unsigned codes, the scale a of
/// each half (equal but for q6_k), the min m (q4_k, q5_k; else 0). The scalar reference of the
/// loads above.
template <quant_type T>
inline void unpack_block_scalar(const unsigned char* unit, int j, std::uint8_t u[32], float a[2],
                                float& m) {
  m = 0.0f;
  for (int e = 0; e < 32; ++e) {
    int value = 0;
    if constexpr (T == quant_type::q8_0) {
      value = unit[2 + e] ^ 0x80;
    } else if constexpr (T == quant_type::q4_0) {
      value = e < 16 ? unit[2 + e] & 15 : unit[2 + e - 16] >> 4;
    } else if constexpr (T == quant_type::q5_0 || T == quant_type::q5_1) {
      constexpr int high_bits = T == quant_type::q5_0 ? 2 : 4;  // after d (and m)
      std::uint32_t high;
      std::memcpy(&high, unit + high_bits, 4);
      const unsigned char* qs = unit + high_bits + 4;
      value = (e < 16 ? qs[e] & 15 : qs[e - 16] >> 4) | int((high >> e) & 1) << 4;
    } else if constexpr (T == quant_type::q6_k) {
      const auto* q = reinterpret_cast<const block_q6_k*>(unit);
      const int h = j / 4, r = j % 4;
      const int low = (q->ql[64 * h + 32 * (r % 2) + e] >> (4 * (r / 2))) & 15;
      const int high = (q->qh[32 * h + e] >> (2 * r)) & 3;
      value = low | high << 4;
    } else {
      const unsigned char* qs = unit + (T == quant_type::q4_k ? 16 : 48);
      value = (qs[32 * (j / 2) + e] >> (4 * (j % 2))) & 15;
      if constexpr (T == quant_type::q5_k) value |= ((unit[16 + e] >> j) & 1) << 4;
    }
    u[e] = static_cast<std::uint8_t>(value);
  }
  std::uint16_t d_bits;
  if constexpr (T == quant_type::q5_1) {
    std::uint16_t m_bits;
    std::memcpy(&d_bits, unit, 2);
    std::memcpy(&m_bits, unit + 2, 2);
    a[0] = a[1] = fp16_value(d_bits);
    m = -fp16_value(m_bits);
  } else if constexpr (T == quant_type::q6_k) {
    const auto* q = reinterpret_cast<const block_q6_k*>(unit);
    const float d = fp16_value(q->d);
    for (int h = 0; h < 2; ++h) a[h] = d * float(q->scales[2 * j + h]);
  } else if constexpr (has_min(T)) {
    std::uint16_t dmin_bits;
    std::memcpy(&d_bits, unit, 2);
    std::memcpy(&dmin_bits, unit + 2, 2);
    int scale, min;
    k_quant_scale_min(j, unit + 4, scale, min);
    a[0] = a[1] = fp16_value(d_bits) * float(scale);
    m = fp16_value(dmin_bits) * float(min);
  } else {
    std::memcpy(&d_bits, unit, 2);
    a[0] = a[1] = fp16_value(d_bits);
  }
}

/// The same arithmetic in plain C++: each column's unit is given back in ggml's layout and
/// decoded block by block.
template <quant_type T, int R, int G>
inline void interleaved_tile(const int8_rows& x, index_t t0, const unsigned char* const* group,
                             index_t blocks, int8_lanes (&acc)[R][G]) {
  for (int r = 0; r < R; ++r) {
    for (int g = 0; g < G; ++g) acc[r][g] = int8_lanes{};
  }
  alignas(16) unsigned char ggml[block_bytes_of<T>];  // read through ggml's block structs
  for (index_t first = 0; first < blocks; first += unit_blocks<T>) {
    for (int g = 0; g < G; ++g) {
      const unsigned char* unit = group[g] + first / unit_blocks<T> * group_unit_bytes<T>;
      for (index_t c = 0; c < interleave_columns; ++c) {
        deinterleave_block(T, unit, c, ggml);
        for (int j = 0; j < int(unit_blocks<T>); ++j) {
          const index_t b = first + j;
          std::uint8_t u[32];
          float a[2], m;
          unpack_block_scalar<T>(ggml, j, u, a, m);
          for (int r = 0; r < R; ++r) {
            const std::int8_t* xq = x.values(t0 + r) + 32 * b;
            const float dx = x.scales(t0 + r)[b];
            float& lane = acc[r][g].v[c];
            if constexpr (T == quant_type::q6_k) {
              for (int h = 0; h < 2; ++h) {
                std::int32_t sum = x.half_sums(t0 + r)[2 * b + h] * 32;
                for (int e = 16 * h; e < 16 * h + 16; ++e) sum += std::int32_t(u[e]) * xq[e];
                lane = std::fma(float(sum), a[h] * dx, lane);
              }
            } else if constexpr (has_min(T)) {
              std::int32_t sum = 0;
              for (int e = 0; e < 32; ++e) sum += std::int32_t(u[e]) * xq[e];
              const float s = float(x.sums(t0 + r)[b]);
              lane = std::fma(std::fma(float(sum), a[0], s * m), dx, lane);
            } else {
              std::int32_t sum = x.sums(t0 + r)[b] * (1 << int8_offset_shift(T));
              for (int e = 0; e < 32; ++e) sum += std::int32_t(u[e]) * xq[e];
              lane = std::fma(float(sum), a[0] * dx, lane);
            }
          }
        }
      }
    }
  }
}
#endif

}  // namespace detail
}  // namespace eigenformer
