// CUDA kernels for kernels/elementwise.h. Per-element math comes from elementwise_math.h (shared with
// the CPU reference). Every launch is checked; all work goes on ctx.stream.
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/launch.cuh"
#include "kernels/elementwise.h"

namespace ctdet {
namespace {

using cuda::grid_for;
using cuda::kBlock;

__global__ void relu_fwd_kernel(int64_t n, const float* x, float* y) {
  CTDET_GRID_STRIDE(i, n) y[i] = relu_fwd(x[i]);
}
__global__ void relu_bwd_kernel(int64_t n, const float* dy, const float* y, float* dx, bool acc) {
  CTDET_GRID_STRIDE(i, n) store_grad(dx + i, relu_bwd_from_y(dy[i], y[i]), acc);
}
__global__ void relu6_fwd_kernel(int64_t n, const float* x, float* y) {
  CTDET_GRID_STRIDE(i, n) y[i] = relu6_fwd(x[i]);
}
__global__ void relu6_bwd_kernel(int64_t n, const float* dy, const float* y, float* dx, bool acc) {
  CTDET_GRID_STRIDE(i, n) store_grad(dx + i, relu6_bwd_from_y(dy[i], y[i]), acc);
}
__global__ void add_fwd_kernel(int64_t n, const float* a, const float* b, float* y) {
  CTDET_GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}
// dx = alpha * dy (alpha = 1 for add's backward).
__global__ void scaled_copy_kernel(int64_t n, float alpha, const float* dy, float* dx, bool acc) {
  CTDET_GRID_STRIDE(i, n) store_grad(dx + i, alpha * dy[i], acc);
}
__global__ void scale_fwd_kernel(int64_t n, float alpha, const float* x, float* y) {
  CTDET_GRID_STRIDE(i, n) y[i] = alpha * x[i];
}

__global__ void bn_add_relu_fwd_kernel(int64_t total, int64_t C, int64_t HW, const float* x, const float* scale,
                                       const float* shift, const float* r, float* y) {
  CTDET_GRID_STRIDE(i, total) {
    const int64_t c = (i / HW) % C;
    y[i] = bn_add_relu_fwd(x[i], scale[c], shift[c], r ? r[i] : 0.f);
  }
}
__global__ void bn_add_relu_bwd_kernel(int64_t total, int64_t C, int64_t HW, const float* dy, const float* y,
                                       const float* scale, float* dx, bool acc_dx, float* dr, bool acc_dr) {
  CTDET_GRID_STRIDE(i, total) {
    const int64_t c = (i / HW) % C;
    const float g = relu_bwd_from_y(dy[i], y[i]);
    if (dx) store_grad(dx + i, g * scale[c], acc_dx);
    if (dr) store_grad(dr + i, g, acc_dr);
  }
}

// Copies between a (N, Cs, HW) tensor and channels [off, off + Cs) of a (N, Cy, HW) tensor.
// to_big: small -> big (concat forward); otherwise big -> small (concat backward / slice forward).
__global__ void channel_copy_kernel(int64_t N, int64_t Cs, int64_t Cy, int64_t off, int64_t HW, const float* src,
                                    float* dst, bool to_big, bool acc) {
  const int64_t len = Cs * HW;
  CTDET_GRID_STRIDE(i, N * len) {
    const int64_t n = i / len, j = i % len;
    const int64_t big = (n * Cy + off) * HW + j;
    if (to_big) store_grad(dst + big, src[i], acc);
    else store_grad(dst + i, src[big], acc);
  }
}

__global__ void zero_channels_outside_kernel(int64_t N, int64_t C, int64_t HW, int64_t c0, int64_t cnt, float* dx) {
  CTDET_GRID_STRIDE(i, N * C * HW) {
    const int64_t c = (i / HW) % C;
    if (c < c0 || c >= c0 + cnt) dx[i] = 0.f;
  }
}

__global__ void gather_rows_fwd_kernel(int64_t M, int64_t R, int64_t D, const float* x, const int32_t* idx, float* y) {
  CTDET_GRID_STRIDE(i, R * D) {
    const int64_t r = i / D, d = i % D;
    const int32_t k = idx[r];
    y[i] = (k >= 0 && k < M) ? x[k * D + d] : 0.f;
  }
}
__global__ void fill_zero_kernel(int64_t n, float* p) {
  CTDET_GRID_STRIDE(i, n) p[i] = 0.f;
}
// One thread per column d walks the rows in increasing order: duplicates sum deterministically.
__global__ void gather_rows_bwd_kernel(int64_t M, int64_t R, int64_t D, const float* dy, const int32_t* idx,
                                       float* dx) {
  CTDET_GRID_STRIDE(d, D) {
    for (int64_t r = 0; r < R; ++r) {
      const int32_t k = idx[r];
      if (k >= 0 && k < M) dx[k * D + d] += dy[r * D + d];
    }
  }
}

}  // namespace

void relu_forward_cuda(CudaContext& ctx, int64_t n, const float* x, float* y) {
  validate_elementwise("relu", n);
  if (n == 0) return;
  relu_fwd_kernel<<<grid_for(n), kBlock, 0, ctx.stream>>>(n, x, y);
  CTDET_CUDA_LAUNCH_CHECK("relu_fwd_kernel");
}
void relu_backward_cuda(CudaContext& ctx, int64_t n, const float* dy, const float* y, float* dx, bool accumulate_dx) {
  validate_elementwise("relu_backward", n);
  if (n == 0) return;
  relu_bwd_kernel<<<grid_for(n), kBlock, 0, ctx.stream>>>(n, dy, y, dx, accumulate_dx);
  CTDET_CUDA_LAUNCH_CHECK("relu_bwd_kernel");
}
void relu6_forward_cuda(CudaContext& ctx, int64_t n, const float* x, float* y) {
  validate_elementwise("relu6", n);
  if (n == 0) return;
  relu6_fwd_kernel<<<grid_for(n), kBlock, 0, ctx.stream>>>(n, x, y);
  CTDET_CUDA_LAUNCH_CHECK("relu6_fwd_kernel");
}
void relu6_backward_cuda(CudaContext& ctx, int64_t n, const float* dy, const float* y, float* dx, bool accumulate_dx) {
  validate_elementwise("relu6_backward", n);
  if (n == 0) return;
  relu6_bwd_kernel<<<grid_for(n), kBlock, 0, ctx.stream>>>(n, dy, y, dx, accumulate_dx);
  CTDET_CUDA_LAUNCH_CHECK("relu6_bwd_kernel");
}
void add_forward_cuda(CudaContext& ctx, int64_t n, const float* a, const float* b, float* y) {
  validate_elementwise("add", n);
  if (n == 0) return;
  add_fwd_kernel<<<grid_for(n), kBlock, 0, ctx.stream>>>(n, a, b, y);
  CTDET_CUDA_LAUNCH_CHECK("add_fwd_kernel");
}
void add_backward_cuda(CudaContext& ctx, int64_t n, const float* dy, float* da, bool accumulate_da, float* db,
                       bool accumulate_db) {
  validate_elementwise("add_backward", n);
  if (n == 0) return;
  if (da) {
    scaled_copy_kernel<<<grid_for(n), kBlock, 0, ctx.stream>>>(n, 1.f, dy, da, accumulate_da);
    CTDET_CUDA_LAUNCH_CHECK("scaled_copy_kernel (add da)");
  }
  if (db) {
    scaled_copy_kernel<<<grid_for(n), kBlock, 0, ctx.stream>>>(n, 1.f, dy, db, accumulate_db);
    CTDET_CUDA_LAUNCH_CHECK("scaled_copy_kernel (add db)");
  }
}
void scale_forward_cuda(CudaContext& ctx, int64_t n, float alpha, const float* x, float* y) {
  validate_elementwise("scale", n);
  if (n == 0) return;
  scale_fwd_kernel<<<grid_for(n), kBlock, 0, ctx.stream>>>(n, alpha, x, y);
  CTDET_CUDA_LAUNCH_CHECK("scale_fwd_kernel");
}
void scale_backward_cuda(CudaContext& ctx, int64_t n, float alpha, const float* dy, float* dx, bool accumulate_dx) {
  validate_elementwise("scale_backward", n);
  if (n == 0) return;
  scaled_copy_kernel<<<grid_for(n), kBlock, 0, ctx.stream>>>(n, alpha, dy, dx, accumulate_dx);
  CTDET_CUDA_LAUNCH_CHECK("scaled_copy_kernel (scale)");
}

void bn_add_relu_forward_cuda(CudaContext& ctx, const BnAddReluParams& p, const float* x, const float* scale,
                              const float* shift, const float* r, float* y) {
  validate_bn_add_relu(p);
  const int64_t total = p.N * p.C * p.HW;
  if (total == 0) return;
  bn_add_relu_fwd_kernel<<<grid_for(total), kBlock, 0, ctx.stream>>>(total, p.C, p.HW, x, scale, shift, r, y);
  CTDET_CUDA_LAUNCH_CHECK("bn_add_relu_fwd_kernel");
}
void bn_add_relu_backward_cuda(CudaContext& ctx, const BnAddReluParams& p, const float* dy, const float* y,
                               const float* scale, float* dx, bool accumulate_dx, float* dr, bool accumulate_dr) {
  validate_bn_add_relu(p);
  const int64_t total = p.N * p.C * p.HW;
  if (total == 0 || (!dx && !dr)) return;
  bn_add_relu_bwd_kernel<<<grid_for(total), kBlock, 0, ctx.stream>>>(total, p.C, p.HW, dy, y, scale, dx,
                                                                      accumulate_dx, dr, accumulate_dr);
  CTDET_CUDA_LAUNCH_CHECK("bn_add_relu_bwd_kernel");
}

void concat_forward_cuda(CudaContext& ctx, const ConcatParams& p, const float* const* xs, float* y) {
  validate_concat(p);
  const int64_t Cy = p.out_channels();
  int64_t off = 0;
  for (size_t i = 0; i < p.channels.size(); ++i) {
    const int64_t n = p.N * p.channels[i] * p.HW;
    if (n > 0) {
      channel_copy_kernel<<<grid_for(n), kBlock, 0, ctx.stream>>>(p.N, p.channels[i], Cy, off, p.HW, xs[i], y, true,
                                                                   false);
      CTDET_CUDA_LAUNCH_CHECK("channel_copy_kernel (concat forward)");
    }
    off += p.channels[i];
  }
}
void concat_backward_cuda(CudaContext& ctx, const ConcatParams& p, const float* dy, float* const* dxs,
                          const bool* accumulate) {
  validate_concat(p);
  const int64_t Cy = p.out_channels();
  int64_t off = 0;
  for (size_t i = 0; i < p.channels.size(); ++i) {
    const int64_t n = p.N * p.channels[i] * p.HW;
    if (n > 0 && dxs[i]) {
      channel_copy_kernel<<<grid_for(n), kBlock, 0, ctx.stream>>>(p.N, p.channels[i], Cy, off, p.HW, dy, dxs[i],
                                                                   false, accumulate ? accumulate[i] : false);
      CTDET_CUDA_LAUNCH_CHECK("channel_copy_kernel (concat backward)");
    }
    off += p.channels[i];
  }
}

void slice_forward_cuda(CudaContext& ctx, const SliceParams& p, const float* x, float* y) {
  validate_slice(p);
  const int64_t n = p.N * p.count * p.HW;
  if (n == 0) return;
  channel_copy_kernel<<<grid_for(n), kBlock, 0, ctx.stream>>>(p.N, p.count, p.C, p.c0, p.HW, x, y, false, false);
  CTDET_CUDA_LAUNCH_CHECK("channel_copy_kernel (slice forward)");
}
void slice_backward_cuda(CudaContext& ctx, const SliceParams& p, const float* dy, float* dx, bool accumulate_dx) {
  validate_slice(p);
  const int64_t all = p.N * p.C * p.HW;
  if (!accumulate_dx && all > 0 && p.count < p.C) {
    zero_channels_outside_kernel<<<grid_for(all), kBlock, 0, ctx.stream>>>(p.N, p.C, p.HW, p.c0, p.count, dx);
    CTDET_CUDA_LAUNCH_CHECK("zero_channels_outside_kernel");
  }
  const int64_t n = p.N * p.count * p.HW;
  if (n == 0) return;
  channel_copy_kernel<<<grid_for(n), kBlock, 0, ctx.stream>>>(p.N, p.count, p.C, p.c0, p.HW, dy, dx, true,
                                                               accumulate_dx);
  CTDET_CUDA_LAUNCH_CHECK("channel_copy_kernel (slice backward)");
}

void gather_rows_forward_cuda(CudaContext& ctx, const GatherRowsParams& p, const float* x, const int32_t* idx,
                              float* y) {
  validate_gather_rows(p);
  const int64_t n = p.R * p.D;
  if (n == 0) return;
  gather_rows_fwd_kernel<<<grid_for(n), kBlock, 0, ctx.stream>>>(p.M, p.R, p.D, x, idx, y);
  CTDET_CUDA_LAUNCH_CHECK("gather_rows_fwd_kernel");
}
void gather_rows_backward_cuda(CudaContext& ctx, const GatherRowsParams& p, const float* dy, const int32_t* idx,
                               float* dx, bool accumulate_dx) {
  validate_gather_rows(p);
  if (!accumulate_dx && p.M * p.D > 0) {
    fill_zero_kernel<<<grid_for(p.M * p.D), kBlock, 0, ctx.stream>>>(p.M * p.D, dx);
    CTDET_CUDA_LAUNCH_CHECK("fill_zero_kernel (gather_rows backward)");
  }
  if (p.R == 0 || p.D == 0) return;
  gather_rows_bwd_kernel<<<grid_for(p.D), kBlock, 0, ctx.stream>>>(p.M, p.R, p.D, dy, idx, dx);
  CTDET_CUDA_LAUNCH_CHECK("gather_rows_bwd_kernel");
}

}  // namespace ctdet
