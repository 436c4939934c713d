// Batch normalisation over (N, H, W) per channel, NCHW.
//
// Frozen (inference statistics; the TF-OD configs keep BN frozen):
//   scale = gamma / sqrt(var + eps), shift = beta - mean * scale, y = x * scale + shift.
//   Backward: dx = dy * scale; optionally dgamma = sum dy * (x - mean) / sqrt(var + eps), dbeta = sum dy.
//   fold_frozen_bn_into_conv turns conv followed by frozen BN into one conv (inference).
// Training (batch statistics, like torch.nn.BatchNorm2d in train mode):
//   mean, biased var over N*H*W; y = gamma * (x - mean) / sqrt(var + eps) + beta; saves mean and invstd;
//   running_mean/var <- (1 - momentum) * running + momentum * (mean, UNBIASED var). Full backward.
// Math per element: kernels/batchnorm_math.h.
#pragma once
#include <cstdint>

#include "kernels/conv2d.h"

#if CTDET_WITH_CUDA
#include "nn/cuda_context.h"
#endif

namespace ctdet {

struct BatchNormParams {
  int N = 1, C = 0, H = 1, W = 1;
  double eps = 1e-5;
  double momentum = 0.1;  // torch convention: weight of the new batch statistic
  int64_t count() const { return int64_t(N) * H * W; }  // elements per channel
  int64_t numel() const { return int64_t(N) * C * H * W; }
};

// Throws ctdet::Error naming "batchnorm" and the value: non-positive sizes, eps <= 0, momentum outside
// [0,1], and in training a channel with a single element (the unbiased variance needs count > 1).
void validate_batchnorm(const BatchNormParams& p, bool training);

// ---- frozen ------------------------------------------------------------------------------------------
template <typename T>
void batchnorm_frozen_scale_shift_cpu(int C, const T* gamma /*(C)*/, const T* beta /*(C)*/, const T* mean /*(C)*/,
                                      const T* var /*(C)*/, double eps, T* scale /*(C)*/, T* shift /*(C)*/);

template <typename T>
void batchnorm_frozen_forward_cpu(const BatchNormParams& p, const T* x /*(N,C,H,W)*/, const T* gamma /*(C)*/,
                                  const T* beta /*(C)*/, const T* mean /*(C)*/, const T* var /*(C)*/,
                                  T* y /*(N,C,H,W)*/);

// dx, dgamma, dbeta may each be nullptr. x and mean are read only for dgamma.
template <typename T>
void batchnorm_frozen_backward_cpu(const BatchNormParams& p, const T* dy /*(N,C,H,W)*/, const T* x /*(N,C,H,W)*/,
                                   const T* gamma /*(C)*/, const T* mean /*(C)*/, const T* var /*(C)*/,
                                   T* dx /*(N,C,H,W)*/, bool accumulate_dx, T* dgamma /*(C)*/,
                                   bool accumulate_dgamma, T* dbeta /*(C)*/, bool accumulate_dbeta);

// w_out[k,...] = w[k,...] * scale[k]; b_out[k] = (b ? b[k] : 0) * scale[k] + shift[k], with the scale and
// shift of the frozen BN on the conv's K output channels. w_out may alias w and b_out may alias b.
template <typename T>
void fold_frozen_bn_into_conv(const Conv2dParams& conv, const T* w /*(K,C/g,R,S)*/, const T* b /*(K) or null*/,
                              const T* gamma /*(K)*/, const T* beta /*(K)*/, const T* mean /*(K)*/,
                              const T* var /*(K)*/, double eps, T* w_out /*(K,C/g,R,S)*/, T* b_out /*(K)*/);

// ---- training ----------------------------------------------------------------------------------------
// running_mean / running_var may be nullptr (no running statistics kept).
template <typename T>
void batchnorm_train_forward_cpu(const BatchNormParams& p, const T* x /*(N,C,H,W)*/, const T* gamma /*(C)*/,
                                 const T* beta /*(C)*/, T* running_mean /*(C) in/out*/, T* running_var /*(C) in/out*/,
                                 T* y /*(N,C,H,W)*/, T* save_mean /*(C)*/, T* save_invstd /*(C)*/);

template <typename T>
void batchnorm_train_backward_cpu(const BatchNormParams& p, const T* dy /*(N,C,H,W)*/, const T* x /*(N,C,H,W)*/,
                                  const T* gamma /*(C)*/, const T* save_mean /*(C)*/, const T* save_invstd /*(C)*/,
                                  T* dx /*(N,C,H,W)*/, bool accumulate_dx, T* dgamma /*(C)*/, bool accumulate_dgamma,
                                  T* dbeta /*(C)*/, bool accumulate_dbeta);

#if CTDET_WITH_CUDA
void batchnorm_frozen_forward_cuda(CudaContext& ctx, const BatchNormParams& p, const float* x /*(N,C,H,W)*/,
                                   const float* gamma /*(C)*/, const float* beta /*(C)*/, const float* mean /*(C)*/,
                                   const float* var /*(C)*/, float* y /*(N,C,H,W)*/);
void batchnorm_frozen_backward_cuda(CudaContext& ctx, const BatchNormParams& p, const float* dy /*(N,C,H,W)*/,
                                    const float* x /*(N,C,H,W)*/, const float* gamma /*(C)*/,
                                    const float* mean /*(C)*/, const float* var /*(C)*/, float* dx /*(N,C,H,W)*/,
                                    bool accumulate_dx, float* dgamma /*(C)*/, bool accumulate_dgamma,
                                    float* dbeta /*(C)*/, bool accumulate_dbeta);
void batchnorm_train_forward_cuda(CudaContext& ctx, const BatchNormParams& p, const float* x /*(N,C,H,W)*/,
                                  const float* gamma /*(C)*/, const float* beta /*(C)*/,
                                  float* running_mean /*(C) in/out*/, float* running_var /*(C) in/out*/,
                                  float* y /*(N,C,H,W)*/, float* save_mean /*(C)*/, float* save_invstd /*(C)*/);
void batchnorm_train_backward_cuda(CudaContext& ctx, const BatchNormParams& p, const float* dy /*(N,C,H,W)*/,
                                   const float* x /*(N,C,H,W)*/, const float* gamma /*(C)*/,
                                   const float* save_mean /*(C)*/, const float* save_invstd /*(C)*/,
                                   float* dx /*(N,C,H,W)*/, bool accumulate_dx, float* dgamma /*(C)*/,
                                   bool accumulate_dgamma, float* dbeta /*(C)*/, bool accumulate_dbeta);
#endif

}  // namespace ctdet
