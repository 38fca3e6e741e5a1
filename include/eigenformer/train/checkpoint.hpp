// eigenformer/train/checkpoint.hpp — a training run's whole state in a directory, written so that
// a crash at any moment leaves either the new checkpoint complete or the previous one untouched,
// and verified before anything is loaded from it. Requires nlohmann-json (and POSIX: fsync,
// rename) in addition to Eigen.
//
// A checkpoint directory holds
//   config.json            the model's config (the Hugging Face config of its family)
//   weights.safetensors    every parameter, under for_each_parameter's names, in its own dtype
//   optimizer.safetensors  AdamW's moments: "m.<name>" and "v.<name>"
//   trainer.json           the caller's record of the run: step, sampler state, options, data...
//   any files the caller adds (the tokenizer)
//   manifest.json          written last: every other file's size and FNV-1a 64 checksum
//
// Writing (write_checkpoint): every file goes into "<dir>.partial", is flushed and fsync'ed; the
// manifest last; then the directory is renamed to <dir> and its parent fsync'ed. rename() is
// atomic, so <dir> either does not exist or is complete. A run keeps its checkpoints in
// <run>/checkpoints/step-<N> (save_run_checkpoint), and removes the older ones only after the new
// one is in place. Reading (read_checkpoint) first checks every file against the manifest:
// a truncated or damaged checkpoint is refused with checkpoint_error, never loaded.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eigenformer/core/error.hpp"
#include "eigenformer/io/hf_model.hpp"
#include "eigenformer/io/safetensors.hpp"
#include "eigenformer/io/safetensors_writer.hpp"
#include "eigenformer/model/config.hpp"
#include "eigenformer/model/training.hpp"
#include "eigenformer/model/weights.hpp"
#include "eigenformer/train/adamw.hpp"

namespace eigenformer {

/// A checkpoint that is incomplete, damaged, or not a checkpoint.
class checkpoint_error : public io_error {
 public:
  using io_error::io_error;
};

/// FNV-1a (64 bits) of a file's bytes: detects truncation and accidental damage (not tampering).
inline std::uint64_t file_checksum(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error(path + ": cannot be read");
  std::uint64_t hash = 0xcbf29ce484222325ull;
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto n = static_cast<std::size_t>(in.gcount());
    for (std::size_t i = 0; i < n; ++i) {
      hash ^= static_cast<unsigned char>(buffer[i]);
      hash *= 0x100000001b3ull;
    }
  }
  if (in.bad()) throw io_error(path + ": read failed");
  return hash;
}

namespace detail {

inline std::string hex64(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

/// fsync of a file or a directory: its bytes (or its entries) are on the disk when this returns.
inline void fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw io_error(path + ": cannot be opened to be synced");
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw io_error(path + ": fsync failed");
}

inline void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  if (!(out << text) || !out.flush()) throw io_error(path + ": cannot write");
}

inline nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw checkpoint_error(path + ": missing");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw checkpoint_error(path + ": not valid JSON (" + e.what() + ")");
  }
}

}  // namespace detail

/// Checks every file a checkpoint's manifest lists: present, of the recorded size and checksum.
/// Throws checkpoint_error naming the first file that is not.
inline void verify_checkpoint(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string manifest_path = (fs::path(dir) / "manifest.json").string();
  if (!fs::is_regular_file(manifest_path)) {
    throw checkpoint_error(dir + ": not a complete checkpoint (no manifest.json)");
  }
  const nlohmann::json manifest = detail::read_json_file(manifest_path);
  const auto files = manifest.find("files");
  if (files == manifest.end() || !files->is_object() || files->empty()) {
    throw checkpoint_error(manifest_path + ": no 'files' object");
  }
  for (const auto& [name, entry] : files->items()) {
    const fs::path path = fs::path(dir) / name;
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == ".." ||
        !entry.is_object() || !entry.contains("bytes") || !entry.contains("fnv1a64")) {
      throw checkpoint_error(manifest_path + ": bad entry '" + name + "'");
    }
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (ec) throw checkpoint_error(path.string() + ": missing");
    if (!entry["bytes"].is_number_unsigned() || size != entry["bytes"].get<std::uintmax_t>()) {
      throw checkpoint_error(detail::concat(path.string(), ": ", size, " bytes, the manifest says ",
                                            entry["bytes"].dump(), " (truncated or damaged)"));
    }
    if (detail::hex64(file_checksum(path.string())) != entry["fnv1a64"]) {
      throw checkpoint_error(path.string() + ": checksum differs from the manifest (damaged)");
    }
  }
}

