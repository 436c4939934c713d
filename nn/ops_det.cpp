// Graph ops over the ROI crops (kernels/crop_and_resize.h, kernels/roi_align.h) and the detection bookkeeping
// kernels (kernels/boxes.h). The crops are differentiable into the features; the bookkeeping nodes are not
// (their outputs never require a gradient, so gradient stops there, as in the TF Object Detection API) and
// have FIXED-SIZE outputs plus a valid count (DESIGN.md: static shapes, e.g. proposals padded to 300).
// CUDA run functions (f32) are in ops_det.cu.
//
// Op kinds (inputs -> outputs; attrs):
//   crop_and_resize       features (N,C,H,W), boxes (R,4) TF-normalised y1,x1,y2,x2, box_index (R) i32
//                         -> crops (R,C,crop_h,crop_w)                     ; CropAndResizeParams
//   crop_and_resize_grad  dy, boxes, box_index -> d features (N,C,H,W)     ; CropAndResizeParams with N,C,H,W
//   roi_align             features (N,C,H,W), rois (R,5) [b,x1,y1,x2,y2] -> (R,C,pooled_h,pooled_w) ; RoiAlignParams
//   roi_align_grad        dy, rois -> d features (N,C,H,W)                 ; RoiAlignParams with N,C,H,W
//   anchors               (none) -> anchors (Hf*Wf*A,4) in the graph dtype ; AnchorsAttrs
//   box_decode            codes (n,4) or (n,k,4), anchors (n,4) -> boxes like codes ; BoxCoderParams (optional)
//   box_encode            boxes (n,4), anchors (n,4) -> codes (n,4)        ; BoxCoderParams (optional)
//   clip_boxes            boxes (n,4) -> boxes (n,4)                       ; ClipBoxesAttrs
//   box_iou               a (n,4), b (m,4) -> iou (n,m)                    ; none
//   nms                   boxes (n,4), scores (n) -> keep (max_output) i32 padded -1, count (1) i32 ; NmsParams
//   topk                  scores (n) -> indices (k) i32 padded -1, values (k) padded 0 ; TopkAttrs
//   balanced_sample       labels (n) i32 {1,0,-1} -> selected (batch_size) i32 padded -1,
//                         counts (2) i32 {num_pos, num_neg}                ; SamplerParams
//
// Workspaces (CUDA only; the CPU kernels need none from the plan): nms, topk and balanced_sample sort with
// CUB, whose scratch size is a query that needs a CUDA device. OpDef::workspace gets no CudaContext, so:
// when this build has CUDA and a device answers, the kernels' own *_workspace_bytes() are returned (exact);
// otherwise (planning for CUDA on a machine without a device, e.g. a report) a documented UPPER BOUND is
// returned: the kernels' carve-up formula with the CUB part replaced by cub_sort_bound() below.
#include <algorithm>

#include "nn/autograd.h"
#include "nn/op_attrs.h"
#include "nn/op_registry.h"

