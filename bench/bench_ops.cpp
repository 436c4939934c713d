// bench_ops: microbenchmarks of the ctdet kernels on the shapes a ResNet-101 C4 Faster R-CNN runs at a 600x600
// input (300 proposals, 14x14 crops). One CSV row per case on stdout (format in bench/bench_util.h), notes on stderr.
//
//   bench_ops [--device cpu|cuda] [--filter SUBSTR] [--reps N] [--warmup N] [--quick] [--threads N] [--list]
//
// CPU: std::chrono around each call, warm-up then N reps; median and min. OpenBLAS threads as configured (the
// conv/linear GEMMs use them); every other CPU kernel is single-threaded.
// CUDA: cudaEvents on ctx.stream around each call; before every rep a cudaMemsetAsync of a buffer larger than the
// L2 cache (max(64 MiB, 2 x L2)) evicts the inputs, so each rep starts cold, as in a real network.
// bench/peers/torch_ops.py runs the same cases (same shape strings) with PyTorch.
#include <cblas.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "kernels/batchnorm.h"
#include "kernels/boxes.h"
#include "kernels/conv2d.h"
#include "kernels/crop_and_resize.h"
#include "kernels/elementwise.h"
#include "kernels/matmul.h"
#include "kernels/pool.h"
#include "nn/device.h"
#include "nn/error.h"

#if CTDET_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/common/cuda_check.cuh"
#include "nn/cuda_context.h"
#endif

using namespace ctdet;
using namespace ctdet::bench;

