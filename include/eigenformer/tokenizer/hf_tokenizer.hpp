// eigenformer/tokenizer/hf_tokenizer.hpp — a Hugging Face `tokenizer.json` with a BPE model
// (Llama 2/3, SmolLM2, Qwen2.5/3, Mistral, TinyLlama, GPT-2), encoding and decoding exactly as
// the Rust `tokenizers` library does.
// Requires nlohmann-json, utf8proc (libutf8proc-dev) and PCRE2 (libpcre2-dev).
//
// encode(text):
//   1. added tokens are split out of the raw text (those with normalized=false, e.g. every
//      special token), leftmost-longest, widened over whitespace by lstrip/rstrip;
//   2. the normalizer runs on each remaining piece (NFC, Prepend "▁", Replace " " -> "▁", ...),
//      then added tokens with normalized=true are split out of the normalized pieces;
//   3. the pre-tokenizer cuts pieces further (a Split regex, ByteLevel's byte-to-character
//      alphabet, Metaspace) — each step applies to every piece the previous step produced;
//   4. the BPE model turns each piece into ids (bpe_model.hpp);
//   5. with special tokens on, the post-processor adds its template's ids (e.g. BOS).
// decode(ids): the tokens' strings (special ones skipped if asked) run through the decoder chain
//   (ByteLevel, ByteFallback, Replace, Fuse, Strip, Metaspace) and are joined.
// Text must be valid UTF-8 (Rust's &str); anything else is a value_error naming the byte offset.
// Empty pieces are dropped after every step, as Hugging Face drops them.
#pragma once

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/io/json_fields.hpp"
#include "eigenformer/tokenizer/bpe_model.hpp"
#include "eigenformer/tokenizer/gpt2_bpe.hpp"
#include "eigenformer/tokenizer/unicode.hpp"

namespace eigenformer {

class hf_tokenizer {
 public:
  struct added_token {
    std::string content;
    token_id id = -1;
    bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
    std::string match;  // what is searched for: the content, normalized if `normalized`
  };

  /// Reads a tokenizer.json file (io_error if unreadable, format_error if not understood).
  static hf_tokenizer from_file(const std::string& path) {
    return hf_tokenizer(detail::read_text_file(path), path);
  }

  /// Parses tokenizer.json text; `source` names it in errors.
  hf_tokenizer(const std::string& json_text, const std::string& source) : source_(source) {
    const nlohmann::json j = detail::parse_json_object(json_text, source);
    read_model(member(j, "model", true));
    read_added_tokens(member(j, "added_tokens", false));
    read_normalizer(member(j, "normalizer", false), "normalizer");
    read_pre_tokenizer(member(j, "pre_tokenizer", false), "pre_tokenizer");
    read_post_processor(member(j, "post_processor", false), "post_processor");
    read_decoder(member(j, "decoder", false), "decoder");
    special_.assign(model_.id_to_token.size(), false);
    for (std::size_t k = 0; k < added_.size(); ++k) {
      auto& a = added_[k];
      if (a.special) special_[std::size_t(a.id)] = true;
      a.match = a.normalized ? normalize(a.content) : a.content;
      if (!a.match.empty())
        candidates_[a.normalized][static_cast<unsigned char>(a.match[0])].push_back(k);
    }
    if (const auto* t = member(j, "truncation", false))
      throw format_error(source_ + ": truncation " + t->dump(-1).substr(0, 80) +
                         " is not supported (set it to null)");
    if (const auto* p = member(j, "padding", false)) {
      if (p->is_object() && p->contains("strategy") && (*p)["strategy"].is_object())
        throw format_error(source_ + ": fixed-length padding is not supported");
    }
  }

  /// One more than the largest id of the vocabulary and the added tokens.
  index_t vocab_size() const { return static_cast<index_t>(model_.id_to_token.size()); }

  /// Text to ids, with the post-processor's special tokens (e.g. BOS) when `add_special_tokens`.
  std::vector<token_id> encode(const std::string& text, bool add_special_tokens = true) const {
    const std::size_t bad = unicode::first_invalid_utf8(text);
    if (bad != std::string::npos) {
      throw value_error(detail::concat("tokenizer: the text is not valid UTF-8 at byte ", bad));
    }
    std::vector<token_id> ids;
    // Steps 1 and 2: pieces are either an added token's id or text still to be tokenized.
    std::vector<piece> pieces = split_added_tokens({piece{text, -1, true}}, false);
    for (auto& p : pieces) {
      if (p.id < 0) p.text = normalize(p.text);
    }
    // A piece the normalizer emptied is gone, as in Hugging Face's split (no lone prefix "▁").
    pieces.erase(std::remove_if(pieces.begin(), pieces.end(),
                                [](const piece& p) { return p.id < 0 && p.text.empty(); }),
                 pieces.end());
    pieces = split_added_tokens(std::move(pieces), true);
    for (const auto& step : pre_tokenizer_) pieces = pre_tokenize(step, std::move(pieces));
    for (const auto& p : pieces) {
      if (p.id >= 0) {
        ids.push_back(p.id);
      } else if (!p.text.empty()) {
        model_.tokenize(p.text, ids);
      }
    }
    if (!add_special_tokens || template_.empty()) return ids;
    std::vector<token_id> processed;
    processed.reserve(ids.size() + template_.size());
    for (const auto& item : template_) {
      if (item.is_sequence) {
        processed.insert(processed.end(), ids.begin(), ids.end());
      } else {
        processed.insert(processed.end(), item.ids.begin(), item.ids.end());
      }
    }
    return processed;
  }

