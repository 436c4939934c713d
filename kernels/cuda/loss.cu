// CUDA kernels for kernels/loss.h. Per-row math from loss_math.h (shared with the CPU reference).
// Reductions are deterministic: one block sums the per-row values in a fixed order (thread-strided
// partials in double, then a fixed shared-memory tree), so repeated runs give identical bits.
// Workspace layout: float rows[R] | float normaliser (padded to 256 bytes).
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/launch.cuh"
#include "kernels/elementwise_math.h"
#include "kernels/loss.h"

namespace ctdet {
namespace {

using cuda::grid_for;
using cuda::kBlock;

constexpr int kReduceThreads = 256;

// Row validity on the device: like loss_row_valid, and labels outside [0, C) count as ignored (the CPU
// path throws for them instead).
__device__ __forceinline__ bool row_valid_dev(const int32_t* labels, int64_t C, const float* w, int64_t r) {
  if (labels) {
    const int32_t l = labels[r];
    if (l < 0 || l >= C) return false;
  }
  return w == nullptr || w[r] != 0.f;
}

// norm_out = *count if given, else the number of valid rows.
__global__ void loss_count_kernel(int64_t R, int64_t C, const int32_t* labels, const float* w, const int32_t* count,
                                  float* norm_out) {
  __shared__ long long sh[kReduceThreads];
  long long n = 0;
  if (!count)
    for (int64_t r = threadIdx.x; r < R; r += blockDim.x) n += row_valid_dev(labels, C, w, r) ? 1 : 0;
  sh[threadIdx.x] = n;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) *norm_out = count ? float(*count) : float(sh[0]);
}

// loss = norm > 0 ? scale * sum(rows) / norm : 0, summed in a fixed order.
__global__ void loss_sum_kernel(int64_t R, const float* rows, const float* norm, double scale, float* loss) {
  __shared__ double sh[kReduceThreads];
  double s = 0;
  for (int64_t r = threadIdx.x; r < R; r += blockDim.x) s += double(rows[r]);
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int k = blockDim.x / 2; k > 0; k >>= 1) {
    if ((int)threadIdx.x < k) sh[threadIdx.x] += sh[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const float n = *norm;
    *loss = n > 0.f ? float(scale * sh[0] / double(n)) : 0.f;
  }
}

__device__ __forceinline__ float grad_factor_dev(const float* norm, const float* dloss, double scale) {
  const float n = *norm;
  if (!(n > 0.f)) return 0.f;
  return float(scale * (dloss ? double(*dloss) : 1.0) / double(n));
}

// ---- softmax CE ----
__global__ void ce_rows_kernel(int64_t R, int64_t C, const float* x, const int32_t* labels, const float* w,
                               float* rows) {
  CTDET_GRID_STRIDE(r, R) {
    rows[r] = row_valid_dev(labels, C, w, r) ? (w ? w[r] : 1.f) * softmax_ce_row(x + r * C, C, labels[r]) : 0.f;
  }
}
__global__ void ce_grad_kernel(int64_t R, int64_t C, const float* x, const int32_t* labels, const float* w,
                               const float* norm, const float* dloss, double scale, float* dx, bool acc) {
  CTDET_GRID_STRIDE(r, R) {
    const float f = grad_factor_dev(norm, dloss, scale);
    const bool valid = row_valid_dev(labels, C, w, r) && f != 0.f;
    const float fr = valid ? f * (w ? w[r] : 1.f) : 0.f;
    const float lse = valid ? logsumexp_row(x + r * C, C) : 0.f;
    for (int64_t c = 0; c < C; ++c) {
      const float g = valid ? fr * softmax_ce_grad(x[r * C + c], lse, c == labels[r]) : 0.f;
      store_grad(dx + r * C + c, g, acc);
    }
  }
}

// ---- sigmoid CE ----
__global__ void bce_rows_kernel(int64_t R, int64_t C, const float* x, const float* z, const float* w, float* rows) {
  CTDET_GRID_STRIDE(r, R) {
    float s = 0.f;
    if (row_valid_dev(nullptr, C, w, r)) {
      for (int64_t c = 0; c < C; ++c) s += sigmoid_ce(x[r * C + c], z[r * C + c]);
      s *= w ? w[r] : 1.f;
    }
    rows[r] = s;
  }
}
__global__ void bce_grad_kernel(int64_t R, int64_t C, const float* x, const float* z, const float* w,
                                const float* norm, const float* dloss, double scale, float* dx, bool acc) {
  CTDET_GRID_STRIDE(i, R * C) {
    const int64_t r = i / C;
    const float f = grad_factor_dev(norm, dloss, scale);
    const bool valid = row_valid_dev(nullptr, C, w, r) && f != 0.f;
    const float g = valid ? f * (w ? w[r] : 1.f) * sigmoid_ce_grad(x[i], z[i]) : 0.f;
    store_grad(dx + i, g, acc);
  }
}

// ---- smooth L1 ----
__global__ void sl1_rows_kernel(int64_t R, int64_t C, const float* p, const float* t, const float* w, float delta,
                                float* rows) {
  CTDET_GRID_STRIDE(r, R) {
    float s = 0.f;
    if (row_valid_dev(nullptr, C, w, r)) {
      for (int64_t c = 0; c < C; ++c) s += huber(p[r * C + c] - t[r * C + c], delta);
      s *= w ? w[r] : 1.f;
    }
    rows[r] = s;
  }
}
__global__ void sl1_grad_kernel(int64_t R, int64_t C, const float* p, const float* t, const float* w, float delta,
                                const float* norm, const float* dloss, double scale, float* dx, bool acc) {
  CTDET_GRID_STRIDE(i, R * C) {
    const int64_t r = i / C;
    const float f = grad_factor_dev(norm, dloss, scale);
    const bool valid = row_valid_dev(nullptr, C, w, r) && f != 0.f;
    const float g = valid ? f * (w ? w[r] : 1.f) * huber_grad(p[i] - t[i], delta) : 0.f;
    store_grad(dx + i, g, acc);
  }
}

struct LossWs {
  float* rows;
  float* norm;
};
LossWs split_ws(void* ws, int64_t R) {
  CTDET_CHECK(ws != nullptr, "loss (cuda): workspace is null; size it with loss_workspace_bytes_cuda(", R, ")");
  float* f = static_cast<float*>(ws);
  return {f, f + R};
}

void launch_count(CudaContext& ctx, const LossParams& p, const int32_t* labels, const float* w, const int32_t* count,
                  float* norm) {
  loss_count_kernel<<<1, kReduceThreads, 0, ctx.stream>>>(p.R, p.C, labels, w, count, norm);
  CTDET_CUDA_LAUNCH_CHECK("loss_count_kernel");
}
void launch_sum(CudaContext& ctx, const LossParams& p, const LossWs& ws, float* loss) {
  loss_sum_kernel<<<1, kReduceThreads, 0, ctx.stream>>>(p.R, ws.rows, ws.norm, p.scale, loss);
  CTDET_CUDA_LAUNCH_CHECK("loss_sum_kernel");
}

}  // namespace