namespace {

#if CTDET_WITH_CUDA
// A device buffer owned by the benchmark (library code never allocates).
template <typename T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t count) : n(count) {
    if (n) CTDET_CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
  }
  explicit DevBuf(const std::vector<T>& v) : DevBuf(v.size()) {
    if (n) CTDET_CUDA_CHECK(cudaMemcpy(p, v.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
};

#endif

struct Env {
  Options opt;
  bool cuda = false;
  int warmup = 1, reps = 5;
  Peak compute, bandwidth;
  std::vector<char> cpu_flush;  // written between CPU reps (cold caches); see cpu_flush_bytes()
#if CTDET_WITH_CUDA
  std::unique_ptr<CudaContext> ctx;
  std::unique_ptr<DevBuf<char>> flush;
  cudaEvent_t start = nullptr, stop = nullptr;
#endif
  const char* device() const { return cuda ? "cuda" : "cpu"; }

  bool want(const std::string& op, const std::string& shape) const {
    if (opt.list) {
      std::printf("%s %s\n", op.c_str(), shape.c_str());
      return false;
    }
    return opt.filter.empty() || (op + " " + shape).find(opt.filter) != std::string::npos;
  }

  Stats time(const std::function<void()>& fn) {
    if (!cuda) {
      unsigned char v = 0;
      return time_host(fn, warmup, reps, [&] { std::memset(cpu_flush.data(), ++v, cpu_flush.size()); });
    }
#if CTDET_WITH_CUDA
    for (int i = 0; i < warmup; ++i) fn();
    CTDET_CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    std::vector<double> ms;
    for (int i = 0; i < reps; ++i) {
      CTDET_CUDA_CHECK(cudaMemsetAsync(flush->p, i & 0xff, flush->n, ctx->stream));
      CTDET_CUDA_CHECK(cudaEventRecord(start, ctx->stream));
      fn();
      CTDET_CUDA_CHECK(cudaEventRecord(stop, ctx->stream));
      CTDET_CUDA_CHECK(cudaEventSynchronize(stop));
      float t = 0;
      CTDET_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
      ms.push_back(t);
    }
    return stats_of(std::move(ms));
#else
    CTDET_FAIL("bench_ops: CUDA timing in a build without CUDA");
#endif
  }

  void report(const std::string& op, const std::string& shape, const Stats& s, Work w, double amount) const {
    const double peak = w == Work::Flops ? compute.value : w == Work::Bytes ? bandwidth.value : 0.0;
    print_row(op, device(), shape, s, w, amount, peak);
  }
};

// ---- conv2d ------------------------------------------------------------------------------------------
Conv2dParams conv(int N, int C, int H, int K, int R, int stride, int pad) {
  Conv2dParams p;
  p.N = N, p.C = C, p.H = H, p.W = H, p.K = K, p.R = R, p.S = R;
  p.stride_h = p.stride_w = stride;
  p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = pad;
  validate_conv2d(p);
  return p;
}

void bench_conv(Env& env, const std::string& shape, const Conv2dParams& p) {
  const bool f = env.want("conv2d_fwd", shape), bd = env.want("conv2d_bwd_data", shape),
             bf = env.want("conv2d_bwd_filter", shape);
  if (!f && !bd && !bf) return;
  // 1 MAC = 2 FLOP; forward, backward-data and backward-filter each do the same MACs.
  const double flops = 2.0 * double(p.y_numel()) * (p.C / p.groups) * p.R * p.S;
  const auto x = random_floats(p.x_numel(), 1), w = random_floats(p.w_numel(), 2, -0.1f, 0.1f),
             dy = random_floats(p.y_numel(), 3);
  if (!env.cuda) {
    std::vector<char> ws(conv2d_workspace_bytes_cpu(p));
    std::vector<float> y(p.y_numel()), dx(p.x_numel()), dw(p.w_numel());
    if (f)
      env.report("conv2d_fwd", shape, env.time([&] {
        conv2d_forward_cpu<float>(p, x.data(), w.data(), nullptr, y.data(), ws.data());
      }), Work::Flops, flops);
    if (bd)
      env.report("conv2d_bwd_data", shape, env.time([&] {
        conv2d_backward_cpu<float>(p, dy.data(), x.data(), w.data(), dx.data(), false, nullptr, false, nullptr, false,
                                   ws.data());
      }), Work::Flops, flops);
    if (bf)
      env.report("conv2d_bwd_filter", shape, env.time([&] {
        conv2d_backward_cpu<float>(p, dy.data(), x.data(), w.data(), nullptr, false, dw.data(), false, nullptr, false,
                                   ws.data());
      }), Work::Flops, flops);
    return;
  }
#if CTDET_WITH_CUDA
  CudaContext& ctx = *env.ctx;
  DevBuf<float> dx_(x), dw_(w), ddy(dy), y(p.y_numel()), gx(p.x_numel()), gw(p.w_numel());
  // Pointwise convolutions run as cuBLAS GEMMs by default (kernels/conv2d.h); they are also timed through cuDNN
  // ("[cudnn]"). cuDNN convolutions are timed with the heuristics' algorithm (the default) and with the algorithm
  // cudnnFind measured fastest ("[timed]", CudaContext::conv_algo_timed), so each choice stands beside the others.
  struct Variant { const char* suffix; bool gemm, timed; };
  std::vector<Variant> variants = {{"", true, false}, {" [timed]", true, true}};
  if (conv2d_uses_pointwise_gemm(p)) variants = {{"", true, false}, {" [cudnn]", false, false}, {" [cudnn timed]", false, true}};
  for (const Variant& v : variants) {
    ctx.pointwise_conv_gemm = v.gemm;
    ctx.conv_algo_timed = v.timed;
    const std::string label = shape + v.suffix;
    DevBuf<char> ws(conv2d_workspace_bytes_cuda(ctx, p));  // picks and caches the three algorithms
    ctx.workspace = ws.p;
    ctx.workspace_bytes = ws.n;
    if (f)
      env.report("conv2d_fwd", label, env.time([&] { conv2d_forward_cuda(ctx, p, dx_.p, dw_.p, nullptr, y.p); }),
                 Work::Flops, flops);
    if (bd)
      env.report("conv2d_bwd_data", label, env.time([&] {
        conv2d_backward_cuda(ctx, p, ddy.p, dx_.p, dw_.p, gx.p, false, nullptr, false, nullptr, false);
      }), Work::Flops, flops);
    if (bf)
      env.report("conv2d_bwd_filter", label, env.time([&] {
        conv2d_backward_cuda(ctx, p, ddy.p, dx_.p, dw_.p, nullptr, false, gw.p, false, nullptr, false);
      }), Work::Flops, flops);
    ctx.workspace = nullptr;
  }
  ctx.pointwise_conv_gemm = true;
  ctx.conv_algo_timed = false;
  ctx.workspace_bytes = 0;
#endif
}

// ---- linear (GEMM) -----------------------------------------------------------------------------------
void bench_linear(Env& env, const std::string& shape, int M, int K, int N, bool backward) {
  const std::string op = backward ? "linear_bwd" : "linear_fwd";
  if (!env.want(op, shape)) return;
  LinearParams p;
  p.M = M, p.K = K, p.N = N, p.has_bias = true;
  validate_linear(p);
  // forward: M*N*K MACs; backward: dx and dw, 2*M*N*K MACs (db is M*N adds, not counted).
  const double flops = (backward ? 4.0 : 2.0) * double(M) * N * K;
  const auto x = random_floats(size_t(M) * K, 11), w = random_floats(size_t(N) * K, 12, -0.05f, 0.05f),
             b = random_floats(N, 13), dy = random_floats(size_t(M) * N, 14);
  if (!env.cuda) {
    std::vector<float> y(static_cast<size_t>(M) * N), dx(x.size()), dw(w.size()), db(N);
    env.report(op, shape, env.time([&] {
      if (backward)
        linear_backward_cpu<float>(p, dy.data(), x.data(), w.data(), dx.data(), false, dw.data(), false, db.data(),
                                   false);
      else
        linear_forward_cpu<float>(p, x.data(), w.data(), b.data(), y.data());
    }), Work::Flops, flops);
    return;
  }
#if CTDET_WITH_CUDA
  CudaContext& ctx = *env.ctx;
  DevBuf<float> dx_(x), dw_(w), db_(b), ddy(dy), y(static_cast<size_t>(M) * N), gx(x.size()), gw(w.size()), gb(N);
  env.report(op, shape, env.time([&] {
    if (backward)
      linear_backward_cuda(ctx, p, ddy.p, dx_.p, dw_.p, gx.p, false, gw.p, false, gb.p, false);
    else
      linear_forward_cuda(ctx, p, dx_.p, dw_.p, db_.p, y.p);
  }), Work::Flops, flops);
#endif
}

// ---- crop_and_resize ---------------------------------------------------------------------------------
void bench_crop(Env& env, const std::string& shape, int64_t R, int64_t C, int64_t H, int64_t crop) {
  const bool f = env.want("crop_and_resize_fwd", shape), b = env.want("crop_and_resize_bwd", shape);
  if (!f && !b) return;
  CropAndResizeParams p;
  p.N = 1, p.C = C, p.H = H, p.W = H, p.R = R, p.crop_h = p.crop_w = crop;
  validate_crop_and_resize(p);
  const auto x = random_floats(size_t(C * H * H), 21);
  const auto boxes = crop_boxes(R);
  const std::vector<int32_t> bi(size_t(R), 0);
  const int64_t ny = crop_and_resize_output_numel(p);
  const auto dy = random_floats(size_t(ny), 22);
  // Minimum traffic: read the feature map once and write the crops (forward); read dy, write dx (backward).
  const double bytes = 4.0 * double(ny + p.N * C * H * H);
  if (!env.cuda) {
    std::vector<float> y(static_cast<size_t>(ny)), dx(x.size());
    if (f)
      env.report("crop_and_resize_fwd", shape, env.time([&] {
        crop_and_resize_forward_cpu<float>(p, x.data(), boxes.data(), bi.data(), y.data());
      }), Work::Bytes, bytes);
    if (b)
      env.report("crop_and_resize_bwd", shape, env.time([&] {
        crop_and_resize_backward_cpu<float>(p, dy.data(), boxes.data(), bi.data(), dx.data(), false);
      }), Work::Bytes, bytes);
    return;
  }
#if CTDET_WITH_CUDA
  CudaContext& ctx = *env.ctx;
  DevBuf<float> dx_(x), dbox(boxes), ddy(dy), y(static_cast<size_t>(ny)), gx(x.size());
  DevBuf<int32_t> dbi(bi);
  if (f)
    env.report("crop_and_resize_fwd", shape,
               env.time([&] { crop_and_resize_forward_cuda(ctx, p, dx_.p, dbox.p, dbi.p, y.p); }), Work::Bytes, bytes);
  if (b)
    env.report("crop_and_resize_bwd", shape,
               env.time([&] { crop_and_resize_backward_cuda(ctx, p, ddy.p, dbox.p, dbi.p, gx.p, false); }),
               Work::Bytes, bytes);
#endif
}

// ---- NMS ---------------------------------------------------------------------------------------------
void bench_nms(Env& env, const std::string& shape, int64_t n, float iou, int64_t max_out) {
  if (!env.want("nms", shape)) return;
  NmsParams p;
  p.iou_threshold = iou;
  p.max_output = max_out;
  validate_nms(p, n);
  std::vector<float> boxes, scores;
  nms_inputs(n, &boxes, &scores);
  std::vector<int32_t> keep(static_cast<size_t>(max_out));
  if (!env.cuda) {
    int64_t kept = 0;
    const Stats s = env.time([&] { kept = nms_cpu<float>(p, n, boxes.data(), scores.data(), keep.data()); });
    std::fprintf(stderr, "# nms cpu: kept %lld of %lld\n", (long long)kept, (long long)n);
    env.report("nms", shape, s, Work::Boxes, double(n));
    return;
  }
#if CTDET_WITH_CUDA
  CudaContext& ctx = *env.ctx;
  DevBuf<float> db(boxes), ds(scores);
  DevBuf<int32_t> dk(static_cast<size_t>(max_out)), dc(1);
  DevBuf<char> ws(nms_cuda_workspace_bytes(n));
  env.report("nms", shape, env.time([&] { nms_cuda(ctx, p, n, db.p, ds.p, dk.p, dc.p, ws.p, ws.n); }), Work::Boxes,
             double(n));
#endif
}

// ---- max pool ------------------------------------------------------------------------------------------
void bench_pool(Env& env, const std::string& shape, int64_t C, int64_t H, int k, int s, int pad) {
  const bool f = env.want("max_pool_fwd", shape), b = env.want("max_pool_bwd", shape);
  if (!f && !b) return;
  Pool2dParams p;
  p.kind = PoolKind::Max;
  p.N = 1, p.C = C, p.H = H, p.W = H, p.kh = p.kw = k, p.sh = p.sw = s, p.pad_h = p.pad_w = pad;
  const PoolGeom g = pool2d_geometry(p);
  const int64_t nx = C * H * H, ny = C * g.P * g.Q;
  const auto x = random_floats(size_t(nx), 31), dy = random_floats(size_t(ny), 32);
  const double fbytes = 4.0 * double(nx + ny), bbytes = 4.0 * double(2 * nx + ny);  // bwd: read dy, x; write dx
  if (!env.cuda) {
    std::vector<float> y(static_cast<size_t>(ny)), dx(static_cast<size_t>(nx));
    if (f)
      env.report("max_pool_fwd", shape, env.time([&] { pool2d_forward_cpu<float>(p, x.data(), y.data()); }),
                 Work::Bytes, fbytes);
    if (b)
      env.report("max_pool_bwd", shape,
                 env.time([&] { pool2d_backward_cpu<float>(p, dy.data(), x.data(), dx.data(), false); }), Work::Bytes,
                 bbytes);
    return;
  }
#if CTDET_WITH_CUDA
  CudaContext& ctx = *env.ctx;
  DevBuf<float> dx_(x), ddy(dy), y(static_cast<size_t>(ny)), gx(static_cast<size_t>(nx));
  if (f)
    env.report("max_pool_fwd", shape, env.time([&] { pool2d_forward_cuda(ctx, p, dx_.p, y.p); }), Work::Bytes, fbytes);
  if (b) {
    // As the executor runs it: two passes with the planned argmax workspace; then the workspace-free per-cell
    // recomputation (the path without workspace) for comparison.
    DevBuf<char> ws(pool2d_backward_cuda_workspace_bytes(p));
    env.report("max_pool_bwd", shape,
               env.time([&] { pool2d_backward_cuda(ctx, p, ddy.p, dx_.p, gx.p, false, ws.p, ws.n); }), Work::Bytes,
               bbytes);
    env.report("max_pool_bwd", shape + " [recompute]",
               env.time([&] { pool2d_backward_cuda(ctx, p, ddy.p, dx_.p, gx.p, false); }), Work::Bytes, bbytes);
  }
#endif
}

// ---- elementwise: frozen BN + ReLU, with a residual, and plain ReLU -----------------------------------
void bench_elementwise(Env& env, const std::string& shape, int64_t C, int64_t H) {
  const bool bnr = env.want("bn_relu_fwd", shape), bnar = env.want("bn_add_relu_fwd", shape),
             rl = env.want("relu_fwd", shape), rlb = env.want("relu_bwd", shape);
  if (!bnr && !bnar && !rl && !rlb) return;
  BnAddReluParams p;
  p.N = 1, p.C = C, p.HW = H * H;
  validate_bn_add_relu(p);
  const int64_t n = C * H * H;
  const auto x = random_floats(size_t(n), 41), r = random_floats(size_t(n), 42), dy = random_floats(size_t(n), 43);
  const auto scale = random_floats(size_t(C), 44, 0.5f, 1.5f), shift = random_floats(size_t(C), 45);
  const double b2 = 8.0 * double(n), b3 = 12.0 * double(n);  // 2 or 3 tensors of n floats moved once
  if (!env.cuda) {
    std::vector<float> y(static_cast<size_t>(n)), dx(static_cast<size_t>(n));
    if (bnr)
      env.report("bn_relu_fwd", shape, env.time([&] {
        bn_add_relu_forward_cpu<float>(p, x.data(), scale.data(), shift.data(), nullptr, y.data());
      }), Work::Bytes, b2);
    if (bnar)
      env.report("bn_add_relu_fwd", shape, env.time([&] {
        bn_add_relu_forward_cpu<float>(p, x.data(), scale.data(), shift.data(), r.data(), y.data());
      }), Work::Bytes, b3);
    if (rl)
      env.report("relu_fwd", shape, env.time([&] { relu_forward_cpu<float>(n, x.data(), y.data()); }), Work::Bytes,
                 b2);
    if (rlb)
      env.report("relu_bwd", shape,
                 env.time([&] { relu_backward_cpu<float>(n, dy.data(), x.data(), dx.data(), false); }), Work::Bytes,
                 b3);
    return;
  }
#if CTDET_WITH_CUDA
  CudaContext& ctx = *env.ctx;
  DevBuf<float> dx_(x), dr(r), ddy(dy), dsc(scale), dsh(shift), y(static_cast<size_t>(n)), gx(static_cast<size_t>(n));
  if (bnr)
    env.report("bn_relu_fwd", shape,
               env.time([&] { bn_add_relu_forward_cuda(ctx, p, dx_.p, dsc.p, dsh.p, nullptr, y.p); }), Work::Bytes,
               b2);
  if (bnar)
    env.report("bn_add_relu_fwd", shape,
               env.time([&] { bn_add_relu_forward_cuda(ctx, p, dx_.p, dsc.p, dsh.p, dr.p, y.p); }), Work::Bytes, b3);
  if (rl) env.report("relu_fwd", shape, env.time([&] { relu_forward_cuda(ctx, n, dx_.p, y.p); }), Work::Bytes, b2);
  if (rlb)
    env.report("relu_bwd", shape, env.time([&] { relu_backward_cuda(ctx, n, ddy.p, dx_.p, gx.p, false); }),
               Work::Bytes, b3);
#endif
}

// ---- setup -------------------------------------------------------------------------------------------
void setup_device(Env& env) {
  if (!env.cuda) {
    if (env.opt.threads > 0) openblas_set_num_threads(env.opt.threads);
    env.compute = cpu_fp32_peak(openblas_get_num_threads());
    env.bandwidth = cpu_copy_ceiling();
    env.cpu_flush.assign(cpu_flush_bytes(), 0);
    std::fprintf(stderr,
                 "# %s\n# %s\n# OpenBLAS threads: %d (conv/linear GEMMs); other CPU kernels: 1 thread\n"
                 "# cache flush: memset of %zu MiB before every timed rep\n",
                 env.compute.how.c_str(), env.bandwidth.how.c_str(), openblas_get_num_threads(),
                 env.cpu_flush.size() >> 20);
    return;
  }
  CTDET_CHECK(cuda_built(), "bench_ops: --device cuda, but this build has no CUDA backend: ",
              cuda_unavailable_reason());
  CTDET_CHECK(cuda_device_available(), "bench_ops: --device cuda, but no usable CUDA device: ",
              cuda_unavailable_reason());
#if CTDET_WITH_CUDA
  env.ctx = std::make_unique<CudaContext>(0);
  cudaDeviceProp prop{};
  CTDET_CUDA_CHECK(cudaGetDeviceProperties(&prop, env.ctx->device));
  int mem_khz = 0, bus_bits = 0, l2 = 0;
  CTDET_CUDA_CHECK(cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, env.ctx->device));
  CTDET_CUDA_CHECK(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, env.ctx->device));
  CTDET_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, env.ctx->device));
  env.compute = gpu_fp32_peak(env.ctx->device);
  env.bandwidth.value = 2.0 * mem_khz * 1e3 * (bus_bits / 8.0) * 1e-9;  // GB/s, double data rate
  env.bandwidth.how = str("GPU bandwidth peak ", env.bandwidth.value, " GB/s = 2 (DDR) x ", mem_khz / 1000,
                          " MHz x ", bus_bits, "-bit bus (cudaDevAttrMemoryClockRate / GlobalMemoryBusWidth)");
  const size_t flush_bytes = std::max(size_t(64) << 20, size_t(2) * size_t(l2));
  env.flush = std::make_unique<DevBuf<char>>(flush_bytes);
  CTDET_CUDA_CHECK(cudaEventCreate(&env.start));
  CTDET_CUDA_CHECK(cudaEventCreate(&env.stop));
  std::fprintf(stderr,
               "# %s\n# %s\n# L2 %d KiB; flush: cudaMemsetAsync of %zu MiB before every timed rep\n"
               "# precision: fp32 (cuBLAS CUBLAS_DEFAULT_MATH, cuDNN FMA math; no TF32)\n",
               env.compute.how.c_str(), env.bandwidth.how.c_str(), l2 / 1024, flush_bytes >> 20);
