// Per-row loss math shared by the CPU reference and the CUDA kernels of kernels/loss.h.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/common/hd.h"

namespace ctdet {

// exp / log / log1p that resolve to the CUDA overloads in device code and to <cmath> on the host.
#if defined(__CUDA_ARCH__)
template <typename T> CTDET_HD T loss_exp(T x) { return exp(x); }
template <typename T> CTDET_HD T loss_log(T x) { return log(x); }
template <typename T> CTDET_HD T loss_log1p(T x) { return log1p(x); }
#else
template <typename T> CTDET_HD T loss_exp(T x) { return std::exp(x); }
template <typename T> CTDET_HD T loss_log(T x) { return std::log(x); }
template <typename T> CTDET_HD T loss_log1p(T x) { return std::log1p(x); }
#endif
template <typename T> CTDET_HD T loss_abs(T x) { return x < T(0) ? -x : x; }

// A row counts (for the normaliser and the loss) unless its label is -1 or its weight is 0.
// Pass label = 0 for losses without labels and w = null for no weights.
template <typename T>
CTDET_HD bool loss_row_valid(int32_t label, const T* w, int64_t r) {
  return label != -1 && (w == nullptr || w[r] != T(0));
}

// log(sum_c exp(x_c)), stable: max + log(sum exp(x_c - max)).
template <typename T>
CTDET_HD T logsumexp_row(const T* x /*(C)*/, int64_t C) {
  T m = x[0];
  for (int64_t c = 1; c < C; ++c) m = x[c] > m ? x[c] : m;
  T s = T(0);
  for (int64_t c = 0; c < C; ++c) s += loss_exp(x[c] - m);
  return m + loss_log(s);
}

// -log softmax(x)[label]
template <typename T>
CTDET_HD T softmax_ce_row(const T* x /*(C)*/, int64_t C, int32_t label) {
  return logsumexp_row(x, C) - x[label];
}
// d/dx_c of softmax_ce_row, given lse = logsumexp_row(x): softmax_c - [c == label].
template <typename T>
CTDET_HD T softmax_ce_grad(T xc, T lse, bool is_label) {
  return loss_exp(xc - lse) - (is_label ? T(1) : T(0));
}

// Sigmoid cross-entropy with logits, stable: max(x,0) - x*z + log1p(exp(-|x|)).
template <typename T>
CTDET_HD T sigmoid_ce(T x, T z) {
  return (x > T(0) ? x : T(0)) - x * z + loss_log1p(loss_exp(-loss_abs(x)));
}
// d/dx: sigmoid(x) - z, with sigmoid written so exp never overflows.
template <typename T>
CTDET_HD T sigmoid_ce_grad(T x, T z) {
  const T e = loss_exp(-loss_abs(x));
  const T s = x >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
  return s - z;
}

// Huber loss in the TF form (tf.losses.huber_loss): 0.5 d^2 for |d| <= delta, delta (|d| - 0.5 delta)
// otherwise. torch's smooth_l1_loss(beta) is 0.5 d^2 / beta and |d| - 0.5 beta: the two agree at
// delta = beta = 1 (the value every Faster R-CNN config here uses) and differ by a factor delta otherwise.
template <typename T>
CTDET_HD T huber(T d, T delta) {
  const T a = loss_abs(d);
  return a <= delta ? T(0.5) * d * d : delta * (a - T(0.5) * delta);
}
template <typename T>
CTDET_HD T huber_grad(T d, T delta) {
  if (d > delta) return delta;
  if (d < -delta) return -delta;
  return d;
}

}  // namespace ctdet
