// eigenformer/core/types.hpp — matrix aliases shared by every layer.
//
// Activations and weights are row-major: a matrix [T x C] holds one token per row, so a token's
// features are contiguous (what attention heads, the KV cache and the LM head read), and HF
// Conv1D weights [in x out] can be used exactly as they are stored in the file.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <vector>

namespace eigenformer {

using index_t = Eigen::Index;
using token_id = std::int32_t;

/// Dynamic row-major matrix; dynamic sizes only, because model dimensions are runtime values and
/// fixed-size Eigen objects of that size would live on the stack.
template <class Scalar>
using matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// A bias or LayerNorm gain: a row vector [1 x C] broadcast over the token rows.
template <class Scalar>
using row_vector = Eigen::Matrix<Scalar, 1, Eigen::Dynamic, Eigen::RowMajor>;

/// Read-only and writable views of any row-major matrix expression, so layers accept blocks
/// (a head's columns, the first rows of a buffer) without copies.
template <class Scalar>
using matrix_cref = Eigen::Ref<const matrix<Scalar>, 0, Eigen::OuterStride<>>;
template <class Scalar>
using matrix_ref = Eigen::Ref<matrix<Scalar>, 0, Eigen::OuterStride<>>;
template <class Scalar>
using row_vector_cref = Eigen::Ref<const row_vector<Scalar>>;

}  // namespace eigenformer
