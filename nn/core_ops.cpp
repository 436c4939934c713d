// The core ops: enough to exercise graph, autograd, planner and executor end to end. Each op: shape
// inference naming its values, the gradient rule, and CPU loops templated on float/double (the
// specification); CUDA versions are in core_ops.cu and must match.
#include "nn/core_ops.h"

#include <cblas.h>

#include <cmath>
#include <cstring>

#include "nn/autograd.h"
#include "nn/op_registry.h"

namespace ctdet {

#if CTDET_WITH_CUDA
void core_fill_cuda(OpContext& c);
void core_linear_cuda(OpContext& c);
void core_linear_grad_x_cuda(OpContext& c);
void core_linear_grad_w_cuda(OpContext& c);
void core_sum_rows_cuda(OpContext& c);
void core_binary_cuda(OpContext& c, int kind);  // 0 add, 1 mul
void core_unary_cuda(OpContext& c, int kind);   // 0 copy, 1 scale, 2 relu
void core_relu_grad_cuda(OpContext& c);
void core_sum_cuda(OpContext& c);
void core_expand_cuda(OpContext& c);
#endif

namespace {

template <typename F> void dispatch_float(const OpContext& c, F&& f) {
  DType t = c.out.empty() ? c.in[0].dtype : c.out[0].dtype;
  if (t == DType::F32) f(float{});
  else if (t == DType::F64) f(double{});
  else CTDET_FAIL("node '", c.node->name, "' (", c.node->op, "): unsupported dtype ", dtype_name(t));
}

void check_same(const Graph& g, const Node& n, ValueId a, ValueId b) {
  CTDET_CHECK(g.value(a).shape == g.value(b).shape && g.value(a).dtype == g.value(b).dtype,
              "shape mismatch in ", describe_inputs(g, n));
}

const Shape& shp(const Graph& g, ValueId v) { return g.value(v).shape; }

// ---- fill ----------------------------------------------------------------------------------------
void fill_cpu(OpContext& c) {
  dispatch_float(c, [&](auto z) {
    using T = decltype(z);
    T* y = c.out[0].ptr<T>();
    T v = T(c.attrs<FillAttrs>().value);
    for (int64_t i = 0; i < c.out[0].numel(); ++i) store_acc(y, i, v, c.accumulate(0));
  });
}

// ---- linear: y (M,N) = x (M,K) w^T (N,K) + b (N) ------------------------------------------------
template <typename T> void gemm_cpu(bool ta, bool tb, int M, int N, int K, const T* A, const T* B, T* C, bool acc) {
  // C (M,N) = op(A) (M,K) * op(B) (K,N), row-major; op(A) = A^T when ta (A stored (K,M)).
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A,
                ta ? M : K, B, tb ? K : N, acc ? 1.0f : 0.0f, C, N);
  } else {
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) {
        T s = 0;
        for (int k = 0; k < K; ++k) s += (ta ? A[size_t(k) * M + i] : A[size_t(i) * K + k]) *
                                         (tb ? B[size_t(j) * K + k] : B[size_t(k) * N + j]);
        store_acc(C, (long long)i * N + j, s, acc);
      }
  }
}

