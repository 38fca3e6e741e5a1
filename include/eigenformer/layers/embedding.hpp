// eigenformer/layers/embedding.hpp — token embedding plus learned position embedding.
#pragma once

#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/ops/bf16_matmul.hpp"

namespace eigenformer {

/// Throws value_error unless every id is in [0, vocab_size).
inline void check_token_ids(const std::vector<token_id>& tokens, index_t vocab_size) {
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    if (tokens[t] < 0 || tokens[t] >= vocab_size) {
      throw value_error(detail::concat("token id ", tokens[t], " at position ", t,
                                       " is outside the vocabulary [0, ", vocab_size, ")"));
    }
  }
}

/// Throws shape_error unless positions [first_position, first_position + n_tokens) exist.
inline void check_positions(index_t first_position, index_t n_tokens, index_t n_positions) {
  if (first_position < 0 || first_position + n_tokens > n_positions) {
    throw shape_error(detail::concat("embedding_forward: positions [", first_position, ", ",
                                     first_position + n_tokens, ") exceed the context of ",
                                     n_positions, " positions by ",
                                     first_position + n_tokens - n_positions));
  }
}

/// out[t] = wte[tokens[t]] + wpe[first_position + t].
/// wte: [V x C], wpe: [n_ctx x C], out: [T x C] with T = tokens.size().
/// `first_position` is the absolute position of tokens[0] (non-zero when continuing a sequence).
template <class Scalar>
void embedding_forward(const std::vector<token_id>& tokens, matrix_cref<Scalar> wte,
                       matrix_cref<Scalar> wpe, index_t first_position, matrix_ref<Scalar> out) {
  const auto n_tokens = static_cast<index_t>(tokens.size());
  if (wte.cols() != wpe.cols() || out.rows() != n_tokens || out.cols() != wte.cols()) {
    throw shape_error(detail::concat("embedding_forward: wte is [", wte.rows(), " x ", wte.cols(),
                                     "], wpe is [", wpe.rows(), " x ", wpe.cols(), "], out is [",
                                     out.rows(), " x ", out.cols(), "] for ", n_tokens, " tokens"));
  }
  check_positions(first_position, n_tokens, wpe.rows());
  check_token_ids(tokens, wte.rows());
  for (index_t t = 0; t < n_tokens; ++t) {
    out.row(t) = wte.row(tokens[static_cast<std::size_t>(t)]) + wpe.row(first_position + t);
  }
}

/// The same with the token embedding stored transposed in bf16, as a packed LM head E^T [C x V]
/// (tied models after pack_weights_bf16): out[t][c] = E^T(c, tokens[t]) + wpe[first_position +
/// t][c].
inline void embedding_forward(const std::vector<token_id>& tokens,
                              const packed_bf16_matrix& wte_transposed, matrix_cref<float> wpe,
                              index_t first_position, matrix_ref<float> out) {
  const auto n_tokens = static_cast<index_t>(tokens.size());
  if (wte_transposed.rows != wpe.cols() || out.rows() != n_tokens || out.cols() != wpe.cols()) {
    throw shape_error(detail::concat("embedding_forward: packed wte^T is [", wte_transposed.rows,
                                     " x ", wte_transposed.cols, "], wpe is [", wpe.rows(), " x ",
                                     wpe.cols(), "], out is [", out.rows(), " x ", out.cols(),
                                     "] for ", n_tokens, " tokens"));
  }
  check_positions(first_position, n_tokens, wpe.rows());
  check_token_ids(tokens, wte_transposed.cols);
  for (index_t t = 0; t < n_tokens; ++t) {
    const index_t id = tokens[static_cast<std::size_t>(t)];
    for (index_t c = 0; c < out.cols(); ++c) {
      out(t, c) = wte_transposed(c, id) + wpe(first_position + t, c);
    }
  }
}

}  // namespace eigenformer
