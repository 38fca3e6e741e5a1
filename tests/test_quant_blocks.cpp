#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <eigenformer/quant/blocks.hpp>
#include <nlohmann/json.hpp>

namespace {

using eigenformer::index_t;

std::vector<float> floats_from_bits(const std::vector<std::uint32_t>& bits) {
  std::vector<float> out(bits.size());
  std::memcpy(out.data(), bits.data(), bits.size() * 4);
  return out;
}

std::string hex(const void* data, std::size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < n; ++i) {
    const auto b = static_cast<const unsigned char*>(data)[i];
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

// Every byte equal to llama.cpp's gguf-py (its quants.py is bit-exact with ggml-quants.c's
// reference rounding) on plain, tiny, large, zero, tied and outlier blocks.
TEST(QuantBlocks, QuantizeAndDequantizeLikeGgml) {
  std::ifstream in(std::string(EIGENFORMER_FIXTURES_DIR) + "/quant/blocks.json");
  ASSERT_TRUE(in) << "tests/fixtures/quant/blocks.json";
  const auto fixture = nlohmann::json::parse(in);
  for (const auto& c : fixture["cases"]) {
    const auto x = floats_from_bits(c["x_bits"].get<std::vector<std::uint32_t>>());
    const auto n = index_t(x.size());
    std::vector<eigenformer::block_q8_0> q8(std::size_t(n / 32));
    std::vector<eigenformer::block_q4_0> q4(std::size_t(n / 32));
    std::vector<eigenformer::block_q5_0> q5(std::size_t(n / 32));
    std::vector<eigenformer::block_q5_1> q51(std::size_t(n / 32));
    eigenformer::quantize_row_q5_1(x.data(), q51.data(), n);
    EXPECT_EQ(hex(q51.data(), q51.size() * sizeof(q51[0])), c["q5_1"].get<std::string>());
    std::vector<float> y51(x.size());
    eigenformer::dequantize_row_q5_1(q51.data(), y51.data(), n);
    EXPECT_EQ(y51, floats_from_bits(c["q5_1_dequantized_bits"].get<std::vector<std::uint32_t>>()));
    eigenformer::quantize_row_q8_0(x.data(), q8.data(), n);
    eigenformer::quantize_row_q4_0(x.data(), q4.data(), n);
    eigenformer::quantize_row_q5_0(x.data(), q5.data(), n);
    EXPECT_EQ(hex(q8.data(), q8.size() * sizeof(q8[0])), c["q8_0"].get<std::string>());
    EXPECT_EQ(hex(q4.data(), q4.size() * sizeof(q4[0])), c["q4_0"].get<std::string>());
    EXPECT_EQ(hex(q5.data(), q5.size() * sizeof(q5[0])), c["q5_0"].get<std::string>());
    std::vector<float> y8(x.size()), y4(x.size()), y5(x.size());
    eigenformer::dequantize_row_q8_0(q8.data(), y8.data(), n);
    eigenformer::dequantize_row_q4_0(q4.data(), y4.data(), n);
    eigenformer::dequantize_row_q5_0(q5.data(), y5.data(), n);
    EXPECT_EQ(y8, floats_from_bits(c["q8_0_dequantized_bits"].get<std::vector<std::uint32_t>>()));
    EXPECT_EQ(y4, floats_from_bits(c["q4_0_dequantized_bits"].get<std::vector<std::uint32_t>>()));
    EXPECT_EQ(y5, floats_from_bits(c["q5_0_dequantized_bits"].get<std::vector<std::uint32_t>>()));
  }
}

// The round trip's error is bounded by the block's step, a property that does not depend on the
// fixture: q8_0 half a step (max|x| / 254) plus the fp16 rounding of the scale (127 steps of
// relative 2^-11); q4_0 a whole step (max|x| / 8) — the side opposite the largest value reaches
// only +7 steps and is clamped there — plus the scale's rounding; q5_0 likewise (max|x| / 16).
TEST(QuantBlocks, RoundTripErrorWithinHalfAStep) {
  std::vector<float> x(32 * 40);
  std::uint32_t state = 12345;
  for (auto& v : x) {
    state = state * 1664525u + 1013904223u;
    v = (float(state >> 8) / float(1 << 24) - 0.5f) * 6.0f;
  }
  std::vector<eigenformer::block_q8_0> q8(40);
  std::vector<eigenformer::block_q4_0> q4(40);
  std::vector<eigenformer::block_q5_0> q5(40);
  std::vector<float> y8(x.size()), y4(x.size()), y5(x.size());
  eigenformer::quantize_row_q8_0(x.data(), q8.data(), index_t(x.size()));
  eigenformer::quantize_row_q4_0(x.data(), q4.data(), index_t(x.size()));
  eigenformer::quantize_row_q5_0(x.data(), q5.data(), index_t(x.size()));
  eigenformer::dequantize_row_q8_0(q8.data(), y8.data(), index_t(x.size()));
  eigenformer::dequantize_row_q4_0(q4.data(), y4.data(), index_t(x.size()));
  eigenformer::dequantize_row_q5_0(q5.data(), y5.data(), index_t(x.size()));
  for (std::size_t b = 0; b < 40; ++b) {
    double amax = 0;
    for (std::size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(double(x[b * 32 + j])));
    for (std::size_t j = 0; j < 32; ++j) {
      const std::size_t i = b * 32 + j;
      EXPECT_LE(std::fabs(double(y8[i]) - x[i]), amax / 254 + amax / 2048 + 1e-6) << i;
      EXPECT_LE(std::fabs(double(y4[i]) - x[i]), amax / 8 + amax / 2048 + 1e-6) << i;
      EXPECT_LE(std::fabs(double(y5[i]) - x[i]), amax / 16 + amax / 2048 + 1e-6) << i;
    }
  }
}

TEST(QuantBlocks, RefusesRowsThatAreNotWholeBlocks) {
  std::vector<float> x(40);
  std::vector<eigenformer::block_q8_0> q8(2);
  EXPECT_THROW(eigenformer::quantize_row_q8_0(x.data(), q8.data(), 40), eigenformer::shape_error);
}

}  // namespace