  /// Ids to text through the decoder chain (throws value_error for an id with no token).
  std::string decode(const std::vector<token_id>& ids, bool skip_special_tokens = false) const {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (const token_id id : ids) {
      const std::string& token = token_text(id);
      if (skip_special_tokens && is_special(id)) continue;
      tokens.push_back(token);
    }
    for (const auto& step : decoder_) tokens = decode_step(step, std::move(tokens));
    std::string out;
    for (const auto& t : tokens) out += t;
    return out;
  }

  /// The stored string of a token ("Ġthe", "▁the", "<0x0A>", "<|begin_of_text|>").
  const std::string& token_text(token_id id) const {
    if (id < 0 || id >= vocab_size() || !has_id_[std::size_t(id)]) {
      throw value_error(detail::concat("tokenizer: token id ", id, " is not in the vocabulary of ",
                                       vocab_size()));
    }
    return model_.id_to_token[std::size_t(id)];
  }

  /// The id of a token string (vocabulary or added token), or -1.
  token_id id_of(const std::string& token) const {
    for (const auto& a : added_)
      if (a.content == token) return a.id;
    const auto it = model_.vocab.find(token);
    return it == model_.vocab.end() ? -1 : it->second;
  }

  bool is_special(token_id id) const {
    return id >= 0 && id < vocab_size() && special_[std::size_t(id)];
  }

  const std::vector<added_token>& added_tokens() const { return added_; }

  /// The ids the post-processor puts before the text (e.g. BOS), empty if none.
  std::vector<token_id> prefix_special_ids() const {
    std::vector<token_id> ids;
    for (const auto& item : template_) {
      if (item.is_sequence) break;
      ids.insert(ids.end(), item.ids.begin(), item.ids.end());
    }
    return ids;
  }

 private:
  struct piece {
    std::string text;
    token_id id;    // >= 0: an added token, final
    bool at_start;  // begins at offset 0 of the original text (Metaspace's "first" scheme)
  };
  /// A Regex or String pattern of a Split, Replace or decoder step.
  struct pattern {
    std::string literal;
    std::shared_ptr<unicode::regex> re;  // null: the literal
    std::vector<std::pair<std::size_t, std::size_t>> find_all(const std::string& text) const {
      if (re) return re->find_all(text);
      std::vector<std::pair<std::size_t, std::size_t>> spans;
      if (literal.empty()) return spans;
      for (std::size_t at = text.find(literal); at != std::string::npos;
           at = text.find(literal, at + literal.size()))
        spans.emplace_back(at, at + literal.size());
      return spans;
    }
    std::string replace_all(const std::string& text, const std::string& content) const {
      std::string out;
      std::size_t done = 0;
      for (const auto& [begin, end] : find_all(text)) {
        out.append(text, done, begin - done);
        out += content;
        done = end;
      }
      out.append(text, done, std::string::npos);
      return out;
    }
  };
  enum class normalizer_kind { nfc, nfd, nfkc, nfkd, prepend, replace };
  struct normalizer_step {
    normalizer_kind kind;
    std::string text;  // prepend: the prefix; replace: the content
    pattern what;      // replace
  };
  enum class split_behavior {
    removed,
    isolated,
    merged_with_previous,
    merged_with_next,
    contiguous
  };
  enum class prepend_scheme { always, first, never };
  enum class pre_tokenizer_kind { split, byte_level, metaspace, digits };
  struct pre_tokenizer_step {
    pre_tokenizer_kind kind;
    pattern what;  // split; metaspace: the replacement
    split_behavior behavior = split_behavior::isolated;
    bool invert = false;
    bool add_prefix_space = false, use_regex = false;  // byte_level
    std::string replacement;                           // metaspace (`what` finds it)
    prepend_scheme scheme = prepend_scheme::always;    // metaspace
    bool split = false;                                // metaspace
    bool individual_digits = false;                    // digits
  };
  enum class decoder_kind { byte_level, byte_fallback, replace, fuse, strip, metaspace };
  struct decoder_step {
    decoder_kind kind;
    pattern what;         // replace; metaspace: the replacement
    std::string content;  // replace: the content; strip: the character; metaspace: replacement
    std::size_t start = 0, stop = 0;  // strip
    prepend_scheme scheme = prepend_scheme::always;
  };
  struct template_item {
    bool is_sequence;
    std::vector<token_id> ids;  // a special token's ids
  };

