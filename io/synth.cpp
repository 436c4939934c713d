#include "io/synth.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "nn/error.h"

namespace ctdet {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

// ------------------------------------------------------------------------------------------------
// RNG
uint64_t SynthRng::next() {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
double SynthRng::uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }
double SynthRng::uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
int SynthRng::below(int n) { return int(next() % uint64_t(n)); }
double SynthRng::normal() {
  const double u1 = 1.0 - uniform();  // (0, 1]
  const double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}
uint64_t synth_mix_seed(uint64_t a, uint64_t b) {
  SynthRng r(a * 0x2545F4914F6CDD1Dull + b + 0x632BE59BD9B4E019ull);
  r.next();
  return r.next();
}

uint8_t lung_window_u8(float hu) {
  const float level = -600.f, width = 1500.f;
  float t = (hu - (level - width / 2)) / width;
  t = std::min(1.f, std::max(0.f, t));
  return uint8_t(std::lround(t * 255.f));
}

Image SynthSlice::window8() const {
  Image img(size, size, 1, 8);
  for (size_t i = 0; i < hu.size(); ++i) img.data[i] = lung_window_u8(hu[i]);
  return img;
}

namespace {

constexpr double kPi = 3.14159265358979323846;

struct Ellipse {
  double cx = 0, cy = 0, ax = 1, ay = 1, th = 0;
  double rho(double u, double v) const {
    const double du = u - cx, dv = v - cy, c = std::cos(th), s = std::sin(th);
    const double p = du * c + dv * s, q = -du * s + dv * c;
    return std::sqrt((p / ax) * (p / ax) + (q / ay) * (q / ay));
  }
  bool inside(double u, double v) const { return rho(u, v) < 1.0; }
};

struct Anatomy {
  Ellipse body, inner, lung[2], heart, aorta, vert, spinous;
  std::vector<Ellipse> ribs;
};

Anatomy make_anatomy(uint64_t seed, double z) {
  SynthRng r(seed);
  Anatomy a;
  a.body = {r.uniform(-0.02, 0.02), r.uniform(0.0, 0.06), r.uniform(0.82, 0.9), r.uniform(0.58, 0.66), 0};
  a.inner = a.body;
  a.inner.ax -= 0.05;
  a.inner.ay -= 0.05;
  const double lf = 0.7 + 0.3 * std::sin(kPi * std::min(1.0, std::max(0.0, z)));
  a.lung[0] = {-0.37 * r.uniform(0.95, 1.05), a.body.cy - 0.06 + r.uniform(-0.03, 0.03),
               0.27 * lf * r.uniform(0.92, 1.05), 0.42 * lf * r.uniform(0.92, 1.05), r.uniform(-0.12, 0.04)};
  a.lung[1] = {0.37 * r.uniform(0.95, 1.05), a.body.cy - 0.06 + r.uniform(-0.03, 0.03),
               0.25 * lf * r.uniform(0.92, 1.05), 0.41 * lf * r.uniform(0.92, 1.05), -r.uniform(-0.12, 0.04)};
  const double hz = 0.4 + 0.6 * z;
  a.heart = {0.1, a.body.cy + 0.1, 0.22 * hz, 0.2 * hz, 0.3};
  a.aorta = {0.09, a.body.cy + 0.3, 0.055, 0.055, 0};
  const double vy = a.body.cy + a.body.ay - 0.22;
  a.vert = {0, vy, 0.1, 0.09, 0};
  a.spinous = {0, vy + 0.15, 0.03, 0.06, 0};
  for (int side = 0; side < 2; ++side)
    for (int k = 0; k < 4; ++k) {
      const double ang = (side == 0 ? kPi : 0.0) + (side == 0 ? -1 : 1) * (-0.9 + 0.55 * k + r.uniform(-0.1, 0.1));
      Ellipse rib;
      rib.cx = a.inner.cx + 0.96 * a.inner.ax * std::cos(ang);
      rib.cy = a.inner.cy + 0.96 * a.inner.ay * std::sin(ang);
      rib.ax = 0.03;
      rib.ay = 0.022;
      rib.th = ang + kPi / 2;
      a.ribs.push_back(rib);
    }
  return a;
}

inline double to_u(int x, int size) { return (x + 0.5) / (size * 0.5) - 1.0; }

bool in_bone(const Anatomy& a, double u, double v) {
  if (a.vert.inside(u, v) || a.spinous.inside(u, v)) return true;
  for (const auto& rib : a.ribs)
    if (rib.inside(u, v)) return true;
  return false;
}

std::vector<uint8_t> lung_mask(const Anatomy& a, int size) {
  std::vector<uint8_t> m(size_t(size) * size, 0);
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      const double u = to_u(x, size), v = to_u(y, size);
      if (!(a.lung[0].inside(u, v) || a.lung[1].inside(u, v))) continue;
      if (!a.inner.inside(u, v) || a.heart.inside(u, v) || a.aorta.inside(u, v) || in_bone(a, u, v)) continue;
      m[size_t(y) * size + x] = 1;
    }
  return m;
}

// A capsule (thick segment) in pixel coordinates.
struct Segment {
  double x0, y0, x1, y1, r;
};

// Distance from pixel centre (px, py) to a segment.
double seg_dist(const Segment& s, double px, double py) {
  const double dx = s.x1 - s.x0, dy = s.y1 - s.y0, l2 = dx * dx + dy * dy;
  double t = l2 > 0 ? ((px - s.x0) * dx + (py - s.y0) * dy) / l2 : 0.0;
  t = std::min(1.0, std::max(0.0, t));
  const double ex = s.x0 + t * dx - px, ey = s.y0 + t * dy - py;
  return std::sqrt(ex * ex + ey * ey);
}

// Max-combines a soft-edged capsule into an alpha buffer.
void draw_segment(std::vector<float>& alpha, int size, const Segment& s) {
  const double r = std::max(0.6, s.r);
  const int xa = std::max(0, int(std::floor(std::min(s.x0, s.x1) - r - 1)));
  const int xb = std::min(size - 1, int(std::ceil(std::max(s.x0, s.x1) + r + 1)));
  const int ya = std::max(0, int(std::floor(std::min(s.y0, s.y1) - r - 1)));
  const int yb = std::min(size - 1, int(std::ceil(std::max(s.y0, s.y1) + r + 1)));
  for (int y = ya; y <= yb; ++y)
    for (int x = xa; x <= xb; ++x) {
      const double a = std::min(1.0, std::max(0.0, r - seg_dist(s, x + 0.5, y + 0.5) + 0.5));
      float& dst = alpha[size_t(y) * size + x];
      dst = std::max(dst, float(a));
    }
}

void vessel_tree(std::vector<Segment>& out, SynthRng& r, double x, double y, double ang, double len, double rad,
                 int depth) {
  const double x1 = x + len * std::cos(ang), y1 = y + len * std::sin(ang);
  out.push_back({x, y, x1, y1, rad});
  if (depth <= 0) return;
  for (int k = 0; k < 2; ++k) {
    const double turn = (k == 0 ? -1 : 1) * r.uniform(0.25, 0.6);
    vessel_tree(out, r, x1, y1, ang + turn, len * r.uniform(0.6, 0.8), rad * 0.7, depth - 1);
  }
}

std::vector<float> vessel_alpha(const Anatomy& a, int size, uint64_t seed) {
  SynthRng r(seed);
  const double half = size * 0.5;
  std::vector<Segment> segs;
  for (int k = 0; k < 2; ++k) {
    const Ellipse& L = a.lung[k];
    const double lateral = k == 0 ? kPi : 0.0;  // image-left lung grows towards -x
    const double hx = (L.cx + (k == 0 ? 1 : -1) * L.ax * 0.7 + 1.0) * half;
    const double hy = (L.cy + 0.05 + 1.0) * half;
    const int roots = 4;
    for (int j = 0; j < roots; ++j) {
      const double ang = lateral + (k == 0 ? -1 : 1) * (-1.3 + 2.6 * (j + 0.5) / roots + r.uniform(-0.2, 0.2));
      vessel_tree(segs, r, hx, hy, ang, 0.13 * half * r.uniform(0.8, 1.2), 0.008 * half, 4);
    }
    for (int j = 0; j < 30; ++j) {  // cross-sections of vessels running through the slice
      const double rr = std::sqrt(r.uniform()) * 0.9, t = r.uniform(0, 2 * kPi);
      const double cx = (L.cx + rr * L.ax * std::cos(t) + 1.0) * half, cy = (L.cy + rr * L.ay * std::sin(t) + 1.0) * half;
      segs.push_back({cx, cy, cx, cy, r.uniform(0.003, 0.008) * half});
    }
  }
  std::vector<float> alpha(size_t(size) * size, 0.f);
  for (const auto& s : segs) draw_segment(alpha, size, s);
  return alpha;
}

// Per-lesion precomputed geometry.
struct LesionGeom {
  const LesionSpec* spec = nullptr;
  double c = 1, s = 0, rx = 0.1, ry = 0.1;
  double a2 = 0, a3 = 0, p2 = 0, p3 = 0;  // lobulation
  double tx = 0, ty = 0;                  // texture phases
  std::vector<Segment> bronchi;           // pixel coordinates
  double reach = 0;                       // bounding radius (normalised)
};

LesionGeom make_geom(const LesionSpec& L, int size) {
  LesionGeom g;
  g.spec = &L;
  g.c = std::cos(L.theta);
  g.s = std::sin(L.theta);
  g.rx = std::max(1e-6, L.rx * L.scale);
  g.ry = std::max(1e-6, L.ry * L.scale);
  SynthRng r(L.shape_seed);
  g.a2 = r.uniform(0.0, 0.12);
  g.a3 = r.uniform(0.0, 0.1);
  g.p2 = r.uniform(0, 2 * kPi);
  g.p3 = r.uniform(0, 2 * kPi);
  g.tx = r.uniform(0, 2 * kPi);
  g.ty = r.uniform(0, 2 * kPi);
  g.reach = std::max(g.rx, g.ry) * (1.0 + g.a2 + g.a3) + 1e-9;
  if (L.label != kSynthGGO) {
    const int n = r.below(3);
    const double half = size * 0.5;
    const double core = L.label == kSynthMixed ? 0.55 : 0.9;
    for (int k = 0; k < n; ++k) {
      const double ang = r.uniform(0, 2 * kPi), len = core * std::min(g.rx, g.ry) * r.uniform(0.6, 1.0);
      const double x0 = (L.cx + 1.0) * half, y0 = (L.cy + 1.0) * half;
      g.bronchi.push_back({x0 - 0.3 * len * half * std::cos(ang), y0 - 0.3 * len * half * std::sin(ang),
                           x0 + len * half * std::cos(ang), y0 + len * half * std::sin(ang),
                           std::max(0.7, 0.004 * half)});
    }
  }
  return g;
}

// Normalised radial distance (support: < 1), with lobulated boundary; also the lesion-frame p, q.
double lesion_rho(const LesionGeom& g, double u, double v) {
  const double du = u - g.spec->cx, dv = v - g.spec->cy;
  if (std::abs(du) > g.reach || std::abs(dv) > g.reach) return 2.0;
  const double p = (du * g.c + dv * g.s) / g.rx, q = (-du * g.s + dv * g.c) / g.ry;
  const double raw = std::sqrt(p * p + q * q);
  if (raw > 1.3) return raw;
  const double ang = std::atan2(q, p);
  const double lob = 1.0 + g.a2 * std::sin(2 * ang + g.p2) + g.a3 * std::sin(3 * ang + g.p3);
  return raw / lob;
}

// Pixel range a lesion can touch.
void lesion_pixel_range(const LesionGeom& g, int size, int& x0, int& x1, int& y0, int& y1) {
  const double half = size * 0.5;
  x0 = std::max(0, int(std::floor((g.spec->cx - g.reach + 1.0) * half)) - 1);
  x1 = std::min(size - 1, int(std::ceil((g.spec->cx + g.reach + 1.0) * half)) + 1);
  y0 = std::max(0, int(std::floor((g.spec->cy - g.reach + 1.0) * half)) - 1);
  y1 = std::min(size - 1, int(std::ceil((g.spec->cy + g.reach + 1.0) * half)) + 1);
}

float base_hu(const Anatomy& a, const uint8_t lung, double u, double v) {
  if (!a.body.inside(u, v)) return -1000.f;
  if (lung) {
    const Ellipse& L = a.lung[u < 0 ? 0 : 1];
    return float(-850.0 + 40.0 * (v - L.cy) / L.ay);
  }
  if (!a.inner.inside(u, v)) return -100.f;
  if (a.vert.inside(u, v)) return a.vert.rho(u, v) < 0.75 ? 250.f : 700.f;
  if (a.spinous.inside(u, v)) return 700.f;
  for (const auto& rib : a.ribs)
    if (rib.inside(u, v)) return rib.rho(u, v) < 0.5 ? 250.f : 700.f;
  if (a.aorta.inside(u, v)) return 45.f;
  return 40.f;
}

}  // namespace

