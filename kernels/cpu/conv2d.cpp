// conv2d CPU reference: float through im2col + OpenBLAS sgemm, double through direct loops.
// The two paths share nothing but the index arithmetic of the definition in kernels/conv2d.h, so the
// tests comparing them (and both against torch) check each other.
#include "kernels/conv2d.h"

#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "nn/error.h"

namespace ctdet {

int conv2d_out_size(int in, int kernel, int stride, int pad_before, int pad_after, int dilation) {
  if (stride <= 0) return 0;
  int64_t span = int64_t(in) + pad_before + pad_after - int64_t(dilation) * (kernel - 1) - 1;
  if (span < 0) return 0;
  return int(span / stride + 1);
}

int Conv2dParams::out_h() const { return conv2d_out_size(H, R, stride_h, pad_top, pad_bottom, dilation_h); }
int Conv2dParams::out_w() const { return conv2d_out_size(W, S, stride_w, pad_left, pad_right, dilation_w); }

std::string Conv2dParams::shape_string() const {
  return str(N, ",", C, ",", H, ",", W, "|", K, ",", R, ",", S, "|", stride_h, ",", stride_w, "|", pad_top, ",",
             pad_bottom, ",", pad_left, ",", pad_right, "|", dilation_h, ",", dilation_w, "|", groups, "|",
             has_bias ? 1 : 0);
}

SamePadding tf_same_padding(int in, int kernel, int stride, int dilation) {
  CTDET_CHECK(in > 0 && kernel > 0 && stride > 0 && dilation > 0, "tf_same_padding: sizes must be positive, got in=",
              in, " kernel=", kernel, " stride=", stride, " dilation=", dilation);
  int out = (in + stride - 1) / stride;
  int eff_k = dilation * (kernel - 1) + 1;
  int total = std::max((out - 1) * stride + eff_k - in, 0);
  SamePadding s;
  s.before = total / 2;
  s.after = total - s.before;
  return s;
}

void validate_conv2d(const Conv2dParams& p) {
  CTDET_CHECK(p.N > 0 && p.C > 0 && p.H > 0 && p.W > 0, "conv2d: input sizes must be positive, got N=", p.N,
              " C=", p.C, " H=", p.H, " W=", p.W);
  CTDET_CHECK(p.K > 0 && p.R > 0 && p.S > 0, "conv2d: kernel sizes must be positive, got K=", p.K, " R=", p.R,
              " S=", p.S);
  CTDET_CHECK(p.stride_h > 0 && p.stride_w > 0, "conv2d: stride must be positive, got ", p.stride_h, "x",
              p.stride_w);
  CTDET_CHECK(p.dilation_h > 0 && p.dilation_w > 0, "conv2d: dilation must be positive, got ", p.dilation_h, "x",
              p.dilation_w);
  CTDET_CHECK(p.pad_top >= 0 && p.pad_bottom >= 0 && p.pad_left >= 0 && p.pad_right >= 0,
              "conv2d: negative padding (top,bottom,left,right)=(", p.pad_top, ",", p.pad_bottom, ",", p.pad_left,
              ",", p.pad_right, ")");
  CTDET_CHECK(p.groups > 0, "conv2d: groups must be positive, got ", p.groups);
  CTDET_CHECK(p.C % p.groups == 0, "conv2d: C=", p.C, " is not divisible by groups=", p.groups);
  CTDET_CHECK(p.K % p.groups == 0, "conv2d: K=", p.K, " is not divisible by groups=", p.groups);
  CTDET_CHECK(p.out_h() > 0 && p.out_w() > 0, "conv2d: output size ", p.out_h(), "x", p.out_w(),
              " is not positive for input ", p.H, "x", p.W, ", kernel ", p.R, "x", p.S, ", shape ",
              p.shape_string());
}

// Images per sgemm in the float forward and backward: small outputs (the second stage's 7x7 ROI crops) are batched
// so that one GEMM has at least kMinGemmCols columns; otherwise the weight matrix is packed again for every 49-column
// product (300 ROIs: 300 packings of a 512x4608 matrix), which made the ROI head memory-bound. The backward was
// batched in session 5 (its data and filter GEMMs ran at 50-58 and 70-135 GFLOP/s per ROI, the forward at 140).
constexpr int64_t kMinGemmCols = 512;
int64_t gemm_batch_images(const Conv2dParams& p) {
  const int64_t PQ = int64_t(p.out_h()) * p.out_w();
  if (p.groups != 1 || PQ >= kMinGemmCols) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(p.N, (kMinGemmCols + PQ - 1) / PQ));
}

