// tests/reference.hpp — independent, deliberately naive double-precision implementations of every
// component (plain loops over std::vector, no Eigen expressions), and test helpers. The library
// is checked against these, never against its own output.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <eigenformer/eigenformer.hpp>

namespace ref {

using eigenformer::index_t;
using grid = std::vector<std::vector<double>>;  // [rows][cols]

/// Deterministic pseudo-random numbers independent of Eigen's (which change between versions).
class rng {
 public:
  explicit rng(std::uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  double uniform() {  // [0, 1)
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return double(state_ >> 11) * (1.0 / 9007199254740992.0);
  }
  double symmetric(double scale) { return (2 * uniform() - 1) * scale; }
  int below(int n) { return int(uniform() * n); }

 private:
  std::uint64_t state_;
};

template <class Scalar>
eigenformer::matrix<Scalar> random_matrix(index_t rows, index_t cols, rng& r, double scale = 1) {
  eigenformer::matrix<Scalar> m(rows, cols);
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) m(i, j) = Scalar(r.symmetric(scale));
  return m;
}

template <class Scalar>
eigenformer::row_vector<Scalar> random_row(index_t n, rng& r, double scale = 1, double offset = 0) {
  eigenformer::row_vector<Scalar> v(n);
  for (index_t i = 0; i < n; ++i) v(i) = Scalar(offset + r.symmetric(scale));
  return v;
}

template <class Derived>
grid to_grid(const Eigen::MatrixBase<Derived>& m) {
  grid g(size_t(m.rows()), std::vector<double>(size_t(m.cols())));
  for (index_t i = 0; i < m.rows(); ++i)
    for (index_t j = 0; j < m.cols(); ++j) g[size_t(i)][size_t(j)] = double(m(i, j));
  return g;
}

inline grid matmul(const grid& a, const grid& b) {
  grid c(a.size(), std::vector<double>(b[0].size(), 0.0));
  for (size_t i = 0; i < a.size(); ++i)
    for (size_t k = 0; k < b.size(); ++k)
      for (size_t j = 0; j < b[0].size(); ++j) c[i][j] += a[i][k] * b[k][j];
  return c;
}

template <class Scalar>
grid linear(const grid& x, const eigenformer::linear_weights<Scalar>& w) {
  grid y = matmul(x, to_grid(w.weight));
  for (auto& row : y)
    for (size_t j = 0; j < row.size(); ++j) row[j] += double(w.bias(index_t(j)));
  return y;
}

template <class Scalar>
grid layer_norm(const grid& x, const eigenformer::layer_norm_weights<Scalar>& w, double eps) {
  grid y = x;
  for (size_t t = 0; t < x.size(); ++t) {
    const double n = double(x[t].size());
    double mean = 0, var = 0;
    for (double v : x[t]) mean += v / n;
    for (double v : x[t]) var += (v - mean) * (v - mean) / n;
    for (size_t c = 0; c < x[t].size(); ++c)
      y[t][c] = (x[t][c] - mean) / std::sqrt(var + eps) * double(w.gain(index_t(c))) +
                double(w.bias(index_t(c)));
  }
  return y;
}

inline double gelu(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}

/// Causal attention core with explicit loops: query i attends to keys 0..n_past+i.
inline grid attention_core(const grid& q, const grid& k, const grid& v, int n_head, int n_past,
                           grid* weights_of_head0 = nullptr) {
  const size_t T = q.size(), C = q[0].size(), d = C / size_t(n_head), Tk = k.size();
  grid out(T, std::vector<double>(C, 0.0));
  if (weights_of_head0) *weights_of_head0 = grid(T, std::vector<double>(Tk, 0.0));
  for (size_t h = 0; h < size_t(n_head); ++h) {
    for (size_t i = 0; i < T; ++i) {
      const size_t visible = std::min(Tk, size_t(n_past) + i + 1);
      std::vector<double> p(visible);
      double mx = -INFINITY, sum = 0;
      for (size_t j = 0; j < visible; ++j) {
        double s = 0;
        for (size_t c = 0; c < d; ++c) s += q[i][h * d + c] * k[j][h * d + c];
        p[j] = s / std::sqrt(double(d));
        mx = std::max(mx, p[j]);
      }
      for (auto& e : p) sum += (e = std::exp(e - mx));
      for (size_t j = 0; j < visible; ++j) {
        p[j] /= sum;
        for (size_t c = 0; c < d; ++c) out[i][h * d + c] += p[j] * v[j][h * d + c];
        if (h == 0 && weights_of_head0) (*weights_of_head0)[i][j] = p[j];
      }
    }
  }
  return out;
}

template <class Scalar>
grid self_attention(const grid& x, const eigenformer::attention_weights<Scalar>& w, int n_head) {
  const grid qkv = linear(x, w.qkv);
  const size_t C = x[0].size();
  grid q(x.size()), k(x.size()), v(x.size());
  for (size_t t = 0; t < x.size(); ++t) {
    q[t].assign(qkv[t].begin(), qkv[t].begin() + long(C));
    k[t].assign(qkv[t].begin() + long(C), qkv[t].begin() + long(2 * C));
    v[t].assign(qkv[t].begin() + long(2 * C), qkv[t].end());
  }
  return linear(attention_core(q, k, v, n_head, 0), w.proj);
}

template <class Scalar>
grid mlp(const grid& x, const eigenformer::mlp_weights<Scalar>& w) {
  grid h = linear(x, w.fc);
  for (auto& row : h)
    for (auto& e : row) e = gelu(e);
  return linear(h, w.proj);
}

inline void add_into(grid& x, const grid& y) {
  for (size_t i = 0; i < x.size(); ++i)
    for (size_t j = 0; j < x[i].size(); ++j) x[i][j] += y[i][j];
}

template <class Scalar>
grid block(grid x, const eigenformer::block_weights<Scalar>& w, int n_head, double eps) {
  add_into(x, self_attention(layer_norm(x, w.ln_1, eps), w.attn, n_head));
  add_into(x, mlp(layer_norm(x, w.ln_2, eps), w.mlp));
  return x;
}

template <class Scalar>
grid model_logits(const eigenformer::model_config& cfg,
                  const eigenformer::basic_model_weights<Scalar>& w,
                  const std::vector<eigenformer::token_id>& tokens) {
  grid x(tokens.size(), std::vector<double>(size_t(cfg.n_embd)));
  for (size_t t = 0; t < tokens.size(); ++t)
    for (size_t c = 0; c < size_t(cfg.n_embd); ++c)
      x[t][c] = double(w.wte(tokens[t], index_t(c))) + double(w.wpe(index_t(t), index_t(c)));
  for (const auto& b : w.blocks) x = block(x, b, int(cfg.n_head), cfg.layer_norm_epsilon);
  x = layer_norm(x, w.ln_f, cfg.layer_norm_epsilon);
  grid e_t = to_grid(w.output_embedding().transpose());
  return matmul(x, e_t);
}

// --- The Llama family, as naive loops ---

template <class Vec>
grid rms_norm(const grid& x, const Vec& gain, double eps) {
  grid y = x;
  for (size_t t = 0; t < x.size(); ++t) {
    double mean_square = 0;
    for (double v : x[t]) mean_square += v * v / double(x[t].size());
    for (size_t c = 0; c < x[t].size(); ++c)
      y[t][c] = double(gain(index_t(c))) * x[t][c] / std::sqrt(mean_square + eps);
  }
  return y;
}

/// Rotates every d-wide head of each row of x by position first_position + t: dimension j is
/// paired with j + d/2 and turned by angle position * theta^(-2j/d) (unscaled frequencies).
inline grid rope(const grid& x, size_t d, int first_position, double theta) {
  grid y = x;
  for (size_t t = 0; t < x.size(); ++t) {
    for (size_t h = 0; h < x[t].size() / d; ++h) {
      for (size_t j = 0; j < d / 2; ++j) {
        const double angle =
            double(first_position + int(t)) * std::pow(theta, -2.0 * double(j) / double(d));
        const double a = x[t][h * d + j], b = x[t][h * d + j + d / 2];
        y[t][h * d + j] = a * std::cos(angle) - b * std::sin(angle);
        y[t][h * d + j + d / 2] = b * std::cos(angle) + a * std::sin(angle);
      }
    }
  }
  return y;
}

/// Grouped-query attention core: query head h reads key/value head h / (H / G); query i (at
/// position n_past + i) sees key j iff j <= n_past + i and, with window > 0, j > n_past + i - W.
/// `weights_of_head`: if given, receives P of head `observed_head`.
inline grid gqa_core(const grid& q, const grid& k, const grid& v, int H, int G, int d, int n_past,
                     int window, grid* weights = nullptr, int observed_head = 0) {
  const size_t T = q.size(), Tk = k.size();
  grid out(T, std::vector<double>(size_t(H * d), 0.0));
  if (weights) *weights = grid(T, std::vector<double>(Tk, 0.0));
  for (int h = 0; h < H; ++h) {
    const int g = h / (H / G);
    for (size_t i = 0; i < T; ++i) {
      const int position = n_past + int(i);
      std::vector<double> p(Tk, 0.0);
      double mx = -INFINITY, sum = 0;
      const auto visible = [&](size_t j) {
        return int(j) <= position && (window <= 0 || int(j) > position - window);
      };
      for (size_t j = 0; j < Tk; ++j) {
        if (!visible(j)) continue;
        double s = 0;
        for (int c = 0; c < d; ++c) s += q[i][size_t(h * d + c)] * k[j][size_t(g * d + c)];
        p[j] = s / std::sqrt(double(d));
        mx = std::max(mx, p[j]);
      }
      for (size_t j = 0; j < Tk; ++j)
        if (visible(j)) sum += (p[j] = std::exp(p[j] - mx));
      for (size_t j = 0; j < Tk; ++j) {
        if (!visible(j)) continue;
        p[j] /= sum;
        for (int c = 0; c < d; ++c) out[i][size_t(h * d + c)] += p[j] * v[j][size_t(g * d + c)];
      }
      if (weights && h == observed_head) (*weights)[i] = p;
    }
  }
  return out;
}

inline double silu(double x) {
  return x / (1 + std::exp(-x));
}

/// down(silu(gate(x)) * up(x)) with fc = gate | up.
template <class Scalar>
grid swiglu_mlp(const grid& x, const eigenformer::mlp_weights<Scalar>& w) {
  const grid gate_up = matmul(x, to_grid(w.fc.weight));
  const size_t I = gate_up[0].size() / 2;
  grid h(x.size(), std::vector<double>(I));
  for (size_t t = 0; t < x.size(); ++t)
    for (size_t j = 0; j < I; ++j) h[t][j] = silu(gate_up[t][j]) * gate_up[t][I + j];
  return matmul(h, to_grid(w.proj.weight));
}

/// max |a - b| / max |b|: the error relative to the reference's scale (element-wise relative
/// error is meaningless for entries near zero).
template <class Derived>
double relative_error(const Eigen::MatrixBase<Derived>& actual, const grid& expected) {
  EXPECT_EQ(size_t(actual.rows()), expected.size());
  if (size_t(actual.rows()) != expected.size()) return INFINITY;
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(size_t(actual.cols()), expected[i].size());
    if (size_t(actual.cols()) != expected[i].size()) return INFINITY;
    for (size_t j = 0; j < expected[i].size(); ++j) {
      const double a = double(actual(index_t(i), index_t(j)));
      if (!std::isfinite(a)) return INFINITY;
      max_diff = std::max(max_diff, std::abs(a - expected[i][j]));
      max_ref = std::max(max_ref, std::abs(expected[i][j]));
    }
  }
  return max_ref > 0 ? max_diff / max_ref : max_diff;
}