SynthSlice render_slice(const SliceSpec& spec) {
  const int S = spec.size;
  CTDET_CHECK(S >= 32 && S <= 8192, "render_slice: size ", S, " not in 32..8192");
  const Anatomy a = make_anatomy(spec.anatomy_seed, spec.z);
  SynthSlice out;
  out.size = S;
  out.lung = lung_mask(a, S);
  out.hu.resize(size_t(S) * S);
  out.lesion.assign(size_t(S) * S, 0);
  const std::vector<float> valpha = vessel_alpha(a, S, spec.detail_seed);
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      const size_t i = size_t(y) * S + x;
      float h = base_hu(a, out.lung[i], to_u(x, S), to_u(y, S));
      if (out.lung[i]) h += (40.f - h) * valpha[i];
      out.hu[i] = h;
    }

  // Lesions: ownership first-come, each owner applies its own effect on its support.
  std::vector<LesionGeom> geoms;
  geoms.reserve(spec.lesions.size());
  for (const auto& L : spec.lesions) geoms.push_back(make_geom(L, S));
  struct Acc {
    int64_t n = 0;
    int xmin = 1 << 30, ymin = 1 << 30, xmax = -1, ymax = -1;
    double sx = 0;
  };
  std::vector<Acc> acc(geoms.size());
  for (size_t k = 0; k < geoms.size(); ++k) {
    const LesionGeom& g = geoms[k];
    const LesionSpec& L = *g.spec;
    int x0, x1, y0, y1;
    lesion_pixel_range(g, S, x0, x1, y0, y1);
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) {
        const size_t i = size_t(y) * S + x;
        if (!out.lung[i] || out.lesion[i] != 0) continue;
        const double rho = lesion_rho(g, to_u(x, S), to_u(y, S));
        if (!(rho < 1.0)) continue;
        out.lesion[i] = int16_t(k + 1);
        Acc& A = acc[k];
        ++A.n;
        A.xmin = std::min(A.xmin, x);
        A.xmax = std::max(A.xmax, x);
        A.ymin = std::min(A.ymin, y);
        A.ymax = std::max(A.ymax, y);
        A.sx += x + 0.5;
        float& h = out.hu[i];
        if (L.label == kSynthGGO || L.label == kSynthMixed) {
          const double w = std::min(1.0, std::max(0.0, (1.0 - rho) / 0.45));
          const double tex = 1.0 + 0.12 * std::sin(0.35 * x + g.tx) * std::sin(0.29 * y + g.ty);
          const double delta = w * tex * (L.target_hu + 850.0);
          h = float(std::min(double(h) + delta, std::max(double(h), L.target_hu)));
        }
        double wc = 0;
        if (L.label == kSynthCD) wc = std::min(1.0, std::max(0.0, (1.0 - rho) / 0.12));
        if (L.label == kSynthMixed) wc = std::min(1.0, std::max(0.0, (1.0 - rho / 0.55) / 0.15));
        if (wc > 0) {
          h = float(h + (L.cd_hu - h) * wc);
          if (wc > 0.5)
            for (const auto& b : g.bronchi) {
              const double al = std::min(1.0, std::max(0.0, b.r - seg_dist(b, x + 0.5, y + 0.5) + 0.5));
              if (al > 0) h = float(h + (-900.0 - h) * 0.9 * al);
            }
        }
      }
  }
  for (size_t k = 0; k < geoms.size(); ++k) {
    const Acc& A = acc[k];
    if (A.n == 0) continue;
    SynthLesion sl;
    sl.label = geoms[k].spec->label;
    sl.box.x1 = float(A.xmin);
    sl.box.y1 = float(A.ymin);
    sl.box.x2 = float(A.xmax + 1);
    sl.box.y2 = float(A.ymax + 1);
    sl.box.label = sl.label;
    sl.area_px = A.n;
    sl.patient_left = A.sx / double(A.n) >= S * 0.5;
    sl.id = geoms[k].spec->id;
    out.lesions.push_back(sl);
  }
  // Re-number the lesion map so k indexes out.lesions (drops empty lesions).
  std::vector<int16_t> remap(geoms.size() + 1, 0);
  for (size_t k = 0, j = 0; k < geoms.size(); ++k)
    if (acc[k].n > 0) remap[k + 1] = int16_t(++j);
  for (auto& v : out.lesion) v = remap[size_t(v)];

  SynthRng noise(spec.noise_seed);
  for (auto& h : out.hu) h = float(h + 10.0 * noise.normal());
  return out;
}

