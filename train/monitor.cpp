#include "train/monitor.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "io/atomic_file.h"
#include "io/dicom.h"
#include "io/image.h"
#include "io/report.h"
#include "io/svg_plot.h"
#include "nn/error.h"

namespace ctdet {

namespace fs = std::filesystem;

const char* monitor_zone_name(int zone) {
  static const char* kNames[kMonitorZones] = {"right_upper", "right_middle", "right_lower",
                                              "left_upper",  "left_middle",  "left_lower"};
  CTDET_CHECK(zone >= 0 && zone < kMonitorZones, "monitor: zone ", zone, " not in 0..5");
  return kNames[zone];
}
const char* monitor_third_name(int third) {
  static const char* kNames[3] = {"upper", "middle", "lower"};
  CTDET_CHECK(third >= 0 && third < 3, "monitor: third ", third, " not in 0..2");
  return kNames[third];
}

MonitorOptions monitor_options_u8(double level, double width) {
  CTDET_CHECK(width > 0, "monitor: window width ", width, " must be > 0");
  MonitorOptions hu, o;
  auto map = [&](double v) { return float((v - (level - width / 2)) / width * 255.0); };
  o.body_threshold = map(hu.body_threshold);
  o.lung_threshold = map(hu.lung_threshold);
  o.lesion_threshold = map(hu.lesion_threshold);
  return o;
}

// ------------------------------------------------------------------------------------------------
// Masks

namespace {

constexpr int64_t kFar = int64_t(1) << 60;

// Squared distance along one line: d[p] = min_q (p - q)^2 + f[q] (lower envelope of parabolas).
void edt_line(const int64_t* f, int n, int64_t* d, std::vector<int>& v, std::vector<double>& z) {
  int k = -1;
  for (int q = 0; q < n; ++q) {
    if (f[q] >= kFar) continue;
    double s = 0;
    while (k >= 0) {
      const int p = v[size_t(k)];
      s = (double(f[q]) + double(q) * q - double(f[p]) - double(p) * p) / (2.0 * (q - p));
      if (s <= z[size_t(k)]) --k;
      else break;
    }
    ++k;
    v[size_t(k)] = q;
    z[size_t(k)] = k == 0 ? -std::numeric_limits<double>::infinity() : s;
    z[size_t(k) + 1] = std::numeric_limits<double>::infinity();
  }
  if (k < 0) {
    for (int p = 0; p < n; ++p) d[p] = kFar;
    return;
  }
  int j = 0;
  for (int p = 0; p < n; ++p) {
    while (z[size_t(j) + 1] < p) ++j;
    const int64_t dq = p - v[size_t(j)];
    d[p] = dq * dq + f[v[size_t(j)]];
  }
}

void check_mask(const std::vector<uint8_t>& m, int w, int h, const char* op) {
  CTDET_CHECK(w > 0 && h > 0 && m.size() == size_t(w) * size_t(h), "monitor: ", op, ": mask of ", m.size(),
              " pixels does not match ", w, "x", h);
}

// 4-connected components of mask != 0: labels (0 = none, 1..n) and sizes (index = label - 1).
int components4(const std::vector<uint8_t>& mask, int w, int h, std::vector<int>& label, std::vector<int64_t>& size) {
  label.assign(mask.size(), 0);
  size.clear();
  std::vector<int> stack;
  int n = 0;
  for (int start = 0; start < int(mask.size()); ++start) {
    if (!mask[size_t(start)] || label[size_t(start)]) continue;
    ++n;
    int64_t count = 0;
    stack.push_back(start);
    label[size_t(start)] = n;
    while (!stack.empty()) {
      const int i = stack.back();
      stack.pop_back();
      ++count;
      const int x = i % w, y = i / w;
      const int nb[4] = {x > 0 ? i - 1 : -1, x + 1 < w ? i + 1 : -1, y > 0 ? i - w : -1, y + 1 < h ? i + w : -1};
      for (int j : nb)
        if (j >= 0 && mask[size_t(j)] && !label[size_t(j)]) {
          label[size_t(j)] = n;
          stack.push_back(j);
        }
    }
    size.push_back(count);
  }
  return n;
}

// Box pixel range [xa, xb) x [ya, yb): pixel centres inside the box, clamped to the image.
void box_pixels(const Box& b, int w, int h, int& xa, int& xb, int& ya, int& yb) {
  auto lo = [](float v, int n) { return std::min(n, std::max(0, int(std::ceil(double(v) - 0.5)))); };
  xa = lo(b.x1, w);
  xb = lo(b.x2, w);
  ya = lo(b.y1, h);
  yb = lo(b.y2, h);
}

double cross(const std::pair<double, double>& o, const std::pair<double, double>& a,
             const std::pair<double, double>& b) {
  return (a.first - o.first) * (b.second - o.second) - (a.second - o.second) * (b.first - o.first);
}

}  // namespace

std::vector<uint8_t> box_lung_region(const LungSegmentation& seg, const Box& box) {
  int xa, xb, ya, yb;
  box_pixels(box, seg.width, seg.height, xa, xb, ya, yb);
  const int bw = std::max(0, xb - xa), bh = std::max(0, yb - ya);
  std::vector<uint8_t> region(size_t(bw) * bh, 0);
  std::vector<std::pair<double, double>> pts;  // row extremes of the lung inside the box (pixel centres)
  for (int y = ya; y < yb; ++y) {
    int lo = -1, hi = -1;
    for (int x = xa; x < xb; ++x)
      if (seg.lung[size_t(y) * seg.width + x]) {
        region[size_t(y - ya) * bw + (x - xa)] = 1;
        if (lo < 0) lo = x;
        hi = x;
      }
    if (lo >= 0) {
      pts.push_back({lo + 0.5, y + 0.5});
      if (hi != lo) pts.push_back({hi + 0.5, y + 0.5});
    }
  }
  // Convex hull (monotone chain, counter-clockwise in a y-up sense; the sign test below does not care).
  std::sort(pts.begin(), pts.end());
  if (pts.size() < 3) return region;
  std::vector<std::pair<double, double>> hull(2 * pts.size());
  size_t k = 0;
  for (size_t i = 0; i < pts.size(); ++i) {
    while (k >= 2 && cross(hull[k - 2], hull[k - 1], pts[i]) <= 0) --k;
    hull[k++] = pts[i];
  }
  for (size_t i = pts.size() - 1, t = k + 1; i > 0; --i) {
    while (k >= t && cross(hull[k - 2], hull[k - 1], pts[i - 1]) <= 0) --k;
    hull[k++] = pts[i - 1];
  }
  hull.resize(k - 1);
  if (hull.size() < 3) return region;
  for (int y = ya; y < yb; ++y)
    for (int x = xa; x < xb; ++x) {
      const std::pair<double, double> p{x + 0.5, y + 0.5};
      bool inside = true;
      for (size_t e = 0; e < hull.size() && inside; ++e)
        inside = cross(hull[e], hull[(e + 1) % hull.size()], p) >= -1e-9;
      if (inside) region[size_t(y - ya) * bw + (x - xa)] = 1;
    }
  return region;
}

std::vector<int64_t> squared_distance_transform(const std::vector<uint8_t>& mask, int w, int h) {
  check_mask(mask, w, h, "distance transform");
  std::vector<int64_t> g(mask.size()), out(mask.size());
  const int n = std::max(w, h);
  std::vector<int> v(size_t(n) + 1);
  std::vector<double> z(size_t(n) + 2);
  std::vector<int64_t> f(static_cast<size_t>(n)), d(static_cast<size_t>(n));
  for (int x = 0; x < w; ++x) {  // columns
    for (int y = 0; y < h; ++y) f[size_t(y)] = mask[size_t(y) * w + x] ? 0 : kFar;
    edt_line(f.data(), h, d.data(), v, z);
    for (int y = 0; y < h; ++y) g[size_t(y) * w + x] = d[size_t(y)];
  }
  for (int y = 0; y < h; ++y) {  // rows
    edt_line(&g[size_t(y) * w], w, &out[size_t(y) * w], v, z);
  }
  return out;
}

std::vector<uint8_t> close_mask(const std::vector<uint8_t>& mask, int w, int h, int radius) {
  check_mask(mask, w, h, "closing");
  CTDET_CHECK(radius >= 0, "monitor: closing radius ", radius, " must be >= 0");
  if (radius == 0) return mask;
  const int64_t r2 = int64_t(radius) * radius;
  const std::vector<int64_t> d_in = squared_distance_transform(mask, w, h);
  std::vector<uint8_t> outside(mask.size());
  for (size_t i = 0; i < mask.size(); ++i) outside[i] = d_in[i] > r2;  // complement of the dilation
  const std::vector<int64_t> d_out = squared_distance_transform(outside, w, h);
  std::vector<uint8_t> out(mask.size());
  for (size_t i = 0; i < mask.size(); ++i) out[i] = d_out[i] > r2;
  return out;
}

std::vector<uint8_t> fill_holes(const std::vector<uint8_t>& mask, int w, int h) {
  check_mask(mask, w, h, "hole filling");
  std::vector<uint8_t> reach(mask.size(), 0);
  std::vector<int> stack;
  auto seed = [&](int i) {
    if (!mask[size_t(i)] && !reach[size_t(i)]) {
      reach[size_t(i)] = 1;
      stack.push_back(i);
    }
  };
  for (int x = 0; x < w; ++x) {
    seed(x);
    seed((h - 1) * w + x);
  }
  for (int y = 0; y < h; ++y) {
    seed(y * w);
    seed(y * w + w - 1);
  }
  while (!stack.empty()) {
    const int i = stack.back();
    stack.pop_back();
    const int x = i % w, y = i / w;
    if (x > 0) seed(i - 1);
    if (x + 1 < w) seed(i + 1);
    if (y > 0) seed(i - w);
    if (y + 1 < h) seed(i + w);
  }
  std::vector<uint8_t> out(mask.size());
  for (size_t i = 0; i < mask.size(); ++i) out[i] = reach[i] ? 0 : 1;
  return out;
}

// ------------------------------------------------------------------------------------------------
// Segmentation

LungSegmentation segment_lungs(const MonitorImage& img, const MonitorOptions& opt, const std::string& where) {
  const int w = img.width, h = img.height;
  CTDET_CHECK(w > 0 && h > 0 && img.values.size() == size_t(w) * size_t(h), "monitor: ", where, ": image of ",
              img.values.size(), " values does not match ", w, "x", h);
  const size_t N = img.values.size();
  for (size_t i = 0; i < N; ++i)
    CTDET_CHECK(std::isfinite(img.values[i]), "monitor: ", where, ": non-finite value ", img.values[i],
                " at pixel (", i % size_t(w), ", ", i / size_t(w), ")");
  LungSegmentation seg;
  seg.width = w;
  seg.height = h;
  seg.patient_left_on_image_right =
      img.patient_left_on_image_right >= 0 ? img.patient_left_on_image_right == 1 : opt.radiological;

  // Body: largest component above the air threshold, holes filled.
  std::vector<uint8_t> above(N);
  for (size_t i = 0; i < N; ++i) above[i] = img.values[i] > opt.body_threshold;
  std::vector<int> label;
  std::vector<int64_t> sizes;
  const int nb = components4(above, w, h, label, sizes);
  seg.body.assign(N, 0);
  seg.lung.assign(N, 0);
  if (nb == 0) return seg;
  const int big = int(std::max_element(sizes.begin(), sizes.end()) - sizes.begin()) + 1;
  for (size_t i = 0; i < N; ++i) seg.body[i] = label[i] == big;
  seg.body = fill_holes(seg.body, w, h);
  double body_sx = 0;
  int64_t body_n = 0;
  for (size_t i = 0; i < N; ++i)
    if (seg.body[i]) {
      body_sx += double(i % size_t(w)) + 0.5;
      ++body_n;
    }
  const double body_cx = body_sx / double(body_n);

  // Lungs: air inside the body, the two largest components that are large enough.
  std::vector<uint8_t> air(N);
  for (size_t i = 0; i < N; ++i) air[i] = seg.body[i] && img.values[i] < opt.lung_threshold;
  // Vessels cut the aerated lung into pieces: bridge them before taking components.
  const int bridge = opt.bridge_radius >= 0 ? opt.bridge_radius : std::max(1, int(std::lround(0.01 * std::max(w, h))));
  air = close_mask(air, w, h, bridge);
  for (size_t i = 0; i < N; ++i) air[i] = air[i] && seg.body[i];
  const int nl = components4(air, w, h, label, sizes);
  std::vector<int> order(static_cast<size_t>(nl));
  for (int k = 0; k < nl; ++k) order[size_t(k)] = k;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return sizes[size_t(a)] > sizes[size_t(b)]; });
  const double min_px = opt.min_lung_fraction * double(N);
  const int radius = opt.closing_radius >= 0 ? opt.closing_radius : int(std::lround(0.03 * std::max(w, h)));
  for (int k = 0; k < std::min(nl, 2); ++k) {
    const int c = order[size_t(k)] + 1;
    if (double(sizes[size_t(c - 1)]) < min_px || sizes[size_t(c - 1)] == 0) break;
    ++seg.components;
    std::vector<uint8_t> m(N);
    double sx = 0;
    int64_t left_n = 0;
    for (size_t i = 0; i < N; ++i) {
      m[i] = label[i] == c;
      if (m[i]) {
        const double x = double(i % size_t(w)) + 0.5;
        sx += x;
        left_n += x < body_cx;
      }
    }
    const int64_t n = sizes[size_t(c - 1)];
    const bool image_right = sx / double(n) >= body_cx;
    const bool split = nl >= 1 && k == 0 && (nl == 1 || double(sizes[size_t(order[1])]) < min_px) &&
                       left_n >= n / 4 && (n - left_n) >= n / 4;
    m = fill_holes(close_mask(fill_holes(m, w, h), w, h, radius), w, h);
    for (size_t i = 0; i < N; ++i) {
      if (!m[i] || seg.lung[i]) continue;
      const bool right_half = split ? double(i % size_t(w)) + 0.5 >= body_cx : image_right;
      const bool patient_left = right_half == seg.patient_left_on_image_right;
      seg.lung[i] = uint8_t(patient_left ? 2 : 1);
    }
  }
  double sx[2] = {0, 0}, sy[2] = {0, 0};
  for (size_t i = 0; i < N; ++i)
    if (seg.lung[i]) {
      const int s = seg.lung[i] - 1;
      ++seg.pixels[s];
      sx[s] += double(i % size_t(w)) + 0.5;
      sy[s] += double(i / size_t(w)) + 0.5;
    }
  for (int s = 0; s < 2; ++s)
    if (seg.pixels[s] > 0) {
      seg.centroid_x[s] = sx[s] / double(seg.pixels[s]);
      seg.centroid_y[s] = sy[s] / double(seg.pixels[s]);
    }
  return seg;
}

