// linear on CUDA: cublasSgemm on row-major data through the column-major identity
// (a row-major (r,c) matrix is a column-major (c,r) one), with the handle's math mode (no TF32).
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/launch.cuh"
#include "kernels/matmul.h"

namespace ctdet {
namespace {

__global__ void linear_bias_fill_kernel(int64_t M, int N, const float* b /*(N)*/, float* y /*(M,N)*/) {
  CTDET_GRID_STRIDE(i, M * N) { y[i] = b[i % N]; }
}

// One thread per output feature n, summing its column of dy in a fixed order (deterministic).
__global__ void linear_bias_grad_kernel(int M, int N, const float* dy /*(M,N)*/, float* db /*(N)*/, bool accumulate) {
  CTDET_GRID_STRIDE(n, N) {
    float s = 0.f;
    for (int m = 0; m < M; ++m) s += dy[int64_t(m) * N + n];
    db[n] = accumulate ? db[n] + s : s;
  }
}

__global__ void fill_zero_kernel(int64_t n, float* v) {
  CTDET_GRID_STRIDE(i, n) { v[i] = 0.f; }
}

}  // namespace

void linear_forward_cuda(CudaContext& ctx, const LinearParams& p, const float* x, const float* w, const float* b,
                         float* y) {
  validate_linear(p);
  CTDET_CHECK(!p.has_bias || b != nullptr, "linear: has_bias is set but the bias pointer is null");
  if (p.M == 0) return;
  const float one = 1.f;
  float beta = 0.f;
  if (p.has_bias) {
    int64_t n = int64_t(p.M) * p.N;
    linear_bias_fill_kernel<<<cuda::grid_for(n), cuda::kBlock, 0, ctx.stream>>>(p.M, p.N, b, y);
    CTDET_CUDA_LAUNCH_CHECK("linear_bias_fill_kernel");
    beta = 1.f;
  }
  // y^T (N,M) = w (N,K) as col-major (K,N) transposed  x  x^T (K,M) col-major.
  CTDET_CUBLAS_CHECK(cublasSgemm(ctx.cublas, CUBLAS_OP_T, CUBLAS_OP_N, p.N, p.M, p.K, &one, w, p.K, x, p.K, &beta, y,
                                 p.N));
}

void linear_backward_cuda(CudaContext& ctx, const LinearParams& p, const float* dy, const float* x, const float* w,
                          float* dx, bool accumulate_dx, float* dw, bool accumulate_dw, float* db,
                          bool accumulate_db) {
  validate_linear(p);
  const float one = 1.f;
  if (dx && p.M > 0) {
    // dx^T (K,M) = w^T (K,N) [w col-major (K,N)]  x  dy^T (N,M) [dy col-major (N,M)]
    const float beta = accumulate_dx ? 1.f : 0.f;
    CTDET_CUBLAS_CHECK(cublasSgemm(ctx.cublas, CUBLAS_OP_N, CUBLAS_OP_N, p.K, p.M, p.N, &one, w, p.K, dy, p.N, &beta,
                                   dx, p.K));
  }
  if (dw) {
    if (p.M > 0) {
      // dw^T (K,N) = x^T (K,M) [x col-major (K,M)]  x  dy (M,N) [transpose of dy col-major (N,M)]
      const float beta = accumulate_dw ? 1.f : 0.f;
      CTDET_CUBLAS_CHECK(cublasSgemm(ctx.cublas, CUBLAS_OP_N, CUBLAS_OP_T, p.K, p.N, p.M, &one, x, p.K, dy, p.N,
                                     &beta, dw, p.K));
    } else if (!accumulate_dw) {
      int64_t n = int64_t(p.N) * p.K;
      fill_zero_kernel<<<cuda::grid_for(n), cuda::kBlock, 0, ctx.stream>>>(n, dw);
      CTDET_CUDA_LAUNCH_CHECK("fill_zero_kernel");
    }
  }
  if (db && p.has_bias) {
    linear_bias_grad_kernel<<<cuda::grid_for(p.N), cuda::kBlock, 0, ctx.stream>>>(p.M, p.N, dy, db, accumulate_db);
    CTDET_CUDA_LAUNCH_CHECK("linear_bias_grad_kernel");
  }
}

}  // namespace ctdet
