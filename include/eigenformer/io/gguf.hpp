// eigenformer/io/gguf.hpp — reader for GGUF (v2 and v3), the file format of llama.cpp/ggml.
//
// Layout (all little-endian):
//   "GGUF" | u32 version | u64 tensor_count | u64 metadata_kv_count
//   metadata: kv_count x { string key | u32 value_type | value }
//   tensor infos: tensor_count x { string name | u32 n_dims | n_dims x u64 ne | u32 ggml_type |
//                                  u64 offset }
//   padding to `general.alignment` (default 32), then the tensor data; each offset is relative
//   to the start of the data and a multiple of the alignment.
// A string is u64 length + bytes (no terminator); an array is u32 element type + u64 count +
// elements. ne[0] is the fastest-moving dimension: a ggml matrix of ne = {cols, rows} is a
// row-major [rows x cols] matrix, the layout of our weights.
//
// The file is outside input: every count, length, dimension and offset is checked against the
// bytes that remain before anything is allocated or read, and tensors must lie inside the data,
// aligned and without overlap. Every failure is a format_error naming the field.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <Eigen/Core>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/io/float_elements.hpp"
#include "eigenformer/io/mapped_file.hpp"
#include "eigenformer/quant/blocks.hpp"
#include "eigenformer/quant/k_quants.hpp"
#include "eigenformer/quant/quantized_matrix.hpp"

namespace eigenformer {

/// ggml's tensor types (the numbers are the file's). Only those in gguf_type_traits are
/// accepted; any other number is refused by name or number.
enum class ggml_type : std::uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q5_0 = 6,
  q5_1 = 7,
  q8_0 = 8,
  q8_1 = 9,
  q2_k = 10,
  q3_k = 11,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
  q8_k = 15,
  bf16 = 30,
};

/// Weights per block and bytes per block of a ggml type (a float type is a block of one).
struct ggml_type_traits {
  ggml_type type;
  const char* name;
  std::uint64_t block_weights;
  std::uint64_t block_bytes;
};

inline constexpr ggml_type_traits ggml_types[] = {
    {ggml_type::f32, "F32", 1, 4},       {ggml_type::f16, "F16", 1, 2},
    {ggml_type::bf16, "BF16", 1, 2},     {ggml_type::q8_0, "Q8_0", 32, 34},
    {ggml_type::q4_0, "Q4_0", 32, 18},   {ggml_type::q5_0, "Q5_0", 32, 22},
    {ggml_type::q5_1, "Q5_1", 32, 24},   {ggml_type::q4_k, "Q4_K", 256, 144},
    {ggml_type::q5_k, "Q5_K", 256, 176}, {ggml_type::q6_k, "Q6_K", 256, 210},
};

/// The traits of `t`, or nullptr for a type this library does not read.
inline const ggml_type_traits* find_ggml_type(std::uint32_t t) {
  for (const auto& e : ggml_types)
    if (static_cast<std::uint32_t>(e.type) == t) return &e;
  return nullptr;
}

/// Names of ggml types that exist but are not read here, for clear errors.
inline std::string ggml_type_name(std::uint32_t t) {
  if (const auto* e = find_ggml_type(t)) return e->name;
  static const std::map<std::uint32_t, const char*> others = {
      {3, "Q4_1"},     {9, "Q8_1"},    {10, "Q2_K"},    {11, "Q3_K"},  {15, "Q8_K"},
      {16, "IQ2_XXS"}, {17, "IQ2_XS"}, {18, "IQ3_XXS"}, {19, "IQ1_S"}, {20, "IQ4_NL"},
      {21, "IQ3_S"},   {22, "IQ2_S"},  {23, "IQ4_XS"},  {24, "I8"},    {25, "I16"},
      {26, "I32"},     {27, "I64"},    {28, "F64"},     {29, "IQ1_M"}, {34, "TQ1_0"},
      {35, "TQ2_0"}};
  const auto it = others.find(t);
  return it != others.end() ? it->second : "type " + std::to_string(t);
}

/// The library's quantized type for a GGUF tensor type (the numbers are the same), or false
/// for a float type.
inline bool quant_type_of(ggml_type t, quant_type& out) {
  for (const auto& e : quant_types) {
    if (static_cast<std::uint32_t>(e.type) == static_cast<std::uint32_t>(t)) {
      out = e.type;
      return true;
    }
  }
  return false;
}