void linear_cpu(OpContext& c) {
  dispatch_float(c, [&](auto z) {
    using T = decltype(z);
    int M = int(c.in[0].shape[0]), K = int(c.in[0].shape[1]), N = int(c.in[1].shape[0]);
    T* y = c.out[0].ptr<T>();
    gemm_cpu<T>(false, true, M, N, K, c.in[0].ptr<T>(), c.in[1].ptr<T>(), y, c.accumulate(0));
    if (c.in.size() > 2) {
      const T* b = c.in[2].ptr<T>();
      for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) y[size_t(i) * N + j] += b[j];
    }
  });
}
void linear_grad_x_cpu(OpContext& c) {  // dx (M,K) = dy (M,N) w (N,K)
  dispatch_float(c, [&](auto z) {
    using T = decltype(z);
    int M = int(c.in[0].shape[0]), N = int(c.in[0].shape[1]), K = int(c.in[1].shape[1]);
    gemm_cpu<T>(false, false, M, K, N, c.in[0].ptr<T>(), c.in[1].ptr<T>(), c.out[0].ptr<T>(), c.accumulate(0));
  });
}
void linear_grad_w_cpu(OpContext& c) {  // dw (N,K) = dy^T (N,M) x (M,K)
  dispatch_float(c, [&](auto z) {
    using T = decltype(z);
    int M = int(c.in[0].shape[0]), N = int(c.in[0].shape[1]), K = int(c.in[1].shape[1]);
    gemm_cpu<T>(true, false, N, K, M, c.in[0].ptr<T>(), c.in[1].ptr<T>(), c.out[0].ptr<T>(), c.accumulate(0));
  });
}
void sum_rows_cpu(OpContext& c) {  // db (N) = sum_i dy (M,N)
  dispatch_float(c, [&](auto z) {
    using T = decltype(z);
    int M = int(c.in[0].shape[0]), N = int(c.in[0].shape[1]);
    const T* dy = c.in[0].ptr<T>();
    T* db = c.out[0].ptr<T>();
    for (int j = 0; j < N; ++j) {
      T s = 0;
      for (int i = 0; i < M; ++i) s += dy[size_t(i) * N + j];
      store_acc(db, j, s, c.accumulate(0));
    }
  });
}

// ---- elementwise ---------------------------------------------------------------------------------
template <typename F> void unary_cpu(OpContext& c, F f) {
  dispatch_float(c, [&](auto z) {
    using T = decltype(z);
    const T* x = c.in[0].ptr<T>();
    T* y = c.out[0].ptr<T>();
    for (int64_t i = 0; i < c.out[0].numel(); ++i) store_acc(y, i, T(f(x[i])), c.accumulate(0));
  });
}
template <typename F> void binary_cpu(OpContext& c, F f) {
  dispatch_float(c, [&](auto z) {
    using T = decltype(z);
    const T* a = c.in[0].ptr<T>();
    const T* b = c.in[1].ptr<T>();
    T* y = c.out[0].ptr<T>();
    for (int64_t i = 0; i < c.out[0].numel(); ++i) store_acc(y, i, T(f(a[i], b[i])), c.accumulate(0));
  });
}
void sum_cpu(OpContext& c) {
  dispatch_float(c, [&](auto z) {
    using T = decltype(z);
    const T* x = c.in[0].ptr<T>();
    double s = 0;  // a fixed-order sum in double
    for (int64_t i = 0; i < c.in[0].numel(); ++i) s += double(x[i]);
    store_acc(c.out[0].ptr<T>(), 0, T(s), c.accumulate(0));
  });
}
void expand_cpu(OpContext& c) {
  dispatch_float(c, [&](auto z) {
    using T = decltype(z);
    T v = c.in[0].ptr<T>()[0];
    T* y = c.out[0].ptr<T>();
    for (int64_t i = 0; i < c.out[0].numel(); ++i) store_acc(y, i, v, c.accumulate(0));
  });
}

std::vector<OutputDesc> same_as_input0(const Graph& g, const Node& n) {
  return {{g.value(n.inputs[0]).shape, g.value(n.inputs[0]).dtype}};
}


}  // namespace

void register_core_ops(OpRegistry& r) {
  {
    OpDef d;
    d.name = "fill";
    d.infer = [](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      CTDET_CHECK(n.outputs.size() == 1, "node '", n.name, "' (fill) writes into exactly one existing value");
      return {{g.value(n.outputs[0]).shape, g.value(n.outputs[0]).dtype}};
    };
    d.cpu = fill_cpu;
    d.cuda = CTDET_CUDA_FN(core_fill_cuda);
    r.add(d);
  }
  {
    OpDef d;
    d.name = "linear";
    d.infer = [](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      CTDET_CHECK(n.inputs.size() == 2 || n.inputs.size() == 3, "node '", n.name, "' (linear) takes x, w[, b]");
      const Shape &x = shp(g, n.inputs[0]), &w = shp(g, n.inputs[1]);
      CTDET_CHECK(x.rank() == 2 && w.rank() == 2 && x[1] == w[1],
                  "linear expects x (M,K) and w (N,K): ", describe_inputs(g, n));
      if (n.inputs.size() == 3)
        CTDET_CHECK(shp(g, n.inputs[2]) == Shape({w[0]}), "linear bias must be (N): ", describe_inputs(g, n));
      return {{Shape{x[0], w[0]}, g.value(n.inputs[0]).dtype}};
    };
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) {
      ValueId dy = b.grad_out();
      b.contribute(0, "linear_grad_x", {dy, b.in(1)});
      b.contribute(1, "linear_grad_w", {dy, b.in(0)});
      if (b.fwd().inputs.size() > 2) b.contribute(2, "sum_rows", {dy});
    };
#endif
    // 2 * M * N * K for the product; the bias add is not counted.
    d.flops = [](const Graph& g, const Node& n) {
      return 2.0 * double(shp(g, n.inputs[0])[0]) * double(shp(g, n.inputs[1])[0]) * double(shp(g, n.inputs[1])[1]);
    };
    d.cpu = linear_cpu;
    d.cuda = CTDET_CUDA_FN(core_linear_cuda);
    r.add(d);
  }
