// CUDA kernels for kernels/pool.h: the per-output and per-input math is pool2d_forward_at /
// pool2d_backward_at (or, with workspace, pool_max_argmax_at + pool_max_backward_from_argmax_at) from pool.h, shared
// with the CPU reference (so argmax ties resolve identically).
#include <climits>

#include "kernels/common/cuda_check.cuh"
#include "kernels/common/launch.cuh"
#include "kernels/elementwise_math.h"
#include "kernels/pool.h"

namespace ctdet {
namespace {

using cuda::grid_for;
using cuda::kBlock;

__global__ void pool2d_fwd_kernel(PoolGeom g, const float* x, float* y) {
  const int64_t per = g.P * g.Q;
  CTDET_GRID_STRIDE(i, g.N * g.C * per) {
    const int64_t nc = i / per, pq = i % per;
    y[i] = pool2d_forward_at(g, x + nc * g.H * g.W, pq / g.Q, pq % g.Q);
  }
}

__global__ void pool2d_bwd_kernel(PoolGeom g, const float* dy, const float* x, float* dx, bool acc) {
  const int64_t per = g.H * g.W;
  CTDET_GRID_STRIDE(i, g.N * g.C * per) {
    const int64_t nc = i / per, hw = i % per;
    const float* xp = x ? x + nc * per : nullptr;
    store_grad(dx + i, pool2d_backward_at(g, xp, dy + nc * g.P * g.Q, hw / g.W, hw % g.W), acc);
  }
}

// Each max window's argmax (pool_max_argmax_at), and its value too when y is given: the first pass of the two-pass
// backward (y null) and the training graphs' forward that keeps the argmax (max_pool_argmax).
__global__ void pool2d_argmax_kernel(PoolGeom g, const float* x, float* y, int32_t* arg) {
  const int64_t per = g.P * g.Q;
  CTDET_GRID_STRIDE(i, g.N * g.C * per) {
    const int64_t nc = i / per, pq = i % per;
    int64_t a;
    const float v = pool_max_window(g, x + nc * g.H * g.W, pq / g.Q, pq % g.Q, &a);
    if (y) y[i] = v;
    arg[i] = int32_t(a);
  }
}

__global__ void pool2d_bwd_from_argmax_kernel(PoolGeom g, const float* dy, const int32_t* arg, float* dx, bool acc) {
  const int64_t per = g.H * g.W, out = g.P * g.Q;
  CTDET_GRID_STRIDE(i, g.N * g.C * per) {
    const int64_t nc = i / per, hw = i % per;
    store_grad(dx + i, pool_max_backward_from_argmax_at(g, arg + nc * out, dy + nc * out, hw / g.W, hw % g.W), acc);
  }
}

// One warp per (n, c): lanes sum a strided share, then a fixed shuffle tree (deterministic).
__global__ void gap_fwd_kernel(int64_t NC, int64_t HW, const float* x, float* y) {
  const int lane = threadIdx.x & 31;
  const int64_t warps_per_block = blockDim.x / 32;
  for (int64_t row = blockIdx.x * warps_per_block + threadIdx.x / 32; row < NC; row += gridDim.x * warps_per_block) {
    float s = 0.f;
    for (int64_t j = lane; j < HW; j += 32) s += x[row * HW + j];
    for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
    if (lane == 0) y[row] = s / float(HW);
  }
}

__global__ void gap_bwd_kernel(int64_t NC, int64_t HW, const float* dy, float* dx, bool acc) {
  CTDET_GRID_STRIDE(i, NC * HW) store_grad(dx + i, dy[i / HW] / float(HW), acc);
}

}  // namespace

void pool2d_forward_cuda(CudaContext& ctx, const Pool2dParams& p, const float* x, float* y) {
  const PoolGeom g = pool2d_geometry(p);
  const int64_t n = g.N * g.C * g.P * g.Q;
  if (n == 0) return;
  pool2d_fwd_kernel<<<grid_for(n), kBlock, 0, ctx.stream>>>(g, x, y);
  CTDET_CUDA_LAUNCH_CHECK(g.kind == 0 ? "pool2d_fwd_kernel (max)" : "pool2d_fwd_kernel (avg)");
}

void pool2d_backward_cuda(CudaContext& ctx, const Pool2dParams& p, const float* dy, const float* x, float* dx,
                          bool accumulate_dx, void* workspace, size_t workspace_bytes) {
  const PoolGeom g = pool2d_geometry(p);
  CTDET_CHECK(g.kind == 1 || x != nullptr, "max_pool2d backward: needs the saved input x");
  const int64_t n = g.N * g.C * g.H * g.W;
  if (n == 0) return;
  if (g.kind == 0 && workspace && workspace_bytes >= pool2d_backward_cuda_workspace_bytes(p)) {
    int32_t* arg = static_cast<int32_t*>(workspace);
    const int64_t windows = g.N * g.C * g.P * g.Q;
    pool2d_argmax_kernel<<<grid_for(windows), kBlock, 0, ctx.stream>>>(g, x, nullptr, arg);
    CTDET_CUDA_LAUNCH_CHECK("pool2d_argmax_kernel");
    pool2d_bwd_from_argmax_kernel<<<grid_for(n), kBlock, 0, ctx.stream>>>(g, dy, arg, dx, accumulate_dx);
    CTDET_CUDA_LAUNCH_CHECK("pool2d_bwd_from_argmax_kernel");
    return;
  }
  pool2d_bwd_kernel<<<grid_for(n), kBlock, 0, ctx.stream>>>(g, dy, x, dx, accumulate_dx);
  CTDET_CUDA_LAUNCH_CHECK(g.kind == 0 ? "pool2d_bwd_kernel (max)" : "pool2d_bwd_kernel (avg)");
}

void pool2d_max_forward_argmax_cuda(CudaContext& ctx, const Pool2dParams& p, const float* x, float* y, int32_t* arg) {
  const PoolGeom g = pool2d_geometry(p);
  CTDET_CHECK(g.kind == 0, "max_pool2d with argmax (cuda): the pool is not a max pool");
  CTDET_CHECK(g.H * g.W <= int64_t(INT32_MAX), "max_pool2d with argmax (cuda): an input plane of ", g.H, "x", g.W,
              " cells does not fit int32 indices");
  const int64_t windows = g.N * g.C * g.P * g.Q;
  if (windows == 0) return;
  pool2d_argmax_kernel<<<grid_for(windows), kBlock, 0, ctx.stream>>>(g, x, y, arg);
  CTDET_CUDA_LAUNCH_CHECK("pool2d_argmax_kernel (with values)");
}

void pool2d_max_backward_from_argmax_cuda(CudaContext& ctx, const Pool2dParams& p, const float* dy,
                                          const int32_t* arg, float* dx, bool accumulate_dx) {
  const PoolGeom g = pool2d_geometry(p);
  CTDET_CHECK(g.kind == 0, "max_pool2d backward from argmax (cuda): the pool is not a max pool");
  const int64_t n = g.N * g.C * g.H * g.W;
  if (n == 0) return;
  pool2d_bwd_from_argmax_kernel<<<grid_for(n), kBlock, 0, ctx.stream>>>(g, dy, arg, dx, accumulate_dx);
  CTDET_CUDA_LAUNCH_CHECK("pool2d_bwd_from_argmax_kernel (stored argmax)");
}

void global_avg_pool_forward_cuda(CudaContext& ctx, const GapParams& p, const float* x, float* y) {
  validate_global_avg_pool(p);
  const int64_t NC = p.N * p.C;
  if (NC == 0) return;
  const int warps = kBlock / 32;
  const int blocks = int(std::min<int64_t>((NC + warps - 1) / warps, 65535));
  gap_fwd_kernel<<<blocks, kBlock, 0, ctx.stream>>>(NC, p.HW, x, y);
  CTDET_CUDA_LAUNCH_CHECK("gap_fwd_kernel");
}

void global_avg_pool_backward_cuda(CudaContext& ctx, const GapParams& p, const float* dy, float* dx,
                                   bool accumulate_dx) {
  validate_global_avg_pool(p);
  const int64_t n = p.N * p.C * p.HW;
  if (n == 0) return;
  gap_bwd_kernel<<<grid_for(n), kBlock, 0, ctx.stream>>>(p.N * p.C, p.HW, dy, dx, accumulate_dx);
  CTDET_CUDA_LAUNCH_CHECK("gap_bwd_kernel");
}

}  // namespace ctdet
