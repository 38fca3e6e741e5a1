// eigenformer/io/model_file.hpp — a model from wherever it is: a Hugging Face checkpoint
// directory (io/hf_model.hpp) or a GGUF file (io/gguf_model.hpp). Requires nlohmann-json in
// addition to Eigen (for the Hugging Face side).
#pragma once

#include <sys/stat.h>
#include <string>

#include "eigenformer/core/error.hpp"
#include "eigenformer/io/gguf_model.hpp"
#include "eigenformer/io/hf_model.hpp"

namespace eigenformer {

/// Whether `path` is a regular file (a GGUF model) rather than a directory.
inline bool is_model_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

/// The config of the model at `path` (a GGUF file, or a Hugging Face directory).
inline model_config read_model_config(const std::string& path) {
  if (is_model_file(path)) return read_gguf_config(gguf_file(path));
  return read_hf_model_config(path);
}

/// Loads the model at `path` (a GGUF file, or a Hugging Face directory). A float model keeps a
/// GGUF file's quantized tensors quantized unless `quantized` says otherwise.
template <class Scalar>
basic_model<Scalar> load_model(const std::string& path,
                               gguf_quantized quantized = gguf_quantized::keep) {
  if (is_model_file(path)) return load_gguf_model<Scalar>(path, quantized);
  return load_hf_model<Scalar>(path);
}

}  // namespace eigenformer