  // --- reading tokenizer.json -------------------------------------------------------------

  const nlohmann::json* member(const nlohmann::json& j, const char* key, bool required) const {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
      if (required) throw format_error(source_ + ": missing '" + key + "'");
      return nullptr;
    }
    return &*it;
  }

  std::string type_of(const nlohmann::json& j, const std::string& where) const {
    if (!j.is_object()) throw format_error(source_ + ": " + where + " is not an object");
    const detail::json_fields f(j, source_ + ": " + where);
    const std::string type = f.string("type", "");
    if (type.empty()) throw format_error(source_ + ": " + where + " has no 'type'");
    return type;
  }

  pattern read_pattern(const nlohmann::json& j, const std::string& where) const {
    pattern p;
    if (j.is_object() && j.contains("Regex") && j["Regex"].is_string()) {
      try {
        p.re = std::make_shared<unicode::regex>(j["Regex"].get<std::string>());
      } catch (const format_error& e) {
        throw format_error(source_ + ": " + where + ": " + e.what());
      }
    } else if (j.is_object() && j.contains("String") && j["String"].is_string()) {
      p.literal = j["String"].get<std::string>();
    } else {
      throw format_error(source_ + ": " + where +
                         ": pattern must be {\"Regex\": ...} or {\"String\": ...}");
    }
    return p;
  }

  void read_model(const nlohmann::json* j) {
    const std::string type = j->contains("type") ? type_of(*j, "model") : "BPE";
    if (type != "BPE") {
      throw format_error(source_ + ": model type '" + type + "' is not supported (only BPE)");
    }
    const detail::json_fields f(*j, source_ + ": model");
    for (const char* affix : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (!f.string(affix, "").empty())
        throw format_error(source_ + ": model." + affix + " is not supported");
    }
    if (f.number("dropout", 0.0) != 0.0)
      throw format_error(source_ + ": model.dropout is not supported (inference uses none)");
    model_.byte_fallback = f.boolean("byte_fallback", false);
    model_.fuse_unk = f.boolean("fuse_unk", false);
    model_.ignore_merges = f.boolean("ignore_merges", false);
    const auto* vocab = member(*j, "vocab", true);
    if (!vocab->is_object()) throw format_error(source_ + ": model.vocab is not an object");
    model_.vocab.reserve(vocab->size() + 1024);
    model_.id_to_token.reserve(vocab->size() + 1024);
    for (const auto& [token, id] : vocab->items()) set_token(token, id, "model.vocab");
    model_vocab_count_ = model_.vocab.size();
    const auto* merges = member(*j, "merges", false);
    if (merges && !merges->is_array()) throw format_error(source_ + ": model.merges is not a list");
    std::int32_t rank = 0;
    if (merges) model_.merges.reserve(merges->size());
    for (const auto& m : merges ? *merges : nlohmann::json::array()) {
      std::string left, right;
      if (m.is_string()) {  // "a b": exactly one space
        const auto text = m.get<std::string>();
        const auto space = text.find(' ');
        if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos)
          throw format_error(detail::concat(source_, ": merge ", rank, " ", m.dump(),
                                            " is not two tokens separated by one space"));
        left = text.substr(0, space), right = text.substr(space + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        left = m[0].get<std::string>(), right = m[1].get<std::string>();
      } else {
        throw format_error(detail::concat(source_, ": merge ", rank, " is not \"a b\" or [a, b]"));
      }
      try {
        model_.add_merge(left, right, rank++);
      } catch (const format_error& e) {
        throw format_error(source_ + ": model." + e.what());
      }
    }
    const std::string unk = f.string("unk_token", "");
    if (!unk.empty()) {
      const auto it = model_.vocab.find(unk);
      if (it == model_.vocab.end())
        throw format_error(source_ + ": model.unk_token '" + unk + "' is not in the vocabulary");
      model_.unk_id = it->second;
    }
  }

  void set_token(const std::string& token, const nlohmann::json& id, const char* where) {
    if (!id.is_number_integer() || id.get<std::int64_t>() < 0 ||
        id.get<std::int64_t>() >= (1 << 24)) {
      throw format_error(source_ + ": " + where + ": token " + nlohmann::json(token).dump() +
                         " has id " + id.dump() + ", expected an integer in [0, 16777216)");
    }
    const auto index = static_cast<std::size_t>(id.get<std::int64_t>());
    if (index >= model_.id_to_token.size()) {
      model_.id_to_token.resize(index + 1);
      has_id_.resize(index + 1, false);
    }
    model_.id_to_token[index] = token;
    has_id_[index] = true;
    model_.vocab.emplace(token, static_cast<token_id>(index));
  }