size_t loss_workspace_bytes_cuda(int64_t R) {
  const size_t b = size_t(R + 1) * sizeof(float);
  return (b + 255) / 256 * 256;
}

void softmax_cross_entropy_forward_cuda(CudaContext& ctx, const LossParams& p, const float* logits,
                                        const int32_t* labels, const float* weights, const int32_t* count,
                                        float* loss, void* workspace) {
  validate_loss("softmax_cross_entropy", p);
  LossWs ws = split_ws(workspace, p.R);
  launch_count(ctx, p, labels, weights, count, ws.norm);
  if (p.R > 0) {
    ce_rows_kernel<<<grid_for(p.R), kBlock, 0, ctx.stream>>>(p.R, p.C, logits, labels, weights, ws.rows);
    CTDET_CUDA_LAUNCH_CHECK("ce_rows_kernel");
  }
  launch_sum(ctx, p, ws, loss);
}
void softmax_cross_entropy_backward_cuda(CudaContext& ctx, const LossParams& p, const float* dloss,
                                         const float* logits, const int32_t* labels, const float* weights,
                                         const int32_t* count, float* dlogits, bool accumulate_dlogits,
                                         void* workspace) {
  validate_loss("softmax_cross_entropy backward", p);
  LossWs ws = split_ws(workspace, p.R);
  launch_count(ctx, p, labels, weights, count, ws.norm);
  if (p.R == 0) return;
  ce_grad_kernel<<<grid_for(p.R), kBlock, 0, ctx.stream>>>(p.R, p.C, logits, labels, weights, ws.norm, dloss, p.scale,
                                                            dlogits, accumulate_dlogits);
  CTDET_CUDA_LAUNCH_CHECK("ce_grad_kernel");
}

