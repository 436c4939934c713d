// Detection ops: CUDA vs the CPU reference on the model's real shapes (ResNet-101 block3 1024 channels on a
// 38x38 map, 300 boxes, 20,000-box NMS) and edge cases (boxes outside the image, zero boxes, ties).
// Index outputs (sort, top-k, NMS, sampler) must be IDENTICAL; float outputs within a per-op tolerance.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/boxes.h"
#include "kernels/crop_and_resize.h"
#include "kernels/roi_align.h"
#include "test_util.h"

#if CTDET_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/common/cuda_check.cuh"
#include "nn/cuda_context.h"

using namespace ctdet;
using ctdet::testing::compare;
using ctdet::testing::print_err;

namespace {

// Device buffer owned by the test.
template <typename T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) { CTDET_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T))); }
  explicit Dev(const std::vector<T>& h) : Dev(h.size()) {
    if (n) CTDET_CUDA_CHECK(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
    cudaDeviceSynchronize();  // the copy must land before kernels on the non-blocking stream read it
  }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  std::vector<T> host() const {
    std::vector<T> h(n);
    cudaDeviceSynchronize();  // wait for the work stream (non-blocking) before reading
    if (n) CTDET_CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
};

// Normalised TF boxes: mostly inside, some partly/fully outside, some zero-size, some flipped.
std::vector<float> make_tf_boxes(int64_t R, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> b(static_cast<size_t>(R) * 4);
  for (int64_t r = 0; r < R; ++r) {
    float* q = &b[static_cast<size_t>(r) * 4];
    const int kind = int(r % 10);
    float y1 = u(rng), x1 = u(rng);
    float y2 = y1 + 0.5f * u(rng), x2 = x1 + 0.5f * u(rng);
    if (kind == 7) y1 -= 0.6f, x2 += 0.7f;            // partly outside
    if (kind == 8) y1 = y2 = 0.37f, x1 = x2 = 0.61f;  // zero box
    if (kind == 9) y1 += 1.5f, y2 += 1.6f;            // fully outside
    if (kind == 6) std::swap(y1, y2);                 // flipped
    q[0] = y1, q[1] = x1, q[2] = y2, q[3] = x2;
  }
  return b;
}

std::vector<float> make_pixel_boxes(int64_t n, uint64_t seed, float extent, float max_side) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> b(static_cast<size_t>(n) * 4);
  for (int64_t i = 0; i < n; ++i) {
    const float x = extent * u(rng) - 20, y = extent * u(rng) - 20;
    b[static_cast<size_t>(i) * 4 + 0] = x, b[static_cast<size_t>(i) * 4 + 1] = y;
    b[static_cast<size_t>(i) * 4 + 2] = x + 1 + max_side * u(rng), b[static_cast<size_t>(i) * 4 + 3] = y + 1 + max_side * u(rng);
  }
  return b;
}

}  // namespace

TEST(CropAndResizeGpu, MatchesCpuOnResnetShape) {
  CTDET_REQUIRE_GPU();
  CudaContext ctx(0);
  CropAndResizeParams p{1, 1024, 38, 38, 300, 14, 14, 0.f};
  const auto x = ctdet::testing::random_vec<float>(static_cast<size_t>(p.N * p.C * p.H * p.W), 1);
  const auto boxes = make_tf_boxes(p.R, 2);
  std::vector<int32_t> idx(static_cast<size_t>(p.R), 0);
  const size_t ny = size_t(crop_and_resize_output_numel(p));
  std::vector<float> y_cpu(ny), dx_cpu(x.size());
  crop_and_resize_forward_cpu(p, x.data(), boxes.data(), idx.data(), y_cpu.data());
  const auto dy = ctdet::testing::random_vec<float>(ny, 3);
  crop_and_resize_backward_cpu(p, dy.data(), boxes.data(), idx.data(), dx_cpu.data(), false);

  Dev<float> dx_(x), db(boxes), ddy(dy), dy_out(ny), ddx(x.size());
  Dev<int32_t> didx(idx), scratch(1);
  crop_and_resize_check_cuda(ctx, p, db.p, didx.p, scratch.p);
  crop_and_resize_forward_cuda(ctx, p, dx_.p, db.p, didx.p, dy_out.p);
  crop_and_resize_backward_cuda(ctx, p, ddy.p, db.p, didx.p, ddx.p, false);
  ctx.synchronize();
  auto e = compare(dy_out.host(), y_cpu);
  print_err("crop_and_resize fwd cuda vs cpu (300 boxes, 1024x38x38)", e);
  // Inputs in [-1,1]; the device contracts the bilinear weights' products into FMAs (H200: 1.03e-5).
  EXPECT_LT(e.max_abs, 5e-5);
  e = compare(ddx.host(), dx_cpu, 1e-3);
  print_err("crop_and_resize bwd cuda vs cpu", e);
  EXPECT_LT(e.max_abs, 2e-3);  // up to ~300 atomically summed contributions per pixel
  // accumulate: run again on top of the first result -> 2x
  crop_and_resize_backward_cuda(ctx, p, ddy.p, db.p, didx.p, ddx.p, true);
  ctx.synchronize();
  std::vector<float> twice(dx_cpu.size());
  for (size_t i = 0; i < twice.size(); ++i) twice[i] = 2 * dx_cpu[i];
  e = compare(ddx.host(), twice, 1e-3);
  print_err("crop_and_resize bwd cuda accumulate", e);
  EXPECT_LT(e.max_abs, 4e-3);

  // zero boxes: no work, no error
  CropAndResizeParams p0 = p;
  p0.R = 0;
  crop_and_resize_forward_cuda(ctx, p0, dx_.p, db.p, didx.p, dy_out.p);
  crop_and_resize_backward_cuda(ctx, p0, ddy.p, db.p, didx.p, ddx.p, false);
  ctx.synchronize();
  const auto zeros = ddx.host();
  EXPECT_EQ(*std::max_element(zeros.begin(), zeros.end()), 0.f);

  // bad rows are reported by the check
  std::vector<int32_t> bad_idx = idx;
  bad_idx[123] = 5;
  Dev<int32_t> dbad(bad_idx);
  try {
    crop_and_resize_check_cuda(ctx, p, db.p, dbad.p, scratch.p);
    ADD_FAILURE() << "expected an error for row 123";
  } catch (const Error& err) {
    std::printf("[error] %s\n", err.what());
    EXPECT_NE(std::string(err.what()).find("row 123"), std::string::npos);
  }
}

