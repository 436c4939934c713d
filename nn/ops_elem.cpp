// Graph ops over the elementwise / layout / pooling / loss kernels (kernels/elementwise.h, pool.h, loss.h).
// Each op: shape inference that names the node, its inputs and their shapes on a mismatch; the gradient
// rule (backward nodes are ordinary op kinds); the CPU run function (f32 and f64). The CUDA run functions
// (f32) are in ops_elem.cu and use the same params resolvers (nn/op_attrs.h).
//
// Op kinds (inputs -> outputs; attrs):
//   relu6                 x -> y                                          ; none
//   relu6_grad            dy, y -> dx                                     ; none
//   bn_scale_shift        gamma, beta, mean, var (C) -> scale, shift (C)  ; BatchNormParams (eps); frozen BN only
//   bn_add_relu           x (N,C,..), scale (C), shift (C) [, r like x] -> y ; none
//   bn_add_relu_grad_x    dy, y, scale -> dx                              ; none   (no residual gradient wanted)
//   bn_add_relu_grad      dy, y, scale -> dr, dx                          ; none   (the residual and x, one pass)
//   concat                x_0..x_k-1 (N,C_i,..) -> y (N,sum C_i,..)       ; none   (grad: "slice" per input)
//   slice                 x (N,C,..) -> y (N,count,..)                    ; SliceAttrs
//   slice_grad            dy (N,count,..) -> dx (x_shape)                 ; SliceGradAttrs
//   gather_rows           x (M,..), idx (R) i32 -> y (R,..)               ; none
//   gather_rows_grad      dy (R,..), idx (R) i32 -> dx (x_shape)          ; InputShapeAttrs
//   pool2d                x (N,C,H,W) -> y (N,C,P,Q)                      ; Pool2dParams (max or avg)
//   pool2d_grad           dy [, x (max only)] -> dx (N,C,H,W)             ; Pool2dParams with N,C,H,W set
//   max_pool_argmax       x (N,C,H,W) -> y, arg (N,C,P,Q) (arg i32)       ; Pool2dParams (max)  (training graphs:
//                         the backward reads arg instead of x, so x may die after the forward)
//   max_pool_argmax_grad  dy, arg (N,C,P,Q) -> dx (N,C,H,W)               ; Pool2dParams with N,C,H,W set
//   global_avg_pool       x (N,C,H,W) -> y (N,C)                          ; none
//   global_avg_pool_grad  dy (N,C) -> dx (x_shape)                        ; InputShapeAttrs
//   softmax_ce            logits (R,C), labels (R) i32 [, w (R)] [, count (1) i32] -> loss (1) ; LossParams
//   sigmoid_ce            logits (R,C), targets (R,C) [, w] [, count] -> loss (1)              ; LossParams
//   smooth_l1             pred (R,C), target (R,C) [, w] [, count] -> loss (1)                 ; LossParams
//   <loss>_grad           dloss (1), <the forward inputs> -> d logits/pred (R,C)              ; LossParams
#include <climits>
#include <cmath>

#include "kernels/batchnorm.h"
#include "nn/autograd.h"
#include "nn/op_attrs.h"
#include "nn/op_registry.h"

