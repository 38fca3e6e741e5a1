#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <eigenformer/io/gguf.hpp>
#include <nlohmann/json.hpp>

#include "gguf_bytes.hpp"

namespace {

using eigenformer::gguf_file;
using eigenformer::gguf_value;
using test_gguf::writer;

const std::string fixtures = std::string(EIGENFORMER_FIXTURES_DIR) + "/gguf/";

// --- the file written by llama.cpp's gguf-py (tests/make_gguf_fixtures.py) ---

TEST(Gguf, ReadsMetadataWrittenByGgufPy) {
  const gguf_file f(fixtures + "metadata_and_floats.gguf");
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.string("general.architecture"), "llama");
  EXPECT_EQ(f.integer("test.u32"), 4000000000);
  EXPECT_EQ(f.integer("test.i32", -1000000, 0), -123456);
  EXPECT_EQ(f.integer("test.u64"), std::int64_t(1) << 40);
  EXPECT_EQ(f.integer("test.i64", -(std::int64_t(1) << 41)), -(std::int64_t(1) << 40));
  EXPECT_EQ(f.number("test.f32"), 0.15625);
  EXPECT_EQ(f.number("test.f64"), 1e-300);
  EXPECT_EQ(std::get<bool>(f.value("test.bool").value), true);
  EXPECT_EQ(f.integer("test.u8"), 200);
  EXPECT_EQ(f.integer("test.i8", -128), -100);
  EXPECT_EQ(f.integer("test.u16"), 65000);
  EXPECT_EQ(f.integer("test.i16", -40000), -32000);
  EXPECT_EQ(f.string("test.string"), "h\xC3\xA9llo \xE2\x96\x81w\xC3\xB6rld");
  EXPECT_EQ(f.integer("llama.context_length"), 2048);
  EXPECT_EQ(f.number("llama.rope.freq_base"), 10000.0);

  const auto& strings = std::get<std::vector<gguf_value>>(f.value("test.strings").value);
  ASSERT_EQ(strings.size(), 4u);
  EXPECT_EQ(f.value("test.strings").element_type, gguf_value::kind::string);
  EXPECT_EQ(std::get<std::string>(strings[1].value), "");
  EXPECT_EQ(std::get<std::string>(strings[3].value), "<|im_start|>");
  const auto& ints = std::get<std::vector<gguf_value>>(f.value("test.ints").value);
  ASSERT_EQ(ints.size(), 3u);
  EXPECT_EQ(std::get<std::int64_t>(ints[1].value), -2);

  // Typed access refuses the wrong type and out-of-range values, naming the key.
  EXPECT_THROW(f.string("test.u32"), eigenformer::format_error);
  EXPECT_THROW(f.integer("test.string"), eigenformer::format_error);
  EXPECT_THROW(f.integer("test.u32", 0, 100), eigenformer::format_error);
  try {
    f.value("no.such.key");
    FAIL();
  } catch (const eigenformer::format_error& e) {
    EXPECT_NE(std::string(e.what()).find("no.such.key"), std::string::npos);
  }
}

TEST(Gguf, ReadsFloatTensorsWrittenByGgufPy) {
  const gguf_file f(fixtures + "metadata_and_floats.gguf");
  std::ifstream in(fixtures + "metadata_and_floats.json");
  const auto expected = nlohmann::json::parse(in);
  ASSERT_EQ(f.tensors().size(), expected["tensors"].size());
  for (const auto& [name, e] : expected["tensors"].items()) {
    const auto& info = f.tensor(name);
    EXPECT_EQ(info.ne, e["ne"].get<std::vector<std::uint64_t>>()) << name;
    EXPECT_EQ(eigenformer::ggml_type_name(std::uint32_t(info.type)), e["type"].get<std::string>());
    const auto m = f.read_float<double>(name);
    const auto values = e["values"].get<std::vector<double>>();
    ASSERT_EQ(std::size_t(m.size()), values.size()) << name;
    EXPECT_EQ(m.cols(), eigenformer::index_t(info.ne[0]));
    for (std::size_t i = 0; i < values.size(); ++i)
      EXPECT_EQ(m.data()[i], values[i]) << name << " element " << i;
  }
}

// --- hostile files, built byte by byte ---

// The error must be a format_error whose message contains `needle`.
void expect_refused(const writer& w, const std::string& needle) {
  try {
    gguf_file f(w.bytes, "hostile.gguf");
    ADD_FAILURE() << "accepted; expected an error containing '" << needle << "'";
  } catch (const eigenformer::format_error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Gguf, AcceptsAMinimalValidFile) {
  writer w;
  w.header(2, 1).str("general.alignment").pod<std::uint32_t>(4).pod<std::uint32_t>(64);
  w.tensor("x", {4, 2}, 0, 0).tensor("y", {32}, 8, 64).pad_to(64).data(64 + 34);
  const gguf_file f(w.bytes, "ok.gguf");
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.tensor("x").bytes, 32u);
  EXPECT_EQ(f.tensor("y").bytes, 34u);  // one Q8_0 block
  EXPECT_EQ(f.read_float<float>("x").rows(), 2);
  // A quantized tensor reads dequantized: d = fp16 0x3c3c = 1 + 60/1024, every q = 0x3c = 60.
  const auto y = f.read_float<float>("y");
  ASSERT_EQ(y.cols(), 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y(0, j), (1.0f + 60.0f / 1024.0f) * 60.0f);
}