#if !CTDET_INFERENCE_ONLY
  {
    OpDef d;
    d.name = "linear_grad_x";
    d.infer = [](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      const Shape &dy = shp(g, n.inputs[0]), &w = shp(g, n.inputs[1]);
      CTDET_CHECK(dy.rank() == 2 && w.rank() == 2 && dy[1] == w[0], "shape mismatch in ", describe_inputs(g, n));
      return {{Shape{dy[0], w[1]}, g.value(n.inputs[0]).dtype}};
    };
    d.flops = [](const Graph& g, const Node& n) {  // dy (M,N) w (N,K)
      return 2.0 * double(shp(g, n.inputs[0])[0]) * double(shp(g, n.inputs[1])[0]) * double(shp(g, n.inputs[1])[1]);
    };
    d.cpu = linear_grad_x_cpu;
    d.cuda = CTDET_CUDA_FN(core_linear_grad_x_cuda);
    r.add(d);
  }
#endif
#if !CTDET_INFERENCE_ONLY
  {
    OpDef d;
    d.name = "linear_grad_w";
    d.infer = [](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      const Shape &dy = shp(g, n.inputs[0]), &x = shp(g, n.inputs[1]);
      CTDET_CHECK(dy.rank() == 2 && x.rank() == 2 && dy[0] == x[0], "shape mismatch in ", describe_inputs(g, n));
      return {{Shape{dy[1], x[1]}, g.value(n.inputs[0]).dtype}};
    };
    d.flops = [](const Graph& g, const Node& n) {  // dy (M,N) x (M,K)
      return 2.0 * double(shp(g, n.inputs[0])[0]) * double(shp(g, n.inputs[0])[1]) * double(shp(g, n.inputs[1])[1]);
    };
    d.cpu = linear_grad_w_cpu;
    d.cuda = CTDET_CUDA_FN(core_linear_grad_w_cuda);
    r.add(d);
  }
#endif
  {
    OpDef d;
    d.name = "sum_rows";
    d.infer = [](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      const Shape& dy = shp(g, n.inputs[0]);
      CTDET_CHECK(dy.rank() == 2, "sum_rows expects a matrix: ", describe_inputs(g, n));
      return {{Shape{dy[1]}, g.value(n.inputs[0]).dtype}};
    };
    d.cpu = sum_rows_cpu;
    d.cuda = CTDET_CUDA_FN(core_sum_rows_cuda);
    r.add(d);
  }
  {
    OpDef d;
    d.name = "add";
    d.infer = [](const Graph& g, const Node& n) {
      CTDET_CHECK(n.inputs.size() == 2, "node '", n.name, "' (add) takes two inputs");
      check_same(g, n, n.inputs[0], n.inputs[1]);
      return same_as_input0(g, n);
    };
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) {
      b.contribute(0, "copy", {b.grad_out()});
      b.contribute(1, "copy", {b.grad_out()});
    };
#endif
    d.inplace = true;
    d.cheap = true;
    d.cpu = [](OpContext& c) { binary_cpu(c, [](auto a, auto b) { return a + b; }); };
#if CTDET_WITH_CUDA
    d.cuda = [](OpContext& c) { core_binary_cuda(c, 0); };
#else
    d.cuda = cuda_not_built;
