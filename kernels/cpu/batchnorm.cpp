// Batch norm CPU reference (frozen and training modes). Per-channel sums are taken in double.
#include "kernels/batchnorm.h"

#include "kernels/batchnorm_math.h"
#include "nn/error.h"

namespace ctdet {

void validate_batchnorm(const BatchNormParams& p, bool training) {
  CTDET_CHECK(p.N > 0 && p.C > 0 && p.H > 0 && p.W > 0, "batchnorm: sizes must be positive, got N=", p.N, " C=", p.C,
              " H=", p.H, " W=", p.W);
  CTDET_CHECK(p.eps > 0, "batchnorm: eps must be positive, got ", p.eps);
  CTDET_CHECK(p.momentum >= 0 && p.momentum <= 1, "batchnorm: momentum must be in [0,1], got ", p.momentum);
  if (training)
    CTDET_CHECK(p.count() > 1, "batchnorm: training needs more than one value per channel, got N*H*W=", p.count());
}

template <typename T>
void batchnorm_frozen_scale_shift_cpu(int C, const T* gamma, const T* beta, const T* mean, const T* var, double eps,
                                      T* scale, T* shift) {
  for (int c = 0; c < C; ++c) {
    CTDET_CHECK(var[c] + T(eps) > T(0), "batchnorm: var + eps must be positive, channel ", c, " has var=", var[c]);
    scale[c] = bn_frozen_scale(gamma[c], var[c], T(eps));
    shift[c] = bn_frozen_shift(beta[c], mean[c], scale[c]);
  }
}

template <typename T>
void batchnorm_frozen_forward_cpu(const BatchNormParams& p, const T* x, const T* gamma, const T* beta, const T* mean,
                                  const T* var, T* y) {
  validate_batchnorm(p, false);
  const int64_t HW = int64_t(p.H) * p.W;
  for (int c = 0; c < p.C; ++c) {
    T scale = bn_frozen_scale(gamma[c], var[c], T(p.eps));
    T shift = bn_frozen_shift(beta[c], mean[c], scale);
    for (int n = 0; n < p.N; ++n) {
      int64_t off = (int64_t(n) * p.C + c) * HW;
      for (int64_t i = 0; i < HW; ++i) y[off + i] = bn_apply(x[off + i], scale, shift);
    }
  }
}

template <typename T>
void batchnorm_frozen_backward_cpu(const BatchNormParams& p, const T* dy, const T* x, const T* gamma, const T* mean,
                                   const T* var, T* dx, bool accumulate_dx, T* dgamma, bool accumulate_dgamma,
                                   T* dbeta, bool accumulate_dbeta) {
  validate_batchnorm(p, false);
  CTDET_CHECK(!dgamma || (x && mean), "batchnorm frozen backward: dgamma needs x and mean");
  const int64_t HW = int64_t(p.H) * p.W;
  for (int c = 0; c < p.C; ++c) {
    T invstd = bn_invstd(var[c], T(p.eps));
    T scale = gamma[c] * invstd;
    double sum_dy = 0, sum_dy_xhat = 0;
    for (int n = 0; n < p.N; ++n) {
      int64_t off = (int64_t(n) * p.C + c) * HW;
      for (int64_t i = 0; i < HW; ++i) {
        T d = dy[off + i];
        if (dx) dx[off + i] = accumulate_dx ? T(dx[off + i] + d * scale) : T(d * scale);
        sum_dy += d;
        if (dgamma) sum_dy_xhat += double(d) * double(bn_xhat(x[off + i], mean[c], invstd));
      }
    }
    if (dgamma) dgamma[c] = accumulate_dgamma ? T(dgamma[c] + sum_dy_xhat) : T(sum_dy_xhat);
    if (dbeta) dbeta[c] = accumulate_dbeta ? T(dbeta[c] + sum_dy) : T(sum_dy);
  }
}

template <typename T>
void fold_frozen_bn_into_conv(const Conv2dParams& conv, const T* w, const T* b, const T* gamma, const T* beta,
                              const T* mean, const T* var, double eps, T* w_out, T* b_out) {
  validate_conv2d(conv);
  CTDET_CHECK(eps > 0, "fold_frozen_bn_into_conv: eps must be positive, got ", eps);
  const int64_t per_k = conv.w_numel() / conv.K;
  for (int k = 0; k < conv.K; ++k) {
    T scale = bn_frozen_scale(gamma[k], var[k], T(eps));
    T shift = bn_frozen_shift(beta[k], mean[k], scale);
    for (int64_t i = 0; i < per_k; ++i) w_out[k * per_k + i] = w[k * per_k + i] * scale;
    b_out[k] = (b ? b[k] : T(0)) * scale + shift;
  }
}

template <typename T>
void batchnorm_train_forward_cpu(const BatchNormParams& p, const T* x, const T* gamma, const T* beta,
                                 T* running_mean, T* running_var, T* y, T* save_mean, T* save_invstd) {
  validate_batchnorm(p, true);
  const int64_t HW = int64_t(p.H) * p.W, M = p.count();
  for (int c = 0; c < p.C; ++c) {
    double s = 0;
    for (int n = 0; n < p.N; ++n) {
      const T* xc = x + (int64_t(n) * p.C + c) * HW;
      for (int64_t i = 0; i < HW; ++i) s += xc[i];
    }
    const double mean = s / double(M);
    double ss = 0;  // two-pass variance
    for (int n = 0; n < p.N; ++n) {
      const T* xc = x + (int64_t(n) * p.C + c) * HW;
      for (int64_t i = 0; i < HW; ++i) ss += (xc[i] - mean) * (xc[i] - mean);
    }
    const T var = T(ss / double(M));
    const T m = T(mean), invstd = bn_invstd(var, T(p.eps));
    for (int n = 0; n < p.N; ++n) {
      int64_t off = (int64_t(n) * p.C + c) * HW;
      for (int64_t i = 0; i < HW; ++i) y[off + i] = bn_apply(bn_xhat(x[off + i], m, invstd), gamma[c], beta[c]);
    }
    save_mean[c] = m;
    save_invstd[c] = invstd;
    if (running_mean) running_mean[c] = bn_running_update(running_mean[c], m, T(p.momentum));
    if (running_var) running_var[c] = bn_running_update(running_var[c], bn_unbiased_var(var, M), T(p.momentum));
  }
}

template <typename T>
void batchnorm_train_backward_cpu(const BatchNormParams& p, const T* dy, const T* x, const T* gamma,
                                  const T* save_mean, const T* save_invstd, T* dx, bool accumulate_dx, T* dgamma,
                                  bool accumulate_dgamma, T* dbeta, bool accumulate_dbeta) {
  validate_batchnorm(p, true);
  const int64_t HW = int64_t(p.H) * p.W, M = p.count();
  for (int c = 0; c < p.C; ++c) {
    const T mean = save_mean[c], invstd = save_invstd[c];
    double sum_dy = 0, sum_dy_xhat = 0;
    for (int n = 0; n < p.N; ++n) {
      int64_t off = (int64_t(n) * p.C + c) * HW;
      for (int64_t i = 0; i < HW; ++i) {
        sum_dy += dy[off + i];
        sum_dy_xhat += double(dy[off + i]) * double(bn_xhat(x[off + i], mean, invstd));
      }
    }
    if (dx) {
      const T mean_dy = T(sum_dy / double(M)), mean_dy_xhat = T(sum_dy_xhat / double(M));
      const T gi = gamma[c] * invstd;
      for (int n = 0; n < p.N; ++n) {
        int64_t off = (int64_t(n) * p.C + c) * HW;
        for (int64_t i = 0; i < HW; ++i) {
          T v = bn_train_dx(dy[off + i], bn_xhat(x[off + i], mean, invstd), gi, mean_dy, mean_dy_xhat);
          dx[off + i] = accumulate_dx ? T(dx[off + i] + v) : v;
        }
      }
    }
    if (dgamma) dgamma[c] = accumulate_dgamma ? T(dgamma[c] + sum_dy_xhat) : T(sum_dy_xhat);
    if (dbeta) dbeta[c] = accumulate_dbeta ? T(dbeta[c] + sum_dy) : T(sum_dy);
  }
}

#define CTDET_BN_INSTANTIATE(T)                                                                                    \
  template void batchnorm_frozen_scale_shift_cpu<T>(int, const T*, const T*, const T*, const T*, double, T*, T*); \
  template void batchnorm_frozen_forward_cpu<T>(const BatchNormParams&, const T*, const T*, const T*, const T*,    \
                                                const T*, T*);                                                     \
  template void batchnorm_frozen_backward_cpu<T>(const BatchNormParams&, const T*, const T*, const T*, const T*,   \
                                                 const T*, T*, bool, T*, bool, T*, bool);                          \
  template void fold_frozen_bn_into_conv<T>(const Conv2dParams&, const T*, const T*, const T*, const T*,          \
                                            const T*, const T*, double, T*, T*);                                   \
  template void batchnorm_train_forward_cpu<T>(const BatchNormParams&, const T*, const T*, const T*, T*, T*, T*,  \
                                               T*, T*);                                                            \
  template void batchnorm_train_backward_cpu<T>(const BatchNormParams&, const T*, const T*, const T*, const T*,   \
                                                const T*, T*, bool, T*, bool, T*, bool);
CTDET_BN_INSTANTIATE(float)
CTDET_BN_INSTANTIATE(double)
#undef CTDET_BN_INSTANTIATE

}  // namespace ctdet
