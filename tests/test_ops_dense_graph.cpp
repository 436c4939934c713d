// Graph ops conv2d / batchnorm_frozen / max_pool (nn/ops_dense.cpp): forward through the executor against
// naive loops written here, gradients (incl. accumulation into a value read twice and into parameters across
// runs) against central differences in double, workspace sizes against hand computation, and errors that
// name the node.
#include <cmath>
#include <functional>
#include <limits>
#include <map>

#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/pool.h"
#include "nn/autograd.h"
#include "nn/executor.h"
#include "nn/op_registry.h"
#include "nn/param_store.h"
#include "nn/planner.h"
#include "test_util.h"

using namespace ctdet;
namespace tu = ctdet::testing;

namespace {

// ---- naive references ----------------------------------------------------------------------------------
std::vector<double> naive_conv(const std::vector<double>& x, int N, int C, int H, int W, const std::vector<double>& w,
                               int K, int R, int S, const std::vector<double>* b, int sh, int sw, int pt, int pb,
                               int pl, int pr, int dh, int dw, int groups, int* P_out, int* Q_out) {
  const int P = (H + pt + pb - dh * (R - 1) - 1) / sh + 1, Q = (W + pl + pr - dw * (S - 1) - 1) / sw + 1;
  const int Cg = C / groups, Kg = K / groups;
  std::vector<double> y(size_t(N) * K * P * Q, 0.0);
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < K; ++k)
      for (int p = 0; p < P; ++p)
        for (int q = 0; q < Q; ++q) {
          double s = b ? (*b)[size_t(k)] : 0.0;
          for (int c = 0; c < Cg; ++c)
            for (int r = 0; r < R; ++r)
              for (int t = 0; t < S; ++t) {
                int h = p * sh - pt + r * dh, ww = q * sw - pl + t * dw;
                if (h < 0 || h >= H || ww < 0 || ww >= W) continue;
                int ci = (k / Kg) * Cg + c;
                s += w[((size_t(k) * Cg + c) * R + r) * S + t] * x[((size_t(n) * C + ci) * H + h) * W + ww];
              }
          y[((size_t(n) * K + k) * P + p) * Q + q] = s;
        }
  *P_out = P;
  *Q_out = Q;
  return y;
}

// TF SAME max pool k x k / s by explicit -inf padding.
std::vector<double> naive_max_pool_same(const std::vector<double>& x, int N, int C, int H, int W, int k, int s,
                                        int* P_out, int* Q_out) {
  const int P = (H + s - 1) / s, Q = (W + s - 1) / s;
  const int pt = std::max((P - 1) * s + k - H, 0) / 2, pl = std::max((Q - 1) * s + k - W, 0) / 2;
  std::vector<double> y(size_t(N) * C * P * Q);
  for (int nc = 0; nc < N * C; ++nc)
    for (int p = 0; p < P; ++p)
      for (int q = 0; q < Q; ++q) {
        double m = -std::numeric_limits<double>::infinity();
        for (int i = 0; i < k; ++i)
          for (int j = 0; j < k; ++j) {
            int h = p * s - pt + i, w = q * s - pl + j;
            if (h >= 0 && h < H && w >= 0 && w < W) m = std::max(m, x[(size_t(nc) * H + h) * W + w]);
          }
        y[(size_t(nc) * P + p) * Q + q] = m;
      }
  *P_out = P;
  *Q_out = Q;
  return y;
}

template <typename T> std::vector<T> cast(const std::vector<double>& v) { return std::vector<T>(v.begin(), v.end()); }

