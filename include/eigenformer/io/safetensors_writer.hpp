// eigenformer/io/safetensors_writer.hpp — writes matrices as a safetensors file.
// Requires nlohmann-json in addition to Eigen.
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"

namespace eigenformer {

/// Collects named float tensors and writes them as F32 safetensors (names sorted, data contiguous,
/// header padded to 8 bytes as the reference implementation does).
class safetensors_writer {
 public:
  /// `shape` must multiply to m.size(): {n} for a vector, {rows, cols} for a matrix.
  template <class Scalar>
  void add(const std::string& name, matrix_cref<Scalar> m, std::vector<std::int64_t> shape) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    if (n != m.size()) {
      throw shape_error(detail::concat("safetensors_writer: '", name, "' has ", m.size(),
                                       " elements, shape claims ", n));
    }
    entry e{std::move(shape), {}};
    e.data.reserve(static_cast<std::size_t>(m.size()));
    for (index_t r = 0; r < m.rows(); ++r)
      for (index_t c = 0; c < m.cols(); ++c) e.data.push_back(static_cast<float>(m(r, c)));
    tensors_[name] = std::move(e);
  }

  void write(const std::string& path) const {
    nlohmann::json header = nlohmann::json::object();
    std::size_t offset = 0;
    for (const auto& [name, e] : tensors_) {
      const std::size_t bytes = e.data.size() * sizeof(float);
      header[name] = {
          {"dtype", "F32"}, {"shape", e.shape}, {"data_offsets", {offset, offset + bytes}}};
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
      out.write(reinterpret_cast<const char*>(kv.second.data.data()),
                static_cast<std::streamsize>(kv.second.data.size() * sizeof(float)));
    }
    if (!out) throw io_error(path + ": write failed");
  }

 private:
  struct entry {
    std::vector<std::int64_t> shape;
    std::vector<float> data;  // little-endian hosts only (checked by the reader)
  };
  std::map<std::string, entry> tensors_;
};

}  // namespace eigenformer
