// quant/k_quants.hpp: q4_k, q5_k and q6_k super-blocks of random bytes (finite fp16 scales)
// dequantize to exactly the floats llama.cpp's gguf-py computes (tests/make_quant_fixtures.py);
// random bytes set every bit of the packed 6-bit scales and mins, the fifth bits and the 2-bit
// pairs. Whole files of each type are checked through logits in test_gguf_model. Quantizing
// q4_k, q5_k and q6_k gives llama-quantize's bytes (tests/make_k_quant_fixtures.py).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <eigenformer/quant/k_quants.hpp>
#include <nlohmann/json.hpp>

namespace {

namespace ef = eigenformer;

std::vector<unsigned char> from_hex(const std::string& s) {
  std::vector<unsigned char> out(s.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<unsigned char>(std::stoi(s.substr(2 * i, 2), nullptr, 16));
  return out;
}

TEST(KQuants, DequantizeLikeGgml) {
  std::ifstream in(std::string(EIGENFORMER_FIXTURES_DIR) + "/quant/blocks.json");
  ASSERT_TRUE(in);
  const auto fixture = nlohmann::json::parse(in);
  ASSERT_EQ(fixture["k_quants"].size(), 3u);
  for (const auto& c : fixture["k_quants"]) {
    const std::string type = c["type"];
    const auto bytes = from_hex(c["blocks"]);
    const auto bits = c["dequantized_bits"].get<std::vector<std::uint32_t>>();
    std::vector<float> want(bits.size()), got(bits.size());
    std::memcpy(want.data(), bits.data(), bits.size() * 4);
    const auto n = ef::index_t(got.size());
    ASSERT_EQ(n % ef::k_quant_block_weights, 0);
    if (type == "Q4_K") {
      std::vector<ef::block_q4_k> blocks(std::size_t(n / 256));
      ASSERT_EQ(bytes.size(), blocks.size() * sizeof(blocks[0]));
      std::memcpy(blocks.data(), bytes.data(), bytes.size());
      ef::dequantize_row_q4_k(blocks.data(), got.data(), n);
    } else if (type == "Q5_K") {
      std::vector<ef::block_q5_k> blocks(std::size_t(n / 256));
      ASSERT_EQ(bytes.size(), blocks.size() * sizeof(blocks[0]));
      std::memcpy(blocks.data(), bytes.data(), bytes.size());
      ef::dequantize_row_q5_k(blocks.data(), got.data(), n);
    } else {
      ASSERT_EQ(type, "Q6_K");
      std::vector<ef::block_q6_k> blocks(std::size_t(n / 256));
      ASSERT_EQ(bytes.size(), blocks.size() * sizeof(blocks[0]));
      std::memcpy(blocks.data(), bytes.data(), bytes.size());
      ef::dequantize_row_q6_k(blocks.data(), got.data(), n);
    }
    for (std::size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(got[i], want[i]) << type << " weight " << i;
    }
  }
}

// Quantizing: float rows (plain, heavy-tailed, one-signed, zero, constant sub-blocks, tiny,
// huge, integer ties, outliers, sparse) give the very bytes llama-quantize writes for them
// (tests/make_k_quant_fixtures.py).
TEST(KQuants, QuantizeLikeLlamaQuantize) {
  std::ifstream in(std::string(EIGENFORMER_FIXTURES_DIR) + "/quant/k_quantize.json");
  ASSERT_TRUE(in);
  const auto fixture = nlohmann::json::parse(in);
  const auto& rows = fixture["rows"];
  ASSERT_GE(rows.size(), 60u);
  for (const char* type : {"q4_k", "q5_k", "q6_k"}) {
    ASSERT_EQ(fixture[type].size(), rows.size());
    for (std::size_t r = 0; r < rows.size(); ++r) {
      const auto x_bytes = from_hex(rows[r]);
      std::vector<float> x(x_bytes.size() / 4);
      std::memcpy(x.data(), x_bytes.data(), x_bytes.size());
      const auto want = from_hex(fixture[type][r]);
      std::vector<unsigned char> got(want.size());
      if (std::string(type) == "q4_k") {
        ASSERT_EQ(want.size(), sizeof(ef::block_q4_k));
        ef::quantize_row_q4_k(x.data(), reinterpret_cast<ef::block_q4_k*>(got.data()), 256);
      } else if (std::string(type) == "q5_k") {
        ASSERT_EQ(want.size(), sizeof(ef::block_q5_k));
        ef::quantize_row_q5_k(x.data(), reinterpret_cast<ef::block_q5_k*>(got.data()), 256);
      } else {
        ASSERT_EQ(want.size(), sizeof(ef::block_q6_k));
        ef::quantize_row_q6_k(x.data(), reinterpret_cast<ef::block_q6_k*>(got.data()), 256);
      }
      for (std::size_t i = 0; i < want.size(); ++i)
        ASSERT_EQ(int(got[i]), int(want[i])) << type << " row " << r << " byte " << i;
    }
  }
}

TEST(KQuants, RefusesRowsThatAreNotWholeSuperBlocks) {
  std::vector<ef::block_q4_k> blocks(1);
  std::vector<float> y(512);
  EXPECT_THROW(ef::dequantize_row_q4_k(blocks.data(), y.data(), 128), ef::shape_error);
  EXPECT_THROW(ef::quantize_row_q4_k(y.data(), blocks.data(), 128), ef::shape_error);
  std::vector<ef::block_q6_k> q6(1);
  EXPECT_THROW(ef::quantize_row_q6_k(y.data(), q6.data(), 300), ef::shape_error);
}

}  // namespace
