// CPU reference for kernels/pool.h.
#include "kernels/pool.h"

#include <algorithm>
#include <climits>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/elementwise_math.h"
#include "nn/error.h"

namespace ctdet {

static const char* pool_name(const Pool2dParams& p) {
  return p.kind == PoolKind::Max ? "max_pool2d" : "avg_pool2d";
}

void validate_pool2d(const Pool2dParams& p) {
  const char* op = pool_name(p);
  CTDET_CHECK(p.N >= 0 && p.C >= 0 && p.H > 0 && p.W > 0, op, ": bad input shape N=", p.N, " C=", p.C, " H=", p.H,
              " W=", p.W);
  CTDET_CHECK(p.kh > 0 && p.kw > 0, op, ": kernel must be > 0, got ", p.kh, "x", p.kw);
  CTDET_CHECK(p.sh > 0 && p.sw > 0, op, ": stride must be > 0, got ", p.sh, "x", p.sw);
  if (p.padding == PoolPadding::Explicit) {
    CTDET_CHECK(p.pad_h >= 0 && p.pad_w >= 0, op, ": padding must be >= 0, got ", p.pad_h, "x", p.pad_w);
    CTDET_CHECK(p.pad_h < p.kh && p.pad_w < p.kw, op, ": padding ", p.pad_h, "x", p.pad_w,
                " must be smaller than the kernel ", p.kh, "x", p.kw);
  }
  int64_t P, Q;
  if (p.padding == PoolPadding::Explicit) {
    P = (p.H + 2 * p.pad_h - p.kh) / p.sh + 1;
    Q = (p.W + 2 * p.pad_w - p.kw) / p.sw + 1;
    if (p.H + 2 * p.pad_h < p.kh) P = 0;
    if (p.W + 2 * p.pad_w < p.kw) Q = 0;
  } else {
    P = (p.H + p.sh - 1) / p.sh;
    Q = (p.W + p.sw - 1) / p.sw;
  }
  CTDET_CHECK(P > 0 && Q > 0, op, ": output size ", P, "x", Q, " <= 0 for input ", p.H, "x", p.W, ", kernel ", p.kh,
              "x", p.kw, ", stride ", p.sh, "x", p.sw);
}

PoolGeom pool2d_geometry(const Pool2dParams& p) {
  validate_pool2d(p);
  PoolGeom g{};
  g.kind = p.kind == PoolKind::Max ? 0 : 1;
  g.N = p.N;
  g.C = p.C;
  g.H = p.H;
  g.W = p.W;
  g.kh = p.kh;
  g.kw = p.kw;
  g.sh = p.sh;
  g.sw = p.sw;
  g.include_pad = p.count_include_pad;
  if (p.padding == PoolPadding::Explicit) {
    g.pad_top = g.pad_bottom = p.pad_h;
    g.pad_left = g.pad_right = p.pad_w;
    g.P = (p.H + 2 * p.pad_h - p.kh) / p.sh + 1;
    g.Q = (p.W + 2 * p.pad_w - p.kw) / p.sw + 1;
  } else {
    g.P = (p.H + p.sh - 1) / p.sh;
    g.Q = (p.W + p.sw - 1) / p.sw;
    const int64_t th = pool_max64((g.P - 1) * p.sh + p.kh - p.H, 0);
    const int64_t tw = pool_max64((g.Q - 1) * p.sw + p.kw - p.W, 0);
    g.pad_top = int(th / 2);
    g.pad_bottom = int(th - th / 2);
    g.pad_left = int(tw / 2);
    g.pad_right = int(tw - tw / 2);
  }
  return g;
}

namespace {

// Per-geometry window bounds: every output's window depends only on its row (rows) and column (cols), and an
// average pool's divisor only on both; computed once instead of once per output.
struct PoolBounds {
  std::vector<int64_t> rlo, rhi, clo, chi;
};

PoolBounds pool_bounds(const PoolGeom& g) {
  PoolBounds b;
  for (int64_t i = 0; i < g.P; ++i) {
    const int64_t h0 = i * g.sh - g.pad_top;
    b.rlo.push_back(pool_max64(h0, 0));
    b.rhi.push_back(pool_min64(h0 + g.kh, g.H));
  }
  for (int64_t j = 0; j < g.Q; ++j) {
    const int64_t w0 = j * g.sw - g.pad_left;
    b.clo.push_back(pool_max64(w0, 0));
    b.chi.push_back(pool_min64(w0 + g.kw, g.W));
  }
  return b;
}

// One window in row-major order, as pool_max_window / pool2d_forward_at: the max starts from the first cell and takes
// strictly greater ones (the first maximum wins; signed zeros keep their sign as there), the sum starts from 0 and
// adds cell by cell. K > 0: a full K x K window, unrolled by the compiler.
template <int K, bool kMax, typename T>
inline T pool_window(const T* r0, int64_t W, int64_t rows, int64_t cols) {
  const int64_t nr = K ? K : rows, ncol = K ? K : cols;
  if constexpr (kMax) {
    if (nr <= 0 || ncol <= 0) return T(0);  // an empty window (not reachable with validated geometry)
    T best = r0[0];
    for (int64_t h = 0; h < nr; ++h)
      for (int64_t w = (h == 0 ? 1 : 0); w < ncol; ++w)
        if (r0[h * W + w] > best) best = r0[h * W + w];
    return best;
  } else {
    T sum = T(0);
    for (int64_t h = 0; h < nr; ++h)
      for (int64_t w = 0; w < ncol; ++w) sum += r0[h * W + w];
    return sum;
  }
}

template <int K, bool kMax, typename T>
void pool_forward_planes(const PoolGeom& g, const PoolBounds& b, const std::vector<T>& div, const T* x, T* y) {
  // Planes are independent: split over threads (kernels/cpu/parallel.h), each computed as in the serial loop.
  parallel_ranges(g.N * g.C, min_iterations_for(g.P * g.Q * g.kh * g.kw), [&](int64_t nc0, int64_t nc1) {
    for (int64_t nc = nc0; nc < nc1; ++nc) {
      const T* xp = x + nc * g.H * g.W;
      T* yp = y + nc * g.P * g.Q;
      for (int64_t i = 0; i < g.P; ++i) {
        const int64_t hs = b.rlo[size_t(i)], rows = b.rhi[size_t(i)] - hs;
        for (int64_t j = 0; j < g.Q; ++j) {
          const int64_t ws = b.clo[size_t(j)], cols = b.chi[size_t(j)] - ws;
          const T* r0 = xp + hs * g.W + ws;
          T v = (K && rows == K && cols == K) ? pool_window<K, kMax>(r0, g.W, rows, cols)
                                              : pool_window<0, kMax>(r0, g.W, rows, cols);
          if constexpr (!kMax) v = v / div[size_t(i * g.Q + j)];
          yp[i * g.Q + j] = v;
        }
      }
    }
  });
}

}  // namespace

template <typename T>
void pool2d_forward_cpu(const Pool2dParams& p, const T* x, T* y) {
  const PoolGeom g = pool2d_geometry(p);
  // The same windows, comparisons and additions as the per-output definition pool2d_forward_at, bit for bit
  // (tests/test_elem_ops.cpp checks that over hundreds of geometries), with the bounds hoisted and the interior
  // windows of the common 2x2 and 3x3 pools unrolled.
  const PoolBounds b = pool_bounds(g);
  std::vector<T> div;
  if (g.kind == 1)
    for (int64_t i = 0; i < g.P; ++i)
      for (int64_t j = 0; j < g.Q; ++j) div.push_back(T(pool_avg_divisor(g, i, j)));
  const int k = g.kh == g.kw && (g.kh == 2 || g.kh == 3) ? g.kh : 0;
  if (g.kind == 0) {
    if (k == 2) pool_forward_planes<2, true>(g, b, div, x, y);
    else if (k == 3) pool_forward_planes<3, true>(g, b, div, x, y);
    else pool_forward_planes<0, true>(g, b, div, x, y);
  } else {
    if (k == 2) pool_forward_planes<2, false>(g, b, div, x, y);
    else if (k == 3) pool_forward_planes<3, false>(g, b, div, x, y);
    else pool_forward_planes<0, false>(g, b, div, x, y);
  }
}

template <typename T>
void pool2d_backward_cpu(const Pool2dParams& p, const T* dy, const T* x, T* dx, bool accumulate_dx) {
  const PoolGeom g = pool2d_geometry(p);
  CTDET_CHECK(g.kind == 1 || x != nullptr, "max_pool2d backward: needs the saved input x");
  // By scatter: windows in (p, q) order hand their dy to the cells they chose (max: the first maximum, as the
  // forward's pool_max_window) or, divided by their divisor, to all their in-image cells (avg). Every cell then
  // receives its contributions in the (p, q) order in which pool2d_backward_at sums them from zero, and each term is
  // computed by the same expression, so the result is the same bit for bit, with one argmax or division per window
  // instead of one per window per covered cell. With accumulation the sum goes to a zeroed plane first and is then
  // added, as store_grad adds the definition's sum. Planes split over threads; each plane's scatter stays serial.
  const bool direct = !accumulate_dx || (g.kind == 0 && g.kh <= g.sh && g.kw <= g.sw);  // disjoint max: one term/cell
  parallel_ranges(g.N * g.C, min_iterations_for(g.H * g.W + g.P * g.Q * g.kh * g.kw), [&](int64_t nc0, int64_t nc1) {
    std::vector<T> plane(direct ? 0 : size_t(g.H * g.W));
    for (int64_t nc = nc0; nc < nc1; ++nc) {
      const T* dyp = dy + nc * g.P * g.Q;
      T* dxp = dx + nc * g.H * g.W;
      T* out = direct ? dxp : plane.data();
      if (!accumulate_dx || !direct) std::fill(out, out + g.H * g.W, T(0));
      if (g.kind == 0) {
        const T* xp = x + nc * g.H * g.W;
        for (int64_t i = 0; i < g.P; ++i)
          for (int64_t j = 0; j < g.Q; ++j) {
            int64_t arg;
            pool_max_window(g, xp, i, j, &arg);
            if (arg >= 0) out[arg] += dyp[i * g.Q + j];
          }
      } else {
        for (int64_t i = 0; i < g.P; ++i)
          for (int64_t j = 0; j < g.Q; ++j) {
            const T v = dyp[i * g.Q + j] / T(pool_avg_divisor(g, i, j));
            const int64_t h0 = i * g.sh - g.pad_top, w0 = j * g.sw - g.pad_left;
            const int64_t hs = pool_max64(h0, 0), he = pool_min64(h0 + g.kh, g.H);
            const int64_t ws = pool_max64(w0, 0), we = pool_min64(w0 + g.kw, g.W);
            for (int64_t h = hs; h < he; ++h)
              for (int64_t w = ws; w < we; ++w) out[h * g.W + w] += v;
          }
      }
      if (!direct)
        for (int64_t i = 0; i < g.H * g.W; ++i) store_grad(dxp + i, plane[size_t(i)], true);
    }
  });
}

static PoolGeom max_argmax_geometry(const Pool2dParams& p) {
  const PoolGeom g = pool2d_geometry(p);
  CTDET_CHECK(g.kind == 0, "max_pool2d with argmax: the pool is not a max pool");
  CTDET_CHECK(g.H * g.W <= int64_t(INT32_MAX), "max_pool2d with argmax: an input plane of ", g.H, "x", g.W,
              " cells does not fit int32 indices");
  return g;
}

template <typename T>
void pool2d_max_forward_argmax_cpu(const Pool2dParams& p, const T* x, T* y, int32_t* arg) {
  const PoolGeom g = max_argmax_geometry(p);
  parallel_ranges(g.N * g.C, min_iterations_for(g.P * g.Q * g.kh * g.kw), [&](int64_t nc0, int64_t nc1) {
    for (int64_t nc = nc0; nc < nc1; ++nc) {
      const T* xp = x + nc * g.H * g.W;
      for (int64_t i = 0; i < g.P; ++i)
        for (int64_t j = 0; j < g.Q; ++j) {
          int64_t a;
          const int64_t o = (nc * g.P + i) * g.Q + j;
          y[o] = pool_max_window(g, xp, i, j, &a);
          arg[o] = int32_t(a);
        }
    }
  });
}

template <typename T>
void pool2d_max_backward_from_argmax_cpu(const Pool2dParams& p, const T* dy, const int32_t* arg, T* dx,
                                         bool accumulate_dx) {
  const PoolGeom g = max_argmax_geometry(p);
  const bool scatter = !accumulate_dx || (g.kh <= g.sh && g.kw <= g.sw);  // as pool2d_backward_cpu: same bits
  parallel_ranges(g.N * g.C, min_iterations_for(g.H * g.W + g.P * g.Q), [&](int64_t nc0, int64_t nc1) {
    for (int64_t nc = nc0; nc < nc1; ++nc) {
      const int32_t* ap = arg + nc * g.P * g.Q;
      const T* dyp = dy + nc * g.P * g.Q;
      T* dxp = dx + nc * g.H * g.W;
      if (scatter) {
        if (!accumulate_dx) std::fill(dxp, dxp + g.H * g.W, T(0));
        for (int64_t o = 0; o < g.P * g.Q; ++o)
          if (ap[o] >= 0) dxp[ap[o]] += dyp[o];
        continue;
      }
      for (int64_t h = 0; h < g.H; ++h)
        for (int64_t w = 0; w < g.W; ++w)
          store_grad(dxp + h * g.W + w, pool_max_backward_from_argmax_at(g, ap, dyp, h, w), accumulate_dx);
    }
  });
}

size_t pool2d_backward_cuda_workspace_bytes(const Pool2dParams& p) {
  const PoolGeom g = pool2d_geometry(p);
  if (g.kind != 0) return 0;
  const size_t bytes = size_t(g.N) * size_t(g.C) * size_t(g.P) * size_t(g.Q) * sizeof(int32_t);
  return (bytes + 255) / 256 * 256;
}

void validate_global_avg_pool(const GapParams& p) {
  CTDET_CHECK(p.N >= 0 && p.C >= 0, "global_avg_pool: N and C must be non-negative, got N=", p.N, " C=", p.C);
  CTDET_CHECK(p.HW > 0, "global_avg_pool: spatial size H*W must be > 0, got ", p.HW);
}

template <typename T>
void global_avg_pool_forward_cpu(const GapParams& p, const T* x, T* y) {
  validate_global_avg_pool(p);
  for (int64_t nc = 0; nc < p.N * p.C; ++nc) {
    T s = T(0);
    for (int64_t i = 0; i < p.HW; ++i) s += x[nc * p.HW + i];
    y[nc] = s / T(p.HW);
  }
}

template <typename T>
void global_avg_pool_backward_cpu(const GapParams& p, const T* dy, T* dx, bool accumulate_dx) {
  validate_global_avg_pool(p);
  for (int64_t nc = 0; nc < p.N * p.C; ++nc) {
    const T g = dy[nc] / T(p.HW);
    for (int64_t i = 0; i < p.HW; ++i) store_grad(dx + nc * p.HW + i, g, accumulate_dx);
  }
}

#define CTDET_INSTANTIATE(T)                                                                     \
  template void pool2d_forward_cpu<T>(const Pool2dParams&, const T*, T*);                        \
  template void pool2d_backward_cpu<T>(const Pool2dParams&, const T*, const T*, T*, bool);       \
  template void pool2d_max_forward_argmax_cpu<T>(const Pool2dParams&, const T*, T*, int32_t*);   \
  template void pool2d_max_backward_from_argmax_cpu<T>(const Pool2dParams&, const T*, const int32_t*, T*, bool); \
  template void global_avg_pool_forward_cpu<T>(const GapParams&, const T*, T*);                  \
  template void global_avg_pool_backward_cpu<T>(const GapParams&, const T*, T*, bool);
CTDET_INSTANTIATE(float)
CTDET_INSTANTIATE(double)
#undef CTDET_INSTANTIATE

}  // namespace ctdet
