// eigenformer/io/gguf_model.hpp — a decoder from a GGUF file, the format llama.cpp runs: the
// architectures gpt2, llama (Llama 2/3.x, Mistral, SmolLM2, TinyLlama, ...), qwen2 (Qwen2.5) and
// qwen3. Eigen only.
//
// The config comes from the "{arch}.*" metadata (embedding_length, block_count,
// feed_forward_length, attention.head_count[_kv], attention.key_length, context_length, the norm
// epsilon, rope.freq_base, rope.scaling.*), which variant each layer is from the tensors present
// (biases, q/k norms), and Llama 3's rope scaling from the rope_freqs tensor. Tensor names:
//   token_embd.weight [V x C]   output_norm.weight (.bias)   output.weight [V x C] (absent: tied)
//   position_embd.weight [n_ctx x C] (gpt2)   rope_freqs.weight [d/2] (Llama 3 scaling)
//   blk.{i}.attn_norm  .attn_q  .attn_k  .attn_v  .attn_output  .attn_q_norm  .attn_k_norm
//   blk.{i}.attn_qkv (gpt2)  .ffn_norm  .ffn_gate  .ffn_up  .ffn_down     (+ .bias where present)
// Linear weights are stored [out x in] (ne = {in, out}); each is dequantized or converted, then
// transposed once into the library's [in x out] layout, in the fused q|k|v and gate|up matrices.
// In a float model, quantized layers and LM heads instead keep the file's blocks: one GGUF row
// per output column is exactly quant/quantized_matrix.hpp's layout (parts of a fused matrix may
// have different types, as in Q4_K_M files).
//
// llama.cpp's converter permutes the rows of q and k (weights and biases) of `llama` files so
// that its RoPE can rotate adjacent pairs (x[2i], x[2i+1]); Hugging Face's rotate_half pairs
// x[i] and x[i + d/2], and so does this library. File row h d + 2i + s holds HF row
// h d + s d/2 + i; the loader puts every row back, so one RoPE serves every file and the logits
// equal the HF checkpoint's. qwen2/qwen3 files are stored unpermuted (NeoX rotation = rotate_half).
#pragma once

#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/io/gguf.hpp"
#include "eigenformer/model/config.hpp"
#include "eigenformer/model/decoder.hpp"
#include "eigenformer/model/weights.hpp"
#include "eigenformer/ops/transpose.hpp"