namespace ctdet {

#if CTDET_WITH_CUDA
void elem_relu6_cuda(OpContext& c);
void elem_bn_scale_shift_cuda(OpContext& c);
void elem_relu6_grad_cuda(OpContext& c);
void elem_bn_add_relu_cuda(OpContext& c);
void elem_bn_add_relu_grad_x_cuda(OpContext& c);
void elem_bn_add_relu_grad_cuda(OpContext& c);
void elem_concat_cuda(OpContext& c);
void elem_slice_cuda(OpContext& c);
void elem_slice_grad_cuda(OpContext& c);
void elem_gather_rows_cuda(OpContext& c);
void elem_gather_rows_grad_cuda(OpContext& c);
void elem_pool2d_cuda(OpContext& c);
void elem_pool2d_grad_cuda(OpContext& c);
void elem_max_pool_argmax_cuda(OpContext& c);
void elem_max_pool_argmax_grad_cuda(OpContext& c);
void elem_gap_cuda(OpContext& c);
void elem_gap_grad_cuda(OpContext& c);
void elem_loss_cuda(OpContext& c, int kind);       // 0 softmax CE, 1 sigmoid CE, 2 smooth L1
void elem_loss_grad_cuda(OpContext& c, int kind);
#endif

namespace {

using namespace op_util;


// ---- relu6 --------------------------------------------------------------------------------------------
void relu6_cpu(OpContext& c) {
  require_overwrite(c);
  CTDET_FLOAT_OP(c, relu6_forward_cpu<T>(c.out[0].numel(), c.in[0].ptr<T>(), c.out[0].ptr<T>()););
}
void relu6_grad_cpu(OpContext& c) {
  CTDET_FLOAT_OP(c, relu6_backward_cpu<T>(c.out[0].numel(), c.in[0].ptr<T>(), c.in[1].ptr<T>(), c.out[0].ptr<T>(),
                                          c.accumulate(0)););
}

// ---- bn_scale_shift: frozen BN statistics -> the per-channel affine map bn_add_relu applies ------------------
void bn_scale_shift_cpu(OpContext& c) {
  require_overwrite(c);
  const double eps = c.attrs<BatchNormParams>().eps;
  const int C = int(c.in[0].shape[0]);
  CTDET_FLOAT_OP(c, batchnorm_frozen_scale_shift_cpu<T>(C, c.in[0].ptr<T>(), c.in[1].ptr<T>(), c.in[2].ptr<T>(),
                                                        c.in[3].ptr<T>(), eps, c.out[0].ptr<T>(), c.out[1].ptr<T>()););
}

// ---- bn_add_relu ----------------------------------------------------------------------------------------
void bn_add_relu_cpu(OpContext& c) {
  require_overwrite(c);
  BnAddReluParams p = bn_add_relu_params(c.in[0].shape);
  CTDET_FLOAT_OP(c, bn_add_relu_forward_cpu<T>(p, c.in[0].ptr<T>(), c.in[1].ptr<T>(), c.in[2].ptr<T>(),
                                               c.in.size() > 3 ? c.in[3].ptr<T>() : nullptr, c.out[0].ptr<T>()););
}
// The gradient nodes' inputs dy, y (N,C,...) and scale (C): checked, naming the node; returns dy's shape.
Shape bn_add_relu_grad_shape(const Graph& g, const Node& n) {
  need_inputs(g, n, 3, 3, "dy, y, scale");
  for (size_t i = 0; i < 3; ++i) need_float(g, n, i);
  const Shape& dy = shp(g, n.inputs[0]);
  need(dy.rank() >= 2 && shp(g, n.inputs[1]) == dy && shp(g, n.inputs[2]) == Shape({dy[1]}), g, n,
       "expects dy and y (N,C,...) and scale (C)");
  return dy;
}
void bn_add_relu_grad_cpu(OpContext& c) {
  BnAddReluParams p = bn_add_relu_params(c.in[0].shape);
  CTDET_FLOAT_OP(c, bn_add_relu_backward_cpu<T>(p, c.in[0].ptr<T>(), c.in[1].ptr<T>(), c.in[2].ptr<T>(),
                                                c.out[1].ptr<T>(), c.accumulate(1), c.out[0].ptr<T>(),
                                                c.accumulate(0)););
}
void bn_add_relu_grad_x_cpu(OpContext& c) {
  BnAddReluParams p = bn_add_relu_params(c.in[0].shape);
  CTDET_FLOAT_OP(c, bn_add_relu_backward_cpu<T>(p, c.in[0].ptr<T>(), c.in[1].ptr<T>(), c.in[2].ptr<T>(),
                                                c.out[0].ptr<T>(), c.accumulate(0), nullptr, false););
}

// ---- concat / slice ------------------------------------------------------------------------------------
ConcatParams concat_params_of(const OpContext& c) {
  ConcatParams p;
  p.N = c.in[0].shape[0];
  p.HW = dims_from(c.in[0].shape, 2);
  for (auto& t : c.in) p.channels.push_back(t.shape[1]);
  return p;
}
void concat_cpu(OpContext& c) {
  require_overwrite(c);
  ConcatParams p = concat_params_of(c);
  CTDET_FLOAT_OP(c, {
    std::vector<const T*> xs;
    for (auto& t : c.in) xs.push_back(t.ptr<T>());
    concat_forward_cpu<T>(p, xs.data(), c.out[0].ptr<T>());
  });
}
void slice_cpu(OpContext& c) {
  const SliceAttrs& a = c.attrs<SliceAttrs>();
  ConcatParams p = slice_as_concat(slice_params(c.in[0].shape, a.c0, a.count));
  bool acc[3] = {false, c.accumulate(0), false};
  CTDET_FLOAT_OP(c, {
    T* dxs[3] = {nullptr, c.out[0].ptr<T>(), nullptr};
    concat_backward_cpu<T>(p, c.in[0].ptr<T>(), dxs, acc);
  });
}
void slice_grad_cpu(OpContext& c) {
  const SliceGradAttrs& a = c.attrs<SliceGradAttrs>();
  SliceParams p = slice_params(a.x_shape, a.c0, a.count);
  CTDET_FLOAT_OP(c, slice_backward_cpu<T>(p, c.in[0].ptr<T>(), c.out[0].ptr<T>(), c.accumulate(0)););
}

// ---- gather_rows ----------------------------------------------------------------------------------------
void gather_rows_cpu(OpContext& c) {
  require_overwrite(c);
  GatherRowsParams p = gather_rows_params(c.in[0].shape, c.in[1].shape[0]);
  CTDET_FLOAT_OP(c, gather_rows_forward_cpu<T>(p, c.in[0].ptr<T>(), c.in[1].ptr<int32_t>(), c.out[0].ptr<T>()););
}
void gather_rows_grad_cpu(OpContext& c) {
  GatherRowsParams p = gather_rows_params(c.out[0].shape, c.in[1].shape[0]);
  CTDET_FLOAT_OP(c, gather_rows_backward_cpu<T>(p, c.in[0].ptr<T>(), c.in[1].ptr<int32_t>(), c.out[0].ptr<T>(),
                                                c.accumulate(0)););
}

// ---- pooling ---------------------------------------------------------------------------------------------
// The output shape of a pool node over x (N,C,H,W): checks the input and the params, naming the node.
Shape pool2d_out_shape(const Graph& g, const Node& n) {
  need_inputs(g, n, 1, 1, "x (N,C,H,W)");
  need_float(g, n, 0);
  const Shape& x = shp(g, n.inputs[0]);
  need(x.rank() == 4, g, n, "x must be (N,C,H,W)");
  Pool2dParams p = pool2d_params(node_attrs<Pool2dParams>(n), x);
  PoolGeom geo{};
  validated(g, n, [&] { geo = pool2d_geometry(p); });
  return Shape{x[0], x[1], geo.P, geo.Q};
}

void pool2d_cpu(OpContext& c) {
  require_overwrite(c);
  Pool2dParams p = pool2d_params(c.attrs<Pool2dParams>(), c.in[0].shape);
  CTDET_FLOAT_OP(c, pool2d_forward_cpu<T>(p, c.in[0].ptr<T>(), c.out[0].ptr<T>()););
}
void pool2d_grad_cpu(OpContext& c) {
  const Pool2dParams& p = c.attrs<Pool2dParams>();
  CTDET_FLOAT_OP(c, pool2d_backward_cpu<T>(p, c.in[0].ptr<T>(), c.in.size() > 1 ? c.in[1].ptr<T>() : nullptr,
                                           c.out[0].ptr<T>(), c.accumulate(0)););
}
void max_pool_argmax_cpu(OpContext& c) {
  require_overwrite(c);
  Pool2dParams p = pool2d_params(c.attrs<Pool2dParams>(), c.in[0].shape);
  CTDET_FLOAT_OP(c, pool2d_max_forward_argmax_cpu<T>(p, c.in[0].ptr<T>(), c.out[0].ptr<T>(), c.out[1].ptr<int32_t>()););
}
void max_pool_argmax_grad_cpu(OpContext& c) {
  const Pool2dParams& p = c.attrs<Pool2dParams>();
  CTDET_FLOAT_OP(c, pool2d_max_backward_from_argmax_cpu<T>(p, c.in[0].ptr<T>(), c.in[1].ptr<int32_t>(),
                                                           c.out[0].ptr<T>(), c.accumulate(0)););
}
void gap_cpu(OpContext& c) {
  require_overwrite(c);
  GapParams p = gap_params(c.in[0].shape);
  CTDET_FLOAT_OP(c, global_avg_pool_forward_cpu<T>(p, c.in[0].ptr<T>(), c.out[0].ptr<T>()););
}
void gap_grad_cpu(OpContext& c) {
  GapParams p = gap_params(c.out[0].shape);
  CTDET_FLOAT_OP(c, global_avg_pool_backward_cpu<T>(p, c.in[0].ptr<T>(), c.out[0].ptr<T>(), c.accumulate(0)););
}

// ---- losses ------------------------------------------------------------------------------------------------
// kind: 0 softmax CE (labels int32), 1 sigmoid CE (targets), 2 smooth L1 (targets).
const char* const kLossName[3] = {"softmax_ce", "sigmoid_ce", "smooth_l1"};

template <typename T> const T* opt_ptr(const OpContext& c, int slot) {
  return slot < 0 ? nullptr : c.in[size_t(slot)].ptr<T>();
}

void loss_cpu(OpContext& c, int kind) {
  require_overwrite(c);
  LossParams p = loss_params(*c.node, c.in[0].shape);
  LossSlots s = loss_slots(*c.graph, *c.node, 2);
  const int32_t* count = opt_ptr<int32_t>(c, s.count);
  CTDET_FLOAT_OP(c, {
    const T* w = opt_ptr<T>(c, s.weights);
    T* loss = c.out[0].ptr<T>();
    if (kind == 0)
      softmax_cross_entropy_forward_cpu<T>(p, c.in[0].ptr<T>(), c.in[1].ptr<int32_t>(), w, count, loss);
    else if (kind == 1)
      sigmoid_cross_entropy_forward_cpu<T>(p, c.in[0].ptr<T>(), c.in[1].ptr<T>(), w, count, loss);
    else
      smooth_l1_forward_cpu<T>(p, c.in[0].ptr<T>(), c.in[1].ptr<T>(), w, count, loss);
  });
}
void loss_grad_cpu(OpContext& c, int kind) {
  LossParams p = loss_params(*c.node, c.in[1].shape);
  LossSlots s = loss_slots(*c.graph, *c.node, 3);
  const int32_t* count = opt_ptr<int32_t>(c, s.count);
  const bool acc = c.accumulate(0);
  CTDET_FLOAT_OP(c, {
    const T* w = opt_ptr<T>(c, s.weights);
    const T* dloss = c.in[0].ptr<T>();
    T* dx = c.out[0].ptr<T>();
    if (kind == 0)
      softmax_cross_entropy_backward_cpu<T>(p, dloss, c.in[1].ptr<T>(), c.in[2].ptr<int32_t>(), w, count, dx, acc);
    else if (kind == 1)
      sigmoid_cross_entropy_backward_cpu<T>(p, dloss, c.in[1].ptr<T>(), c.in[2].ptr<T>(), w, count, dx, acc);
    else
      smooth_l1_backward_cpu<T>(p, dloss, c.in[1].ptr<T>(), c.in[2].ptr<T>(), w, count, dx, acc);
  });
}

// Checks [a, b, weights?, count?] from input `base` on; returns the (R,C) shape of a.
void infer_loss_inputs(const Graph& g, const Node& n, int kind, size_t base) {
  const ValueId a = n.inputs[base], b = n.inputs[base + 1];
  const Shape& s = shp(g, a);
  need(s.rank() == 2 && is_float(dt(g, a)), g, n, "logits/predictions must be a float (R,C) matrix");
  if (kind == 0)
    need(dt(g, b) == DType::I32 && shp(g, b) == Shape({s[0]}), g, n, "labels must be int32 (", s[0], ")");
  else
    need(dt(g, b) == dt(g, a) && shp(g, b) == s, g, n, "targets must match the predictions ", s.str());
  LossSlots sl = loss_slots(g, n, base + 2);
  if (sl.weights >= 0)
    need(dt(g, n.inputs[size_t(sl.weights)]) == dt(g, a) && shp(g, n.inputs[size_t(sl.weights)]) == Shape({s[0]}), g,
         n, "weights must be (", s[0], ") of the logits' dtype");
  if (sl.count >= 0) need(shp(g, n.inputs[size_t(sl.count)]).numel() == 1, g, n, "count must be a single int32");
  LossParams p = loss_params(n, s);
  validated(g, n, [&] { validate_loss(kLossName[kind], p); });
}

size_t loss_workspace(const Graph& g, const Node& n, Device d, size_t base) {
  if (d != Device::CUDA) return 0;
  const int64_t R = g.value(n.inputs[base]).shape[0];
#if CTDET_WITH_CUDA
  return loss_workspace_bytes_cuda(R);  // the kernel's own formula; needs no device
#else
  return (size_t(R + 1) * sizeof(float) + 255) / 256 * 256;  // same formula (CUDA-less build: never run)
#endif
}

void register_loss(OpRegistry& r, int kind) {
  const std::string name = kLossName[kind];
  {
    OpDef d;
    d.name = name;
    d.infer = [kind](const Graph& g, const Node& n) {
      need_inputs(g, n, 2, 4, kind == 0 ? "logits, labels [, weights] [, count]"
                                        : "predictions, targets [, weights] [, count]");
      infer_loss_inputs(g, n, kind, 0);
      return one(Shape{1}, dt(g, n.inputs[0]));
    };
#if !CTDET_INFERENCE_ONLY
    d.grad = [name](GradBuilder& b) {
      std::vector<ValueId> ins = {b.grad_out()};
      for (ValueId v : b.fwd().inputs) ins.push_back(v);
      b.contribute(0, name + "_grad", ins, b.fwd().attrs);
    };
#endif
    d.workspace = [](const Graph& g, const Node& n, Device dev, size_t) { return loss_workspace(g, n, dev, 0); };
    d.cpu = [kind](OpContext& c) { loss_cpu(c, kind); };
#if CTDET_WITH_CUDA
    d.cuda = [kind](OpContext& c) { elem_loss_cuda(c, kind); };
#else
    d.cuda = cuda_not_built;
#endif
    r.add(d);
  }
#if !CTDET_INFERENCE_ONLY
  {
    OpDef d;
    d.name = name + "_grad";
    d.infer = [kind](const Graph& g, const Node& n) {
      need_inputs(g, n, 3, 5, "dloss, <the forward inputs>");
      need(shp(g, n.inputs[0]).numel() == 1 && dt(g, n.inputs[0]) == dt(g, n.inputs[1]), g, n,
           "dloss must be a scalar of the logits' dtype");
      infer_loss_inputs(g, n, kind, 1);
      return one(shp(g, n.inputs[1]), dt(g, n.inputs[1]));
    };
    d.workspace = [](const Graph& g, const Node& n, Device dev, size_t) { return loss_workspace(g, n, dev, 1); };
    d.cpu = [kind](OpContext& c) { loss_grad_cpu(c, kind); };
#if CTDET_WITH_CUDA
    d.cuda = [kind](OpContext& c) { elem_loss_grad_cuda(c, kind); };
#else
    d.cuda = cuda_not_built;
#endif
    r.add(d);
  }
#endif
}

}  // namespace

void register_elem_ops(OpRegistry& r) {
  {
    OpDef d;
    d.name = "relu6";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 1, 1, "x");
      need_float(g, n, 0);
      return one(shp(g, n.inputs[0]), dt(g, n.inputs[0]));
    };
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) { b.contribute(0, "relu6_grad", {b.grad_out(), b.out()}); };
#endif
    d.inplace = true;
    d.cheap = true;
    d.cpu = relu6_cpu;
    d.cuda = CTDET_CUDA_FN(elem_relu6_cuda);
    r.add(d);
  }
