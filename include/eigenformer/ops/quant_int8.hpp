// eigenformer/ops/quant_int8.hpp — products of quantized weights with activations rounded to
// int8 per block of 32, as ggml's vec_dot does: the integer dot product of a block is exact, so
// one multiply-add per 4 weights becomes one per block.
//
// What is computed, for a row x and a column w of K weights (K/32 blocks):
//  1. x is quantized per block b as ggml's quantize_row_q8_0 does: d_x = max|x| / 127,
//     q_x = round-half-even(x / d_x) (with ggml's 1 / d_x), so |q_x| <= 127; d_x stays float.
// q8_0 and q4_0 (interleaved 16 columns at a time, quant/quantized_matrix.hpp):
//  2. Each weight is d (u - 2^s), u >= 0 its code (s = 7 for q8_0, 3 for q4_0). Block b gives
//     the exact integer I_b = sum over its 32 weights of (u - 2^s) q_x, and one running sum
//     per column takes the blocks in increasing order: acc = fma(float(I_b), d d_x, acc).
//  3. y = acc + the bias.
// The other types (rows of blocks as ggml stores them):
//  2. Blocks go in pairs (2p, 2p + 1). A pair's 64 values are laid out as [block 2p elements
//     0-15 | block 2p+1 elements 0-15 | block 2p elements 16-31 | block 2p+1 elements 16-31]
//     (a q4_0 block's low nibbles, then its high ones), and lane l of 16 takes bytes 4l..4l+3:
//     elements 16(l >> 3) + 4(l & 3) + 0..3 of block 2p + ((l >> 2) & 1).
//  3. Each weight is a code u >= 0 times a scale a, less an offset: w = a (u - 2^s) for q8_0
//     q5_0 (s = 4) and q6_k (s = 5), with a the block's d
//     or, for q6_k, d times the int8 scale of the lane's 16 weights; w = a u - m for q4_k and
//     q5_k, with a = d scale_j and m = dmin min_j of the lane's sub-block of 32 (a and m are
//     exact products in float). Lane l of the pair, with S = the sum of its 4 q_x:
//       offset types: I = sum (u - 2^s) q_x (exact),  acc[l] = fma(float(I), a d_x, acc[l])
//       q4_k, q5_k:   I = sum u q_x (exact),  acc[l] = fma(fma(float(I), a, float(-S) m), d_x,
//                     acc[l])
//     for pairs in increasing order (an odd last block pairs with an empty one: I = 0, a = 0).
//  4. y = the 16 lanes added pairwise as quant_matmul.hpp does, plus the bias.
// Nothing depends on the rows beside x or on threads: a row is bit-identical alone or batched.
// The price is ggml's: x keeps about 8 bits per block instead of 24, an error of at most
// d_x / 2 per activation (tests/test_quant_matmul.cpp bounds it).
//
// How: the codes are unsigned, so AVX512-VNNI's vpdpbusd (unsigned x signed bytes, 4 per lane)
// applies; the offsets 2^s times -S (the sum of the q_x of a lane or a block) start the integer
// sum. Interleaved, a vector's lanes are 16 columns: 8 vpdpbusd with a broadcast activation
// word, one conversion and one scale multiply make a block of 16 columns, with no shuffles. The
// k-quants unpack their sub-block scales once per super-block of 256 and spread them over the lanes
// with one permute per pair. Elsewhere the same arithmetic in plain C++ (the portable test build
// proves both give the same bits).
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

/// Whether a type's weights are a u - m (q4_k, q5_k) rather than a (u - 2^s).
constexpr bool has_min(quant_type t) {
  return t == quant_type::q4_k || t == quant_type::q5_k;
}

/// Whether a type comes in super-blocks of 256 weights (8 blocks of 32, 4 pairs).
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
                                          : T == quant_type::q4_k ? index_t(sizeof(block_q4_k))
                                          : T == quant_type::q5_k ? index_t(sizeof(block_q5_k))
                                                                  : index_t(sizeof(block_q6_k));

