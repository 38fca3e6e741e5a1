// eigenformer/ops/bf16_matmul.hpp — y = x W + b with W stored in bfloat16.
//
// Decoding reads every weight once per token, so its speed is bytes / bandwidth: bf16 weights
// halve the bytes. Two ways to multiply by them:
//   bf16_compute::float_activations  x stays float; each weight widens to float exactly, so the
//                                    result is the float product with bf16-valued weights.
//   bf16_compute::bf16_activations   x is rounded to bf16 too and pairs of products are summed
//                                    by AVX512-BF16's vdpbf16ps in float: twice the FMA rate, at
//                                    ~3 significant digits per input (opt-in, "bf16mix").
//
// Layout: W [K x N] is cut into panels of 16 columns, each panel contiguous over all K rows so
// one pass streams memory in order. Inside a panel, rows come in pairs (k, k+1) interleaved per
// column — 32 bf16 values = one 64-byte vector per pair of rows:
//   panel p, pair kk: [W(2kk, 16p), W(2kk+1, 16p), W(2kk, 16p+1), W(2kk+1, 16p+1), ...]
// which is exactly the operand vdpbf16ps multiplies with a broadcast pair (x[2kk], x[2kk+1]),
// and splits into two float vectors (rows 2kk and 2kk+1) with a shift and a mask. K and N are
// padded with zeros to whole pairs and panels.
//
// Paths: register-tiled AVX-512 kernels where the compiler targets AVX-512 (AVX512F for float
// activations, AVX512-BF16 for bf16 activations), 8 rows x 48 columns per tile, or 1 row x 128
// columns for decoding. Everywhere else a column block of W is widened to float and multiplied
// as float weights (ops/matmul.hpp) — the plain path the kernels are tested against
// (tests/test_bf16_matmul.cpp, also built without AVX-512).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__) || defined(__AVX512BF16__)
#include <immintrin.h>
#endif

#include "eigenformer/core/bfloat16.hpp"
#include "eigenformer/core/error.hpp"
#include "eigenformer/core/parallel.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/ops/matmul.hpp"

namespace eigenformer {

enum class bf16_compute { float_activations, bf16_activations };

/// A matrix W [K x N] stored as bfloat16 panels (see the top of this file).
struct packed_bf16_matrix {
  static constexpr index_t panel_width = 16;
  index_t rows = 0;  // K, the input features
  index_t cols = 0;  // N, the output features
  bf16_compute compute = bf16_compute::float_activations;
  Eigen::Matrix<bf16_bits, Eigen::Dynamic, 1> data;  // panels() * panel_size() values

