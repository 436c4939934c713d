// CPU tests for the elementwise, layout, pooling, loss and optimizer ops: torch fixtures
// (tests/fixtures/make_elem_fixtures.py), hand computations, and central differences in double,
// including the accumulate path of every gradient.
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "io/npy.h"
#include "kernels/elementwise.h"
#include "kernels/loss.h"
#include "kernels/optim.h"
#include "kernels/pool.h"
#include "nn/error.h"
#include "test_util.h"

using namespace ctdet;
using ctdet::testing::compare;
using ctdet::testing::print_err;
using ctdet::testing::random_vec;
using Vec = std::vector<double>;

namespace {

Vec fx(const std::string& name) { return read_npy(ctdet::testing::fixture_path("elem/" + name + ".npy")).as<double>(); }
std::vector<int32_t> fxi(const std::string& name) {
  return read_npy(ctdet::testing::fixture_path("elem/" + name + ".npy")).as<int32_t>();
}

// Central-difference gradient of L(x) = sum_i y(x)_i * dy_i.
Vec numeric_grad(Vec x, const Vec& dy, const std::function<Vec(const Vec&)>& f, double h = 1e-6) {
  Vec g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    Vec yp = f(x);
    x[i] = x0 - h;
    Vec ym = f(x);
    x[i] = x0;
    double s = 0;
    for (size_t j = 0; j < dy.size(); ++j) s += (yp[j] - ym[j]) * dy[j];
    g[i] = s / (2 * h);
  }
  return g;
}

// Checks a backward that writes into dx with an accumulate flag: overwrite gives `expect`, accumulate onto a
// prefill gives prefill + expect.
void check_grad(const std::string& name, const Vec& expect, const std::function<void(double*, bool)>& bwd,
                double tol) {
  Vec dx(expect.size(), 123.0);
  bwd(dx.data(), false);
  auto s = compare(dx, expect);
  print_err(name, s);
  EXPECT_LT(s.max_abs, tol) << name;
  Vec pre = random_vec<double>(expect.size(), 77);
  Vec acc = pre;
  bwd(acc.data(), true);
  Vec want(expect.size());
  for (size_t i = 0; i < want.size(); ++i) want[i] = pre[i] + expect[i];
  auto sa = compare(acc, want);
  print_err(name + " (accumulate)", sa);
  EXPECT_LT(sa.max_abs, tol) << name << " accumulate";
}

template <typename F>
void expect_error(F f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected ctdet::Error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// Random values kept at least `gap` away from every point in `kinks`.
Vec away_from(size_t n, uint64_t seed, double lo, double hi, std::vector<double> kinks, double gap = 0.05) {
  Vec v = random_vec<double>(n, seed, lo, hi);
  for (auto& x : v)
    for (double k : kinks)
      if (std::abs(x - k) < gap) x = k + (x >= k ? gap : -gap) * 2;
  return v;
}

}  // namespace

// ---- relu / relu6 / add / scale --------------------------------------------------------------------------
TEST(Elementwise, ReluForwardBackward) {
  const size_t n = 200;
  Vec x = away_from(n, 1, -3, 3, {0.0});
  Vec y(n), dy = random_vec<double>(n, 2);
  relu_forward_cpu<double>(n, x.data(), y.data());
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(y[i], x[i] > 0 ? x[i] : 0.0);
  Vec num = numeric_grad(x, dy, [&](const Vec& xx) { Vec o(n); relu_forward_cpu<double>(n, xx.data(), o.data()); return o; });
  check_grad("relu dx vs central diff", num, [&](double* dx, bool acc) { relu_backward_cpu<double>(n, dy.data(), y.data(), dx, acc); }, 1e-8);
  // In place.
  Vec z = x;
  relu_forward_cpu<double>(n, z.data(), z.data());
  EXPECT_EQ(z, y);
}

TEST(Elementwise, Relu6ForwardBackward) {
  const size_t n = 300;
  Vec x = away_from(n, 3, -4, 10, {0.0, 6.0});
  Vec y(n), dy = random_vec<double>(n, 4);
  relu6_forward_cpu<double>(n, x.data(), y.data());
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(y[i], std::min(std::max(x[i], 0.0), 6.0));
  Vec num = numeric_grad(x, dy, [&](const Vec& xx) { Vec o(n); relu6_forward_cpu<double>(n, xx.data(), o.data()); return o; });
  check_grad("relu6 dx vs central diff", num, [&](double* dx, bool acc) { relu6_backward_cpu<double>(n, dy.data(), y.data(), dx, acc); }, 1e-8);
}

TEST(Elementwise, AddAndScale) {
  const size_t n = 50;
  Vec a = random_vec<double>(n, 5), b = random_vec<double>(n, 6), dy = random_vec<double>(n, 7), y(n);
  add_forward_cpu<double>(n, a.data(), b.data(), y.data());
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(y[i], a[i] + b[i]);
  Vec na = numeric_grad(a, dy, [&](const Vec& aa) { Vec o(n); add_forward_cpu<double>(n, aa.data(), b.data(), o.data()); return o; });
  Vec nb = numeric_grad(b, dy, [&](const Vec& bb) { Vec o(n); add_forward_cpu<double>(n, a.data(), bb.data(), o.data()); return o; });
  check_grad("add da", na, [&](double* d, bool acc) { add_backward_cpu<double>(n, dy.data(), d, acc, nullptr, false); }, 1e-8);
  check_grad("add db", nb, [&](double* d, bool acc) { add_backward_cpu<double>(n, dy.data(), nullptr, false, d, acc); }, 1e-8);
  // Both at once with different flags.
  Vec da(n, 1.0), db(n, 1.0);
  add_backward_cpu<double>(n, dy.data(), da.data(), true, db.data(), false);
  for (size_t i = 0; i < n; ++i) {
    EXPECT_DOUBLE_EQ(da[i], 1.0 + dy[i]);
    EXPECT_DOUBLE_EQ(db[i], dy[i]);
  }
  const double alpha = -2.5;
  scale_forward_cpu<double>(n, alpha, a.data(), y.data());
  for (size_t i = 0; i < n; ++i) EXPECT_DOUBLE_EQ(y[i], alpha * a[i]);
  Vec ns = numeric_grad(a, dy, [&](const Vec& aa) { Vec o(n); scale_forward_cpu<double>(n, alpha, aa.data(), o.data()); return o; });
  check_grad("scale dx", ns, [&](double* d, bool acc) { scale_backward_cpu<double>(n, alpha, dy.data(), d, acc); }, 1e-8);
}

