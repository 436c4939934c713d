// Batch norm on CUDA. Per-channel reductions use one block per channel and a fixed-order shared-memory
// tree (deterministic). Per-element math comes from kernels/batchnorm_math.h, as on the CPU.
#include "kernels/batchnorm.h"
#include "kernels/batchnorm_math.h"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/launch.cuh"

namespace ctdet {
namespace {

constexpr int kReduceThreads = 256;

// Sums a and b over the block; every thread gets the totals. sh holds 2 * kReduceThreads floats.
__device__ void block_sum2(float& a, float& b, float* sh) {
  const int t = threadIdx.x;
  sh[t] = a;
  sh[kReduceThreads + t] = b;
  __syncthreads();
  for (int s = kReduceThreads / 2; s > 0; s >>= 1) {
    if (t < s) {
      sh[t] += sh[t + s];
      sh[kReduceThreads + t] += sh[kReduceThreads + t + s];
    }
    __syncthreads();
  }
  a = sh[0];
  b = sh[kReduceThreads];
  __syncthreads();
}

// Offset of element j (0 <= j < N*HW) of channel c.
__device__ __forceinline__ int64_t chan_index(int64_t j, int64_t HW, int C, int c) {
  int64_t n = j / HW;
  return (n * C + c) * HW + (j - n * HW);
}

__global__ void bn_frozen_forward_kernel(int64_t total, int64_t HW, int C, float eps, const float* x,
                                         const float* gamma, const float* beta, const float* mean, const float* var,
                                         float* y) {
  CTDET_GRID_STRIDE(i, total) {
    int c = int((i / HW) % C);
    float scale = bn_frozen_scale(gamma[c], var[c], eps);
    y[i] = bn_apply(x[i], scale, bn_frozen_shift(beta[c], mean[c], scale));
  }
}

__global__ void bn_frozen_dx_kernel(int64_t total, int64_t HW, int C, float eps, const float* dy, const float* gamma,
                                    const float* var, float* dx, bool accumulate) {
  CTDET_GRID_STRIDE(i, total) {
    int c = int((i / HW) % C);
    float v = dy[i] * bn_frozen_scale(gamma[c], var[c], eps);
    dx[i] = accumulate ? dx[i] + v : v;
  }
}

// grid = C blocks: dbeta = sum dy, dgamma = sum dy * x_hat with the frozen statistics.
__global__ void bn_frozen_param_grad_kernel(int N, int C, int64_t HW, float eps, const float* dy, const float* x,
                                            const float* mean, const float* var, float* dgamma, bool acc_dgamma,
                                            float* dbeta, bool acc_dbeta) {
  __shared__ float sh[2 * kReduceThreads];
  const int c = blockIdx.x;
  const int64_t M = int64_t(N) * HW;
  const float invstd = bn_invstd(var[c], eps);
  float s_dy = 0.f, s_dyx = 0.f;
  for (int64_t j = threadIdx.x; j < M; j += kReduceThreads) {
    int64_t k = chan_index(j, HW, C, c);
    s_dy += dy[k];
    if (dgamma) s_dyx += dy[k] * bn_xhat(x[k], mean[c], invstd);
  }
  block_sum2(s_dy, s_dyx, sh);
  if (threadIdx.x == 0) {
    if (dgamma) dgamma[c] = acc_dgamma ? dgamma[c] + s_dyx : s_dyx;
    if (dbeta) dbeta[c] = acc_dbeta ? dbeta[c] + s_dy : s_dy;
  }
}

// grid = C blocks: batch mean and biased variance (two passes), normalise, save, update running stats.
__global__ void bn_train_forward_kernel(int N, int C, int64_t HW, float eps, float momentum, const float* x,
                                        const float* gamma, const float* beta, float* running_mean,
                                        float* running_var, float* y, float* save_mean, float* save_invstd) {
  __shared__ float sh[2 * kReduceThreads];
  const int c = blockIdx.x;
  const int64_t M = int64_t(N) * HW;
  float s = 0.f, unused = 0.f;
  for (int64_t j = threadIdx.x; j < M; j += kReduceThreads) s += x[chan_index(j, HW, C, c)];
  block_sum2(s, unused, sh);
  const float mean = s / float(M);
  float ss = 0.f;
  unused = 0.f;
  for (int64_t j = threadIdx.x; j < M; j += kReduceThreads) {
    float d = x[chan_index(j, HW, C, c)] - mean;
    ss += d * d;
  }
  block_sum2(ss, unused, sh);
  const float var = ss / float(M);
  const float invstd = bn_invstd(var, eps);
  const float g = gamma[c], b = beta[c];
  for (int64_t j = threadIdx.x; j < M; j += kReduceThreads) {
    int64_t k = chan_index(j, HW, C, c);
    y[k] = bn_apply(bn_xhat(x[k], mean, invstd), g, b);
  }
  if (threadIdx.x == 0) {
    save_mean[c] = mean;
    save_invstd[c] = invstd;
    if (running_mean) running_mean[c] = bn_running_update(running_mean[c], mean, momentum);
    if (running_var) running_var[c] = bn_running_update(running_var[c], bn_unbiased_var(var, M), momentum);
  }
}

// grid = C blocks: sums of dy and dy * x_hat, then dgamma, dbeta and the full dx.
__global__ void bn_train_backward_kernel(int N, int C, int64_t HW, const float* dy, const float* x, const float* gamma,
                                         const float* save_mean, const float* save_invstd, float* dx, bool acc_dx,
                                         float* dgamma, bool acc_dgamma, float* dbeta, bool acc_dbeta) {
  __shared__ float sh[2 * kReduceThreads];
  const int c = blockIdx.x;
  const int64_t M = int64_t(N) * HW;
  const float mean = save_mean[c], invstd = save_invstd[c];
  float s_dy = 0.f, s_dyx = 0.f;
  for (int64_t j = threadIdx.x; j < M; j += kReduceThreads) {
    int64_t k = chan_index(j, HW, C, c);
    s_dy += dy[k];
    s_dyx += dy[k] * bn_xhat(x[k], mean, invstd);
  }
  block_sum2(s_dy, s_dyx, sh);
  if (threadIdx.x == 0) {
    if (dgamma) dgamma[c] = acc_dgamma ? dgamma[c] + s_dyx : s_dyx;
    if (dbeta) dbeta[c] = acc_dbeta ? dbeta[c] + s_dy : s_dy;
  }
  if (!dx) return;
  const float gi = gamma[c] * invstd, mean_dy = s_dy / float(M), mean_dyx = s_dyx / float(M);
  for (int64_t j = threadIdx.x; j < M; j += kReduceThreads) {
    int64_t k = chan_index(j, HW, C, c);
    float v = bn_train_dx(dy[k], bn_xhat(x[k], mean, invstd), gi, mean_dy, mean_dyx);
    dx[k] = acc_dx ? dx[k] + v : v;
  }
}

}  // namespace

void batchnorm_frozen_forward_cuda(CudaContext& ctx, const BatchNormParams& p, const float* x, const float* gamma,
                                   const float* beta, const float* mean, const float* var, float* y) {
  validate_batchnorm(p, false);
  const int64_t total = p.numel(), HW = int64_t(p.H) * p.W;
  bn_frozen_forward_kernel<<<cuda::grid_for(total), cuda::kBlock, 0, ctx.stream>>>(total, HW, p.C, float(p.eps), x,
                                                                                   gamma, beta, mean, var, y);
  CTDET_CUDA_LAUNCH_CHECK("bn_frozen_forward_kernel");
}

void batchnorm_frozen_backward_cuda(CudaContext& ctx, const BatchNormParams& p, const float* dy, const float* x,
                                    const float* gamma, const float* mean, const float* var, float* dx,
                                    bool accumulate_dx, float* dgamma, bool accumulate_dgamma, float* dbeta,
                                    bool accumulate_dbeta) {
  validate_batchnorm(p, false);
  CTDET_CHECK(!dgamma || (x && mean), "batchnorm frozen backward: dgamma needs x and mean");
  const int64_t total = p.numel(), HW = int64_t(p.H) * p.W;
  if (dx) {
    bn_frozen_dx_kernel<<<cuda::grid_for(total), cuda::kBlock, 0, ctx.stream>>>(total, HW, p.C, float(p.eps), dy,
                                                                                gamma, var, dx, accumulate_dx);
    CTDET_CUDA_LAUNCH_CHECK("bn_frozen_dx_kernel");
  }
  if (dgamma || dbeta) {
    bn_frozen_param_grad_kernel<<<p.C, kReduceThreads, 0, ctx.stream>>>(
        p.N, p.C, HW, float(p.eps), dy, x, mean, var, dgamma, accumulate_dgamma, dbeta, accumulate_dbeta);
    CTDET_CUDA_LAUNCH_CHECK("bn_frozen_param_grad_kernel");
  }
}

void batchnorm_train_forward_cuda(CudaContext& ctx, const BatchNormParams& p, const float* x, const float* gamma,
                                  const float* beta, float* running_mean, float* running_var, float* y,
                                  float* save_mean, float* save_invstd) {
  validate_batchnorm(p, true);
  bn_train_forward_kernel<<<p.C, kReduceThreads, 0, ctx.stream>>>(p.N, p.C, int64_t(p.H) * p.W, float(p.eps),
                                                                  float(p.momentum), x, gamma, beta, running_mean,
                                                                  running_var, y, save_mean, save_invstd);
  CTDET_CUDA_LAUNCH_CHECK("bn_train_forward_kernel");
}

void batchnorm_train_backward_cuda(CudaContext& ctx, const BatchNormParams& p, const float* dy, const float* x,
                                   const float* gamma, const float* save_mean, const float* save_invstd, float* dx,
                                   bool accumulate_dx, float* dgamma, bool accumulate_dgamma, float* dbeta,
                                   bool accumulate_dbeta) {
  validate_batchnorm(p, true);
  bn_train_backward_kernel<<<p.C, kReduceThreads, 0, ctx.stream>>>(p.N, p.C, int64_t(p.H) * p.W, dy, x, gamma,
                                                                   save_mean, save_invstd, dx, accumulate_dx, dgamma,
                                                                   accumulate_dgamma, dbeta, accumulate_dbeta);
  CTDET_CUDA_LAUNCH_CHECK("bn_train_backward_kernel");
}

}  // namespace ctdet
