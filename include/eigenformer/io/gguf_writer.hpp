// eigenformer/io/gguf_writer.hpp — writes a GGUF v3 file: the header, metadata key/values (the
// gguf_value of io/gguf.hpp, so a file read there can be written back), tensor infos and the
// tensors' bytes at the alignment (general.alignment, default 32). The file appears whole or not
// at all: it is written under a temporary name, flushed, then renamed over `path`.
#pragma once

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <ostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/io/gguf.hpp"

namespace eigenformer {

/// A tensor to write: ne[0] is the row length, `bytes` its data in `type`'s layout.
struct gguf_tensor_data {
  std::string name;
  std::vector<std::uint64_t> ne;
  ggml_type type = ggml_type::f32;
  std::vector<unsigned char> bytes;
};

/// Metadata values of each kind (arrays: `items` of one kind).
inline gguf_value gguf_u32(std::uint64_t v) {
  gguf_value out;
  out.type = gguf_value::kind::u32;
  out.value = v;
  return out;
}
inline gguf_value gguf_f32(double v) {
  gguf_value out;
  out.type = gguf_value::kind::f32;
  out.value = double(float(v));
  return out;
}
inline gguf_value gguf_bool(bool v) {
  gguf_value out;
  out.type = gguf_value::kind::boolean;
  out.value = v;
  return out;
}
inline gguf_value gguf_string(std::string v) {
  gguf_value out;
  out.type = gguf_value::kind::string;
  out.value = std::move(v);
  return out;
}
inline gguf_value gguf_array(gguf_value::kind element, std::vector<gguf_value> items) {
  gguf_value out;
  out.type = gguf_value::kind::array;
  out.element_type = element;
  out.value = std::move(items);
  return out;
}

inline gguf_value gguf_i32(std::int64_t v) {
  gguf_value out;
  out.type = gguf_value::kind::i32;
  out.value = v;
  return out;
}

namespace detail {
class gguf_sink {
 public:
  explicit gguf_sink(std::ostream& out) : out_(out) {}
  template <class T>
  void pod(T v) {
    out_.write(reinterpret_cast<const char*>(&v), sizeof v);
    written_ += sizeof v;
  }
  void bytes(const void* data, std::size_t n) {
    out_.write(static_cast<const char*>(data), std::streamsize(n));
    written_ += n;
  }
  void string(const std::string& s) {
    pod<std::uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  void pad_to(std::uint64_t alignment) {
    static const char zeros[64] = {};
    while (written_ % alignment != 0)
      bytes(zeros, std::size_t(std::min<std::uint64_t>(64, alignment - written_ % alignment)));
  }
  void value(const gguf_value& v) {
    using k = gguf_value::kind;
    switch (v.type) {
      case k::u8:
        return pod(std::uint8_t(std::get<std::uint64_t>(v.value)));
      case k::i8:
        return pod(std::int8_t(std::get<std::int64_t>(v.value)));
      case k::u16:
        return pod(std::uint16_t(std::get<std::uint64_t>(v.value)));
      case k::i16:
        return pod(std::int16_t(std::get<std::int64_t>(v.value)));
      case k::u32:
        return pod(std::uint32_t(std::get<std::uint64_t>(v.value)));
      case k::i32:
        return pod(std::int32_t(std::get<std::int64_t>(v.value)));
      case k::u64:
        return pod(std::get<std::uint64_t>(v.value));
      case k::i64:
        return pod(std::get<std::int64_t>(v.value));
      case k::f32:
        return pod(float(std::get<double>(v.value)));  // read from a float: exact
      case k::f64:
        return pod(std::get<double>(v.value));
      case k::boolean:
        return pod(std::uint8_t(std::get<bool>(v.value) ? 1 : 0));
      case k::string:
        return string(std::get<std::string>(v.value));
      case k::array: {
        const auto& items = std::get<std::vector<gguf_value>>(v.value);
        pod(std::uint32_t(v.element_type));
        pod(std::uint64_t(items.size()));
        for (const auto& item : items) value(item);
        return;
      }
    }
    throw value_error("gguf: a metadata value of unknown type");
  }
  std::uint64_t written() const { return written_; }

 private:
  std::ostream& out_;
  std::uint64_t written_ = 0;
};
}  // namespace detail

/// Writes `metadata` and `tensors`, in the given orders, as GGUF v3 to `stream`.
inline void write_gguf(std::ostream& stream,
                       const std::vector<std::pair<std::string, gguf_value>>& metadata,
                       const std::vector<gguf_tensor_data>& tensors) {
  std::uint64_t alignment = 32;
  for (const auto& [key, v] : metadata) {
    if (key == "general.alignment") alignment = std::get<std::uint64_t>(v.value);
  }
  if (alignment == 0 || (alignment & (alignment - 1)) != 0)
    throw value_error(
        detail::concat("gguf: general.alignment ", alignment, " is not a power of 2"));
  detail::gguf_sink out(stream);
  out.pod(std::uint32_t(0x46554747));  // "GGUF"
  out.pod(std::uint32_t(3));
  out.pod(std::uint64_t(tensors.size()));
  out.pod(std::uint64_t(metadata.size()));
  for (const auto& [key, v] : metadata) {
    out.string(key);
    out.pod(std::uint32_t(v.type));
    out.value(v);
  }
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    out.string(t.name);
    out.pod(std::uint32_t(t.ne.size()));
    for (const auto d : t.ne) out.pod(d);
    out.pod(std::uint32_t(t.type));
    out.pod(offset);
    offset += (t.bytes.size() + alignment - 1) / alignment * alignment;
  }
  out.pad_to(alignment);
  for (const auto& t : tensors) {
    out.bytes(t.bytes.data(), t.bytes.size());
    out.pad_to(alignment);
  }
}

/// Writes `metadata` and `tensors`, in the given orders, as a GGUF v3 file at `path`.
inline void write_gguf(const std::string& path,
                       const std::vector<std::pair<std::string, gguf_value>>& metadata,
                       const std::vector<gguf_tensor_data>& tensors) {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) throw io_error("gguf: cannot write " + temporary);
    try {
      write_gguf(out, metadata, tensors);
      out.flush();
      if (!out) throw io_error("gguf: writing " + temporary + " failed");
    } catch (...) {
      out.close();
      std::remove(temporary.c_str());
      throw;
    }
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    std::remove(temporary.c_str());
    throw io_error("gguf: cannot rename " + temporary + " to " + path);
  }
}

/// The bytes of that GGUF file, in memory (gguf_file reads them back).
inline std::vector<unsigned char> gguf_bytes(
    const std::vector<std::pair<std::string, gguf_value>>& metadata,
    const std::vector<gguf_tensor_data>& tensors) {
  std::ostringstream out(std::ios::binary);
  write_gguf(out, metadata, tensors);
  const std::string s = out.str();
  return std::vector<unsigned char>(s.begin(), s.end());
}

}  // namespace eigenformer
