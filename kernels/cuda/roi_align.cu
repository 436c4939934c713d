// roi_align CUDA kernels (float), torchvision semantics; geometry and weights shared with the CPU reference.
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/launch.cuh"
#include "kernels/roi_align.h"
#include "kernels/roi_align_math.h"

namespace ctdet {
namespace {

// One thread per output element (r, c, ph, pw).
__global__ void roi_align_forward_kernel(RoiAlignParams p, const float* __restrict__ x, const float* __restrict__ rois,
                                         float* __restrict__ y) {
  const int64_t bins = p.pooled_h * p.pooled_w, total = p.R * p.C * bins, plane = p.H * p.W;
  CTDET_GRID_STRIDE(idx, total) {
    const int64_t pw = idx % p.pooled_w;
    const int64_t ph = (idx / p.pooled_w) % p.pooled_h;
    const int64_t c = (idx / bins) % p.C;
    const int64_t r = idx / (bins * p.C);
    const float* roi = rois + r * 5;
    const int64_t n = int64_t(roi[0]);
    float acc = 0.f;
    if (roi[0] >= 0.f && n < p.N) {
      const RoiGeom<float> g = roi_align_geometry(p, roi);
      const float* pl = x + (n * p.C + c) * plane;
      for (int64_t iy = 0; iy < g.grid_h; ++iy) {
        const float sy = roi_sample_y(g, ph, iy);
        for (int64_t ix = 0; ix < g.grid_w; ++ix) {
          BilinearPoint<float> bp;
          if (tv_bilinear_point(sy, roi_sample_x(g, pw, ix), p.H, p.W, &bp)) acc += bilinear_sample(pl, p.W, bp);
        }
      }
      acc *= g.inv_count;
    }
    y[idx] = acc;
  }
}

__global__ void roi_align_backward_kernel(RoiAlignParams p, const float* __restrict__ dy,
                                          const float* __restrict__ rois, float* __restrict__ dx) {
  const int64_t bins = p.pooled_h * p.pooled_w, total = p.R * p.C * bins, plane = p.H * p.W;
  CTDET_GRID_STRIDE(idx, total) {
    const int64_t pw = idx % p.pooled_w;
    const int64_t ph = (idx / p.pooled_w) % p.pooled_h;
    const int64_t c = (idx / bins) % p.C;
    const int64_t r = idx / (bins * p.C);
    const float* roi = rois + r * 5;
    const int64_t n = int64_t(roi[0]);
    if (!(roi[0] >= 0.f) || n >= p.N) continue;
    const RoiGeom<float> g = roi_align_geometry(p, roi);
    const float gv = dy[idx] * g.inv_count;
    float* pl = dx + (n * p.C + c) * plane;
    for (int64_t iy = 0; iy < g.grid_h; ++iy) {
      const float sy = roi_sample_y(g, ph, iy);
      for (int64_t ix = 0; ix < g.grid_w; ++ix) {
        BilinearPoint<float> bp;
        if (!tv_bilinear_point(sy, roi_sample_x(g, pw, ix), p.H, p.W, &bp)) continue;
        atomicAdd(pl + bp.y0 * p.W + bp.x0, bp.w00 * gv);
        atomicAdd(pl + bp.y0 * p.W + bp.x1, bp.w01 * gv);
        atomicAdd(pl + bp.y1 * p.W + bp.x0, bp.w10 * gv);
        atomicAdd(pl + bp.y1 * p.W + bp.x1, bp.w11 * gv);
      }
    }
  }
}

}  // namespace

void roi_align_forward_cuda(CudaContext& ctx, const RoiAlignParams& p, const float* x, const float* rois, float* y) {
  validate_roi_align(p);
  const int64_t total = roi_align_output_numel(p);
  if (total == 0) return;
  roi_align_forward_kernel<<<cuda::grid_for(total), cuda::kBlock, 0, ctx.stream>>>(p, x, rois, y);
  CTDET_CUDA_LAUNCH_CHECK("roi_align_forward_kernel");
}

void roi_align_backward_cuda(CudaContext& ctx, const RoiAlignParams& p, const float* dy, const float* rois, float* dx,
                             bool accumulate_dx) {
  validate_roi_align(p);
  if (!accumulate_dx)
    CTDET_CUDA_CHECK(cudaMemsetAsync(dx, 0, sizeof(float) * size_t(p.N * p.C * p.H * p.W), ctx.stream));
  const int64_t total = roi_align_output_numel(p);
  if (total == 0) return;
  roi_align_backward_kernel<<<cuda::grid_for(total), cuda::kBlock, 0, ctx.stream>>>(p, dy, rois, dx);
  CTDET_CUDA_LAUNCH_CHECK("roi_align_backward_kernel");
}

}  // namespace ctdet
