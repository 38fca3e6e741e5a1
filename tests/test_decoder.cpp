#include <gtest/gtest.h>

#include <cstring>

#include <eigenformer/model/decoder.hpp>

#include <eigenformer/io/hf_gpt2.hpp>

#include "reference.hpp"

namespace {

using eigenformer::index_t;
using eigenformer::token_id;

template <class Scalar>
class Decoder : public ::testing::Test {};
TYPED_TEST_SUITE(Decoder, ref::scalar_types);

constexpr double model_tolerance(bool is_float) {
  return is_float ? 1e-5 : 1e-10;
}

std::vector<token_id> random_tokens(size_t n, int vocab, ref::rng& r) {
  std::vector<token_id> t(n);
  for (auto& id : t) id = r.below(vocab);
  return t;
}

TYPED_TEST(Decoder, LogitsMatchNaiveModelTiedAndUntied) {
  using S = TypeParam;
  const auto config = ref::tiny_config<S>();
  for (const bool untied : {false, true}) {
    const auto weights = ref::random_weights<S>(config, 31, untied);
    eigenformer::validate_weights(config, weights);
    ref::rng r(5);
    const auto tokens = random_tokens(size_t(config.n_ctx), int(config.vocab_size), r);
    eigenformer::basic_activations<S> acts(config, config.n_ctx);
    const auto logits = eigenformer::forward(config, weights, tokens, acts);
    EXPECT_EQ(logits.rows(), config.n_ctx);
    EXPECT_EQ(logits.cols(), config.vocab_size);
    const auto expected = ref::model_logits(config, weights, tokens);
    EXPECT_LT(ref::relative_error(logits, expected), model_tolerance(std::is_same_v<S, float>))
        << "untied = " << untied;

    // Only the last position: same numbers as the last row of the reference.
    const auto last =
        eigenformer::forward(config, weights, tokens, acts, eigenformer::logits_for::last_position);
    ASSERT_EQ(last.rows(), 1);
    EXPECT_LT(ref::relative_error(last, {expected.back()}),
              model_tolerance(std::is_same_v<S, float>));
  }
}

TYPED_TEST(Decoder, ShorterSequencesReuseTheSameActivations) {
  using S = TypeParam;
  const auto config = ref::tiny_config<S>();
  const auto weights = ref::random_weights<S>(config, 3);
  eigenformer::basic_activations<S> acts(config, config.n_ctx);
  ref::rng r(6);
  for (size_t n : {size_t(1), size_t(5), size_t(12), size_t(2)}) {
    const auto tokens = random_tokens(n, int(config.vocab_size), r);
    const auto logits = eigenformer::forward(config, weights, tokens, acts);
    EXPECT_LT(ref::relative_error(logits, ref::model_logits(config, weights, tokens)),
              model_tolerance(std::is_same_v<S, float>))
        << n << " tokens";
  }
}

TYPED_TEST(Decoder, FutureTokensDoNotChangeEarlierLogitsBitForBit) {
  using S = TypeParam;
  const auto config = ref::tiny_config<S>();
  const auto weights = ref::random_weights<S>(config, 41);
  ref::rng r(9);
  const auto tokens = random_tokens(size_t(config.n_ctx), int(config.vocab_size), r);
  eigenformer::basic_activations<S> acts(config, config.n_ctx);
  const eigenformer::matrix<S> base = eigenformer::forward(config, weights, tokens, acts);
  for (index_t t = 0; t + 1 < config.n_ctx; ++t) {
    auto changed = tokens;
    for (size_t i = size_t(t) + 1; i < changed.size(); ++i)
      changed[i] =
          token_id((changed[i] + 1 + r.below(int(config.vocab_size) - 1)) % config.vocab_size);
    const eigenformer::matrix<S> logits = eigenformer::forward(config, weights, changed, acts);
    EXPECT_EQ(std::memcmp(base.data(), logits.data(), sizeof(S) * size_t((t + 1) * base.cols())), 0)
        << "positions <= " << t << " changed";
    EXPECT_NE(std::memcmp(base.data(), logits.data(), sizeof(S) * size_t(base.size())), 0);
  }
}

TYPED_TEST(Decoder, BadSequencesThrowWithTheReason) {
  using S = TypeParam;
  const auto config = ref::tiny_config<S>();
  const auto weights = ref::random_weights<S>(config, 1);
  eigenformer::basic_activations<S> acts(config, config.n_ctx);
  const auto message = [&](const std::vector<token_id>& tokens) -> std::string {
    try {
      eigenformer::forward(config, weights, tokens, acts);
    } catch (const eigenformer::error& e) {
      return e.what();
    }
    return "no exception";
  };
  EXPECT_EQ(message({}), "forward: the token sequence is empty");
  EXPECT_EQ(message(std::vector<token_id>(15, 1)),
            "forward: 15 tokens exceed the context of 12 by 3");
  EXPECT_EQ(message({1, 2, 37}), "token id 37 at position 2 is outside the vocabulary [0, 37)");
  EXPECT_EQ(message({-4}), "token id -4 at position 0 is outside the vocabulary [0, 37)");
  EXPECT_THROW(eigenformer::forward(config, weights, std::vector<token_id>(15, 1), acts),
               eigenformer::shape_error);
  EXPECT_THROW(eigenformer::forward(config, weights, {37}, acts), eigenformer::value_error);

  eigenformer::basic_activations<S> small(config, 4);
  EXPECT_THROW(eigenformer::forward(config, weights, std::vector<token_id>(5, 1), small),
               eigenformer::shape_error);
}

TYPED_TEST(Decoder, ConvenienceOverloadAllocatesItsOwnActivations) {
  using S = TypeParam;
  eigenformer::basic_model<S> model{ref::tiny_config<S>(), {}};
  model.weights = ref::random_weights<S>(model.config, 2);
  const std::vector<token_id> tokens{1, 2, 3};
  const auto logits = eigenformer::forward(model, tokens);
  EXPECT_LT(ref::relative_error(logits, ref::model_logits(model.config, model.weights, tokens)),
            model_tolerance(std::is_same_v<S, float>));
}

TEST(Config, ValidationNamesTheBadValue) {
  eigenformer::model_config c = eigenformer::model_config::gpt2_124m();
  EXPECT_NO_THROW(c.validate());
  c.n_head = 5;
  EXPECT_THROW(c.validate(), eigenformer::shape_error);
  c = {};
  c.n_layer = 0;
  EXPECT_THROW(c.validate(), eigenformer::value_error);
  c = {};
  c.layer_norm_epsilon = -1;
  EXPECT_THROW(c.validate(), eigenformer::value_error);
  c = {};
  c.vocab_size = index_t(1) << 40;
  EXPECT_THROW(c.validate(), eigenformer::value_error);
}

TEST(Weights, ValidationNamesTheMisshapenTensor) {
  const auto config = ref::tiny_config<float>();
  auto weights = ref::random_weights<float>(config, 1);
  weights.blocks[1].mlp.fc.bias.resize(3);
  try {
    eigenformer::validate_weights(config, weights);
    FAIL();
  } catch (const eigenformer::shape_error& e) {
    EXPECT_STREQ(e.what(), "weights: h.1.mlp.c_fc.bias is [1 x 3], expected [1 x 64]");
  }
}

TEST(Weights, Gpt2InitHasTheRightShapes) {
  auto config = ref::tiny_config<float>();
  const auto weights = eigenformer::init_gpt2_weights<float>(config, 7);
  EXPECT_NO_THROW(eigenformer::validate_weights(config, weights));
  EXPECT_TRUE(weights.tied_lm_head());
}

}  // namespace