#endif
}

void run(Env& env) {
  const bool big_rois = env.cuda && !env.opt.quick;
  // ResNet-101 layers at a 600x600 input (conv1 -> 300x300, pool -> 150, layer3 at stride 16 -> 38).
  bench_conv(env, "conv1_7x7s2 1x3x600x600->64", conv(1, 3, 600, 64, 7, 2, 3));
  bench_conv(env, "layer1_3x3 1x64x150x150->64", conv(1, 64, 150, 64, 3, 1, 1));
  bench_conv(env, "layer3_3x3 1x256x38x38->256", conv(1, 256, 38, 256, 3, 1, 1));
  bench_conv(env, "layer3_1x1 1x1024x38x38->256", conv(1, 1024, 38, 256, 1, 1, 0));
  if (big_rois)
    bench_conv(env, "layer4_3x3 300x512x7x7->512 (300 ROIs)", conv(300, 512, 7, 512, 3, 1, 1));
  else
    bench_conv(env, "layer4_3x3 8x512x7x7->512 (8 of 300 ROIs)", conv(8, 512, 7, 512, 3, 1, 1));
  bench_linear(env, "gemm 1024x1024x1024", 1024, 1024, 1024, false);
  bench_linear(env, "box_head 300x2048->360", 300, 2048, 360, false);
  bench_linear(env, "box_head 300x2048->360", 300, 2048, 360, true);
  bench_crop(env, "300 boxes 1x1024x38x38->14x14", 300, 1024, 38, 14);
  bench_nms(env, "20000 boxes iou0.7 ->300", 20000, 0.7f, 300);
  bench_pool(env, "1x64x300x300 k3s2p1", 64, 300, 3, 2, 1);
  bench_elementwise(env, "1x1024x38x38", 1024, 38);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Env env;
    env.opt = parse_options(argc, argv);
    env.cuda = env.opt.device == "cuda";
    if (env.opt.list) {
      run(env);
      return 0;
    }
    env.warmup = env.opt.warmup >= 0 ? env.opt.warmup : (env.cuda ? 3 : 1);
    env.reps = env.opt.reps > 0 ? env.opt.reps : env.cuda ? (env.opt.quick ? 5 : 20) : (env.opt.quick ? 3 : 5);
    setup_device(env);
    std::fprintf(stderr, "# device %s, warm-up %d, reps %d%s\n", env.device(), env.warmup, env.reps,
                 env.opt.quick ? ", quick" : "");
    print_header();
    run(env);
#if CTDET_WITH_CUDA
    if (env.start) cudaEventDestroy(env.start);
    if (env.stop) cudaEventDestroy(env.stop);
#endif
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
}
