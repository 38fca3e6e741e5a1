// eigenformer/ops/quant_matmul.hpp — y = x W + b with W in ggml's quantized blocks
// (quant/quantized_matrix.hpp), x and y float.
//
// Two ways to multiply, chosen with set_quant_activations:
//  - int8 (the default): x rounded to int8 per block of 32, as ggml's vec_dot does, with exact
//    integer dot products per block: the arithmetic and its fixed order are in
//    ops/quant_int8.hpp.
//  - exact: each weight is dequantized exactly as ggml does (d * q and friends, exact in float)
//    and multiplied with the float activations, which keep their 24 bits. Each output y(t, n)
//    is summed in one fixed order: 16 running sums, lane l taking k = l, l + 16, l + 32, ...
//    with fused multiply-adds in increasing k, then added pairwise (lane i + lane i + 8, then
//    + 4, + 2, + 1), then the bias.
// Neither order depends on how many rows x has, which rows they are batched with, or how many
// threads run — so a sequence's logits are bit-identical alone or in a batch.
//
// How: threads split the output columns into fixed blocks of 32. Int8: interleaved q8_0 and
// q4_0 run register tiles of 4 rows x 2 groups of 16 columns (one row when decoding); the
// other types tiles of 4 rows x 4 columns, or one row x 8 columns when decoding, with software
// prefetch. Exact: the weights of a column are contiguous (a GGUF row), so lanes run along k.
// Decoding (one row of x) streams each column's blocks once, dequantizing each 32-weight group
// in registers, 4 columns at a time. More rows (prefill, batches) — and interleaved columns —
// dequantize a block of 32 columns entirely into a per-thread buffer and run register tiles of
// 6 rows x 4 columns over it, reusing each dequantized weight for every row.
//
// AVX-512 kernels where the compiler targets it; elsewhere the same order in plain C++ that
// compilers vectorize. Tests compare both against double loops over the dequantized weights
// (tests/test_quant_matmul.cpp, also built without AVX-512).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/parallel.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/ops/matmul.hpp"
#include "eigenformer/ops/quant_int8.hpp"
#include "eigenformer/quant/quantized_matrix.hpp"

namespace eigenformer {
namespace detail {

/// Lanes of the fixed summation order (see the top of this file).
inline constexpr index_t quant_lanes = 16;
/// Weights of each column dequantized at once when decoding (a k-quant super-block, or 8
/// blocks of 32); the last chunk of a row may be shorter (a multiple of 32).
inline constexpr index_t quant_chunk = 256;
/// Columns per parallel block; fixed, and results do not depend on it anyway.
inline constexpr index_t quant_block_cols = 32;
/// Columns decoded together (independent FMA chains per row): 4 decoded SmolLM2-135M q4_0 at
/// 115-157 tokens/s (1-2 threads), 8 at 93-117 (measured on Zen 5).
inline constexpr int quant_decode_cols = 4;

/// Where a segment's blocks start and how big they are, looked up once per block of columns.
struct quant_columns {
  quant_type type;
  index_t block_weights;
  index_t block_bytes;
  const unsigned char* data;  // column `first`
  index_t row_bytes;
  const unsigned char* column(index_t j) const { return data + j * row_bytes; }
};

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__F16C__)
#define EIGENFORMER_QUANT_AVX512 1

/// 16 signed bytes -> 16 floats times d (exact: |q| < 2^8, d has 11 significant bits).
inline __m512 scaled(__m128i q, __m512 d) {
  return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), d);
}

/// Group g (weights 32 g .. 32 g + 31) of a column of type T, dequantized in registers to the
/// exact values of ggml's scalar code: lo = weights 0-15, hi = 16-31 of the group.
template <quant_type T>
inline void load_group(const unsigned char* column, index_t g, __m512& lo, __m512& hi);