// ---- fused frozen-BN affine + residual + ReLU -------------------------------------------------------------
TEST(Elementwise, BnAddRelu) {
  BnAddReluParams p{2, 3, 5};
  const size_t n = 2 * 3 * 5;
  Vec x = random_vec<double>(n, 8, -2, 2), r = random_vec<double>(n, 9, -1, 1), dy = random_vec<double>(n, 10);
  Vec scale = {0.5, -1.5, 2.0}, shift = {0.1, -0.2, 0.3};
  // Keep pre-activations away from the kink.
  for (int64_t i = 0; i < (int64_t)n; ++i) {
    const int64_t c = (i / 5) % 3;
    double pre = x[i] * scale[c] + shift[c] + r[i];
    if (std::abs(pre) < 0.05) r[i] += 0.2;
  }
  for (bool with_r : {true, false}) {
    const double* rp = with_r ? r.data() : nullptr;
    Vec y(n);
    bn_add_relu_forward_cpu<double>(p, x.data(), scale.data(), shift.data(), rp, y.data());
    for (int64_t i = 0; i < (int64_t)n; ++i) {
      const int64_t c = (i / 5) % 3;
      EXPECT_DOUBLE_EQ(y[i], std::max(0.0, x[i] * scale[c] + shift[c] + (with_r ? r[i] : 0.0)));
    }
    if (!with_r) {
      bool near_kink = false;
      for (int64_t i = 0; i < (int64_t)n; ++i) near_kink |= std::abs(x[i] * scale[(i / 5) % 3] + shift[(i / 5) % 3]) < 1e-4;
      if (near_kink) continue;
    }
    auto fwd_x = [&](const Vec& xx) { Vec o(n); bn_add_relu_forward_cpu<double>(p, xx.data(), scale.data(), shift.data(), rp, o.data()); return o; };
    Vec nx = numeric_grad(x, dy, fwd_x);
    check_grad(with_r ? "bn_add_relu dx (residual)" : "bn_add_relu dx (no residual)", nx,
               [&](double* d, bool acc) { bn_add_relu_backward_cpu<double>(p, dy.data(), y.data(), scale.data(), d, acc, nullptr, false); }, 1e-8);
    if (with_r) {
      auto fwd_r = [&](const Vec& rr) { Vec o(n); bn_add_relu_forward_cpu<double>(p, x.data(), scale.data(), shift.data(), rr.data(), o.data()); return o; };
      Vec nr = numeric_grad(r, dy, fwd_r);
      check_grad("bn_add_relu dr", nr,
                 [&](double* d, bool acc) { bn_add_relu_backward_cpu<double>(p, dy.data(), y.data(), scale.data(), nullptr, false, d, acc); }, 1e-8);
    }
  }
}

// ---- concat / slice / gather ---------------------------------------------------------------------------------
TEST(Layout, ConcatForwardBackward) {
  ConcatParams p;
  p.N = 2;
  p.HW = 3;
  p.channels = {1, 3, 2};
  const int64_t Cy = p.out_channels();
  ASSERT_EQ(Cy, 6);
  std::vector<Vec> xs;
  for (size_t i = 0; i < 3; ++i) xs.push_back(random_vec<double>(p.N * p.channels[i] * p.HW, 20 + i));
  std::vector<const double*> xp = {xs[0].data(), xs[1].data(), xs[2].data()};
  Vec y(p.N * Cy * p.HW);
  concat_forward_cpu<double>(p, xp.data(), y.data());
  // Hand check: y[n, c_off + c, s] = x_i[n, c, s].
  int64_t off = 0;
  for (size_t i = 0; i < 3; ++i) {
    for (int64_t n = 0; n < p.N; ++n)
      for (int64_t c = 0; c < p.channels[i]; ++c)
        for (int64_t s = 0; s < p.HW; ++s)
          EXPECT_EQ(y[(n * Cy + off + c) * p.HW + s], xs[i][(n * p.channels[i] + c) * p.HW + s]);
    off += p.channels[i];
  }
  Vec dy = random_vec<double>(y.size(), 30);
  for (size_t i = 0; i < 3; ++i) {
    auto f = [&](const Vec& xi) {
      std::vector<const double*> pp = xp;
      pp[i] = xi.data();
      Vec o(y.size());
      concat_forward_cpu<double>(p, pp.data(), o.data());
      return o;
    };
    Vec num = numeric_grad(xs[i], dy, f);
    check_grad("concat dx" + std::to_string(i), num, [&](double* d, bool acc) {
      std::vector<double*> dxs = {nullptr, nullptr, nullptr};
      dxs[i] = d;
      bool flags[3] = {false, false, false};
      flags[i] = acc;
      concat_backward_cpu<double>(p, dy.data(), dxs.data(), flags);
    }, 1e-8);
  }
  expect_error([&] { ConcatParams q; q.N = 1; q.HW = 1; concat_forward_cpu<double>(q, nullptr, nullptr); }, "concat");
}

TEST(Layout, SliceForwardBackward) {
  SliceParams p{2, 5, 3, 1, 3};
  Vec x = random_vec<double>(2 * 5 * 3, 40), y(2 * 3 * 3), dy = random_vec<double>(2 * 3 * 3, 41);
  slice_forward_cpu<double>(p, x.data(), y.data());
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t s = 0; s < 3; ++s) EXPECT_EQ(y[(n * 3 + c) * 3 + s], x[(n * 5 + c + 1) * 3 + s]);
  Vec num = numeric_grad(x, dy, [&](const Vec& xx) { Vec o(y.size()); slice_forward_cpu<double>(p, xx.data(), o.data()); return o; });
  check_grad("slice dx", num, [&](double* d, bool acc) { slice_backward_cpu<double>(p, dy.data(), d, acc); }, 1e-8);
  SliceParams bad{1, 4, 1, 2, 3};
  expect_error([&] { slice_forward_cpu<double>(bad, x.data(), y.data()); }, "slice");
}

