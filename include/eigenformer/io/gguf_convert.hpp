// eigenformer/io/gguf_convert.hpp — a model (config and float weights, e.g. a Hugging Face
// checkpoint) as the F32 GGUF file llama.cpp's convert_hf_to_gguf.py writes for it, so
// `eigenformer quantize --model DIR` needs no Python: the inverse of io/gguf_model.hpp.
// Eigen only (the tokenizer's metadata comes from tokenizer/gguf_tokenizer.hpp).
//
//  - metadata: general.architecture (llama for Llama/Mistral/SmolLM2/TinyLlama, qwen2, qwen3,
//    gpt2) and the "{arch}.*" hyperparameters read_gguf_config reads back;
//  - tensors [out x in] (ne = {in, out}), q and k split from the fused qkv and, in `llama` files,
//    their rows interleaved per head for llama.cpp's RoPE (file row h d + 2i + s holds row
//    h d + s d/2 + i); gate and up split; GPT-2's output.weight written as a copy of the tied
//    embedding, as the converter does; Llama 3 scaling as the rope_freqs tensor.
#pragma once

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/io/gguf.hpp"
#include "eigenformer/io/gguf_model.hpp"
#include "eigenformer/io/gguf_writer.hpp"
#include "eigenformer/layers/rope.hpp"
#include "eigenformer/model/config.hpp"
#include "eigenformer/model/weights.hpp"

namespace eigenformer {

/// What a GGUF file holds before it is written: metadata in order, tensors in order.
struct gguf_contents {
  std::vector<std::pair<std::string, gguf_value>> metadata;
  std::vector<gguf_tensor_data> tensors;

