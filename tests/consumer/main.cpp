// Loads a checkpoint directory given on the command line and prints the argmax of the last
// position's logits.
#include <cstdio>

#include <eigenformer/eigenformer.hpp>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: consumer MODEL_DIR\n");
    return 2;
  }
  const auto model = eigenformer::load_hf_gpt2<float>(argv[1]);
  const auto logits = eigenformer::forward(model, {1, 2, 3});
  eigenformer::index_t best = 0;
  logits.row(logits.rows() - 1).maxCoeff(&best);
  std::printf("consumer ok: argmax %ld\n", static_cast<long>(best));
  return 0;
}