namespace {

// Tries to add one lesion of `label` whose support at `max_scale` is at least min_area lung pixels and
// does not touch `taken` (support of lesions already placed, at their max scale). Marks its support.
bool place_lesion(std::vector<LesionSpec>& lesions, const Anatomy& a, const std::vector<uint8_t>& lung,
                  std::vector<uint8_t>& taken, int size, int label, SynthRng& r, double max_scale, int64_t min_area) {
  for (int attempt = 0; attempt < 200; ++attempt) {
    LesionSpec L;
    L.label = label;
    const int k = r.below(2);
    const Ellipse& E = a.lung[k];
    const double rr = 0.8 * std::sqrt(r.uniform()), t = r.uniform(0, 2 * kPi);
    L.cx = E.cx + rr * E.ax * std::cos(t);
    L.cy = E.cy + rr * E.ay * std::sin(t);
    const double r0 = label == kSynthGGO ? r.uniform(0.05, 0.14) : label == kSynthCD ? r.uniform(0.04, 0.1)
                                                                                        : r.uniform(0.07, 0.15);
    const double aspect = r.uniform(0.6, 1.0);
    L.rx = r0;
    L.ry = r0 * aspect;
    L.theta = r.uniform(0, kPi);
    L.target_hu = r.uniform(-500, -300);
    L.cd_hu = r.uniform(0, 40);
    L.shape_seed = r.next();
    LesionSpec big = L;
    big.scale = max_scale;
    const LesionGeom g = make_geom(big, size);
    int x0, x1, y0, y1;
    lesion_pixel_range(g, size, x0, x1, y0, y1);
    std::vector<size_t> px;
    bool clash = false;
    for (int y = y0; y <= y1 && !clash; ++y)
      for (int x = x0; x <= x1; ++x) {
        const size_t i = size_t(y) * size + x;
        if (!lung[i] || !(lesion_rho(g, to_u(x, size), to_u(y, size)) < 1.0)) continue;
        if (taken[i]) {
          clash = true;
          break;
        }
        px.push_back(i);
      }
    if (clash || int64_t(px.size()) < min_area) continue;
    // keep a one-pixel gap to other lesions so their supports stay apart after growth
    for (size_t i : px) {
      const int y = int(i / size), x = int(i % size);
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx) {
          const int yy = y + dy, xx = x + dx;
          if (yy >= 0 && yy < size && xx >= 0 && xx < size) taken[size_t(yy) * size + xx] = 1;
        }
    }
    lesions.push_back(L);
    return true;
  }
  return false;
}