#if !CTDET_INFERENCE_ONLY
  {
    OpDef d;
    d.name = "relu6_grad";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 2, 2, "dy, y");
      need_float(g, n, 1);
      need(shp(g, n.inputs[0]) == shp(g, n.inputs[1]), g, n, "dy and y must have the same shape");
      return one(shp(g, n.inputs[0]), dt(g, n.inputs[0]));
    };
    d.inplace = true;
    d.cpu = relu6_grad_cpu;
    d.cuda = CTDET_CUDA_FN(elem_relu6_grad_cuda);
    r.add(d);
  }
#endif
  {
    OpDef d;
    d.name = "bn_scale_shift";
    d.infer = [](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      need_inputs(g, n, 4, 4, "gamma, beta, mean, var (C)");
      for (size_t i = 0; i < 4; ++i) need_float(g, n, i);
      const Shape& c = shp(g, n.inputs[0]);
      need(c.rank() == 1, g, n, "gamma must be (C)");
      for (size_t i = 1; i < 4; ++i) need(shp(g, n.inputs[i]) == c, g, n, "beta, mean and var must be ", c.str());
      need(node_attrs<BatchNormParams>(n).eps > 0, g, n, "eps must be positive");
      return {{c, dt(g, n.inputs[0])}, {c, dt(g, n.inputs[0])}};
    };
    // Frozen statistics only: the builders use batchnorm_frozen when gamma/beta are trained.
    d.cpu = bn_scale_shift_cpu;
    d.cuda = CTDET_CUDA_FN(elem_bn_scale_shift_cuda);
    r.add(d);
  }
  {
    OpDef d;
    d.name = "bn_add_relu";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 3, 4, "x (N,C,...), scale (C), shift (C) [, residual like x]");
      for (size_t i = 0; i < n.inputs.size(); ++i) need_float(g, n, i);
      const Shape& x = shp(g, n.inputs[0]);
      need(x.rank() >= 2, g, n, "x must be (N,C,...)");
      need(shp(g, n.inputs[1]) == Shape({x[1]}) && shp(g, n.inputs[2]) == Shape({x[1]}), g, n,
           "scale and shift must be (", x[1], ")");
      if (n.inputs.size() == 4) need(shp(g, n.inputs[3]) == x, g, n, "the residual must match x ", x.str());
      return one(x, dt(g, n.inputs[0]));
    };
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) {
      // Frozen BN: scale and shift get no gradient. g = dy * (y > 0); dx = g * scale, dr = g.
      // With a residual that wants a gradient too, one pass writes both (bn_add_relu_grad).
      ValueId dy = b.grad_out();
      const bool residual = b.fwd().inputs.size() > 3 && b.needs_grad(3);
      if (residual && b.needs_grad(0) && b.in(0) != b.in(3)) {
        // dr first: the in-place rule gives output 0 dy's buffer, and dr (the block input's gradient, which lives on
        // to the block's first convolution) is the long-lived one, as when relu_grad wrote it in dy's place.
        b.contribute_many({3, 0}, "bn_add_relu_grad", {dy, b.out(), b.in(1)});
        return;
      }
      b.contribute(0, "bn_add_relu_grad_x", {dy, b.out(), b.in(1)});
      if (residual) b.contribute(3, "relu_grad", {dy, b.out()});
    };