TEST(RoiAlignGpu, MatchesCpu) {
  CTDET_REQUIRE_GPU();
  CudaContext ctx(0);
  for (bool aligned : {false, true})
    for (int sr : {2, 0}) {
      RoiAlignParams p;
      p.N = 2, p.C = 256, p.H = 38, p.W = 50, p.R = 300, p.pooled_h = 7, p.pooled_w = 7;
      p.spatial_scale = 1.f / 16.f, p.sampling_ratio = sr, p.aligned = aligned;
      const auto x = ctdet::testing::random_vec<float>(static_cast<size_t>(p.N * p.C * p.H * p.W), 4);
      const auto pix = make_pixel_boxes(p.R, 5, 820, 300);
      std::vector<float> rois(static_cast<size_t>(p.R) * 5);
      for (int64_t r = 0; r < p.R; ++r) {
        rois[static_cast<size_t>(r) * 5] = float(r % 2);
        for (int k = 0; k < 4; ++k) rois[static_cast<size_t>(r) * 5 + 1 + k] = pix[static_cast<size_t>(r) * 4 + k];
      }
      const size_t ny = size_t(roi_align_output_numel(p));
      std::vector<float> y_cpu(ny), dx_cpu(x.size());
      const auto dy = ctdet::testing::random_vec<float>(ny, 6);
      roi_align_forward_cpu(p, x.data(), rois.data(), y_cpu.data());
      roi_align_backward_cpu(p, dy.data(), rois.data(), dx_cpu.data(), false);
      Dev<float> dx_(x), dr(rois), ddy(dy), dyo(ny), ddx(x.size());
      roi_align_forward_cuda(ctx, p, dx_.p, dr.p, dyo.p);
      roi_align_backward_cuda(ctx, p, ddy.p, dr.p, ddx.p, false);
      ctx.synchronize();
      auto e = compare(dyo.host(), y_cpu);
      print_err(ctdet::str("roi_align fwd cuda vs cpu aligned=", aligned, " sr=", sr), e);
      EXPECT_LT(e.max_abs, 1e-5);
      e = compare(ddx.host(), dx_cpu, 1e-3);
      print_err(ctdet::str("roi_align bwd cuda vs cpu aligned=", aligned, " sr=", sr), e);
      EXPECT_LT(e.max_abs, 1e-3);
    }
}