/// Rows of x quantized per block, in the pair layout above. Per row: values [pairs x 64] int8,
/// then scales [pairs x 16] float (each lane's d_x), then sums [pairs x 16] int32 (minus each
/// lane's sum of q_x), then block_sums [pairs x 2] int32 (minus each block's).
struct int8_rows {
  index_t pairs = 0;
  unsigned char* data = nullptr;
  static constexpr index_t row_bytes_per_pair = 64 + 16 * 4 + 16 * 4 + 2 * 4;
  index_t row_bytes() const { return pairs * row_bytes_per_pair; }
  const std::int8_t* values(index_t t) const {
    return reinterpret_cast<const std::int8_t*>(data + t * row_bytes());
  }
  const float* scales(index_t t) const {
    return reinterpret_cast<const float*>(data + t * row_bytes() + pairs * 64);
  }
  const std::int32_t* sums(index_t t) const {
    return reinterpret_cast<const std::int32_t*>(data + t * row_bytes() + pairs * 128);
  }
  const std::int32_t* block_sums(index_t t) const {
    return reinterpret_cast<const std::int32_t*>(data + t * row_bytes() + pairs * 192);
  }
  /// Block b's 4 activations 4j .. 4j + 3 (j < 8), contiguous in the pair layout.
  const std::int8_t* word(index_t t, index_t b, index_t j) const {
    return values(t) + 64 * (b / 2) + 32 * (j / 4) + 16 * (b % 2) + 4 * (j % 4);
  }
  /// Block b's d_x.
  float block_scale(index_t t, index_t b) const { return scales(t)[16 * (b / 2) + 4 * (b % 2)]; }
  std::int8_t* values(index_t t) {
    return const_cast<std::int8_t*>(std::as_const(*this).values(t));
  }
  float* scales(index_t t) { return const_cast<float*>(std::as_const(*this).scales(t)); }
  std::int32_t* sums(index_t t) { return const_cast<std::int32_t*>(std::as_const(*this).sums(t)); }
  std::int32_t* block_sums(index_t t) {
    return const_cast<std::int32_t*>(std::as_const(*this).block_sums(t));
  }
};

/// Position in a pair's 64 bytes of element e (0..31) of the pair's block `second` (0 or 1).
constexpr index_t pair_position(index_t e, index_t second) {
  return 32 * (e >> 4) + 16 * second + (e & 15);
}

/// ggml's per-block activation scale and its inverse.
inline void int8_scale(float amax, float& d, float& inverse) {
  d = amax / 127.0f;
  inverse = d != 0.0f ? 1.0f / d : 0.0f;
}

/// Fills the scales and sums of pair p of a row whose values are in place.
inline void int8_pair_lanes(const std::int8_t* values, const float d[2], float* scales,
                            std::int32_t* sums) {
  for (int l = 0; l < 16; ++l) {
    scales[l] = d[(l >> 2) & 1];
    std::int32_t s = 0;
    for (int i = 0; i < 4; ++i) s += values[4 * l + i];
    sums[l] = -s;
  }
}

/// One row of K activations into the layout (the scalar reference; the AVX-512 version below
/// computes the same values).
inline void quantize_int8_row_scalar(const float* x, index_t K, index_t pairs, std::int8_t* values,
                                     float* scales, std::int32_t* sums) {
  const index_t blocks = K / 32;
  for (index_t p = 0; p < pairs; ++p) {
    float d[2] = {0.0f, 0.0f};
    std::int8_t* v = values + 64 * p;
    std::memset(v, 0, 64);
    for (index_t second = 0; second < 2; ++second) {
      const index_t b = 2 * p + second;
      if (b >= blocks) break;
      const float* xb = x + 32 * b;
      float amax = 0.0f;
      for (index_t e = 0; e < 32; ++e) amax = std::max(amax, std::fabs(xb[e]));
      float inverse;
      int8_scale(amax, d[second], inverse);
      for (index_t e = 0; e < 32; ++e) {
        const float r = xb[e] * inverse;
        // NaN becomes -128 as the AVX-512 conversion makes it; finite values are within 127.
        const int q = std::isnan(r) ? -128 : int(std::nearbyint(std::clamp(r, -128.0f, 127.0f)));
        v[pair_position(e, second)] = static_cast<std::int8_t>(q);
      }
    }
    int8_pair_lanes(v, d, scales + 16 * p, sums + 16 * p);
  }
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__) && defined(__F16C__)
#define EIGENFORMER_QUANT_VNNI 1

