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
// How: threads split the output columns into fixed blocks of 32 (two interleaved groups of 16,
// quant/quantized_matrix.hpp). Int8: register tiles of 4 rows x 2 groups, or one row x 2
// groups when decoding, with software prefetch (ops/quant_int8.hpp). Exact (the slower
// reference): the block's columns are dequantized back whole into a per-thread buffer, and
// register tiles of 6 rows x 4 columns run over it, lanes along k.
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
/// Columns per parallel block; fixed, and results do not depend on it anyway.
inline constexpr index_t quant_block_cols = 32;

/// Calls f(std::integral_constant<quant_type, t>{}): one kernel instance per type, chosen once
/// per block of columns rather than per weight.
template <class F>
void with_quant_type(quant_type t, F&& f) {
  using q = quant_type;
  switch (t) {
    case q::q8_0:
      return f(std::integral_constant<q, q::q8_0>{});
    case q::q4_0:
      return f(std::integral_constant<q, q::q4_0>{});
    case q::q5_0:
      return f(std::integral_constant<q, q::q5_0>{});
    case q::q5_1:
      return f(std::integral_constant<q, q::q5_1>{});
    case q::q4_k:
      return f(std::integral_constant<q, q::q4_k>{});
    case q::q5_k:
      return f(std::integral_constant<q, q::q5_k>{});
    case q::q6_k:
      return f(std::integral_constant<q, q::q6_k>{});
  }
  throw value_error("with_quant_type: not a quantized type");
}

#if defined(__AVX512F__)
using lane_sums = __m512;
inline lane_sums zero_lanes() {
  return _mm512_setzero_ps();
}
/// acc[r][p] += lanes of x row r times column p over k in [0, len), 16 at a time (a last
/// partial 16 with its missing lanes read as zeros, which leave their sums unchanged).
template <int R, int P>
inline void dot_tile(const float* x, index_t ldx, const float* w, index_t ldw, index_t len,
                     lane_sums (&acc)[R][P]) {
  for (index_t k = 0; k < len; k += quant_lanes) {
    const __mmask16 lanes =
        len - k >= quant_lanes ? __mmask16(0xffff) : __mmask16((1u << (len - k)) - 1u);
    __m512 wv[P];
    for (int p = 0; p < P; ++p) wv[p] = _mm512_maskz_loadu_ps(lanes, w + p * ldw + k);
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_maskz_loadu_ps(lanes, x + r * ldx + k);
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
    const index_t lanes = std::min<index_t>(quant_lanes, len - k);
    for (int r = 0; r < R; ++r) {
      for (int p = 0; p < P; ++p) {
        for (index_t l = 0; l < lanes; ++l)
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

/// Rows [t, t + R) of x times `width` columns of `w` [width x K]: tiles of R rows x 3 columns.
template <int R>
void dot_rows(matrix_cref<float> x, index_t t, const float* w, index_t K, index_t width,
              const float* bias, matrix_ref<float> out, index_t n0) {
  const index_t ldx = x.outerStride();
  const auto run = [&](auto cols, index_t j) {
    constexpr int P = decltype(cols)::value;
    lane_sums acc[R][P];
    for (int r = 0; r < R; ++r) {
      for (int p = 0; p < P; ++p) acc[r][p] = zero_lanes();
    }
    dot_tile<R, P>(x.data() + t * ldx, ldx, w + j * K, K, K, acc);
    store_sums<R, P>(acc, bias, out, t, n0 + j);
  };
  index_t j = 0;
  for (; j + 3 <= width; j += 3) run(std::integral_constant<int, 3>{}, j);
  for (; j < width; ++j) run(std::integral_constant<int, 1>{}, j);
}

/// Rows [0, T) of x times `width` columns of `c` dequantized whole into `w` [width x K]. Up to
/// 8 rows (a decoding step of as many sequences) read `w` once.
inline void quant_tiles(matrix_cref<float> x, const float* w, index_t K, index_t width,
                        const float* bias, matrix_ref<float> out, index_t n0) {
  const index_t T = x.rows();
  index_t t = 0;
  for (; t + 8 <= T; t += 8) dot_rows<8>(x, t, w, K, width, bias, out, n0);
  switch (T - t) {
    case 7:
      return dot_rows<7>(x, t, w, K, width, bias, out, n0);
    case 6:
      return dot_rows<6>(x, t, w, K, width, bias, out, n0);
    case 5:
      return dot_rows<5>(x, t, w, K, width, bias, out, n0);
    case 4:
      return dot_rows<4>(x, t, w, K, width, bias, out, n0);
    case 3:
      return dot_rows<3>(x, t, w, K, width, bias, out, n0);
    case 2:
      return dot_rows<2>(x, t, w, K, width, bias, out, n0);
    case 1:
      return dot_rows<1>(x, t, w, K, width, bias, out, n0);
    default:
      return;
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
    static_assert(quant_block_cols % interleave_columns == 0, "blocks of whole groups");
    if (int8) {
      const unsigned char* groups = s.bytes.data() + first / interleave_columns * s.group_bytes();
      return detail::with_quant_type(s.type, [&](auto type) {
        detail::int8_interleaved<decltype(type)::value>(x_int8, T, groups, s.group_bytes(), K,
                                                        width, bias, out, n0);
      });
    }
    // Exact: whole columns dequantized back from the interleaved blocks as ggml does, then
    // register tiles.
    float* w_block = detail::thread_buffer<float, detail::buffer_use::dequantized_weights>(
        static_cast<std::size_t>(width * K));
    for (index_t j = 0; j < width; ++j) w.read_column(n0 + j, w_block + j * K);
    detail::quant_tiles(x, w_block, K, width, bias, out, n0);
  });
}

}  // namespace eigenformer