  bool empty() const { return cols == 0; }
  index_t row_pairs() const { return (rows + 1) / 2; }
  index_t panels() const { return (cols + panel_width - 1) / panel_width; }
  index_t panel_size() const { return row_pairs() * 2 * panel_width; }
  const bf16_bits* panel(index_t p) const { return data.data() + p * panel_size(); }
  index_t offset(index_t k, index_t n) const {
    return (n / panel_width) * panel_size() + (k / 2) * 2 * panel_width + (n % panel_width) * 2 +
           k % 2;
  }
  /// W(k, n) widened to float.
  float operator()(index_t k, index_t n) const { return bf16_to_float(data[offset(k, n)]); }
  /// Column n of W widened to float -> y[0:K].
  void read_column(index_t n, float* y) const {
    for (index_t k = 0; k < rows; ++k) y[k] = (*this)(k, n);
  }
};

namespace detail {

template <class Element>
packed_bf16_matrix pack_bf16_from(index_t rows, index_t cols, bf16_compute compute,
                                  const Element& element) {
  packed_bf16_matrix packed;
  packed.rows = rows;
  packed.cols = cols;
  packed.compute = compute;
  packed.data.setZero(packed.panels() * packed.panel_size());
  parallel_for(packed.panels(), [&](index_t p) {
    const index_t first = p * packed_bf16_matrix::panel_width;
    const index_t width = std::min(packed_bf16_matrix::panel_width, cols - first);
    for (index_t k = 0; k < rows; ++k) {
      for (index_t c = 0; c < width; ++c) {
        packed.data[packed.offset(k, first + c)] = float_to_bf16(element(k, first + c));
      }
    }
  });
  return packed;
}

}  // namespace detail

/// Packs W [K x N] (an HF Conv1D / linear weight, [in x out]), rounding to nearest bf16.
inline packed_bf16_matrix pack_bf16(matrix_cref<float> w, bf16_compute compute) {
  return detail::pack_bf16_from(w.rows(), w.cols(), compute,
                                [&](index_t k, index_t n) { return w(k, n); });
}

/// Packs E^T for E [N x K] — an embedding used as the LM head, logits = x E^T.
inline packed_bf16_matrix pack_bf16_transposed(matrix_cref<float> e, bf16_compute compute) {
  return detail::pack_bf16_from(e.cols(), e.rows(), compute,
                                [&](index_t k, index_t n) { return e(n, k); });
}

/// The packed matrix widened back to float: [K x N].
inline matrix<float> unpack_bf16(const packed_bf16_matrix& w) {
  matrix<float> out(w.rows, w.cols);
  for (index_t k = 0; k < w.rows; ++k) {
    for (index_t n = 0; n < w.cols; ++n) out(k, n) = w(k, n);
  }
  return out;
}

namespace detail {

/// Panels per parallel block: 256 output columns, fixed so results do not depend on the thread
/// count (the same block as linear_forward's).
inline constexpr index_t bf16_block_panels = 12;

/// Adds the bias and writes the valid columns of a tile computed for whole panels.
/// tile: [rows x panels*16] row-major.
inline void store_tile(const float* tile, index_t rows, index_t n_panels, index_t first_panel,
                       const packed_bf16_matrix& w, const float* bias, matrix_ref<float> out,
                       index_t first_row) {
  const index_t first_col = first_panel * packed_bf16_matrix::panel_width;
  const index_t width = std::min(n_panels * packed_bf16_matrix::panel_width, w.cols - first_col);
  const index_t stride = n_panels * packed_bf16_matrix::panel_width;
  for (index_t r = 0; r < rows; ++r) {
    for (index_t c = 0; c < width; ++c) {
      out(first_row + r, first_col + c) =
          tile[r * stride + c] + (bias ? bias[first_col + c] : 0.0f);
    }
  }
}

/// The portable path for one block of panels: widen them to float [K x width] and let Eigen's
/// GEMM multiply. `a` is x, already rounded to bf16 when the mode asks for it.
inline void bf16_block_widened(matrix_cref<float> a, const packed_bf16_matrix& w, const float* bias,
                               index_t first_panel, index_t n_panels, matrix_ref<float> out) {
  constexpr index_t pw = packed_bf16_matrix::panel_width;
  const index_t ld = n_panels * pw, K = w.rows;
  float* buffer =
      thread_buffer<float, buffer_use::widened_weights>(static_cast<std::size_t>(K * ld));
  // One 32-bit word holds W(2kk, n) in its low half and W(2kk+1, n) in its high half: a shift
  // and a mask widen both exactly (a loop compilers vectorize).
  for (index_t j = 0; j < n_panels; ++j) {
    const bf16_bits* src = w.panel(first_panel + j);
    for (index_t kk = 0; kk < w.row_pairs(); ++kk) {
      std::uint32_t words[pw];
      std::memcpy(words, src + kk * 2 * pw, sizeof words);
      std::uint32_t even[pw], odd[pw];
      for (index_t c = 0; c < pw; ++c) {
        even[c] = words[c] << 16;
        odd[c] = words[c] & 0xffff0000u;
      }
      std::memcpy(buffer + 2 * kk * ld + j * pw, even, sizeof even);
      if (2 * kk + 1 < K) std::memcpy(buffer + (2 * kk + 1) * ld + j * pw, odd, sizeof odd);
    }
  }
  // The widened block is a [K x ld] float matrix whose column 0 is output column first_col.
  const index_t first_col = first_panel * pw;
  const index_t width = std::min(ld, w.cols - first_col);
  Eigen::Map<const matrix<float>, 0, Eigen::OuterStride<>> widened(buffer, K, width,
                                                                   Eigen::OuterStride<>(ld));
  auto out_block = out.middleCols(first_col, width);
  matmul_column_block<float>(a, widened, bias ? bias + first_col : nullptr, 0, width, out_block);
}

#if defined(__AVX512F__)
/// How many 64-byte lines ahead the one-row kernels prefetch in each panel.
inline constexpr index_t bf16_prefetch_lines = 16;

/// R rows of float x times P panels of bf16 W, all K: tile [R x P*16]. Each 64-byte load holds
/// two rows of 16 weights; a shift and a mask widen them to float exactly.
template <int R, int P>
void bf16_tile_float_x(const float* x, index_t ldx, const packed_bf16_matrix& w, index_t panel0,
                       float* tile) {
  // One FMA chain per output over k in order, for any number of rows: a row's result does not
  // depend on the rows computed beside it (batched decoding relies on it).
  constexpr int S = 1;
  __m512 acc[S][R][P];
  for (int s = 0; s < S; ++s) {
    for (int r = 0; r < R; ++r) {
      for (int j = 0; j < P; ++j) acc[s][r][j] = _mm512_setzero_ps();
    }
  }
  const bf16_bits* panel[P];
  for (int j = 0; j < P; ++j) panel[j] = w.panel(panel0 + j);
  const __m512i high_half = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  const index_t full_pairs = w.rows / 2;
  for (index_t kk = 0; kk < full_pairs; ++kk) {
    __m512 row0[P], row1[P];
    for (int j = 0; j < P; ++j) {
      // Decoding streams P short panels (K x 16 weights each) at once, too short for the
      // hardware prefetcher to ramp up; ask for the line bf16_prefetch_lines ahead.
      if (R == 1)
        _mm_prefetch(reinterpret_cast<const char*>(panel[j] + (kk + bf16_prefetch_lines) * 32),
                     _MM_HINT_T0);
      const __m512i v = _mm512_loadu_si512(panel[j] + kk * 32);
      row0[j] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
      row1[j] = _mm512_castsi512_ps(_mm512_and_si512(v, high_half));
    }
    for (int r = 0; r < R; ++r) {
      const __m512 x0 = _mm512_set1_ps(x[r * ldx + 2 * kk]);
      const __m512 x1 = _mm512_set1_ps(x[r * ldx + 2 * kk + 1]);
      for (int j = 0; j < P; ++j) {
        acc[0][r][j] = _mm512_fmadd_ps(x0, row0[j], acc[0][r][j]);
        acc[S - 1][r][j] = _mm512_fmadd_ps(x1, row1[j], acc[S - 1][r][j]);
      }
    }
  }
  if (w.rows % 2 != 0) {  // the last row pairs with zero padding
    for (int j = 0; j < P; ++j) {
      const __m512i v = _mm512_loadu_si512(panel[j] + full_pairs * 32);
      const __m512 row0 = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
      for (int r = 0; r < R; ++r) {
        const __m512 x0 = _mm512_set1_ps(x[r * ldx + 2 * full_pairs]);
        acc[0][r][j] = _mm512_fmadd_ps(x0, row0, acc[0][r][j]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < P; ++j) {
      const __m512 sum = S == 2 ? _mm512_add_ps(acc[0][r][j], acc[S - 1][r][j]) : acc[0][r][j];
      _mm512_storeu_ps(tile + r * P * 16 + j * 16, sum);
    }
  }
}
#endif

#if defined(__AVX512BF16__)
/// R rows of bf16 x (as pairs: one uint32 = x[2kk] | x[2kk+1] << 16) times P panels:
/// vdpbf16ps adds x[2kk] W(2kk, n) + x[2kk+1] W(2kk+1, n) to each float lane.
template <int R, int P>
void bf16_tile_bf16_x(const std::uint32_t* x_pairs, index_t ld_pairs, const packed_bf16_matrix& w,
                      index_t panel0, float* tile) {
  __m512 acc[R][P];
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < P; ++j) acc[r][j] = _mm512_setzero_ps();
  }
  const bf16_bits* panel[P];
  for (int j = 0; j < P; ++j) panel[j] = w.panel(panel0 + j);
  const index_t pairs = w.row_pairs();
  for (index_t kk = 0; kk < pairs; ++kk) {
    __m512bh b[P];
    for (int j = 0; j < P; ++j) {
      if (R == 1)  // decoding: see bf16_prefetch_lines
        _mm_prefetch(reinterpret_cast<const char*>(panel[j] + (kk + bf16_prefetch_lines) * 32),
                     _MM_HINT_T0);
      b[j] = (__m512bh)_mm512_loadu_si512(panel[j] + kk * 32);
    }
    for (int r = 0; r < R; ++r) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(x_pairs[r * ld_pairs + kk]));
      for (int j = 0; j < P; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], a, b[j]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < P; ++j) _mm512_storeu_ps(tile + r * P * 16 + j * 16, acc[r][j]);
  }
}
#endif

