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
#include <type_traits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"

namespace eigenformer {

namespace detail {

#if defined(__AVX512F__)
/// tile [R x P*16] = x rows [R x K] times W columns [K x P*16]; ldx, ldw: row strides.
template <int R, int P>
void f32_tile(const float* x, index_t ldx, const float* w, index_t ldw, index_t K, float* out,
              index_t ld_out, const float* bias) {
  __m512 acc[R][P];
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < P; ++j) acc[r][j] = _mm512_setzero_ps();
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
              index_t ld_out, const float* bias, index_t first, index_t n_panels) {
  constexpr int P = R >= 8 ? 3 : 1;  // 8 rows x 3 panels = 24 independent accumulators
  index_t p = 0;
  const auto column = [&](index_t panel) { return first + panel * 16; };
  for (; p + P <= n_panels; p += P) {
    f32_tile<R, P>(x, ldx, w + column(p), ldw, K, out + column(p), ld_out,
                   bias ? bias + column(p) : nullptr);
  }
  for (; p < n_panels; ++p) {
    f32_tile<R, 1>(x, ldx, w + column(p), ldw, K, out + column(p), ld_out,
                   bias ? bias + column(p) : nullptr);
  }
}
#endif

}  // namespace detail

/// out.middleCols(first, width) = x W.middleCols(first, width) + bias (bias: N floats or
/// nullptr). x: [T x K], W: [K x N], out: [T x N]. One column block; callers split the columns
/// over threads.
template <class Scalar>
void matmul_column_block(matrix_cref<Scalar> x, matrix_cref<Scalar> w, const Scalar* bias,
                         index_t first, index_t width, matrix_ref<Scalar> out) {
  index_t done = 0;
#if defined(__AVX512F__)
  // Fewer than 8 rows (decoding) make a matrix-vector product bound by reading W, where Eigen's
  // GEMV does as well as a kernel can.
  if constexpr (std::is_same_v<Scalar, float>) {
    if (x.rows() >= 8) {
      const index_t n_panels = width / 16, K = x.cols();
      const index_t ldx = x.outerStride(), ldw = w.outerStride(), ld_out = out.outerStride();
      index_t t = 0;
      for (; t + 8 <= x.rows(); t += 8) {
        detail::f32_rows<8>(x.data() + t * ldx, ldx, w.data(), ldw, K, out.data() + t * ld_out,
                            ld_out, bias, first, n_panels);
      }
      for (; t < x.rows(); ++t) {
        detail::f32_rows<1>(x.data() + t * ldx, ldx, w.data(), ldw, K, out.data() + t * ld_out,
                            ld_out, bias, first, n_panels);
      }
      done = n_panels * 16;
    }
  }
#endif
  if (done < width) {  // the plain path: Eigen's GEMM (or the columns left over by the kernel)
    auto out_block = out.middleCols(first + done, width - done);
    out_block.noalias() = x * w.middleCols(first + done, width - done);
    if (bias) {
      out_block.rowwise() +=
          Eigen::Map<const row_vector<Scalar>>(bias + first + done, width - done);
    }
  }
}

}  // namespace eigenformer
