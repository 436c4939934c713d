// Faster R-CNN (TF Object Detection API layout, faster_rcnn_spec.md §4-§7) as one static graph:
//
//   image (N,3,H,W) -> backbone first stage (stride 16) -> RPN: 3x3 conv + ReLU6, 1x1 box (A*4) and class (A*2)
//   convs -> rows (N*M, 4) / (N*M, 2) in anchor order -> proposals (decode, clip, NMS 0.7, 300; no gradient)
//   -> [train: box_targets samples 64 ROIs per image] -> crop_and_resize 14x14 (or RoIAlign) + 2x2 max pool ->
//   backbone second stage -> global average pool -> class logits (K+1) and class-specific boxes (K*4)
//   -> [train: four losses] [inference: post-processing to at most max_total detections per image].
//
// Training returns the four losses by name (loss_rpn_cls, loss_rpn_loc, loss_cls, loss_box_reg; TF names in
// loss_tf_name()) and their weighted sum `loss`, with backward appended. Ground truth enters as padded tensors:
// gt_boxes (N,G,4) x1,y1,x2,y2 in resized-image pixels, gt_labels (N,G) 1-based, gt_count (N); G =
// cfg.max_gt_boxes. `seed` (1) int32 drives the anchor and ROI samplers: the trainer sets it per step, so a
// step is a pure function of (weights, batch, seed) and resumes exactly.
// Inference returns det_boxes (N*T,4) in resized-image pixels, det_scores (N*T), det_classes (N*T) 1-based,
// det_count (N), T = cfg.max_total.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "detector/config.h"
#include "nn/graph.h"
#include "nn/param_store.h"

namespace ctdet {

struct DetectorShape {
  int batch = 1, height = 600, width = 600;
  bool train = false;
  // Tests: proposals come from graph inputs `fixed_rois` (N*P,4) and `fixed_roi_count` (N) instead of the RPN
  // (the whole-detector gradient check holds the sampled ROIs fixed this way).
  bool fixed_proposals = false;
};

struct DetectorGraph {
  Graph graph;
  ValueId image = kNoValue;
  ValueId gt_boxes = kNoValue, gt_labels = kNoValue, gt_count = kNoValue, seed = kNoValue;  // training only
  ValueId fixed_rois = kNoValue, fixed_roi_count = kNoValue;
  ValueId loss = kNoValue, loss_rpn_cls = kNoValue, loss_rpn_loc = kNoValue, loss_cls = kNoValue,
          loss_box = kNoValue;
  ValueId proposals = kNoValue, proposal_count = kNoValue;
  ValueId det_boxes = kNoValue, det_scores = kNoValue, det_classes = kNoValue, det_count = kNoValue;
  int64_t feat_h = 0, feat_w = 0, num_anchors = 0;  // anchors per image M = feat_h * feat_w * A
  std::string description;
  std::pair<int, int> first_stage_nodes{0, 0};  // [begin, end) of the backbone's first-stage forward nodes
};

// Gradient checkpointing of the backbone's first stage (`train.recompute_backbone`): segments of consecutive units
// (ResNet "layer3.7", Inception "Mixed_4b", stem layers), about sqrt(units) of them balanced by the bytes their
// nodes write, for apply_segment_recompute (nn/planner.h). Only the segments' outputs stay for backward.
std::vector<std::pair<int, int>> backbone_recompute_segments(const Graph& g, std::pair<int, int> first_stage_nodes);
// "conv1..layer1.2 | layer2.0..layer2.3 | ..." for logs.
std::string describe_segments(const Graph& g, const std::vector<std::pair<int, int>>& segments);

// Throws ctdet::Error for an invalid config or a size below the backbone's minimum (33x33).
DetectorGraph build_faster_rcnn(const FasterRcnnConfig& cfg, const DetectorShape& shape, DType dtype = DType::F32);

// The second stage's max pool over the ROI crops (k x k, stride k). In training graphs it keeps each window's
// argmax ("max_pool_argmax"), so its backward needs no crops and they are freed after the forward (49 MiB at
// ResNet-101 600x600, batch 1, where the training step peaks); inference graphs use the plain "pool2d".
ValueId roi_max_pool(Graph& g, ValueId crops, int k, bool train);

// Loss names in training graphs, detectron2 style and TF Object Detection API style.
std::vector<std::string> loss_names();  // loss_rpn_cls, loss_rpn_loc, loss_cls, loss_box_reg
std::string loss_tf_name(const std::string& name);  // e.g. Loss/RPNLoss/objectness_loss

// Initialises every parameter of the store (spec §8 for new layers: RPN convs truncated normal (std
// cfg.rpn_init_std), box FCs Glorot uniform, biases 0; backbone convs He-normal (fan in), BN gamma 1, beta 0,
// mean 0, var 1). Deterministic for a seed; the store's device may be CPU or CUDA.
void init_faster_rcnn_params(ParamStore& ps, const FasterRcnnConfig& cfg, uint64_t seed);

// Names of the parameters the optimizer updates (frozen BN statistics and, unless bn_affine_trainable, gamma/beta
// are excluded).
std::vector<std::string> trainable_params(const Graph& g);

}  // namespace ctdet