// The test graph:  a = maxpool_same3x3/2(relu(bn(convA(x) + bA)))      (convA 3x3, pad 1, K=4)
//                  b = convB(x)  1x1 stride 2, groups 2                   (x read twice: dx accumulates)
//                  z = a + b;  loss = sum(z * r)
constexpr int N = 2, C = 4, H = 7, W = 6, K = 4;
struct Net {
  Graph g;
  ValueId x, r, z, loss, wA, bA, gamma, beta, mean, var, wB;
  explicit Net(DType t) : g(t) {
    x = g.input("x", {N, C, H, W});
    g.value_mut(x).requires_grad = true;
    wA = g.param("convA.weight", {K, C, 3, 3});
    bA = g.param("convA.bias", {K});
    gamma = g.param("bn.weight", {K});
    beta = g.param("bn.bias", {K});
    mean = g.param("bn.running_mean", {K});
    var = g.param("bn.running_var", {K});
    g.value_mut(mean).requires_grad = false;
    g.value_mut(var).requires_grad = false;
    wB = g.param("convB.weight", {K, C / 2, 1, 1});
    Conv2dParams pa;
    pa.pad_top = pa.pad_bottom = pa.pad_left = pa.pad_right = 1;
    ValueId a = g.add1("conv2d", "convA", {x, wA, bA}, pa);
    BatchNormParams bp;
    bp.eps = 1e-3;
    a = g.add1("batchnorm_frozen", "bn", {a, gamma, beta, mean, var}, bp);
    a = g.add1("relu", "relu", {a});
    Pool2dParams pp;
    pp.kh = pp.kw = 3;
    pp.sh = pp.sw = 2;
    pp.padding = PoolPadding::TfSame;
    a = g.add1("max_pool", "pool", {a}, pp);
    Conv2dParams pb;
    pb.stride_h = pb.stride_w = 2;
    pb.groups = 2;
    ValueId b = g.add1("conv2d", "convB", {x, wB}, pb);
    z = g.add1("add", "z", {a, b});
    r = g.input("r", g.value(z).shape);
    loss = g.add1("sum", "loss", {g.add1("mul", "zr", {z, r})});
    g.mark_output(z);
    backward(g, loss);
  }
};

std::map<std::string, std::vector<double>> make_params() {
  std::map<std::string, std::vector<double>> p;
  p["convA.weight"] = tu::random_vec<double>(K * C * 9, 1, -0.5, 0.5);
  p["convA.bias"] = tu::random_vec<double>(K, 2, -0.3, 0.3);
  p["bn.weight"] = tu::random_vec<double>(K, 3, 0.5, 1.5);
  p["bn.bias"] = tu::random_vec<double>(K, 4, -0.3, 0.3);
  p["bn.running_mean"] = tu::random_vec<double>(K, 5, -0.2, 0.2);
  p["bn.running_var"] = tu::random_vec<double>(K, 6, 0.5, 1.5);
  p["convB.weight"] = tu::random_vec<double>(K * (C / 2), 7, -0.5, 0.5);
  return p;
}

}  // namespace

template <typename T> void forward_matches_naive(double tol) {
  Net m(dtype_of<T>());
  auto params = make_params();
  ParamStore ps(Device::CPU, dtype_of<T>());
  ps.declare_from(m.g);
  ps.allocate();
  for (auto& [n, v] : params) ps.set<T>(n, cast<T>(v));
  std::vector<double> x = tu::random_vec<double>(N * C * H * W, 11);
  std::vector<double> r = tu::random_vec<double>(size_t(m.g.value(m.r).shape.numel()), 12);
  MemoryPlan plan = plan_memory(m.g, {});
  Executor ex(m.g, plan, ps, Device::CPU);
  ex.debug = true;
  ex.set(m.x, cast<T>(x));
  ex.set(m.r, cast<T>(r));
  ex.run();

  // Reference: the same function with naive loops.
  int P, Q;
  std::vector<double> a = naive_conv(x, N, C, H, W, params["convA.weight"], K, 3, 3, &params["convA.bias"], 1, 1, 1,
                                     1, 1, 1, 1, 1, 1, &P, &Q);
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < K; ++k)
      for (int i = 0; i < P * Q; ++i) {
        double& v = a[(size_t(n) * K + k) * P * Q + i];
        v = (v - params["bn.running_mean"][k]) / std::sqrt(params["bn.running_var"][k] + 1e-3) *
                params["bn.weight"][k] + params["bn.bias"][k];
        v = std::max(v, 0.0);
      }
  int P2, Q2, P3, Q3;
  a = naive_max_pool_same(a, N, K, P, Q, 3, 2, &P2, &Q2);
  std::vector<double> b = naive_conv(x, N, C, H, W, params["convB.weight"], K, 1, 1, nullptr, 2, 2, 0, 0, 0, 0, 1, 1,
                                     2, &P3, &Q3);
  ASSERT_EQ(P2, P3);
  ASSERT_EQ(Q2, Q3);
  ASSERT_EQ(m.g.value(m.z).shape, (Shape{N, K, P2, Q2}));
  for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
  tu::ErrStats s = tu::compare(ex.get<T>(m.z), a);
  tu::print_err(str("conv+bn+relu+maxpool+conv(groups)+add graph ", dtype_name(dtype_of<T>()), " vs naive"), s);
  EXPECT_LE(s.max_abs, tol);
}