TEST(BoxesGpu, AnchorsCoderClipIouMatchCpu) {
  CTDET_REQUIRE_GPU();
  CudaContext ctx(0);
  AnchorParams ap;
  const int64_t Hf = 38, Wf = 50, n = anchor_count(ap, Hf, Wf);
  std::vector<float> a_cpu(static_cast<size_t>(n) * 4);
  generate_anchors_cpu(ap, Hf, Wf, a_cpu.data());
  Dev<float> da(static_cast<size_t>(n) * 4);
  generate_anchors_cuda(ctx, ap, Hf, Wf, da.p);
  ctx.synchronize();
  auto e = compare(da.host(), a_cpu);
  print_err("anchors cuda vs cpu (38x50x12)", e);
  EXPECT_LT(e.max_abs, 1e-3);  // same double math; at most a float ulp apart

  BoxCoderParams bp;
  const auto boxes = make_pixel_boxes(n, 7, 800, 400);
  std::vector<float> c_cpu(boxes.size()), d_cpu(boxes.size());
  box_encode_cpu(bp, n, boxes.data(), a_cpu.data(), c_cpu.data());
  box_decode_cpu(bp, n, 1, c_cpu.data(), a_cpu.data(), d_cpu.data());
  Dev<float> db(boxes), dc(boxes.size()), dd(boxes.size());
  box_encode_cuda(ctx, bp, n, db.p, da.p, dc.p);
  box_decode_cuda(ctx, bp, n, 1, dc.p, da.p, dd.p);
  ctx.synchronize();
  e = compare(dc.host(), c_cpu, 1e-2);
  print_err("box_encode cuda vs cpu", e);
  EXPECT_LT(e.max_abs, 1e-4);
  // Errors relative to the image scale (coordinates near 0 come from cancellation of ~800 px terms and
  // expf differs from std::exp by an ulp): floor 1024 px.
  e = compare(dd.host(), d_cpu, 1024.0);
  print_err("box_decode cuda vs cpu (rel to 1024 px)", e);
  EXPECT_LT(e.max_rel, 1e-6);

  const float window[4] = {0, 0, 800, 600};
  std::vector<float> cl_cpu(boxes.size());
  std::vector<uint8_t> ne_cpu(static_cast<size_t>(n)), in_cpu(static_cast<size_t>(n));
  clip_boxes_cpu(n, boxes.data(), window, cl_cpu.data(), ne_cpu.data());
  prune_outside_window_cpu(n, boxes.data(), window, in_cpu.data());
  Dev<float> dcl(boxes.size());
  Dev<uint8_t> dne(static_cast<size_t>(n)), din(static_cast<size_t>(n));
  clip_boxes_cuda(ctx, n, db.p, window, dcl.p, dne.p);
  prune_outside_window_cuda(ctx, n, db.p, window, din.p);
  ctx.synchronize();
  EXPECT_EQ(dcl.host(), cl_cpu);
  EXPECT_EQ(dne.host(), ne_cpu);
  EXPECT_EQ(din.host(), in_cpu);

  const int64_t m = 100;
  std::vector<float> iou_cpu(static_cast<size_t>(n * m));
  box_iou_cpu(n, m, boxes.data(), boxes.data(), iou_cpu.data());
  Dev<float> diou(static_cast<size_t>(n * m));
  box_iou_cuda(ctx, n, m, db.p, db.p, diou.p);
  ctx.synchronize();
  e = compare(diou.host(), iou_cpu);
  print_err("box_iou cuda vs cpu (22800 x 100), expect bit-identical", e);
  EXPECT_EQ(e.max_abs, 0.0);
}

TEST(BoxesGpu, SortAndTopkIdenticalToCpu) {
  CTDET_REQUIRE_GPU();
  CudaContext ctx(0);
  const int64_t n = 22800, k = 300;
  std::mt19937_64 rng(8);
  std::uniform_int_distribution<int> level(-50, 50);
  std::vector<float> s(static_cast<size_t>(n));
  for (auto& v : s) v = float(level(rng)) / 50.f;  // 101 levels: heavy ties
  for (int64_t i = 0; i < n; i += 97) s[static_cast<size_t>(i)] = (i % 2) ? -0.0f : 0.0f;
  std::vector<int32_t> order_cpu(static_cast<size_t>(n)), top_cpu(static_cast<size_t>(k));
  std::vector<float> topv_cpu(static_cast<size_t>(k));
  sort_by_score_cpu(n, s.data(), order_cpu.data());
  topk_cpu(n, s.data(), k, top_cpu.data(), topv_cpu.data());
  Dev<float> ds(s), dsorted(static_cast<size_t>(n)), dtopv(static_cast<size_t>(k));
  Dev<int32_t> dorder(static_cast<size_t>(n)), dtop(static_cast<size_t>(k));
  const size_t ws1 = sort_by_score_cuda_workspace_bytes(n), ws2 = topk_cuda_workspace_bytes(n);
  Dev<char> ws(std::max(ws1, ws2));
  sort_by_score_cuda(ctx, n, ds.p, dorder.p, dsorted.p, ws.p, ws1);
  topk_cuda(ctx, n, ds.p, k, dtop.p, dtopv.p, ws.p, ws2);
  ctx.synchronize();
  const auto order = dorder.host();
  size_t mism = 0;
  for (int64_t i = 0; i < n; ++i) mism += order[static_cast<size_t>(i)] != order_cpu[static_cast<size_t>(i)];
  std::printf("[err] sort cuda vs cpu (22800 scores, ties, +-0): %zu index mismatches\n", mism);
  EXPECT_EQ(mism, 0u);
  EXPECT_EQ(dtop.host(), top_cpu);
  EXPECT_EQ(dtopv.host(), topv_cpu);
  // too small a workspace is an error
  EXPECT_THROW(sort_by_score_cuda(ctx, n, ds.p, dorder.p, nullptr, ws.p, 16), Error);
}