template <>
inline void load_group<quant_type::q5_0>(const unsigned char* column, index_t g, __m512& lo,
                                         __m512& hi) {
  const auto* block = reinterpret_cast<const block_q5_0*>(column) + g;
  const __m512 d = _mm512_set1_ps(_cvtsh_ss(block->d));
  std::uint32_t fifth;
  std::memcpy(&fifth, block->qh, 4);  // little-endian, as x86 is
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block->qs));
  const __m128i low4 = _mm_set1_epi8(15), sixteen = _mm_set1_epi8(16);
  // q - 16 = the low four bits - (16 where the fifth bit is clear).
  lo = scaled(_mm_sub_epi8(_mm_and_si128(v, low4),
                           _mm_maskz_mov_epi8(__mmask16(~fifth & 0xffffu), sixteen)),
              d);
  hi = scaled(_mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), low4),
                           _mm_maskz_mov_epi8(__mmask16(~fifth >> 16), sixteen)),
              d);
}

/// q4_k / q5_k: sub-block j of a super-block holds 32 nibbles (low halves of qs[32 (j/2) ..]
/// for even j, high halves for odd j), weight = (d scale_j) q - dmin min_j.
template <bool Fifth>
inline void load_group_q45_k(std::uint16_t d_bits, std::uint16_t dmin_bits,
                             const std::uint8_t* scales, const std::uint8_t* qs,
                             const std::uint8_t* qh, int j, __m512& lo, __m512& hi) {
  int scale = 0, min = 0;
  k_quant_scale_min(j, scales, scale, min);
  const __m512 d = _mm512_set1_ps(_cvtsh_ss(d_bits) * float(scale));
  const __m512 m = _mm512_set1_ps(_cvtsh_ss(dmin_bits) * float(min));
  __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * (j / 2)));
  if (j % 2 != 0) v = _mm256_srli_epi16(v, 4);
  v = _mm256_and_si256(v, _mm256_set1_epi8(15));
  if (Fifth) {
    const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh));
    const __mmask32 set = _mm256_test_epi8_mask(bits, _mm256_set1_epi8(char(1 << j)));
    v = _mm256_mask_add_epi8(v, set, v, _mm256_set1_epi8(16));
  }
  // d q exact (at most 17 + 5 significant bits), so fmsub rounds once, as d * q - m does.
  lo = _mm512_fmsub_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(v))), d, m);
  hi = _mm512_fmsub_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(v, 1))), d,
                       m);
}

template <>
inline void load_group<quant_type::q4_k>(const unsigned char* column, index_t g, __m512& lo,
                                         __m512& hi) {
  const auto* block = reinterpret_cast<const block_q4_k*>(column) + g / 8;
  load_group_q45_k<false>(block->d, block->dmin, block->scales, block->qs, nullptr, int(g % 8), lo,
                          hi);
}

template <>
inline void load_group<quant_type::q5_k>(const unsigned char* column, index_t g, __m512& lo,
                                         __m512& hi) {
  const auto* block = reinterpret_cast<const block_q5_k*>(column) + g / 8;
  load_group_q45_k<true>(block->d, block->dmin, block->scales, block->qs, block->qh, int(g % 8), lo,
                         hi);
}

/// q6_k: group r of half h of a super-block: 4 low bits from ql[64 h + 32 (r % 2) + l] (high
/// nibble for r >= 2), 2 high bits from qh[32 h + l] >> 2 r; weights 0-15 and 16-31 have their
/// own int8 scales; weight = (d scale) (q - 32).
template <>
inline void load_group<quant_type::q6_k>(const unsigned char* column, index_t g, __m512& lo,
                                         __m512& hi) {
  const auto* block = reinterpret_cast<const block_q6_k*>(column) + g / 8;
  const int h = int(g % 8) / 4, r = int(g % 4);
  __m256i low =
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block->ql + 64 * h + 32 * (r % 2)));
  if (r >= 2) low = _mm256_srli_epi16(low, 4);
  low = _mm256_and_si256(low, _mm256_set1_epi8(15));
  __m256i high = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block->qh + 32 * h));
  high = _mm256_and_si256(_mm256_srl_epi16(high, _mm_cvtsi32_si128(2 * r)), _mm256_set1_epi8(3));
  const __m256i q =
      _mm256_sub_epi8(_mm256_or_si256(low, _mm256_slli_epi16(high, 4)), _mm256_set1_epi8(32));
  const float d = _cvtsh_ss(block->d);
  lo = scaled(_mm256_castsi256_si128(q), _mm512_set1_ps(d * float(block->scales[8 * h + 2 * r])));
  hi = scaled(_mm256_extracti128_si256(q, 1),
              _mm512_set1_ps(d * float(block->scales[8 * h + 2 * r + 1])));
}

