// eigenformer/layers/rope.hpp — rotary position embeddings (RoPE), as Hugging Face applies them.
//
// Instead of adding a learned position vector to the input, every query and key head is rotated
// by an angle proportional to its token's position, so the score q_i . k_j depends on positions
// only through i - j. Within a head of d values, dimension j is paired with j + d/2 (HF's
// `rotate_half`; Meta's original code paired neighbours 2j, 2j+1 instead — HF checkpoints are
// stored for the half split, so they need no permutation here):
//
//   angle(p, j)  = p * inv_freq[j]                 inv_freq[j] = 1 / theta^(2j / d), j < d/2
//   out[j]       = x[j] cos - x[j + d/2] sin
//   out[j + d/2] = x[j + d/2] cos + x[j] sin
//
// Frequencies and angles are computed in double and only cos/sin are rounded to the scalar type,
// so float models lose no accuracy at large positions. Scaling (config.rope.scaling) rewrites
// inv_freq once: `linear` divides all by `factor`; `llama3` divides the low frequencies (long
// wavelengths) by `factor`, keeps the high ones, and blends in between (Llama 3.1/3.2).
#pragma once

#include <cmath>
#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/types.hpp"

namespace eigenformer {

enum class rope_scaling_kind { none, linear, llama3 };

/// What rotary embeddings a model uses: inv_freq[j] = 1 / theta^(2j / d), then rescaled.
struct rope_config {
  double theta = 10000.0;
  rope_scaling_kind scaling = rope_scaling_kind::none;
  double factor = 1.0;              // linear and llama3
  double low_freq_factor = 1.0;     // llama3
  double high_freq_factor = 4.0;    // llama3
  index_t original_context = 8192;  // llama3: original_max_position_embeddings
  /// [d/2] or empty: plane j's inverse frequency is further divided by entry j. GGUF files carry
  /// Llama 3 scaling this way (the rope_freqs tensor llama.cpp's converter computes).
  std::vector<double> frequency_divisors;
};

/// The inverse frequencies of one head's d/2 rotation planes, after scaling. [d/2], in double.
inline std::vector<double> rope_inverse_frequencies(const rope_config& rope, index_t head_dim) {
  if (head_dim <= 0 || head_dim % 2 != 0) {
    throw shape_error(detail::concat("rope: head_dim = ", head_dim, " must be positive and even"));
  }
  const index_t half = head_dim / 2;
  std::vector<double> inv_freq(static_cast<std::size_t>(half));
  for (index_t j = 0; j < half; ++j) {
    inv_freq[std::size_t(j)] = 1.0 / std::pow(rope.theta, double(2 * j) / double(head_dim));
  }
  if (rope.scaling == rope_scaling_kind::linear) {
    for (auto& f : inv_freq) f /= rope.factor;
  } else if (rope.scaling == rope_scaling_kind::llama3) {
    const double pi = 3.14159265358979323846;
    const double context = double(rope.original_context);
    const double low_freq_wavelen = context / rope.low_freq_factor;    // longer: scaled
    const double high_freq_wavelen = context / rope.high_freq_factor;  // shorter: kept
    for (auto& f : inv_freq) {
      const double wavelen = 2.0 * pi / f;
      if (wavelen > low_freq_wavelen) {
        f /= rope.factor;
      } else if (wavelen >= high_freq_wavelen) {  // in between: blend the two
        const double smooth = (context / wavelen - rope.low_freq_factor) /
                              (rope.high_freq_factor - rope.low_freq_factor);
        f = (1.0 - smooth) * f / rope.factor + smooth * f;
      }
    }
  }
  if (!rope.frequency_divisors.empty()) {
    if (rope.frequency_divisors.size() != inv_freq.size()) {
      throw shape_error(detail::concat("rope: ", rope.frequency_divisors.size(),
                                       " frequency divisors for ", inv_freq.size(), " planes"));
    }
    for (std::size_t j = 0; j < inv_freq.size(); ++j) inv_freq[j] /= rope.frequency_divisors[j];
  }
  for (const double f : inv_freq) {
    if (!std::isfinite(f) || !(f > 0.0)) {
      throw value_error(
          "rope: the scaling parameters give a frequency that is not positive and finite");
    }
  }
  return inv_freq;
}

/// cos and sin of the angles of T consecutive positions; one table serves every head and layer.
template <class Scalar>
struct rope_tables {
  std::vector<double> inv_freq;  // [d/2], from rope_inverse_frequencies
  matrix<Scalar> cos;            // [max_T x d/2], row t = position first + t
  matrix<Scalar> sin;            // [max_T x d/2]

