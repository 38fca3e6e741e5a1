// eigenformer/io/mapped_file.hpp — a whole file's bytes, read-only: mapped into memory on POSIX
// systems (pages load on first touch, and the OS can drop and re-read them), read into a buffer
// elsewhere. Copies share the bytes. The weight file readers (safetensors, GGUF) sit on it.
#pragma once

#include <cstddef>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define EIGENFORMER_HAS_MMAP 1
#endif

#include "eigenformer/core/error.hpp"

namespace eigenformer {

class mapped_file {
 public:
  mapped_file() = default;

  /// Maps (or reads) the file at `path`; io_error if it cannot be opened or is not a file.
  /// `populate` asks the OS to read every page now (a loader that converts all of it anyway).
  explicit mapped_file(const std::string& path, bool populate = true) {
#ifdef EIGENFORMER_HAS_MMAP
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) throw io_error(path + ": cannot open file");
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw io_error(path + ": not a regular file");
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      const int flags = MAP_PRIVATE
#ifdef MAP_POPULATE
                        | (populate ? MAP_POPULATE : 0)
#endif
          ;
      void* mapped = ::mmap(nullptr, size_, PROT_READ, flags, fd, 0);
      ::close(fd);
      if (mapped == MAP_FAILED) throw io_error(path + ": cannot map file");
      const std::size_t length = size_;
      owner_ = std::shared_ptr<void>(mapped, [length](void* p) { ::munmap(p, length); });
      data_ = static_cast<const unsigned char*>(mapped);
    } else {
      ::close(fd);
    }
#else
    (void)populate;
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) throw io_error(path + ": cannot open file");
    const auto size = static_cast<std::streamoff>(in.tellg());
    if (size < 0) throw io_error(path + ": cannot determine file size");
    auto bytes = std::make_shared<std::vector<unsigned char>>(static_cast<std::size_t>(size));
    in.seekg(0);
    if (size > 0 && !in.read(reinterpret_cast<char*>(bytes->data()), size)) {
      throw io_error(path + ": read failed");
    }
    *this = mapped_file(std::move(bytes));
#endif
  }

  /// Bytes already in memory (tests, fuzzers, files built in memory).
  explicit mapped_file(std::vector<unsigned char> bytes)
      : mapped_file(std::make_shared<std::vector<unsigned char>>(std::move(bytes))) {}

  const unsigned char* data() const {
    return data_;
  }
  std::size_t size() const {
    return size_;
  }

 private:
  explicit mapped_file(std::shared_ptr<std::vector<unsigned char>> bytes)
      : data_(bytes->data()), size_(bytes->size()), owner_(std::move(bytes)) {}

  const unsigned char* data_ = nullptr;
  std::size_t size_ = 0;
  std::shared_ptr<void> owner_;  // keeps the mapping or the buffer alive (and copies cheap)
};

}  // namespace eigenformer
