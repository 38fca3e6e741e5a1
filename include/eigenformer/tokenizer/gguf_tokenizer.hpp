// eigenformer/tokenizer/gguf_tokenizer.hpp — the tokenizer a GGUF file carries in its
// tokenizer.ggml.* metadata, as the equivalent Hugging Face tokenizer (hf_tokenizer.hpp), so a
// GGUF file alone is enough for `generate --prompt`. Requires what hf_tokenizer.hpp requires
// (nlohmann-json, PCRE2, utf8proc).
//
// Read: tokenizer.ggml.model ("gpt2": byte-level BPE; "llama": SentencePiece BPE), .tokens
// (string per id), .token_type (1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte, ...),
// .merges ("a b", by rank; gpt2), .scores (llama: merges follow them), .add_space_prefix
// (llama), .pre (which pre-tokenizer llama.cpp applies; gpt2), .bos_token_id, .add_bos_token
// and .unknown_token_id. Control tokens become special added tokens and user-defined ones
// non-special added tokens, as llama.cpp's converter made them from tokenizer.json. The .pre names
// map onto the split expressions of the tokenizer.json files they were computed from: "llama-bpe"
// (Llama 3, with ignore_merges as its tokenizer.json has), "qwen2" (Qwen2.5, Qwen3), "smollm",
// "gpt-2"/"default"; any other name is refused, naming it. "qwen2" adds Qwen's NFC normalizer.
#pragma once

#include <algorithm>
#include <string>
#include <unordered_map>
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