namespace eigenformer {

/// Whether general.architecture `arch` is one this library runs.
inline bool is_supported_gguf_architecture(const std::string& arch) {
  return arch == "gpt2" || arch == "llama" || arch == "qwen2" || arch == "qwen3";
}

/// The model config a GGUF file describes; format_error naming the key for anything missing,
/// out of range or not computed here (partial rotary, yarn scaling, per-layer head counts, ...).
inline model_config read_gguf_config(const gguf_file& f) {
  const std::string arch = f.string("general.architecture");
  if (!is_supported_gguf_architecture(arch)) {
    throw format_error(f.path() + ": general.architecture '" + arch +
                       "' is not supported (gpt2, llama, qwen2, qwen3 are)");
  }
  const auto key = [&](const char* name) { return arch + "." + name; };
  const auto optional_integer = [&](const char* name, std::int64_t fallback, std::int64_t lo,
                                    std::int64_t hi) {
    return f.has(key(name)) ? f.integer(key(name), lo, hi) : fallback;
  };
  const auto token_embd = f.tensor("token_embd.weight");
  if (token_embd.ne.size() != 2) {
    throw format_error(f.path() + ": token_embd.weight is not a matrix");
  }
  const index_t C = f.integer(key("embedding_length"), 1, 65536);
  const index_t L = f.integer(key("block_count"), 1, 1024);
  const index_t heads = f.integer(key("attention.head_count"), 1, 1024);
  const index_t V = index_t(token_embd.ne[1]);
  const index_t context = f.integer(key("context_length"), 1, index_t(1) << 24);
  const index_t hidden = f.integer(key("feed_forward_length"), 1, index_t(1) << 20);

  model_config c;
  if (arch == "gpt2") {
    c = model_config::gpt2(L, heads, C, V, context, hidden);
    c.layer_norm_epsilon = f.has(key("attention.layer_norm_epsilon"))
                               ? f.number(key("attention.layer_norm_epsilon"))
                               : 1e-5;
  } else {
    c = model_config::llama();
    c.model_type = arch;
    c.n_layer = L, c.n_head = heads, c.n_embd = C, c.vocab_size = V, c.n_ctx = context;
    c.n_inner = hidden;
    c.n_kv_head = optional_integer("attention.head_count_kv", heads, 1, heads);
    c.layer_norm_epsilon = f.number(key("attention.layer_norm_rms_epsilon"));
    const index_t key_length = optional_integer("attention.key_length", C / heads, 1, 4096);
    if (optional_integer("attention.value_length", key_length, 1, 4096) != key_length) {
      throw format_error(f.path() + ": " + key("attention.value_length") +
                         " differs from key_length (not supported)");
    }
    if (key_length * heads != C) c.head_size = key_length;
    if (optional_integer("rope.dimension_count", key_length, 1, 4096) != key_length) {
      throw format_error(f.path() + ": " + key("rope.dimension_count") +
                         " is not the head size (partial rotary embeddings are not supported)");
    }
    c.rope.theta = f.has(key("rope.freq_base")) ? f.number(key("rope.freq_base")) : 10000.0;
    const std::string scaling =
        f.has(key("rope.scaling.type")) ? f.string(key("rope.scaling.type")) : "none";
    if (scaling == "linear") {
      c.rope.scaling = rope_scaling_kind::linear;
      c.rope.factor = f.number(key("rope.scaling.factor"));
    } else if (scaling != "none") {
      throw format_error(f.path() + ": " + key("rope.scaling.type") + " '" + scaling +
                         "' is not supported (none and linear are; Llama 3 scaling comes as "
                         "rope_freqs)");
    } else if (f.has(key("rope.scale_linear"))) {  // the key older converters wrote
      c.rope.scaling = rope_scaling_kind::linear;
      c.rope.factor = f.number(key("rope.scale_linear"));
    }
    if (f.find_tensor("rope_freqs.weight")) {
      const matrix<double> divisors = f.read_float<double>("rope_freqs.weight");
      c.rope.frequency_divisors.assign(divisors.data(), divisors.data() + divisors.size());
    }
    c.sliding_window = optional_integer("attention.sliding_window", 0, 0, index_t(1) << 24);
    c.qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
    c.out_bias = f.find_tensor("blk.0.attn_output.bias") != nullptr;
    c.mlp_bias = f.find_tensor("blk.0.ffn_up.bias") != nullptr;
    c.qk_norm = f.find_tensor("blk.0.attn_q_norm.weight") != nullptr;
  }
  if (f.has("tokenizer.ggml.bos_token_id")) {
    c.bos_token_id = token_id(f.integer("tokenizer.ggml.bos_token_id", 0, V - 1));
  }
  // Generation ends at any end-of-generation token llama.cpp knows (eos, end of turn, end of
  // message), as llama.cpp's samplers stop on all of them.
  for (const char* eog : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                          "tokenizer.ggml.eom_token_id"}) {
    if (!f.has(eog)) continue;
    const auto id = token_id(f.integer(eog, 0, V - 1));
    if (std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), id) == c.eos_token_ids.end())
      c.eos_token_ids.push_back(id);
  }
  try {
    c.validate();
  } catch (const error& e) {
    throw format_error(f.path() + ": " + e.what());
  }
  return c;
}

