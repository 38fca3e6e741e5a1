// eigenformer/io/safetensors.hpp — reader for the safetensors format.
// Requires nlohmann-json (Debian: nlohmann-json3-dev) in addition to Eigen.
//
// File layout: 8-byte little-endian header size N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [r, c], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}
// then the data bytes; offsets are relative to the start of the data. Nothing read from the file
// is trusted: sizes are checked against the file before anything is allocated or read, shape
// products are checked for overflow, and tensors must tile the data without overlap or holes.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>
#include <nlohmann/json.hpp>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/parallel.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/io/float_elements.hpp"
#include "eigenformer/io/mapped_file.hpp"

namespace eigenformer {

/// Every dtype of the safetensors specification. All are accepted in a header (checkpoints carry
/// integer and boolean buffers such as GPT-2's stored attention mask); only the floating-point
/// ones can be read into a matrix.
enum class dtype {
  f64,
  f32,
  f16,
  bf16,
  f8_e4m3,
  f8_e5m2,
  i64,
  u64,
  i32,
  u32,
  i16,
  u16,
  i8,
  u8,
  boolean
};

namespace detail {
struct dtype_entry {
  dtype type;
  const char* name;
  std::size_t size;
};
inline constexpr dtype_entry dtype_table[] = {
    {dtype::f64, "F64", 8},   {dtype::f32, "F32", 4},         {dtype::f16, "F16", 2},
    {dtype::bf16, "BF16", 2}, {dtype::f8_e4m3, "F8_E4M3", 1}, {dtype::f8_e5m2, "F8_E5M2", 1},
    {dtype::i64, "I64", 8},   {dtype::u64, "U64", 8},         {dtype::i32, "I32", 4},
    {dtype::u32, "U32", 4},   {dtype::i16, "I16", 2},         {dtype::u16, "U16", 2},
    {dtype::i8, "I8", 1},     {dtype::u8, "U8", 1},           {dtype::boolean, "BOOL", 1}};
}  // namespace detail

inline const char* dtype_name(dtype t) {
  for (const auto& e : detail::dtype_table) {
    if (e.type == t) return e.name;
  }
  return "?";
}

inline std::size_t dtype_size(dtype t) {
  for (const auto& e : detail::dtype_table) {
    if (e.type == t) return e.size;
  }
  return 0;
}

inline bool is_floating_point(dtype t) {
  return t == dtype::f64 || t == dtype::f32 || t == dtype::f16 || t == dtype::bf16;
}

struct tensor_info {
  std::string name;
  dtype type = dtype::f32;
  std::vector<std::int64_t> shape;
  std::size_t begin = 0;  // byte offset of the first element, relative to the data section
  std::size_t end = 0;    // one past the last byte

  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

namespace detail {
inline float_encoding encoding_of(dtype t) {
  switch (t) {
    case dtype::f64:
      return float_encoding::f64;
    case dtype::f32:
      return float_encoding::f32;
    case dtype::f16:
      return float_encoding::f16;
    default:
      return float_encoding::bf16;
  }
}
}  // namespace detail

/// A safetensors file read into memory, with its header validated.
class safetensors_file {
 public:
  /// Largest JSON header accepted (the reference implementation's limit), so a corrupt size
  /// field cannot make us allocate gigabytes.
  static constexpr std::uint64_t max_header_bytes = 100u << 20;

  /// Maps the file into memory (read-only; POSIX) or reads it, then validates the header.
  explicit safetensors_file(std::string path) : path_(std::move(path)) {
    if (!detail::host_is_little_endian()) {
      throw io_error(path_ + ": safetensors reading needs a little-endian host");
    }
    file_ = mapped_file(path_);
    parse();
  }

  /// Parses bytes already in memory; `name` is used in error messages.
  safetensors_file(std::vector<unsigned char> bytes, std::string name) : path_(std::move(name)) {
    file_ = mapped_file(std::move(bytes));
    parse();
  }

  const std::string& path() const { return path_; }
  const std::map<std::string, tensor_info>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }

