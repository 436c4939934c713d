// Inception-v2 (TF-slim layout) backbone graphs: parameter counts per end point against the spec's table
// (tests/fixtures/inception/make_inception_fixtures.py builds the table's network in torch), feature shapes
// at 600x600 / 600x1024 / 600x800, a depth-multiplier-0.25 network against the torch functional reference
// (formula weights; TF SAME padding, SAME average pooling without the padded cells, separable stem with
// channel multiplier 5), gradients of a tiny network against central differences in double, and the TF-slim
// variable names.
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>

#include "detector/backbone/inception_v2.h"
#include "detector/forward_runner.h"
#include "io/npy.h"
#include "nn/autograd.h"
#include "nn/executor.h"
#include "nn/op_registry.h"
#include "nn/param_store.h"
#include "nn/planner.h"
#include "test_pool_margin.h"
#include "test_util.h"

using namespace ctdet;
namespace tu = ctdet::testing;

namespace {

std::string end_point_of(const std::string& param) { return param.substr(0, param.find('.')); }

double rel_to_max(const std::vector<float>& got, const NpyArray& ref, const std::string& what) {
  std::vector<float> r = ref.as<float>();
  EXPECT_EQ(got.size(), r.size()) << what;
  double mx = 0;
  for (float v : r) mx = std::max(mx, double(std::abs(v)));
  tu::ErrStats s = tu::compare(got, r);
  tu::print_err(what, s);
  std::printf("       %s: max |ref| = %.4f, max_abs / max|ref| = %.3e\n", what.c_str(), mx, s.max_abs / mx);
  return s.max_abs / mx;
}

}  // namespace

TEST(InceptionV2, FormulaMatchesPython) {
  // make_inception_fixtures.py prints formula Conv2d_1a_7x7.depthwise_weights[:3] for shape (15,1,7,7).
  std::vector<float> w = formula_values<float>("Conv2d_1a_7x7.depthwise_weights", {15, 1, 7, 7});
  const double expect[3] = {0.15061499, 0.19069847, -0.32418713};
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(w[size_t(i)], expect[i], 1e-7) << i;
  // The ResNet names share the formula (make_resnet_fixtures.py prints conv1.weight[:3]).
  std::vector<float> r = formula_values<float>("conv1.weight", {64, 3, 7, 7});
  const double expect_r[3] = {0.18361294, 0.10754208, 0.17031899};
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(r[size_t(i)], expect_r[i], 1e-7) << i;
}

TEST(InceptionV2, OptionsDepthAndStemMultiplier) {
  InceptionV2Options o;
  EXPECT_EQ(o.depth(64), 64);
  EXPECT_EQ(o.stem_multiplier(), 8);  // min(int(64/3), 8) (spec §3.2)
  o.depth_multiplier = 0.25;
  EXPECT_EQ(o.depth(32), 16);         // min_depth wins
  EXPECT_EQ(o.depth(352), 88);
  EXPECT_EQ(o.stem_multiplier(), 5);  // int(16/3)
  o.depth_multiplier = 0.3;
  EXPECT_EQ(o.depth(96), 28);         // int(28.8) truncates
  InceptionV2Backbone full{InceptionV2Options{}};
  EXPECT_EQ(full.first_stage_channels(), 576);
  EXPECT_EQ(full.second_stage_channels(), 1024);
  InceptionV2Options bad;
  bad.depth_multiplier = 0;
  EXPECT_THROW(InceptionV2Backbone{bad}, Error);
}

