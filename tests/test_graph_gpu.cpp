// The executor on CUDA against the CPU specification: the same random graphs (forward and backward)
// give the same loss and parameter gradients within float tolerance. Skips without a device.
#include <random>

#include "nn/autograd.h"
#include "nn/core_ops.h"
#include "nn/executor.h"
#include "nn/param_store.h"
#include "nn/planner.h"
#include "test_util.h"
#if CTDET_WITH_CUDA
#include "nn/cuda_context.h"
#endif

using namespace ctdet;
namespace tu = ctdet::testing;

namespace {
[[maybe_unused]] Graph make_mlp(int M, int width, int depth, ValueId* x, ValueId* loss) {  // unused without CUDA
  Graph g;
  *x = g.input("x", {M, width});
  ValueId h = *x;
  for (int i = 0; i < depth; ++i) {
    ValueId W = g.param(str("W", i), {width, width}), b = g.param(str("b", i), {width});
    ValueId y = g.add1("linear", str("fc", i), {h, W, b});
    ValueId r = g.add1("relu", str("relu", i), {y});
    h = i % 2 ? g.add1("add", str("res", i), {r, h}) : g.add1("mul", str("gate", i), {r, y});
  }
  ValueId s = g.add1("scale", "scaled", {h}, ScaleAttrs{0.01});
  *loss = g.add1("sum", "loss", {g.add1("mul", "sq", {s, s})});
  backward(g, *loss);
  return g;
}
}  // namespace

TEST(ExecutorGpu, RandomMlpMatchesCpu) {
  CTDET_REQUIRE_GPU();
#if CTDET_WITH_CUDA
  for (int trial = 0; trial < 4; ++trial) {
    int M = 3 + 7 * trial, width = 16 << (trial % 3), depth = 2 + trial;
    ValueId x, loss;
    Graph g = make_mlp(M, width, depth, &x, &loss);
    ParamStore pc(Device::CPU), pg(Device::CUDA);
    pc.declare_from(g);
    pg.declare_from(g);
    pc.allocate();
    pg.allocate();
    uint64_t seed = 10 + trial;
    for (auto& n : pc.names()) {
      auto v = tu::random_vec<float>(size_t(pc.shape(n).numel()), seed++, -0.3, 0.3);
      pc.set<float>(n, v);
      pg.set<float>(n, v);
    }
    CudaContext ctx(0);
    MemoryPlan plan_c = plan_memory(g, {});
    PlanOptions og;
    og.device = Device::CUDA;
    og.cuda = &ctx;
    MemoryPlan plan_g = plan_memory(g, og);
    Executor ec(g, plan_c, pc, Device::CPU), eg(g, plan_g, pg, Device::CUDA, &ctx);
    eg.debug = true;
    auto xin = tu::random_vec<float>(size_t(M * width), 99 + trial);
    ec.set(x, xin);
    eg.set(x, xin);
    ec.run();
    eg.run();
    ctx.synchronize();
    auto e = tu::compare(eg.get<float>(loss), ec.get<float>(loss));
    tu::print_err(str("loss, trial ", trial), e);
    EXPECT_LT(e.max_rel, 1e-4);
    for (auto& n : pc.names()) {
      auto ge = tu::compare(pg.get<float>(n, 1), pc.get<float>(n, 1), 1e-3);
      tu::print_err(str("grad ", n, ", trial ", trial), ge);
      EXPECT_LT(ge.max_rel, 1e-3) << n;
    }
  }
#endif
}

TEST(ExecutorGpu, AccumulatePathOnDevice) {
  CTDET_REQUIRE_GPU();
#if CTDET_WITH_CUDA
  ValueId x, loss;
  Graph g = make_mlp(5, 8, 2, &x, &loss);
  ParamStore pg(Device::CUDA);
  pg.declare_from(g);
  pg.allocate();
  uint64_t seed = 1;
  for (auto& n : pg.names()) pg.set<float>(n, tu::random_vec<float>(size_t(pg.shape(n).numel()), seed++, -0.5, 0.5));
  CudaContext ctx(0);
  PlanOptions og;
  og.device = Device::CUDA;
  MemoryPlan plan = plan_memory(g, og);
  Executor eg(g, plan, pg, Device::CUDA, &ctx);
  eg.set(x, tu::random_vec<float>(40, 3));
  eg.run();
  auto g1 = pg.get<float>("W0", 1);
  auto prefill = tu::random_vec<float>(g1.size(), 4);
  pg.set<float>("W0", prefill, 1);
  eg.run();
  auto g2 = pg.get<float>("W0", 1);
  std::vector<float> expect(g1.size());
  for (size_t i = 0; i < g1.size(); ++i) expect[i] = prefill[i] + g1[i];
  auto e = tu::compare(g2, expect, 1e-3);
  tu::print_err("prefill + gradient on CUDA", e);
  EXPECT_LT(e.max_rel, 1e-5);
#endif
}
