// Optimizer ops: fused SGD with momentum (TF MomentumOptimizer semantics, see optim_math.h) and gradient
// clipping by global norm or by per-tensor norm.
//
// Clipping never applies a non-finite norm: if the norm (global, or a tensor's own) is NaN or Inf, the
// gradients it covers are left untouched and the norm is returned/written so the caller can skip the step.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

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

// ---- multi-tensor form: one step over a list of tensors ----------------------------------------------------
// k tensors var[i], accum[i], grad[i] of sizes[i] values each. grad[i] may be null: that parameter got no
// gradient this step (a zero gradient: its momentum still decays, var moves by lr * momentum * accum).
// Clipping covers the non-null gradients, as clip_by_global_norm (per_tensor false) or clip_by_tensor_norm;
// norms receives 1 value (global) or k (per tensor; 0 for a null gradient). When any norm is non-finite no
// parameter or momentum changes (per tensor: finite gradients may be scaled) and false is returned.
template <typename T>
bool clipped_sgd_update_list_cpu(const SgdParams& p, double clip, bool per_tensor, int k, T* const* var,
                                 T* const* accum, T* const* grad, const int64_t* sizes, double* norms);

// The CUDA form runs in fixed chunks of at most kListChunk values, each inside one tensor, so a whole list
// takes one launch per phase however many tensors it has. A tensor's chunks are consecutive.
constexpr int kListChunk = 16384;
struct ListChunk {
  int32_t tensor = 0;  // index into the list
  int32_t len = 0;     // values in this chunk (1..kListChunk)
  int64_t start = 0;   // first value, within the tensor
};
struct ListTensor {
  float* var = nullptr;
  float* accum = nullptr;
  const float* grad = nullptr;  // null: zero gradient
  int64_t n = 0;
};
// The chunks of a list with these sizes; first_chunk (k + 1 values) gets each tensor's first chunk index and the
// total at the end. Throws for a negative size.
std::vector<ListChunk> list_chunks(int k, const int64_t* sizes, std::vector<int64_t>* first_chunk);

#if CTDET_WITH_CUDA
// Phase 1 of a multi-tensor step on the device (tables in device memory, as list_chunks gives them).
// norms (device): 1 value (global) or k (per tensor), the L2 norms of the gradients, sums of squares in double
// per chunk, then in fixed order (deterministic). workspace: clip_list_workspace_bytes_cuda.
size_t clip_list_workspace_bytes_cuda(int k, int64_t n_chunks);
void clip_norms_list_cuda(CudaContext& ctx, bool per_tensor, int k, const ListTensor* tensors, int64_t n_chunks,
                          const ListChunk* chunks, const int64_t* first_chunk, float* norms, void* workspace);
// Phase 2, after the caller checked the norms on the host: each gradient scaled by clip_factor(its norm, clip)
// (the global norm, or its tensor's), then the SGD momentum step, one fused pass; the gradients are not written.
// A non-finite norm leaves its tensors untouched.
void clipped_sgd_update_list_cuda(CudaContext& ctx, const SgdParams& p, double clip, bool per_tensor,
                                  const ListTensor* tensors, int64_t n_chunks, const ListChunk* chunks,
                                  const float* norms);

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
