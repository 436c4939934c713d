// Elementwise and layout ops: relu, relu6, add, scale, fused frozen-BN affine (+ residual) + ReLU,
// concat / slice along channels (NCHW), gather rows.
//
// Gradient outputs follow DESIGN.md: each has an accumulate flag (false = overwrite, true = add).
// ReLU-type backward passes take the saved OUTPUT y (not the input), so the forward may run in place
// (y == x is allowed for relu, relu6, scale and bn_add_relu forward).
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/elementwise_math.h"
#if CTDET_WITH_CUDA
#include "nn/cuda_context.h"
#endif

namespace ctdet {

// ---- unary / binary elementwise on n contiguous values -------------------------------------------
// y may alias x (in place). Throws ctdet::Error naming the op when n < 0.
void validate_elementwise(const char* op, int64_t n);

template <typename T> void relu_forward_cpu(int64_t n, const T* x /*(n)*/, T* y /*(n)*/);
// dx = dy * (y > 0), from the saved output y.
template <typename T>
void relu_backward_cpu(int64_t n, const T* dy /*(n)*/, const T* y /*(n)*/, T* dx /*(n)*/, bool accumulate_dx);

template <typename T> void relu6_forward_cpu(int64_t n, const T* x /*(n)*/, T* y /*(n)*/);
// dx = dy * (0 < y < 6), from the saved output y.
template <typename T>
void relu6_backward_cpu(int64_t n, const T* dy /*(n)*/, const T* y /*(n)*/, T* dx /*(n)*/, bool accumulate_dx);

// y = a + b. Backward: da = dy, db = dy (either may be null to skip it).
template <typename T> void add_forward_cpu(int64_t n, const T* a /*(n)*/, const T* b /*(n)*/, T* y /*(n)*/);
template <typename T>
void add_backward_cpu(int64_t n, const T* dy /*(n)*/, T* da /*(n) or null*/, bool accumulate_da,
                      T* db /*(n) or null*/, bool accumulate_db);

// y = alpha * x. Backward: dx = alpha * dy.
template <typename T> void scale_forward_cpu(int64_t n, T alpha, const T* x /*(n)*/, T* y /*(n)*/);
template <typename T>
void scale_backward_cpu(int64_t n, T alpha, const T* dy /*(n)*/, T* dx /*(n)*/, bool accumulate_dx);

// ---- fused frozen-BN affine + optional residual + ReLU ---------------------------------------------
// y[n,c,s] = relu(x[n,c,s] * scale[c] + shift[c] + r[n,c,s])  (r may be null: no residual).
// Backward from the saved output y: g = dy * (y > 0); dx = g * scale[c]; dr = g. scale/shift are frozen
// (no gradient). dx or dr may be null to skip.
struct BnAddReluParams {
  int64_t N = 0, C = 0, HW = 0;  // HW = H * W
};
void validate_bn_add_relu(const BnAddReluParams& p);
template <typename T>
void bn_add_relu_forward_cpu(const BnAddReluParams& p, const T* x /*(N,C,H,W)*/, const T* scale /*(C)*/,
                             const T* shift /*(C)*/, const T* r /*(N,C,H,W) or null*/, T* y /*(N,C,H,W)*/);
template <typename T>
void bn_add_relu_backward_cpu(const BnAddReluParams& p, const T* dy /*(N,C,H,W)*/, const T* y /*(N,C,H,W)*/,
                              const T* scale /*(C)*/, T* dx /*(N,C,H,W) or null*/, bool accumulate_dx,
                              T* dr /*(N,C,H,W) or null*/, bool accumulate_dr);

// ---- concat along channels -------------------------------------------------------------------------
// k inputs (N, channels[i], H, W) -> y (N, sum channels, H, W).
struct ConcatParams {
  int64_t N = 0, HW = 0;
  std::vector<int64_t> channels;  // C_i of each input, k = channels.size()
  int64_t out_channels() const;
};
void validate_concat(const ConcatParams& p);
template <typename T>
void concat_forward_cpu(const ConcatParams& p, const T* const* xs /*k x (N,C_i,H,W)*/, T* y /*(N,sumC,H,W)*/);
// dxs[i] (N,C_i,H,W) gets the matching slice of dy; null entries are skipped. accumulate[i] per input
// (a null accumulate array means overwrite all).
template <typename T>
void concat_backward_cpu(const ConcatParams& p, const T* dy /*(N,sumC,H,W)*/, T* const* dxs /*k x (N,C_i,H,W)*/,
                         const bool* accumulate /*(k) or null*/);

// ---- slice along channels ----------------------------------------------------------------------------
// y = x[:, c0 : c0 + count] ; backward writes dy into the slice of dx; outside the slice dx gets zeros
// (overwrite) or is left as it is (accumulate).
struct SliceParams {
  int64_t N = 0, C = 0, HW = 0;
  int64_t c0 = 0, count = 0;
};
void validate_slice(const SliceParams& p);
template <typename T>
void slice_forward_cpu(const SliceParams& p, const T* x /*(N,C,H,W)*/, T* y /*(N,count,H,W)*/);
template <typename T>
void slice_backward_cpu(const SliceParams& p, const T* dy /*(N,count,H,W)*/, T* dx /*(N,C,H,W)*/, bool accumulate_dx);

// ---- gather rows -------------------------------------------------------------------------------------
// y[i,:] = x[idx[i],:]; idx[i] == -1 gives a zero row. Any other index outside [0, M) throws
// ctdet::Error naming the row and value on CPU; the CUDA kernels write a zero row for it instead
// (they cannot throw), so validate indices on the producer side.
// Backward: dx[idx[i],:] += dy[i,:] (rows with idx -1 contribute nothing); the CPU and CUDA sums run over
// i in increasing order, so duplicates are summed deterministically.
struct GatherRowsParams {
  int64_t M = 0;  // rows of x
  int64_t R = 0;  // rows gathered
  int64_t D = 0;  // row length
};
void validate_gather_rows(const GatherRowsParams& p);
template <typename T>
void gather_rows_forward_cpu(const GatherRowsParams& p, const T* x /*(M,D)*/, const int32_t* idx /*(R)*/,
                             T* y /*(R,D)*/);
template <typename T>
void gather_rows_backward_cpu(const GatherRowsParams& p, const T* dy /*(R,D)*/, const int32_t* idx /*(R)*/,
                              T* dx /*(M,D)*/, bool accumulate_dx);

#if CTDET_WITH_CUDA
// CUDA versions: float only, all pointers on the device, work enqueued on ctx.stream.
void relu_forward_cuda(CudaContext& ctx, int64_t n, const float* x, float* y);
void relu_backward_cuda(CudaContext& ctx, int64_t n, const float* dy, const float* y, float* dx, bool accumulate_dx);
void relu6_forward_cuda(CudaContext& ctx, int64_t n, const float* x, float* y);
void relu6_backward_cuda(CudaContext& ctx, int64_t n, const float* dy, const float* y, float* dx, bool accumulate_dx);
void add_forward_cuda(CudaContext& ctx, int64_t n, const float* a, const float* b, float* y);
void add_backward_cuda(CudaContext& ctx, int64_t n, const float* dy, float* da, bool accumulate_da, float* db,
                       bool accumulate_db);
void scale_forward_cuda(CudaContext& ctx, int64_t n, float alpha, const float* x, float* y);
void scale_backward_cuda(CudaContext& ctx, int64_t n, float alpha, const float* dy, float* dx, bool accumulate_dx);
void bn_add_relu_forward_cuda(CudaContext& ctx, const BnAddReluParams& p, const float* x, const float* scale,
                              const float* shift, const float* r, float* y);
void bn_add_relu_backward_cuda(CudaContext& ctx, const BnAddReluParams& p, const float* dy, const float* y,
                               const float* scale, float* dx, bool accumulate_dx, float* dr, bool accumulate_dr);
// xs / dxs are host arrays of device pointers.
void concat_forward_cuda(CudaContext& ctx, const ConcatParams& p, const float* const* xs, float* y);
void concat_backward_cuda(CudaContext& ctx, const ConcatParams& p, const float* dy, float* const* dxs,
                          const bool* accumulate);
void slice_forward_cuda(CudaContext& ctx, const SliceParams& p, const float* x, float* y);
void slice_backward_cuda(CudaContext& ctx, const SliceParams& p, const float* dy, float* dx, bool accumulate_dx);
void gather_rows_forward_cuda(CudaContext& ctx, const GatherRowsParams& p, const float* x, const int32_t* idx,
                              float* y);
void gather_rows_backward_cuda(CudaContext& ctx, const GatherRowsParams& p, const float* dy, const int32_t* idx,
                               float* dx, bool accumulate_dx);
#endif

}  // namespace ctdet
