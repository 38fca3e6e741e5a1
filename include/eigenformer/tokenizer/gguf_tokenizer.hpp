// eigenformer/tokenizer/gguf_tokenizer.hpp — the tokenizer a GGUF file carries in its
// tokenizer.ggml.* metadata, as the equivalent Hugging Face tokenizer (hf_tokenizer.hpp), so a
// GGUF file alone is enough for `generate --prompt`. Requires what hf_tokenizer.hpp requires
// (nlohmann-json, PCRE2, utf8proc).
//
// Read: tokenizer.ggml.model ("gpt2": byte-level BPE; SentencePiece "llama" vocabularies are not
// read yet), .tokens (string per id), .token_type (1 normal, 3 control, 4 user-defined, 6 byte,
// ...), .merges ("a b", by rank), .pre (which pre-tokenizer llama.cpp applies), .bos_token_id and
// .add_bos_token. Control tokens become special added tokens and user-defined ones non-special
// added tokens, as llama.cpp's converter made them from tokenizer.json. The .pre names map onto
// the split expressions of the tokenizer.json files they were computed from: "llama-bpe"
// (Llama 3, with ignore_merges as its tokenizer.json has), "qwen2" (Qwen2.5, Qwen3), "smollm",
// "gpt-2"/"default"; any other name is refused, naming it. "qwen2" adds Qwen's NFC normalizer.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eigenformer/core/error.hpp"
#include "eigenformer/io/gguf.hpp"
#include "eigenformer/tokenizer/hf_tokenizer.hpp"

namespace eigenformer {

namespace detail {
/// The split expression (and ignore_merges) of a tokenizer.ggml.pre name.
inline nlohmann::json gguf_pre_tokenizer(const std::string& pre, const std::string& source,
                                         bool& ignore_merges) {
  const auto byte_level = [](bool use_regex) {
    return nlohmann::json{{"type", "ByteLevel"},
                          {"add_prefix_space", false},
                          {"trim_offsets", true},
                          {"use_regex", use_regex}};
  };
  const auto split = [](const char* regex) {
    return nlohmann::json{{"type", "Split"},
                          {"pattern", {{"Regex", regex}}},
                          {"behavior", "Isolated"},
                          {"invert", false}};
  };
  const auto sequence = [](std::vector<nlohmann::json> steps) {
    return nlohmann::json{{"type", "Sequence"}, {"pretokenizers", steps}};
  };
  ignore_merges = false;
  if (pre == "gpt-2" || pre == "default" || pre.empty()) return byte_level(true);
  if (pre == "llama-bpe" || pre == "llama3") {
    ignore_merges = true;
    return sequence({split("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
                           "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|"
                           "\\s+"),
                     byte_level(false)});
  }
  if (pre == "qwen2") {
    return sequence({split("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
                           " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"),
                     byte_level(false)});
  }
  if (pre == "smollm") {  // SmolLM2: digits one by one, then GPT-2's expression
    return sequence(
        {nlohmann::json{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true)});
  }
  throw format_error(source + ": tokenizer.ggml.pre '" + pre +
                     "' is not supported (gpt-2, default, llama-bpe, qwen2, smollm are)");
}
}  // namespace detail

/// The tokenizer.json text equivalent to `f`'s tokenizer metadata.
inline std::string gguf_tokenizer_json(const gguf_file& f) {
  const std::string source = f.path() + ": tokenizer";
  if (!f.has("tokenizer.ggml.model")) {
    throw format_error(f.path() + ": the file has no tokenizer (tokenizer.ggml.model is missing)");
  }
  const std::string kind = f.string("tokenizer.ggml.model");
  if (kind != "gpt2") {
    throw format_error(f.path() + ": tokenizer.ggml.model '" + kind +
                       "' is not supported yet (gpt2, byte-level BPE, is)");
  }
  const auto tokens = f.strings("tokenizer.ggml.tokens");
  const auto merges = f.strings("tokenizer.ggml.merges");
  std::vector<std::int64_t> types(tokens.size(), 1);
  if (f.has("tokenizer.ggml.token_type")) {
    types = f.integers("tokenizer.ggml.token_type");
    if (types.size() != tokens.size()) {
      throw format_error(detail::concat(f.path(), ": tokenizer.ggml.token_type has ", types.size(),
                                        " entries for ", tokens.size(), " tokens"));
    }
  }
  bool ignore_merges = false;
  const std::string pre = f.has("tokenizer.ggml.pre") ? f.string("tokenizer.ggml.pre") : "";
  nlohmann::json j;
  j["pre_tokenizer"] = detail::gguf_pre_tokenizer(pre, source, ignore_merges);
  nlohmann::json vocab = nlohmann::json::object(), added = nlohmann::json::array();
  for (std::size_t id = 0; id < tokens.size(); ++id) {
    vocab[tokens[id]] = id;
    constexpr std::int64_t control = 3, user_defined = 4;
    if (types[id] == control || types[id] == user_defined) {
      added.push_back({{"id", id},
                       {"content", tokens[id]},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", types[id] == user_defined},
                       {"special", types[id] == control}});
    }
  }
  if (vocab.size() != tokens.size()) {
    throw format_error(f.path() + ": tokenizer.ggml.tokens has a token twice");
  }
  j["added_tokens"] = added;
  // Qwen's tokenizer.json normalizes to NFC first; the GGUF metadata does not say so, but the
  // pre name identifies the file it was converted from, and its ids are the tokenizer.json's.
  j["normalizer"] = pre == "qwen2" ? nlohmann::json{{"type", "NFC"}} : nlohmann::json();
  j["decoder"] = {{"type", "ByteLevel"},
                  {"add_prefix_space", true},
                  {"trim_offsets", true},
                  {"use_regex", true}};
  j["model"] = {{"type", "BPE"},
                {"vocab", vocab},
                {"merges", merges},
                {"byte_fallback", false},
                {"ignore_merges", ignore_merges}};
  // llama.cpp adds BOS when add_bos_token says so; without the key, for Llama 3 files only.
  bool add_bos = pre == "llama-bpe";
  if (f.has("tokenizer.ggml.add_bos_token")) add_bos = f.boolean("tokenizer.ggml.add_bos_token");
  if (add_bos && f.has("tokenizer.ggml.bos_token_id")) {
    const auto bos = f.integer("tokenizer.ggml.bos_token_id", 0, std::int64_t(tokens.size()) - 1);
    const std::string name = tokens[std::size_t(bos)];
    j["post_processor"] = {
        {"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", name}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"special_tokens", {{name, {{"id", name}, {"ids", {bos}}, {"tokens", {name}}}}}}};
  } else {
    j["post_processor"] = nullptr;
  }
  return j.dump();
}

/// The tokenizer of GGUF file `f`.
inline hf_tokenizer gguf_tokenizer(const gguf_file& f) {
  return hf_tokenizer(gguf_tokenizer_json(f), f.path() + " (tokenizer metadata)");
}

}  // namespace eigenformer
