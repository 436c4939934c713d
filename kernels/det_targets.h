// Faster R-CNN bookkeeping per image (faster_rcnn_spec.md §4.4, §4.5, §6.2, §7): RPN targets, proposals,
// second-stage targets and post-processing. Not differentiable; fixed-size outputs padded, plus counts
// (DESIGN.md: static shapes). Built on the box ops of kernels/boxes.h (same IoU, coder, NMS and sampler).
//
// Boxes are x1,y1,x2,y2 pixels of the resized image; window = {0, 0, W, H}.
// These run on the host. The CUDA graph ops call them on copies of their (small) inputs: a device->host->device
// round trip and a stream synchronisation per call (see nn/ops_frcnn.cu), except proposals, whose CUDA version
// runs on the device (proposal_candidate below + the bitmask NMS of kernels/boxes.h).
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/boxes.h"

namespace ctdet {

// ---- RPN targets (§4.4) -----------------------------------------------------------------------------
struct RpnTargetParams {
  double positive_iou = 0.7, negative_iou = 0.3;
  SamplerParams sampler{256, 0.5, 0};  // sampler.seed is ignored: the seed argument is used
  BoxCoderParams coder;
  double window[4] = {0, 0, 0, 0};
  int64_t batch_images = 1;            // losses are averaged over images: weights carry 1/batch_images
};
// Matches the M anchors against the first gt_count ground-truth boxes (ArgMaxMatcher, 0.7/0.3, each GT forced onto
// its argmax anchor, first index on ties), with anchors not fully inside the window ignored (TF prunes them),
// samples rpn batch anchors (balanced, seeded) and writes, per anchor:
//   labels   1 sampled positive, 0 sampled negative, -1 not sampled;
//   targets  encoded GT box for sampled positives, 0 elsewhere;
//   obj_w    1 / (num_sampled * batch_images) for sampled anchors, 0 elsewhere;
//   loc_w    the same for sampled positives, 0 elsewhere.
// matched_gt (may be null): index of the matched GT per anchor, -1 unmatched / ignored. Returns num sampled.
template <typename T>
int64_t rpn_targets_cpu(const RpnTargetParams& p, int64_t M, const T* anchors /*(M,4)*/, int64_t gt_count,
                        const T* gt /*(>=gt_count,4)*/, uint64_t seed, int32_t* labels, T* targets /*(M,4)*/,
                        T* obj_w, T* loc_w, int32_t* matched_gt);

// ---- proposals (§4.5) --------------------------------------------------------------------------------
struct ProposalParams {
  double nms_iou = 0.7;
  double score_threshold = 0.0;  // keep softmax objectness > threshold
  int64_t max_proposals = 300;
  BoxCoderParams coder;
  double window[4] = {0, 0, 0, 0};
  bool prune_anchors = true;     // training: anchors outside the window are dropped; inference: clipped
};
// One anchor's candidate (shared by the CPU loop and the CUDA kernel): the anchor is pruned (training: dropped
// unless fully inside the window) or clipped (inference: dropped when its clipped area is 0), the codes decoded
// against it, the box clipped (dropped when empty); the score is the objectness logit difference l1 - l0 (the
// softmax probability is monotonic in it), dropped when not above min_dlogit (use_threshold) or not finite.
// Returns whether the candidate survives; box/score are written either way (zeros / -inf when dropped).
template <typename T>
CTDET_HD bool proposal_candidate(const BoxCoderParams& coder, const T* window /*(4)*/, bool prune, bool use_threshold,
                                 double min_dlogit, const T* anchor_in, const T* code, T l0, T l1, T* box /*(4)*/,
                                 T* score) {
  T anchor[4], decoded[4];
  bool ok;
  if (prune) {
    ok = box_inside_window(anchor_in, window);
    for (int k = 0; k < 4; ++k) anchor[k] = anchor_in[k];
  } else {
    ok = clip_box(anchor_in, window, anchor);
  }
  if (ok) {
    box_decode(coder, code, anchor, decoded);
    ok = clip_box(decoded, window, box);
  }
  const double d = double(l1) - double(l0);
  ok = ok && d == d && d - d == 0.0 && (!use_threshold || d > min_dlogit);  // finite, above the threshold
  if (!ok) {
    for (int k = 0; k < 4; ++k) box[k] = T(0);
    *score = -T(1) / T(0);  // -inf: sorts after every candidate
  } else {
    *score = T(d);
  }
  return ok;
}
// The logit-difference threshold equivalent to "softmax score > t" (use_threshold = t > 0).
inline double proposal_min_dlogit(double t) { return t > 0 ? std::log(t / (1.0 - t)) : 0.0; }

// logits (M,2) [background, object], codes (M,4). Writes up to max_proposals boxes (score order) into rois,
// zero rows after them; scores (may be null) likewise. Returns the count.
template <typename T>
int64_t proposals_cpu(const ProposalParams& p, int64_t M, const T* logits, const T* codes, const T* anchors,
                      T* rois /*(max,4)*/, T* scores /*(max) or null*/);

// ---- second-stage targets (§6.2) ---------------------------------------------------------------------
struct BoxTargetParams {
  double positive_iou = 0.5;
  SamplerParams sampler{64, 0.25, 0};  // seed argument used
  BoxCoderParams coder;
  int num_classes = 3;
  int64_t batch_images = 1;
};
// Matches the first roi_count proposals to GT (IoU >= 0.5 positive with the GT's label, else background 0; no
// ignore band, no forced match, GT not added), samples sampler.batch_size (25% positive at most) and writes rows
// 0..B-1: out_rois (the sampled proposals, zeros in padding), labels (class 1..K, 0 background, -1 padding),
// cls_w (1/(num_sampled*batch_images), 0 in padding), targets (GT encoded against the proposal for positives),
// loc_w (cls_w for positives, else 0). gt_labels are 1-based classes in [1, num_classes] (else an Error naming
// the row). Returns num sampled.
template <typename T>
int64_t box_targets_cpu(const BoxTargetParams& p, int64_t roi_count, const T* rois /*(>=roi_count,4)*/,
                        int64_t gt_count, const T* gt /*(>=gt_count,4)*/, const int32_t* gt_labels, uint64_t seed,
                        T* out_rois /*(B,4)*/, int32_t* labels /*(B)*/, T* cls_w, T* targets /*(B,4)*/, T* loc_w);

// ---- post-processing (§7) ----------------------------------------------------------------------------
struct PostprocessParams {
  double score_threshold = 0.0;  // keep score > threshold
  double nms_iou = 0.6;
  int64_t max_per_class = 100, max_total = 300;
  int num_classes = 3;
  BoxCoderParams coder;
  double window[4] = {0, 0, 0, 0};
};
// logits (P, K+1) with background at 0, codes (P, K*4) class-specific; rois (P,4); only the first roi_count
// rows are used. Softmax, per class: decode against the roi, clip to the window, drop zero-area boxes, keep score
// > threshold, NMS, at most max_per_class; then all classes by score (stable), at most max_total.
// Writes boxes/scores/classes (1-based) padded with zeros / 0; returns the count.
template <typename T>
int64_t postprocess_cpu(const PostprocessParams& p, int64_t roi_count, const T* logits, const T* codes,
                        const T* rois, T* boxes /*(max_total,4)*/, T* scores /*(max_total)*/,
                        int32_t* classes /*(max_total)*/);

// TF crop boxes: pixel x1,y1,x2,y2 -> normalised y1/H, x1/W, y2/H, x2/W (spec §4.5 / §5).
template <typename T>
void to_crop_boxes_cpu(int64_t n, const T* rois /*(n,4)*/, double height, double width, T* out /*(n,4)*/);

}  // namespace ctdet