#endif
    d.inplace = true;
    d.cheap = true;  // frozen BN + ReLU: recomputed in backward when the memory budget asks (DESIGN.md)
    d.cpu = bn_add_relu_cpu;
    d.cuda = CTDET_CUDA_FN(elem_bn_add_relu_cuda);
    r.add(d);
  }
#if !CTDET_INFERENCE_ONLY
  {
    OpDef d;
    d.name = "bn_add_relu_grad_x";
    d.infer = [](const Graph& g, const Node& n) { return one(bn_add_relu_grad_shape(g, n), dt(g, n.inputs[0])); };
    d.inplace = true;
    d.cpu = bn_add_relu_grad_x_cpu;
    d.cuda = CTDET_CUDA_FN(elem_bn_add_relu_grad_x_cuda);
    r.add(d);
  }
  {
    OpDef d;
    d.name = "bn_add_relu_grad";
    d.infer = [](const Graph& g, const Node& n) {
      const Shape dy = bn_add_relu_grad_shape(g, n);
      return std::vector<OutputDesc>{{dy, dt(g, n.inputs[0])}, {dy, dt(g, n.inputs[0])}};
    };
    d.inplace = true;  // dr may take dy's buffer: each element reads dy before writing dr and dx
    d.cpu = bn_add_relu_grad_cpu;
    d.cuda = CTDET_CUDA_FN(elem_bn_add_relu_grad_cuda);
    r.add(d);
  }
