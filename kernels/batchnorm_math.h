// Per-element batch-norm math shared by the CPU reference and the CUDA kernels (DESIGN.md, Principle 2).
#pragma once
#include <math.h>

#include <cstdint>

#include "kernels/common/hd.h"

namespace ctdet {

CTDET_HD float bn_invstd(float var, float eps) { return 1.0f / sqrtf(var + eps); }
CTDET_HD double bn_invstd(double var, double eps) { return 1.0 / sqrt(var + eps); }

// Frozen BN as an affine map: y = x * scale + shift.
template <typename T>
CTDET_HD T bn_frozen_scale(T gamma, T var, T eps) { return gamma * bn_invstd(var, eps); }
template <typename T>
CTDET_HD T bn_frozen_shift(T beta, T mean, T scale) { return beta - mean * scale; }
template <typename T>
CTDET_HD T bn_apply(T x, T scale, T shift) { return x * scale + shift; }

// Normalised input x_hat = (x - mean) * invstd.
template <typename T>
CTDET_HD T bn_xhat(T x, T mean, T invstd) { return (x - mean) * invstd; }

// Running statistics as torch updates them: r <- (1 - momentum) * r + momentum * batch_stat, where the
// batch variance fed in is the unbiased one (count / (count - 1) times the biased variance).
template <typename T>
CTDET_HD T bn_running_update(T running, T batch_stat, T momentum) {
  return (T(1) - momentum) * running + momentum * batch_stat;
}
template <typename T>
CTDET_HD T bn_unbiased_var(T biased_var, int64_t count) { return biased_var * T(count) / T(count - 1); }

// Training-mode input gradient for one element, with the per-channel means over N*H*W:
//   dx = gamma * invstd * (dy - mean(dy) - x_hat * mean(dy * x_hat))
template <typename T>
CTDET_HD T bn_train_dx(T dy, T xhat, T gamma_invstd, T mean_dy, T mean_dy_xhat) {
  return gamma_invstd * (dy - mean_dy - xhat * mean_dy_xhat);
}

}  // namespace ctdet