void sigmoid_cross_entropy_forward_cuda(CudaContext& ctx, const LossParams& p, const float* logits,
                                        const float* targets, const float* weights, const int32_t* count,
                                        float* loss, void* workspace) {
  validate_loss("sigmoid_cross_entropy", p);
  LossWs ws = split_ws(workspace, p.R);
  launch_count(ctx, p, nullptr, weights, count, ws.norm);
  if (p.R > 0) {
    bce_rows_kernel<<<grid_for(p.R), kBlock, 0, ctx.stream>>>(p.R, p.C, logits, targets, weights, ws.rows);
    CTDET_CUDA_LAUNCH_CHECK("bce_rows_kernel");
  }
  launch_sum(ctx, p, ws, loss);
}
void sigmoid_cross_entropy_backward_cuda(CudaContext& ctx, const LossParams& p, const float* dloss,
                                         const float* logits, const float* targets, const float* weights,
                                         const int32_t* count, float* dlogits, bool accumulate_dlogits,
                                         void* workspace) {
  validate_loss("sigmoid_cross_entropy backward", p);
  LossWs ws = split_ws(workspace, p.R);
  launch_count(ctx, p, nullptr, weights, count, ws.norm);
  if (p.R == 0) return;
  bce_grad_kernel<<<grid_for(p.R * p.C), kBlock, 0, ctx.stream>>>(p.R, p.C, logits, targets, weights, ws.norm, dloss,
                                                                   p.scale, dlogits, accumulate_dlogits);
  CTDET_CUDA_LAUNCH_CHECK("bce_grad_kernel");
}

void smooth_l1_forward_cuda(CudaContext& ctx, const LossParams& p, const float* pred, const float* target,
                            const float* weights, const int32_t* count, float* loss, void* workspace) {
  validate_loss("smooth_l1", p);
  LossWs ws = split_ws(workspace, p.R);
  launch_count(ctx, p, nullptr, weights, count, ws.norm);
  if (p.R > 0) {
    sl1_rows_kernel<<<grid_for(p.R), kBlock, 0, ctx.stream>>>(p.R, p.C, pred, target, weights, float(p.delta),
                                                               ws.rows);
    CTDET_CUDA_LAUNCH_CHECK("sl1_rows_kernel");
  }
  launch_sum(ctx, p, ws, loss);
}
void smooth_l1_backward_cuda(CudaContext& ctx, const LossParams& p, const float* dloss, const float* pred,
                             const float* target, const float* weights, const int32_t* count, float* dpred,
                             bool accumulate_dpred, void* workspace) {
  validate_loss("smooth_l1 backward", p);
  LossWs ws = split_ws(workspace, p.R);
  launch_count(ctx, p, nullptr, weights, count, ws.norm);
  if (p.R == 0) return;
  sl1_grad_kernel<<<grid_for(p.R * p.C), kBlock, 0, ctx.stream>>>(p.R, p.C, pred, target, weights, float(p.delta),
                                                                   ws.norm, dloss, p.scale, dpred, accumulate_dpred);
  CTDET_CUDA_LAUNCH_CHECK("sl1_grad_kernel");
}

}  // namespace ctdet
