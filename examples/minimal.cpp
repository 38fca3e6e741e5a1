// The README's API tour: build a GPT-2 from code, run it, and (given a directory) load a
// Hugging Face checkpoint.
//
//   ./minimal                      # a random 2-layer model built in code
//   ./minimal path/to/gpt2-dir     # a real checkpoint: config.json + model.safetensors
#include <cstdio>
#include <vector>

#include <eigenformer/eigenformer.hpp>

namespace ef = eigenformer;

int main(int argc, char** argv) try {
  ef::model m;
  if (argc > 1) {
    m = ef::load_hf_gpt2<float>(argv[1]);
  } else {
    m.config.n_layer = 2;
    m.config.n_head = 4;
    m.config.n_embd = 64;
    m.config.vocab_size = 100;
    m.config.n_ctx = 32;
    m.weights = ef::init_gpt2_weights<float>(m.config, /*seed=*/42);
  }
  const std::vector<ef::token_id> tokens{10, 20, 30, 40};

  // Buffers are sized once; every forward call reuses them.
  ef::activations acts(m.config, /*max_tokens=*/m.config.n_ctx);
  const auto logits = ef::forward(m.config, m.weights, tokens, acts);  // [T x V]

  ef::index_t best = 0;
  logits.row(logits.rows() - 1).maxCoeff(&best);
  std::printf("%ld layers, logits [%ld x %ld], most likely next token: %ld\n",
              static_cast<long>(m.config.n_layer), static_cast<long>(logits.rows()),
              static_cast<long>(logits.cols()), static_cast<long>(best));
  return 0;
} catch (const ef::error& e) {
  std::fprintf(stderr, "minimal: error: %s\n", e.what());
  return 1;
}
