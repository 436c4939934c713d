// Detection overlays, bitmap font and thumbnail downscale (io/overlay.h).
#include "io/overlay.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "nn/error.h"

namespace ctdet {

namespace {

// 5x7 glyphs, one byte per row, bit 4 = leftmost column. Drawn for this file.
struct Glyph {
  char c;
  uint8_t rows[7];
};
constexpr Glyph kFont[] = {
    {' ', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}}, {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},
    {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}}, {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},
    {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}}, {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},
    {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}}, {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},
    {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}}, {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},
    {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}}, {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}}, {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}},
    {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}}, {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}},
    {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}}, {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}},
    {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}}, {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}}, {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}}, {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}}, {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}}, {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}},
    {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}}, {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}},
    {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}}, {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}}, {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}},
    {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}}, {'Y', {0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04}},
    {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}}, {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}},
    {',', {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}}, {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}},
    {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}}, {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}},
    {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}}, {'/', {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}},
    {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}}, {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}}, {'#', {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A}},
    {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}}, {'?', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}},
};

void require_rgb8(const Image& img, const char* op) {
  CTDET_CHECK(img.channels == 3 && img.bit_depth == 8 && !img.empty(), op, ": expects a non-empty 8-bit RGB image, got ",
              img.width, "x", img.height, "x", img.channels, " at ", img.bit_depth, " bits");
}

void put(Image& img, int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= img.width || y >= img.height) return;
  uint16_t* p = &img.at(y, x, 0);
  p[0] = c.r;
  p[1] = c.g;
  p[2] = c.b;
}

std::string upper(const std::string& s) {
  std::string u = s;
  for (auto& ch : u) ch = char(std::toupper(static_cast<unsigned char>(ch)));
  return u;
}

}  // namespace

const uint8_t* glyph_rows(char c) {
  const char u = char(std::toupper(static_cast<unsigned char>(c)));
  for (const auto& g : kFont)
    if (g.c == u) return g.rows;
  for (const auto& g : kFont)
    if (g.c == '?') return g.rows;
  return kFont[0].rows;
}

Rgb class_color(int label, const std::string& name) {
  const std::string n = upper(name);
  if (n == "GGO") return {255, 220, 0};
  if (n == "CD") return {230, 20, 20};
  if (n == "GGO+CD") return {230, 0, 230};
  static const Rgb kPalette[] = {{0, 160, 255}, {255, 140, 0}, {150, 90, 255}, {0, 200, 200}, {200, 120, 80}};
  const int k = int(sizeof kPalette / sizeof kPalette[0]);
  return kPalette[((label % k) + k) % k];
}

std::string css_color(Rgb c) {
  char b[8];
  std::snprintf(b, sizeof b, "#%02x%02x%02x", c.r, c.g, c.b);
  return b;
}

Image to_rgb8(const Image& img) {
  CTDET_CHECK(!img.empty(), "to_rgb8: empty image");
  CTDET_CHECK(img.channels >= 1 && img.channels <= 4, "to_rgb8: unsupported channel count ", img.channels);
  CTDET_CHECK(img.data.size() == size_t(img.width) * img.height * img.channels, "to_rgb8: ", img.width, "x",
              img.height, "x", img.channels, " image holds ", img.data.size(), " samples");
  Image out(img.width, img.height, 3, 8);
  const bool wide = img.bit_depth == 16;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x)
      for (int c = 0; c < 3; ++c) {
        const int src_c = img.channels >= 3 ? c : 0;
        const uint32_t v = img.at(y, x, src_c);
        out.at(y, x, c) = uint16_t(wide ? (v * 255 + 32767) / 65535 : std::min<uint32_t>(v, 255));
      }
  return out;
}

void fill_rect(Image& img, int x0, int y0, int x1, int y1, Rgb c) {
  require_rgb8(img, "fill_rect");
  x0 = std::max(x0, 0);
  y0 = std::max(y0, 0);
  x1 = std::min(x1, img.width - 1);
  y1 = std::min(y1, img.height - 1);
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) put(img, x, y, c);
}

