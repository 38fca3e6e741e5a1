// tests/gguf_bytes.hpp — GGUF files built byte by byte in tests: hostile files for the reader,
// and metadata-only files (a tokenizer's keys) written as llama.cpp's converter lays them out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace test_gguf {

struct writer {
  std::vector<unsigned char> bytes;
  template <class T>
  writer& pod(T v) {
    const auto* p = reinterpret_cast<const unsigned char*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof(T));
    return *this;
  }
  writer& str(const std::string& s) {
    pod<std::uint64_t>(s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
    return *this;
  }
  writer& header(std::uint64_t tensors, std::uint64_t kvs, std::uint32_t version = 3) {
    bytes.insert(bytes.end(), {'G', 'G', 'U', 'F'});
    return pod(version).pod(tensors).pod(kvs);
  }
  writer& tensor(const std::string& name, std::vector<std::uint64_t> ne, std::uint32_t type,
                 std::uint64_t offset) {
    str(name).pod<std::uint32_t>(std::uint32_t(ne.size()));
    for (const auto n : ne) pod(n);
    return pod(type).pod(offset);
  }
  writer& pad_to(std::size_t alignment) {
    while (bytes.size() % alignment) bytes.push_back(0);
    return *this;
  }
  writer& data(std::size_t n) {
    bytes.resize(bytes.size() + n, 0x3c);
    return *this;
  }
  // Typed metadata values (GGUF value types: 4 u32, 5 i32, 6 f32, 7 bool, 8 string, 9 array).
  writer& kv_u32(const std::string& key, std::uint32_t v) {
    return str(key).pod<std::uint32_t>(4).pod(v);
  }
  writer& kv_bool(const std::string& key, bool v) {
    return str(key).pod<std::uint32_t>(7).pod<std::uint8_t>(v ? 1 : 0);
  }
  writer& kv_string(const std::string& key, const std::string& v) {
    return str(key).pod<std::uint32_t>(8).str(v);
  }
  writer& kv_strings(const std::string& key, const std::vector<std::string>& v) {
    str(key).pod<std::uint32_t>(9).pod<std::uint32_t>(8).pod<std::uint64_t>(v.size());
    for (const auto& s : v) str(s);
    return *this;
  }
  writer& kv_f32s(const std::string& key, const std::vector<float>& v) {
    str(key).pod<std::uint32_t>(9).pod<std::uint32_t>(6).pod<std::uint64_t>(v.size());
    for (const auto x : v) pod(x);
    return *this;
  }
  writer& kv_i32s(const std::string& key, const std::vector<std::int32_t>& v) {
    str(key).pod<std::uint32_t>(9).pod<std::uint32_t>(5).pod<std::uint64_t>(v.size());
    for (const auto x : v) pod(x);
    return *this;
  }
};

}  // namespace test_gguf
