// Bilinear sampling math shared by crop_and_resize (TF semantics) and roi_align (torchvision semantics),
// on the CPU reference loops and in the CUDA kernels (DESIGN.md, Principle 2).
//
// A BilinearPoint names the four pixels around a sample point and their weights; a sample is
// w00*f[y0][x0] + w01*f[y0][x1] + w10*f[y1][x0] + w11*f[y1][x1]. The two ops differ only in how a point
// becomes a BilinearPoint (boundary rules), so each has its own constructor below.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/common/hd.h"

namespace ctdet {

template <typename T>
struct BilinearPoint {
  int64_t y0 = 0, y1 = 0, x0 = 0, x1 = 0;
  T w00 = 0, w01 = 0, w10 = 0, w11 = 0;
};

// TF crop_and_resize: coordinate of output sample i of n along an axis of `size` pixels, from the
// normalised box edges a1, a2 (corner aligned: a normalised coordinate c maps to c*(size-1)).
// n == 1 samples the box centre.
template <typename T>
CTDET_HD T crop_sample_coord(T a1, T a2, int64_t i, int64_t n, int64_t size) {
  const T extent = T(size - 1);
  if (n > 1) {
    const T step = (a2 - a1) * extent / T(n - 1);
    return a1 * extent + T(i) * step;
  }
  return T(0.5) * (a1 + a2) * extent;
}

// TF crop_and_resize boundary rule: a point outside [0, H-1] x [0, W-1] (or NaN) is not sampled (the op
// writes the extrapolation value there). Inside, the neighbours are floor and ceil (equal on integer
// coordinates, then one pixel gets all the weight).
template <typename T>
CTDET_HD bool tf_bilinear_point(T y, T x, int64_t H, int64_t W, BilinearPoint<T>* bp) {
  if (!(y >= T(0) && y <= T(H - 1) && x >= T(0) && x <= T(W - 1))) return false;
  const T fy = floor(y), fx = floor(x);
  bp->y0 = int64_t(fy);
  bp->x0 = int64_t(fx);
  bp->y1 = int64_t(ceil(y));
  bp->x1 = int64_t(ceil(x));
  const T ly = y - fy, lx = x - fx;
  const T hy = T(1) - ly, hx = T(1) - lx;
  bp->w00 = hy * hx;
  bp->w01 = hy * lx;
  bp->w10 = ly * hx;
  bp->w11 = ly * lx;
  return true;
}

// torchvision roi_align boundary rule: a point with y < -1, y > H, x < -1 or x > W contributes 0
// (returns false); otherwise coordinates below 0 are clamped to 0, and a coordinate at or past the last
// pixel is clamped to it (both neighbours = last pixel).
template <typename T>
CTDET_HD bool tv_bilinear_point(T y, T x, int64_t H, int64_t W, BilinearPoint<T>* bp) {
  if (y < T(-1) || y > T(H) || x < T(-1) || x > T(W)) return false;
  if (!(y == y) || !(x == x)) return false;  // NaN
  if (y <= T(0)) y = T(0);
  if (x <= T(0)) x = T(0);
  int64_t y0 = int64_t(y), x0 = int64_t(x), y1, x1;
  if (y0 >= H - 1) {
    y0 = y1 = H - 1;
    y = T(y0);
  } else {
    y1 = y0 + 1;
  }
  if (x0 >= W - 1) {
    x0 = x1 = W - 1;
    x = T(x0);
  } else {
    x1 = x0 + 1;
  }
  const T ly = y - T(y0), lx = x - T(x0);
  const T hy = T(1) - ly, hx = T(1) - lx;
  bp->y0 = y0;
  bp->y1 = y1;
  bp->x0 = x0;
  bp->x1 = x1;
  bp->w00 = hy * hx;
  bp->w01 = hy * lx;
  bp->w10 = ly * hx;
  bp->w11 = ly * lx;
  return true;
}

// The weighted sum of the four neighbours, in this order (every sampler below goes through it).
template <typename T>
CTDET_HD T bilinear_combine(T w00, T v00, T w01, T v01, T w10, T v10, T w11, T v11) {
  return w00 * v00 + w01 * v01 + w10 * v10 + w11 * v11;
}

// Sample one (H,W) plane at a BilinearPoint.
template <typename T>
CTDET_HD T bilinear_sample(const T* plane /*(H,W)*/, int64_t W, const BilinearPoint<T>& bp) {
  return bilinear_combine(bp.w00, plane[bp.y0 * W + bp.x0], bp.w01, plane[bp.y0 * W + bp.x1], bp.w10,
                          plane[bp.y1 * W + bp.x0], bp.w11, plane[bp.y1 * W + bp.x1]);
}

// A BilinearPoint resolved against one plane width: the four neighbours' offsets in the plane (CPU loops that sample
// many planes at the same points; planes of up to 2^31 cells).
template <typename T>
struct BilinearTap {
  int32_t o00 = 0, o01 = 0, o10 = 0, o11 = 0;
  T w00 = 0, w01 = 0, w10 = 0, w11 = 0;
};
template <typename T>
CTDET_HD BilinearTap<T> bilinear_tap(const BilinearPoint<T>& bp, int64_t W) {
  BilinearTap<T> t;
  t.o00 = int32_t(bp.y0 * W + bp.x0);
  t.o01 = int32_t(bp.y0 * W + bp.x1);
  t.o10 = int32_t(bp.y1 * W + bp.x0);
  t.o11 = int32_t(bp.y1 * W + bp.x1);
  t.w00 = bp.w00;
  t.w01 = bp.w01;
  t.w10 = bp.w10;
  t.w11 = bp.w11;
  return t;
}
// The same value as bilinear_sample(plane, W, bp) for t = bilinear_tap(bp, W).
template <typename T>
CTDET_HD T bilinear_sample_tap(const T* plane, const BilinearTap<T>& t) {
  return bilinear_combine(t.w00, plane[t.o00], t.w01, plane[t.o01], t.w10, plane[t.o10], t.w11, plane[t.o11]);
}

}  // namespace ctdet
