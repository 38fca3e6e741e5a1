// eigenformer/tokenizer/text_tokenizer.hpp — the tokenizer a model ships, whichever kind it is:
// Hugging Face `tokenizer.json` (hf_tokenizer: Llama, Qwen, Mistral, SmolLM2, and GPT-2 too)
// when present, else GPT-2's vocab.json + merges.txt (gpt2_tokenizer), or a GGUF file's
// tokenizer metadata (gguf_tokenizer.hpp). Plus
// text_stream, which turns ids generated one at a time into printable text.
// Requires nlohmann-json, PCRE2 and utf8proc (through the two tokenizers).
#pragma once

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/tokenizer/gguf_tokenizer.hpp"
#include "eigenformer/tokenizer/gpt2_bpe.hpp"
#include "eigenformer/tokenizer/hf_tokenizer.hpp"

namespace eigenformer {

class text_tokenizer {
 public:
  /// `path` is a tokenizer.json file, a GGUF model file (its tokenizer metadata), or a directory
  /// holding tokenizer.json or vocab.json + merges.txt (io_error naming what is missing
  /// otherwise).
  static text_tokenizer from_path(const std::string& path) {
    text_tokenizer t;
    const std::string base = path.empty() || path.back() == '/' ? path : path + "/";
    if (is_file(path) && starts_with_gguf_magic(path)) {
      t.hf_ = std::make_shared<const hf_tokenizer>(gguf_tokenizer(gguf_file(path)));
    } else if (is_file(path) && !is_file(base + "tokenizer.json")) {
      t.hf_ = std::make_shared<const hf_tokenizer>(hf_tokenizer::from_file(path));
    } else if (is_file(base + "tokenizer.json")) {
      t.hf_ =
          std::make_shared<const hf_tokenizer>(hf_tokenizer::from_file(base + "tokenizer.json"));
    } else if (is_file(base + "vocab.json") && is_file(base + "merges.txt")) {
      t.gpt2_ = std::make_shared<const gpt2_tokenizer>(gpt2_tokenizer::from_directory(path));
    } else {
      throw io_error(path + ": no tokenizer.json, and no vocab.json + merges.txt");
    }
    return t;
  }

  explicit text_tokenizer(hf_tokenizer t)
      : hf_(std::make_shared<const hf_tokenizer>(std::move(t))) {}
  explicit text_tokenizer(gpt2_tokenizer t)
      : gpt2_(std::make_shared<const gpt2_tokenizer>(std::move(t))) {}

  /// The Hugging Face tokenizer, or null for vocab.json + merges.txt.
  const hf_tokenizer* hf() const { return hf_.get(); }

  index_t vocab_size() const { return hf_ ? hf_->vocab_size() : gpt2_->vocab_size(); }

  /// As Hugging Face's encode(text): with the post-processor's special tokens unless
  /// `add_special_tokens` is false (GPT-2's vocab.json tokenizer adds none either way).
  std::vector<token_id> encode(const std::string& text, bool add_special_tokens = true) const {
    return hf_ ? hf_->encode(text, add_special_tokens) : gpt2_->encode(text);
  }

  /// For a prompt: encode with special tokens, and when the text itself starts with the
  /// post-processor's BOS (a chat template or a user typed it), keep only one of the two.
  std::vector<token_id> encode_prompt(const std::string& text) const {
    auto ids = encode(text, true);
    if (!hf_) return ids;
    const auto prefix = hf_->prefix_special_ids();
    const auto n = prefix.size();
    if (n > 0 && ids.size() >= 2 * n && std::equal(prefix.begin(), prefix.end(), ids.begin()) &&
        std::equal(prefix.begin(), prefix.end(), ids.begin() + std::ptrdiff_t(n)))
      ids.erase(ids.begin(), ids.begin() + std::ptrdiff_t(n));
    return ids;
  }

  /// Ids to text. Hugging Face tokenizers give valid UTF-8 (U+FFFD for invalid bytes, as the Rust
  /// library does); GPT-2's vocab.json tokenizer gives the raw bytes.
  std::string decode(const std::vector<token_id>& ids, bool skip_special_tokens = false) const {
    return hf_ ? hf_->decode(ids, skip_special_tokens) : gpt2_->decode(ids);
  }

 private:
  text_tokenizer() = default;
  static bool is_file(const std::string& path) {
    std::error_code ec;
    return std::filesystem::is_regular_file(path, ec);
  }

  static bool starts_with_gguf_magic(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    char magic[4] = {};
    return in.read(magic, 4) && std::string(magic, 4) == "GGUF";
  }

  std::shared_ptr<const gpt2_tokenizer> gpt2_;
  std::shared_ptr<const hf_tokenizer> hf_;
};

/// Streaming detokenization: push each generated id, print what comes back. Decoders are not
/// token-local (Llama 2's strips the first space of the text, byte-fallback characters span
/// several tokens), so the whole sequence is decoded again and only the new end is returned;
/// text that ends in an incomplete character is held back until the character completes.
/// `context` (the prompt) is decoded with the new ids but never returned, so the first generated
/// word keeps its leading space. Special tokens are not shown.
class text_stream {
 public:
  explicit text_stream(const text_tokenizer& tokenizer, std::vector<token_id> context = {})
      : tokenizer_(tokenizer), ids_(std::move(context)) {
    printed_ = tokenizer_.decode(ids_, true).size();
  }

  std::string push(token_id id) {
    ids_.push_back(id);
    const std::string text = tokenizer_.decode(ids_, true);
    static const std::string replacement = "\xEF\xBF\xBD";
    const bool incomplete =
        tokenizer_.hf() ? text.size() >= 3 && text.compare(text.size() - 3, 3, replacement) == 0
                        : false;
    if (incomplete) return {};
    return take(text);
  }

  /// Whatever is still held back (an incomplete character at the very end).
  std::string finish() { return take(tokenizer_.decode(ids_, true)); }

 private:
  std::string take(const std::string& text) {
    // Decoding more ids normally extends the text; if a decoder rewrote earlier text, what was
    // printed stays and only the part past it is new.
    std::string fresh = text.size() > printed_ ? text.substr(printed_) : std::string();
    printed_ = std::max(printed_, text.size());
    return fresh;
  }

  const text_tokenizer& tokenizer_;
  std::vector<token_id> ids_;
  std::size_t printed_ = 0;
};

}  // namespace eigenformer
