// Per-RoI geometry of roi_align (torchvision semantics), shared by the CPU loops and the CUDA kernels.
// The bilinear weights themselves are tv_bilinear_point in crop_and_resize_math.h.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/crop_and_resize_math.h"
#include "kernels/roi_align.h"

namespace ctdet {

template <typename T>
struct RoiGeom {
  T start_y, start_x, bin_h, bin_w;
  int64_t grid_h, grid_w;
  T inv_count;  // 1 / max(grid_h*grid_w, 1)
};

template <typename T>
CTDET_HD RoiGeom<T> roi_align_geometry(const RoiAlignParams& p, const T* roi /*(5)*/) {
  const T offset = p.aligned ? T(0.5) : T(0);
  const T scale = T(p.spatial_scale);
  RoiGeom<T> g;
  g.start_x = roi[1] * scale - offset;
  g.start_y = roi[2] * scale - offset;
  T roi_w = roi[3] * scale - offset - g.start_x;
  T roi_h = roi[4] * scale - offset - g.start_y;
  if (!p.aligned) {
    roi_w = roi_w > T(1) ? roi_w : T(1);
    roi_h = roi_h > T(1) ? roi_h : T(1);
  }
  g.bin_h = roi_h / T(p.pooled_h);
  g.bin_w = roi_w / T(p.pooled_w);
  g.grid_h = p.sampling_ratio > 0 ? p.sampling_ratio : int64_t(ceil(roi_h / T(p.pooled_h)));
  g.grid_w = p.sampling_ratio > 0 ? p.sampling_ratio : int64_t(ceil(roi_w / T(p.pooled_w)));
  const int64_t count = g.grid_h * g.grid_w > 1 ? g.grid_h * g.grid_w : 1;
  g.inv_count = T(1) / T(count);
  return g;
}

// Sample (iy, ix) of bin (ph, pw).
template <typename T>
CTDET_HD T roi_sample_y(const RoiGeom<T>& g, int64_t ph, int64_t iy) {
  return g.start_y + T(ph) * g.bin_h + (T(iy) + T(0.5)) * g.bin_h / T(g.grid_h);
}
template <typename T>
CTDET_HD T roi_sample_x(const RoiGeom<T>& g, int64_t pw, int64_t ix) {
  return g.start_x + T(pw) * g.bin_w + (T(ix) + T(0.5)) * g.bin_w / T(g.grid_w);
}

}  // namespace ctdet
