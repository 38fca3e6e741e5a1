// eigenformer/layers/embedding.hpp — token embedding plus learned position embedding.
#pragma once

#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/ops/bf16_matmul.hpp"
#include "eigenformer/quant/quantized_matrix.hpp"

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

namespace detail {
/// out[t] = column tokens[t] of a compressed LM head E^T [C x V] (+ wpe[first_position + t] when
/// wpe is not null): the token embedding of a tied model whose float E was freed.
template <class Head>
void embedding_from_head(const char* what, const std::vector<token_id>& tokens, const Head& head,
                         const matrix_cref<float>* wpe, index_t first_position,
                         matrix_ref<float> out) {
  const auto n_tokens = static_cast<index_t>(tokens.size());
  if (out.rows() != n_tokens || out.cols() != head.rows || (wpe && wpe->cols() != head.rows)) {
    throw shape_error(concat(what, ": the compressed wte^T is [", head.rows, " x ", head.cols,
                             "], wpe has ", wpe ? wpe->cols() : head.rows, " columns, out is [",
                             out.rows(), " x ", out.cols(), "] for ", n_tokens, " tokens"));
  }
  if (wpe) check_positions(first_position, n_tokens, wpe->rows());
  check_token_ids(tokens, head.cols);
  for (index_t t = 0; t < n_tokens; ++t) {
    head.read_column(tokens[static_cast<std::size_t>(t)], out.row(t).data());
    if (wpe) out.row(t) += wpe->row(first_position + t);
  }
}
}  // namespace detail

/// The same with the token embedding stored as a tied model's compressed LM head E^T [C x V]
/// (bf16 panels or quantized blocks): out[t] = column tokens[t] of E^T + wpe[first_position + t].
inline void embedding_forward(const std::vector<token_id>& tokens,
                              const packed_bf16_matrix& wte_transposed, matrix_cref<float> wpe,
                              index_t first_position, matrix_ref<float> out) {
  detail::embedding_from_head("embedding_forward", tokens, wte_transposed, &wpe, first_position,
                              out);
}
inline void embedding_forward(const std::vector<token_id>& tokens,
                              const quantized_matrix& wte_transposed, matrix_cref<float> wpe,
                              index_t first_position, matrix_ref<float> out) {
  detail::embedding_from_head("embedding_forward", tokens, wte_transposed, &wpe, first_position,
                              out);
}

/// out[t] = wte[tokens[t]]: the token embedding alone, for models whose positions are rotary.
/// wte: [V x C], out: [T x C].
template <class Scalar>
void token_embedding_forward(const std::vector<token_id>& tokens, matrix_cref<Scalar> wte,
                             matrix_ref<Scalar> out) {
  const auto n_tokens = static_cast<index_t>(tokens.size());
  if (out.rows() != n_tokens || out.cols() != wte.cols()) {
    throw shape_error(detail::concat("token_embedding_forward: wte is [", wte.rows(), " x ",
                                     wte.cols(), "], out is [", out.rows(), " x ", out.cols(),
                                     "] for ", n_tokens, " tokens"));
  }
  check_token_ids(tokens, wte.rows());
  for (index_t t = 0; t < n_tokens; ++t) out.row(t) = wte.row(tokens[static_cast<std::size_t>(t)]);
}

/// The same from a tied model's compressed LM head E^T [C x V] (bf16 panels or quantized).
inline void token_embedding_forward(const std::vector<token_id>& tokens,
                                    const packed_bf16_matrix& wte_transposed,
                                    matrix_ref<float> out) {
  detail::embedding_from_head("token_embedding_forward", tokens, wte_transposed, nullptr, 0, out);
}
inline void token_embedding_forward(const std::vector<token_id>& tokens,
                                    const quantized_matrix& wte_transposed, matrix_ref<float> out) {
  detail::embedding_from_head("token_embedding_forward", tokens, wte_transposed, nullptr, 0, out);
}

/// Backward of embedding_forward for a batch of sequences: `tokens` holds `n_sequences` sequences
/// of T = d_out.rows() / n_sequences tokens each, all starting at position 0, and d_out
/// [B*T x C] is dL/d out. A row of wte gets the sum of d_out over every occurrence of its token
/// and a row of wpe the sum over the batch. Adds to d_wte and d_wpe; for a tied LM head, d_wte
/// also receives the head's gradient, and the two simply add up. An empty d_wpe: a model
/// without learned positions (rotary), where only wte is trained.
template <class Scalar>
void embedding_backward(const std::vector<token_id>& tokens, index_t n_sequences,
                        matrix_cref<Scalar> d_out, matrix_ref<Scalar> d_wte,
                        matrix_ref<Scalar> d_wpe) {
  const auto n_rows = static_cast<index_t>(tokens.size());
  const bool learned_positions = d_wpe.size() > 0;
  if (n_sequences <= 0 || n_rows % n_sequences != 0 || d_out.rows() != n_rows ||
      d_out.cols() != d_wte.cols() ||
      (learned_positions &&
       (d_wpe.cols() != d_wte.cols() || n_rows / n_sequences > d_wpe.rows()))) {
    throw shape_error(detail::concat("embedding_backward: ", n_rows, " tokens in ", n_sequences,
                                     " sequences, d_out is [", d_out.rows(), " x ", d_out.cols(),
                                     "], d_wte is [", d_wte.rows(), " x ", d_wte.cols(),
                                     "], d_wpe is [", d_wpe.rows(), " x ", d_wpe.cols(), "]"));
  }
  check_token_ids(tokens, d_wte.rows());
  const index_t seq_len = n_rows / n_sequences;
  for (index_t r = 0; r < n_rows; ++r) {
    d_wte.row(tokens[static_cast<std::size_t>(r)]) += d_out.row(r);
    if (learned_positions) d_wpe.row(r % seq_len) += d_out.row(r);
  }
}

}  // namespace eigenformer