  void read_added_tokens(const nlohmann::json* j) {
    if (!j) return;
    if (!j->is_array()) throw format_error(source_ + ": added_tokens is not a list");
    for (const auto& t : *j) {
      if (!t.is_object()) throw format_error(source_ + ": added_tokens holds a non-object");
      const detail::json_fields f(t, source_ + ": added_tokens");
      added_token a;
      a.content = f.string("content", "");
      if (a.content.empty()) throw format_error(source_ + ": an added token has no content");
      if (unicode::first_invalid_utf8(a.content) != std::string::npos)
        throw format_error(source_ + ": added token content is not valid UTF-8");
      a.special = f.boolean("special", false);
      a.lstrip = f.boolean("lstrip", false);
      a.rstrip = f.boolean("rstrip", false);
      a.single_word = f.boolean("single_word", false);
      a.normalized = f.boolean("normalized", !a.special);
      f.integer("id", true, 0);  // required, but recomputed below as Hugging Face does
      // The Rust library ignores the stored id: content already in the vocabulary (or added
      // before) keeps that id; new content takes the next id after the vocabulary and the
      // added tokens so far. For the files models ship, this is the stored id.
      const auto existing = model_.vocab.find(a.content);
      if (existing != model_.vocab.end()) {
        a.id = existing->second;
      } else {
        token_id next = static_cast<token_id>(model_vocab_count_);
        for (const auto& b : added_) next = std::max(next, b.id + 1);
        a.id = next;
        set_token(a.content, nlohmann::json(a.id), "added_tokens");
      }
      added_.push_back(std::move(a));
    }
  }

  void read_normalizer(const nlohmann::json* j, const std::string& where) {
    if (!j) return;
    const std::string type = type_of(*j, where);
    if (type == "Sequence") {
      const auto* list = member(*j, "normalizers", true);
      if (!list->is_array())
        throw format_error(source_ + ": " + where + ".normalizers is not a list");
      for (const auto& n : *list) read_normalizer(&n, where + ".normalizers[]");
      return;
    }
    const detail::json_fields f(*j, source_ + ": " + where);
    if (type == "NFC") return normalizer_.push_back({normalizer_kind::nfc, {}, {}});
    if (type == "NFD") return normalizer_.push_back({normalizer_kind::nfd, {}, {}});
    if (type == "NFKC") return normalizer_.push_back({normalizer_kind::nfkc, {}, {}});
    if (type == "NFKD") return normalizer_.push_back({normalizer_kind::nfkd, {}, {}});
    if (type == "Prepend")
      return normalizer_.push_back({normalizer_kind::prepend, f.string("prepend", ""), {}});
    if (type == "Replace") {
      return normalizer_.push_back({normalizer_kind::replace, f.string("content", ""),
                                    read_pattern(*member(*j, "pattern", true), where)});
    }
    throw format_error(source_ + ": " + where + " type '" + type + "' is not supported");
  }

  static prepend_scheme read_scheme(const detail::json_fields& f) {
    if (f.find("prepend_scheme")) {
      const std::string s = f.string("prepend_scheme", "always");
      if (s == "always") return prepend_scheme::always;
      if (s == "first") return prepend_scheme::first;
      if (s == "never") return prepend_scheme::never;
      throw format_error(f.source() + ": prepend_scheme '" + s + "' is not always|first|never");
    }
    return f.boolean("add_prefix_space", true) ? prepend_scheme::always : prepend_scheme::never;
  }

  std::string read_replacement(const detail::json_fields& f) const {
    const std::string r = f.string("replacement", "\xE2\x96\x81");
    if (r.empty() || unicode::char_length(static_cast<unsigned char>(r[0])) != r.size() ||
        unicode::first_invalid_utf8(r) != std::string::npos)
      throw format_error(f.source() + ": replacement must be one character");
    return r;
  }

