#include "detector/model_zoo.h"

#include "detector/backbone/inception_v2.h"
#include "detector/backbone/resnet.h"
#include "detector/faster_rcnn.h"
#include "kernels/crop_and_resize.h"
#include "kernels/pool.h"
#include "nn/autograd.h"
#include "nn/core_ops.h"
#include "nn/op_registry.h"

namespace ctdet {

namespace {

// A fully connected network over the flattened image rows: a small real model for exercising the planner
// before the detector graphs exist, and for comparing planner behaviour on a simple chain.
ModelGraph build_mlp(const ModelSpec& s) {
  ModelGraph m;
  Graph& g = m.graph;
  int64_t rows = int64_t(s.batch) * s.height;
  m.input = g.input("image_rows", {rows, s.width});
  ValueId h = m.input;
  int64_t width = s.width;
  for (int i = 0; i < 4; ++i) {
    int64_t out = 1024;
    ValueId W = g.param(str("fc", i, ".weight"), {out, width}), b = g.param(str("fc", i, ".bias"), {out});
    h = g.add1("relu", str("relu", i), {g.add1("linear", str("fc", i), {h, W, b})});
    width = out;
  }
  m.output = g.add1("sum", "loss", {h});
  if (s.train) backward(g, m.output);
  else g.mark_output(m.output);
  m.description = str("MLP 4x1024 over ", rows, " rows of ", s.width, " pixels");
  return m;
}

// ResNet-101 (TF-slim layout, frozen BN, conv weights trained) at the input size: the first stage alone
// ("resnet101_backbone"), or the Faster R-CNN C4 trunk ("resnet101_c4"): first stage, TF crop_and_resize of
// the ROIs to 14x14, 2x2 max pool, block4 on the crops, global average pool and the two box-classifier FCs
// (classes+1 logits, classes x 4 boxes). ROIs per image: 64 sampled in training, 300 proposals in inference
// (spec section 6). The RPN head (one 3x3 conv and two 1x1 convs, about 5 MiB of parameters) and the loss
// terms are not in this graph yet; a sum of the outputs stands in for the loss when training.
ModelGraph build_resnet101(const ModelSpec& s, bool c4) {
  ModelGraph m;
  Graph& g = m.graph;
  ResNetBackbone bb(ResNetOptions::resnet101(ResNetLayout::TfSlim));
  m.input = g.input("image", {s.batch, 3, s.height, s.width});
  ValueId feat = bb.first_stage(g, m.input);
  if (!c4) {
    m.output = g.add1("sum", "loss", {feat});
    m.description = "ResNet-101 first stage (block3, stride 16)";
  } else {
    const int64_t classes = 3;
    const int64_t R = int64_t(s.train ? 64 : 300) * s.batch;
    ValueId rois = g.input("rois", {R, 4});
    ValueId roi_batch = g.input("roi_batch", {R}, DType::I32);
    CropAndResizeParams cp;
    cp.crop_h = cp.crop_w = 14;
    ValueId crops = g.add1("crop_and_resize", "roi_crop", {feat, rois, roi_batch}, cp);
    ValueId pooled = roi_max_pool(g, crops, 2, s.train);
    ValueId b4 = bb.second_stage(g, pooled);
    ValueId gap = g.add1("global_avg_pool", "box_head.gap", {b4});
    const int64_t C = bb.second_stage_channels();
    ValueId cls = g.add1("linear", "box_head.cls",
                         {gap, g.param("box_head.cls.weight", {classes + 1, C}), g.param("box_head.cls.bias", {classes + 1})});
    ValueId box = g.add1("linear", "box_head.box",
                         {gap, g.param("box_head.box.weight", {classes * 4, C}), g.param("box_head.box.bias", {classes * 4})});
    m.output = g.add1("add", "loss", {g.add1("sum", "loss_cls", {cls}), g.add1("sum", "loss_box", {box})});
    m.description = str("ResNet-101 C4 trunk: block3, crop 14x14 + max pool, block4 on ", R,
                        " ROIs, GAP, box classifier; RPN head not included");
  }
  if (s.train) backward(g, m.output);
  else g.mark_output(m.output);
  return m;
}

// Inception-v2 (TF-slim BN-Inception, depth multiplier 1, frozen BN) first stage: Mixed_4e, 576 channels at stride
// 16 ("inception_v2_backbone"); a sum of the features stands in for the loss when training.
ModelGraph build_inception_backbone(const ModelSpec& s) {
  ModelGraph m;
  Graph& g = m.graph;
  InceptionV2Backbone bb{InceptionV2Options{}};
  m.input = g.input("image", {s.batch, 3, s.height, s.width});
  m.output = g.add1("sum", "loss", {bb.first_stage(g, m.input)});
  m.description = "Inception-v2 first stage (Mixed_4e, stride 16)";
  if (s.train) backward(g, m.output);
  else g.mark_output(m.output);
  return m;
}

// The full detector with the study's config (3 lesion classes): training graph with the four losses and backward,
// or the inference graph through post-processing.
ModelGraph build_detector(const ModelSpec& s, BackboneKind kind) {
  FasterRcnnConfig cfg;
  cfg.backbone = kind;
  DetectorShape shape;
  shape.batch = s.batch;
  shape.height = s.height;
  shape.width = s.width;
  shape.train = s.train;
  DetectorGraph d = build_faster_rcnn(cfg, shape);
  ModelGraph m;
  m.recompute_segments = backbone_recompute_segments(d.graph, d.first_stage_nodes);
  m.graph = std::move(d.graph);
  m.input = d.image;
  m.output = s.train ? d.loss : d.det_boxes;
  m.description = d.description;
  return m;
}

}  // namespace

std::vector<std::string> known_models() {
  return {"faster_rcnn_resnet101", "faster_rcnn_inception_v2", "mlp", "resnet101_backbone", "resnet101_c4",
          "inception_v2_backbone"};
}

ModelGraph build_model_graph(const ModelSpec& spec) {
  CTDET_CHECK(spec.height > 0 && spec.width > 0 && spec.batch > 0, "model '", spec.name, "': size ", spec.height, "x",
              spec.width, " batch ", spec.batch, " must be positive");
  if (spec.name == "faster_rcnn_resnet101") return build_detector(spec, BackboneKind::ResNet101);
  if (spec.name == "faster_rcnn_inception_v2") return build_detector(spec, BackboneKind::InceptionV2);
  if (spec.name == "mlp") return build_mlp(spec);
  if (spec.name == "resnet101_backbone") return build_resnet101(spec, false);
  if (spec.name == "resnet101_c4") return build_resnet101(spec, true);
  if (spec.name == "inception_v2_backbone") return build_inception_backbone(spec);
  std::string list;
  for (auto& k : known_models()) list += (list.empty() ? "" : ", ") + k;
  CTDET_FAIL("unknown model '", spec.name, "' (known: ", list, ")");
}

}  // namespace ctdet