#endif
  {
    OpDef d;
    d.name = "concat";
    d.infer = [](const Graph& g, const Node& n) {
      need(!n.inputs.empty(), g, n, "needs at least one input");
      const Shape& x0 = shp(g, n.inputs[0]);
      need(x0.rank() >= 2, g, n, "inputs must be (N,C,...)");
      int64_t C = 0;
      for (size_t i = 0; i < n.inputs.size(); ++i) {
        need_float(g, n, i);
        const Shape& xi = shp(g, n.inputs[i]);
        need(xi.rank() == x0.rank() && with_dim(xi, 1, 0) == with_dim(x0, 1, 0), g, n, "input ", i,
             " differs from input 0 outside dimension 1");
        C += xi[1];
      }
      return one(with_dim(x0, 1, C), dt(g, n.inputs[0]));
    };
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) {
      ValueId dy = b.grad_out();
      int64_t off = 0;
      for (size_t i = 0; i < b.fwd().inputs.size(); ++i) {
        const int64_t Ci = b.graph().value(b.in(i)).shape[1];
        b.contribute(i, "slice", {dy}, SliceAttrs{off, Ci});
        off += Ci;
      }
    };
#endif
    d.cpu = concat_cpu;
    d.cuda = CTDET_CUDA_FN(elem_concat_cuda);
    r.add(d);
  }
  {
    OpDef d;
    d.name = "slice";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 1, 1, "x (N,C,...)");
      need_float(g, n, 0);
      const SliceAttrs& a = node_attrs<SliceAttrs>(n);
      const Shape& x = shp(g, n.inputs[0]);
      need(x.rank() >= 2, g, n, "x must be (N,C,...)");
      need(a.c0 >= 0 && a.count > 0 && a.c0 + a.count <= x[1], g, n, "channels [", a.c0, ", ", a.c0 + a.count,
           ") are not inside [0, ", x[1], ")");
      return one(with_dim(x, 1, a.count), dt(g, n.inputs[0]));
    };
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) {
      const SliceAttrs& a = std::any_cast<const SliceAttrs&>(b.fwd().attrs);
      b.contribute(0, "slice_grad", {b.grad_out()}, SliceGradAttrs{a.c0, a.count, b.graph().value(b.in(0)).shape});
    };