SideAssignment assign_side(const LungSegmentation& seg, const Box& box) {
  SideAssignment a;
  int xa, xb, ya, yb;
  box_pixels(box, seg.width, seg.height, xa, xb, ya, yb);
  for (int y = ya; y < yb; ++y)
    for (int x = xa; x < xb; ++x) {
      const uint8_t l = seg.lung[size_t(y) * seg.width + x];
      if (l) ++a.overlap[l - 1];
    }
  if (a.overlap[0] != a.overlap[1]) {
    a.side = a.overlap[1] > a.overlap[0] ? 1 : 0;
    a.method = "overlap";
    return a;
  }
  const double cx = 0.5 * (double(box.x1) + box.x2), cy = 0.5 * (double(box.y1) + box.y2);
  if (seg.has_lung()) {
    double best = std::numeric_limits<double>::infinity();
    for (int s = 0; s < 2; ++s) {
      if (seg.pixels[s] == 0) continue;
      const double dx = cx - seg.centroid_x[s], dy = cy - seg.centroid_y[s], d = dx * dx + dy * dy;
      if (d < best) {
        best = d;
        a.side = s;
      }
    }
    a.method = "nearest";
    return a;
  }
  const bool right_half = cx >= 0.5 * seg.width;
  a.side = right_half == seg.patient_left_on_image_right ? 1 : 0;
  a.method = "midline";
  return a;
}