bool conv2d_uses_pointwise_gemm(const Conv2dParams& p) {
  return p.R == 1 && p.S == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_top == 0 && p.pad_bottom == 0 &&
         p.pad_left == 0 && p.pad_right == 0 && p.dilation_h == 1 && p.dilation_w == 1 && p.groups == 1 &&
         int64_t(p.H) * p.W >= kPointwiseGemmMinCells;
}

// Row-major (K, HW) is column-major (HW, K) with leading dimension HW; row-major w (K, C) is column-major (C, K).
GemmDesc pointwise_forward_gemm(const Conv2dParams& p) {
  // y[n]^T (HW, K) = x[n]^T (HW, C) w^T (C, K)
  const int HW = p.H * p.W;
  GemmDesc g;
  g.m = HW, g.n = p.K, g.k = p.C;
  g.lda = HW, g.ldb = p.C, g.ldc = HW;
  g.stride_a = int64_t(p.C) * HW, g.stride_b = 0, g.stride_c = int64_t(p.K) * HW;
  g.batch = p.N;
  return g;
}

GemmDesc pointwise_backward_data_gemm(const Conv2dParams& p, bool accumulate_dx) {
  // dx[n]^T (HW, C) = dy[n]^T (HW, K) w (K, C); w as stored is column-major (C, K), hence trans_b
  const int HW = p.H * p.W;
  GemmDesc g;
  g.trans_b = true;
  g.m = HW, g.n = p.C, g.k = p.K;
  g.lda = HW, g.ldb = p.C, g.ldc = HW;
  g.stride_a = int64_t(p.K) * HW, g.stride_b = 0, g.stride_c = int64_t(p.C) * HW;
  g.batch = p.N;
  g.beta = accumulate_dx ? 1.f : 0.f;
  return g;
}

GemmDesc pointwise_backward_filter_gemm(const Conv2dParams& p, bool accumulate_dw) {
  // dw^T (C, K) = sum_n x[n] (C, HW) dy[n]^T (HW, K); x[n] as stored is column-major (HW, C), hence trans_a
  const int HW = p.H * p.W;
  GemmDesc g;
  g.trans_a = true;
  g.m = p.C, g.n = p.K, g.k = HW;
  g.lda = HW, g.ldb = HW, g.ldc = p.C;
  g.stride_a = int64_t(p.C) * HW, g.stride_b = int64_t(p.K) * HW, g.stride_c = 0;
  g.batch = p.N;
  g.beta = accumulate_dw ? 1.f : 0.f;
  return g;
}

size_t conv2d_workspace_bytes_cpu(const Conv2dParams& p) {
  validate_conv2d(p);
  if (conv2d_uses_pointwise_gemm(p)) return 0;
  const size_t PQ = size_t(p.out_h()) * p.out_w(), nb = size_t(gemm_batch_images(p));
  const size_t col = size_t(p.C / p.groups) * p.R * p.S * PQ * nb;
  // forward: the GEMM output before it is scattered to (n, K, P, Q); backward: dy of the nb images side by side
  const size_t tmp = nb > 1 ? size_t(p.K) * PQ * nb : 0;
  return (col + tmp) * sizeof(float);
}