TEST(OpsDenseGraph, ForwardMatchesNaiveF64) { forward_matches_naive<double>(1e-12); }
TEST(OpsDenseGraph, ForwardMatchesNaiveF32) { forward_matches_naive<float>(2e-5); }

TEST(OpsDenseGraph, GradientsMatchCentralDifferences) {
  Net m(DType::F64);
  auto params = make_params();
  ParamStore ps(Device::CPU, DType::F64);
  ps.declare_from(m.g);
  ps.allocate();
  for (auto& [n, v] : params) ps.set<double>(n, v);
  std::vector<double> x = tu::random_vec<double>(N * C * H * W, 11);
  std::vector<double> r = tu::random_vec<double>(size_t(m.g.value(m.r).shape.numel()), 12);
  MemoryPlan plan = plan_memory(m.g, {});
  Executor ex(m.g, plan, ps, Device::CPU);
  ex.debug = true;
  auto loss_at = [&](const std::vector<double>& xin) {
    ex.set(m.x, xin);
    ex.set(m.r, r);
    ex.run_nodes(0, m.g.num_forward_nodes());
    return ex.get<double>(m.loss)[0];
  };
  ex.set(m.x, x);
  ex.set(m.r, r);
  ex.run();
  std::vector<double> dx = ex.get<double>(m.g.value(m.x).grad);
  std::map<std::string, std::vector<double>> grads;
  for (auto& [n, v] : params) grads[n] = ps.get<double>(n, 1);

  const double h = 1e-6;
  auto check_all = [&](const std::vector<double>& ana, std::vector<double> p, const std::function<void(const std::vector<double>&)>& set,
                       const std::string& what) {
    std::vector<double> num(p.size());
    for (size_t i = 0; i < p.size(); ++i) {
      double keep = p[i];
      p[i] = keep + h;
      set(p);
      double lp = loss_at(x);
      p[i] = keep - h;
      set(p);
      double lm = loss_at(x);
      p[i] = keep;
      set(p);
      num[i] = (lp - lm) / (2 * h);
    }
    tu::ErrStats s = tu::compare(ana, num, 1e-3);
    tu::print_err("d loss / d " + what + " vs central differences", s);
    EXPECT_LE(s.max_abs, 1e-7) << what;
  };
  {  // x: loss_at takes the perturbed input directly
    std::vector<double> num(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      std::vector<double> xp = x, xm = x;
      xp[i] += h;
      xm[i] -= h;
      num[i] = (loss_at(xp) - loss_at(xm)) / (2 * h);
    }
    tu::ErrStats s = tu::compare(dx, num, 1e-3);
    tu::print_err("d loss / d x (two readers, accumulated) vs central differences", s);
    EXPECT_LE(s.max_abs, 1e-7);
  }
  for (const char* n : {"convA.weight", "convA.bias", "bn.weight", "bn.bias", "convB.weight"})
    check_all(grads[n], params[n], [&, n](const std::vector<double>& v) { ps.set<double>(n, v); }, n);
  // Frozen running statistics: no gradient value, gradient buffer untouched.
  EXPECT_EQ(m.g.value(m.mean).grad, kNoValue);
  EXPECT_EQ(m.g.value(m.var).grad, kNoValue);
  for (double d : ps.get<double>("bn.running_mean", 1)) EXPECT_EQ(d, 0.0);
  // Parameter gradients accumulate across runs (the optimizer zeroes them): a second run doubles them.
  ex.set(m.x, x);
  ex.set(m.r, r);
  ex.run();
  double worst = 0;
  for (auto& [n, g1] : grads) {
    if (n.find("running") != std::string::npos) continue;
    std::vector<double> g2 = ps.get<double>(n, 1);
    for (size_t i = 0; i < g1.size(); ++i) worst = std::max(worst, std::abs(g2[i] - 2 * g1[i]));
  }
  std::printf("[err] parameter gradients after two runs vs 2x one run: max_abs=%.3e\n", worst);
  EXPECT_LE(worst, 1e-12);
}

