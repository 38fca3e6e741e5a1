#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <eigenformer/tokenizer/bytes.hpp>

namespace {

TEST(ByteTokenizer, EveryByteIsItsOwnIdAndRoundTrips) {
  const eigenformer::byte_tokenizer t;
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  const auto ids = t.encode(all);
  ASSERT_EQ(ids.size(), 256u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(ids[std::size_t(b)], b);
  EXPECT_EQ(t.decode(ids), all);
  EXPECT_EQ(t.vocab_size(), 257);
  EXPECT_EQ(t.decode({104, 256, 105}), "hi");  // end of text has no bytes
  EXPECT_THROW(t.decode({257}), eigenformer::value_error);
  EXPECT_THROW(t.decode({-1}), eigenformer::value_error);
}

TEST(ByteTokenizer, SavedFilesLoadAsAGpt2TokenizerWithTheSameIds) {
  const auto dir = std::filesystem::temp_directory_path() / "eigenformer_test_bytes";
  std::filesystem::create_directories(dir);
  eigenformer::save_byte_tokenizer(eigenformer::byte_tokenizer{}, dir.string());
  const auto bpe = eigenformer::gpt2_tokenizer::from_directory(dir.string());
  EXPECT_EQ(bpe.vocab_size(), 257);
  EXPECT_EQ(bpe.end_of_text_id(), 256);
  std::string text = "Don't panic! \"Quotes\", back\\slash, tabs\t, UTF-8 é, and bytes ";
  text += std::string("\x00\x01\xff\x80", 4);
  const eigenformer::byte_tokenizer bytes;
  EXPECT_EQ(bpe.encode(text), bytes.encode(text));
  EXPECT_EQ(bpe.decode(bytes.encode(text)), text);
  EXPECT_EQ(bpe.encode("a<|endoftext|>b"), (std::vector<eigenformer::token_id>{97, 256, 98}));
  std::filesystem::remove_all(dir);
}

}  // namespace
