// conv2d on CUDA through the cuDNN convolution API that cuDNN 8 and 9 both have (every cuDNN call of the
// engine's convolutions lives in this file, so a move to the cuDNN graph API stays local).
//
// Algorithms: cudnnGet*Algorithm_v7 heuristics, taking the first (fastest expected) result that
// succeeded, is deterministic when ctx.deterministic is set, does not use tensor-op math (fp32
// throughout, no TF32) and whose workspace fits ctx.workspace_cap. With ctx.conv_algo_timed, cudnnFind*Algorithm
// instead runs every algorithm once on scratch memory cuDNN allocates and ranks them by measured time (the same
// filters apply). Choices are cached in ctx.algo_cache under "<pass>|<shape>|det<d>|cap<bytes>[|timed]" as
// (workspace_bytes << 8) | algo, so each shape pays for the timing once.
//
// Asymmetric padding (TF SAME with an odd total): cuDNN takes one pad per axis, so when
// pad_top != pad_bottom or pad_left != pad_right the input is copied, zero-padded explicitly, into the
// front of the workspace (N, C, H+pt+pb, W+pl+pr) and cuDNN runs with zero padding. Backward-filter reads
// the same padded copy; backward-data writes the gradient of the padded input into that buffer (after
// backward-filter is done with it) and a crop kernel adds its interior into dx. This is exactly the
// definition the CPU reference implements, so both agree for any padding.
// Accumulate flags map to cuDNN's beta = 1 (and to the crop kernel's add in the padded case).
//
// Pointwise convolutions (conv2d_uses_pointwise_gemm: 1x1, stride 1, no padding, one group, maps of >= 256 cells)
// skip cuDNN when ctx.pointwise_conv_gemm is set (the default): each pass is the GemmDesc of kernels/conv2d.h run by
// cublasSgemmStridedBatched (or one cublasSgemm per image for the filter gradient's sum over images), with no
// workspace. The CPU runs the same descriptions through OpenBLAS.
#include <algorithm>
#include <string>

#include "kernels/common/cuda_check.cuh"
#include "kernels/common/launch.cuh"
#include "kernels/conv2d.h"

namespace ctdet {
namespace {

constexpr size_t kAlign = 256;
size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// ---- kernels ------------------------------------------------------------------------------------------

__global__ void conv_pad_kernel(int64_t total, int H, int W, int Hp, int Wp, int pt, int pl,
                                const float* x /*(N*C,H,W)*/, float* xp /*(N*C,Hp,Wp)*/) {
  CTDET_GRID_STRIDE(i, total) {
    int64_t nc = i / (int64_t(Hp) * Wp);
    int rem = int(i - nc * Hp * Wp);
    int h = rem / Wp - pt, w = rem % Wp - pl;
    xp[i] = (h >= 0 && h < H && w >= 0 && w < W) ? x[(nc * H + h) * W + w] : 0.f;
  }
}

__global__ void conv_crop_add_kernel(int64_t total, int H, int W, int Hp, int Wp, int pt, int pl,
                                     const float* dxp /*(N*C,Hp,Wp)*/, float* dx /*(N*C,H,W)*/, bool accumulate) {
  CTDET_GRID_STRIDE(i, total) {
    int64_t nc = i / (int64_t(H) * W);
    int rem = int(i - nc * H * W);
    int h = rem / W, w = rem % W;
    float v = dxp[(nc * Hp + h + pt) * Wp + w + pl];
    dx[i] = accumulate ? dx[i] + v : v;
  }
}

__global__ void conv_bias_add_kernel(int64_t total, int64_t PQ, int K, const float* b, float* y) {
  CTDET_GRID_STRIDE(i, total) { y[i] += b[(i / PQ) % K]; }
}

constexpr int kReduceThreads = 256;

// grid = K blocks: db[k] = sum over n, p, q of dy[n,k,p,q], fixed-order tree (deterministic).
__global__ void conv_bias_grad_kernel(int N, int K, int64_t PQ, const float* dy, float* db, bool accumulate) {
  __shared__ float sh[kReduceThreads];
  const int k = blockIdx.x;
  float s = 0.f;
  for (int64_t j = threadIdx.x; j < int64_t(N) * PQ; j += kReduceThreads) {
    int64_t n = j / PQ;
    s += dy[(n * K + k) * PQ + (j - n * PQ)];
  }
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int st = kReduceThreads / 2; st > 0; st >>= 1) {
    if (int(threadIdx.x) < st) sh[threadIdx.x] += sh[threadIdx.x + st];
    __syncthreads();
  }
  if (threadIdx.x == 0) db[k] = accumulate ? db[k] + sh[0] : sh[0];
}

// ---- descriptors (set per call) -----------------------------------------------------------------------

struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc() { CTDET_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d)); }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
};
struct FilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  FilterDesc() { CTDET_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d)); }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
};
struct ConvDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  ConvDesc() { CTDET_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d)); }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
};