TEST(OpsDenseGraph, WorkspaceSizes) {
  Graph g(DType::F32);
  ValueId x = g.input("x", {2, 6, 10, 9});
  Conv2dParams p;
  p.stride_h = 2;
  p.pad_top = 0;
  p.pad_bottom = 1;  // asymmetric
  p.pad_left = p.pad_right = 1;
  p.groups = 3;
  ValueId y = g.add1("conv2d", "c", {x, g.param("w", {12, 2, 3, 3})}, p);
  // P = (10 + 1 - 3) / 2 + 1 = 5, Q = (9 + 2 - 3) / 1 + 1 = 9.
  EXPECT_EQ(g.value(y).shape, (Shape{2, 12, 5, 9}));
  const OpDef& d = ops().get("conv2d");
  const Node& n = g.node(0);
  const size_t col = size_t(2) * 3 * 3 * 5 * 9 * 4;  // (C/g) R S P Q floats: one image, one group at a time
  EXPECT_EQ(d.workspace(g, n, Device::CPU, 0), col);
  const size_t pad = (size_t(2) * 6 * 11 * 11 * 4 + 255) / 256 * 256;  // padded input copy (asymmetric)
  const size_t col_all = (size_t(2) * col + 255) / 256 * 256;            // all N images
  EXPECT_EQ(d.workspace(g, n, Device::CUDA, size_t(1) << 30), pad + col_all);
  EXPECT_EQ(d.workspace(g, n, Device::CUDA, 1000), pad + 1000);
  EXPECT_EQ(d.workspace(g, n, Device::CUDA, 0), pad);
  Graph g64(DType::F64);
  ValueId x64 = g64.input("x", {1, 2, 5, 5});
  g64.add1("conv2d", "c", {x64, g64.param("w", {3, 2, 3, 3})}, Conv2dParams{});
  EXPECT_EQ(ops().get("conv2d").workspace(g64, g64.node(0), Device::CPU, 1 << 20), 0u);  // direct loops
  std::printf("[ws] conv (2,6,10,9) k3 g3: cpu %zu B, cuda %zu B (pad %zu + columns %zu)\n", col,
              pad + col_all, pad, col_all);
}

