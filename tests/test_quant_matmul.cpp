#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <eigenformer/core/parallel.hpp>
#include <eigenformer/ops/quant_matmul.hpp>

#include "reference.hpp"

namespace {

using eigenformer::index_t;
using eigenformer::matrix;
using eigenformer::quant_type;
using eigenformer::quantized_matrix;

const quant_type all_types[] = {quant_type::q8_0, quant_type::q4_0, quant_type::q5_0,
                                quant_type::q5_1, quant_type::q4_k, quant_type::q5_k,
                                quant_type::q6_k};

// n_cols columns of K weights of type t. The 32-weight types get quantized random weights; the
// k-quants get random bytes with finite fp16 scales of both signs (every bit pattern of the
// packed scales, mins and quants appears).
void append_random_columns(quantized_matrix& q, quant_type t, index_t n_cols, ref::rng& r) {
  const index_t K = q.rows;
  if (eigenformer::traits_of(t).block_weights == 32) {
    const matrix<float> w = ref::random_matrix<float>(K, n_cols, r);
    const quantized_matrix part = eigenformer::quantize_matrix(w, t);
    q.append_columns(t, n_cols, part.segments.front().ggml_bytes().data());
    return;
  }
  const auto& traits = eigenformer::traits_of(t);
  std::vector<unsigned char> bytes(
      std::size_t(n_cols * K / traits.block_weights * traits.block_bytes));
  for (auto& b : bytes) b = static_cast<unsigned char>(r.below(256));
  // The fp16 scales: d and dmin at bytes 0 and 2 of q4_k/q5_k, d at byte 208 of q6_k.
  const std::vector<index_t> scale_offsets =
      t == quant_type::q6_k ? std::vector<index_t>{208} : std::vector<index_t>{0, 2};
  for (std::size_t block = 0; block < bytes.size() / std::size_t(traits.block_bytes); ++block) {
    for (const index_t off : scale_offsets) {
      const float scale = float(r.symmetric(1.0) * 0.01);
      const std::uint16_t bits = eigenformer::detail::fp16_bits(scale);
      bytes[block * std::size_t(traits.block_bytes) + std::size_t(off)] = bits & 0xff;
      bytes[block * std::size_t(traits.block_bytes) + std::size_t(off) + 1] = bits >> 8;
    }
  }
  q.append_columns(t, n_cols, bytes.data());
}

quantized_matrix random_quantized(index_t K,
                                  const std::vector<std::pair<quant_type, index_t>>& parts,
                                  ref::rng& r) {
  quantized_matrix q;
  q.rows = K;
  for (const auto& [t, n] : parts) append_random_columns(q, t, n, r);
  return q;
}

// x W + b with W the dequantized weights, in double: the reference every path is held to.
matrix<double> naive(const matrix<float>& x, const quantized_matrix& q,
                     const std::vector<float>& b) {
  const matrix<float> w = eigenformer::dequantize(q);
  matrix<double> out(x.rows(), w.cols());
  for (index_t t = 0; t < x.rows(); ++t) {
    for (index_t n = 0; n < w.cols(); ++n) {
      double s = b.empty() ? 0.0 : double(b[std::size_t(n)]);
      for (index_t k = 0; k < w.rows(); ++k) s += double(x(t, k)) * double(w(k, n));
      out(t, n) = s;
    }
  }
  return out;
}

// By default x is rounded to int8 per block of 32 before the product, as ggml does:
// d = max|x| / 127, q = round-half-even(x * (1 / d)).
struct int8_block {
  float d = 0.0f;
  int q[32] = {};
};

std::vector<int8_block> round_activations(const float* x, index_t K) {
  std::vector<int8_block> blocks(std::size_t(K / 32));
  for (std::size_t b = 0; b < blocks.size(); ++b) {
    float amax = 0.0f;
    for (index_t e = 0; e < 32; ++e) amax = std::max(amax, std::fabs(x[32 * b + std::size_t(e)]));
    blocks[b].d = amax / 127.0f;
    const float inverse = blocks[b].d != 0.0f ? 1.0f / blocks[b].d : 0.0f;
    for (index_t e = 0; e < 32; ++e)
      blocks[b].q[e] = int(std::nearbyint(x[32 * b + std::size_t(e)] * inverse));
  }
  return blocks;
}

// Their value d q, in float (exact: 24 x 8 bits).
matrix<float> rounded_activations(const matrix<float>& x) {
  matrix<float> rounded(x.rows(), x.cols());
  for (index_t t = 0; t < x.rows(); ++t) {
    const matrix<float> row = x.row(t);
    const auto blocks = round_activations(row.data(), x.cols());
    for (index_t k = 0; k < x.cols(); ++k) {
      const auto& block = blocks[std::size_t(k / 32)];
      rounded(t, k) = float(double(block.d) * block.q[k % 32]);
    }
  }
  return rounded;
}

float half(const unsigned char* p) {
  return eigenformer::detail::fp16_value(std::uint16_t(p[0] | p[1] << 8));
}

// Weight k of column n as the formats lay it out (quant/blocks.hpp, quant/k_quants.hpp),
// decoded here byte by byte: w = a (u - offset) - m, u >= 0 the stored code.
struct weight_code {
  int u = 0, offset = 0;
  float a = 0.0f, m = 0.0f;
};

weight_code code_of(const quantized_matrix& q, index_t k, index_t n) {
  const auto& s = q.segments.front();
  const auto& traits = eigenformer::traits_of(s.type);
  std::vector<unsigned char> row(std::size_t(s.row_bytes));
  s.column_blocks(n - s.first, row.data());  // ggml's layout (tested below)
  const unsigned char* block = row.data() + k / traits.block_weights * traits.block_bytes;
  const int e = int(k % 32), j = int(k % traits.block_weights) / 32;  // j: block of 32 in 256
  weight_code c;
  switch (s.type) {
    case quant_type::q8_0:
      c = {block[2 + e] ^ 0x80, 128, half(block), 0.0f};
      break;
    case quant_type::q4_0:
      c = {e < 16 ? block[2 + e] & 15 : block[2 + e - 16] >> 4, 8, half(block), 0.0f};
      break;
    case quant_type::q5_0: {
      const std::uint32_t high =
          block[2] | block[3] << 8 | block[4] << 16 | std::uint32_t(block[5]) << 24;
      const int low = e < 16 ? block[6 + e] & 15 : block[6 + e - 16] >> 4;
      c = {low | int((high >> e) & 1) << 4, 16, half(block), 0.0f};
      break;
    }
    case quant_type::q5_1: {  // w = d u + min: m = -min
      const std::uint32_t high =
          block[4] | block[5] << 8 | block[6] << 16 | std::uint32_t(block[7]) << 24;
      const int low = e < 16 ? block[8 + e] & 15 : block[8 + e - 16] >> 4;
      c = {low | int((high >> e) & 1) << 4, 0, half(block), -half(block + 2)};
      break;
    }
    case quant_type::q4_k:
    case quant_type::q5_k: {
      const unsigned char* packed = block + 4;  // 6-bit scale and min of each sub-block j
      const int scale = j < 4 ? packed[j] & 63 : (packed[j + 4] & 15) | (packed[j - 4] >> 6) << 4;
      const int min = j < 4 ? packed[j + 4] & 63 : (packed[j + 4] >> 4) | (packed[j] >> 6) << 4;
      const unsigned char* qs = block + (s.type == quant_type::q4_k ? 16 : 48);
      c.u = (qs[32 * (j / 2) + e] >> (4 * (j % 2))) & 15;
      if (s.type == quant_type::q5_k) c.u |= ((block[16 + e] >> j) & 1) << 4;
      c.a = half(block) * float(scale);
      c.m = half(block + 2) * float(min);
      break;
    }
    case quant_type::q6_k: {
      const int h = j / 4, r = j % 4;
      const int low = (block[64 * h + 32 * (r % 2) + e] >> (4 * (r / 2))) & 15;
      const int high = (block[128 + 32 * h + e] >> (2 * r)) & 3;
      c = {low | high << 4, 32,
           half(block + 208) * float(static_cast<std::int8_t>(block[192 + 2 * j + e / 16])), 0.0f};
      break;
    }
  }
  return c;
}

// The summation order ops/quant_int8.hpp documents, written out in scalar code: per block of
// 32 (q6_k: per half of 16) an exact integer sum, scaled and added to one running sum with fma,
// block after block, then the bias. Every build (AVX512-VNNI or portable) must give these bits.
float int8_order(const float* x, index_t K, const quantized_matrix& q, index_t n, float bias) {
  const auto xb = round_activations(x, K);
  const quant_type type = q.segment_of(n).type;
  const index_t parts = type == quant_type::q6_k ? 2 : 1;  // halves with their own scale
  float acc = 0.0f;
  for (index_t b = 0; b < K / 32; ++b) {
    const int8_block& xq = xb[std::size_t(b)];
    for (index_t h = 0; h < parts; ++h) {
      std::int32_t sum = 0, x_sum = 0;
      weight_code c;
      for (index_t e = 32 / parts * h; e < 32 / parts * (h + 1); ++e) {
        c = code_of(q, 32 * b + e, n);
        sum += (c.u - c.offset) * xq.q[e];
        x_sum += xq.q[e];
      }
      if (c.offset == 0) {  // q5_1, q4_k, q5_k: w = a u - m
        acc = std::fma(std::fma(float(sum), c.a, float(-x_sum) * c.m), xq.d, acc);
      } else {
        acc = std::fma(float(sum), c.a * xq.d, acc);
      }
    }
  }
  return acc + bias;
}

// Sets how activations are multiplied for one scope.
struct activations_scope {
  eigenformer::quant_activations saved = eigenformer::get_quant_activations();
  explicit activations_scope(eigenformer::quant_activations a) {
    eigenformer::set_quant_activations(a);
  }
  ~activations_scope() { eigenformer::set_quant_activations(saved); }
};

matrix<float> run(const matrix<float>& x, const quantized_matrix& q, const std::vector<float>& b) {
  matrix<float> out(x.rows(), q.cols);
  eigenformer::quant_matmul(x, q, b.empty() ? nullptr : b.data(), out);
  return out;
}

// Every type, one row (decoding) and several (prefill), both ways of multiplying, against
// double loops over the weights as ggml dequantizes them times x — by default x rounded to int8
// per block as ggml does. The bound is float rounding of a sum of K + 1 terms,
// (K + 1) u sum |x| (|a (u - offset)| + |m|) with u = 2^-24 (a wrong weight errs by about
// sum |x w| / K, far above it). The rounded x stays within d_x / 2 of x, so the int8 way is also
// held to that against the unrounded x.
TEST(QuantMatmul, MatchesDoubleLoopsOverDequantizedWeights) {
  ref::rng r(21);
  for (const auto mode :
       {eigenformer::quant_activations::int8, eigenformer::quant_activations::exact}) {
    const activations_scope scope(mode);
    const bool int8 = mode == eigenformer::quant_activations::int8;
    for (const quant_type t : all_types) {
      const index_t block = eigenformer::traits_of(t).block_weights;
      for (const index_t K :
           {block, 2 * block, 3 * block, block == 32 ? index_t(576) : index_t(768)}) {
        const quantized_matrix q = random_quantized(K, {{t, 45}}, r);
        std::vector<float> bias(45);
        for (auto& v : bias) v = float(r.symmetric(1.0));
        const matrix<float> w = eigenformer::dequantize(q);
        matrix<double> term(K, q.cols);  // |a (u - offset)| + |m|, at least |w|
        for (index_t n = 0; n < q.cols; ++n) {
          for (index_t k = 0; k < K; ++k) {
            const weight_code c = code_of(q, k, n);
            // The decoding above is the format's: it gives dequantize's value, bit for bit.
            ASSERT_EQ(c.a * float(c.u - c.offset) - c.m, w(k, n)) << k << ", " << n;
            term(k, n) = std::fabs(double(c.a) * (c.u - c.offset)) + std::fabs(double(c.m));
          }
        }
        for (const index_t T : {1, 2, 4, 7, 13}) {
          const matrix<float> x = ref::random_matrix<float>(T, K, r);
          const matrix<float> x_used = int8 ? rounded_activations(x) : x;
          const matrix<double> expected = naive(x_used, q, bias);
          const matrix<double> unrounded = naive(x, q, bias);
          const matrix<float> got = run(x, q, bias);
          for (index_t i = 0; i < T; ++i) {
            const matrix<float> row = x.row(i);
            const auto blocks = round_activations(row.data(), K);
            for (index_t n = 0; n < q.cols; ++n) {
              double magnitude = std::fabs(bias[std::size_t(n)]), rounding = 0.0;
              for (index_t k = 0; k < K; ++k) {
                magnitude += std::fabs(double(x_used(i, k))) * term(k, n);
                rounding += std::fabs(double(w(k, n))) * blocks[std::size_t(k / 32)].d / 2;
              }
              const double bound = double(K + 1) * 0x1p-24 * magnitude + 1e-30;
              ASSERT_NEAR(got(i, n), expected(i, n), bound)
                  << eigenformer::traits_of(t).name << " int8=" << int8 << " K=" << K << " T=" << T
                  << " (" << i << ", " << n << ")";
              if (int8) {
                ASSERT_NEAR(got(i, n), unrounded(i, n), bound + rounding);
              }
            }
          }
        }
      }
    }
  }
}

// With int8 activations every type gives exactly the bits of the order ops/quant_int8.hpp
// documents, written out in scalar code here: on one row, on batches (register tiles of 4 rows),
// with a last group of 16 columns only partly used, in the AVX512-VNNI and the portable build.
TEST(QuantMatmul, Int8FollowsTheDocumentedOrderBitForBit) {
  ref::rng r(26);
  for (const quant_type t : all_types) {
    const bool k_quant = eigenformer::traits_of(t).block_weights == 256;
    const std::vector<index_t> sizes =
        k_quant ? std::vector<index_t>{256, 768} : std::vector<index_t>{32, 96, 576};
    for (const index_t K : sizes) {
      const quantized_matrix q = random_quantized(K, {{t, 23}}, r);
      std::vector<float> bias(23);
      for (auto& v : bias) v = float(r.symmetric(1.0));
      for (const index_t T : {1, 6}) {
        matrix<float> x = ref::random_matrix<float>(T, K, r);
        x.row(0).head(32).setZero();  // an all-zero block: d = 0
        const matrix<float> got = run(x, q, bias);
        for (index_t n = 0; n < q.cols; ++n) {
          for (index_t i = 0; i < T; ++i) {
            const matrix<float> row = x.row(i);
            ASSERT_EQ(got(i, n), int8_order(row.data(), K, q, n, bias[std::size_t(n)]))
                << eigenformer::traits_of(t).name << " K=" << K << " T=" << T << " (" << i << ", "
                << n << ")";
          }
        }
      }
    }
  }
}

// With exact activations, x = the identity picks out each weight: the weights the exact path
// multiplies (given back from the interleaved layout) equal ggml's scalar dequantization bit for
// bit, for one row and for many. (The int8 way is checked weight by weight by the test above.)
TEST(QuantMatmul, DequantizesEveryWeightExactlyAsGgml) {
  const activations_scope scope(eigenformer::quant_activations::exact);
  ref::rng r(22);
  for (const quant_type t : all_types) {
    const index_t K = eigenformer::traits_of(t).block_weights == 32 ? 96 : 256;
    const quantized_matrix q = random_quantized(K, {{t, 19}}, r);
    const matrix<float> w = eigenformer::dequantize(q);
    const matrix<float> identity = matrix<float>::Identity(K, K);
    const matrix<float> all = run(identity, q, {});
    for (index_t k = 0; k < K; ++k) {
      const matrix<float> one = run(identity.row(k), q, {});
      for (index_t n = 0; n < q.cols; ++n) {
        ASSERT_EQ(all(k, n), w(k, n))
            << eigenformer::traits_of(t).name << " (" << k << ", " << n << ")";
        ASSERT_EQ(one(0, n), w(k, n))
            << eigenformer::traits_of(t).name << " (" << k << ", " << n << ")";
      }
    }
  }
}

// A row's result does not depend on the other rows beside it, on how many there are, or on the
// thread count: decoding one row and prefilling 1..40 rows give the same bits (the promise that
// batched decoding relies on). Segments of different types share one matrix, as a Q4_K_M file's
// fused q|k|v does.
TEST(QuantMatmul, RowsAreBitIdenticalAloneInAnyBatchAndForAnyThreads) {
  ref::rng r(23);
  const index_t K = 512;
  const quantized_matrix q = random_quantized(
      K, {{quant_type::q4_k, 70}, {quant_type::q6_k, 33}, {quant_type::q8_0, 40}}, r);
  ASSERT_EQ(q.segments.size(), 3u);
  ASSERT_EQ(q.cols, 143);
  std::vector<float> bias(143);
  for (auto& v : bias) v = float(r.symmetric(1.0));
  const matrix<float> x = ref::random_matrix<float>(40, K, r);
  const int threads = eigenformer::num_threads();
  for (const auto mode :
       {eigenformer::quant_activations::int8, eigenformer::quant_activations::exact}) {
    const activations_scope scope(mode);
    eigenformer::set_num_threads(1);
    const matrix<float> batch = run(x, q, bias);
    for (const int n_threads : {1, 2, 3}) {
      eigenformer::set_num_threads(n_threads);
      for (index_t t = 0; t < x.rows(); ++t) {
        const matrix<float> alone = run(x.row(t), q, bias);
        for (index_t n = 0; n < q.cols; ++n) ASSERT_EQ(alone(0, n), batch(t, n)) << t << ", " << n;
      }
      for (const index_t rows : {2, 5, 6, 7, 13}) {
        const matrix<float> part = run(x.middleRows(40 - rows, rows), q, bias);
        for (index_t t = 0; t < rows; ++t) {
          for (index_t n = 0; n < q.cols; ++n)
            ASSERT_EQ(part(t, n), batch(40 - rows + t, n)) << rows << ": " << t << ", " << n;
        }
      }
    }
  }
  eigenformer::set_num_threads(threads);
}

TEST(QuantMatmul, RefusesMismatchedShapesAndPartialBlocks) {
  ref::rng r(24);
  const quantized_matrix q = random_quantized(64, {{quant_type::q8_0, 10}}, r);
  matrix<float> x(3, 63), out(3, 10);
  EXPECT_THROW(eigenformer::quant_matmul(x, q, nullptr, out), eigenformer::shape_error);
  matrix<float> x2(3, 64), out2(3, 9);
  EXPECT_THROW(eigenformer::quant_matmul(x2, q, nullptr, out2), eigenformer::shape_error);
  const matrix<float> w = ref::random_matrix<float>(40, 3, r);  // 40 rows: not whole blocks
  EXPECT_THROW(eigenformer::quantize_matrix(w, quant_type::q8_0), eigenformer::shape_error);
  EXPECT_THROW(eigenformer::parse_quant_type("q3_k"), eigenformer::value_error);
  EXPECT_EQ(eigenformer::parse_quant_type("q4_0"), quant_type::q4_0);
}

// The segments' bookkeeping: columns land in order, and quantizing E^T from rows of E equals
// quantizing its transpose column by column.
TEST(QuantMatmul, TransposedQuantizationAndSegments) {
  ref::rng r(25);
  const matrix<float> e = ref::random_matrix<float>(37, 64, r);  // [N x K]
  const matrix<float> e_t = e.transpose();
  const quantized_matrix a = eigenformer::quantize_matrix_transposed(e, quant_type::q4_0);
  const quantized_matrix b = eigenformer::quantize_matrix(e_t, quant_type::q4_0);
  EXPECT_EQ(a.rows, 64);
  EXPECT_EQ(a.cols, 37);
  EXPECT_EQ(a.segments.front().bytes, b.segments.front().bytes);
  EXPECT_EQ(a.bytes(), std::size_t(48 * 2 * 18));  // 3 interleaved groups of 16 columns
  const std::vector<unsigned char> ggml = a.segments.front().ggml_bytes();
  EXPECT_EQ(ggml.size(), std::size_t(37 * 2 * 18));
  quantized_matrix two;
  two.rows = 64;
  two.append_columns(quant_type::q4_0, 37, ggml.data());
  two.append_columns(quant_type::q4_0, 37, ggml.data());  // fills the last group's padding
  std::vector<unsigned char> twice = ggml;
  twice.insert(twice.end(), ggml.begin(), ggml.end());
  EXPECT_EQ(two.segments.front().ggml_bytes(), twice);
  EXPECT_EQ(two.segments.size(), 1u);  // same type: one segment
  EXPECT_EQ(eigenformer::dequantize(two).rightCols(37), eigenformer::dequantize(a));
}

// Columns are stored interleaved 16 at a time: every byte lands where
// quant/quantized_matrix.hpp says, whatever the pieces the columns are appended in, and comes
// back as ggml's bytes.
TEST(QuantMatmul, InterleavedLayoutIsTheDocumentedOne) {
  // ggml's block fields in order (quant/blocks.hpp, quant/k_quants.hpp).
  const auto fields = [](quant_type t) -> std::vector<index_t> {
    switch (t) {
      case quant_type::q8_0:
        return {0, 32};  // d, qs
      case quant_type::q4_0:
        return {0, 16};  // d, qs
      case quant_type::q5_0:
        return {0, 4, 16};  // d, qh, qs
      case quant_type::q5_1:
        return {0, 0, 4, 16};  // d, m, qh, qs
      case quant_type::q4_k:
        return {0, 0, 12, 128};  // d, dmin, scales, qs
      case quant_type::q5_k:
        return {0, 0, 12, 32, 128};  // d, dmin, scales, qh, qs
      case quant_type::q6_k:
        return {128, 64, 16, 0};  // ql, qh, scales, d
    }
    return {};
  };
  ref::rng r(27);
  for (const quant_type t : all_types) {
    const auto& traits = eigenformer::traits_of(t);
    const index_t blocks = 3, K = blocks * traits.block_weights, block_bytes = traits.block_bytes;
    const index_t row_bytes = blocks * block_bytes, n_cols = 37;
    std::vector<unsigned char> ggml(std::size_t(n_cols * row_bytes));
    for (auto& b : ggml) b = static_cast<unsigned char>(r.below(256));
    quantized_matrix q;
    q.rows = K;
    index_t done = 0;
    for (const index_t piece : {5, 20, 12}) {
      q.append_columns(t, piece, ggml.data() + done * row_bytes);
      done += piece;
    }
    ASSERT_EQ(q.segments.size(), 1u);
    const auto& s = q.segments.front();
    ASSERT_EQ(s.bytes.size(), std::size_t(3 * 16 * row_bytes));  // padded to 48 columns
    EXPECT_EQ(s.ggml_bytes(), ggml) << traits.name;
    for (index_t n = 0; n < 48; ++n) {
      for (index_t b = 0; b < blocks; ++b) {
        const unsigned char* block = s.bytes.data() + (n / 16) * 16 * row_bytes +
                                     b * 16 * block_bytes;  // this group's block b
        const index_t c = n % 16;
        const unsigned char* from = ggml.data() + n * row_bytes + b * block_bytes;
        const bool padding = n >= n_cols;
        index_t in_ggml = 0, in_group = 0;
        for (const index_t length : fields(t)) {
          const index_t bytes = length == 0 ? 2 : length;
          for (index_t e = 0; e < bytes; ++e) {
            const index_t at = length == 0 ? 2 * c + e : 64 * (e / 4) + 4 * c + e % 4;
            const bool flipped = t == quant_type::q8_0 && length != 0;  // unsigned codes
            const int expected = padding ? 0 : from[in_ggml + e] ^ (flipped ? 0x80 : 0);
            ASSERT_EQ(block[in_group + at], expected)
                << traits.name << " column " << n << " block " << b << " byte " << in_ggml + e;
          }
          in_ggml += bytes;
          in_group += 16 * bytes;
        }
        ASSERT_EQ(in_ggml, block_bytes);
      }
    }
  }
}

}  // namespace
