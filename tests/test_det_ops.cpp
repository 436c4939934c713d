// Detection ops on the CPU: crop_and_resize (TF), roi_align (torchvision), anchors, box coder, window ops,
// IoU, sort/top-k, NMS and the seeded sampler. References: torchvision / numpy fixtures made by
// tests/fixtures/make_det_fixtures.py, hand-computed values, central differences in double, brute force.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>
#include <vector>

#include "io/npy.h"
#include "kernels/boxes.h"
#include "kernels/crop_and_resize.h"
#include "kernels/roi_align.h"
#include "test_util.h"

using namespace ctdet;
using ctdet::testing::compare;
using ctdet::testing::fixture_path;
using ctdet::testing::print_err;

namespace {

template <typename T>
std::vector<T> load(const std::string& name) {
  return read_npy(fixture_path("det/" + name + ".npy")).as<T>();
}

// Central-difference check of a linear-in-x op: L(x) = sum(dy * f(x)); dL/dx vs the analytic gradient.
template <typename F>
double grad_check(std::vector<double> x, const std::vector<double>& dy, const std::vector<double>& analytic, F f) {
  const double h = 1e-5;
  std::vector<double> y(dy.size());
  double max_err = 0;
  for (size_t i = 0; i < x.size(); i += 1) {
    const double keep = x[i];
    x[i] = keep + h;
    f(x.data(), y.data());
    double lp = 0;
    for (size_t k = 0; k < y.size(); ++k) lp += dy[k] * y[k];
    x[i] = keep - h;
    f(x.data(), y.data());
    double lm = 0;
    for (size_t k = 0; k < y.size(); ++k) lm += dy[k] * y[k];
    x[i] = keep;
    max_err = std::max(max_err, std::abs((lp - lm) / (2 * h) - analytic[i]));
  }
  return max_err;
}

template <typename E>
void expect_error_mentions(E&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected ctdet::Error mentioning '" << needle << "'";
  } catch (const Error& e) {
    std::printf("[error] %s\n", e.what());
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace

// =============================================================================== crop_and_resize
TEST(CropAndResize, MatchesNumpyReference) {
  const auto x = load<double>("cr_x");
  const auto boxes = load<double>("cr_boxes");
  const auto idx = load<int32_t>("cr_index");
  for (auto [ch, cw] : {std::pair<int, int>{5, 4}, {1, 3}}) {
    CropAndResizeParams p{2, 3, 7, 9, 6, ch, cw, 0.f};
    const std::string tag = "cr_" + std::to_string(ch) + "x" + std::to_string(cw);
    const auto y_ref = load<double>(tag + "_y");
    const auto dy = load<double>(tag + "_dy");
    const auto dx_ref = load<double>(tag + "_dx");
    ASSERT_EQ(y_ref.size(), size_t(crop_and_resize_output_numel(p)));
    std::vector<double> y(y_ref.size()), dx(x.size());
    crop_and_resize_forward_cpu(p, x.data(), boxes.data(), idx.data(), y.data());
    auto e = compare(y, y_ref);
    print_err("crop_and_resize fwd vs numpy " + tag, e);
    EXPECT_LT(e.max_abs, 1e-12);
    crop_and_resize_backward_cpu(p, dy.data(), boxes.data(), idx.data(), dx.data(), false);
    e = compare(dx, dx_ref);
    print_err("crop_and_resize bwd vs numpy " + tag, e);
    EXPECT_LT(e.max_abs, 1e-12);
    // float path against the same reference
    std::vector<float> xf(x.begin(), x.end()), bf(boxes.begin(), boxes.end()), yf(y.size());
    crop_and_resize_forward_cpu(p, xf.data(), bf.data(), idx.data(), yf.data());
    e = compare(yf, y_ref);
    print_err("crop_and_resize fwd float " + tag, e);
    EXPECT_LT(e.max_abs, 1e-5);
  }
}

TEST(CropAndResize, HandComputedCells) {
  // f[y][x] on a 3x3 map: H-1 = W-1 = 2, so normalised c maps to 2c.
  const std::vector<double> f = {1, 2, 4, 8, 16, 32, 64, 128, 256};
  const std::vector<double> boxes = {
      0.25, 0.5, 0.75, 1.0,    // rows y = 0.5, 1.5; cols x = 1, 2
      0.25, -0.5, 0.75, 0.25,  // cols x = -1 (outside), 0.5
  };
  const std::vector<int32_t> idx = {0, 0};
  CropAndResizeParams p{1, 1, 3, 3, 2, 2, 2, -1.f};
  std::vector<double> y(8);
  crop_and_resize_forward_cpu(p, f.data(), boxes.data(), idx.data(), y.data());
  // box 0 cell (0,0): y=0.5, x=1 -> (f[0][1] + f[1][1]) / 2 = (2 + 16) / 2 = 9
  EXPECT_DOUBLE_EQ(y[0], 9.0);
  // box 0 cell (0,1): y=0.5, x=2 -> (4 + 32) / 2 = 18;  cell (1,1): y=1.5, x=2 -> (32 + 256) / 2 = 144
  EXPECT_DOUBLE_EQ(y[1], 18.0);
  EXPECT_DOUBLE_EQ(y[3], 144.0);
  // box 1 cell (0,0): x = -1 is outside -> extrapolation value -1
  EXPECT_DOUBLE_EQ(y[4], -1.0);
  // box 1 cell (0,1): y=0.5, x=0.5 -> (1 + 2 + 8 + 16) / 4 = 6.75
  EXPECT_DOUBLE_EQ(y[5], 6.75);
  // crop 1x1 samples the centre: box (0,0,0.5,1) -> y = 0.5, x = 1 -> 9
  CropAndResizeParams p1{1, 1, 3, 3, 1, 1, 1, 0.f};
  const std::vector<double> b1 = {0, 0, 0.5, 1};
  double y1 = 0;
  crop_and_resize_forward_cpu(p1, f.data(), b1.data(), idx.data(), &y1);
  EXPECT_DOUBLE_EQ(y1, 9.0);
  std::printf("[hand] crop_and_resize cells: %g %g %g %g %g centre %g\n", y[0], y[1], y[3], y[4], y[5], y1);
}

TEST(CropAndResize, CentralDifferenceAndAccumulate) {
  CropAndResizeParams p{2, 2, 6, 5, 4, 3, 4, 0.f};
  const auto x = ctdet::testing::random_vec<double>(size_t(p.N * p.C * p.H * p.W), 11);
  const std::vector<double> boxes = {0.13, 0.07, 0.71, 0.93, -0.2, 0.31, 0.66, 1.17, 0.81, 0.77, 0.11, 0.23,
                                     0.35, 0.41, 0.37, 0.44};
  const std::vector<int32_t> idx = {1, 0, 1, 0};
  const auto dy = ctdet::testing::random_vec<double>(size_t(crop_and_resize_output_numel(p)), 12);
  std::vector<double> dx(x.size());
  crop_and_resize_backward_cpu(p, dy.data(), boxes.data(), idx.data(), dx.data(), false);
  const double err = grad_check(x, dy, dx, [&](const double* xx, double* yy) {
    crop_and_resize_forward_cpu(p, xx, boxes.data(), idx.data(), yy);
  });
  std::printf("[err] crop_and_resize dx central difference max_abs=%.3e\n", err);
  EXPECT_LT(err, 1e-8);
  // accumulate: prefill + gradient
  auto acc = ctdet::testing::random_vec<double>(x.size(), 13);
  std::vector<double> expect(x.size());
  for (size_t i = 0; i < x.size(); ++i) expect[i] = acc[i] + dx[i];
  crop_and_resize_backward_cpu(p, dy.data(), boxes.data(), idx.data(), acc.data(), true);
  const auto e = compare(acc, expect);
  print_err("crop_and_resize dx accumulate", e);
  EXPECT_LT(e.max_abs, 1e-12);
}

TEST(CropAndResize, BadInputNamesTheRow) {
  CropAndResizeParams p{2, 1, 4, 4, 2, 2, 2, 0.f};
  std::vector<float> x(32, 1.f), y(8);
  std::vector<float> boxes = {0, 0, 1, 1, 0, 0, 1, 1};
  std::vector<int32_t> idx = {0, 2};
  expect_error_mentions([&] { crop_and_resize_forward_cpu(p, x.data(), boxes.data(), idx.data(), y.data()); },
                        "box_index[1] = 2");
  idx[1] = 1;
  boxes[6] = std::numeric_limits<float>::quiet_NaN();
  expect_error_mentions([&] { crop_and_resize_forward_cpu(p, x.data(), boxes.data(), idx.data(), y.data()); },
                        "box row 1 coordinate 2");
  p.crop_h = 0;
  expect_error_mentions([&] { validate_crop_and_resize(p); }, "crop size");
}

// =============================================================================== roi_align
TEST(RoiAlign, MatchesTorchvision) {
  const auto x = load<double>("ra_x");
  const auto rois = load<double>("ra_rois");
  const auto dy = load<double>("ra_dy");
  for (int aligned = 0; aligned < 2; ++aligned)
    for (int sr : {2, 0}) {
      RoiAlignParams p;
      p.N = 2, p.C = 3, p.H = 10, p.W = 12, p.R = 7, p.pooled_h = 3, p.pooled_w = 4;
      p.spatial_scale = 0.5f, p.sampling_ratio = sr, p.aligned = aligned != 0;
      const std::string tag = "ra_a" + std::to_string(aligned) + "_s" + std::to_string(sr);
      const auto y_ref = load<double>(tag + "_y");
      const auto dx_ref = load<double>(tag + "_dx");
      ASSERT_EQ(y_ref.size(), size_t(roi_align_output_numel(p)));
      std::vector<double> y(y_ref.size()), dx(x.size());
      roi_align_forward_cpu(p, x.data(), rois.data(), y.data());
      auto e = compare(y, y_ref);
      print_err("roi_align fwd vs torchvision " + tag, e);
      EXPECT_LT(e.max_abs, 1e-12);
      roi_align_backward_cpu(p, dy.data(), rois.data(), dx.data(), false);
      e = compare(dx, dx_ref);
      print_err("roi_align bwd vs torchvision " + tag, e);
      EXPECT_LT(e.max_abs, 1e-12);
      std::vector<float> xf(x.begin(), x.end()), rf(rois.begin(), rois.end()), yf(y.size());
      roi_align_forward_cpu(p, xf.data(), rf.data(), yf.data());
      e = compare(yf, y_ref);
      print_err("roi_align fwd float " + tag, e);
      EXPECT_LT(e.max_abs, 1e-5);
    }
}

TEST(RoiAlign, CentralDifferenceAndAccumulate) {
  for (bool aligned : {false, true}) {
    RoiAlignParams p;
    p.N = 2, p.C = 2, p.H = 7, p.W = 6, p.R = 3, p.pooled_h = 2, p.pooled_w = 3;
    p.spatial_scale = 0.25f, p.sampling_ratio = aligned ? 0 : 2, p.aligned = aligned;
    const auto x = ctdet::testing::random_vec<double>(size_t(p.N * p.C * p.H * p.W), 21);
    const std::vector<double> rois = {1, 1.3, 2.9, 17.1, 22.7, 0, -5.1, -3.3, 9.7, 11.9, 1, 10.2, 12.6, 30.1, 33.3};
    const auto dy = ctdet::testing::random_vec<double>(size_t(roi_align_output_numel(p)), 22);
    std::vector<double> dx(x.size());
    roi_align_backward_cpu(p, dy.data(), rois.data(), dx.data(), false);
    const double err = grad_check(x, dy, dx, [&](const double* xx, double* yy) {
      roi_align_forward_cpu(p, xx, rois.data(), yy);
    });
    std::printf("[err] roi_align dx central difference (aligned=%d) max_abs=%.3e\n", int(aligned), err);
    EXPECT_LT(err, 1e-8);
    auto acc = ctdet::testing::random_vec<double>(x.size(), 23);
    std::vector<double> expect(x.size());
    for (size_t i = 0; i < x.size(); ++i) expect[i] = acc[i] + dx[i];
    roi_align_backward_cpu(p, dy.data(), rois.data(), acc.data(), true);
    const auto e = compare(acc, expect);
    print_err("roi_align dx accumulate", e);
    EXPECT_LT(e.max_abs, 1e-12);
  }
}

TEST(RoiAlign, BadInputNamesTheRow) {
  RoiAlignParams p;
  p.N = 2, p.C = 1, p.H = 4, p.W = 4, p.R = 2;
  std::vector<float> x(32), y(size_t(roi_align_output_numel(p)));
  std::vector<float> rois = {0, 0, 0, 8, 8, 2, 0, 0, 8, 8};
  expect_error_mentions([&] { roi_align_forward_cpu(p, x.data(), rois.data(), y.data()); }, "roi row 1 batch index 2");
  rois[5] = 0.5f;
  expect_error_mentions([&] { roi_align_forward_cpu(p, x.data(), rois.data(), y.data()); }, "roi row 1 batch index 0.5");
  rois[5] = 1;
  rois[3] = std::numeric_limits<float>::infinity();
  expect_error_mentions([&] { roi_align_forward_cpu(p, x.data(), rois.data(), y.data()); }, "roi row 0 column 3");
}

// =============================================================================== anchors
TEST(Anchors, CountOrderAndSizesMatchSpecTable) {
  AnchorParams p;  // TF-OD defaults: base 256, scales {0.25,0.5,1,2}, ratios {0.5,1,2}, stride 16, offset 0
  const int64_t Hf = 38, Wf = 50;
  ASSERT_EQ(anchor_count(p, Hf, Wf), 22800);  // spec §10
  std::vector<double> a(size_t(anchor_count(p, Hf, Wf)) * 4);
  generate_anchors_cpu(p, Hf, Wf, a.data());
  // spec §4.1 table (h x w), index = ar_idx*4 + scale_idx
  const double table_h[3][4] = {{90.51, 181.02, 362.04, 724.08}, {64, 128, 256, 512}, {45.25, 90.51, 181.02, 362.04}};
  const double table_w[3][4] = {{45.25, 90.51, 181.02, 362.04}, {64, 128, 256, 512}, {90.51, 181.02, 362.04, 724.08}};
  double max_err = 0;
  for (int64_t loc : {int64_t(0), int64_t(1), int64_t(Wf), int64_t(7 * Wf + 13), int64_t(Hf * Wf - 1)}) {
    const double cy = double(loc / Wf) * 16, cx = double(loc % Wf) * 16;
    for (int ar = 0; ar < 3; ++ar)
      for (int sc = 0; sc < 4; ++sc) {
        const double* b = &a[size_t((loc * 12 + ar * 4 + sc) * 4)];
        max_err = std::max({max_err, std::abs((b[3] - b[1]) - table_h[ar][sc]), std::abs((b[2] - b[0]) - table_w[ar][sc])});
        EXPECT_NEAR(0.5 * (b[0] + b[2]), cx, 1e-9);
        EXPECT_NEAR(0.5 * (b[1] + b[3]), cy, 1e-9);
      }
  }
  std::printf("[err] anchor sizes vs spec table (2 decimals) max_abs=%.3e\n", max_err);
  EXPECT_LT(max_err, 0.006);
  // exact values of one anchor: location (y=1, x=2), ar 2 (index 2), scale 0.5 -> h = 128/sqrt(2), w = 128*sqrt(2)
  const double* b = &a[size_t(((1 * Wf + 2) * 12 + 2 * 4 + 1) * 4)];
  const double h = 128 / std::sqrt(2.0), w = 128 * std::sqrt(2.0);
  EXPECT_NEAR(b[0], 32 - w / 2, 1e-9);
  EXPECT_NEAR(b[1], 16 - h / 2, 1e-9);
  EXPECT_NEAR(b[2], 32 + w / 2, 1e-9);
  EXPECT_NEAR(b[3], 16 + h / 2, 1e-9);
  AnchorParams bad = p;
  bad.num_scales = 0;
  expect_error_mentions([&] { generate_anchors_cpu(bad, 2, 2, a.data()); }, "num_scales");
}

// =============================================================================== box coder
TEST(BoxCoder, HandValueAndRoundTrip) {
  BoxCoderParams p;
  // anchor x1,y1,x2,y2 = (0,0,10,20): ha 20, wa 10, centre (5,10); box (5,5,15,25): centre (10,15), 20x10
  const double anchor[4] = {0, 0, 10, 20}, box[4] = {5, 5, 15, 25};
  double code[4];
  box_encode_cpu(p, 1, box, anchor, code);
  EXPECT_NEAR(code[0], 10 * 5.0 / 20, 1e-6);  // ty
  EXPECT_NEAR(code[1], 10 * 5.0 / 10, 1e-6);  // tx
  EXPECT_NEAR(code[2], 0, 1e-6);              // th
  EXPECT_NEAR(code[3], 0, 1e-6);              // tw
  std::printf("[hand] encode (ty,tx,th,tw) = %g %g %g %g (expect 2.5 5 0 0)\n", code[0], code[1], code[2], code[3]);

  const int64_t n = 500;
  auto r = ctdet::testing::random_vec<double>(size_t(n) * 8, 31, 0, 1);
  std::vector<double> boxes(size_t(n) * 4), anchors(size_t(n) * 4), codes(size_t(n) * 4), back(size_t(n) * 4);
  for (int64_t i = 0; i < n; ++i) {
    double* b = &boxes[size_t(i) * 4];
    double* a = &anchors[size_t(i) * 4];
    const double* u = &r[size_t(i) * 8];
    b[0] = 600 * u[0], b[1] = 600 * u[1], b[2] = b[0] + 1 + 300 * u[2], b[3] = b[1] + 1 + 300 * u[3];
    a[0] = 600 * u[4], a[1] = 600 * u[5], a[2] = a[0] + 16 + 500 * u[6], a[3] = a[1] + 16 + 500 * u[7];
  }
  box_encode_cpu(p, n, boxes.data(), anchors.data(), codes.data());
  box_decode_cpu(p, n, 1, codes.data(), anchors.data(), back.data());
  auto e = compare(back, boxes);
  print_err("box encode/decode round trip (double)", e);
  EXPECT_LT(e.max_abs, 1e-5);  // the 1e-8 eps of encode
  std::vector<float> bf(boxes.begin(), boxes.end()), af(anchors.begin(), anchors.end()), cf(bf.size()), kf(bf.size());
  box_encode_cpu(p, n, bf.data(), af.data(), cf.data());
  box_decode_cpu(p, n, 1, cf.data(), af.data(), kf.data());
  e = compare(kf, boxes);
  print_err("box encode/decode round trip (float)", e);
  EXPECT_LT(e.max_abs, 2e-3);

  // k = 2 codes per anchor and the torchvision clamp on th/tw
  BoxCoderParams pc;
  pc.clamp = float(kTorchvisionDeltaClamp);
  const double codes2[8] = {0, 0, 0, 0, 0, 0, 5 * 10.0, 5 * 10.0};  // th = tw = 10 before clamping
  double out2[8];
  box_decode_cpu(pc, 1, 2, codes2, anchor, out2);
  EXPECT_NEAR(out2[2] - out2[0], 10, 1e-9);
  EXPECT_NEAR(out2[3] - out2[1], 20, 1e-9);
  EXPECT_NEAR(out2[6] - out2[4], 10 * 1000.0 / 16, 1e-3);
  EXPECT_NEAR(out2[7] - out2[5], 20 * 1000.0 / 16, 1e-3);
}

// =============================================================================== window ops, IoU
TEST(Boxes, ClipAndPrune) {
  const double window[4] = {0, 0, 100, 80};
  const double boxes[] = {-10, -5, 50, 40, 20, 30, 120, 90, 110, 10, 130, 20, 10, 10, 20, 20, 0, 0, 100, 80};
  double out[20];
  uint8_t nonempty[5], inside[5];
  clip_boxes_cpu(5, boxes, window, out, nonempty);
  const double expect[] = {0, 0, 50, 40, 20, 30, 100, 80, 100, 10, 100, 20, 10, 10, 20, 20, 0, 0, 100, 80};
  for (int i = 0; i < 20; ++i) EXPECT_DOUBLE_EQ(out[i], expect[i]) << i;
  const uint8_t ne_expect[] = {1, 1, 0, 1, 1};  // the box right of the window collapses to zero width
  const uint8_t in_expect[] = {0, 0, 0, 1, 1};
  prune_outside_window_cpu(5, boxes, window, inside);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(nonempty[i], ne_expect[i]) << i;
    EXPECT_EQ(inside[i], in_expect[i]) << i;
  }
}

TEST(Boxes, IouMatchesTorchvision) {
  const auto a = load<float>("iou_a"), b = load<float>("iou_b"), ref = load<float>("iou_ab");
  std::vector<float> iou(ref.size());
  box_iou_cpu(7, 9, a.data(), b.data(), iou.data());
  const auto e = compare(iou, ref);
  print_err("box_iou vs torchvision", e);
  EXPECT_LT(e.max_abs, 1e-6);
  // degenerate: zero-area boxes give 0, not NaN
  const float z[8] = {5, 5, 5, 5, 5, 5, 5, 5};
  float out = -1;
  box_iou_cpu(1, 1, z, z + 4, &out);
  EXPECT_EQ(out, 0.f);
}

// =============================================================================== sort / top-k
TEST(Sort, StableDescendingWithTiesAndSignedZero) {
  const std::vector<float> s = {0.5f, 0.9f, 0.5f, -0.0f, 0.9f, 0.0f, -1.f, 0.5f};
  std::vector<int32_t> order(s.size());
  sort_by_score_cpu(int64_t(s.size()), s.data(), order.data());
  const std::vector<int32_t> expect = {1, 4, 0, 2, 7, 3, 5, 6};
  EXPECT_EQ(order, expect);
  std::vector<int32_t> idx(10);
  std::vector<float> val(10);
  topk_cpu(int64_t(s.size()), s.data(), 10, idx.data(), val.data());
  EXPECT_EQ(idx[2], 0);
  EXPECT_EQ(idx[8], -1);
  EXPECT_EQ(val[1], 0.9f);
  std::vector<float> bad = {1.f, std::nanf("")};
  expect_error_mentions([&] { sort_by_score_cpu(2, bad.data(), order.data()); }, "score 1 is NaN");
}

// =============================================================================== NMS
TEST(Nms, MatchesTorchvisionWithTies) {
  const auto boxes = load<float>("nms_boxes"), scores = load<float>("nms_scores");
  const int64_t n = int64_t(scores.size());
  for (int t : {5, 7}) {
    const auto ref = load<int32_t>("nms_keep_" + std::to_string(t));
    NmsParams p;
    p.iou_threshold = float(t) / 10.f;
    p.max_output = n;
    std::vector<int32_t> keep(static_cast<size_t>(n));
    const int64_t count = nms_cpu(p, n, boxes.data(), scores.data(), keep.data());
    ASSERT_EQ(count, int64_t(ref.size())) << "threshold " << p.iou_threshold;
    size_t mismatches = 0;
    for (size_t i = 0; i < ref.size(); ++i) mismatches += keep[i] != ref[i];
    std::printf("[err] nms vs torchvision thr %.1f: kept %lld, index mismatches %zu\n", p.iou_threshold,
                (long long)count, mismatches);
    EXPECT_EQ(mismatches, 0u);
    for (int64_t i = count; i < n; ++i) EXPECT_EQ(keep[size_t(i)], -1);
    // max_output caps the list: the first 5 of the full result, padded with -1
    p.max_output = 5;
    std::vector<int32_t> k5(5);
    ASSERT_EQ(nms_cpu(p, n, boxes.data(), scores.data(), k5.data()), 5);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(k5[size_t(i)], ref[size_t(i)]);
  }
}

TEST(Nms, MatchesBruteForceOnRandomSets) {
  std::mt19937 rng(7);
  size_t total_kept = 0;
  // Trials 30-32 have the proposal stage's sizes: thousands of boxes, 300 kept at IoU 0.7 long before the end.
  for (int trial = 0; trial < 33; ++trial) {
    const bool big = trial >= 30;
    const int64_t n = big ? 3000 + 1000 * (trial - 30) : 1 + trial * 7;
    const float extent = big ? 600.f : 50.f;
    std::uniform_real_distribution<float> u(0, 1);
    std::vector<float> boxes(size_t(n) * 4), scores(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const float x = extent * u(rng), y = extent * u(rng), w = 1 + 30 * u(rng), h = 1 + 30 * u(rng);
      boxes[size_t(i) * 4 + 0] = x, boxes[size_t(i) * 4 + 1] = y;
      boxes[size_t(i) * 4 + 2] = x + w, boxes[size_t(i) * 4 + 3] = y + h;
      scores[size_t(i)] = std::floor(u(rng) * 5) / 5;  // ties
    }
    NmsParams p;
    p.iou_threshold = big ? 0.7f : 0.3f + 0.02f * float(trial % 10);
    p.max_output = big ? 300 : 1 + trial % 17;
    // brute force: repeatedly take the best remaining box (highest score, lowest index), drop overlaps
    std::vector<uint8_t> alive(size_t(n), 1);
    std::vector<int32_t> expect;
    while (int64_t(expect.size()) < p.max_output) {
      int64_t best = -1;
      for (int64_t i = 0; i < n; ++i)
        if (alive[size_t(i)] && (best < 0 || scores[size_t(i)] > scores[size_t(best)])) best = i;
      if (best < 0) break;
      expect.push_back(int32_t(best));
      alive[size_t(best)] = 0;
      for (int64_t j = 0; j < n; ++j) {
        const float* a = &boxes[size_t(best) * 4];
        const float* b = &boxes[size_t(j) * 4];
        const double iw = std::min(a[2], b[2]) - std::max(a[0], b[0]), ih = std::min(a[3], b[3]) - std::max(a[1], b[1]);
        if (iw <= 0 || ih <= 0) continue;
        const double inter = iw * ih;
        const double iou = inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter);
        if (iou > p.iou_threshold) alive[size_t(j)] = 0;
      }
    }
    std::vector<int32_t> keep(size_t(p.max_output));
    const int64_t count = nms_cpu(p, n, boxes.data(), scores.data(), keep.data());
    ASSERT_EQ(count, int64_t(expect.size())) << "trial " << trial;
    for (size_t i = 0; i < expect.size(); ++i) EXPECT_EQ(keep[i], expect[i]) << "trial " << trial << " pos " << i;
    total_kept += expect.size();
  }
  std::printf("[check] nms vs brute force: 33 random sets, %zu kept indices compared\n", total_kept);
}