TEST(Layout, GatherRows) {
  GatherRowsParams p{4, 6, 3};
  std::vector<int32_t> idx = {2, -1, 0, 2, 3, 2};  // duplicates and an ignored row
  Vec x = random_vec<double>(4 * 3, 50), y(6 * 3), dy = random_vec<double>(6 * 3, 51);
  gather_rows_forward_cpu<double>(p, x.data(), idx.data(), y.data());
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t d = 0; d < 3; ++d) EXPECT_EQ(y[i * 3 + d], idx[i] < 0 ? 0.0 : x[idx[i] * 3 + d]);
  Vec num = numeric_grad(x, dy, [&](const Vec& xx) { Vec o(y.size()); gather_rows_forward_cpu<double>(p, xx.data(), idx.data(), o.data()); return o; });
  check_grad("gather_rows dx", num, [&](double* d, bool acc) { gather_rows_backward_cpu<double>(p, dy.data(), idx.data(), d, acc); }, 1e-8);
  std::vector<int32_t> bad = {0, 4, 0, 0, 0, 0};
  expect_error([&] { gather_rows_forward_cpu<double>(p, x.data(), bad.data(), y.data()); }, "idx[1] = 4");
}

// ---- pooling ---------------------------------------------------------------------------------------------------
namespace {
struct PoolCase {
  const char* name;
  PoolKind kind;
  int k, s;
  PoolPadding padding;
  int pad;
  bool include_pad;
  bool odd;  // x_odd (2,2,7,9) or x_even (1,2,8,8)
};

Pool2dParams make_pool(const PoolCase& c, int64_t N, int64_t C, int64_t H, int64_t W) {
  Pool2dParams p;
  p.kind = c.kind;
  p.N = N; p.C = C; p.H = H; p.W = W;
  p.kh = p.kw = c.k;
  p.sh = p.sw = c.s;
  p.padding = c.padding;
  p.pad_h = p.pad_w = c.pad;
  p.count_include_pad = c.include_pad;
  return p;
}
}  // namespace

TEST(Pool, MatchesTorchFixtures) {
  const PoolCase cases[] = {
      {"maxpool_same_even", PoolKind::Max, 3, 2, PoolPadding::TfSame, 0, false, false},
      {"maxpool_same_odd", PoolKind::Max, 3, 2, PoolPadding::TfSame, 0, false, true},
      {"maxpool_pad1", PoolKind::Max, 3, 2, PoolPadding::Explicit, 1, false, true},
      {"maxpool_2x2", PoolKind::Max, 2, 2, PoolPadding::Explicit, 0, false, false},
      {"avgpool_same_even", PoolKind::Avg, 3, 2, PoolPadding::TfSame, 0, false, false},
      {"avgpool_same_odd_s1", PoolKind::Avg, 3, 1, PoolPadding::TfSame, 0, false, true},
      {"avgpool_pad1_incl", PoolKind::Avg, 3, 2, PoolPadding::Explicit, 1, true, true},
      {"avgpool_pad1_excl", PoolKind::Avg, 3, 2, PoolPadding::Explicit, 1, false, true},
  };
  for (const auto& c : cases) {
    const std::string nm = c.name;
    Vec x = fx(nm + "_x"), y_ref = fx(nm + "_y"), dy = fx(nm + "_dy"), dx_ref = fx(nm + "_dx");
    Pool2dParams p = c.odd ? make_pool(c, 2, 2, 7, 9) : make_pool(c, 1, 2, 8, 8);
    ASSERT_EQ(size_t(p.N * p.C * pool2d_out_h(p) * pool2d_out_w(p)), y_ref.size()) << nm;
    Vec y(y_ref.size());
    pool2d_forward_cpu<double>(p, x.data(), y.data());
    auto s = compare(y, y_ref);
    print_err(nm + " y vs torch", s);
    EXPECT_LT(s.max_abs, 1e-12) << nm;
    check_grad(nm + " dx vs torch", dx_ref, [&](double* d, bool acc) { pool2d_backward_cpu<double>(p, dy.data(), x.data(), d, acc); }, 1e-12);
    // float path against the same fixture
    std::vector<float> xf(x.begin(), x.end()), yf(y.size());
    pool2d_forward_cpu<float>(p, xf.data(), yf.data());
    auto sf = compare(yf, y_ref);
    print_err(nm + " y (float) vs torch", sf);
    EXPECT_LT(sf.max_abs, 1e-5) << nm;
    // central differences on the double path
    Vec num = numeric_grad(x, dy, [&](const Vec& xx) { Vec o(y.size()); pool2d_forward_cpu<double>(p, xx.data(), o.data()); return o; });
    auto sn = compare(num, dx_ref);
    print_err(nm + " torch dx vs central diff", sn);
    EXPECT_LT(sn.max_abs, 1e-6) << nm;
  }
}

TEST(Pool, TfSamePaddingIsAsymmetricOnEvenInput) {
  Pool2dParams p;
  p.N = 1; p.C = 1; p.H = 8; p.W = 6;
  p.kh = p.kw = 3; p.sh = p.sw = 2;
  p.padding = PoolPadding::TfSame;
  PoolGeom g = pool2d_geometry(p);
  EXPECT_EQ(g.P, 4); EXPECT_EQ(g.Q, 3);
  EXPECT_EQ(g.pad_top, 0); EXPECT_EQ(g.pad_bottom, 1);
  EXPECT_EQ(g.pad_left, 0); EXPECT_EQ(g.pad_right, 1);
}

TEST(Pool, MaxTiesGoToFirstMaximum) {
  Pool2dParams p;
  p.N = 1; p.C = 1; p.H = 2; p.W = 2; p.kh = p.kw = 2; p.sh = p.sw = 2;
  Vec x = {1.0, 3.0, 3.0, 3.0}, dy = {5.0}, dx(4);
  pool2d_backward_cpu<double>(p, dy.data(), x.data(), dx.data(), false);
  EXPECT_EQ(dx, (Vec{0.0, 5.0, 0.0, 0.0}));
}

