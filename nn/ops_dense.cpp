// Dense graph ops: conv2d, frozen batch norm and max pool, wired onto the kernels in kernels/conv2d.h,
// kernels/batchnorm.h and kernels/pool.h. Forward and backward kinds sit side by side; each backward kind
// has one output (one contribution to one input's gradient), so autograd's accumulate flags apply as is.
//
//   "conv2d"                 inputs x (N,C,H,W), w (K,C/g,R,S)[, b (K)]     -> y (N,K,P,Q)
//      attrs: Conv2dParams with the user's stride / padding / dilation / groups. N,C,H,W,K,R,S and has_bias
//      are derived from the input shapes (C,H,W,K, and R,S when not 0/1, must agree if the caller set them).
//   "conv2d_grad_x"          inputs dy, w          -> dx (N,C,H,W)      attrs: the resolved Conv2dParams
//   "conv2d_grad_w"          inputs dy, x          -> dw (K,C/g,R,S)
//   "conv2d_grad_b"          inputs dy             -> db (K)
//   "batchnorm_frozen"       inputs x (N,C,H,W) or (N,C), gamma, beta, mean, var (C) -> y like x
//      attrs: BatchNormParams (eps used; N,C,H,W derived). mean and var are running statistics: they must be
//      frozen (Value::requires_grad = false before the node is added, see detector/backbone/resnet.h
//      frozen_param()); shape inference refuses them otherwise. gamma and beta get gradients only when the
//      caller left them trainable. A frozen parameter gets no gradient node, so its ParamStore gradient stays
//      zero and the optimizer must not update it (the planner counts no gradient/momentum bytes for it).
//   "batchnorm_frozen_grad_x"     inputs dy, gamma, mean, var      -> dx
//   "batchnorm_frozen_grad_gamma" inputs dy, x, gamma, mean, var   -> dgamma (C)
//   "batchnorm_frozen_grad_beta"  inputs dy, gamma, mean, var      -> dbeta (C)
//   "max_pool"               inputs x (N,C,H,W) -> y (N,C,P,Q)   attrs: Pool2dParams (kind must be Max;
//      N,C,H,W derived), explicit or TF SAME padding. Backward "max_pool_grad": inputs dy, x -> dx.
//
// Workspace (OpDef::workspace):
//   CPU  conv2d / conv2d_grad_x / conv2d_grad_w in f32: the im2col column buffer,
//        conv2d_workspace_bytes_cpu(p) = (C/g)*R*S*P*Q*4 bytes. The CPU path cannot run with less, so the cap
//        does not shrink it. f64 (the direct-loop reference) needs none.
//   CUDA The planner has no CudaContext (OpDef::workspace gets none), so cuDNN's heuristics cannot be asked.
//        We plan an estimate instead:  pad + min(cap, align256(N*(C/g)*R*S*P*Q*4)), and 0 for the pointwise
//        convolutions that run as cuBLAS GEMMs (conv2d_uses_pointwise_gemm),
//        pad = the padded-input copy kernels/cuda/conv2d.cu makes for asymmetric padding (0 when symmetric).
//        The column term is what an explicit-GEMM algorithm needs; implicit-GEMM algorithms need less.
//        At run time the op lowers CudaContext::workspace_cap to (planned bytes - pad) around the cuDNN call, so
//        the algorithm chosen always fits what was planned (an algorithm wanting more, e.g. FFT, is skipped).
#include <algorithm>
#include <cstring>

#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/pool.h"
#include "nn/autograd.h"
#include "nn/op_registry.h"
#if CTDET_WITH_CUDA
#include "nn/cuda_context.h"
#endif

