// Tiny ResNet (both stride placements, both stages) forward and backward on CUDA against the CPU graph (f32),
// plus one full-width ResNet-101 first stage forward at 1x3x224x320 (real layer shapes, cuDNN algorithms chosen
// within the planned workspace).
#include <cmath>
#include <map>

#include "detector/backbone/resnet.h"
#include "nn/autograd.h"
#include "nn/executor.h"
#include "nn/op_registry.h"
#include "nn/param_store.h"
#include "nn/planner.h"
#include "test_util.h"
#if CTDET_WITH_CUDA
#include "nn/cuda_context.h"
#endif

using namespace ctdet;
namespace tu = ctdet::testing;

namespace {

struct Model {
  Graph g{DType::F32};
  ValueId image, r, out, loss;
  Model(const ResNetOptions& o, int H, int W, bool train) {
    ResNetBackbone net(o);
    image = g.input("image", {1, 3, H, W});
    if (train) g.value_mut(image).requires_grad = true;
    out = net.second_stage(g, net.first_stage(g, image));
    g.mark_output(out);
    if (train) {
      r = g.input("r", g.value(out).shape);
      loss = g.add1("sum", "loss", {g.add1("mul", "weighted", {out, r})});
      backward(g, loss);
    }
  }
};

[[maybe_unused]] void fill(ParamStore& ps, uint64_t seed) {  // unused without CUDA
  uint64_t k = seed;
  for (const auto& n : ps.names()) {
    const Shape s = ps.shape(n);
    std::vector<float> v;
    if (n.find("running_var") != std::string::npos) v = tu::random_vec<float>(size_t(s.numel()), ++k, 0.6, 1.4);
    else if (n.find("running_mean") != std::string::npos || n.find(".bias") != std::string::npos)
      v = tu::random_vec<float>(size_t(s.numel()), ++k, -0.2, 0.2);
    else if (s.rank() == 1) v = tu::random_vec<float>(size_t(s.numel()), ++k, 0.3, 0.8);
    else {
      double a = std::sqrt(6.0 / double(s[1] * s[2] * s[3]));
      v = tu::random_vec<float>(size_t(s.numel()), ++k, -a, a);
    }
    ps.set<float>(n, v);
  }
}

#if CTDET_WITH_CUDA
// Runs the model on `dev`; returns output, image gradient and parameter gradients (train only).
struct Result {
  std::vector<float> out, dimage;
  std::map<std::string, std::vector<float>> grads;
};
Result run(Model& m, Device dev, CudaContext* ctx, const std::vector<float>& x, const std::vector<float>& r,
           bool train) {
  ParamStore ps(dev, DType::F32);
  ps.declare_from(m.g);
  ps.allocate();
  fill(ps, 100);
  PlanOptions opt;
  opt.device = dev;
  MemoryPlan plan = plan_memory(m.g, opt);
  Executor ex(m.g, plan, ps, dev, ctx);
  ex.debug = true;
  ex.set(m.image, x);
  if (train) ex.set(m.r, r);
  ex.run();
  Result res;
  res.out = ex.get<float>(m.out);
  if (train) {
    res.dimage = ex.get<float>(m.g.value(m.image).grad);
    for (const auto& n : ps.names())
      if (m.g.value(m.g.find(n)).requires_grad) res.grads[n] = ps.get<float>(n, 1);
  }
  return res;
}
#endif

}  // namespace

TEST(ResNetGpu, TinyForwardBackwardMatchesCpu) {
  CTDET_REQUIRE_GPU();
#if CTDET_WITH_CUDA
  CudaContext ctx(0);
  struct Case { ResNetLayout layout; int H, W; bool affine; int b4; };
  for (Case c : {Case{ResNetLayout::TfSlim, 34, 30, false, 1}, Case{ResNetLayout::TfSlim, 32, 32, true, 1},
                 Case{ResNetLayout::Torchvision, 33, 40, false, 2}}) {
    ResNetOptions o = ResNetOptions::tiny(c.layout);
    o.bn_affine_trainable = c.affine;
    o.block4_stride = c.b4;
    Model m(o, c.H, c.W, true);
    std::vector<float> x = tu::random_vec<float>(size_t(m.g.value(m.image).shape.numel()), 1);
    std::vector<float> r = tu::random_vec<float>(size_t(m.g.value(m.r).shape.numel()), 2);
    Result cpu = run(m, Device::CPU, nullptr, x, r, true);
    Result gpu = run(m, Device::CUDA, &ctx, x, r, true);
    const std::string tag = str("tiny ", resnet_layout_name(c.layout), " ", c.H, "x", c.W, c.affine ? " affine" : "");
    tu::ErrStats s = tu::compare(gpu.out, cpu.out, 1e-3);
    tu::print_err(tag + " forward", s);
    EXPECT_LE(s.max_abs, 1e-4);
    s = tu::compare(gpu.dimage, cpu.dimage, 1e-3);
    tu::print_err(tag + " d image", s);
    EXPECT_LE(s.max_abs, 1e-4);
    double worst = 0;
    std::string at;
    for (auto& [n, g] : cpu.grads) {
      tu::ErrStats e = tu::compare(gpu.grads[n], g, 1e-3);
      double mx = 0;
      for (float v : g) mx = std::max(mx, double(std::abs(v)));
      double rel = e.max_abs / std::max(mx, 1e-6);
      if (rel > worst) worst = rel, at = n;
      EXPECT_LE(rel, 1e-4) << tag << " " << n;
    }
    std::printf("[err] %-48s %zu parameter gradients, worst max_abs/max|ref| = %.3e (%s)\n", tag.c_str(),
                cpu.grads.size(), worst, at.c_str());
  }
#endif
}

TEST(ResNetGpu, FullFirstStageForwardMatchesCpu) {
  CTDET_REQUIRE_GPU();
#if CTDET_WITH_CUDA
  CudaContext ctx(0);
  ResNetOptions o = ResNetOptions::resnet101(ResNetLayout::TfSlim);
  Graph g(DType::F32);
  ValueId image = g.input("image", {1, 3, 224, 320});
  ValueId y = ResNetBackbone(o).first_stage(g, image);
  g.mark_output(y);
  std::vector<float> x = tu::random_vec<float>(size_t(g.value(image).shape.numel()), 5);
  std::vector<float> out[2];
  for (int k = 0; k < 2; ++k) {
    Device dev = k == 0 ? Device::CPU : Device::CUDA;
    ParamStore ps(dev, DType::F32);
    ps.declare_from(g);
    ps.allocate();
    fill(ps, 200);
    PlanOptions opt;
    opt.device = dev;
    MemoryPlan plan = plan_memory(g, opt);
    Executor ex(g, plan, ps, dev, k ? &ctx : nullptr);
    ex.set(image, x);
    ex.run();
    out[k] = ex.get<float>(y);
  }
  double mx = 0;
  for (float v : out[0]) mx = std::max(mx, double(std::abs(v)));
  tu::ErrStats s = tu::compare(out[1], out[0], 1e-3);
  tu::print_err("ResNet-101 block3 1x3x224x320 cuda vs cpu", s);
  std::printf("       max |cpu| = %.4f, max_abs / max|cpu| = %.3e\n", mx, s.max_abs / mx);
  EXPECT_LE(s.max_abs / mx, 1e-4);
#endif
}
