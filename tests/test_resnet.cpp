// ResNet-101 backbone graphs: parameter counts per stage against torchvision's resnet101, the full-depth
// forward of both stride placements against torch (formula weights, tests/fixtures/make_resnet_fixtures.py),
// feature sizes ceil(H/16), gradients of a tiny ResNet against central differences in double, the TF-slim
// name mapping, and the planned memory of the full first stage (printed).
#include <cmath>
#include <cstdio>
#include <map>
#include <random>

#include "detector/backbone/resnet.h"
#include "io/npy.h"
#include "nn/autograd.h"
#include "nn/executor.h"
#include "nn/op_registry.h"
#include "nn/param_store.h"
#include "nn/planner.h"
#include "test_util.h"

using namespace ctdet;
namespace tu = ctdet::testing;

namespace {

// ---- the weight formula of make_resnet_fixtures.py -----------------------------------------------------
uint32_t fnv1a(const std::string& s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) {
    h ^= c;
    h *= 16777619u;
  }
  return h;
}

double unit_value(uint32_t h, uint64_t i) {
  uint64_t x = (i * 0x9E3779B1ull + h) & 0xFFFFFFFFull;
  x ^= x >> 16;
  x = (x * 0x85EBCA6Bull) & 0xFFFFFFFFull;
  x ^= x >> 13;
  x = (x * 0xC2B2AE35ull) & 0xFFFFFFFFull;
  x ^= x >> 16;
  return double(x) / 4294967296.0;
}

bool ends_with(const std::string& s, const std::string& t) {
  return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}