TEST(BoxesGpu, NmsIdenticalToCpu) {
  CTDET_REQUIRE_GPU();
  CudaContext ctx(0);
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(63), int64_t(64), int64_t(65), int64_t(20000)}) {
    auto boxes = make_pixel_boxes(n, 9 + uint64_t(n), 600, 120);
    std::mt19937_64 rng(10);
    std::uniform_int_distribution<int> level(0, 200);
    std::vector<float> s(static_cast<size_t>(n));
    for (auto& v : s) v = float(level(rng)) / 200.f;
    for (int64_t i = 1; i < n; i += 50) {  // duplicate boxes with tied scores
      for (int c = 0; c < 4; ++c) boxes[static_cast<size_t>(i) * 4 + c] = boxes[static_cast<size_t>(i - 1) * 4 + c];
      s[static_cast<size_t>(i)] = s[static_cast<size_t>(i - 1)];
    }
    NmsParams p;
    p.iou_threshold = 0.7f;
    p.max_output = 300;
    std::vector<int32_t> keep_cpu(static_cast<size_t>(p.max_output));
    const int64_t c_cpu = nms_cpu(p, n, boxes.data(), s.data(), keep_cpu.data());
    Dev<float> db(boxes), ds(s);
    Dev<int32_t> dkeep(static_cast<size_t>(p.max_output)), dcount(1);
    const size_t wsb = nms_cuda_workspace_bytes(n);
    Dev<char> ws(wsb);
    nms_cuda(ctx, p, n, db.p, ds.p, dkeep.p, dcount.p, ws.p, wsb);
    ctx.synchronize();
    const auto keep = dkeep.host();
    const int32_t c_gpu = dcount.host()[0];
    size_t mism = 0;
    for (size_t i = 0; i < keep.size(); ++i) mism += keep[i] != keep_cpu[i];
    std::printf("[err] nms cuda vs cpu n=%lld: kept %d vs %lld, %zu index mismatches (workspace %zu bytes)\n",
                (long long)n, c_gpu, (long long)c_cpu, mism, wsb);
    EXPECT_EQ(c_gpu, c_cpu);
    EXPECT_EQ(mism, 0u);
  }
}

TEST(BoxesGpu, SamplerIdenticalToCpu) {
  CTDET_REQUIRE_GPU();
  CudaContext ctx(0);
  const int64_t n = 22800;
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<int> pick(0, 99);
  std::vector<int32_t> labels(static_cast<size_t>(n));
  for (auto& l : labels) {
    const int v = pick(rng);
    l = v < 2 ? 1 : (v < 60 ? 0 : -1);
  }
  Dev<int32_t> dl(labels);
  for (auto [batch, frac, seed] : {std::tuple<int64_t, double, uint64_t>{256, 0.5, 1}, {256, 0.5, 2}, {64, 0.25, 3}}) {
    SamplerParams p{batch, frac, seed};
    std::vector<int32_t> sel_cpu(static_cast<size_t>(batch));
    int64_t np, nn;
    balanced_sample_cpu(p, n, labels.data(), sel_cpu.data(), &np, &nn);
    Dev<int32_t> dsel(static_cast<size_t>(batch)), dcounts(2);
    const size_t wsb = balanced_sample_cuda_workspace_bytes(n);
    Dev<char> ws(wsb);
    balanced_sample_cuda(ctx, p, n, dl.p, dsel.p, dcounts.p, ws.p, wsb);
    ctx.synchronize();
    const auto counts = dcounts.host();
    std::printf("[check] sampler cuda vs cpu batch %lld seed %llu: pos %d/%lld neg %d/%lld\n", (long long)batch,
                (unsigned long long)seed, counts[0], (long long)np, counts[1], (long long)nn);
    EXPECT_EQ(counts[0], np);
    EXPECT_EQ(counts[1], nn);
    EXPECT_EQ(dsel.host(), sel_cpu);
  }
}

#else
TEST(DetOpsGpu, BuiltWithoutCuda) { GTEST_SKIP() << "built without CUDA (CTDET_WITH_CUDA=0)"; }
#endif