namespace {

TYPED_TEST(Decoder, ObservedAttentionIsCausalAndRowsSumToOne) {
  using S = TypeParam;
  const auto config = ref::tiny_config<S>();
  const auto weights = ref::random_weights<S>(config, 12);
  ref::rng r(4);
  const auto tokens = random_tokens(10, int(config.vocab_size), r);
  eigenformer::basic_activations<S> acts(config, config.n_ctx);
  int calls = 0;
  eigenformer::forward<S>(config, weights, tokens, acts, eigenformer::logits_for::last_position,
                          [&](index_t layer, index_t head, eigenformer::matrix_cref<S> p) {
                            EXPECT_EQ(layer, calls / config.n_head);
                            EXPECT_EQ(head, calls % config.n_head);
                            ++calls;
                            ASSERT_EQ(p.rows(), 10);
                            ASSERT_EQ(p.cols(), 10);
                            for (index_t i = 0; i < 10; ++i) {
                              for (index_t j = i + 1; j < 10; ++j) EXPECT_EQ(p(i, j), S(0));
                              EXPECT_NEAR(double(p.row(i).sum()), 1.0, 1e-6);
                            }
                          });
  EXPECT_EQ(calls, config.n_layer * config.n_head);
  // The observer changes nothing: same logits as a plain call.
  const eigenformer::matrix<S> observed = eigenformer::forward(config, weights, tokens, acts);
  EXPECT_LT(ref::relative_error(observed, ref::model_logits(config, weights, tokens)),
            model_tolerance(std::is_same_v<S, float>));
}

// Extreme but valid inputs give finite logits: attention scores blown up by large query/key
// weights in reduced-precision checkpoints (F16, BF16 files, and bf16-packed weights), a
// residual stream scaled far up or down, and sequences filling the whole context through the KV
// cache. The mask still holds: the observer sees exact zeros above the diagonal.
TEST(Decoder, ExtremeButValidInputsGiveFiniteLogits) {
  for (const char* name : {"tiny_f16", "tiny_bf16_prefixed"}) {
    for (const bool packed : {false, true}) {
      auto m = eigenformer::load_hf_gpt2<float>(std::string(EIGENFORMER_FIXTURES_DIR) + "/" + name);
      for (auto& b : m.weights.blocks) {
        b.attn.qkv.weight.leftCols(2 * m.config.n_embd) *= 200.0f;  // Q and K: scores x 4e4
      }
      m.weights.wpe *= 1e4f;  // a residual stream of ~1e4 entering every LayerNorm
      if (packed) {
        eigenformer::pack_weights_bf16(m.weights, eigenformer::bf16_compute::float_activations);
      }
      std::vector<eigenformer::token_id> tokens;
      for (index_t i = 0; i < m.config.n_ctx; ++i) tokens.push_back(token_id((7 * i) % 50));
      eigenformer::activations acts(m.config, m.config.n_ctx);
      bool mask_held = true;
      const eigenformer::model_attention_observer<float> check_mask =
          [&](index_t, index_t, eigenformer::matrix_cref<float> p) {
            for (index_t i = 0; i < p.rows(); ++i) {
              for (index_t j = i + 1; j < p.cols(); ++j) mask_held = mask_held && p(i, j) == 0;
            }
          };
      const auto logits = eigenformer::forward(m.config, m.weights, tokens, acts,
                                               eigenformer::logits_for::all_positions, check_mask);
      EXPECT_TRUE(logits.allFinite()) << name << (packed ? " packed" : "");
      EXPECT_TRUE(mask_held) << name;
      eigenformer::kv_cache cache(m.config);  // the whole context one token at a time
      for (const auto t : tokens) {
        const auto row = eigenformer::forward(m.config, m.weights, cache, {t}, acts);
        ASSERT_TRUE(row.allFinite()) << name << " at position " << cache.n_past;
      }
    }
  }
  auto tiny = ref::random_weights<float>(ref::tiny_config<float>(), 5);
  tiny.wte *= 1e-30f, tiny.wpe *= 1e-30f;  // a residual stream near the float minimum
  eigenformer::activations acts(ref::tiny_config<float>(), 4);
  EXPECT_TRUE(
      eigenformer::forward(ref::tiny_config<float>(), tiny, {1, 2, 3, 4}, acts).allFinite());
}

// A tied model packed to bf16 (its embedding lookup then reads the packed LM head) computes
// the same logits as the float model whose packed matrices were rounded to bf16 beforehand.
TEST(Decoder, PackedBf16EqualsFloatModelWithRoundedWeights) {
  const auto c = ref::tiny_config<float>();
  auto packed = ref::random_weights<float>(c, 8);
  ASSERT_TRUE(packed.tied_lm_head());
  auto rounded = packed;
  const auto round = [](eigenformer::matrix<float>& m) {
    m = m.unaryExpr([](float v) { return eigenformer::round_to_bf16(v); });
  };
  round(rounded.wte);
  for (auto& b : rounded.blocks) {
    for (auto* layer : {&b.attn.qkv, &b.attn.proj, &b.mlp.fc, &b.mlp.proj}) round(layer->weight);
  }
  eigenformer::pack_weights_bf16(packed, eigenformer::bf16_compute::float_activations);
  EXPECT_EQ(packed.wte.size(), 0);
  std::vector<eigenformer::token_id> tokens;
  ref::rng r(9);
  for (int i = 0; i < 11; ++i) tokens.push_back(r.below(int(c.vocab_size)));
  eigenformer::activations acts(c, c.n_ctx);
  const eigenformer::matrix<float> expected = eigenformer::forward(c, rounded, tokens, acts);
  const eigenformer::matrix<float> actual = eigenformer::forward(c, packed, tokens, acts);
  EXPECT_LT(ref::relative_error(actual, ref::to_grid(expected)), 1e-5);
  EXPECT_THROW(eigenformer::validate_weights(c, packed), eigenformer::value_error);
}

// A tied model quantized at load (q4_0 layers, q8_0 head; its embedding lookup then reads the
// quantized head) computes the same logits as the float model holding the dequantized weights;
// a model whose rows are not whole blocks keeps those matrices in float.
TEST(Decoder, QuantizedEqualsFloatModelWithDequantizedWeights) {
  auto c = ref::tiny_config<float>();
  c.n_embd = 64;  // rows of 64 and 256 weights: whole blocks of 32
  auto quantized = ref::random_weights<float>(c, 8);
  eigenformer::quantize_weights(quantized, eigenformer::quant_type::q4_0,
                                eigenformer::quant_type::q8_0);
  ASSERT_TRUE(quantized.is_quantized());
  EXPECT_EQ(quantized.wte.size(), 0);
  EXPECT_TRUE(quantized.tied_lm_head());
  auto dequantized = quantized;
  dequantized.wte = eigenformer::dequantize(quantized.output_quantized).transpose();
  dequantized.output_quantized = {};
  for (auto& b : dequantized.blocks) {
    for (auto* layer : {&b.attn.qkv, &b.attn.proj, &b.mlp.fc, &b.mlp.proj}) {
      ASSERT_TRUE(layer->is_quantized());
      EXPECT_EQ(layer->quantized.segments.front().type, eigenformer::quant_type::q4_0);
      layer->weight = eigenformer::dequantize(layer->quantized);
      layer->quantized = {};
    }
  }
  std::vector<eigenformer::token_id> tokens;
  ref::rng r(9);
  for (int i = 0; i < 11; ++i) tokens.push_back(r.below(int(c.vocab_size)));
  eigenformer::activations acts(c, c.n_ctx);
  const eigenformer::matrix<float> expected = eigenformer::forward(c, dequantized, tokens, acts);
  // Activations kept in float, so only float rounding separates the two (the default int8
  // rounding of the activations is tested in test_quant_matmul).
  eigenformer::set_quant_activations(eigenformer::quant_activations::exact);
  const eigenformer::matrix<float> actual = eigenformer::forward(c, quantized, tokens, acts);
  eigenformer::set_quant_activations(eigenformer::quant_activations::int8);
  EXPECT_LT(ref::relative_error(actual, ref::to_grid(expected)), 1e-5);
  EXPECT_THROW(eigenformer::validate_weights(c, quantized), eigenformer::value_error);
  EXPECT_THROW(
      eigenformer::pack_weights_bf16(quantized, eigenformer::bf16_compute::float_activations),
      eigenformer::value_error);

  auto narrow = ref::random_weights<float>(ref::tiny_config<float>(), 8);  // rows of 16: no blocks
  eigenformer::quantize_weights(narrow, eigenformer::quant_type::q8_0,
                                eigenformer::quant_type::q8_0);
  EXPECT_FALSE(narrow.is_quantized());
  EXPECT_FALSE(narrow.blocks[0].attn.qkv.is_quantized());
  EXPECT_TRUE(narrow.blocks[0].mlp.proj.is_quantized());  // its rows are 64 wide

  // An untied model stays untied once its head is quantized: the embedding keeps its floats.
  auto untied = ref::random_weights<float>(c, 8);
  ref::rng head_values(10);
  untied.lm_head = ref::random_matrix<float>(c.vocab_size, c.n_embd, head_values);
  ASSERT_FALSE(untied.tied_lm_head());
  eigenformer::quantize_weights(untied, eigenformer::quant_type::q4_0,
                                eigenformer::quant_type::q8_0);
  ASSERT_TRUE(untied.is_quantized());
  EXPECT_FALSE(untied.tied_lm_head());
  EXPECT_EQ(untied.wte.rows(), c.vocab_size);
}

}  // namespace