  void read_pre_tokenizer(const nlohmann::json* j, const std::string& where) {
    if (!j) return;
    const std::string type = type_of(*j, where);
    if (type == "Sequence") {
      const auto* list = member(*j, "pretokenizers", true);
      if (!list->is_array())
        throw format_error(source_ + ": " + where + ".pretokenizers is not a list");
      for (const auto& p : *list) read_pre_tokenizer(&p, where + ".pretokenizers[]");
      return;
    }
    const detail::json_fields f(*j, source_ + ": " + where);
    pre_tokenizer_step step{};
    if (type == "Split") {
      step.kind = pre_tokenizer_kind::split;
      step.what = read_pattern(*member(*j, "pattern", true), where);
      step.invert = f.boolean("invert", false);
      const std::string b = f.string("behavior", "Isolated");
      if (b == "Removed")
        step.behavior = split_behavior::removed;
      else if (b == "Isolated")
        step.behavior = split_behavior::isolated;
      else if (b == "MergedWithPrevious")
        step.behavior = split_behavior::merged_with_previous;
      else if (b == "MergedWithNext")
        step.behavior = split_behavior::merged_with_next;
      else if (b == "Contiguous")
        step.behavior = split_behavior::contiguous;
      else
        throw format_error(source_ + ": " + where + ": unknown behavior '" + b + "'");
    } else if (type == "ByteLevel") {
      step.kind = pre_tokenizer_kind::byte_level;
      step.add_prefix_space = f.boolean("add_prefix_space", true);
      step.use_regex = f.boolean("use_regex", true);
    } else if (type == "Metaspace") {
      step.kind = pre_tokenizer_kind::metaspace;
      step.replacement = read_replacement(f);
      step.what.literal = step.replacement;
      step.scheme = read_scheme(f);
      step.split = f.boolean("split", true);
    } else if (type == "Digits") {
      step.kind = pre_tokenizer_kind::digits;
      step.individual_digits = f.boolean("individual_digits", false);
    } else {
      throw format_error(source_ + ": " + where + " type '" + type + "' is not supported");
    }
    pre_tokenizer_.push_back(std::move(step));
  }

  void read_post_processor(const nlohmann::json* j, const std::string& where) {
    if (!j) return;
    const std::string type = type_of(*j, where);
    if (type == "ByteLevel") return;  // only trims offsets, which encode does not report
    if (type == "Sequence") {
      const auto* list = member(*j, "processors", true);
      if (!list->is_array())
        throw format_error(source_ + ": " + where + ".processors is not a list");
      for (const auto& p : *list) read_post_processor(&p, where + ".processors[]");
      return;
    }
    if (!template_.empty())
      throw format_error(source_ + ": " + where + ": more than one template processor");
    if (type == "TemplateProcessing") {
      const auto* single = member(*j, "single", true);
      const auto* specials = member(*j, "special_tokens", false);
      if (!single->is_array()) throw format_error(source_ + ": " + where + ".single is not a list");
      for (const auto& item : *single) {
        if (item.contains("Sequence")) {
          template_.push_back({true, {}});
          continue;
        }
        if (!item.contains("SpecialToken") || !item["SpecialToken"].contains("id") ||
            !item["SpecialToken"]["id"].is_string())
          throw format_error(source_ + ": " + where +
                             ": a template item is neither Sequence nor SpecialToken");
        const auto name = item["SpecialToken"]["id"].get<std::string>();
        if (!specials || !specials->contains(name) || !(*specials)[name].contains("ids"))
          throw format_error(source_ + ": " + where + ": special token '" + name + "' has no ids");
        std::vector<token_id> ids;
        for (const auto& id : (*specials)[name]["ids"]) {
          if (!id.is_number_integer() || id.get<std::int64_t>() < 0 ||
              id.get<std::int64_t>() >= static_cast<std::int64_t>(vocab_size()))
            throw format_error(source_ + ": " + where + ": special token '" + name + "' has id " +
                               id.dump() + " outside the vocabulary");
          ids.push_back(id.get<token_id>());
        }
        template_.push_back({false, std::move(ids)});
      }
      return;
    }
    if (type == "BertProcessing" || type == "RobertaProcessing") {
      const auto token_id_of = [&](const char* key) {
        const auto* t = member(*j, key, true);
        if (!t->is_array() || t->size() != 2 || !(*t)[1].is_number_integer())
          throw format_error(source_ + ": " + where + "." + key + " is not [token, id]");
        return (*t)[1].get<token_id>();
      };
      template_ = {{false, {token_id_of("cls")}}, {true, {}}, {false, {token_id_of("sep")}}};
      return;
    }
    throw format_error(source_ + ": " + where + " type '" + type + "' is not supported");
  }