namespace ctdet {

#if CTDET_WITH_CUDA
void det_crop_and_resize_cuda(OpContext& c);
void det_crop_and_resize_grad_cuda(OpContext& c);
void det_roi_align_cuda(OpContext& c);
void det_roi_align_grad_cuda(OpContext& c);
void det_anchors_cuda(OpContext& c);
void det_box_decode_cuda(OpContext& c);
void det_box_encode_cuda(OpContext& c);
void det_clip_boxes_cuda(OpContext& c);
void det_box_iou_cuda(OpContext& c);
void det_nms_cuda(OpContext& c);
void det_topk_cuda(OpContext& c);
void det_balanced_sample_cuda(OpContext& c);
#endif

namespace {

using namespace op_util;


// Float ops whose first output is an index: dispatch on input 0's dtype instead.
#define CTDET_FLOAT_IN_OP(c, ...) \
  dispatch_float(c, (c).in[0].dtype, [&](auto z_) { using T = decltype(z_); __VA_ARGS__ })

BoxCoderParams coder_attrs(const Node& n) {
  return n.attrs.has_value() ? node_attrs<BoxCoderParams>(n) : BoxCoderParams{};
}
void need_boxes(const Graph& g, const Node& n, size_t i, int cols = 4) {
  const Shape& s = shp(g, n.inputs[i]);
  need(s.rank() == 2 && s[1] == cols && is_float(dt(g, n.inputs[i])), g, n, "input ", i, " must be float boxes (n,",
       cols, ")");
}

// ---- workspace bounds ------------------------------------------------------------------------------------
size_t align256(size_t b) { return (b + 255) / 256 * 256; }
// Upper bound on CUB DeviceRadixSort::SortPairs scratch for n (key, value) pairs: CUB allocates alternate key
// and value buffers (n*(key+val)), per-pass digit histograms and a decoupled look-back array of at most one
// 256-digit row of 4-byte counters per tile (tiles hold >= 256 items, so <= 4n bytes). Doubled and padded with
// 1 MiB for the fixed-size parts (histograms, tile counters, alignment) across CUB versions.
size_t cub_sort_bound(int64_t n, size_t key_bytes, size_t val_bytes) {
  return 2 * (size_t(n) * (key_bytes + val_bytes) + size_t(n) * 4) + (size_t(1) << 20);
}
// The carve-ups of kernels/cuda/boxes.cu (each piece 256-aligned) with cub_sort_bound for the CUB part.
size_t sort_pieces_bound(int64_t n) {
  return 3 * align256(size_t(n) * 4) + align256(cub_sort_bound(n, 4, 4));
}
size_t nms_ws_bound(int64_t n) {
  const size_t cb = size_t((n + 63) / 64);
  return sort_pieces_bound(n) + align256(size_t(n) * 4) + align256(size_t(n) * 16) + align256(size_t(n) * cb * 8) +
         align256(std::max<size_t>(cb, 1) * 8);
}
size_t topk_ws_bound(int64_t n) { return sort_pieces_bound(n) + align256(size_t(n) * 4); }
size_t sampler_ws_bound(int64_t n) {
  return 3 * align256(size_t(n) * 8) + 3 * align256(size_t(n) * 4) + align256(8) + align256(cub_sort_bound(n, 8, 4));
}

// ---- crop_and_resize ---------------------------------------------------------------------------------------
void crop_cpu(OpContext& c) {
  require_overwrite(c);
  CropAndResizeParams p = crop_params(c.attrs<CropAndResizeParams>(), c.in[0].shape, c.in[1].shape[0]);
  CTDET_FLOAT_OP(c, crop_and_resize_forward_cpu<T>(p, c.in[0].ptr<T>(), c.in[1].ptr<T>(), c.in[2].ptr<int32_t>(),
                                                   c.out[0].ptr<T>()););
}
void crop_grad_cpu(OpContext& c) {
  CropAndResizeParams p = c.attrs<CropAndResizeParams>();
  p.R = c.in[1].shape[0];
  CTDET_FLOAT_OP(c, crop_and_resize_backward_cpu<T>(p, c.in[0].ptr<T>(), c.in[1].ptr<T>(), c.in[2].ptr<int32_t>(),
                                                    c.out[0].ptr<T>(), c.accumulate(0)););
}
// ---- roi_align -----------------------------------------------------------------------------------------------
void roi_cpu(OpContext& c) {
  require_overwrite(c);
  RoiAlignParams p = roi_params(c.attrs<RoiAlignParams>(), c.in[0].shape, c.in[1].shape[0]);
  CTDET_FLOAT_OP(c, roi_align_forward_cpu<T>(p, c.in[0].ptr<T>(), c.in[1].ptr<T>(), c.out[0].ptr<T>()););
}
void roi_grad_cpu(OpContext& c) {
  RoiAlignParams p = c.attrs<RoiAlignParams>();
  p.R = c.in[1].shape[0];
  CTDET_FLOAT_OP(c, roi_align_backward_cpu<T>(p, c.in[0].ptr<T>(), c.in[1].ptr<T>(), c.out[0].ptr<T>(),
                                              c.accumulate(0)););
}
// ---- boxes -----------------------------------------------------------------------------------------------------
void anchors_cpu(OpContext& c) {
  require_overwrite(c);
  const AnchorsAttrs& a = c.attrs<AnchorsAttrs>();
  CTDET_FLOAT_OP(c, generate_anchors_cpu<T>(a.params, a.Hf, a.Wf, c.out[0].ptr<T>()););
}
void decode_cpu(OpContext& c) {
  require_overwrite(c);
  const int64_t n = c.in[1].shape[0], k = c.in[0].numel() / (n * 4);
  CTDET_FLOAT_OP(c, box_decode_cpu<T>(coder_attrs(*c.node), n, k, c.in[0].ptr<T>(), c.in[1].ptr<T>(),
                                      c.out[0].ptr<T>()););
}
void encode_cpu(OpContext& c) {
  require_overwrite(c);
  CTDET_FLOAT_OP(c, box_encode_cpu<T>(coder_attrs(*c.node), c.in[0].shape[0], c.in[0].ptr<T>(), c.in[1].ptr<T>(),
                                      c.out[0].ptr<T>()););
}
void clip_cpu(OpContext& c) {
  require_overwrite(c);
  const ClipBoxesAttrs& a = c.attrs<ClipBoxesAttrs>();
  CTDET_FLOAT_OP(c, {
    const T window[4] = {T(a.window[0]), T(a.window[1]), T(a.window[2]), T(a.window[3])};
    clip_boxes_cpu<T>(c.in[0].shape[0], c.in[0].ptr<T>(), window, c.out[0].ptr<T>(), nullptr);
  });
}
void iou_cpu(OpContext& c) {
  require_overwrite(c);
  CTDET_FLOAT_OP(c, box_iou_cpu<T>(c.in[0].shape[0], c.in[1].shape[0], c.in[0].ptr<T>(), c.in[1].ptr<T>(),
                                   c.out[0].ptr<T>()););
}
void nms_cpu_op(OpContext& c) {
  require_overwrite(c);
  const NmsParams& p = c.attrs<NmsParams>();
  CTDET_FLOAT_IN_OP(c, {
    const int64_t kept = nms_cpu<T>(p, c.in[0].shape[0], c.in[0].ptr<T>(), c.in[1].ptr<T>(), c.out[0].ptr<int32_t>());
    c.out[1].ptr<int32_t>()[0] = int32_t(kept);
  });
}
void topk_cpu_op(OpContext& c) {
  require_overwrite(c);
  const TopkAttrs& a = c.attrs<TopkAttrs>();
  CTDET_FLOAT_IN_OP(c, topk_cpu<T>(c.in[0].numel(), c.in[0].ptr<T>(), a.k, c.out[0].ptr<int32_t>(),
                                   c.out[1].ptr<T>()););
}
void sample_cpu(OpContext& c) {
  require_overwrite(c);
  int64_t np = 0, nn = 0;
  balanced_sample_cpu(c.attrs<SamplerParams>(), c.in[0].numel(), c.in[0].ptr<int32_t>(), c.out[0].ptr<int32_t>(),
                      &np, &nn);
  int32_t* counts = c.out[1].ptr<int32_t>();
  counts[0] = int32_t(np);
  counts[1] = int32_t(nn);
}

// Shared checks of the crop ops: features (N,C,H,W) float, boxes (R,cols) of its dtype.
void need_crop_inputs(const Graph& g, const Node& n, size_t feat, size_t boxes, int cols) {
  need(shp(g, n.inputs[feat]).rank() == 4 && is_float(dt(g, n.inputs[feat])), g, n,
       "features must be float (N,C,H,W)");
  need_boxes(g, n, boxes, cols);
  need(dt(g, n.inputs[boxes]) == dt(g, n.inputs[feat]), g, n, "boxes must have the features' dtype");
}

}  // namespace

void register_det_ops(OpRegistry& r) {
  {
    OpDef d;
    d.name = "crop_and_resize";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 3, 3, "features (N,C,H,W), boxes (R,4) normalised y1,x1,y2,x2, box_index (R) int32");
      need_crop_inputs(g, n, 0, 1, 4);
      need_i32(g, n, 2);
      const int64_t R = shp(g, n.inputs[1])[0];
      need(shp(g, n.inputs[2]) == Shape({R}), g, n, "box_index must be (", R, ")");
      CropAndResizeParams p = crop_params(node_attrs<CropAndResizeParams>(n), shp(g, n.inputs[0]), R);
      validated(g, n, [&] { validate_crop_and_resize(p); });
      return one(Shape{R, p.C, p.crop_h, p.crop_w}, dt(g, n.inputs[0]));
    };
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) {  // into the features only
      CropAndResizeParams p = crop_params(std::any_cast<const CropAndResizeParams&>(b.fwd().attrs),
                                          b.graph().value(b.in(0)).shape, b.graph().value(b.in(1)).shape[0]);
      b.contribute(0, "crop_and_resize_grad", {b.grad_out(), b.in(1), b.in(2)}, p);
    };
