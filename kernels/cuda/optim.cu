// CUDA kernels for kernels/optim.h. SGD math from optim_math.h. Norms are deterministic: each tensor
// gets a grid fixed by its size (clip_blocks), each block writes one double partial, and fixed-order
// single-block reductions finish the sums; the scale kernels read the norm on the device.
#include <cmath>
#include <vector>

#include "kernels/common/cuda_check.cuh"
#include "kernels/common/launch.cuh"
#include "kernels/optim.h"

namespace ctdet {
namespace {

using cuda::grid_for;
using cuda::kBlock;

constexpr int kNormThreads = 256;

int clip_blocks(int64_t n) {
  if (n <= 0) return 0;
  const int64_t b = (n + int64_t(kNormThreads) * 4 - 1) / (int64_t(kNormThreads) * 4);
  return int(std::min<int64_t>(b, 256));
}

__global__ void sgd_kernel(int64_t n, float* var, float* accum, const float* grad, float lr, float m, float wd) {
  CTDET_GRID_STRIDE(i, n) {
    float v = var[i], a = accum[i];
    sgd_momentum_step(v, a, grad[i], lr, m, wd);
    var[i] = v;
    accum[i] = a;
  }
}

__device__ void block_sum_store(double s, double* out) {
  __shared__ double sh[kNormThreads];
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int k = blockDim.x / 2; k > 0; k >>= 1) {
    if ((int)threadIdx.x < k) sh[threadIdx.x] += sh[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = sh[0];
}

__global__ void sumsq_partial_kernel(int64_t n, const float* g, double* partials) {
  double s = 0;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)blockDim.x * gridDim.x) {
    const double v = g[i];
    s += v * v;
  }
  block_sum_store(s, partials + blockIdx.x);
}

// out = sum(in[0..m)), one block, fixed order. If norm_out: also writes sqrt(out) as float.
__global__ void sum_kernel(int64_t m, const double* in, double* out, float* norm_out) {
  double s = 0;
  for (int64_t i = threadIdx.x; i < m; i += blockDim.x) s += in[i];
  block_sum_store(s, out);
  __syncthreads();
  if (threadIdx.x == 0 && norm_out) *norm_out = float(sqrt(*out));
}

__global__ void clip_scale_kernel(int64_t n, float* g, const float* norm, float clip) {
  const float nm = *norm;
  if (!isfinite(nm)) return;  // reported, not applied
  const float f = clip_factor(nm, clip);
  if (f == 1.f) return;
  CTDET_GRID_STRIDE(i, n) g[i] *= f;
}

}  // namespace

void sgd_momentum_update_cuda(CudaContext& ctx, const SgdParams& p, int64_t n, float* var, float* accum,
                              const float* grad) {
  validate_sgd(p, n);
  if (n == 0) return;
  sgd_kernel<<<grid_for(n), kBlock, 0, ctx.stream>>>(n, var, accum, grad, float(p.lr), float(p.momentum),
                                                      float(p.weight_decay));
  CTDET_CUDA_LAUNCH_CHECK("sgd_kernel");
}

size_t clip_workspace_bytes_cuda(int k, const int64_t* sizes) {
  size_t partials = 0;
  for (int i = 0; i < k; ++i) partials += size_t(clip_blocks(sizes[i]));
  // partials | per-tensor sums (k) | global sum (1)
  const size_t b = (partials + size_t(k) + 1) * sizeof(double);
  return (b + 255) / 256 * 256;
}

namespace {
// Writes per-tensor partial sums of squares (clip_blocks(n) doubles per tensor; empty tensors get none)
// and returns the total partial count; first[i] is tensor i's first partial.
int64_t launch_partials(CudaContext& ctx, int k, float* const* grads, const int64_t* sizes, double* partials,
                        int64_t* first /*(k+1) host*/) {
  int64_t off = 0;
  for (int i = 0; i < k; ++i) {
    first[i] = off;
    const int b = clip_blocks(sizes[i]);
    if (b > 0) {
      sumsq_partial_kernel<<<b, kNormThreads, 0, ctx.stream>>>(sizes[i], grads[i], partials + off);
      CTDET_CUDA_LAUNCH_CHECK("sumsq_partial_kernel");
    }
    off += b;
  }
  first[k] = off;
  return off;
}
}  // namespace

