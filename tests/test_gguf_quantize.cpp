// io/gguf_quantize.hpp and io/gguf_writer.hpp: `eigenformer quantize` writes the tensors
// llama.cpp's llama-quantize writes for the same file (fixtures from
// tests/make_quantize_fixtures.py), picks llama-quantize's type per tensor, and the writer's
// files read back as written.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include <eigenformer/io/gguf_quantize.hpp>

namespace {

namespace ef = eigenformer;
const std::string fixtures = std::string(EIGENFORMER_FIXTURES_DIR) + "/gguf_models/";

bool same_value(const ef::gguf_value& a, const ef::gguf_value& b) {
  if (a.type != b.type || a.value.index() != b.value.index()) return false;
  if (a.type != ef::gguf_value::kind::array) {
    return std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, std::vector<ef::gguf_value>>) {
            return false;
          } else {
            return x == std::get<T>(b.value);
          }
        },
        a.value);
  }
  const auto& x = std::get<std::vector<ef::gguf_value>>(a.value);
  const auto& y = std::get<std::vector<ef::gguf_value>>(b.value);
  if (a.element_type != b.element_type || x.size() != y.size()) return false;
  for (std::size_t i = 0; i < x.size(); ++i)
    if (!same_value(x[i], y[i])) return false;
  return true;
}

std::string temporary(const std::string& name) {
  return ::testing::TempDir() + "eigenformer_" + name;
}

TEST(GgufQuantize, WritesTheTensorsLlamaQuantizeWrites) {
  const ef::gguf_file in(fixtures + "gpt2_tiny.f32.gguf");
  for (const auto& [type, name] :
       {std::pair{ef::gguf_file_type::q8_0, "q8_0"}, std::pair{ef::gguf_file_type::q4_0, "q4_0"}}) {
    const std::string path = temporary(std::string("quantized.") + name + ".gguf");
    ef::quantize_gguf(in, path, type);
    const ef::gguf_file ours(path);
    const ef::gguf_file theirs(fixtures + "gpt2_tiny.llama_quantize." + name + ".gguf");
    ASSERT_EQ(ours.tensors().size(), theirs.tensors().size()) << name;
    int quantized = 0;
    for (std::size_t i = 0; i < ours.tensors().size(); ++i) {
      const auto& a = ours.tensors()[i];
      const auto* found = theirs.find_tensor(a.name);
      ASSERT_NE(found, nullptr) << name << " " << a.name;
      const auto& b = *found;
      EXPECT_EQ(a.ne, b.ne) << a.name;
      EXPECT_EQ(a.type, b.type) << name << " " << a.name;
      ASSERT_EQ(a.bytes, b.bytes) << name << " " << a.name;
      EXPECT_EQ(0, std::memcmp(ours.tensor_data(a), theirs.tensor_data(b), a.bytes))
          << name << " " << a.name;
      quantized += a.type != ef::ggml_type::f32;
    }
    EXPECT_GE(quantized, 9) << name;  // 2 layers x 4 matrices and the head, at least
    for (const auto& [key, value] : theirs.metadata()) {
      ASSERT_TRUE(ours.has(key)) << name << " " << key;
      EXPECT_TRUE(same_value(ours.value(key), value)) << name << " " << key;
    }
    EXPECT_EQ(ours.metadata().size(), theirs.metadata().size()) << name;
    std::remove(path.c_str());
  }
}

ef::gguf_tensor_info info(const std::string& name, std::vector<std::uint64_t> ne) {
  ef::gguf_tensor_info t;
  t.name = name;
  t.ne = std::move(ne);
  return t;
}