#endif
    r.add(d);
  }
  {
    OpDef d;
    d.name = "mul";
    d.infer = [](const Graph& g, const Node& n) {
      CTDET_CHECK(n.inputs.size() == 2, "node '", n.name, "' (mul) takes two inputs");
      check_same(g, n, n.inputs[0], n.inputs[1]);
      return same_as_input0(g, n);
    };
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) {
      b.contribute(0, "mul", {b.grad_out(), b.in(1)});
      b.contribute(1, "mul", {b.grad_out(), b.in(0)});
    };
#endif
    d.cpu = [](OpContext& c) { binary_cpu(c, [](auto a, auto b) { return a * b; }); };
#if CTDET_WITH_CUDA
    d.cuda = [](OpContext& c) { core_binary_cuda(c, 1); };
#else
    d.cuda = cuda_not_built;
#endif
    r.add(d);
  }
  {
    OpDef d;
    d.name = "copy";
    d.infer = same_as_input0;
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) { b.contribute(0, "copy", {b.grad_out()}); };
#endif
    d.cpu = [](OpContext& c) { unary_cpu(c, [](auto x) { return x; }); };
#if CTDET_WITH_CUDA
    d.cuda = [](OpContext& c) { core_unary_cuda(c, 0); };
#else
    d.cuda = cuda_not_built;
#endif
    r.add(d);
  }
  {
    OpDef d;
    d.name = "scale";
    d.infer = same_as_input0;
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) {
      b.contribute(0, "scale", {b.grad_out()}, std::any_cast<const ScaleAttrs&>(b.fwd().attrs));
    };
#endif
    d.inplace = true;
    d.cheap = true;
    d.cpu = [](OpContext& c) {
      double a = c.attrs<ScaleAttrs>().alpha;
      unary_cpu(c, [a](auto x) { return decltype(x)(a) * x; });
    };
#if CTDET_WITH_CUDA
    d.cuda = [](OpContext& c) { core_unary_cuda(c, 1); };
#else
    d.cuda = cuda_not_built;
#endif
    r.add(d);
  }
  {
    OpDef d;
    d.name = "relu";
    d.infer = same_as_input0;
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) { b.contribute(0, "relu_grad", {b.grad_out(), b.out()}); };
#endif
    d.inplace = true;
    d.cheap = true;
    d.cpu = [](OpContext& c) { unary_cpu(c, [](auto x) { return relu_fn(x); }); };
#if CTDET_WITH_CUDA
    d.cuda = [](OpContext& c) { core_unary_cuda(c, 2); };
#else
    d.cuda = cuda_not_built;
#endif
    r.add(d);
  }
#if !CTDET_INFERENCE_ONLY
  {
    OpDef d;
    d.name = "relu_grad";
    d.infer = [](const Graph& g, const Node& n) {
      check_same(g, n, n.inputs[0], n.inputs[1]);
      return same_as_input0(g, n);
    };
    d.inplace = true;
    d.cpu = [](OpContext& c) { binary_cpu(c, [](auto dy, auto y) { return relu_grad_fn(dy, y); }); };
    d.cuda = CTDET_CUDA_FN(core_relu_grad_cuda);
    r.add(d);
  }
#endif
  {
    OpDef d;
    d.name = "sum";
    d.infer = [](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      return {{Shape{1}, g.value(n.inputs[0]).dtype}};
    };
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) {
      b.contribute(0, "expand", {b.grad_out()}, ExpandAttrs{b.graph().value(b.in(0)).shape});
    };
#endif
    d.cpu = sum_cpu;
    d.cuda = CTDET_CUDA_FN(core_sum_cuda);
    r.add(d);
  }
  {
    OpDef d;
    d.name = "expand";
    d.infer = [](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      CTDET_CHECK(shp(g, n.inputs[0]).numel() == 1, "expand takes a scalar: ", describe_inputs(g, n));
      return {{std::any_cast<const ExpandAttrs&>(n.attrs).shape, g.value(n.inputs[0]).dtype}};
    };
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) { b.contribute(0, "sum", {b.grad_out()}); };
#endif
    d.cpu = expand_cpu;
    d.cuda = CTDET_CUDA_FN(core_expand_cuda);
    r.add(d);
  }
}

}  // namespace ctdet