void draw_rect(Image& img, int x0, int y0, int x1, int y1, Rgb c, int thickness, bool dashed, int dash_on,
               int dash_off) {
  require_rgb8(img, "draw_rect");
  CTDET_CHECK(thickness >= 1, "draw_rect: thickness must be >= 1, got ", thickness);
  CTDET_CHECK(!dashed || (dash_on >= 1 && dash_off >= 0), "draw_rect: bad dash pattern ", dash_on, "/", dash_off);
  if (x1 < x0 || y1 < y0) return;
  const int period = dash_on + dash_off;
  auto on = [&](int i) { return !dashed || (i % period) < dash_on; };
  for (int t = 0; t < thickness; ++t) {
    const int ax0 = x0 + t, ay0 = y0 + t, ax1 = x1 - t, ay1 = y1 - t;
    if (ax1 < ax0 || ay1 < ay0) break;
    for (int x = ax0; x <= ax1; ++x) {
      if (!on(x - ax0)) continue;
      put(img, x, ay0, c);
      put(img, x, ay1, c);
    }
    for (int y = ay0; y <= ay1; ++y) {
      if (!on(y - ay0)) continue;
      put(img, ax0, y, c);
      put(img, ax1, y, c);
    }
  }
}

int text_width(const std::string& text, int scale) {
  if (text.empty()) return 0;
  return (int(text.size()) * kGlyphAdvance - 1) * scale;
}

int draw_text(Image& img, int x, int y, const std::string& text, Rgb fg, int scale) {
  require_rgb8(img, "draw_text");
  CTDET_CHECK(scale >= 1, "draw_text: scale must be >= 1, got ", scale);
  int cx = x;
  for (char ch : text) {
    const uint8_t* rows = glyph_rows(ch);
    for (int r = 0; r < kGlyphH; ++r)
      for (int col = 0; col < kGlyphW; ++col) {
        if (!(rows[r] & (0x10 >> col))) continue;
        for (int sy = 0; sy < scale; ++sy)
          for (int sx = 0; sx < scale; ++sx) put(img, cx + col * scale + sx, y + r * scale + sy, fg);
      }
    cx += kGlyphAdvance * scale;
  }
  return text_width(text, scale);
}

Image draw_overlay(const Image& img, const std::vector<Box>& gt, const std::vector<Detection>& dets,
                   const std::vector<std::string>& class_names, const OverlayOptions& opt) {
  Image out = to_rgb8(img);
  auto pixel_range = [&](float x1, float y1, float x2, float y2, int* px0, int* py0, int* px1, int* py1) {
    CTDET_CHECK(std::isfinite(x1) && std::isfinite(y1) && std::isfinite(x2) && std::isfinite(y2),
                "draw_overlay: non-finite box (", x1, ", ", y1, ", ", x2, ", ", y2, ")");
    *px0 = int(std::floor(x1));
    *py0 = int(std::floor(y1));
    *px1 = int(std::ceil(x2)) - 1;
    *py1 = int(std::ceil(y2)) - 1;
  };
  if (opt.draw_gt) {
    for (const auto& b : gt) {
      int x0, y0, x1, y1;
      pixel_range(b.x1, b.y1, b.x2, b.y2, &x0, &y0, &x1, &y1);
      draw_rect(out, x0, y0, x1, y1, kGroundTruthColor, 1, true);
    }
  }
  std::vector<size_t> order(dets.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return dets[a].score < dets[b].score; });
  const int scale = opt.font_scale > 0 ? opt.font_scale : (std::max(out.width, out.height) > 600 ? 2 : 1);
  struct Label {
    int x = 0, y = 0, w = 0, h = 0;
    Rgb bg;
    std::string text;
  };
  std::vector<Label> labels(dets.size());
  std::vector<char> drawn(dets.size(), 0);
  for (size_t i : order) {  // boxes, lowest score first
    const auto& d = dets[i];
    if (d.score < opt.min_score) continue;
    const std::string name = d.label >= 1 && size_t(d.label) <= class_names.size() ? class_names[d.label - 1]
                                                                                    : std::to_string(d.label);
    const Rgb c = class_color(d.label, name);
    int x0, y0, x1, y1;
    pixel_range(d.x1, d.y1, d.x2, d.y2, &x0, &y0, &x1, &y1);
    draw_rect(out, x0, y0, x1, y1, c, opt.thickness, false);
    drawn[i] = 1;
    char score[16];
    std::snprintf(score, sizeof score, "%.2f", double(d.score));
    Label& l = labels[i];
    l.text = name + " " + score;
    l.bg = c;
    l.w = text_width(l.text, scale) + 2;
    l.h = kGlyphH * scale + 2;
    l.x = std::min(std::max(x0, 0), std::max(out.width - l.w, 0));
  }
  if (!opt.labels) return out;
  // Label positions, best score first: above the box, else below it, else inside its top edge; the first
  // candidate inside the image that overlaps no label placed so far (else the first inside the image).
  std::vector<Label> placed;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    const size_t i = *it;
    if (!drawn[i]) continue;
    const auto& d = dets[i];
    int x0, y0, x1, y1;
    pixel_range(d.x1, d.y1, d.x2, d.y2, &x0, &y0, &x1, &y1);
    Label& l = labels[i];
    const int cand[3] = {y0 - l.h, y1 + 1, std::max(y0, 0) + opt.thickness};
    int chosen = -1;
    for (int y : cand) {
      if (y < 0 || y + l.h > out.height) continue;
      if (chosen < 0) chosen = y;
      bool clash = false;
      for (const auto& p : placed)
        clash |= l.x < p.x + p.w && p.x < l.x + l.w && y < p.y + p.h && p.y < y + l.h;
      if (!clash) {
        chosen = y;
        break;
      }
    }
    l.y = chosen >= 0 ? chosen : std::max(0, cand[2]);
    placed.push_back(l);
  }
  for (size_t i : order) {  // labels, lowest score first, so the best one ends on top
    if (!drawn[i]) continue;
    const Label& l = labels[i];
    fill_rect(out, l.x, l.y, l.x + l.w - 1, l.y + l.h - 1, l.bg);
    const int luma = (299 * l.bg.r + 587 * l.bg.g + 114 * l.bg.b) / 1000;
    draw_text(out, l.x + 1, l.y + 1, l.text, luma > 140 ? Rgb{0, 0, 0} : Rgb{255, 255, 255}, scale);
  }
  return out;
}