// llama-quantize's choices (src/llama-quant.cpp, default settings) for a 16-layer model.
TEST(GgufQuantize, PicksLlamaQuantizesTypePerTensor) {
  using g = ef::ggml_type;
  const auto type = [](const std::string& name, std::vector<std::uint64_t> ne,
                       ef::gguf_file_type f = ef::gguf_file_type::q4_k_m, bool has_output = true) {
    return ef::llama_quantize_type(info(name, std::move(ne)), f, 16, has_output);
  };
  EXPECT_EQ(type("blk.0.attn_q.weight", {512, 512}), g::q4_k);
  EXPECT_EQ(type("blk.1.attn_v.weight", {512, 128}), g::q6_k);  // layers < 16 / 8
  EXPECT_EQ(type("blk.2.attn_v.weight", {512, 128}), g::q4_k);
  EXPECT_EQ(type("blk.4.ffn_down.weight", {1024, 512}), g::q6_k);  // (4 - 2) % 3 == 2
  EXPECT_EQ(type("blk.5.ffn_down.weight", {1024, 512}), g::q4_k);
  EXPECT_EQ(type("blk.14.ffn_down.weight", {1024, 512}), g::q6_k);  // the last eighth
  EXPECT_EQ(type("blk.3.attn_qkv.weight", {768, 2304}), g::q5_k);
  EXPECT_EQ(type("blk.3.ffn_up.weight", {576, 1536}), g::q5_0);  // rows not whole super-blocks
  EXPECT_EQ(type("blk.1.ffn_down.weight", {1536, 576}), g::q6_k);
  EXPECT_EQ(type("blk.1.attn_v.weight", {576, 192}), g::q8_0);
  EXPECT_EQ(type("blk.3.ffn_up.weight", {40, 64}), g::f16);
  EXPECT_EQ(type("output.weight", {512, 1000}), g::q6_k);
  EXPECT_EQ(type("output.weight", {576, 1000}), g::q8_0);
  EXPECT_EQ(type("token_embd.weight", {512, 1000}), g::q4_k);
  EXPECT_EQ(type("token_embd.weight", {512, 1000}, ef::gguf_file_type::q4_k_m, false), g::q6_k);
  EXPECT_EQ(type("output.weight", {512, 1000}, ef::gguf_file_type::q4_0), g::q6_k);
  EXPECT_EQ(type("output.weight", {512, 1000}, ef::gguf_file_type::q8_0), g::q8_0);
  EXPECT_EQ(type("blk.1.attn_v.weight", {512, 128}, ef::gguf_file_type::q4_0), g::q4_0);
  EXPECT_EQ(type("blk.0.attn_norm.weight", {512, 1}), g::f32);
  EXPECT_EQ(type("position_embd.weight", {512, 1024}), g::f32);
  EXPECT_EQ(type("blk.0.attn_q.bias", {512, 1}), g::f32);
  EXPECT_EQ(type("rope_freqs.weight", {32}), g::f32);
  EXPECT_THROW(type("blk.0.attn_q.weight", {48, 48}, ef::gguf_file_type::q4_0), ef::value_error);
  EXPECT_EQ(type("blk.0.attn_qkv.weight", {64, 192}), g::q5_1);  // q5_k's fallback
  EXPECT_THROW(ef::parse_gguf_file_type("q3_k"), ef::value_error);
}

TEST(GgufQuantize, RefusesQuantizedInputAndLeavesNoPartialFile) {
  const ef::gguf_file quantized(fixtures + "gpt2_tiny.q8_0.gguf");
  const std::string path = temporary("requantized.gguf");
  EXPECT_THROW(ef::quantize_gguf(quantized, path, ef::gguf_file_type::q4_0), ef::value_error);
  EXPECT_EQ(std::fopen(path.c_str(), "rb"), nullptr);
  const ef::gguf_file in(fixtures + "gpt2_tiny.f32.gguf");
  EXPECT_THROW(ef::quantize_gguf(in, "/nonexistent-dir/x.gguf", ef::gguf_file_type::q8_0),
               ef::io_error);
}

// What the writer writes, the reader reads: every value kind, arrays, alignment, tensors.
TEST(GgufWriter, FilesReadBackAsWritten) {
  using k = ef::gguf_value::kind;
  std::vector<std::pair<std::string, ef::gguf_value>> metadata;
  const auto add = [&](const std::string& key, k kind, auto v) {
    ef::gguf_value value;
    value.type = kind;
    value.value = v;
    metadata.emplace_back(key, value);
  };
  add("general.alignment", k::u32, std::uint64_t(64));
  add("a.u8", k::u8, std::uint64_t(200));
  add("a.i16", k::i16, std::int64_t(-300));
  add("a.i64", k::i64, std::int64_t(-5000000000LL));
  add("a.f32", k::f32, double(0.1f));
  add("a.f64", k::f64, 0.1);
  add("a.bool", k::boolean, true);
  add("a.string", k::string, std::string("héllo"));
  ef::gguf_value list;
  list.type = k::array;
  list.element_type = k::string;
  std::vector<ef::gguf_value> items(3);
  for (std::size_t i = 0; i < items.size(); ++i) {
    items[i].type = k::string;
    items[i].value = std::string(i, 'x');
  }
  list.value = items;
  metadata.emplace_back("a.list", list);
  std::vector<ef::gguf_tensor_data> tensors = {
      {"t.0", {3, 2}, ef::ggml_type::f32, std::vector<unsigned char>(24, 7)},
      {"t.1", {32}, ef::ggml_type::q8_0, std::vector<unsigned char>(34, 9)}};
  const std::string path = temporary("written.gguf");
  ef::write_gguf(path, metadata, tensors);
  const ef::gguf_file back(path);
  EXPECT_EQ(back.version(), 3u);
  EXPECT_EQ(back.alignment(), 64u);
  ASSERT_EQ(back.metadata().size(), metadata.size());
  for (const auto& [key, value] : metadata) {
    ASSERT_TRUE(back.has(key)) << key;
    EXPECT_TRUE(same_value(back.value(key), value)) << key;
  }
  ASSERT_EQ(back.tensors().size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& t = back.tensors()[i];
    EXPECT_EQ(t.name, tensors[i].name);
    EXPECT_EQ(t.ne, tensors[i].ne);
    EXPECT_EQ(t.type, tensors[i].type);
    EXPECT_EQ(t.offset % 64, 0u);
    EXPECT_EQ(0,
              std::memcmp(back.tensor_data(t), tensors[i].bytes.data(), tensors[i].bytes.size()));
  }
  std::remove(path.c_str());
}

}  // namespace
