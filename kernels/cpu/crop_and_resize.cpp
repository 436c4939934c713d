// crop_and_resize CPU reference (TF semantics; see kernels/crop_and_resize.h).
#include "kernels/crop_and_resize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/parallel.h"
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

namespace {

// Sample points of boxes [r0, r1), box-major: pts[(r - r0) * cells + i * crop_w + j] (inside = 0: not sampled).
template <typename T>
void crop_points(const CropAndResizeParams& p, const T* boxes, int64_t r0, int64_t r1,
                 std::vector<BilinearPoint<T>>* pts, std::vector<uint8_t>* inside) {
  const int64_t cells = p.crop_h * p.crop_w;
  pts->resize(size_t((r1 - r0) * cells));
  inside->resize(pts->size());
  for (int64_t r = r0; r < r1; ++r) {
    const T* b = boxes + r * 4;
    for (int64_t i = 0; i < p.crop_h; ++i) {
      const T sy = crop_sample_coord(b[0], b[2], i, p.crop_h, p.H);
      for (int64_t j = 0; j < p.crop_w; ++j) {
        const T sx = crop_sample_coord(b[1], b[3], j, p.crop_w, p.W);
        const size_t k = size_t((r - r0) * cells + i * p.crop_w + j);
        (*inside)[k] = tf_bilinear_point(sy, sx, p.H, p.W, &(*pts)[k]) ? 1 : 0;
      }
    }
  }
}

}  // namespace

template <typename T>
void crop_and_resize_forward_cpu(const CropAndResizeParams& p, const T* x, const T* boxes, const int32_t* box_index,
                                 T* y) {
  validate_crop_and_resize(p);
  validate_crop_and_resize_boxes(p, boxes, box_index);
  const int64_t plane = p.H * p.W, cells = p.crop_h * p.crop_w;
  // Every output is one bilinear sample (bilinear_sample at the box's point), so any order gives the same bits.
  // Boxes split over threads; a box's sample points are computed once and serve all its channels.
  // Each point is resolved once to four plane offsets (bilinear_tap: the same neighbours and weights).
  CTDET_CHECK(plane < int64_t(INT32_MAX), "crop_and_resize: feature planes of ", plane, " cells are too large");
  parallel_ranges(p.R, min_iterations_for(p.C * cells), [&](int64_t rb, int64_t re) {
    std::vector<BilinearPoint<T>> pts;
    std::vector<uint8_t> inside;
    std::vector<BilinearTap<T>> taps(static_cast<size_t>(cells));
    const T ext = T(p.extrapolation_value);
    for (int64_t r = rb; r < re; ++r) {
      crop_points(p, boxes, r, r + 1, &pts, &inside);
      for (int64_t k = 0; k < cells; ++k) taps[size_t(k)] = bilinear_tap(pts[size_t(k)], p.W);
      const T* img = x + int64_t(box_index[r]) * p.C * plane;
      T* out = y + r * p.C * cells;
      for (int64_t c = 0; c < p.C; ++c) {
        const T* plane_c = img + c * plane;
        T* o = out + c * cells;
        for (int64_t k = 0; k < cells; ++k) o[k] = inside[size_t(k)] ? bilinear_sample_tap(plane_c, taps[size_t(k)]) : ext;
      }
    }
  });
}

template <typename T>
void crop_and_resize_backward_cpu(const CropAndResizeParams& p, const T* dy, const T* boxes, const int32_t* box_index,
                                  T* dx, bool accumulate_dx) {
  validate_crop_and_resize(p);
  validate_crop_and_resize_boxes(p, boxes, box_index);
  const int64_t plane = p.H * p.W, cells = p.crop_h * p.crop_w;
  // Each dx cell sums its contributions in the order box r, then sample (i, j), then corner 00, 01, 10, 11. Channels
  // split over threads (a channel's plane gets all its contributions from one thread, in that order), and each
  // thread walks its channels kBlock at a time, boxes and samples inside, so the planes it adds into stay in cache.
  std::vector<BilinearPoint<T>> pts;
  std::vector<uint8_t> inside;
  crop_points(p, boxes, 0, p.R, &pts, &inside);
  constexpr int64_t kBlock = 16;
  parallel_ranges(p.C, min_iterations_for(p.R * cells), [&](int64_t cb, int64_t ce) {
    for (int64_t n = 0; n < p.N && !accumulate_dx; ++n)
      std::memset(dx + (n * p.C + cb) * plane, 0, sizeof(T) * size_t((ce - cb) * plane));
    for (int64_t c0 = cb; c0 < ce; c0 += kBlock) {
      const int64_t c1 = std::min(ce, c0 + kBlock);
      for (int64_t r = 0; r < p.R; ++r) {
        const BilinearPoint<T>* pr = pts.data() + r * cells;
        const uint8_t* in = inside.data() + r * cells;
        for (int64_t k = 0; k < cells; ++k) {
          if (!in[k]) continue;
          const BilinearPoint<T>& bp = pr[k];
          for (int64_t c = c0; c < c1; ++c) {
            const T gv = dy[(r * p.C + c) * cells + k];
            T* pl = dx + (int64_t(box_index[r]) * p.C + c) * plane;
            pl[bp.y0 * p.W + bp.x0] += bp.w00 * gv;
            pl[bp.y0 * p.W + bp.x1] += bp.w01 * gv;
            pl[bp.y1 * p.W + bp.x0] += bp.w10 * gv;
            pl[bp.y1 * p.W + bp.x1] += bp.w11 * gv;
          }
        }
      }
    }
  });
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
