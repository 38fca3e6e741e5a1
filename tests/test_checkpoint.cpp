// train/checkpoint.hpp: a checkpoint restores every bit of a run (weights, AdamW moments, step,
// sampler), so a run stopped and resumed ends bit-identical to one that never stopped; a
// truncated, damaged or half-written checkpoint is refused, never loaded.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <eigenformer/train/checkpoint.hpp>
#include <eigenformer/train/trainer.hpp>

namespace {

namespace ef = eigenformer;
namespace fs = std::filesystem;
using ef::index_t;
using ef::token_id;

struct temp_dir {
  fs::path path;
  temp_dir() {
    path = fs::temp_directory_path() /
           ("ef_checkpoint_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~temp_dir() { fs::remove_all(path); }
  static int& counter() {
    static int n = 0;
    return n;
  }
};

/// A Qwen3-shaped model: GQA, q/k norms, untied head — every kind of tensor a checkpoint holds.
ef::model_config small_qwen3() {
  auto c = ef::model_config::llama();
  c.model_type = "qwen3", c.qk_norm = true;
  c.n_layer = 2, c.n_head = 4, c.n_kv_head = 2, c.n_embd = 32, c.n_inner = 48;
  c.vocab_size = 40, c.n_ctx = 16;
  return c;
}

std::vector<token_id> corpus(index_t vocab) {
  std::vector<token_id> t(400);
  for (std::size_t i = 0; i < t.size(); ++i) t[i] = token_id((i * 7 + i / 13) % std::size_t(vocab));
  return t;
}

ef::training_options options(index_t steps) {
  ef::training_options o;
  o.batch = 3, o.seq_len = 12, o.seed = 5;
  o.schedule = {3e-3, 3e-4, 2, steps};
  return o;
}

template <class Scalar>
bool same_bits(const ef::model_config& c, ef::basic_model_weights<Scalar>& a,
               ef::basic_model_weights<Scalar>& b) {
  std::vector<std::pair<const Scalar*, index_t>> list;
  ef::for_each_parameter(c, a, [&](const std::string&, const auto& t, const auto&) {
    list.emplace_back(t.data(), t.size());
  });
  bool same = true;
  std::size_t i = 0;
  ef::for_each_parameter(c, b, [&](const std::string&, const auto& t, const auto&) {
    same = same && list[i].second == t.size() &&
           std::memcmp(list[i].first, t.data(), sizeof(Scalar) * std::size_t(t.size())) == 0;
    ++i;
  });
  return same && i == list.size();
}

template <class Scalar>
class Checkpoint : public ::testing::Test {};
using scalar_types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Checkpoint, scalar_types);

TYPED_TEST(Checkpoint, ResumingFromACheckpointEndsBitIdenticalToAnUninterruptedRun) {
  using S = TypeParam;
  const auto c = small_qwen3();
  const auto tokens = corpus(c.vocab_size);
  constexpr index_t total = 6, stop_at = 3;
  auto uninterrupted = ef::init_llama_weights<S>(c, 9, false);
  {
    ef::basic_trainer<S> t(c, uninterrupted, options(total));
    for (index_t s = 0; s < total; ++s) t.step(tokens);
  }
  temp_dir tmp;
  {
    auto w = ef::init_llama_weights<S>(c, 9, false);
    ef::basic_trainer<S> t(c, w, options(total));
    for (index_t s = 0; s < stop_at; ++s) t.step(tokens);
    ef::save_run_checkpoint<S>(tmp.path.string(), stop_at, c, w, t.optimizer_state(),
                               {{"step", stop_at}, {"sampler", t.sampler_state()}});
  }  // the process "dies": nothing survives but the directory
  const std::string dir = ef::find_resume_checkpoint(tmp.path.string());
  ASSERT_EQ(fs::path(dir).filename(), "step-3");
  auto loaded = ef::read_checkpoint<S>(dir);
  EXPECT_EQ(loaded.config.model_type, "qwen3");
  EXPECT_TRUE(loaded.config.qk_norm);
  EXPECT_EQ(loaded.config.n_kv_head, 2);
  EXPECT_FALSE(loaded.weights.tied_lm_head());
  ef::basic_trainer<S> t(loaded.config, loaded.weights, options(total));
  t.resume(loaded.run["step"].template get<index_t>(), loaded.optimizer,
           loaded.run["sampler"].template get<std::string>());
  for (index_t s = stop_at; s < total; ++s) t.step(tokens);
  EXPECT_TRUE(same_bits(c, loaded.weights, uninterrupted));
  // Not vacuous: training moved the weights away from their initial values.
  auto initial = ef::init_llama_weights<S>(c, 9, false);
  EXPECT_FALSE(same_bits(c, initial, uninterrupted));
}

/// A run directory with checkpoints at steps 2 and 4 (written by hand: save_run_checkpoint would
/// remove the older one).
struct two_checkpoints {
  temp_dir tmp;
  ef::model_config c = small_qwen3();
  std::string older, newer;
  two_checkpoints() {
    auto w = ef::init_llama_weights<float>(c, 3, false);
    const ef::adamw_state state(c, w);
    fs::create_directories(tmp.path / "checkpoints");
    older = (tmp.path / "checkpoints" / "step-2").string();
    newer = (tmp.path / "checkpoints" / "step-4").string();
    ef::write_checkpoint<float>(older, c, w, state, {{"step", 2}});
    ef::write_checkpoint<float>(newer, c, w, state, {{"step", 4}});
  }
};

TEST(Checkpoint, TheNewestIntactCheckpointIsChosenAndAHalfWrittenOneIgnored) {
  two_checkpoints run;
  fs::create_directories(run.tmp.path / "checkpoints" / "step-6.partial");  // a save cut short
  EXPECT_EQ(ef::find_resume_checkpoint(run.tmp.path.string()), run.newer);
  temp_dir empty;
  EXPECT_EQ(ef::find_resume_checkpoint(empty.path.string()), "");  // nothing yet: start over
}

void truncate_file(const fs::path& p) {
  fs::resize_file(p, fs::file_size(p) - 4);
}
void flip_a_byte(const fs::path& p) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(100);
  char b = 0;
  f.read(&b, 1);
  f.seekp(100);
  b = char(b ^ 0x10);
  f.write(&b, 1);
}

TEST(Checkpoint, DamagedCheckpointsAreRefusedWithTheFileNamed) {
  for (const auto& damage : std::vector<std::pair<std::string, void (*)(const fs::path&)>>{
           {"weights.safetensors", truncate_file},
           {"optimizer.safetensors", flip_a_byte},
           {"trainer.json", truncate_file},
           {"config.json", flip_a_byte},
           {"manifest.json", [](const fs::path& p) { fs::remove(p); }}}) {
    two_checkpoints run;
    damage.second(fs::path(run.newer) / damage.first);
    try {
      ef::read_checkpoint<float>(run.newer);
      ADD_FAILURE() << damage.first << ": a damaged checkpoint was loaded";
    } catch (const ef::checkpoint_error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(damage.first == "manifest.json" ? "manifest.json" : damage.first),
                std::string::npos)
          << what;
    }
    // Resuming the run falls back to the previous intact checkpoint and says why.
    std::vector<std::string> skipped;
    EXPECT_EQ(ef::find_resume_checkpoint(run.tmp.path.string(), &skipped), run.older);
    EXPECT_EQ(skipped.size(), 1u) << damage.first;
    // Named directly, the damaged checkpoint is an error, not a fallback.
    EXPECT_THROW(ef::find_resume_checkpoint(run.newer), ef::checkpoint_error);
  }
}

