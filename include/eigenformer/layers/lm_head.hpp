// eigenformer/layers/lm_head.hpp — the output projection: logits = x E^T, one score per
// vocabulary entry. E [V x C] is the token embedding (GPT-2 ties them) or a separate lm_head.
#pragma once

#include <algorithm>
#include <type_traits>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/parallel.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/layers/linear.hpp"

namespace eigenformer {

/// logits = x E^T.  x: [T x C], embedding E: [V x C], logits: [T x V].
/// Threads split the vocabulary into fixed blocks (bit-identical for any thread count).
template <class Scalar>
void lm_head_forward(matrix_cref<Scalar> x, matrix_cref<Scalar> embedding,
                     matrix_ref<Scalar> logits) {
  const index_t vocab = embedding.rows();
  if (x.cols() != embedding.cols() || logits.rows() != x.rows() || logits.cols() != vocab) {
    throw shape_error(detail::concat("lm_head: x is [", x.rows(), " x ", x.cols(), "], E is [",
                                     vocab, " x ", embedding.cols(), "], logits are [",
                                     logits.rows(), " x ", logits.cols(), "]"));
  }
  const index_t n_blocks = (vocab + linear_column_block - 1) / linear_column_block;
  parallel_for(n_blocks, [&](index_t block) {
    const index_t first = block * linear_column_block;
    const index_t width = std::min(linear_column_block, vocab - first);
    if constexpr (std::is_same_v<Scalar, float>) {
      // E's rows are the columns of E^T, contiguous: the dot-product tiles of
      // ops/quant_matmul.hpp sum each logit in one order (16 lanes along C, then pairwise)
      // for any number of rows, so a row's logits do not depend on its batch.
      if (embedding.outerStride() == embedding.cols()) {
        detail::quant_tiles(x, embedding.data() + first * embedding.cols(), embedding.cols(), width,
                            nullptr, logits, first);
        return;
      }
    }
    logits.middleCols(first, width).noalias() = x * embedding.middleRows(first, width).transpose();
  });
}

/// Backward of lm_head_forward, given d_logits [T x V]:
///   dE += d_logits^T x   [V x C]      dx += d_logits E   [T x C]
/// Threads split rows of dE and columns of dx. Adds to d_embedding and d_x (see linear_backward).
template <class Scalar>
void lm_head_backward(matrix_cref<Scalar> x, matrix_cref<Scalar> embedding,
                      matrix_cref<Scalar> d_logits, matrix_ref<Scalar> d_embedding,
                      matrix_ref<Scalar> d_x) {
  const index_t vocab = embedding.rows(), channels = embedding.cols();
  if (x.cols() != channels || d_logits.rows() != x.rows() || d_logits.cols() != vocab ||
      d_embedding.rows() != vocab || d_embedding.cols() != channels || d_x.rows() != x.rows() ||
      d_x.cols() != channels) {
    throw shape_error(detail::concat("lm_head_backward: x is [", x.rows(), " x ", x.cols(),
                                     "], E is [", vocab, " x ", channels, "], d_logits are [",
                                     d_logits.rows(), " x ", d_logits.cols(), "]"));
  }
  const index_t vocab_blocks = (vocab + linear_column_block - 1) / linear_column_block;
  const index_t channel_blocks = (channels + linear_column_block - 1) / linear_column_block;
  // d_logits^T [V x T] copied row-major: dE's row blocks then run on the register-tiled kernel.
  const auto d_logits_t = detail::transposed_copy<Scalar>(d_logits);
  parallel_for(vocab_blocks + channel_blocks, [&](index_t block) {
    if (block < vocab_blocks) {
      const index_t first = block * linear_column_block;
      const index_t width = std::min(linear_column_block, vocab - first);
      matmul_column_block<Scalar>(d_logits_t.middleRows(first, width), x, nullptr, 0, channels,
                                  d_embedding.middleRows(first, width), /*accumulate=*/true);
    } else {
      const index_t first = (block - vocab_blocks) * linear_column_block;
      const index_t width = std::min(linear_column_block, channels - first);
      d_x.middleCols(first, width).noalias() += d_logits * embedding.middleCols(first, width);
    }
  });
}

}  // namespace eigenformer