namespace ctdet {

namespace {

const Shape& shp(const Graph& g, ValueId v) { return g.value(v).shape; }

template <typename F> void dispatch_float(const OpContext& c, F&& f) {
  DType t = c.out[0].dtype;
  if (t == DType::F32) f(float{});
  else if (t == DType::F64) f(double{});
  else CTDET_FAIL("node '", c.node->name, "' (", c.node->op, "): unsupported dtype ", dtype_name(t));
}

// Runs `f`, re-throwing a kernel-level error with the node and its inputs named.
template <typename F> auto with_node(const Graph& g, const Node& n, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    throw Error(str(e.what(), " [", describe_inputs(g, n), "]"));
  }
}

void check_dtypes(const Graph& g, const Node& n) {
  DType t = g.value(n.inputs[0]).dtype;
  CTDET_CHECK(t == DType::F32 || t == DType::F64, "node '", n.name, "' (", n.op, ") needs f32 or f64 inputs: ",
              describe_inputs(g, n));
  for (ValueId v : n.inputs)
    CTDET_CHECK(g.value(v).dtype == t, "node '", n.name, "' (", n.op, ") mixes dtypes: ", describe_inputs(g, n));
}

// ---- conv2d ----------------------------------------------------------------------------------------------
// The forward node's full parameters from its input shapes and the user's attrs.
Conv2dParams resolve_conv(const Graph& g, const Node& n) {
  CTDET_CHECK(n.inputs.size() == 2 || n.inputs.size() == 3, "node '", n.name, "' (conv2d) takes x, w[, b], got ",
              n.inputs.size(), " inputs");
  CTDET_CHECK(n.attrs.has_value() && n.attrs.type() == typeid(Conv2dParams), "node '", n.name,
              "' (conv2d) needs Conv2dParams attrs");
  check_dtypes(g, n);
  Conv2dParams p = std::any_cast<const Conv2dParams&>(n.attrs);
  const Shape &x = shp(g, n.inputs[0]), &w = shp(g, n.inputs[1]);
  CTDET_CHECK(x.rank() == 4 && w.rank() == 4, "conv2d expects x (N,C,H,W) and w (K,C/groups,R,S): ",
              describe_inputs(g, n));
  auto agree = [&](int attr, int64_t actual, const char* what) {
    CTDET_CHECK(attr == 0 || attr == actual, "node '", n.name, "' (conv2d): attrs say ", what, "=", attr,
                " but the inputs give ", actual, ": ", describe_inputs(g, n));
    return int(actual);
  };
  // N,C,H,W default to 1,0,0,0 in Conv2dParams; N=1 is "unset" only when the input agrees, so compare loosely.
  p.N = int(x[0]);
  p.C = agree(p.C, x[1], "C");
  p.H = agree(p.H, x[2], "H");
  p.W = agree(p.W, x[3], "W");
  p.K = agree(p.K, w[0], "K");
  p.R = (p.R == 1 || p.R == 0) ? int(w[2]) : agree(p.R, w[2], "R");
  p.S = (p.S == 1 || p.S == 0) ? int(w[3]) : agree(p.S, w[3], "S");
  CTDET_CHECK(p.groups > 0 && w[1] * p.groups == x[1], "node '", n.name, "' (conv2d): weight has ", w[1],
              " input channels per group, groups=", p.groups, ", but x has ", x[1], " channels: ",
              describe_inputs(g, n));
  p.has_bias = n.inputs.size() == 3;
  if (p.has_bias)
    CTDET_CHECK(shp(g, n.inputs[2]) == Shape({w[0]}), "node '", n.name, "' (conv2d): bias must be (K)=(", w[0],
                "): ", describe_inputs(g, n));
  with_node(g, n, [&] { validate_conv2d(p); });
  return p;
}

const Conv2dParams& conv_attrs(const Node& n) { return std::any_cast<const Conv2dParams&>(n.attrs); }

Shape conv_x_shape(const Conv2dParams& p) { return Shape{p.N, p.C, p.H, p.W}; }
Shape conv_w_shape(const Conv2dParams& p) { return Shape{p.K, p.C / p.groups, p.R, p.S}; }
Shape conv_y_shape(const Conv2dParams& p) { return Shape{p.N, p.K, p.out_h(), p.out_w()}; }

size_t align256(size_t b) { return (b + 255) / 256 * 256; }

// CUDA: bytes of the padded input copy conv2d.cu makes for asymmetric padding (same rounding as there).
size_t conv_cuda_pad_bytes(const Conv2dParams& p) {
  if (p.symmetric_padding()) return 0;
  return align256(size_t(p.N) * p.C * (p.H + p.pad_top + p.pad_bottom) * (p.W + p.pad_left + p.pad_right) *
                  sizeof(float));
}

size_t conv_workspace(const Conv2dParams& p, DType t, Device d, size_t cap) {
  if (d == Device::CPU) return t == DType::F32 ? conv2d_workspace_bytes_cpu(p) : 0;
  if (conv2d_uses_pointwise_gemm(p)) return 0;  // cuBLAS GEMMs, no workspace (CudaContext::pointwise_conv_gemm)
  const size_t col = size_t(p.N) * (p.C / p.groups) * p.R * p.S * size_t(p.out_h()) * p.out_w() * sizeof(float);
  return conv_cuda_pad_bytes(p) + std::min(cap, align256(col));
}

// 2 * N * K * (C/groups) * R * S * P * Q: the same for the forward, the data gradient and the filter gradient.
double conv_flops(const Conv2dParams& p) {
  return 2.0 * p.N * p.K * (p.C / p.groups) * p.R * p.S * double(p.out_h()) * p.out_w();
}

template <typename T> const T* in_ptr(const OpContext& c, size_t i) { return c.in[i].ptr<T>(); }

void conv_fwd_cpu(OpContext& c) {
  CTDET_CHECK(!c.accumulate(0), "node '", c.node->name, "' (conv2d) cannot accumulate into its output");
  Conv2dParams p = resolve_conv(*c.graph, *c.node);
  dispatch_float(c, [&](auto z) {
    using T = decltype(z);
    conv2d_forward_cpu<T>(p, in_ptr<T>(c, 0), in_ptr<T>(c, 1), p.has_bias ? in_ptr<T>(c, 2) : nullptr,
                          c.out[0].ptr<T>(), c.workspace);
  });
}
void conv_grad_x_cpu(OpContext& c) {
  const Conv2dParams& p = conv_attrs(*c.node);
  dispatch_float(c, [&](auto z) {
    using T = decltype(z);
    conv2d_backward_cpu<T>(p, in_ptr<T>(c, 0), nullptr, in_ptr<T>(c, 1), c.out[0].ptr<T>(), c.accumulate(0),
                           nullptr, false, nullptr, false, c.workspace);
  });
}
void conv_grad_w_cpu(OpContext& c) {
  const Conv2dParams& p = conv_attrs(*c.node);
  dispatch_float(c, [&](auto z) {
    using T = decltype(z);
    conv2d_backward_cpu<T>(p, in_ptr<T>(c, 0), in_ptr<T>(c, 1), nullptr, nullptr, false, c.out[0].ptr<T>(),
                           c.accumulate(0), nullptr, false, c.workspace);
  });
}
void conv_grad_b_cpu(OpContext& c) {
  const Conv2dParams& p = conv_attrs(*c.node);
  dispatch_float(c, [&](auto z) {
    using T = decltype(z);
    conv2d_backward_cpu<T>(p, in_ptr<T>(c, 0), nullptr, nullptr, nullptr, false, nullptr, false, c.out[0].ptr<T>(),
                           c.accumulate(0), nullptr);
  });
}

// ---- batchnorm_frozen ----------------------------------------------------------------------------------
BatchNormParams bn_params_from(const Graph& g, const Node& n, const Shape& x) {
  CTDET_CHECK(n.attrs.has_value() && n.attrs.type() == typeid(BatchNormParams), "node '", n.name, "' (", n.op,
              ") needs BatchNormParams attrs");
  BatchNormParams p = std::any_cast<const BatchNormParams&>(n.attrs);
  CTDET_CHECK(x.rank() == 4 || x.rank() == 2, "node '", n.name, "' (", n.op, ") expects x (N,C,H,W) or (N,C): ",
              describe_inputs(g, n));
  p.N = int(x[0]);
  p.C = int(x[1]);
  p.H = x.rank() == 4 ? int(x[2]) : 1;
  p.W = x.rank() == 4 ? int(x[3]) : 1;
  with_node(g, n, [&] { validate_batchnorm(p, false); });
  return p;
}

void check_channel_params(const Graph& g, const Node& n, size_t first, const Shape& x) {
  for (size_t i = first; i < n.inputs.size(); ++i)
    CTDET_CHECK(shp(g, n.inputs[i]) == Shape({x[1]}), "node '", n.name, "' (", n.op, "): input ", i,
                " must be (C)=(", x[1], "): ", describe_inputs(g, n));
}

std::vector<OutputDesc> bn_infer(const Graph& g, const Node& n) {
  CTDET_CHECK(n.inputs.size() == 5, "node '", n.name, "' (batchnorm_frozen) takes x, gamma, beta, mean, var; got ",
              n.inputs.size(), " inputs");
  check_dtypes(g, n);
  const Shape& x = shp(g, n.inputs[0]);
  bn_params_from(g, n, x);
  check_channel_params(g, n, 1, x);
  for (size_t i : {size_t(3), size_t(4)})
    CTDET_CHECK(!g.value(n.inputs[i]).requires_grad, "node '", n.name, "' (batchnorm_frozen): the running ",
                i == 3 ? "mean " : "variance ", g.describe(n.inputs[i]),
                " requires a gradient; running statistics are frozen (set Value::requires_grad = false)");
  return {{x, g.value(n.inputs[0]).dtype}};
}

const BatchNormParams& bn_attrs(const Node& n) { return std::any_cast<const BatchNormParams&>(n.attrs); }

void bn_fwd_cpu(OpContext& c) {
  CTDET_CHECK(!c.accumulate(0), "node '", c.node->name, "' (batchnorm_frozen) cannot accumulate into its output");
  BatchNormParams p = bn_params_from(*c.graph, *c.node, c.in[0].shape);
  dispatch_float(c, [&](auto z) {
    using T = decltype(z);
    batchnorm_frozen_forward_cpu<T>(p, in_ptr<T>(c, 0), in_ptr<T>(c, 1), in_ptr<T>(c, 2), in_ptr<T>(c, 3),
                                    in_ptr<T>(c, 4), c.out[0].ptr<T>());
  });
}
// which: 0 dx (dy, gamma, mean, var), 1 dgamma (dy, x, gamma, mean, var), 2 dbeta (dy, gamma, mean, var)
void bn_grad_cpu(OpContext& c, int which) {
  const BatchNormParams& p = bn_attrs(*c.node);
  dispatch_float(c, [&](auto z) {
    using T = decltype(z);
    const T* dy = in_ptr<T>(c, 0);
    const size_t o = which == 1 ? 1 : 0;  // dgamma has x at input 1
    const T* x = which == 1 ? in_ptr<T>(c, 1) : nullptr;
    const T *gamma = in_ptr<T>(c, 1 + o), *mean = in_ptr<T>(c, 2 + o), *var = in_ptr<T>(c, 3 + o);
    T* out = c.out[0].ptr<T>();
    const bool acc = c.accumulate(0);
    batchnorm_frozen_backward_cpu<T>(p, dy, x, gamma, mean, var, which == 0 ? out : nullptr, acc,
                                     which == 1 ? out : nullptr, acc, which == 2 ? out : nullptr, acc);
  });
}

// ---- max_pool --------------------------------------------------------------------------------------------
Pool2dParams pool_params_from(const Graph& g, const Node& n, const Shape& x) {
  CTDET_CHECK(n.attrs.has_value() && n.attrs.type() == typeid(Pool2dParams), "node '", n.name, "' (", n.op,
              ") needs Pool2dParams attrs");
  Pool2dParams p = std::any_cast<const Pool2dParams&>(n.attrs);
  CTDET_CHECK(p.kind == PoolKind::Max, "node '", n.name, "' (", n.op, ") is a max pool but its attrs ask for kind ",
              int(p.kind));
  CTDET_CHECK(x.rank() == 4, "node '", n.name, "' (", n.op, ") expects x (N,C,H,W): ", describe_inputs(g, n));
  p.N = x[0];
  p.C = x[1];
  p.H = x[2];
  p.W = x[3];
  with_node(g, n, [&] { validate_pool2d(p); });
  return p;
}

void pool_fwd_cpu(OpContext& c) {
  CTDET_CHECK(!c.accumulate(0), "node '", c.node->name, "' (max_pool) cannot accumulate into its output");
  Pool2dParams p = pool_params_from(*c.graph, *c.node, c.in[0].shape);
  dispatch_float(c, [&](auto z) {
    using T = decltype(z);
    pool2d_forward_cpu<T>(p, in_ptr<T>(c, 0), c.out[0].ptr<T>());
  });
}
void pool_grad_cpu(OpContext& c) {
  const Pool2dParams& p = std::any_cast<const Pool2dParams&>(c.node->attrs);
  dispatch_float(c, [&](auto z) {
    using T = decltype(z);
    pool2d_backward_cpu<T>(p, in_ptr<T>(c, 0), in_ptr<T>(c, 1), c.out[0].ptr<T>(), c.accumulate(0));
  });
}

// ---- CUDA dispatch ---------------------------------------------------------------------------------------
#if CTDET_WITH_CUDA
using namespace opio;

// Lowers the context's cuDNN workspace cap to what the plan gave this node (minus the pad copy) for the
// duration of one call, so the algorithm chosen fits the planned workspace.
struct PlannedCap {
  CudaContext& ctx;
  size_t saved;
  PlannedCap(OpContext& c, const Conv2dParams& p) : ctx(*c.cuda), saved(c.cuda->workspace_cap) {
    const size_t pad = conv_cuda_pad_bytes(p);
    CTDET_CHECK(c.workspace_bytes >= pad, "node '", c.node->name, "' (", c.node->op, "): planned workspace ",
                c.workspace_bytes, " bytes is smaller than the padded-input copy (", pad, " bytes) for ",
                p.shape_string());
    ctx.workspace_cap = std::min(saved, c.workspace_bytes - pad);
  }
  ~PlannedCap() { ctx.workspace_cap = saved; }
  PlannedCap(const PlannedCap&) = delete;
  PlannedCap& operator=(const PlannedCap&) = delete;
};

void conv_fwd_cuda(OpContext& c) {
  CTDET_CHECK(!c.accumulate(0), "node '", c.node->name, "' (conv2d) cannot accumulate into its output");
  Conv2dParams p = resolve_conv(*c.graph, *c.node);
  PlannedCap cap(c, p);
  conv2d_forward_cuda(*c.cuda, p, fin(c, 0), fin(c, 1), p.has_bias ? fin(c, 2) : nullptr, fout(c));
}
void conv_grad_x_cuda(OpContext& c) {
  const Conv2dParams& p = conv_attrs(*c.node);
  PlannedCap cap(c, p);
  conv2d_backward_cuda(*c.cuda, p, fin(c, 0), nullptr, fin(c, 1), fout(c), c.accumulate(0), nullptr, false, nullptr,
                       false);
}
void conv_grad_w_cuda(OpContext& c) {
  const Conv2dParams& p = conv_attrs(*c.node);
  PlannedCap cap(c, p);
  conv2d_backward_cuda(*c.cuda, p, fin(c, 0), fin(c, 1), nullptr, nullptr, false, fout(c), c.accumulate(0), nullptr,
                       false);
}
void conv_grad_b_cuda(OpContext& c) {
  const Conv2dParams& p = conv_attrs(*c.node);
  conv2d_backward_cuda(*c.cuda, p, fin(c, 0), nullptr, nullptr, nullptr, false, nullptr, false, fout(c),
                       c.accumulate(0));
}
void bn_fwd_cuda(OpContext& c) {
  CTDET_CHECK(!c.accumulate(0), "node '", c.node->name, "' (batchnorm_frozen) cannot accumulate into its output");
  BatchNormParams p = bn_params_from(*c.graph, *c.node, c.in[0].shape);
  batchnorm_frozen_forward_cuda(*c.cuda, p, fin(c, 0), fin(c, 1), fin(c, 2), fin(c, 3), fin(c, 4), fout(c));
}
void bn_grad_cuda(OpContext& c, int which) {
  const BatchNormParams& p = bn_attrs(*c.node);
  const size_t o = which == 1 ? 1 : 0;
  const float* x = which == 1 ? fin(c, 1) : nullptr;
  float* out = fout(c);
  const bool acc = c.accumulate(0);
  batchnorm_frozen_backward_cuda(*c.cuda, p, fin(c, 0), x, fin(c, 1 + o), fin(c, 2 + o), fin(c, 3 + o),
                                 which == 0 ? out : nullptr, acc, which == 1 ? out : nullptr, acc,
                                 which == 2 ? out : nullptr, acc);
}
void pool_fwd_cuda(OpContext& c) {
  CTDET_CHECK(!c.accumulate(0), "node '", c.node->name, "' (max_pool) cannot accumulate into its output");
  Pool2dParams p = pool_params_from(*c.graph, *c.node, c.in[0].shape);
  pool2d_forward_cuda(*c.cuda, p, fin(c, 0), fout(c));
}
void pool_grad_cuda(OpContext& c) {
  const Pool2dParams& p = std::any_cast<const Pool2dParams&>(c.node->attrs);
  pool2d_backward_cuda(*c.cuda, p, fin(c, 0), fin(c, 1), fout(c), c.accumulate(0), c.workspace, c.workspace_bytes);
}
#endif

// Shape check shared by the backward kinds: input `i` must have shape `s`.
void expect_shape(const Graph& g, const Node& n, size_t i, const Shape& s) {
  CTDET_CHECK(shp(g, n.inputs[i]) == s, "node '", n.name, "' (", n.op, "): input ", i, " should be ", s.str(), ": ",
              describe_inputs(g, n));
}

}  // namespace

