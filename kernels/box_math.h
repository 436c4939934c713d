// Box geometry shared by the CPU reference and the CUDA kernels (DESIGN.md, Principle 2).
//
// Boxes: x1, y1, x2, y2 absolute pixels (the project's corner order). Box codes: the TF Object Detection
// API order ty, tx, th, tw (faster_rcnn_box_coder, spec §4.3). Areas and IoU have no +1 pixel (TF and
// torchvision agree on this).
//
// NMS must keep identical indices on CPU and CUDA, so iou() and area() use explicitly rounded
// arithmetic on the device (no FMA contraction) and plain IEEE float on the host (C++17 ISO mode does not
// contract), giving the same bits on both.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/common/hd.h"

namespace ctdet {

// ---- exactly rounded arithmetic (same bits on host and device) -------------------------------------
CTDET_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
CTDET_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
CTDET_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
CTDET_HD double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
CTDET_HD double add_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
CTDET_HD double div_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}

template <typename T>
CTDET_HD T max_hd(T a, T b) { return a > b ? a : b; }
template <typename T>
CTDET_HD T min_hd(T a, T b) { return a < b ? a : b; }

// ---- area and IoU ----------------------------------------------------------------------------------
// Area of an (x1,y1,x2,y2) box; negative extents count as 0.
template <typename T>
CTDET_HD T box_area(const T* b) {
  return mul_rn(max_hd(add_rn(b[2], -b[0]), T(0)), max_hd(add_rn(b[3], -b[1]), T(0)));
}

// Intersection over union without +1; 0 when the intersection is 0 (TF's rule, so degenerate boxes
// give 0, never NaN).
template <typename T>
CTDET_HD T box_iou(const T* a, const T* b) {
  const T iw = add_rn(min_hd(a[2], b[2]), -max_hd(a[0], b[0]));
  const T ih = add_rn(min_hd(a[3], b[3]), -max_hd(a[1], b[1]));
  if (!(iw > T(0)) || !(ih > T(0))) return T(0);
  const T inter = mul_rn(iw, ih);
  const T uni = add_rn(add_rn(box_area(a), box_area(b)), -inter);
  return div_rn(inter, uni);
}

// ---- anchors (TF GridAnchorGenerator, spec §4.1) ---------------------------------------------------
// Order: location-major (row y, then column x), then anchor a = ar_idx * num_scales + scale_idx.
// height = scale*base_h/sqrt(ar), width = scale*base_w*sqrt(ar) (ar = width/height), centre
// (y*stride_y + offset_y, x*stride_x + offset_x), corners centre -/+ size/2, not rounded.
constexpr int kMaxAnchorParams = 8;
struct AnchorParams {
  float base_h = 256.f, base_w = 256.f;
  int num_scales = 4;
  float scales[kMaxAnchorParams] = {0.25f, 0.5f, 1.f, 2.f};
  int num_ratios = 3;
  float aspect_ratios[kMaxAnchorParams] = {0.5f, 1.f, 2.f};
  float stride_y = 16.f, stride_x = 16.f;
  float offset_y = 0.f, offset_x = 0.f;
  int anchors_per_location() const { return num_scales * num_ratios; }
};

// Anchor k of a (Hf,Wf) grid, written as x1,y1,x2,y2 (computed in double, stored as T).
template <typename T>
CTDET_HD void anchor_box(const AnchorParams& p, int64_t Wf, int64_t k, T* out /*(4)*/) {
  const int64_t A = p.num_scales * p.num_ratios;
  const int64_t a = k % A, loc = k / A;
  const int64_t x = loc % Wf, y = loc / Wf;
  const int ar_idx = int(a / p.num_scales), sc_idx = int(a % p.num_scales);
  const double sq = sqrt(double(p.aspect_ratios[ar_idx]));
  const double h = double(p.scales[sc_idx]) * double(p.base_h) / sq;
  const double w = double(p.scales[sc_idx]) * double(p.base_w) * sq;
  const double cy = double(y) * double(p.stride_y) + double(p.offset_y);
  const double cx = double(x) * double(p.stride_x) + double(p.offset_x);
  out[0] = T(cx - 0.5 * w);
  out[1] = T(cy - 0.5 * h);
  out[2] = T(cx + 0.5 * w);
  out[3] = T(cy + 0.5 * h);
}

