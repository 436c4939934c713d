// Max-pool conditioning of a test input, for CUDA-vs-CPU gradient comparisons.
//
// A max pool's gradient is discontinuous where the two largest values of a window tie: dy goes to one cell or the
// other. When an input puts two values within a few ulps of each other, cuDNN's and the CPU GEMM's different
// rounding can order them differently, and the two devices then compute two different, each correct, gradients.
// (That is what the Inception-v2 depth-0.25 case of test_inception_gpu hit: a 4-ulp near-tie in Mixed_4a's pool
// moved the input gradient by 5.5%; docs/gpu_verification.md.) Tests pick inputs whose pools are far from ties.
//
// Exact ties (bitwise-equal values in one window) are counted separately: they come from identical arithmetic
// (ReLU zeros; a 3x3 SAME pool on a 2x2 map, where every window averages the same cells) and resolve alike on
// both devices, since both take the first maximum.
#pragma once
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "detector/forward_runner.h"
#include "kernels/pool.h"
#include "nn/executor.h"
#include "nn/param_store.h"
#include "nn/planner.h"

namespace ctdet::testing {

struct PoolMargin {
  double gap = std::numeric_limits<double>::infinity();  // smallest (top - second) / max|pool input|, top != second
  int exact_ties = 0;                                     // windows whose two largest values are equal
  int windows = 0;
  std::string where;  // node, channel and window of `gap`
};

// Builds the forward graph with `build` (in f64; it returns the image input), fills every parameter with
// fill_formula_weights, runs it on the CPU on `x` and scans every max_pool window.
inline PoolMargin max_pool_margin(const std::function<ValueId(Graph&)>& build, const std::vector<double>& x) {
  Graph g(DType::F64);
  const ValueId image = build(g);
  for (int i = 0; i < g.num_nodes(); ++i)
    if (g.node(i).op == "max_pool") g.value_mut(g.node(i).inputs[0]).keep = true;
  ParamStore ps(Device::CPU, DType::F64);
  ps.declare_from(g);
  ps.allocate();
  fill_formula_weights(ps);
  MemoryPlan plan = plan_memory(g, {});
  Executor ex(g, plan, ps, Device::CPU);
  ex.set(image, x);
  ex.run_nodes(0, g.num_forward_nodes());
  PoolMargin m;
  for (int i = 0; i < g.num_forward_nodes(); ++i) {
    const Node& nd = g.node(i);
    if (nd.op != "max_pool") continue;
    const Shape& s = g.value(nd.inputs[0]).shape;
    Pool2dParams pp = std::any_cast<const Pool2dParams&>(nd.attrs);
    pp.N = s[0], pp.C = s[1], pp.H = s[2], pp.W = s[3];
    const PoolGeom pg = pool2d_geometry(pp);
    const std::vector<double> v = ex.get<double>(nd.inputs[0]);
    double scale = 0;
    for (double a : v) scale = std::max(scale, std::abs(a));
    if (scale == 0) scale = 1;
    for (int64_t nc = 0; nc < pg.N * pg.C; ++nc)
      for (int64_t p = 0; p < pg.P; ++p)
        for (int64_t q = 0; q < pg.Q; ++q) {
          const double* xp = v.data() + nc * pg.H * pg.W;
          const int64_t h0 = p * pg.sh - pg.pad_top, w0 = q * pg.sw - pg.pad_left;
          double top = -std::numeric_limits<double>::infinity(), second = top;
          for (int64_t h = std::max<int64_t>(h0, 0); h < std::min<int64_t>(h0 + pg.kh, pg.H); ++h)
            for (int64_t w = std::max<int64_t>(w0, 0); w < std::min<int64_t>(w0 + pg.kw, pg.W); ++w) {
              const double a = xp[h * pg.W + w];
              if (a > top) second = top, top = a;
              else if (a > second) second = a;
            }
          ++m.windows;
          if (!std::isfinite(second)) continue;  // a one-cell window cannot tie
          if (top == second) {
            ++m.exact_ties;
            continue;
          }
          const double gap = (top - second) / scale;
          if (gap < m.gap) {
            m.gap = gap;
            m.where = nd.name + " channel " + std::to_string(nc % pg.C) + " window (" + std::to_string(p) + "," +
                      std::to_string(q) + ")";
          }
        }
  }
  return m;
}

// Of the inputs input_of(seed) for seed in [first, last], the one whose max pools are farthest from a tie (largest
// PoolMargin::gap), with its margin.
struct SeedChoice {
  int seed = 0;
  PoolMargin margin;
};
inline SeedChoice most_tie_free_seed(const std::function<ValueId(Graph&)>& build,
                                     const std::function<std::vector<double>(int seed)>& input_of, int first,
                                     int last) {
  SeedChoice best;
  best.margin.gap = -1;
  for (int seed = first; seed <= last; ++seed) {
    const PoolMargin m = max_pool_margin(build, input_of(seed));
    if (m.gap > best.margin.gap) best.margin = m, best.seed = seed;
  }
  return best;
}

}  // namespace ctdet::testing
