// Graph, autograd, planner and executor: composite gradients against central differences in double,
// planned run bitwise equal to a one-buffer-per-value run, planner properties on random graphs, budgets.
#include <cmath>
#include <random>

#include "detector/model_zoo.h"
#include "nn/autograd.h"
#include "nn/core_ops.h"
#include "nn/executor.h"
#include "nn/op_registry.h"
#include "nn/param_store.h"
#include "nn/planner.h"
#include "test_util.h"

using namespace ctdet;
namespace tu = ctdet::testing;

namespace {

// y = sum( (c*c) ) + sum(e) with c = h*h + h (h read three times, a diamond), h = relu(x W1^T + b1),
// d = c W2^T, and e = x2 W1^T sharing W1.
struct Composite {
  Graph g;
  ValueId x, x2, loss;
  explicit Composite(DType t) : g(t) {
    x = g.input("x", {4, 3});
    x2 = g.input("x2", {4, 3});
    g.value_mut(x).requires_grad = true;
    ValueId W1 = g.param("W1", {5, 3}), b1 = g.param("b1", {5}), W2 = g.param("W2", {2, 5});
    ValueId h = g.add1("relu", "h", {g.add1("linear", "fc1", {x, W1, b1})});
    ValueId hh = g.add1("mul", "hh", {h, h});
    ValueId c = g.add1("add", "c", {hh, h});
    ValueId d = g.add1("linear", "fc2", {c, W2});
    ValueId dd = g.add1("mul", "dd", {d, d});
    ValueId e = g.add1("linear", "shared", {x2, g.param("W1", {5, 3})});
    ValueId s1 = g.add1("sum", "s1", {dd});
    ValueId s2 = g.add1("sum", "s2", {e});
    loss = g.add1("add", "loss", {s1, s2});
    backward(g, loss);
  }
};

template <typename T>
void init_params(ParamStore& ps, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-0.8, 0.8);
  for (auto& n : ps.names()) {
    std::vector<T> v(size_t(ps.shape(n).numel()));
    for (auto& a : v) a = T(u(rng));
    ps.set<T>(n, v);
  }
}

double run_loss(Composite& m, Executor& ex, const std::vector<double>& x, const std::vector<double>& x2) {
  ex.set(m.x, x);
  ex.set(m.x2, x2);
  ex.run();
  return ex.get<double>(m.loss)[0];
}

}  // namespace

TEST(Autograd, CompositeGraphMatchesCentralDifferences) {
  Composite m(DType::F64);
  ParamStore ps(Device::CPU, DType::F64);
  ps.declare_from(m.g);
  ps.allocate();
  init_params<double>(ps, 7);
  MemoryPlan plan = plan_memory(m.g, {});
  Executor ex(m.g, plan, ps, Device::CPU);
  ex.debug = true;
  auto x = tu::random_vec<double>(12, 1), x2 = tu::random_vec<double>(12, 2);
  run_loss(m, ex, x, x2);
  auto dx = ex.get<double>(m.g.value(m.x).grad);
  std::map<std::string, std::vector<double>> grads;
  for (auto& n : ps.names()) grads[n] = ps.get<double>(n, 1);

  const double eps = 1e-6;
  double worst = 0;
  for (auto& n : ps.names()) {
    std::vector<double> p = ps.get<double>(n);
    std::vector<double> num(p.size());
    for (size_t i = 0; i < p.size(); ++i) {
      auto q = p;
      q[i] = p[i] + eps;
      ps.set<double>(n, q);
      double lp = run_loss(m, ex, x, x2);
      q[i] = p[i] - eps;
      ps.set<double>(n, q);
      double lm = run_loss(m, ex, x, x2);
      num[i] = (lp - lm) / (2 * eps);
    }
    ps.set<double>(n, p);
    // Parameter gradients accumulate: every run above added to them, so compare the first run's gradient.
    auto e = tu::compare(grads[n], num, 1e-3);
    tu::print_err("d loss / d " + n, e);
    EXPECT_LT(e.max_rel, 1e-6) << n;
    worst = std::max(worst, e.max_rel);
  }
  std::vector<double> numx(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    auto q = x;
    q[i] += eps;
    double lp = run_loss(m, ex, q, x2);
    q[i] -= 2 * eps;
    double lm = run_loss(m, ex, q, x2);
    numx[i] = (lp - lm) / (2 * eps);
  }
  auto e = tu::compare(dx, numx, 1e-3);
  tu::print_err("d loss / d x (input)", e);
  EXPECT_LT(e.max_rel, 1e-6);
  std::printf("max relative error over all parameters: %.3e\n", std::max(worst, e.max_rel));
}