int64_t min_lesion_area(int size) { return std::max<int64_t>(16, int64_t(size / 64) * (size / 64)); }

void check_options(const SynthOptions& o) {
  CTDET_CHECK(!o.out.empty(), "synth: --out is required");
  CTDET_CHECK(o.count >= 1 && o.count <= 10000000, "synth: --count ", o.count, " must be >= 1");
  CTDET_CHECK(o.size >= 64 && o.size <= 4096, "synth: --size ", o.size, " not in 64..4096");
  CTDET_CHECK(o.negatives_fraction >= 0 && o.negatives_fraction <= 1, "synth: --negatives-fraction ",
              o.negatives_fraction, " not in [0, 1]");
  CTDET_CHECK(o.patients >= 0 && o.patients <= o.count, "synth: --patients ", o.patients, " not in 0..count (",
              o.count, ")");
  CTDET_CHECK(o.studies >= 1 && o.studies <= 100, "synth: --studies ", o.studies, " not in 1..100");
  CTDET_CHECK(!o.attribute.empty(), "synth: empty region attribute name");
}

void prepare_out(const SynthOptions& o) {
  std::error_code ec;
  if (fs::exists(o.out, ec)) {
    CTDET_CHECK(fs::is_directory(o.out, ec), "synth: --out '", o.out, "' exists and is not a directory");
    CTDET_CHECK(o.force || fs::is_empty(o.out, ec), "synth: --out '", o.out,
                "' exists and is not empty; pass --force to write into it");
  }
  fs::create_directories(o.out, ec);
  CTDET_CHECK(!ec, "synth: cannot create '", o.out, "': ", ec.message());
}

