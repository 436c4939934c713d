// conv2d, linear and batch norm on the CPU: torch fixtures (tests/fixtures/make_conv_fixtures.py), central
// differences in double, accumulate paths, BN folding and bad-input errors. Every check prints its error.
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "io/npy.h"
#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/matmul.h"
#include "nn/error.h"
#include "test_util.h"

using namespace ctdet;
using ctdet::testing::compare;
using ctdet::testing::print_err;

namespace {

template <typename T>
std::vector<T> load(const std::string& name) {
  return read_npy(ctdet::testing::fixture_path("conv/" + name + ".npy")).as<T>();
}

Conv2dParams load_conv_params(const std::string& name) {
  auto v = load<int64_t>(name + "_params");
  EXPECT_EQ(v.size(), 17u);
  Conv2dParams p;
  p.N = int(v[0]); p.C = int(v[1]); p.H = int(v[2]); p.W = int(v[3]);
  p.K = int(v[4]); p.R = int(v[5]); p.S = int(v[6]);
  p.stride_h = int(v[7]); p.stride_w = int(v[8]);
  p.pad_top = int(v[9]); p.pad_bottom = int(v[10]); p.pad_left = int(v[11]); p.pad_right = int(v[12]);
  p.dilation_h = int(v[13]); p.dilation_w = int(v[14]);
  p.groups = int(v[15]); p.has_bias = v[16] != 0;
  return p;
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// Checks got against ref with |err| <= tol * max(1, max|ref|); prints the error.
template <typename A>
void expect_close(const std::string& what, const std::vector<A>& got, const std::vector<double>& ref, double tol) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  auto e = compare(got, ref);
  print_err(what, e);
  EXPECT_LE(e.max_abs, tol * std::max(1.0, max_abs(ref))) << what;
}

template <typename T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

// Subtracts a prefill so that accumulate results can be compared with plain gradients.
template <typename T>
std::vector<T> minus(const std::vector<T>& a, const std::vector<T>& b) {
  std::vector<T> r(a.size());
  for (size_t i = 0; i < a.size(); ++i) r[i] = a[i] - b[i];
  return r;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Central differences of loss() with respect to every element of v, compared with analytic.
void grad_check(const std::string& what, std::vector<double>& v, const std::vector<double>& analytic,
                const std::function<double()>& loss, double h = 1e-5, double tol = 1e-7) {
  ASSERT_EQ(v.size(), analytic.size());
  std::vector<double> num(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    double keep = v[i];
    v[i] = keep + h;
    double lp = loss();
    v[i] = keep - h;
    double lm = loss();
    v[i] = keep;
    num[i] = (lp - lm) / (2 * h);
  }
  auto e = compare(analytic, num);
  print_err("gradcheck " + what, e);
  EXPECT_LE(e.max_abs, tol * std::max(1.0, max_abs(num))) << what;
}

// ---- conv2d -------------------------------------------------------------------------------------------

template <typename T>
void run_conv_fixture(const std::string& name, double tol) {
  Conv2dParams p = load_conv_params(name);
  auto x = cast<T>(load<double>(name + "_x")), w = cast<T>(load<double>(name + "_w"));
  auto dy = cast<T>(load<double>(name + "_dy"));
  std::vector<T> b = p.has_bias ? cast<T>(load<double>(name + "_b")) : std::vector<T>();
  std::vector<char> ws(conv2d_workspace_bytes_cpu(p));
  const std::string tag = name + (sizeof(T) == 4 ? " f32" : " f64");

  std::vector<T> y(p.y_numel());
  conv2d_forward_cpu<T>(p, x.data(), w.data(), p.has_bias ? b.data() : nullptr, y.data(), ws.data());
  expect_close("conv2d " + tag + " y", y, load<double>(name + "_y"), tol);

  std::vector<T> dx(x.size()), dw(w.size()), db(p.K);
  conv2d_backward_cpu<T>(p, dy.data(), x.data(), w.data(), dx.data(), false, dw.data(), false, db.data(), false,
                         ws.data());
  expect_close("conv2d " + tag + " dx", dx, load<double>(name + "_dx"), tol);
  expect_close("conv2d " + tag + " dw", dw, load<double>(name + "_dw"), tol);
  if (p.has_bias) expect_close("conv2d " + tag + " db", db, load<double>(name + "_db"), tol);

  // Accumulate: prefilled buffers must end as prefill + gradient.
  auto pdx = ctdet::testing::random_vec<T>(dx.size(), 11), pdw = ctdet::testing::random_vec<T>(dw.size(), 12);
  auto pdb = ctdet::testing::random_vec<T>(db.size(), 13);
  auto adx = pdx, adw = pdw, adb = pdb;
  conv2d_backward_cpu<T>(p, dy.data(), x.data(), w.data(), adx.data(), true, adw.data(), true, adb.data(), true,
                         ws.data());
  expect_close("conv2d " + tag + " dx accumulate", minus(adx, pdx), load<double>(name + "_dx"), tol * 4);
  expect_close("conv2d " + tag + " dw accumulate", minus(adw, pdw), load<double>(name + "_dw"), tol * 4);
  if (p.has_bias)
    expect_close("conv2d " + tag + " db accumulate", minus(adb, pdb), load<double>(name + "_db"), tol * 4);
}

const char* kConvCases[] = {"stride2", "dilation2", "groups2", "depthwise_same", "pointwise_s2", "pointwise_gemm"};

// Which convolutions take the pointwise-GEMM path (the torch fixture "pointwise_gemm" checks its numbers).
TEST(Conv2d, PointwiseGemmSelection) {
  Conv2dParams p;
  p.N = 2, p.C = 6, p.H = 16, p.W = 17, p.K = 5;
  EXPECT_TRUE(conv2d_uses_pointwise_gemm(p));
  EXPECT_EQ(conv2d_workspace_bytes_cpu(p), 0u);
  const GemmDesc f = pointwise_forward_gemm(p);
  EXPECT_EQ(f.m, 272);
  EXPECT_EQ(f.n, 5);
  EXPECT_EQ(f.k, 6);
  EXPECT_EQ(f.batch, 2);
  EXPECT_EQ(pointwise_backward_filter_gemm(p, false).stride_c, 0);  // a sum over the images into one dw
  Conv2dParams q = p;
  q.H = 15;  // 255 cells: im2col
  EXPECT_FALSE(conv2d_uses_pointwise_gemm(q));
  for (auto change : {+[](Conv2dParams& c) { c.stride_h = 2; }, +[](Conv2dParams& c) { c.pad_bottom = 1; },
                      +[](Conv2dParams& c) { c.R = c.S = 3; }, +[](Conv2dParams& c) { c.dilation_w = 2; },
                      +[](Conv2dParams& c) { c.groups = 2; c.C = 6; c.K = 4; }}) {
    Conv2dParams c = p;
    change(c);
    EXPECT_FALSE(conv2d_uses_pointwise_gemm(c)) << c.shape_string();
  }
}

TEST(Conv2d, TfSamePaddingHandValues) {
  auto a = tf_same_padding(12, 7, 2);  // out 6, total (6-1)*2+7-12 = 5
  EXPECT_EQ(a.before, 2);
  EXPECT_EQ(a.after, 3);
  auto b = tf_same_padding(600, 3, 2);  // out 300, total 299*2+3-600 = 1 -> 0 before, 1 after
  EXPECT_EQ(b.before, 0);
  EXPECT_EQ(b.after, 1);
  auto c = tf_same_padding(7, 3, 1);
  EXPECT_EQ(c.before, 1);
  EXPECT_EQ(c.after, 1);
  auto d = tf_same_padding(5, 1, 2);
  EXPECT_EQ(d.before + d.after, 0);
  auto e = tf_same_padding(9, 3, 1, 2);  // effective kernel 5: total 4
  EXPECT_EQ(e.before, 2);
  EXPECT_EQ(e.after, 2);
  EXPECT_EQ(conv2d_out_size(12, 7, 2, 2, 3, 1), 6);
  EXPECT_EQ(conv2d_out_size(64, 7, 2, 3, 3, 1), 32);
  EXPECT_EQ(conv2d_out_size(8, 3, 1, 2, 2, 2), 8);
}

TEST(Conv2d, TorchFixturesFloat) {
  for (const char* c : kConvCases) run_conv_fixture<float>(c, 2e-5);
}

TEST(Conv2d, TorchFixturesDouble) {
  for (const char* c : kConvCases) run_conv_fixture<double>(c, 1e-12);
}

// Loss L = sum(y * g) for a fixed random g; dL/dy = g.
TEST(Conv2d, CentralDifferencesGroupsAsymmetricPad) {
  Conv2dParams p;
  p.N = 2; p.C = 4; p.H = 6; p.W = 5; p.K = 6; p.R = 3; p.S = 2;
  p.stride_h = 2; p.stride_w = 1; p.pad_top = 0; p.pad_bottom = 2; p.pad_left = 1; p.pad_right = 0;
  p.dilation_h = 1; p.dilation_w = 2; p.groups = 2; p.has_bias = true;
  validate_conv2d(p);
  auto x = ctdet::testing::random_vec<double>(p.x_numel(), 1), w = ctdet::testing::random_vec<double>(p.w_numel(), 2);
  auto b = ctdet::testing::random_vec<double>(p.K, 3), g = ctdet::testing::random_vec<double>(p.y_numel(), 4);
  std::vector<double> y(p.y_numel());
  auto loss = [&] {
    conv2d_forward_cpu<double>(p, x.data(), w.data(), b.data(), y.data(), nullptr);
    return dot(y, g);
  };
  std::vector<double> dx(x.size()), dw(w.size()), db(b.size());
  conv2d_backward_cpu<double>(p, g.data(), x.data(), w.data(), dx.data(), false, dw.data(), false, db.data(), false,
                              nullptr);
  grad_check("conv2d dx", x, dx, loss);
  grad_check("conv2d dw", w, dw, loss);
  grad_check("conv2d db", b, db, loss);

  // Same shape through the float im2col + BLAS path must agree with the double direct loops.
  std::vector<char> ws(conv2d_workspace_bytes_cpu(p));
  auto xf = cast<float>(x), wf = cast<float>(w), bf = cast<float>(b), gf = cast<float>(g);
  std::vector<float> yf(y.size()), dxf(x.size()), dwf(w.size()), dbf(b.size());
  loss();
  conv2d_forward_cpu<float>(p, xf.data(), wf.data(), bf.data(), yf.data(), ws.data());
  conv2d_backward_cpu<float>(p, gf.data(), xf.data(), wf.data(), dxf.data(), false, dwf.data(), false, dbf.data(),
                             false, ws.data());
  expect_close("conv2d im2col f32 vs direct f64 y", yf, y, 1e-5);
  expect_close("conv2d im2col f32 vs direct f64 dx", dxf, dx, 1e-5);
  expect_close("conv2d im2col f32 vs direct f64 dw", dwf, dw, 1e-5);
}

TEST(Conv2d, CentralDifferencesDepthwiseSame) {
  Conv2dParams p;
  p.N = 1; p.C = 2; p.H = 6; p.W = 6; p.K = 6; p.R = 3; p.S = 3; p.groups = 2;
  p.stride_h = p.stride_w = 2;
  auto sh = tf_same_padding(p.H, p.R, 2), sw = tf_same_padding(p.W, p.S, 2);
  p.pad_top = sh.before; p.pad_bottom = sh.after; p.pad_left = sw.before; p.pad_right = sw.after;
  EXPECT_EQ(p.pad_top, 0);
  EXPECT_EQ(p.pad_bottom, 1);
  EXPECT_EQ(p.out_h(), 3);
  auto x = ctdet::testing::random_vec<double>(p.x_numel(), 5), w = ctdet::testing::random_vec<double>(p.w_numel(), 6);
  auto g = ctdet::testing::random_vec<double>(p.y_numel(), 7);
  std::vector<double> y(p.y_numel()), dx(x.size()), dw(w.size());
  auto loss = [&] {
    conv2d_forward_cpu<double>(p, x.data(), w.data(), nullptr, y.data(), nullptr);
    return dot(y, g);
  };
  conv2d_backward_cpu<double>(p, g.data(), x.data(), w.data(), dx.data(), false, dw.data(), false, nullptr, false,
                              nullptr);
  grad_check("conv2d depthwise SAME dx", x, dx, loss);
  grad_check("conv2d depthwise SAME dw", w, dw, loss);
}

// Small outputs are computed several images per GEMM (the ROI head's 7x7 crops): 12 images of 7x7 -> chunks of 11
// and 1, with bias and padding, against the double direct-loop reference; forward, then both gradients.
TEST(Conv2d, BatchedSmallOutputsMatchDirectReference) {
  Conv2dParams p;
  p.N = 12;
  p.C = 16;
  p.H = p.W = 7;
  p.K = 24;
  p.R = p.S = 3;
  p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = 1;
  p.has_bias = true;
  const auto xd = ctdet::testing::random_vec<double>(size_t(p.x_numel()), 31);
  const auto wd = ctdet::testing::random_vec<double>(size_t(p.w_numel()), 32);
  const auto bd = ctdet::testing::random_vec<double>(size_t(p.K), 33);
  std::vector<double> yd(size_t(p.y_numel()));
  conv2d_forward_cpu<double>(p, xd.data(), wd.data(), bd.data(), yd.data(), nullptr);
  std::vector<float> xf(xd.begin(), xd.end()), wf(wd.begin(), wd.end()), bf(bd.begin(), bd.end()), yf(yd.size());
  std::vector<char> ws(conv2d_workspace_bytes_cpu(p));
  conv2d_forward_cpu<float>(p, xf.data(), wf.data(), bf.data(), yf.data(), ws.data());
  auto e = compare(yf, yd);
  print_err("conv2d float batched (12 x 7x7, chunks 11+1) vs double", e);
  EXPECT_LT(e.max_abs, 1e-4);
  EXPECT_GE(ws.size(), size_t(16 * 9 * 49 * 11 + 24 * 49 * 11) * sizeof(float));  // 11 images per GEMM
  // The backward takes the same batches: dx and dw against the direct loops, overwriting and accumulating onto a
  // prefill (dw sums over both chunks; dx is written per image), in the same workspace.
  const auto gd = ctdet::testing::random_vec<double>(size_t(p.y_numel()), 34);
  const auto dx0 = ctdet::testing::random_vec<double>(size_t(p.x_numel()), 35);
  const auto dw0 = ctdet::testing::random_vec<double>(size_t(p.w_numel()), 36);
  const std::vector<float> gf(gd.begin(), gd.end());
  for (bool acc : {false, true}) {
    std::vector<double> dxd = dx0, dwd = dw0;
    conv2d_backward_cpu<double>(p, gd.data(), xd.data(), wd.data(), dxd.data(), acc, dwd.data(), acc, nullptr, false,
                                nullptr);
    std::vector<float> dxf(dx0.begin(), dx0.end()), dwf(dw0.begin(), dw0.end());
    conv2d_backward_cpu<float>(p, gf.data(), xf.data(), wf.data(), dxf.data(), acc, dwf.data(), acc, nullptr, false,
                               ws.data());
    auto ex = compare(dxf, dxd), ew = compare(dwf, dwd);
    print_err(acc ? "batched backward dx (accumulate) vs double" : "batched backward dx vs double", ex);
    print_err(acc ? "batched backward dw (accumulate) vs double" : "batched backward dw vs double", ew);
    EXPECT_LT(ex.max_abs, 1e-4);
    EXPECT_LT(ew.max_abs, 1e-3);  // sums over 12 images x 49 cells
  }
}

TEST(Conv2d, BadInputsNameTheOpAndValue) {
  Conv2dParams ok;
  ok.N = 1; ok.C = 4; ok.H = 8; ok.W = 8; ok.K = 6; ok.R = 3; ok.S = 3; ok.groups = 2;
  EXPECT_NO_THROW(validate_conv2d(ok));
  auto expect_error = [](Conv2dParams p, const std::string& needle) {
    try {
      validate_conv2d(p);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      std::string m = e.what();
      std::printf("expected error: %s\n", m.c_str());
      EXPECT_NE(m.find("conv2d"), std::string::npos) << m;
      EXPECT_NE(m.find(needle), std::string::npos) << m;
    }
  };
  Conv2dParams p = ok; p.pad_left = -1; expect_error(p, "-1");
  p = ok; p.C = 5; expect_error(p, "C=5");
  p = ok; p.K = 7; expect_error(p, "K=7");
  p = ok; p.H = 0; expect_error(p, "H=0");
  p = ok; p.R = 11; expect_error(p, "output size");
  p = ok; p.stride_w = 0; expect_error(p, "stride");
  p = ok; p.groups = 0; expect_error(p, "groups");
  // Float path without a workspace.
  std::vector<float> x(ok.x_numel()), w(ok.w_numel()), y(ok.y_numel());
  EXPECT_THROW(conv2d_forward_cpu<float>(ok, x.data(), w.data(), nullptr, y.data(), nullptr), Error);
  EXPECT_THROW(tf_same_padding(0, 3, 2), Error);
}

// ---- linear -------------------------------------------------------------------------------------------

template <typename T>
void run_linear_fixture(double tol) {
  auto x = cast<T>(load<double>("linear_x")), w = cast<T>(load<double>("linear_w"));
  auto b = cast<T>(load<double>("linear_b")), dy = cast<T>(load<double>("linear_dy"));
  LinearParams p{5, 7, 4, true};
  const std::string tag = sizeof(T) == 4 ? " f32" : " f64";
  std::vector<T> y(5 * 4), dx(x.size()), dw(w.size()), db(4);
  linear_forward_cpu<T>(p, x.data(), w.data(), b.data(), y.data());
  expect_close("linear" + tag + " y", y, load<double>("linear_y"), tol);
  linear_backward_cpu<T>(p, dy.data(), x.data(), w.data(), dx.data(), false, dw.data(), false, db.data(), false);
  expect_close("linear" + tag + " dx", dx, load<double>("linear_dx"), tol);
  expect_close("linear" + tag + " dw", dw, load<double>("linear_dw"), tol);
  expect_close("linear" + tag + " db", db, load<double>("linear_db"), tol);
  auto pdx = ctdet::testing::random_vec<T>(dx.size(), 21), pdw = ctdet::testing::random_vec<T>(dw.size(), 22);
  auto pdb = ctdet::testing::random_vec<T>(db.size(), 23);
  auto adx = pdx, adw = pdw, adb = pdb;
  linear_backward_cpu<T>(p, dy.data(), x.data(), w.data(), adx.data(), true, adw.data(), true, adb.data(), true);
  expect_close("linear" + tag + " dx accumulate", minus(adx, pdx), load<double>("linear_dx"), tol * 4);
  expect_close("linear" + tag + " dw accumulate", minus(adw, pdw), load<double>("linear_dw"), tol * 4);
  expect_close("linear" + tag + " db accumulate", minus(adb, pdb), load<double>("linear_db"), tol * 4);
}

TEST(Linear, TorchFixtures) {
  run_linear_fixture<float>(2e-6);
  run_linear_fixture<double>(1e-13);
}

TEST(Linear, CentralDifferences) {
  LinearParams p{3, 5, 4, true};
  auto x = ctdet::testing::random_vec<double>(15, 31), w = ctdet::testing::random_vec<double>(20, 32);
  auto b = ctdet::testing::random_vec<double>(4, 33), g = ctdet::testing::random_vec<double>(12, 34);
  std::vector<double> y(12), dx(15), dw(20), db(4);
  auto loss = [&] {
    linear_forward_cpu<double>(p, x.data(), w.data(), b.data(), y.data());
    return dot(y, g);
  };
  linear_backward_cpu<double>(p, g.data(), x.data(), w.data(), dx.data(), false, dw.data(), false, db.data(), false);
  grad_check("linear dx", x, dx, loss);
  grad_check("linear dw", w, dw, loss);
  grad_check("linear db", b, db, loss);
}

TEST(Linear, ZeroRowsAndBadInputs) {
  LinearParams p{0, 3, 2, true};
  std::vector<float> w(6, 1.f), b(2, 1.f), dw(6, 5.f), db(2, 5.f);
  linear_forward_cpu<float>(p, nullptr, w.data(), b.data(), nullptr);
  linear_backward_cpu<float>(p, nullptr, nullptr, w.data(), nullptr, false, dw.data(), false, db.data(), false);
  for (float v : dw) EXPECT_EQ(v, 0.f);
  for (float v : db) EXPECT_EQ(v, 0.f);
  try {
    validate_linear(LinearParams{2, 0, 3, false});
    ADD_FAILURE() << "no error for K=0";
  } catch (const Error& e) {
    std::printf("expected error: %s\n", e.what());
    EXPECT_NE(std::string(e.what()).find("linear"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("got 0"), std::string::npos);
  }
  EXPECT_THROW(validate_linear(LinearParams{-1, 2, 3, false}), Error);
}

// ---- batch norm ---------------------------------------------------------------------------------------

template <typename T>
void run_bn_eval_fixture(double tol) {
  BatchNormParams p;
  p.N = 2; p.C = 3; p.H = 4; p.W = 5; p.eps = 1e-3;
  auto x = cast<T>(load<double>("bn_eval_x")), g = cast<T>(load<double>("bn_eval_gamma"));
  auto be = cast<T>(load<double>("bn_eval_beta")), m = cast<T>(load<double>("bn_eval_mean"));
  auto v = cast<T>(load<double>("bn_eval_var")), dy = cast<T>(load<double>("bn_eval_dy"));
  const std::string tag = sizeof(T) == 4 ? " f32" : " f64";
  std::vector<T> y(x.size()), dx(x.size()), dg(3), db(3);
  batchnorm_frozen_forward_cpu<T>(p, x.data(), g.data(), be.data(), m.data(), v.data(), y.data());
  expect_close("bn frozen" + tag + " y", y, load<double>("bn_eval_y"), tol);
  batchnorm_frozen_backward_cpu<T>(p, dy.data(), x.data(), g.data(), m.data(), v.data(), dx.data(), false, dg.data(),
                                   false, db.data(), false);
  expect_close("bn frozen" + tag + " dx", dx, load<double>("bn_eval_dx"), tol);
  expect_close("bn frozen" + tag + " dgamma", dg, load<double>("bn_eval_dgamma"), tol);
  expect_close("bn frozen" + tag + " dbeta", db, load<double>("bn_eval_dbeta"), tol);
  auto pdx = ctdet::testing::random_vec<T>(dx.size(), 41), pdg = ctdet::testing::random_vec<T>(3, 42);
  auto pdb = ctdet::testing::random_vec<T>(3, 43);
  auto adx = pdx, adg = pdg, adb = pdb;
  batchnorm_frozen_backward_cpu<T>(p, dy.data(), x.data(), g.data(), m.data(), v.data(), adx.data(), true,
                                   adg.data(), true, adb.data(), true);
  expect_close("bn frozen" + tag + " dx accumulate", minus(adx, pdx), load<double>("bn_eval_dx"), tol * 4);
  expect_close("bn frozen" + tag + " dgamma accumulate", minus(adg, pdg), load<double>("bn_eval_dgamma"), tol * 4);
  expect_close("bn frozen" + tag + " dbeta accumulate", minus(adb, pdb), load<double>("bn_eval_dbeta"), tol * 4);
}

template <typename T>
void run_bn_train_fixture(double tol) {
  BatchNormParams p;
  p.N = 2; p.C = 3; p.H = 4; p.W = 5; p.eps = 1e-5; p.momentum = 0.1;
  auto x = cast<T>(load<double>("bn_train_x")), g = cast<T>(load<double>("bn_train_gamma"));
  auto be = cast<T>(load<double>("bn_train_beta")), dy = cast<T>(load<double>("bn_train_dy"));
  auto rm = cast<T>(load<double>("bn_train_running_mean_in")), rv = cast<T>(load<double>("bn_train_running_var_in"));
  const std::string tag = sizeof(T) == 4 ? " f32" : " f64";
  std::vector<T> y(x.size()), sm(3), si(3), dx(x.size()), dg(3), db(3);
  batchnorm_train_forward_cpu<T>(p, x.data(), g.data(), be.data(), rm.data(), rv.data(), y.data(), sm.data(),
                                 si.data());
  expect_close("bn train" + tag + " y", y, load<double>("bn_train_y"), tol);
  expect_close("bn train" + tag + " running_mean", rm, load<double>("bn_train_running_mean_out"), tol);
  expect_close("bn train" + tag + " running_var", rv, load<double>("bn_train_running_var_out"), tol);
  batchnorm_train_backward_cpu<T>(p, dy.data(), x.data(), g.data(), sm.data(), si.data(), dx.data(), false, dg.data(),
                                  false, db.data(), false);
  expect_close("bn train" + tag + " dx", dx, load<double>("bn_train_dx"), tol);
  expect_close("bn train" + tag + " dgamma", dg, load<double>("bn_train_dgamma"), tol);
  expect_close("bn train" + tag + " dbeta", db, load<double>("bn_train_dbeta"), tol);
  auto pdx = ctdet::testing::random_vec<T>(dx.size(), 51), pdg = ctdet::testing::random_vec<T>(3, 52);
  auto pdb = ctdet::testing::random_vec<T>(3, 53);
  auto adx = pdx, adg = pdg, adb = pdb;
  batchnorm_train_backward_cpu<T>(p, dy.data(), x.data(), g.data(), sm.data(), si.data(), adx.data(), true,
                                  adg.data(), true, adb.data(), true);
  expect_close("bn train" + tag + " dx accumulate", minus(adx, pdx), load<double>("bn_train_dx"), tol * 4);
  expect_close("bn train" + tag + " dgamma accumulate", minus(adg, pdg), load<double>("bn_train_dgamma"), tol * 4);
  expect_close("bn train" + tag + " dbeta accumulate", minus(adb, pdb), load<double>("bn_train_dbeta"), tol * 4);
}

TEST(BatchNorm, FrozenTorchFixtures) {
  run_bn_eval_fixture<float>(2e-6);
  run_bn_eval_fixture<double>(1e-12);
}

TEST(BatchNorm, TrainTorchFixtures) {
  run_bn_train_fixture<float>(1e-5);
  run_bn_train_fixture<double>(1e-12);
}

TEST(BatchNorm, FrozenCentralDifferences) {
  BatchNormParams p;
  p.N = 2; p.C = 3; p.H = 2; p.W = 3; p.eps = 1e-3;
  auto x = ctdet::testing::random_vec<double>(p.numel(), 61), g = ctdet::testing::random_vec<double>(3, 62, 0.5, 1.5);
  auto be = ctdet::testing::random_vec<double>(3, 63), m = ctdet::testing::random_vec<double>(3, 64);
  auto v = ctdet::testing::random_vec<double>(3, 65, 0.5, 2.0), gy = ctdet::testing::random_vec<double>(p.numel(), 66);
  std::vector<double> y(p.numel()), dx(p.numel()), dg(3), db(3);
  auto loss = [&] {
    batchnorm_frozen_forward_cpu<double>(p, x.data(), g.data(), be.data(), m.data(), v.data(), y.data());
    return dot(y, gy);
  };
  batchnorm_frozen_backward_cpu<double>(p, gy.data(), x.data(), g.data(), m.data(), v.data(), dx.data(), false,
                                        dg.data(), false, db.data(), false);
  grad_check("bn frozen dx", x, dx, loss);
  grad_check("bn frozen dgamma", g, dg, loss);
  grad_check("bn frozen dbeta", be, db, loss);
}

TEST(BatchNorm, TrainCentralDifferences) {
  BatchNormParams p;
  p.N = 2; p.C = 2; p.H = 3; p.W = 2; p.eps = 1e-5;
  auto x = ctdet::testing::random_vec<double>(p.numel(), 71), g = ctdet::testing::random_vec<double>(2, 72, 0.5, 1.5);
  auto be = ctdet::testing::random_vec<double>(2, 73), gy = ctdet::testing::random_vec<double>(p.numel(), 74);
  std::vector<double> y(p.numel()), sm(2), si(2), dx(p.numel()), dg(2), db(2);
  auto loss = [&] {
    batchnorm_train_forward_cpu<double>(p, x.data(), g.data(), be.data(), nullptr, nullptr, y.data(), sm.data(),
                                        si.data());
    return dot(y, gy);
  };
  loss();
  batchnorm_train_backward_cpu<double>(p, gy.data(), x.data(), g.data(), sm.data(), si.data(), dx.data(), false,
                                       dg.data(), false, db.data(), false);
  grad_check("bn train dx", x, dx, loss, 1e-5, 1e-6);
  grad_check("bn train dgamma", g, dg, loss);
  grad_check("bn train dbeta", be, db, loss);
}

TEST(BatchNorm, FoldIntoConvEqualsConvThenFrozenBn) {
  Conv2dParams c;
  c.N = 2; c.C = 4; c.H = 7; c.W = 6; c.K = 6; c.R = 3; c.S = 3; c.groups = 2; c.stride_h = c.stride_w = 2;
  c.pad_top = 0; c.pad_bottom = 1; c.pad_left = 1; c.pad_right = 1;
  auto x = ctdet::testing::random_vec<double>(c.x_numel(), 81), w = ctdet::testing::random_vec<double>(c.w_numel(), 82);
  auto b = ctdet::testing::random_vec<double>(c.K, 83), g = ctdet::testing::random_vec<double>(c.K, 84, 0.5, 1.5);
  auto be = ctdet::testing::random_vec<double>(c.K, 85), m = ctdet::testing::random_vec<double>(c.K, 86);
  auto v = ctdet::testing::random_vec<double>(c.K, 87, 0.2, 2.0);
  const double eps = 1e-3;
  for (bool with_bias : {false, true}) {
    c.has_bias = with_bias;
    std::vector<double> y(c.y_numel()), ref(c.y_numel()), wf(w.size()), bf(c.K), yf(c.y_numel());
    conv2d_forward_cpu<double>(c, x.data(), w.data(), b.data(), y.data(), nullptr);
    BatchNormParams p;
    p.N = c.N; p.C = c.K; p.H = c.out_h(); p.W = c.out_w(); p.eps = eps;
    batchnorm_frozen_forward_cpu<double>(p, y.data(), g.data(), be.data(), m.data(), v.data(), ref.data());
    fold_frozen_bn_into_conv<double>(c, w.data(), with_bias ? b.data() : nullptr, g.data(), be.data(), m.data(),
                                     v.data(), eps, wf.data(), bf.data());
    Conv2dParams cf = c;
    cf.has_bias = true;
    conv2d_forward_cpu<double>(cf, x.data(), wf.data(), bf.data(), yf.data(), nullptr);
    expect_close(std::string("fold bn into conv") + (with_bias ? " (conv bias)" : " (no conv bias)"), yf, ref, 1e-12);
  }
}

TEST(BatchNorm, BadInputs) {
  BatchNormParams p;
  p.N = 1; p.C = 3; p.H = 1; p.W = 1;
  EXPECT_NO_THROW(validate_batchnorm(p, false));
  try {
    validate_batchnorm(p, true);
    ADD_FAILURE() << "no error for a single value per channel in training";
  } catch (const Error& e) {
    std::printf("expected error: %s\n", e.what());
    EXPECT_NE(std::string(e.what()).find("batchnorm"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("N*H*W=1"), std::string::npos);
  }
  p.eps = 0;
  EXPECT_THROW(validate_batchnorm(p, false), Error);
  p.eps = 1e-5; p.C = 0;
  EXPECT_THROW(validate_batchnorm(p, false), Error);
}

}  // namespace