TEST(Autograd, ParameterGradientsAccumulateOntoPrefill) {
  Composite m(DType::F64);
  ParamStore ps(Device::CPU, DType::F64);
  ps.declare_from(m.g);
  ps.allocate();
  init_params<double>(ps, 3);
  MemoryPlan plan = plan_memory(m.g, {});
  Executor ex(m.g, plan, ps, Device::CPU);
  auto x = tu::random_vec<double>(12, 5), x2 = tu::random_vec<double>(12, 6);
  run_loss(m, ex, x, x2);
  auto g1 = ps.get<double>("W1", 1);
  std::vector<double> prefill = tu::random_vec<double>(g1.size(), 9);
  ps.set<double>("W1", prefill, 1);
  run_loss(m, ex, x, x2);
  auto g2 = ps.get<double>("W1", 1);
  std::vector<double> expect(g1.size());
  for (size_t i = 0; i < g1.size(); ++i) expect[i] = prefill[i] + g1[i];
  auto e = tu::compare(g2, expect);
  tu::print_err("prefill + gradient (W1)", e);
  EXPECT_LT(e.max_abs, 1e-12);
  ps.zero_grads();
  run_loss(m, ex, x, x2);
  EXPECT_EQ(ps.get<double>("W1", 1), g1);
}

// param_gradients_to_arena: the same gradients as the store (bitwise; W1 is written by two nodes, so its
// first contribution must overwrite and the second add), no accumulation across runs, no store gradients, and
// each gradient planned from its first write to the end of the schedule.
TEST(Autograd, ParameterGradientsInTheArenaEqualTheStoresAndDoNotAccumulate) {
  Composite ref(DType::F64), m(DType::F64);
  ParamStore ps_ref(Device::CPU, DType::F64), ps(Device::CPU, DType::F64);
  ps_ref.declare_from(ref.g);
  ps.declare_from(m.g);
  ps_ref.allocate();
  ps.allocate(ParamUse::TrainingGradsInArena);
  init_params<double>(ps_ref, 3);
  init_params<double>(ps, 3);
  EXPECT_EQ(param_gradients_to_arena(m.g), 3);
  MemoryPlan plan_ref = plan_memory(ref.g, {}), plan = plan_memory(m.g, {});
  EXPECT_EQ(plan.grad_bytes, 0u);
  EXPECT_EQ(plan.arena_grad_bytes, plan_ref.grad_bytes);
  EXPECT_EQ(plan.optimizer_bytes, plan_ref.optimizer_bytes);
  Executor ex_ref(ref.g, plan_ref, ps_ref, Device::CPU), ex(m.g, plan, ps, Device::CPU);
  ex.debug = true;  // poisons dead buffers with NaN: a gradient freed before the end would show
  auto x = tu::random_vec<double>(12, 5), x2 = tu::random_vec<double>(12, 6);
  const double l_ref = run_loss(ref, ex_ref, x, x2);
  for (int run = 0; run < 2; ++run) {  // the second run must not add onto the first
    EXPECT_EQ(run_loss(m, ex, x, x2), l_ref);
    for (const char* n : {"W1", "b1", "W2"}) {
      const ValueId gv = m.g.value(m.g.find(n)).grad;
      ASSERT_NE(gv, kNoValue) << n;
      EXPECT_EQ(m.g.value(gv).kind, ValueKind::ArenaParamGradient) << n;
      EXPECT_EQ(ex.get<double>(gv), ps_ref.get<double>(n, 1)) << n << " run " << run;
      // Planned from the node that first writes it to the last node.
      const BufferReq& b = plan.buffers[size_t(plan.value_buffer[size_t(gv)])];
      int first_writer = -1;
      for (int i = 0; i < m.g.num_nodes() && first_writer < 0; ++i)
        for (ValueId o : m.g.node(i).outputs)
          if (o == gv) first_writer = i;
      EXPECT_EQ(b.first, first_writer) << n;
      EXPECT_EQ(b.last, m.g.num_nodes() - 1) << n;
    }
  }
  std::printf("[info] gradients in the arena: %zu B of %zu B in the store before; arena %zu B (was %zu B)\n",
              plan.arena_grad_bytes, plan_ref.grad_bytes, plan.arena_bytes, plan_ref.arena_bytes);
  try {
    ps.grad("W1");
    ADD_FAILURE() << "a store allocated for gradients in the arena handed out a gradient";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("W1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("arena"), std::string::npos) << e.what();
  }
  EXPECT_EQ(ps.allocated_bytes(), 2 * ps.bytes());
  EXPECT_TRUE(ps.has_training_state());
  EXPECT_FALSE(ps.has_gradients());
}

TEST(Graph, ShapeMismatchNamesBothValuesAndShapes) {
  Graph g;
  ValueId a = g.input("image", {1, 3, 8, 8});
  ValueId b = g.input("mask", {1, 3, 8, 4});
  try {
    g.add1("add", "merge", {a, b});
    FAIL() << "expected ctdet::Error";
  } catch (const Error& e) {
    std::string m = e.what();
    std::printf("message: %s\n", m.c_str());
    EXPECT_NE(m.find("'image' (1,3,8,8)"), std::string::npos) << m;
    EXPECT_NE(m.find("'mask' (1,3,8,4)"), std::string::npos) << m;
    EXPECT_NE(m.find("merge"), std::string::npos) << m;
  }
  ValueId x = g.input("x", {4, 3});
  ValueId w = g.param("w", {5, 4});
  EXPECT_THROW(g.add1("linear", "fc", {x, w}), Error);
  EXPECT_THROW(g.param("w", {5, 3}), Error);  // shared parameter with another shape
  EXPECT_THROW(g.add1("no_such_op", "n", {x}), Error);
}

TEST(Executor, CudaRequestInCpuOnlyBuildSaysSo) {
  if (cuda_built()) GTEST_SKIP() << "this build has CUDA";
  Graph g;
  ValueId x = g.input("x", {4});
  g.mark_output(g.add1("relu", "r", {x}));
  ParamStore ps(Device::CUDA);
  MemoryPlan plan = plan_memory(g, {});
  try {
    Executor ex(g, plan, ps, Device::CUDA);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("built without CUDA"), std::string::npos) << e.what();
  }
}