void register_dense_ops(OpRegistry& r) {
  // conv2d and its gradients.
  {
    OpDef d;
    d.name = "conv2d";
    d.infer = [](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      Conv2dParams p = resolve_conv(g, n);
      return {{conv_y_shape(p), g.value(n.inputs[0]).dtype}};
    };
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) {
      const Conv2dParams p = resolve_conv(b.graph(), b.fwd());
      const ValueId dy = b.grad_out();
      const bool bias = b.fwd().inputs.size() == 3;
      b.contribute(0, "conv2d_grad_x", {dy, b.in(1)}, p);
      b.contribute(1, "conv2d_grad_w", {dy, b.in(0)}, p);
      if (bias) b.contribute(2, "conv2d_grad_b", {dy}, p);
    };
#endif
    d.workspace = [](const Graph& g, const Node& n, Device dev, size_t cap) {
      return conv_workspace(resolve_conv(g, n), g.value(n.inputs[0]).dtype, dev, cap);
    };
    d.flops = [](const Graph& g, const Node& n) { return conv_flops(resolve_conv(g, n)); };
    d.cpu = conv_fwd_cpu;
    d.cuda = CTDET_CUDA_FN(conv_fwd_cuda);
    r.add(d);
  }
#if !CTDET_INFERENCE_ONLY
  {
    OpDef d;
    d.name = "conv2d_grad_x";
    d.infer = [](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      const Conv2dParams& p = conv_attrs(n);
      expect_shape(g, n, 0, conv_y_shape(p));
      expect_shape(g, n, 1, conv_w_shape(p));
      return {{conv_x_shape(p), g.value(n.inputs[0]).dtype}};
    };
    d.workspace = [](const Graph& g, const Node& n, Device dev, size_t cap) {
      return conv_workspace(conv_attrs(n), g.value(n.inputs[0]).dtype, dev, cap);
    };
    d.flops = [](const Graph&, const Node& n) { return conv_flops(conv_attrs(n)); };
    d.cpu = conv_grad_x_cpu;
    d.cuda = CTDET_CUDA_FN(conv_grad_x_cuda);
    r.add(d);
  }