/// What a checkpoint holds.
template <class Scalar>
struct checkpoint_contents {
  model_config config;
  basic_model_weights<Scalar> weights;
  basic_adamw_state<Scalar> optimizer;
  nlohmann::json run;  // the caller's record of the run (trainer.json)
};

/// Writes a complete checkpoint to `dir` (which must not exist) atomically; see the top of the
/// file. `extra_files` (the tokenizer, ...) are copied in under their own names.
template <class Scalar>
void write_checkpoint(const std::string& dir, const model_config& config,
                      const basic_model_weights<Scalar>& weights,
                      const basic_adamw_state<Scalar>& optimizer, const nlohmann::json& run_record,
                      const std::vector<std::string>& extra_files = {}) {
  namespace fs = std::filesystem;
  validate_weights(config, weights);
  const fs::path final_dir(dir), partial(dir + ".partial");
  if (fs::exists(final_dir)) throw io_error(dir + ": already exists");
  fs::remove_all(partial);  // what a crash in an earlier save left behind
  fs::create_directories(partial);

  detail::write_text_file((partial / "config.json").string(),
                          hf_config_json(config, weights.tied_lm_head()).dump(2) + "\n");
  safetensors_writer w, moments;
  for_each_parameter(config, weights,
                     [&](const std::string& name, const auto& t, const auto& shape) {
                       w.add_exact<Scalar>(name, t, shape);
                     });
  for (const char* which : {"m", "v"}) {
    const auto& state = which[0] == 'm' ? optimizer.m : optimizer.v;
    for_each_parameter(config, state,
                       [&](const std::string& name, const auto& t, const auto& shape) {
                         moments.add_exact<Scalar>(std::string(which) + "." + name, t, shape);
                       });
  }
  w.write((partial / "weights.safetensors").string());
  moments.write((partial / "optimizer.safetensors").string());
  nlohmann::json record = run_record;
  record["optimizer_step"] = optimizer.step;
  detail::write_text_file((partial / "trainer.json").string(), record.dump(2) + "\n");
  for (const auto& file : extra_files) {
    fs::copy_file(file, partial / fs::path(file).filename(), fs::copy_options::overwrite_existing);
  }

  nlohmann::json files = nlohmann::json::object();
  for (const auto& entry : fs::directory_iterator(partial)) {
    const std::string path = entry.path().string();
    detail::fsync_path(path);
    files[entry.path().filename().string()] = {{"bytes", fs::file_size(entry.path())},
                                               {"fnv1a64", detail::hex64(file_checksum(path))}};
  }
  detail::write_text_file(
      (partial / "manifest.json").string(),
      nlohmann::json{{"format", "eigenformer-checkpoint-1"}, {"files", files}}.dump(2) + "\n");
  detail::fsync_path((partial / "manifest.json").string());
  detail::fsync_path(partial.string());
  fs::rename(partial, final_dir);
  detail::fsync_path(final_dir.parent_path().empty() ? "." : final_dir.parent_path().string());
}

/// Verifies, then reads a checkpoint directory.
template <class Scalar>
checkpoint_contents<Scalar> read_checkpoint(const std::string& dir) {
  namespace fs = std::filesystem;
  verify_checkpoint(dir);
  checkpoint_contents<Scalar> c;
  c.config = read_hf_model_config(dir);
  c.run = detail::read_json_file((fs::path(dir) / "trainer.json").string());
  const safetensors_file weights((fs::path(dir) / "weights.safetensors").string());
  const safetensors_file moments((fs::path(dir) / "optimizer.safetensors").string());
  const bool tied = !weights.contains("lm_head.weight");
  const auto shaped = [&] {
    basic_model_weights<Scalar> w;
    w.blocks.resize(static_cast<std::size_t>(c.config.n_layer));
    if (!tied) w.lm_head.resize(c.config.vocab_size, c.config.n_embd);
    return w;
  };
  const auto fill = [&](const safetensors_file& file, const std::string& prefix,
                        basic_model_weights<Scalar>& w) {
    for_each_parameter(c.config, w, [&](const std::string& name, auto& t, const auto& shape) {
      t = file.read<Scalar>(prefix + name, shape);
    });
  };
  c.weights = shaped();
  fill(weights, "", c.weights);
  c.optimizer.m = shaped();
  c.optimizer.v = shaped();
  fill(moments, "m.", c.optimizer.m);
  fill(moments, "v.", c.optimizer.v);
  if (!c.run.contains("optimizer_step") || !c.run["optimizer_step"].is_number_integer()) {
    throw checkpoint_error(dir + "/trainer.json: no optimizer_step");
  }
  c.optimizer.step = c.run["optimizer_step"].template get<std::int64_t>();
  return c;
}

