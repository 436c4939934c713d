// Graph ops of nn/ops_elem.cpp and nn/ops_det.cpp: every differentiable op's input gradients against central
// differences in double through the whole graph machinery (shape inference, autograd, planner, executor in debug
// mode), values read by several ops (accumulated gradients), shape-mismatch messages that name the values, the
// detection chain anchors -> decode -> clip -> nms against the kernels called directly, and a planned run with
// poisoned dead buffers equal to a one-buffer-per-value run.
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <random>

#include "kernels/boxes.h"
#include "nn/autograd.h"
#include "nn/core_ops.h"
#include "nn/executor.h"
#include "nn/op_attrs.h"
#include "nn/op_registry.h"
#include "nn/param_store.h"
#include "nn/planner.h"
#include "test_util.h"

using namespace ctdet;
namespace tu = ctdet::testing;

namespace {

// loss term sum(y * w) with w a fresh random input (no gradient): every element of y gets its own weight.
ValueId weighted_sum(Graph& g, ValueId y, const std::string& name) {
  ValueId w = g.input(name + ".w", g.value(y).shape);
  return g.add1("sum", name + ".sum", {g.add1("mul", name + ".mul", {y, w})});
}

// Runs a graph on the CPU (plan with reuse, executor in debug mode: dead buffers are poisoned with NaN) and
// checks input gradients against central differences.
template <typename T>
struct Harness {
  Graph& g;
  ValueId loss;
  ParamStore ps;
  MemoryPlan plan;
  std::unique_ptr<Executor> ex;
  std::map<ValueId, std::vector<T>> f;
  std::map<ValueId, std::vector<int32_t>> ints;

  Harness(Graph& graph, ValueId l, bool debug = true)
      : g(graph), loss(l), ps(Device::CPU, graph.dtype()) {
    backward(g, loss);
    ps.declare_from(g);
    ps.allocate();
    plan = plan_memory(g, {});
    ex = std::make_unique<Executor>(g, plan, ps, Device::CPU);
    ex->debug = debug;
  }
  // Every float input not set explicitly gets random values (the weights of weighted_sum among them).
  void fill_rest(uint64_t seed) {
    for (ValueId v = 0; v < g.num_values(); ++v) {
      const Value& x = g.value(v);
      if (x.kind != ValueKind::Input || x.dtype == DType::I32 || f.count(v)) continue;
      f[v] = tu::random_vec<T>(size_t(x.shape.numel()), seed + uint64_t(v));
    }
  }
  T run() {
    for (auto& [v, d] : f) ex->set(v, d);
    for (auto& [v, d] : ints) ex->set(v, d);
    ex->run();
    return ex->get<T>(loss)[0];
  }
  // d loss / d v (v an input with requires_grad) against central differences; returns max relative error.
  double check(const std::string& what, ValueId v, double eps = 1e-6) {
    run();
    std::vector<T> analytic = ex->get<T>(g.value(v).grad);
    std::vector<T> base = f[v];
    std::vector<double> numeric(base.size());
    for (size_t i = 0; i < base.size(); ++i) {
      f[v][i] = base[i] + T(eps);
      double lp = run();
      f[v][i] = base[i] - T(eps);
      double lm = run();
      f[v][i] = base[i];
      numeric[i] = (lp - lm) / (2 * eps);
    }
    auto e = tu::compare(analytic, numeric, 1e-3);
    tu::print_err("d loss / d " + what, e);
    return e.max_rel;
  }
};

ValueId grad_input(Graph& g, const std::string& name, const Shape& s) {
  ValueId v = g.input(name, s);
  g.value_mut(v).requires_grad = true;
  return v;
}

Pool2dParams max_pool_same(int k, int s) {
  Pool2dParams p;
  p.kind = PoolKind::Max;
  p.kh = p.kw = k;
  p.sh = p.sw = s;
  p.padding = PoolPadding::TfSame;
  return p;
}
Pool2dParams avg_pool_explicit(int k, int s, int pad, bool include_pad) {
  Pool2dParams p;
  p.kind = PoolKind::Avg;
  p.kh = p.kw = k;
  p.sh = p.sw = s;
  p.padding = PoolPadding::Explicit;
  p.pad_h = p.pad_w = pad;
  p.count_include_pad = include_pad;
  return p;
}

// Central differences in double with eps 1e-6 and a 1e-3 floor on the reference: rounding leaves ~1e-9..1e-6;
// a wrong gradient is off by O(1).
constexpr double kTol = 1e-5;

}  // namespace