/// [a, b] -> 16 lanes [a x4, b x4, a x4, b x4]: the pair layout's lane-to-block pattern.
inline __m512 pair_pattern(__m128 ab) {
  const __m512i pattern = _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0);
  return _mm512_permutexvar_ps(pattern, _mm512_zextps128_ps512(ab));
}

inline void quantize_int8_row(const float* x, index_t K, index_t pairs, std::int8_t* values,
                              float* scales, std::int32_t* sums) {
  const index_t blocks = K / 32;
  const __m512i ones = _mm512_set1_epi8(1);
  for (index_t p = 0; p < pairs; ++p) {
    alignas(16) float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    __m128i q[4] = {_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128(),
                    _mm_setzero_si128()};
    for (index_t second = 0; second < 2 && 2 * p + second < blocks; ++second) {
      const float* xb = x + 32 * (2 * p + second);
      const __m512 lo = _mm512_loadu_ps(xb), hi = _mm512_loadu_ps(xb + 16);
      const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
      float inverse;
      int8_scale(amax, d[second], inverse);
      const __m512 inv = _mm512_set1_ps(inverse);
      q[second] = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(lo, inv)));
      q[2 + second] = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(hi, inv)));
    }
    const __m512i v = _mm512_inserti64x4(
        _mm512_zextsi256_si512(_mm256_inserti128_si256(_mm256_castsi128_si256(q[0]), q[1], 1)),
        _mm256_inserti128_si256(_mm256_castsi128_si256(q[2]), q[3], 1), 1);
    _mm512_storeu_si512(values + 64 * p, v);
    _mm512_storeu_ps(scales + 16 * p, pair_pattern(_mm_load_ps(d)));
    const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, v);
    _mm512_storeu_si512(sums + 16 * p, _mm512_sub_epi32(_mm512_setzero_si512(), s));
  }
}
#else
inline void quantize_int8_row(const float* x, index_t K, index_t pairs, std::int8_t* values,
                              float* scales, std::int32_t* sums) {
  quantize_int8_row_scalar(x, K, pairs, values, scales, sums);
}
#endif

/// x [T x K] -> its int8 rows in `buffer` (grown as needed; the caller's thread keeps it).
template <class Buffer>
int8_rows quantize_int8_rows(matrix_cref<float> x, Buffer& buffer) {
  int8_rows rows;
  const index_t K = x.cols(), T = x.rows();
  rows.pairs = (K / 32 + 1) / 2;
  const std::size_t bytes = std::size_t(T * rows.row_bytes());
  if (buffer.size() < bytes) buffer.resize(bytes);
  rows.data = buffer.data();
  const auto one_row = [&](index_t t) {
    quantize_int8_row(x.data() + t * x.outerStride(), K, rows.pairs, rows.values(t), rows.scales(t),
                      rows.sums(t));
    const std::int32_t* lanes = rows.sums(t);
    std::int32_t* blocks = rows.block_sums(t);
    for (index_t p = 0; p < rows.pairs; ++p, lanes += 16) {
      for (int second = 0; second < 2; ++second) {
        const std::int32_t* l = lanes + 4 * second;  // lanes 0-3, 8-11 or 4-7, 12-15
        blocks[2 * p + second] = l[0] + l[1] + l[2] + l[3] + l[8] + l[9] + l[10] + l[11];
      }
    }
  };
  if (T < 16) {
    for (index_t t = 0; t < T; ++t) one_row(t);
  } else {
    parallel_for(T, one_row);
  }
  return rows;
}