namespace {
// A random MLP-like graph of core ops with fan-out, diamonds, in-place candidates and shared parameters.
struct RandomNet {
  Graph g;
  ValueId x, loss;
  RandomNet(uint64_t seed, DType t) : g(t) {
    std::mt19937_64 rng(seed);
    auto pick = [&](int lo, int hi) { return int(std::uniform_int_distribution<int>(lo, hi)(rng)); };
    int M = pick(1, 6);
    int width = pick(2, 9);
    x = g.input("x", {M, width});
    std::vector<ValueId> pool = {x};
    std::vector<int> widths = {width};
    int n = pick(3, 14);
    for (int i = 0; i < n; ++i) {
      int kind = pick(0, 4);
      size_t a = size_t(pick(0, int(pool.size()) - 1));
      std::string name = str("n", i);
      ValueId out;
      if (kind == 0 || kind == 4) {
        int w2 = pick(2, 9);
        ValueId W = g.param(str("W", widths[a], "x", w2, "_", pick(0, 1)), {w2, widths[a]});
        out = g.add1("linear", name, {pool[a], W});
        widths.push_back(w2);
      } else {
        size_t b = a;
        for (size_t k = 0; k < pool.size(); ++k)
          if (widths[k] == widths[a] && pick(0, 1)) b = k;
        if (kind == 1) out = g.add1("relu", name, {pool[a]});
        else if (kind == 2) out = g.add1("add", name, {pool[a], pool[b]});
        else out = g.add1("mul", name, {pool[a], pool[b]});
        widths.push_back(widths[a]);
      }
      pool.push_back(out);
    }
    // Loss: sum over a few values so several branches receive gradient.
    ValueId acc = g.add1("sum", "loss_last", {pool.back()});
    for (size_t k = 1; k + 1 < pool.size(); k += 3) acc = g.add1("add", str("loss_add", k), {acc, g.add1("sum", str("loss", k), {pool[k]})});
    loss = acc;
  }
};
}  // namespace

