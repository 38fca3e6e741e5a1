// eigenformer/core/error.hpp — the exception hierarchy every eigenformer function throws from.
// Depends on the standard library only.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace eigenformer {

/// Base of every exception the library throws; catch this to catch them all.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A matrix, sequence or config value has the wrong size (tokens beyond n_ctx, C % H != 0, ...).
class shape_error : public error {
 public:
  using error::error;
};

/// A value is outside its domain (token id >= vocab, negative epsilon, ...).
class value_error : public error {
 public:
  using error::error;
};

/// Bytes read from outside (safetensors, config.json, .npy) are malformed or inconsistent.
class format_error : public error {
 public:
  using error::error;
};

/// A file cannot be opened, read or written.
class io_error : public error {
 public:
  using error::error;
};

namespace detail {

template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}

}  // namespace detail
}  // namespace eigenformer