/// A pair of a column in the layout: the unsigned codes u, and per lane the scale a and the
/// min m (0 but for q4_k and q5_k). `p` counts pairs from the column's start; `block_count` is
/// 1 when the second block is empty. The scalar reference of the loads below.
template <quant_type T>
inline void unpack_pair_scalar(const unsigned char* column, index_t p, index_t block_count,
                               std::uint8_t* u, float a[16], float m[16]) {
  std::memset(u, 0, 64);
  float block_a[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};  // [second][element 0-15 or 16-31]
  float block_m[2] = {0.0f, 0.0f};
  for (index_t second = 0; second < block_count; ++second) {
    const index_t b = 2 * p + second;
    for (index_t e = 0; e < 32; ++e) {
      int value = 0;
      if constexpr (is_k_quant(T)) {
        const unsigned char* sb = column + (b / 8) * block_bytes_of<T>;
        const int j = int(b % 8);  // the block of 32 within the super-block
        if constexpr (T == quant_type::q6_k) {
          const auto* q = reinterpret_cast<const block_q6_k*>(sb);
          const int h = j / 4, r = j % 4;
          const int low = (q->ql[64 * h + 32 * (r % 2) + e] >> (4 * (r / 2))) & 15;
          const int high = (q->qh[32 * h + e] >> (2 * r)) & 3;
          value = low | high << 4;
          const float d = fp16_value(q->d);
          block_a[second][e / 16] = d * float(q->scales[2 * j + e / 16]);
        } else {
          std::uint16_t d_bits, dmin_bits;
          std::memcpy(&d_bits, sb, 2);
          std::memcpy(&dmin_bits, sb + 2, 2);
          const std::uint8_t* packed = sb + 4;
          const std::uint8_t* qs = sb + (T == quant_type::q4_k ? 16 : 48);
          value = (qs[32 * (j / 2) + e] >> (4 * (j % 2))) & 15;
          if constexpr (T == quant_type::q5_k) value |= ((sb[16 + e] >> j) & 1) << 4;
          int scale, min;
          k_quant_scale_min(j, packed, scale, min);
          block_a[second][e / 16] = fp16_value(d_bits) * float(scale);
          block_m[second] = fp16_value(dmin_bits) * float(min);
        }
      } else {
        static_assert(T == quant_type::q5_0, "q8_0 and q4_0 are interleaved");
        const unsigned char* block = column + b * block_bytes_of<T>;
        std::uint16_t d_bits;
        std::memcpy(&d_bits, block, 2);
        block_a[second][0] = block_a[second][1] = fp16_value(d_bits);
        std::uint32_t high;
        std::memcpy(&high, block + 2, 4);
        const unsigned char* qs = block + 6;
        value = (e < 16 ? qs[e] & 0x0f : qs[e - 16] >> 4) | int((high >> e) & 1) << 4;
      }
      u[pair_position(e, second)] = static_cast<std::uint8_t>(value);
    }
  }
  for (int l = 0; l < 16; ++l) {
    a[l] = block_a[(l >> 2) & 1][l >> 3];
    m[l] = block_m[(l >> 2) & 1];
  }
}

#if defined(EIGENFORMER_QUANT_VNNI)
using int8_lanes = __m512;

/// Pair (b, b + 1) of a q5_0 column (or block b alone, Two = false): the unsigned codes in the
/// layout, and the 16 lanes' weight scales.
template <bool Two>
inline void load_q5_0_pair(const unsigned char* column, index_t b, __m512i& u, __m512& d) {
  constexpr index_t bytes = block_bytes_of<quant_type::q5_0>;
  const unsigned char* first = column + b * bytes;
  const unsigned char* second = first + bytes;
  std::uint16_t d0, d1 = 0;
  std::memcpy(&d0, first, 2);
  if (Two) std::memcpy(&d1, second, 2);
  d = pair_pattern(
      _mm_cvtph_ps(_mm_cvtsi32_si128(int(std::uint32_t(d0) | std::uint32_t(d1) << 16))));
  const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(first + 6));
  const __m128i c =
      Two ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(second + 6)) : _mm_setzero_si128();
  const __m256i ac = _mm256_inserti128_si256(_mm256_castsi128_si256(a), c, 1);
  u = _mm512_and_si512(_mm512_inserti64x4(_mm512_zextsi256_si512(ac), _mm256_srli_epi16(ac, 4), 1),
                       _mm512_set1_epi8(0x0f));
  // The fifth bits: weights 0-15 of both blocks, then 16-31, as the layout orders them.
  std::uint32_t h0, h1 = 0;
  std::memcpy(&h0, first + 2, 4);
  if (Two) std::memcpy(&h1, second + 2, 4);
  const std::uint64_t mask = std::uint64_t(h0 & 0xffff) | std::uint64_t(h1 & 0xffff) << 16 |
                             std::uint64_t(h0 >> 16) << 32 | std::uint64_t(h1 >> 16) << 48;
  u = _mm512_mask_add_epi8(u, _cvtu64_mask64(mask), u, _mm512_set1_epi8(16));
}

