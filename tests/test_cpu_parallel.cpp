// The threaded CPU kernels (kernels/cpu/parallel.h) give the same bits for any thread count, and crop_and_resize
// (forward through precomputed taps, backward blocked over channels) gives the same bits as the plain per-box /
// per-sample loops it replaced (written out here as the reference). Thread counts 1, 2 and 3 (3 splits unevenly;
// more threads than cores is fine for a check).
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/crop_and_resize.h"
#include "kernels/crop_and_resize_math.h"
#include "kernels/pool.h"
#include "tests/test_util.h"

using namespace ctdet;
using ctdet::testing::random_vec;

namespace {

// Sets this thread's kernel thread count for a scope, then restores the default.
struct Threads {
  explicit Threads(int n) { set_cpu_kernel_threads(n); }
  ~Threads() { set_cpu_kernel_threads(0); }
};

template <typename T>
size_t differing(const std::vector<T>& a, const std::vector<T>& b) {
  EXPECT_EQ(a.size(), b.size());
  size_t d = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) d += std::memcmp(&a[i], &b[i], sizeof(T)) != 0;
  return d;
}

// Runs fn(out) with 1, 2 and 3 threads and returns how many elements differ from the 1-thread result.
template <typename T, typename Fn>
size_t thread_count_differences(size_t n, const std::vector<T>& init, Fn fn) {
  std::vector<T> ref = init;
  {
    Threads t(1);
    fn(ref.data());
  }
  size_t diff = 0;
  for (int threads : {2, 3}) {
    std::vector<T> out = init;
    Threads t(threads);
    const int64_t regions = detail::split_regions();
    fn(out.data());
    EXPECT_GT(detail::split_regions(), regions) << "the loop did not split over " << threads << " threads";
    diff += differing(out, ref);
  }
  EXPECT_EQ(ref.size(), n);
  return diff;
}

// Boxes over a (H,W) map: inside, partly outside (extrapolated samples), degenerate, flipped; several per image.
std::vector<float> test_boxes(int64_t R, uint64_t seed) {
  std::vector<float> b = random_vec<float>(size_t(R) * 4, seed, -0.2, 1.2);
  for (int64_t r = 0; r < R; r += 5) b[size_t(r) * 4 + 2] = b[size_t(r) * 4];  // zero height
  return b;
}

}  // namespace

TEST(CpuParallel, RangesCoverEachIndexOnceAndCarryErrors) {
  for (int threads : {1, 2, 3, 7}) {
    Threads t(threads);
    for (int64_t n : {1, 2, 5, 64, 1000}) {
      std::vector<int> hits(size_t(n), 0);
      parallel_ranges(n, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) ++hits[size_t(i)];
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)], 1) << "n " << n << " threads " << threads;
    }
    const std::string msg = ctdet::testing::expect_error([] {
      parallel_ranges(100, 1, [](int64_t b, int64_t) { CTDET_CHECK(b != 0, "range starting at 0 fails"); });
    });
    EXPECT_NE(msg.find("range starting at 0 fails"), std::string::npos) << msg;
  }
}

