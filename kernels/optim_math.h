// Per-element optimizer math shared by the CPU loop and the CUDA kernel of kernels/optim.h.
#pragma once
#include "kernels/common/hd.h"

namespace ctdet {

// TF MomentumOptimizer (use_nesterov=false) with optional L2 weight decay folded into the gradient:
//   g = grad + wd * var;  accum = momentum * accum + g;  var -= lr * accum.
// torch.optim.SGD(momentum, dampening=0, nesterov=False, weight_decay=wd) is the same rule: its first
// step sets buf = g, which equals momentum * 0 + g with accum starting at zero.
template <typename T>
CTDET_HD void sgd_momentum_step(T& var, T& accum, T grad, T lr, T momentum, T wd) {
  const T g = grad + wd * var;
  accum = momentum * accum + g;
  var -= lr * accum;
}

// Clip factor: clip / max(norm, clip) (TF clip_by_global_norm / clip_by_norm); 1 when norm <= clip.
template <typename T>
CTDET_HD T clip_factor(T norm, T clip) {
  return norm > clip ? clip / norm : T(1);
}

}  // namespace ctdet