/// [block 2c elements 0-31 | block 2c+1 elements 0-31] -> the pair layout.
inline __m512i to_pair_layout(__m512i v) {
  return _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0));
}

/// A k-quant super-block's scales as floats: q4_k/q5_k [a_0..a_7, m_0..m_7] of its 8
/// sub-blocks of 32; q6_k [a_0..a_15] of its 16 sub-blocks of 16.
template <quant_type T>
inline __m512 k_scales(const unsigned char* sb) {
  if constexpr (T == quant_type::q6_k) {
    const auto* q = reinterpret_cast<const block_q6_k*>(sb);
    const __m128i s = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q->scales));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(s)),
                         _mm512_set1_ps(fp16_value(q->d)));
  } else {
    std::uint16_t d_bits, dmin_bits;
    std::uint32_t w[3];
    std::memcpy(&d_bits, sb, 2);
    std::memcpy(&dmin_bits, sb + 2, 2);
    std::memcpy(w, sb + 4, 12);
    // k_quant_scale_min for all 8 sub-blocks at once, a byte each.
    const std::uint64_t scales = std::uint64_t(w[0] & 0x3f3f3f3fu) |
                                 std::uint64_t((w[2] & 0x0f0f0f0fu) | ((w[0] >> 2) & 0x30303030u))
                                     << 32;
    const std::uint64_t mins =
        std::uint64_t(w[1] & 0x3f3f3f3fu) |
        std::uint64_t(((w[2] >> 4) & 0x0f0f0f0fu) | ((w[1] >> 2) & 0x30303030u)) << 32;
    const __m512 sm = _mm512_cvtepi32_ps(
        _mm512_cvtepu8_epi32(_mm_set_epi64x(std::int64_t(mins), std::int64_t(scales))));
    const __m512 d = _mm512_mask_mov_ps(_mm512_set1_ps(fp16_value(d_bits)), __mmask16(0xff00),
                                        _mm512_set1_ps(fp16_value(dmin_bits)));
    return _mm512_mul_ps(sm, d);
  }
}

/// The unsigned codes of pair c (0..3) of a k-quant super-block, in the layout.
template <quant_type T>
inline __m512i load_k_pair(const unsigned char* sb, int c) {
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  if constexpr (T == quant_type::q6_k) {
    const int h = c / 2;  // which 128 weights
    const auto* q = reinterpret_cast<const block_q6_k*>(sb);
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q->ql + 64 * h));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q->ql + 64 * h + 32));
    const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q->qh + 32 * h));
    __m512i low = _mm512_inserti64x4(_mm512_zextsi256_si512(a), b, 1);
    __m512i high = _mm512_inserti64x4(_mm512_zextsi256_si512(hb), _mm256_srli_epi16(hb, 2), 1);
    if (c % 2 != 0) {  // blocks 2 and 3 of the 128: high nibbles, bits 4-7 of qh
      low = _mm512_srli_epi16(low, 4);
      high = _mm512_srli_epi16(high, 4);
    }
    const __m512i u =
        _mm512_or_si512(_mm512_and_si512(low, low4),
                        _mm512_and_si512(_mm512_slli_epi16(high, 4), _mm512_set1_epi8(0x30)));
    return to_pair_layout(u);
  } else {
    const unsigned char* qs = sb + (T == quant_type::q4_k ? 16 : 48) + 32 * c;
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs));
    __m512i u = _mm512_and_si512(
        _mm512_inserti64x4(_mm512_zextsi256_si512(v), _mm256_srli_epi16(v, 4), 1), low4);
    if constexpr (T == quant_type::q5_k) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb + 16));
      const __m512i hh = _mm512_inserti64x4(_mm512_zextsi256_si512(h), _mm256_srli_epi16(h, 1), 1);
      const __mmask64 fifth = _mm512_test_epi8_mask(hh, _mm512_set1_epi8(char(1 << (2 * c))));
      u = _mm512_mask_add_epi8(u, fifth, u, _mm512_set1_epi8(16));
    }
    return to_pair_layout(u);
  }
}