// x is read by relu6, two pool2d nodes and global_avg_pool: four gradient contributions, three accumulate.
TEST(GraphOps, Relu6PoolGapGradientsAccumulate) {
  Graph g(DType::F64);
  ValueId x = grad_input(g, "x", {2, 3, 5, 6});
  ValueId y1 = g.add1("relu6", "act", {x});
  ValueId y2 = g.add1("pool2d", "maxpool", {x}, max_pool_same(3, 2));
  ValueId y3 = g.add1("pool2d", "avgpool", {x}, avg_pool_explicit(3, 2, 1, false));
  ValueId y4 = g.add1("global_avg_pool", "gap", {x});
  EXPECT_EQ(g.value(y2).shape, Shape({2, 3, 3, 3}));
  EXPECT_EQ(g.value(y3).shape, Shape({2, 3, 3, 3}));
  EXPECT_EQ(g.value(y4).shape, Shape({2, 3}));
  ValueId l = g.add1("add", "l12", {weighted_sum(g, y1, "t1"), weighted_sum(g, y2, "t2")});
  l = g.add1("add", "l123", {l, weighted_sum(g, y3, "t3")});
  l = g.add1("add", "loss", {l, weighted_sum(g, y4, "t4")});
  Harness<double> h(g, l);
  h.f[x] = tu::random_vec<double>(180, 11, -2.0, 8.0);  // relu6's three regions
  h.fill_rest(100);
  EXPECT_LT(h.check("x (relu6 + max pool + avg pool + gap)", x), kTol);
}

// max_pool_argmax (the training graphs' ROI pool): its argmax output is i32 and gets no gradient; the gradient of
// x flows through the stored argmax only (the backward node does not read x), checked by central differences, with
// disjoint (2x2/2) and overlapping (3x3/2 SAME) windows, x also read by relu6 (the contributions add).
TEST(GraphOps, MaxPoolWithStoredArgmaxGradient) {
  for (int k : {2, 3}) {
    Graph g(DType::F64);
    ValueId x = grad_input(g, "x", {2, 3, 6, 6});
    const std::vector<ValueId> outs = g.add("max_pool_argmax", "roi_pool", {x}, max_pool_same(k, 2));
    ASSERT_EQ(outs.size(), 2u);
    EXPECT_EQ(g.value(outs[0]).shape, Shape({2, 3, 3, 3}));
    EXPECT_EQ(g.value(outs[1]).dtype, DType::I32);
    ValueId y1 = g.add1("relu6", "act", {x});
    ValueId loss = g.add1("add", "loss", {weighted_sum(g, outs[0], "t1"), weighted_sum(g, y1, "t2")});
    Harness<double> h(g, loss);
    int grad_nodes = 0;
    for (const Node& n : g.nodes()) {
      if (n.op != "max_pool_argmax_grad") continue;
      ++grad_nodes;
      for (ValueId v : n.inputs) EXPECT_NE(v, x) << "the backward must not read the pool's input";
    }
    EXPECT_EQ(grad_nodes, 1);
    h.f[x] = tu::random_vec<double>(216, 17, -2.0, 8.0);
    h.fill_rest(110);
    EXPECT_LT(h.check(k == 2 ? "x (max pool 2x2/2 with argmax + relu6)" : "x (max pool 3x3/2 SAME with argmax + relu6)",
                      x),
              kTol);
  }
}

TEST(GraphOps, BnAddReluGradientsToInputAndResidual) {
  Graph g(DType::F64);
  ValueId x = grad_input(g, "x", {2, 3, 4, 4});
  ValueId r = grad_input(g, "r", {2, 3, 4, 4});
  ValueId scale = g.input("bn.scale", {3}), shift = g.input("bn.shift", {3});
  ValueId y = g.add1("bn_add_relu", "block.out", {x, scale, shift, r});
  ValueId z = g.add1("bn_add_relu", "block2.out", {x, scale, shift});  // no residual; x read twice
  ValueId w = g.add1("bn_add_relu", "block3.out", {r, scale, shift, r});  // x and residual the same value
  ValueId loss = g.add1("add", "loss", {weighted_sum(g, y, "t1"), weighted_sum(g, z, "t2")});
  loss = g.add1("add", "loss2", {loss, weighted_sum(g, w, "t3")});
  Harness<double> h(g, loss);
  int fused = 0, separate = 0;
  for (const Node& n : g.nodes()) {
    fused += n.op == "bn_add_relu_grad";
    separate += n.op == "bn_add_relu_grad_x";
  }
  EXPECT_EQ(fused, 1);     // block.out: x and r in one pass
  EXPECT_EQ(separate, 2);  // block2.out (no residual) and block3.out (residual = x: two contributions to one gradient)
  h.fill_rest(200);
  EXPECT_LT(h.check("x (bn_add_relu twice, one of them fused with the residual's gradient)", x), kTol);
  EXPECT_LT(h.check("r (residual, and both inputs of block3)", r), kTol);
}

