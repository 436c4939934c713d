// crop_and_resize: TF `tf.image.crop_and_resize` (bilinear, one sample per output cell, corner aligned), the
// Faster R-CNN ROI crop of the TF Object Detection API (spec §5).
//
// TF-SPECIFIC BOX FORMAT: boxes are (R,4) NORMALISED [y1, x1, y2, x2] (not the project's x1,y1,x2,y2 pixels).
// A normalised coordinate c maps to c*(H-1) on the feature map. Output cell (i,j) samples
//   y = y1*(H-1) + i*(y2-y1)*(H-1)/(ch-1)   (ch > 1; ch == 1 samples 0.5*(y1+y2)*(H-1)), x likewise,
// and a sample outside [0,H-1] x [0,W-1] gives `extrapolation_value`. y1 > y2 (flipped boxes) is allowed.
// Gradients flow into the features only, never into the boxes (as in TF in practice).
#pragma once
#include <cstddef>
#include <cstdint>

#include "nn/error.h"

#if CTDET_WITH_CUDA
#include "nn/cuda_context.h"
#endif

namespace ctdet {

struct CropAndResizeParams {
  int64_t N = 0, C = 0, H = 0, W = 0;  // features (N,C,H,W)
  int64_t R = 0;                        // number of boxes; R == 0 is allowed (no work)
  int64_t crop_h = 14, crop_w = 14;
  float extrapolation_value = 0.f;
};

// Shape checks; throws ctdet::Error naming the op and the offending value.
void validate_crop_and_resize(const CropAndResizeParams& p);
// Value checks on host copies of the boxes: NaN/inf coordinates and box_index outside [0,N) throw,
// naming the row. The CPU entry points call it themselves.
template <typename T>
void validate_crop_and_resize_boxes(const CropAndResizeParams& p, const T* boxes /*(R,4)*/,
                                    const int32_t* box_index /*(R)*/);

inline int64_t crop_and_resize_output_numel(const CropAndResizeParams& p) {
  return p.R * p.C * p.crop_h * p.crop_w;
}

// y (R,C,crop_h,crop_w). Validates shapes and box values.
template <typename T>
void crop_and_resize_forward_cpu(const CropAndResizeParams& p, const T* x /*(N,C,H,W)*/,
                                 const T* boxes /*(R,4) y1,x1,y2,x2 normalised*/,
                                 const int32_t* box_index /*(R)*/, T* y /*(R,C,crop_h,crop_w)*/);
// dx (N,C,H,W): overwritten (accumulate_dx false) or added to (true).
template <typename T>
void crop_and_resize_backward_cpu(const CropAndResizeParams& p, const T* dy /*(R,C,crop_h,crop_w)*/,
                                  const T* boxes /*(R,4)*/, const int32_t* box_index /*(R)*/,
                                  T* dx /*(N,C,H,W)*/, bool accumulate_dx);

#if CTDET_WITH_CUDA
// Device pointers, work enqueued on ctx.stream. The kernels do not throw on bad box values: a row with a
// box_index outside [0,N) writes the extrapolation value (forward) and adds no gradient (backward); NaN
// coordinates fall outside the image. Call crop_and_resize_check_cuda to turn bad rows into an Error.
void crop_and_resize_forward_cuda(CudaContext& ctx, const CropAndResizeParams& p, const float* x /*(N,C,H,W)*/,
                                  const float* boxes /*(R,4)*/, const int32_t* box_index /*(R)*/,
                                  float* y /*(R,C,crop_h,crop_w)*/);
// dx accumulated with atomicAdd (order not deterministic in the last bits).
void crop_and_resize_backward_cuda(CudaContext& ctx, const CropAndResizeParams& p,
                                   const float* dy /*(R,C,crop_h,crop_w)*/, const float* boxes /*(R,4)*/,
                                   const int32_t* box_index /*(R)*/, float* dx /*(N,C,H,W)*/, bool accumulate_dx);
// Finds the first row with a non-finite box or a box_index outside [0,N) and throws naming it.
// scratch: one device int32. Synchronises ctx.stream (a debug/validation call, not for the hot path).
void crop_and_resize_check_cuda(CudaContext& ctx, const CropAndResizeParams& p, const float* boxes /*(R,4)*/,
                                const int32_t* box_index /*(R)*/, int32_t* scratch /*(1)*/);
#endif

}  // namespace ctdet
