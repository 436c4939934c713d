// Tiny Inception-v2 (both stages) forward and backward on CUDA against the CPU graph (f32) on the same weights:
// separable stem (grouped cuDNN conv), asymmetric SAME convs and pools, SAME average pools without the padded
// cells, concat, frozen BN; plus the full-width first stage forward at 1x3x224x320 (real layer shapes, cuDNN
// algorithms chosen within the planned workspace). Skips without a device.
#include <cmath>
#include <map>

#include "detector/backbone/inception_v2.h"
#include "detector/forward_runner.h"
#include "nn/autograd.h"
#include "nn/executor.h"
#include "nn/op_registry.h"
#include "nn/param_store.h"
#include "nn/planner.h"
#include "test_pool_margin.h"
#include "test_util.h"
#if CTDET_WITH_CUDA
#include "nn/cuda_context.h"
#endif

using namespace ctdet;
namespace tu = ctdet::testing;

namespace {

struct Model {
  Graph g{DType::F32};
  ValueId image = kNoValue, r = kNoValue, out = kNoValue, loss = kNoValue;
  Model(const InceptionV2Options& o, int N, int H, int W, bool train, bool second) {
    InceptionV2Backbone net(o);
    image = g.input("image", {N, 3, H, W});
    if (train) g.value_mut(image).requires_grad = true;
    out = net.first_stage(g, image);
    if (second) out = net.second_stage(g, out);
    g.mark_output(out);
    if (train) {
      r = g.input("r", g.value(out).shape);
      loss = g.add1("sum", "loss", {g.add1("mul", "weighted", {out, r})});
      backward(g, loss);
    }
  }
};

#if CTDET_WITH_CUDA
// The input seed (of 1..8) whose max pools are farthest from a tie (tests/test_pool_margin.h): the first seed of the
// depth-0.25 case put two values of a Mixed_4a pool window 4 ulps apart, and the devices routed its gradient to
// different cells (a 5.5% difference in the input gradient, both correct). Requires a gap of 1e-5 of the pool
// input's scale, about 100 times the devices' forward difference.
int pick_seed(const InceptionV2Options& o, int N, int H, int W, const std::string& tag) {
  const tu::SeedChoice c = tu::most_tie_free_seed(
      [&](Graph& g) {
        InceptionV2Backbone net(o);
        ValueId image = g.input("image", {N, 3, H, W});
        net.second_stage(g, net.first_stage(g, image));
        return image;
      },
      [&](int seed) {  // the f32 values the devices will see
        const std::vector<float> xf = tu::random_vec<float>(size_t(N) * 3 * H * W, seed);
        return std::vector<double>(xf.begin(), xf.end());
      },
      1, 8);
  const tu::PoolMargin& m = c.margin;
  std::printf("[err] %-48s input seed %d: max-pool tie gap %.3e of scale (at %s), %d exact ties in %d windows\n",
              tag.c_str(), c.seed, m.gap, m.where.c_str(), m.exact_ties, m.windows);
  EXPECT_GE(m.gap, 1e-5) << tag << ": every candidate input has a max-pool window near a tie";
  return c.seed;
}

struct Result {
  std::vector<float> out, dimage;
  std::map<std::string, std::vector<float>> grads;
};

Result run(Model& m, Device dev, CudaContext* ctx, const std::vector<float>& x, const std::vector<float>& r,
           bool train) {
  ParamStore ps(dev, DType::F32);
  ps.declare_from(m.g);
  ps.allocate();
  fill_formula_weights(ps);
  PlanOptions opt;
  opt.device = dev;
  opt.cuda = ctx;
  MemoryPlan plan = plan_memory(m.g, opt);
  Executor ex(m.g, plan, ps, dev, ctx);
  ex.debug = true;  // per-node synchronisation: a failing kernel is named by its node
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

double max_abs_of(const std::vector<float>& v) {
  double mx = 0;
  for (float a : v) mx = std::max(mx, double(std::abs(a)));
  return mx;
}
#endif

}  // namespace

TEST(InceptionV2Gpu, TinyForwardBackwardMatchesCpu) {
  CTDET_REQUIRE_GPU();
#if CTDET_WITH_CUDA
  CudaContext ctx(0);
  struct Case { int N, H, W; bool affine; double dm; int min_depth; };
  // 64x45 at depth 0.25 gives Mixed_3c an 8x6 map, so Mixed_4a's stride-2 convs and pool pad 0/1 (asymmetric).
  for (Case c : {Case{1, 33, 38, false, 0.0625, 2}, Case{2, 40, 40, true, 0.0625, 2}, Case{1, 64, 45, false, 0.25, 16}}) {
    InceptionV2Options o;
    o.depth_multiplier = c.dm;
    o.min_depth = c.min_depth;
    o.bn_affine_trainable = c.affine;
    Model m(o, c.N, c.H, c.W, true, true);
    const std::string tag = str("inception dm", c.dm, " ", c.N, "x", c.H, "x", c.W, c.affine ? " affine" : "");
    const int seed = pick_seed(o, c.N, c.H, c.W, tag);
    std::vector<float> x = tu::random_vec<float>(size_t(m.g.value(m.image).shape.numel()), seed);
    std::vector<float> r = tu::random_vec<float>(size_t(m.g.value(m.r).shape.numel()), 2);
    Result cpu = run(m, Device::CPU, nullptr, x, r, true);
    Result gpu = run(m, Device::CUDA, &ctx, x, r, true);
    tu::ErrStats s = tu::compare(gpu.out, cpu.out, 1e-3);
    tu::print_err(tag + " forward", s);
    EXPECT_LE(s.max_abs / std::max(max_abs_of(cpu.out), 1e-6), 1e-4) << tag;
    s = tu::compare(gpu.dimage, cpu.dimage, 1e-3);
    tu::print_err(tag + " d image", s);
    EXPECT_LE(s.max_abs / std::max(max_abs_of(cpu.dimage), 1e-6), 1e-4) << tag;
    double worst = 0;
    std::string at;
    for (auto& [n, g] : cpu.grads) {
      tu::ErrStats e = tu::compare(gpu.grads[n], g, 1e-3);
      double rel = e.max_abs / std::max(max_abs_of(g), 1e-6);
      if (rel > worst) worst = rel, at = n;
      EXPECT_LE(rel, 1e-4) << tag << " " << n;
    }
    std::printf("[err] %-48s %zu parameter gradients, worst max_abs/max|ref| = %.3e (%s)\n", tag.c_str(),
                cpu.grads.size(), worst, at.c_str());
  }
#endif
}

TEST(InceptionV2Gpu, FullFirstStageForwardMatchesCpu) {
  CTDET_REQUIRE_GPU();
#if CTDET_WITH_CUDA
  CudaContext ctx(0);
  Model m(InceptionV2Options{}, 1, 224, 320, false, false);
  std::vector<float> x = tu::random_vec<float>(size_t(m.g.value(m.image).shape.numel()), 5);
  Result cpu = run(m, Device::CPU, nullptr, x, {}, false);
  Result gpu = run(m, Device::CUDA, &ctx, x, {}, false);
  const double mx = max_abs_of(cpu.out);
  tu::ErrStats s = tu::compare(gpu.out, cpu.out, 1e-3);
  tu::print_err("Inception-v2 Mixed_4e 1x3x224x320 cuda vs cpu", s);
  std::printf("       max |cpu| = %.4f, max_abs / max|cpu| = %.3e\n", mx, s.max_abs / mx);
  EXPECT_LE(s.max_abs / mx, 1e-4);
#endif
}