// concat(a, b, a): a's gradient arrives as two "slice" contributions, the second accumulating; a slice of the
// concatenation adds a "slice_grad" contribution on top.
TEST(GraphOps, ConcatSliceGradients) {
  Graph g(DType::F64);
  ValueId a = grad_input(g, "a", {2, 2, 3, 3});
  ValueId b = grad_input(g, "b", {2, 3, 3, 3});
  ValueId cat = g.add1("concat", "cat", {a, b, a});
  EXPECT_EQ(g.value(cat).shape, Shape({2, 7, 3, 3}));
  ValueId s = g.add1("slice", "mid", {cat}, SliceAttrs{1, 5});
  EXPECT_EQ(g.value(s).shape, Shape({2, 5, 3, 3}));
  ValueId sb = g.add1("slice", "b_part", {b}, SliceAttrs{2, 1});
  ValueId loss = g.add1("add", "l1", {weighted_sum(g, cat, "t1"), weighted_sum(g, s, "t2")});
  loss = g.add1("add", "loss", {loss, weighted_sum(g, sb, "t3")});
  Harness<double> h(g, loss);
  h.fill_rest(300);
  EXPECT_LT(h.check("a (concat twice + slice)", a), kTol);
  EXPECT_LT(h.check("b (concat + slice of concat + slice)", b), kTol);
}

TEST(GraphOps, GatherRowsGradientWithDuplicatesAndPadding) {
  Graph g(DType::F64);
  ValueId x = grad_input(g, "feat", {5, 2, 3});
  ValueId i1 = g.input("idx1", {6}, DType::I32), i2 = g.input("idx2", {3}, DType::I32);
  ValueId y1 = g.add1("gather_rows", "pick1", {x, i1});
  ValueId y2 = g.add1("gather_rows", "pick2", {x, i2});
  EXPECT_EQ(g.value(y1).shape, Shape({6, 2, 3}));
  g.mark_output(y1);  // read after the run below
  ValueId loss = g.add1("add", "loss", {weighted_sum(g, y1, "t1"), weighted_sum(g, y2, "t2")});
  Harness<double> h(g, loss);
  h.ints[i1] = {4, 0, -1, 4, 2, 4};
  h.ints[i2] = {1, -1, 4};
  h.fill_rest(400);
  EXPECT_LT(h.check("feat (two gathers, duplicates, -1 rows)", x), kTol);
  // The -1 row of pick1 is zero.
  h.run();
  auto v = h.ex->get<double>(y1);
  for (int k = 0; k < 6; ++k) EXPECT_EQ(v[size_t(2 * 6 + k)], 0.0);
}

// Logits read by softmax CE and sigmoid CE; the total is scaled so the losses' upstream gradient is not 1.
TEST(GraphOps, LossGradientsWithWeightsCountsAndUpstreamScale) {
  Graph g(DType::F64);
  ValueId logits = grad_input(g, "cls_logits", {6, 4});
  ValueId labels = g.input("labels", {6}, DType::I32);
  ValueId weights = g.input("weights", {6});
  ValueId count = g.input("num_sampled", {1}, DType::I32);
  ValueId targets = g.input("targets", {6, 4});
  ValueId pred = grad_input(g, "box_pred", {5, 4});
  ValueId box_t = g.input("box_targets", {5, 4});
  ValueId box_w = g.input("box_weights", {5});
  LossParams lp;
  lp.scale = 2.0;
  LossParams hl;
  hl.scale = 0.5;
  hl.delta = 0.3;
  ValueId ce = g.add1("softmax_ce", "cls_loss", {logits, labels, weights, count}, lp);
  ValueId ce2 = g.add1("softmax_ce", "cls_loss_plain", {logits, labels});
  ValueId sig = g.add1("sigmoid_ce", "obj_loss", {logits, targets, count});
  ValueId sl1 = g.add1("smooth_l1", "box_loss", {pred, box_t, box_w}, hl);
  ValueId tot = g.add1("add", "t1", {ce, sig});
  tot = g.add1("add", "t2", {tot, sl1});
  tot = g.add1("add", "t3", {tot, ce2});
  ValueId loss = g.add1("scale", "loss", {tot}, ScaleAttrs{0.7});
  Harness<double> h(g, loss);
  h.ints[labels] = {0, 3, -1, 2, 1, 0};
  h.ints[count] = {4};
  h.f[weights] = {1.0, 0.5, 1.0, 0.0, 2.0, 1.0};
  h.f[targets] = tu::random_vec<double>(24, 5, 0.0, 1.0);
  h.f[box_w] = {1.0, 0.0, 1.0, 0.5, 1.0};
  h.f[logits] = tu::random_vec<double>(24, 6, -3.0, 3.0);
  h.f[pred] = tu::random_vec<double>(20, 7, -1.0, 1.0);
  h.fill_rest(500);
  EXPECT_LT(h.check("cls_logits (softmax CE x2 + sigmoid CE)", logits), kTol);
  EXPECT_LT(h.check("box_pred (smooth L1, delta 0.3)", pred), kTol);
}