TEST(Nms, BadParams) {
  NmsParams p;
  p.max_output = 0;
  float b[4] = {0, 0, 1, 1}, s = 1;
  int32_t k = 0;
  expect_error_mentions([&] { nms_cpu(p, 1, b, &s, &k); }, "max_output");
  p.max_output = 1;
  p.iou_threshold = 1.5f;
  expect_error_mentions([&] { nms_cpu(p, 1, b, &s, &k); }, "iou_threshold");
}

// =============================================================================== sampler
namespace {
std::vector<int32_t> make_labels(int64_t n, int64_t npos, int64_t nneg, uint64_t seed) {
  std::vector<int32_t> l(size_t(n), -1);
  std::vector<int32_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937_64(seed));
  for (int64_t i = 0; i < npos; ++i) l[size_t(perm[size_t(i)])] = 1;
  for (int64_t i = npos; i < npos + nneg; ++i) l[size_t(perm[size_t(i)])] = 0;
  return l;
}
}  // namespace

TEST(Sampler, FractionsCountsAndValidity) {
  struct Case {
    int64_t batch;
    double frac;
    int64_t npos, nneg, exp_pos, exp_neg;
  };
  const Case cases[] = {
      {256, 0.5, 900, 15000, 128, 128},  // plenty of both
      {256, 0.5, 10, 15000, 10, 246},    // few positives: negatives fill
      {256, 0.5, 900, 40, 128, 40},      // few negatives: fewer than 256 in total
      {64, 0.25, 100, 200, 16, 48},      // box classifier
      {64, 0.25, 0, 0, 0, 0},            // nothing to sample
  };
  for (const auto& c : cases) {
    const int64_t n = 20000;
    const auto labels = make_labels(n, c.npos, c.nneg, 99);
    SamplerParams p{c.batch, c.frac, 1234};
    std::vector<int32_t> sel(size_t(c.batch));
    int64_t np = -1, nn = -1;
    balanced_sample_cpu(p, n, labels.data(), sel.data(), &np, &nn);
    EXPECT_EQ(np, c.exp_pos);
    EXPECT_EQ(nn, c.exp_neg);
    std::set<int32_t> uniq;
    for (int64_t i = 0; i < c.batch; ++i) {
      const int32_t s = sel[size_t(i)];
      if (i < np) EXPECT_EQ(labels[size_t(s)], 1);
      else if (i < np + nn) EXPECT_EQ(labels[size_t(s)], 0);
      else EXPECT_EQ(s, -1);
      if (s >= 0) uniq.insert(s);
    }
    EXPECT_EQ(int64_t(uniq.size()), np + nn);
    std::printf("[check] sampler batch %lld frac %.2f (pos %lld, neg %lld) -> %lld pos + %lld neg\n",
                (long long)c.batch, c.frac, (long long)c.npos, (long long)c.nneg, (long long)np, (long long)nn);
  }
}