template <typename T> std::vector<T> formula(const std::string& name, const Shape& shape) {
  double lo, hi;
  if (name == "input") lo = -1, hi = 1;
  else if (ends_with(name, "running_mean")) lo = -0.2, hi = 0.2;
  else if (ends_with(name, "running_var")) lo = 0.6, hi = 1.4;
  else if (ends_with(name, ".bias")) lo = -0.2, hi = 0.2;
  else if (ends_with(name, ".weight") && shape.rank() == 4) {
    hi = std::sqrt(6.0 / double(shape[1] * shape[2] * shape[3]));
    lo = -hi;
  } else if (ends_with(name, ".weight") && shape.rank() == 1) lo = 0.3, hi = 0.8;
  else ADD_FAILURE() << "no formula for " << name, lo = hi = 0;
  const uint32_t h = fnv1a(name);
  std::vector<T> v(size_t(shape.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = T(float(lo + (hi - lo) * unit_value(h, i)));
  return v;
}

template <typename T> void fill_formula(ParamStore& ps) {
  for (const auto& n : ps.names()) ps.set<T>(n, formula<T>(n, ps.shape(n)));
}

bool is_buffer(const std::string& name) { return ends_with(name, "running_mean") || ends_with(name, "running_var"); }

int stage_of(const std::string& name) {
  if (name.compare(0, 6, "conv1.") == 0 || name.compare(0, 4, "bn1.") == 0) return 0;
  if (name.compare(0, 5, "layer") == 0) return name[5] - '0';
  return -1;
}

struct Net {
  Graph g{DType::F32};
  ValueId image = kNoValue, block3 = kNoValue, block4 = kNoValue;
};

void build_full(Net& n, const ResNetOptions& o, int H, int W) {
  ResNetBackbone net(o);
  n.image = n.g.input("image", {1, 3, H, W});
  n.block3 = net.first_stage(n.g, n.image);
  n.block4 = net.second_stage(n.g, n.block3);
  n.g.mark_output(n.block3);
  n.g.mark_output(n.block4);
}

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

void check_against_torch(ResNetLayout layout, int size, const std::string& prefix, int block4_stride) {
  ResNetOptions o = ResNetOptions::resnet101(layout);
  o.block4_stride = block4_stride;
  Net n;
  build_full(n, o, size, size);
  NpyArray ref3 = read_npy(tu::fixture_path("resnet/" + prefix + "_layer3.npy"));
  NpyArray ref4 = read_npy(tu::fixture_path("resnet/" + prefix + "_layer4.npy"));
  ASSERT_EQ(n.g.value(n.block3).shape, Shape(ref3.shape));
  ASSERT_EQ(n.g.value(n.block4).shape, Shape(ref4.shape));
  ParamStore ps(Device::CPU, DType::F32);
  ps.declare_from(n.g);
  ps.allocate();
  fill_formula<float>(ps);
  MemoryPlan plan = plan_memory(n.g, {});
  Executor ex(n.g, plan, ps, Device::CPU);
  ex.set(n.image, formula<float>("input", n.g.value(n.image).shape));
  ex.run();
  EXPECT_LE(rel_to_max(ex.get<float>(n.block3), ref3, prefix + " block3 vs torch"), 1e-4);
  EXPECT_LE(rel_to_max(ex.get<float>(n.block4), ref4, prefix + " block4 vs torch"), 1e-4);
}

}  // namespace

TEST(ResNet, FormulaMatchesPython) {
  // make_resnet_fixtures.py prints formula conv1.weight[:3] = [0.18361294 0.10754208 0.17031899].
  std::vector<float> w = formula<float>("conv1.weight", {64, 3, 7, 7});
  const double expect[3] = {0.18361294, 0.10754208, 0.17031899};
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(w[size_t(i)], expect[i], 1e-7) << i;
}

TEST(ResNet, ParameterCountsMatchTorchvision) {
  NpyArray ref = read_npy(tu::fixture_path("resnet/param_counts.npy"));
  ASSERT_EQ(ref.shape, (std::vector<int64_t>{5, 2}));
  std::vector<int64_t> want = ref.as<int64_t>();
  const char* stage[5] = {"stem", "layer1", "layer2", "layer3", "layer4"};
  for (ResNetLayout l : {ResNetLayout::TfSlim, ResNetLayout::Torchvision}) {
    Net n;
    build_full(n, ResNetOptions::resnet101(l), 64, 64);
    int64_t got[5][2] = {};
    for (const Value& v : n.g.values()) {
      if (v.kind != ValueKind::Param) continue;
      int s = stage_of(v.name);
      ASSERT_GE(s, 0) << v.name;
      got[s][is_buffer(v.name) ? 1 : 0] += v.shape.numel();
    }
    std::printf("[%s] stage      params (ours / torchvision)     buffers (ours / torchvision)\n",
                resnet_layout_name(l));
    int64_t tot[2] = {0, 0};
    for (int s = 0; s < 5; ++s) {
      std::printf("       %-8s %10lld / %10lld   %8lld / %8lld\n", stage[s], (long long)got[s][0],
                  (long long)want[size_t(2 * s)], (long long)got[s][1], (long long)want[size_t(2 * s + 1)]);
      EXPECT_EQ(got[s][0], want[size_t(2 * s)]) << stage[s];
      EXPECT_EQ(got[s][1], want[size_t(2 * s + 1)]) << stage[s];
      tot[0] += got[s][0];
      tot[1] += got[s][1];
    }
    std::printf("       total    %10lld params, %lld buffers\n", (long long)tot[0], (long long)tot[1]);
  }
}

TEST(ResNet, TorchvisionPlacementMatchesTorchvision) {
  // Full ResNet-101 depth, input (1,3,30,30); layer4 with torchvision's own stride 2.
  check_against_torch(ResNetLayout::Torchvision, 30, "tv", 2);
}

TEST(ResNet, TfSlimPlacementMatchesTorchFunctional) {
  // Full depth, input (1,3,36,36): TF SAME pool 18 -> 9, block1 -> 5, block2 -> 3, block3 3; block4 stride 1.
  check_against_torch(ResNetLayout::TfSlim, 36, "slim", 1);
}

TEST(ResNet, FeatureSizeIsCeilOver16) {
  struct Case { int H, W; };
  for (ResNetLayout l : {ResNetLayout::TfSlim, ResNetLayout::Torchvision})
    for (Case c : {Case{600, 800}, Case{600, 1024}, Case{601, 799}, Case{37, 45}, Case{16, 17}}) {
      Graph g(DType::F32);
      ResNetBackbone net(ResNetOptions::resnet101(l));
      ValueId y = net.first_stage(g, g.input("image", {1, 3, c.H, c.W}));
      Shape want{1, 1024, (c.H + 15) / 16, (c.W + 15) / 16};
      EXPECT_EQ(g.value(y).shape, want) << resnet_layout_name(l) << " " << c.H << "x" << c.W;
      ValueId z = net.second_stage(g, g.input("crops", {64, 1024, 7, 7}));
      EXPECT_EQ(g.value(z).shape, (Shape{64, 2048, 7, 7})) << resnet_layout_name(l);
    }
  // Spec §10: 600x800 -> block3 38x50.
  Graph g(DType::F32);
  ResNetTaps taps;
  ResNetBackbone(ResNetOptions::resnet101(ResNetLayout::TfSlim)).first_stage(g, g.input("image", {1, 3, 600, 800}), &taps);
  EXPECT_EQ(g.value(taps.stem).shape, (Shape{1, 64, 150, 200}));
  EXPECT_EQ(g.value(taps.block1).shape, (Shape{1, 256, 75, 100}));
  EXPECT_EQ(g.value(taps.block2).shape, (Shape{1, 512, 38, 50}));
  EXPECT_EQ(g.value(taps.block3).shape, (Shape{1, 1024, 38, 50}));
}

TEST(ResNet, BadInputsNameTheProblem) {
  Graph g(DType::F32);
  ResNetBackbone net(ResNetOptions::tiny(ResNetLayout::TfSlim));
  try {
    net.first_stage(g, g.input("gray", {1, 1, 32, 32}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'gray' (1,1,32,32)"), std::string::npos) << e.what();
  }
  try {
    net.second_stage(g, g.input("crops", {4, 100, 7, 7}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("crops must be (R,64,h,w)"), std::string::npos) << e.what();
  }
  ResNetOptions bad = ResNetOptions::tiny(ResNetLayout::TfSlim);
  bad.block4_stride = 3;
  EXPECT_THROW(ResNetBackbone{bad}, Error);
}

TEST(ResNet, TfSlimNames) {
  const std::pair<const char*, const char*> cases[] = {
      {"conv1.weight", "FirstStageFeatureExtractor/resnet_v1_101/conv1/weights"},
      {"bn1.running_var", "FirstStageFeatureExtractor/resnet_v1_101/conv1/BatchNorm/moving_variance"},
      {"layer3.22.conv2.weight", "FirstStageFeatureExtractor/resnet_v1_101/block3/unit_23/bottleneck_v1/conv2/weights"},
      {"layer1.0.bn3.bias", "FirstStageFeatureExtractor/resnet_v1_101/block1/unit_1/bottleneck_v1/conv3/BatchNorm/beta"},
      {"layer1.0.downsample.0.weight",
       "FirstStageFeatureExtractor/resnet_v1_101/block1/unit_1/bottleneck_v1/shortcut/weights"},
      {"layer2.0.downsample.1.weight",
       "FirstStageFeatureExtractor/resnet_v1_101/block2/unit_1/bottleneck_v1/shortcut/BatchNorm/gamma"},
      {"layer4.2.bn1.running_mean",
       "SecondStageFeatureExtractor/resnet_v1_101/block4/unit_3/bottleneck_v1/conv1/BatchNorm/moving_mean"},
  };
  for (auto& [t, tf] : cases) EXPECT_EQ(resnet_tf_slim_name(t), tf);
  for (const char* bad : {"fc.weight", "layer5.0.conv1.weight", "layer1.x.conv1.weight", "layer1.0.conv4.weight",
                          "bn1.num_batches_tracked"})
    EXPECT_THROW(resnet_tf_slim_name(bad), Error) << bad;
  // Every parameter of the full graph maps, and to a distinct name.
  Net n;
  build_full(n, ResNetOptions::resnet101(ResNetLayout::TfSlim), 64, 64);
  std::map<std::string, std::string> seen;
  for (const Value& v : n.g.values())
    if (v.kind == ValueKind::Param) {
      std::string tf = resnet_tf_slim_name(v.name);
      EXPECT_TRUE(seen.emplace(tf, v.name).second) << v.name << " and " << seen[tf] << " both map to " << tf;
    }
  EXPECT_EQ(seen.size(), size_t(104 * 5));  // 104 convs (1 + 33*3 + 4 projections), each with 4 BN tensors
}

// Gradient of a tiny two-stage ResNet (conv, frozen BN, relu, add, identity / subsample / projection
// shortcuts, max pools) against central differences in double.
namespace {
struct TinyNet {
  Graph g{DType::F64};
  ValueId image, r, loss, out;
  explicit TinyNet(const ResNetOptions& o, int H, int W) {
    ResNetBackbone net(o);
    image = g.input("image", {1, 3, H, W});
    g.value_mut(image).requires_grad = true;
    ValueId b3 = net.first_stage(g, image);
    out = net.second_stage(g, b3);
    r = g.input("r", g.value(out).shape);
    loss = g.add1("sum", "loss", {g.add1("mul", "weighted", {out, r})});
    backward(g, loss);
  }
};

void grad_check(const ResNetOptions& o, int H, int W) {
  TinyNet m(o, H, W);
  ParamStore ps(Device::CPU, DType::F64);
  ps.declare_from(m.g);
  ps.allocate();
  fill_formula<double>(ps);
  MemoryPlan plan = plan_memory(m.g, {});
  Executor ex(m.g, plan, ps, Device::CPU);
  ex.debug = true;  // poison dead buffers: a lifetime bug shows up as NaN
  std::vector<double> x = tu::random_vec<double>(size_t(m.g.value(m.image).shape.numel()), 7);
  std::vector<double> r = tu::random_vec<double>(size_t(m.g.value(m.r).shape.numel()), 8);
  auto loss_at = [&](const std::vector<double>& xin) {
    ex.set(m.image, xin);
    ex.set(m.r, r);
    ex.run_nodes(0, m.g.num_forward_nodes());
    return ex.get<double>(m.loss)[0];
  };
  ps.zero_grads();
  ex.set(m.image, x);
  ex.set(m.r, r);
  ex.run();
  std::vector<double> dimage = ex.get<double>(m.g.value(m.image).grad);
  std::map<std::string, std::vector<double>> grads;
  for (const auto& n : ps.names()) grads[n] = ps.get<double>(n, 1);

  const double h = 1e-6;
  double worst = 0;
  int checked = 0;
  std::mt19937 rng(3);
  auto check = [&](double ana, double num, const std::string& what) {
    double err = std::abs(ana - num) / std::max(1e-3, std::abs(num));
    worst = std::max(worst, err);
    ++checked;
    EXPECT_LT(err, 1e-5) << what << ": analytic " << ana << " numeric " << num;
  };
  for (int k = 0; k < 12; ++k) {
    size_t i = rng() % x.size();
    std::vector<double> xp = x, xm = x;
    xp[i] += h;
    xm[i] -= h;
    check(dimage[i], (loss_at(xp) - loss_at(xm)) / (2 * h), str("image[", i, "]"));
  }
  int frozen = 0;
  for (const auto& n : ps.names()) {
    ValueId v = m.g.find(n);
    const bool trainable = m.g.value(v).requires_grad;
    if (!trainable) {
      // A frozen parameter gets no gradient node and its gradient buffer stays zero.
      ++frozen;
      EXPECT_EQ(m.g.value(v).grad, kNoValue) << n;
      for (double d : grads[n]) ASSERT_EQ(d, 0.0) << n;
      continue;
    }
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
      check(grads[n][i], (lp - lm) / (2 * h), str(n, "[", i, "]"));
    }
  }
  std::printf("[err] tiny %s (bn affine %s): %d gradient entries vs central differences, max rel err %.3e; "
              "%d frozen tensors without gradient\n",
              resnet_layout_name(o.layout), o.bn_affine_trainable ? "trainable" : "frozen", checked, worst, frozen);
  EXPECT_GT(checked, 40);
}
}  // namespace

TEST(ResNet, TinyGradientsTfSlim) {
  ResNetOptions o = ResNetOptions::tiny(ResNetLayout::TfSlim);
  grad_check(o, 18, 20);  // 18 -> conv 9 -> SAME pool 5 (odd, asymmetric) -> block1 3 -> block2 2
  o.bn_affine_trainable = true;
  grad_check(o, 16, 16);
}

TEST(ResNet, TinyGradientsTorchvision) {
  ResNetOptions o = ResNetOptions::tiny(ResNetLayout::Torchvision);
  o.block4_stride = 2;
  grad_check(o, 17, 22);
}

// The planned memory of the full ResNet-101 first stage (printed for the report; planning runs no kernels).
TEST(ResNet, PlannedMemoryResNet101FirstStage) {
  struct Case { int H, W; };
  for (Device dev : {Device::CUDA, Device::CPU})
    for (Case c : {Case{600, 600}, Case{600, 1024}})
      for (bool train : {false, true}) {
        Graph g(DType::F32);
        ResNetBackbone net(ResNetOptions::resnet101(ResNetLayout::TfSlim));
        ValueId y = net.first_stage(g, g.input("image", {1, 3, c.H, c.W}));
        if (train) backward(g, g.add1("sum", "loss", {y}));
        else g.mark_output(y);
        PlanOptions opt;
        opt.device = dev;
        MemoryPlan p = plan_memory(g, opt);
        std::printf("\n==== ResNet-101 first stage (tf_slim) 1x3x%dx%d %s, planned for %s ====\n%s", c.H, c.W,
                    train ? "training" : "inference", device_name(dev), p.report(g).c_str());
        std::printf("[plan] %s %dx%d %s: arena %s (lower bound %s, no reuse %s), params %s, grads %s, total %s\n",
                    device_name(dev), c.H, c.W, train ? "train" : "infer", format_bytes(p.arena_bytes).c_str(),
                    format_bytes(p.lower_bound).c_str(), format_bytes(p.no_reuse_bytes).c_str(),
                    format_bytes(p.param_bytes).c_str(), format_bytes(p.grad_bytes).c_str(),
                    format_bytes(p.total_bytes()).c_str());
        EXPECT_GE(p.arena_bytes, p.lower_bound);
        EXPECT_LE(p.arena_bytes, p.no_reuse_bytes);
        // conv1..layer3 hold 27,535,424 parameters + 82,816 running statistics (torchvision counts above);
        // only the conv weights train (BN frozen: gamma/beta are as many as the running statistics).
        EXPECT_EQ(p.param_bytes, size_t(27535424 + 82816) * 4);
        if (train) EXPECT_EQ(p.grad_bytes, size_t(27535424 - 82816) * 4);
        else EXPECT_EQ(p.grad_bytes, 0u);
      }
}
