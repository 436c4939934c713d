// Faster R-CNN wiring: RPN targets (matcher, forced matches, ties, sampler), proposals, second-stage targets and
// post-processing on hand-made cases; the whole detector's gradients against central differences in double;
// an overfit run on 4 phantom images; graph shapes for the study's configs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>

#include "detector/faster_rcnn.h"
#include "io/annotations.h"
#include "kernels/det_targets.h"
#include "kernels/optim.h"
#include "nn/executor.h"
#include "nn/planner.h"
#include "test_util.h"
#include "train/evaluation.h"

namespace ctdet {
namespace {

namespace tu = ctdet::testing;

// ---- RPN targets ---------------------------------------------------------------------------------------------
TEST(RpnTargets, MatcherThresholdsForcedMatchPruneAndWeights) {
  RpnTargetParams p;
  p.window[2] = 100;
  p.window[3] = 100;
  p.sampler.batch_size = 16;  // samples everything here
  // GT 0: (10,10,50,50). GT 1: (70,70,74,74), which no anchor overlaps much -> forced onto its argmax.
  const std::vector<double> gt = {10, 10, 50, 50, 70, 70, 74, 74};
  const std::vector<double> anchors = {
      10, 10, 50, 50,   // 0: IoU 1 with GT0 -> positive
      12, 12, 50, 50,   // 1: IoU 0.9025 -> positive
      10, 10, 50, 70,   // 2: IoU 1600/2400 = 0.667 -> ignored
      60, 0, 99, 40,    // 3: IoU 0 -> negative
      -5, 10, 30, 50,   // 4: outside the window -> ignored (pruned)
      68, 68, 78, 78,   // 5: IoU 16/100 = 0.16 with GT1: GT1's argmax -> forced positive
      66, 66, 80, 80,   // 6: IoU 16/196 with GT1: below 0.3 -> negative
  };
  const int64_t M = 7;
  std::vector<int32_t> labels(M), matched(M);
  std::vector<double> targets(M * 4), ow(M), lw(M);
  int64_t ns = rpn_targets_cpu(p, M, anchors.data(), 2, gt.data(), 7, labels.data(), targets.data(), ow.data(),
                               lw.data(), matched.data());
  const std::vector<int32_t> want = {1, 1, -1, 0, -1, 1, 0};
  EXPECT_EQ(labels, want);
  EXPECT_EQ(ns, 5);
  EXPECT_EQ(matched[5], 1);
  EXPECT_EQ(matched[0], 0);
  for (int64_t a = 0; a < M; ++a) {
    EXPECT_DOUBLE_EQ(ow[a], labels[a] >= 0 ? 1.0 / 5 : 0.0) << a;
    EXPECT_DOUBLE_EQ(lw[a], labels[a] == 1 ? 1.0 / 5 : 0.0) << a;
  }
  // Anchor 0 equals GT0: zero codes. Anchor 5 vs GT1: ty = 10*(72-73)/10 = -1, th = 5*log(4/10).
  for (int k = 0; k < 4; ++k) EXPECT_NEAR(targets[k], 0.0, 1e-12);
  // (the coder adds EPS = 1e-8 to sizes, spec §4.3)
  EXPECT_NEAR(targets[20], -1.0, 1e-7);
  EXPECT_NEAR(targets[21], -1.0, 1e-7);
  EXPECT_NEAR(targets[22], 5 * std::log(0.4), 1e-7);
  std::printf("[err] rpn targets hand case: labels exact, weights 1/%lld\n", (long long)ns);
}

TEST(RpnTargets, ForcedMatchTakesFirstAnchorOnTiesAndNoGtMeansAllNegative) {
  RpnTargetParams p;
  p.window[2] = p.window[3] = 100;
  p.sampler.batch_size = 8;
  const std::vector<float> gt = {40, 40, 44, 44};
  // Anchors 1 and 2 have the same IoU (16/100) with the GT; anchor 0 less.
  const std::vector<float> anchors = {0, 0, 20, 20, 38, 38, 48, 48, 36, 36, 46, 46};
  std::vector<int32_t> labels(3), matched(3);
  std::vector<float> t(12), ow(3), lw(3);
  rpn_targets_cpu(p, 3, anchors.data(), 1, gt.data(), 1, labels.data(), t.data(), ow.data(), lw.data(), matched.data());
  EXPECT_EQ(labels, (std::vector<int32_t>{0, 1, 0}));
  rpn_targets_cpu(p, 3, anchors.data(), 0, gt.data(), 1, labels.data(), t.data(), ow.data(), lw.data(), nullptr);
  EXPECT_EQ(labels, (std::vector<int32_t>{0, 0, 0}));
  for (float w : lw) EXPECT_EQ(w, 0.f);
}

TEST(RpnTargets, SamplerFractionsAndDeterminism) {
  RpnTargetParams p;
  p.window[2] = p.window[3] = 20000;
  // 2000 anchors: the first 300 equal the GT (positive), the rest far away (negative).
  const int64_t M = 2000;
  std::vector<float> anchors(M * 4), gt = {100, 100, 200, 200};
  for (int64_t a = 0; a < M; ++a) {
    // far anchors on a 200 px grid: none overlaps another
    const float ox = a < 300 ? 100.f : 2000.f + 200.f * float(a % 40), oy = a < 300 ? 100.f : 2000.f + 200.f * float(a / 40);
    anchors[4 * a] = ox;
    anchors[4 * a + 1] = oy;
    anchors[4 * a + 2] = ox + 100;
    anchors[4 * a + 3] = oy + 100;
  }
  std::vector<int32_t> l1(M), l2(M), l3(M);
  std::vector<float> t(M * 4), ow(M), lw(M);
  rpn_targets_cpu(p, M, anchors.data(), 1, gt.data(), 11, l1.data(), t.data(), ow.data(), lw.data(), nullptr);
  rpn_targets_cpu(p, M, anchors.data(), 1, gt.data(), 11, l2.data(), t.data(), ow.data(), lw.data(), nullptr);
  rpn_targets_cpu(p, M, anchors.data(), 1, gt.data(), 12, l3.data(), t.data(), ow.data(), lw.data(), nullptr);
  auto count = [](const std::vector<int32_t>& l, int v) { return std::count(l.begin(), l.end(), v); };
  EXPECT_EQ(count(l1, 1), 128);
  EXPECT_EQ(count(l1, 0), 128);
  EXPECT_EQ(l1, l2);
  EXPECT_NE(l1, l3);
  // Few positives: all of them, negatives fill to 256.
  gt = {2000.f + 200.f * 20, 2000.f + 200.f * 7, 2100.f + 200.f * 20, 2100.f + 200.f * 7};  // anchor 300 exactly
  rpn_targets_cpu(p, M, anchors.data(), 1, gt.data(), 11, l1.data(), t.data(), ow.data(), lw.data(), nullptr);
  EXPECT_EQ(count(l1, 1), 1);
  EXPECT_EQ(count(l1, 0), 255);
  std::printf("[err] sampler: 128/128 of 300 pos + 1700 neg; 1/255 with one positive; seeds repeat\n");
}

// ---- proposals ------------------------------------------------------------------------------------------------
TEST(Proposals, NmsPruneClipAndScoreOrder) {
  ProposalParams p;
  p.window[2] = p.window[3] = 100;
  p.max_proposals = 4;
  p.nms_iou = 0.7;
  const std::vector<double> anchors = {10, 10, 50, 50, 11, 11, 50, 50, 60, 60, 90, 90, -10, 0, 20, 30};
  const std::vector<double> codes(16, 0.0);
  // objectness logits: anchor 1 > anchor 0 (they overlap 0.95 -> anchor 0 suppressed), anchor 2 lowest.
  const std::vector<double> logits = {0, 1, 0, 2, 0, -1, 0, 3};
  std::vector<double> rois(16), scores(4);
  int64_t n = proposals_cpu(p, 4, logits.data(), codes.data(), anchors.data(), rois.data(), scores.data());
  ASSERT_EQ(n, 2);  // anchor 3 pruned (training), anchor 0 suppressed
  EXPECT_EQ(std::vector<double>(rois.begin(), rois.begin() + 8), (std::vector<double>{11, 11, 50, 50, 60, 60, 90, 90}));
  EXPECT_NEAR(scores[0], 1 / (1 + std::exp(-2.0)), 1e-12);
  for (int k = 8; k < 16; ++k) EXPECT_EQ(rois[k], 0.0);
  p.prune_anchors = false;  // inference: anchor 3 is clipped to (0,0,20,30) and becomes the top proposal
  n = proposals_cpu(p, 4, logits.data(), codes.data(), anchors.data(), rois.data(), scores.data());
  ASSERT_EQ(n, 3);
  EXPECT_EQ(std::vector<double>(rois.begin(), rois.begin() + 4), (std::vector<double>{0, 0, 20, 30}));
}

// ---- second-stage targets ---------------------------------------------------------------------------------------
TEST(BoxTargets, MatchSampleEncodeAndPadding) {
  BoxTargetParams p;
  p.sampler.batch_size = 4;
  p.sampler.positive_fraction = 0.25;
  p.num_classes = 3;
  const std::vector<double> gt = {10, 10, 50, 50};
  const std::vector<int32_t> gl = {3};
  const std::vector<double> rois = {10, 10, 50, 50, 12, 10, 50, 50, 60, 60, 90, 90};  // pos, pos, neg
  std::vector<double> out(16), cw(4), t(16), lw(4);
  std::vector<int32_t> lab(4);
  int64_t ns = box_targets_cpu(p, 3, rois.data(), 1, gt.data(), gl.data(), 5, out.data(), lab.data(), cw.data(),
                               t.data(), lw.data());
  EXPECT_EQ(ns, 2);  // one positive (25% of 4), one negative: only one negative exists
  EXPECT_EQ(lab[0], 3);
  EXPECT_EQ(lab[1], 0);
  EXPECT_EQ(lab[2], -1);
  EXPECT_EQ(lab[3], -1);
  EXPECT_DOUBLE_EQ(cw[0], 0.5);
  EXPECT_DOUBLE_EQ(lw[0], 0.5);
  EXPECT_DOUBLE_EQ(lw[1], 0.0);
  EXPECT_DOUBLE_EQ(cw[2], 0.0);
  EXPECT_EQ(out[4], 60.0);  // row 1: the negative
  EXPECT_EQ(out[8], 0.0);   // row 2: padding
  std::vector<int32_t> bad = {4};
  EXPECT_THROW(box_targets_cpu(p, 3, rois.data(), 1, gt.data(), bad.data(), 5, out.data(), lab.data(), cw.data(),
                               t.data(), lw.data()),
               Error);
}

// ---- post-processing ---------------------------------------------------------------------------------------------
TEST(Postprocess, SoftmaxPerClassNmsAndLimits) {
  PostprocessParams p;
  p.num_classes = 2;
  p.window[2] = p.window[3] = 100;
  p.max_total = 3;
  p.nms_iou = 0.6;
  const std::vector<double> rois = {10, 10, 50, 50, 12, 12, 50, 50, 60, 60, 90, 90};
  // logits (bg, c1, c2)
  const std::vector<double> logits = {0, 2, 0, 0, 1, 0, 0, 0, 3};
  const std::vector<double> codes(3 * 8, 0.0);
  std::vector<double> boxes(12), scores(3);
  std::vector<int32_t> cls(3);
  int64_t n = postprocess_cpu(p, 3, logits.data(), codes.data(), rois.data(), boxes.data(), scores.data(), cls.data());
  ASSERT_EQ(n, 3);
  auto sm = [](double a, double b, double c, int i) {
    const double e[3] = {std::exp(a), std::exp(b), std::exp(c)};
    return e[i] / (e[0] + e[1] + e[2]);
  };
  // Highest: roi 2 class 2 (e^3). Then roi 0 class 1 (roi 1 class 1 suppressed by NMS at 0.9 IoU).
  // Third: roi 0/1 class 2 or roi 2 class 1 -- the largest remaining score: roi 1 class 2? compute all.
  EXPECT_EQ(cls[0], 2);
  EXPECT_NEAR(scores[0], sm(0, 0, 3, 2), 1e-12);
  EXPECT_EQ(std::vector<double>(boxes.begin(), boxes.begin() + 4), (std::vector<double>{60, 60, 90, 90}));
  EXPECT_EQ(cls[1], 1);
  EXPECT_NEAR(scores[1], sm(0, 2, 0, 1), 1e-12);
  // Remaining candidates: class 2 on roi 0 (0.106) and roi 1 (0.212 -> kept first), class 1 on roi 2 (0.047).
  EXPECT_EQ(cls[2], 2);
  EXPECT_NEAR(scores[2], sm(0, 1, 0, 0) * 0 + std::exp(0.0) / (1 + std::exp(1.0) + 1), 1e-12);
  p.score_threshold = 0.8;  // only roi 2 class 2 (0.909) survives
  n = postprocess_cpu(p, 3, logits.data(), codes.data(), rois.data(), boxes.data(), scores.data(), cls.data());
  EXPECT_EQ(n, 1);
  EXPECT_EQ(scores[1], 0.0);
}

// ---- a tiny detector -----------------------------------------------------------------------------------------------
FasterRcnnConfig tiny_config() {
  FasterRcnnConfig c;
  c.resnet_base_width = 4;
  c.resnet_units = {1, 1, 1, 1};
  c.rpn_conv_depth = 8;
  c.anchor_base = 32;
  c.anchor_scales = {0.5, 1.0, 2.0};
  c.max_proposals = 16;
  c.box_batch_size = 8;
  c.rpn_batch_size = 32;
  c.max_gt_boxes = 4;
  c.num_classes = 2;
  c.min_dimension = 64;
  c.max_dimension = 128;
  return c;
}

TEST(FasterRcnnGraph, StudyConfigShapes) {
  FasterRcnnConfig cfg;  // the study's ResNet-101 config
  DetectorShape s;
  s.height = 600;
  s.width = 1024;
  DetectorGraph d = build_faster_rcnn(cfg, s);
  EXPECT_EQ(d.feat_h, 38);
  EXPECT_EQ(d.feat_w, 64);
  EXPECT_EQ(d.num_anchors, 38 * 64 * 12);
  EXPECT_EQ(d.graph.value(d.det_boxes).shape, Shape({300, 4}));
  std::printf("%s\n", d.description.c_str());
  s.train = true;
  DetectorGraph t = build_faster_rcnn(cfg, s);
  EXPECT_EQ(t.graph.value(t.loss).shape, Shape({1}));
  const auto params = trainable_params(t.graph);
  EXPECT_TRUE(std::find(params.begin(), params.end(), "rpn.conv.weight") != params.end());
  EXPECT_TRUE(std::find(params.begin(), params.end(), "bn1.running_mean") == params.end());
  EXPECT_THROW(build_faster_rcnn(cfg, DetectorShape{1, 20, 600, false, false}), Error);
}

struct TinyRun {
  FasterRcnnConfig cfg;
  DetectorGraph d;
  ParamStore ps;
  MemoryPlan plan;
  std::unique_ptr<Executor> ex;
  TinyRun(const FasterRcnnConfig& c, const DetectorShape& s, DType t) : cfg(c), d(build_faster_rcnn(c, s, t)), ps(Device::CPU, t) {
    ps.declare_from(d.graph);
    ps.allocate();
    init_faster_rcnn_params(ps, cfg, 3);
    PlanOptions o;
    plan = plan_memory(d.graph, o);
    ex = std::make_unique<Executor>(d.graph, plan, ps, Device::CPU);
  }
};

// The whole detector in double: every trainable parameter tensor's gradient (2 elements each: the middle one and the
// largest-gradient one) against central differences, with sampled anchors and ROIs held fixed.
TEST(FasterRcnnGradcheck, EveryParameterAgainstCentralDifferences) {
  FasterRcnnConfig cfg = tiny_config();
  DetectorShape s{1, 64, 64, true, true};
  TinyRun r(cfg, s, DType::F64);
  Executor& ex = *r.ex;
  std::vector<double> img = tu::random_vec<double>(3 * 64 * 64, 21, -1, 1);
  std::vector<double> gt = {8, 8, 30, 28, 34, 30, 60, 62, 0, 0, 0, 0, 0, 0, 0, 0};
  std::vector<int32_t> gl = {1, 2, 0, 0}, gc = {2}, seed = {5}, rc = {10};
  std::vector<double> rois(16 * 4, 0.0);
  const double rb[10][4] = {{8, 8, 30, 28}, {9, 7, 31, 29}, {34, 30, 60, 62}, {33, 31, 58, 60}, {0, 0, 20, 20},
                            {40, 0, 63, 20}, {10, 40, 30, 63}, {20, 20, 44, 44}, {5, 30, 25, 50}, {36, 28, 62, 60}};
  for (int i = 0; i < 10; ++i)
    for (int k = 0; k < 4; ++k) rois[4 * i + k] = rb[i][k];
  auto run = [&]() {
    r.ps.zero_grads();
    ex.set(r.d.image, img);
    ex.set(r.d.gt_boxes, gt);
    ex.set(r.d.gt_labels, gl);
    ex.set(r.d.gt_count, gc);
    ex.set(r.d.seed, seed);
    ex.set(r.d.fixed_rois, rois);
    ex.set(r.d.fixed_roi_count, rc);
    ex.run();
    return ex.get<double>(r.d.loss)[0];
  };
  const double L0 = run();
  std::printf("tiny detector loss %.6f (rpn_cls %.4f rpn_loc %.4f cls %.4f box %.4f)\n", L0,
              ex.get<double>(r.d.loss_rpn_cls)[0], ex.get<double>(r.d.loss_rpn_loc)[0], ex.get<double>(r.d.loss_cls)[0],
              ex.get<double>(r.d.loss_box)[0]);
  ASSERT_TRUE(std::isfinite(L0));
  EXPECT_GT(ex.get<double>(r.d.loss_box)[0], 0.0);   // positives exist in the second stage
  EXPECT_GT(ex.get<double>(r.d.loss_rpn_loc)[0], 0.0);
  const auto names = trainable_params(r.d.graph);
  std::map<std::string, std::vector<double>> grads;
  for (const auto& n : names) grads[n] = r.ps.get<double>(n, 1);
  double worst = 0;
  std::string worst_name;
  int checked = 0;
  for (const auto& n : names) {
    const auto& gv = grads[n];
    std::vector<size_t> idx = {gv.size() / 2, size_t(std::max_element(gv.begin(), gv.end(), [](double a, double b) {
                                                         return std::abs(a) < std::abs(b);
                                                       }) - gv.begin())};
    for (size_t i : idx) {
      std::vector<double> p = r.ps.get<double>(n, 0);
      const double orig = p[i], h = 1e-6 * std::max(1.0, std::abs(orig));
      p[i] = orig + h;
      r.ps.set<double>(n, p);
      const double Lp = run();
      p[i] = orig - h;
      r.ps.set<double>(n, p);
      const double Lm = run();
      p[i] = orig;
      r.ps.set<double>(n, p);
      const double num = (Lp - Lm) / (2 * h), ana = gv[i];
      const double err = std::abs(num - ana) / std::max(1e-4, std::max(std::abs(num), std::abs(ana)));
      if (err > worst) {
        worst = err;
        worst_name = str(n, "[", i, "] num ", num, " ana ", ana);
      }
      EXPECT_LT(err, 1e-4) << n << "[" << i << "] numeric " << num << " analytic " << ana;
      ++checked;
    }
  }
  std::printf("[err] whole detector gradcheck: %d elements over %zu parameter tensors, worst rel %.3e (%s)\n", checked,
              names.size(), worst, worst_name.c_str());
}

// Four phantom images with one or two bright rectangles each (class 1 bright, class 2 mid-grey with a dark core),
// unit-scale values as the "inception" input normalisation gives.
void phantom(int i, std::vector<float>& img, std::vector<Box>& boxes) {
  const int S = 128;
  img.assign(3 * S * S, -0.8f);
  boxes.clear();
  const int spec[4][2][5] = {{{20, 24, 60, 56, 1}, {80, 70, 112, 110, 2}},
                             {{30, 60, 70, 100, 2}, {0, 0, 0, 0, 0}},
                             {{70, 14, 110, 50, 1}, {16, 80, 48, 116, 1}},
                             {{44, 40, 92, 84, 2}, {0, 0, 0, 0, 0}}};
  for (int b = 0; b < 2; ++b) {
    const int* q = spec[i][b];
    if (!q[4]) continue;
    boxes.push_back(Box{float(q[0]), float(q[1]), float(q[2]), float(q[3]), q[4]});
    for (int y = q[1]; y < q[3]; ++y)
      for (int x = q[0]; x < q[2]; ++x) {
        float v = q[4] == 1 ? 0.9f : 0.2f;
        if (q[4] == 2 && std::abs(x - (q[0] + q[2]) / 2) < 6 && std::abs(y - (q[1] + q[3]) / 2) < 6) v = -0.5f;
        for (int ch = 0; ch < 3; ++ch) img[size_t(ch * S * S + y * S + x)] = v;
      }
  }
}

TEST(FasterRcnnOverfit, FourPhantomImagesLossFallsAndApReaches09) {
  FasterRcnnConfig cfg = tiny_config();
  cfg.rpn_conv_depth = 32;
  cfg.resnet_base_width = 8;
  DetectorShape st{1, 128, 128, true, false};
  TinyRun tr(cfg, st, DType::F32);
  DetectorShape si{1, 128, 128, false, false};
  DetectorGraph inf = build_faster_rcnn(cfg, si);
  PlanOptions o;
  MemoryPlan iplan = plan_memory(inf.graph, o);
  Executor iex(inf.graph, iplan, tr.ps, Device::CPU);

  std::vector<float> imgs[4];
  std::vector<Box> boxes[4];
  for (int i = 0; i < 4; ++i) phantom(i, imgs[i], boxes[i]);
  SgdParams sp;
  sp.momentum = 0.9;
  const int steps = std::getenv("OVERFIT_STEPS") ? std::atoi(std::getenv("OVERFIT_STEPS")) : 800;
  const double lr_max = std::getenv("OVERFIT_LR") ? std::atof(std::getenv("OVERFIT_LR")) : 0.005;
  double first = 0, last = 0;
  double avg = 0;
  for (int step = 0; step < steps; ++step) {
    const int i = step % 4;
    std::vector<float> gt(4 * 4, 0.f);
    std::vector<int32_t> gl(4, 0), gc = {int32_t(boxes[i].size())}, seed = {step};
    for (size_t b = 0; b < boxes[i].size(); ++b) {
      gt[4 * b] = boxes[i][b].x1;
      gt[4 * b + 1] = boxes[i][b].y1;
      gt[4 * b + 2] = boxes[i][b].x2;
      gt[4 * b + 3] = boxes[i][b].y2;
      gl[b] = boxes[i][b].label;
    }
    tr.ps.zero_grads();
    tr.ex->set(tr.d.image, imgs[i]);
    tr.ex->set(tr.d.gt_boxes, gt);
    tr.ex->set(tr.d.gt_labels, gl);
    tr.ex->set(tr.d.gt_count, gc);
    tr.ex->set(tr.d.seed, seed);
    tr.ex->run();
    const double L = tr.ex->get<float>(tr.d.loss)[0];
    ASSERT_TRUE(std::isfinite(L)) << "step " << step;
    avg += L;
    if (step % 4 == 3) {
      if (step == 3) first = avg / 4;
      last = avg / 4;
      if (step % 100 == 99)
        std::printf("step %4d  mean loss over 4 images %.4f (last: rpn_cls %.4f rpn_loc %.4f cls %.4f box %.4f)\n",
                    step + 1, avg / 4, tr.ex->get<float>(tr.d.loss_rpn_cls)[0], tr.ex->get<float>(tr.d.loss_rpn_loc)[0],
                    tr.ex->get<float>(tr.d.loss_cls)[0], tr.ex->get<float>(tr.d.loss_box)[0]);
      avg = 0;
    }
    sp.lr = step < 20 ? lr_max * (step + 1) / 20 : lr_max;
    Tensor pt = tr.ps.all_params(), gtn = tr.ps.all_grads(), mt = tr.ps.all_momentum();
    float* gp = gtn.ptr<float>();
    const int64_t n = pt.numel();
    clip_by_global_norm_cpu<float>(10.0, 1, &gp, &n);
    sgd_momentum_update_cpu<float>(sp, n, pt.ptr<float>(), mt.ptr<float>(), gp);
  }
  // Evaluate on the same 4 images.
  Dataset ds;
  ds.class_names = {"A", "B"};
  std::vector<Detection> dets;
  for (int i = 0; i < 4; ++i) {
    ImageRecord rec;
    rec.id = str("img", i);
    rec.boxes = boxes[i];
    ds.images.push_back(rec);
    iex.set(inf.image, imgs[i]);
    iex.run();
    const auto b = iex.get<float>(inf.det_boxes);
    const auto sc = iex.get<float>(inf.det_scores);
    const auto cl = iex.get<int32_t>(inf.det_classes);
    const int cnt = iex.get<int32_t>(inf.det_count)[0];
    for (int k = 0; k < cnt; ++k)
      dets.push_back(Detection{rec.id, cl[size_t(k)], sc[size_t(k)], b[4 * k], b[4 * k + 1], b[4 * k + 2], b[4 * k + 3]});
  }
  EvalOptions eo;
  const double ap1 = coco_class_ap(ds, dets, 1, eo).ap50, ap2 = coco_class_ap(ds, dets, 2, eo).ap50;
  const double map = (ap1 + ap2) / 2;
  std::printf("[err] overfit: mean loss %.4f -> %.4f (x%.1f) in %d steps; AP@0.5 class1 %.3f class2 %.3f mean %.3f\n",
              first, last, first / last, steps, ap1, ap2, map);
  EXPECT_GT(first / last, 10.0);
  EXPECT_GE(map, 0.9);
}

}  // namespace
}  // namespace ctdet
