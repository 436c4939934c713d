// crop_and_resize CPU reference (TF semantics; see kernels/crop_and_resize.h).
#include "kernels/crop_and_resize.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/crop_and_resize_math.h"

namespace ctdet {

void validate_crop_and_resize(const CropAndResizeParams& p) {
  CTDET_CHECK(p.N > 0 && p.C > 0 && p.H > 0 && p.W > 0, "crop_and_resize: features must be non-empty (N,C,H,W), got (",
              p.N, ",", p.C, ",", p.H, ",", p.W, ")");
  CTDET_CHECK(p.R >= 0, "crop_and_resize: number of boxes R must be >= 0, got ", p.R);
  CTDET_CHECK(p.crop_h > 0 && p.crop_w > 0, "crop_and_resize: crop size must be positive, got (", p.crop_h, ",",
              p.crop_w, ")");
}

template <typename T>
void validate_crop_and_resize_boxes(const CropAndResizeParams& p, const T* boxes, const int32_t* box_index) {
  for (int64_t r = 0; r < p.R; ++r) {
    for (int k = 0; k < 4; ++k)
      CTDET_CHECK(std::isfinite(double(boxes[r * 4 + k])), "crop_and_resize: box row ", r, " coordinate ", k,
                  " is not finite (", double(boxes[r * 4 + k]), ")");
    CTDET_CHECK(box_index[r] >= 0 && box_index[r] < p.N, "crop_and_resize: box_index[", r, "] = ", box_index[r],
                " is outside [0, ", p.N, ")");
  }
}

template <typename T>
void crop_and_resize_forward_cpu(const CropAndResizeParams& p, const T* x, const T* boxes, const int32_t* box_index,
                                 T* y) {
  validate_crop_and_resize(p);
  validate_crop_and_resize_boxes(p, boxes, box_index);
  const int64_t plane = p.H * p.W, cells = p.crop_h * p.crop_w;
  // Sample points once per box, then channel by channel (reads stay inside one feature plane, writes are contiguous);
  // the same arithmetic as per-cell evaluation, so results are unchanged.
  std::vector<BilinearPoint<T>> pts(static_cast<size_t>(cells));
  std::vector<uint8_t> inside(static_cast<size_t>(cells));
  for (int64_t r = 0; r < p.R; ++r) {
    const T* b = boxes + r * 4;
    const T* img = x + int64_t(box_index[r]) * p.C * plane;
    T* out = y + r * p.C * cells;
    for (int64_t i = 0; i < p.crop_h; ++i) {
      const T sy = crop_sample_coord(b[0], b[2], i, p.crop_h, p.H);
      for (int64_t j = 0; j < p.crop_w; ++j) {
        const T sx = crop_sample_coord(b[1], b[3], j, p.crop_w, p.W);
        inside[size_t(i * p.crop_w + j)] = tf_bilinear_point(sy, sx, p.H, p.W, &pts[size_t(i * p.crop_w + j)]) ? 1 : 0;
      }
    }
    for (int64_t c = 0; c < p.C; ++c) {
      const T* plane_c = img + c * plane;
      T* o = out + c * cells;
      for (int64_t k = 0; k < cells; ++k)
        o[k] = inside[size_t(k)] ? bilinear_sample(plane_c, p.W, pts[size_t(k)]) : T(p.extrapolation_value);
    }
  }
}

template <typename T>
void crop_and_resize_backward_cpu(const CropAndResizeParams& p, const T* dy, const T* boxes, const int32_t* box_index,
                                  T* dx, bool accumulate_dx) {
  validate_crop_and_resize(p);
  validate_crop_and_resize_boxes(p, boxes, box_index);
  const int64_t plane = p.H * p.W, cells = p.crop_h * p.crop_w;
  if (!accumulate_dx) std::memset(dx, 0, sizeof(T) * size_t(p.N * p.C * plane));
  for (int64_t r = 0; r < p.R; ++r) {
    const T* b = boxes + r * 4;
    T* img = dx + int64_t(box_index[r]) * p.C * plane;
    const T* g = dy + r * p.C * cells;
    for (int64_t i = 0; i < p.crop_h; ++i) {
      const T sy = crop_sample_coord(b[0], b[2], i, p.crop_h, p.H);
      for (int64_t j = 0; j < p.crop_w; ++j) {
        const T sx = crop_sample_coord(b[1], b[3], j, p.crop_w, p.W);
        BilinearPoint<T> bp;
        if (!tf_bilinear_point(sy, sx, p.H, p.W, &bp)) continue;
        for (int64_t c = 0; c < p.C; ++c) {
          const T gv = g[c * cells + i * p.crop_w + j];
          T* pl = img + c * plane;
          pl[bp.y0 * p.W + bp.x0] += bp.w00 * gv;
          pl[bp.y0 * p.W + bp.x1] += bp.w01 * gv;
          pl[bp.y1 * p.W + bp.x0] += bp.w10 * gv;
          pl[bp.y1 * p.W + bp.x1] += bp.w11 * gv;
        }
      }
    }
  }
}

#define CTDET_INSTANTIATE(T)                                                                                  \
  template void validate_crop_and_resize_boxes<T>(const CropAndResizeParams&, const T*, const int32_t*);      \
  template void crop_and_resize_forward_cpu<T>(const CropAndResizeParams&, const T*, const T*, const int32_t*, \
                                               T*);                                                           \
  template void crop_and_resize_backward_cpu<T>(const CropAndResizeParams&, const T*, const T*, const int32_t*, \
                                                T*, bool);
CTDET_INSTANTIATE(float)
CTDET_INSTANTIATE(double)
#undef CTDET_INSTANTIATE

}  // namespace ctdet
