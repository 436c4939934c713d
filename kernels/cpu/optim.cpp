// CPU reference for kernels/optim.h.
#include "kernels/optim.h"

#include <algorithm>
#include <cmath>
#include <vector>

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

template <typename T>
bool clipped_sgd_update_list_cpu(const SgdParams& p, double clip, bool per_tensor, int k, T* const* var,
                                 T* const* accum, T* const* grad, const int64_t* sizes, double* norms) {
  validate_sgd(p, 0);
  validate_clip("clipped_sgd_update_list", clip, k, sizes);
  std::vector<T*> g;
  std::vector<int64_t> n;
  std::vector<int> at;  // list index of each non-null gradient
  for (int i = 0; i < k; ++i)
    if (grad[i]) {
      g.push_back(grad[i]);
      n.push_back(sizes[i]);
      at.push_back(i);
    }
  bool finite = true;
  if (per_tensor) {
    std::vector<double> part(g.size(), 0.0);
    finite = clip_by_tensor_norm_cpu<T>(clip, int(g.size()), g.data(), n.data(), part.data());
    for (int i = 0; i < k; ++i) norms[i] = 0.0;
    for (size_t j = 0; j < g.size(); ++j) norms[at[j]] = part[j];
  } else {
    norms[0] = clip_by_global_norm_cpu<T>(clip, int(g.size()), g.data(), n.data());
    finite = std::isfinite(norms[0]);
  }
  if (!finite) return false;
  const T lr = T(p.lr), m = T(p.momentum), wd = T(p.weight_decay);
  for (int i = 0; i < k; ++i) {
    if (grad[i]) {
      sgd_momentum_update_cpu<T>(p, sizes[i], var[i], accum[i], grad[i]);
      continue;
    }
    for (int64_t j = 0; j < sizes[i]; ++j) sgd_momentum_step(var[i][j], accum[i][j], T(0), lr, m, wd);
  }
  return true;
}

std::vector<ListChunk> list_chunks(int k, const int64_t* sizes, std::vector<int64_t>* first_chunk) {
  CTDET_CHECK(k >= 0, "list_chunks: tensor count must be >= 0, got ", k);
  std::vector<ListChunk> out;
  if (first_chunk) first_chunk->assign(size_t(k) + 1, 0);
  for (int i = 0; i < k; ++i) {
    CTDET_CHECK(sizes[i] >= 0, "list_chunks: sizes[", i, "] = ", sizes[i], " is negative");
    if (first_chunk) (*first_chunk)[size_t(i)] = int64_t(out.size());
    for (int64_t s = 0; s < sizes[i]; s += kListChunk) {
      ListChunk c;
      c.tensor = i;
      c.start = s;
      c.len = int32_t(std::min<int64_t>(kListChunk, sizes[i] - s));
      out.push_back(c);
    }
  }
  if (first_chunk) (*first_chunk)[size_t(k)] = int64_t(out.size());
  return out;
}

#define CTDET_INSTANTIATE(T)                                                                    \
  template void sgd_momentum_update_cpu<T>(const SgdParams&, int64_t, T*, T*, const T*);        \
  template double clip_by_global_norm_cpu<T>(double, int, T* const*, const int64_t*);           \
  template bool clip_by_tensor_norm_cpu<T>(double, int, T* const*, const int64_t*, double*);             \
  template bool clipped_sgd_update_list_cpu<T>(const SgdParams&, double, bool, int, T* const*, T* const*,  \
                                               T* const*, const int64_t*, double*);
CTDET_INSTANTIATE(float)
CTDET_INSTANTIATE(double)
#undef CTDET_INSTANTIATE

}  // namespace ctdet
