#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include <eigenformer/io/npy.hpp>

#include "reference.hpp"

namespace {

template <class Scalar>
class Npy : public ::testing::Test {};
TYPED_TEST_SUITE(Npy, ref::scalar_types);

// Checks the bytes against the .npy v1.0 specification (numpy.lib.format).
TYPED_TEST(Npy, WritesVersion1WithAlignedHeader) {
  using S = TypeParam;
  ref::rng r(1);
  const eigenformer::matrix<S> m = ref::random_matrix<S>(3, 5, r);
  const auto path = std::filesystem::temp_directory_path() / "eigenformer_test.npy";
  eigenformer::write_npy<S>(path.string(), m);
  std::ifstream in(path, std::ios::binary);
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::filesystem::remove(path);

  ASSERT_GE(file.size(), 10u);
  EXPECT_EQ(file.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t header_len = size_t(static_cast<unsigned char>(file[8])) |
                            size_t(static_cast<unsigned char>(file[9])) << 8;
  EXPECT_EQ((10 + header_len) % 64, 0u);
  const std::string header = file.substr(10, header_len);
  EXPECT_EQ(header.back(), '\n');
  EXPECT_NE(header.find(std::is_same_v<S, float> ? "'descr': '<f4'" : "'descr': '<f8'"),
            std::string::npos);
  EXPECT_NE(header.find("'fortran_order': False"), std::string::npos);
  EXPECT_NE(header.find("'shape': (3, 5)"), std::string::npos);
  ASSERT_EQ(file.size(), 10 + header_len + 15 * sizeof(S));
  for (int i = 0; i < 15; ++i) {
    S v;
    std::memcpy(&v, file.data() + 10 + header_len + i * sizeof(S), sizeof(S));
    EXPECT_EQ(v, m(i / 5, i % 5));  // C order: row after row
  }
}

}  // namespace
