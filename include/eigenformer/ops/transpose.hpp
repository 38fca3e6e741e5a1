// eigenformer/ops/transpose.hpp — dst = src^T for large matrices, as the weight loaders need it:
// files store linear weights [out x in], the kernels stream them [in x out].
#pragma once

#include <algorithm>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/parallel.hpp"
#include "eigenformer/core/types.hpp"

namespace eigenformer {

/// dst = src^T in 64 x 64 tiles (both sides stay in cache), rows of dst in parallel.
/// src: [R x K], dst: [K x R].
template <class Scalar>
void assign_transposed(matrix_cref<Scalar> src, matrix_ref<Scalar> dst) {
  if (src.rows() != dst.cols() || src.cols() != dst.rows()) {
    throw shape_error(detail::concat("assign_transposed: [", src.rows(), " x ", src.cols(),
                                     "]^T does not fit [", dst.rows(), " x ", dst.cols(), "]"));
  }
  constexpr index_t tile = 64;
  const index_t n_row_tiles = (dst.rows() + tile - 1) / tile;
  parallel_for(n_row_tiles, [&](index_t t) {
    const index_t r0 = t * tile, rows = std::min(tile, dst.rows() - r0);
    for (index_t c0 = 0; c0 < dst.cols(); c0 += tile) {
      const index_t cols = std::min(tile, dst.cols() - c0);
      dst.block(r0, c0, rows, cols) = src.block(c0, r0, cols, rows).transpose();
    }
  });
}

}  // namespace eigenformer
