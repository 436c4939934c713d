// Per-element math shared by the CPU reference loops and the CUDA kernels of kernels/elementwise.h.
#pragma once
#include "kernels/common/hd.h"

namespace ctdet {

// Gradient write: overwrite (accumulate = false) or add to what is there (accumulate = true).
template <typename T>
CTDET_HD void store_grad(T* p, T g, bool accumulate) {
  *p = accumulate ? *p + g : g;
}

template <typename T>
CTDET_HD T relu_fwd(T x) {
  return x > T(0) ? x : T(0);
}
// Backward from the saved OUTPUT y (so relu may run in place): dy passes where y > 0.
template <typename T>
CTDET_HD T relu_bwd_from_y(T dy, T y) {
  return y > T(0) ? dy : T(0);
}

template <typename T>
CTDET_HD T relu6_fwd(T x) {
  return x > T(0) ? (x < T(6) ? x : T(6)) : T(0);
}
// Backward from the saved OUTPUT y: dy passes where 0 < y < 6 (x >= 6 gives y == 6 and no gradient,
// as torch's hardtanh backward).
template <typename T>
CTDET_HD T relu6_bwd_from_y(T dy, T y) {
  return (y > T(0) && y < T(6)) ? dy : T(0);
}

// Frozen batch norm folded into a per-channel affine, plus an optional residual, then ReLU.
template <typename T>
CTDET_HD T bn_add_relu_fwd(T x, T scale, T shift, T r) {
  return relu_fwd(x * scale + shift + r);
}

}  // namespace ctdet