int vertical_third(const std::vector<bool>& has_lung, int index, bool* outside) {
  const int n = int(has_lung.size());
  CTDET_CHECK(index >= 0 && index < n, "monitor: slice index ", index, " not in 0..", n - 1);
  int first = -1, last = -1;
  for (int i = 0; i < n; ++i)
    if (has_lung[size_t(i)]) {
      if (first < 0) first = i;
      last = i;
    }
  bool out = false;
  if (first < 0) {
    first = 0;
    last = n - 1;
    out = true;
  }
  int t;
  if (index < first) {
    t = 0;
    out = true;
  } else if (index > last) {
    t = 2;
    out = true;
  } else {
    t = int(std::floor(3.0 * (index - first + 0.5) / double(last - first + 1)));
    t = std::min(2, std::max(0, t));
  }
  if (outside) *outside = out;
  return t;
}

SliceFindings measure_slice(const MonitorImage& img, const std::vector<Detection>& dets, const MonitorOptions& opt,
                            const std::string& where) {
  SliceFindings f;
  f.image_id = where;
  f.pixel_area_mm2 = img.pixel_area_mm2;
  const LungSegmentation seg = segment_lungs(img, opt, where);
  f.has_lung = seg.has_lung();
  const int w = img.width, h = img.height;
  for (size_t k = 0; k < dets.size(); ++k) {
    const Detection& d = dets[k];
    CTDET_CHECK(d.label >= 1, "monitor: ", where, ": detection ", k, " has label ", d.label, " (1-based)");
    CTDET_CHECK(std::isfinite(d.score) && std::isfinite(d.x1) && std::isfinite(d.y1) && std::isfinite(d.x2) &&
                    std::isfinite(d.y2),
                "monitor: ", where, ": detection ", k, " has a non-finite score or box");
    CTDET_CHECK(d.x2 >= d.x1 && d.y2 >= d.y1, "monitor: ", where, ": detection ", k, " box [", d.x1, ", ", d.y1,
                ", ", d.x2, ", ", d.y2, "] has x2 < x1 or y2 < y1");
    if (d.score < opt.min_score) continue;
    DetectionFinding df;
    df.det = d;
    f.detections.push_back(df);
  }
  std::stable_sort(f.detections.begin(), f.detections.end(),
                   [](const DetectionFinding& a, const DetectionFinding& b) { return a.det.score > b.det.score; });
  std::set<int> labels;
  std::vector<std::vector<uint8_t>> regions;
  for (auto& df : f.detections) {
    const Box b{df.det.x1, df.det.y1, df.det.x2, df.det.y2, df.det.label};
    const SideAssignment a = assign_side(seg, b);
    df.side = a.side;
    df.method = a.method;
    regions.push_back(box_lung_region(seg, b));
    int xa, xb, ya, yb;
    box_pixels(b, w, h, xa, xb, ya, yb);
    for (int y = ya; y < yb; ++y)
      for (int x = xa; x < xb; ++x)
        df.lesion_px += regions.back()[size_t(y - ya) * (xb - xa) + (x - xa)] &&
                        img.values[size_t(y) * w + x] >= opt.lesion_threshold;
    labels.insert(df.det.label);
  }
  // Union per class: the highest-scoring box claims a pixel first.
  std::vector<uint8_t> taken(size_t(w) * h);
  for (int lab : labels) {
    std::fill(taken.begin(), taken.end(), uint8_t(0));
    for (size_t k = 0; k < f.detections.size(); ++k) {
      const DetectionFinding& df = f.detections[k];
      if (df.det.label != lab) continue;
      int xa, xb, ya, yb;
      box_pixels(Box{df.det.x1, df.det.y1, df.det.x2, df.det.y2, lab}, w, h, xa, xb, ya, yb);
      int64_t n = 0;
      for (int y = ya; y < yb; ++y)
        for (int x = xa; x < xb; ++x) {
          const size_t i = size_t(y) * w + x;
          if (taken[i]) continue;
          taken[i] = 1;
          n += regions[k][size_t(y - ya) * (xb - xa) + (x - xa)] && img.values[i] >= opt.lesion_threshold;
        }
      f.lesion_px[{df.side, lab}] += n;
    }
  }
  return f;
}