#endif
    d.cpu = crop_cpu;
    d.cuda = CTDET_CUDA_FN(det_crop_and_resize_cuda);
    r.add(d);
  }
#if !CTDET_INFERENCE_ONLY
  {
    OpDef d;
    d.name = "crop_and_resize_grad";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 3, 3, "dy (R,C,crop_h,crop_w), boxes (R,4), box_index (R) int32");
      need_boxes(g, n, 1);
      need_i32(g, n, 2);
      CropAndResizeParams p = node_attrs<CropAndResizeParams>(n);
      p.R = shp(g, n.inputs[1])[0];
      validated(g, n, [&] { validate_crop_and_resize(p); });
      need(shp(g, n.inputs[0]) == Shape({p.R, p.C, p.crop_h, p.crop_w}) && shp(g, n.inputs[2]) == Shape({p.R}), g, n,
           "dy must be (", p.R, ",", p.C, ",", p.crop_h, ",", p.crop_w, ") and box_index (", p.R, ")");
      return one(Shape{p.N, p.C, p.H, p.W}, dt(g, n.inputs[0]));
    };
    d.cpu = crop_grad_cpu;
    d.cuda = CTDET_CUDA_FN(det_crop_and_resize_grad_cuda);
    r.add(d);
  }
#endif
  {
    OpDef d;
    d.name = "roi_align";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 2, 2, "features (N,C,H,W), rois (R,5) batch,x1,y1,x2,y2");
      need_crop_inputs(g, n, 0, 1, 5);
      RoiAlignParams p = roi_params(node_attrs<RoiAlignParams>(n), shp(g, n.inputs[0]), shp(g, n.inputs[1])[0]);
      validated(g, n, [&] { validate_roi_align(p); });
      return one(Shape{p.R, p.C, p.pooled_h, p.pooled_w}, dt(g, n.inputs[0]));
    };
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) {
      RoiAlignParams p = roi_params(std::any_cast<const RoiAlignParams&>(b.fwd().attrs),
                                    b.graph().value(b.in(0)).shape, b.graph().value(b.in(1)).shape[0]);
      b.contribute(0, "roi_align_grad", {b.grad_out(), b.in(1)}, p);
    };