/// Groups [g0, g0 + n) of a column -> y[0:32 n].
template <quant_type T>
inline void dequantize_groups(const unsigned char* column, index_t g0, index_t n, float* y) {
  for (index_t g = g0; g < g0 + n; ++g, y += 32) {
    __m512 lo, hi;
    load_group<T>(column, g, lo, hi);
    _mm512_storeu_ps(y, lo);
    _mm512_storeu_ps(y + 16, hi);
  }
}
#endif

/// Calls f(std::integral_constant<quant_type, t>{}): one kernel instance per type, chosen once
/// per block of columns rather than per weight. Types stored in rows of blocks:
template <class F>
void with_row_type(quant_type t, F&& f) {
  using q = quant_type;
  switch (t) {
    case q::q8_0:
    case q::q4_0:
      throw value_error("with_row_type: q8_0 and q4_0 are interleaved");
    case q::q5_0:
      return f(std::integral_constant<q, q::q5_0>{});
    case q::q4_k:
      return f(std::integral_constant<q, q::q4_k>{});
    case q::q5_k:
      return f(std::integral_constant<q, q::q5_k>{});
    case q::q6_k:
      return f(std::integral_constant<q, q::q6_k>{});
  }
}

/// Types stored interleaved (quant/quantized_matrix.hpp):
template <class F>
void with_interleaved_type(quant_type t, F&& f) {
  using q = quant_type;
  if (t == q::q8_0) return f(std::integral_constant<q, q::q8_0>{});
  if (t == q::q4_0) return f(std::integral_constant<q, q::q4_0>{});
  throw value_error("with_interleaved_type: only q8_0 and q4_0 are interleaved");
}

/// Weights [k0, k0 + len) of column j -> y[0:len]; k0 and len are whole blocks.
inline void dequantize_range(const quant_columns& c, index_t j, index_t k0, index_t len, float* y) {
#if defined(EIGENFORMER_QUANT_AVX512)
  with_row_type(c.type, [&](auto type) {
    dequantize_groups<decltype(type)::value>(c.column(j), k0 / 32, len / 32, y);
  });
#else
  dequantize_row(c.type, c.column(j) + k0 / c.block_weights * c.block_bytes, y, len);
#endif
}

#if defined(__AVX512F__)
using lane_sums = __m512;
inline lane_sums zero_lanes() {
  return _mm512_setzero_ps();
}
/// acc[r][p] += lanes of x row r times column p over k in [0, len), 16 at a time.
template <int R, int P>
inline void dot_tile(const float* x, index_t ldx, const float* w, index_t ldw, index_t len,
                     lane_sums (&acc)[R][P]) {
  for (index_t k = 0; k < len; k += quant_lanes) {
    __m512 wv[P];
    for (int p = 0; p < P; ++p) wv[p] = _mm512_loadu_ps(w + p * ldw + k);
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_loadu_ps(x + r * ldx + k);
      for (int p = 0; p < P; ++p) acc[r][p] = _mm512_fmadd_ps(xv, wv[p], acc[r][p]);
    }
  }
}
#else
struct lane_sums {
  float v[quant_lanes];
};
inline lane_sums zero_lanes() {
  return lane_sums{};
}
template <int R, int P>
inline void dot_tile(const float* x, index_t ldx, const float* w, index_t ldw, index_t len,
                     lane_sums (&acc)[R][P]) {
  for (index_t k = 0; k < len; k += quant_lanes) {
    for (int r = 0; r < R; ++r) {
      for (int p = 0; p < P; ++p) {
        for (index_t l = 0; l < quant_lanes; ++l)
          acc[r][p].v[l] += x[r * ldx + k + l] * w[p * ldw + k + l];
      }
    }
  }
}
#endif