/// One row of n weights of quantized type `t` (Q8_0, Q4_0, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) -> y[0:n].
inline void dequantize_row(ggml_type t, const unsigned char* row, float* y, index_t n) {
  quant_type q{};
  if (!quant_type_of(t, q)) {
    throw format_error("dequantize_row: " + ggml_type_name(std::uint32_t(t)) +
                       " is not a quantized type");
  }
  dequantize_row(q, row, y, n);
}

/// One metadata value. Arrays hold their elements as values too (strings, numbers).
struct gguf_value {
  enum class kind : std::uint32_t {
    u8 = 0,
    i8 = 1,
    u16 = 2,
    i16 = 3,
    u32 = 4,
    i32 = 5,
    f32 = 6,
    boolean = 7,
    string = 8,
    array = 9,
    u64 = 10,
    i64 = 11,
    f64 = 12
  };
  kind type = kind::u8;
  std::variant<std::uint64_t, std::int64_t, double, bool, std::string, std::vector<gguf_value>>
      value;
  kind element_type = kind::u8;  // array: the elements' type

  bool is_integer() const {
    return type != kind::f32 && type != kind::f64 && type != kind::boolean &&
           type != kind::string && type != kind::array;
  }
};

/// A tensor's entry: ne[0] is the row length (fastest dimension).
struct gguf_tensor_info {
  std::string name;
  std::vector<std::uint64_t> ne;  // 1 to 4 dimensions
  ggml_type type = ggml_type::f32;
  std::uint64_t offset = 0;  // from the start of the data section
  std::uint64_t bytes = 0;   // its data size

  std::uint64_t elements() const {
    std::uint64_t n = 1;
    for (const auto d : ne) n *= d;
    return n;
  }
};

class gguf_file {
 public:
  /// Limits that keep a hostile file from making us allocate much before its bytes are seen.
  static constexpr std::uint64_t max_string_bytes = 1u << 30;
  static constexpr std::uint32_t max_dims = 4;

  explicit gguf_file(const std::string& path) : path_(path), file_(path, /*populate=*/false) {
    parse();
  }
  gguf_file(std::vector<unsigned char> bytes, std::string name)
      : path_(std::move(name)), file_(std::move(bytes)) {
    parse();
  }

  const std::string& path() const { return path_; }
  std::uint32_t version() const { return version_; }
  std::uint64_t alignment() const { return alignment_; }
  const std::map<std::string, gguf_value>& metadata() const { return metadata_; }
  const std::vector<gguf_tensor_info>& tensors() const { return tensors_; }

  bool has(const std::string& key) const { return metadata_.count(key) != 0; }
  const gguf_value& value(const std::string& key) const {
    const auto it = metadata_.find(key);
    if (it == metadata_.end()) throw format_error(path_ + ": metadata '" + key + "' is missing");
    return it->second;
  }
  /// A string value (format_error if missing or of another type).
  std::string string(const std::string& key) const {
    const gguf_value& v = value(key);
    if (v.type != gguf_value::kind::string) fail("metadata '" + key + "' is not a string");
    return std::get<std::string>(v.value);
  }
  /// An integer value of any integer type, checked to fit in [lo, hi].
  std::int64_t integer(const std::string& key, std::int64_t lo = 0,
                       std::int64_t hi = std::numeric_limits<std::int64_t>::max()) const {
    const gguf_value& v = value(key);
    if (!v.is_integer()) fail("metadata '" + key + "' is not an integer");
    const std::int64_t out = as_int64(v, "metadata '" + key + "'");
    if (out < lo || out > hi)
      fail(detail::concat("metadata '", key, "' = ", out, " is outside [", lo, ", ", hi, "]"));
    return out;
  }
  /// A bool value.
  bool boolean(const std::string& key) const {
    const auto* b = std::get_if<bool>(&value(key).value);
    if (!b) fail("metadata '" + key + "' is not a bool");
    return *b;
  }
  /// An array of strings.
  std::vector<std::string> strings(const std::string& key) const {
    const auto& items = array(key, gguf_value::kind::string, "strings");
    std::vector<std::string> out;
    out.reserve(items.size());
    for (const auto& item : items) out.push_back(std::get<std::string>(item.value));
    return out;
  }
  /// An array of integers (of any one integer type, each fitting in int64).
  std::vector<std::int64_t> integers(const std::string& key) const {
    const gguf_value& v = value(key);
    const auto* items = std::get_if<std::vector<gguf_value>>(&v.value);
    if (!items || (!items->empty() && !items->front().is_integer()))
      fail("metadata '" + key + "' is not an array of integers");
    std::vector<std::int64_t> out;
    out.reserve(items->size());
    for (const auto& item : *items) out.push_back(as_int64(item, "metadata '" + key + "' entry"));
    return out;
  }
  /// An array of floating-point values (f32 or f64).
  std::vector<double> numbers(const std::string& key) const {
    const gguf_value& v = value(key);
    const auto* items = std::get_if<std::vector<gguf_value>>(&v.value);
    if (!items || (!items->empty() && !std::holds_alternative<double>(items->front().value)))
      fail("metadata '" + key + "' is not an array of floats");
    std::vector<double> out;
    out.reserve(items->size());
    for (const auto& item : *items) out.push_back(std::get<double>(item.value));
    return out;
  }
  /// A floating-point value (f32 or f64; integers are accepted too).
  double number(const std::string& key) const {
    const gguf_value& v = value(key);
    if (const auto* d = std::get_if<double>(&v.value)) return *d;
    if (v.is_integer()) return double(integer(key, std::numeric_limits<std::int64_t>::min()));
    fail("metadata '" + key + "' is not a number");
  }