#endif
    d.cpu = roi_cpu;
    d.cuda = CTDET_CUDA_FN(det_roi_align_cuda);
    r.add(d);
  }
#if !CTDET_INFERENCE_ONLY
  {
    OpDef d;
    d.name = "roi_align_grad";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 2, 2, "dy (R,C,pooled_h,pooled_w), rois (R,5)");
      need_boxes(g, n, 1, 5);
      RoiAlignParams p = node_attrs<RoiAlignParams>(n);
      p.R = shp(g, n.inputs[1])[0];
      validated(g, n, [&] { validate_roi_align(p); });
      need(shp(g, n.inputs[0]) == Shape({p.R, p.C, p.pooled_h, p.pooled_w}), g, n, "dy must be (", p.R, ",", p.C, ",",
           p.pooled_h, ",", p.pooled_w, ")");
      return one(Shape{p.N, p.C, p.H, p.W}, dt(g, n.inputs[0]));
    };
    d.cpu = roi_grad_cpu;
    d.cuda = CTDET_CUDA_FN(det_roi_align_grad_cuda);
    r.add(d);
  }
#endif
  {
    OpDef d;
    d.name = "anchors";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 0, 0, "no inputs");
      const AnchorsAttrs& a = node_attrs<AnchorsAttrs>(n);
      validated(g, n, [&] { validate_anchor_params(a.params); });
      need(a.Hf > 0 && a.Wf > 0, g, n, "feature map size must be positive, got ", a.Hf, "x", a.Wf);
      return one(Shape{anchor_count(a.params, a.Hf, a.Wf), 4}, g.dtype());
    };
    d.cpu = anchors_cpu;
    d.cuda = CTDET_CUDA_FN(det_anchors_cuda);
    r.add(d);
  }
  {
    OpDef d;
    d.name = "box_decode";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 2, 2, "codes (n,4) or (n,k,4), anchors (n,4)");
      need_boxes(g, n, 1);
      need_float(g, n, 1);
      const Shape& codes = shp(g, n.inputs[0]);
      const int64_t m = shp(g, n.inputs[1])[0];
      need((codes.rank() == 2 || codes.rank() == 3) && codes[0] == m && codes[codes.rank() - 1] == 4, g, n,
           "codes must be (", m, ",4) or (", m, ",k,4) for ", m, " anchors");
      BoxCoderParams p = coder_attrs(n);
      validated(g, n, [&] { validate_box_coder(p); });
      return one(codes, dt(g, n.inputs[0]));
    };
    d.cpu = decode_cpu;
    d.cuda = CTDET_CUDA_FN(det_box_decode_cuda);
    r.add(d);
  }
  {
    OpDef d;
    d.name = "box_encode";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 2, 2, "boxes (n,4), anchors (n,4)");
      need_boxes(g, n, 0);
      need_boxes(g, n, 1);
      need_float(g, n, 1);
      need(shp(g, n.inputs[0]) == shp(g, n.inputs[1]), g, n, "boxes and anchors must have the same shape");
      BoxCoderParams p = coder_attrs(n);
      validated(g, n, [&] { validate_box_coder(p); });
      return one(shp(g, n.inputs[0]), dt(g, n.inputs[0]));
    };
    d.cpu = encode_cpu;
    d.cuda = CTDET_CUDA_FN(det_box_encode_cuda);
    r.add(d);
  }
  {
    OpDef d;
    d.name = "clip_boxes";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 1, 1, "boxes (n,4)");
      need_boxes(g, n, 0);
      const ClipBoxesAttrs& a = node_attrs<ClipBoxesAttrs>(n);
      need(a.window[2] >= a.window[0] && a.window[3] >= a.window[1], g, n, "window (", a.window[0], ",", a.window[1],
           ",", a.window[2], ",", a.window[3], ") has x2 < x1 or y2 < y1");
      return one(shp(g, n.inputs[0]), dt(g, n.inputs[0]));
    };
    d.inplace = true;
    d.cpu = clip_cpu;
    d.cuda = CTDET_CUDA_FN(det_clip_boxes_cuda);
    r.add(d);
  }
  {
    OpDef d;
    d.name = "box_iou";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 2, 2, "a (n,4), b (m,4)");
      need_boxes(g, n, 0);
      need_boxes(g, n, 1);
      need_float(g, n, 1);
      return one(Shape{shp(g, n.inputs[0])[0], shp(g, n.inputs[1])[0]}, dt(g, n.inputs[0]));
    };
    d.cpu = iou_cpu;
    d.cuda = CTDET_CUDA_FN(det_box_iou_cuda);
    r.add(d);
  }
  {
    OpDef d;
    d.name = "nms";
    d.infer = [](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      need_inputs(g, n, 2, 2, "boxes (n,4), scores (n)");
      need_boxes(g, n, 0);
      need_float(g, n, 1);
      const int64_t m = shp(g, n.inputs[0])[0];
      need(shp(g, n.inputs[1]) == Shape({m}), g, n, "scores must be (", m, ")");
      const NmsParams& p = node_attrs<NmsParams>(n);
      validated(g, n, [&] { validate_nms(p, m); });
      need(p.max_output > 0, g, n, "max_output must be positive, got ", p.max_output);
      return {{Shape{p.max_output}, DType::I32}, {Shape{1}, DType::I32}};
    };
    d.workspace = [](const Graph& g, const Node& n, Device dev, size_t) -> size_t {
      if (dev != Device::CUDA) return 0;
      const int64_t m = g.value(n.inputs[0]).shape[0];
#if CTDET_WITH_CUDA
      if (cuda_device_available()) return nms_cuda_workspace_bytes(m);
#endif
      return nms_ws_bound(m);
    };
    d.cpu = nms_cpu_op;
    d.cuda = CTDET_CUDA_FN(det_nms_cuda);
    r.add(d);
  }
  {
    OpDef d;
    d.name = "topk";
    d.infer = [](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      need_inputs(g, n, 1, 1, "scores (n)");
      need(shp(g, n.inputs[0]).rank() == 1 && is_float(dt(g, n.inputs[0])), g, n, "scores must be a float vector");
      const TopkAttrs& a = node_attrs<TopkAttrs>(n);
      need(a.k > 0, g, n, "k must be positive, got ", a.k);
      return {{Shape{a.k}, DType::I32}, {Shape{a.k}, dt(g, n.inputs[0])}};
    };
    d.workspace = [](const Graph& g, const Node& n, Device dev, size_t) -> size_t {
      if (dev != Device::CUDA) return 0;
      const int64_t m = g.value(n.inputs[0]).shape[0];
#if CTDET_WITH_CUDA
      if (cuda_device_available()) return topk_cuda_workspace_bytes(m);
#endif
      return topk_ws_bound(m);
    };
    d.cpu = topk_cpu_op;
    d.cuda = CTDET_CUDA_FN(det_topk_cuda);
    r.add(d);
  }
  {
    OpDef d;
    d.name = "balanced_sample";
    d.infer = [](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      need_inputs(g, n, 1, 1, "labels (n) int32");
      need_i32(g, n, 0);
      need(shp(g, n.inputs[0]).rank() == 1, g, n, "labels must be a vector");
      const SamplerParams& p = node_attrs<SamplerParams>(n);
      validated(g, n, [&] { validate_sampler(p); });
      return {{Shape{p.batch_size}, DType::I32}, {Shape{2}, DType::I32}};
    };
    d.workspace = [](const Graph& g, const Node& n, Device dev, size_t) -> size_t {
      if (dev != Device::CUDA) return 0;
      const int64_t m = g.value(n.inputs[0]).shape[0];
#if CTDET_WITH_CUDA
      if (cuda_device_available()) return balanced_sample_cuda_workspace_bytes(m);
#endif
      return sampler_ws_bound(m);
    };
    d.cpu = sample_cpu;
    d.cuda = CTDET_CUDA_FN(det_balanced_sample_cuda);
    r.add(d);
  }
}

}  // namespace ctdet