// The CPU forward (window bounds and divisors hoisted per geometry) against the per-output definition
// pool2d_forward_at, bit for bit: max and average (with and without padded cells), kernels 1-3, strides 1-2, explicit
// and TF SAME padding, odd and even sizes down to 1x1, with ties and signed zeros in the data.
TEST(Pool, ForwardEqualsPerOutputDefinition) {
  int64_t diff = 0, total = 0, cases = 0;
  for (PoolKind kind : {PoolKind::Max, PoolKind::Avg})
    for (int k = 1; k <= 3; ++k)
      for (int s = 1; s <= 2; ++s)
        for (int pad = -1; pad < k && pad <= 1; ++pad)  // -1: TF SAME
          for (int H : {1, 2, 5, 8})
            for (int W : {1, 3, 6, 7}) {
              Pool2dParams p;
              p.kind = kind;
              p.N = 2;
              p.C = 3;
              p.H = H;
              p.W = W;
              p.kh = p.kw = k;
              p.sh = p.sw = s;
              p.padding = pad < 0 ? PoolPadding::TfSame : PoolPadding::Explicit;
              p.pad_h = p.pad_w = pad < 0 ? 0 : pad;
              p.count_include_pad = (H + W) % 2 == 0;
              if (p.padding == PoolPadding::Explicit && (H + 2 * pad < k || W + 2 * pad < k)) continue;
              const PoolGeom g = pool2d_geometry(p);
              std::vector<float> x = ctdet::testing::random_vec<float>(size_t(g.N * g.C * g.H * g.W), 77 + H * W);
              for (size_t i = 0; i + 1 < x.size(); i += 5) x[i + 1] = x[i];  // ties
              for (size_t i = 2; i < x.size(); i += 11) x[i] = (i % 2) ? 0.f : -0.f;  // signed zeros
              std::vector<float> y(size_t(g.N * g.C * g.P * g.Q));
              pool2d_forward_cpu<float>(p, x.data(), y.data());
              for (int64_t nc = 0; nc < g.N * g.C; ++nc)
                for (int64_t i = 0; i < g.P; ++i)
                  for (int64_t j = 0; j < g.Q; ++j) {
                    const float want = pool2d_forward_at(g, x.data() + nc * g.H * g.W, i, j);
                    const float got = y[size_t((nc * g.P + i) * g.Q + j)];
                    diff += std::memcmp(&want, &got, sizeof(float)) != 0;
                    ++total;
                  }
              ++cases;
            }
  std::printf("[err] pool forward vs per-output definition: %lld of %lld outputs differ (bits), %lld geometries\n",
              (long long)diff, (long long)total, (long long)cases);
  EXPECT_EQ(diff, 0);
  EXPECT_GT(cases, 200);
}

namespace {
// A 2x3x9x8 max pool with k x k windows, stride s; and inputs with exact ties (every `every`-th value repeated).
Pool2dParams small_max_pool(int k, int s, PoolPadding pad, int pad_hw) {
  Pool2dParams p;
  p.kind = PoolKind::Max;
  p.N = 2;
  p.C = 3;
  p.H = 9;
  p.W = 8;
  p.kh = p.kw = k;
  p.sh = p.sw = s;
  p.padding = pad;
  p.pad_h = p.pad_w = pad_hw;
  return p;
}
std::vector<float> tied_input(size_t n, uint64_t seed, size_t every) {
  std::vector<float> x = ctdet::testing::random_vec<float>(n, seed);
  for (size_t i = 0; i + 1 < x.size(); i += every) x[i + 1] = x[i];
  return x;
}
}  // namespace

// Max-pool backward by scatter (one argmax per window) against the per-cell definition pool2d_backward_at, bit for
// bit: overlapping 3x3/2 and 3x3/1 TF SAME windows with ties (overwrite), and disjoint 2x2/2 windows (accumulate).
// The CPU backward scatters per window (one argmax or division per window) into dx, or into a zeroed plane that is
// then added when accumulating; it must equal the per-cell definition pool2d_backward_at bit for bit: max and avg
// (with and without the padded cells in the divisor), disjoint and overlapping windows, TF SAME and explicit padding,
// overwrite and accumulate, ties.
TEST(Pool, BackwardScatterEqualsPerCellDefinition) {
  struct Case { PoolKind kind; int k, s; PoolPadding pad; int pad_hw; bool incl; };
  int64_t diff = 0, total = 0;
  for (const Case& c : {Case{PoolKind::Max, 3, 2, PoolPadding::TfSame, 0, false},
                        Case{PoolKind::Max, 3, 1, PoolPadding::TfSame, 0, false},
                        Case{PoolKind::Max, 2, 2, PoolPadding::Explicit, 0, false},
                        Case{PoolKind::Max, 3, 2, PoolPadding::Explicit, 1, false},
                        Case{PoolKind::Avg, 3, 1, PoolPadding::TfSame, 0, false},
                        Case{PoolKind::Avg, 3, 2, PoolPadding::Explicit, 1, true},
                        Case{PoolKind::Avg, 3, 2, PoolPadding::Explicit, 1, false},
                        Case{PoolKind::Avg, 2, 2, PoolPadding::Explicit, 0, true}}) {
    Pool2dParams p = small_max_pool(c.k, c.s, c.pad, c.pad_hw);
    p.kind = c.kind;
    p.count_include_pad = c.incl;
    const PoolGeom g = pool2d_geometry(p);
    const std::vector<float> x = tied_input(size_t(g.N * g.C * g.H * g.W), 81, 5);
    const std::vector<float> dy = ctdet::testing::random_vec<float>(size_t(g.N * g.C * g.P * g.Q), 82);
    const std::vector<float> pre = ctdet::testing::random_vec<float>(x.size(), 83);
    for (bool acc : {false, true}) {
      std::vector<float> dx = acc ? pre : std::vector<float>(x.size(), 7.f);
      pool2d_backward_cpu<float>(p, dy.data(), c.kind == PoolKind::Max ? x.data() : nullptr, dx.data(), acc);
      for (int64_t nc = 0; nc < g.N * g.C; ++nc)
        for (int64_t h = 0; h < g.H; ++h)
          for (int64_t w = 0; w < g.W; ++w) {
            const size_t i = size_t((nc * g.H + h) * g.W + w);
            float want = pool2d_backward_at(g, x.data() + nc * g.H * g.W, dy.data() + nc * g.P * g.Q, h, w);
            if (acc) want = pre[i] + want;
            diff += std::memcmp(&dx[i], &want, sizeof(float)) != 0;
            ++total;
          }
    }
  }
  std::printf("[err] pool backward scatter vs per-cell definition: %lld of %lld cells differ (bits)\n", (long long)diff,
              (long long)total);
  EXPECT_EQ(diff, 0);
}

