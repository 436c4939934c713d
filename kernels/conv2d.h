// conv2d: 2-D cross-correlation in NCHW with stride, asymmetric zero padding, dilation, groups
// (depthwise with a channel multiplier: groups = C, K = C * m) and an optional bias.
//
//   x (N, C, H, W), w (K, C/groups, R, S), b (K), y (N, K, P, Q)
//   P = (H + pad_top + pad_bottom - dilation_h * (R - 1) - 1) / stride_h + 1   (Q likewise)
//   y[n,k,p,q] = b[k] + sum_{c,r,s} w[k,c,r,s] * x[n, g*C/groups + c, p*stride_h - pad_top + r*dilation_h,
//                                                 q*stride_w - pad_left + s*dilation_w],  g = k / (K/groups)
// Taps that fall into the padding read zero. TF SAME padding is asymmetric (extra row/column at the
// bottom/right); tf_same_padding() computes it and both CPU and CUDA paths take it as is.
//
// CPU: float uses im2col per (image, group) + OpenBLAS sgemm and needs a column buffer of
// conv2d_workspace_bytes_cpu(p) bytes; double is a direct-loop reference and takes no workspace
// (nullptr is fine). CUDA: cuDNN (kernels/cuda/conv2d.cu), workspace from conv2d_workspace_bytes_cuda.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#if CTDET_WITH_CUDA
#include "nn/cuda_context.h"
#endif

namespace ctdet {

struct Conv2dParams {
  int N = 1, C = 0, H = 0, W = 0;  // input
  int K = 0, R = 1, S = 1;         // output channels, kernel height, kernel width
  int stride_h = 1, stride_w = 1;
  int pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
  int dilation_h = 1, dilation_w = 1;
  int groups = 1;
  bool has_bias = false;

  int out_h() const;  // P
  int out_w() const;  // Q
  int64_t x_numel() const { return int64_t(N) * C * H * W; }
  int64_t w_numel() const { return int64_t(K) * (groups > 0 ? C / groups : 0) * R * S; }
  int64_t y_numel() const { return int64_t(N) * K * out_h() * out_w(); }
  bool symmetric_padding() const { return pad_top == pad_bottom && pad_left == pad_right; }
  // "N,C,H,W|K,R,S|sh,sw|pt,pb,pl,pr|dh,dw|g|bias": a readable key (algorithm cache, error messages).
  std::string shape_string() const;
};

struct SamePadding {
  int before = 0, after = 0;
};

// TF SAME: out = ceil(in / stride), total = max((out-1)*stride + dilation*(kernel-1) + 1 - in, 0),
// before = total / 2, after = total - before.
SamePadding tf_same_padding(int in, int kernel, int stride, int dilation = 1);

// Output size along one axis: (in + pad_before + pad_after - dilation*(kernel-1) - 1) / stride + 1
// (may be <= 0 for impossible shapes; validate_conv2d rejects those).
int conv2d_out_size(int in, int kernel, int stride, int pad_before, int pad_after, int dilation);

// Throws ctdet::Error naming "conv2d" and the offending value: non-positive sizes, strides or dilations,
// negative padding, C or K not divisible by groups, output size <= 0.
void validate_conv2d(const Conv2dParams& p);

// ---- pointwise convolutions as matrix products -------------------------------------------------------------
// A 1x1 convolution with stride 1, no padding, no dilation and one group, on maps of at least
// kPointwiseGemmMinCells cells, is a matrix product per image (row-major):
//   y[n] (K, HW) = w (K, C) x[n] (C, HW),   dx[n] = w^T dy[n],   dw = sum_n dy[n] x[n]^T
// Both devices run it as the GEMMs described below, without im2col and without workspace: the CPU through
// OpenBLAS (CblasColMajor), CUDA through cuBLAS (instead of the cuDNN algorithm the heuristics pick, which was up
// to 5.4x slower than PyTorch's on these shapes: docs/performance.md). The descriptions are written once, here;
// the CPU tests check them through OpenBLAS against the direct loops, the GPU tests the cuBLAS run against the CPU.
constexpr int64_t kPointwiseGemmMinCells = 256;
bool conv2d_uses_pointwise_gemm(const Conv2dParams& p);

// One column-major GEMM per batch entry b < batch:
//   C_b = op(A_b) op(B_b) + beta_b C_b,   X_b = X + b * stride_x,   op(M) = M or M^T (trans_*),
//   op(A) is m x k, op(B) is k x n, C is m x n (leading dimensions lda, ldb, ldc).
// stride_c == 0 means every entry adds into the same C (a sum over the batch): entry 0 uses beta, the rest 1, and
// the entries run one after the other. Otherwise beta_b = beta for all.
struct GemmDesc {
  bool trans_a = false, trans_b = false;
  int m = 0, n = 0, k = 0;
  int lda = 0, ldb = 0, ldc = 0;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  int batch = 1;
  float beta = 0.f;
};
GemmDesc pointwise_forward_gemm(const Conv2dParams& p);                               // A = x, B = w, C = y
GemmDesc pointwise_backward_data_gemm(const Conv2dParams& p, bool accumulate_dx);     // A = dy, B = w, C = dx
GemmDesc pointwise_backward_filter_gemm(const Conv2dParams& p, bool accumulate_dw);   // A = x, B = dy, C = dw

// Bytes of the float column buffer (C/groups * R * S, P * Q) the CPU float path needs (0 for pointwise GEMMs).
size_t conv2d_workspace_bytes_cpu(const Conv2dParams& p);

// y = conv(x, w) + b. b is read only when p.has_bias (may be nullptr otherwise).
template <typename T>
void conv2d_forward_cpu(const Conv2dParams& p, const T* x /*(N,C,H,W)*/, const T* w /*(K,C/g,R,S)*/,
                        const T* b /*(K) or null*/, T* y /*(N,K,P,Q)*/, void* workspace);

// Gradients; any of dx, dw, db may be nullptr to skip it (db is skipped when !p.has_bias).
// accumulate_* = false overwrites, true adds to what is already there.
template <typename T>
void conv2d_backward_cpu(const Conv2dParams& p, const T* dy /*(N,K,P,Q)*/, const T* x /*(N,C,H,W)*/,
                         const T* w /*(K,C/g,R,S)*/, T* dx /*(N,C,H,W)*/, bool accumulate_dx,
                         T* dw /*(K,C/g,R,S)*/, bool accumulate_dw, T* db /*(K)*/, bool accumulate_db,
                         void* workspace);

#if CTDET_WITH_CUDA
// Chooses (and caches in ctx.algo_cache) the forward, backward-data and backward-filter algorithms for
// this shape and returns the workspace the conv needs in ctx.workspace: the largest of the three
// algorithm workspaces, plus a padded-input buffer when the padding is asymmetric.
size_t conv2d_workspace_bytes_cuda(CudaContext& ctx, const Conv2dParams& p);

void conv2d_forward_cuda(CudaContext& ctx, const Conv2dParams& p, const float* x /*(N,C,H,W)*/,
                         const float* w /*(K,C/g,R,S)*/, const float* b /*(K) or null*/,
                         float* y /*(N,K,P,Q)*/);

void conv2d_backward_cuda(CudaContext& ctx, const Conv2dParams& p, const float* dy /*(N,K,P,Q)*/,
                          const float* x /*(N,C,H,W)*/, const float* w /*(K,C/g,R,S)*/,
                          float* dx /*(N,C,H,W)*/, bool accumulate_dx, float* dw /*(K,C/g,R,S)*/,
                          bool accumulate_dw, float* db /*(K)*/, bool accumulate_db);
#endif

}  // namespace ctdet