  const tensor_info& info(const std::string& name) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end()) throw format_error(path_ + ": tensor '" + name + "' is missing");
    return it->second;
  }

  /// The tensor as a [rows x cols] row-major matrix of `Scalar`, converted from its dtype.
  /// `expected_shape` is checked exactly: {n} for vectors (returned as [1 x n]), {r, c} for
  /// matrices.
  template <class Scalar>
  matrix<Scalar> read(const std::string& name,
                      const std::vector<std::int64_t>& expected_shape) const {
    const tensor_info& t = info(name);
    if (t.shape != expected_shape) {
      throw format_error(detail::concat(path_, ": tensor '", name, "' has shape ",
                                        shape_string(t.shape), ", expected ",
                                        shape_string(expected_shape)));
    }
    if (expected_shape.empty() || expected_shape.size() > 2) {
      throw shape_error(detail::concat(path_, ": tensor '", name,
                                       "': only 1-D and 2-D tensors can be read as matrices"));
    }
    if (!is_floating_point(t.type)) {
      throw format_error(detail::concat(path_, ": tensor '", name, "' has dtype ",
                                        dtype_name(t.type),
                                        ", expected a floating-point dtype (F64, F32, F16, BF16)"));
    }
    const index_t rows = expected_shape.size() == 2 ? expected_shape[0] : 1;
    const index_t cols = expected_shape.back();
    matrix<Scalar> out(rows, cols);
    convert_float_elements(data_begin() + t.begin, detail::encoding_of(t.type), out.data(),
                           static_cast<std::size_t>(out.size()));
    return out;
  }

  static std::string shape_string(const std::vector<std::int64_t>& shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
      s += (i ? ", " : "") + std::to_string(shape[i]);
    }
    return s + "]";
  }

 private:
  const unsigned char* data_begin() const { return file_.data() + 8 + header_size_; }

  [[noreturn]] void fail(const std::string& what) const { throw format_error(path_ + ": " + what); }

  static bool parse_dtype(const std::string& s, dtype& out) {
    for (const auto& e : detail::dtype_table) {
      if (s == e.name) {
        out = e.type;
        return true;
      }
    }
    return false;
  }

  void parse() {
    if (file_.size() < 8) {
      fail(detail::concat("file of ", file_.size(),
                          " bytes is too short for the 8-byte header size"));
    }
    std::uint64_t header_size = 0;
    for (int i = 7; i >= 0; --i)
      header_size = (header_size << 8) | file_.data()[static_cast<std::size_t>(i)];
    if (header_size > file_.size() - 8) {
      fail(detail::concat("header size ", header_size, " is larger than the ", file_.size() - 8,
                          " bytes after the size field (truncated file?)"));
    }
    if (header_size > max_header_bytes) {
      fail(detail::concat("header size ", header_size, " exceeds the limit of ", max_header_bytes));
    }
    header_size_ = static_cast<std::size_t>(header_size);
    const std::size_t data_size = file_.size() - 8 - header_size_;

    nlohmann::json header;
    try {
      header = nlohmann::json::parse(file_.data() + 8, file_.data() + 8 + header_size_);
    } catch (const nlohmann::json::exception& e) {
      fail(std::string("malformed JSON header: ") + e.what());
    }
    if (!header.is_object()) fail("the JSON header is not an object");

    std::vector<const tensor_info*> by_offset;
    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__") {
        if (!entry.is_object()) fail("__metadata__ is not an object");
        for (const auto& [key, value] : entry.items()) {
          if (!value.is_string()) fail("__metadata__ value of '" + key + "' is not a string");
          metadata_[key] = value.get<std::string>();
        }
        continue;
      }
      tensors_[name] = parse_entry(name, entry, data_size);
    }
    for (const auto& kv : tensors_) by_offset.push_back(&kv.second);
    std::sort(by_offset.begin(), by_offset.end(), [](const tensor_info* a, const tensor_info* b) {
      return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    // Tensors must tile the data section: each starts where the previous ended.
    std::size_t covered = 0;
    const tensor_info* previous = nullptr;
    for (const tensor_info* t : by_offset) {
      if (t->begin < covered) {
        fail(detail::concat("tensor '", t->name, "' bytes [", t->begin, ", ", t->end,
                            ") overlap tensor '", previous->name, "' bytes [", previous->begin,
                            ", ", previous->end, ")"));
      }
      if (t->begin > covered) {
        fail(detail::concat("data bytes [", covered, ", ", t->begin,
                            ") belong to no tensor (a hole before tensor '", t->name, "')"));
      }
      covered = t->end;
      previous = t;
    }
    if (covered != data_size) {
      fail(detail::concat("tensors cover ", covered, " data bytes but the file holds ", data_size,
                          " (trailing bytes or truncated file)"));
    }
  }

  tensor_info parse_entry(const std::string& name, const nlohmann::json& entry,
                          std::size_t data_size) const {
    const std::string where = "tensor '" + name + "': ";
    if (!entry.is_object()) fail(where + "entry is not an object");
    tensor_info t;
    t.name = name;
    const auto field = [&](const char* key) -> const nlohmann::json& {
      const auto it = entry.find(key);
      if (it == entry.end()) fail(where + "has no '" + key + "'");
      return *it;
    };
    const auto& type = field("dtype");
    if (!type.is_string() || !parse_dtype(type.get<std::string>(), t.type)) {
      fail(where + "unknown dtype " + type.dump());
    }
    const auto& shape = field("shape");
    if (!shape.is_array()) fail(where + "shape is not an array");
    // Overflow-safe element count: every factor is checked against what could fit in the file.
    std::uint64_t numel = 1;
    for (const auto& d : shape) {
      if (!d.is_number_integer() || d.get<std::int64_t>() < 0) {
        fail(where + "shape " + shape.dump() + " has an entry that is not a non-negative integer");
      }
      const auto dim = d.get<std::uint64_t>();
      if (dim != 0 && numel > std::numeric_limits<std::uint64_t>::max() / dim) {
        fail(where + "shape " + shape.dump() + " overflows 64 bits");
      }
      numel *= dim;
      t.shape.push_back(static_cast<std::int64_t>(dim));
    }
    const std::uint64_t elem = dtype_size(t.type);
    if (numel > std::numeric_limits<std::uint64_t>::max() / elem) {
      fail(where + "shape " + shape.dump() + " overflows 64 bits of bytes");
    }
    const auto& offsets = field("data_offsets");
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_integer() ||
        !offsets[1].is_number_integer() || offsets[0].get<std::int64_t>() < 0 ||
        offsets[1].get<std::int64_t>() < 0) {
      fail(where + "data_offsets " + offsets.dump() + " is not two non-negative integers");
    }
    const auto begin = offsets[0].get<std::uint64_t>(), end = offsets[1].get<std::uint64_t>();
    if (begin > end || end > data_size) {
      fail(detail::concat(where, "data_offsets [", begin, ", ", end,
                          "] lie outside the data section of ", data_size, " bytes"));
    }
    if (end - begin != numel * elem) {
      fail(detail::concat(where, "data_offsets span ", end - begin, " bytes but shape ",
                          shape.dump(), " of ", dtype_name(t.type), " needs ", numel * elem));
    }
    t.begin = static_cast<std::size_t>(begin);
    t.end = static_cast<std::size_t>(end);
    return t;
  }

  std::string path_;
  mapped_file file_;
  std::size_t header_size_ = 0;
  std::map<std::string, tensor_info> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace eigenformer
