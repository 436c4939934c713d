// Attributes of the graph ops in nn/ops_elem.cpp and nn/ops_det.cpp that have no params struct of their own
// in kernels/<op>.h. Where a kernel params struct exists it IS the node's attrs:
//   pool2d, pool2d_grad                 Pool2dParams      (kernels/pool.h)
//   softmax_ce, sigmoid_ce, smooth_l1   LossParams        (kernels/loss.h; scale, delta used)
//   crop_and_resize(_grad)              CropAndResizeParams (kernels/crop_and_resize.h)
//   roi_align(_grad)                    RoiAlignParams    (kernels/roi_align.h)
//   box_encode, box_decode              BoxCoderParams    (kernels/box_math.h)
//   nms                                 NmsParams         (kernels/boxes.h)
//   balanced_sample                     SamplerParams     (kernels/boxes.h)
// Shape fields of those structs (N, C, H, W, R ...) are IGNORED on forward nodes: the run functions fill
// them from the input tensors. Gradient nodes built by the ops' grad rules carry the forward input's shape
// in them (that is how a "*_grad" node knows its output shape).
// The "params from tensors" resolvers at the end are shared by the CPU run functions (ops_*.cpp) and the
// CUDA ones (ops_*.cu), so both devices hand the kernels the same geometry.
#pragma once
#include <cstdint>
#include <typeinfo>

#include "kernels/boxes.h"
#include "kernels/crop_and_resize.h"
#include "kernels/elementwise.h"
#include "kernels/loss.h"
#include "kernels/pool.h"
#include "kernels/roi_align.h"
#include "nn/op_registry.h"

