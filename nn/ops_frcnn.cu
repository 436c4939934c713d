// CUDA run functions of nn/ops_frcnn.cpp. rows_from_nchw and select_class_boxes (on the gradient path) and
// proposals (below) are kernels sharing their math with the CPU code. The other three bookkeeping ops
// (rpn_targets, box_targets, postprocess) run their CPU reference on host copies of the inputs: per image they touch a few
// hundred KB (20k anchors x 4 floats), and matching/NMS/sampling need ordered, data-dependent control flow.
// Cost: one stream synchronisation and two small copies per node (measured by bench/; a device port is future
// work, tracked in docs/performance.md). It also keeps the sampled indices bit-identical to the CPU path.
#include <cmath>
#include <cstdlib>
#include <vector>

#include "kernels/common/cuda_check.cuh"
#include "kernels/common/launch.cuh"
#include "nn/cuda_context.h"
#include "nn/op_attrs.h"
#include "nn/ops_frcnn.h"
#include "kernels/boxes.h"

namespace ctdet {

using namespace opio;

namespace {

__global__ void rows_kernel(int64_t R, int64_t k, int64_t A, int64_t H, int64_t W, const float* x, float* y) {
  CTDET_GRID_STRIDE(e, R * k) { y[e] = x[rows_src_index(e / k, e % k, k, A, H, W)]; }
}
__global__ void rows_grad_kernel(int64_t R, int64_t k, int64_t A, int64_t H, int64_t W, const float* dy, float* dx,
                                 bool acc) {
  // Each x element is written by exactly one row element (a bijection), so no atomics are needed.
  CTDET_GRID_STRIDE(e, R * k) {
    float& d = dx[rows_src_index(e / k, e % k, k, A, H, W)];
    d = acc ? d + dy[e] : dy[e];
  }
}
__global__ void select_kernel(int64_t R, int64_t K, const float* x, const int32_t* lab, float* y) {
  CTDET_GRID_STRIDE(e, R * 4) {
    const int64_t r = e / 4, j = e % 4;
    const int32_t l = lab[r];
    y[e] = (l >= 1 && l <= K) ? x[r * 4 * K + 4 * (l - 1) + j] : 0.f;
  }
}
__global__ void select_grad_kernel(int64_t R, int64_t K, const float* dy, const int32_t* lab, float* dx, bool acc) {
  CTDET_GRID_STRIDE(e, R * 4 * K) {
    const int64_t r = e / (4 * K), q = e % (4 * K);
    const int32_t l = lab[r];
    const float v = (l >= 1 && q / 4 == l - 1) ? dy[4 * r + q % 4] : 0.f;
    dx[e] = acc ? dx[e] + v : v;
  }
}

struct Window4 {
  float v[4];
};

__global__ void proposal_candidates_kernel(int64_t M, BoxCoderParams coder, Window4 w, bool prune, bool use_thr,
                                           double min_dl, const float* logits, const float* codes,
                                           const float* anchors, float* boxes, float* scores) {
  CTDET_GRID_STRIDE(a, M) {
    proposal_candidate<float>(coder, w.v, prune, use_thr, min_dl, anchors + 4 * a, codes + 4 * a, logits[2 * a],
                              logits[2 * a + 1], boxes + 4 * a, scores + a);
  }
}

// One block: the kept boxes in score order up to the first dropped candidate (score -inf: kept only when fewer
// than P real candidates survived), then the rows of the five outputs as the CPU op writes them.
__global__ void proposal_finalize_kernel(int64_t P, int32_t image, double H, double W, const int32_t* keep,
                                         const int32_t* kept, const float* boxes, const float* scores, float* rois,
                                         float* crop, int32_t* batch, float* roi5, int32_t* roi_count) {
  __shared__ int64_t count;
  if (threadIdx.x == 0) {
    int64_t c = 0;
    const int64_t kc = *kept;
    while (c < kc && c < P && keep[c] >= 0 && scores[keep[c]] > -INFINITY) ++c;
    count = c;
    *roi_count = int32_t(c);
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < P; i += blockDim.x) {
    float b[4] = {0.f, 0.f, 0.f, 0.f};
    if (i < count)
      for (int k = 0; k < 4; ++k) b[k] = boxes[4 * int64_t(keep[i]) + k];
    for (int k = 0; k < 4; ++k) rois[4 * i + k] = b[k];
    // to_crop_boxes_cpu: normalised y1, x1, y2, x2 computed in double
    crop[4 * i + 0] = float(double(b[1]) / H);
    crop[4 * i + 1] = float(double(b[0]) / W);
    crop[4 * i + 2] = float(double(b[3]) / H);
    crop[4 * i + 3] = float(double(b[2]) / W);
    batch[i] = image;
    roi5[5 * i] = float(image);
    for (int k = 0; k < 4; ++k) roi5[5 * i + 1 + k] = b[k];
  }
}

}  // namespace

// Proposals on the device: candidates per anchor (the CPU's proposal_candidate), the bitmask NMS over all M
// anchors with dropped ones scored -inf (they sort last, so they never suppress a real candidate and are cut by
// the finalize kernel), kept boxes gathered into the outputs. No host round trip, no synchronisation.
// CTDET_HOST_PROPOSALS=1 runs the CPU reference on host copies instead (for comparisons).
void frcnn_proposals_cuda(OpContext& c) {
  static const bool host = [] {
    const char* e = std::getenv("CTDET_HOST_PROPOSALS");
    return e && *e && *e != '0';
  }();
  if (host) return frcnn_host_op_cuda(c, frcnn_proposals_cpu);
  require_overwrite(c);
  const ProposalAttrs& a = c.attrs<ProposalAttrs>();
  const int64_t M = c.in[2].shape[0], N = c.in[0].shape[0] / M, P = a.params.max_proposals;
  CudaContext& cx = ctx(c);
  const ProposalsWorkspace L = proposals_workspace_layout(M, P);  // the layout the planner sized
  char* ws = static_cast<char*>(c.workspace);
  CTDET_CHECK(ws != nullptr && c.workspace_bytes >= L.total, "node '", c.node->name, "' (proposals): workspace ",
              c.workspace_bytes, " bytes < ", L.total, " needed");
  float* boxes = reinterpret_cast<float*>(ws + L.boxes);
  float* scores = reinterpret_cast<float*>(ws + L.scores);
  int32_t* keep = reinterpret_cast<int32_t*>(ws + L.keep);
  int32_t* kept = reinterpret_cast<int32_t*>(ws + L.kept);
  void* nms_ws = ws + L.nms;
  Window4 w;
  for (int k = 0; k < 4; ++k) w.v[k] = float(a.params.window[k]);
  const bool use_thr = a.params.score_threshold > 0;
  const double min_dl = proposal_min_dlogit(a.params.score_threshold);
  NmsParams np;
  np.iou_threshold = float(a.params.nms_iou);
  np.max_output = P;
  for (int64_t n = 0; n < N; ++n) {
    proposal_candidates_kernel<<<cuda::grid_for(M), cuda::kBlock, 0, cx.stream>>>(
        M, a.params.coder, w, a.params.prune_anchors, use_thr, min_dl, fin(c, 0) + 2 * n * M, fin(c, 1) + 4 * n * M,
        fin(c, 2), boxes, scores);
    CTDET_CUDA_LAUNCH_CHECK("proposal_candidates_kernel");
    nms_cuda(cx, np, M, boxes, scores, keep, kept, nms_ws, L.nms_bytes);
    proposal_finalize_kernel<<<1, 256, 0, cx.stream>>>(P, int32_t(n), a.image_h, a.image_w, keep, kept, boxes, scores,
                                                       fout(c, 0) + 4 * n * P, fout(c, 1) + 4 * n * P,
                                                       iout(c, 2) + n * P, fout(c, 3) + 5 * n * P, iout(c, 4) + n);
    CTDET_CUDA_LAUNCH_CHECK("proposal_finalize_kernel");
  }
}

void frcnn_rows_cuda(OpContext& c) {
  require_overwrite(c);
  const Shape& x = c.in[0].shape;
  const int64_t k = c.attrs<RowsAttrs>().k, R = c.out[0].shape[0];
  if (R == 0) return;
  rows_kernel<<<cuda::grid_for(R * k), cuda::kBlock, 0, ctx(c).stream>>>(R, k, x[1] / k, x[2], x[3], fin(c, 0),
                                                                          fout(c, 0));
  CTDET_CUDA_LAUNCH_CHECK("rows_kernel");
}
void frcnn_rows_grad_cuda(OpContext& c) {
  const RowsAttrs& a = c.attrs<RowsAttrs>();
  const int64_t k = a.k, R = c.in[0].shape[0];
  if (R == 0) return;
  rows_grad_kernel<<<cuda::grid_for(R * k), cuda::kBlock, 0, ctx(c).stream>>>(
      R, k, a.x_shape[1] / k, a.x_shape[2], a.x_shape[3], fin(c, 0), fout(c, 0), c.accumulate(0));
  CTDET_CUDA_LAUNCH_CHECK("rows_grad_kernel");
}
void frcnn_select_cuda(OpContext& c) {
  require_overwrite(c);
  const int64_t R = c.in[0].shape[0], K = c.in[0].shape[1] / 4;
  if (R == 0) return;
  select_kernel<<<cuda::grid_for(R * 4), cuda::kBlock, 0, ctx(c).stream>>>(R, K, fin(c, 0), iin(c, 1), fout(c, 0));
  CTDET_CUDA_LAUNCH_CHECK("select_kernel");
}
void frcnn_select_grad_cuda(OpContext& c) {
  const int64_t R = c.in[0].shape[0], K = c.out[0].shape[1] / 4;
  if (R == 0) return;
  select_grad_kernel<<<cuda::grid_for(R * 4 * K), cuda::kBlock, 0, ctx(c).stream>>>(R, K, fin(c, 0), iin(c, 1),
                                                                                     fout(c, 0), c.accumulate(0));
  CTDET_CUDA_LAUNCH_CHECK("select_grad_kernel");
}

void frcnn_host_op_cuda(OpContext& c, void (*cpu)(OpContext&)) {
  CudaContext& cx = ctx(c);
  CTDET_CUDA_CHECK(cudaStreamSynchronize(cx.stream));
  std::vector<std::vector<char>> hin(c.in.size()), hout(c.out.size());
  OpContext h = c;
  h.device = Device::CPU;
  h.cuda = nullptr;
  for (size_t i = 0; i < c.in.size(); ++i) {
    hin[i].resize(c.in[i].bytes());
    if (!hin[i].empty())
      CTDET_CUDA_CHECK(
          cudaMemcpyAsync(hin[i].data(), c.in[i].data, hin[i].size(), cudaMemcpyDeviceToHost, cx.stream));
    h.in[i].data = hin[i].data();
    h.in[i].device = Device::CPU;
  }
  for (size_t i = 0; i < c.out.size(); ++i) {
    hout[i].resize(c.out[i].bytes());
    h.out[i].data = hout[i].data();
    h.out[i].device = Device::CPU;
  }
  CTDET_CUDA_CHECK(cudaStreamSynchronize(cx.stream));
  cpu(h);
  // On the work stream (a plain cudaMemcpy from pageable memory may return before its DMA is done, and the
  // non-blocking stream would not wait for it); synchronise before the host buffers go away.
  for (size_t i = 0; i < c.out.size(); ++i)
    if (!hout[i].empty())
      CTDET_CUDA_CHECK(
          cudaMemcpyAsync(c.out[i].data, hout[i].data(), hout[i].size(), cudaMemcpyHostToDevice, cx.stream));
  CTDET_CUDA_CHECK(cudaStreamSynchronize(cx.stream));
}

}  // namespace ctdet
