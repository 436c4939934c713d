// Detection bookkeeping ops: anchors, box encode/decode, clip/prune to a window, pairwise IoU, sort/top-k by
// score, NMS and the seeded balanced positive/negative sampler. Not differentiable.
//
// CONVENTIONS
//   boxes   (n,4) x1, y1, x2, y2 absolute pixels (project corner order; TF-OD uses y1,x1,y2,x2: convert at
//           the edges). Area and IoU without +1 (TF and torchvision).
//   codes   (n,4) in the TF Object Detection API order ty, tx, th, tw (faster_rcnn_box_coder, spec §4.3),
//           scaled by (10,10,5,5) by default. NOT torchvision's (dx,dy,dw,dh) order.
//   window  4 values x1, y1, x2, y2 (host array), e.g. {0, 0, W_img, H_img}.
//   indices int32, fixed-size outputs padded with -1 plus a valid count (DESIGN.md: static shapes).
// The per-box math is in kernels/box_math.h (CTDET_HD), shared with the CUDA kernels.
//
// CPU/CUDA agreement: sort, top-k, NMS and the sampler give IDENTICAL indices on both devices (stable
// ordering, ties by lower index; bit-identical IoU). -0.0 and +0.0 scores are treated as equal; NaN scores
// are rejected on CPU and unsupported on CUDA.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/box_math.h"
#include "nn/error.h"

#if CTDET_WITH_CUDA
#include "nn/cuda_context.h"
#endif