TEST(Planner, PlannedRunIsBitwiseEqualToOneBufferPerValue) {
  int compared = 0;
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    RandomNet a(seed, DType::F32);
    if (!a.g.value(a.loss).requires_grad) continue;
    backward(a.g, a.loss);
    ParamStore ps1, ps2;
    ps1.declare_from(a.g);
    ps2.declare_from(a.g);
    ps1.allocate();
    ps2.allocate();
    init_params<float>(ps1, seed);
    init_params<float>(ps2, seed);
    PlanOptions reuse;
    PlanOptions none;
    none.inplace = false;
    MemoryPlan p1 = plan_memory(a.g, reuse);
    // One buffer per value: place every buffer at its own offset.
    MemoryPlan p2 = plan_memory(a.g, none);
    size_t off = 0;
    for (size_t b = 0; b < p2.buffers.size(); ++b) {
      p2.buffer_offset[b] = off;
      off += align_up(p2.buffers[b].bytes, 256);
    }
    for (ValueId v = 0; v < a.g.num_values(); ++v)
      if (p2.value_buffer[size_t(v)] >= 0) p2.value_offset[size_t(v)] = int64_t(p2.buffer_offset[size_t(p2.value_buffer[size_t(v)])]);
    p2.arena_bytes = off;
    Executor e1(a.g, p1, ps1, Device::CPU), e2(a.g, p2, ps2, Device::CPU);
    e1.debug = true;  // dead buffers poisoned with NaN: a lifetime bug cannot hide
    auto xin = tu::random_vec<float>(size_t(a.g.value(a.x).shape.numel()), seed + 100);
    e1.set(a.x, xin);
    e2.set(a.x, xin);
    e1.run();
    e2.run();
    EXPECT_EQ(e1.get<float>(a.loss), e2.get<float>(a.loss)) << "seed " << seed;
    for (auto& n : ps1.names()) EXPECT_EQ(ps1.get<float>(n, 1), ps2.get<float>(n, 1)) << "seed " << seed << " " << n;
    ++compared;
  }
  std::printf("compared %d random graphs bit for bit\n", compared);
  EXPECT_GT(compared, 20);
}

TEST(Planner, RandomGraphsNoOverlapAndBounds) {
  double worst_ratio = 0, sum_ratio = 0, sum_saving = 0;
  int n = 0;
  std::mt19937_64 rng(123);
  for (int t = 0; t < 500; ++t) {
    std::vector<BufferReq> bufs;
    int nodes = std::uniform_int_distribution<int>(2, 120)(rng);
    int count = std::uniform_int_distribution<int>(1, 200)(rng);
    for (int i = 0; i < count; ++i) {
      int a = std::uniform_int_distribution<int>(0, nodes - 1)(rng);
      int len = std::uniform_int_distribution<int>(0, 1)(rng) ? std::uniform_int_distribution<int>(0, 3)(rng)
                                                               : std::uniform_int_distribution<int>(0, nodes)(rng);
      size_t bytes = size_t(std::uniform_int_distribution<int>(1, 1 << std::uniform_int_distribution<int>(4, 20)(rng))(rng));
      bufs.push_back({bytes, a, std::min(nodes - 1, a + len)});
    }
    size_t lb = live_lower_bound(bufs, 256);
    size_t nr = 0;
    for (auto& b : bufs) nr += align_up(b.bytes, 256);
    const GreedyOrder orders[4] = {GreedyOrder::Size, GreedyOrder::Area, GreedyOrder::Lifetime,
                                   GreedyOrder::SizeEarlyFirst};
    size_t best = SIZE_MAX;
    for (int h = 0; h < 5; ++h) {
      Placement p = h == 0 ? place_best_fit_sweep(bufs, 256) : place_greedy(bufs, 256, orders[h - 1]);
      best = std::min(best, p.peak);
      std::string bad = find_overlap(bufs, p.offset);
      ASSERT_TRUE(bad.empty()) << "trial " << t << " heuristic " << h << ": " << bad;
      for (size_t i = 0; i < bufs.size(); ++i) ASSERT_EQ(p.offset[i] % 256, 0u);
      ASSERT_LE(lb, p.peak);
      ASSERT_LE(p.peak, nr);
    }
    double r = double(best) / double(lb);
    worst_ratio = std::max(worst_ratio, r);
    sum_ratio += r;
    sum_saving += 1.0 - double(best) / double(nr);
    ++n;
  }
  std::printf("500 random interval sets: peak/lower-bound mean %.4f worst %.4f; mean saving vs no-reuse %.1f%%\n",
              sum_ratio / n, worst_ratio, 100 * sum_saving / n);
}