const char* class_name(int label) {
  static const char* kNames[4] = {"background", "GGO", "CD", "GGO+CD"};
  return kNames[std::min(3, std::max(0, label))];
}

std::string via_rows(const std::string& file, size_t bytes, const ojson& file_attrs,
                     const std::vector<SynthLesion>& lesions, const std::string& attr) {
  std::string s;
  const std::string head = file + "," + std::to_string(bytes) + "," + via_csv_json_field(file_attrs.dump()) + ",";
  if (lesions.empty()) return "\n" + head + "0,0,\"{}\",\"{}\"";
  for (size_t k = 0; k < lesions.size(); ++k) {
    const Box& b = lesions[k].box;
    ojson shape;
    shape["name"] = "rect";
    shape["x"] = int(b.x1);
    shape["y"] = int(b.y1);
    shape["width"] = int(b.x2 - b.x1);
    shape["height"] = int(b.y2 - b.y1);
    ojson ra;
    ra[attr] = class_name(lesions[k].label);
    s += "\n" + head + std::to_string(lesions.size()) + "," + std::to_string(k) + "," +
         via_csv_json_field(shape.dump()) + "," + via_csv_json_field(ra.dump());
  }
  return s;
}

const char* kViaHeader =
    "filename,file_size,file_attributes,region_count,region_id,region_shape_attributes,region_attributes";

}  // namespace