/// Runs `tile(p)` on groups of P panels from `first`, then `tile_1(p)` on the panels left over.
template <int P, class TileP, class Tile1>
void tile_panels(index_t first, index_t last, const TileP& tile_p, const Tile1& tile_1) {
  index_t p = first;
  for (; p + P <= last; p += P) tile_p(p);
  for (; p < last; ++p) tile_1(p);
}

template <int N>
using constant = std::integral_constant<int, N>;

/// Covers rows [0, T) x panels [first, last) with register tiles: 8 rows x 3 panels, then the
/// leftover rows one at a time with `RowP`-panel tiles (enough independent accumulators for a
/// decoding step). `kernel(rows, panels, t, p, tile)` computes the tile at row t, panel p, with
/// rows and panels as integral constants; the tile is then stored with the bias.
template <int RowP, class Kernel>
void run_tiles(index_t T, index_t first, index_t last, const packed_bf16_matrix& w,
               const float* bias, matrix_ref<float> out, const Kernel& kernel) {
  float tile[8 * 3 * 16];
  static_assert(RowP <= 3 * 8, "a one-row tile must fit the buffer");
  const auto run = [&](auto rows, auto panels, index_t t, index_t p) {
    kernel(rows, panels, t, p, tile);
    store_tile(tile, rows, panels, p, w, bias, out, t);
  };
  index_t t = 0;
  for (; t + 8 <= T; t += 8) {
    tile_panels<3>(
        first, last, [&](index_t p) { run(constant<8>{}, constant<3>{}, t, p); },
        [&](index_t p) { run(constant<8>{}, constant<1>{}, t, p); });
  }
  for (; t < T; ++t) {
    tile_panels<RowP>(
        first, last, [&](index_t p) { run(constant<1>{}, constant<RowP>{}, t, p); },
        [&](index_t p) { run(constant<1>{}, constant<1>{}, t, p); });
  }
}

}  // namespace detail

