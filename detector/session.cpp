#include "detector/session.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "nn/autograd.h"

namespace ctdet {

Normalization input_normalization(const FasterRcnnConfig& cfg) {
  if (cfg.input_normalization == "auto")
    return cfg.backbone == BackboneKind::ResNet101 ? Normalization::kResNet : Normalization::kInception;
  return parse_normalization(cfg.input_normalization);
}

Batch single_image_batch(const FasterRcnnConfig& cfg, const Image& img, const std::string& image_id) {
  NetInput net = preprocess_image(img, input_normalization(cfg), cfg.min_dimension, cfg.max_dimension);
  Batch b;
  b.n = 1;
  b.height = net.height;
  b.width = net.width;
  b.data = HostBuffer(net.chw.size());
  std::copy(net.chw.begin(), net.chw.end(), b.data.data());
  BatchSample smp;
  smp.image_id = image_id;
  smp.file = image_id;
  smp.orig_height = net.orig_height;
  smp.orig_width = net.orig_width;
  smp.height = net.height;
  smp.width = net.width;
  smp.scale_y = net.scale_y;
  smp.scale_x = net.scale_x;
  b.samples.push_back(smp);
  return b;
}

void declare_faster_rcnn_params(ParamStore& ps, const FasterRcnnConfig& cfg) {
  // Parameters do not depend on the input size: a small inference graph declares them all.
  DetectorShape s;
  s.height = s.width = 64;
  DetectorGraph d = build_faster_rcnn(cfg, s, ps.dtype());
  ps.declare_from(d.graph);
}

std::string StepLosses::non_finite() const {
  if (!std::isfinite(rpn_cls)) return "loss_rpn_cls";
  if (!std::isfinite(rpn_loc)) return "loss_rpn_loc";
  if (!std::isfinite(cls)) return "loss_cls";
  if (!std::isfinite(box)) return "loss_box_reg";
  if (!std::isfinite(total)) return "loss";
  return "";
}

DetectorSession::DetectorSession(const FasterRcnnConfig& cfg, ParamStore& params, Device device, CudaContext* cuda,
                                 size_t memory_budget)
    : cfg_(cfg), ps_(params), device_(device), cuda_(cuda), budget_(memory_budget) {
  cfg_.validate();
  CTDET_CHECK(ps_.allocated(), "DetectorSession: the parameter store must be declared and allocated first");
  CTDET_CHECK(ps_.device() == device_, "DetectorSession: parameters live on another device than the session's");
}

DetectorSession::~DetectorSession() = default;

DetectorSession::Entry& DetectorSession::entry(bool train, int n, int h, int w) {
  auto key = std::make_tuple(train, n, h, w);
  auto it = cache_.find(key);
  if (it != cache_.end()) return *(last_ = it->second.get());
  auto e = std::make_unique<Entry>();
  DetectorShape s;
  s.batch = n;
  s.height = h;
  s.width = w;
  s.train = train;
  e->d = build_faster_rcnn(cfg_, s, ps_.dtype());
#if !CTDET_INFERENCE_ONLY
  if (train && ps_.use() == ParamUse::TrainingGradsInArena) param_gradients_to_arena(e->d.graph);
  if (train && recompute_backbone)
    apply_segment_recompute(e->d.graph, backbone_recompute_segments(e->d.graph, e->d.first_stage_nodes));
#endif
  PlanOptions opt;
  opt.device = device_;
  opt.cuda = cuda_;
  opt.trim_peak_workspace = trim_peak_workspace;
#if !CTDET_INFERENCE_ONLY
  // Over a memory budget, the planner's last resort is checkpointing the backbone (as train.recompute_backbone).
  if (train && !recompute_backbone && budget_ > 0)
    opt.recompute_segments = backbone_recompute_segments(e->d.graph, e->d.first_stage_nodes);
#endif
  if (budget_ > 0) {
    e->plan = plan_with_budget(e->d.graph, opt, budget_, &e->plan_log);
  } else {
    e->plan = plan_memory(e->d.graph, opt);
  }
  e->ex = std::make_unique<Executor>(e->d.graph, e->plan, ps_, device_, cuda_);
  Entry& ref = *e;
  cache_[key] = std::move(e);
  return *(last_ = &ref);
}

StepLosses DetectorSession::train_step(const Batch& b, int32_t seed) {
#if CTDET_INFERENCE_ONLY
  (void)b;
  (void)seed;
  CTDET_FAIL("DetectorSession::train_step: this is the inference-only build of ctdet (link the full library)");
#else
  CTDET_CHECK(b.n > 0 && int(b.samples.size()) == b.n, "train_step: empty or inconsistent batch");
  Entry& e = entry(true, b.n, b.height, b.width);
  const int G = cfg_.max_gt_boxes;
  std::vector<float> gt(size_t(b.n) * G * 4, 0.f);
  std::vector<int32_t> labels(size_t(b.n) * G, 0), counts(size_t(b.n), 0);
  for (int i = 0; i < b.n; ++i) {
    const BatchSample& s = b.samples[size_t(i)];
    CTDET_CHECK(int(s.boxes.size()) <= G, "image '", s.image_id, "' (", s.file, ") has ", s.boxes.size(),
                " boxes; the graph holds model.max_gt_boxes = ", G);
    counts[size_t(i)] = int32_t(s.boxes.size());
    for (size_t j = 0; j < s.boxes.size(); ++j) {
      const Box& bx = s.boxes[j];
      CTDET_CHECK(bx.label >= 1 && bx.label <= cfg_.num_classes, "image '", s.image_id, "' box ", j, " has class ",
                  bx.label, ", expected 1..", cfg_.num_classes);
      float* g = &gt[(size_t(i) * G + j) * 4];
      g[0] = bx.x1;
      g[1] = bx.y1;
      g[2] = bx.x2;
      g[3] = bx.y2;
      labels[size_t(i) * G + j] = bx.label;
    }
  }
  Executor& ex = *e.ex;
  last_train_ = &e;
  ex.set(e.d.image, b.data.data(), size_t(b.n) * 3 * b.height * b.width * sizeof(float));
  ex.set(e.d.gt_boxes, gt);
  ex.set(e.d.gt_labels, labels);
  ex.set(e.d.gt_count, counts);
  ex.set(e.d.seed, std::vector<int32_t>{seed});
  ex.profile = profile;
  ex.run();
  StepLosses l;
  l.rpn_cls = ex.get<float>(e.d.loss_rpn_cls)[0];
  l.rpn_loc = ex.get<float>(e.d.loss_rpn_loc)[0];
  l.cls = ex.get<float>(e.d.loss_cls)[0];
  l.box = ex.get<float>(e.d.loss_box)[0];
  l.total = ex.get<float>(e.d.loss)[0];
  return l;
#endif
}

std::vector<std::vector<Detection>> DetectorSession::detect(const Batch& b, float score_threshold) {
  CTDET_CHECK(b.n > 0 && int(b.samples.size()) == b.n, "detect: empty or inconsistent batch");
  Entry& e = entry(false, b.n, b.height, b.width);
  Executor& ex = *e.ex;
  ex.set(e.d.image, b.data.data(), size_t(b.n) * 3 * b.height * b.width * sizeof(float));
  ex.profile = profile;
  ex.run();
  const auto boxes = ex.get<float>(e.d.det_boxes);
  const auto scores = ex.get<float>(e.d.det_scores);
  const auto classes = ex.get<int32_t>(e.d.det_classes);
  const auto counts = ex.get<int32_t>(e.d.det_count);
  const int64_t T = cfg_.max_total;
  std::vector<std::vector<Detection>> out(size_t(b.n));
  for (int i = 0; i < b.n; ++i) {
    const BatchSample& s = b.samples[size_t(i)];
    for (int64_t k = 0; k < counts[size_t(i)]; ++k) {
      const size_t r = size_t(i * T + k);
      if (scores[r] < score_threshold) continue;
      Detection d;
      d.image_id = s.image_id;
      d.label = classes[r];
      d.score = scores[r];
      float x1 = boxes[4 * r], y1 = boxes[4 * r + 1], x2 = boxes[4 * r + 2], y2 = boxes[4 * r + 3];
      if (s.flipped) {  // mirror back (x' = W - x) before unscaling
        const float fx1 = float(s.width) - x2, fx2 = float(s.width) - x1;
        x1 = fx1;
        x2 = fx2;
      }
      auto clampf = [](float v, float hi) { return v < 0 ? 0.f : (v > hi ? hi : v); };
      d.x1 = clampf(float(x1 / s.scale_x), float(s.orig_width));
      d.y1 = clampf(float(y1 / s.scale_y), float(s.orig_height));
      d.x2 = clampf(float(x2 / s.scale_x), float(s.orig_width));
      d.y2 = clampf(float(y2 / s.scale_y), float(s.orig_height));
      out[size_t(i)].push_back(d);
    }
  }
  return out;
}

Tensor DetectorSession::gradient(const std::string& name) const {
  if (ps_.use() != ParamUse::TrainingGradsInArena) return ps_.grad(name);
  CTDET_CHECK(ps_.has(name), "gradient: no parameter named '", name, "'");
  CTDET_CHECK(last_train_ != nullptr, "gradient: no training step has run yet (parameter '", name, "')");
  const Graph& g = last_train_->d.graph;
  const ValueId v = g.find(name);
  if (v == kNoValue || g.value(v).grad == kNoValue) {
    Tensor none;
    none.shape = ps_.shape(name);
    none.dtype = ps_.dtype();
    none.device = device_;
    return none;
  }
  return last_train_->ex->value(g.value(v).grad);
}

std::string DetectorSession::last_plan_report() const {
  return last_ ? last_->plan.report(last_->d.graph) : std::string("(no graph yet)");
}
std::vector<int> DetectorSession::last_roi_counts() const {
  if (!last_) return {};
  const int n = int(last_->d.graph.value(last_->d.image).shape[0]);
  if (last_->d.det_count == kNoValue) return std::vector<int>(size_t(n), cfg_.box_batch_size);
  const auto c = last_->ex->get<int32_t>(last_->d.proposal_count);
  return std::vector<int>(c.begin(), c.end());
}

const std::string& DetectorSession::last_plan_log() const {
  static const std::string none;
  return last_ ? last_->plan_log : none;
}
size_t DetectorSession::planned_peak_bytes() const { return last_ ? last_->plan.arena_bytes : 0; }

}  // namespace ctdet
