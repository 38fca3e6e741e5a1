// eigenformer/quant/quantized_matrix.hpp — a weight matrix W [K x N] kept in ggml's quantized
// blocks, in the layout of a GGUF tensor: one row of blocks per OUTPUT column n (W's column n,
// K weights), so a GGUF file's bytes are used as they are and decoding streams them in order.
//
// A matrix may hold consecutive column ranges of different types (segments): llama.cpp's Q4_K_M
// files quantize q, k and v — which this library fuses into one qkv matrix — to different types.
//
// Columns are interleaved when they are stored (as llama.cpp repacks them for its AVX-512 and
// AMX kernels): groups of 16 columns, block by block. Block b of a group holds the 16 columns'
// block b field by field, in the order of ggml's block: an fp16 field (d, dmin) as 16 fp16
// values, column c at bytes 2c .. 2c + 1; a byte array (codes, high bits, packed scales) as
// 64-byte vectors of 4-byte words, word w of column c at bytes 64w + 4c .. 64w + 4c + 3 of the
// field. So a group's block is 16 ggml blocks' bytes, and q4_0's is
//   [16 d | vector j = ggml's bytes 4j .. 4j + 3 of the 16 columns (j < 4)],
// q4_k's [16 d | 16 dmin | 3 vectors of packed scales | 32 vectors of codes]. The one change of
// a value: q8_0's codes are stored unsigned (q + 128). A vector's 16 lanes are 16 output
// columns: one broadcast activation word and one integer dot-product instruction serve all of
// them (ops/quant_int8.hpp). The last group of a segment is padded with zero columns.
// column_blocks gives a column back in ggml's layout, bit for bit.
//
// The types are ggml's (numbered as in GGUF): q8_0, q4_0, q5_0, q5_1 (blocks of 32,
// quant/blocks.hpp) and q4_k, q5_k, q6_k (super-blocks of 256, quant/k_quants.hpp). Quantizing from
// float is ggml's reference rounding (quant/blocks.hpp, quant/k_quants.hpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/parallel.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/quant/blocks.hpp"
#include "eigenformer/quant/k_quants.hpp"