/// For pair c of a super-block: the lanes' index into k_scales' a values (m: + 8).
template <quant_type T>
inline __m512i k_scale_index(int c) {
  if constexpr (T == quant_type::q6_k) {  // 16 weights per scale: 4c + 2 second + (l >> 3)
    return _mm512_add_epi32(_mm512_set1_epi32(4 * c),
                            _mm512_set_epi32(3, 3, 3, 3, 1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 0, 0));
  } else {  // 32 weights per scale: 2c + second
    return _mm512_add_epi32(_mm512_set1_epi32(2 * c),
                            _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0));
  }
}

/// acc[r][c] += pair (b, b + 1) of columns c times rows r of x (32-weight block types).
template <quant_type T, bool Two, int R, int C>
inline void int8_pair_step(const int8_rows& x, index_t t0, const unsigned char* const* column,
                           index_t p, int8_lanes (&acc)[R][C]) {
  static_assert(T == quant_type::q5_0, "q8_0 and q4_0 are interleaved");
  __m512i u[C];
  __m512 d[C];
  for (int c = 0; c < C; ++c) load_q5_0_pair<Two>(column[c], 2 * p, u[c], d[c]);
  for (int r = 0; r < R; ++r) {
    const __m512i xv = _mm512_loadu_si512(x.values(t0 + r) + 64 * p);
    const __m512 dx = _mm512_loadu_ps(x.scales(t0 + r) + 16 * p);
    const __m512i start =
        _mm512_slli_epi32(_mm512_loadu_si512(x.sums(t0 + r) + 16 * p), int8_offset_shift(T));
    for (int c = 0; c < C; ++c) {
      const __m512i sum = _mm512_dpbusd_epi32(start, u[c], xv);
      acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(d[c], dx), acc[r][c]);
    }
  }
}

/// acc[r][c] += super-block sb of columns c times rows r of x (k-quants).
template <quant_type T, int R, int C>
inline void int8_superblock_step(const int8_rows& x, index_t t0, const unsigned char* const* column,
                                 index_t sb, int8_lanes (&acc)[R][C]) {
  __m512 scales[C];
  for (int c = 0; c < C; ++c) scales[c] = k_scales<T>(column[c] + sb * block_bytes_of<T>);
  for (int pair = 0; pair < 4; ++pair) {
    const index_t p = 4 * sb + pair;
    const __m512i index = k_scale_index<T>(pair);
    for (int c = 0; c < C; ++c) {
      const __m512i u = load_k_pair<T>(column[c] + sb * block_bytes_of<T>, pair);
      const __m512 a = _mm512_permutexvar_ps(index, scales[c]);
      const __m512 m = has_min(T) ? _mm512_permutexvar_ps(
                                        _mm512_add_epi32(index, _mm512_set1_epi32(8)), scales[c])
                                  : _mm512_setzero_ps();
      for (int r = 0; r < R; ++r) {
        const __m512i xv = _mm512_loadu_si512(x.values(t0 + r) + 64 * p);
        const __m512 dx = _mm512_loadu_ps(x.scales(t0 + r) + 16 * p);
        const __m512i sums = _mm512_loadu_si512(x.sums(t0 + r) + 16 * p);
        if constexpr (has_min(T)) {
          const __m512i sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, xv);
          const __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), a,
                                           _mm512_mul_ps(_mm512_cvtepi32_ps(sums), m));
          acc[r][c] = _mm512_fmadd_ps(v, dx, acc[r][c]);
        } else {
          const __m512i start = _mm512_slli_epi32(sums, int8_offset_shift(T));
          const __m512i sum = _mm512_dpbusd_epi32(start, u, xv);
          acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(a, dx), acc[r][c]);
        }
      }
    }
  }
}

/// Rows [t0, t0 + R) of x times columns [j0, j0 + C) of `c`, K = 32 `blocks`.
template <quant_type T, int R, int C>
inline void int8_tile(const int8_rows& x, index_t t0, const unsigned char* const* column,
                      index_t blocks, int8_lanes (&acc)[R][C]) {
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  if constexpr (is_k_quant(T)) {
    for (index_t sb = 0; sb < blocks / 8; ++sb)
      int8_superblock_step<T, R, C>(x, t0, column, sb, acc);
  } else {
    const index_t full = blocks / 2;
    for (index_t p = 0; p < full; ++p) int8_pair_step<T, true, R, C>(x, t0, column, p, acc);
    if (blocks % 2 != 0) int8_pair_step<T, false, R, C>(x, t0, column, full, acc);
  }
}
#else
struct int8_lanes {
  float v[16];
};