namespace {

// col (Cg*R*S, P*Q) of image n, group g; rows are ld floats apart (ld = P*Q, or larger when several images'
// columns sit side by side).
void im2col(const Conv2dParams& p, const float* x_ng /*(Cg,H,W)*/, float* col, int64_t ld = -1) {
  const int Cg = p.C / p.groups, P = p.out_h(), Q = p.out_w();
  if (ld < 0) ld = int64_t(P) * Q;
  for (int c = 0; c < Cg; ++c)
    for (int r = 0; r < p.R; ++r)
      for (int s = 0; s < p.S; ++s) {
        float* row = col + ((int64_t(c) * p.R + r) * p.S + s) * ld;
        const float* xc = x_ng + int64_t(c) * p.H * p.W;
        for (int oh = 0; oh < P; ++oh) {
          int h = oh * p.stride_h - p.pad_top + r * p.dilation_h;
          float* out = row + int64_t(oh) * Q;
          if (h < 0 || h >= p.H) {
            std::fill(out, out + Q, 0.f);
            continue;
          }
          for (int ow = 0; ow < Q; ++ow) {
            int wi = ow * p.stride_w - p.pad_left + s * p.dilation_w;
            out[ow] = (wi >= 0 && wi < p.W) ? xc[int64_t(h) * p.W + wi] : 0.f;
          }
        }
      }
}

// Adds col (Cg*R*S, P*Q) back into dx of image n, group g; rows are ld floats apart as in im2col.
void col2im_add(const Conv2dParams& p, const float* col, float* dx_ng /*(Cg,H,W)*/, int64_t ld = -1) {
  const int Cg = p.C / p.groups, P = p.out_h(), Q = p.out_w();
  if (ld < 0) ld = int64_t(P) * Q;
  for (int c = 0; c < Cg; ++c)
    for (int r = 0; r < p.R; ++r)
      for (int s = 0; s < p.S; ++s) {
        const float* row = col + ((int64_t(c) * p.R + r) * p.S + s) * ld;
        float* dxc = dx_ng + int64_t(c) * p.H * p.W;
        for (int oh = 0; oh < P; ++oh) {
          int h = oh * p.stride_h - p.pad_top + r * p.dilation_h;
          if (h < 0 || h >= p.H) continue;
          for (int ow = 0; ow < Q; ++ow) {
            int wi = ow * p.stride_w - p.pad_left + s * p.dilation_w;
            if (wi >= 0 && wi < p.W) dxc[int64_t(h) * p.W + wi] += row[int64_t(oh) * Q + ow];
          }
        }
      }
}

// Runs a GemmDesc with OpenBLAS (see kernels/conv2d.h for the semantics).
void run_gemm_cpu(const GemmDesc& g, const float* A, const float* B, float* C) {
  for (int b = 0; b < g.batch; ++b) {
    const float beta = (g.stride_c == 0 && b > 0) ? 1.f : g.beta;
    cblas_sgemm(CblasColMajor, g.trans_a ? CblasTrans : CblasNoTrans, g.trans_b ? CblasTrans : CblasNoTrans, g.m, g.n,
                g.k, 1.f, A + b * g.stride_a, g.lda, B + b * g.stride_b, g.ldb, beta, C + b * g.stride_c, g.ldc);
  }
}

void forward_im2col(const Conv2dParams& p, const float* x, const float* w, const float* b, float* y, float* col) {
  const int G = p.groups, Cg = p.C / G, Kg = p.K / G;
  const int PQ = p.out_h() * p.out_w(), CRS = Cg * p.R * p.S;
  const int64_t nb = gemm_batch_images(p);
  if (nb > 1) {  // groups == 1: nb images' columns side by side, one GEMM, then scattered to (n, K, P, Q)
    const int64_t ld = nb * PQ;
    float* tmp = col + int64_t(CRS) * ld;
    for (int64_t n0 = 0; n0 < p.N; n0 += nb) {
      const int64_t cur = std::min<int64_t>(nb, p.N - n0);
      for (int64_t j = 0; j < cur; ++j) im2col(p, x + (n0 + j) * p.C * p.H * p.W, col + j * PQ, ld);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p.K, int(cur * PQ), CRS, 1.f, w, CRS, col, int(ld), 0.f,
                  tmp, int(ld));
      for (int64_t j = 0; j < cur; ++j)
        for (int k = 0; k < p.K; ++k) {
          const float bk = p.has_bias ? b[k] : 0.f;
          const float* src = tmp + int64_t(k) * ld + j * PQ;
          float* dst = y + ((n0 + j) * p.K + k) * PQ;
          for (int i = 0; i < PQ; ++i) dst[i] = src[i] + bk;
        }
    }
    return;
  }
  for (int n = 0; n < p.N; ++n)
    for (int g = 0; g < G; ++g) {
      im2col(p, x + (int64_t(n) * p.C + int64_t(g) * Cg) * p.H * p.W, col);
      float* yg = y + (int64_t(n) * p.K + int64_t(g) * Kg) * PQ;
      // y_g (Kg, PQ) = w_g (Kg, CRS) * col (CRS, PQ)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Kg, PQ, CRS, 1.f, w + int64_t(g) * Kg * CRS, CRS, col,
                  PQ, 0.f, yg, PQ);
      if (p.has_bias)
        for (int k = 0; k < Kg; ++k) {
          float bk = b[g * Kg + k];
          for (int i = 0; i < PQ; ++i) yg[int64_t(k) * PQ + i] += bk;
        }
    }
}