// ------------------------------------------------------------------------------------------------
// Series

namespace {

bool is_image_file(const std::string& path) {
  std::string head;
  {
    FILE* fp = std::fopen(path.c_str(), "rb");
    CTDET_CHECK(fp != nullptr, "monitor: cannot open slice '", path, "'");
    char buf[8];
    const size_t n = std::fread(buf, 1, sizeof(buf), fp);
    std::fclose(fp);
    head.assign(buf, n);
  }
  return sniff_image_format(head.data(), head.size()) != ImageFormat::kUnknown;
}

}  // namespace

MonitorImage load_monitor_image(const ImageRecord& rec) {
  MonitorImage m;
  if (is_image_file(rec.file)) {
    const Image img = read_image(rec.file);
    m.width = img.width;
    m.height = img.height;
    m.values.resize(size_t(img.width) * img.height);
    for (int y = 0; y < img.height; ++y)
      for (int x = 0; x < img.width; ++x) m.values[size_t(y) * img.width + x] = float(img.at(y, x, 0));
    return m;
  }
  const DicomSlice s = read_dicom_slice(rec.file);
  m.width = s.width;
  m.height = s.height;
  m.values = s.hu;
  m.pixel_area_mm2 = s.meta.pixel_spacing[0] * s.meta.pixel_spacing[1];
  // Row direction = direction of increasing column index, in patient LPS coordinates (+x = patient's left).
  if (s.meta.has_orientation && std::abs(s.meta.orientation[0]) > 1e-3)
    m.patient_left_on_image_right = s.meta.orientation[0] > 0 ? 1 : 0;
  return m;
}

