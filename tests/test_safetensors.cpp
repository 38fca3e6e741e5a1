#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include <eigenformer/io/safetensors.hpp>

#include "reference.hpp"

namespace {

using bytes = std::vector<unsigned char>;

/// A safetensors file from a header text and a data section.
bytes make_file(const std::string& header, const bytes& data, std::uint64_t claimed_size = ~0ull) {
  const std::uint64_t size = claimed_size == ~0ull ? header.size() : claimed_size;
  bytes out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<unsigned char>(size >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

template <class T>
bytes raw(const std::vector<T>& values) {
  bytes b(values.size() * sizeof(T));
  std::memcpy(b.data(), values.data(), b.size());
  return b;
}

const std::string good_header =
    R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
    R"("b":{"dtype":"F64","shape":[2],"data_offsets":[24,40]},"__metadata__":{"format":"pt"}})";

bytes good_data() {
  bytes d = raw<float>({1, 2, 3, 4, 5, 6});
  const bytes b = raw<double>({-1.5, 2.25});
  d.insert(d.end(), b.begin(), b.end());
  return d;
}

std::string error_of(const bytes& file) {
  try {
    eigenformer::safetensors_file f(file, "test.safetensors");
  } catch (const eigenformer::format_error& e) {
    return e.what();
  }
  return "no exception";
}

::testing::AssertionResult has(const std::string& message, const std::string& part) {
  if (message.find(part) != std::string::npos && message.rfind("test.safetensors: ", 0) == 0)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "message '" << message << "' lacks '" << part << "'";
}

TEST(Safetensors, ReadsEveryFloatDtype) {
  eigenformer::safetensors_file f(make_file(good_header, good_data()), "test.safetensors");
  EXPECT_EQ(f.metadata().at("format"), "pt");
  const auto a = f.read<float>("a", {2, 3});
  EXPECT_EQ(a(1, 2), 6.0f);
  EXPECT_EQ(a(0, 1), 2.0f);
  const auto b = f.read<double>("b", {2});
  EXPECT_EQ(b(0, 1), 2.25);

  // F16 0x3C00 = 1, 0xC000 = -2; BF16 0x3F80 = 1, 0x4049 = 3.140625.
  const std::string h = R"({"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},)"
                        R"("g":{"dtype":"BF16","shape":[2],"data_offsets":[4,8]}})";
  eigenformer::safetensors_file g(
      make_file(h, raw<std::uint16_t>({0x3C00, 0xC000, 0x3F80, 0x4049})), "test.safetensors");
  const auto half = g.read<double>("h", {2});
  EXPECT_EQ(half(0, 0), 1.0);
  EXPECT_EQ(half(0, 1), -2.0);
  const auto bf = g.read<float>("g", {2});
  EXPECT_EQ(bf(0, 0), 1.0f);
  EXPECT_EQ(bf(0, 1), 3.140625f);
}

TEST(Safetensors, WrongShapeOrDtypeOrMissingTensor) {
  eigenformer::safetensors_file f(
      make_file(good_header.substr(0, good_header.size() - 1) +
                    R"(,"m":{"dtype":"U8","shape":[1],"data_offsets":[40,41]}})",
                [] {
                  auto d = good_data();
                  d.push_back(1);
                  return d;
                }()),
      "test.safetensors");
  try {
    f.read<float>("a", {3, 2});
    FAIL();
  } catch (const eigenformer::format_error& e) {
    EXPECT_STREQ(e.what(), "test.safetensors: tensor 'a' has shape [2, 3], expected [3, 2]");
  }
  try {
    f.read<float>("zzz", {1});
    FAIL();
  } catch (const eigenformer::format_error& e) {
    EXPECT_STREQ(e.what(), "test.safetensors: tensor 'zzz' is missing");
  }
  try {
    f.read<float>("m", {1});
    FAIL();
  } catch (const eigenformer::format_error& e) {
    EXPECT_TRUE(has(e.what(), "tensor 'm' has dtype U8, expected a floating-point dtype"));
  }
}

TEST(Safetensors, RejectsMalformedFiles) {
  const bytes data = good_data();
  EXPECT_TRUE(has(error_of({1, 2, 3}), "too short for the 8-byte header size"));
  EXPECT_TRUE(has(error_of(make_file(good_header, data, 1u << 30)),
                  "header size 1073741824 is larger than the"));
  EXPECT_TRUE(has(error_of(make_file(good_header, data, ~0ull - 1)), "is larger than the"));
  EXPECT_TRUE(has(error_of(make_file("{\"a\": [", {})), "malformed JSON header"));
  EXPECT_TRUE(has(error_of(make_file("[1, 2]", {})), "not an object"));
  // Truncated: the data section is shorter than the offsets say.
  EXPECT_TRUE(has(error_of(make_file(good_header, bytes(data.begin(), data.end() - 3))),
                  "tensor 'b': data_offsets [24, 40] lie outside the data section of 37 bytes"));
  // Trailing bytes nobody owns.
  auto longer = data;
  longer.push_back(0);
  EXPECT_TRUE(has(error_of(make_file(good_header, longer)),
                  "tensors cover 40 data bytes but the file holds 41"));
  // Overlap.
  EXPECT_TRUE(has(error_of(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                     bytes(12))),
                  "tensor 'b' bytes [4, 12) overlap tensor 'a' bytes [0, 8)"));
  // Hole.
  EXPECT_TRUE(has(
      error_of(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", bytes(8))),
      "belong to no tensor"));
  // Size that does not match the shape.
  EXPECT_TRUE(has(
      error_of(make_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", bytes(8))),
      "data_offsets span 8 bytes but shape [3] of F32 needs 12"));
  EXPECT_TRUE(has(
      error_of(make_file(R"({"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}})", bytes(16))),
      "tensor 'a': unknown dtype \"F128\""));
  EXPECT_TRUE(
      has(error_of(make_file(
              R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})",
              bytes(4))),
          "overflows 64 bits"));
  EXPECT_TRUE(has(
      error_of(make_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", bytes(4))),
      "not a non-negative integer"));
  EXPECT_TRUE(has(
      error_of(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", bytes(8))),
      "lie outside the data section"));
  EXPECT_TRUE(has(error_of(make_file(R"({"a":{"dtype":"F32","shape":[1]}})", bytes(4))),
                  "tensor 'a': has no 'data_offsets'"));
  EXPECT_TRUE(
      has(error_of(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", bytes(4))),
          "is not two non-negative integers"));
  EXPECT_TRUE(has(error_of(make_file(R"({"__metadata__":{"k":1}})", {})), "is not a string"));
}

TEST(Safetensors, MissingFileIsAnIoError) {
  EXPECT_THROW(eigenformer::safetensors_file("/nonexistent/model.safetensors"),
               eigenformer::io_error);
}

}  // namespace