void clip_by_global_norm_cuda(CudaContext& ctx, double clip, int k, float* const* grads, const int64_t* sizes,
                              float* norm, void* workspace) {
  validate_clip("clip_by_global_norm", clip, k, sizes);
  CTDET_CHECK(workspace != nullptr, "clip_by_global_norm (cuda): workspace is null");
  double* partials = static_cast<double*>(workspace);
  std::vector<int64_t> first(size_t(k) + 1);
  const int64_t total = launch_partials(ctx, k, grads, sizes, partials, first.data());
  double* global = partials + total + k;
  sum_kernel<<<1, kNormThreads, 0, ctx.stream>>>(total, partials, global, norm);
  CTDET_CUDA_LAUNCH_CHECK("sum_kernel (global norm)");
  for (int i = 0; i < k; ++i) {
    if (sizes[i] == 0) continue;
    clip_scale_kernel<<<grid_for(sizes[i]), kBlock, 0, ctx.stream>>>(sizes[i], grads[i], norm, float(clip));
    CTDET_CUDA_LAUNCH_CHECK("clip_scale_kernel (global)");
  }
}

void clip_by_tensor_norm_cuda(CudaContext& ctx, double clip, int k, float* const* grads, const int64_t* sizes,
                              float* norms, void* workspace) {
  validate_clip("clip_by_tensor_norm", clip, k, sizes);
  CTDET_CHECK(workspace != nullptr, "clip_by_tensor_norm (cuda): workspace is null");
  double* partials = static_cast<double*>(workspace);
  std::vector<int64_t> first(size_t(k) + 1);
  const int64_t total = launch_partials(ctx, k, grads, sizes, partials, first.data());
  double* sums = partials + total;
  for (int i = 0; i < k; ++i) {
    sum_kernel<<<1, kNormThreads, 0, ctx.stream>>>(first[i + 1] - first[i], partials + first[i], sums + i, norms + i);
    CTDET_CUDA_LAUNCH_CHECK("sum_kernel (tensor norm)");
    if (sizes[i] == 0) continue;
    clip_scale_kernel<<<grid_for(sizes[i]), kBlock, 0, ctx.stream>>>(sizes[i], grads[i], norms + i, float(clip));
    CTDET_CUDA_LAUNCH_CHECK("clip_scale_kernel (tensor)");
  }
}

// ---- multi-tensor form ---------------------------------------------------------------------------------------

namespace {

// One block per chunk: the sum of squares of its gradient values (0 for a null gradient).
__global__ void list_sumsq_kernel(const ListTensor* tensors, const ListChunk* chunks, double* partials) {
  const ListChunk c = chunks[blockIdx.x];
  const float* g = tensors[c.tensor].grad;
  double s = 0;
  if (g)
    for (int j = threadIdx.x; j < c.len; j += blockDim.x) {
      const double v = g[c.start + j];
      s += v * v;
    }
  block_sum_store(s, partials + blockIdx.x);
}

// One block per tensor: the sum of its chunks' partials in chunk order; sums[t], norms[t] = sqrt.
__global__ void list_tensor_sum_kernel(const int64_t* first_chunk, const double* partials, double* sums,
                                       float* norms) {
  const int t = blockIdx.x;
  const int64_t b = first_chunk[t], e = first_chunk[t + 1];
  double s = 0;
  for (int64_t i = b + threadIdx.x; i < e; i += blockDim.x) s += partials[i];
  block_sum_store(s, sums + t);
  __syncthreads();
  if (threadIdx.x == 0) norms[t] = float(sqrt(sums[t]));
}

// One block per chunk: g * clip_factor (as clip_scale_kernel), then the SGD step (as sgd_kernel).
__global__ void list_clipped_sgd_kernel(const ListTensor* tensors, const ListChunk* chunks, const float* norms,
                                        int per_tensor, float clip, float lr, float m, float wd) {
  const ListChunk c = chunks[blockIdx.x];
  const ListTensor t = tensors[c.tensor];
  const float nm = norms[per_tensor ? c.tensor : 0];
  if (!isfinite(nm)) return;  // the host never asks for this; a non-finite norm must not move anything
  const float f = clip_factor(nm, clip);
  for (int j = threadIdx.x; j < c.len; j += blockDim.x) {
    const int64_t i = c.start + j;
    float gi = t.grad ? t.grad[i] : 0.f;
    if (f != 1.f) gi *= f;
    float v = t.var[i], a = t.accum[i];
    sgd_momentum_step(v, a, gi, lr, m, wd);
    t.var[i] = v;
    t.accum[i] = a;
  }
}

}  // namespace