  void set(const std::string& key, gguf_value v) {
    for (auto& [k, old] : metadata) {
      if (k == key) {
        old = std::move(v);
        return;
      }
    }
    metadata.emplace_back(key, std::move(v));
  }
};

/// The GGUF architecture of a config's model_type.
inline std::string gguf_architecture_of(const model_config& c) {
  if (c.model_type == "gpt2" || c.model_type == "qwen2" || c.model_type == "qwen3")
    return c.model_type;
  if (c.model_type == "llama" || c.model_type == "mistral") return "llama";
  throw value_error("gguf: no GGUF architecture for model type '" + c.model_type + "'");
}

namespace detail {
/// An F32 tensor of `rows` x `cols` values, each row `row(r)` (cols floats).
template <class Row>
gguf_tensor_data f32_tensor(const std::string& name, index_t rows, index_t cols, bool vector,
                            Row&& row) {
  gguf_tensor_data t;
  t.name = name;
  t.type = ggml_type::f32;
  t.ne = vector ? std::vector<std::uint64_t>{std::uint64_t(cols)}
                : std::vector<std::uint64_t>{std::uint64_t(cols), std::uint64_t(rows)};
  t.bytes.resize(std::size_t(rows * cols) * sizeof(float));
  auto* out = reinterpret_cast<float*>(t.bytes.data());
  for (index_t r = 0; r < rows; ++r) row(r, out + r * cols);
  return t;
}
}  // namespace detail

/// The F32 GGUF contents of `config` and `w` (float weights: not packed or quantized), with
/// general.file_type 0 and no tokenizer (add gguf_tokenizer_metadata's).
inline gguf_contents gguf_from_model(const model_config& config, const model_weights& w,
                                     const std::string& name = "") {
  if (w.is_compressed()) throw value_error("gguf: the weights are packed or quantized");
  const std::string arch = gguf_architecture_of(config);
  const bool gpt2 = arch == "gpt2", permuted = arch == "llama";
  gguf_contents g;
  const auto key = [&](const char* k, gguf_value v) { g.set(arch + "." + k, std::move(v)); };
  g.set("general.architecture", gguf_string(arch));
  if (!name.empty()) g.set("general.name", gguf_string(name));
  key("context_length", gguf_u32(std::uint64_t(config.n_ctx)));
  key("embedding_length", gguf_u32(std::uint64_t(config.n_embd)));
  key("feed_forward_length", gguf_u32(std::uint64_t(config.mlp_hidden())));
  key("block_count", gguf_u32(std::uint64_t(config.n_layer)));
  key("attention.head_count", gguf_u32(std::uint64_t(config.n_head)));
  if (arch == "llama") key("vocab_size", gguf_u32(std::uint64_t(config.vocab_size)));
  if (gpt2) {
    key("attention.layer_norm_epsilon", gguf_f32(config.layer_norm_epsilon));
  } else {
    key("attention.head_count_kv", gguf_u32(std::uint64_t(config.kv_heads())));
    key("rope.freq_base", gguf_f32(config.rope.theta));
    key("attention.layer_norm_rms_epsilon", gguf_f32(config.layer_norm_epsilon));
    const index_t d = config.head_dim();
    if (d * config.n_head != config.n_embd) {
      key("attention.key_length", gguf_u32(std::uint64_t(d)));
      key("attention.value_length", gguf_u32(std::uint64_t(d)));
    }
    key("rope.dimension_count", gguf_u32(std::uint64_t(d)));
    if (config.rope.scaling == rope_scaling_kind::linear) {
      key("rope.scaling.type", gguf_string("linear"));
      key("rope.scaling.factor", gguf_f32(config.rope.factor));
    }
    if (config.sliding_window > 0)
      key("attention.sliding_window", gguf_u32(std::uint64_t(config.sliding_window)));
  }
  g.set("general.file_type", gguf_u32(0));  // llama_ftype ALL_F32

  auto& t = g.tensors;
  // A matrix's rows as they are ([rows x cols]).
  const auto rows_of = [&](const std::string& tensor, const matrix<float>& m) {
    t.push_back(detail::f32_tensor(tensor, m.rows(), m.cols(), false, [&](index_t r, float* out) {
      for (index_t c = 0; c < m.cols(); ++c) out[c] = m(r, c);
    }));
  };
  const auto vector_of = [&](const std::string& tensor, const row_vector<float>& v) {
    t.push_back(detail::f32_tensor(tensor, 1, v.size(), true, [&](index_t, float* out) {
      for (index_t c = 0; c < v.size(); ++c) out[c] = v(c);
    }));
  };
  // A linear layer's columns [first, first + n) of W [in x out] as [n x in] rows, permuted for
  // llama.cpp's RoPE when `rope_heads` > 0 (file row rope_file_row(r) holds row r).
  const auto columns_of = [&](const std::string& tensor, const matrix<float>& W, index_t first,
                              index_t n, index_t rope_heads = 0) {
    std::vector<index_t> source(static_cast<std::size_t>(n));
    for (index_t r = 0; r < n; ++r) {
      const index_t file =
          rope_heads > 0 ? detail::rope_file_row(r, n, rope_heads, tensor, "gguf") : r;
      source[std::size_t(file)] = r;
    }
    t.push_back(detail::f32_tensor(tensor, n, W.rows(), false, [&](index_t r, float* out) {
      const index_t column = first + source[std::size_t(r)];
      for (index_t i = 0; i < W.rows(); ++i) out[i] = W(i, column);
    }));
  };
  const auto bias_of = [&](const std::string& tensor, const row_vector<float>& b, index_t first,
                           index_t n, index_t rope_heads = 0) {
    t.push_back(detail::f32_tensor(tensor, 1, n, true, [&](index_t, float* out) {
      for (index_t r = 0; r < n; ++r) {
        const index_t file =
            rope_heads > 0 ? detail::rope_file_row(r, n, rope_heads, tensor, "gguf") : r;
        out[file] = b(first + r);
      }
    }));
  };

  rows_of("token_embd.weight", w.wte);
  if (gpt2) {
    rows_of("position_embd.weight", w.wpe);
    rows_of("output.weight", w.output_embedding());  // the converter writes the tied copy
  } else if (!w.tied_lm_head()) {
    rows_of("output.weight", w.lm_head);
  }
  if (!config.rope.frequency_divisors.empty() || config.rope.scaling == rope_scaling_kind::llama3) {
    // Llama 3 scaling as llama.cpp carries it: plane j's frequency is divided by rope_freqs[j].
    rope_config plain;
    plain.theta = config.rope.theta;
    const auto base = rope_inverse_frequencies(plain, config.head_dim());
    const auto scaled = rope_inverse_frequencies(config.rope, config.head_dim());
    row_vector<float> divisors(index_t(base.size()));
    for (std::size_t j = 0; j < base.size(); ++j) divisors(index_t(j)) = float(base[j] / scaled[j]);
    vector_of("rope_freqs.weight", divisors);
  }
  const index_t Q = config.q_width(), KV = config.kv_width(), I = config.mlp_hidden();
  const index_t C = config.n_embd;
  const index_t q_heads = permuted ? config.n_head : 0, k_heads = permuted ? config.kv_heads() : 0;
  for (std::size_t l = 0; l < w.blocks.size(); ++l) {
    const auto& b = w.blocks[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    vector_of(p + "attn_norm.weight", b.ln_1.gain);
    if (gpt2) {
      vector_of(p + "attn_norm.bias", b.ln_1.bias);
      columns_of(p + "attn_qkv.weight", b.attn.qkv.weight, 0, 3 * C);
      vector_of(p + "attn_qkv.bias", b.attn.qkv.bias);
      columns_of(p + "attn_output.weight", b.attn.proj.weight, 0, C);
      vector_of(p + "attn_output.bias", b.attn.proj.bias);
      vector_of(p + "ffn_norm.weight", b.ln_2.gain);
      vector_of(p + "ffn_norm.bias", b.ln_2.bias);
      columns_of(p + "ffn_up.weight", b.mlp.fc.weight, 0, I);
      vector_of(p + "ffn_up.bias", b.mlp.fc.bias);
      columns_of(p + "ffn_down.weight", b.mlp.proj.weight, 0, C);
      vector_of(p + "ffn_down.bias", b.mlp.proj.bias);
      continue;
    }
    const auto& qkv = b.attn.qkv;
    columns_of(p + "attn_q.weight", qkv.weight, 0, Q, q_heads);
    columns_of(p + "attn_k.weight", qkv.weight, Q, KV, k_heads);
    columns_of(p + "attn_v.weight", qkv.weight, Q + KV, KV);
    if (config.qkv_bias) {
      bias_of(p + "attn_q.bias", qkv.bias, 0, Q, q_heads);
      bias_of(p + "attn_k.bias", qkv.bias, Q, KV, k_heads);
      bias_of(p + "attn_v.bias", qkv.bias, Q + KV, KV);
    }
    if (config.qk_norm) {
      vector_of(p + "attn_q_norm.weight", b.attn.q_norm);
      vector_of(p + "attn_k_norm.weight", b.attn.k_norm);
    }
    columns_of(p + "attn_output.weight", b.attn.proj.weight, 0, C);
    if (config.out_bias) vector_of(p + "attn_output.bias", b.attn.proj.bias);
    vector_of(p + "ffn_norm.weight", b.ln_2.gain);
    columns_of(p + "ffn_gate.weight", b.mlp.fc.weight, 0, I);
    columns_of(p + "ffn_up.weight", b.mlp.fc.weight, I, I);
    columns_of(p + "ffn_down.weight", b.mlp.proj.weight, 0, C);
    if (config.mlp_bias) {
      bias_of(p + "ffn_gate.bias", b.mlp.fc.bias, 0, I);
      bias_of(p + "ffn_up.bias", b.mlp.fc.bias, I, I);
      vector_of(p + "ffn_down.bias", b.mlp.proj.bias);
    }
  }
  vector_of("output_norm.weight", w.ln_f.gain);
  if (gpt2) vector_of("output_norm.bias", w.ln_f.bias);
  return g;
}

}  // namespace eigenformer
