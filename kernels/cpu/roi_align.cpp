// roi_align CPU reference (torchvision semantics; see kernels/roi_align.h).
#include "kernels/roi_align.h"

#include <cmath>
#include <cstring>

#include "kernels/roi_align_math.h"

namespace ctdet {

void validate_roi_align(const RoiAlignParams& p) {
  CTDET_CHECK(p.N > 0 && p.C > 0 && p.H > 0 && p.W > 0, "roi_align: features must be non-empty (N,C,H,W), got (", p.N,
              ",", p.C, ",", p.H, ",", p.W, ")");
  CTDET_CHECK(p.R >= 0, "roi_align: number of rois R must be >= 0, got ", p.R);
  CTDET_CHECK(p.pooled_h > 0 && p.pooled_w > 0, "roi_align: pooled size must be positive, got (", p.pooled_h, ",",
              p.pooled_w, ")");
  CTDET_CHECK(std::isfinite(p.spatial_scale) && p.spatial_scale > 0, "roi_align: spatial_scale must be > 0, got ",
              p.spatial_scale);
}

template <typename T>
void validate_roi_align_rois(const RoiAlignParams& p, const T* rois) {
  for (int64_t r = 0; r < p.R; ++r) {
    for (int k = 0; k < 5; ++k)
      CTDET_CHECK(std::isfinite(double(rois[r * 5 + k])), "roi_align: roi row ", r, " column ", k,
                  " is not finite (", double(rois[r * 5 + k]), ")");
    const double b = double(rois[r * 5]);
    CTDET_CHECK(b >= 0 && b < double(p.N) && b == std::floor(b), "roi_align: roi row ", r, " batch index ", b,
                " is not an integer in [0, ", p.N, ")");
  }
}

template <typename T>
void roi_align_forward_cpu(const RoiAlignParams& p, const T* x, const T* rois, T* y) {
  validate_roi_align(p);
  validate_roi_align_rois(p, rois);
  const int64_t plane = p.H * p.W, bins = p.pooled_h * p.pooled_w;
  for (int64_t r = 0; r < p.R; ++r) {
    const T* roi = rois + r * 5;
    const RoiGeom<T> g = roi_align_geometry(p, roi);
    const T* img = x + int64_t(roi[0]) * p.C * plane;
    T* out = y + r * p.C * bins;
    for (int64_t c = 0; c < p.C; ++c) {
      const T* pl = img + c * plane;
      for (int64_t ph = 0; ph < p.pooled_h; ++ph)
        for (int64_t pw = 0; pw < p.pooled_w; ++pw) {
          T acc = 0;
          for (int64_t iy = 0; iy < g.grid_h; ++iy) {
            const T sy = roi_sample_y(g, ph, iy);
            for (int64_t ix = 0; ix < g.grid_w; ++ix) {
              BilinearPoint<T> bp;
              if (tv_bilinear_point(sy, roi_sample_x(g, pw, ix), p.H, p.W, &bp)) acc += bilinear_sample(pl, p.W, bp);
            }
          }
          out[c * bins + ph * p.pooled_w + pw] = acc * g.inv_count;
        }
    }
  }
}

template <typename T>
void roi_align_backward_cpu(const RoiAlignParams& p, const T* dy, const T* rois, T* dx, bool accumulate_dx) {
  validate_roi_align(p);
  validate_roi_align_rois(p, rois);
  const int64_t plane = p.H * p.W, bins = p.pooled_h * p.pooled_w;
  if (!accumulate_dx) std::memset(dx, 0, sizeof(T) * size_t(p.N * p.C * plane));
  for (int64_t r = 0; r < p.R; ++r) {
    const T* roi = rois + r * 5;
    const RoiGeom<T> g = roi_align_geometry(p, roi);
    T* img = dx + int64_t(roi[0]) * p.C * plane;
    const T* gr = dy + r * p.C * bins;
    for (int64_t c = 0; c < p.C; ++c) {
      T* pl = img + c * plane;
      for (int64_t ph = 0; ph < p.pooled_h; ++ph)
        for (int64_t pw = 0; pw < p.pooled_w; ++pw) {
          const T gv = gr[c * bins + ph * p.pooled_w + pw] * g.inv_count;
          for (int64_t iy = 0; iy < g.grid_h; ++iy) {
            const T sy = roi_sample_y(g, ph, iy);
            for (int64_t ix = 0; ix < g.grid_w; ++ix) {
              BilinearPoint<T> bp;
              if (!tv_bilinear_point(sy, roi_sample_x(g, pw, ix), p.H, p.W, &bp)) continue;
              pl[bp.y0 * p.W + bp.x0] += bp.w00 * gv;
              pl[bp.y0 * p.W + bp.x1] += bp.w01 * gv;
              pl[bp.y1 * p.W + bp.x0] += bp.w10 * gv;
              pl[bp.y1 * p.W + bp.x1] += bp.w11 * gv;
            }
          }
        }
    }
  }
}

#define CTDET_INSTANTIATE(T)                                                                       \
  template void validate_roi_align_rois<T>(const RoiAlignParams&, const T*);                       \
  template void roi_align_forward_cpu<T>(const RoiAlignParams&, const T*, const T*, T*);           \
  template void roi_align_backward_cpu<T>(const RoiAlignParams&, const T*, const T*, T*, bool);
CTDET_INSTANTIATE(float)
CTDET_INSTANTIATE(double)
#undef CTDET_INSTANTIATE

}  // namespace ctdet