namespace {

// Continuous batching: several sequences, each at its own position, some prefilling a chunk
// and some decoding one token, run through the model together. Each sequence's logits must be
// bit-identical to running it alone with its own cache — for GPT-2 and a Llama-family model
// (GQA, rotary), float and quantized weights, and any thread count.
TEST(Decoder, BatchedSequencesAreBitIdenticalToEachAlone) {
  namespace ef = eigenformer;
  if (!ef::batch_invariant_kernels) GTEST_SKIP() << "the portable build is not batch-invariant";
  std::vector<ef::model> models;
  {
    auto c = ref::tiny_config<float>();
    c.n_embd = 64;
    c.n_ctx = 40;
    models.push_back({c, ref::random_weights<float>(c, 21, /*untied=*/true)});
    auto q = models.back();
    ef::quantize_weights(q.weights, ef::quant_type::q4_0, ef::quant_type::q8_0);
    models.push_back(q);
  }
  {
    auto c = ef::model_config::llama();
    c.n_layer = 2, c.n_head = 4, c.n_kv_head = 2, c.n_embd = 64, c.n_inner = 96;
    c.vocab_size = 53, c.n_ctx = 40;
    models.push_back({c, ef::init_llama_weights<float>(c, 22)});
    auto q = models.back();
    ef::quantize_weights(q.weights, ef::quant_type::q8_0, ef::quant_type::q8_0);
    models.push_back(q);
    for (const auto compute :
         {ef::bf16_compute::float_activations, ef::bf16_compute::bf16_activations}) {
      auto b = models[2];
      ef::pack_weights_bf16(b.weights, compute);
      models.push_back(b);
    }
  }
  const int saved_threads = ef::num_threads();
  for (const auto& m : models) {
    const auto& c = m.config;
    ref::rng r(23);
    // Four sequences: prompts of 5, 1, 9 and 3 tokens, then steps of one token each.
    std::vector<std::vector<ef::token_id>> streams(4);
    const index_t prompts[] = {5, 1, 9, 3};
    for (auto& s : streams) {
      s.resize(24);
      for (auto& t : s) t = r.below(int(c.vocab_size));
    }
    // Alone: each sequence prefilled, then stepped, with its own cache.
    std::vector<std::vector<ef::matrix<float>>> alone(4);
    for (std::size_t i = 0; i < 4; ++i) {
      ef::kv_cache cache(c);
      ef::activations acts(c, c.n_ctx);
      index_t pos = 0;
      while (pos < 20) {
        const index_t n = pos == 0 ? prompts[i] : 1;
        const std::vector<ef::token_id> piece(streams[i].begin() + pos,
                                              streams[i].begin() + pos + n);
        alone[i].push_back(ef::forward(c, m.weights, cache, piece, acts));
        pos += n;
      }
    }
    for (const int threads : {1, 2, 3}) {
      ef::set_num_threads(threads);
      // Together: sequence i joins at step i (the others decoding meanwhile), so prefill chunks
      // and single tokens share steps, and the batch changes as sequences join.
      std::vector<ef::kv_cache> caches(4, ef::kv_cache(c));
      std::vector<index_t> position(4, 0), done(4, 0);
      ef::activations acts(c, c.n_ctx);
      for (int step = 0; step < 24; ++step) {
        std::vector<std::vector<ef::token_id>> pieces;
        std::vector<std::size_t> who;
        for (std::size_t i = 0; i < 4; ++i) {
          if (int(i) > step || position[i] >= 20) continue;
          const index_t n = position[i] == 0 ? prompts[i] : 1;
          pieces.emplace_back(streams[i].begin() + position[i],
                              streams[i].begin() + position[i] + n);
          who.push_back(i);
          position[i] += n;
        }
        if (who.empty()) continue;
        std::vector<ef::batch_sequence<float>> batch;
        for (std::size_t j = 0; j < who.size(); ++j) batch.push_back({&pieces[j], &caches[who[j]]});
        const auto logits = ef::forward_batch(c, m.weights, batch, acts);
        ASSERT_EQ(logits.rows(), index_t(who.size()));
        for (std::size_t j = 0; j < who.size(); ++j) {
          const std::size_t i = who[j];
          const ef::matrix<float>& expected = alone[i][std::size_t(done[i]++)];
          ASSERT_EQ(ef::matrix<float>(logits.row(index_t(j))), expected)
              << c.model_type << " threads " << threads << " sequence " << i << " step " << step;
        }
      }
    }
  }
  ef::set_num_threads(saved_threads);
}

// A batch that cannot run is refused whole, before any cache changes.
TEST(Decoder, BadBatchesAreClearErrors) {
  namespace ef = eigenformer;
  auto c = ref::tiny_config<float>();
  const ef::model m{c, ref::random_weights<float>(c, 24)};
  ef::activations acts(c, c.n_ctx);
  ef::kv_cache a(c), b(c);
  const std::vector<ef::token_id> one{1}, empty, too_long(std::size_t(c.n_ctx + 1), 1);
  EXPECT_THROW(ef::forward_batch(c, m.weights, {}, acts), ef::shape_error);
  EXPECT_THROW(ef::forward_batch(c, m.weights, {{&one, &a}, {&empty, &b}}, acts), ef::shape_error);
  EXPECT_THROW(ef::forward_batch(c, m.weights, {{&one, &a}, {&one, nullptr}}, acts),
               ef::shape_error);
  EXPECT_THROW(ef::forward_batch(c, m.weights, {{&one, &a}, {&too_long, &b}}, acts),
               ef::shape_error);
  EXPECT_EQ(a.n_past, 0);
  EXPECT_EQ(b.n_past, 0);
}

}  // namespace