namespace ctdet {

// ---- anchors (spec §4.1) -------------------------------------------------------------------------
void validate_anchor_params(const AnchorParams& p);
inline int64_t anchor_count(const AnchorParams& p, int64_t Hf, int64_t Wf) {
  return Hf * Wf * p.anchors_per_location();
}
// Order: row y, column x, then a = ar_idx*num_scales + scale_idx (TF GridAnchorGenerator).
template <typename T>
void generate_anchors_cpu(const AnchorParams& p, int64_t Hf, int64_t Wf, T* anchors /*(Hf*Wf*A,4)*/);

// ---- box coder (spec §4.3) -----------------------------------------------------------------------
void validate_box_coder(const BoxCoderParams& p);
template <typename T>
void box_encode_cpu(const BoxCoderParams& p, int64_t n, const T* boxes /*(n,4)*/, const T* anchors /*(n,4)*/,
                    T* codes /*(n,4) ty,tx,th,tw*/);
// k code sets per anchor (k = 1 for the RPN; k = num_classes for the class-specific second-stage boxes).
template <typename T>
void box_decode_cpu(const BoxCoderParams& p, int64_t n, int64_t k, const T* codes /*(n,k,4)*/,
                    const T* anchors /*(n,4)*/, T* boxes /*(n,k,4)*/);

// ---- window ops ----------------------------------------------------------------------------------
// out may equal boxes. nonempty (may be null): 1 where the clipped box has positive area.
template <typename T>
void clip_boxes_cpu(int64_t n, const T* boxes /*(n,4)*/, const T* window /*(4)*/, T* out /*(n,4)*/,
                    uint8_t* nonempty /*(n)*/);
// inside[i] = 1 when box i lies fully inside the window (TF prune_outside_window keeps those).
template <typename T>
void prune_outside_window_cpu(int64_t n, const T* boxes /*(n,4)*/, const T* window /*(4)*/, uint8_t* inside /*(n)*/);

// ---- IoU ----------------------------------------------------------------------------------------
template <typename T>
void box_iou_cpu(int64_t n, int64_t m, const T* a /*(n,4)*/, const T* b /*(m,4)*/, T* iou /*(n,m)*/);

// ---- sort / top-k -------------------------------------------------------------------------------
// order = indices by descending score, stable (ties keep the lower index first). Throws on NaN scores.
template <typename T>
void sort_by_score_cpu(int64_t n, const T* scores /*(n)*/, int32_t* order /*(n)*/);
// First k of that order; entries past n are -1 (index) and 0 (value). values may be null.
template <typename T>
void topk_cpu(int64_t n, const T* scores /*(n)*/, int64_t k, int32_t* indices /*(k)*/, T* values /*(k)*/);

// ---- NMS ----------------------------------------------------------------------------------------
struct NmsParams {
  float iou_threshold = 0.7f;  // box j is suppressed by a kept box i when IoU(i,j) > threshold
  int64_t max_output = 300;
};
void validate_nms(const NmsParams& p, int64_t n);
// Greedy NMS over boxes sorted by descending score (stable). keep: kept original indices in score order,
// padded with -1; returns the count.
template <typename T>
int64_t nms_cpu(const NmsParams& p, int64_t n, const T* boxes /*(n,4)*/, const T* scores /*(n)*/,
                int32_t* keep /*(max_output)*/);

// ---- seeded sampling ----------------------------------------------------------------------------
// The random key of element i is sample_key(seed, i) (box_math.h); candidates are taken in increasing
// (key, index) order, so a seed picks the same elements on CPU and CUDA.
// out: the first min(k, #candidates) candidates in that order, padded with -1; returns the count.
int64_t sample_indices_cpu(int64_t n, const uint8_t* candidate /*(n)*/, int64_t k, uint64_t seed,
                           int32_t* out /*(k)*/);

// TF BalancedPositiveNegativeSampler (spec §4.4, §6.2): labels 1 positive, 0 negative, -1 ignore.
// num_pos = min(#pos, int(positive_fraction*batch_size)), num_neg = min(#neg, batch_size - num_pos).
// selected: num_pos positives then num_neg negatives (each in sampling order), padded with -1.
struct SamplerParams {
  int64_t batch_size = 256;        // RPN 256 / box classifier 64
  double positive_fraction = 0.5;  // RPN 0.5 / box classifier 0.25
  uint64_t seed = 0;
};
void validate_sampler(const SamplerParams& p);
inline int64_t sampler_max_positives(const SamplerParams& p) {
  return int64_t(p.positive_fraction * double(p.batch_size));
}
// Throws on a label outside {-1,0,1}, naming the row.
void balanced_sample_cpu(const SamplerParams& p, int64_t n, const int32_t* labels /*(n)*/,
                         int32_t* selected /*(batch_size)*/, int64_t* num_pos, int64_t* num_neg);

#if CTDET_WITH_CUDA
// ---- CUDA (float, device pointers, enqueued on ctx.stream, no allocation) -------------------------
void generate_anchors_cuda(CudaContext& ctx, const AnchorParams& p, int64_t Hf, int64_t Wf,
                           float* anchors /*(Hf*Wf*A,4)*/);
void box_encode_cuda(CudaContext& ctx, const BoxCoderParams& p, int64_t n, const float* boxes /*(n,4)*/,
                     const float* anchors /*(n,4)*/, float* codes /*(n,4)*/);
void box_decode_cuda(CudaContext& ctx, const BoxCoderParams& p, int64_t n, int64_t k, const float* codes /*(n,k,4)*/,
                     const float* anchors /*(n,4)*/, float* boxes /*(n,k,4)*/);
void clip_boxes_cuda(CudaContext& ctx, int64_t n, const float* boxes /*(n,4)*/, const float* window_host /*(4) host*/,
                     float* out /*(n,4)*/, uint8_t* nonempty /*(n) or null*/);
void prune_outside_window_cuda(CudaContext& ctx, int64_t n, const float* boxes /*(n,4)*/,
                               const float* window_host /*(4) host*/, uint8_t* inside /*(n)*/);
void box_iou_cuda(CudaContext& ctx, int64_t n, int64_t m, const float* a /*(n,4)*/, const float* b /*(m,4)*/,
                  float* iou /*(n,m)*/);

// Workspace sizes query CUB and need a CUDA device.
size_t sort_by_score_cuda_workspace_bytes(int64_t n);
// Stable descending radix sort (CUB). sorted_scores may be null.
void sort_by_score_cuda(CudaContext& ctx, int64_t n, const float* scores /*(n)*/, int32_t* order /*(n)*/,
                        float* sorted_scores /*(n) or null*/, void* workspace, size_t workspace_bytes);
size_t topk_cuda_workspace_bytes(int64_t n);
void topk_cuda(CudaContext& ctx, int64_t n, const float* scores /*(n)*/, int64_t k, int32_t* indices /*(k)*/,
               float* values /*(k) or null*/, void* workspace, size_t workspace_bytes);

// Bitmask NMS: 64x64 IoU tiles -> (n, ceil(n/64)) 64-bit masks, then a one-block greedy pass on the device.
// Workspace grows as n^2/8 bytes (20,000 boxes: ~50 MB). count: one device int32.
size_t nms_cuda_workspace_bytes(int64_t n);
void nms_cuda(CudaContext& ctx, const NmsParams& p, int64_t n, const float* boxes /*(n,4)*/,
              const float* scores /*(n)*/, int32_t* keep /*(max_output)*/, int32_t* count /*(1)*/, void* workspace,
              size_t workspace_bytes);

// Labels outside {-1,0,1} count as ignored on the device. counts: device int32 {num_pos, num_neg}.
size_t balanced_sample_cuda_workspace_bytes(int64_t n);
void balanced_sample_cuda(CudaContext& ctx, const SamplerParams& p, int64_t n, const int32_t* labels /*(n)*/,
                          int32_t* selected /*(batch_size)*/, int32_t* counts /*(2)*/, void* workspace,
                          size_t workspace_bytes);
#endif

}  // namespace ctdet