#endif
    d.cpu = slice_cpu;
    d.cuda = CTDET_CUDA_FN(elem_slice_cuda);
    r.add(d);
  }
#if !CTDET_INFERENCE_ONLY
  {
    OpDef d;
    d.name = "slice_grad";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 1, 1, "dy");
      const SliceGradAttrs& a = node_attrs<SliceGradAttrs>(n);
      need(a.x_shape.rank() >= 2 && a.c0 >= 0 && a.count > 0 && a.c0 + a.count <= a.x_shape[1] &&
               shp(g, n.inputs[0]) == with_dim(a.x_shape, 1, a.count),
           g, n, "dy does not fit channels [", a.c0, ", ", a.c0 + a.count, ") of ", a.x_shape.str());
      return one(a.x_shape, dt(g, n.inputs[0]));
    };
    d.cpu = slice_grad_cpu;
    d.cuda = CTDET_CUDA_FN(elem_slice_grad_cuda);
    r.add(d);
  }
#endif
  {
    OpDef d;
    d.name = "gather_rows";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 2, 2, "x (M,...), idx (R) int32");
      need_float(g, n, 0);
      need_i32(g, n, 1);
      need(shp(g, n.inputs[1]).rank() == 1, g, n, "idx must be a vector (R)");
      return one(with_dim(shp(g, n.inputs[0]), 0, shp(g, n.inputs[1])[0]), dt(g, n.inputs[0]));
    };
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) {
      b.contribute(0, "gather_rows_grad", {b.grad_out(), b.in(1)}, InputShapeAttrs{b.graph().value(b.in(0)).shape});
    };