// The two-pass form the CUDA backward uses with workspace (argmax per window, then a gather per input cell comparing
// stored indices) against the per-cell definition, bit for bit, through the same shared functions the kernels call:
// overlapping and disjoint windows, ties, explicit and TF SAME padding (windows cut by the border).
TEST(Pool, MaxBackwardFromStoredArgmaxEqualsPerCellDefinition) {
  struct Case { int k, s; PoolPadding pad; int pad_hw; };
  int64_t diff = 0, total = 0;
  for (const Case& c : {Case{3, 2, PoolPadding::TfSame, 0}, Case{3, 1, PoolPadding::TfSame, 0},
                        Case{2, 2, PoolPadding::Explicit, 0}, Case{3, 2, PoolPadding::Explicit, 1},
                        Case{1, 2, PoolPadding::TfSame, 0}}) {
    const Pool2dParams p = small_max_pool(c.k, c.s, c.pad, c.pad_hw);
    const PoolGeom g = pool2d_geometry(p);
    const std::vector<float> x = tied_input(size_t(g.N * g.C * g.H * g.W), 91, 4);
    const std::vector<float> dy = ctdet::testing::random_vec<float>(size_t(g.N * g.C * g.P * g.Q), 92);
    std::vector<int32_t> arg(size_t(g.N * g.C * g.P * g.Q));
    for (int64_t nc = 0; nc < g.N * g.C; ++nc)
      for (int64_t i = 0; i < g.P * g.Q; ++i)
        arg[size_t(nc * g.P * g.Q + i)] = pool_max_argmax_at(g, x.data() + nc * g.H * g.W, i / g.Q, i % g.Q);
    for (int64_t nc = 0; nc < g.N * g.C; ++nc)
      for (int64_t h = 0; h < g.H; ++h)
        for (int64_t w = 0; w < g.W; ++w) {
          const float got = pool_max_backward_from_argmax_at(g, arg.data() + nc * g.P * g.Q,
                                                             dy.data() + nc * g.P * g.Q, h, w);
          const float want = pool2d_backward_at(g, x.data() + nc * g.H * g.W, dy.data() + nc * g.P * g.Q, h, w);
          diff += std::memcmp(&got, &want, sizeof(float)) != 0;
          ++total;
        }
    EXPECT_EQ(pool2d_backward_cuda_workspace_bytes(p) % 256, 0u);
    EXPECT_GE(pool2d_backward_cuda_workspace_bytes(p), arg.size() * sizeof(int32_t));
  }
  Pool2dParams avg;
  avg.kind = PoolKind::Avg;
  avg.N = 1, avg.C = 2, avg.H = 5, avg.W = 5, avg.kh = avg.kw = 3, avg.sh = avg.sw = 2;
  EXPECT_EQ(pool2d_backward_cuda_workspace_bytes(avg), 0u);
  std::printf("[err] max-pool backward from stored argmax vs per-cell definition: %lld of %lld cells differ (bits)\n",
              (long long)diff, (long long)total);
  EXPECT_EQ(diff, 0);
}

// The training graphs' max pool that keeps its argmax (max_pool_argmax): y equals the plain forward's and dx the
// plain backward's bit for bit (overwrite and accumulate; disjoint and overlapping windows, ties, padding), and an
// average pool is refused by name.
TEST(Pool, MaxPoolWithStoredArgmaxEqualsThePlainPoolBitwise) {
  struct Case { int k, s; PoolPadding pad; int pad_hw; bool acc; };
  int64_t ydiff = 0, xdiff = 0, total_y = 0, total_x = 0;
  for (const Case& c : {Case{2, 2, PoolPadding::Explicit, 0, false}, Case{2, 2, PoolPadding::Explicit, 0, true},
                        Case{3, 2, PoolPadding::TfSame, 0, false}, Case{3, 2, PoolPadding::TfSame, 0, true},
                        Case{3, 1, PoolPadding::Explicit, 1, true}, Case{1, 2, PoolPadding::TfSame, 0, false}}) {
    const Pool2dParams p = small_max_pool(c.k, c.s, c.pad, c.pad_hw);
    const PoolGeom g = pool2d_geometry(p);
    const std::vector<float> x = tied_input(size_t(g.N * g.C * g.H * g.W), 101, 4);
    const std::vector<float> dy = ctdet::testing::random_vec<float>(size_t(g.N * g.C * g.P * g.Q), 102);
    const std::vector<float> pre = ctdet::testing::random_vec<float>(x.size(), 103);
    std::vector<float> y0(dy.size()), y1(dy.size());
    std::vector<int32_t> arg(dy.size(), -7);
    pool2d_forward_cpu<float>(p, x.data(), y0.data());
    pool2d_max_forward_argmax_cpu<float>(p, x.data(), y1.data(), arg.data());
    for (size_t i = 0; i < y0.size(); ++i) ydiff += std::memcmp(&y0[i], &y1[i], sizeof(float)) != 0;
    total_y += int64_t(y0.size());
    std::vector<float> dx0 = c.acc ? pre : std::vector<float>(x.size(), 7.f), dx1 = dx0;
    pool2d_backward_cpu<float>(p, dy.data(), x.data(), dx0.data(), c.acc);
    pool2d_max_backward_from_argmax_cpu<float>(p, dy.data(), arg.data(), dx1.data(), c.acc);
    for (size_t i = 0; i < dx0.size(); ++i) xdiff += std::memcmp(&dx0[i], &dx1[i], sizeof(float)) != 0;
    total_x += int64_t(dx0.size());
  }
  std::printf("[err] max pool with stored argmax vs the plain pool: y %lld of %lld differ, dx %lld of %lld (bits)\n",
              (long long)ydiff, (long long)total_y, (long long)xdiff, (long long)total_x);
  EXPECT_EQ(ydiff, 0);
  EXPECT_EQ(xdiff, 0);
  Pool2dParams avg = small_max_pool(3, 2, PoolPadding::TfSame, 0);
  avg.kind = PoolKind::Avg;
  std::vector<float> x(size_t(avg.N * avg.C * avg.H * avg.W)), y(x.size());
  std::vector<int32_t> arg(x.size());
  expect_error([&] { pool2d_max_forward_argmax_cpu<float>(avg, x.data(), y.data(), arg.data()); },
               "max_pool2d with argmax: the pool is not a max pool");
}

TEST(Pool, BadParamsNameTheOp) {
  Pool2dParams p;
  p.N = 1; p.C = 1; p.H = 5; p.W = 5; p.kh = p.kw = 3; p.sh = p.sw = 1;
  Pool2dParams q = p; q.kh = 0;
  expect_error([&] { validate_pool2d(q); }, "max_pool2d: kernel must be > 0");
  q = p; q.sw = 0; q.kind = PoolKind::Avg;
  expect_error([&] { validate_pool2d(q); }, "avg_pool2d: stride must be > 0");
  q = p; q.pad_h = 3;
  expect_error([&] { validate_pool2d(q); }, "padding 3x0");
  q = p; q.kh = q.kw = 7;
  expect_error([&] { validate_pool2d(q); }, "output size");
}

