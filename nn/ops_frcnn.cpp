#include "nn/ops_frcnn.h"

#include <algorithm>
#include <cmath>

#include "nn/autograd.h"
#include "nn/device.h"
#include "nn/op_attrs.h"

namespace ctdet {

namespace {

using namespace op_util;

// ---- rows_from_nchw ------------------------------------------------------------------------------------
void rows_cpu(OpContext& c) {
  require_overwrite(c);
  const Shape& x = c.in[0].shape;
  const int64_t k = c.attrs<RowsAttrs>().k, A = x[1] / k, H = x[2], W = x[3], R = c.out[0].shape[0];
  CTDET_FLOAT_OP(c, {
    const T* src = c.in[0].ptr<T>();
    T* dst = c.out[0].ptr<T>();
    for (int64_t i = 0; i < R; ++i)
      for (int64_t j = 0; j < k; ++j) dst[i * k + j] = src[rows_src_index(i, j, k, A, H, W)];
  });
}
void rows_grad_cpu(OpContext& c) {
  const RowsAttrs& a = c.attrs<RowsAttrs>();
  const int64_t k = a.k, A = a.x_shape[1] / k, H = a.x_shape[2], W = a.x_shape[3], R = c.in[0].shape[0];
  const bool acc = c.accumulate(0);
  CTDET_FLOAT_OP(c, {
    const T* dy = c.in[0].ptr<T>();
    T* dx = c.out[0].ptr<T>();
    for (int64_t i = 0; i < R; ++i)
      for (int64_t j = 0; j < k; ++j) {
        T& d = dx[rows_src_index(i, j, k, A, H, W)];
        d = acc ? d + dy[i * k + j] : dy[i * k + j];
      }
  });
}

// ---- select_class_boxes --------------------------------------------------------------------------------
void select_cpu(OpContext& c) {
  require_overwrite(c);
  const int64_t R = c.in[0].shape[0], K = c.in[0].shape[1] / 4;
  const int32_t* lab = c.in[1].ptr<int32_t>();
  CTDET_FLOAT_OP(c, {
    const T* x = c.in[0].ptr<T>();
    T* y = c.out[0].ptr<T>();
    for (int64_t r = 0; r < R; ++r) {
      CTDET_CHECK(lab[r] >= -1 && lab[r] <= K, "select_class_boxes: node '", c.node->name, "' row ", r, " has label ",
                  lab[r], ", expected -1..", K);
      for (int j = 0; j < 4; ++j) y[4 * r + j] = lab[r] >= 1 ? x[r * 4 * K + 4 * (lab[r] - 1) + j] : T(0);
    }
  });
}
void select_grad_cpu(OpContext& c) {
  const int64_t R = c.in[0].shape[0], K = c.out[0].shape[1] / 4;
  const int32_t* lab = c.in[1].ptr<int32_t>();
  const bool acc = c.accumulate(0);
  CTDET_FLOAT_OP(c, {
    const T* dy = c.in[0].ptr<T>();
    T* dx = c.out[0].ptr<T>();
    for (int64_t r = 0; r < R; ++r)
      for (int64_t q = 0; q < 4 * K; ++q) {
        const bool hit = lab[r] >= 1 && q / 4 == lab[r] - 1;
        const T v = hit ? dy[4 * r + q % 4] : T(0);
        dx[r * 4 * K + q] = acc ? dx[r * 4 * K + q] + v : v;
      }
  });
}

uint64_t image_seed(int32_t seed, int64_t image, uint64_t stage) {
  return splitmix64_mix(uint64_t(uint32_t(seed)) * 0x9E3779B97F4A7C15ull + uint64_t(image) * 0x100000001B3ull + stage);
}

// Validates GT boxes of image n: count within G, finite, x2 >= x1, y2 >= y1.
template <typename T> void check_gt(const OpContext& c, int64_t n, int64_t count, int64_t G, const T* gt) {
  CTDET_CHECK(count >= 0 && count <= G, "node '", c.node->name, "': image ", n, " has gt_count ", count,
              " (the graph holds at most ", G, " boxes: raise model.max_gt_boxes)");
  for (int64_t j = 0; j < count; ++j) {
    const T* b = gt + 4 * j;
    bool ok = true;
    for (int k = 0; k < 4; ++k) ok = ok && std::isfinite(double(b[k]));
    CTDET_CHECK(ok && b[2] >= b[0] && b[3] >= b[1], "node '", c.node->name, "': image ", n, " ground-truth box ", j,
                " (", b[0], ",", b[1], ",", b[2], ",", b[3], ") is not a finite x1,y1,x2,y2 box");
  }
}

// Writes crop_boxes, roi_batch and roi5 for rows [n*P, (n+1)*P) from rois.
template <typename T>
void crop_outputs(int64_t n, int64_t P, const T* rois, double H, double W, T* crop, int32_t* batch, T* roi5) {
  to_crop_boxes_cpu(P, rois + 4 * n * P, H, W, crop + 4 * n * P);
  for (int64_t i = n * P; i < (n + 1) * P; ++i) {
    batch[i] = int32_t(n);
    roi5[5 * i] = T(n);
    for (int k = 0; k < 4; ++k) roi5[5 * i + 1 + k] = rois[4 * i + k];
  }
}

}  // namespace

namespace {
size_t a256(size_t n) { return (n + 255) / 256 * 256; }
}  // namespace

ProposalsWorkspace proposals_workspace_layout(int64_t M, int64_t P) {
  size_t nms = 0;
#if CTDET_WITH_CUDA
  if (cuda_device_available()) nms = nms_cuda_workspace_bytes(M);
#endif
  if (nms == 0) {  // bound (kernels/cuda/boxes.cu's carve-up with a generous CUB allowance), as nn/ops_det.cpp
    const size_t cb = size_t((M + 63) / 64);
    nms = 3 * a256(size_t(M) * 4) + a256(2 * (size_t(M) * 12) + (size_t(1) << 20)) + a256(size_t(M) * 4) +
          a256(size_t(M) * 16) + a256(size_t(M) * cb * 8) + a256(std::max<size_t>(cb, 1) * 8);
  }
  ProposalsWorkspace w;
  w.boxes = 0;
  w.scores = w.boxes + a256(size_t(M) * 16);
  w.keep = w.scores + a256(size_t(M) * 4);
  w.kept = w.keep + a256(size_t(P) * 4);
  w.nms = w.kept + a256(4);
  w.nms_bytes = nms;
  w.total = w.nms + a256(nms);
  return w;
}

size_t proposals_cuda_workspace_bytes(int64_t M, int64_t P) { return proposals_workspace_layout(M, P).total; }

void frcnn_rpn_targets_cpu(OpContext& c) {
  require_overwrite(c);
  const RpnTargetAttrs& a = c.attrs<RpnTargetAttrs>();
  const int64_t M = c.in[0].shape[0], N = c.in[1].shape[0], G = c.in[1].shape[1];
  const int32_t* counts = c.in[2].ptr<int32_t>();
  const int32_t seed = c.in[3].ptr<int32_t>()[0];
  dispatch_float(c, c.in[0].dtype, [&](auto z) {
    using T = decltype(z);
    const T* anchors = c.in[0].ptr<T>();
    const T* gt = c.in[1].ptr<T>();
    for (int64_t n = 0; n < N; ++n) {
      check_gt(c, n, counts[n], G, gt + 4 * G * n);
      rpn_targets_cpu(a.params, M, anchors, counts[n], gt + 4 * G * n, image_seed(seed, n, 1),
                      c.out[0].ptr<int32_t>() + n * M, c.out[1].ptr<T>() + 4 * n * M, c.out[2].ptr<T>() + n * M,
                      c.out[3].ptr<T>() + n * M, nullptr);
    }
  });
  c.out[4].ptr<int32_t>()[0] = 1;
}

void frcnn_proposals_cpu(OpContext& c) {
  require_overwrite(c);
  const ProposalAttrs& a = c.attrs<ProposalAttrs>();
  const int64_t M = c.in[2].shape[0], N = c.in[0].shape[0] / M, P = a.params.max_proposals;
  dispatch_float(c, c.in[0].dtype, [&](auto z) {
    using T = decltype(z);
    for (int64_t n = 0; n < N; ++n) {
      const int64_t cnt = proposals_cpu(a.params, M, c.in[0].ptr<T>() + 2 * n * M, c.in[1].ptr<T>() + 4 * n * M,
                                        c.in[2].ptr<T>(), c.out[0].ptr<T>() + 4 * n * P, static_cast<T*>(nullptr));
      c.out[4].ptr<int32_t>()[n] = int32_t(cnt);
      crop_outputs(n, P, c.out[0].ptr<T>(), a.image_h, a.image_w, c.out[1].ptr<T>(), c.out[2].ptr<int32_t>(),
                   c.out[3].ptr<T>());
    }
  });
}

void frcnn_box_targets_cpu(OpContext& c) {
  require_overwrite(c);
  const BoxTargetAttrs& a = c.attrs<BoxTargetAttrs>();
  const int64_t N = c.in[1].shape[0], P = c.in[0].shape[0] / N, G = c.in[2].shape[1], B = a.params.sampler.batch_size;
  const int32_t* roi_count = c.in[1].ptr<int32_t>();
  const int32_t* gt_labels = c.in[3].ptr<int32_t>();
  const int32_t* gt_count = c.in[4].ptr<int32_t>();
  const int32_t seed = c.in[5].ptr<int32_t>()[0];
  dispatch_float(c, c.in[0].dtype, [&](auto z) {
    using T = decltype(z);
    const T* gt = c.in[2].ptr<T>();
    for (int64_t n = 0; n < N; ++n) {
      check_gt(c, n, gt_count[n], G, gt + 4 * G * n);
      CTDET_CHECK(roi_count[n] >= 0 && roi_count[n] <= P, "node '", c.node->name, "': image ", n, " roi_count ",
                  roi_count[n], " outside [0, ", P, "]");
      box_targets_cpu(a.params, roi_count[n], c.in[0].ptr<T>() + 4 * n * P, gt_count[n], gt + 4 * G * n,
                      gt_labels + G * n, image_seed(seed, n, 2), c.out[0].ptr<T>() + 4 * n * B,
                      c.out[4].ptr<int32_t>() + n * B, c.out[5].ptr<T>() + n * B, c.out[6].ptr<T>() + 4 * n * B,
                      c.out[7].ptr<T>() + n * B);
      crop_outputs(n, B, c.out[0].ptr<T>(), a.image_h, a.image_w, c.out[1].ptr<T>(), c.out[2].ptr<int32_t>(),
                   c.out[3].ptr<T>());
    }
  });
  c.out[8].ptr<int32_t>()[0] = 1;
}

void frcnn_postprocess_cpu(OpContext& c) {
  require_overwrite(c);
  const PostprocessAttrs& a = c.attrs<PostprocessAttrs>();
  const int64_t N = c.in[3].shape[0], P = c.in[0].shape[0] / N, K = a.params.num_classes, T_ = a.params.max_total;
  const int32_t* roi_count = c.in[3].ptr<int32_t>();
  dispatch_float(c, c.in[0].dtype, [&](auto z) {
    using T = decltype(z);
    for (int64_t n = 0; n < N; ++n) {
      CTDET_CHECK(roi_count[n] >= 0 && roi_count[n] <= P, "node '", c.node->name, "': image ", n, " roi_count ",
                  roi_count[n], " outside [0, ", P, "]");
      const int64_t cnt =
          postprocess_cpu(a.params, roi_count[n], c.in[0].ptr<T>() + n * P * (K + 1), c.in[1].ptr<T>() + n * P * K * 4,
                          c.in[2].ptr<T>() + 4 * n * P, c.out[0].ptr<T>() + 4 * n * T_, c.out[1].ptr<T>() + n * T_,
                          c.out[2].ptr<int32_t>() + n * T_);
      c.out[3].ptr<int32_t>()[n] = int32_t(cnt);
    }
  });
}

namespace {
#if CTDET_WITH_CUDA
void rpn_targets_cuda(OpContext& c) { frcnn_host_op_cuda(c, frcnn_rpn_targets_cpu); }
void box_targets_cuda(OpContext& c) { frcnn_host_op_cuda(c, frcnn_box_targets_cpu); }
void postprocess_cuda(OpContext& c) { frcnn_host_op_cuda(c, frcnn_postprocess_cpu); }
#endif

void need_rank(const Graph& g, const Node& n, size_t i, const Shape& want) {
  need(shp(g, n.inputs[i]) == want, g, n, "input ", i, " must be ", want.str(), ", got ", shp(g, n.inputs[i]).str());
}
}  // namespace

void register_frcnn_ops(OpRegistry& r) {
  {
    OpDef d;
    d.name = "rows_from_nchw";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 1, 1, "x (N, A*k, H, W)");
      const Shape& x = shp(g, n.inputs[0]);
      const int64_t k = node_attrs<RowsAttrs>(n).k;
      need(x.rank() == 4 && k > 0 && x[1] % k == 0, g, n, "x must be (N, A*", k, ", H, W)");
      return one(Shape{x[0] * x[2] * x[3] * (x[1] / k), k}, dt(g, n.inputs[0]));
    };
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) {
      RowsAttrs a = node_attrs<RowsAttrs>(b.fwd());
      a.x_shape = b.graph().value(b.in(0)).shape;
      b.contribute(0, "rows_from_nchw_grad", {b.grad_out()}, a);
    };
