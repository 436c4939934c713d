// linear CPU reference: float through OpenBLAS sgemm, double through plain loops.
#include <cblas.h>

#include <algorithm>
#include <type_traits>

#include "kernels/matmul.h"
#include "nn/error.h"

namespace ctdet {

void validate_linear(const LinearParams& p) {
  CTDET_CHECK(p.M >= 0, "linear: M (rows) must be >= 0, got ", p.M);
  CTDET_CHECK(p.K > 0, "linear: K (input features) must be positive, got ", p.K);
  CTDET_CHECK(p.N > 0, "linear: N (output features) must be positive, got ", p.N);
}

template <typename T>
void linear_forward_cpu(const LinearParams& p, const T* x, const T* w, const T* b, T* y) {
  validate_linear(p);
  CTDET_CHECK(!p.has_bias || b != nullptr, "linear: has_bias is set but the bias pointer is null");
  const int M = p.M, K = p.K, N = p.N;
  if (M == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    if (p.has_bias)
      for (int m = 0; m < M; ++m) std::copy(b, b + N, y + int64_t(m) * N);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.f, x, K, w, K, p.has_bias ? 1.f : 0.f, y, N);
  } else {
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) {
        T acc = p.has_bias ? b[n] : T(0);
        for (int k = 0; k < K; ++k) acc += x[int64_t(m) * K + k] * w[int64_t(n) * K + k];
        y[int64_t(m) * N + n] = acc;
      }
  }
}

template <typename T>
void linear_backward_cpu(const LinearParams& p, const T* dy, const T* x, const T* w, T* dx, bool accumulate_dx,
                         T* dw, bool accumulate_dw, T* db, bool accumulate_db) {
  validate_linear(p);
  const int M = p.M, K = p.K, N = p.N;
  if (db && p.has_bias)
    for (int n = 0; n < N; ++n) {
      T s = 0;
      for (int m = 0; m < M; ++m) s += dy[int64_t(m) * N + n];
      db[n] = accumulate_db ? T(db[n] + s) : s;
    }
  if constexpr (std::is_same_v<T, float>) {
    if (dx && M > 0)  // dx (M,K) (+)= dy (M,N) w (N,K)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.f, dy, N, w, K, accumulate_dx ? 1.f : 0.f,
                  dx, K);
    if (dw) {
      if (M > 0)  // dw (N,K) (+)= dy^T (N,M) x (M,K)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.f, dy, N, x, K, accumulate_dw ? 1.f : 0.f,
                    dw, K);
      else if (!accumulate_dw)
        std::fill(dw, dw + int64_t(N) * K, 0.f);
    }
  } else {
    if (dx)
      for (int m = 0; m < M; ++m)
        for (int k = 0; k < K; ++k) {
          T s = 0;
          for (int n = 0; n < N; ++n) s += dy[int64_t(m) * N + n] * w[int64_t(n) * K + k];
          dx[int64_t(m) * K + k] = accumulate_dx ? T(dx[int64_t(m) * K + k] + s) : s;
        }
    if (dw)
      for (int n = 0; n < N; ++n)
        for (int k = 0; k < K; ++k) {
          T s = 0;
          for (int m = 0; m < M; ++m) s += dy[int64_t(m) * N + n] * x[int64_t(m) * K + k];
          dw[int64_t(n) * K + k] = accumulate_dw ? T(dw[int64_t(n) * K + k] + s) : s;
        }
  }
}

template void linear_forward_cpu<float>(const LinearParams&, const float*, const float*, const float*, float*);
template void linear_forward_cpu<double>(const LinearParams&, const double*, const double*, const double*, double*);
template void linear_backward_cpu<float>(const LinearParams&, const float*, const float*, const float*, float*, bool,
                                         float*, bool, float*, bool);
template void linear_backward_cpu<double>(const LinearParams&, const double*, const double*, const double*, double*,
                                          bool, double*, bool, double*, bool);

}  // namespace ctdet