// --- A run's checkpoints: <run>/checkpoints/step-<N> ---

namespace detail {
/// step-<N> directories of <run>/checkpoints, newest first.
inline std::vector<std::pair<std::int64_t, std::string>> run_checkpoints(
    const std::string& run_dir) {
  namespace fs = std::filesystem;
  std::vector<std::pair<std::int64_t, std::string>> found;
  const fs::path root = fs::path(run_dir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return found;
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || name.rfind("step-", 0) != 0 || name.size() == 5 ||
        name.find_first_not_of("0123456789", 5) != std::string::npos || name.size() > 23) {
      continue;  // not ours, or a .partial one
    }
    found.emplace_back(std::stoll(name.substr(5)), entry.path().string());
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a > b; });
  return found;
}
}  // namespace detail

/// The checkpoint to resume from in `path`: `path` itself if it is a checkpoint directory
/// (verified: a damaged one is an error), else the newest complete checkpoint of the run
/// directory `path` — a damaged newer one is skipped and reported in `skipped`. Returns "" when
/// the run has no checkpoint at all; throws checkpoint_error when it has some but none is intact.
inline std::string find_resume_checkpoint(const std::string& path,
                                          std::vector<std::string>* skipped = nullptr) {
  namespace fs = std::filesystem;
  if (fs::is_regular_file(fs::path(path) / "manifest.json") ||
      fs::is_regular_file(fs::path(path) / "trainer.json")) {
    verify_checkpoint(path);
    return path;
  }
  std::string reasons;
  for (const auto& [step, dir] : detail::run_checkpoints(path)) {
    try {
      verify_checkpoint(dir);
      return dir;
    } catch (const checkpoint_error& e) {
      if (skipped) skipped->push_back(e.what());
      reasons += std::string(reasons.empty() ? "" : "; ") + e.what();
    }
  }
  if (!reasons.empty()) {
    throw checkpoint_error(path + ": no intact checkpoint to resume from: " + reasons);
  }
  return "";
}

/// Writes step `step` of a run as <run>/checkpoints/step-<step> (atomically, see
/// write_checkpoint), then removes the run's older checkpoints and any partial one. Returns the
/// new directory. An intact checkpoint of the same step is kept as it is (it holds the same
/// state: resuming from it and saving again before another step); a damaged one is replaced.
template <class Scalar>
std::string save_run_checkpoint(const std::string& run_dir, std::int64_t step,
                                const model_config& config,
                                const basic_model_weights<Scalar>& weights,
                                const basic_adamw_state<Scalar>& optimizer,
                                const nlohmann::json& run_record,
                                const std::vector<std::string>& extra_files = {}) {
  namespace fs = std::filesystem;
  const fs::path root = fs::path(run_dir) / "checkpoints";
  fs::create_directories(root);
  const std::string dir = (root / ("step-" + std::to_string(step))).string();
  if (fs::exists(dir)) {
    try {
      verify_checkpoint(dir);
    } catch (const checkpoint_error&) {
      fs::remove_all(dir);  // damaged: replaced by this save
    }
  }
  if (!fs::exists(dir)) write_checkpoint(dir, config, weights, optimizer, run_record, extra_files);
  for (const auto& [older, path] : detail::run_checkpoints(run_dir)) {
    if (older != step) fs::remove_all(path);
  }
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 8 && name.compare(name.size() - 8, 8, ".partial") == 0) {
      fs::remove_all(entry.path());
    }
  }
  return dir;
}

}  // namespace eigenformer