/// out = x W + bias. x: [T x K] float, W packed [K x N], bias: N floats or nullptr, out: [T x N].
/// Threads split the output into blocks of 256 columns (bit-identical for any thread count).
inline void bf16_matmul(matrix_cref<float> x, const packed_bf16_matrix& w, const float* bias,
                        matrix_ref<float> out) {
  if (x.cols() != w.rows || out.rows() != x.rows() || out.cols() != w.cols) {
    throw shape_error(detail::concat("bf16_matmul: x is [", x.rows(), " x ", x.cols(), "], W is [",
                                     w.rows, " x ", w.cols, "], out is [", out.rows(), " x ",
                                     out.cols(), "]"));
  }
  const index_t T = x.rows(), K = w.rows;
  const index_t n_panels = w.panels();
  const index_t n_blocks = (n_panels + detail::bf16_block_panels - 1) / detail::bf16_block_panels;
  const auto block_panels = [&](index_t block) {
    return std::min(detail::bf16_block_panels, n_panels - block * detail::bf16_block_panels);
  };

  if (w.compute == bf16_compute::bf16_activations) {
#if defined(__AVX512BF16__)
    // x rounded to bf16, row-major with K padded to pairs: in memory that is already the pair
    // layout the tile kernel broadcasts.
    const index_t ld_pairs = w.row_pairs();
    auto* x_pairs = detail::thread_buffer<std::uint32_t, detail::buffer_use::input_pairs>(
        static_cast<std::size_t>(T * ld_pairs));
    parallel_for(T, [&](index_t t) {
      auto* dst = reinterpret_cast<bf16_bits*>(x_pairs + t * ld_pairs);
      for (index_t k = 0; k < K; ++k) dst[k] = float_to_bf16(x(t, k));
      if (K % 2 != 0) dst[K] = 0;
    });
    parallel_for(n_blocks, [&](index_t block) {
      const index_t first = block * detail::bf16_block_panels;
      detail::run_tiles<8>(T, first, first + block_panels(block), w, bias, out,
                           [&](auto rows, auto panels, index_t t, index_t p, float* tile) {
                             detail::bf16_tile_bf16_x<rows, panels>(x_pairs + t * ld_pairs,
                                                                    ld_pairs, w, p, tile);
                           });
    });
#else
    float* rounded = detail::thread_buffer<float, detail::buffer_use::rounded_input>(
        static_cast<std::size_t>(T * K));
    Eigen::Map<matrix<float>> a(rounded, T, K);
    a = x.unaryExpr([](float v) { return round_to_bf16(v); });
    parallel_for(n_blocks, [&](index_t block) {
      detail::bf16_block_widened(a, w, bias, block * detail::bf16_block_panels, block_panels(block),
                                 out);
    });
#endif
    return;
  }

#if defined(__AVX512F__)
  const index_t ldx = x.outerStride();
  parallel_for(n_blocks, [&](index_t block) {
    const index_t first = block * detail::bf16_block_panels;
    detail::run_tiles<4>(T, first, first + block_panels(block), w, bias, out,
                         [&](auto rows, auto panels, index_t t, index_t p, float* tile) {
                           detail::bf16_tile_float_x<rows, panels>(x.data() + t * ldx, ldx, w, p,
                                                                   tile);
                         });
  });
#else
  parallel_for(n_blocks, [&](index_t block) {
    detail::bf16_block_widened(x, w, bias, block * detail::bf16_block_panels, block_panels(block),
                               out);
  });
#endif
}

}  // namespace eigenformer