/// The pairwise reduction of the 16 lanes (see the top of this file).
inline float add_lanes(const lane_sums& sums) {
  alignas(64) float a[quant_lanes];
  std::memcpy(a, &sums, sizeof a);
  float s8[8], s4[4];
  for (int i = 0; i < 8; ++i) s8[i] = a[i] + a[i + 8];
  for (int i = 0; i < 4; ++i) s4[i] = s8[i] + s8[i + 4];
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

template <int R, int P>
inline void store_sums(lane_sums (&acc)[R][P], const float* bias, matrix_ref<float> out, index_t t,
                       index_t n) {
  for (int r = 0; r < R; ++r) {
    for (int p = 0; p < P; ++p)
      out(t + r, n + p) = add_lanes(acc[r][p]) + (bias ? bias[n + p] : 0.0f);
  }
}

/// Asks for the cache lines of columns [j, j + n) of `c` (contiguous bytes).
inline void prefetch_columns(const quant_columns& c, index_t j, index_t n) {
#if defined(__GNUC__)
  const unsigned char* begin = c.column(j);
  for (index_t offset = 0; offset < n * c.row_bytes; offset += 64)
    __builtin_prefetch(begin + offset);
#else
  (void)c, (void)j, (void)n;
#endif
}

#if defined(EIGENFORMER_QUANT_AVX512)
/// One row of x times P columns starting at column j0 of `c`: each 32-weight group is
/// dequantized in registers and multiplied at once, so every weight byte is read once, in order.
template <quant_type T, int P>
void quant_decode_columns(const float* x, const quant_columns& c, index_t K, index_t j0,
                          const float* bias, matrix_ref<float> out, index_t t, index_t n0) {
  const unsigned char* column[P];
  lane_sums acc[1][P];
  for (int p = 0; p < P; ++p) {
    column[p] = c.column(j0 + p);
    acc[0][p] = _mm512_setzero_ps();
  }
  for (index_t g = 0; g < K / 32; ++g) {
    const __m512 x_lo = _mm512_loadu_ps(x + 32 * g), x_hi = _mm512_loadu_ps(x + 32 * g + 16);
    for (int p = 0; p < P; ++p) {
      __m512 lo, hi;
      load_group<T>(column[p], g, lo, hi);
      acc[0][p] = _mm512_fmadd_ps(x_lo, lo, acc[0][p]);
      acc[0][p] = _mm512_fmadd_ps(x_hi, hi, acc[0][p]);
    }
  }
  store_sums<1, P>(acc, bias, out, t, n0 + j0);
}

template <quant_type T>
void quant_decode_block(const float* x, const quant_columns& c, index_t K, index_t width,
                        const float* bias, matrix_ref<float> out, index_t n0) {
  constexpr int P = quant_decode_cols;
  // A column is a few hundred bytes: P of them are too short a stream for the hardware
  // prefetcher to ramp up, so each step asks for the next P columns while it computes.
  prefetch_columns(c, 0, std::min<index_t>(P, width));
  index_t j = 0;
  for (; j + P <= width; j += P) {
    prefetch_columns(c, j + P, std::min<index_t>(P, width - j - P));
    quant_decode_columns<T, P>(x, c, K, j, bias, out, 0, n0);
  }
  for (; j < width; ++j) quant_decode_columns<T, 1>(x, c, K, j, bias, out, 0, n0);
}

/// One row of x times `width` columns of `c` (output columns n0 ...).
inline void quant_decode(const float* x, const quant_columns& c, index_t K, index_t width,
                         const float* bias, matrix_ref<float> out, index_t n0) {
  with_row_type(c.type, [&](auto type) {
    quant_decode_block<decltype(type)::value>(x, c, K, width, bias, out, n0);
  });
}
#else
/// One row of x times P columns starting at column j0 of `c`, streaming each column's blocks
/// once in chunks of 256 weights dequantized into an L1-resident buffer.
template <int P>
void quant_decode_columns(const float* x, const quant_columns& c, index_t K, index_t j0,
                          const float* bias, matrix_ref<float> out, index_t t, index_t n0) {
  alignas(64) float chunk[P][quant_chunk];
  lane_sums acc[1][P];
  for (int p = 0; p < P; ++p) acc[0][p] = zero_lanes();
  for (index_t k0 = 0; k0 < K; k0 += quant_chunk) {
    const index_t len = std::min(quant_chunk, K - k0);
    for (int p = 0; p < P; ++p) dequantize_range(c, j0 + p, k0, len, chunk[p]);
    dot_tile<1, P>(x + k0, 0, chunk[0], quant_chunk, len, acc);
  }
  store_sums<1, P>(acc, bias, out, t, n0 + j0);
}

inline void quant_decode(const float* x, const quant_columns& c, index_t K, index_t width,
                         const float* bias, matrix_ref<float> out, index_t n0) {
  constexpr int P = quant_decode_cols;
  index_t j = 0;
  for (; j + P <= width; j += P) quant_decode_columns<P>(x, c, K, j, bias, out, 0, n0);
  for (; j < width; ++j) quant_decode_columns<1>(x, c, K, j, bias, out, 0, n0);
}
#endif

/// Rows [0, T) of x times `width` columns of `c` dequantized whole into `w` [width x K].
inline void quant_tiles(matrix_cref<float> x, const float* w, index_t K, index_t width,
                        const float* bias, matrix_ref<float> out, index_t n0) {
  constexpr int R = 6, P = 4;
  const index_t T = x.rows(), ldx = x.outerStride();
  const auto run = [&](auto rows, auto cols, index_t t, index_t j) {
    constexpr int r_ = decltype(rows)::value, p_ = decltype(cols)::value;
    lane_sums acc[r_][p_];
    for (int r = 0; r < r_; ++r) {
      for (int p = 0; p < p_; ++p) acc[r][p] = zero_lanes();
    }
    dot_tile<r_, p_>(x.data() + t * ldx, ldx, w + j * K, K, K, acc);
    store_sums<r_, p_>(acc, bias, out, t, n0 + j);
  };
  using six = std::integral_constant<int, R>;
  using one = std::integral_constant<int, 1>;
  using four = std::integral_constant<int, P>;
  index_t t = 0;
  for (; t + R <= T; t += R) {
    index_t j = 0;
    for (; j + P <= width; j += P) run(six{}, four{}, t, j);
    for (; j < width; ++j) run(six{}, one{}, t, j);
  }
  for (; t < T; ++t) {
    index_t j = 0;
    for (; j + P <= width; j += P) run(one{}, four{}, t, j);
    for (; j < width; ++j) run(one{}, one{}, t, j);
  }
}

/// Rows [0, T) of `x` (int8 rows) times `width` columns of `c`.
template <quant_type Q>
void int8_columns(const int8_rows& x, index_t T, const quant_columns& c, index_t K, index_t width,
                  const float* bias, matrix_ref<float> out, index_t n0) {
  const index_t blocks = K / 32;
  const auto run = [&](auto rows, auto cols, index_t t, index_t j) {
    constexpr int R = decltype(rows)::value, C = decltype(cols)::value;
    const unsigned char* column[C];
    for (int i = 0; i < C; ++i) column[i] = c.column(j + i);
    int8_lanes acc[R][C];
    int8_tile<Q, R, C>(x, t, column, blocks, acc);
    lane_sums sums[R][C];
    static_assert(sizeof(lane_sums) == sizeof(int8_lanes), "16 float lanes");
    std::memcpy(sums, acc, sizeof acc);
    store_sums<R, C>(sums, bias, out, t, n0 + j);
  };
  using one = std::integral_constant<int, 1>;
  using four = std::integral_constant<int, 4>;
  index_t t = 0;
  if (T == 1) {
    // A column is a few hundred bytes: 8 of them are too short a stream for the hardware
    // prefetcher to ramp up, so each step asks for the next 8 columns while it computes.
    prefetch_columns(c, 0, std::min<index_t>(8, width));
  }
  for (; t + 4 <= T; t += 4) {
    index_t j = 0;
    for (; j + 4 <= width; j += 4) run(four{}, four{}, t, j);
    for (; j < width; ++j) run(four{}, one{}, t, j);
  }
  for (; t < T; ++t) {
    index_t j = 0;
    using eight = std::integral_constant<int, 8>;
    for (; j + 8 <= width; j += 8) {
      if (T == 1) prefetch_columns(c, j + 8, std::min<index_t>(8, width - j - 8));
      run(one{}, eight{}, t, j);
    }
    for (; j + 4 <= width; j += 4) run(one{}, four{}, t, j);
    for (; j < width; ++j) run(one{}, one{}, t, j);
  }
}

/// Rows [0, T) of `x` (int8 rows) times `width` interleaved columns starting at `groups`
/// (groups of 16 columns, group_bytes apart): register tiles of 4 rows x 2 groups.
template <quant_type Q>
void int8_interleaved(const int8_rows& x, index_t T, const unsigned char* groups,
                      index_t group_bytes, index_t K, index_t width, const float* bias,
                      matrix_ref<float> out, index_t n0) {
  const index_t blocks = K / 32, n_groups = (width + interleave_columns - 1) / interleave_columns;
  const auto run = [&](auto rows, auto cols, index_t t, index_t g0) {
    constexpr int R = decltype(rows)::value, G = decltype(cols)::value;
    const unsigned char* group[G];
    for (int g = 0; g < G; ++g) group[g] = groups + (g0 + g) * group_bytes;
    int8_lanes acc[R][G];
    interleaved_tile<Q, R, G>(x, t, group, blocks, acc);
    for (int r = 0; r < R; ++r) {
      for (int g = 0; g < G; ++g) {
        alignas(64) float lanes[interleave_columns];
        static_assert(sizeof(lanes) == sizeof(int8_lanes), "16 float lanes");
        std::memcpy(lanes, &acc[r][g], sizeof lanes);
        const index_t first = (g0 + g) * interleave_columns;
        for (index_t c = 0; c < std::min(interleave_columns, width - first); ++c) {
          const index_t n = n0 + first + c;
          out(t + r, n) = lanes[c] + (bias ? bias[n] : 0.0f);
        }
      }
    }
  };
  using one = std::integral_constant<int, 1>;
  using two = std::integral_constant<int, 2>;
  using four = std::integral_constant<int, 4>;
  const auto row_tiles = [&](auto rows, index_t t) {
    index_t g = 0;
    for (; g + 2 <= n_groups; g += 2) run(rows, two{}, t, g);
    for (; g < n_groups; ++g) run(rows, one{}, t, g);
  };
  index_t t = 0;
  for (; t + 4 <= T; t += 4) row_tiles(four{}, t);
  for (; t < T; ++t) row_tiles(one{}, t);
}

}  // namespace detail

