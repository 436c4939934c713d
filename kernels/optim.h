// Optimizer ops: fused SGD with momentum (TF MomentumOptimizer semantics, see optim_math.h) and gradient
// clipping by global norm or by per-tensor norm.
//
// Clipping never applies a non-finite norm: if the norm (global, or a tensor's own) is NaN or Inf, the
// gradients it covers are left untouched and the norm is returned/written so the caller can skip the step.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/optim_math.h"
#if CTDET_WITH_CUDA
#include "nn/cuda_context.h"
#endif

namespace ctdet {

struct SgdParams {
  double lr = 0.0;
  double momentum = 0.9;
  double weight_decay = 0.0;  // added to the gradient as wd * var before the update
};
// Throws ctdet::Error for a negative or non-finite lr / momentum / weight_decay, or n < 0.
void validate_sgd(const SgdParams& p, int64_t n);

template <typename T>
void sgd_momentum_update_cpu(const SgdParams& p, int64_t n, T* var /*(n)*/, T* accum /*(n)*/, const T* grad /*(n)*/);

// Throws ctdet::Error for clip <= 0 / non-finite, k < 0, or a negative size.
void validate_clip(const char* op, double clip, int k, const int64_t* sizes);

// Scales every grads[i] (sizes[i] values) by clip / max(norm, clip), where norm is the L2 norm of all of
// them together (sum of squares in double). Returns the norm; non-finite: nothing is scaled.
template <typename T>
double clip_by_global_norm_cpu(double clip, int k, T* const* grads /*k x (sizes[i])*/, const int64_t* sizes /*(k)*/);

// Scales each grads[i] by clip / max(norm_i, clip) with its own norm. norms (k, may be null) receives the
// norms. Returns true when every norm was finite; tensors with a non-finite norm are left untouched.
template <typename T>
bool clip_by_tensor_norm_cpu(double clip, int k, T* const* grads, const int64_t* sizes, double* norms /*(k) or null*/);

#if CTDET_WITH_CUDA
void sgd_momentum_update_cuda(CudaContext& ctx, const SgdParams& p, int64_t n, float* var, float* accum,
                              const float* grad);
// Scratch for the clipping kernels: fixed per-tensor partial sums (doubles) plus one slot per tensor.
size_t clip_workspace_bytes_cuda(int k, const int64_t* sizes);
// grads: host array of k device pointers; sizes: host array. norm: device (1). Deterministic: fixed grid per
// tensor size, per-block partials, then fixed-order sums in double. The scale kernels read the norm on the
// device (no host sync); when it is non-finite they leave the gradients untouched.
void clip_by_global_norm_cuda(CudaContext& ctx, double clip, int k, float* const* grads, const int64_t* sizes,
                              float* norm, void* workspace);
// norms: device (k).
void clip_by_tensor_norm_cuda(CudaContext& ctx, double clip, int k, float* const* grads, const int64_t* sizes,
                              float* norms, void* workspace);
#endif

}  // namespace ctdet
