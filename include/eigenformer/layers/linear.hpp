// eigenformer/layers/linear.hpp — the affine layer y = x W + b.
//
// W is stored [in x out], the layout of Hugging Face's GPT-2 `Conv1D` weights, so a checkpoint's
// bytes are used as they are (no transpose on load) and y = x W is a plain row-major GEMM.
// A float layer may instead hold W as bfloat16 panels (`packed`, see ops/bf16_matmul.hpp) or in
// ggml's quantized blocks (`quantized`, ops/quant_matmul.hpp): a half to an eighth of the bytes
// to read per token when decoding; `weight` is then empty.
#pragma once

#include <algorithm>
#include <type_traits>
#include <utility>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/parallel.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/ops/bf16_matmul.hpp"
#include "eigenformer/ops/matmul.hpp"
#include "eigenformer/ops/quant_matmul.hpp"

namespace eigenformer {

template <class Scalar>
struct linear_weights {
  matrix<Scalar> weight;       // [in x out]
  row_vector<Scalar> bias;     // [1 x out]; empty: the layer has no bias (most Llama layers)
  packed_bf16_matrix packed;   // W [in x out] in bf16 instead of `weight` (float layers only)
  quantized_matrix quantized;  // W [in x out] in quantized blocks instead (float layers only)

  linear_weights() = default;
  linear_weights(matrix<Scalar> weight_, row_vector<Scalar> bias_)
      : weight(std::move(weight_)), bias(std::move(bias_)) {}

  bool is_packed() const { return !packed.empty(); }
  bool is_quantized() const { return !quantized.empty(); }
  /// Whether W is held in a lower-precision storage (then `weight` is empty).
  bool is_compressed() const { return is_packed() || is_quantized(); }
  index_t in_features() const {
    return is_packed() ? packed.rows : is_quantized() ? quantized.rows : weight.rows();
  }
  index_t out_features() const {
    return is_packed() ? packed.cols : is_quantized() ? quantized.cols : weight.cols();
  }
};

/// Replaces a float layer's weight by its bf16 panels (rounded to nearest) and frees the floats.
inline void pack_linear(linear_weights<float>& w, bf16_compute compute) {
  if (!w.is_packed()) w.packed = pack_bf16(w.weight, compute);
  w.packed.compute = compute;
  w.weight.resize(0, 0);
}

/// Replaces a float layer's weight by quantized blocks of type `t` (ggml's rounding) and frees
/// the floats. A layer whose input width is not whole blocks of `t` stays float (llama.cpp does
/// the same); returns whether the layer was quantized.
inline bool quantize_linear(linear_weights<float>& w, quant_type t) {
  if (w.is_compressed()) throw value_error("quantize_linear: the layer is already compressed");
  if (!fits_blocks(t, w.weight.rows())) return false;
  w.quantized = quantize_matrix(w.weight, t);
  w.weight.resize(0, 0);
  return true;
}

/// Output columns per parallel block. Fixed (not derived from the thread count) so results are
/// bit-identical for any number of threads; a multiple of 16 keeps blocks aligned to AVX-512.
inline constexpr index_t linear_column_block = 192;

/// out = x W + b (or x W for an empty bias).  x: [T x in], out: [T x out] (must not alias x).
/// Threads split the output columns: each block is an independent GEMM. One row (decoding, bound
/// by reading W) goes to matvec_row_chunks, which streams W in order.
template <class Scalar>
void linear_forward(matrix_cref<Scalar> x, const linear_weights<Scalar>& w,
                    matrix_ref<Scalar> out) {
  if (x.cols() != w.in_features() || out.rows() != x.rows() || out.cols() != w.out_features() ||
      (w.bias.size() != 0 && w.bias.size() != w.out_features())) {
    throw shape_error(detail::concat("linear_forward: x is [", x.rows(), " x ", x.cols(),
                                     "], W is [", w.in_features(), " x ", w.out_features(),
                                     "], b has ", w.bias.size(), ", out is [", out.rows(), " x ",
                                     out.cols(), "]"));
  }
  const Scalar* bias = w.bias.size() != 0 ? w.bias.data() : nullptr;
  if (w.is_compressed()) {
    if constexpr (std::is_same_v<Scalar, float>) {
      if (w.is_packed()) {
        bf16_matmul(x, w.packed, bias, out);
      } else {
        quant_matmul(x, w.quantized, bias, out);
      }
      return;
    } else {
      throw value_error("linear_forward: bf16 or quantized weights need a float model");
    }
  }
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<Scalar, float>) {
    // Decoding (one row per sequence): W streamed once, row by row, one block of columns per
    // thread, in the tiles' arithmetic (batch_invariant_kernels).
    if (x.rows() <= detail::streamed_rows) {
      const index_t n_cols = w.out_features(), threads = num_threads();
      const index_t block = std::max<index_t>(64, (n_cols / threads + 15) / 16 * 16);
      parallel_for((n_cols + block - 1) / block, [&](index_t b) {
        detail::f32_few_rows(x.data(), x.outerStride(), x.rows(), w.weight.data(),
                             w.weight.outerStride(), x.cols(), out.data(), out.outerStride(), bias,
                             b * block, std::min(block, n_cols - b * block));
      });
      return;
    }
  }
#endif
  if (x.rows() == 1) {
    matvec_row_chunks<Scalar>(x, w.weight, bias, out);
    return;
  }
  const index_t n_cols = w.out_features();
  const index_t n_blocks = (n_cols + linear_column_block - 1) / linear_column_block;
  parallel_for(n_blocks, [&](index_t block) {
    const index_t first = block * linear_column_block;
    matmul_column_block<Scalar>(x, w.weight, bias, first,
                                std::min(linear_column_block, n_cols - first), out);
  });
}