namespace eigenformer {

/// ggml's quantized types this library stores and multiplies (values are ggml's type numbers).
enum class quant_type : std::uint32_t {
  q4_0 = 2,
  q5_0 = 6,
  q5_1 = 7,
  q8_0 = 8,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
};

/// Weights per block and bytes per block of a quantized type.
struct quant_type_traits {
  quant_type type;
  const char* name;  // as the CLI spells it (--dtype)
  index_t block_weights;
  index_t block_bytes;
};

inline constexpr quant_type_traits quant_types[] = {
    {quant_type::q8_0, "q8_0", 32, 34},   {quant_type::q4_0, "q4_0", 32, 18},
    {quant_type::q5_0, "q5_0", 32, 22},   {quant_type::q5_1, "q5_1", 32, 24},
    {quant_type::q4_k, "q4_k", 256, 144}, {quant_type::q5_k, "q5_k", 256, 176},
    {quant_type::q6_k, "q6_k", 256, 210},
};

inline const quant_type_traits& traits_of(quant_type t) {
  for (const auto& e : quant_types)
    if (e.type == t) return e;
  throw value_error(detail::concat("quant_type ", std::uint32_t(t), " is not a quantized type"));
}

/// The type named `name` ("q8_0", ...), or value_error listing the names.
inline quant_type parse_quant_type(const std::string& name) {
  std::string names;
  for (const auto& e : quant_types) {
    if (name == e.name) return e.type;
    names += names.empty() ? e.name : std::string(", ") + e.name;
  }
  throw value_error("unknown quantized type '" + name + "' (one of " + names + ")");
}

/// Whether rows of K weights can be stored as `t` (whole blocks).
inline bool fits_blocks(quant_type t, index_t k) {
  return k > 0 && k % traits_of(t).block_weights == 0;
}

/// llama-quantize's fallback for rows of k weights that are not whole blocks of `t`: q4_k ->
/// q5_0, q5_k -> q5_1, q6_k -> q8_0. False when none of these fits (it would use f16, or refuse).
inline bool fall_back_to_fit(quant_type& t, index_t k) {
  if (fits_blocks(t, k)) return true;
  if (t == quant_type::q4_k) t = quant_type::q5_0;
  if (t == quant_type::q5_k) t = quant_type::q5_1;
  if (t == quant_type::q6_k) t = quant_type::q8_0;
  return fits_blocks(t, k);
}

/// The layers llama-quantize's k-quant mixes give more bits: the first and last eighth, and
/// every third layer between.
inline bool llama_uses_more_bits(index_t layer, index_t n_layers) {
  return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

/// One row of n weights of type `t` -> y[0:n], exactly as ggml dequantizes.
inline void dequantize_row(quant_type t, const unsigned char* row, float* y, index_t n) {
  switch (t) {
    case quant_type::q8_0:
      return dequantize_row_q8_0(reinterpret_cast<const block_q8_0*>(row), y, n);
    case quant_type::q4_0:
      return dequantize_row_q4_0(reinterpret_cast<const block_q4_0*>(row), y, n);
    case quant_type::q5_0:
      return dequantize_row_q5_0(reinterpret_cast<const block_q5_0*>(row), y, n);
    case quant_type::q5_1:
      return dequantize_row_q5_1(reinterpret_cast<const block_q5_1*>(row), y, n);
    case quant_type::q4_k:
      return dequantize_row_q4_k(reinterpret_cast<const block_q4_k*>(row), y, n);
    case quant_type::q5_k:
      return dequantize_row_q5_k(reinterpret_cast<const block_q5_k*>(row), y, n);
    case quant_type::q6_k:
      return dequantize_row_q6_k(reinterpret_cast<const block_q6_k*>(row), y, n);
  }
  throw value_error("dequantize_row: not a quantized type");
}

/// x[0:n] -> one row of type `t` (ggml's reference rounding).
inline void quantize_row(quant_type t, const float* x, unsigned char* row, index_t n) {
  switch (t) {
    case quant_type::q8_0:
      return quantize_row_q8_0(x, reinterpret_cast<block_q8_0*>(row), n);
    case quant_type::q4_0:
      return quantize_row_q4_0(x, reinterpret_cast<block_q4_0*>(row), n);
    case quant_type::q5_0:
      return quantize_row_q5_0(x, reinterpret_cast<block_q5_0*>(row), n);
    case quant_type::q5_1:
      return quantize_row_q5_1(x, reinterpret_cast<block_q5_1*>(row), n);
    case quant_type::q4_k:
      return quantize_row_q4_k(x, reinterpret_cast<block_q4_k*>(row), n);
    case quant_type::q5_k:
      return quantize_row_q5_k(x, reinterpret_cast<block_q5_k*>(row), n);
    case quant_type::q6_k:
      return quantize_row_q6_k(x, reinterpret_cast<block_q6_k*>(row), n);
  }
  throw value_error("quantize_row: not a quantized type");
}

/// Columns per interleaved group.
inline constexpr index_t interleave_columns = 16;

namespace detail {
/// The fields of a type's ggml block in order: 0 for an fp16 value, else a byte array's length
/// (a multiple of 4); `count` of them.
struct block_fields {
  index_t length[5];
  int count;
};

inline block_fields fields_of(quant_type t) {
  switch (t) {
    case quant_type::q8_0:
      return {{0, 32}, 2};
    case quant_type::q4_0:
      return {{0, 16}, 2};
    case quant_type::q5_0:
      return {{0, 4, 16}, 3};
    case quant_type::q5_1:
      return {{0, 0, 4, 16}, 4};
    case quant_type::q4_k:
      return {{0, 0, 12, 128}, 4};
    case quant_type::q5_k:
      return {{0, 0, 12, 32, 128}, 5};
    case quant_type::q6_k:
      return {{128, 64, 16, 0}, 4};
  }
  throw value_error("fields_of: not a quantized type");
}

/// Calls f(i, at, n) for each piece of a type's ggml block (an fp16 value, n = 2, or a 4-byte
/// word, n = 4): bytes i .. i + n go to bytes at .. at + n of a group's block as column c (see
/// the top of this file).
template <class F>
void for_each_block_piece(quant_type t, index_t c, F&& f) {
  const block_fields fields = fields_of(t);
  index_t from = 0, field_start = 0;
  for (int field = 0; field < fields.count; ++field) {
    const index_t length = fields.length[field];
    if (length == 0) {  // an fp16 value
      f(from, field_start + 2 * c, 2);
      from += 2;
      field_start += 2 * interleave_columns;
      continue;
    }
    for (index_t w = 0; w < length / 4; ++w) f(from + 4 * w, field_start + 64 * w + 4 * c, 4);
    from += length;
    field_start += interleave_columns * length;
  }
}

/// q8_0's codes are kept unsigned (q + 128: each code's sign bit flipped); nothing else changes.
inline void flip_stored_codes(quant_type t, unsigned char* piece, index_t n) {
  if (t != quant_type::q8_0 || n != 4) return;
  for (index_t e = 0; e < 4; ++e) piece[e] ^= 0x80;
}

/// Column c's ggml block -> its places in a group's block.
inline void interleave_block(quant_type t, const unsigned char* ggml, unsigned char* block,
                             index_t c) {
  for_each_block_piece(t, c, [&](index_t i, index_t at, index_t n) {
    std::memcpy(block + at, ggml + i, std::size_t(n));
    flip_stored_codes(t, block + at, n);
  });
}

/// The inverse: column c of a group's block -> ggml's block.
inline void deinterleave_block(quant_type t, const unsigned char* block, index_t c,
                               unsigned char* ggml) {
  for_each_block_piece(t, c, [&](index_t i, index_t at, index_t n) {
    std::memcpy(ggml + i, block + at, std::size_t(n));
    flip_stored_codes(t, ggml + i, n);
  });
}
}  // namespace detail

/// W [K x N] as rows of quantized blocks, one per output column (see the top of this file).
struct quantized_matrix {
  /// Columns [first, first + cols) of W, all of one type, in ceil(cols / 16) groups of 16
  /// columns (16 ggml rows of row_bytes each).
  struct segment {
    quant_type type = quant_type::q8_0;
    index_t first = 0;
    index_t cols = 0;
    index_t row_bytes = 0;
    std::vector<unsigned char> bytes;

    index_t group_bytes() const { return interleave_columns * row_bytes; }
    index_t block_bytes() const { return traits_of(type).block_bytes; }
    /// Column j (counted from `first`) in ggml's layout -> out[0:row_bytes].
    void column_blocks(index_t j, unsigned char* out) const {
      const unsigned char* group = bytes.data() + (j / interleave_columns) * group_bytes();
      const index_t block = block_bytes(), group_block = interleave_columns * block;
      for (index_t b = 0; b < row_bytes / block; ++b)
        detail::deinterleave_block(type, group + b * group_block, j % interleave_columns,
                                   out + b * block);
    }
    /// All columns in ggml's layout (a GGUF tensor's bytes): cols * row_bytes.
    std::vector<unsigned char> ggml_bytes() const {
      std::vector<unsigned char> out(std::size_t(cols * row_bytes));
      for (index_t j = 0; j < cols; ++j) column_blocks(j, out.data() + j * row_bytes);
      return out;
    }
  };

  index_t rows = 0;  // K, the input features (a multiple of every segment's block)
  index_t cols = 0;  // N, the output features
  std::vector<segment> segments;

  bool empty() const { return cols == 0; }
  /// The segment holding column n.
  const segment& segment_of(index_t n) const {
    for (const auto& s : segments)
      if (n < s.first + s.cols) return s;
    throw shape_error(detail::concat("quantized_matrix: column ", n, " of ", cols));
  }
  /// Bytes of all blocks (what one pass over W reads, interleaved padding included).
  std::size_t bytes() const {
    std::size_t total = 0;
    for (const auto& s : segments) total += s.bytes.size();
    return total;
  }
  /// Column n of W dequantized -> y[0:K].
  void read_column(index_t n, float* y) const {
    const segment& s = segment_of(n);
    thread_local std::vector<unsigned char> blocks;
    blocks.resize(std::size_t(s.row_bytes));
    s.column_blocks(n - s.first, blocks.data());
    dequantize_row(s.type, blocks.data(), y, rows);
  }

  /// Appends `n_cols` columns of type `t` whose blocks are `data` (ggml rows of K weights, e.g.
  /// a GGUF tensor's bytes), merged into the last segment when it has the same type.
  void append_columns(quant_type t, index_t n_cols, const unsigned char* data) {
    const index_t row_bytes = row_size(t, rows);
    if (segments.empty() || segments.back().type != t)
      segments.push_back(segment{t, cols, 0, row_bytes, {}});
    segment& s = segments.back();
    // New columns fill the padding of the last group first; new groups start zeroed.
    const index_t groups = (s.cols + n_cols + interleave_columns - 1) / interleave_columns;
    s.bytes.resize(std::size_t(groups * s.group_bytes()), 0);
    const index_t block = s.block_bytes(), group_block = interleave_columns * block;
    for (index_t i = 0; i < n_cols; ++i) {
      const index_t j = s.cols + i;
      unsigned char* group = s.bytes.data() + (j / interleave_columns) * s.group_bytes();
      for (index_t b = 0; b < row_bytes / block; ++b)
        detail::interleave_block(t, data + i * row_bytes + b * block, group + b * group_block,
                                 j % interleave_columns);
    }
    s.cols += n_cols;
    cols += n_cols;
  }

  /// Bytes of one row of k weights of type t; shape_error unless k is whole blocks.
  static index_t row_size(quant_type t, index_t k) {
    const quant_type_traits& traits = traits_of(t);
    if (!fits_blocks(t, k)) {
      throw shape_error(detail::concat("quantized_matrix: rows of ", k, " weights are not whole ",
                                       traits.name, " blocks of ", traits.block_weights));
    }
    return k / traits.block_weights * traits.block_bytes;
  }
};

namespace detail {
/// Quantizes N columns given by column(n, float* k_values) into one segment of type t.
template <class Column>
quantized_matrix quantize_columns(index_t k, index_t n_cols, quant_type t, const Column& column) {
  quantized_matrix q;
  q.rows = k;
  const index_t row_bytes = quantized_matrix::row_size(t, k);
  std::vector<unsigned char> bytes(static_cast<std::size_t>(n_cols * row_bytes));
  constexpr index_t block = 64;
  parallel_for((n_cols + block - 1) / block, [&](index_t b) {
    std::vector<float> values(static_cast<std::size_t>(k));
    for (index_t n = b * block; n < std::min(n_cols, (b + 1) * block); ++n) {
      column(n, values.data());
      quantize_row(t, values.data(), bytes.data() + n * row_bytes, k);
    }
  });
  q.append_columns(t, n_cols, bytes.data());
  return q;
}
}  // namespace detail

/// W [K x N] (a linear layer's [in x out] weight) quantized column by column.
inline quantized_matrix quantize_matrix(matrix_cref<float> w, quant_type t) {
  return detail::quantize_columns(w.rows(), w.cols(), t, [&](index_t n, float* y) {
    for (index_t k = 0; k < w.rows(); ++k) y[k] = w(k, n);
  });
}

/// E^T for E [N x K] — an embedding used as the LM head (logits = x E^T): row n of E is column
/// n of E^T, so each row is quantized as it is.
inline quantized_matrix quantize_matrix_transposed(matrix_cref<float> e, quant_type t) {
  return detail::quantize_columns(e.cols(), e.rows(), t, [&](index_t n, float* y) {
    for (index_t k = 0; k < e.cols(); ++k) y[k] = e(n, k);
  });
}

/// All of W [K x N] dequantized (for tests and inspection).
inline matrix<float> dequantize(const quantized_matrix& q) {
  matrix<float> out(q.rows, q.cols);
  std::vector<float> column(static_cast<std::size_t>(q.rows));
  for (index_t n = 0; n < q.cols; ++n) {
    q.read_column(n, column.data());
    for (index_t k = 0; k < q.rows; ++k) out(k, n) = column[std::size_t(k)];
  }
  return out;
}

}  // namespace eigenformer
