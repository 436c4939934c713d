// CPU reference for kernels/loss.h: sums in double, in row order.
#include "kernels/loss.h"

#include <cmath>

#include "kernels/elementwise_math.h"
#include "nn/error.h"

namespace ctdet {

void validate_loss(const char* op, const LossParams& p) {
  CTDET_CHECK(p.R >= 0, op, ": rows R must be >= 0, got ", p.R);
  CTDET_CHECK(p.C > 0, op, ": columns C must be > 0, got ", p.C);
  CTDET_CHECK(std::isfinite(p.scale), op, ": scale must be finite, got ", p.scale);
  CTDET_CHECK(p.delta > 0 && std::isfinite(p.delta), op, ": delta must be > 0, got ", p.delta);
}

namespace {

// Normaliser: the caller's count, or the number of valid rows. labels may be null (no labels).
template <typename T>
double loss_count(const LossParams& p, const int32_t* labels, const T* w, const int32_t* count) {
  if (count) return double(*count);
  int64_t n = 0;
  for (int64_t r = 0; r < p.R; ++r) n += loss_row_valid(labels ? labels[r] : 0, w, r) ? 1 : 0;
  return double(n);
}

void check_labels(const LossParams& p, const int32_t* labels) {
  for (int64_t r = 0; r < p.R; ++r)
    CTDET_CHECK(labels[r] >= -1 && labels[r] < p.C, "softmax_cross_entropy: labels[", r, "] = ", labels[r],
                " outside [-1, ", p.C, ")");
}

template <typename T>
void check_targets(const LossParams& p, const T* z) {
  for (int64_t i = 0; i < p.R * p.C; ++i)
    CTDET_CHECK(z[i] >= T(0) && z[i] <= T(1), "sigmoid_cross_entropy: targets[", i / p.C, ",", i % p.C, "] = ",
                z[i], " outside [0, 1]");
}

// Gradient factor shared by all rows: scale * dloss * w_r / count (0 when count <= 0).
template <typename T>
double grad_factor(const LossParams& p, const T* dloss, double count) {
  if (!(count > 0)) return 0.0;
  return p.scale * (dloss ? double(*dloss) : 1.0) / count;
}

}  // namespace

template <typename T>
void softmax_cross_entropy_forward_cpu(const LossParams& p, const T* logits, const int32_t* labels, const T* weights,
                                       const int32_t* count, T* loss) {
  validate_loss("softmax_cross_entropy", p);
  check_labels(p, labels);
  const double n = loss_count(p, labels, weights, count);
  double s = 0;
  for (int64_t r = 0; r < p.R; ++r) {
    if (!loss_row_valid(labels[r], weights, r)) continue;
    const double w = weights ? double(weights[r]) : 1.0;
    s += w * double(softmax_ce_row(logits + r * p.C, p.C, labels[r]));
  }
  *loss = n > 0 ? T(p.scale * s / n) : T(0);
}

template <typename T>
void softmax_cross_entropy_backward_cpu(const LossParams& p, const T* dloss, const T* logits, const int32_t* labels,
                                        const T* weights, const int32_t* count, T* dlogits, bool accumulate_dlogits) {
  validate_loss("softmax_cross_entropy backward", p);
  check_labels(p, labels);
  const double f = grad_factor(p, dloss, loss_count(p, labels, weights, count));
  for (int64_t r = 0; r < p.R; ++r) {
    const T* x = logits + r * p.C;
    const bool valid = loss_row_valid(labels[r], weights, r) && f != 0.0;
    const T fr = valid ? T(f * (weights ? double(weights[r]) : 1.0)) : T(0);
    const T lse = valid ? logsumexp_row(x, p.C) : T(0);
    for (int64_t c = 0; c < p.C; ++c) {
      const T g = valid ? fr * softmax_ce_grad(x[c], lse, c == labels[r]) : T(0);
      store_grad(dlogits + r * p.C + c, g, accumulate_dlogits);
    }
  }
}

template <typename T>
void sigmoid_cross_entropy_forward_cpu(const LossParams& p, const T* logits, const T* targets, const T* weights,
                                       const int32_t* count, T* loss) {
  validate_loss("sigmoid_cross_entropy", p);
  check_targets(p, targets);
  const double n = loss_count<T>(p, nullptr, weights, count);
  double s = 0;
  for (int64_t r = 0; r < p.R; ++r) {
    if (!loss_row_valid(0, weights, r)) continue;
    double row = 0;
    for (int64_t c = 0; c < p.C; ++c) row += double(sigmoid_ce(logits[r * p.C + c], targets[r * p.C + c]));
    s += (weights ? double(weights[r]) : 1.0) * row;
  }
  *loss = n > 0 ? T(p.scale * s / n) : T(0);
}

template <typename T>
void sigmoid_cross_entropy_backward_cpu(const LossParams& p, const T* dloss, const T* logits, const T* targets,
                                        const T* weights, const int32_t* count, T* dlogits, bool accumulate_dlogits) {
  validate_loss("sigmoid_cross_entropy backward", p);
  check_targets(p, targets);
  const double f = grad_factor(p, dloss, loss_count<T>(p, nullptr, weights, count));
  for (int64_t r = 0; r < p.R; ++r) {
    const bool valid = loss_row_valid(0, weights, r) && f != 0.0;
    const T fr = valid ? T(f * (weights ? double(weights[r]) : 1.0)) : T(0);
    for (int64_t c = 0; c < p.C; ++c) {
      const int64_t i = r * p.C + c;
      store_grad(dlogits + i, valid ? fr * sigmoid_ce_grad(logits[i], targets[i]) : T(0), accumulate_dlogits);
    }
  }
}

template <typename T>
void smooth_l1_forward_cpu(const LossParams& p, const T* pred, const T* target, const T* weights, const int32_t* count,
                           T* loss) {
  validate_loss("smooth_l1", p);
  const double n = loss_count<T>(p, nullptr, weights, count);
  double s = 0;
  for (int64_t r = 0; r < p.R; ++r) {
    if (!loss_row_valid(0, weights, r)) continue;
    double row = 0;
    for (int64_t c = 0; c < p.C; ++c) row += double(huber(pred[r * p.C + c] - target[r * p.C + c], T(p.delta)));
    s += (weights ? double(weights[r]) : 1.0) * row;
  }
  *loss = n > 0 ? T(p.scale * s / n) : T(0);
}

template <typename T>
void smooth_l1_backward_cpu(const LossParams& p, const T* dloss, const T* pred, const T* target, const T* weights,
                            const int32_t* count, T* dpred, bool accumulate_dpred) {
  validate_loss("smooth_l1 backward", p);
  const double f = grad_factor(p, dloss, loss_count<T>(p, nullptr, weights, count));
  for (int64_t r = 0; r < p.R; ++r) {
    const bool valid = loss_row_valid(0, weights, r) && f != 0.0;
    const T fr = valid ? T(f * (weights ? double(weights[r]) : 1.0)) : T(0);
    for (int64_t c = 0; c < p.C; ++c) {
      const int64_t i = r * p.C + c;
      store_grad(dpred + i, valid ? fr * huber_grad(pred[i] - target[i], T(p.delta)) : T(0), accumulate_dpred);
    }
  }
}

#define CTDET_INSTANTIATE(T)                                                                                       \
  template void softmax_cross_entropy_forward_cpu<T>(const LossParams&, const T*, const int32_t*, const T*,        \
                                                     const int32_t*, T*);                                          \
  template void softmax_cross_entropy_backward_cpu<T>(const LossParams&, const T*, const T*, const int32_t*,       \
                                                      const T*, const int32_t*, T*, bool);                         \
  template void sigmoid_cross_entropy_forward_cpu<T>(const LossParams&, const T*, const T*, const T*,              \
                                                     const int32_t*, T*);                                          \
  template void sigmoid_cross_entropy_backward_cpu<T>(const LossParams&, const T*, const T*, const T*, const T*,   \
                                                      const int32_t*, T*, bool);                                   \
  template void smooth_l1_forward_cpu<T>(const LossParams&, const T*, const T*, const T*, const int32_t*, T*);     \
  template void smooth_l1_backward_cpu<T>(const LossParams&, const T*, const T*, const T*, const T*,               \
                                          const int32_t*, T*, bool);
CTDET_INSTANTIATE(float)
CTDET_INSTANTIATE(double)
#undef CTDET_INSTANTIATE

}  // namespace ctdet