#endif
    d.cpu = rows_cpu;
    d.cuda = CTDET_CUDA_FN(frcnn_rows_cuda);
    r.add(d);
  }
#if !CTDET_INFERENCE_ONLY
  {
    OpDef d;
    d.name = "rows_from_nchw_grad";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 1, 1, "dy (N*H*W*A, k)");
      const RowsAttrs& a = node_attrs<RowsAttrs>(n);
      need(a.x_shape.rank() == 4 && shp(g, n.inputs[0]).numel() == a.x_shape.numel(), g, n, "dy must have ",
           a.x_shape.numel(), " elements");
      return one(a.x_shape, dt(g, n.inputs[0]));
    };
    d.cpu = rows_grad_cpu;
    d.cuda = CTDET_CUDA_FN(frcnn_rows_grad_cuda);
    r.add(d);
  }
#endif
  {
    OpDef d;
    d.name = "select_class_boxes";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 2, 2, "x (R, K*4), labels (R) int32");
      need_i32(g, n, 1);
      const Shape& x = shp(g, n.inputs[0]);
      need(x.rank() == 2 && x[1] % 4 == 0 && shp(g, n.inputs[1]) == Shape({x[0]}), g, n,
           "x must be (R, K*4) and labels (R)");
      return one(Shape{x[0], 4}, dt(g, n.inputs[0]));
    };