TEST(OpsDenseGraph, ErrorsNameTheNode) {
  Graph g(DType::F32);
  ValueId x = g.input("img", {1, 3, 8, 8});
  auto expect_error = [](auto&& f, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "expected an error containing " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error([&] { g.add1("conv2d", "bad_channels", {x, g.param("w4", {8, 4, 3, 3})}, Conv2dParams{}); },
               "node 'bad_channels' (conv2d): weight has 4 input channels");
  expect_error([&] {
    Conv2dParams p;
    p.stride_h = 0;
    g.add1("conv2d", "bad_stride", {x, g.param("w3", {8, 3, 3, 3})}, p);
  }, "stride must be positive");
  expect_error([&] { g.add1("conv2d", "too_big", {x, g.param("w9", {8, 3, 9, 9})}, Conv2dParams{}); },
               "node 'too_big' (conv2d)");
  expect_error([&] { g.add1("conv2d", "no_attrs", {x, g.param("w3", {8, 3, 3, 3})}); }, "needs Conv2dParams");
  ValueId c = g.param("c", {3});
  ValueId m = g.param("m", {3});  // left trainable: refused
  ValueId v = g.param("v", {3});
  g.value_mut(v).requires_grad = false;
  expect_error([&] { g.add1("batchnorm_frozen", "bn_unfrozen", {x, c, c, m, v}, BatchNormParams{}); },
               "running mean 'm' (3) f32 requires a gradient");
  g.value_mut(m).requires_grad = false;
  expect_error([&] { g.add1("batchnorm_frozen", "bn_wrong_c", {x, g.param("c5", {5}), c, m, v}, BatchNormParams{}); },
               "node 'bn_wrong_c' (batchnorm_frozen): input 1 must be (C)=(3)");
  Pool2dParams avg;
  avg.kind = PoolKind::Avg;
  expect_error([&] { g.add1("max_pool", "not_max", {x}, avg); }, "node 'not_max' (max_pool) is a max pool");
  Pool2dParams big;
  big.kh = big.kw = 3;
  big.pad_h = 3;
  expect_error([&] { g.add1("max_pool", "bad_pad", {x}, big); }, "bad_pad");
  // A good BN on a (N,C) input works and keeps its shape.
  ValueId x2 = g.input("feat", {4, 3});
  EXPECT_EQ(g.value(g.add1("batchnorm_frozen", "bn2d", {x2, c, c, m, v}, BatchNormParams{})).shape, (Shape{4, 3}));
}

// The f32 path (im2col + sgemm with the planned workspace) against the f64 gradients checked above.
TEST(OpsDenseGraph, F32GradientsMatchF64) {
  auto params = make_params();
  std::vector<double> x = tu::random_vec<double>(N * C * H * W, 11);
  std::map<std::string, std::vector<double>> got[2];
  std::vector<double> dx[2];
  for (int k = 0; k < 2; ++k) {
    const DType t = k == 0 ? DType::F64 : DType::F32;
    Net m(t);
    std::vector<double> r = tu::random_vec<double>(size_t(m.g.value(m.r).shape.numel()), 12);
    ParamStore ps(Device::CPU, t);
    ps.declare_from(m.g);
    ps.allocate();
    MemoryPlan plan = plan_memory(m.g, {});
    Executor ex(m.g, plan, ps, Device::CPU);
    ex.debug = true;
    if (k == 0) {
      for (auto& [n, v] : params) ps.set<double>(n, v);
      ex.set(m.x, x);
      ex.set(m.r, r);
      ex.run();
      dx[k] = ex.get<double>(m.g.value(m.x).grad);
      for (auto& [n, v] : params) got[k][n] = ps.get<double>(n, 1);
    } else {
      for (auto& [n, v] : params) ps.set<float>(n, cast<float>(v));
      ex.set(m.x, cast<float>(x));
      ex.set(m.r, cast<float>(r));
      ex.run();
      std::vector<float> d = ex.get<float>(m.g.value(m.x).grad);
      dx[k].assign(d.begin(), d.end());
      for (auto& [n, v] : params) {
        std::vector<float> gf = ps.get<float>(n, 1);
        got[k][n].assign(gf.begin(), gf.end());
      }
    }
  }
  tu::ErrStats s = tu::compare(dx[1], dx[0]);
  tu::print_err("f32 dx vs f64 dx", s);
  EXPECT_LE(s.max_abs, 1e-5);
  for (const char* n : {"convA.weight", "convA.bias", "bn.weight", "bn.bias", "convB.weight"}) {
    s = tu::compare(got[1][n], got[0][n]);
    tu::print_err(str("f32 d", n, " vs f64"), s);
    EXPECT_LE(s.max_abs, 1e-4) << n;
  }
}
