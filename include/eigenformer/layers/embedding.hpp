// eigenformer/layers/embedding.hpp — token embedding plus learned position embedding.
#pragma once

#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"

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
  if (first_position < 0 || first_position + n_tokens > wpe.rows()) {
    throw shape_error(detail::concat("embedding_forward: positions [", first_position, ", ",
                                     first_position + n_tokens, ") exceed the context of ",
                                     wpe.rows(), " positions by ",
                                     first_position + n_tokens - wpe.rows()));
  }
  check_token_ids(tokens, wte.rows());
  for (index_t t = 0; t < n_tokens; ++t) {
    out.row(t) = wte.row(tokens[static_cast<std::size_t>(t)]) + wpe.row(first_position + t);
  }
}

}  // namespace eigenformer