MonitorSeries read_monitor_manifest(const std::string& path_in) {
  std::string path = path_in;
  std::error_code ec;
  if (fs::is_directory(path, ec)) path = (fs::path(path) / "manifest.json").string();
  const std::string text = read_file(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    CTDET_FAIL("monitor: manifest '", path, "' is not valid JSON: ", e.what());
  }
  CTDET_CHECK(j.is_object() && j.contains("studies") && j["studies"].is_array() && !j["studies"].empty(),
              "monitor: manifest '", path, "' needs a non-empty \"studies\" array");
  const fs::path base = fs::path(path).parent_path();
  MonitorSeries s;
  if (j.contains("patient_id") && j["patient_id"].is_string()) s.patient_id = j["patient_id"].get<std::string>();
  std::string dicom_patient, dicom_patient_where;
  for (size_t k = 0; k < j["studies"].size(); ++k) {
    const auto& st = j["studies"][k];
    const std::string where = str("monitor: manifest '", path, "' study ", k);
    CTDET_CHECK(st.is_object() && st.contains("date") && st["date"].is_string(), where,
                ": needs a \"date\" string");
    MonitorStudy study;
    study.date = st["date"].get<std::string>();
    if (st.contains("dicom_dir")) {
      CTDET_CHECK(st["dicom_dir"].is_string(), where, ": \"dicom_dir\" must be a string");
      const std::string rel = st["dicom_dir"].get<std::string>();
      study.study_id = rel;
      study.dicom = true;
      DicomOptions dop;
      dop.keep_hu = false;
      const DicomSeries ds = read_dicom_series((base / rel).string(), dop);
      CTDET_CHECK(!ds.slices.empty(), where, ": DICOM folder '", rel, "' holds no slice");
      // One patient: every slice's PatientID must agree with the manifest's and with the other studies'.
      for (const DicomSlice& d : ds.slices) {
        const std::string& pid = d.meta.patient_id;
        if (pid.empty()) continue;
        if (dicom_patient.empty()) {
          dicom_patient = pid;
          dicom_patient_where = d.path;
        }
        CTDET_CHECK(pid == dicom_patient, "monitor: manifest '", path, "': the studies are not one patient: '", d.path,
                    "' has PatientID '", pid, "' but '", dicom_patient_where, "' has '", dicom_patient, "'");
        CTDET_CHECK(s.patient_id.empty() || pid == s.patient_id, "monitor: manifest '", path, "' names patient '",
                    s.patient_id, "' but '", d.path, "' has PatientID '", pid, "'");
      }
      // Ascending position runs along row x column; LPS +z is superior, so apex first = descending when n_z > 0.
      const double* o = ds.slices[0].meta.orientation;
      const double nz = o[0] * o[4] - o[1] * o[3];
      std::vector<size_t> idx(ds.slices.size());
      for (size_t i = 0; i < idx.size(); ++i) idx[i] = nz >= 0 ? idx.size() - 1 - i : i;
      for (size_t i : idx) {
        const DicomSlice& d = ds.slices[i];
        ImageRecord r;
        r.file = d.path;
        r.id = rel + "/" + fs::path(d.path).filename().string();
        r.width = d.width;
        r.height = d.height;
        r.slice_position = d.meta.slice_position;
        study.slices.push_back(r);
      }
    } else {
      CTDET_CHECK(st.contains("folder") && st["folder"].is_string(), where, ": needs \"folder\" or \"dicom_dir\"");
      CTDET_CHECK(st.contains("slices") && st["slices"].is_array() && !st["slices"].empty(), where,
                  ": needs a non-empty \"slices\" array");
      study.study_id = st["folder"].get<std::string>();
      bool all_z = true;
      for (size_t i = 0; i < st["slices"].size(); ++i) {
        const auto& e = st["slices"][i];
        ImageRecord r;
        std::string file;
        if (e.is_string()) file = e.get<std::string>();
        else {
          CTDET_CHECK(e.is_object() && e.contains("file") && e["file"].is_string(), where, " slice ", i,
                      ": needs a \"file\" string");
          file = e["file"].get<std::string>();
        }
        const bool has_z = e.is_object() && e.contains("z") && e["z"].is_number();
        all_z = all_z && has_z;
        r.slice_position = has_z ? e["z"].get<double>() : double(i);
        r.file = (base / study.study_id / file).string();
        r.id = study.study_id + "/" + file;
        study.slices.push_back(r);
      }
      if (all_z)
        std::stable_sort(study.slices.begin(), study.slices.end(),
                         [](const ImageRecord& a, const ImageRecord& b) { return a.slice_position < b.slice_position; });
    }
    for (auto& r : study.slices) {
      r.patient_id = s.patient_id;
      r.study_id = study.study_id;
      r.study_date = study.date;
    }
    s.studies.push_back(std::move(study));
  }
  std::stable_sort(s.studies.begin(), s.studies.end(),
                   [](const MonitorStudy& a, const MonitorStudy& b) { return a.date < b.date; });
  std::set<std::string> ids;
  for (const auto& st : s.studies)
    for (const auto& r : st.slices)
      CTDET_CHECK(ids.insert(r.id).second, "monitor: manifest '", path, "' lists slice '", r.id, "' twice");
  return s;
}