namespace detail {
/// llama.cpp's converter interleaves the two rotary halves of each head of q and k: Hugging Face
/// row h d + s d/2 + i (head h of size d, half s, index i) is stored as row h d + 2i + s.
/// The file row that holds Hugging Face row `hf_row`; format_error unless n rows are whole heads
/// of an even size.
inline index_t rope_file_row(index_t hf_row, index_t n, index_t heads, const std::string& name,
                             const std::string& path) {
  if (heads <= 0 || n % heads != 0 || (n / heads) % 2 != 0) {
    throw format_error(
        concat(path, ": ", name, " has ", n, " rows, not ", heads, " heads of an even size"));
  }
  const index_t d = n / heads, half = d / 2;
  const index_t h = hf_row / d, s = (hf_row % d) / half, i = hf_row % half;
  return h * d + 2 * i + s;
}

/// Rows of `m` from a llama.cpp-permuted q or k projection ([heads d x in], or a [1 x heads d]
/// bias as its elements) back in Hugging Face's order (see rope_file_row).
template <class Scalar>
matrix<Scalar> unpermute_rope_rows(const matrix<Scalar>& m, index_t heads, const std::string& name,
                                   const std::string& path) {
  const bool vector = m.rows() == 1;
  const index_t n = vector ? m.cols() : m.rows();
  matrix<Scalar> out(m.rows(), m.cols());
  for (index_t hf = 0; hf < n; ++hf) {
    const index_t file = rope_file_row(hf, n, heads, name, path);
    if (vector) {
      out(0, hf) = m(0, file);
    } else {
      out.row(hf) = m.row(file);
    }
  }
  return out;
}

}  // namespace detail

/// What becomes of a GGUF file's quantized tensors when its weights are read.
enum class gguf_quantized {
  keep,        // float models: linear layers and the LM head stay in their blocks (as stored)
  dequantize,  // to Scalar, the exact values ggml computes (always so for double)
};