TEST(Sampler, DeterministicPerSeedAndUniformish) {
  const int64_t n = 5000;
  const auto labels = make_labels(n, 1000, 3000, 5);
  SamplerParams p{256, 0.5, 42};
  std::vector<int32_t> a(256), b(256), c(256);
  int64_t np, nn;
  balanced_sample_cpu(p, n, labels.data(), a.data(), &np, &nn);
  balanced_sample_cpu(p, n, labels.data(), b.data(), &np, &nn);
  EXPECT_EQ(a, b);
  p.seed = 43;
  balanced_sample_cpu(p, n, labels.data(), c.data(), &np, &nn);
  size_t same = 0;
  std::set<int32_t> sa(a.begin(), a.end());
  for (int32_t v : c) same += sa.count(v);
  std::printf("[check] sampler seeds 42 vs 43: %zu of 256 picks shared (expect about 128*128/1000 + 128*128/3000 = 22)\n", same);
  EXPECT_NE(a, c);
  EXPECT_LT(same, 80u);
  // Uniformity: over 200 seeds every positive is picked with probability 128/1000.
  std::vector<int> hits(size_t(n), 0);
  for (uint64_t s = 0; s < 200; ++s) {
    p.seed = s;
    balanced_sample_cpu(p, n, labels.data(), a.data(), &np, &nn);
    for (int64_t i = 0; i < np; ++i) hits[size_t(a[size_t(i)])]++;
  }
  double sum = 0, sum2 = 0;
  int maxh = 0;
  for (int64_t i = 0; i < n; ++i)
    if (labels[size_t(i)] == 1) {
      sum += hits[size_t(i)], sum2 += double(hits[size_t(i)]) * hits[size_t(i)];
      maxh = std::max(maxh, hits[size_t(i)]);
    }
  const double mean = sum / 1000, sd = std::sqrt(sum2 / 1000 - mean * mean);
  // binomial(200, 0.128): mean 25.6, sd 4.72
  std::printf("[check] sampler positive hits over 200 seeds: mean %.2f sd %.2f (binomial: 25.6, 4.72), max %d\n",
              mean, sd, maxh);
  EXPECT_NEAR(mean, 25.6, 1e-9);
  EXPECT_GT(sd, 3.8);
  EXPECT_LT(sd, 5.8);
  EXPECT_LT(maxh, 50);
}

TEST(Sampler, SampleIndicesAndBadLabels) {
  std::vector<uint8_t> cand = {0, 1, 1, 0, 1};
  std::vector<int32_t> out(5);
  EXPECT_EQ(sample_indices_cpu(5, cand.data(), 5, 3, out.data()), 3);
  std::set<int32_t> got(out.begin(), out.begin() + 3);
  EXPECT_EQ(got, (std::set<int32_t>{1, 2, 4}));
  EXPECT_EQ(out[3], -1);
  std::vector<int32_t> labels = {1, 0, 2};
  std::vector<int32_t> sel(4);
  int64_t np, nn;
  expect_error_mentions([&] { balanced_sample_cpu(SamplerParams{4, 0.5, 0}, 3, labels.data(), sel.data(), &np, &nn); },
                        "label 2 is 2");
}