// Features read by crop_and_resize (one box partly outside: extrapolation) and roi_align.
TEST(GraphOps, CropAndResizeAndRoiAlignGradientsIntoFeatures) {
  Graph g(DType::F64);
  ValueId feat = grad_input(g, "res4", {2, 3, 6, 7});
  ValueId boxes = g.input("boxes_tf", {3, 4});
  ValueId bidx = g.input("box_index", {3}, DType::I32);
  ValueId rois = g.input("rois", {3, 5});
  CropAndResizeParams cp;
  cp.crop_h = 3;
  cp.crop_w = 4;
  cp.extrapolation_value = 0.25f;
  RoiAlignParams rp;
  rp.pooled_h = 2;
  rp.pooled_w = 3;
  rp.spatial_scale = 0.5f;
  rp.sampling_ratio = 2;
  rp.aligned = true;
  RoiAlignParams rp2 = rp;
  rp2.aligned = false;
  rp2.sampling_ratio = 0;  // adaptive
  ValueId c = g.add1("crop_and_resize", "crop", {feat, boxes, bidx}, cp);
  ValueId a = g.add1("roi_align", "align", {feat, rois}, rp);
  ValueId a2 = g.add1("roi_align", "align_tv", {feat, rois}, rp2);
  EXPECT_EQ(g.value(c).shape, Shape({3, 3, 3, 4}));
  EXPECT_EQ(g.value(a).shape, Shape({3, 3, 2, 3}));
  ValueId loss = g.add1("add", "l1", {weighted_sum(g, c, "t1"), weighted_sum(g, a, "t2")});
  loss = g.add1("add", "loss", {loss, weighted_sum(g, a2, "t3")});
  Harness<double> h(g, loss);
  h.f[boxes] = {0.1, 0.2, 0.7, 0.9,    // inside
                -0.2, 0.3, 0.5, 1.3,   // partly outside
                0.8, 0.6, 0.3, 0.1};   // flipped
  h.ints[bidx] = {0, 1, 1};
  h.f[rois] = {0, 1.0, 2.0, 9.0, 8.0,  //
               1, 3.5, 0.5, 12.0, 11.0,  //
               1, 0.0, 0.0, 3.0, 2.0};
  h.fill_rest(600);
  EXPECT_LT(h.check("res4 (crop_and_resize + roi_align x2)", feat), kTol);
}