TEST(Gguf, RefusesHostileFilesNamingTheField) {
  expect_refused(writer{{'G', 'G'}}, "magic");
  expect_refused(writer{{'G', 'G', 'M', 'L', 0, 0, 0, 0}}, "bad magic");
  expect_refused(writer().header(0, 0, 1), "version 1");
  expect_refused(writer().header(0, std::uint64_t(1) << 60), "metadata_kv_count");
  expect_refused(writer().header(std::uint64_t(1) << 60, 0), "tensor_count");
  // a key whose length runs past the end, and one claiming a gigantic length
  expect_refused(writer().header(0, 1).pod<std::uint64_t>(1000).data(20), "metadata key #0");
  expect_refused(writer().header(0, 1).pod<std::uint64_t>(~0ull).data(20), "too large");
  expect_refused(writer().header(0, 1).str("k").pod<std::uint32_t>(13).data(8), "value type 13");
  expect_refused(writer().header(0, 1).str("k").pod<std::uint32_t>(7).pod<std::uint8_t>(2), "bool");
  // an array whose count the file cannot hold, an array of arrays
  expect_refused(writer()
                     .header(0, 1)
                     .str("k")
                     .pod<std::uint32_t>(9)
                     .pod<std::uint32_t>(4)
                     .pod<std::uint64_t>(1000000)
                     .data(16),
                 "count 1000000");
  expect_refused(writer()
                     .header(0, 1)
                     .str("k")
                     .pod<std::uint32_t>(9)
                     .pod<std::uint32_t>(9)
                     .pod<std::uint64_t>(1)
                     .pod<std::uint32_t>(4)
                     .pod<std::uint64_t>(0)
                     .data(16),
                 "array of arrays");
  expect_refused(writer()
                     .header(0, 2)
                     .str("k")
                     .pod<std::uint32_t>(4)
                     .pod<std::uint32_t>(1)
                     .str("k")
                     .pod<std::uint32_t>(4)
                     .pod<std::uint32_t>(1),
                 "twice");
  expect_refused(
      writer().header(0, 1).str("general.alignment").pod<std::uint32_t>(4).pod<std::uint32_t>(48),
      "power of 2");
  // tensors: dimensions, types, blocks, offsets, overlap, duplicates
  expect_refused(writer().header(1, 0).tensor("t", {1, 1, 1, 1, 1}, 0, 0).pad_to(32).data(4),
                 "5 dimensions");
  expect_refused(writer().header(1, 0).tensor("t", {4, 0}, 0, 0).pad_to(32).data(4),
                 "dimension 1 = 0");
  expect_refused(writer().header(1, 0).tensor("t", {~0ull >> 2, 1}, 0, 0).pad_to(32).data(4),
                 "out of range");
  expect_refused(writer().header(1, 0).tensor("t", {256}, 16, 0).pad_to(32).data(600), "IQ2_XXS");
  expect_refused(writer().header(1, 0).tensor("t", {256}, 99, 0).pad_to(32).data(600), "type 99");
  expect_refused(writer().header(1, 0).tensor("t", {40}, 2, 0).pad_to(32).data(100),
                 "not a multiple of the Q4_0 block");
  expect_refused(writer().header(1, 0).tensor("t", {4}, 0, 8).pad_to(32).data(64), "alignment");
  expect_refused(writer().header(1, 0).tensor("t", {64}, 0, 0).pad_to(32).data(100),
                 "past the end");
  expect_refused(writer().header(1, 0).tensor("t", {4}, 0, ~0ull << 5).pad_to(32).data(100),
                 "past the end");
  expect_refused(
      writer().header(2, 0).tensor("a", {16}, 0, 0).tensor("b", {4}, 0, 32).pad_to(32).data(64),
      "overlap");
  expect_refused(
      writer().header(2, 0).tensor("a", {4}, 0, 0).tensor("a", {4}, 0, 32).pad_to(32).data(64),
      "twice");
  // the tensor infos cut short (the count check passes, the third dimension runs off the end)
  writer cut;
  cut.header(1, 0).str("t").pod<std::uint32_t>(3).pod<std::uint64_t>(4).pod<std::uint64_t>(4);
  expect_refused(cut.data(3), "tensor 't' ne needs 8 bytes");
}

TEST(Gguf, NamesMissingFiles) {
  EXPECT_THROW(gguf_file("/nonexistent/model.gguf"), eigenformer::io_error);
}

}  // namespace
