// roi_align: torchvision `torchvision.ops.roi_align` semantics (the torchvision-style ROI crop option, spec §11).
//
// rois are (R,5) rows [batch_idx, x1, y1, x2, y2] in input-image pixels (project corner order x1,y1,x2,y2);
// they are scaled by spatial_scale onto the feature map. With aligned = true the scaled box is shifted by
// -0.5 pixel and its size is not clamped; with aligned = false (torchvision's default, and its Faster R-CNN)
// there is no shift and the RoI width/height are clamped to >= 1. Each of the (ph,pw) bins averages
// grid_h x grid_w bilinear samples, grid = sampling_ratio when > 0, else ceil(roi_size / pooled) (adaptive).
// A sample with y < -1, y > H, x < -1 or x > W contributes 0 (but still counts in the average).
#pragma once
#include <cstdint>

#include "nn/error.h"

#if CTDET_WITH_CUDA
#include "nn/cuda_context.h"
#endif

namespace ctdet {

struct RoiAlignParams {
  int64_t N = 0, C = 0, H = 0, W = 0;  // features (N,C,H,W)
  int64_t R = 0;                        // rois; R == 0 allowed
  int64_t pooled_h = 7, pooled_w = 7;
  float spatial_scale = 1.f / 16.f;
  int64_t sampling_ratio = 2;  // <= 0: adaptive
  bool aligned = false;
};

void validate_roi_align(const RoiAlignParams& p);
// Host rois: non-finite values and a batch index that is not an integer in [0,N) throw naming the row.
template <typename T>
void validate_roi_align_rois(const RoiAlignParams& p, const T* rois /*(R,5)*/);

inline int64_t roi_align_output_numel(const RoiAlignParams& p) { return p.R * p.C * p.pooled_h * p.pooled_w; }

template <typename T>
void roi_align_forward_cpu(const RoiAlignParams& p, const T* x /*(N,C,H,W)*/, const T* rois /*(R,5)*/,
                           T* y /*(R,C,pooled_h,pooled_w)*/);
// Gradient into the features (none into the rois). dx overwritten or accumulated.
template <typename T>
void roi_align_backward_cpu(const RoiAlignParams& p, const T* dy /*(R,C,pooled_h,pooled_w)*/, const T* rois /*(R,5)*/,
                            T* dx /*(N,C,H,W)*/, bool accumulate_dx);

#if CTDET_WITH_CUDA
// A row whose batch index is outside [0,N) gives 0 (forward) and no gradient (backward); no throw on device.
void roi_align_forward_cuda(CudaContext& ctx, const RoiAlignParams& p, const float* x /*(N,C,H,W)*/,
                            const float* rois /*(R,5)*/, float* y /*(R,C,pooled_h,pooled_w)*/);
void roi_align_backward_cuda(CudaContext& ctx, const RoiAlignParams& p, const float* dy /*(R,C,ph,pw)*/,
                             const float* rois /*(R,5)*/, float* dx /*(N,C,H,W)*/, bool accumulate_dx);
#endif

}  // namespace ctdet
