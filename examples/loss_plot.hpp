// examples/loss_plot.hpp — a loss-curve PNG drawn in C++ and written with stb_image_write (the
// including file defines STB_IMAGE_WRITE_IMPLEMENTATION). Training loss in blue, held-out loss
// in orange; tick labels in a built-in 3x5 pixel font, so no font library is needed.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#ifndef INCLUDE_STB_IMAGE_WRITE_H  // commands/attention.cpp compiles the implementation
#include <stb/stb_image_write.h>
#endif

namespace eigenformer_cli {

struct loss_point {
  double step, loss;
};

class loss_plot {
 public:
  loss_plot(int width, int height)
      : w_(width), h_(height), px_(std::size_t(width * height * 3), 255) {}

  /// Returns false if the PNG could not be written.
  bool write(const std::string& path, const std::vector<loss_point>& train,
             const std::vector<loss_point>& eval, double max_step) {
    double lo = 1e300, hi = -1e300;
    for (const auto* series : {&train, &eval}) {
      for (const auto& p : *series) {
        if (!std::isfinite(p.loss)) continue;
        lo = std::min(lo, p.loss);
        hi = std::max(hi, p.loss);
      }
    }
    if (lo > hi) lo = 0, hi = 1;
    lo = std::floor(std::max(0.0, lo - 0.05 * (hi - lo)) * 10) / 10;
    hi = std::ceil((hi + 0.05 * (hi - lo)) * 10) / 10;
    if (hi <= lo) hi = lo + 1;
    x0_ = 64, y0_ = 12, x1_ = w_ - 20, y1_ = h_ - 30;
    max_step_ = std::max(max_step, 1.0), lo_ = lo, hi_ = hi;
    // Grid and tick labels: 5 horizontal lines (loss), 5 vertical (step).
    for (int i = 0; i <= 4; ++i) {
      const double loss = lo + (hi - lo) * i / 4;
      const int y = y_of(loss);
      line(x0_, y, x1_, y, 225, 225, 225);
      text(fixed(loss), x0_ - 8 - 8 * int(fixed(loss).size()), y - 5);
      const double step = max_step_ * i / 4;
      const int x = x_of(step);
      line(x, y0_, x, y1_, 225, 225, 225);
      const std::string s = std::to_string(static_cast<long long>(std::llround(step)));
      text(s, x - 4 * int(s.size()), y1_ + 8);
    }
    line(x0_, y1_, x1_, y1_, 0, 0, 0);
    line(x0_, y0_, x0_, y1_, 0, 0, 0);
    series(train, 31, 119, 180);
    series(eval, 255, 127, 14);
    return stbi_write_png(path.c_str(), w_, h_, 3, px_.data(), w_ * 3) != 0;
  }

 private:
  int w_, h_, x0_ = 0, y0_ = 0, x1_ = 0, y1_ = 0;
  double max_step_ = 1, lo_ = 0, hi_ = 1;
  std::vector<std::uint8_t> px_;

  int x_of(double step) const { return x0_ + int(std::lround((x1_ - x0_) * step / max_step_)); }
  int y_of(double loss) const {
    return y1_ - int(std::lround((y1_ - y0_) * (loss - lo_) / (hi_ - lo_)));
  }
  static std::string fixed(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", v);
    return buf;
  }
  void set(int x, int y, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
    if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
    std::uint8_t* p = &px_[std::size_t((y * w_ + x) * 3)];
    p[0] = r, p[1] = g, p[2] = b;
  }
  void line(int xa, int ya, int xb, int yb, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
    const int n = std::max(std::abs(xb - xa), std::abs(yb - ya));
    for (int i = 0; i <= n; ++i) {
      set(xa + (n ? (xb - xa) * i / n : 0), ya + (n ? (yb - ya) * i / n : 0), r, g, b);
    }
  }
  void series(const std::vector<loss_point>& pts, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
    for (std::size_t i = 0; i < pts.size(); ++i) {
      const int x = x_of(pts[i].step), y = y_of(pts[i].loss);
      if (!std::isfinite(pts[i].loss)) continue;
      if (i > 0 && std::isfinite(pts[i - 1].loss)) {
        const int px = x_of(pts[i - 1].step), py = y_of(pts[i - 1].loss);
        line(px, py, x, y, r, g, b);
        line(px, py + 1, x, y + 1, r, g, b);  // two pixels thick
      }
      if (pts.size() < 64) {  // few points (held-out evaluations): mark each
        for (int dy = -2; dy <= 2; ++dy)
          for (int dx = -2; dx <= 2; ++dx) set(x + dx, y + dy, r, g, b);
      }
    }
  }
  /// Digits, '.' and '-' in a 3x5 font (one bit per pixel, rows top to bottom), drawn 2x.
  void text(const std::string& s, int x, int y) {
    static const unsigned short glyphs[12] = {0x7B6F, 0x2C97, 0x73E7, 0x73CF, 0x5BC9, 0x79CF,
                                              0x79EF, 0x7249, 0x7BEF, 0x7BCF, 0x0002, 0x01C0};
    for (const char c : s) {
      const int g = c >= '0' && c <= '9' ? c - '0' : c == '.' ? 10 : c == '-' ? 11 : -1;
      if (g >= 0) {
        for (int row = 0; row < 5; ++row)
          for (int col = 0; col < 3; ++col)
            if (glyphs[g] >> (14 - row * 3 - col) & 1) {
              for (int d = 0; d < 4; ++d) set(x + 2 * col + d % 2, y + 2 * row + d / 2, 60, 60, 60);
            }
      }
      x += 8;
    }
  }
};

}  // namespace eigenformer_cli
