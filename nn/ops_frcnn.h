// Graph ops of the Faster R-CNN heads and bookkeeping (nn/ops_frcnn.cpp, CUDA in nn/ops_frcnn.cu):
//
//   rows_from_nchw         x (N, A*k, H, W) -> y (N*H*W*A, k)          ; RowsAttrs{k}
//                          (TF's [B,H,W,A*k] -> [B,H*W*A,k] reshape of the box predictor output, spec §4.1 order)
//   rows_from_nchw_grad    dy (N*H*W*A, k) -> dx (x_shape)             ; RowsAttrs{k, x_shape}
//   select_class_boxes     x (R, K*4), labels (R) i32 -> y (R,4)       ; y[r] = x[r, 4(l-1):4l] for l >= 1, else 0
//   select_class_boxes_grad dy (R,4), labels -> dx (R, K*4)            ; SelectBoxesAttrs{K}
//   rpn_targets            anchors (M,4), gt_boxes (N,G,4), gt_count (N) i32, seed (1) i32
//                          -> labels (N*M) i32, targets (N*M,4), obj_w (N*M), loc_w (N*M), one (1) i32
//   proposals              logits (N*M,2), codes (N*M,4), anchors (M,4)
//                          -> rois (N*P,4) px, crop_boxes (N*P,4) TF-normalised, roi_batch (N*P) i32,
//                             roi5 (N*P,5) [batch,x1,y1,x2,y2], roi_count (N) i32
//   box_targets            rois (N*P,4), roi_count (N), gt_boxes (N,G,4), gt_labels (N,G) i32, gt_count (N), seed (1)
//                          -> rois (N*B,4), crop_boxes, roi_batch, roi5, labels (N*B) i32, cls_w (N*B),
//                             targets (N*B,4), loc_w (N*B), one (1) i32
//   postprocess            logits (N*P,K+1), codes (N*P,K*4), rois (N*P,4), roi_count (N)
//                          -> boxes (N*T,4), scores (N*T), classes (N*T) i32, count (N) i32
// The four bookkeeping ops are not differentiable (no gradient flows through proposals: TF's stop_gradient).
// Their math is kernels/det_targets.h. Per-image seeds: mix(seed, image, stage) so images sample independently.
#pragma once
#include "kernels/common/hd.h"
#include "kernels/det_targets.h"
#include "nn/op_registry.h"
#include "nn/tensor.h"

namespace ctdet {

struct RowsAttrs {
  int64_t k = 4;
  Shape x_shape;  // gradient node only
};
struct SelectBoxesAttrs {
  int64_t num_classes = 0;
};
struct RpnTargetAttrs {
  RpnTargetParams params;  // params.window and batch_images set by the builder
};
struct ProposalAttrs {
  ProposalParams params;
  double image_h = 0, image_w = 0;
};
struct BoxTargetAttrs {
  BoxTargetParams params;
  double image_h = 0, image_w = 0;
};
struct PostprocessAttrs {
  PostprocessParams params;
};

// Index math shared by the CPU loops and the CUDA kernels: row element (i, j) of rows_from_nchw reads
// x[n, a*k + j, h, w] with i = ((n*H + h)*W + w)*A + a.
CTDET_HD int64_t rows_src_index(int64_t i, int64_t j, int64_t k, int64_t A, int64_t H, int64_t W) {
  const int64_t a = i % A, w = (i / A) % W, h = (i / (A * W)) % H, n = i / (A * W * H);
  return ((n * (A * k) + a * k + j) * H + h) * W + w;
}

void register_frcnn_ops(OpRegistry& r);

// CPU run functions (also run by the CUDA ops of the bookkeeping nodes on host copies).
void frcnn_rpn_targets_cpu(OpContext& c);
void frcnn_proposals_cpu(OpContext& c);
void frcnn_box_targets_cpu(OpContext& c);
void frcnn_postprocess_cpu(OpContext& c);

// Workspace of the device proposals (per image, reused across the batch), one layout for the planner and the
// kernel: candidate boxes (M,4), scores (M), kept indices (P), kept count (1), then the bitmask NMS's own workspace
// (exact with a CUDA device, else an upper bound), each piece 256-byte aligned.
struct ProposalsWorkspace {
  size_t boxes = 0, scores = 0, keep = 0, kept = 0, nms = 0;  // byte offsets
  size_t nms_bytes = 0, total = 0;
};
ProposalsWorkspace proposals_workspace_layout(int64_t M, int64_t P);
size_t proposals_cuda_workspace_bytes(int64_t M, int64_t P);

#if CTDET_WITH_CUDA
void frcnn_proposals_cuda(OpContext& c);
void frcnn_rows_cuda(OpContext& c);
void frcnn_rows_grad_cuda(OpContext& c);
void frcnn_select_cuda(OpContext& c);
void frcnn_select_grad_cuda(OpContext& c);
void frcnn_host_op_cuda(OpContext& c, void (*cpu)(OpContext&));
#endif

}  // namespace ctdet
