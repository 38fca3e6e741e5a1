// quant/k_quants.hpp: q4_k, q5_k and q6_k super-blocks of random bytes (finite fp16 scales)
// dequantize to exactly the floats llama.cpp's gguf-py computes (tests/make_quant_fixtures.py);
// random bytes set every bit of the packed 6-bit scales and mins, the fifth bits and the 2-bit
// pairs. Whole files of each type are checked through logits in test_gguf_model.
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

TEST(KQuants, RefusesRowsThatAreNotWholeSuperBlocks) {
  std::vector<ef::block_q4_k> blocks(1);
  std::vector<float> y(512);
  EXPECT_THROW(ef::dequantize_row_q4_k(blocks.data(), y.data(), 128), ef::shape_error);
}

}  // namespace
