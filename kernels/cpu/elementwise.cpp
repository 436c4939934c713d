// CPU reference for kernels/elementwise.h: plain loops, templated for float and double.
#include "kernels/elementwise.h"

#include <cstring>

#include "nn/error.h"

namespace ctdet {

void validate_elementwise(const char* op, int64_t n) {
  CTDET_CHECK(n >= 0, op, ": element count must be >= 0, got ", n);
}

template <typename T>
void relu_forward_cpu(int64_t n, const T* x, T* y) {
  validate_elementwise("relu", n);
  for (int64_t i = 0; i < n; ++i) y[i] = relu_fwd(x[i]);
}
template <typename T>
void relu_backward_cpu(int64_t n, const T* dy, const T* y, T* dx, bool accumulate_dx) {
  validate_elementwise("relu_backward", n);
  for (int64_t i = 0; i < n; ++i) store_grad(dx + i, relu_bwd_from_y(dy[i], y[i]), accumulate_dx);
}

template <typename T>
void relu6_forward_cpu(int64_t n, const T* x, T* y) {
  validate_elementwise("relu6", n);
  for (int64_t i = 0; i < n; ++i) y[i] = relu6_fwd(x[i]);
}
template <typename T>
void relu6_backward_cpu(int64_t n, const T* dy, const T* y, T* dx, bool accumulate_dx) {
  validate_elementwise("relu6_backward", n);
  for (int64_t i = 0; i < n; ++i) store_grad(dx + i, relu6_bwd_from_y(dy[i], y[i]), accumulate_dx);
}

template <typename T>
void add_forward_cpu(int64_t n, const T* a, const T* b, T* y) {
  validate_elementwise("add", n);
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}
template <typename T>
void add_backward_cpu(int64_t n, const T* dy, T* da, bool accumulate_da, T* db, bool accumulate_db) {
  validate_elementwise("add_backward", n);
  if (da)
    for (int64_t i = 0; i < n; ++i) store_grad(da + i, dy[i], accumulate_da);
  if (db)
    for (int64_t i = 0; i < n; ++i) store_grad(db + i, dy[i], accumulate_db);
}

template <typename T>
void scale_forward_cpu(int64_t n, T alpha, const T* x, T* y) {
  validate_elementwise("scale", n);
  for (int64_t i = 0; i < n; ++i) y[i] = alpha * x[i];
}
template <typename T>
void scale_backward_cpu(int64_t n, T alpha, const T* dy, T* dx, bool accumulate_dx) {
  validate_elementwise("scale_backward", n);
  for (int64_t i = 0; i < n; ++i) store_grad(dx + i, alpha * dy[i], accumulate_dx);
}

// ---- bn_add_relu ---------------------------------------------------------------------------------
void validate_bn_add_relu(const BnAddReluParams& p) {
  CTDET_CHECK(p.N >= 0 && p.C >= 0 && p.HW >= 0, "bn_add_relu: shape must be non-negative, got N=", p.N,
              " C=", p.C, " HW=", p.HW);
}

template <typename T>
void bn_add_relu_forward_cpu(const BnAddReluParams& p, const T* x, const T* scale, const T* shift, const T* r, T* y) {
  validate_bn_add_relu(p);
  for (int64_t n = 0; n < p.N; ++n)
    for (int64_t c = 0; c < p.C; ++c) {
      const int64_t base = (n * p.C + c) * p.HW;
      for (int64_t s = 0; s < p.HW; ++s)
        y[base + s] = bn_add_relu_fwd(x[base + s], scale[c], shift[c], r ? r[base + s] : T(0));
    }
}

template <typename T>
void bn_add_relu_backward_cpu(const BnAddReluParams& p, const T* dy, const T* y, const T* scale, T* dx,
                              bool accumulate_dx, T* dr, bool accumulate_dr) {
  validate_bn_add_relu(p);
  for (int64_t n = 0; n < p.N; ++n)
    for (int64_t c = 0; c < p.C; ++c) {
      const int64_t base = (n * p.C + c) * p.HW;
      for (int64_t s = 0; s < p.HW; ++s) {
        const T g = relu_bwd_from_y(dy[base + s], y[base + s]);
        if (dx) store_grad(dx + base + s, g * scale[c], accumulate_dx);
        if (dr) store_grad(dr + base + s, g, accumulate_dr);
      }
    }
}

// ---- concat ------------------------------------------------------------------------------------------
int64_t ConcatParams::out_channels() const {
  int64_t s = 0;
  for (int64_t c : channels) s += c;
  return s;
}

void validate_concat(const ConcatParams& p) {
  CTDET_CHECK(!p.channels.empty(), "concat: needs at least one input");
  CTDET_CHECK(p.N >= 0 && p.HW >= 0, "concat: N and HW must be non-negative, got N=", p.N, " HW=", p.HW);
  for (size_t i = 0; i < p.channels.size(); ++i)
    CTDET_CHECK(p.channels[i] >= 0, "concat: input ", i, " has negative channel count ", p.channels[i]);
}

template <typename T>
void concat_forward_cpu(const ConcatParams& p, const T* const* xs, T* y) {
  validate_concat(p);
  const int64_t Cy = p.out_channels();
  for (int64_t n = 0; n < p.N; ++n) {
    int64_t c_off = 0;
    for (size_t i = 0; i < p.channels.size(); ++i) {
      const int64_t len = p.channels[i] * p.HW;
      const T* src = xs[i] + n * len;
      T* dst = y + (n * Cy + c_off) * p.HW;
      for (int64_t j = 0; j < len; ++j) dst[j] = src[j];
      c_off += p.channels[i];
    }
  }
}

template <typename T>
void concat_backward_cpu(const ConcatParams& p, const T* dy, T* const* dxs, const bool* accumulate) {
  validate_concat(p);
  const int64_t Cy = p.out_channels();
  for (int64_t n = 0; n < p.N; ++n) {
    int64_t c_off = 0;
    for (size_t i = 0; i < p.channels.size(); ++i) {
      const int64_t len = p.channels[i] * p.HW;
      if (dxs[i]) {
        const bool acc = accumulate ? accumulate[i] : false;
        const T* src = dy + (n * Cy + c_off) * p.HW;
        T* dst = dxs[i] + n * len;
        for (int64_t j = 0; j < len; ++j) store_grad(dst + j, src[j], acc);
      }
      c_off += p.channels[i];
    }
  }
}

// ---- slice -----------------------------------------------------------------------------------------
void validate_slice(const SliceParams& p) {
  CTDET_CHECK(p.N >= 0 && p.C >= 0 && p.HW >= 0, "slice: shape must be non-negative, got N=", p.N, " C=", p.C,
              " HW=", p.HW);
  CTDET_CHECK(p.c0 >= 0 && p.count >= 0 && p.c0 + p.count <= p.C, "slice: channels [", p.c0, ", ",
              p.c0 + p.count, ") outside [0, ", p.C, ")");
}

template <typename T>
void slice_forward_cpu(const SliceParams& p, const T* x, T* y) {
  validate_slice(p);
  const int64_t len = p.count * p.HW;
  for (int64_t n = 0; n < p.N; ++n) {
    const T* src = x + (n * p.C + p.c0) * p.HW;
    for (int64_t j = 0; j < len; ++j) y[n * len + j] = src[j];
  }
}

template <typename T>
void slice_backward_cpu(const SliceParams& p, const T* dy, T* dx, bool accumulate_dx) {
  validate_slice(p);
  const int64_t len = p.count * p.HW;
  for (int64_t n = 0; n < p.N; ++n)
    for (int64_t c = 0; c < p.C; ++c) {
      T* dst = dx + (n * p.C + c) * p.HW;
      const bool inside = c >= p.c0 && c < p.c0 + p.count;
      if (inside) {
        const T* src = dy + n * len + (c - p.c0) * p.HW;
        for (int64_t s = 0; s < p.HW; ++s) store_grad(dst + s, src[s], accumulate_dx);
      } else if (!accumulate_dx) {
        for (int64_t s = 0; s < p.HW; ++s) dst[s] = T(0);
      }
    }
}

// ---- gather rows ------------------------------------------------------------------------------------
void validate_gather_rows(const GatherRowsParams& p) {
  CTDET_CHECK(p.M >= 0 && p.R >= 0 && p.D >= 0, "gather_rows: shape must be non-negative, got M=", p.M,
              " R=", p.R, " D=", p.D);
}

static void check_gather_index(const GatherRowsParams& p, const int32_t* idx, int64_t i) {
  const int32_t k = idx[i];
  CTDET_CHECK(k == -1 || (k >= 0 && k < p.M), "gather_rows: idx[", i, "] = ", k, " outside [0, ", p.M,
              ") (and not -1)");
}

template <typename T>
void gather_rows_forward_cpu(const GatherRowsParams& p, const T* x, const int32_t* idx, T* y) {
  validate_gather_rows(p);
  for (int64_t i = 0; i < p.R; ++i) {
    check_gather_index(p, idx, i);
    const int32_t k = idx[i];
    for (int64_t d = 0; d < p.D; ++d) y[i * p.D + d] = k < 0 ? T(0) : x[k * p.D + d];
  }
}

template <typename T>
void gather_rows_backward_cpu(const GatherRowsParams& p, const T* dy, const int32_t* idx, T* dx, bool accumulate_dx) {
  validate_gather_rows(p);
  for (int64_t i = 0; i < p.R; ++i) check_gather_index(p, idx, i);
  if (!accumulate_dx)
    for (int64_t j = 0; j < p.M * p.D; ++j) dx[j] = T(0);
  for (int64_t i = 0; i < p.R; ++i) {
    const int32_t k = idx[i];
    if (k < 0) continue;
    for (int64_t d = 0; d < p.D; ++d) dx[k * p.D + d] += dy[i * p.D + d];
  }
}

#define CTDET_INSTANTIATE(T)                                                                                  \
  template void relu_forward_cpu<T>(int64_t, const T*, T*);                                                   \
  template void relu_backward_cpu<T>(int64_t, const T*, const T*, T*, bool);                                  \
  template void relu6_forward_cpu<T>(int64_t, const T*, T*);                                                  \
  template void relu6_backward_cpu<T>(int64_t, const T*, const T*, T*, bool);                                 \
  template void add_forward_cpu<T>(int64_t, const T*, const T*, T*);                                          \
  template void add_backward_cpu<T>(int64_t, const T*, T*, bool, T*, bool);                                   \
  template void scale_forward_cpu<T>(int64_t, T, const T*, T*);                                               \
  template void scale_backward_cpu<T>(int64_t, T, const T*, T*, bool);                                        \
  template void bn_add_relu_forward_cpu<T>(const BnAddReluParams&, const T*, const T*, const T*, const T*, T*); \
  template void bn_add_relu_backward_cpu<T>(const BnAddReluParams&, const T*, const T*, const T*, T*, bool, T*, \
                                            bool);                                                            \
  template void concat_forward_cpu<T>(const ConcatParams&, const T* const*, T*);                              \
  template void concat_backward_cpu<T>(const ConcatParams&, const T*, T* const*, const bool*);                \
  template void slice_forward_cpu<T>(const SliceParams&, const T*, T*);                                       \
  template void slice_backward_cpu<T>(const SliceParams&, const T*, T*, bool);                                \
  template void gather_rows_forward_cpu<T>(const GatherRowsParams&, const T*, const int32_t*, T*);            \
  template void gather_rows_backward_cpu<T>(const GatherRowsParams&, const T*, const int32_t*, T*, bool);
CTDET_INSTANTIATE(float)
CTDET_INSTANTIATE(double)
#undef CTDET_INSTANTIATE

}  // namespace ctdet