Dataset monitor_dataset(const MonitorSeries& series, const std::vector<std::string>& class_names) {
  Dataset ds;
  ds.class_names = class_names;
  for (const auto& st : series.studies)
    for (const auto& r : st.slices) ds.images.push_back(r);
  return ds;
}

DetectionSource detections_by_image(const std::vector<Detection>& dets) {
  auto by = std::make_shared<std::map<std::string, std::vector<Detection>>>();
  for (const auto& d : dets) (*by)[d.image_id].push_back(d);
  return [by](const ImageRecord& r) {
    auto it = by->find(r.id);
    return it == by->end() ? std::vector<Detection>{} : it->second;
  };
}

std::vector<std::string> unknown_detection_ids(const MonitorSeries& series, const std::vector<Detection>& dets) {
  std::set<std::string> ids, unknown;
  for (const auto& st : series.studies)
    for (const auto& r : st.slices) ids.insert(r.id);
  for (const auto& d : dets)
    if (!ids.count(d.image_id)) unknown.insert(d.image_id);
  return {unknown.begin(), unknown.end()};
}

StudyResult analyze_study(const MonitorStudy& study, const DetectionSource& dets, const SliceLoader& load,
                          const MonitorOptions& opt) {
  StudyResult r;
  r.study_id = study.study_id;
  r.date = study.date;
  r.slices = int(study.slices.size());
  CTDET_CHECK(r.slices > 0, "monitor: study ", study.study_id, " (", study.date, ") has no slice");
  std::vector<SliceFindings> found;
  std::vector<bool> has_lung;
  r.mm2 = true;
  for (const auto& rec : study.slices) {
    const MonitorImage img = load(rec);
    found.push_back(measure_slice(img, dets(rec), opt, rec.id));
    has_lung.push_back(found.back().has_lung);
    r.slices_with_lung += found.back().has_lung;
    r.mm2 = r.mm2 && img.pixel_area_mm2 > 0;
  }
  for (size_t k = 0; k < found.size(); ++k) {
    const SliceFindings& f = found[k];
    bool outside = false;
    const int third = vertical_third(has_lung, int(k), &outside);
    if (outside && !f.detections.empty())
      r.notes.push_back(str(f.image_id, ": beyond the lungs' extent in this study, counted as ",
                            monitor_third_name(third)));
    for (const auto& df : f.detections) {
      ++r.detections;
      ++r.count[{df.side * 3 + third, df.det.label}];
      if (df.method != "overlap")
        r.notes.push_back(str(f.image_id, ": class ", df.det.label, " box [", df.det.x1, ", ", df.det.y1, ", ",
                              df.det.x2, ", ", df.det.y2, "] has ",
                              df.method == "nearest" ? "no (or tied) lung overlap; nearest lung: "
                                                     : "no lung on the slice; image half: ",
                              monitor_zone_name(df.side * 3 + third)));
    }
    for (const auto& [key, px] : f.lesion_px) {
      const std::pair<int, int> zk{key.first * 3 + third, key.second};
      r.area_px[zk] += px;
      r.area_mm2[zk] += double(px) * f.pixel_area_mm2;
    }
  }
  return r;
}

const char* change_name(ChangeKind c) {
  switch (c) {
    case ChangeKind::kNew: return "new";
    case ChangeKind::kResolved: return "resolved";
    case ChangeKind::kLarger: return "larger";
    case ChangeKind::kSmaller: return "smaller";
    case ChangeKind::kStable: return "stable";
  }
  return "?";
}

ChangeKind classify_change(double before, double after, double threshold) {
  CTDET_CHECK(std::isfinite(before) && std::isfinite(after) && before >= 0 && after >= 0 && before + after > 0,
              "monitor: change of areas ", before, " -> ", after, " (need finite, >= 0, not both 0)");
  CTDET_CHECK(std::isfinite(threshold) && threshold >= 0, "monitor: change threshold ", threshold, " must be >= 0");
  if (before == 0) return ChangeKind::kNew;
  if (after == 0) return ChangeKind::kResolved;
  const double rel = (after - before) / before;
  if (rel > threshold) return ChangeKind::kLarger;
  if (rel < -threshold) return ChangeKind::kSmaller;
  return ChangeKind::kStable;
}

double study_area(const StudyResult& s, const std::string& unit, int zone, int label) {
  if (unit == "mm2") {
    auto it = s.area_mm2.find({zone, label});
    return it == s.area_mm2.end() ? 0.0 : it->second;
  }
  auto it = s.area_px.find({zone, label});
  return it == s.area_px.end() ? 0.0 : double(it->second);
}

std::vector<ZoneChange> compare_studies(const std::vector<StudyResult>& studies, const std::string& unit,
                                        double threshold) {
  CTDET_CHECK(unit == "mm2" || unit == "px", "monitor: unit '", unit, "' is not mm2 or px");
  std::vector<ZoneChange> out;
  for (size_t s = 1; s < studies.size(); ++s) {
    const StudyResult &a = studies[s - 1], &b = studies[s];
    std::set<std::pair<int, int>> keys;
    for (const auto* st : {&a, &b})
      for (const auto& [k, v] : st->area_px)
        if (study_area(*st, unit, k.first, k.second) > 0) keys.insert(k);
    for (const auto& k : keys) {
      ZoneChange c;
      c.zone = k.first;
      c.label = k.second;
      c.date_before = a.date;
      c.date_after = b.date;
      c.before = study_area(a, unit, k.first, k.second);
      c.after = study_area(b, unit, k.first, k.second);
      c.percent = c.before > 0 ? 100.0 * (c.after - c.before) / c.before : std::nan("");
      c.change = classify_change(c.before, c.after, threshold);
      out.push_back(c);
    }
  }
  return out;
}

