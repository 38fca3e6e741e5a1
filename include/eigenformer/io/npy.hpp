// eigenformer/io/npy.hpp — writes a matrix as a NumPy .npy file (format version 1.0).
// Depends on the standard library and Eigen only.
#pragma once

#include <fstream>
#include <string>
#include <type_traits>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"

namespace eigenformer {

/// Writes `m` [rows x cols] to `path`; dtype '<f4' for float, '<f8' for double, C order.
template <class Scalar>
void write_npy(const std::string& path, matrix_cref<Scalar> m) {
  static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                "write_npy supports float and double");
  const char* descr = std::is_same_v<Scalar, float> ? "<f4" : "<f8";
  std::string header = detail::concat("{'descr': '", descr, "', 'fortran_order': False, 'shape': (",
                                      m.rows(), ", ", m.cols(), "), }");
  // Magic (6) + version (2) + header length (2) + header + '\n' must be a multiple of 64.
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');

  std::ofstream out(path, std::ios::binary);
  if (!out) throw io_error(path + ": cannot open for writing");
  const unsigned char preamble[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  out.write(reinterpret_cast<const char*>(preamble), sizeof preamble);
  const char length[2] = {static_cast<char>(header.size() & 0xff),
                          static_cast<char>((header.size() >> 8) & 0xff)};
  out.write(length, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (index_t r = 0; r < m.rows(); ++r) {
    out.write(reinterpret_cast<const char*>(m.row(r).data()),
              static_cast<std::streamsize>(sizeof(Scalar) * static_cast<std::size_t>(m.cols())));
  }
  if (!out) throw io_error(path + ": write failed");
}

}  // namespace eigenformer
