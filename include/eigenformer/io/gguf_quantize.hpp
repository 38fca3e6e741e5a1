// eigenformer/io/gguf_quantize.hpp — a GGUF file of float weights (F32/F16/BF16) rewritten with
// quantized weights, as llama.cpp's llama-quantize does with its default settings (no importance
// matrix), so the result is the file llama-quantize writes, tensor for tensor:
//  - quantized: 2-D tensors named *weight, except norms and GPT-2's position_embd (kept as
//    they are, like every 1-D tensor);
//  - the output head (or the token embedding when it is also the head): q6_k, or q8_0 where its
//    rows are not whole super-blocks or the file type is q8_0;
//  - q4_k_m: q4_k, but q6_k for attn_v and ffn_down in the layers use_more_bits picks and q5_k
//    for a fused attn_qkv (GPT-2);
//  - rows that are not whole blocks: q4_k -> q5_0, q5_k -> q5_1, q6_k -> q8_0, then f16; for
//    the other types an error, as llama-quantize gives;
//  - the metadata is copied, with general.file_type and general.quantization_version set.
// Blocks come from quant/ (ggml's reference rounding, equal to llama-quantize's bytes).
#pragma once

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/parallel.hpp"
#include "eigenformer/io/gguf.hpp"
#include "eigenformer/io/gguf_writer.hpp"
#include "eigenformer/quant/quantized_matrix.hpp"

namespace eigenformer {

/// The file types `eigenformer quantize --dtype` writes, numbered as llama.cpp's llama_ftype.
enum class gguf_file_type : std::uint32_t { q4_0 = 2, q8_0 = 7, q4_k_m = 15 };

inline gguf_file_type parse_gguf_file_type(const std::string& name) {
  if (name == "q8_0") return gguf_file_type::q8_0;
  if (name == "q4_0") return gguf_file_type::q4_0;
  if (name == "q4_k_m") return gguf_file_type::q4_k_m;
  throw value_error("unknown file type '" + name + "' (one of q8_0, q4_0, q4_k_m)");
}

namespace detail {
inline bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}
inline bool contains(const std::string& s, const char* part) {
  return s.find(part) != std::string::npos;
}
/// The layer of "blk.N.…", or -1.
inline index_t gguf_layer_of(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  index_t n = 0;
  std::size_t i = 4;
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i) n = 10 * n + (name[i] - '0');
  return i > 4 && i < name.size() && name[i] == '.' ? n : -1;
}
}  // namespace detail

/// The type llama-quantize gives tensor `t` of a file of `n_layer` layers (`has_output`: the
/// file has a separate output.weight); `f32` when it stays as it is.
inline ggml_type llama_quantize_type(const gguf_tensor_info& t, gguf_file_type file_type,
                                     index_t n_layer, bool has_output) {
  using detail::contains;
  const std::string& name = t.name;
  if (!detail::ends_with(name, "weight") || t.ne.size() < 2 || contains(name, "_norm.weight") ||
      name == "position_embd.weight" || name == "token_types.weight")
    return ggml_type::f32;
  const quant_type base = file_type == gguf_file_type::q8_0   ? quant_type::q8_0
                          : file_type == gguf_file_type::q4_0 ? quant_type::q4_0
                                                              : quant_type::q4_k;
  quant_type q = base;
  const index_t row = index_t(t.ne[0]);
  if (name == "output.weight" || (!has_output && name == "token_embd.weight")) {
    q = row % 256 != 0 || base == quant_type::q8_0 ? quant_type::q8_0 : quant_type::q6_k;
  } else if (file_type == gguf_file_type::q4_k_m) {
    const index_t i = detail::gguf_layer_of(name);
    const bool more_bits = i >= 0 && llama_uses_more_bits(i, n_layer);
    if (contains(name, "attn_v.weight") && more_bits) q = quant_type::q6_k;
    if (contains(name, "ffn_down") && more_bits) q = quant_type::q6_k;
    if (contains(name, "attn_qkv.weight")) q = quant_type::q5_k;
  }
  if (!fits_blocks(q, row)) {
    const std::string what =
        "quantize: " + name + " has rows of " + std::to_string(row) + " weights, not whole ";
    if (q != quant_type::q4_k && q != quant_type::q5_k &&
        q != quant_type::q6_k)  // llama-quantize refuses these too
      throw value_error(what + traits_of(q).name + " blocks");
    if (!fall_back_to_fit(q, row)) return ggml_type::f16;
  }
  return static_cast<ggml_type>(q);
}

/// Writes `in` with its float weights quantized as llama-quantize's `file_type` to `out_path`.
inline void quantize_gguf(const gguf_file& in, const std::string& out_path,
                          gguf_file_type file_type) {
  const index_t n_layer = [&] {
    const std::string arch =
        in.has("general.architecture") ? in.string("general.architecture") : "";
    return in.has(arch + ".block_count") ? index_t(in.integer(arch + ".block_count")) : 0;
  }();
  const bool has_output = in.find_tensor("output.weight") != nullptr;
  std::vector<gguf_tensor_data> tensors;
  for (const auto& t : in.tensors()) {
    gguf_tensor_data out{t.name, t.ne, t.type, {}};
    const ggml_type wanted = llama_quantize_type(t, file_type, n_layer, has_output);
    const bool is_float =
        t.type == ggml_type::f32 || t.type == ggml_type::f16 || t.type == ggml_type::bf16;
    if (wanted != ggml_type::f32 && !is_float) {
      throw value_error(in.path() + ": " + t.name + " is already " +
                        ggml_type_name(std::uint32_t(t.type)) +
                        " (quantize reads F32, F16 and BF16 files)");
    }
    const unsigned char* data = in.tensor_data(t);
    if (wanted == ggml_type::f32 || (wanted == ggml_type::f16 && t.type == ggml_type::f16)) {
      out.bytes.assign(data, data + t.bytes);  // kept as it is
    } else {
      if (t.ne.size() > 2) throw value_error(in.path() + ": " + t.name + " has more than 2 dims");
      const matrix<float> rows = in.read_float<float>(t.name);  // [rows x row length]
      out.type = wanted;
      if (wanted == ggml_type::f16) {
        out.bytes.resize(std::size_t(rows.size()) * 2);
        for (index_t i = 0; i < rows.size(); ++i) {
          const std::uint16_t bits = detail::fp16_bits(rows.data()[i]);
          std::memcpy(out.bytes.data() + 2 * i, &bits, 2);
        }
      } else {
        const quant_type q = static_cast<quant_type>(wanted);
        const quantized_matrix m = quantize_matrix_transposed(rows, q);  // one row per output
        out.bytes = m.segments.front().ggml_bytes();
      }
    }
    tensors.push_back(std::move(out));
  }
  std::vector<std::pair<std::string, gguf_value>> metadata;
  for (const auto& [key, v] : in.metadata()) {
    if (key == "general.file_type" || key == "general.quantization_version") continue;
    metadata.emplace_back(key, v);
  }
  gguf_value u32;
  u32.type = gguf_value::kind::u32;
  u32.value = std::uint64_t(2);  // ggml's GGML_QNT_VERSION
  metadata.emplace_back("general.quantization_version", u32);
  u32.value = std::uint64_t(file_type);
  metadata.emplace_back("general.file_type", u32);
  write_gguf(out_path, metadata, tensors);
}

}  // namespace eigenformer