#endif
    d.cpu = gather_rows_cpu;
    d.cuda = CTDET_CUDA_FN(elem_gather_rows_cuda);
    r.add(d);
  }
#if !CTDET_INFERENCE_ONLY
  {
    OpDef d;
    d.name = "gather_rows_grad";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 2, 2, "dy (R,...), idx (R) int32");
      need_i32(g, n, 1);
      const Shape& xs = node_attrs<InputShapeAttrs>(n).x_shape;
      need(xs.rank() >= 1 && shp(g, n.inputs[1]).rank() == 1 &&
               shp(g, n.inputs[0]) == with_dim(xs, 0, shp(g, n.inputs[1])[0]),
           g, n, "dy must be x's shape ", xs.str(), " with R rows");
      return one(xs, dt(g, n.inputs[0]));
    };
    d.cpu = gather_rows_grad_cpu;
    d.cuda = CTDET_CUDA_FN(elem_gather_rows_grad_cuda);
    r.add(d);
  }
#endif
  {
    OpDef d;
    d.name = "pool2d";
    d.infer = [](const Graph& g, const Node& n) { return one(pool2d_out_shape(g, n), dt(g, n.inputs[0])); };
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) {
      Pool2dParams p = pool2d_params(std::any_cast<const Pool2dParams&>(b.fwd().attrs), b.graph().value(b.in(0)).shape);
      if (p.kind == PoolKind::Max) b.contribute(0, "pool2d_grad", {b.grad_out(), b.in(0)}, p);
      else b.contribute(0, "pool2d_grad", {b.grad_out()}, p);  // average pooling does not keep x alive
    };
#endif
    d.cpu = pool2d_cpu;
    d.cuda = CTDET_CUDA_FN(elem_pool2d_cuda);
    r.add(d);
  }
#if !CTDET_INFERENCE_ONLY
  {
    OpDef d;
    d.name = "pool2d_grad";
    d.infer = [](const Graph& g, const Node& n) {
      const Pool2dParams& p = node_attrs<Pool2dParams>(n);
      need_inputs(g, n, p.kind == PoolKind::Max ? 2 : 1, 2,
                  p.kind == PoolKind::Max ? "dy, x (max pooling)" : "dy [, x]");
      PoolGeom geo{};
      validated(g, n, [&] { geo = pool2d_geometry(p); });
      need(shp(g, n.inputs[0]) == Shape({p.N, p.C, geo.P, geo.Q}), g, n, "dy must be (", p.N, ",", p.C, ",", geo.P,
           ",", geo.Q, ")");
      if (n.inputs.size() > 1) {
        need_float(g, n, 1);
        need(shp(g, n.inputs[1]) == Shape({p.N, p.C, p.H, p.W}), g, n, "x must be (", p.N, ",", p.C, ",", p.H, ",",
             p.W, ")");
      }
      return one(Shape{p.N, p.C, p.H, p.W}, dt(g, n.inputs[0]));
    };
    // CUDA max pool: the argmax buffer of the two-pass backward (kernels/pool.h); the CPU scatters and needs none.
    d.workspace = [](const Graph&, const Node& n, Device dev, size_t) -> size_t {
      return dev == Device::CUDA ? pool2d_backward_cuda_workspace_bytes(node_attrs<Pool2dParams>(n)) : 0;
    };
    d.cpu = pool2d_grad_cpu;
    d.cuda = CTDET_CUDA_FN(elem_pool2d_grad_cuda);
    r.add(d);
  }