  void read_decoder(const nlohmann::json* j, const std::string& where) {
    if (!j) return;
    const std::string type = type_of(*j, where);
    if (type == "Sequence") {
      const auto* list = member(*j, "decoders", true);
      if (!list->is_array()) throw format_error(source_ + ": " + where + ".decoders is not a list");
      for (const auto& d : *list) read_decoder(&d, where + ".decoders[]");
      return;
    }
    const detail::json_fields f(*j, source_ + ": " + where);
    decoder_step step{};
    if (type == "ByteLevel") {
      step.kind = decoder_kind::byte_level;
    } else if (type == "ByteFallback") {
      step.kind = decoder_kind::byte_fallback;
    } else if (type == "Fuse") {
      step.kind = decoder_kind::fuse;
    } else if (type == "Replace") {
      step.kind = decoder_kind::replace;
      step.what = read_pattern(*member(*j, "pattern", true), where);
      step.content = f.string("content", "");
    } else if (type == "Strip") {
      step.kind = decoder_kind::strip;
      step.content = f.string("content", " ");
      if (step.content.empty() ||
          unicode::char_length(static_cast<unsigned char>(step.content[0])) != step.content.size())
        throw format_error(source_ + ": " + where + ".content must be one character");
      step.start = static_cast<std::size_t>(std::max<index_t>(0, f.integer("start", false, 0)));
      step.stop = static_cast<std::size_t>(std::max<index_t>(0, f.integer("stop", false, 0)));
    } else if (type == "Metaspace") {
      step.kind = decoder_kind::metaspace;
      step.content = read_replacement(f);
      step.what.literal = step.content;
      step.scheme = read_scheme(f);
    } else {
      throw format_error(source_ + ": " + where + " type '" + type + "' is not supported");
    }
    decoder_.push_back(std::move(step));
  }

  // --- encoding ---------------------------------------------------------------------------

  std::string normalize(std::string text) const {
    for (const auto& step : normalizer_) {
      switch (step.kind) {
        case normalizer_kind::nfc:
          text = unicode::normalize(text, unicode::normal_form::nfc);
          break;
        case normalizer_kind::nfd:
          text = unicode::normalize(text, unicode::normal_form::nfd);
          break;
        case normalizer_kind::nfkc:
          text = unicode::normalize(text, unicode::normal_form::nfkc);
          break;
        case normalizer_kind::nfkd:
          text = unicode::normalize(text, unicode::normal_form::nfkd);
          break;
        case normalizer_kind::prepend:
          if (!text.empty()) text = step.text + text;
          break;
        case normalizer_kind::replace:
          text = step.what.replace_all(text, step.text);
          break;
      }
    }
    return text;
  }

  /// The added token (of the given `normalized` kind) matching at text[i], longest first.
  const added_token* added_token_at(const std::string& text, std::size_t i, bool normalized) const {
    const added_token* best = nullptr;
    for (const std::size_t k : candidates_[normalized][static_cast<unsigned char>(text[i])]) {
      const added_token& a = added_[k];
      if ((!best || a.match.size() > best->match.size()) &&
          text.compare(i, a.match.size(), a.match) == 0)
        best = &a;
    }
    return best;
  }

  /// Splits the text pieces around added tokens (leftmost-longest, non-overlapping).
  std::vector<piece> split_added_tokens(std::vector<piece> pieces, bool normalized) const {
    if (!std::any_of(added_.begin(), added_.end(),
                     [&](const added_token& a) { return a.normalized == normalized; }))
      return pieces;
    std::vector<piece> out;
    for (auto& p : pieces) {
      if (p.id >= 0) {
        out.push_back(std::move(p));
        continue;
      }
      const std::string& text = p.text;
      std::size_t done = 0;  // text before `done` has been emitted
      for (std::size_t i = 0; i < text.size();) {
        const added_token* a = added_token_at(text, i, normalized);
        std::size_t start = i, stop = a ? i + a->match.size() : i;
        if (a && a->single_word) {
          const bool word_before = start > 0 && unicode::is_word_char(last_char(text, start));
          const bool word_after =
              stop < text.size() && unicode::is_word_char(unicode::code_point_at(text, stop));
          if (word_before || word_after) a = nullptr;
        }
        if (!a) {
          i += unicode::char_length(static_cast<unsigned char>(text[i]));
          continue;
        }
        if (a->lstrip) {
          while (start > done && unicode::is_whitespace(last_char(text, start)))
            start -= last_char_length(text, start);
        }
        if (a->rstrip) {
          while (stop < text.size() && unicode::is_whitespace(unicode::code_point_at(text, stop)))
            stop += unicode::char_length(static_cast<unsigned char>(text[stop]));
        }
        if (start > done)
          out.push_back({text.substr(done, start - done), -1, p.at_start && done == 0});
        out.push_back({text.substr(start, stop - start), a->id, false});
        done = i = stop;
      }
      if (done < text.size()) out.push_back({text.substr(done), -1, p.at_start && done == 0});
    }
    return out;
  }

  static std::size_t last_char_length(const std::string& text, std::size_t end) {
    std::size_t k = end - 1;
    while (k > 0 && (static_cast<unsigned char>(text[k]) & 0xC0) == 0x80) --k;
    return end - k;
  }
  static char32_t last_char(const std::string& text, std::size_t end) {
    return unicode::code_point_at(text, end - last_char_length(text, end));
  }