TEST(InceptionV2, ParameterCountsMatchSpecTable) {
  NpyArray ref = read_npy(tu::fixture_path("inception/param_counts.npy"));
  ASSERT_EQ(ref.shape, (std::vector<int64_t>{15, 3}));
  std::vector<int64_t> want = ref.as<int64_t>();
  std::vector<std::string> rows = inception_v2_first_stage_end_points();
  for (const auto& n : inception_v2_second_stage_end_points()) rows.push_back(n);
  Graph g(DType::F32);
  InceptionV2Backbone net{InceptionV2Options{}};
  ValueId y = net.first_stage(g, g.input("image", {1, 3, 64, 64}));
  net.second_stage(g, g.input("crops", {1, 576, 7, 7}));
  (void)y;
  std::map<std::string, std::array<int64_t, 3>> got;
  for (const Value& v : g.values()) {
    if (v.kind != ValueKind::Param) continue;
    const std::string& n = v.name;
    int col = n.size() > 7 && n.compare(n.size() - 7, 7, "weights") == 0 ? 0
              : (n.find(".gamma") != std::string::npos || n.find(".beta") != std::string::npos) ? 1 : 2;
    got[end_point_of(n)][size_t(col)] += v.shape.numel();
  }
  EXPECT_EQ(got.size(), size_t(13));  // the two max pools of the stem own no parameters
  std::printf("end point        conv weights (ours / torch)   BN gamma+beta   BN moving stats\n");
  int64_t stage[2][3] = {};
  for (size_t r = 0; r < rows.size(); ++r) {
    const auto& gr = got[rows[r]];
    std::printf("  %-15s %9lld / %9lld   %6lld / %6lld   %6lld / %6lld\n", rows[r].c_str(), (long long)gr[0],
                (long long)want[3 * r], (long long)gr[1], (long long)want[3 * r + 1], (long long)gr[2],
                (long long)want[3 * r + 2]);
    for (size_t c = 0; c < 3; ++c) {
      EXPECT_EQ(gr[c], want[3 * r + c]) << rows[r] << " column " << c;
      stage[r < 12 ? 0 : 1][c] += gr[c];
    }
  }
  for (int s = 0; s < 2; ++s)
    std::printf("  stage %d: %lld conv weights + %lld gamma/beta + %lld moving statistics = %lld\n", s + 1,
                (long long)stage[s][0], (long long)stage[s][1], (long long)stage[s][2],
                (long long)(stage[s][0] + stage[s][1] + stage[s][2]));
  // Hand check from the table: Conv2d_1a_7x7 = 7*7*3*8 depthwise + 24*64 pointwise = 2712;
  // Mixed_3b = 192*64 + (192*64 + 64*64*9) + (192*64 + 64*96*9 + 96*96*9) + 192*32 = 218112.
  EXPECT_EQ(got["Conv2d_1a_7x7"][0], 7 * 7 * 3 * 8 + 24 * 64);
  EXPECT_EQ(got["Mixed_3b"][0], 192 * 64 + (192 * 64 + 64 * 64 * 9) + (192 * 64 + 64 * 96 * 9 + 96 * 96 * 9) + 192 * 32);
}

TEST(InceptionV2, FeatureShapes) {
  struct Case { int H, W; };
  InceptionV2Backbone net{InceptionV2Options{}};
  for (Case c : {Case{600, 600}, Case{600, 1024}, Case{600, 800}, Case{33, 33}, Case{601, 799}}) {
    Graph g(DType::F32);
    InceptionV2Taps taps;
    ValueId y = net.first_stage(g, g.input("image", {1, 3, c.H, c.W}), &taps);
    auto up = [](int n, int s) { return (n + s - 1) / s; };
    EXPECT_EQ(g.value(y).shape, (Shape{1, 576, up(c.H, 16), up(c.W, 16)})) << c.H << "x" << c.W;
    EXPECT_EQ(g.value(taps.find("Conv2d_1a_7x7")).shape, (Shape{1, 64, up(c.H, 2), up(c.W, 2)}));
    EXPECT_EQ(g.value(taps.find("MaxPool_2a_3x3")).shape, (Shape{1, 64, up(c.H, 4), up(c.W, 4)}));
    EXPECT_EQ(g.value(taps.find("Conv2d_2c_3x3")).shape, (Shape{1, 192, up(c.H, 4), up(c.W, 4)}));
    EXPECT_EQ(g.value(taps.find("Mixed_3b")).shape, (Shape{1, 256, up(c.H, 8), up(c.W, 8)}));
    EXPECT_EQ(g.value(taps.find("Mixed_3c")).shape, (Shape{1, 320, up(c.H, 8), up(c.W, 8)}));
    EXPECT_EQ(g.value(taps.find("Mixed_4a")).shape, (Shape{1, 576, up(c.H, 16), up(c.W, 16)}));
    EXPECT_EQ(taps.end_points.size(), size_t(12));
    if (c.H == 600)
      std::printf("[shape] 1x3x%dx%d -> Mixed_4e %s\n", c.H, c.W, g.value(y).shape.str().c_str());
  }
  // Spec §10: 600x800 -> 38x50x576; second stage 7x7x576 crops -> 4x4x1024.
  Graph g(DType::F32);
  InceptionV2Taps t2;
  ValueId z = net.second_stage(g, g.input("crops", {64, 576, 7, 7}), &t2);
  EXPECT_EQ(g.value(z).shape, (Shape{64, 1024, 4, 4}));
  EXPECT_EQ(g.value(t2.find("Mixed_5a")).shape, (Shape{64, 1024, 4, 4}));
  EXPECT_EQ(g.value(t2.find("Mixed_5b")).shape, (Shape{64, 1024, 4, 4}));
  std::printf("[shape] crops 64x576x7x7 -> Mixed_5c %s\n", g.value(z).shape.str().c_str());
}

