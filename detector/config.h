// Faster R-CNN configuration: every number of the TF Object Detection API configs the study used
// (faster_rcnn_spec.md §1, §4-§8), each one a field here. Defaults = faster_rcnn_resnet101_coco with the
// study's 3 lesion classes. train/config.h reads these from JSON config files, command-line overrides and
// TF pipeline.config files; the detector (detector/faster_rcnn.h) reads nothing else.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ctdet {

enum class BackboneKind { ResNet101, InceptionV2 };
const char* backbone_kind_name(BackboneKind k);  // "resnet101", "inception_v2"
BackboneKind parse_backbone_kind(const std::string& s);  // throws naming the known kinds

enum class RoiCropKind { CropAndResize, RoiAlign };
const char* roi_crop_kind_name(RoiCropKind k);  // "crop_and_resize", "roi_align"
RoiCropKind parse_roi_crop_kind(const std::string& s);

struct FasterRcnnConfig {
  // ---- model ----
  BackboneKind backbone = BackboneKind::ResNet101;
  std::string resnet_layout = "tf_slim";  // "tf_slim" (the study's) or "torchvision" (torchvision weights load exactly)
  int resnet_base_width = 64;             // 64 = ResNet-101; smaller (e.g. 4) for CPU tests and demos
  std::vector<int> resnet_units = {3, 4, 23, 3};
  double depth_multiplier = 1.0;          // Inception-v2 (TF-slim); e.g. 0.25 for a small CPU model
  bool bn_affine_trainable = false;       // frozen BN: gamma/beta receive no gradient by default
  int num_classes = 3;                    // lesion classes, background excluded (GGO, CD, GGO+CD)

  // ---- input (spec §2) ----
  int min_dimension = 600, max_dimension = 1024;  // keep_aspect_ratio_resizer
  // Pixel normalisation: "auto" = the backbone's own (ResNet: subtract the channel means, values about -124..131;
  // Inception: x*2/255-1), or "resnet", "inception", "none". Models trained from scratch with frozen BN train far
  // better on unit-scale inputs ("inception"): nothing rescales the ResNet range inside the network.
  std::string input_normalization = "auto";

  // ---- anchors (spec §4.1) ----
  std::vector<double> anchor_scales = {0.25, 0.5, 1.0, 2.0};
  std::vector<double> anchor_aspect_ratios = {0.5, 1.0, 2.0};  // width / height
  double anchor_base = 256, anchor_stride = 16, anchor_offset = 0;

  // ---- RPN (spec §4.2-§4.5) ----
  int rpn_conv_depth = 512;
  double rpn_init_std = 0.01;                 // truncated normal
  double rpn_positive_iou = 0.7, rpn_negative_iou = 0.3;
  int rpn_batch_size = 256;                   // sampled anchors per image
  double rpn_positive_fraction = 0.5;
  double rpn_nms_iou = 0.7;
  double rpn_score_threshold = 0.0;
  int max_proposals = 300;                    // kept after NMS (train and inference)
  double rpn_loc_weight = 2.0, rpn_obj_weight = 1.0;

  // ---- ROI crop (spec §5) ----
  RoiCropKind roi_crop = RoiCropKind::CropAndResize;
  int crop_size = 14;                         // then max pool 2x2 stride 2 -> 7x7
  int crop_pool = 2;

  // ---- second stage (spec §6) ----
  double box_positive_iou = 0.5;
  int box_batch_size = 64;                    // sampled proposals per image in training
  double box_positive_fraction = 0.25;
  double box_loc_weight = 2.0, box_cls_weight = 1.0;

  // ---- post-processing (spec §7) ----
  double score_threshold = 0.0;               // keep score > threshold
  double nms_iou = 0.6;
  int max_per_class = 100, max_total = 300;

  // ---- box coder (spec §4.3) ----
  std::vector<double> box_coder_scales = {10, 10, 5, 5};  // ty, tx, th, tw

  // Number of ground-truth boxes per image the graph holds (static shapes; more is an error naming the image).
  int max_gt_boxes = 100;

  // Throws ctdet::Error naming the field and its value for anything out of range.
  void validate() const;
};

}  // namespace ctdet
