// eigenformer/ops/matmul.hpp — out = x W (+ b) for float weights [K x N] stored row-major, the
// product inside every linear layer.
//
// The plain path is Eigen's GEMM. Where the compiler targets AVX-512, a register-tiled kernel
// is used instead: 8 rows of x by 48 columns of W (24 zmm accumulators), each step broadcasting
// one x value per row and loading 3 x 16 consecutive weights of one row of W — W is read in its
// stored layout, no packing, and a 48-column slab of it stays in L2 while all rows of x pass.
// tests/test_matmul.cpp compares both paths with a double-precision definition.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/parallel.hpp"
#include "eigenformer/core/types.hpp"

namespace eigenformer {

/// Whether float models compute each row with arithmetic that does not depend on the other
/// rows of the call (so a sequence's logits do not depend on its batch, see forward_batch):
/// true where the AVX-512 kernels are built. The portable build uses Eigen's products, whose
/// summation order depends on the row count.
#if defined(__AVX512F__)
inline constexpr bool batch_invariant_kernels = true;
#else
inline constexpr bool batch_invariant_kernels = false;
#endif

namespace detail {

/// A per-thread buffer that only grows, so the hot path allocates only on its first call. `Use`
/// tells apart buffers that are alive at the same time on one thread.
enum class buffer_use {
  widened_weights,
  dequantized_weights,
  rounded_input,
  input_pairs,
  partial_sums,
  activation_scratch,
  transposed_input,
  packed_panel
};
template <class T, buffer_use Use>
T* thread_buffer(std::size_t count) {
  thread_local std::vector<T, Eigen::aligned_allocator<T>> buffer;
  if (buffer.size() < count) buffer.resize(count);
  return buffer.data();
}

/// A row-major copy of m^T in the calling thread's transposed_input buffer, filled in parallel
/// blocks of rows; valid until the next call on this thread. Lets products with a transposed
/// operand (the weight gradients x^T dY) run on the row-major kernel below.
template <class Scalar>
Eigen::Map<matrix<Scalar>> transposed_copy(matrix_cref<Scalar> m) {
  Scalar* data = thread_buffer<Scalar, buffer_use::transposed_input>(std::size_t(m.size()));
  Eigen::Map<matrix<Scalar>> t(data, m.cols(), m.rows());
  constexpr index_t rows_per_block = 64;
  parallel_for((t.rows() + rows_per_block - 1) / rows_per_block, [&](index_t block) {
    const index_t first = block * rows_per_block;
    const index_t n = std::min(rows_per_block, t.rows() - first);
    t.middleRows(first, n) = m.middleCols(first, n).transpose();
  });
  return t;
}

#if defined(__AVX512F__)
/// tile [R x P*16] = x rows [R x K] times W columns [K x P*16]; ldx, ldw: row strides.
template <int R, int P>
void f32_tile(const float* x, index_t ldx, const float* w, index_t ldw, index_t K, float* out,
              index_t ld_out, const float* bias, bool accumulate) {
  __m512 acc[R][P];
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < P; ++j) {
      acc[r][j] = accumulate ? _mm512_loadu_ps(out + r * ld_out + j * 16) : _mm512_setzero_ps();
    }
  }
  for (index_t k = 0; k < K; ++k) {
    __m512 b[P];
    for (int j = 0; j < P; ++j) b[j] = _mm512_loadu_ps(w + k * ldw + j * 16);
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(x[r * ldx + k]);
      for (int j = 0; j < P; ++j) acc[r][j] = _mm512_fmadd_ps(a, b[j], acc[r][j]);
    }
  }
  for (int j = 0; j < P; ++j) {
    const __m512 b = bias ? _mm512_loadu_ps(bias + j * 16) : _mm512_setzero_ps();
    for (int r = 0; r < R; ++r)
      _mm512_storeu_ps(out + r * ld_out + j * 16, _mm512_add_ps(acc[r][j], b));
  }
}

/// Rows [first_row, first_row + R) of out's columns [first, first + 16 * n_panels).
template <int R>
void f32_rows(const float* x, index_t ldx, const float* w, index_t ldw, index_t K, float* out,
              index_t ld_out, const float* bias, index_t first, index_t n_panels, bool accumulate) {
  // 8 rows x 3 panels = 24 independent accumulators; one row (decoding) reads 8 panels — 512
  // contiguous bytes of each row of W — per pass, so W streams.
  constexpr int P = R >= 8 ? 3 : 8;
  index_t p = 0;
  const auto column = [&](index_t panel) { return first + panel * 16; };
  for (; p + P <= n_panels; p += P) {
    f32_tile<R, P>(x, ldx, w + column(p), ldw, K, out + column(p), ld_out,
                   bias ? bias + column(p) : nullptr, accumulate);
  }
  for (; p < n_panels; ++p) {
    f32_tile<R, 1>(x, ldx, w + column(p), ldw, K, out + column(p), ld_out,
                   bias ? bias + column(p) : nullptr, accumulate);
  }
}