TEST(Planner, RandomCoreOpGraphsPlanWithinBounds) {
  double sum_ratio = 0, worst = 0, sum_nr = 0;
  int n = 0;
  for (uint64_t seed = 1; seed <= 500; ++seed) {
    RandomNet a(seed, DType::F32);
    if (a.g.value(a.loss).requires_grad) backward(a.g, a.loss);
    else a.g.mark_output(a.loss);
    MemoryPlan p = plan_memory(a.g, {});  // verify=true: overlap check inside
    ASSERT_LE(p.lower_bound, p.arena_bytes);
    ASSERT_LE(p.arena_bytes, p.no_reuse_bytes);
    double r = double(p.arena_bytes) / double(p.lower_bound);
    sum_ratio += r;
    worst = std::max(worst, r);
    sum_nr += double(p.arena_bytes) / double(p.no_reuse_bytes);
    ++n;
  }
  std::printf("500 random op graphs (forward+backward): peak/lower-bound mean %.4f worst %.4f; peak/no-reuse mean %.3f\n",
              sum_ratio / n, worst, sum_nr / n);
}

TEST(Planner, ExactPeaksOnChainsAndAHandCase) {
  // A chain a->b->c->d of equal 1 KiB values: each lives two nodes, so two are live at once.
  std::vector<BufferReq> chain = {{1024, 0, 1}, {1024, 1, 2}, {1024, 2, 3}, {1024, 3, 3}};
  EXPECT_EQ(live_lower_bound(chain, 256), 2048u);
  EXPECT_EQ(place_best_fit_sweep(chain, 256).peak, 2048u);
  EXPECT_EQ(place_greedy_by_size(chain, 256).peak, 2048u);
  // Hand case where the sweep loses and greedy-by-size reaches the bound (256-byte alignment):
  // A 256 B live [0,1], B 200 B live [0,3], C 512 B live [2,3]. Bound: node 2 holds B + C = 768.
  // Sweep: A@0, B@256; A freed after node 1 leaves a 256-byte hole too small for C -> C@512, peak 1024.
  // Greedy: C@0 (largest), A@0 (no time overlap with C), B conflicts with both -> B@512, peak 768.
  std::vector<BufferReq> hand = {{256, 0, 1}, {200, 0, 3}, {512, 2, 3}};
  EXPECT_EQ(live_lower_bound(hand, 256), 768u);
  EXPECT_EQ(place_best_fit_sweep(hand, 256).peak, 1024u);
  EXPECT_EQ(place_greedy_by_size(hand, 256).peak, 768u);
  // In a graph: a chain of in-place relus collapses to one buffer.
  Graph g;
  ValueId v = g.input("x", {256});  // 1 KiB
  g.mark_output(v);  // the input is kept: in place never aliases it
  v = g.add1("scale", "s0", {v}, ScaleAttrs{2.0});
  for (int i = 0; i < 5; ++i) v = g.add1("relu", str("r", i), {v});
  g.mark_output(v);
  MemoryPlan p = plan_memory(g, {});
  EXPECT_EQ(p.inplace_reuses, 5);
  EXPECT_EQ(p.arena_bytes, 2048u);  // the input and one shared buffer
  PlanOptions no;
  no.inplace = false;
  EXPECT_EQ(plan_memory(g, no).arena_bytes, 3072u);  // x is kept (input) and two alternate
  std::printf("%s", p.report(g).c_str());
}

TEST(Planner, BudgetThatCannotBeMetFailsBeforeRunningWithTheReport) {
  RandomNet a(11, DType::F32);
  backward(a.g, a.loss);
  try {
    plan_with_budget(a.g, {}, 64);
    FAIL() << "expected ctdet::Error";
  } catch (const Error& e) {
    std::string m = e.what();
    std::printf("%s\n", m.c_str());
    EXPECT_NE(m.find("cannot be met"), std::string::npos);
    EXPECT_NE(m.find("memory plan"), std::string::npos);
    EXPECT_NE(m.find("largest live"), std::string::npos);
  }
  std::string log;
  MemoryPlan ok = plan_with_budget(a.g, {}, size_t(1) << 30, &log);
  EXPECT_LE(ok.total_bytes(), size_t(1) << 30);
  EXPECT_EQ(parse_bytes("8GiB"), size_t(8) << 30);
  EXPECT_EQ(parse_bytes("512MiB"), size_t(512) << 20);
  EXPECT_THROW(parse_bytes("lots"), Error);
  EXPECT_THROW(parse_bytes("8 parsecs"), Error);
}

