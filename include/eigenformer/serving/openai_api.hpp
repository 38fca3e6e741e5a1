// eigenformer/serving/openai_api.hpp — the OpenAI completions and chat completions API as plain
// data: a request body parsed and validated field by field, the responses, the streamed
// chunks, and the error objects. No HTTP here (examples/commands/serve.cpp connects it).
// Needs nlohmann-json (Debian nlohmann-json3-dev).
//
// Every field is checked for its type and range; a bad one is an api_error with status 400
// naming the field (the OpenAI error object's `param`). Supported: model, prompt (a string, one
// string in a list, or a list of token ids) or messages, max_tokens (max_completion_tokens),
// temperature, top_p, seed, stop (a string or up to 4), stream (+ stream_options.include_usage),
// n = 1; extensions top_k and repetition_penalty. Fields that would change the output and are
// not supported (n > 1, logprobs, echo, best_of, suffix, penalties other than 0, tools) are
// refused rather than ignored.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/model/sampler.hpp"

namespace eigenformer::openai {

using json = nlohmann::ordered_json;

/// An error the client sees: an HTTP status and an OpenAI error object.
class api_error : public error {
 public:
  api_error(int status_, std::string type_, const std::string& message, std::string param_ = {},
            std::string code_ = {})
      : error(message),
        status(status_),
        type(std::move(type_)),
        param(std::move(param_)),
        code(std::move(code_)) {}
  int status;
  std::string type, param, code;

  /// {"error": {"message", "type", "param", "code"}}
  json body() const {
    json e = {{"message", what()}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
    if (!param.empty()) e["param"] = param;
    if (!code.empty()) e["code"] = code;
    return json{{"error", e}};
  }
};

inline api_error invalid_request(const std::string& message, const std::string& param = {}) {
  return api_error(400, "invalid_request_error", message, param);
}

struct api_request {
  bool chat = false;
  std::string model;
  std::string prompt;                   // completions: the text (when prompt_tokens is empty)
  std::vector<token_id> prompt_tokens;  // completions given token ids
  json messages = json::array();        // chat: the conversation as sent
  index_t max_tokens = 0;               // 0: not given (the server picks: the rest of the context)
  sampling_params sampling;
  bool seed_given = false;
  std::vector<std::string> stop;
  bool stream = false, include_usage = false;
};

namespace detail {

using eigenformer::detail::concat;

inline const json* field(const json& body, const char* name) {
  const auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

inline double number_field(const json& body, const char* name, double low, double high,
                           bool low_open, double fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_number()) throw invalid_request(concat("'", name, "' must be a number"), name);
  const double x = v->get<double>();
  if (!(low_open ? x > low : x >= low) || !(x <= high)) {
    throw invalid_request(concat("'", name, "' is ", x, "; it must be in ", low_open ? "(" : "[",
                                 low, ", ", high, "]"),
                          name);
  }
  return x;
}

inline std::int64_t integer_field(const json& body, const char* name, std::int64_t low,
                                  std::int64_t high, std::int64_t fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_number_integer())
    throw invalid_request(concat("'", name, "' must be an integer"), name);
  if (v->is_number_unsigned() && v->get<std::uint64_t>() > std::uint64_t(high))
    throw invalid_request(concat("'", name, "' must be at most ", high), name);
  const auto x = v->get<std::int64_t>();
  if (x < low || x > high)
    throw invalid_request(concat("'", name, "' is ", x, "; it must be in [", low, ", ", high, "]"),
                          name);
  return x;
}

inline bool bool_field(const json& body, const char* name, bool fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_boolean()) throw invalid_request(concat("'", name, "' must be true or false"), name);
  return v->get<bool>();
}

// Fields that would change the output, accepted only at their neutral value.
inline void refuse_unsupported(const json& body) {
  for (const char* name : {"logprobs", "echo"})
    if (bool_field(body, name, false))
      throw invalid_request(concat("'", name, "' is not supported"), name);
  if (const json* v = field(body, "top_logprobs"); v && !(v->is_number_integer() && *v == 0))
    throw invalid_request("'top_logprobs' is not supported", "top_logprobs");
  for (const char* name : {"presence_penalty", "frequency_penalty"}) {
    if (number_field(body, name, -2.0, 2.0, false, 0.0) != 0.0) {
      throw invalid_request(concat("'", name, "' is not supported (use repetition_penalty)"), name);
    }
  }
  if (integer_field(body, "n", 1, 1, 1) != 1) throw invalid_request("'n' must be 1", "n");
  if (integer_field(body, "best_of", 1, 1, 1) != 1)
    throw invalid_request("'best_of' must be 1", "best_of");
  for (const char* name : {"suffix", "tools", "functions", "logit_bias", "response_format"}) {
    const json* v = field(body, name);
    if (!v) continue;
    const bool empty = (v->is_string() && v->get_ref<const std::string&>().empty()) ||
                       ((v->is_array() || v->is_object()) && v->empty());
    if (!empty) throw invalid_request(concat("'", name, "' is not supported"), name);
  }
}

inline void check_messages(const json& messages) {
  if (!messages.is_array() || messages.empty())
    throw invalid_request("'messages' must be a non-empty list of messages", "messages");
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    const std::string where = concat("messages[", i, "]");
    if (!m.is_object()) throw invalid_request(where + " must be an object", "messages");
    const json* role = field(m, "role");
    if (!role || !role->is_string())
      throw invalid_request(where + ".role must be a string", "messages");
    const std::string r = role->get<std::string>();
    if (r != "system" && r != "user" && r != "assistant" && r != "tool" && r != "developer") {
      throw invalid_request(
          concat(where, ".role '", r, "' is not one of system, developer, user, assistant, tool"),
          "messages");
    }
    const json* content = field(m, "content");
    if (!content) {
      if (r == "assistant") continue;  // an assistant turn that only called tools
      throw invalid_request(where + ".content is missing", "messages");
    }
    if (content->is_string()) continue;
    if (!content->is_array())
      throw invalid_request(where + ".content must be a string or a list of parts", "messages");
    for (const json& part : *content) {
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
          !part["text"].is_string()) {
        throw invalid_request(
            where + ".content: only {\"type\": \"text\", \"text\": ...} parts " + "are supported",
            "messages");
      }
    }
  }
}

