// CUDA vs CPU for the elementwise, layout, pooling, loss and optimizer ops on real layer shapes
// (ResNet-101 / Inception-v2 Faster R-CNN) and edge cases. Skips cleanly without a device.
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "kernels/elementwise.h"
#include "kernels/loss.h"
#include "kernels/optim.h"
#include "kernels/pool.h"
#include "test_util.h"

#if CTDET_WITH_CUDA
#include <cuda_runtime.h>

#include "nn/cuda_context.h"
#endif

using namespace ctdet;
using ctdet::testing::compare;
using ctdet::testing::print_err;
using ctdet::testing::random_vec;
using VecF = std::vector<float>;

#if CTDET_WITH_CUDA
namespace {

template <typename T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t count) : n(count) {
    if (n) {
      EXPECT_EQ(cudaMalloc(&p, n * sizeof(T)), cudaSuccess);
    }
  }
  explicit DevBuf(const std::vector<T>& h) : DevBuf(h.size()) { upload(h); }
  ~DevBuf() {
    if (p) cudaFree(p);
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  void upload(const std::vector<T>& h) {
    if (n) {
      EXPECT_EQ(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
    cudaDeviceSynchronize();  // the copy must land before kernels on the non-blocking stream read it
    }
  }
  std::vector<T> download() const {
    std::vector<T> h(n);
    if (n) {
      cudaDeviceSynchronize();  // wait for the work stream (non-blocking) before reading
      EXPECT_EQ(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    }
    return h;
  }
};

void expect_close(const std::string& name, const VecF& gpu, const VecF& cpu, double tol) {
  auto s = compare(gpu, cpu);
  print_err(name, s);
  EXPECT_LE(s.max_abs, tol) << name;  // tol 0: bit-identical required
}

// Runs a backward on CPU and GPU, in overwrite and accumulate mode (prefilled), and compares.
template <typename Cpu, typename Gpu>
void check_bwd(CudaContext& ctx, const std::string& name, size_t n, Cpu cpu, Gpu gpu, double tol) {
  const VecF pre = random_vec<float>(n, 99);
  for (bool acc : {false, true}) {
    VecF hc = acc ? pre : VecF(n, 7.f);
    cpu(hc.data(), acc);
    DevBuf<float> d(acc ? pre : VecF(n, 7.f));
    gpu(d.p, acc);
    ctx.synchronize();
    // Accumulating d += f(dy): the device may contract the product and the add into one FMA (one rounding
    // instead of two), so bit-identical ops get one ulp of the [-2, 2] results there (H200: 1.19e-7).
    expect_close(name + (acc ? " (accumulate)" : ""), d.download(), hc, acc ? std::max(tol, 2.5e-7) : tol);
  }
}

}  // namespace
#endif

TEST(ElemOpsGpu, ElementwiseOnRes4Shape) {
  CTDET_REQUIRE_GPU();
#if CTDET_WITH_CUDA
  CudaContext ctx(0);
  const int64_t N = 1, C = 1024, HW = 38 * 38, n = N * C * HW;
  VecF x = random_vec<float>(n, 1, -8, 8), b = random_vec<float>(n, 2), dy = random_vec<float>(n, 3);
  DevBuf<float> dx_(x), db_(b), ddy(dy), dyo(n);
  VecF yc(n);
  // relu
  relu_forward_cpu<float>(n, x.data(), yc.data());
  relu_forward_cuda(ctx, n, dx_.p, dyo.p);
  ctx.synchronize();
  expect_close("relu y 1x1024x38x38", dyo.download(), yc, 0);
  check_bwd(ctx, "relu dx", n, [&](float* d, bool a) { relu_backward_cpu<float>(n, dy.data(), yc.data(), d, a); },
            [&](float* d, bool a) { relu_backward_cuda(ctx, n, ddy.p, dyo.p, d, a); }, 0);
  // relu6
  relu6_forward_cpu<float>(n, x.data(), yc.data());
  relu6_forward_cuda(ctx, n, dx_.p, dyo.p);
  ctx.synchronize();
  expect_close("relu6 y", dyo.download(), yc, 0);
  check_bwd(ctx, "relu6 dx", n, [&](float* d, bool a) { relu6_backward_cpu<float>(n, dy.data(), yc.data(), d, a); },
            [&](float* d, bool a) { relu6_backward_cuda(ctx, n, ddy.p, dyo.p, d, a); }, 0);
  // add + scale
  add_forward_cpu<float>(n, x.data(), b.data(), yc.data());
  add_forward_cuda(ctx, n, dx_.p, db_.p, dyo.p);
  ctx.synchronize();
  expect_close("add y", dyo.download(), yc, 0);
  check_bwd(ctx, "add db", n, [&](float* d, bool a) { add_backward_cpu<float>(n, dy.data(), nullptr, false, d, a); },
            [&](float* d, bool a) { add_backward_cuda(ctx, n, ddy.p, nullptr, false, d, a); }, 0);
  scale_forward_cpu<float>(n, 0.37f, x.data(), yc.data());
  scale_forward_cuda(ctx, n, 0.37f, dx_.p, dyo.p);
  ctx.synchronize();
  expect_close("scale y", dyo.download(), yc, 0);
  check_bwd(ctx, "scale dx", n, [&](float* d, bool a) { scale_backward_cpu<float>(n, 0.37f, dy.data(), d, a); },
            [&](float* d, bool a) { scale_backward_cuda(ctx, n, 0.37f, ddy.p, d, a); }, 0);
  // fused bn + residual + relu
  BnAddReluParams p{N, C, HW};
  VecF sc = random_vec<float>(C, 4, 0.2, 2), sh = random_vec<float>(C, 5);
  DevBuf<float> dsc(sc), dsh(sh);
  for (bool with_r : {true, false}) {
    bn_add_relu_forward_cpu<float>(p, x.data(), sc.data(), sh.data(), with_r ? b.data() : nullptr, yc.data());
    bn_add_relu_forward_cuda(ctx, p, dx_.p, dsc.p, dsh.p, with_r ? db_.p : nullptr, dyo.p);
    ctx.synchronize();
    VecF yg = dyo.download();
    expect_close(with_r ? "bn_add_relu y (residual)" : "bn_add_relu y", yg, yc, 1e-5);
    // Backward from the CPU output on both sides (a value that rounds to 0 differently would flip the mask).
    dyo.upload(yc);
    check_bwd(ctx, "bn_add_relu dx", n,
              [&](float* d, bool a) { bn_add_relu_backward_cpu<float>(p, dy.data(), yc.data(), sc.data(), d, a, nullptr, false); },
              [&](float* d, bool a) { bn_add_relu_backward_cuda(ctx, p, ddy.p, dyo.p, dsc.p, d, a, nullptr, false); }, 1e-6);
    check_bwd(ctx, "bn_add_relu dr", n,
              [&](float* d, bool a) { bn_add_relu_backward_cpu<float>(p, dy.data(), yc.data(), sc.data(), nullptr, false, d, a); },
              [&](float* d, bool a) { bn_add_relu_backward_cuda(ctx, p, ddy.p, dyo.p, dsc.p, nullptr, false, d, a); }, 0);
  }
#endif
}

TEST(ElemOpsGpu, ConcatSliceGather) {
  CTDET_REQUIRE_GPU();
#if CTDET_WITH_CUDA
  CudaContext ctx(0);
  // Inception-v2 Mixed_4e style concat: 4 branches at 19x19 (N=2).
  ConcatParams p;
  p.N = 2;
  p.HW = 19 * 19;
  p.channels = {0, 192, 160, 64};  // an empty branch as an edge case
  std::vector<VecF> xs;
  std::vector<DevBuf<float>*> dxs;
  std::vector<const float*> hp, dp;
  for (size_t i = 0; i < p.channels.size(); ++i) {
    xs.push_back(random_vec<float>(p.N * p.channels[i] * p.HW, 10 + i));
    dxs.push_back(new DevBuf<float>(xs.back()));
  }
  for (size_t i = 0; i < xs.size(); ++i) {
    hp.push_back(xs[i].data());
    dp.push_back(dxs[i]->p);
  }
  const int64_t ny = p.N * p.out_channels() * p.HW;
  VecF yc(ny), dy = random_vec<float>(ny, 20);
  DevBuf<float> dyb(ny), ddy(dy);
  concat_forward_cpu<float>(p, hp.data(), yc.data());
  concat_forward_cuda(ctx, p, dp.data(), dyb.p);
  ctx.synchronize();
  expect_close("concat y 2x416x19x19", dyb.download(), yc, 0);
  for (size_t i = 1; i < p.channels.size(); ++i) {
    const size_t ni = xs[i].size();
    check_bwd(ctx, "concat dx" + std::to_string(i), ni,
              [&](float* d, bool a) {
                std::vector<float*> g(p.channels.size(), nullptr);
                g[i] = d;
                bool f[4] = {a, a, a, a};
                concat_backward_cpu<float>(p, dy.data(), g.data(), f);
              },
              [&](float* d, bool a) {
                std::vector<float*> g(p.channels.size(), nullptr);
                g[i] = d;
                bool f[4] = {a, a, a, a};
                concat_backward_cuda(ctx, p, ddy.p, g.data(), f);
              }, 0);
  }
  for (auto* d : dxs) delete d;
  // slice: channels [192, 352) of the concat output
  SliceParams s{p.N, p.out_channels(), p.HW, 192, 160};
  VecF sc(p.N * 160 * p.HW);
  DevBuf<float> ds(sc.size());
  slice_forward_cpu<float>(s, yc.data(), sc.data());
  DevBuf<float> dyc(yc);
  slice_forward_cuda(ctx, s, dyc.p, ds.p);
  ctx.synchronize();
  expect_close("slice y", ds.download(), sc, 0);
  VecF sdy = random_vec<float>(sc.size(), 21);
  DevBuf<float> dsdy(sdy);
  check_bwd(ctx, "slice dx", yc.size(), [&](float* d, bool a) { slice_backward_cpu<float>(s, sdy.data(), d, a); },
            [&](float* d, bool a) { slice_backward_cuda(ctx, s, dsdy.p, d, a); }, 0);
  // gather 64 sampled rows out of 300 proposals x 2048 features, with duplicates and -1
  GatherRowsParams g{300, 64, 2048};
  std::vector<int32_t> idx(64);
  for (int i = 0; i < 64; ++i) idx[i] = (i % 9 == 0) ? -1 : (i * 37) % 300;
  idx[5] = idx[6] = 17;
  VecF gx = random_vec<float>(300 * 2048, 22), gy(64 * 2048), gdy = random_vec<float>(64 * 2048, 23);
  DevBuf<float> dgx(gx), dgy(gy.size()), dgdy(gdy);
  DevBuf<int32_t> didx(idx);
  gather_rows_forward_cpu<float>(g, gx.data(), idx.data(), gy.data());
  gather_rows_forward_cuda(ctx, g, dgx.p, didx.p, dgy.p);
  ctx.synchronize();
  expect_close("gather_rows y 64 of 300x2048", dgy.download(), gy, 0);
  check_bwd(ctx, "gather_rows dx", gx.size(),
            [&](float* d, bool a) { gather_rows_backward_cpu<float>(g, gdy.data(), idx.data(), d, a); },
            [&](float* d, bool a) { gather_rows_backward_cuda(ctx, g, dgdy.p, didx.p, d, a); }, 0);
#endif
}

TEST(ElemOpsGpu, PoolingOnRealShapes) {
  CTDET_REQUIRE_GPU();
#if CTDET_WITH_CUDA
  CudaContext ctx(0);
  struct Case {
    const char* name;
    Pool2dParams p;
    double tol;
  };
  auto mk = [](PoolKind kind, int64_t N, int64_t C, int64_t H, int64_t W, int k, int s, PoolPadding pad, int pd,
               bool incl) {
    Pool2dParams p;
    p.kind = kind; p.N = N; p.C = C; p.H = H; p.W = W; p.kh = p.kw = k; p.sh = p.sw = s;
    p.padding = pad; p.pad_h = p.pad_w = pd; p.count_include_pad = incl;
    return p;
  };
  const Case cases[] = {
      {"maxpool 3x3/2 SAME 1x64x300x300 (ResNet pool1)", mk(PoolKind::Max, 1, 64, 300, 300, 3, 2, PoolPadding::TfSame, 0, false), 0},
      {"maxpool 3x3/2 pad1 1x64x300x400 (torchvision)", mk(PoolKind::Max, 1, 64, 300, 400, 3, 2, PoolPadding::Explicit, 1, true), 0},
      {"maxpool 2x2/2 64x1024x14x14 (crop pool)", mk(PoolKind::Max, 64, 1024, 14, 14, 2, 2, PoolPadding::Explicit, 0, true), 0},
      {"avgpool 3x3/1 SAME excl 1x192x38x38 (Inception)", mk(PoolKind::Avg, 1, 192, 38, 38, 3, 1, PoolPadding::TfSame, 0, false), 1e-6},
      {"avgpool 3x3/2 pad1 incl 2x32x15x17", mk(PoolKind::Avg, 2, 32, 15, 17, 3, 2, PoolPadding::Explicit, 1, true), 1e-6},
      {"maxpool 1x1/2 SAME on 1x1 map", mk(PoolKind::Max, 3, 5, 1, 1, 1, 2, PoolPadding::TfSame, 0, false), 0},
      // The small Inception maps of the open dm0.25 backward mismatch (Mixed_4a, Mixed_5a, Mixed_5c, Mixed_3c).
      {"maxpool 3x3/2 SAME 1x80x8x6 (Mixed_4a)", mk(PoolKind::Max, 1, 80, 8, 6, 3, 2, PoolPadding::TfSame, 0, false), 0},
      {"maxpool 3x3/2 SAME 1x144x4x3 (Mixed_5a)", mk(PoolKind::Max, 1, 144, 4, 3, 3, 2, PoolPadding::TfSame, 0, false), 0},
      {"maxpool 3x3/1 SAME 1x256x2x2 (Mixed_5c)", mk(PoolKind::Max, 1, 256, 2, 2, 3, 1, PoolPadding::TfSame, 0, false), 0},
      {"avgpool 3x3/1 SAME excl 1x72x8x6 (Mixed_3c)", mk(PoolKind::Avg, 1, 72, 8, 6, 3, 1, PoolPadding::TfSame, 0, false), 1e-6},
  };
  for (const auto& c : cases) {
    const PoolGeom g = pool2d_geometry(c.p);
    const int64_t nx = g.N * g.C * g.H * g.W, ny = g.N * g.C * g.P * g.Q;
    VecF x = random_vec<float>(nx, 31), dy = random_vec<float>(ny, 32), yc(ny);
    // A few exact ties so first-max routing is exercised.
    for (int64_t i = 0; i + 1 < nx; i += 97) x[i + 1] = x[i];
    DevBuf<float> dx_(x), ddy(dy), dyb(ny);
    pool2d_forward_cpu<float>(c.p, x.data(), yc.data());
    pool2d_forward_cuda(ctx, c.p, dx_.p, dyb.p);
    ctx.synchronize();
    expect_close(std::string(c.name) + " y", dyb.download(), yc, c.tol);
    check_bwd(ctx, std::string(c.name) + " dx", nx,
              [&](float* d, bool a) { pool2d_backward_cpu<float>(c.p, dy.data(), x.data(), d, a); },
              [&](float* d, bool a) { pool2d_backward_cuda(ctx, c.p, ddy.p, dx_.p, d, a); }, 1e-5);
    if (g.kind == 0) {  // the two-pass form (argmax per window in workspace, then a gather), as the executor runs it
      DevBuf<char> ws(pool2d_backward_cuda_workspace_bytes(c.p));
      check_bwd(ctx, std::string(c.name) + " dx (stored argmax)", nx,
                [&](float* d, bool a) { pool2d_backward_cpu<float>(c.p, dy.data(), x.data(), d, a); },
                [&](float* d, bool a) { pool2d_backward_cuda(ctx, c.p, ddy.p, dx_.p, d, a, ws.p, ws.n); }, 1e-5);
      // The training graphs' form: the forward stores the argmax, the backward reads only it (max_pool_argmax).
      VecF yc2(ny);
      std::vector<int32_t> argc(static_cast<size_t>(ny));
      pool2d_max_forward_argmax_cpu<float>(c.p, x.data(), yc2.data(), argc.data());
      DevBuf<float> dy2(ny);
      DevBuf<int32_t> darg{static_cast<size_t>(ny)};
      pool2d_max_forward_argmax_cuda(ctx, c.p, dx_.p, dy2.p, darg.p);
      ctx.synchronize();
      expect_close(std::string(c.name) + " y (argmax forward)", dy2.download(), yc2, 0);
      const std::vector<int32_t> argg = darg.download();
      int64_t arg_diff = 0;
      for (size_t i = 0; i < argg.size(); ++i) arg_diff += argg[i] != argc[i];
      EXPECT_EQ(arg_diff, 0) << c.name << ": argmax indices differ from the CPU's";
      check_bwd(ctx, std::string(c.name) + " dx (argmax from the forward)", nx,
                [&](float* d, bool a) { pool2d_max_backward_from_argmax_cpu<float>(c.p, dy.data(), argc.data(), d, a); },
                [&](float* d, bool a) { pool2d_max_backward_from_argmax_cuda(ctx, c.p, ddy.p, darg.p, d, a); }, 1e-5);
    }
  }
  // global average pool, 7x7 over the ResNet box-head features
  GapParams gp{64, 2048, 49};
  VecF x = random_vec<float>(gp.N * gp.C * gp.HW, 33), yc(gp.N * gp.C), dy = random_vec<float>(yc.size(), 34);
  DevBuf<float> dx_(x), dyb(yc.size()), ddy(dy);
  global_avg_pool_forward_cpu<float>(gp, x.data(), yc.data());
  global_avg_pool_forward_cuda(ctx, gp, dx_.p, dyb.p);
  ctx.synchronize();
  expect_close("gap y 64x2048x7x7", dyb.download(), yc, 1e-6);
  check_bwd(ctx, "gap dx", x.size(), [&](float* d, bool a) { global_avg_pool_backward_cpu<float>(gp, dy.data(), d, a); },
            [&](float* d, bool a) { global_avg_pool_backward_cuda(ctx, gp, ddy.p, d, a); }, 1e-7);
#endif
}

TEST(ElemOpsGpu, LossesMatchCpuAndAreReproducible) {
  CTDET_REQUIRE_GPU();
#if CTDET_WITH_CUDA
  CudaContext ctx(0);
  // softmax CE: 300 x 4, the box classifier's 64 x 91, and RPN objectness over all anchors (22800 x 2).
  for (auto shape : {std::pair<int64_t, int64_t>{300, 4}, {64, 91}, {22800, 2}}) {
    const int64_t R = shape.first, C = shape.second;
    VecF x = random_vec<float>(R * C, 40, -6, 6), w = random_vec<float>(R, 41, 0, 2), dy0(R * C);
    std::vector<int32_t> lab(R);
    for (int64_t r = 0; r < R; ++r) lab[r] = (r % 7 == 3) ? -1 : int32_t((r * 13) % C);
    w[1] = 0.f;
    LossParams p{R, C, 2.0, 1.0};
    DevBuf<float> dx_(x), dw(w), dloss(1), dgrad(R * C), dscalar(VecF{0.5f});
    DevBuf<int32_t> dlab(lab);
    DevBuf<char> ws(loss_workspace_bytes_cuda(R));
    float lc;
    softmax_cross_entropy_forward_cpu<float>(p, x.data(), lab.data(), w.data(), nullptr, &lc);
    softmax_cross_entropy_forward_cuda(ctx, p, dx_.p, dlab.p, dw.p, nullptr, dloss.p, ws.p);
    ctx.synchronize();
    const float lg = dloss.download()[0];
    std::printf("[err] ce %lldx%lld loss gpu %.8f cpu %.8f\n", (long long)R, (long long)C, lg, lc);
    EXPECT_NEAR(lg, lc, 1e-5 * std::max(1.f, std::abs(lc)));
    softmax_cross_entropy_forward_cuda(ctx, p, dx_.p, dlab.p, dw.p, nullptr, dloss.p, ws.p);
    ctx.synchronize();
    EXPECT_EQ(std::memcmp(&lg, dloss.download().data(), sizeof(float)), 0) << "CE loss not reproducible";
    const float half = 0.5f;
    check_bwd(ctx, "ce dlogits " + std::to_string(R) + "x" + std::to_string(C), R * C,
              [&](float* d, bool a) { softmax_cross_entropy_backward_cpu<float>(p, &half, x.data(), lab.data(), w.data(), nullptr, d, a); },
              [&](float* d, bool a) { softmax_cross_entropy_backward_cuda(ctx, p, dscalar.p, dx_.p, dlab.p, dw.p, nullptr, d, a, ws.p); },
              1e-6);
  }
  // sigmoid CE and smooth L1 on 256 sampled anchors, count from the caller (and count = 0)
  const int64_t R = 256;
  VecF x = random_vec<float>(R * 4, 50, -5, 5), z = random_vec<float>(R * 4, 51, 0, 1), w = random_vec<float>(R, 52, 0, 1);
  for (int64_t r = 0; r < R; r += 3) w[r] = 0.f;
  DevBuf<float> dx_(x), dz(z), dw(w), dloss(1);
  DevBuf<char> ws(loss_workspace_bytes_cuda(R));
  for (int32_t cnt : {200, 0}) {
    DevBuf<int32_t> dcnt(std::vector<int32_t>{cnt});
    LossParams p{R, 4, 1.0, 1.0};
    float lc;
    sigmoid_cross_entropy_forward_cpu<float>(p, x.data(), z.data(), w.data(), &cnt, &lc);
    sigmoid_cross_entropy_forward_cuda(ctx, p, dx_.p, dz.p, dw.p, dcnt.p, dloss.p, ws.p);
    ctx.synchronize();
    float lg = dloss.download()[0];
    std::printf("[err] bce count=%d loss gpu %.8f cpu %.8f\n", cnt, lg, lc);
    EXPECT_NEAR(lg, lc, 1e-5 * std::max(1.f, std::abs(lc)));
    check_bwd(ctx, "bce dlogits count=" + std::to_string(cnt), R * 4,
              [&](float* d, bool a) { sigmoid_cross_entropy_backward_cpu<float>(p, nullptr, x.data(), z.data(), w.data(), &cnt, d, a); },
              [&](float* d, bool a) { sigmoid_cross_entropy_backward_cuda(ctx, p, nullptr, dx_.p, dz.p, dw.p, dcnt.p, d, a, ws.p); },
              1e-6);
    LossParams q{R, 4, 2.0, 1.0 / 9.0};
    smooth_l1_forward_cpu<float>(q, x.data(), z.data(), w.data(), &cnt, &lc);
    smooth_l1_forward_cuda(ctx, q, dx_.p, dz.p, dw.p, dcnt.p, dloss.p, ws.p);
    ctx.synchronize();
    lg = dloss.download()[0];
    std::printf("[err] smooth_l1 count=%d loss gpu %.8f cpu %.8f\n", cnt, lg, lc);
    EXPECT_NEAR(lg, lc, 1e-5 * std::max(1.f, std::abs(lc)));
    check_bwd(ctx, "smooth_l1 dpred count=" + std::to_string(cnt), R * 4,
              [&](float* d, bool a) { smooth_l1_backward_cpu<float>(q, nullptr, x.data(), z.data(), w.data(), &cnt, d, a); },
              [&](float* d, bool a) { smooth_l1_backward_cuda(ctx, q, nullptr, dx_.p, dz.p, dw.p, dcnt.p, d, a, ws.p); },
              1e-6);
  }
  // zero rows
  LossParams p0{0, 4, 1.0, 1.0};
  DevBuf<char> ws0(loss_workspace_bytes_cuda(0));
  smooth_l1_forward_cuda(ctx, p0, dx_.p, dz.p, nullptr, nullptr, dloss.p, ws0.p);
  ctx.synchronize();
  EXPECT_EQ(dloss.download()[0], 0.f);
#endif
}

TEST(ElemOpsGpu, SgdAndClipping) {
  CTDET_REQUIRE_GPU();
#if CTDET_WITH_CUDA
  CudaContext ctx(0);
  const int64_t n = 1000000;
  VecF var = random_vec<float>(n, 60), acc = random_vec<float>(n, 61), g = random_vec<float>(n, 62);
  DevBuf<float> dv(var), da(acc), dg(g);
  SgdParams sp{0.01, 0.9, 1e-4};
  for (int s = 0; s < 3; ++s) {
    sgd_momentum_update_cpu<float>(sp, n, var.data(), acc.data(), g.data());
    sgd_momentum_update_cuda(ctx, sp, n, dv.p, da.p, dg.p);
  }
  ctx.synchronize();
  expect_close("sgd var 1e6 params, 3 steps", dv.download(), var, 1e-6);
  expect_close("sgd accum", da.download(), acc, 1e-6);
  // Clipping over a few ResNet-like tensors (conv weights, a bias, an empty one).
  std::vector<int64_t> sizes = {2048 * 512, 512, 0, 1024 * 256 * 9, 91};
  const int k = int(sizes.size());
  for (bool global : {true, false}) {
    std::vector<VecF> hs;
    std::vector<DevBuf<float>*> ds;
    std::vector<float*> hp, dp;
    for (int i = 0; i < k; ++i) {
      hs.push_back(random_vec<float>(sizes[i], 70 + i, -0.05, 0.05));
      ds.push_back(new DevBuf<float>(hs.back()));
    }
    for (int i = 0; i < k; ++i) {
      hp.push_back(hs[i].data());
      dp.push_back(ds[i]->p);
    }
    DevBuf<char> ws(clip_workspace_bytes_cuda(k, sizes.data()));
    DevBuf<float> dnorm(k);
    VecF norms_gpu;
    std::vector<double> norms_cpu(k);
    if (global) {
      norms_cpu[0] = clip_by_global_norm_cpu<float>(10.0, k, hp.data(), sizes.data());
      clip_by_global_norm_cuda(ctx, 10.0, k, dp.data(), sizes.data(), dnorm.p, ws.p);
    } else {
      clip_by_tensor_norm_cpu<float>(1.0, k, hp.data(), sizes.data(), norms_cpu.data());
      clip_by_tensor_norm_cuda(ctx, 1.0, k, dp.data(), sizes.data(), dnorm.p, ws.p);
    }
    ctx.synchronize();
    norms_gpu = dnorm.download();
    for (int i = 0; i < (global ? 1 : k); ++i) {
      std::printf("[err] %s norm[%d] gpu %.8f cpu %.8f\n", global ? "global" : "tensor", i, norms_gpu[i], norms_cpu[i]);
      EXPECT_NEAR(norms_gpu[i], norms_cpu[i], 1e-6 * std::max(1.0, norms_cpu[i]));
    }
    for (int i = 0; i < k; ++i)
      expect_close(std::string(global ? "global" : "tensor") + " clipped grad " + std::to_string(i), ds[i]->download(), hs[i], 1e-7);
    for (auto* d : ds) delete d;
  }
  // Non-finite norm: reported and not applied.
  VecF bad = {1.f, std::numeric_limits<float>::quiet_NaN(), 3.f};
  int64_t bs = 3;
  DevBuf<float> dbad(bad), dnorm(1);
  DevBuf<char> ws(clip_workspace_bytes_cuda(1, &bs));
  float* bp = dbad.p;
  clip_by_global_norm_cuda(ctx, 1.0, 1, &bp, &bs, dnorm.p, ws.p);
  ctx.synchronize();
  EXPECT_TRUE(std::isnan(dnorm.download()[0]));
  VecF after = dbad.download();
  EXPECT_EQ(after[0], 1.f);
  EXPECT_EQ(after[2], 3.f);
#endif
}

// The multi-tensor step (one launch per phase): CUDA against the CPU list step, over ResNet-like tensors some of
// which span several chunks, with null gradients (zero: momentum decays), both clip modes, two steps each;
// the clip is active in both. Then a non-finite gradient: reported, and the host skips the update.
TEST(ElemOpsGpu, ListClippedSgdMatchesCpu) {
  CTDET_REQUIRE_GPU();
#if CTDET_WITH_CUDA
  CudaContext ctx(0);
  const std::vector<int64_t> sizes = {2048 * 512, 512, 0, 1024 * 256 * 9, 91, 7 * kListChunk + 3, 64};
  const std::vector<bool> has_grad = {true, true, true, true, false, true, false};
  const int k = int(sizes.size());
  for (bool per_tensor : {false, true}) {
    std::vector<VecF> hv, ha, hg;
    std::vector<std::unique_ptr<DevBuf<float>>> dv, da, dg;
    for (int i = 0; i < k; ++i) {
      hv.push_back(random_vec<float>(sizes[i], 80 + i, -1, 1));
      ha.push_back(random_vec<float>(sizes[i], 90 + i, -0.1, 0.1));
      hg.push_back(random_vec<float>(sizes[i], 100 + i, -0.05, 0.05));
      dv.push_back(std::make_unique<DevBuf<float>>(hv.back()));
      da.push_back(std::make_unique<DevBuf<float>>(ha.back()));
      dg.push_back(std::make_unique<DevBuf<float>>(hg.back()));
    }
    std::vector<float*> pv, pa, pg;
    std::vector<ListTensor> lt;
    for (int i = 0; i < k; ++i) {
      pv.push_back(hv[i].data());
      pa.push_back(ha[i].data());
      pg.push_back(has_grad[i] ? hg[i].data() : nullptr);
      lt.push_back(ListTensor{dv[i]->p, da[i]->p, has_grad[i] ? dg[i]->p : nullptr, sizes[i]});
    }
    std::vector<int64_t> first;
    const std::vector<ListChunk> chunks = list_chunks(k, sizes.data(), &first);
    DevBuf<ListTensor> dlt(lt);
    DevBuf<ListChunk> dch(chunks);
    DevBuf<int64_t> dfirst(first);
    DevBuf<char> ws(clip_list_workspace_bytes_cuda(k, int64_t(chunks.size())));
    DevBuf<float> dnorm{static_cast<size_t>(k)};
    const double clip = per_tensor ? 0.5 : 5.0;
    const SgdParams sp{0.01, 0.9, 0.0};
    for (int step = 0; step < 2; ++step) {
      // The gradients are re-read each step (the CPU scales its copy in place): reset both sides.
      for (int i = 0; i < k; ++i) {
        hg[i] = random_vec<float>(sizes[i], 200 + 10 * step + i, -0.05, 0.05);
        pg[i] = has_grad[i] ? hg[i].data() : nullptr;
        dg[i]->upload(hg[i]);
      }
      std::vector<double> norms_cpu(size_t(k), 0.0);
      ASSERT_TRUE(clipped_sgd_update_list_cpu<float>(sp, clip, per_tensor, k, pv.data(), pa.data(), pg.data(),
                                                     sizes.data(), norms_cpu.data()));
      clip_norms_list_cuda(ctx, per_tensor, k, dlt.p, int64_t(chunks.size()), dch.p, dfirst.p, dnorm.p, ws.p);
      ctx.synchronize();
      const VecF norms_gpu = dnorm.download();
      for (int i = 0; i < (per_tensor ? k : 1); ++i) {
        std::printf("[err] list %s norm[%d] step %d: gpu %.8f cpu %.8f\n", per_tensor ? "tensor" : "global", i, step,
                    norms_gpu[size_t(i)], norms_cpu[size_t(i)]);
        EXPECT_NEAR(norms_gpu[size_t(i)], norms_cpu[size_t(i)], 1e-6 * std::max(1.0, norms_cpu[size_t(i)]));
        if (!per_tensor || (has_grad[size_t(i)] && sizes[size_t(i)] > 0)) {
          EXPECT_GT(norms_cpu[size_t(i)], clip);  // the clip is active
        }
      }
      clipped_sgd_update_list_cuda(ctx, sp, clip, per_tensor, dlt.p, int64_t(chunks.size()), dch.p, dnorm.p);
      ctx.synchronize();
    }
    for (int i = 0; i < k; ++i) {
      const std::string what = std::string(per_tensor ? "tensor" : "global") + " list tensor " + std::to_string(i);
      expect_close(what + " var", dv[i]->download(), hv[i], 1e-6);
      expect_close(what + " accum", da[i]->download(), ha[i], 1e-6);
    }
  }
  // Non-finite: the norm says so and the fused update leaves everything as it was even if called.
  VecF v = {1.f, 2.f, 3.f}, a = {0.5f, 0.5f, 0.5f}, g = {1.f, std::numeric_limits<float>::quiet_NaN(), 3.f};
  DevBuf<float> dv(v), da(a), dg(g);
  const int64_t n = 3;
  std::vector<int64_t> first;
  const std::vector<ListChunk> chunks = list_chunks(1, &n, &first);
  DevBuf<ListTensor> dlt(std::vector<ListTensor>{ListTensor{dv.p, da.p, dg.p, n}});
  DevBuf<ListChunk> dch(chunks);
  DevBuf<int64_t> dfirst(first);
  DevBuf<char> ws(clip_list_workspace_bytes_cuda(1, int64_t(chunks.size())));
  DevBuf<float> dnorm(1);
  clip_norms_list_cuda(ctx, false, 1, dlt.p, int64_t(chunks.size()), dch.p, dfirst.p, dnorm.p, ws.p);
  clipped_sgd_update_list_cuda(ctx, SgdParams{0.1, 0.9, 0.0}, 1.0, false, dlt.p, int64_t(chunks.size()), dch.p, dnorm.p);
  ctx.synchronize();
  EXPECT_TRUE(std::isnan(dnorm.download()[0]));
  EXPECT_EQ(dv.download(), v);
  EXPECT_EQ(da.download(), a);
#endif
}