TEST(Pool, GlobalAvgPool) {
  GapParams p{2, 3, 20};
  Vec x = fx("gap_x"), y_ref = fx("gap_y"), dy = fx("gap_dy"), dx_ref = fx("gap_dx"), y(6);
  global_avg_pool_forward_cpu<double>(p, x.data(), y.data());
  auto s = compare(y, y_ref);
  print_err("gap y vs torch", s);
  EXPECT_LT(s.max_abs, 1e-12);
  check_grad("gap dx vs torch", dx_ref, [&](double* d, bool acc) { global_avg_pool_backward_cpu<double>(p, dy.data(), d, acc); }, 1e-12);
  Vec num = numeric_grad(x, dy, [&](const Vec& xx) { Vec o(6); global_avg_pool_forward_cpu<double>(p, xx.data(), o.data()); return o; });
  auto sn = compare(num, dx_ref);
  print_err("gap central diff vs torch", sn);
  EXPECT_LT(sn.max_abs, 1e-8);
  expect_error([&] { global_avg_pool_forward_cpu<double>(GapParams{1, 1, 0}, x.data(), y.data()); }, "global_avg_pool");
}

// ---- losses -------------------------------------------------------------------------------------------------------
TEST(Loss, SoftmaxCrossEntropyVsTorch) {
  Vec logits = fx("ce_logits"), w = fx("ce_weights"), dref = fx("ce_dlogits");
  std::vector<int32_t> labels = fxi("ce_labels");
  LossParams p{10, 4, 2.0, 1.0};
  double loss = 0;
  softmax_cross_entropy_forward_cpu<double>(p, logits.data(), labels.data(), w.data(), nullptr, &loss);
  const double lref = fx("ce_loss")[0];
  std::printf("[err] ce loss %.12f vs torch %.12f\n", loss, lref);
  EXPECT_NEAR(loss, lref, 1e-12);
  check_grad("ce dlogits vs torch", dref, [&](double* d, bool acc) {
    softmax_cross_entropy_backward_cpu<double>(p, nullptr, logits.data(), labels.data(), w.data(), nullptr, d, acc);
  }, 1e-12);
  // Central differences, with an upstream dloss and a caller-given count.
  const int32_t count = 5;
  const double dloss = 0.7;
  Vec num = numeric_grad(logits, {dloss}, [&](const Vec& xx) {
    double l; softmax_cross_entropy_forward_cpu<double>(p, xx.data(), labels.data(), w.data(), &count, &l); return Vec{l}; });
  check_grad("ce dlogits vs central diff (count=5, dloss)", num, [&](double* d, bool acc) {
    softmax_cross_entropy_backward_cpu<double>(p, &dloss, logits.data(), labels.data(), w.data(), &count, d, acc);
  }, 1e-8);
  // float path
  std::vector<float> lf(logits.begin(), logits.end()), wf(w.begin(), w.end()), gf(40);
  float lossf;
  softmax_cross_entropy_forward_cpu<float>(p, lf.data(), labels.data(), wf.data(), nullptr, &lossf);
  softmax_cross_entropy_backward_cpu<float>(p, nullptr, lf.data(), labels.data(), wf.data(), nullptr, gf.data(), false);
  auto sf = compare(gf, dref);
  print_err("ce dlogits (float) vs torch", sf);
  EXPECT_NEAR(lossf, lref, 1e-5);
  EXPECT_LT(sf.max_abs, 1e-6);
  // Large logits stay finite (stable log-softmax).
  Vec big = {1000.0, -1000.0, 0.0, 999.0};
  int32_t lab = 1;
  LossParams p1{1, 4, 1.0, 1.0};
  double lb;
  softmax_cross_entropy_forward_cpu<double>(p1, big.data(), &lab, nullptr, nullptr, &lb);
  EXPECT_NEAR(lb, 2000.0 + std::log1p(std::exp(-1.0)), 1e-9);
}

TEST(Loss, ZeroCountGivesZero) {
  Vec logits = random_vec<double>(12, 60);
  std::vector<int32_t> labels = {-1, -1, -1};
  LossParams p{3, 4, 1.0, 1.0};
  double loss = 5;
  softmax_cross_entropy_forward_cpu<double>(p, logits.data(), labels.data(), nullptr, nullptr, &loss);
  EXPECT_EQ(loss, 0.0);
  Vec g(12, 9.0);
  softmax_cross_entropy_backward_cpu<double>(p, nullptr, logits.data(), labels.data(), nullptr, nullptr, g.data(), false);
  for (double v : g) EXPECT_EQ(v, 0.0);
  const int32_t zero = 0;
  Vec t(12, 0.5);
  sigmoid_cross_entropy_forward_cpu<double>(p, logits.data(), t.data(), nullptr, &zero, &loss);
  EXPECT_EQ(loss, 0.0);
  smooth_l1_backward_cpu<double>(p, nullptr, logits.data(), t.data(), nullptr, &zero, g.data(), false);
  for (double v : g) EXPECT_EQ(v, 0.0);
  std::vector<int32_t> bad = {0, 4, -1};
  expect_error([&] { softmax_cross_entropy_forward_cpu<double>(p, logits.data(), bad.data(), nullptr, nullptr, &loss); },
               "labels[1] = 4");
}

TEST(Loss, SigmoidCrossEntropyVsTorch) {
  Vec logits = fx("bce_logits"), z = fx("bce_targets"), w = fx("bce_weights"), dref = fx("bce_dlogits");
  LossParams p{6, 3, 0.5, 1.0};
  const int32_t count = 7;
  double loss;
  sigmoid_cross_entropy_forward_cpu<double>(p, logits.data(), z.data(), w.data(), &count, &loss);
  std::printf("[err] bce loss %.12f vs torch %.12f\n", loss, fx("bce_loss")[0]);
  EXPECT_NEAR(loss, fx("bce_loss")[0], 1e-12);
  check_grad("bce dlogits vs torch", dref, [&](double* d, bool acc) {
    sigmoid_cross_entropy_backward_cpu<double>(p, nullptr, logits.data(), z.data(), w.data(), &count, d, acc);
  }, 1e-12);
  Vec num = numeric_grad(logits, {1.0}, [&](const Vec& xx) {
    double l; sigmoid_cross_entropy_forward_cpu<double>(p, xx.data(), z.data(), w.data(), &count, &l); return Vec{l}; });
  auto sn = compare(num, dref);
  print_err("bce central diff vs torch", sn);
  EXPECT_LT(sn.max_abs, 1e-8);
  Vec badz = z;
  badz[4] = 1.5;
  expect_error([&] { sigmoid_cross_entropy_forward_cpu<double>(p, logits.data(), badz.data(), w.data(), &count, &loss); },
               "targets[1,1]");
}