Image downscale_to_fit(const Image& img, int max_side) {
  CTDET_CHECK(max_side >= 1, "downscale_to_fit: max_side must be >= 1, got ", max_side);
  CTDET_CHECK(!img.empty() && img.channels >= 1, "downscale_to_fit: empty image");
  const int long_side = std::max(img.width, img.height);
  if (long_side <= max_side) return img;
  const double s = double(max_side) / long_side;
  const int ow = std::max(1, int(std::lround(img.width * s))), oh = std::max(1, int(std::lround(img.height * s)));
  const int C = img.channels;
  // Weights of input index i for output index o on an axis in -> out: overlap of [i, i+1) with
  // [o*in/out, (o+1)*in/out), divided by in/out.
  auto weights = [](int in, int out, int o, std::vector<std::pair<int, double>>* w) {
    w->clear();
    const double r = double(in) / out, a = o * r, b = (o + 1) * r;
    for (int i = int(std::floor(a)); i < std::min(in, int(std::ceil(b))); ++i) {
      const double ov = std::min(b, i + 1.0) - std::max(a, double(i));
      if (ov > 0) w->push_back({i, ov / r});
    }
  };
  std::vector<double> tmp(size_t(img.height) * ow * C, 0.0);  // horizontal pass
  std::vector<std::pair<int, double>> w;
  for (int ox = 0; ox < ow; ++ox) {
    weights(img.width, ow, ox, &w);
    for (int y = 0; y < img.height; ++y)
      for (int c = 0; c < C; ++c) {
        double acc = 0;
        for (auto& [i, wt] : w) acc += wt * img.at(y, i, c);
        tmp[(size_t(y) * ow + ox) * C + c] = acc;
      }
  }
  Image out(ow, oh, C, img.bit_depth);
  const double maxv = img.max_value();
  for (int oy = 0; oy < oh; ++oy) {
    weights(img.height, oh, oy, &w);
    for (int x = 0; x < ow; ++x)
      for (int c = 0; c < C; ++c) {
        double acc = 0;
        for (auto& [i, wt] : w) acc += wt * tmp[(size_t(i) * ow + x) * C + c];
        out.at(oy, x, c) = uint16_t(std::min(maxv, std::max(0.0, std::round(acc))));
      }
  }
  return out;
}

}  // namespace ctdet
