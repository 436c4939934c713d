// linear (fully connected) layer with torch's weight layout, row-major:
//   x (M, K), w (N, K), b (N), y (M, N):  y[m,n] = b[n] + sum_k x[m,k] * w[n,k]   (y = x w^T + b)
// Backward: dx = dy w (M,K), dw = dy^T x (N,K), db = sum_m dy (N), each with an accumulate flag.
// CPU: float through OpenBLAS sgemm, double through plain loops. CUDA: cublasSgemm with the context's
// math mode (CUBLAS_DEFAULT_MATH: no TF32). M = 0 (no rows, e.g. zero ROIs) is allowed: y is empty,
// dw/db are zeroed (or left as they are when accumulating).
#pragma once
#include <cstdint>

#if CTDET_WITH_CUDA
#include "nn/cuda_context.h"
#endif

namespace ctdet {

struct LinearParams {
  int M = 0;  // rows (batch)
  int K = 0;  // input features
  int N = 0;  // output features
  bool has_bias = true;
};

// Throws ctdet::Error naming "linear" and the offending value (M < 0, K <= 0, N <= 0).
void validate_linear(const LinearParams& p);

template <typename T>
void linear_forward_cpu(const LinearParams& p, const T* x /*(M,K)*/, const T* w /*(N,K)*/,
                        const T* b /*(N) or null*/, T* y /*(M,N)*/);

// Any of dx, dw, db may be nullptr to skip it (db is skipped when !p.has_bias).
template <typename T>
void linear_backward_cpu(const LinearParams& p, const T* dy /*(M,N)*/, const T* x /*(M,K)*/,
                         const T* w /*(N,K)*/, T* dx /*(M,K)*/, bool accumulate_dx, T* dw /*(N,K)*/,
                         bool accumulate_dw, T* db /*(N)*/, bool accumulate_db);

#if CTDET_WITH_CUDA
void linear_forward_cuda(CudaContext& ctx, const LinearParams& p, const float* x /*(M,K)*/,
                         const float* w /*(N,K)*/, const float* b /*(N) or null*/, float* y /*(M,N)*/);
void linear_backward_cuda(CudaContext& ctx, const LinearParams& p, const float* dy /*(M,N)*/,
                          const float* x /*(M,K)*/, const float* w /*(N,K)*/, float* dx /*(M,K)*/,
                          bool accumulate_dx, float* dw /*(N,K)*/, bool accumulate_dw, float* db /*(N)*/,
                          bool accumulate_db);
#endif

}  // namespace ctdet