TEST(Checkpoint, ARunWithOnlyDamagedCheckpointsIsAnErrorNotAFreshStart) {
  two_checkpoints run;
  truncate_file(fs::path(run.newer) / "weights.safetensors");
  truncate_file(fs::path(run.older) / "weights.safetensors");
  EXPECT_THROW(ef::find_resume_checkpoint(run.tmp.path.string()), ef::checkpoint_error);
}

TEST(Checkpoint, SavingKeepsOnlyTheNewestAndReplacesADamagedOneOfTheSameStep) {
  two_checkpoints run;
  auto w = ef::init_llama_weights<float>(run.c, 3, false);
  const ef::adamw_state state(run.c, w);
  flip_a_byte(fs::path(run.newer) / "weights.safetensors");
  const auto dir =
      ef::save_run_checkpoint<float>(run.tmp.path.string(), 4, run.c, w, state, {{"step", 4}});
  EXPECT_EQ(dir, run.newer);
  EXPECT_NO_THROW(ef::verify_checkpoint(dir));  // rewritten
  EXPECT_FALSE(fs::exists(run.older));          // removed once the newer one was complete
  EXPECT_THROW(ef::write_checkpoint<float>(dir, run.c, w, state, {}), ef::io_error);
}

TEST(Checkpoint, ResumeRejectsAnInconsistentState) {
  const auto c = small_qwen3();
  auto w = ef::init_llama_weights<float>(c, 1, false);
  ef::trainer t(c, w, options(4));
  ef::adamw_state state(c, w);
  state.step = 2;
  EXPECT_THROW(t.resume(3, state, t.sampler_state()), ef::value_error);  // steps disagree
  EXPECT_THROW(t.resume(2, state, "not a generator state"), ef::format_error);
}

}  // namespace