/// Rows [0, T) of out's columns [first, first + 16 * n_panels), W's panels copied first.
/// Read in place, a tile's rows of W lie ldw floats apart, so each k touches 3 new cache lines
/// at a stride that aliases in L1 (GPT-2's fc: 12 KiB), and every tile of 8 rows reads them all
/// again from L2. Copied to [K x 48] once, they stream in order for every tile. The same FMAs
/// in the same order: the same bits.
inline void f32_packed_rows(const float* x, index_t ldx, index_t T, const float* w, index_t ldw,
                            index_t K, float* out, index_t ld_out, const float* bias, index_t first,
                            index_t n_panels, bool accumulate) {
  float* packed = thread_buffer<float, buffer_use::packed_panel>(std::size_t(K * 48));
  const auto panels = [&](auto count, index_t p) {
    constexpr int P = decltype(count)::value;
    const index_t column = first + p * 16, cols = 16 * P;
    for (index_t k = 0; k < K; ++k)
      std::memcpy(packed + k * cols, w + k * ldw + column, sizeof(float) * std::size_t(cols));
    const float* b = bias ? bias + column : nullptr;
    index_t t = 0;
    for (; t + 8 <= T; t += 8) {
      f32_tile<8, P>(x + t * ldx, ldx, packed, cols, K, out + t * ld_out + column, ld_out, b,
                     accumulate);
    }
    for (; t < T; ++t) {
      f32_tile<1, P>(x + t * ldx, ldx, packed, cols, K, out + t * ld_out + column, ld_out, b,
                     accumulate);
    }
  };
  index_t p = 0;
  for (; p + 3 <= n_panels; p += 3) panels(std::integral_constant<int, 3>{}, p);
  for (; p < n_panels; ++p) panels(std::integral_constant<int, 1>{}, p);
}

/// Up to this many rows (a decoding step of that many sequences) stream W once, row by row.
inline constexpr index_t streamed_rows = 16;

/// A few rows (decoding, one per sequence): out[r][first, first + width) = x_r W[:, first, +
/// width) + bias with the tiles' arithmetic — per output one FMA chain over k in order, then
/// + bias — but W read once, row by row in order, whatever the number of rows: the running
/// sums ([rows x width], in L1/L2) take the next 4 links of their chains per pass.
inline void f32_few_rows(const float* x, index_t ldx, index_t rows, const float* w, index_t ldw,
                         index_t K, float* out, index_t ld_out, const float* bias, index_t first,
                         index_t width) {
  // Sums of at most 16 KiB, so they stay in L1 while W streams past: with several rows, the
  // columns are taken in pieces (each a run of consecutive floats in every row of W).
  const index_t piece = std::max<index_t>(64, 4096 / rows / 16 * 16);
  if (width > piece) {
    for (index_t j = 0; j < width; j += piece) {
      f32_few_rows(x, ldx, rows, w, ldw, K, out, ld_out, bias, first + j,
                   std::min(piece, width - j));
    }
    return;
  }
  float* acc = thread_buffer<float, buffer_use::partial_sums>(std::size_t(rows * width));
  std::fill(acc, acc + rows * width, 0.0f);
  const index_t vectors = width / 16;
  index_t k = 0;
  for (; k + 4 <= K; k += 4) {
    const float* r0 = w + k * ldw + first;
    const float *r1 = r0 + ldw, *r2 = r1 + ldw, *r3 = r2 + ldw;
    for (index_t v = 0; v < vectors; ++v) {
      const __m512 w0 = _mm512_loadu_ps(r0 + 16 * v), w1 = _mm512_loadu_ps(r1 + 16 * v);
      const __m512 w2 = _mm512_loadu_ps(r2 + 16 * v), w3 = _mm512_loadu_ps(r3 + 16 * v);
      for (index_t r = 0; r < rows; ++r) {
        const float* xr = x + r * ldx + k;
        float* sums = acc + r * width + 16 * v;
        __m512 sum = _mm512_loadu_ps(sums);
        sum = _mm512_fmadd_ps(_mm512_set1_ps(xr[0]), w0, sum);
        sum = _mm512_fmadd_ps(_mm512_set1_ps(xr[1]), w1, sum);
        sum = _mm512_fmadd_ps(_mm512_set1_ps(xr[2]), w2, sum);
        sum = _mm512_fmadd_ps(_mm512_set1_ps(xr[3]), w3, sum);
        _mm512_storeu_ps(sums, sum);
      }
    }
    for (index_t r = 0; r < rows; ++r) {
      for (index_t j = 16 * vectors; j < width; ++j) {
        float sum = acc[r * width + j];
        for (index_t i = 0; i < 4; ++i) sum = std::fma(x[r * ldx + k + i], r0[i * ldw + j], sum);
        acc[r * width + j] = sum;
      }
    }
  }
  for (; k < K; ++k) {
    const float* row = w + k * ldw + first;
    for (index_t r = 0; r < rows; ++r) {
      const __m512 a = _mm512_set1_ps(x[r * ldx + k]);
      float* sums = acc + r * width;
      for (index_t v = 0; v < vectors; ++v) {
        _mm512_storeu_ps(sums + 16 * v, _mm512_fmadd_ps(a, _mm512_loadu_ps(row + 16 * v),
                                                        _mm512_loadu_ps(sums + 16 * v)));
      }
      for (index_t j = 16 * vectors; j < width; ++j)
        sums[j] = std::fma(x[r * ldx + k], row[j], sums[j]);
    }
  }
  for (index_t r = 0; r < rows; ++r) {
    for (index_t j = 0; j < width; ++j)
      out[r * ld_out + first + j] = acc[r * width + j] + (bias ? bias[first + j] : 0.0f);
  }
}
#endif

}  // namespace detail