TEST(GraphOps, ShapeMismatchMessagesNameTheValues) {
  Graph g;
  ValueId image = g.input("image", {1, 3, 8, 8});
  ValueId mask = g.input("mask", {1, 2, 8, 4});
  ValueId vec = g.input("scores_vec", {5});
  ValueId labels = g.input("labels", {7}, DType::I32);
  ValueId logits = g.input("logits", {6, 4});
  ValueId fidx = g.input("float_idx", {3});
  auto expect_names = [&](const std::function<void()>& f, std::vector<std::string> parts) {
    try {
      f();
      ADD_FAILURE() << "expected ctdet::Error";
    } catch (const Error& e) {
      std::string m = e.what();
      std::printf("message: %s\n", m.c_str());
      for (auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "missing '" << p << "' in: " << m;
    }
  };
  expect_names([&] { g.add1("concat", "merge", {image, mask}); }, {"merge", "'image' (1,3,8,8)", "'mask' (1,2,8,4)"});
  expect_names([&] { g.add1("pool2d", "pool", {vec}, max_pool_same(3, 2)); }, {"pool", "'scores_vec' (5)"});
  expect_names([&] { g.add1("softmax_ce", "ce", {logits, labels}); }, {"ce", "'logits' (6,4)", "'labels' (7) i32"});
  expect_names([&] { g.add1("gather_rows", "g", {logits, fidx}); }, {"int32", "'float_idx' (3) f32"});
  expect_names([&] { g.add1("bn_add_relu", "bn", {image, vec, vec}); }, {"scale and shift", "'scores_vec' (5)"});
  expect_names([&] { g.add1("slice", "sl", {image}, SliceAttrs{2, 4}); }, {"[2, 6)", "'image' (1,3,8,8)"});
  expect_names([&] { g.add1("slice", "sl2", {image}, 3); }, {"sl2", "SliceAttrs"});  // wrong attrs type
  Pool2dParams bad = max_pool_same(3, 0);
  expect_names([&] { g.add1("pool2d", "pool0", {image}, bad); }, {"stride", "'image' (1,3,8,8)"});
  ValueId boxes = g.input("boxes", {4, 4});
  ValueId bi = g.input("bidx", {3}, DType::I32);
  expect_names([&] { g.add1("crop_and_resize", "crop", {image, boxes, bi}, CropAndResizeParams{}); },
               {"box_index", "'boxes' (4,4)", "'bidx' (3) i32"});
  expect_names([&] { g.add1("nms", "nms", {boxes, vec}, NmsParams{}); }, {"scores", "'scores_vec' (5)"});
}

// anchors -> decode -> clip -> nms (plus encode, IoU, top-k and the sampler) through the graph equal the kernels
// called directly, index for index and bit for bit.
TEST(GraphOps, DetectionChainEqualsKernelsCalledDirectly) {
  AnchorsAttrs aa;
  aa.Hf = 4;
  aa.Wf = 5;
  aa.params.base_h = aa.params.base_w = 64.f;
  aa.params.stride_y = aa.params.stride_x = 16.f;
  aa.params.offset_y = aa.params.offset_x = 8.f;
  const int64_t n = anchor_count(aa.params, aa.Hf, aa.Wf);
  ClipBoxesAttrs clip;
  clip.window[2] = 80;  // W
  clip.window[3] = 64;  // H
  NmsParams np;
  np.iou_threshold = 0.5f;
  np.max_output = 250;  // more than survive: the tail is -1 padding
  SamplerParams sp;
  sp.batch_size = 32;
  sp.seed = 17;

  Graph g;  // f32: the detector's dtype
  ValueId codes = g.input("rpn_codes", {n, 4});
  ValueId scores = g.input("rpn_scores", {n});
  ValueId gt = g.input("gt_boxes", {n, 4});
  ValueId labels = g.input("anchor_labels", {n}, DType::I32);
  ValueId anchors = g.add1("anchors", "anchors", {}, aa);
  ValueId dec = g.add1("box_decode", "decode", {codes, anchors});
  ValueId clipped = g.add1("clip_boxes", "clip", {dec}, clip);
  auto nms = g.add("nms", "nms", {clipped, scores}, np);
  ValueId enc = g.add1("box_encode", "encode", {gt, anchors});
  ValueId iou = g.add1("box_iou", "iou", {clipped, gt});
  auto topk = g.add("topk", "topk", {scores}, TopkAttrs{50});
  auto samp = g.add("balanced_sample", "sampler", {labels}, sp);
  for (ValueId v : {anchors, dec, clipped, nms[0], nms[1], enc, iou, topk[0], topk[1], samp[0], samp[1]})
    g.mark_output(v);
  EXPECT_EQ(g.value(nms[0]).shape, Shape({250}));
  EXPECT_EQ(g.value(nms[0]).dtype, DType::I32);
  EXPECT_FALSE(g.value(dec).requires_grad);

  auto c = tu::random_vec<float>(size_t(n * 4), 21, -1.5, 1.5);
  auto s = tu::random_vec<float>(size_t(n), 22, 0.0, 1.0);
  std::vector<float> gtb(size_t(n * 4));
  auto u = tu::random_vec<float>(size_t(n * 4), 23, 0.0, 60.0);
  for (int64_t i = 0; i < n; ++i) {
    gtb[size_t(i * 4 + 0)] = u[size_t(i * 4)];
    gtb[size_t(i * 4 + 1)] = u[size_t(i * 4 + 1)];
    gtb[size_t(i * 4 + 2)] = u[size_t(i * 4)] + 5 + u[size_t(i * 4 + 2)];
    gtb[size_t(i * 4 + 3)] = u[size_t(i * 4 + 1)] + 5 + u[size_t(i * 4 + 3)];
  }
  std::vector<int32_t> lab(static_cast<size_t>(n));
  std::mt19937 rng(5);
  for (auto& l : lab) l = int32_t(rng() % 3) - 1;

  ParamStore ps;
  ps.allocate();
  MemoryPlan plan = plan_memory(g, {});
  Executor ex(g, plan, ps, Device::CPU);
  ex.debug = true;
  ex.set(codes, c);
  ex.set(scores, s);
  ex.set(gt, gtb);
  ex.set(labels, lab);
  ex.run();

  // The same through the kernels.
  std::vector<float> A(size_t(n * 4)), D(size_t(n * 4)), Cl(size_t(n * 4)), E(size_t(n * 4)), I(size_t(n * n));
  generate_anchors_cpu<float>(aa.params, aa.Hf, aa.Wf, A.data());
  box_decode_cpu<float>(BoxCoderParams{}, n, 1, c.data(), A.data(), D.data());
  const float win[4] = {0, 0, 80, 64};
  clip_boxes_cpu<float>(n, D.data(), win, Cl.data(), nullptr);
  std::vector<int32_t> keep(250);
  int64_t kept = nms_cpu<float>(np, n, Cl.data(), s.data(), keep.data());
  box_encode_cpu<float>(BoxCoderParams{}, n, gtb.data(), A.data(), E.data());
  box_iou_cpu<float>(n, n, Cl.data(), gtb.data(), I.data());
  std::vector<int32_t> ti(50);
  std::vector<float> tv(50);
  topk_cpu<float>(n, s.data(), 50, ti.data(), tv.data());
  std::vector<int32_t> sel(32);
  int64_t npos = 0, nneg = 0;
  balanced_sample_cpu(sp, n, lab.data(), sel.data(), &npos, &nneg);

  EXPECT_EQ(ex.get<float>(anchors), A);
  EXPECT_EQ(ex.get<float>(dec), D);
  EXPECT_EQ(ex.get<float>(clipped), Cl);
  EXPECT_EQ(ex.get<int32_t>(nms[0]), keep);
  EXPECT_EQ(ex.get<int32_t>(nms[1])[0], kept);
  EXPECT_EQ(ex.get<float>(enc), E);
  EXPECT_EQ(ex.get<float>(iou), I);
  EXPECT_EQ(ex.get<int32_t>(topk[0]), ti);
  EXPECT_EQ(ex.get<float>(topk[1]), tv);
  EXPECT_EQ(ex.get<int32_t>(samp[0]), sel);
  EXPECT_EQ(ex.get<int32_t>(samp[1]), std::vector<int32_t>({int32_t(npos), int32_t(nneg)}));
  ASSERT_LT(kept, 250);
  EXPECT_EQ(ex.get<int32_t>(nms[0])[size_t(kept)], -1);
  std::printf("chain: %lld anchors, nms kept %lld of max 250, sampler %lld pos + %lld neg\n", (long long)n,
              (long long)kept, (long long)npos, (long long)nneg);
  // Independent sanity on the NMS result: kept boxes are pairwise below the threshold, in descending score order.
  for (int64_t i = 0; i < kept; ++i) {
    for (int64_t j = i + 1; j < kept; ++j) {
      EXPECT_LE(box_iou(&Cl[size_t(keep[size_t(i)] * 4)], &Cl[size_t(keep[size_t(j)] * 4)]), np.iou_threshold);
      EXPECT_GE(s[size_t(keep[size_t(i)])], s[size_t(keep[size_t(j)])]);
    }
  }
  EXPECT_GT(kept, 3);
}

namespace {
// Many of the ops in one f32 graph with backward: used to compare a reusing plan in debug mode with a plan
// that gives every buffer its own memory.
struct Mixed {
  Graph g{DType::F32};
  ValueId x, r, feat, boxes, bidx, rois, idx, labels, loss;
  Mixed() {
    x = grad_input(g, "x", {2, 4, 6, 6});
    r = grad_input(g, "r", {2, 4, 6, 6});
    ValueId scale = g.input("scale", {4}), shift = g.input("shift", {4});
    ValueId b = g.add1("bn_add_relu", "bn", {x, scale, shift, r});
    ValueId a = g.add1("relu6", "act", {b});
    ValueId p = g.add1("pool2d", "pool", {a}, max_pool_same(2, 2));
    ValueId cat = g.add1("concat", "cat", {p, g.add1("pool2d", "apool", {b}, avg_pool_explicit(3, 2, 1, true))});
    ValueId sl = g.add1("slice", "sl", {cat}, SliceAttrs{2, 4});
    ValueId gp = g.add1("global_avg_pool", "gap", {sl});
    idx = g.input("idx", {5}, DType::I32);
    labels = g.input("labels", {5}, DType::I32);
    ValueId rows = g.add1("gather_rows", "rows", {gp, idx});
    ValueId ce = g.add1("softmax_ce", "ce", {rows, labels});
    boxes = g.input("boxes", {2, 4});
    bidx = g.input("bidx", {2}, DType::I32);
    rois = g.input("rois", {2, 5});
    CropAndResizeParams cp;
    cp.crop_h = cp.crop_w = 2;
    RoiAlignParams rp;
    rp.pooled_h = rp.pooled_w = 2;
    rp.spatial_scale = 0.5f;
    ValueId cr = g.add1("crop_and_resize", "crop", {cat, boxes, bidx}, cp);
    ValueId ra = g.add1("roi_align", "align", {cat, rois}, rp);
    ValueId s1 = weighted_sum(g, cr, "t1"), s2 = weighted_sum(g, ra, "t2");
    loss = g.add1("add", "loss", {g.add1("add", "l", {ce, s1}), s2});
    backward(g, loss);
  }
};
}  // namespace

TEST(GraphOps, PlannedDebugRunEqualsOneBufferPerValue) {
  Mixed m1, m2;
  ParamStore ps1, ps2;
  ps1.allocate();
  ps2.allocate();
  MemoryPlan p1 = plan_memory(m1.g, {});
  PlanOptions none;
  none.inplace = false;
  MemoryPlan p2 = plan_memory(m2.g, none);
  size_t off = 0;
  for (size_t b = 0; b < p2.buffers.size(); ++b) {
    p2.buffer_offset[b] = off;
    off += align_up(p2.buffers[b].bytes, 256);
  }
  for (ValueId v = 0; v < m2.g.num_values(); ++v)
    if (p2.value_buffer[size_t(v)] >= 0)
      p2.value_offset[size_t(v)] = int64_t(p2.buffer_offset[size_t(p2.value_buffer[size_t(v)])]);
  for (size_t i = 0; i < p2.node_ws_offset.size(); ++i) p2.node_ws_offset[i] = -1;  // CPU: no workspaces
  p2.arena_bytes = off;
  Executor e1(m1.g, p1, ps1, Device::CPU), e2(m2.g, p2, ps2, Device::CPU);
  e1.debug = true;  // dead buffers become NaN: a lifetime error cannot hide
  std::map<std::string, std::vector<float>> fed;
  for (ValueId v = 0; v < m1.g.num_values(); ++v) {
    const Value& val = m1.g.value(v);
    if (val.kind != ValueKind::Input || val.dtype != DType::F32) continue;
    auto d = tu::random_vec<float>(size_t(val.shape.numel()), 700 + uint64_t(v));
    e1.set(v, d);
    e2.set(v, d);
    fed[val.name] = d;
  }
  const std::vector<float> boxes = {0.1f, 0.1f, 0.8f, 0.9f, 0.0f, 0.3f, 1.0f, 0.6f};
  const std::vector<float> rois = {0, 0.5f, 0.5f, 5.0f, 4.0f, 1, 1.0f, 0.0f, 6.0f, 6.0f};
  for (Executor* e : {&e1, &e2}) {
    e->set(m1.boxes, boxes);
    e->set(m1.rois, rois);
    e->set(m1.bidx, std::vector<int32_t>{0, 1});
    e->set(m1.idx, std::vector<int32_t>{0, 1, 1, -1, 0});
    e->set(m1.labels, std::vector<int32_t>{3, 0, -1, 2, 1});
    e->run();
  }
  EXPECT_EQ(e1.get<float>(m1.loss), e2.get<float>(m2.loss));
  EXPECT_EQ(e1.get<float>(m1.g.value(m1.x).grad), e2.get<float>(m2.g.value(m2.x).grad));
  EXPECT_EQ(e1.get<float>(m1.g.value(m1.r).grad), e2.get<float>(m2.g.value(m2.r).grad));
  auto dx = e1.get<float>(m1.g.value(m1.x).grad);
  size_t nonzero = 0;
  for (float v : dx) {
    EXPECT_TRUE(std::isfinite(v));
    nonzero += v != 0.f;
  }
  std::printf("planned arena %zu bytes (in-place reuses %d) vs %zu without reuse; loss %.6f; dx nonzero %zu/%zu\n",
              p1.arena_bytes, p1.inplace_reuses, off, double(e1.get<float>(m1.loss)[0]), nonzero, dx.size());
  EXPECT_GT(nonzero, 0u);
  EXPECT_LT(p1.arena_bytes, off);

  // Recomputing the cheap activations (bn_add_relu, relu6) in backward changes nothing in the results.
  Mixed m3;
  const int recomputed = apply_recompute(m3.g);
  EXPECT_GT(recomputed, 0);
  ParamStore ps3;
  ps3.allocate();
  MemoryPlan p3 = plan_memory(m3.g, {});
  Executor e3(m3.g, p3, ps3, Device::CPU);
  e3.debug = true;
  for (auto& [name, d] : fed) e3.set(m3.g.find(name), d);
  e3.set(m3.boxes, boxes);
  e3.set(m3.rois, rois);
  e3.set(m3.bidx, std::vector<int32_t>{0, 1});
  e3.set(m3.idx, std::vector<int32_t>{0, 1, 1, -1, 0});
  e3.set(m3.labels, std::vector<int32_t>{3, 0, -1, 2, 1});
  e3.run();
  EXPECT_EQ(e3.get<float>(m3.loss), e2.get<float>(m2.loss));
  EXPECT_EQ(e3.get<float>(m3.g.value(m3.x).grad), e2.get<float>(m2.g.value(m2.x).grad));
  EXPECT_EQ(e3.get<float>(m3.g.value(m3.r).grad), e2.get<float>(m2.g.value(m2.r).grad));
  std::printf("recomputed %d cheap activations: arena %zu -> %zu bytes\n", recomputed, p1.arena_bytes, p3.arena_bytes);
}

TEST(GraphOps, WorkspaceNeedsAndBadValuesAtRunTime) {
  Graph g;
  ValueId boxes = g.input("boxes", {300, 4}), scores = g.input("scores", {300});
  ValueId logits = g.input("logits", {64, 3});
  ValueId labels = g.input("labels", {64}, DType::I32);
  NmsParams np;
  auto k = g.add("nms", "nms", {boxes, scores}, np);
  ValueId ce = g.add1("softmax_ce", "ce", {logits, labels});
  g.mark_output(k[0]);
  g.mark_output(ce);
  const Node& nms_node = g.node(0);
  const Node& ce_node = g.node(1);
  // CPU kernels need no planned scratch.
  EXPECT_EQ(ops().get("nms").workspace(g, nms_node, Device::CPU, 0), 0u);
  // CUDA: the loss uses the kernel's formula, (R+1) floats rounded up to 256 bytes.
  EXPECT_EQ(ops().get("softmax_ce").workspace(g, ce_node, Device::CUDA, 0), 512u);
  // NMS needs at least its (n, ceil(n/64)) 64-bit suppression masks, the sorted boxes and the order.
  size_t ws = ops().get("nms").workspace(g, nms_node, Device::CUDA, 0);
  std::printf("nms workspace for 300 boxes on CUDA: %zu bytes (%s)\n", ws,
              cuda_device_available() ? "CUB query" : "upper bound, no device");
  EXPECT_GE(ws, size_t(300) * 5 * 8 + size_t(300) * 16 + size_t(300) * 4);

  // Bad labels at run time name the row (CPU).
  ParamStore ps;
  ps.allocate();
  MemoryPlan plan = plan_memory(g, {});
  Executor ex(g, plan, ps, Device::CPU);
  ex.set(boxes, std::vector<float>(1200, 1.f));
  ex.set(scores, std::vector<float>(300, 0.5f));
  ex.set(logits, std::vector<float>(192, 0.f));
  std::vector<int32_t> lab(64, 1);
  lab[17] = 9;
  ex.set(labels, lab);
  try {
    ex.run();
    ADD_FAILURE() << "expected ctdet::Error";
  } catch (const Error& e) {
    std::string m = e.what();
    std::printf("message: %s\n", m.c_str());
    EXPECT_NE(m.find("'ce'"), std::string::npos) << m;
    EXPECT_NE(m.find("17"), std::string::npos) << m;
  }
}
