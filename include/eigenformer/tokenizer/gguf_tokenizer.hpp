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
#include <fstream>
#include <sstream>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "eigenformer/core/error.hpp"
#include "eigenformer/io/gguf.hpp"
#include "eigenformer/io/gguf_writer.hpp"
#include "eigenformer/io/json_fields.hpp"
#include "eigenformer/model/config.hpp"
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

namespace detail {
inline bool is_readable_file(const std::string& path) {
  std::ifstream in(path);
  return bool(in);
}

/// tokenizer.json for `path`: that file, a directory's tokenizer.json, or a directory's GPT-2
/// vocab.json + merges.txt as the equivalent tokenizer.json.
inline nlohmann::json tokenizer_json_at(const std::string& path) {
  const std::string base = path.empty() || path.back() == '/' ? path : path + "/";
  if (is_readable_file(base + "tokenizer.json"))
    return nlohmann::json::parse(read_text_file(base + "tokenizer.json"));
  if (!is_readable_file(base + "vocab.json")) {
    if (is_readable_file(path) && path.back() != '/')
      return nlohmann::json::parse(read_text_file(path));
    throw io_error(path + ": no tokenizer.json, and no vocab.json + merges.txt");
  }
  nlohmann::json j;
  j["model"] = {{"type", "BPE"},
                {"vocab", nlohmann::json::parse(read_text_file(base + "vocab.json"))},
                {"merges", nlohmann::json::array()}};
  std::istringstream merges(read_text_file(base + "merges.txt"));
  for (std::string line; std::getline(merges, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    j["model"]["merges"].push_back(line);
  }
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  j["added_tokens"] = nlohmann::json::array();
  if (j["model"]["vocab"].contains("<|endoftext|>")) {
    j["added_tokens"].push_back({{"id", j["model"]["vocab"]["<|endoftext|>"]},
                                 {"content", "<|endoftext|>"},
                                 {"special", true}});
  }
  return j;
}

/// Text that tells pre-tokenizers apart: runs of spaces, tabs and newlines, runs of digits,
/// English contractions in both cases, punctuation runs, accents, CJK, emoji, Cyrillic, and
/// decomposed accents (only NFC-normalizing tokenizers compose them).
inline const char* pre_tokenizer_check_text() {
  return "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \nHello world! 3 33 333 3333 33333 "
         "3.14 1,000 I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you "
         "like tea? We'Ve a'lL ------======= ''''```\"\"\"......!!!!???? caf\xC3\xA9 "
         "na\xC3\xAFve \xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8"
         "apple\xE5\xB7\xA5\xE4\xBD\x9C"
         "1314 "
         "\xF0\x9F\x9A\x80 (emoji) e\xCC\x81 a\xCC\x88\xCC\x84 \xD0\xBD\xD0\xB5\xD1\x89\xD0\xBE  x "
         " ";
}
}  // namespace detail

/// The tokenizer.ggml.* metadata of the tokenizer at `path` (a tokenizer.json, or a directory
/// with it or with GPT-2's vocab.json + merges.txt) for a model of `vocab_size` embeddings, as
/// llama.cpp's converter writes it:
///  - tokens by id (ids the tokenizer does not use: "[PAD<id>]", type UNUSED), types (special
///    added tokens CONTROL, other added tokens USER_DEFINED, SentencePiece's <0xXX> BYTE and its
///    unknown token UNKNOWN), bos/eos from `config`, add_bos_token from the post-processor;
///  - byte-level BPE ("gpt2"): the merges, and the first .pre name whose pre-tokenizer tokenizes
///    a check text as the tokenizer.json does (value_error if none does);
///  - SentencePiece BPE ("llama": byte_fallback or U+2581 vocabularies): scores from the merges'
///    ranks (the first merge that makes a token ranks it — tokenizer.json keeps no scores, and
///    the tokenizer.model scores the converter would copy order the merges the same way),
///    add_space_prefix;
///  - tokenizer_config.json's chat_template, when the directory has one.
/// Checked before it is returned: the tokenizer read back from the metadata (gguf_tokenizer)
/// encodes the check text as `path`'s tokenizer does.
inline std::vector<std::pair<std::string, gguf_value>> gguf_tokenizer_metadata(
    const std::string& path, index_t vocab_size, const model_config& config) {
  const nlohmann::json tok = detail::tokenizer_json_at(path);
  const std::string source = path + ": tokenizer";
  const auto& bpe = tok.at("model");
  const auto dump_of = [&](const char* key) {
    return tok.contains(key) ? tok[key].dump() : std::string();
  };
  const std::string space = "\xE2\x96\x81";  // U+2581, SentencePiece's space
  const bool sentencepiece = bpe.value("byte_fallback", false) ||
                             dump_of("pre_tokenizer").find("Metaspace") != std::string::npos ||
                             dump_of("normalizer").find(space) != std::string::npos;
  const auto n = static_cast<std::size_t>(vocab_size);
  std::vector<std::string> tokens(n);
  std::vector<std::int64_t> types(n, 5);  // UNUSED
  for (std::size_t id = 0; id < n; ++id) tokens[id] = "[PAD" + std::to_string(id) + "]";
  const auto put = [&](const std::string& text, std::int64_t id, std::int64_t type) {
    if (id < 0 || id >= vocab_size) {
      throw value_error(detail::concat(source, ": token '", text, "' has id ", id,
                                       ", outside the model's vocabulary of ", vocab_size));
    }
    tokens[std::size_t(id)] = text, types[std::size_t(id)] = type;
  };
  for (const auto& [text, id] : bpe.at("vocab").items()) {
    const bool byte = sentencepiece && text.size() == 6 && text.rfind("<0x", 0) == 0;
    put(text, id.get<std::int64_t>(), byte ? 6 : 1);  // BYTE : NORMAL
  }
  const std::string unk = bpe.contains("unk_token") && bpe["unk_token"].is_string()
                              ? bpe["unk_token"].get<std::string>()
                              : std::string();
  for (const auto& t : tok.value("added_tokens", nlohmann::json::array())) {
    const std::string text = t.at("content");
    const bool special = t.value("special", false);
    put(text, t.at("id").get<std::int64_t>(),
        sentencepiece && text == unk ? 2
        : special                    ? 3
                                     : 4);  // UNKNOWN : CONTROL : USER_DEFINED
  }
  std::vector<std::string> merges;
  for (const auto& m : bpe.value("merges", nlohmann::json::array())) {
    merges.push_back(m.is_string() ? m.get<std::string>()
                                   : m.at(0).get<std::string>() + " " + m.at(1).get<std::string>());
  }

  std::vector<std::pair<std::string, gguf_value>> out;
  const auto set = [&](const std::string& key, gguf_value v) {
    out.emplace_back(key, std::move(v));
  };
  std::vector<gguf_value> items;
  set("tokenizer.ggml.model", gguf_string(sentencepiece ? "llama" : "gpt2"));
  const std::size_t pre_index = out.size();
  set("tokenizer.ggml.pre", gguf_string("default"));
  for (const auto& t : tokens) items.push_back(gguf_string(t));
  set("tokenizer.ggml.tokens", gguf_array(gguf_value::kind::string, std::move(items)));
  if (sentencepiece) {
    std::unordered_map<std::string, float> first_merge;
    for (std::size_t rank = 0; rank < merges.size(); ++rank) {
      std::string joined = merges[rank];
      const auto cut = joined.find(' ');
      if (cut != std::string::npos) joined.erase(cut, 1);
      first_merge.emplace(joined, -float(rank));
    }
    items.clear();
    for (std::size_t id = 0; id < n; ++id) {
      const auto it = first_merge.find(tokens[id]);
      const float score = types[id] != 1            ? 0.0f
                          : it != first_merge.end() ? it->second
                                                    : -float(merges.size() + id);
      items.push_back(gguf_f32(score));
    }
    set("tokenizer.ggml.scores", gguf_array(gguf_value::kind::f32, std::move(items)));
  }
  items.clear();
  for (const auto type : types) items.push_back(gguf_i32(type));
  set("tokenizer.ggml.token_type", gguf_array(gguf_value::kind::i32, std::move(items)));
  if (!sentencepiece) {
    items.clear();
    for (const auto& m : merges) items.push_back(gguf_string(m));
    set("tokenizer.ggml.merges", gguf_array(gguf_value::kind::string, std::move(items)));
  }
  if (config.bos_token_id >= 0)
    set("tokenizer.ggml.bos_token_id", gguf_u32(std::uint64_t(config.bos_token_id)));
  if (!config.eos_token_ids.empty())
    set("tokenizer.ggml.eos_token_id", gguf_u32(std::uint64_t(config.eos_token_ids.front())));
  if (sentencepiece && !unk.empty() && bpe.at("vocab").contains(unk))
    set("tokenizer.ggml.unknown_token_id", gguf_u32(bpe["vocab"][unk].get<std::uint64_t>()));
  const nlohmann::json post =
      tok.contains("post_processor") ? tok["post_processor"] : nlohmann::json();
  const bool add_bos = post.is_object() && post.value("type", "") == "TemplateProcessing" &&
                       post.contains("single") && !post["single"].empty() &&
                       post["single"][0].contains("SpecialToken");
  set("tokenizer.ggml.add_bos_token", gguf_bool(add_bos));
  if (sentencepiece) {
    const std::string steps = dump_of("normalizer") + dump_of("pre_tokenizer");
    const bool prefix = steps.find("Prepend") != std::string::npos ||
                        (steps.find("Metaspace") != std::string::npos &&
                         steps.find("\"never\"") == std::string::npos &&
                         steps.find("\"add_prefix_space\":false") == std::string::npos);
    set("tokenizer.ggml.add_space_prefix", gguf_bool(prefix));
  }
  const std::string base = path.empty() || path.back() == '/' ? path : path + "/";
  if (detail::is_readable_file(base + "tokenizer_config.json")) {
    const auto tc = nlohmann::json::parse(detail::read_text_file(base + "tokenizer_config.json"),
                                          nullptr, false);
    if (tc.is_object() && tc.contains("chat_template") && tc["chat_template"].is_string())
      set("tokenizer.chat_template", gguf_string(tc["chat_template"].get<std::string>()));
  }

  // The check: our own reading of the metadata must tokenize as the original does; for
  // byte-level BPE the first .pre name that does is the one written.
  const hf_tokenizer original(tok.dump(), source);
  const std::string check = detail::pre_tokenizer_check_text();
  const auto expected = original.encode(check, false);
  const std::vector<const char*> names =
      sentencepiece ? std::vector<const char*>{"default"}
                    : std::vector<const char*>{"gpt-2", "llama-bpe", "qwen2", "smollm"};
  for (const char* name : names) {
    out[pre_index].second = gguf_string(name);
    const gguf_file f(gguf_bytes(out, {}), path + " (tokenizer metadata)");
    if (gguf_tokenizer(f).encode(check, false) == expected) return out;
  }
  throw value_error(source + (sentencepiece
                                  ? std::string(": its GGUF metadata would tokenize differently")
                                  : std::string(": its pre-tokenizer matches none of llama.cpp's "
                                                "gpt-2, llama-bpe, qwen2, smollm")));
}

}  // namespace eigenformer
