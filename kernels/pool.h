// 2D max / average pooling (NCHW) with symmetric or TF-SAME padding, and global average pooling.
//
// Padding:
//   Explicit: pad_h rows above AND below, pad_w columns left AND right (torch MaxPool2d/AvgPool2d,
//             ceil_mode=False): P = (H + 2*pad_h - kh) / sh + 1.
//   TfSame:   TF 'SAME': P = ceil(H / sh), total = max((P-1)*sh + kh - H, 0), before = total / 2,
//             after = total - before (the extra row/column goes at the bottom/right).
// Max pool: padded cells never win (they behave as -inf). Ties go to the FIRST maximum in row-major
//   window order, on CPU and CUDA alike; the backward routes dy to that cell (recomputed from the saved x).
// Avg pool: count_include_pad = true divides by the window's cells inside the padded extent (torch's
//   default); false divides by the cells inside the image only (TF SAME behaviour).
// Backward is written as a gather (each input cell sums over the windows that contain it), shared by
// the CPU loop and the CUDA kernel through pool2d_backward_at(); it is deterministic on both.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/common/hd.h"
#if CTDET_WITH_CUDA
#include "nn/cuda_context.h"
#endif

namespace ctdet {

enum class PoolKind { Max, Avg };
enum class PoolPadding { Explicit, TfSame };

struct Pool2dParams {
  PoolKind kind = PoolKind::Max;
  int64_t N = 0, C = 0, H = 0, W = 0;
  int kh = 1, kw = 1;
  int sh = 1, sw = 1;
  PoolPadding padding = PoolPadding::Explicit;
  int pad_h = 0, pad_w = 0;        // Explicit only
  bool count_include_pad = true;   // Avg only
};

// Resolved geometry: what the kernels use. Produced by pool2d_geometry(), which validates.
struct PoolGeom {
  int kind;  // 0 max, 1 avg
  int64_t N, C, H, W, P, Q;
  int kh, kw, sh, sw;
  int pad_top, pad_left, pad_bottom, pad_right;
  bool include_pad;
};

// Throws ctdet::Error naming the op ("max_pool2d"/"avg_pool2d") and the offending value for kernel <= 0,
// stride <= 0, negative sizes, padding < 0 or >= kernel, or an output size <= 0.
void validate_pool2d(const Pool2dParams& p);
PoolGeom pool2d_geometry(const Pool2dParams& p);
inline int64_t pool2d_out_h(const Pool2dParams& p) { return pool2d_geometry(p).P; }
inline int64_t pool2d_out_w(const Pool2dParams& p) { return pool2d_geometry(p).Q; }

// ---- shared math (one (n,c) plane at a time) ------------------------------------------------------
CTDET_HD int64_t pool_min64(int64_t a, int64_t b) { return a < b ? a : b; }
CTDET_HD int64_t pool_max64(int64_t a, int64_t b) { return a > b ? a : b; }

// Average pool divisor of output (p, q).
CTDET_HD int64_t pool_avg_divisor(const PoolGeom& g, int64_t p, int64_t q) {
  const int64_t h0 = p * g.sh - g.pad_top, w0 = q * g.sw - g.pad_left;
  int64_t hs, he, ws, we;
  if (g.include_pad) {
    hs = pool_max64(h0, -(int64_t)g.pad_top);
    he = pool_min64(h0 + g.kh, g.H + g.pad_bottom);
    ws = pool_max64(w0, -(int64_t)g.pad_left);
    we = pool_min64(w0 + g.kw, g.W + g.pad_right);
  } else {
    hs = pool_max64(h0, 0);
    he = pool_min64(h0 + g.kh, g.H);
    ws = pool_max64(w0, 0);
    we = pool_min64(w0 + g.kw, g.W);
  }
  const int64_t d = (he - hs) * (we - ws);
  return d > 0 ? d : 1;
}

// Max of window (p, q) over in-image cells; *arg gets h*W + w of the first maximum (-1 if empty).
template <typename T>
CTDET_HD T pool_max_window(const PoolGeom& g, const T* x /*(H,W)*/, int64_t p, int64_t q, int64_t* arg) {
  const int64_t h0 = p * g.sh - g.pad_top, w0 = q * g.sw - g.pad_left;
  const int64_t hs = pool_max64(h0, 0), he = pool_min64(h0 + g.kh, g.H);
  const int64_t ws = pool_max64(w0, 0), we = pool_min64(w0 + g.kw, g.W);
  T best = T(0);
  int64_t best_i = -1;
  for (int64_t h = hs; h < he; ++h)
    for (int64_t w = ws; w < we; ++w) {
      const T v = x[h * g.W + w];
      if (best_i < 0 || v > best) {
        best = v;
        best_i = h * g.W + w;
      }
    }
  *arg = best_i;
  return best;
}

template <typename T>
CTDET_HD T pool2d_forward_at(const PoolGeom& g, const T* x /*(H,W)*/, int64_t p, int64_t q) {
  if (g.kind == 0) {
    int64_t arg;
    return pool_max_window(g, x, p, q, &arg);
  }
  const int64_t h0 = p * g.sh - g.pad_top, w0 = q * g.sw - g.pad_left;
  const int64_t hs = pool_max64(h0, 0), he = pool_min64(h0 + g.kh, g.H);
  const int64_t ws = pool_max64(w0, 0), we = pool_min64(w0 + g.kw, g.W);
  T s = T(0);
  for (int64_t h = hs; h < he; ++h)
    for (int64_t w = ws; w < we; ++w) s += x[h * g.W + w];
  return s / T(pool_avg_divisor(g, p, q));
}

// The windows that contain input cell (h, w): rows p_lo..p_hi, columns q_lo..q_hi (empty when lo > hi).
struct PoolCover {
  int64_t p_lo, p_hi, q_lo, q_hi;
};
CTDET_HD PoolCover pool_covering_windows(const PoolGeom& g, int64_t h, int64_t w) {
  // Windows p with p*sh - pad_top <= h < p*sh - pad_top + kh.
  const int64_t hh = h + g.pad_top, ww = w + g.pad_left;
  PoolCover c;
  c.p_lo = hh - g.kh + 1 <= 0 ? 0 : (hh - g.kh + 1 + g.sh - 1) / g.sh;
  c.p_hi = pool_min64(g.P - 1, hh / g.sh);
  c.q_lo = ww - g.kw + 1 <= 0 ? 0 : (ww - g.kw + 1 + g.sw - 1) / g.sw;
  c.q_hi = pool_min64(g.Q - 1, ww / g.sw);
  return c;
}

// Gradient reaching input cell (h, w) from every window that contains it.
template <typename T>
CTDET_HD T pool2d_backward_at(const PoolGeom& g, const T* x /*(H,W)*/, const T* dy /*(P,Q)*/, int64_t h, int64_t w) {
  const PoolCover cv = pool_covering_windows(g, h, w);
  const int64_t p_lo = cv.p_lo, p_hi = cv.p_hi, q_lo = cv.q_lo, q_hi = cv.q_hi;
  const int64_t self = h * g.W + w;
  T s = T(0);
  for (int64_t p = p_lo; p <= p_hi; ++p)
    for (int64_t q = q_lo; q <= q_hi; ++q) {
      if (g.kind == 0) {
        int64_t arg;
        pool_max_window(g, x, p, q, &arg);
        if (arg == self) s += dy[p * g.Q + q];
      } else {
        s += dy[p * g.Q + q] / T(pool_avg_divisor(g, p, q));
      }
    }
  return s;
}

// Max pool backward in two passes (the CUDA path when it has workspace): first every window's argmax (h*W + w of its
// first maximum, as pool_max_window; -1 for an empty window), then each input cell sums dy over the windows that
// contain it and chose it, in the same (p, q) order as pool2d_backward_at: the same bits, with one argmax per
// window instead of one per window per covered cell.
template <typename T>
CTDET_HD int32_t pool_max_argmax_at(const PoolGeom& g, const T* x /*(H,W)*/, int64_t p, int64_t q) {
  int64_t arg;
  pool_max_window(g, x, p, q, &arg);
  return int32_t(arg);
}
template <typename T>
CTDET_HD T pool_max_backward_from_argmax_at(const PoolGeom& g, const int32_t* arg /*(P,Q)*/, const T* dy /*(P,Q)*/,
                                            int64_t h, int64_t w) {
  const PoolCover cv = pool_covering_windows(g, h, w);
  const int32_t self = int32_t(h * g.W + w);
  T s = T(0);
  for (int64_t p = cv.p_lo; p <= cv.p_hi; ++p)
    for (int64_t q = cv.q_lo; q <= cv.q_hi; ++q)
      if (arg[p * g.Q + q] == self) s += dy[p * g.Q + q];
  return s;
}
// Bytes of the argmax buffer of the two-pass max-pool backward on CUDA (int32 per window, 256-aligned); 0 for an
// average pool. Host arithmetic only: the planner asks it without a device.
size_t pool2d_backward_cuda_workspace_bytes(const Pool2dParams& p);

// ---- pool2d entry points ----------------------------------------------------------------------------
template <typename T>
void pool2d_forward_cpu(const Pool2dParams& p, const T* x /*(N,C,H,W)*/, T* y /*(N,C,P,Q)*/);
// x is the saved input (max pool needs it to find the argmax; avg pool ignores it and may get null).
template <typename T>
void pool2d_backward_cpu(const Pool2dParams& p, const T* dy /*(N,C,P,Q)*/, const T* x /*(N,C,H,W)*/,
                         T* dx /*(N,C,H,W)*/, bool accumulate_dx);

// Max pool that keeps each window's argmax (int32 h*W + w of its first maximum, -1 for an empty window; as
// pool_max_argmax_at) as a second output, so that its backward needs only that and dy: a training graph's input to
// the pool may then be freed after the forward (the ROI crops: 49 MiB at ResNet-101's training peak). y is the same,
// bit for bit, as pool2d_forward_cpu's; dx the same as pool2d_backward_cpu's. Throws for an average pool or an
// input plane of more than 2^31 cells.
template <typename T>
void pool2d_max_forward_argmax_cpu(const Pool2dParams& p, const T* x /*(N,C,H,W)*/, T* y /*(N,C,P,Q)*/,
                                   int32_t* arg /*(N,C,P,Q)*/);
template <typename T>
void pool2d_max_backward_from_argmax_cpu(const Pool2dParams& p, const T* dy /*(N,C,P,Q)*/,
                                         const int32_t* arg /*(N,C,P,Q)*/, T* dx /*(N,C,H,W)*/, bool accumulate_dx);

// ---- global average pool: (N,C,H,W) -> (N,C) -------------------------------------------------------------
struct GapParams {
  int64_t N = 0, C = 0, HW = 0;
};
void validate_global_avg_pool(const GapParams& p);  // HW must be > 0
template <typename T>
void global_avg_pool_forward_cpu(const GapParams& p, const T* x /*(N,C,H,W)*/, T* y /*(N,C)*/);
template <typename T>
void global_avg_pool_backward_cpu(const GapParams& p, const T* dy /*(N,C)*/, T* dx /*(N,C,H,W)*/, bool accumulate_dx);

#if CTDET_WITH_CUDA
void pool2d_forward_cuda(CudaContext& ctx, const Pool2dParams& p, const float* x, float* y);
// Max pool: with workspace of at least pool2d_backward_cuda_workspace_bytes(p), the two-pass form above; without
// (null / too small), each input cell recomputes the argmax of every window containing it. Same result either way.
void pool2d_backward_cuda(CudaContext& ctx, const Pool2dParams& p, const float* dy, const float* x, float* dx,
                          bool accumulate_dx, void* workspace = nullptr, size_t workspace_bytes = 0);
void pool2d_max_forward_argmax_cuda(CudaContext& ctx, const Pool2dParams& p, const float* x, float* y, int32_t* arg);
void pool2d_max_backward_from_argmax_cuda(CudaContext& ctx, const Pool2dParams& p, const float* dy,
                                          const int32_t* arg, float* dx, bool accumulate_dx);
void global_avg_pool_forward_cuda(CudaContext& ctx, const GapParams& p, const float* x, float* y);
void global_avg_pool_backward_cuda(CudaContext& ctx, const GapParams& p, const float* dy, float* dx,
                                   bool accumulate_dx);
#endif

}  // namespace ctdet