MonitorReport run_monitor(const MonitorSeries& series, const DetectionSource& dets, const SliceLoader& load,
                          const MonitorOptions& opt, const std::vector<std::string>& class_names) {
  CTDET_CHECK(!series.studies.empty(), "monitor: the series has no study");
  MonitorReport r;
  r.patient_id = series.patient_id;
  r.class_names = class_names;
  r.change_threshold = opt.change_threshold;
  std::vector<const MonitorStudy*> order;
  for (const auto& s : series.studies) order.push_back(&s);
  std::stable_sort(order.begin(), order.end(), [](const MonitorStudy* a, const MonitorStudy* b) {
    return a->date < b->date;
  });
  bool mm2 = true;
  for (const MonitorStudy* s : order) {
    r.studies.push_back(analyze_study(*s, dets, load, opt));
    mm2 = mm2 && r.studies.back().mm2;
  }
  r.unit = mm2 ? "mm2" : "px";
  r.changes = compare_studies(r.studies, r.unit, opt.change_threshold);
  return r;
}

// ------------------------------------------------------------------------------------------------
// Outputs

namespace {

std::string class_name_of(const MonitorReport& r, int label) {
  if (label >= 1 && label <= int(r.class_names.size())) return r.class_names[size_t(label - 1)];
  return str("class_", label);
}

std::string fmt_area(double v, const std::string& unit) {
  char buf[64];
  if (unit == "mm2") std::snprintf(buf, sizeof(buf), "%.2f", v);
  else std::snprintf(buf, sizeof(buf), "%.0f", v);
  return buf;
}

std::string fmt_percent(double p) {
  if (!std::isfinite(p)) return "";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%+.1f", p);
  return buf;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) {
    if (c == '"') o += '"';
    o += c;
  }
  return o + "\"";
}

std::string md_cell(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '|') o += "\\|";
    else if (c == '\n') o += ' ';
    else o += c;
  }
  return o;
}

// (zone, label) pairs with any area in any study, in zone then label order.
std::vector<std::pair<int, int>> report_keys(const MonitorReport& r) {
  std::set<std::pair<int, int>> keys;
  for (const auto& s : r.studies)
    for (const auto& [k, v] : s.area_px)
      if (study_area(s, r.unit, k.first, k.second) > 0) keys.insert(k);
  return {keys.begin(), keys.end()};
}

std::string unit_label(const std::string& unit) { return unit == "mm2" ? "mm²" : "pixels"; }

// Days since 1970-01-01 of "YYYY-MM-DD"; false when the text is not such a date.
bool civil_days(const std::string& s, double& days) {
  int y, m, d;
  char tail;
  if (std::sscanf(s.c_str(), "%d-%d-%d%c", &y, &m, &d, &tail) != 3 || m < 1 || m > 12 || d < 1 || d > 31)
    return false;
  y -= m <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const int yoe = y - era * 400;
  const int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  days = double(era) * 146097 + doe - 719468;
  return true;
}

std::string change_text(const ZoneChange& c) {
  std::string t = change_name(c.change);
  if (std::isfinite(c.percent)) t += " (" + fmt_percent(c.percent) + "%)";
  return t;
}

}  // namespace

std::string monitor_csv(const MonitorReport& r) {
  std::string s = "zone,class,date_before,date_after,area_before,area_after,percent_change,change,unit\n";
  for (const auto& c : r.changes)
    s += str(monitor_zone_name(c.zone), ",", csv_field(class_name_of(r, c.label)), ",", csv_field(c.date_before), ",",
             csv_field(c.date_after), ",", fmt_area(c.before, r.unit), ",", fmt_area(c.after, r.unit), ",",
             fmt_percent(c.percent), ",", change_name(c.change), ",", r.unit, "\n");
  return s;
}

std::string monitor_markdown(const MonitorReport& r) {
  std::string s = "# Lesion follow-up";
  if (!r.patient_id.empty()) s += ": patient " + md_cell(r.patient_id);
  s += "\n\nLesion area per lung zone and class (" + unit_label(r.unit) +
       "); changes between consecutive studies: new, resolved, larger / smaller (beyond " +
       fmt_area(100.0 * r.change_threshold, "px") + "% relative change), else stable.\n\n";
  s += "| Zone | Class |";
  for (const auto& st : r.studies) s += " " + md_cell(st.date) + " |";
  s += " Change |\n|---|---|";
  for (size_t i = 0; i < r.studies.size(); ++i) s += "---:|";
  s += "---|\n";
  const auto keys = report_keys(r);
  for (const auto& k : keys) {
    s += "| " + std::string(monitor_zone_name(k.first)) + " | " + md_cell(class_name_of(r, k.second)) + " |";
    for (const auto& st : r.studies) s += " " + fmt_area(study_area(st, r.unit, k.first, k.second), r.unit) + " |";
    std::string ch;
    for (const auto& c : r.changes)
      if (c.zone == k.first && c.label == k.second) {
        if (!ch.empty()) ch += "; ";
        ch += md_cell(c.date_after) + ": " + change_text(c);
      }
    s += " " + (ch.empty() ? std::string("-") : ch) + " |\n";
  }
  if (keys.empty()) {
    s += "| (no lesion found) | - |";
    for (size_t i = 0; i < r.studies.size(); ++i) s += " 0 |";
    s += " - |\n";
  }
  s += "\n| Study | Date | Slices | Slices with lung | Detections |\n|---|---|---:|---:|---:|\n";
  for (const auto& st : r.studies)
    s += str("| ", md_cell(st.study_id), " | ", md_cell(st.date), " | ", st.slices, " | ", st.slices_with_lung, " | ",
             st.detections, " |\n");
  bool any_note = false;
  for (const auto& st : r.studies)
    for (const auto& n : st.notes) {
      if (!any_note) s += "\nNotes:\n\n";
      any_note = true;
      s += "- " + md_cell(st.date) + " " + md_cell(n) + "\n";
    }
  return s;
}