/// Backward of y = x W + b, given d_out = dL/dy [T x out]:
///   dW += x^T d_out   [in x out]      db += column sums of d_out   [1 x out] (if W has a bias)
///   dx += d_out W^T   [T x in]        (skipped when d_x is empty)
/// Every backward function in the library ADDS to the gradients it is given, parameters and
/// inputs alike: parameter gradients must sum over micro-batches and over the two uses of a tied
/// embedding, and the residual stream's gradient sums the skip path and the branch. Callers
/// zero gradients once. Threads split columns of dW and of dx (fixed blocks, no reductions
/// across threads), so the result is bit-identical for any thread count.
template <class Scalar>
void linear_backward(matrix_cref<Scalar> x, const linear_weights<Scalar>& w,
                     matrix_cref<Scalar> d_out, linear_weights<Scalar>& grad,
                     matrix_ref<Scalar> d_x) {
  const index_t n_in = w.in_features(), n_out = w.out_features();
  if (w.is_compressed() || x.cols() != n_in || d_out.rows() != x.rows() || d_out.cols() != n_out ||
      grad.weight.rows() != n_in || grad.weight.cols() != n_out ||
      grad.bias.size() != w.bias.size() || (w.bias.size() != 0 && w.bias.size() != n_out) ||
      (d_x.size() != 0 && (d_x.rows() != x.rows() || d_x.cols() != n_in))) {
    throw shape_error(detail::concat(
        "linear_backward: x is [", x.rows(), " x ", x.cols(), "], W is [", n_in, " x ", n_out, "]",
        w.is_compressed() ? " (bf16 or quantized)" : "", ", d_out is [", d_out.rows(), " x ",
        d_out.cols(), "], dW is [", grad.weight.rows(), " x ", grad.weight.cols(), "], d_x is [",
        d_x.rows(), " x ", d_x.cols(), "]"));
  }
  const index_t out_blocks = (n_out + linear_column_block - 1) / linear_column_block;
  const index_t in_blocks =
      d_x.size() == 0 ? 0 : (n_in + linear_column_block - 1) / linear_column_block;
  // dW's blocks are x^T [in x T] times columns of d_out. With x^T copied row-major they run on
  // matmul_column_block's register-tiled kernel (~1.6x Eigen's GEMM on the transposed view); the
  // copy costs T x in, the product T x in x out, so it pays for wide layers only (measured:
  // GPT-2 124M's step 10 % faster, the demo model's C = 128 layers 10 % slower).
  const bool tiled_weight_grad = std::is_same_v<Scalar, float> && n_out >= 4 * linear_column_block;
  matrix_cref<Scalar> x_t =
      tiled_weight_grad ? matrix_cref<Scalar>(detail::transposed_copy<Scalar>(x)) : x;
  parallel_for(out_blocks + in_blocks, [&](index_t block) {
    if (block < out_blocks) {
      const index_t first = block * linear_column_block;
      const index_t width = std::min(linear_column_block, n_out - first);
      if (tiled_weight_grad) {
        matmul_column_block<Scalar>(x_t, d_out, nullptr, first, width, grad.weight,
                                    /*accumulate=*/true);
      } else {
        grad.weight.middleCols(first, width).noalias() +=
            x.transpose() * d_out.middleCols(first, width);
      }
      if (grad.bias.size() != 0)
        grad.bias.segment(first, width) += d_out.middleCols(first, width).colwise().sum();
    } else {
      const index_t first = (block - out_blocks) * linear_column_block;
      const index_t width = std::min(linear_column_block, n_in - first);
      d_x.middleCols(first, width).noalias() +=
          d_out * w.weight.middleRows(first, width).transpose();
    }
  });
}

}  // namespace eigenformer