namespace ctdet {

// "slice": y = x[:, c0 : c0+count, ...] along dimension 1 of a rank >= 2 value.
struct SliceAttrs {
  int64_t c0 = 0, count = 0;
};
// "slice_grad": dx (x_shape) = dy placed at channels [c0, c0+count), zeros elsewhere (or left as is when
// the node accumulates).
struct SliceGradAttrs {
  int64_t c0 = 0, count = 0;
  Shape x_shape;
};
// Gradient nodes that only need the forward input's shape: "gather_rows_grad", "global_avg_pool_grad".
struct InputShapeAttrs {
  Shape x_shape;
};
// "anchors": the (Hf*Wf*A, 4) grid of spec §4.1 for a feature map of Hf x Wf.
struct AnchorsAttrs {
  AnchorParams params;
  int64_t Hf = 0, Wf = 0;
};
// "clip_boxes": clip to window x1, y1, x2, y2 (e.g. {0, 0, W_img, H_img}).
struct ClipBoxesAttrs {
  double window[4] = {0, 0, 0, 0};
};
// "topk": the k highest scores (stable, ties by lower index); entries past n are -1 / 0.
struct TopkAttrs {
  int64_t k = 1;
};

// ---- helpers shared by the op files ---------------------------------------------------------------
// The node's attrs as A; throws naming the node when they are missing or of another type.
template <typename A> const A& node_attrs(const Node& n) {
  const A* a = std::any_cast<A>(&n.attrs);
  CTDET_CHECK(a != nullptr, "node '", n.name, "' (", n.op, ") needs attrs of type ", typeid(A).name(),
              n.attrs.has_value() ? ", got another type" : ", got none");
  return *a;
}

// Product of the dimensions from `from` on (1 for none).
inline int64_t dims_from(const Shape& s, int from) {
  int64_t p = 1;
  for (int i = from; i < s.rank(); ++i) p *= s[i];
  return p;
}

// Loss nodes: inputs [dloss,] a, b [, weights (R) float] [, count (1) int32]. Slot indices or -1.
struct LossSlots {
  int weights = -1, count = -1;
};
inline LossSlots loss_slots(const Graph& g, const Node& n, size_t first_optional) {
  LossSlots s;
  for (size_t i = first_optional; i < n.inputs.size(); ++i) {
    DType t = g.value(n.inputs[i]).dtype;
    if (t == DType::I32 && s.count < 0) s.count = int(i);
    else if ((t == DType::F32 || t == DType::F64) && s.weights < 0 && s.count < 0) s.weights = int(i);
    else CTDET_FAIL("node '", n.name, "' (", n.op, "): optional inputs are [weights (R) float] [count (1) int32] "
                    "in that order; input ", i, " is ", g.describe(n.inputs[i]));
  }
  return s;
}
// LossParams of a loss node whose logits / predictions have shape (R, C...).
inline LossParams loss_params(const Node& n, const Shape& logits) {
  LossParams p = n.attrs.has_value() ? node_attrs<LossParams>(n) : LossParams{};
  p.R = logits[0];
  p.C = dims_from(logits, 1);
  return p;
}

inline BnAddReluParams bn_add_relu_params(const Shape& x) {
  BnAddReluParams p;
  p.N = x[0];
  p.C = x[1];
  p.HW = dims_from(x, 2);
  return p;
}
inline SliceParams slice_params(const Shape& x, int64_t c0, int64_t count) {
  SliceParams p;
  p.N = x[0];
  p.C = x[1];
  p.HW = dims_from(x, 2);
  p.c0 = c0;
  p.count = count;
  return p;
}
// Slice as a concat backward over the pieces [0,c0), [c0,c0+count), [c0+count,C): piece 1 is the output.
// (Lets a slice honour the accumulate flag when it is a gradient contribution of "concat".)
inline ConcatParams slice_as_concat(const SliceParams& s) {
  ConcatParams p;
  p.N = s.N;
  p.HW = s.HW;
  p.channels = {s.c0, s.count, s.C - s.c0 - s.count};
  return p;
}
inline GatherRowsParams gather_rows_params(const Shape& x, int64_t rows) {
  GatherRowsParams p;
  p.M = x[0];
  p.R = rows;
  p.D = dims_from(x, 1);
  return p;
}
inline Pool2dParams pool2d_params(const Pool2dParams& attrs, const Shape& x) {
  Pool2dParams p = attrs;
  p.N = x[0];
  p.C = x[1];
  p.H = x[2];
  p.W = x[3];
  return p;
}
inline GapParams gap_params(const Shape& x) {
  GapParams p;
  p.N = x[0];
  p.C = x[1];
  p.HW = dims_from(x, 2);
  return p;
}
inline CropAndResizeParams crop_params(const CropAndResizeParams& attrs, const Shape& x, int64_t R) {
  CropAndResizeParams p = attrs;
  p.N = x[0];
  p.C = x[1];
  p.H = x[2];
  p.W = x[3];
  p.R = R;
  return p;
}
inline RoiAlignParams roi_params(const RoiAlignParams& attrs, const Shape& x, int64_t R) {
  RoiAlignParams p = attrs;
  p.N = x[0];
  p.C = x[1];
  p.H = x[2];
  p.W = x[3];
  p.R = R;
  return p;
}

// ---- inference / dispatch helpers of the op files (ops_elem.cpp, ops_det.cpp) ------------------------------
namespace op_util {
inline const Shape& shp(const Graph& g, ValueId v) { return g.value(v).shape; }
inline DType dt(const Graph& g, ValueId v) { return g.value(v).dtype; }
inline bool is_float(DType t) { return t == DType::F32 || t == DType::F64; }

// Throws "<op>: <what>: node 'name' (op) with inputs 'a' (..) f32, ..." unless cond.
template <typename... A> void need(bool cond, const Graph& g, const Node& n, const A&... what) {
  if (!cond) CTDET_FAIL(n.op, ": ", str(what...), ": ", describe_inputs(g, n));
}
inline void need_inputs(const Graph& g, const Node& n, size_t lo, size_t hi, const char* signature) {
  need(n.inputs.size() >= lo && n.inputs.size() <= hi, g, n, "takes ", signature, ", got ", n.inputs.size(),
       " inputs");
}
// Input i is floating point with input 0's dtype.
inline void need_float(const Graph& g, const Node& n, size_t i) {
  need(is_float(dt(g, n.inputs[i])) && dt(g, n.inputs[i]) == dt(g, n.inputs[0]), g, n, "input ", i,
       " must be f32/f64 like input 0");
}
inline void need_i32(const Graph& g, const Node& n, size_t i) {
  need(dt(g, n.inputs[i]) == DType::I32, g, n, "input ", i, " must be int32");
}
// Runs a kernel validator at build time; its message gets the node and its inputs appended.
template <typename F> void validated(const Graph& g, const Node& n, F&& f) {
  try {
    f();
  } catch (const Error& e) {
    CTDET_FAIL(e.what(), " (", describe_inputs(g, n), ")");
  }
}
inline std::vector<OutputDesc> one(const Shape& s, DType t) { return {{s, t}}; }
inline Shape with_dim(Shape s, int i, int64_t v) {
  s.dims[size_t(i)] = v;
  return s;
}

template <typename F> void dispatch_float(const OpContext& c, DType t, F&& f) {
  if (t == DType::F32) f(float{});
  else if (t == DType::F64) f(double{});
  else CTDET_FAIL("node '", c.node->name, "' (", c.node->op, "): unsupported dtype ", dtype_name(t));
}
}  // namespace op_util

// Runs the statements with T = float or double by the node's output dtype.
#define CTDET_FLOAT_OP(c, ...) \
  ::ctdet::op_util::dispatch_float(c, (c).out[0].dtype, [&](auto z_) { using T = decltype(z_); __VA_ARGS__ })

// Forward kernels that cannot add into their output: a node asking for it is an error, not a silent
// overwrite.
inline void require_overwrite(const OpContext& c) {
  for (size_t i = 0; i < c.node->accumulate.size(); ++i)
    CTDET_CHECK(!c.accumulate(i), "node '", c.node->name, "' (", c.node->op, ") cannot accumulate into output ", i);
}

}  // namespace ctdet