size_t clip_list_workspace_bytes_cuda(int k, int64_t n_chunks) {
  // chunk partials | per-tensor sums (k) | global sum (1)
  const size_t b = (size_t(n_chunks) + size_t(k) + 1) * sizeof(double);
  return (b + 255) / 256 * 256;
}

void clip_norms_list_cuda(CudaContext& ctx, bool per_tensor, int k, const ListTensor* tensors, int64_t n_chunks,
                          const ListChunk* chunks, const int64_t* first_chunk, float* norms, void* workspace) {
  CTDET_CHECK(k >= 0 && n_chunks >= 0, "clip_norms_list (cuda): bad list (", k, " tensors, ", n_chunks, " chunks)");
  CTDET_CHECK(n_chunks < (int64_t(1) << 31), "clip_norms_list (cuda): ", n_chunks, " chunks exceed a grid");
  CTDET_CHECK(workspace != nullptr, "clip_norms_list (cuda): workspace is null");
  double* partials = static_cast<double*>(workspace);
  double* sums = partials + n_chunks;
  if (n_chunks > 0) {
    list_sumsq_kernel<<<unsigned(n_chunks), kNormThreads, 0, ctx.stream>>>(tensors, chunks, partials);
    CTDET_CUDA_LAUNCH_CHECK("list_sumsq_kernel");
  }
  if (per_tensor) {
    if (k == 0) return;
    list_tensor_sum_kernel<<<unsigned(k), kNormThreads, 0, ctx.stream>>>(first_chunk, partials, sums, norms);
    CTDET_CUDA_LAUNCH_CHECK("list_tensor_sum_kernel");
  } else {
    sum_kernel<<<1, kNormThreads, 0, ctx.stream>>>(n_chunks, partials, sums + k, norms);
    CTDET_CUDA_LAUNCH_CHECK("sum_kernel (list global norm)");
  }
}

void clipped_sgd_update_list_cuda(CudaContext& ctx, const SgdParams& p, double clip, bool per_tensor,
                                  const ListTensor* tensors, int64_t n_chunks, const ListChunk* chunks,
                                  const float* norms) {
  validate_sgd(p, 0);
  validate_clip("clipped_sgd_update_list", clip, 0, nullptr);
  CTDET_CHECK(n_chunks >= 0 && n_chunks < (int64_t(1) << 31), "clipped_sgd_update_list (cuda): ", n_chunks,
              " chunks");
  if (n_chunks == 0) return;
  list_clipped_sgd_kernel<<<unsigned(n_chunks), kNormThreads, 0, ctx.stream>>>(
      tensors, chunks, norms, per_tensor ? 1 : 0, float(clip), float(p.lr), float(p.momentum),
      float(p.weight_decay));
  CTDET_CUDA_LAUNCH_CHECK("list_clipped_sgd_kernel");
}

}  // namespace ctdet