void backward_im2col(const Conv2dParams& p, const float* dy, const float* x, const float* w, float* dx, bool acc_dx,
                     float* dw, bool acc_dw, float* col) {
  const int G = p.groups, Cg = p.C / G, Kg = p.K / G;
  const int PQ = p.out_h() * p.out_w(), CRS = Cg * p.R * p.S;
  if (dx && !acc_dx) std::fill(dx, dx + p.x_numel(), 0.f);
  const int64_t nb = gemm_batch_images(p);
  if (nb > 1) {  // groups == 1: nb images side by side (as the forward), one GEMM each for dw and dx
    const int64_t ld = nb * PQ;
    float* dyb = col + int64_t(CRS) * ld;  // dy of the nb images as (K, nb*PQ)
    for (int64_t n0 = 0; n0 < p.N; n0 += nb) {
      const int64_t cur = std::min<int64_t>(nb, p.N - n0);
      const int cols = int(cur * PQ);
      for (int64_t j = 0; j < cur; ++j)
        for (int k = 0; k < p.K; ++k)
          std::copy_n(dy + ((n0 + j) * p.K + k) * PQ, PQ, dyb + int64_t(k) * ld + j * PQ);
      if (dw) {
        for (int64_t j = 0; j < cur; ++j) im2col(p, x + (n0 + j) * p.C * p.H * p.W, col + j * PQ, ld);
        // dw (K, CRS) (+)= dy (K, cols) * col^T (cols, CRS)
        const float beta = (n0 == 0 && !acc_dw) ? 0.f : 1.f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p.K, CRS, cols, 1.f, dyb, int(ld), col, int(ld), beta, dw,
                    CRS);
      }
      if (dx) {
        // col (CRS, cols) = w^T (CRS, K) * dy (K, cols)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CRS, cols, p.K, 1.f, w, CRS, dyb, int(ld), 0.f, col,
                    int(ld));
        for (int64_t j = 0; j < cur; ++j) col2im_add(p, col + j * PQ, dx + (n0 + j) * p.C * p.H * p.W, ld);
      }
    }
    return;
  }
  for (int n = 0; n < p.N; ++n)
    for (int g = 0; g < G; ++g) {
      const float* dyg = dy + (int64_t(n) * p.K + int64_t(g) * Kg) * PQ;
      int64_t x_off = (int64_t(n) * p.C + int64_t(g) * Cg) * p.H * p.W;
      if (dw) {
        im2col(p, x + x_off, col);
        // dw_g (Kg, CRS) (+)= dy_g (Kg, PQ) * col^T (PQ, CRS)
        float beta = (n == 0 && !acc_dw) ? 0.f : 1.f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Kg, CRS, PQ, 1.f, dyg, PQ, col, PQ, beta,
                    dw + int64_t(g) * Kg * CRS, CRS);
      }
      if (dx) {
        // col (CRS, PQ) = w_g^T (CRS, Kg) * dy_g (Kg, PQ)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CRS, PQ, Kg, 1.f, w + int64_t(g) * Kg * CRS, CRS, dyg,
                    PQ, 0.f, col, PQ);
        col2im_add(p, col, dx + x_off);
      }
    }
}

// Direct loops: the definition, written out. Used for double (gradient checks) and as a cross-check.
template <typename T>
void forward_direct(const Conv2dParams& p, const T* x, const T* w, const T* b, T* y) {
  const int G = p.groups, Cg = p.C / G, Kg = p.K / G, P = p.out_h(), Q = p.out_w();
  for (int n = 0; n < p.N; ++n)
    for (int k = 0; k < p.K; ++k) {
      const int g = k / Kg;
      for (int oh = 0; oh < P; ++oh)
        for (int ow = 0; ow < Q; ++ow) {
          T acc = p.has_bias ? b[k] : T(0);
          for (int c = 0; c < Cg; ++c)
            for (int r = 0; r < p.R; ++r) {
              int h = oh * p.stride_h - p.pad_top + r * p.dilation_h;
              if (h < 0 || h >= p.H) continue;
              for (int s = 0; s < p.S; ++s) {
                int wi = ow * p.stride_w - p.pad_left + s * p.dilation_w;
                if (wi < 0 || wi >= p.W) continue;
                acc += w[((int64_t(k) * Cg + c) * p.R + r) * p.S + s] *
                       x[((int64_t(n) * p.C + g * Cg + c) * p.H + h) * p.W + wi];
              }
            }
          y[((int64_t(n) * p.K + k) * P + oh) * Q + ow] = acc;
        }
    }
}

