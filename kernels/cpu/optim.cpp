// CPU reference for kernels/optim.h.
#include "kernels/optim.h"

#include <cmath>

#include "nn/error.h"

namespace ctdet {

void validate_sgd(const SgdParams& p, int64_t n) {
  CTDET_CHECK(n >= 0, "sgd_momentum: n must be >= 0, got ", n);
  CTDET_CHECK(std::isfinite(p.lr) && p.lr >= 0, "sgd_momentum: lr must be finite and >= 0, got ", p.lr);
  CTDET_CHECK(std::isfinite(p.momentum) && p.momentum >= 0, "sgd_momentum: momentum must be finite and >= 0, got ",
              p.momentum);
  CTDET_CHECK(std::isfinite(p.weight_decay) && p.weight_decay >= 0,
              "sgd_momentum: weight_decay must be finite and >= 0, got ", p.weight_decay);
}

template <typename T>
void sgd_momentum_update_cpu(const SgdParams& p, int64_t n, T* var, T* accum, const T* grad) {
  validate_sgd(p, n);
  const T lr = T(p.lr), m = T(p.momentum), wd = T(p.weight_decay);
  for (int64_t i = 0; i < n; ++i) sgd_momentum_step(var[i], accum[i], grad[i], lr, m, wd);
}

void validate_clip(const char* op, double clip, int k, const int64_t* sizes) {
  CTDET_CHECK(std::isfinite(clip) && clip > 0, op, ": clip norm must be finite and > 0, got ", clip);
  CTDET_CHECK(k >= 0, op, ": tensor count must be >= 0, got ", k);
  for (int i = 0; i < k; ++i) CTDET_CHECK(sizes[i] >= 0, op, ": sizes[", i, "] = ", sizes[i], " is negative");
}

template <typename T>
static double sum_squares(const T* g, int64_t n) {
  double s = 0;
  for (int64_t j = 0; j < n; ++j) s += double(g[j]) * double(g[j]);
  return s;
}

template <typename T>
static void scale_by(T* g, int64_t n, double f) {
  if (f == 1.0) return;
  for (int64_t j = 0; j < n; ++j) g[j] = T(double(g[j]) * f);
}

template <typename T>
double clip_by_global_norm_cpu(double clip, int k, T* const* grads, const int64_t* sizes) {
  validate_clip("clip_by_global_norm", clip, k, sizes);
  double s = 0;
  for (int i = 0; i < k; ++i) s += sum_squares(grads[i], sizes[i]);
  const double norm = std::sqrt(s);
  if (!std::isfinite(norm)) return norm;
  const double f = clip_factor(norm, clip);
  for (int i = 0; i < k; ++i) scale_by(grads[i], sizes[i], f);
  return norm;
}

template <typename T>
bool clip_by_tensor_norm_cpu(double clip, int k, T* const* grads, const int64_t* sizes, double* norms) {
  validate_clip("clip_by_tensor_norm", clip, k, sizes);
  bool all_finite = true;
  for (int i = 0; i < k; ++i) {
    const double norm = std::sqrt(sum_squares(grads[i], sizes[i]));
    if (norms) norms[i] = norm;
    if (!std::isfinite(norm)) {
      all_finite = false;
      continue;
    }
    scale_by(grads[i], sizes[i], clip_factor(norm, clip));
  }
  return all_finite;
}

#define CTDET_INSTANTIATE(T)                                                                    \
  template void sgd_momentum_update_cpu<T>(const SgdParams&, int64_t, T*, T*, const T*);        \
  template double clip_by_global_norm_cpu<T>(double, int, T* const*, const int64_t*);           \
  template bool clip_by_tensor_norm_cpu<T>(double, int, T* const*, const int64_t*, double*);
CTDET_INSTANTIATE(float)
CTDET_INSTANTIATE(double)
#undef CTDET_INSTANTIATE

}  // namespace ctdet