/// The same arithmetic in plain C++: columns are unpacked one pair at a time.
template <quant_type T, int R, int C>
inline void int8_tile(const int8_rows& x, index_t t0, const unsigned char* const* column,
                      index_t blocks, int8_lanes (&acc)[R][C]) {
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = int8_lanes{};
  }
  const index_t pairs = (blocks + 1) / 2;
  for (index_t p = 0; p < pairs; ++p) {
    const index_t count = std::min<index_t>(2, blocks - 2 * p);
    for (int c = 0; c < C; ++c) {
      std::uint8_t u[64];
      float a[16], m[16];
      unpack_pair_scalar<T>(column[c], p, count, u, a, m);
      for (int r = 0; r < R; ++r) {
        const std::int8_t* xv = x.values(t0 + r) + 64 * p;
        const float* dx = x.scales(t0 + r) + 16 * p;
        const std::int32_t* sums = x.sums(t0 + r) + 16 * p;
        for (int l = 0; l < 16; ++l) {
          std::int32_t sum = has_min(T) ? 0 : sums[l] * (std::int32_t(1) << int8_offset_shift(T));
          for (int i = 0; i < 4; ++i) sum += std::int32_t(u[4 * l + i]) * xv[4 * l + i];
          float& lane = acc[r][c].v[l];
          if constexpr (has_min(T)) {
            lane = std::fma(std::fma(float(sum), a[l], float(sums[l]) * m[l]), dx[l], lane);
          } else {
            lane = std::fma(float(sum), a[l] * dx[l], lane);
          }
        }
      }
    }
  }
}
#endif

/// Bytes of block b of an interleaved group (16 ggml blocks).
template <quant_type T>
inline constexpr index_t group_block_bytes = interleave_columns* block_bytes_of<T>;

inline std::int32_t load_word(const std::int8_t* p) {
  std::int32_t w;
  std::memcpy(&w, p, 4);
  return w;
}

#if defined(EIGENFORMER_QUANT_VNNI)
/// How far ahead of the block it multiplies a decoding step asks for each group's bytes: the
/// hardware prefetcher alone left SmolLM2-135M's Q4_0 decoding at 102 tokens/s on one thread
/// of the AMX Xeon; 1, 2 and 4 KiB ahead gave 110, 117 and 108 (one run each; that VM's runs
/// vary by about 10%).
inline constexpr index_t interleaved_prefetch_distance = 2048;