template <typename T>
void backward_direct(const Conv2dParams& p, const T* dy, const T* x, const T* w, T* dx, bool acc_dx, T* dw,
                     bool acc_dw) {
  const int G = p.groups, Cg = p.C / G, Kg = p.K / G, P = p.out_h(), Q = p.out_w();
  if (dx && !acc_dx) std::fill(dx, dx + p.x_numel(), T(0));
  if (dw && !acc_dw) std::fill(dw, dw + p.w_numel(), T(0));
  for (int n = 0; n < p.N; ++n)
    for (int k = 0; k < p.K; ++k) {
      const int g = k / Kg;
      for (int oh = 0; oh < P; ++oh)
        for (int ow = 0; ow < Q; ++ow) {
          const T d = dy[((int64_t(n) * p.K + k) * P + oh) * Q + ow];
          for (int c = 0; c < Cg; ++c)
            for (int r = 0; r < p.R; ++r) {
              int h = oh * p.stride_h - p.pad_top + r * p.dilation_h;
              if (h < 0 || h >= p.H) continue;
              for (int s = 0; s < p.S; ++s) {
                int wi = ow * p.stride_w - p.pad_left + s * p.dilation_w;
                if (wi < 0 || wi >= p.W) continue;
                int64_t xi = ((int64_t(n) * p.C + g * Cg + c) * p.H + h) * p.W + wi;
                int64_t wj = ((int64_t(k) * Cg + c) * p.R + r) * p.S + s;
                if (dx) dx[xi] += w[wj] * d;
                if (dw) dw[wj] += x[xi] * d;
              }
            }
        }
    }
}

template <typename T>
void bias_grad(const Conv2dParams& p, const T* dy, T* db, bool acc_db) {
  const int64_t PQ = int64_t(p.out_h()) * p.out_w();
  for (int k = 0; k < p.K; ++k) {
    double s = 0;  // double accumulator: db sums N*P*Q terms
    for (int n = 0; n < p.N; ++n) {
      const T* d = dy + (int64_t(n) * p.K + k) * PQ;
      for (int64_t i = 0; i < PQ; ++i) s += d[i];
    }
    db[k] = acc_db ? T(db[k] + s) : T(s);
  }
}

}  // namespace

template <typename T>
void conv2d_forward_cpu(const Conv2dParams& p, const T* x, const T* w, const T* b, T* y, void* workspace) {
  validate_conv2d(p);
  CTDET_CHECK(!p.has_bias || b != nullptr, "conv2d: has_bias is set but the bias pointer is null (",
              p.shape_string(), ")");
  if constexpr (std::is_same_v<T, float>) {
    if (conv2d_uses_pointwise_gemm(p)) {
      run_gemm_cpu(pointwise_forward_gemm(p), x, w, y);
      if (p.has_bias) {
        const int64_t HW = int64_t(p.H) * p.W;
        for (int64_t nk = 0; nk < int64_t(p.N) * p.K; ++nk)
          for (int64_t i = 0; i < HW; ++i) y[nk * HW + i] += b[nk % p.K];
      }
      return;
    }
    CTDET_CHECK(workspace != nullptr, "conv2d: the float CPU path needs a workspace of ",
                conv2d_workspace_bytes_cpu(p), " bytes (", p.shape_string(), ")");
    forward_im2col(p, x, w, b, y, static_cast<float*>(workspace));
  } else {
    (void)workspace;
    forward_direct(p, x, w, b, y);
  }
}

template <typename T>
void conv2d_backward_cpu(const Conv2dParams& p, const T* dy, const T* x, const T* w, T* dx, bool accumulate_dx,
                         T* dw, bool accumulate_dw, T* db, bool accumulate_db, void* workspace) {
  validate_conv2d(p);
  if constexpr (std::is_same_v<T, float>) {
    if (conv2d_uses_pointwise_gemm(p)) {
      if (dw) run_gemm_cpu(pointwise_backward_filter_gemm(p, accumulate_dw), x, dy, dw);
      if (dx) run_gemm_cpu(pointwise_backward_data_gemm(p, accumulate_dx), dy, w, dx);
    } else if (dx || dw) {
      CTDET_CHECK(workspace != nullptr, "conv2d backward: the float CPU path needs a workspace of ",
                  conv2d_workspace_bytes_cpu(p), " bytes (", p.shape_string(), ")");
      backward_im2col(p, dy, x, w, dx, accumulate_dx, dw, accumulate_dw, static_cast<float*>(workspace));
    }
  } else {
    (void)workspace;
    backward_direct(p, dy, x, w, dx, accumulate_dx, dw, accumulate_dw);
  }
  if (db && p.has_bias) bias_grad(p, dy, db, accumulate_db);
}

template void conv2d_forward_cpu<float>(const Conv2dParams&, const float*, const float*, const float*, float*,
                                        void*);
template void conv2d_forward_cpu<double>(const Conv2dParams&, const double*, const double*, const double*,
                                         double*, void*);
template void conv2d_backward_cpu<float>(const Conv2dParams&, const float*, const float*, const float*, float*,
                                         bool, float*, bool, float*, bool, void*);
template void conv2d_backward_cpu<double>(const Conv2dParams&, const double*, const double*, const double*,
                                          double*, bool, double*, bool, double*, bool, void*);

}  // namespace ctdet