#endif
  {
    OpDef d;
    d.name = "max_pool_argmax";
    d.infer = [](const Graph& g, const Node& n) {
      const Shape y = pool2d_out_shape(g, n);
      const Shape& x = shp(g, n.inputs[0]);
      need(node_attrs<Pool2dParams>(n).kind == PoolKind::Max, g, n, "the pool must be a max pool");
      need(x[2] * x[3] <= int64_t(INT32_MAX), g, n, "an input plane of ", x[2], "x", x[3],
           " cells does not fit int32 argmax indices");
      return std::vector<OutputDesc>{{y, dt(g, n.inputs[0])}, {y, DType::I32}};
    };
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) {
      Pool2dParams p = pool2d_params(std::any_cast<const Pool2dParams&>(b.fwd().attrs), b.graph().value(b.in(0)).shape);
      b.contribute(0, "max_pool_argmax_grad", {b.grad_out(0), b.out(1)}, p);
    };
#endif
    d.cpu = max_pool_argmax_cpu;
    d.cuda = CTDET_CUDA_FN(elem_max_pool_argmax_cuda);
    r.add(d);
  }
#if !CTDET_INFERENCE_ONLY
  {
    OpDef d;
    d.name = "max_pool_argmax_grad";
    d.infer = [](const Graph& g, const Node& n) {
      const Pool2dParams& p = node_attrs<Pool2dParams>(n);
      need_inputs(g, n, 2, 2, "dy, arg (N,C,P,Q)");
      need_float(g, n, 0);
      need(p.kind == PoolKind::Max, g, n, "the pool must be a max pool");
      PoolGeom geo{};
      validated(g, n, [&] { geo = pool2d_geometry(p); });
      const Shape out{p.N, p.C, geo.P, geo.Q};
      need(shp(g, n.inputs[0]) == out, g, n, "dy must be (", p.N, ",", p.C, ",", geo.P, ",", geo.Q, ")");
      need(shp(g, n.inputs[1]) == out && dt(g, n.inputs[1]) == DType::I32, g, n, "arg must be i32 (", p.N, ",", p.C,
           ",", geo.P, ",", geo.Q, ")");
      return one(Shape{p.N, p.C, p.H, p.W}, dt(g, n.inputs[0]));
    };
    d.cpu = max_pool_argmax_grad_cpu;
    d.cuda = CTDET_CUDA_FN(elem_max_pool_argmax_grad_cuda);
    r.add(d);
  }
#endif
  {
    OpDef d;
    d.name = "global_avg_pool";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 1, 1, "x (N,C,H,W)");
      need_float(g, n, 0);
      const Shape& x = shp(g, n.inputs[0]);
      need(x.rank() >= 3, g, n, "x must be (N,C,H,W)");
      return one(Shape{x[0], x[1]}, dt(g, n.inputs[0]));
    };
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) {
      b.contribute(0, "global_avg_pool_grad", {b.grad_out()}, InputShapeAttrs{b.graph().value(b.in(0)).shape});
    };
#endif
    d.cpu = gap_cpu;
    d.cuda = CTDET_CUDA_FN(elem_gap_cuda);
    r.add(d);
  }
#if !CTDET_INFERENCE_ONLY
  {
    OpDef d;
    d.name = "global_avg_pool_grad";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 1, 1, "dy (N,C)");
      const Shape& xs = node_attrs<InputShapeAttrs>(n).x_shape;
      need(xs.rank() >= 3 && shp(g, n.inputs[0]) == Shape({xs[0], xs[1]}), g, n, "dy must be (N,C) of x ",
           xs.str());
      return one(xs, dt(g, n.inputs[0]));
    };
    d.cpu = gap_grad_cpu;
    d.cuda = CTDET_CUDA_FN(elem_gap_grad_cuda);
    r.add(d);
  }
#endif
  for (int kind = 0; kind < 3; ++kind) register_loss(r, kind);
}

}  // namespace ctdet