TEST(Planner, RecomputationKeepsResultsAndLowersPeakWhenCheapValuesAreSaved) {
  // x -> fc -> relu -> mul(relu, relu) ...: the relu output is saved for backward by mul and relu_grad.
  for (uint64_t seed : {3u, 4u, 5u}) {
    Composite m(DType::F64);
    (void)seed;
    ParamStore ps(Device::CPU, DType::F64);
    ps.declare_from(m.g);
    ps.allocate();
    init_params<double>(ps, 21);
    MemoryPlan p0 = plan_memory(m.g, {});
    Executor e0(m.g, p0, ps, Device::CPU);
    auto x = tu::random_vec<double>(12, 8), x2 = tu::random_vec<double>(12, 9);
    double l0 = run_loss(m, e0, x, x2);
    auto g0 = ps.get<double>("W1", 1);
    ps.zero_grads();
    int n = apply_recompute(m.g);
    EXPECT_GT(n, 0);
    MemoryPlan p1 = plan_memory(m.g, {});
    Executor e1(m.g, p1, ps, Device::CPU);
    e1.debug = true;
    double l1 = run_loss(m, e1, x, x2);
    EXPECT_EQ(l0, l1);
    EXPECT_EQ(ps.get<double>("W1", 1), g0);
    std::printf("recomputed %d values: arena %zu -> %zu bytes\n", n, p0.arena_bytes, p1.arena_bytes);
    break;
  }
}

// A chain of 8 blocks (linear -> relu -> mul by itself), checkpointed two blocks per segment.
struct Chain {
  Graph g{DType::F64};
  ValueId x, loss;
  std::vector<std::pair<int, int>> segments;
  Chain() {
    x = g.input("x", {6, 16});
    ValueId h = x;
    for (int k = 0; k < 8; ++k) {
      const int begin = g.num_nodes();
      const std::string b = str("b", k);
      ValueId r = g.add1("relu", b + ".relu", {g.add1("linear", b + ".fc", {h, g.param(b + ".W", {16, 16})})});
      h = g.add1("mul", b + ".sq", {r, r});
      if (k % 2 == 0) segments.push_back({begin, g.num_nodes()});
      else segments.back().second = g.num_nodes();
    }
    loss = g.add1("sum", "loss", {h});
    backward(g, loss);
  }
};

TEST(Planner, SegmentRecomputationGivesTheSameGradientsInASmallerArena) {
  Chain a, b;
  ParamStore ps(Device::CPU, DType::F64);
  ps.declare_from(a.g);
  ps.allocate();
  init_params<double>(ps, 5);
  const auto x = tu::random_vec<double>(6 * 16, 3, -1, 1);
  MemoryPlan pa = plan_memory(a.g, {});
  Executor ea(a.g, pa, ps, Device::CPU);
  ea.set(a.x, x);
  ea.run();
  const double la = ea.get<double>(a.loss)[0];
  std::map<std::string, std::vector<double>> ga;
  for (const std::string& n : ps.names()) ga[n] = ps.get<double>(n, 1);
  ps.zero_grads();

  const int nodes_before = b.g.num_nodes();
  const int copied = apply_segment_recompute(b.g, b.segments);
  // Each segment recomputes what backward reads inside it: both blocks' fc, relu and, for the first block, the
  // square that feeds the second (the last square is the segment's output, kept).
  EXPECT_EQ(copied, 4 * 5);
  EXPECT_EQ(b.g.num_nodes(), nodes_before + copied);
  for (int i = 0; i < b.g.num_forward_nodes(); ++i) EXPECT_FALSE(b.g.node(i).is_backward) << b.g.node(i).name;
  for (int i = b.g.num_forward_nodes(); i < b.g.num_nodes(); ++i) {
    const Node& nd = b.g.node(i);
    if (nd.name.rfind("recompute/", 0) == 0) continue;
    for (ValueId v : nd.inputs) {  // backward reads no forward value inside a segment, only segment outputs
      const std::string& vn = b.g.value(v).name;
      const bool inner = b.g.value(v).kind == ValueKind::Activation &&
                         (vn.find(".fc.out") != std::string::npos || vn.find(".relu.out") != std::string::npos);
      EXPECT_FALSE(inner && vn.rfind("recompute/", 0) != 0) << nd.name << " reads " << vn;
    }
  }
  MemoryPlan pb = plan_memory(b.g, {});
  Executor eb(b.g, pb, ps, Device::CPU);
  eb.debug = true;
  eb.set(b.x, x);
  eb.run();
  EXPECT_EQ(eb.get<double>(b.loss)[0], la);
  for (const std::string& n : ps.names()) EXPECT_EQ(ps.get<double>(n, 1), ga[n]) << n;
  std::printf("[info] %d nodes copied: arena %zu -> %zu bytes (lower bound %zu -> %zu)\n", copied, pa.arena_bytes,
              pb.arena_bytes, pa.lower_bound, pb.lower_bound);
  EXPECT_LT(pb.lower_bound, pa.lower_bound);

  // The budget's last resort: the segments, when workspace caps and cheap recomputation do not fit.
  {
    Chain d, e;
    PlanOptions o;
    EXPECT_THROW(plan_with_budget(e.g, o, pb.total_bytes()), Error);
    o.recompute_segments = d.segments;
    std::string log;
    const MemoryPlan pd = plan_with_budget(d.g, o, pb.total_bytes(), &log);
    std::printf("%s", log.c_str());
    EXPECT_LE(pd.total_bytes(), pb.total_bytes());
    EXPECT_NE(log.find("recompute 4 segments"), std::string::npos);
    EXPECT_EQ(d.g.num_nodes(), b.g.num_nodes());
  }

  Chain c;
  EXPECT_THROW(apply_segment_recompute(c.g, {{0, 4}, {3, 6}}), Error);            // overlapping
  EXPECT_THROW(apply_segment_recompute(c.g, {{0, c.g.num_nodes()}}), Error);     // beyond the forward nodes
  EXPECT_EQ(apply_segment_recompute(c.g, {}), 0);
}