  rope_tables() = default;
  rope_tables(index_t max_tokens, const rope_config& rope, index_t head_dim)
      : inv_freq(rope_inverse_frequencies(rope, head_dim)),
        cos(max_tokens, head_dim / 2),
        sin(max_tokens, head_dim / 2) {}
};

/// Fills rows [first_row, first_row + n_tokens) of `tables` for positions [first_position,
/// + n_tokens) (a batch puts each sequence's positions on its own rows).
template <class Scalar>
void rope_fill_tables(index_t first_position, index_t n_tokens, rope_tables<Scalar>& tables,
                      index_t first_row = 0) {
  const auto half = static_cast<index_t>(tables.inv_freq.size());
  if (first_row < 0 || first_row + n_tokens > tables.cos.rows() || tables.cos.cols() != half ||
      tables.sin.cols() != half || tables.sin.rows() != tables.cos.rows() || first_position < 0) {
    throw shape_error(detail::concat("rope: tables [", tables.cos.rows(), " x ", tables.cos.cols(),
                                     "] cannot hold ", n_tokens, " positions of ", half,
                                     " frequencies from position ", first_position, " at row ",
                                     first_row));
  }
  for (index_t t = 0; t < n_tokens; ++t) {
    const double position = double(first_position + t);
    for (index_t j = 0; j < half; ++j) {
      const double angle = position * tables.inv_freq[std::size_t(j)];
      tables.cos(first_row + t, j) = Scalar(std::cos(angle));
      tables.sin(first_row + t, j) = Scalar(std::sin(angle));
    }
  }
}

namespace detail {

template <class Scalar>
void check_rope_shapes(matrix_cref<Scalar> x, index_t n_heads, matrix_cref<Scalar> cos,
                       matrix_cref<Scalar> sin) {
  const index_t half = cos.cols(), d = 2 * half;
  if (n_heads <= 0 || x.cols() != n_heads * d || cos.rows() < x.rows() || sin.rows() < x.rows() ||
      sin.cols() != half) {
    throw shape_error(concat("rope: x is [", x.rows(), " x ", x.cols(), "] for ", n_heads,
                             " heads, tables are [", cos.rows(), " x ", half, "]"));
  }
}

/// Each head's (first half, second half) pairs rotated by the angle (direction +1) or by minus
/// the angle (direction -1: the transpose, for the backward pass).
template <class Scalar>
void rotate_heads(matrix_ref<Scalar> x, index_t n_heads, matrix_cref<Scalar> cos,
                  matrix_cref<Scalar> sin, Scalar direction) {
  const index_t half = cos.cols(), d = 2 * half;
  for (index_t t = 0; t < x.rows(); ++t) {
    const Scalar* c = cos.data() + t * cos.outerStride();
    const Scalar* s = sin.data() + t * sin.outerStride();
    for (index_t h = 0; h < n_heads; ++h) {
      Scalar* first = x.data() + t * x.outerStride() + h * d;
      Scalar* second = first + half;
      for (index_t j = 0; j < half; ++j) {
        const Scalar a = first[j], b = second[j], sj = direction * s[j];
        first[j] = a * c[j] - b * sj;
        second[j] = b * c[j] + a * sj;
      }
    }
  }
}

}  // namespace detail

/// Rotates every head of x [T x n_heads*d] in place; row t uses row t of cos/sin [>= T x d/2].
template <class Scalar>
void rope_apply_inplace(matrix_ref<Scalar> x, index_t n_heads, matrix_cref<Scalar> cos,
                        matrix_cref<Scalar> sin) {
  detail::check_rope_shapes<Scalar>(x, n_heads, cos, sin);
  detail::rotate_heads<Scalar>(x, n_heads, cos, sin, Scalar(1));
}

/// Backward of rope_apply_inplace: a rotation's transpose is the rotation by minus the angle, so
/// d_x = R^T d_out. Rotates the gradient d [T x n_heads*d] back in place.
template <class Scalar>
void rope_backward_inplace(matrix_ref<Scalar> d, index_t n_heads, matrix_cref<Scalar> cos,
                           matrix_cref<Scalar> sin) {
  detail::check_rope_shapes<Scalar>(d, n_heads, cos, sin);
  detail::rotate_heads<Scalar>(d, n_heads, cos, sin, Scalar(-1));
}

}  // namespace eigenformer