// Content given as a list of text parts becomes one string, as most chat templates expect.
inline json flatten_contents(json messages) {
  for (json& m : messages) {
    if (m.contains("content") && m["content"].is_array()) {
      std::string text;
      for (const json& part : m["content"]) text += part["text"].get<std::string>();
      m["content"] = text;
    }
  }
  return messages;
}

}  // namespace detail

/// Parses and validates a request body; throws api_error (400) naming the bad field.
inline api_request parse_request(const std::string& body_text, bool chat) {
  json body;
  try {
    body = json::parse(body_text);
  } catch (const json::exception& e) {
    throw invalid_request(std::string("the body is not valid JSON: ") + e.what());
  }
  if (!body.is_object()) throw invalid_request("the body must be a JSON object");
  api_request r;
  r.chat = chat;
  if (const json* m = detail::field(body, "model")) {
    if (!m->is_string()) throw invalid_request("'model' must be a string", "model");
    r.model = m->get<std::string>();
  }
  if (chat) {
    if (body.contains("prompt"))
      throw invalid_request("chat takes 'messages', not 'prompt'", "prompt");
    const json* messages = detail::field(body, "messages");
    if (!messages) throw invalid_request("'messages' is required", "messages");
    detail::check_messages(*messages);
    r.messages = detail::flatten_contents(*messages);
  } else {
    const json* prompt = detail::field(body, "prompt");
    if (!prompt) throw invalid_request("'prompt' is required", "prompt");
    if (prompt->is_string()) {
      r.prompt = prompt->get<std::string>();
    } else if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string()) {
      r.prompt = (*prompt)[0].get<std::string>();
    } else if (prompt->is_array() && !prompt->empty() && (*prompt)[0].is_number()) {
      for (const json& t : *prompt) {
        if (!t.is_number_integer() || t.get<std::int64_t>() < 0 ||
            t.get<std::int64_t>() > std::int64_t(INT32_MAX))
          throw invalid_request("'prompt': token ids must be non-negative integers", "prompt");
        r.prompt_tokens.push_back(token_id(t.get<std::int64_t>()));
      }
    } else if (prompt->is_array() && prompt->size() > 1) {
      throw invalid_request("'prompt': one prompt per request (send the others separately)",
                            "prompt");
    } else {
      throw invalid_request("'prompt' must be a string or a list of token ids", "prompt");
    }
    if (r.prompt.empty() && r.prompt_tokens.empty())
      throw invalid_request("'prompt' is empty", "prompt");
  }
  const char* max_name =
      detail::field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  r.max_tokens = index_t(detail::integer_field(body, max_name, 1, INT32_MAX, chat ? 0 : 16));
  r.sampling.temperature = detail::number_field(body, "temperature", 0.0, 2.0, false, 1.0);
  r.sampling.top_p = detail::number_field(body, "top_p", 0.0, 1.0, true, 1.0);
  r.sampling.top_k = index_t(detail::integer_field(body, "top_k", 0, INT32_MAX, 0));
  r.sampling.repetition_penalty =
      detail::number_field(body, "repetition_penalty", 0.0, 100.0, true, 1.0);
  if (detail::field(body, "seed")) {
    r.sampling.seed = std::uint64_t(detail::integer_field(body, "seed", INT64_MIN, INT64_MAX, 0));
    r.seed_given = true;
  }
  if (const json* stop = detail::field(body, "stop")) {
    if (stop->is_string()) {
      r.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array() && stop->size() <= 4) {
      for (const json& s : *stop) {
        if (!s.is_string()) throw invalid_request("'stop' must be strings", "stop");
        r.stop.push_back(s.get<std::string>());
      }
    } else {
      throw invalid_request("'stop' must be a string or a list of up to 4 strings", "stop");
    }
    for (const auto& s : r.stop)
      if (s.empty()) throw invalid_request("'stop' strings must not be empty", "stop");
  }
  r.stream = detail::bool_field(body, "stream", false);
  if (const json* options = detail::field(body, "stream_options")) {
    if (!options->is_object())
      throw invalid_request("'stream_options' must be an object", "stream_options");
    if (!r.stream)
      throw invalid_request("'stream_options' is only allowed with stream", "stream_options");
    r.include_usage = detail::bool_field(*options, "include_usage", false);
  }
  detail::refuse_unsupported(body);
  return r;
}

