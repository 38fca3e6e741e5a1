// eigenformer/io/safetensors_writer.hpp — writes matrices as a safetensors file.
// Requires nlohmann-json in addition to Eigen.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"

namespace eigenformer {

/// Collects named tensors and writes them as safetensors (names sorted, data contiguous, header
/// padded to 8 bytes as the reference implementation does). add() stores F32, the dtype of the
/// Hugging Face files the library writes; add_exact() keeps a double tensor's bits as F64 (a
/// training checkpoint must restore every bit).
class safetensors_writer {
 public:
  /// `shape` must multiply to m.size(): {n} for a vector, {rows, cols} for a matrix.
  template <class Scalar>
  void add(const std::string& name, matrix_cref<Scalar> m, std::vector<std::int64_t> shape) {
    add_as<float>(name, m, std::move(shape));
  }
  /// As add(), in the tensor's own precision: F32 for float, F64 for double.
  template <class Scalar>
  void add_exact(const std::string& name, matrix_cref<Scalar> m, std::vector<std::int64_t> shape) {
    add_as<Scalar>(name, m, std::move(shape));
  }

  void write(const std::string& path) const {
    nlohmann::json header = nlohmann::json::object();
    std::size_t offset = 0;
    for (const auto& [name, e] : tensors_) {
      const std::size_t bytes = e.data.size();
      header[name] = {
          {"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {offset, offset + bytes}}};
      offset += bytes;
    }
    header["__metadata__"] = {{"format", "pt"}};
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    std::ofstream out(path, std::ios::binary);
    if (!out) throw io_error(path + ": cannot open for writing");
    unsigned char size[8];
    for (int i = 0; i < 8; ++i)
      size[i] = static_cast<unsigned char>(std::uint64_t(text.size()) >> (8 * i));
    out.write(reinterpret_cast<const char*>(size), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& kv : tensors_) {
      out.write(kv.second.data.data(), static_cast<std::streamsize>(kv.second.data.size()));
    }
    if (!out) throw io_error(path + ": write failed");
  }

 private:
  template <class Stored, class Scalar>
  void add_as(const std::string& name, matrix_cref<Scalar> m, std::vector<std::int64_t> shape) {
    static_assert(std::is_same_v<Stored, float> || std::is_same_v<Stored, double>);
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    if (n != m.size()) {
      throw shape_error(detail::concat("safetensors_writer: '", name, "' has ", m.size(),
                                       " elements, shape claims ", n));
    }
    entry e{std::is_same_v<Stored, float> ? "F32" : "F64", std::move(shape), {}};
    e.data.resize(static_cast<std::size_t>(m.size()) * sizeof(Stored));
    char* out = e.data.data();
    for (index_t r = 0; r < m.rows(); ++r) {
      for (index_t c = 0; c < m.cols(); ++c, out += sizeof(Stored)) {
        const auto value = static_cast<Stored>(m(r, c));
        std::memcpy(out, &value, sizeof(Stored));
      }
    }
    tensors_[name] = std::move(e);
  }

  struct entry {
    std::string dtype;
    std::vector<std::int64_t> shape;
    std::vector<char> data;  // little-endian hosts only (checked by the reader)
  };
  std::map<std::string, entry> tensors_;
};

}  // namespace eigenformer