/// Per-scalar tolerance for comparing with the double reference.
template <class Scalar>
constexpr double tolerance() {
  return std::is_same_v<Scalar, float> ? 2e-6 : 1e-12;
}

template <class Scalar>
eigenformer::model_config tiny_config() {
  eigenformer::model_config c;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_embd = 16;
  c.vocab_size = 37;
  c.n_ctx = 12;
  return c;
}

/// A tiny model with weights large enough that attention is far from uniform.
template <class Scalar>
eigenformer::basic_model_weights<Scalar> random_weights(const eigenformer::model_config& c,
                                                        std::uint64_t seed, bool untied = false) {
  rng r(seed);
  const index_t C = c.n_embd, H = c.mlp_hidden();
  const auto lin = [&](index_t in, index_t out) {
    return eigenformer::linear_weights<Scalar>{
        random_matrix<Scalar>(in, out, r, 1.5 / std::sqrt(double(in))),
        random_row<Scalar>(out, r, 0.2)};
  };
  const auto norm = [&] {
    return eigenformer::layer_norm_weights<Scalar>{random_row<Scalar>(C, r, 0.3, 1.0),
                                                   random_row<Scalar>(C, r, 0.2)};
  };
  eigenformer::basic_model_weights<Scalar> w;
  w.wte = random_matrix<Scalar>(c.vocab_size, C, r, 1.0);
  w.wpe = random_matrix<Scalar>(c.n_ctx, C, r, 0.5);
  for (index_t l = 0; l < c.n_layer; ++l) {
    eigenformer::block_weights<Scalar> b;
    b.ln_1 = norm();
    b.attn.qkv = lin(C, 3 * C);
    b.attn.proj = lin(C, C);
    b.ln_2 = norm();
    b.mlp.fc = lin(C, H);
    b.mlp.proj = lin(H, C);
    w.blocks.push_back(b);
  }
  w.ln_f = norm();
  if (untied) w.lm_head = random_matrix<Scalar>(c.vocab_size, C, r, 1.0);
  return w;
}

using scalar_types = ::testing::Types<float, double>;

}  // namespace ref