TEST(Loss, SmoothL1VsTorchAtDeltaOne) {
  Vec pred = fx("sl1_pred"), t = fx("sl1_target"), w = fx("sl1_weights"), dref = fx("sl1_dpred");
  LossParams p{8, 4, 1.0, 1.0};
  double loss;
  smooth_l1_forward_cpu<double>(p, pred.data(), t.data(), w.data(), nullptr, &loss);
  std::printf("[err] smooth_l1 loss %.12f vs torch %.12f\n", loss, fx("sl1_loss")[0]);
  EXPECT_NEAR(loss, fx("sl1_loss")[0], 1e-12);
  check_grad("smooth_l1 dpred vs torch", dref, [&](double* d, bool acc) {
    smooth_l1_backward_cpu<double>(p, nullptr, pred.data(), t.data(), w.data(), nullptr, d, acc);
  }, 1e-12);
}

TEST(Loss, HuberByHandAtDeltaHalf) {
  // Two rows, delta 0.5: row 0 diffs {0.2, -0.3, 1.0, -2.0}, row 1 diffs {0.4, 0, 0, 0.6}, weights {1, 3}.
  Vec pred = {0.2, -0.3, 1.0, -2.0, 0.4, 0.0, 0.0, 0.6}, t(8, 0.0), w = {1.0, 3.0};
  LossParams p{2, 4, 1.0, 0.5};
  double loss;
  smooth_l1_forward_cpu<double>(p, pred.data(), t.data(), w.data(), nullptr, &loss);
  const double r0 = 0.5 * 0.04 + 0.5 * 0.09 + 0.5 * (1.0 - 0.25) + 0.5 * (2.0 - 0.25);
  const double r1 = 0.5 * 0.16 + 0.5 * (0.6 - 0.25);
  const double want = (r0 + 3 * r1) / 2;
  std::printf("[err] huber(delta=0.5) %.12f vs hand %.12f\n", loss, want);
  EXPECT_NEAR(loss, want, 1e-12);
  Vec g(8);
  smooth_l1_backward_cpu<double>(p, nullptr, pred.data(), t.data(), w.data(), nullptr, g.data(), false);
  Vec gw = {0.2 / 2, -0.3 / 2, 0.5 / 2, -0.5 / 2, 3 * 0.4 / 2, 0, 0, 3 * 0.5 / 2};
  auto s = compare(g, gw);
  print_err("huber(delta=0.5) grad vs hand", s);
  EXPECT_LT(s.max_abs, 1e-12);
  // and central differences away from the |d| = delta kinks
  Vec pr = away_from(8, 61, -2, 2, {-0.5, 0.5});
  Vec num = numeric_grad(pr, {1.3}, [&](const Vec& xx) { double l; smooth_l1_forward_cpu<double>(p, xx.data(), t.data(), w.data(), nullptr, &l); return Vec{l}; });
  const double dl = 1.3;
  check_grad("huber(delta=0.5) central diff", num, [&](double* d, bool acc) {
    smooth_l1_backward_cpu<double>(p, &dl, pr.data(), t.data(), w.data(), nullptr, d, acc);
  }, 1e-8);
  LossParams bad = p;
  bad.delta = 0;
  expect_error([&] { smooth_l1_forward_cpu<double>(bad, pred.data(), t.data(), w.data(), nullptr, &loss); }, "smooth_l1: delta");
}

// ---- optimizer ------------------------------------------------------------------------------------------------------
TEST(Optim, SgdMomentumMatchesTorchThreeSteps) {
  Vec p = fx("sgd_p0"), grads = fx("sgd_grads"), p3 = fx("sgd_p3"), buf3 = fx("sgd_buf3");
  const int64_t n = (int64_t)p.size();
  Vec acc(n, 0.0);
  SgdParams sp{0.1, 0.9, 0.01};
  for (int s = 0; s < 3; ++s) sgd_momentum_update_cpu<double>(sp, n, p.data(), acc.data(), grads.data() + s * n);
  auto s1 = compare(p, p3), s2 = compare(acc, buf3);
  print_err("sgd params after 3 steps vs torch", s1);
  print_err("sgd momentum buffer vs torch", s2);
  EXPECT_LT(s1.max_abs, 1e-13);
  EXPECT_LT(s2.max_abs, 1e-13);
  SgdParams bad{-1.0, 0.9, 0.0};
  expect_error([&] { sgd_momentum_update_cpu<double>(bad, n, p.data(), acc.data(), grads.data()); }, "sgd_momentum: lr");
}

TEST(Optim, ClipByGlobalNormMatchesTorch) {
  Vec g = fx("clip_g0"), g1 = fx("clip_g1");
  int64_t sizes[3] = {5, 6, 4};
  double* ptrs[3] = {g.data(), g.data() + 5, g.data() + 11};
  const double norm = clip_by_global_norm_cpu<double>(1.5, 3, ptrs, sizes);
  std::printf("[err] global norm %.12f vs torch %.12f\n", norm, fx("clip_norm")[0]);
  EXPECT_NEAR(norm, fx("clip_norm")[0], 1e-12);
  // torch divides by (norm + 1e-6), TF (and we) by norm: relative difference ~1e-6 / norm.
  auto s = compare(g, g1);
  print_err("clipped grads vs torch clip_grad_norm_", s);
  EXPECT_LT(s.max_rel, 1e-6);
  double sq = 0;
  for (double v : g) sq += v * v;
  EXPECT_NEAR(std::sqrt(sq), 1.5, 1e-12);
  // Under the clip: untouched.
  Vec h = {0.1, 0.2};
  int64_t hs = 2;
  double* hp = h.data();
  EXPECT_NEAR(clip_by_global_norm_cpu<double>(1.0, 1, &hp, &hs), std::sqrt(0.05), 1e-15);
  EXPECT_EQ(h, (Vec{0.1, 0.2}));
}