/// out.middleCols(first, width) = x W.middleCols(first, width) + bias (bias: N floats or
/// nullptr), or += with `accumulate` (gradients). x: [T x K], W: [K x N], out: [T x N]. One
/// column block; callers split the columns over threads.
template <class Scalar>
void matmul_column_block(matrix_cref<Scalar> x, matrix_cref<Scalar> w, const Scalar* bias,
                         index_t first, index_t width, matrix_ref<Scalar> out,
                         bool accumulate = false) {
#if defined(__AVX512F__)
  // Every row count runs the same tiles, so each output is one FMA chain over k in order, then
  // + bias, whatever rows it is computed with: a row's result does not depend on its batch.
  if constexpr (std::is_same_v<Scalar, float>) {
    const index_t n_panels = width / 16, K = x.cols();
    const index_t ldx = x.outerStride(), ldw = w.outerStride(), ld_out = out.outerStride();
    index_t t = 0;
    if (x.rows() >= 32) {  // enough tiles to pay for copying W's panels
      detail::f32_packed_rows(x.data(), ldx, x.rows(), w.data(), ldw, K, out.data(), ld_out, bias,
                              first, n_panels, accumulate);
      t = x.rows();
    }
    for (; t + 8 <= x.rows(); t += 8) {
      detail::f32_rows<8>(x.data() + t * ldx, ldx, w.data(), ldw, K, out.data() + t * ld_out,
                          ld_out, bias, first, n_panels, accumulate);
    }
    for (; t < x.rows(); ++t) {
      detail::f32_rows<1>(x.data() + t * ldx, ldx, w.data(), ldw, K, out.data() + t * ld_out,
                          ld_out, bias, first, n_panels, accumulate);
    }
    // The last columns (fewer than 16): the same chain in scalar code.
    for (index_t row = 0; row < x.rows(); ++row) {
      for (index_t j = first + n_panels * 16; j < first + width; ++j) {
        float acc = accumulate ? out(row, j) : 0.0f;
        for (index_t k = 0; k < K; ++k) acc = std::fma(x(row, k), w(k, j), acc);
        out(row, j) = acc + (bias ? bias[j] : 0.0f);
      }
    }
    return;
  }
#endif
  // The plain path: Eigen's GEMM (double, or without AVX-512).
  auto out_block = out.middleCols(first, width);
  if (accumulate) {
    out_block.noalias() += x * w.middleCols(first, width);
  } else {
    out_block.noalias() = x * w.middleCols(first, width);
  }
  if (bias) out_block.rowwise() += Eigen::Map<const row_vector<Scalar>>(bias + first, width);
}

/// Rows of W per parallel chunk of a matrix-vector product (see matvec_row_chunks).
inline constexpr index_t matvec_row_chunk = 128;

/// out = x W + bias for ONE row x [1 x K] (a decoding step), W: [K x N], out: [1 x N].
/// Reading W is all the work, so it should stream memory in order: threads take fixed chunks of
/// 64 consecutive rows of W (one contiguous region each), compute partial products, and the
/// partials are added in chunk order — a fixed summation order, so the result is bit-identical
/// for any thread count. (Column blocks would read short strided pieces of every row instead.)
template <class Scalar>
void matvec_row_chunks(matrix_cref<Scalar> x, matrix_cref<Scalar> w, const Scalar* bias,
                       matrix_ref<Scalar> out) {
  const index_t K = w.rows(), N = w.cols();
  const index_t n_chunks = (K + matvec_row_chunk - 1) / matvec_row_chunk;
  Scalar* partials = detail::thread_buffer<Scalar, detail::buffer_use::partial_sums>(
      static_cast<std::size_t>(n_chunks * N));
  Eigen::Map<matrix<Scalar>> partial(partials, n_chunks, N);  // row c: chunk c's x_c W_c
  parallel_for(n_chunks, [&](index_t c) {
    const index_t first = c * matvec_row_chunk, rows = std::min(matvec_row_chunk, K - first);
    partial.row(c).noalias() = x.middleCols(first, rows) * w.middleRows(first, rows);
  });
  auto y = out.row(0);
  if (bias) {
    y = Eigen::Map<const row_vector<Scalar>>(bias, N);
  } else {
    y.setZero();
  }
  for (index_t c = 0; c < n_chunks; ++c) y += partial.row(c);
}

}  // namespace eigenformer
