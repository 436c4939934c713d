#include "detector/config.h"

#include <cmath>

#include "nn/error.h"

namespace ctdet {

const char* backbone_kind_name(BackboneKind k) {
  return k == BackboneKind::ResNet101 ? "resnet101" : "inception_v2";
}
BackboneKind parse_backbone_kind(const std::string& s) {
  if (s == "resnet101") return BackboneKind::ResNet101;
  if (s == "inception_v2") return BackboneKind::InceptionV2;
  CTDET_FAIL("model.backbone: unknown backbone '", s, "' (known: resnet101, inception_v2)");
}
const char* roi_crop_kind_name(RoiCropKind k) { return k == RoiCropKind::CropAndResize ? "crop_and_resize" : "roi_align"; }
RoiCropKind parse_roi_crop_kind(const std::string& s) {
  if (s == "crop_and_resize") return RoiCropKind::CropAndResize;
  if (s == "roi_align") return RoiCropKind::RoiAlign;
  CTDET_FAIL("model.roi_crop: unknown crop '", s, "' (known: crop_and_resize, roi_align)");
}

void FasterRcnnConfig::validate() const {
  auto in01 = [](double v) { return v >= 0.0 && v <= 1.0; };
  CTDET_CHECK(resnet_layout == "tf_slim" || resnet_layout == "torchvision", "model.resnet_layout: '", resnet_layout,
              "' (known: tf_slim, torchvision)");
  CTDET_CHECK(resnet_base_width > 0, "model.resnet_base_width must be > 0, got ", resnet_base_width);
  CTDET_CHECK(resnet_units.size() == 4, "model.resnet_units needs 4 entries, got ", resnet_units.size());
  for (int u : resnet_units) CTDET_CHECK(u > 0, "model.resnet_units entries must be > 0, got ", u);
  CTDET_CHECK(depth_multiplier > 0 && depth_multiplier <= 4, "model.depth_multiplier must be in (0, 4], got ",
              depth_multiplier);
  CTDET_CHECK(num_classes >= 1 && num_classes <= 1000, "model.num_classes must be in [1, 1000], got ", num_classes);
  CTDET_CHECK(input_normalization == "auto" || input_normalization == "resnet" || input_normalization == "inception" ||
                  input_normalization == "none",
              "model.input_normalization: '", input_normalization, "' (known: auto, resnet, inception, none)");
  CTDET_CHECK(min_dimension >= 33 && max_dimension >= min_dimension, "model.min_dimension/max_dimension: ",
              min_dimension, "/", max_dimension, " (need 33 <= min <= max)");
  CTDET_CHECK(!anchor_scales.empty() && !anchor_aspect_ratios.empty(), "model.anchor_scales/anchor_aspect_ratios must not be empty");
  for (double v : anchor_scales) CTDET_CHECK(v > 0 && std::isfinite(v), "model.anchor_scales: ", v, " must be > 0");
  for (double v : anchor_aspect_ratios) CTDET_CHECK(v > 0 && std::isfinite(v), "model.anchor_aspect_ratios: ", v, " must be > 0");
  CTDET_CHECK(anchor_base > 0 && anchor_stride > 0, "model.anchor_base/anchor_stride must be > 0");
  CTDET_CHECK(rpn_conv_depth > 0, "model.rpn_conv_depth must be > 0, got ", rpn_conv_depth);
  CTDET_CHECK(rpn_init_std > 0, "model.rpn_init_std must be > 0, got ", rpn_init_std);
  CTDET_CHECK(in01(rpn_positive_iou) && in01(rpn_negative_iou) && rpn_negative_iou <= rpn_positive_iou,
              "model.rpn_positive_iou/rpn_negative_iou: ", rpn_positive_iou, "/", rpn_negative_iou,
              " (need 0 <= negative <= positive <= 1)");
  CTDET_CHECK(rpn_batch_size > 0, "model.rpn_batch_size must be > 0, got ", rpn_batch_size);
  CTDET_CHECK(in01(rpn_positive_fraction), "model.rpn_positive_fraction must be in [0,1], got ", rpn_positive_fraction);
  CTDET_CHECK(in01(rpn_nms_iou), "model.rpn_nms_iou must be in [0,1], got ", rpn_nms_iou);
  CTDET_CHECK(max_proposals > 0, "model.max_proposals must be > 0, got ", max_proposals);
  CTDET_CHECK(rpn_loc_weight >= 0 && rpn_obj_weight >= 0, "model.rpn_loc_weight/rpn_obj_weight must be >= 0");
  CTDET_CHECK(crop_size > 0 && crop_pool > 0 && crop_size % crop_pool == 0, "model.crop_size ", crop_size,
              " must be a positive multiple of model.crop_pool ", crop_pool);
  CTDET_CHECK(in01(box_positive_iou), "model.box_positive_iou must be in [0,1], got ", box_positive_iou);
  CTDET_CHECK(box_batch_size > 0 && box_batch_size <= max_proposals, "model.box_batch_size must be in [1, max_proposals=",
              max_proposals, "], got ", box_batch_size);
  CTDET_CHECK(in01(box_positive_fraction), "model.box_positive_fraction must be in [0,1], got ", box_positive_fraction);
  CTDET_CHECK(box_loc_weight >= 0 && box_cls_weight >= 0, "model.box_loc_weight/box_cls_weight must be >= 0");
  CTDET_CHECK(score_threshold >= 0 && score_threshold < 1, "model.score_threshold must be in [0,1), got ", score_threshold);
  CTDET_CHECK(in01(nms_iou), "model.nms_iou must be in [0,1], got ", nms_iou);
  CTDET_CHECK(max_per_class > 0 && max_total > 0, "model.max_per_class/max_total must be > 0");
  CTDET_CHECK(box_coder_scales.size() == 4, "model.box_coder_scales needs 4 entries, got ", box_coder_scales.size());
  for (double v : box_coder_scales) CTDET_CHECK(v > 0, "model.box_coder_scales entries must be > 0, got ", v);
  CTDET_CHECK(max_gt_boxes > 0 && max_gt_boxes <= 10000, "model.max_gt_boxes must be in [1, 10000], got ", max_gt_boxes);
}

}  // namespace ctdet