#endif
#if !CTDET_INFERENCE_ONLY
  {
    OpDef d;
    d.name = "conv2d_grad_w";
    d.infer = [](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      const Conv2dParams& p = conv_attrs(n);
      expect_shape(g, n, 0, conv_y_shape(p));
      expect_shape(g, n, 1, conv_x_shape(p));
      return {{conv_w_shape(p), g.value(n.inputs[0]).dtype}};
    };
    d.workspace = [](const Graph& g, const Node& n, Device dev, size_t cap) {
      return conv_workspace(conv_attrs(n), g.value(n.inputs[0]).dtype, dev, cap);
    };
    d.flops = [](const Graph&, const Node& n) { return conv_flops(conv_attrs(n)); };
    d.cpu = conv_grad_w_cpu;
    d.cuda = CTDET_CUDA_FN(conv_grad_w_cuda);
    r.add(d);
  }
#endif
#if !CTDET_INFERENCE_ONLY
  {
    OpDef d;
    d.name = "conv2d_grad_b";
    d.infer = [](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      const Conv2dParams& p = conv_attrs(n);
      expect_shape(g, n, 0, conv_y_shape(p));
      return {{Shape{p.K}, g.value(n.inputs[0]).dtype}};
    };
    d.cpu = conv_grad_b_cpu;
    d.cuda = CTDET_CUDA_FN(conv_grad_b_cuda);
    r.add(d);
  }