std::string via_csv_json_field(const std::string& json) {
  std::string s = "\"";
  for (char c : json) {
    if (c == '"') s += '"';
    s += c;
  }
  return s + "\"";
}

std::vector<uint8_t> synth_negative_flags(const SynthOptions& opt) {
  const int n = opt.count;
  const int neg = int(std::lround(opt.negatives_fraction * n));
  std::vector<int> order(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) order[size_t(i)] = i;
  SynthRng r(synth_mix_seed(opt.seed, 0xBADC0FFEEull));
  for (int i = n - 1; i > 0; --i) std::swap(order[size_t(i)], order[size_t(r.below(i + 1))]);
  std::vector<uint8_t> flags(static_cast<size_t>(n), 0);
  for (int i = 0; i < neg; ++i) flags[size_t(order[size_t(i)])] = 1;
  return flags;
}

std::string synth_patient_id(const SynthOptions& opt, int index) {
  if (opt.patients <= 0) return "";
  const int p = int(int64_t(index) * opt.patients / opt.count);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "P%03d", p);
  return buf;
}

SliceSpec synth_dataset_spec(const SynthOptions& opt, int index, bool negative) {
  SliceSpec spec;
  spec.size = opt.size;
  const uint64_t slice_seed = synth_mix_seed(opt.seed, uint64_t(index) + 1);
  SynthRng r(slice_seed);
  if (opt.patients > 0) {
    const int p = int(int64_t(index) * opt.patients / opt.count);
    // the patient's slices are the contiguous block [first, last)
    const int first = int((int64_t(p) * opt.count + opt.patients - 1) / opt.patients);
    const int last = int((int64_t(p + 1) * opt.count + opt.patients - 1) / opt.patients);
    spec.anatomy_seed = synth_mix_seed(opt.seed, 0x1000000000ull + uint64_t(p));
    spec.z = 0.15 + 0.7 * (index - first + 0.5) / std::max(1, last - first);
  } else {
    spec.anatomy_seed = r.next();
    spec.z = r.uniform(0.25, 0.75);
  }
  spec.detail_seed = r.next();
  spec.noise_seed = r.next();
  if (negative) return spec;
  const Anatomy a = make_anatomy(spec.anatomy_seed, spec.z);
  const std::vector<uint8_t> lung = lung_mask(a, spec.size);
  std::vector<uint8_t> taken(lung.size(), 0);
  const double u = r.uniform();
  const int n = u < 0.5 ? 1 : u < 0.85 ? 2 : 3;
  for (int k = 0; k < n; ++k)
    place_lesion(spec.lesions, a, lung, taken, spec.size, 1 + r.below(3), r, 1.0, min_lesion_area(spec.size));
  return spec;
}

