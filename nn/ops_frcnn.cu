// CUDA run functions of nn/ops_frcnn.cpp. rows_from_nchw and select_class_boxes (on the gradient path) are
// kernels sharing the index math with the CPU loops. The four bookkeeping ops (rpn_targets, proposals,
// box_targets, postprocess) run their CPU reference on host copies of the inputs: per image they touch a few
// hundred KB (20k anchors x 4 floats), and matching/NMS/sampling need ordered, data-dependent control flow.
// Cost: one stream synchronisation and two small copies per node (measured by bench/; a device port is future
// work, tracked in docs/performance.md). It also keeps the sampled indices bit-identical to the CPU path.
#include <vector>

#include "kernels/common/cuda_check.cuh"
#include "kernels/common/launch.cuh"
#include "nn/cuda_context.h"
#include "nn/op_attrs.h"
#include "nn/ops_frcnn.h"

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

}  // namespace

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
