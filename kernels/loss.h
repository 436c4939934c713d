// Losses over R rows: softmax cross-entropy, sigmoid cross-entropy with logits, smooth L1 (TF Huber).
//
// Every loss is  loss = scale * sum_r w_r * rowloss_r / count
//   w_r     per-row weight (weights pointer may be null: all 1);
//   count   the valid count: *count when the caller passes one (e.g. the number of sampled anchors),
//           otherwise the number of valid rows. A row is valid unless its label is -1 (softmax CE) or its
//           weight is 0. count <= 0 gives loss 0 and gradient 0 (no NaN).
//   scale   a constant factor from the params (loss weight, 1/batch ...).
// Backward writes d(loss)/d(input) * dloss (dloss: pointer to the upstream scalar, null = 1), with an
// accumulate flag. Ignored rows (label -1, weight 0) get gradient 0.
// CPU: sums in double, in row order. CUDA: per-row kernels write partial values to a workspace and a single
// block sums them in a fixed order, so results are bitwise reproducible run to run.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/loss_math.h"
#if CTDET_WITH_CUDA
#include "nn/cuda_context.h"
#endif

namespace ctdet {

struct LossParams {
  int64_t R = 0;       // rows
  int64_t C = 0;       // columns per row: classes (CE, sigmoid CE), box coordinates (smooth L1, usually 4)
  double scale = 1.0;  // multiplies loss and gradient
  double delta = 1.0;  // smooth L1 (Huber) transition point, > 0
};
// Throws ctdet::Error naming the op for R < 0, C <= 0, delta <= 0 (smooth L1), non-finite scale.
void validate_loss(const char* op, const LossParams& p);

// ---- softmax cross-entropy: logits (R,C), labels (R) int32 in [0,C) or -1 = ignored -----------------
// CPU throws ctdet::Error naming the row for a label outside [-1, C); CUDA treats such a row as ignored.
template <typename T>
void softmax_cross_entropy_forward_cpu(const LossParams& p, const T* logits /*(R,C)*/, const int32_t* labels /*(R)*/,
                                       const T* weights /*(R) or null*/, const int32_t* count /*(1) or null*/,
                                       T* loss /*(1)*/);
template <typename T>
void softmax_cross_entropy_backward_cpu(const LossParams& p, const T* dloss /*(1) or null*/, const T* logits /*(R,C)*/,
                                        const int32_t* labels /*(R)*/, const T* weights /*(R) or null*/,
                                        const int32_t* count /*(1) or null*/, T* dlogits /*(R,C)*/,
                                        bool accumulate_dlogits);

// ---- sigmoid cross-entropy with logits: logits (R,C), targets (R,C) in [0,1] ------------------------------
// CPU throws ctdet::Error naming the element for a target outside [0,1].
template <typename T>
void sigmoid_cross_entropy_forward_cpu(const LossParams& p, const T* logits /*(R,C)*/, const T* targets /*(R,C)*/,
                                       const T* weights /*(R) or null*/, const int32_t* count /*(1) or null*/,
                                       T* loss /*(1)*/);
template <typename T>
void sigmoid_cross_entropy_backward_cpu(const LossParams& p, const T* dloss /*(1) or null*/, const T* logits /*(R,C)*/,
                                        const T* targets /*(R,C)*/, const T* weights /*(R) or null*/,
                                        const int32_t* count /*(1) or null*/, T* dlogits /*(R,C)*/,
                                        bool accumulate_dlogits);

// ---- smooth L1 (TF Huber with p.delta) summed over the C columns of a row: pred, target (R,C) ---------------
// Gradient only for pred (targets are constants in the detector).
template <typename T>
void smooth_l1_forward_cpu(const LossParams& p, const T* pred /*(R,C)*/, const T* target /*(R,C)*/,
                           const T* weights /*(R) or null*/, const int32_t* count /*(1) or null*/, T* loss /*(1)*/);
template <typename T>
void smooth_l1_backward_cpu(const LossParams& p, const T* dloss /*(1) or null*/, const T* pred /*(R,C)*/,
                            const T* target /*(R,C)*/, const T* weights /*(R) or null*/,
                            const int32_t* count /*(1) or null*/, T* dpred /*(R,C)*/, bool accumulate_dpred);

#if CTDET_WITH_CUDA
// Scratch for the CUDA losses (forward and backward): R partial row losses and the normaliser.
size_t loss_workspace_bytes_cuda(int64_t R);
// All pointers on the device (including count and dloss). Float only.
void softmax_cross_entropy_forward_cuda(CudaContext& ctx, const LossParams& p, const float* logits,
                                        const int32_t* labels, const float* weights, const int32_t* count,
                                        float* loss, void* workspace);
void softmax_cross_entropy_backward_cuda(CudaContext& ctx, const LossParams& p, const float* dloss,
                                         const float* logits, const int32_t* labels, const float* weights,
                                         const int32_t* count, float* dlogits, bool accumulate_dlogits,
                                         void* workspace);
void sigmoid_cross_entropy_forward_cuda(CudaContext& ctx, const LossParams& p, const float* logits,
                                        const float* targets, const float* weights, const int32_t* count,
                                        float* loss, void* workspace);
void sigmoid_cross_entropy_backward_cuda(CudaContext& ctx, const LossParams& p, const float* dloss,
                                         const float* logits, const float* targets, const float* weights,
                                         const int32_t* count, float* dlogits, bool accumulate_dlogits,
                                         void* workspace);
void smooth_l1_forward_cuda(CudaContext& ctx, const LossParams& p, const float* pred, const float* target,
                            const float* weights, const int32_t* count, float* loss, void* workspace);
void smooth_l1_backward_cuda(CudaContext& ctx, const LossParams& p, const float* dloss, const float* pred,
                             const float* target, const float* weights, const int32_t* count, float* dpred,
                             bool accumulate_dpred, void* workspace);
#endif

}  // namespace ctdet