/// How quantized weights multiply their activations: `int8` rounds them per block of 32 as
/// ggml does (ops/quant_int8.hpp; the default, 1.5-2x faster), `exact` keeps them in float.
/// Either way a row's result does not depend on its batch or the thread count. Process-wide,
/// like the thread count.
enum class quant_activations { int8, exact };

namespace detail {
inline std::atomic<quant_activations>& quant_activations_setting() {
  static std::atomic<quant_activations> setting{quant_activations::int8};
  return setting;
}
}  // namespace detail

inline void set_quant_activations(quant_activations a) {
  detail::quant_activations_setting().store(a);
}
inline quant_activations get_quant_activations() {
  return detail::quant_activations_setting().load();
}

/// out = x W + bias. x: [T x K] float, W quantized [K x N], bias: N floats or nullptr,
/// out: [T x N]. Bit-identical for any T, batch composition and thread count (see the top).
inline void quant_matmul(matrix_cref<float> x, const quantized_matrix& w, const float* bias,
                         matrix_ref<float> out) {
  if (x.cols() != w.rows || out.rows() != x.rows() || out.cols() != w.cols) {
    throw shape_error(detail::concat("quant_matmul: x is [", x.rows(), " x ", x.cols(), "], W is [",
                                     w.rows, " x ", w.cols, "], out is [", out.rows(), " x ",
                                     out.cols(), "]"));
  }
  using detail::quant_block_cols;
  const index_t T = x.rows(), K = w.rows;
  // Blocks of up to 32 columns that never straddle two segments, numbered segment by segment.
  index_t block_count = 0;
  const bool int8 = get_quant_activations() == quant_activations::int8;
  for (const auto& s : w.segments)
    block_count += (s.cols + quant_block_cols - 1) / quant_block_cols;
  // x rounded to int8 per block (ops/quant_int8.hpp), once here for all the columns.
  thread_local std::vector<unsigned char, Eigen::aligned_allocator<unsigned char>> int8_buffer;
  const detail::int8_rows x_int8 =
      int8 ? detail::quantize_int8_rows(x, int8_buffer) : detail::int8_rows{};
  parallel_for(block_count, [&](index_t b) {
    const quantized_matrix::segment* segment = w.segments.data();
    for (;; ++segment) {
      const index_t here = (segment->cols + quant_block_cols - 1) / quant_block_cols;
      if (b < here) break;
      b -= here;
    }
    const auto& s = *segment;
    const index_t first = b * quant_block_cols, width = std::min(quant_block_cols, s.cols - first);
    const index_t n0 = s.first + first;
    if (s.interleaved()) {
      static_assert(quant_block_cols % interleave_columns == 0, "blocks of whole groups");
      const unsigned char* groups = s.bytes.data() + first / interleave_columns * s.group_bytes();
      if (int8) {
        return detail::with_interleaved_type(s.type, [&](auto type) {
          detail::int8_interleaved<decltype(type)::value>(x_int8, T, groups, s.group_bytes(), K,
                                                          width, bias, out, n0);
        });
      }
      // Exact: whole columns dequantized back from the interleaved blocks, then register tiles
      // (whose one-row order is the decoding order above).
      float* w_block = detail::thread_buffer<float, detail::buffer_use::dequantized_weights>(
          static_cast<std::size_t>(width * K));
      thread_local std::vector<unsigned char> column;
      column.resize(std::size_t(s.row_bytes));
      for (index_t j = 0; j < width; ++j) {
        s.column_blocks(first + j, column.data());
        dequantize_row(s.type, column.data(), w_block + j * K, K);
      }
      return detail::quant_tiles(x, w_block, K, width, bias, out, n0);
    }
    const quant_type_traits& traits = traits_of(s.type);
    const detail::quant_columns columns{s.type, traits.block_weights, traits.block_bytes,
                                        s.bytes.data() + first * s.row_bytes, s.row_bytes};
    if (int8) {
      return detail::with_row_type(s.type, [&](auto type) {
        detail::int8_columns<decltype(type)::value>(x_int8, T, columns, K, width, bias, out, n0);
      });
    }
    if (T == 1) return detail::quant_decode(x.data(), columns, K, width, bias, out, n0);
    float* w_block = detail::thread_buffer<float, detail::buffer_use::dequantized_weights>(
        static_cast<std::size_t>(width * K));
    for (index_t j = 0; j < width; ++j) detail::dequantize_range(columns, j, 0, K, w_block + j * K);
    detail::quant_tiles(x, w_block, K, width, bias, out, n0);
  });
}

}  // namespace eigenformer