  const gguf_tensor_info* find_tensor(const std::string& name) const {
    const auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
  }
  const gguf_tensor_info& tensor(const std::string& name) const {
    const auto* t = find_tensor(name);
    if (!t) fail("tensor '" + name + "' is missing");
    return *t;
  }
  /// The tensor's bytes inside the file (valid as long as this object or a copy lives).
  const unsigned char* tensor_data(const gguf_tensor_info& t) const {
    return file_.data() + data_start_ + t.offset;
  }

  /// A tensor as a row-major float matrix: ne = {cols, rows} gives [rows x cols], a vector
  /// ne = {n} gives [1 x n]. F32/F16/BF16 are converted; quantized types are dequantized exactly
  /// as ggml does (in float, then converted to Scalar). format_error for more than 2 dims.
  template <class Scalar>
  matrix<Scalar> read_float(const std::string& name) const {
    const gguf_tensor_info& t = tensor(name);
    if (t.ne.size() > 2) fail(detail::concat("tensor '", name, "' has ", t.ne.size(), " dims"));
    const index_t cols = index_t(t.ne[0]), rows = t.ne.size() == 2 ? index_t(t.ne[1]) : 1;
    matrix<Scalar> out(rows, cols);
    const unsigned char* data = tensor_data(t);
    const auto float_type = [&](float_encoding e) {
      convert_float_elements(data, e, out.data(), static_cast<std::size_t>(out.size()));
    };
    switch (t.type) {
      case ggml_type::f32:
        float_type(float_encoding::f32);
        return out;
      case ggml_type::f16:
        float_type(float_encoding::f16);
        return out;
      case ggml_type::bf16:
        float_type(float_encoding::bf16);
        return out;
      default:
        break;
    }
    const std::uint64_t row_bytes = t.bytes / std::uint64_t(rows);
    parallel_for(rows, [&](index_t r) {
      std::vector<float> row(static_cast<std::size_t>(cols));
      dequantize_row(t.type, data + std::uint64_t(r) * row_bytes, row.data(), cols);
      for (index_t c = 0; c < cols; ++c) out(r, c) = Scalar(row[std::size_t(c)]);
    });
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw format_error(path_ + ": " + what); }

  /// An integer value as int64 (a u64 above its range is refused, naming `what`).
  std::int64_t as_int64(const gguf_value& v, const std::string& what) const {
    if (const auto* u = std::get_if<std::uint64_t>(&v.value)) {
      if (*u > std::uint64_t(std::numeric_limits<std::int64_t>::max()))
        fail(detail::concat(what, " = ", *u, " does not fit in 64-bit signed integers"));
      return std::int64_t(*u);
    }
    return std::get<std::int64_t>(v.value);
  }
  const std::vector<gguf_value>& array(const std::string& key, gguf_value::kind element,
                                       const char* what) const {
    const gguf_value& v = value(key);
    const auto* items = std::get_if<std::vector<gguf_value>>(&v.value);
    if (!items || v.element_type != element)
      fail("metadata '" + key + "' is not an array of " + what);
    return *items;
  }