/// Rows [t0, t0 + R) of x times the interleaved groups group[0 .. G) (K = 32 `blocks`), lane c
/// of acc[r][g] for column c of group g, in the order at the top of this file. The integer sums
/// are exact, so the order of the vpdpbusd does not matter; the float sums go block by block.
template <quant_type T, int R, int G>
inline void interleaved_tile(const int8_rows& x, index_t t0, const unsigned char* const* group,
                             index_t blocks, int8_lanes (&acc)[R][G]) {
  static_assert(is_interleaved(T), "q8_0 or q4_0");
  constexpr int shift = int8_offset_shift(T);
  for (int r = 0; r < R; ++r) {
    for (int g = 0; g < G; ++g) acc[r][g] = _mm512_setzero_ps();
  }
  for (index_t b = 0; b < blocks; ++b) {
    const unsigned char* w[G];
    for (int g = 0; g < G; ++g) w[g] = group[g] + b * group_block_bytes<T>;
    if constexpr (R == 1) {  // decoding: each weight is used once, so memory sets the pace
      for (int g = 0; g < G; ++g) {
        for (index_t line = 0; line < group_block_bytes<T>; line += 64) {
          // An address, not a pointer into the weights: it may lie past their end (a hint never
          // faults), where pointer arithmetic would be undefined.
          const std::uintptr_t ahead = reinterpret_cast<std::uintptr_t>(w[g]) +
                                       std::uintptr_t(interleaved_prefetch_distance + line);
          _mm_prefetch(reinterpret_cast<const char*>(ahead), _MM_HINT_T0);
        }
      }
    }
    __m512i sum[R][G];
    for (int r = 0; r < R; ++r) {
      const __m512i start = _mm512_set1_epi32(x.block_sums(t0 + r)[b] * (1 << shift));
      for (int g = 0; g < G; ++g) sum[r][g] = start;
    }
    if constexpr (T == quant_type::q8_0) {
      for (int j = 0; j < 8; ++j) {
        __m512i u[G];
        for (int g = 0; g < G; ++g) u[g] = _mm512_loadu_si512(w[g] + 32 + 64 * j);
        for (int r = 0; r < R; ++r) {
          const __m512i xw = _mm512_set1_epi32(load_word(x.word(t0 + r, b, j)));
          for (int g = 0; g < G; ++g) sum[r][g] = _mm512_dpbusd_epi32(sum[r][g], u[g], xw);
        }
      }
    } else {
      const __m512i low4 = _mm512_set1_epi8(0x0f);
      for (int j = 0; j < 4; ++j) {
        __m512i lo[G], hi[G];
        for (int g = 0; g < G; ++g) {
          const __m512i raw = _mm512_loadu_si512(w[g] + 32 + 64 * j);
          lo[g] = _mm512_and_si512(raw, low4);
          hi[g] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4);
        }
        for (int r = 0; r < R; ++r) {
          const __m512i x_lo = _mm512_set1_epi32(load_word(x.word(t0 + r, b, j)));
          const __m512i x_hi = _mm512_set1_epi32(load_word(x.word(t0 + r, b, j + 4)));
          for (int g = 0; g < G; ++g) {
            sum[r][g] = _mm512_dpbusd_epi32(sum[r][g], lo[g], x_lo);
            sum[r][g] = _mm512_dpbusd_epi32(sum[r][g], hi[g], x_hi);
          }
        }
      }
    }
    __m512 d[G];
    for (int g = 0; g < G; ++g)
      d[g] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[g])));
    for (int r = 0; r < R; ++r) {
      const __m512 dx = _mm512_set1_ps(x.block_scale(t0 + r, b));
      for (int g = 0; g < G; ++g) {
        acc[r][g] =
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[r][g]), _mm512_mul_ps(d[g], dx), acc[r][g]);
      }
    }
  }
}
#else
/// The same arithmetic in plain C++.
template <quant_type T, int R, int G>
inline void interleaved_tile(const int8_rows& x, index_t t0, const unsigned char* const* group,
                             index_t blocks, int8_lanes (&acc)[R][G]) {
  static_assert(is_interleaved(T), "q8_0 or q4_0");
  constexpr int shift = int8_offset_shift(T);
  for (int r = 0; r < R; ++r) {
    for (int g = 0; g < G; ++g) acc[r][g] = int8_lanes{};
  }
  for (index_t b = 0; b < blocks; ++b) {
    for (int g = 0; g < G; ++g) {
      const unsigned char* w = group[g] + b * group_block_bytes<T>;
      const unsigned char* codes = w + 2 * interleave_columns;
      for (index_t c = 0; c < interleave_columns; ++c) {
        std::uint8_t u[32];
        for (index_t e = 0; e < 32; ++e) {
          if constexpr (T == quant_type::q8_0) {
            u[e] = codes[64 * (e / 4) + 4 * c + e % 4];
          } else {
            const index_t f = e % 16;
            u[e] = static_cast<std::uint8_t>((codes[64 * (f / 4) + 4 * c + f % 4] >> (e / 16 * 4)) &
                                             15);
          }
        }
        const float d = fp16_value(std::uint16_t(w[2 * c] | w[2 * c + 1] << 8));
        for (int r = 0; r < R; ++r) {
          std::int32_t sum = x.block_sums(t0 + r)[b] * (1 << shift);
          for (index_t e = 0; e < 32; ++e)
            sum += std::int32_t(u[e]) * x.word(t0 + r, b, e / 4)[e % 4];
          float& lane = acc[r][g].v[c];
          lane = std::fma(float(sum), d * x.block_scale(t0 + r, b), lane);
        }
      }
    }
  }
}
#endif

}  // namespace detail
}  // namespace eigenformer