  /// Hugging Face's NormalizedString::split: (span, is_match) segments covering the text, then
  /// grouped by the behavior.
  static std::vector<std::pair<std::size_t, std::size_t>> split_spans(
      const std::string& text, const std::vector<std::pair<std::size_t, std::size_t>>& matches,
      split_behavior behavior, bool invert) {
    struct segment {
      std::size_t begin, end;
      bool is_match;
    };
    std::vector<segment> segments;
    std::size_t previous = 0;
    for (const auto& [begin, end] : matches) {
      if (begin > previous) segments.push_back({previous, begin, invert});
      segments.push_back({begin, end, !invert});
      previous = end;
    }
    if (previous < text.size()) segments.push_back({previous, text.size(), invert});
    std::vector<std::pair<std::size_t, std::size_t>> spans;
    bool previous_match = false;
    switch (behavior) {
      case split_behavior::isolated:
        for (const auto& s : segments) spans.emplace_back(s.begin, s.end);
        break;
      case split_behavior::removed:
        for (const auto& s : segments)
          if (!s.is_match) spans.emplace_back(s.begin, s.end);
        break;
      case split_behavior::contiguous:
        for (std::size_t k = 0; k < segments.size(); ++k) {
          if (k > 0 && segments[k].is_match == previous_match) {
            spans.back().second = segments[k].end;
          } else {
            spans.emplace_back(segments[k].begin, segments[k].end);
          }
          previous_match = segments[k].is_match;
        }
        break;
      case split_behavior::merged_with_previous:
        for (const auto& s : segments) {
          if (s.is_match && !previous_match && !spans.empty()) {
            spans.back().second = s.end;
          } else {
            spans.emplace_back(s.begin, s.end);
          }
          previous_match = s.is_match;
        }
        break;
      case split_behavior::merged_with_next:
        for (std::size_t k = segments.size(); k-- > 0;) {
          const auto& s = segments[k];
          if (s.is_match && !previous_match && !spans.empty()) {
            spans.back().first = s.begin;
          } else {
            spans.emplace_back(s.begin, s.end);
          }
          previous_match = s.is_match;
        }
        std::reverse(spans.begin(), spans.end());
        break;
    }
    return spans;
  }

  /// Character-class matches for the Digits pre-tokenizer: runs of numeric characters, or each
  /// one alone.
  static std::vector<std::pair<std::size_t, std::size_t>> digit_matches(const std::string& text,
                                                                        bool individual) {
    std::vector<std::pair<std::size_t, std::size_t>> matches;
    for (std::size_t i = 0; i < text.size();) {
      const std::size_t n = unicode::char_length(static_cast<unsigned char>(text[i]));
      if (unicode::is_numeric(unicode::code_point_at(text, i))) {
        if (!individual && !matches.empty() && matches.back().second == i) {
          matches.back().second = i + n;
        } else {
          matches.emplace_back(i, i + n);
        }
      }
      i += n;
    }
    return matches;
  }

  static void push_spans(const piece& p, const std::string& text,
                         const std::vector<std::pair<std::size_t, std::size_t>>& spans,
                         std::vector<piece>& out) {
    for (const auto& [begin, end] : spans) {
      if (end > begin)
        out.push_back({text.substr(begin, end - begin), -1, p.at_start && begin == 0});
    }
  }

  static const std::array<std::string, 256>& byte_level_alphabet() {
    static const auto alphabet = [] {
      std::array<std::string, 256> a;
      const auto cp = detail::gpt2_byte_code_points();
      for (std::size_t b = 0; b < 256; ++b) a[b] = unicode::to_utf8(cp[b]);
      return a;
    }();
    return alphabet;
  }

