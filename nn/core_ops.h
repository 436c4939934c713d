// Attributes of the engine's core ops (fill, linear, add, mul, scale, relu, sum, expand, copy) and the
// per-element math shared by their CPU loops and CUDA kernels.
#pragma once
#include "kernels/common/hd.h"
#include "nn/tensor.h"

namespace ctdet {

struct FillAttrs {
  double value = 0;
};
struct ScaleAttrs {
  double alpha = 1;
};
struct ExpandAttrs {
  Shape shape;  // output shape; the input is a scalar (1)
};

// out = (accumulate ? out : 0) + v
template <typename T> CTDET_HD void store_acc(T* out, long long i, T v, bool accumulate) {
  out[i] = accumulate ? out[i] + v : v;
}
template <typename T> CTDET_HD T relu_fn(T x) { return x > T(0) ? x : T(0); }
// ReLU gradient from the saved output y (so the op may run in place).
template <typename T> CTDET_HD T relu_grad_fn(T dy, T y) { return y > T(0) ? dy : T(0); }

}  // namespace ctdet
