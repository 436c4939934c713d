// crop_and_resize CUDA kernels (float). Same per-point math as the CPU reference (crop_and_resize_math.h).
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/launch.cuh"
#include "kernels/crop_and_resize.h"
#include "kernels/crop_and_resize_math.h"

namespace ctdet {
namespace {

// One thread per output element (r, c, i, j), c-major inside a box so neighbouring threads share a box.
__global__ void crop_and_resize_forward_kernel(CropAndResizeParams p, const float* __restrict__ x,
                                               const float* __restrict__ boxes, const int32_t* __restrict__ box_index,
                                               float* __restrict__ y) {
  const int64_t cells = p.crop_h * p.crop_w, total = p.R * p.C * cells, plane = p.H * p.W;
  CTDET_GRID_STRIDE(idx, total) {
    const int64_t j = idx % p.crop_w;
    const int64_t i = (idx / p.crop_w) % p.crop_h;
    const int64_t c = (idx / cells) % p.C;
    const int64_t r = idx / (cells * p.C);
    const int32_t n = box_index[r];
    float v = p.extrapolation_value;
    if (n >= 0 && n < p.N) {
      const float* b = boxes + r * 4;
      const float sy = crop_sample_coord(b[0], b[2], i, p.crop_h, p.H);
      const float sx = crop_sample_coord(b[1], b[3], j, p.crop_w, p.W);
      BilinearPoint<float> bp;
      if (tf_bilinear_point(sy, sx, p.H, p.W, &bp)) v = bilinear_sample(x + (int64_t(n) * p.C + c) * plane, p.W, bp);
    }
    y[idx] = v;
  }
}

__global__ void crop_and_resize_backward_kernel(CropAndResizeParams p, const float* __restrict__ dy,
                                                const float* __restrict__ boxes,
                                                const int32_t* __restrict__ box_index, float* __restrict__ dx) {
  const int64_t cells = p.crop_h * p.crop_w, total = p.R * p.C * cells, plane = p.H * p.W;
  CTDET_GRID_STRIDE(idx, total) {
    const int64_t j = idx % p.crop_w;
    const int64_t i = (idx / p.crop_w) % p.crop_h;
    const int64_t c = (idx / cells) % p.C;
    const int64_t r = idx / (cells * p.C);
    const int32_t n = box_index[r];
    if (n < 0 || n >= p.N) continue;
    const float* b = boxes + r * 4;
    const float sy = crop_sample_coord(b[0], b[2], i, p.crop_h, p.H);
    const float sx = crop_sample_coord(b[1], b[3], j, p.crop_w, p.W);
    BilinearPoint<float> bp;
    if (!tf_bilinear_point(sy, sx, p.H, p.W, &bp)) continue;
    const float g = dy[idx];
    float* pl = dx + (int64_t(n) * p.C + c) * plane;
    atomicAdd(pl + bp.y0 * p.W + bp.x0, bp.w00 * g);
    atomicAdd(pl + bp.y0 * p.W + bp.x1, bp.w01 * g);
    atomicAdd(pl + bp.y1 * p.W + bp.x0, bp.w10 * g);
    atomicAdd(pl + bp.y1 * p.W + bp.x1, bp.w11 * g);
  }
}

// Writes the smallest bad row into *first_bad (initialised to R).
__global__ void crop_and_resize_check_kernel(CropAndResizeParams p, const float* __restrict__ boxes,
                                             const int32_t* __restrict__ box_index, int32_t* first_bad) {
  CTDET_GRID_STRIDE(r, p.R) {
    bool ok = box_index[r] >= 0 && box_index[r] < p.N;
    for (int k = 0; k < 4; ++k) ok = ok && isfinite(boxes[r * 4 + k]);
    if (!ok) atomicMin(first_bad, int32_t(r));
  }
}

}  // namespace

void crop_and_resize_forward_cuda(CudaContext& ctx, const CropAndResizeParams& p, const float* x, const float* boxes,
                                  const int32_t* box_index, float* y) {
  validate_crop_and_resize(p);
  const int64_t total = crop_and_resize_output_numel(p);
  if (total == 0) return;
  crop_and_resize_forward_kernel<<<cuda::grid_for(total), cuda::kBlock, 0, ctx.stream>>>(p, x, boxes, box_index, y);
  CTDET_CUDA_LAUNCH_CHECK("crop_and_resize_forward_kernel");
}

void crop_and_resize_backward_cuda(CudaContext& ctx, const CropAndResizeParams& p, const float* dy, const float* boxes,
                                   const int32_t* box_index, float* dx, bool accumulate_dx) {
  validate_crop_and_resize(p);
  if (!accumulate_dx)
    CTDET_CUDA_CHECK(cudaMemsetAsync(dx, 0, sizeof(float) * size_t(p.N * p.C * p.H * p.W), ctx.stream));
  const int64_t total = crop_and_resize_output_numel(p);
  if (total == 0) return;
  crop_and_resize_backward_kernel<<<cuda::grid_for(total), cuda::kBlock, 0, ctx.stream>>>(p, dy, boxes, box_index,
                                                                                          dx);
  CTDET_CUDA_LAUNCH_CHECK("crop_and_resize_backward_kernel");
}

void crop_and_resize_check_cuda(CudaContext& ctx, const CropAndResizeParams& p, const float* boxes,
                                const int32_t* box_index, int32_t* scratch) {
  validate_crop_and_resize(p);
  CTDET_CHECK(p.R < INT32_MAX, "crop_and_resize_check_cuda: too many boxes (", p.R, ")");
  if (p.R == 0) return;
  const int32_t init = int32_t(p.R);
  CTDET_CUDA_CHECK(cudaMemcpyAsync(scratch, &init, sizeof(int32_t), cudaMemcpyHostToDevice, ctx.stream));
  crop_and_resize_check_kernel<<<cuda::grid_for(p.R), cuda::kBlock, 0, ctx.stream>>>(p, boxes, box_index, scratch);
  CTDET_CUDA_LAUNCH_CHECK("crop_and_resize_check_kernel");
  int32_t bad = init;
  CTDET_CUDA_CHECK(cudaMemcpyAsync(&bad, scratch, sizeof(int32_t), cudaMemcpyDeviceToHost, ctx.stream));
  CTDET_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  if (bad < init) {
    float b[4];
    int32_t n = 0;
    CTDET_CUDA_CHECK(cudaMemcpy(b, boxes + int64_t(bad) * 4, sizeof(b), cudaMemcpyDeviceToHost));
    CTDET_CUDA_CHECK(cudaMemcpy(&n, box_index + bad, sizeof(n), cudaMemcpyDeviceToHost));
    CTDET_FAIL("crop_and_resize: box row ", bad, " is invalid: box (", b[0], ",", b[1], ",", b[2], ",", b[3],
               "), box_index ", n, " (N = ", p.N, ")");
  }
}

}  // namespace ctdet