/// The weights of `config` from GGUF file `f`, every tensor's presence and shape checked.
/// Quantized tensors are dequantized, or (float models, gguf_quantized::keep) a linear layer
/// whose parts are all quantized keeps their blocks as they are in the file (quant_matmul
/// multiplies them), and so does a quantized LM head — the token embedding of a tied model is
/// then read from it. Norms, biases and float tensors are converted to Scalar.
template <class Scalar>
basic_model_weights<Scalar> read_gguf_weights(const model_config& config, const gguf_file& f,
                                              gguf_quantized quantized = gguf_quantized::keep) {
  const bool keep = std::is_same_v<Scalar, float> && quantized == gguf_quantized::keep;
  basic_model_weights<Scalar> w;
  w.blocks.resize(static_cast<std::size_t>(config.n_layer));
  const bool tied = f.find_tensor("output.weight") == nullptr;
  if (!tied) w.lm_head.resize(config.vocab_size, config.n_embd);
  for_each_parameter(config, w,
                     [](const std::string&, auto& tensor, const std::vector<std::int64_t>& shape) {
                       tensor.resize(shape.size() == 2 ? shape[0] : 1, shape.back());
                     });
  const bool permuted = config.model_type == "llama";
  // Reads `name`, which must be [rows x cols] ([1 x cols] for a vector).
  const auto read = [&](const std::string& name, index_t rows, index_t cols) {
    const gguf_tensor_info& t = f.tensor(name);
    const bool matches =
        rows == 1 ? (t.ne.size() == 1 && index_t(t.ne[0]) == cols)
                  : (t.ne.size() == 2 && index_t(t.ne[0]) == cols && index_t(t.ne[1]) == rows);
    if (!matches) {
      std::string ne;
      for (const auto d : t.ne) ne += (ne.empty() ? "" : ", ") + std::to_string(d);
      throw format_error(detail::concat(f.path(), ": tensor '", name, "' has ne = {", ne,
                                        "}, expected {", cols, rows == 1 ? "" : ", ",
                                        rows == 1 ? std::string() : std::to_string(rows), "}"));
    }
    return f.read_float<Scalar>(name);
  };
  const auto vector = [&](const std::string& name, auto&& dest) {
    dest = read(name, 1, dest.size());
  };
  // dest [in x out] = the file's [out x in] tensor, transposed (and un-permuted: `rope_heads`).
  const auto linear = [&](const std::string& name, auto&& dest, index_t rope_heads = 0) {
    matrix<Scalar> stored = read(name, dest.cols(), dest.rows());
    if (rope_heads > 0) stored = detail::unpermute_rope_rows(stored, rope_heads, name, f.path());
    assign_transposed<Scalar>(stored, dest);
  };
  // A linear layer from its parts (GGUF tensors [out_i x in], in the order of its output
  // columns; `rope_heads` > 0 for a permuted q or k), kept in their quantized blocks when every
  // part is quantized and `keep` asks for it. Returns whether it was.
  struct part {
    std::string name;
    index_t rope_heads = 0;
  };
  const auto keep_quantized = [&](const std::vector<part>& parts, linear_weights<Scalar>& dest) {
    if constexpr (std::is_same_v<Scalar, float>) {
      if (!keep) return false;
      quant_type type{};
      for (const auto& p : parts) {
        if (!quant_type_of(f.tensor(p.name).type, type)) return false;
      }
      quantized_matrix q;
      q.rows = dest.in_features();
      std::vector<unsigned char> rows;
      for (const auto& p : parts) {
        const gguf_tensor_info& t = f.tensor(p.name);
        quant_type_of(t.type, type);
        if (t.ne.size() != 2 || index_t(t.ne[0]) != q.rows) {
          throw format_error(detail::concat(f.path(), ": tensor '", p.name, "' has ", t.ne.size(),
                                            " dims and rows of ", t.ne[0], " weights, expected ",
                                            q.rows));
        }
        const index_t n = index_t(t.ne[1]), row_bytes = quantized_matrix::row_size(type, q.rows);
        const unsigned char* data = f.tensor_data(t);
        if (p.rope_heads > 0) {  // rows back in Hugging Face's order, moved whole
          rows.resize(static_cast<std::size_t>(n * row_bytes));
          for (index_t r = 0; r < n; ++r) {
            const index_t from = detail::rope_file_row(r, n, p.rope_heads, p.name, f.path());
            std::memcpy(rows.data() + r * row_bytes, data + from * row_bytes,
                        static_cast<std::size_t>(row_bytes));
          }
          data = rows.data();
        }
        q.append_columns(type, n, data);
      }
      if (q.cols != dest.out_features()) {
        throw format_error(detail::concat(f.path(), ": ", parts.front().name, " ... have ", q.cols,
                                          " rows in all, expected ", dest.out_features()));
      }
      dest.quantized = std::move(q);
      dest.weight.resize(0, 0);
      return true;
    } else {
      (void)parts;
      (void)dest;
      return false;
    }
  };
  const auto bias = [&](const std::string& name, auto&& dest, index_t rope_heads = 0) {
    matrix<Scalar> stored = read(name, 1, dest.size());
    if (rope_heads > 0) stored = detail::unpermute_rope_rows(stored, rope_heads, name, f.path());
    dest = stored;
  };

  w.wte = read("token_embd.weight", config.vocab_size, config.n_embd);
  if (config.positions == position_kind::learned) {
    w.wpe = read("position_embd.weight", config.n_ctx, config.n_embd);
  }
  const index_t Q = config.q_width(), KV = config.kv_width(), I = config.mlp_hidden();
  const index_t q_heads = permuted ? config.n_head : 0, k_heads = permuted ? config.kv_heads() : 0;
  for (std::size_t l = 0; l < w.blocks.size(); ++l) {
    auto& b = w.blocks[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    vector(p + "attn_norm.weight", b.ln_1.gain);
    vector(p + "ffn_norm.weight", b.ln_2.gain);
    if (!keep_quantized({{p + "attn_output.weight"}}, b.attn.proj))
      linear(p + "attn_output.weight", b.attn.proj.weight);
    if (!keep_quantized({{p + "ffn_down.weight"}}, b.mlp.proj))
      linear(p + "ffn_down.weight", b.mlp.proj.weight);
    if (config.positions == position_kind::learned) {  // GPT-2
      vector(p + "attn_norm.bias", b.ln_1.bias);
      vector(p + "ffn_norm.bias", b.ln_2.bias);
      if (!keep_quantized({{p + "attn_qkv.weight"}}, b.attn.qkv))
        linear(p + "attn_qkv.weight", b.attn.qkv.weight);
      vector(p + "attn_qkv.bias", b.attn.qkv.bias);
      vector(p + "attn_output.bias", b.attn.proj.bias);
      if (!keep_quantized({{p + "ffn_up.weight"}}, b.mlp.fc))
        linear(p + "ffn_up.weight", b.mlp.fc.weight);
      vector(p + "ffn_up.bias", b.mlp.fc.bias);
      vector(p + "ffn_down.bias", b.mlp.proj.bias);
      continue;
    }
    auto& qkv = b.attn.qkv;
    if (!keep_quantized(
            {{p + "attn_q.weight", q_heads}, {p + "attn_k.weight", k_heads}, {p + "attn_v.weight"}},
            qkv)) {
      linear(p + "attn_q.weight", qkv.weight.middleCols(0, Q), q_heads);
      linear(p + "attn_k.weight", qkv.weight.middleCols(Q, KV), k_heads);
      linear(p + "attn_v.weight", qkv.weight.middleCols(Q + KV, KV));
    }
    if (config.qkv_bias) {
      bias(p + "attn_q.bias", qkv.bias.segment(0, Q), q_heads);
      bias(p + "attn_k.bias", qkv.bias.segment(Q, KV), k_heads);
      bias(p + "attn_v.bias", qkv.bias.segment(Q + KV, KV));
    }
    if (config.qk_norm) {
      vector(p + "attn_q_norm.weight", b.attn.q_norm);
      vector(p + "attn_k_norm.weight", b.attn.k_norm);
    }
    if (config.out_bias) vector(p + "attn_output.bias", b.attn.proj.bias);
    if (!keep_quantized({{p + "ffn_gate.weight"}, {p + "ffn_up.weight"}}, b.mlp.fc)) {
      linear(p + "ffn_gate.weight", b.mlp.fc.weight.middleCols(0, I));
      linear(p + "ffn_up.weight", b.mlp.fc.weight.middleCols(I, I));
    }
    if (config.mlp_bias) {
      bias(p + "ffn_gate.bias", b.mlp.fc.bias.segment(0, I));
      bias(p + "ffn_up.bias", b.mlp.fc.bias.segment(I, I));
      vector(p + "ffn_down.bias", b.mlp.proj.bias);
    }
  }
  vector("output_norm.weight", w.ln_f.gain);
  if (config.norm == norm_kind::layer_norm) vector("output_norm.bias", w.ln_f.bias);
  if (!tied) w.lm_head = read("output.weight", config.vocab_size, config.n_embd);
  if constexpr (std::is_same_v<Scalar, float>) {
    // The LM head E^T [C x V] is E's rows as they are: a quantized one stays in its blocks.
    const std::string head = tied ? "token_embd.weight" : "output.weight";
    quant_type type{};
    if (keep && quant_type_of(f.tensor(head).type, type)) {
      w.output_quantized.rows = config.n_embd;
      w.output_quantized.append_columns(type, config.vocab_size, f.tensor_data(f.tensor(head)));
      (tied ? w.wte : w.lm_head).resize(0, 0);
    }
  }
  return w;
}

/// Loads a GGUF model file (config and weights; the tokenizer is tokenizer/gguf_vocab.hpp's).
/// Quantized tensors stay quantized in a float model unless `quantized` says otherwise.
template <class Scalar>
basic_model<Scalar> load_gguf_model(const std::string& path,
                                    gguf_quantized quantized = gguf_quantized::keep) {
  const gguf_file f(path);
  basic_model<Scalar> m;
  m.config = read_gguf_config(f);
  m.weights = read_gguf_weights<Scalar>(m.config, f, quantized);
  return m;
}

}  // namespace eigenformer