struct ConvSetup {
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv;
  bool padded = false;  // explicit padding into the workspace (asymmetric case)
  int Hp = 0, Wp = 0;   // spatial size of the tensor cuDNN reads
  size_t pad_bytes = 0;  // bytes of the padded-input buffer at the front of the workspace (aligned)

  explicit ConvSetup(const Conv2dParams& p) {
    padded = !p.symmetric_padding();
    Hp = padded ? p.H + p.pad_top + p.pad_bottom : p.H;
    Wp = padded ? p.W + p.pad_left + p.pad_right : p.W;
    pad_bytes = padded ? align_up(size_t(p.N) * p.C * Hp * Wp * sizeof(float)) : 0;
    const int ph = padded ? 0 : p.pad_top, pw = padded ? 0 : p.pad_left;
    CTDET_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x.d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, p.N, p.C, Hp, Wp));
    CTDET_CUDNN_CHECK(
        cudnnSetFilter4dDescriptor(w.d, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, p.K, p.C / p.groups, p.R, p.S));
    CTDET_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv.d, ph, pw, p.stride_h, p.stride_w, p.dilation_h,
                                                      p.dilation_w, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CTDET_CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv.d, p.groups));
    CTDET_CUDNN_CHECK(cudnnSetConvolutionMathType(conv.d, CUDNN_FMA_MATH));
    int on = 0, oc = 0, oh = 0, ow = 0;
    CTDET_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv.d, x.d, w.d, &on, &oc, &oh, &ow));
    CTDET_CHECK(on == p.N && oc == p.K && oh == p.out_h() && ow == p.out_w(), "conv2d: cuDNN output shape (", on,
                ",", oc, ",", oh, ",", ow, ") differs from the expected (", p.N, ",", p.K, ",", p.out_h(), ",",
                p.out_w(), ") for ", p.shape_string());
    CTDET_CUDNN_CHECK(cudnnSetTensor4dDescriptor(y.d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, p.N, p.K, oh, ow));
  }
};

// ---- algorithm choice ---------------------------------------------------------------------------------

struct AlgoChoice {
  int algo = 0;
  size_t ws = 0;
};

enum class Pass { kFwd, kBwdData, kBwdFilter };
const char* pass_name(Pass s) {
  return s == Pass::kFwd ? "forward" : s == Pass::kBwdData ? "backward-data" : "backward-filter";
}

bool tensor_op(cudnnMathType_t m) { return m == CUDNN_TENSOR_OP_MATH || m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION; }

// Walks heuristic results (best first) and returns the first usable one. ws_of(algo, &bytes) queries the
// workspace of an algorithm for this shape and returns false when the algorithm is not supported.
template <typename Perf, typename WsOf>
bool pick(const Perf* perf, int n, const CudaContext& ctx, WsOf ws_of, AlgoChoice* out) {
  for (int i = 0; i < n; ++i) {
    const Perf& r = perf[i];
    if (r.status != CUDNN_STATUS_SUCCESS) continue;
    if (ctx.deterministic && r.determinism != CUDNN_DETERMINISTIC) continue;
    if (tensor_op(r.mathType)) continue;
    size_t ws = 0;
    if (!ws_of(r.algo, &ws) || ws > ctx.workspace_cap) continue;
    out->algo = int(r.algo);
    out->ws = ws;
    return true;
  }
  return false;
}