SynthSummary write_synth_dataset(const SynthOptions& opt) {
  check_options(opt);
  prepare_out(opt);
  const std::string img_dir = (fs::path(opt.out) / "images").string();
  fs::create_directories(img_dir);
  const std::vector<uint8_t> neg = synth_negative_flags(opt);
  SynthSummary sum;
  std::string csv = kViaHeader;
  for (int i = 0; i < opt.count; ++i) {
    const SliceSpec spec = synth_dataset_spec(opt, i, neg[size_t(i)] != 0);
    const SynthSlice sl = render_slice(spec);
    char name[32];
    std::snprintf(name, sizeof(name), "slice_%05d.png", i);
    const size_t bytes = write_png((fs::path(img_dir) / name).string(), sl.window8());
    ojson fa = ojson::object();
    const std::string pid = synth_patient_id(opt, i);
    if (!pid.empty()) fa["patient_id"] = pid;
    csv += via_rows(name, bytes, fa, sl.lesions, opt.attribute);
    ++sum.images;
    if (sl.lesions.empty()) ++sum.negatives;
    for (const auto& l : sl.lesions) ++sum.per_class[l.label];
    if (opt.progress) opt.progress(i + 1, opt.count);
  }
  sum.csv_path = (fs::path(opt.out) / "via_regions.csv").string();
  write_file_atomic(sum.csv_path, csv);
  return sum;
}

namespace {
int days_in_month(int y, int m) {
  static const int kDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[m - 1];
}
std::string add_days(int& y, int& m, int& d, int n) {
  for (int k = 0; k < n; ++k)
    if (++d > days_in_month(y, m)) {
      d = 1;
      if (++m > 12) {
        m = 1;
        ++y;
      }
    }
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02d", y, m, d);
  return buf;
}
}  // namespace