TEST(InceptionV2, SmallNetworkMatchesTorch) {
  InceptionV2Options o;
  o.depth_multiplier = 0.25;
  InceptionV2Backbone net(o);
  Graph g(DType::F32);
  InceptionV2Taps taps;
  ValueId image = g.input("image", {2, 3, 64, 45});
  ValueId y = net.first_stage(g, image, &taps);
  ValueId crops = g.input("crops", {2, net.first_stage_channels(), 7, 7});
  ValueId z = net.second_stage(g, crops);
  const char* check[4] = {"MaxPool_3a_3x3", "Mixed_3c", "Mixed_4a", "Mixed_4e"};
  for (const char* t : check) g.mark_output(taps.find(t));
  g.mark_output(y);
  g.mark_output(z);
  ParamStore ps(Device::CPU, DType::F32);
  ps.declare_from(g);
  ps.allocate();
  fill_formula_weights(ps);
  MemoryPlan plan = plan_memory(g, {});
  Executor ex(g, plan, ps, Device::CPU);
  ex.debug = true;
  ex.set(image, formula_values<float>("input", g.value(image).shape));
  ex.set(crops, formula_values<float>("crops", g.value(crops).shape));
  ex.run();
  for (const char* t : check) {
    std::string lower = t;
    for (auto& ch : lower) ch = char(std::tolower(ch));
    NpyArray ref = read_npy(tu::fixture_path("inception/small_" + lower + ".npy"));
    ASSERT_EQ(g.value(taps.find(t)).shape, Shape(ref.shape)) << t;
    EXPECT_LE(rel_to_max(ex.get<float>(taps.find(t)), ref, std::string("dm0.25 ") + t + " vs torch"), 1e-4);
  }
  NpyArray ref5 = read_npy(tu::fixture_path("inception/small_mixed_5c.npy"));
  ASSERT_EQ(g.value(z).shape, Shape(ref5.shape));
  EXPECT_LE(rel_to_max(ex.get<float>(z), ref5, "dm0.25 Mixed_5c vs torch"), 1e-4);
}