AlgoChoice choose_algo(CudaContext& ctx, const Conv2dParams& p, const ConvSetup& s, Pass pass) {
  const std::string key = str(pass_name(pass), "|", p.shape_string(), "|det", ctx.deterministic ? 1 : 0, "|cap",
                              ctx.workspace_cap, ctx.conv_algo_timed ? "|timed" : "");
  auto it = ctx.algo_cache.find(key);
  if (it != ctx.algo_cache.end()) {
    AlgoChoice c;
    c.algo = int(it->second & 0xff);
    c.ws = size_t(it->second >> 8);
    return c;
  }
  AlgoChoice c;
  bool found = false;
  int n = 0;
  if (pass == Pass::kFwd) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    if (ctx.conv_algo_timed)
      CTDET_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithm(ctx.cudnn, s.x.d, s.w.d, s.conv.d, s.y.d,
                                                             CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf));
    else
      CTDET_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(ctx.cudnn, s.x.d, s.w.d, s.conv.d, s.y.d,
                                                               CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf));
    found = pick(perf, n, ctx, [&](cudnnConvolutionFwdAlgo_t a, size_t* b) {
      return cudnnGetConvolutionForwardWorkspaceSize(ctx.cudnn, s.x.d, s.w.d, s.conv.d, s.y.d, a, b) ==
             CUDNN_STATUS_SUCCESS;
    }, &c);
  } else if (pass == Pass::kBwdData) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    if (ctx.conv_algo_timed)
      CTDET_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithm(ctx.cudnn, s.w.d, s.y.d, s.conv.d, s.x.d,
                                                                  CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf));
    else
      CTDET_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(ctx.cudnn, s.w.d, s.y.d, s.conv.d, s.x.d,
                                                                    CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf));
    found = pick(perf, n, ctx, [&](cudnnConvolutionBwdDataAlgo_t a, size_t* b) {
      return cudnnGetConvolutionBackwardDataWorkspaceSize(ctx.cudnn, s.w.d, s.y.d, s.conv.d, s.x.d, a, b) ==
             CUDNN_STATUS_SUCCESS;
    }, &c);
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    if (ctx.conv_algo_timed)
      CTDET_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithm(
          ctx.cudnn, s.x.d, s.y.d, s.conv.d, s.w.d, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf));
    else
      CTDET_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
          ctx.cudnn, s.x.d, s.y.d, s.conv.d, s.w.d, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf));
    found = pick(perf, n, ctx, [&](cudnnConvolutionBwdFilterAlgo_t a, size_t* b) {
      return cudnnGetConvolutionBackwardFilterWorkspaceSize(ctx.cudnn, s.x.d, s.y.d, s.conv.d, s.w.d, a, b) ==
             CUDNN_STATUS_SUCCESS;
    }, &c);
  }
  CTDET_CHECK(found, "conv2d: no cuDNN ", pass_name(pass), " algorithm fits the workspace cap of ", ctx.workspace_cap,
              " bytes", ctx.deterministic ? " among the deterministic ones" : "", " (", n,
              " candidates) for shape ", p.shape_string());
  ctx.algo_cache[key] = (int64_t(c.ws) << 8) | int64_t(c.algo);
  return c;
}

// Checks the context's workspace covers `need` bytes and returns its algorithm part (after the pad buffer).
void* algo_workspace(const CudaContext& ctx, const ConvSetup& s, size_t algo_ws, const Conv2dParams& p,
                     const char* what) {
  const size_t need = s.pad_bytes + algo_ws;
  CTDET_CHECK(need == 0 || (ctx.workspace != nullptr && ctx.workspace_bytes >= need), "conv2d ", what, ": needs ",
              need, " bytes of workspace, ctx has ", ctx.workspace_bytes, " (query conv2d_workspace_bytes_cuda) for ",
              p.shape_string());
  return algo_ws ? static_cast<char*>(ctx.workspace) + s.pad_bytes : nullptr;
}

bool pointwise(const CudaContext& ctx, const Conv2dParams& p) {
  return ctx.pointwise_conv_gemm && conv2d_uses_pointwise_gemm(p);
}

// Runs a GemmDesc (kernels/conv2d.h) with cuBLAS on ctx's stream (the handle is bound to it; default math: no TF32).
void run_gemm_cuda(CudaContext& ctx, const GemmDesc& g, const float* A, const float* B, float* C) {
  const float one = 1.f;
  const cublasOperation_t ta = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (g.stride_c != 0 || g.batch == 1) {
    CTDET_CUBLAS_CHECK(cublasSgemmStridedBatched(ctx.cublas, ta, tb, g.m, g.n, g.k, &one, A, g.lda, g.stride_a, B,
                                                 g.ldb, g.stride_b, &g.beta, C, g.ldc, g.stride_c, g.batch));
    return;
  }
  for (int b = 0; b < g.batch; ++b) {  // a sum over the batch into one C: in order, beta then 1
    const float beta = b == 0 ? g.beta : 1.f;
    CTDET_CUBLAS_CHECK(cublasSgemm(ctx.cublas, ta, tb, g.m, g.n, g.k, &one, A + b * g.stride_a, g.lda,
                                   B + b * g.stride_b, g.ldb, &beta, C, g.ldc));
  }
}

float* pad_into_workspace(CudaContext& ctx, const Conv2dParams& p, const ConvSetup& s, const float* x) {
  float* xp = static_cast<float*>(ctx.workspace);
  const int64_t total = int64_t(p.N) * p.C * s.Hp * s.Wp;
  conv_pad_kernel<<<cuda::grid_for(total), cuda::kBlock, 0, ctx.stream>>>(total, p.H, p.W, s.Hp, s.Wp, p.pad_top,
                                                                          p.pad_left, x, xp);
  CTDET_CUDA_LAUNCH_CHECK("conv_pad_kernel");
  return xp;
}

}  // namespace

