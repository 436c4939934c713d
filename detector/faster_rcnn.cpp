#include "detector/faster_rcnn.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

#include "detector/backbone/inception_v2.h"
#include "detector/backbone/resnet.h"
#include "kernels/box_math.h"
#include "kernels/conv2d.h"
#include "kernels/crop_and_resize.h"
#include "kernels/loss.h"
#include "kernels/pool.h"
#include "kernels/roi_align.h"
#include "nn/autograd.h"
#include "nn/op_attrs.h"
#include "nn/ops_frcnn.h"

namespace ctdet {

namespace {

struct Backbone {
  std::function<ValueId(Graph&, ValueId)> first, second;
  int first_channels = 0, second_channels = 0;
  std::string name;
};

Backbone make_backbone(const FasterRcnnConfig& cfg) {
  Backbone b;
  if (cfg.backbone == BackboneKind::ResNet101) {
    ResNetOptions o = ResNetOptions::resnet101(cfg.resnet_layout == "torchvision" ? ResNetLayout::Torchvision
                                                                                   : ResNetLayout::TfSlim);
    o.base_width = cfg.resnet_base_width;
    for (int i = 0; i < 4; ++i) o.units[size_t(i)] = cfg.resnet_units[size_t(i)];
    o.bn_affine_trainable = cfg.bn_affine_trainable;
    o.block4_stride = 1;
    ResNetBackbone r(o);
    b.first = [r](Graph& g, ValueId x) { return r.first_stage(g, x); };
    b.second = [r](Graph& g, ValueId x) { return r.second_stage(g, x); };
    b.first_channels = r.first_stage_channels();
    b.second_channels = r.second_stage_channels();
    b.name = str("ResNet (", cfg.resnet_layout, ", width ", o.base_width, ", units ", o.units[0], "-", o.units[1], "-",
                 o.units[2], "-", o.units[3], ")");
  } else {
    InceptionV2Options o;
    o.depth_multiplier = cfg.depth_multiplier;
    o.bn_affine_trainable = cfg.bn_affine_trainable;
    InceptionV2Backbone r(o);
    b.first = [r](Graph& g, ValueId x) { return r.first_stage(g, x); };
    b.second = [r](Graph& g, ValueId x) { return r.second_stage(g, x); };
    b.first_channels = r.first_stage_channels();
    b.second_channels = r.second_stage_channels();
    b.name = str("Inception-v2 (depth multiplier ", cfg.depth_multiplier, ")");
  }
  return b;
}

AnchorParams anchor_params(const FasterRcnnConfig& cfg) {
  AnchorParams a;
  CTDET_CHECK(int(cfg.anchor_scales.size()) <= kMaxAnchorParams && int(cfg.anchor_aspect_ratios.size()) <= kMaxAnchorParams,
              "model.anchor_scales / anchor_aspect_ratios: at most ", kMaxAnchorParams, " values each");
  a.base_h = a.base_w = float(cfg.anchor_base);
  a.num_scales = int(cfg.anchor_scales.size());
  for (int i = 0; i < a.num_scales; ++i) a.scales[i] = float(cfg.anchor_scales[size_t(i)]);
  a.num_ratios = int(cfg.anchor_aspect_ratios.size());
  for (int i = 0; i < a.num_ratios; ++i) a.aspect_ratios[i] = float(cfg.anchor_aspect_ratios[size_t(i)]);
  a.stride_y = a.stride_x = float(cfg.anchor_stride);
  a.offset_y = a.offset_x = float(cfg.anchor_offset);
  return a;
}

BoxCoderParams coder_params(const FasterRcnnConfig& cfg) {
  BoxCoderParams c;
  c.wy = float(cfg.box_coder_scales[0]);
  c.wx = float(cfg.box_coder_scales[1]);
  c.wh = float(cfg.box_coder_scales[2]);
  c.ww = float(cfg.box_coder_scales[3]);
  return c;
}

ValueId conv(Graph& g, ValueId x, const std::string& name, int out_ch, int k) {
  const int64_t in_ch = g.value(x).shape[1];
  ValueId w = g.param(name + ".weight", {out_ch, in_ch, k, k});
  ValueId b = g.param(name + ".bias", {out_ch});
  Conv2dParams cp;
  cp.pad_top = cp.pad_bottom = cp.pad_left = cp.pad_right = (k - 1) / 2;
  cp.has_bias = true;
  return g.add1("conv2d", name, {x, w, b}, cp);
}

ValueId linear(Graph& g, ValueId x, const std::string& name, int64_t out) {
  const int64_t in = g.value(x).shape[1];
  return g.add1("linear", name, {x, g.param(name + ".weight", {out, in}), g.param(name + ".bias", {out})});
}

ValueId loss_node(Graph& g, const char* op, const std::string& name, std::vector<ValueId> in, double scale) {
  LossParams lp;
  lp.scale = scale;
  lp.delta = 1.0;
  return g.add1(op, name, in, lp);
}

}  // namespace

namespace {
// The unit a backbone node belongs to, from its name: "layer3.7.conv2" -> "layer3.7", "Mixed_4b.Branch_1..." ->
// "Mixed_4b", "conv1" -> "conv1".
std::string unit_key(const std::string& name) {
  const size_t d1 = name.find('.');
  if (name.rfind("layer", 0) == 0 && d1 != std::string::npos) return name.substr(0, name.find('.', d1 + 1));
  return name.substr(0, d1);
}
}  // namespace

std::vector<std::pair<int, int>> backbone_recompute_segments(const Graph& g, std::pair<int, int> r) {
  struct Unit {
    int begin, end;
    size_t bytes;
  };
  std::vector<Unit> units;
  std::string last;
  for (int i = r.first; i < r.second; ++i) {
    const std::string k = unit_key(g.node(i).name);
    if (units.empty() || k != last) units.push_back({i, i, 0});
    last = k;
    units.back().end = i + 1;
    for (ValueId v : g.node(i).outputs) units.back().bytes += g.value(v).bytes();
  }
  if (units.empty()) return {};
  size_t total = 0;
  for (const Unit& u : units) total += u.bytes;
  const size_t nseg = std::max<size_t>(1, size_t(std::lround(std::sqrt(double(units.size())))));
  const size_t target = total / nseg;
  std::vector<std::pair<int, int>> segs;
  size_t cur = 0;
  for (const Unit& u : units) {
    if (segs.empty() || (cur > 0 && cur + u.bytes > target)) {
      segs.push_back({u.begin, u.end});
      cur = u.bytes;
    } else {
      segs.back().second = u.end;
      cur += u.bytes;
    }
  }
  return segs;
}

std::string describe_segments(const Graph& g, const std::vector<std::pair<int, int>>& segments) {
  std::string s;
  for (const auto& [b, e] : segments) {
    if (e <= b) continue;
    const std::string first = unit_key(g.node(b).name), lastk = unit_key(g.node(e - 1).name);
    s += str(s.empty() ? "" : " | ", first, first == lastk ? "" : ".." + lastk);
  }
  return s;
}

ValueId roi_max_pool(Graph& g, ValueId crops, int k, bool train) {
  Pool2dParams pp;
  pp.kind = PoolKind::Max;
  pp.kh = pp.kw = pp.sh = pp.sw = k;
  if (train) return g.add("max_pool_argmax", "roi_pool", {crops}, pp)[0];
  return g.add1("pool2d", "roi_pool", {crops}, pp);
}

std::vector<std::string> loss_names() { return {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}; }

std::string loss_tf_name(const std::string& name) {
  if (name == "loss_rpn_cls") return "Loss/RPNLoss/objectness_loss";
  if (name == "loss_rpn_loc") return "Loss/RPNLoss/localization_loss";
  if (name == "loss_cls") return "Loss/BoxClassifierLoss/classification_loss";
  if (name == "loss_box_reg") return "Loss/BoxClassifierLoss/localization_loss";
  if (name == "loss") return "Loss/total_loss";
  CTDET_FAIL("unknown loss name '", name, "'");
}

DetectorGraph build_faster_rcnn(const FasterRcnnConfig& cfg, const DetectorShape& s, DType dtype) {
  cfg.validate();
  CTDET_CHECK(s.batch > 0 && s.height >= 33 && s.width >= 33, "faster_rcnn: input ", s.batch, "x", s.height, "x",
              s.width, " (need batch >= 1 and sides >= 33)");
  DetectorGraph d;
  d.graph = Graph(dtype);
  Graph& g = d.graph;
  const Backbone bb = make_backbone(cfg);
  const int64_t N = s.batch, K = cfg.num_classes, G = cfg.max_gt_boxes;
  const double H = s.height, W = s.width;

  d.image = g.input("image", {N, 3, s.height, s.width});
  const int first_begin = g.num_nodes();
  ValueId feat = bb.first(g, d.image);
  d.first_stage_nodes = {first_begin, g.num_nodes()};
  const Shape& fs = g.value(feat).shape;
  d.feat_h = fs[2];
  d.feat_w = fs[3];

  // ---- RPN head ----
  const AnchorParams ap = anchor_params(cfg);
  const int64_t A = ap.anchors_per_location();
  ValueId h = g.add1("relu6", "rpn.relu6", {conv(g, feat, "rpn.conv", cfg.rpn_conv_depth, 3)});
  ValueId box_map = conv(g, h, "rpn.box", int(A * 4), 1);
  ValueId cls_map = conv(g, h, "rpn.cls", int(A * 2), 1);
  ValueId rpn_codes = g.add1("rows_from_nchw", "rpn.box_rows", {box_map}, RowsAttrs{4, {}});
  ValueId rpn_logits = g.add1("rows_from_nchw", "rpn.cls_rows", {cls_map}, RowsAttrs{2, {}});
  AnchorsAttrs aa;
  aa.params = ap;
  aa.Hf = d.feat_h;
  aa.Wf = d.feat_w;
  ValueId anchors = g.add1("anchors", "anchors", {}, aa);
  d.num_anchors = g.value(anchors).shape[0];
  const BoxCoderParams coder = coder_params(cfg);

  ValueId rois = kNoValue, roi_count = kNoValue, crop_boxes = kNoValue, roi_batch = kNoValue, roi5 = kNoValue;
  if (s.train) {
    d.gt_boxes = g.input("gt_boxes", {N, G, 4});
    d.gt_labels = g.input("gt_labels", {N, G}, DType::I32);
    d.gt_count = g.input("gt_count", {N}, DType::I32);
    d.seed = g.input("seed", {1}, DType::I32);
    RpnTargetAttrs ra;
    ra.params.positive_iou = cfg.rpn_positive_iou;
    ra.params.negative_iou = cfg.rpn_negative_iou;
    ra.params.sampler.batch_size = cfg.rpn_batch_size;
    ra.params.sampler.positive_fraction = cfg.rpn_positive_fraction;
    ra.params.coder = coder;
    ra.params.window[2] = W;
    ra.params.window[3] = H;
    ra.params.batch_images = N;
    auto rt = g.add("rpn_targets", "rpn_targets", {anchors, d.gt_boxes, d.gt_count, d.seed}, ra);
    d.loss_rpn_cls = loss_node(g, "softmax_ce", "loss_rpn_cls", {rpn_logits, rt[0], rt[2], rt[4]}, cfg.rpn_obj_weight);
    d.loss_rpn_loc = loss_node(g, "smooth_l1", "loss_rpn_loc", {rpn_codes, rt[1], rt[3], rt[4]}, cfg.rpn_loc_weight);
  }
  if (s.fixed_proposals) {
    d.fixed_rois = g.input("fixed_rois", {N * cfg.max_proposals, 4});
    d.fixed_roi_count = g.input("fixed_roi_count", {N}, DType::I32);
    rois = d.fixed_rois;
    roi_count = d.fixed_roi_count;
  } else {
    ProposalAttrs pa;
    pa.params.nms_iou = cfg.rpn_nms_iou;
    pa.params.score_threshold = cfg.rpn_score_threshold;
    pa.params.max_proposals = cfg.max_proposals;
    pa.params.coder = coder;
    pa.params.window[2] = W;
    pa.params.window[3] = H;
    pa.params.prune_anchors = s.train;
    pa.image_h = H;
    pa.image_w = W;
    auto pr = g.add("proposals", "proposals", {rpn_logits, rpn_codes, anchors}, pa);
    rois = pr[0];
    crop_boxes = pr[1];
    roi_batch = pr[2];
    roi5 = pr[3];
    roi_count = pr[4];
  }
  d.proposals = rois;
  d.proposal_count = roi_count;

  ValueId cls_labels = kNoValue, cls_w = kNoValue, box_t = kNoValue, box_w = kNoValue, unit = kNoValue;
  if (s.train) {
    BoxTargetAttrs ba;
    ba.params.positive_iou = cfg.box_positive_iou;
    ba.params.sampler.batch_size = cfg.box_batch_size;
    ba.params.sampler.positive_fraction = cfg.box_positive_fraction;
    ba.params.coder = coder;
    ba.params.num_classes = cfg.num_classes;
    ba.params.batch_images = N;
    ba.image_h = H;
    ba.image_w = W;
    auto bt = g.add("box_targets", "box_targets", {rois, roi_count, d.gt_boxes, d.gt_labels, d.gt_count, d.seed}, ba);
    rois = bt[0];
    crop_boxes = bt[1];
    roi_batch = bt[2];
    roi5 = bt[3];
    cls_labels = bt[4];
    cls_w = bt[5];
    box_t = bt[6];
    box_w = bt[7];
    unit = bt[8];
  } else if (s.fixed_proposals) {
    CTDET_FAIL("faster_rcnn: fixed_proposals is a training-graph option (tests)");
  }

  // ---- ROI crop and second stage ----
  ValueId crops;
  if (cfg.roi_crop == RoiCropKind::CropAndResize) {
    CropAndResizeParams cp;
    cp.crop_h = cp.crop_w = cfg.crop_size;
    crops = g.add1("crop_and_resize", "roi_crop", {feat, crop_boxes, roi_batch}, cp);
  } else {
    RoiAlignParams rp;
    rp.pooled_h = rp.pooled_w = cfg.crop_size;
    rp.spatial_scale = float(1.0 / cfg.anchor_stride);
    rp.sampling_ratio = 2;
    crops = g.add1("roi_align", "roi_crop", {feat, roi5}, rp);
  }
  ValueId pooled = roi_max_pool(g, crops, cfg.crop_pool, s.train);
  ValueId b2 = bb.second(g, pooled);
  ValueId gap = g.add1("global_avg_pool", "box_head.gap", {b2});
  ValueId cls_logits = linear(g, gap, "box_head.cls", K + 1);
  ValueId box_codes = linear(g, gap, "box_head.box", K * 4);

  if (s.train) {
    d.loss_cls = loss_node(g, "softmax_ce", "loss_cls", {cls_logits, cls_labels, cls_w, unit}, cfg.box_cls_weight);
    ValueId sel = g.add1("select_class_boxes", "box_head.selected", {box_codes, cls_labels});
    d.loss_box = loss_node(g, "smooth_l1", "loss_box_reg", {sel, box_t, box_w, unit}, cfg.box_loc_weight);
    ValueId a = g.add1("add", "loss_rpn", {d.loss_rpn_cls, d.loss_rpn_loc});
    ValueId b = g.add1("add", "loss_box_classifier", {d.loss_cls, d.loss_box});
    d.loss = g.add1("add", "loss", {a, b});
    for (ValueId v : {d.loss_rpn_cls, d.loss_rpn_loc, d.loss_cls, d.loss_box, d.loss}) g.mark_output(v);
#if CTDET_INFERENCE_ONLY
    CTDET_FAIL("faster_rcnn: training graphs need the full ctdet library (this is the inference-only build)");
#else
    backward(g, d.loss);
#endif
  } else {
    PostprocessAttrs pa;
    pa.params.score_threshold = cfg.score_threshold;
    pa.params.nms_iou = cfg.nms_iou;
    pa.params.max_per_class = cfg.max_per_class;
    pa.params.max_total = cfg.max_total;
    pa.params.num_classes = cfg.num_classes;
    pa.params.coder = coder;
    pa.params.window[2] = W;
    pa.params.window[3] = H;
    auto pp2 = g.add("postprocess", "postprocess", {cls_logits, box_codes, rois, roi_count}, pa);
    d.det_boxes = pp2[0];
    d.det_scores = pp2[1];
    d.det_classes = pp2[2];
    d.det_count = pp2[3];
    for (ValueId v : pp2) g.mark_output(v);
    g.mark_output(d.proposals);
    g.mark_output(d.proposal_count);
  }
  d.description = str("Faster R-CNN, ", bb.name, ", ", s.train ? "training" : "inference", " graph, batch ", N, " at ",
                      s.height, "x", s.width, ": features ", d.feat_h, "x", d.feat_w, "x", bb.first_channels, ", ",
                      d.num_anchors, " anchors/image, ",
                      s.train ? str(cfg.box_batch_size, " sampled ROIs/image") : str(cfg.max_proposals, " proposals/image"),
                      ", second stage ", bb.second_channels, " channels, ", K, " classes");
  return d;
}

std::vector<std::string> trainable_params(const Graph& g) {
  std::vector<std::string> out;
  for (int v = 0; v < g.num_values(); ++v) {
    const Value& x = g.value(v);
    if (x.kind == ValueKind::Param && x.requires_grad) out.push_back(x.name);
  }
  return out;
}

void init_faster_rcnn_params(ParamStore& ps, const FasterRcnnConfig& cfg, uint64_t seed) {
  for (const std::string& name : ps.names()) {
    const Shape sh = ps.shape(name);
    const size_t n = size_t(sh.numel());
    std::vector<double> v(n, 0.0);
    uint64_t h = seed ^ 0x9E3779B97F4A7C15ull;
    for (char ch : name) h = splitmix64_mix(h ^ uint64_t(uint8_t(ch)));
    std::mt19937_64 rng(h);
    auto ends = [&](const char* suf) {
      const std::string s(suf);
      return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
    };
    auto has = [&](const char* part) { return name.find(part) != std::string::npos; };
    if (sh.rank() == 1) {
      const bool one = has("running_var") || has("moving_variance") ||
                       (!ends(".bias") && !has("beta") && !has("mean") && (ends(".weight") || has("gamma")));
      std::fill(v.begin(), v.end(), one ? 1.0 : 0.0);
    } else if (name.rfind("rpn.", 0) == 0) {
      std::normal_distribution<double> nd(0.0, cfg.rpn_init_std);
      for (auto& x : v) {
        double y;
        do y = nd(rng);
        while (std::abs(y) > 2 * cfg.rpn_init_std);  // truncated normal: redraw beyond 2 std
        x = y;
      }
    } else if (name.rfind("box_head.", 0) == 0 && sh.rank() == 2) {
      const double lim = std::sqrt(6.0 / double(sh[0] + sh[1]));  // Glorot uniform
      std::uniform_real_distribution<double> ud(-lim, lim);
      for (auto& x : v) x = ud(rng);
    } else {
      int64_t fan_in = 1;
      for (int i = 1; i < sh.rank(); ++i) fan_in *= sh[i];
      std::normal_distribution<double> nd(0.0, std::sqrt(2.0 / double(std::max<int64_t>(fan_in, 1))));
      for (auto& x : v) x = nd(rng);
    }
    if (ps.dtype() == DType::F64) ps.set<double>(name, v);
    else ps.set<float>(name, std::vector<float>(v.begin(), v.end()));
  }
}

}  // namespace ctdet