TEST(InceptionV2, TfSlimNames) {
  const std::pair<const char*, const char*> cases[] = {
      {"Conv2d_1a_7x7.depthwise_weights", "FirstStageFeatureExtractor/InceptionV2/Conv2d_1a_7x7/depthwise_weights"},
      {"Conv2d_1a_7x7.BatchNorm.gamma", "FirstStageFeatureExtractor/InceptionV2/Conv2d_1a_7x7/BatchNorm/gamma"},
      {"Conv2d_2c_3x3.weights", "FirstStageFeatureExtractor/InceptionV2/Conv2d_2c_3x3/weights"},
      {"Mixed_3b.Branch_1.Conv2d_0a_1x1.weights",
       "FirstStageFeatureExtractor/InceptionV2/Mixed_3b/Branch_1/Conv2d_0a_1x1/weights"},
      {"Mixed_4e.Branch_2.Conv2d_0c_3x3.BatchNorm.moving_variance",
       "FirstStageFeatureExtractor/InceptionV2/Mixed_4e/Branch_2/Conv2d_0c_3x3/BatchNorm/moving_variance"},
      {"Mixed_5a.Branch_1.Conv2d_1a_3x3.BatchNorm.beta",
       "SecondStageFeatureExtractor/InceptionV2/Mixed_5a/Branch_1/Conv2d_1a_3x3/BatchNorm/beta"},
      {"Mixed_5c.Branch_3.Conv2d_0b_1x1.weights",
       "SecondStageFeatureExtractor/InceptionV2/Mixed_5c/Branch_3/Conv2d_0b_1x1/weights"},
  };
  for (auto& [n, tf] : cases) EXPECT_EQ(inception_tf_slim_name(n), tf);
  for (const char* bad : {"conv1.weight", "Mixed_6a.Branch_0.Conv2d_0a_1x1.weights", "Mixed_3b.Branch_4.Conv2d_0a_1x1.weights",
                          "Conv2d_1a_7x7.weights", "Conv2d_2b_1x1.depthwise_weights", "Mixed_3b.Branch_0.weights",
                          "Mixed_3b.Branch_0.Conv2d_0a_1x1.BatchNorm.scale", "MaxPool_2a_3x3.weights", "Mixed_3b"})
    EXPECT_THROW(inception_tf_slim_name(bad), Error) << bad;
  // Every parameter of the full two-stage graph maps, to a distinct name, in the right stage scope.
  Graph g(DType::F32);
  InceptionV2Backbone net{InceptionV2Options{}};
  net.first_stage(g, g.input("image", {1, 3, 64, 64}));
  net.second_stage(g, g.input("crops", {1, 576, 7, 7}));
  std::map<std::string, std::string> seen;
  for (const Value& v : g.values())
    if (v.kind == ValueKind::Param) {
      std::string tf = inception_tf_slim_name(v.name);
      EXPECT_TRUE(seen.emplace(tf, v.name).second) << v.name << " and " << seen[tf] << " both map to " << tf;
      const bool second = v.name.compare(0, 7, "Mixed_5") == 0;
      EXPECT_EQ(tf.compare(0, second ? 28 : 27, second ? "SecondStageFeatureExtractor/" : "FirstStageFeatureExtractor/"),
                0)
          << tf;
    }
  // Convs with BN: the stem's pointwise + Conv2d_2b/2c + 8 four-branch modules * 7 + Mixed_4a/5a * 5
  // = 1 + 2 + 56 + 10 = 69, with 5 tensors each, plus the stem's depthwise weight (no BN of its own).
  EXPECT_EQ(seen.size(), size_t(69 * 5 + 1));
}