// ---- box coder (TF faster_rcnn_box_coder, spec §4.3) -----------------------------------------------
struct BoxCoderParams {
  float wy = 10.f, wx = 10.f, wh = 5.f, ww = 5.f;  // scale factors, in code order ty, tx, th, tw
  // Decode: clamp th/wh and tw/ww (the log-size deltas) at this value when > 0 (torchvision uses
  // log(1000/16) = kTorchvisionDeltaClamp). 0 = no clamp, as in upstream TF.
  float clamp = 0.f;
};
constexpr double kTorchvisionDeltaClamp = 4.135166556742356;  // log(1000/16)
constexpr double kBoxCoderEps = 1e-8;                          // TF adds it to h, w, ha, wa in encode

// codes (ty,tx,th,tw) of box against anchor, both x1,y1,x2,y2.
template <typename T>
CTDET_HD void box_encode(const BoxCoderParams& p, const T* box, const T* anchor, T* code /*(4)*/) {
  const T eps = T(kBoxCoderEps);
  const T ha = anchor[3] - anchor[1] + eps, wa = anchor[2] - anchor[0] + eps;
  const T yca = T(0.5) * (anchor[1] + anchor[3]), xca = T(0.5) * (anchor[0] + anchor[2]);
  const T h = box[3] - box[1] + eps, w = box[2] - box[0] + eps;
  const T yc = T(0.5) * (box[1] + box[3]), xc = T(0.5) * (box[0] + box[2]);
  code[0] = T(p.wy) * (yc - yca) / ha;
  code[1] = T(p.wx) * (xc - xca) / wa;
  code[2] = T(p.wh) * T(log(h / ha));
  code[3] = T(p.ww) * T(log(w / wa));
}

// box x1,y1,x2,y2 from codes (ty,tx,th,tw) against anchor (no eps in decode, as TF).
template <typename T>
CTDET_HD void box_decode(const BoxCoderParams& p, const T* code, const T* anchor, T* box /*(4)*/) {
  const T ha = anchor[3] - anchor[1], wa = anchor[2] - anchor[0];
  const T yca = T(0.5) * (anchor[1] + anchor[3]), xca = T(0.5) * (anchor[0] + anchor[2]);
  const T ty = code[0] / T(p.wy), tx = code[1] / T(p.wx);
  T th = code[2] / T(p.wh), tw = code[3] / T(p.ww);
  if (p.clamp > 0.f) {
    th = min_hd(th, T(p.clamp));
    tw = min_hd(tw, T(p.clamp));
  }
  const T h = T(exp(th)) * ha, w = T(exp(tw)) * wa;
  const T yc = ty * ha + yca, xc = tx * wa + xca;
  box[0] = xc - T(0.5) * w;
  box[1] = yc - T(0.5) * h;
  box[2] = xc + T(0.5) * w;
  box[3] = yc + T(0.5) * h;
}

// ---- window ops (TF box_list_ops, spec §4.1, §7) ---------------------------------------------------
// Window: x1,y1,x2,y2. Clip each coordinate into the window; returns whether the clipped box has
// positive area (TF clip_to_window drops zero-area boxes).
template <typename T>
CTDET_HD bool clip_box(const T* box, const T* window, T* out /*(4)*/) {
  out[0] = min_hd(max_hd(box[0], window[0]), window[2]);
  out[1] = min_hd(max_hd(box[1], window[1]), window[3]);
  out[2] = min_hd(max_hd(box[2], window[0]), window[2]);
  out[3] = min_hd(max_hd(box[3], window[1]), window[3]);
  return box_area(out) > T(0);
}

// TF prune_outside_window: keep only boxes fully inside the window.
template <typename T>
CTDET_HD bool box_inside_window(const T* box, const T* window) {
  return box[0] >= window[0] && box[1] >= window[1] && box[2] <= window[2] && box[3] <= window[3];
}

// ---- seeded random keys (sampler) ------------------------------------------------------------------
// splitmix64 finaliser of (seed, index): a counter-based hash, so the key of element i depends only on
// (seed, i) and is the same on host and device. Candidates are ordered by (key, index).
CTDET_HD uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
CTDET_HD uint64_t sample_key(uint64_t seed, uint64_t index) {
  const uint64_t s = splitmix64_mix(seed + 0x9E3779B97F4A7C15ull);
  return splitmix64_mix(s + 0x9E3779B97F4A7C15ull * (index + 1)) >> 1;  // 63 bits: UINT64_MAX marks non-candidates
}

}  // namespace ctdet