TEST(CpuParallel, CropAndResizeMatchesPlainLoopsForAnyThreadCount) {
  CropAndResizeParams p;
  // Sizes chosen so that the loops do split (parallel_ranges: at least 2 x min_iterations_for(work) iterations) and
  // cross the 16-box and 16-channel blocks unevenly.
  p.N = 2, p.C = 120, p.H = 13, p.W = 17, p.R = 53, p.crop_h = 14, p.crop_w = 13;
  p.extrapolation_value = 0.25f;
  const std::vector<float> x = random_vec<float>(size_t(p.N * p.C * p.H * p.W), 1);
  const std::vector<float> boxes = test_boxes(p.R, 2);
  std::vector<int32_t> bi(size_t(p.R));
  for (int64_t r = 0; r < p.R; ++r) bi[size_t(r)] = int32_t((r * 7) % p.N);
  const int64_t cells = p.crop_h * p.crop_w, plane = p.H * p.W;
  const size_t ny = size_t(p.R * p.C * cells), nx = size_t(p.N * p.C * plane);

  // Reference forward: one sample per output.
  std::vector<float> y_ref(ny);
  for (int64_t r = 0; r < p.R; ++r)
    for (int64_t c = 0; c < p.C; ++c)
      for (int64_t i = 0; i < p.crop_h; ++i)
        for (int64_t j = 0; j < p.crop_w; ++j) {
          const float* b = &boxes[size_t(r) * 4];
          BilinearPoint<float> bp;
          const bool in = tf_bilinear_point(crop_sample_coord(b[0], b[2], i, p.crop_h, p.H),
                                            crop_sample_coord(b[1], b[3], j, p.crop_w, p.W), p.H, p.W, &bp);
          y_ref[size_t((r * p.C + c) * cells + i * p.crop_w + j)] =
              in ? bilinear_sample(&x[size_t((bi[size_t(r)] * p.C + c) * plane)], p.W, bp) : p.extrapolation_value;
        }
  // Reference backward: boxes, samples, channels, corners in that order (each cell's sum in box-then-sample order).
  const std::vector<float> dy = random_vec<float>(ny, 3);
  const std::vector<float> dx0 = random_vec<float>(nx, 4);
  std::vector<float> dx_ref = dx0;
  for (int64_t r = 0; r < p.R; ++r)
    for (int64_t k = 0; k < cells; ++k) {
      const float* b = &boxes[size_t(r) * 4];
      BilinearPoint<float> bp;
      if (!tf_bilinear_point(crop_sample_coord(b[0], b[2], k / p.crop_w, p.crop_h, p.H),
                             crop_sample_coord(b[1], b[3], k % p.crop_w, p.crop_w, p.W), p.H, p.W, &bp))
        continue;
      for (int64_t c = 0; c < p.C; ++c) {
        const float g = dy[size_t((r * p.C + c) * cells + k)];
        float* pl = &dx_ref[size_t((bi[size_t(r)] * p.C + c) * plane)];
        pl[bp.y0 * p.W + bp.x0] += bp.w00 * g;
        pl[bp.y0 * p.W + bp.x1] += bp.w01 * g;
        pl[bp.y1 * p.W + bp.x0] += bp.w10 * g;
        pl[bp.y1 * p.W + bp.x1] += bp.w11 * g;
      }
    }

  size_t fwd_diff = 0, bwd_diff = 0;
  for (int threads : {1, 2, 3}) {
    Threads t(threads);
    std::vector<float> y(ny, -7.f), dx = dx0;
    const int64_t regions = detail::split_regions();
    crop_and_resize_forward_cpu(p, x.data(), boxes.data(), bi.data(), y.data());
    crop_and_resize_backward_cpu(p, dy.data(), boxes.data(), bi.data(), dx.data(), /*accumulate_dx=*/true);
    EXPECT_EQ(detail::split_regions() - regions, threads > 1 ? 2 : 0) << threads << " threads";
    fwd_diff += differing(y, y_ref);
    bwd_diff += differing(dx, dx_ref);
  }
  std::printf("[err] crop_and_resize vs plain loops, 1-3 threads: forward %zu, backward %zu of "
              "%zu / %zu values differ (bits)\n", fwd_diff, bwd_diff, 3 * ny, 3 * nx);
  EXPECT_EQ(fwd_diff, 0u);
  EXPECT_EQ(bwd_diff, 0u);
}

TEST(CpuParallel, PoolsGiveTheSameBitsForAnyThreadCount) {
  size_t total = 0, diff = 0;
  struct G {
    PoolKind kind;
    int k, s;
    PoolPadding pad;
    bool acc;
  };
  for (const G& g : {G{PoolKind::Max, 3, 2, PoolPadding::TfSame, false},   // overlapping: scatter
                     G{PoolKind::Max, 2, 2, PoolPadding::Explicit, true},  // disjoint, accumulate: scatter
                     G{PoolKind::Max, 3, 1, PoolPadding::TfSame, true},    // overlapping, accumulate: gather
                     G{PoolKind::Avg, 3, 1, PoolPadding::TfSame, false}}) {
    Pool2dParams p;
    p.kind = g.kind;
    p.N = 2, p.C = 64, p.H = 75, p.W = 77;  // 128 planes: enough to split for every case here
    p.kh = p.kw = g.k;
    p.sh = p.sw = g.s;
    p.padding = g.pad;
    p.count_include_pad = false;
    const PoolGeom geo = pool2d_geometry(p);
    std::vector<float> x = random_vec<float>(size_t(p.N * p.C * p.H * p.W), 5);
    for (float& v : x) v = float(int(v * 4)) / 4;  // ties
    const size_t ny = size_t(p.N * p.C * geo.P * geo.Q), nx = x.size();
    const std::vector<float> dy = random_vec<float>(ny, 6);
    diff += thread_count_differences(ny, std::vector<float>(ny, 0.f),
                                     [&](float* y) { pool2d_forward_cpu(p, x.data(), y); });
    diff += thread_count_differences(nx, random_vec<float>(nx, 7), [&](float* dx) {
      pool2d_backward_cpu(p, dy.data(), x.data(), dx, g.acc);
    });
    total += 3 * (ny + nx);
  }
  std::printf("[err] pools forward + backward, 1 vs 2 and 3 threads: %zu of %zu values differ (bits)\n", diff, total);
  EXPECT_EQ(diff, 0u);
}
