#include "io/resize.h"

#include <algorithm>
#include <cmath>

#include "nn/error.h"

namespace ctdet {

namespace {
// Python 3 round(): half to even (std::nearbyint under the default rounding mode).
int py_round(double v) { return int(std::nearbyint(v)); }

struct AxisTap {
  int i0, i1;
  float t;
};
// TF1 legacy scaler: s = d * (in/out), scale computed in float.
std::vector<AxisTap> axis_taps(int in, int out) {
  const float scale = float(in) / float(out);
  std::vector<AxisTap> taps(static_cast<size_t>(out));
  for (int d = 0; d < out; ++d) {
    const float s = float(d) * scale;
    const float f = std::floor(s);
    AxisTap& t = taps[size_t(d)];
    t.i0 = std::min(int(f), in - 1);
    t.i1 = std::min(t.i0 + 1, in - 1);
    t.t = s - f;
  }
  return taps;
}
}  // namespace

void resize_bilinear_tf1(const float* src, int in_h, int in_w, int channels, float* dst, int out_h, int out_w) {
  CTDET_CHECK(in_h > 0 && in_w > 0 && out_h > 0 && out_w > 0 && channels > 0, "resize_bilinear_tf1: bad sizes in ",
              in_h, "x", in_w, " out ", out_h, "x", out_w, " channels ", channels);
  const std::vector<AxisTap> ty = axis_taps(in_h, out_h), tx = axis_taps(in_w, out_w);
  const size_t in_row = size_t(in_w) * channels;
  for (int y = 0; y < out_h; ++y) {
    const AxisTap& a = ty[size_t(y)];
    const float* r0 = src + size_t(a.i0) * in_row;
    const float* r1 = src + size_t(a.i1) * in_row;
    float* o = dst + size_t(y) * out_w * channels;
    for (int x = 0; x < out_w; ++x) {
      const AxisTap& b = tx[size_t(x)];
      const float* tl = r0 + size_t(b.i0) * channels;
      const float* tr = r0 + size_t(b.i1) * channels;
      const float* bl = r1 + size_t(b.i0) * channels;
      const float* br = r1 + size_t(b.i1) * channels;
      for (int c = 0; c < channels; ++c) {
        const float top = tl[c] + (tr[c] - tl[c]) * b.t;
        const float bottom = bl[c] + (br[c] - bl[c]) * b.t;
        o[size_t(x) * channels + c] = top + (bottom - top) * a.t;
      }
    }
  }
}

ResizeShape keep_aspect_shape(int in_h, int in_w, int min_side, int max_side) {
  CTDET_CHECK(in_h > 0 && in_w > 0, "keep_aspect_shape: image size ", in_h, "x", in_w, " must be positive");
  CTDET_CHECK(min_side > 0 && max_side >= min_side, "keep_aspect_shape: min_side ", min_side, " max_side ",
              max_side);
  const double large = double(min_side) / double(std::min(in_h, in_w));
  int h = py_round(in_h * large), w = py_round(in_w * large);
  if (std::max(h, w) > max_side) {
    const double small = double(max_side) / double(std::max(in_h, in_w));
    h = py_round(in_h * small);
    w = py_round(in_w * small);
  }
  ResizeShape r;
  r.out_h = std::max(h, 1);
  r.out_w = std::max(w, 1);
  r.scale_y = double(r.out_h) / in_h;
  r.scale_x = double(r.out_w) / in_w;
  return r;
}

Normalization parse_normalization(const std::string& name) {
  if (name == "none") return Normalization::kNone;
  if (name == "resnet") return Normalization::kResNet;
  if (name == "inception") return Normalization::kInception;
  CTDET_FAIL("unknown normalisation '", name, "' (expected none, resnet or inception)");
}

std::vector<float> image_to_rgb_float(const Image& img) {
  CTDET_CHECK(img.width > 0 && img.height > 0 && img.channels >= 1 && img.channels <= 4, "image_to_rgb_float: bad ",
              img.width, "x", img.height, "x", img.channels, " image");
  CTDET_CHECK(img.data.size() == size_t(img.width) * img.height * img.channels, "image_to_rgb_float: ",
              img.data.size(), " samples for ", img.width, "x", img.height, "x", img.channels);
  const float k = img.bit_depth == 16 ? 255.0f / 65535.0f : 1.0f;
  const size_t n = size_t(img.width) * img.height;
  std::vector<float> out(n * 3);
  const int c = img.channels;
  for (size_t i = 0; i < n; ++i) {
    const uint16_t* s = img.data.data() + i * c;
    if (c <= 2) {
      out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = s[0] * k;
    } else {
      out[3 * i] = s[0] * k;
      out[3 * i + 1] = s[1] * k;
      out[3 * i + 2] = s[2] * k;
    }
  }
  return out;
}

NetInput preprocess_image(const Image& img, Normalization norm, int min_side, int max_side) {
  const std::vector<float> rgb = image_to_rgb_float(img);
  const ResizeShape rs = keep_aspect_shape(img.height, img.width, min_side, max_side);
  CTDET_CHECK(rs.out_h >= 33 && rs.out_w >= 33, "preprocess_image: ", img.width, "x", img.height,
              " resizes to ", rs.out_w, "x", rs.out_h, ", under the 33x33 minimum of the feature extractors");
  std::vector<float> hwc(size_t(rs.out_h) * rs.out_w * 3);
  resize_bilinear_tf1(rgb.data(), img.height, img.width, 3, hwc.data(), rs.out_h, rs.out_w);
  NetInput in;
  in.height = rs.out_h;
  in.width = rs.out_w;
  in.orig_height = img.height;
  in.orig_width = img.width;
  in.scale_y = rs.scale_y;
  in.scale_x = rs.scale_x;
  float mul = 1.f, add[3] = {0.f, 0.f, 0.f};
  if (norm == Normalization::kResNet) {
    add[0] = -123.68f;
    add[1] = -116.779f;
    add[2] = -103.939f;
  } else if (norm == Normalization::kInception) {
    mul = 2.0f / 255.0f;
    add[0] = add[1] = add[2] = -1.0f;
  }
  const size_t plane = size_t(rs.out_h) * rs.out_w;
  in.chw.resize(plane * 3);
  for (int c = 0; c < 3; ++c)
    for (size_t i = 0; i < plane; ++i) in.chw[c * plane + i] = hwc[3 * i + c] * mul + add[c];
  return in;
}

void box_to_original(const NetInput& in, float& x1, float& y1, float& x2, float& y2) {
  x1 = float(x1 / in.scale_x);
  x2 = float(x2 / in.scale_x);
  y1 = float(y1 / in.scale_y);
  y2 = float(y2 / in.scale_y);
}

}  // namespace ctdet