TEST(InceptionV2, BadInputsNameTheProblem) {
  Graph g(DType::F32);
  InceptionV2Backbone net(InceptionV2Options::tiny());
  try {
    net.first_stage(g, g.input("gray", {1, 1, 64, 64}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'gray' (1,1,64,64)"), std::string::npos) << e.what();
  }
  try {
    net.second_stage(g, g.input("crops", {4, 100, 7, 7}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("crops must be (R,36,h,w)"), std::string::npos) << e.what();
  }
}

// Gradients of a tiny two-stage network (separable stem, SAME convs and pools on odd and even sizes, avg pool
// without padded cells, max pools, concat, frozen BN) against central differences in double.
namespace {
void grad_check(const InceptionV2Options& o, int H, int W, int x_seed = 11) {
  Graph g(DType::F64);
  InceptionV2Backbone net(o);
  ValueId image = g.input("image", {1, 3, H, W});
  g.value_mut(image).requires_grad = true;
  ValueId out = net.second_stage(g, net.first_stage(g, image));
  ValueId r = g.input("r", g.value(out).shape);
  ValueId loss = g.add1("sum", "loss", {g.add1("mul", "weighted", {out, r})});
  backward(g, loss);

  ParamStore ps(Device::CPU, DType::F64);
  ps.declare_from(g);
  ps.allocate();
  fill_formula_weights(ps);
  MemoryPlan plan = plan_memory(g, {});
  Executor ex(g, plan, ps, Device::CPU);
  ex.debug = true;
  std::vector<double> x = tu::random_vec<double>(size_t(g.value(image).shape.numel()), x_seed);
  std::vector<double> rv = tu::random_vec<double>(size_t(g.value(r).shape.numel()), 12);
  auto loss_at = [&](const std::vector<double>& xin) {
    ex.set(image, xin);
    ex.set(r, rv);
    ex.run_nodes(0, g.num_forward_nodes());
    return ex.get<double>(loss)[0];
  };
  ps.zero_grads();
  ex.set(image, x);
  ex.set(r, rv);
  ex.run();
  std::vector<double> dimage = ex.get<double>(g.value(image).grad);

  const double h = 1e-6;
  double worst = 0;
  int checked = 0;
  std::mt19937 rng(5);
  auto check = [&](double ana, double num, const std::string& what) {
    double err = std::abs(ana - num) / std::max(1e-3, std::abs(num));
    worst = std::max(worst, err);
    ++checked;
    EXPECT_LT(err, 1e-5) << what << ": analytic " << ana << " numeric " << num;
  };
  for (int k = 0; k < 10; ++k) {
    size_t i = rng() % x.size();
    std::vector<double> xp = x, xm = x;
    xp[i] += h;
    xm[i] -= h;
    check(dimage[i], (loss_at(xp) - loss_at(xm)) / (2 * h), str("image[", i, "]"));
  }
  std::vector<std::string> params = {"Conv2d_1a_7x7.depthwise_weights", "Conv2d_1a_7x7.pointwise_weights",
                                     "Conv2d_2c_3x3.weights", "Mixed_3b.Branch_3.Conv2d_0b_1x1.weights",
                                     "Mixed_4a.Branch_1.Conv2d_1a_3x3.weights",
                                     "Mixed_5c.Branch_3.Conv2d_0b_1x1.weights"};
  if (o.bn_affine_trainable)
    params.insert(params.end(), {"Mixed_4e.Branch_0.Conv2d_0a_1x1.BatchNorm.gamma", "Conv2d_1a_7x7.BatchNorm.beta"});
  int frozen = 0;
  for (const auto& n : ps.names())
    if (!g.value(g.find(n)).requires_grad) {
      ++frozen;
      EXPECT_EQ(g.value(g.find(n)).grad, kNoValue) << n;
      for (double d : ps.get<double>(n, 1)) ASSERT_EQ(d, 0.0) << n;
    }
  for (const auto& n : params) {
    ASSERT_TRUE(ps.has(n)) << n;
    std::vector<double> grad = ps.get<double>(n, 1);
    std::vector<double> p = ps.get<double>(n);
    for (int k = 0; k < 2; ++k) {
      size_t i = rng() % p.size();
      std::vector<double> pp = p;
      pp[i] = p[i] + h;
      ps.set<double>(n, pp);
      double lp = loss_at(x);
      pp[i] = p[i] - h;
      ps.set<double>(n, pp);
      double lm = loss_at(x);
      ps.set<double>(n, p);
      check(grad[i], (lp - lm) / (2 * h), str(n, "[", i, "]"));
    }
  }
  std::printf("[err] inception_v2 depth %g %dx%d (bn affine %s): %d gradient entries vs central differences, max "
              "rel err %.3e; %d frozen tensors without gradient\n",
              o.depth_multiplier, H, W, o.bn_affine_trainable ? "trainable" : "frozen", checked, worst, frozen);
  EXPECT_GE(checked, 22);
}
}  // namespace

TEST(InceptionV2, TinyGradients) {
  InceptionV2Options o = InceptionV2Options::tiny();
  grad_check(o, 33, 38);  // 33 -> 17 -> 9 -> 5 -> 3 (odd: symmetric SAME); 38 -> 19 -> 10 -> 5 -> 3
  o.bn_affine_trainable = true;
  grad_check(o, 34, 33);
}

// Depth 0.25 on 64x45: Mixed_3c is 8x6, so Mixed_4a's stride-2 convs and max pool pad 0 above/left and 1 below/right
// (the asymmetric TF SAME case the tiny sizes above do not reach). The input is chosen away from max-pool ties
// (test_pool_margin.h): at a tie the gradient jumps and central differences straddle it.
TEST(InceptionV2, GradientsWithAsymmetricMixed4a) {
  InceptionV2Options o;
  o.depth_multiplier = 0.25;
  o.min_depth = 16;
  const tu::SeedChoice c = tu::most_tie_free_seed(
      [&](Graph& g) {
        InceptionV2Backbone net(o);
        ValueId image = g.input("image", {1, 3, 64, 45});
        ValueId c3 = net.first_stage(g, image);
        EXPECT_EQ(g.value(g.find("Mixed_3c.out")).shape, Shape({1, 80, 8, 6}));
        net.second_stage(g, c3);
        return image;
      },
      [](int seed) { return tu::random_vec<double>(size_t(3 * 64 * 45), seed); }, 11, 16);
  std::printf("[err] depth 0.25 64x45: input seed %d, max-pool tie gap %.3e of scale (at %s)\n", c.seed, c.margin.gap,
              c.margin.where.c_str());
  ASSERT_GE(c.margin.gap, 1e-5);
  grad_check(o, 64, 45, c.seed);
}

// The planned memory of the full first stage (printed; planning runs no kernels).
TEST(InceptionV2, PlannedMemoryFirstStage) {
  for (bool train : {false, true}) {
    Graph g(DType::F32);
    InceptionV2Backbone net{InceptionV2Options{}};
    ValueId y = net.first_stage(g, g.input("image", {1, 3, 600, 1024}));
    if (train) backward(g, g.add1("sum", "loss", {y}));
    else g.mark_output(y);
    PlanOptions opt;
    opt.device = Device::CUDA;
    MemoryPlan p = plan_memory(g, opt);
    std::printf("[plan] inception_v2 first stage 1x3x600x1024 %s (cuda): arena %s (lower bound %s, no reuse %s), "
                "params %s, grads %s\n",
                train ? "train" : "infer", format_bytes(p.arena_bytes).c_str(), format_bytes(p.lower_bound).c_str(),
                format_bytes(p.no_reuse_bytes).c_str(), format_bytes(p.param_bytes).c_str(),
                format_bytes(p.grad_bytes).c_str());
    EXPECT_GE(p.arena_bytes, p.lower_bound);
    EXPECT_LE(p.arena_bytes, p.no_reuse_bytes);
    // 4,250,264 conv weights + 11,392 gamma/beta + 11,392 moving statistics (the counts above); only the conv
    // weights get gradients.
    EXPECT_EQ(p.param_bytes, size_t(4250264 + 2 * 11392) * 4);
    EXPECT_EQ(p.grad_bytes, train ? size_t(4250264) * 4 : 0u);
  }
}

// graph_flops (the FLOP that bench_model's share of peak divides by) against the TF-slim receptive-field table
// (perf_anchors.md §4.1, 2 FLOP per multiply-add, 224x224): Mixed_4e 3.120 GFLOP, Mixed_5c 3.883 GFLOP. ctdet counts
// the convolutions only (3.106 / 3.868); the table's 0.4-0.5% more is arithmetic it counts elsewhere (it does not
// say which; the pools alone would be about 0.011 GFLOP), hence a 1% bound.
TEST(InceptionV2, FlopCountMatchesTfSlimTable) {
  Graph g(DType::F32);
  InceptionV2Backbone net{InceptionV2Options{}};
  InceptionV2Taps taps;
  ValueId image = g.input("image", {1, 3, 224, 224});
  ValueId c4 = net.first_stage(g, image, &taps);
  const int first = g.num_nodes();
  net.second_stage(g, c4);
  const double stage1 = graph_flops(g, 0, first) * 1e-9, both = graph_flops(g) * 1e-9;
  std::printf("[err] inception_v2 224x224 GFLOP: Mixed_4e %.4f (table 3.120), Mixed_5c %.4f (table 3.883)\n", stage1,
              both);
  EXPECT_NEAR(stage1, 3.120, 0.01 * 3.120);
  EXPECT_NEAR(both, 3.883, 0.01 * 3.883);
  EXPECT_LE(stage1, 3.120);  // never more than the table: a conv counted twice would show here
  EXPECT_LE(both, 3.883);
}
