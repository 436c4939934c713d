// Error macros for CUDA, cuBLAS and cuDNN: each throws ctdet::Error naming the expression, file, line
// and the library's own message. Include only from .cu files (or host files compiled with CTDET_WITH_CUDA).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "nn/error.h"

namespace ctdet::detail {
inline const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_<unknown>";
  }
}
}  // namespace ctdet::detail

#define CTDET_CUDA_CHECK(expr)                                                                      \
  do {                                                                                              \
    cudaError_t ctdet_err_ = (expr);                                                                \
    if (ctdet_err_ != cudaSuccess)                                                                  \
      ::ctdet::detail::throw_error(__FILE__, __LINE__, #expr,                                       \
                                   ::ctdet::str("CUDA error ", cudaGetErrorName(ctdet_err_), ": ", \
                                                cudaGetErrorString(ctdet_err_)));                   \
  } while (0)

#define CTDET_CUBLAS_CHECK(expr)                                                                        \
  do {                                                                                                  \
    cublasStatus_t ctdet_st_ = (expr);                                                                  \
    if (ctdet_st_ != CUBLAS_STATUS_SUCCESS)                                                             \
      ::ctdet::detail::throw_error(__FILE__, __LINE__, #expr,                                           \
                                   ::ctdet::str("cuBLAS error ", ::ctdet::detail::cublas_status_name(ctdet_st_))); \
  } while (0)

#define CTDET_CUDNN_CHECK(expr)                                                                          \
  do {                                                                                                   \
    cudnnStatus_t ctdet_st_ = (expr);                                                                    \
    if (ctdet_st_ != CUDNN_STATUS_SUCCESS)                                                               \
      ::ctdet::detail::throw_error(__FILE__, __LINE__, #expr,                                            \
                                   ::ctdet::str("cuDNN error ", cudnnGetErrorString(ctdet_st_)));        \
  } while (0)

// After every kernel launch: catches launch-configuration errors at the launch site, naming the kernel.
#define CTDET_CUDA_LAUNCH_CHECK(name)                                                                  \
  do {                                                                                                 \
    cudaError_t ctdet_err_ = cudaGetLastError();                                                       \
    if (ctdet_err_ != cudaSuccess)                                                                     \
      ::ctdet::detail::throw_error(__FILE__, __LINE__, "",                                             \
                                   ::ctdet::str("launch of ", name, " failed: ",                       \
                                                cudaGetErrorName(ctdet_err_), ": ",                    \
                                                cudaGetErrorString(ctdet_err_)));                      \
  } while (0)