  // --- a bounds-checked cursor over the file ---
  void need(std::uint64_t n, const std::string& field) const {
    if (n > file_.size() - pos_)
      fail(detail::concat(field, " needs ", n, " bytes at offset ", pos_, ", but the file has ",
                          file_.size(), " bytes"));
  }
  template <class T>
  T read_pod(const std::string& field) {
    need(sizeof(T), field);
    T v;
    std::memcpy(&v, file_.data() + pos_, sizeof(T));  // little-endian host checked in parse()
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const std::string& field) {
    const auto n = read_pod<std::uint64_t>(field + " length");
    if (n > max_string_bytes) fail(detail::concat(field, " length ", n, " is too large"));
    need(n, field);
    std::string s(reinterpret_cast<const char*>(file_.data() + pos_), std::size_t(n));
    pos_ += n;
    return s;
  }

  /// Bytes one element of `k` takes at least (strings: their length field).
  static std::uint64_t min_element_bytes(gguf_value::kind k) {
    switch (k) {
      case gguf_value::kind::u8:
      case gguf_value::kind::i8:
      case gguf_value::kind::boolean:
        return 1;
      case gguf_value::kind::u16:
      case gguf_value::kind::i16:
        return 2;
      case gguf_value::kind::u32:
      case gguf_value::kind::i32:
      case gguf_value::kind::f32:
        return 4;
      default:
        return 8;  // u64, i64, f64, and a string's or nested array's length field
    }
  }

  gguf_value read_value(std::uint32_t raw_type, const std::string& field, int depth) {
    if (raw_type > 12) fail(detail::concat(field, " has unknown value type ", raw_type));
    gguf_value v;
    v.type = static_cast<gguf_value::kind>(raw_type);
    switch (v.type) {
      case gguf_value::kind::u8:
        v.value = std::uint64_t(read_pod<std::uint8_t>(field));
        break;
      case gguf_value::kind::i8:
        v.value = std::int64_t(read_pod<std::int8_t>(field));
        break;
      case gguf_value::kind::u16:
        v.value = std::uint64_t(read_pod<std::uint16_t>(field));
        break;
      case gguf_value::kind::i16:
        v.value = std::int64_t(read_pod<std::int16_t>(field));
        break;
      case gguf_value::kind::u32:
        v.value = std::uint64_t(read_pod<std::uint32_t>(field));
        break;
      case gguf_value::kind::i32:
        v.value = std::int64_t(read_pod<std::int32_t>(field));
        break;
      case gguf_value::kind::u64:
        v.value = read_pod<std::uint64_t>(field);
        break;
      case gguf_value::kind::i64:
        v.value = read_pod<std::int64_t>(field);
        break;
      case gguf_value::kind::f32:
        v.value = double(read_pod<float>(field));
        break;
      case gguf_value::kind::f64:
        v.value = read_pod<double>(field);
        break;
      case gguf_value::kind::boolean: {
        const auto b = read_pod<std::uint8_t>(field);
        if (b > 1) fail(detail::concat(field, " is a bool of value ", int(b)));
        v.value = b == 1;
        break;
      }
      case gguf_value::kind::string:
        v.value = read_string(field);
        break;
      case gguf_value::kind::array: {
        if (depth > 0) fail(field + " is an array of arrays (not supported)");
        const auto element = read_pod<std::uint32_t>(field + " element type");
        if (element > 12) fail(detail::concat(field, " has unknown element type ", element));
        v.element_type = static_cast<gguf_value::kind>(element);
        const auto count = read_pod<std::uint64_t>(field + " count");
        // Each element takes at least min_element_bytes: a count the file cannot hold is refused
        // before any allocation.
        if (count > (file_.size() - pos_) / min_element_bytes(v.element_type))
          fail(detail::concat(field, " count ", count, " is more than the file can hold"));
        std::vector<gguf_value> items;
        items.reserve(std::size_t(count));
        for (std::uint64_t i = 0; i < count; ++i) items.push_back(read_value(element, field, 1));
        v.value = std::move(items);
        break;
      }
    }
    return v;
  }