#if !CTDET_INFERENCE_ONLY
    d.grad = [](GradBuilder& b) {
      b.contribute(0, "select_class_boxes_grad", {b.grad_out(), b.in(1)},
                   SelectBoxesAttrs{b.graph().value(b.in(0)).shape[1] / 4});
    };
#endif
    d.cpu = select_cpu;
    d.cuda = CTDET_CUDA_FN(frcnn_select_cuda);
    r.add(d);
  }
#if !CTDET_INFERENCE_ONLY
  {
    OpDef d;
    d.name = "select_class_boxes_grad";
    d.infer = [](const Graph& g, const Node& n) {
      need_inputs(g, n, 2, 2, "dy (R,4), labels (R) int32");
      const int64_t K = node_attrs<SelectBoxesAttrs>(n).num_classes;
      return one(Shape{shp(g, n.inputs[0])[0], 4 * K}, dt(g, n.inputs[0]));
    };
    d.cpu = select_grad_cpu;
    d.cuda = CTDET_CUDA_FN(frcnn_select_grad_cuda);
    r.add(d);
  }
#endif
  {
    OpDef d;
    d.name = "rpn_targets";
    d.infer = [](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      need_inputs(g, n, 4, 4, "anchors (M,4), gt_boxes (N,G,4), gt_count (N) int32, seed (1) int32");
      const int64_t M = shp(g, n.inputs[0])[0];
      const Shape& gt = shp(g, n.inputs[1]);
      need(gt.rank() == 3 && gt[2] == 4, g, n, "gt_boxes must be (N,G,4)");
      need_rank(g, n, 2, Shape{gt[0]});
      need_rank(g, n, 3, Shape{1});
      need_i32(g, n, 2);
      need_i32(g, n, 3);
      const DType t = dt(g, n.inputs[0]);
      const int64_t NM = gt[0] * M;
      return {{Shape{NM}, DType::I32}, {Shape{NM, 4}, t}, {Shape{NM}, t}, {Shape{NM}, t}, {Shape{1}, DType::I32}};
    };
    d.cpu = frcnn_rpn_targets_cpu;
    d.cuda = CTDET_CUDA_FN(rpn_targets_cuda);
    r.add(d);
  }
  {
    OpDef d;
    d.name = "proposals";
    d.infer = [](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      need_inputs(g, n, 3, 3, "logits (N*M,2), codes (N*M,4), anchors (M,4)");
      const int64_t M = shp(g, n.inputs[2])[0], NM = shp(g, n.inputs[0])[0];
      need(M > 0 && NM % M == 0, g, n, "logits rows must be a multiple of the anchor count ", M);
      need_rank(g, n, 0, Shape{NM, 2});
      need_rank(g, n, 1, Shape{NM, 4});
      const ProposalAttrs& a = node_attrs<ProposalAttrs>(n);
      const int64_t N = NM / M, P = a.params.max_proposals;
      need(P > 0 && a.image_h > 0 && a.image_w > 0, g, n, "max_proposals and image size must be positive");
      const DType t = dt(g, n.inputs[0]);
      return {{Shape{N * P, 4}, t}, {Shape{N * P, 4}, t}, {Shape{N * P}, DType::I32}, {Shape{N * P, 5}, t},
              {Shape{N}, DType::I32}};
    };
    d.workspace = [](const Graph& g, const Node& n, Device dev, size_t) -> size_t {
      if (dev != Device::CUDA) return 0;
      return proposals_cuda_workspace_bytes(g.value(n.inputs[2]).shape[0],
                                            node_attrs<ProposalAttrs>(n).params.max_proposals);
    };
    d.cpu = frcnn_proposals_cpu;
    d.cuda = CTDET_CUDA_FN(frcnn_proposals_cuda);
    r.add(d);
  }
  {
    OpDef d;
    d.name = "box_targets";
    d.infer = [](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      need_inputs(g, n, 6, 6,
                  "rois (N*P,4), roi_count (N), gt_boxes (N,G,4), gt_labels (N,G), gt_count (N), seed (1)");
      const Shape& gt = shp(g, n.inputs[2]);
      need(gt.rank() == 3 && gt[2] == 4, g, n, "gt_boxes must be (N,G,4)");
      const int64_t N = gt[0];
      need(shp(g, n.inputs[0]).rank() == 2 && shp(g, n.inputs[0])[0] % N == 0, g, n, "rois must be (N*P,4)");
      need_rank(g, n, 1, Shape{N});
      need_rank(g, n, 3, Shape{N, gt[1]});
      need_rank(g, n, 4, Shape{N});
      need_rank(g, n, 5, Shape{1});
      for (size_t i : {1, 3, 4, 5}) need_i32(g, n, i);
      const BoxTargetAttrs& a = node_attrs<BoxTargetAttrs>(n);
      const int64_t B = a.params.sampler.batch_size, NB = N * B;
      const DType t = dt(g, n.inputs[0]);
      return {{Shape{NB, 4}, t}, {Shape{NB, 4}, t}, {Shape{NB}, DType::I32}, {Shape{NB, 5}, t},
              {Shape{NB}, DType::I32}, {Shape{NB}, t}, {Shape{NB, 4}, t}, {Shape{NB}, t}, {Shape{1}, DType::I32}};
    };
    d.cpu = frcnn_box_targets_cpu;
    d.cuda = CTDET_CUDA_FN(box_targets_cuda);
    r.add(d);
  }
  {
    OpDef d;
    d.name = "postprocess";
    d.infer = [](const Graph& g, const Node& n) -> std::vector<OutputDesc> {
      need_inputs(g, n, 4, 4, "logits (N*P,K+1), codes (N*P,K*4), rois (N*P,4), roi_count (N) int32");
      const PostprocessAttrs& a = node_attrs<PostprocessAttrs>(n);
      const int64_t N = shp(g, n.inputs[3])[0], K = a.params.num_classes, NP = shp(g, n.inputs[0])[0];
      need(N > 0 && NP % N == 0, g, n, "rows must be a multiple of the image count");
      need_rank(g, n, 0, Shape{NP, K + 1});
      need_rank(g, n, 1, Shape{NP, 4 * K});
      need_rank(g, n, 2, Shape{NP, 4});
      need_i32(g, n, 3);
      const int64_t T = a.params.max_total;
      const DType t = dt(g, n.inputs[0]);
      return {{Shape{N * T, 4}, t}, {Shape{N * T}, t}, {Shape{N * T}, DType::I32}, {Shape{N}, DType::I32}};
    };
    d.cpu = frcnn_postprocess_cpu;
    d.cuda = CTDET_CUDA_FN(postprocess_cuda);
    r.add(d);
  }
}

}  // namespace ctdet
