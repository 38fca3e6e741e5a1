// eigenformer/io/json_fields.hpp — reading the JSON files that describe a model (config.json,
// tokenizer.json, ...): parse one object, and typed field access whose every error names the file
// and the key. Requires nlohmann-json.
#pragma once

#include <climits>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"

namespace eigenformer {
namespace detail {

/// Typed access to a config.json object; every error names the file and the key.
class json_fields {
 public:
  json_fields(const nlohmann::json& j, std::string source) : j_(j), source_(std::move(source)) {}

  const nlohmann::json* find(const char* key) const {
    const auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  index_t integer(const char* key, bool required, index_t fallback) const {
    const auto* v = find(key);
    if (!v) {
      if (required) throw format_error(source_ + ": missing integer '" + key + "'");
      return fallback;
    }
    if (!v->is_number_integer()) {
      throw format_error(source_ + ": '" + key + "' is " + v->dump() + ", not an integer");
    }
    return v->get<index_t>();
  }
  double number(const char* key, double fallback) const {
    const auto* v = find(key);
    if (!v) return fallback;
    if (!v->is_number()) {
      throw format_error(source_ + ": '" + key + "' is " + v->dump() + ", not a number");
    }
    return v->get<double>();
  }
  bool boolean(const char* key, bool fallback) const {
    const auto* v = find(key);
    if (!v) return fallback;
    if (!v->is_boolean()) {
      throw format_error(source_ + ": '" + key + "' is " + v->dump() + ", not true or false");
    }
    return v->get<bool>();
  }
  std::string string(const char* key, const std::string& fallback) const {
    const auto* v = find(key);
    if (!v) return fallback;
    if (!v->is_string()) {
      throw format_error(source_ + ": '" + key + "' is " + v->dump() + ", not a string");
    }
    return v->get<std::string>();
  }
  /// An id or a list of ids (eos_token_id may be either).
  std::vector<token_id> ids(const char* key) const {
    const auto* v = find(key);
    std::vector<token_id> out;
    if (!v) return out;
    const auto add = [&](const nlohmann::json& e) {
      if (!e.is_number_integer() || e.get<long long>() < 0 || e.get<long long>() > INT32_MAX) {
        throw format_error(source_ + ": '" + key + "' holds " + e.dump() + ", not a token id");
      }
      out.push_back(static_cast<token_id>(e.get<long long>()));
    };
    if (v->is_array()) {
      for (const auto& e : *v) add(e);
    } else {
      add(*v);
    }
    return out;
  }
  const std::string& source() const { return source_; }

 private:
  const nlohmann::json& j_;
  std::string source_;
};

inline nlohmann::json parse_json_object(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw format_error(source + ": malformed JSON: " + e.what());
  }
  if (!j.is_object()) throw format_error(source + ": the top level is not a JSON object");
  return j;
}

inline std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error(path + ": cannot open file");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace detail
}  // namespace eigenformer
