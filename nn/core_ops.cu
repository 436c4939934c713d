// CUDA versions of the core ops (f32). The per-element math is nn/core_ops.h, shared with the CPU loops.
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/launch.cuh"
#include "nn/core_ops.h"
#include "nn/cuda_context.h"
#include "nn/op_registry.h"

namespace ctdet {

using namespace opio;

namespace {

__global__ void fill_kernel(float* y, int64_t n, float v, bool acc) {
  CTDET_GRID_STRIDE(i, n) store_acc(y, i, v, acc);
}
__global__ void add_bias_rows_kernel(float* y, const float* b, int64_t M, int64_t N) {
  CTDET_GRID_STRIDE(i, M * N) y[i] += b[i % N];
}
__global__ void sum_rows_kernel(const float* dy, float* db, int M, int N, bool acc) {
  CTDET_GRID_STRIDE(j, N) {
    float s = 0.f;
    for (int i = 0; i < M; ++i) s += dy[int64_t(i) * N + j];
    store_acc(db, j, s, acc);
  }
}
__global__ void binary_kernel(const float* a, const float* b, float* y, int64_t n, int kind, bool acc) {
  CTDET_GRID_STRIDE(i, n) store_acc(y, i, kind == 0 ? a[i] + b[i] : a[i] * b[i], acc);
}
__global__ void unary_kernel(const float* x, float* y, int64_t n, int kind, float alpha, bool acc) {
  CTDET_GRID_STRIDE(i, n) {
    float v = x[i];
    store_acc(y, i, kind == 0 ? v : (kind == 1 ? alpha * v : relu_fn(v)), acc);
  }
}
__global__ void relu_grad_kernel(const float* dy, const float* y, float* dx, int64_t n, bool acc) {
  CTDET_GRID_STRIDE(i, n) store_acc(dx, i, relu_grad_fn(dy[i], y[i]), acc);
}
// One block, fixed-order tree reduction in double: deterministic across runs.
__global__ void sum_kernel(const float* x, int64_t n, float* y, bool acc) {
  __shared__ double part[ctdet::cuda::kBlock];
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += double(x[i]);
  part[threadIdx.x] = s;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (int(threadIdx.x) < w) part[threadIdx.x] += part[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) store_acc(y, 0, float(part[0]), acc);
}
__global__ void expand_kernel(const float* s, float* y, int64_t n, bool acc) {
  CTDET_GRID_STRIDE(i, n) store_acc(y, i, s[0], acc);
}

}  // namespace

void core_fill_cuda(OpContext& c) {
  int64_t n = c.out[0].numel();
  fill_kernel<<<cuda::grid_for(n), cuda::kBlock, 0, c.cuda->stream>>>(fout(c, 0), n,
                                                                      float(c.attrs<FillAttrs>().value), c.accumulate(0));
  CTDET_CUDA_LAUNCH_CHECK("fill_kernel");
}

// Row-major GEMMs through column-major cuBLAS: a row-major (R,C) buffer is a column-major (C,R) matrix.
void core_linear_cuda(OpContext& c) {
  int M = int(c.in[0].shape[0]), K = int(c.in[0].shape[1]), N = int(c.in[1].shape[0]);
  float one = 1.f, beta = c.accumulate(0) ? 1.f : 0.f;
  // y^T (N,M) = w (N,K) * x^T (K,M)
  CTDET_CUBLAS_CHECK(cublasSgemm(c.cuda->cublas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, fin(c, 1), K, fin(c, 0), K,
                                 &beta, fout(c, 0), N));
  if (c.in.size() > 2) {
    add_bias_rows_kernel<<<cuda::grid_for(int64_t(M) * N), cuda::kBlock, 0, c.cuda->stream>>>(fout(c, 0), fin(c, 2),
                                                                                              M, N);
    CTDET_CUDA_LAUNCH_CHECK("add_bias_rows_kernel");
  }
}
void core_linear_grad_x_cuda(OpContext& c) {  // dx (M,K) = dy (M,N) w (N,K)
  int M = int(c.in[0].shape[0]), N = int(c.in[0].shape[1]), K = int(c.in[1].shape[1]);
  float one = 1.f, beta = c.accumulate(0) ? 1.f : 0.f;
  CTDET_CUBLAS_CHECK(cublasSgemm(c.cuda->cublas, CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, &one, fin(c, 1), K, fin(c, 0), N,
                                 &beta, fout(c, 0), K));
}
void core_linear_grad_w_cuda(OpContext& c) {  // dw (N,K) = dy^T (N,M) x (M,K)
  int M = int(c.in[0].shape[0]), N = int(c.in[0].shape[1]), K = int(c.in[1].shape[1]);
  float one = 1.f, beta = c.accumulate(0) ? 1.f : 0.f;
  CTDET_CUBLAS_CHECK(cublasSgemm(c.cuda->cublas, CUBLAS_OP_N, CUBLAS_OP_T, K, N, M, &one, fin(c, 1), K, fin(c, 0), N,
                                 &beta, fout(c, 0), K));
}
void core_sum_rows_cuda(OpContext& c) {
  int M = int(c.in[0].shape[0]), N = int(c.in[0].shape[1]);
  sum_rows_kernel<<<cuda::grid_for(N), cuda::kBlock, 0, c.cuda->stream>>>(fin(c, 0), fout(c, 0), M, N, c.accumulate(0));
  CTDET_CUDA_LAUNCH_CHECK("sum_rows_kernel");
}
void core_binary_cuda(OpContext& c, int kind) {
  int64_t n = c.out[0].numel();
  binary_kernel<<<cuda::grid_for(n), cuda::kBlock, 0, c.cuda->stream>>>(fin(c, 0), fin(c, 1), fout(c, 0), n, kind,
                                                                        c.accumulate(0));
  CTDET_CUDA_LAUNCH_CHECK("binary_kernel");
}
void core_unary_cuda(OpContext& c, int kind) {
  int64_t n = c.out[0].numel();
  float alpha = kind == 1 ? float(c.attrs<ScaleAttrs>().alpha) : 1.f;
  unary_kernel<<<cuda::grid_for(n), cuda::kBlock, 0, c.cuda->stream>>>(fin(c, 0), fout(c, 0), n, kind, alpha,
                                                                       c.accumulate(0));
  CTDET_CUDA_LAUNCH_CHECK("unary_kernel");
}
void core_relu_grad_cuda(OpContext& c) {
  int64_t n = c.out[0].numel();
  relu_grad_kernel<<<cuda::grid_for(n), cuda::kBlock, 0, c.cuda->stream>>>(fin(c, 0), fin(c, 1), fout(c, 0), n,
                                                                           c.accumulate(0));
  CTDET_CUDA_LAUNCH_CHECK("relu_grad_kernel");
}
void core_sum_cuda(OpContext& c) {
  sum_kernel<<<1, cuda::kBlock, 0, c.cuda->stream>>>(fin(c, 0), c.in[0].numel(), fout(c, 0), c.accumulate(0));
  CTDET_CUDA_LAUNCH_CHECK("sum_kernel");
}
void core_expand_cuda(OpContext& c) {
  int64_t n = c.out[0].numel();
  expand_kernel<<<cuda::grid_for(n), cuda::kBlock, 0, c.cuda->stream>>>(fin(c, 0), fout(c, 0), n, c.accumulate(0));
  CTDET_CUDA_LAUNCH_CHECK("expand_kernel");
}

}  // namespace ctdet