std::string monitor_html_section(const MonitorReport& r) {
  std::string s = "<section class=\"monitor\">\n<h2>Lesion follow-up";
  if (!r.patient_id.empty()) s += ": patient " + html_escape(r.patient_id);
  s += "</h2>\n<p>Lesion area per lung zone and class (" + html_escape(unit_label(r.unit)) +
       "); changes beyond " + fmt_area(100.0 * r.change_threshold, "px") +
       "% relative change are larger / smaller, else stable.</p>\n<table>\n<tr><th>Zone</th><th>Class</th>";
  for (const auto& st : r.studies) s += "<th>" + html_escape(st.date) + "</th>";
  s += "<th>Change</th></tr>\n";
  const auto keys = report_keys(r);
  for (const auto& k : keys) {
    s += "<tr><td>" + std::string(monitor_zone_name(k.first)) + "</td><td>" +
         html_escape(class_name_of(r, k.second)) + "</td>";
    for (const auto& st : r.studies)
      s += "<td style=\"text-align:right\">" + fmt_area(study_area(st, r.unit, k.first, k.second), r.unit) + "</td>";
    std::string ch;
    for (const auto& c : r.changes)
      if (c.zone == k.first && c.label == k.second) {
        if (!ch.empty()) ch += "<br>";
        ch += html_escape(c.date_after + ": " + change_text(c));
      }
    s += "<td>" + (ch.empty() ? std::string("-") : ch) + "</td></tr>\n";
  }
  s += "</table>\n";
  // One chart per zone with any area: area over time, a line per class.
  std::vector<double> xs;
  bool dates_ok = true;
  double d0 = 0;
  for (size_t i = 0; i < r.studies.size(); ++i) {
    double d = 0;
    dates_ok = dates_ok && civil_days(r.studies[i].date, d);
    if (i == 0) d0 = d;
    xs.push_back(d - d0);
  }
  if (!dates_ok)
    for (size_t i = 0; i < xs.size(); ++i) xs[i] = double(i);
  static const char* kColors[6] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
  s += "<div class=\"monitor-charts\">\n";
  for (int z = 0; z < kMonitorZones; ++z) {
    std::vector<PlotSeries> series;
    for (const auto& k : keys) {
      if (k.first != z) continue;
      PlotSeries p;
      p.name = class_name_of(r, k.second);
      p.color = kColors[size_t(k.second - 1) % 6];
      p.markers = true;
      p.x = xs;
      for (const auto& st : r.studies) p.y.push_back(study_area(st, r.unit, z, k.second));
      series.push_back(p);
    }
    if (series.empty()) continue;
    PlotOptions po;
    po.width = 420;
    po.height = 280;
    po.title = monitor_zone_name(z);
    po.x_label = dates_ok ? "days since " + r.studies[0].date : "study";
    po.y_label = "area (" + unit_label(r.unit) + ")";
    po.y_min = 0;
    if (xs.size() == 1) {
      po.x_min = xs[0] - 1;
      po.x_max = xs[0] + 1;
    }
    po.id = std::string("monitor-") + monitor_zone_name(z);
    s += svg_line_chart(series, po) + "\n";
  }
  s += "</div>\n";
  bool any_note = false;
  for (const auto& st : r.studies)
    for (const auto& n : st.notes) {
      if (!any_note) s += "<p>Notes:</p>\n<ul>\n";
      any_note = true;
      s += "<li>" + html_escape(st.date + " " + n) + "</li>\n";
    }
  if (any_note) s += "</ul>\n";
  s += "</section>\n";
  return s;
}

std::string monitor_html_document(const MonitorReport& r) {
  return "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>ctdet monitor</title>\n<style>"
         "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:2px 8px}svg{margin:6px}</style></head>\n<body>\n" +
         monitor_html_section(r) + "</body></html>\n";
}

MonitorPaths write_monitor_outputs(const MonitorReport& r, const std::string& out_dir) {
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  CTDET_CHECK(!ec, "monitor: cannot create '", out_dir, "': ", ec.message());
  MonitorPaths p;
  p.csv = (fs::path(out_dir) / "monitor.csv").string();
  p.md = (fs::path(out_dir) / "monitor.md").string();
  p.html = (fs::path(out_dir) / "monitor.html").string();
  write_file_atomic(p.csv, monitor_csv(r));
  write_file_atomic(p.md, monitor_markdown(r));
  write_file_atomic(p.html, monitor_html_document(r));
  return p;
}

}  // namespace ctdet