SynthSummary write_synth_series(const SynthOptions& opt) {
  check_options(opt);
  prepare_out(opt);
  const int K = opt.count, S = opt.studies;
  const uint64_t anatomy_seed = synth_mix_seed(opt.seed, 0xA7A7ull);
  SynthRng r(synth_mix_seed(opt.seed, 0x5E1E5ull));
  const char* kTraj[3] = {"grow", "shrink", "vanish"};

  // Lesions per slice position, placed once with room for the largest scale (1.2).
  struct SeriesLesion {
    LesionSpec spec;
    int traj = 0;
    int slice = 0;
  };
  std::vector<SeriesLesion> all;
  std::vector<double> zs(static_cast<size_t>(K));
  std::vector<uint64_t> vessel_seeds(static_cast<size_t>(K));
  for (int k = 0; k < K; ++k) {
    zs[size_t(k)] = 0.1 + 0.8 * (k + 0.5) / K;
    vessel_seeds[size_t(k)] = r.next();
    const Anatomy a = make_anatomy(anatomy_seed, zs[size_t(k)]);
    const std::vector<uint8_t> lung = lung_mask(a, opt.size);
    std::vector<uint8_t> taken(lung.size(), 0);
    std::vector<LesionSpec> placed;
    const int n = 1 + r.below(2);
    for (int j = 0; j < n; ++j)
      place_lesion(placed, a, lung, taken, opt.size, 1 + r.below(3), r, 1.2, min_lesion_area(opt.size));
    for (auto& L : placed) {
      SeriesLesion s;
      s.spec = L;
      s.traj = int(all.size() % 3);
      s.slice = k;
      char id[16];
      std::snprintf(id, sizeof(id), "L%02d", int(all.size()));
      s.spec.id = id;
      all.push_back(s);
    }
  }

  static const char* kZones[6] = {"right_upper", "right_middle", "right_lower", "left_upper", "left_middle",
                                  "left_lower"};
  ojson manifest;
  manifest["patient_id"] = "S000";
  manifest["seed"] = opt.seed;
  manifest["size"] = opt.size;
  manifest["window"] = {{"level", -600}, {"width", 1500}};
  manifest["conventions"] =
      "area_px = lesion support pixels inside the lung; box = [x1,y1,x2,y2) pixels; side = patient side "
      "(patient right = image left); upper/middle/lower = third of the slice stack (z from apex 0 to base 1)";
  manifest["studies"] = ojson::array();
  int y = 2020, m = 3, d = 1;
  SynthSummary sum;
  for (int s = 0; s < S; ++s) {
    const std::string date = add_days(y, m, d, s == 0 ? 1 : 4 + r.below(7));
    char folder[96];
    std::snprintf(folder, sizeof(folder), "study_%02d_%s", s, date.c_str());
    const fs::path dir = fs::path(opt.out) / folder;
    fs::create_directories(dir);
    const double t = S > 1 ? double(s) / (S - 1) : 0.0;
    ojson study;
    study["index"] = s;
    study["date"] = date;
    study["folder"] = folder;
    study["slices"] = ojson::array();
    study["lesions"] = ojson::array();
    double zone_area[6] = {0, 0, 0, 0, 0, 0};
    std::string csv = kViaHeader;
    for (int k = 0; k < K; ++k) {
      SliceSpec spec;
      spec.size = opt.size;
      spec.anatomy_seed = anatomy_seed;
      spec.z = zs[size_t(k)];
      spec.detail_seed = vessel_seeds[size_t(k)];
      spec.noise_seed = synth_mix_seed(vessel_seeds[size_t(k)], uint64_t(s) + 1);
      std::vector<const SeriesLesion*> present;
      for (const auto& L : all) {
        if (L.slice != k) continue;
        LesionSpec ls = L.spec;
        if (L.traj == 0) ls.scale = 0.6 + 0.6 * t;
        else if (L.traj == 1) ls.scale = 1.2 - 0.6 * t;
        else {
          if (S > 1 && s == S - 1) continue;  // vanished
          ls.scale = 1.0 - 0.5 * t;
        }
        spec.lesions.push_back(ls);
        present.push_back(&L);
      }
      const SynthSlice sl = render_slice(spec);
      char name[32];
      std::snprintf(name, sizeof(name), "slice_%03d.png", k);
      const size_t bytes = write_png((dir / name).string(), sl.window8());
      const int vz = spec.z < 1.0 / 3 ? 0 : spec.z < 2.0 / 3 ? 1 : 2;
      study["slices"].push_back({{"file", name}, {"z", spec.z}, {"zone", vz == 0 ? "upper" : vz == 1 ? "middle" : "lower"}});
      for (const auto& L : all) {
        if (L.slice != k) continue;
        ojson e;
        e["id"] = L.spec.id;
        e["label"] = class_name(L.spec.label);
        e["trajectory"] = kTraj[L.traj];
        e["slice"] = name;
        const SynthLesion* found = nullptr;
        for (const auto& sl_l : sl.lesions)
          if (sl_l.id == L.spec.id) found = &sl_l;
        double scale = 0;
        for (const auto& ls : spec.lesions)
          if (ls.id == L.spec.id) scale = ls.scale;
        e["scale"] = scale;
        e["area_px"] = found ? found->area_px : 0;
        if (found) {
          e["box"] = {int(found->box.x1), int(found->box.y1), int(found->box.x2), int(found->box.y2)};
          const int zi = (found->patient_left ? 3 : 0) + vz;
          e["zone"] = kZones[zi];
          zone_area[zi] += double(found->area_px);
          ++sum.per_class[found->label];
        } else {
          e["box"] = nullptr;
          e["zone"] = nullptr;
        }
        study["lesions"].push_back(e);
      }
      ojson fa;
      fa["patient_id"] = "S000";
      fa["study_date"] = date;
      csv += via_rows(name, bytes, fa, sl.lesions, opt.attribute);
      ++sum.images;
      if (sl.lesions.empty()) ++sum.negatives;
      if (opt.progress) opt.progress(s * K + k + 1, S * K);
    }
    ojson za = ojson::object();
    double total = 0;
    for (int z = 0; z < 6; ++z) {
      za[kZones[z]] = int64_t(zone_area[z]);
      total += zone_area[z];
    }
    study["zone_area_px"] = za;
    study["total_area_px"] = int64_t(total);
    write_file_atomic((dir / "via_regions.csv").string(), csv);
    ojson one = study;
    one["patient_id"] = "S000";
    write_file_atomic((dir / "manifest.json").string(), one.dump(2) + "\n");
    manifest["studies"].push_back(study);
  }
  sum.manifest_path = (fs::path(opt.out) / "manifest.json").string();
  write_file_atomic(sum.manifest_path, manifest.dump(2) + "\n");
  return sum;
}

}  // namespace ctdet