size_t conv2d_workspace_bytes_cuda(CudaContext& ctx, const Conv2dParams& p) {
  validate_conv2d(p);
  if (pointwise(ctx, p)) return 0;
  ConvSetup s(p);
  size_t ws = choose_algo(ctx, p, s, Pass::kFwd).ws;
  ws = std::max(ws, choose_algo(ctx, p, s, Pass::kBwdData).ws);
  ws = std::max(ws, choose_algo(ctx, p, s, Pass::kBwdFilter).ws);
  return s.pad_bytes + ws;
}

void conv2d_forward_cuda(CudaContext& ctx, const Conv2dParams& p, const float* x, const float* w, const float* b,
                         float* y) {
  validate_conv2d(p);
  CTDET_CHECK(!p.has_bias || b != nullptr, "conv2d: has_bias is set but the bias pointer is null (",
              p.shape_string(), ")");
  if (pointwise(ctx, p)) {
    run_gemm_cuda(ctx, pointwise_forward_gemm(p), x, w, y);
  } else {
    ConvSetup s(p);
    AlgoChoice a = choose_algo(ctx, p, s, Pass::kFwd);
    void* ws = algo_workspace(ctx, s, a.ws, p, "forward");
    const float* xin = s.padded ? pad_into_workspace(ctx, p, s, x) : x;
    const float one = 1.f, zero = 0.f;
    CTDET_CUDNN_CHECK(cudnnConvolutionForward(ctx.cudnn, &one, s.x.d, xin, s.w.d, w, s.conv.d,
                                              cudnnConvolutionFwdAlgo_t(a.algo), ws, a.ws, &zero, s.y.d, y));
  }
  if (p.has_bias) {
    const int64_t total = p.y_numel(), PQ = int64_t(p.out_h()) * p.out_w();
    conv_bias_add_kernel<<<cuda::grid_for(total), cuda::kBlock, 0, ctx.stream>>>(total, PQ, p.K, b, y);
    CTDET_CUDA_LAUNCH_CHECK("conv_bias_add_kernel");
  }
}

void conv2d_backward_cuda(CudaContext& ctx, const Conv2dParams& p, const float* dy, const float* x, const float* w,
                          float* dx, bool accumulate_dx, float* dw, bool accumulate_dw, float* db,
                          bool accumulate_db) {
  validate_conv2d(p);
  if (db && p.has_bias) {
    conv_bias_grad_kernel<<<p.K, kReduceThreads, 0, ctx.stream>>>(p.N, p.K, int64_t(p.out_h()) * p.out_w(), dy, db,
                                                                   accumulate_db);
    CTDET_CUDA_LAUNCH_CHECK("conv_bias_grad_kernel");
  }
  if (pointwise(ctx, p)) {
    if (dw) run_gemm_cuda(ctx, pointwise_backward_filter_gemm(p, accumulate_dw), x, dy, dw);
    if (dx) run_gemm_cuda(ctx, pointwise_backward_data_gemm(p, accumulate_dx), dy, w, dx);
    return;
  }
  if (!dw && !dx) return;
  ConvSetup s(p);
  const float one = 1.f;
  // Backward-filter first: in the padded case it reads the padded input that backward-data overwrites.
  if (dw) {
    AlgoChoice a = choose_algo(ctx, p, s, Pass::kBwdFilter);
    void* ws = algo_workspace(ctx, s, a.ws, p, "backward-filter");
    const float* xin = s.padded ? pad_into_workspace(ctx, p, s, x) : x;
    const float beta = accumulate_dw ? 1.f : 0.f;
    CTDET_CUDNN_CHECK(cudnnConvolutionBackwardFilter(ctx.cudnn, &one, s.x.d, xin, s.y.d, dy, s.conv.d,
                                                     cudnnConvolutionBwdFilterAlgo_t(a.algo), ws, a.ws, &beta, s.w.d,
                                                     dw));
  }
  if (dx) {
    AlgoChoice a = choose_algo(ctx, p, s, Pass::kBwdData);
    void* ws = algo_workspace(ctx, s, a.ws, p, "backward-data");
    float* out = s.padded ? static_cast<float*>(ctx.workspace) : dx;
    const float beta = (!s.padded && accumulate_dx) ? 1.f : 0.f;
    CTDET_CUDNN_CHECK(cudnnConvolutionBackwardData(ctx.cudnn, &one, s.w.d, w, s.y.d, dy, s.conv.d,
                                                   cudnnConvolutionBwdDataAlgo_t(a.algo), ws, a.ws, &beta, s.x.d,
                                                   out));
    if (s.padded) {
      const int64_t total = p.x_numel();
      conv_crop_add_kernel<<<cuda::grid_for(total), cuda::kBlock, 0, ctx.stream>>>(
          total, p.H, p.W, s.Hp, s.Wp, p.pad_top, p.pad_left, out, dx, accumulate_dx);
      CTDET_CUDA_LAUNCH_CHECK("conv_crop_add_kernel");
    }
  }
}

}  // namespace ctdet