#endif

  // Frozen batch norm and its gradients.
  {
    OpDef d;
    d.name = "batchnorm_frozen";
    d.infer = bn_infer;
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) {
      const ValueId dy = b.grad_out();
      const BatchNormParams p = bn_params_from(b.graph(), b.fwd(), b.graph().value(b.in(0)).shape);
      b.contribute(0, "batchnorm_frozen_grad_x", {dy, b.in(1), b.in(3), b.in(4)}, p);
      b.contribute(1, "batchnorm_frozen_grad_gamma", {dy, b.in(0), b.in(1), b.in(3), b.in(4)}, p);
      b.contribute(2, "batchnorm_frozen_grad_beta", {dy, b.in(1), b.in(3), b.in(4)}, p);
    };
#endif
    d.inplace = true;  // y = x * scale + shift per element; backward reads x only for dgamma
    d.cpu = bn_fwd_cpu;
    d.cuda = CTDET_CUDA_FN(bn_fwd_cuda);
    r.add(d);
  }
#if !CTDET_INFERENCE_ONLY
  const char* bn_grads[3] = {"batchnorm_frozen_grad_x", "batchnorm_frozen_grad_gamma", "batchnorm_frozen_grad_beta"};
  for (int which = 0; which < 3; ++which) {
    OpDef d;
    d.name = bn_grads[which];
    d.infer = [which](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      CTDET_CHECK(n.inputs.size() == (which == 1 ? 5u : 4u), "node '", n.name, "' (", n.op, ") has ",
                  n.inputs.size(), " inputs");
      const BatchNormParams& p = bn_attrs(n);
      const Shape x = n.inputs.size() && shp(g, n.inputs[0]).rank() == 2 ? Shape{p.N, p.C}
                                                                         : Shape{p.N, p.C, p.H, p.W};
      expect_shape(g, n, 0, x);
      if (which == 1) expect_shape(g, n, 1, x);
      check_channel_params(g, n, which == 1 ? 2 : 1, x);
      return {{which == 0 ? x : Shape{p.C}, g.value(n.inputs[0]).dtype}};
    };
    d.inplace = which == 0;  // dx = dy * scale per element
    d.cpu = [which](OpContext& c) { bn_grad_cpu(c, which); };
#if CTDET_WITH_CUDA
    d.cuda = [which](OpContext& c) { bn_grad_cuda(c, which); };
#else
    d.cuda = cuda_not_built;
#endif
    r.add(d);
  }