namespace detail {
/// BPE merges from a SentencePiece vocabulary's scores, as the Hugging Face converter derives
/// tokenizer.json's merges from a tokenizer.model: every split of a token into two tokens (at a
/// character boundary) is a merge, ranked by the whole token's score, highest first (ties keep
/// id order; the splits of one token are ordered by the ids of their halves). Merging by these
/// ranks is llama.cpp's SentencePiece tokenizer, which joins the adjacent pair whose joined text
/// is the best-scored token.
inline nlohmann::json merges_from_scores(const std::vector<std::string>& tokens,
                                         const std::vector<double>& scores,
                                         const std::unordered_map<std::string, std::size_t>& id) {
  struct merge {
    double score;
    std::size_t left, right;
  };
  std::vector<merge> merges;
  for (std::size_t token = 0; token < tokens.size(); ++token) {
    const std::string& text = tokens[token];
    const std::size_t first = merges.size();
    for (std::size_t cut = 1; cut < text.size(); ++cut) {
      if ((static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) continue;  // inside a character
      const auto left = id.find(text.substr(0, cut)), right = id.find(text.substr(cut));
      if (left != id.end() && right != id.end())
        merges.push_back({scores[token], left->second, right->second});
    }
    std::sort(merges.begin() + std::ptrdiff_t(first), merges.end(),
              [](const merge& a, const merge& b) {
                return a.left != b.left ? a.left < b.left : a.right < b.right;
              });
  }
  std::stable_sort(merges.begin(), merges.end(),
                   [](const merge& a, const merge& b) { return a.score > b.score; });
  nlohmann::json out = nlohmann::json::array();
  for (const auto& m : merges) out.push_back({tokens[m.left], tokens[m.right]});
  return out;
}

/// A TemplateProcessing post-processor that puts token `bos` first.
inline nlohmann::json bos_post_processor(const std::string& name, std::int64_t bos) {
  return {{"type", "TemplateProcessing"},
          {"single",
           {{{"SpecialToken", {{"id", name}, {"type_id", 0}}}},
            {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
          {"special_tokens", {{name, {{"id", name}, {"ids", {bos}}, {"tokens", {name}}}}}}};
}
}  // namespace detail

/// The tokenizer.json text equivalent to `f`'s tokenizer metadata.
inline std::string gguf_tokenizer_json(const gguf_file& f) {
  const std::string source = f.path() + ": tokenizer";
  if (!f.has("tokenizer.ggml.model")) {
    throw format_error(f.path() + ": the file has no tokenizer (tokenizer.ggml.model is missing)");
  }
  const std::string kind = f.string("tokenizer.ggml.model");
  if (kind != "gpt2" && kind != "llama") {
    throw format_error(f.path() + ": tokenizer.ggml.model '" + kind +
                       "' is not supported (gpt2, byte-level BPE, and llama, SentencePiece BPE, "
                       "are)");
  }
  const bool sentencepiece = kind == "llama";
  const auto tokens = f.strings("tokenizer.ggml.tokens");
  std::vector<std::int64_t> types(tokens.size(), 1);
  if (f.has("tokenizer.ggml.token_type")) {
    types = f.integers("tokenizer.ggml.token_type");
    if (types.size() != tokens.size()) {
      throw format_error(detail::concat(f.path(), ": tokenizer.ggml.token_type has ", types.size(),
                                        " entries for ", tokens.size(), " tokens"));
    }
  }
  const auto id_at = [&](const char* key) {
    return f.integer(key, 0, std::int64_t(tokens.size()) - 1);
  };
  nlohmann::json j;
  nlohmann::json vocab = nlohmann::json::object(), added = nlohmann::json::array();
  std::unordered_map<std::string, std::size_t> id_of;
  for (std::size_t id = 0; id < tokens.size(); ++id) {
    vocab[tokens[id]] = id;
    id_of.emplace(tokens[id], id);
    constexpr std::int64_t unknown = 2, control = 3, user_defined = 4;
    const bool special = types[id] == control || (sentencepiece && types[id] == unknown);
    if (special || types[id] == user_defined) {
      added.push_back({{"id", id},
                       {"content", tokens[id]},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", !sentencepiece && !special},
                       {"special", special}});
    }
  }
  if (id_of.size() != tokens.size()) {
    throw format_error(f.path() + ": tokenizer.ggml.tokens has a token twice");
  }
  j["added_tokens"] = added;
  // llama.cpp adds BOS when add_bos_token says so; without the key, for SentencePiece and Llama 3
  // files only.
  const std::string pre = f.has("tokenizer.ggml.pre") ? f.string("tokenizer.ggml.pre") : "";
  bool add_bos = sentencepiece || pre == "llama-bpe";
  if (f.has("tokenizer.ggml.add_bos_token")) add_bos = f.boolean("tokenizer.ggml.add_bos_token");
  const std::int64_t bos =
      f.has("tokenizer.ggml.bos_token_id") ? id_at("tokenizer.ggml.bos_token_id") : -1;
  j["post_processor"] = add_bos && bos >= 0
                            ? detail::bos_post_processor(tokens[std::size_t(bos)], bos)
                            : nlohmann::json();

  if (sentencepiece) {
    // SentencePiece as llama.cpp runs it: a space in front (unless add_space_prefix is false),
    // spaces as U+2581, then merges by score; characters outside the vocabulary become their
    // UTF-8 bytes' <0xXX> tokens, or the unknown token. Llama 2's own tokenizer.json, exactly.
    if (!f.has("tokenizer.ggml.scores")) {
      throw format_error(f.path() +
                         ": tokenizer.ggml.scores is missing (SentencePiece merges "
                         "follow the scores)");
    }
    const auto scores = f.numbers("tokenizer.ggml.scores");
    if (scores.size() != tokens.size()) {
      throw format_error(detail::concat(f.path(), ": tokenizer.ggml.scores has ", scores.size(),
                                        " entries for ", tokens.size(), " tokens"));
    }
    const bool space_prefix =
        !f.has("tokenizer.ggml.add_space_prefix") || f.boolean("tokenizer.ggml.add_space_prefix");
    const std::string space = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK
    nlohmann::json normalizers = nlohmann::json::array();
    if (space_prefix) normalizers.push_back({{"type", "Prepend"}, {"prepend", space}});
    normalizers.push_back(
        {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", space}});
    j["normalizer"] = {{"type", "Sequence"}, {"normalizers", normalizers}};
    j["pre_tokenizer"] = nullptr;
    nlohmann::json decoders = {
        {{"type", "Replace"}, {"pattern", {{"String", space}}}, {"content", " "}},
        {{"type", "ByteFallback"}},
        {{"type", "Fuse"}}};
    if (space_prefix)
      decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    j["decoder"] = {{"type", "Sequence"}, {"decoders", decoders}};
    const std::int64_t unk =
        f.has("tokenizer.ggml.unknown_token_id") ? id_at("tokenizer.ggml.unknown_token_id") : -1;
    j["model"] = {{"type", "BPE"},
                  {"vocab", vocab},
                  {"merges", detail::merges_from_scores(tokens, scores, id_of)},
                  {"byte_fallback", std::count(types.begin(), types.end(), 6) > 0},
                  {"fuse_unk", true}};
    if (unk >= 0) j["model"]["unk_token"] = tokens[std::size_t(unk)];
    return j.dump();
  }

  bool ignore_merges = false;
  j["pre_tokenizer"] = detail::gguf_pre_tokenizer(pre, source, ignore_merges);
  // Qwen's tokenizer.json normalizes to NFC first; the GGUF metadata does not say so, but the
  // pre name identifies the file it was converted from, and its ids are the tokenizer.json's.
  j["normalizer"] = pre == "qwen2" ? nlohmann::json{{"type", "NFC"}} : nlohmann::json();
  j["decoder"] = {{"type", "ByteLevel"},
                  {"add_prefix_space", true},
                  {"trim_offsets", true},
                  {"use_regex", true}};
  j["model"] = {{"type", "BPE"},
                {"vocab", vocab},
                {"merges", f.strings("tokenizer.ggml.merges")},
                {"byte_fallback", false},
                {"ignore_merges", ignore_merges}};
  return j.dump();
}

/// The tokenizer of GGUF file `f`.
inline hf_tokenizer gguf_tokenizer(const gguf_file& f) {
  return hf_tokenizer(gguf_tokenizer_json(f), f.path() + " (tokenizer metadata)");
}

}  // namespace eigenformer