  std::vector<piece> pre_tokenize(const pre_tokenizer_step& step, std::vector<piece> pieces) const {
    static const unicode::regex gpt2_pattern(
        R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)");
    std::vector<piece> out;
    out.reserve(pieces.size());
    for (auto& p : pieces) {
      if (p.id >= 0) {
        out.push_back(std::move(p));
        continue;
      }
      switch (step.kind) {
        case pre_tokenizer_kind::split:
          push_spans(p, p.text,
                     split_spans(p.text, step.what.find_all(p.text), step.behavior, step.invert),
                     out);
          break;
        case pre_tokenizer_kind::digits:
          push_spans(p, p.text,
                     split_spans(p.text, digit_matches(p.text, step.individual_digits),
                                 step.individual_digits ? split_behavior::isolated
                                                        : split_behavior::contiguous,
                                 false),
                     out);
          break;
        case pre_tokenizer_kind::byte_level: {
          std::string text = std::move(p.text);
          if (step.add_prefix_space && text[0] != ' ') text = " " + text;
          std::vector<piece> parts;
          if (step.use_regex) {
            push_spans(
                p, text,
                split_spans(text, gpt2_pattern.find_all(text), split_behavior::isolated, false),
                parts);
          } else {
            parts.push_back({std::move(text), -1, p.at_start});
          }
          const auto& alphabet = byte_level_alphabet();
          for (auto& part : parts) {
            std::string mapped;
            mapped.reserve(part.text.size() * 2);
            for (const char c : part.text) mapped += alphabet[static_cast<unsigned char>(c)];
            out.push_back({std::move(mapped), -1, part.at_start});
          }
          break;
        }
        case pre_tokenizer_kind::metaspace: {
          static const pattern space{" ", nullptr};
          std::string text = space.replace_all(p.text, step.replacement);
          const bool prepend = step.scheme == prepend_scheme::always ||
                               (step.scheme == prepend_scheme::first && p.at_start);
          if (prepend && text.compare(0, step.replacement.size(), step.replacement) != 0)
            text = step.replacement + text;
          if (step.split) {
            push_spans(p, text,
                       split_spans(text, step.what.find_all(text), split_behavior::merged_with_next,
                                   false),
                       out);
          } else {
            out.push_back({std::move(text), -1, p.at_start});
          }
          break;
        }
      }
    }
    return out;
  }

  // --- decoding ---------------------------------------------------------------------------

  static std::vector<std::string> decode_step(const decoder_step& step,
                                              std::vector<std::string> tokens) {
    std::vector<std::string> out;
    switch (step.kind) {
      case decoder_kind::byte_level: {
        std::string bytes;
        for (const auto& t : tokens) {
          std::string raw;
          if (detail::gpt2_alphabet_to_bytes(t, raw)) {
            bytes += raw;
          } else {
            bytes += t;  // a token outside the byte alphabet (e.g. an added token) as it is
          }
        }
        out.push_back(unicode::utf8_lossy(bytes));
        break;
      }
      case decoder_kind::byte_fallback: {
        std::string pending;  // bytes of consecutive <0xXX> tokens
        const auto flush = [&] {
          if (pending.empty()) return;
          if (unicode::first_invalid_utf8(pending) == std::string::npos) {
            out.push_back(pending);
          } else {
            for (std::size_t k = 0; k < pending.size(); ++k) out.emplace_back("\xEF\xBF\xBD");
          }
          pending.clear();
        };
        for (auto& t : tokens) {
          int value = -1;
          if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
              std::isxdigit(static_cast<unsigned char>(t[3])) &&
              std::isxdigit(static_cast<unsigned char>(t[4])))
            value = std::stoi(t.substr(3, 2), nullptr, 16);
          if (value >= 0) {
            pending.push_back(static_cast<char>(value));
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        break;
      }
      case decoder_kind::replace:
        for (const auto& t : tokens) out.push_back(step.what.replace_all(t, step.content));
        break;
      case decoder_kind::fuse: {
        std::string all;
        for (const auto& t : tokens) all += t;
        out.push_back(std::move(all));
        break;
      }
      case decoder_kind::strip:
        for (auto& t : tokens) {
          const std::string& c = step.content;
          std::size_t begin = 0, end = t.size();
          for (std::size_t k = 0; k < step.start && t.compare(begin, c.size(), c) == 0; ++k)
            begin += c.size();
          for (std::size_t k = 0; k < step.stop && end >= begin + c.size() &&
                                  t.compare(end - c.size(), c.size(), c) == 0;
               ++k)
            end -= c.size();
          out.push_back(t.substr(begin, end - begin));
        }
        break;
      case decoder_kind::metaspace:
        // As the Rust library does: the replacement becomes a space, except in the first token,
        // where every replacement is dropped unless the scheme is "never" (so after a Fuse, the
        // whole text loses its spaces — Hugging Face's behavior, kept for exactness).
        for (std::size_t i = 0; i < tokens.size(); ++i) {
          const bool drop = i == 0 && step.scheme != prepend_scheme::never;
          out.push_back(step.what.replace_all(tokens[i], drop ? "" : " "));
        }
        break;
    }
    return out;
  }

  std::string source_;
  bpe_model model_;
  std::vector<bool> has_id_;           // [vocab_size]
  std::vector<bool> special_;          // [vocab_size] an added token marked special
  std::size_t model_vocab_count_ = 0;  // entries of model.vocab (Hugging Face's model size)
  std::vector<added_token> added_;
  std::vector<normalizer_step> normalizer_;
  std::vector<pre_tokenizer_step> pre_tokenizer_;
  std::vector<template_item> template_;
  std::vector<decoder_step> decoder_;
  std::array<std::vector<std::size_t>, 256> candidates_[2];  // [normalized][first byte] -> added_
};

}  // namespace eigenformer