TEST(Optim, NonFiniteNormIsReportedNotApplied) {
  std::vector<float> a = {1.f, 2.f, 3.f}, b = {std::numeric_limits<float>::quiet_NaN(), 1.f};
  int64_t sizes[2] = {3, 2};
  float* ptrs[2] = {a.data(), b.data()};
  const double n = clip_by_global_norm_cpu<float>(1.0, 2, ptrs, sizes);
  EXPECT_FALSE(std::isfinite(n));
  EXPECT_EQ(a, (std::vector<float>{1.f, 2.f, 3.f}));
  std::vector<float> c = {std::numeric_limits<float>::infinity(), 0.f};
  ptrs[1] = c.data();
  double norms[2];
  EXPECT_FALSE(clip_by_tensor_norm_cpu<float>(1.0, 2, ptrs, sizes, norms));
  EXPECT_TRUE(std::isinf(norms[1]));
  EXPECT_TRUE(std::isinf(c[0]));  // untouched
  // a was finite: clipped by its own norm sqrt(14).
  EXPECT_NEAR(a[0], 1.0 / std::sqrt(14.0), 1e-7);
  expect_error([&] { clip_by_global_norm_cpu<float>(0.0, 2, ptrs, sizes); }, "clip_by_global_norm: clip norm");
}

// The multi-tensor step against its definition written out by hand: clip over the non-null gradients (global
// or per tensor), then w -= lr * (m * acc + g) with g = 0 for a null gradient (its momentum still decays).
TEST(Optim, ListStepMatchesTheDefinitionWithNullGradients) {
  for (bool per_tensor : {false, true}) {
    Vec w0 = {1.0, -2.0, 0.5, 3.0, 0.25, -1.0, 2.0}, a0 = {0.1, 0.2, -0.3, 0.0, 0.5, 0.05, -0.5};
    Vec g0 = {3.0, 4.0, 0.0, 6.0, 8.0, 0.0, 0.0};  // tensors: [0,2) [2,3) (null) [3,5) [5,7) (null)
    Vec w = w0, a = a0, g = g0;
    int64_t sizes[4] = {2, 1, 2, 2};
    double* var[4] = {w.data(), w.data() + 2, w.data() + 3, w.data() + 5};
    double* acc[4] = {a.data(), a.data() + 2, a.data() + 3, a.data() + 5};
    double* grad[4] = {g.data(), nullptr, g.data() + 3, nullptr};
    SgdParams sp{0.1, 0.9, 0.0};
    const double clip = 5.0;
    double norms[4] = {-1, -1, -1, -1};
    ASSERT_TRUE(clipped_sgd_update_list_cpu<double>(sp, clip, per_tensor, 4, var, acc, grad, sizes, norms));
    // By hand: norms 5 and 10 (global sqrt(125)).
    std::vector<double> f(7, 0.0);
    if (per_tensor) {
      EXPECT_DOUBLE_EQ(norms[0], 5.0);
      EXPECT_EQ(norms[1], 0.0);
      EXPECT_DOUBLE_EQ(norms[2], 10.0);
      EXPECT_EQ(norms[3], 0.0);
      f = {1.0, 1.0, 0.0, 0.5, 0.5, 0.0, 0.0};
    } else {
      EXPECT_NEAR(norms[0], std::sqrt(125.0), 1e-14);
      const double k = 5.0 / std::sqrt(125.0);
      f = {k, k, 0.0, k, k, 0.0, 0.0};
    }
    double err = 0;
    for (size_t i = 0; i < 7; ++i) {
      const double gi = g0[i] * f[i];
      const double ai = 0.9 * a0[i] + gi;
      err = std::max({err, std::fabs(a[i] - ai), std::fabs(w[i] - (w0[i] - 0.1 * ai))});
    }
    std::printf("[err] list step (%s clip) vs hand: max %.3g\n", per_tensor ? "per-tensor" : "global", err);
    EXPECT_LT(err, 1e-15);
  }
  // A non-finite gradient: nothing moves, false.
  std::vector<float> w = {1.f, 2.f}, a = {0.5f, 0.5f}, g = {std::numeric_limits<float>::infinity(), 1.f};
  int64_t n = 2;
  float *vp = w.data(), *ap = a.data(), *gp = g.data();
  double norm = 0;
  EXPECT_FALSE(clipped_sgd_update_list_cpu<float>(SgdParams{0.1, 0.9, 0.0}, 1.0, false, 1, &vp, &ap, &gp, &n, &norm));
  EXPECT_TRUE(std::isinf(norm));
  EXPECT_EQ(w, (std::vector<float>{1.f, 2.f}));
  EXPECT_EQ(a, (std::vector<float>{0.5f, 0.5f}));
}

TEST(Optim, ListChunksCoverEachTensorInOrder) {
  const int64_t sizes[5] = {0, 1, kListChunk, kListChunk + 1, 3 * kListChunk - 7};
  std::vector<int64_t> first;
  const std::vector<ListChunk> c = list_chunks(5, sizes, &first);
  ASSERT_EQ(first.size(), 6u);
  EXPECT_EQ(first, (std::vector<int64_t>{0, 0, 1, 2, 4, 7}));
  ASSERT_EQ(c.size(), 7u);
  for (int t = 0; t < 5; ++t) {
    int64_t covered = 0;
    for (int64_t i = first[size_t(t)]; i < first[size_t(t) + 1]; ++i) {
      EXPECT_EQ(c[size_t(i)].tensor, t);
      EXPECT_EQ(c[size_t(i)].start, covered);
      EXPECT_GE(c[size_t(i)].len, 1);
      EXPECT_LE(c[size_t(i)].len, kListChunk);
      covered += c[size_t(i)].len;
    }
    EXPECT_EQ(covered, sizes[t]) << "tensor " << t;
  }
  const int64_t bad[1] = {-1};
  expect_error([&] { list_chunks(1, bad, nullptr); }, "list_chunks: sizes[0]");
}

TEST(Optim, ClipByTensorNormByHand) {
  Vec a = {3.0, 4.0}, b = {0.3, 0.4}, c = {6.0, 8.0};
  int64_t sizes[3] = {2, 2, 2};
  double* ptrs[3] = {a.data(), b.data(), c.data()};
  double norms[3];
  EXPECT_TRUE(clip_by_tensor_norm_cpu<double>(2.0, 3, ptrs, sizes, norms));
  EXPECT_DOUBLE_EQ(norms[0], 5.0);
  EXPECT_DOUBLE_EQ(norms[2], 10.0);
  EXPECT_NEAR(a[0], 1.2, 1e-15); EXPECT_NEAR(a[1], 1.6, 1e-15);
  EXPECT_EQ(b, (Vec{0.3, 0.4}));
  EXPECT_NEAR(c[0], 1.2, 1e-15); EXPECT_NEAR(c[1], 1.6, 1e-15);
}