#endif

  // Max pool (kernels/pool.h) and its gradient.
  {
    OpDef d;
    d.name = "max_pool";
    d.infer = [](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      CTDET_CHECK(n.inputs.size() == 1, "node '", n.name, "' (max_pool) takes one input, got ", n.inputs.size());
      check_dtypes(g, n);
      Pool2dParams p = pool_params_from(g, n, shp(g, n.inputs[0]));
      PoolGeom q = pool2d_geometry(p);
      return {{Shape{q.N, q.C, q.P, q.Q}, g.value(n.inputs[0]).dtype}};
    };
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) {
      Pool2dParams p = pool_params_from(b.graph(), b.fwd(), b.graph().value(b.in(0)).shape);
      b.contribute(0, "max_pool_grad", {b.grad_out(), b.in(0)}, p);
    };
#endif
    d.cpu = pool_fwd_cpu;
    d.cuda = CTDET_CUDA_FN(pool_fwd_cuda);
    r.add(d);
  }
#if !CTDET_INFERENCE_ONLY
  {
    OpDef d;
    d.name = "max_pool_grad";
    d.infer = [](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      const Pool2dParams& p = std::any_cast<const Pool2dParams&>(n.attrs);
      PoolGeom q = pool2d_geometry(p);
      expect_shape(g, n, 0, Shape{q.N, q.C, q.P, q.Q});
      expect_shape(g, n, 1, Shape{q.N, q.C, q.H, q.W});
      return {{shp(g, n.inputs[1]), g.value(n.inputs[0]).dtype}};
    };
    // CUDA: the argmax buffer of the two-pass backward (kernels/pool.h); the CPU scatters and needs none.
    d.workspace = [](const Graph&, const Node& n, Device dev, size_t) -> size_t {
      return dev == Device::CUDA ? pool2d_backward_cuda_workspace_bytes(std::any_cast<const Pool2dParams&>(n.attrs)) : 0;
    };
    d.cpu = pool_grad_cpu;
    d.cuda = CTDET_CUDA_FN(pool_grad_cuda);
    r.add(d);
  }
#endif
}

}  // namespace ctdet