  void parse() {
    if (!detail::host_is_little_endian()) fail("GGUF reading needs a little-endian host");
    need(4, "magic");
    if (std::memcmp(file_.data(), "GGUF", 4) != 0) fail("not a GGUF file (bad magic)");
    pos_ = 4;
    version_ = read_pod<std::uint32_t>("version");
    if (version_ != 2 && version_ != 3)
      fail(detail::concat("GGUF version ", version_, " is not supported (2 and 3 are)"));
    const auto tensor_count = read_pod<std::uint64_t>("tensor_count");
    const auto kv_count = read_pod<std::uint64_t>("metadata_kv_count");
    // A key-value pair takes at least 8 + 4 + 1 bytes, a tensor info 8 + 4 + 8 + 4 + 8.
    if (kv_count > (file_.size() - pos_) / 13)
      fail(detail::concat("metadata_kv_count ", kv_count, " is more than the file can hold"));
    if (tensor_count > (file_.size() - pos_) / 32)
      fail(detail::concat("tensor_count ", tensor_count, " is more than the file can hold"));
    for (std::uint64_t i = 0; i < kv_count; ++i) {
      std::string key = read_string(detail::concat("metadata key #", i));
      const auto type = read_pod<std::uint32_t>("metadata '" + key + "' type");
      gguf_value v = read_value(type, "metadata '" + key + "'", 0);
      if (!metadata_.emplace(key, std::move(v)).second)
        fail("metadata key '" + key + "' appears twice");
    }
    if (has("general.alignment")) {
      const std::int64_t a = integer("general.alignment", 1, 1 << 20);
      if ((a & (a - 1)) != 0) fail(detail::concat("general.alignment ", a, " is not a power of 2"));
      alignment_ = std::uint64_t(a);
    }
    tensors_.reserve(std::size_t(tensor_count));
    for (std::uint64_t i = 0; i < tensor_count; ++i) {
      gguf_tensor_info t;
      t.name = read_string(detail::concat("tensor #", i, " name"));
      const std::string field = "tensor '" + t.name + "'";
      const auto n_dims = read_pod<std::uint32_t>(field + " n_dims");
      if (n_dims == 0 || n_dims > max_dims)
        fail(detail::concat(field, " has ", n_dims, " dimensions (1 to 4 are valid)"));
      std::uint64_t elements = 1;
      for (std::uint32_t d = 0; d < n_dims; ++d) {
        const auto n = read_pod<std::uint64_t>(field + " ne");
        if (n == 0 || n > (std::uint64_t(1) << 40) || elements > (std::uint64_t(1) << 40) / n)
          fail(detail::concat(field, " has dimension ", d, " = ", n, ", out of range"));
        elements *= n;
        t.ne.push_back(n);
      }
      const auto raw_type = read_pod<std::uint32_t>(field + " type");
      const ggml_type_traits* traits = find_ggml_type(raw_type);
      if (!traits)
        fail(field + " has ggml type " + ggml_type_name(raw_type) + ", which is not supported " +
             "(F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K are)");
      t.type = traits->type;
      if (t.ne[0] % traits->block_weights != 0)
        fail(detail::concat(field, " has rows of ", t.ne[0], " weights, not a multiple of the ",
                            traits->name, " block of ", traits->block_weights));
      t.bytes = elements / traits->block_weights * traits->block_bytes;
      t.offset = read_pod<std::uint64_t>(field + " offset");
      if (t.offset % alignment_ != 0)
        fail(detail::concat(field, " offset ", t.offset, " is not a multiple of the alignment ",
                            alignment_));
      if (!tensor_index_.emplace(t.name, tensors_.size()).second) fail(field + " appears twice");
      tensors_.push_back(std::move(t));
    }
    data_start_ = (pos_ + alignment_ - 1) / alignment_ * alignment_;
    if (data_start_ > file_.size() && !tensors_.empty())
      fail(detail::concat("the tensor data would start at ", data_start_,
                          ", past the end of the file (", file_.size(), " bytes)"));
    const std::uint64_t data_size = file_.size() > data_start_ ? file_.size() - data_start_ : 0;
    std::vector<std::size_t> order(tensors_.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return tensors_[a].offset < tensors_[b].offset;
    });
    std::uint64_t end_of_previous = 0;
    const gguf_tensor_info* previous = nullptr;
    for (const std::size_t i : order) {
      const auto& t = tensors_[i];
      if (t.offset > data_size || t.bytes > data_size - t.offset)
        fail(detail::concat("tensor '", t.name, "' (", t.bytes, " bytes at data offset ", t.offset,
                            ") ends past the end of the file"));
      if (previous && t.offset < end_of_previous)
        fail("tensors '" + previous->name + "' and '" + t.name + "' overlap");
      end_of_previous = t.offset + t.bytes;
      previous = &t;
    }
  }

  std::string path_;
  mapped_file file_;
  std::size_t pos_ = 0;  // the parse cursor
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = 32;
  std::uint64_t data_start_ = 0;
  std::map<std::string, gguf_value> metadata_;
  std::vector<gguf_tensor_info> tensors_;
  std::map<std::string, std::size_t> tensor_index_;
};

}  // namespace eigenformer