// CUDA plans (computed without a GPU: workspace estimates) trim the busiest nodes' workspaces; CPU plans cannot.
TEST(Planner, PeakWorkspaceTrimShrinksTheInceptionTrainingPlanOnlyWhereItPays) {
  ModelSpec spec;
  spec.name = "faster_rcnn_inception_v2";
  spec.train = true;
  ModelGraph m = build_model_graph(spec);
  param_gradients_to_arena(m.graph);
  ASSERT_GT(apply_segment_recompute(m.graph, m.recompute_segments), 0);
  PlanOptions o;
  o.device = Device::CUDA;
  o.trim_peak_workspace = false;
  const MemoryPlan full = plan_memory(m.graph, o);
  o.trim_peak_workspace = true;
  const MemoryPlan trimmed = plan_memory(m.graph, o);  // verify = true: no two live buffers overlap
  std::printf("[info] Inception-v2 600x600 training, backbone recomputed, CUDA plan: arena %.1f -> %.1f MiB, %d "
              "workspaces trimmed\n", full.arena_bytes / 1048576.0, trimmed.arena_bytes / 1048576.0,
              trimmed.trimmed_workspaces);
  EXPECT_LT(trimmed.arena_bytes, full.arena_bytes);
  EXPECT_GT(trimmed.trimmed_workspaces, 0);
  EXPECT_EQ(full.trimmed_workspaces, 0);
  int smaller = 0;
  for (int i = 0; i < m.graph.num_nodes(); ++i) {
    EXPECT_LE(trimmed.node_ws_bytes[size_t(i)], full.node_ws_bytes[size_t(i)]) << m.graph.node(i).name;
    smaller += trimmed.node_ws_bytes[size_t(i)] < full.node_ws_bytes[size_t(i)];
  }
  EXPECT_EQ(smaller, trimmed.trimmed_workspaces);
  o.device = Device::CPU;  // the CPU's im2col workspaces are what its kernels need: never trimmed
  EXPECT_EQ(plan_memory(m.graph, o).trimmed_workspaces, 0);
}

TEST(PlanCache, CachesPerKey) {
  RandomNet a(2, DType::F32);
  a.g.mark_output(a.loss);
  PlanCache cache;
  EXPECT_EQ(cache.find("600x600/b1/train"), nullptr);
  cache.put("600x600/b1/train", plan_memory(a.g, {}));
  ASSERT_NE(cache.find("600x600/b1/train"), nullptr);
  EXPECT_EQ(cache.size(), 1u);
}