/// Text as generated, released once it cannot be the start of a stop string: push() returns
/// what may be sent now; after a stop string, `stopped` is set and the text ends before it.
class stop_text {
 public:
  explicit stop_text(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  std::string push(const std::string& text) {
    if (stopped) return {};
    pending_ += text;
    std::size_t first = std::string::npos;
    for (const auto& s : stops_) first = std::min(first, pending_.find(s));
    if (first != std::string::npos) {
      stopped = true;
      std::string out = pending_.substr(0, first);
      pending_.clear();
      return out;
    }
    // Hold back the longest end of the text that a stop string starts with.
    std::size_t hold = 0;
    for (const auto& s : stops_) {
      for (std::size_t n = std::min(s.size() - 1, pending_.size()); n > hold; --n) {
        if (pending_.compare(pending_.size() - n, n, s, 0, n) == 0) {
          hold = n;
          break;
        }
      }
    }
    std::string out = pending_.substr(0, pending_.size() - hold);
    pending_.erase(0, pending_.size() - hold);
    return out;
  }

  /// The held-back end, when the generation ended without a stop string.
  std::string finish() {
    std::string out;
    if (!stopped) out.swap(pending_);
    return out;
  }

  bool stopped = false;

 private:
  std::vector<std::string> stops_;
  std::string pending_;
};

struct usage_counts {
  index_t prompt_tokens = 0, completion_tokens = 0;
  json to_json() const {
    return {{"prompt_tokens", prompt_tokens},
            {"completion_tokens", completion_tokens},
            {"total_tokens", prompt_tokens + completion_tokens}};
  }
};

/// The whole response of a non-streamed request.
inline json response(const api_request& r, const std::string& id, std::int64_t created,
                     const std::string& model, const std::string& text,
                     const std::string& finish_reason, const usage_counts& usage) {
  json choice = {{"index", 0}};
  if (r.chat) {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = finish_reason;
  return {{"id", id},
          {"object", r.chat ? "chat.completion" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array({choice})},
          {"usage", usage.to_json()}};
}

/// One streamed chunk: new text (a chat's first chunk also carries the role), or the end
/// (finish_reason set, no text).
inline json chunk(const api_request& r, const std::string& id, std::int64_t created,
                  const std::string& model, const std::string& text, bool first,
                  const std::string& finish_reason) {
  json choice = {{"index", 0}};
  if (r.chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (finish_reason.empty()) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = finish_reason.empty() ? json(nullptr) : json(finish_reason);
  return {{"id", id},
          {"object", r.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array({choice})}};
}

/// The last chunk of a stream with stream_options.include_usage: no choices, the counts.
inline json usage_chunk(const api_request& r, const std::string& id, std::int64_t created,
                        const std::string& model, const usage_counts& usage) {
  return {{"id", id},
          {"object", r.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array()},
          {"usage", usage.to_json()}};
}

/// JSON text for the wire; invalid UTF-8 in generated text (a byte-level tokenizer can cut a
/// character) becomes U+FFFD instead of an exception.
inline std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace eigenformer::openai
