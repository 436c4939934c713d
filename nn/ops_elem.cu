// CUDA run functions (f32) of the ops in nn/ops_elem.cpp. They resolve the kernel params with the same
// helpers as the CPU path (nn/op_attrs.h) and call the kernels' CUDA entry points on the context's stream.
#include <vector>

#include "kernels/batchnorm.h"
#include "kernels/batchnorm_math.h"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/launch.cuh"
#include "nn/cuda_context.h"
#include "nn/op_attrs.h"

namespace ctdet {

using namespace opio;

namespace {

const float* fin_opt(const OpContext& c, int slot) { return slot < 0 ? nullptr : fin(c, size_t(slot)); }
const int32_t* iin_opt(const OpContext& c, int slot) { return slot < 0 ? nullptr : iin(c, size_t(slot)); }

}  // namespace

void elem_relu6_cuda(OpContext& c) {
  require_overwrite(c);
  relu6_forward_cuda(ctx(c), c.out[0].numel(), fin(c, 0), fout(c, 0));
}
void elem_relu6_grad_cuda(OpContext& c) {
  relu6_backward_cuda(ctx(c), c.out[0].numel(), fin(c, 0), fin(c, 1), fout(c, 0), c.accumulate(0));
}

namespace {
__global__ void bn_scale_shift_kernel(int C, float eps, const float* gamma, const float* beta, const float* mean,
                                      const float* var, float* scale, float* shift) {
  CTDET_GRID_STRIDE(c, C) {
    scale[c] = bn_frozen_scale(gamma[c], var[c], eps);  // the CPU's batchnorm_frozen_scale_shift_cpu math
    shift[c] = bn_frozen_shift(beta[c], mean[c], scale[c]);
  }
}
}  // namespace

void elem_bn_scale_shift_cuda(OpContext& c) {
  require_overwrite(c);
  const int C = int(c.in[0].shape[0]);
  if (C == 0) return;
  bn_scale_shift_kernel<<<cuda::grid_for(C), cuda::kBlock, 0, ctx(c).stream>>>(
      C, float(c.attrs<BatchNormParams>().eps), fin(c, 0), fin(c, 1), fin(c, 2), fin(c, 3), fout(c, 0), fout(c, 1));
  CTDET_CUDA_LAUNCH_CHECK("bn_scale_shift_kernel");
}

void elem_bn_add_relu_cuda(OpContext& c) {
  require_overwrite(c);
  bn_add_relu_forward_cuda(ctx(c), bn_add_relu_params(c.in[0].shape), fin(c, 0), fin(c, 1), fin(c, 2),
                           c.in.size() > 3 ? fin(c, 3) : nullptr, fout(c, 0));
}
void elem_bn_add_relu_grad_x_cuda(OpContext& c) {
  bn_add_relu_backward_cuda(ctx(c), bn_add_relu_params(c.in[0].shape), fin(c, 0), fin(c, 1), fin(c, 2), fout(c, 0),
                            c.accumulate(0), nullptr, false);
}

void elem_bn_add_relu_grad_cuda(OpContext& c) {
  // outputs: dr, dx (ops_elem.cpp)
  bn_add_relu_backward_cuda(ctx(c), bn_add_relu_params(c.in[0].shape), fin(c, 0), fin(c, 1), fin(c, 2), fout(c, 1),
                            c.accumulate(1), fout(c, 0), c.accumulate(0));
}

void elem_concat_cuda(OpContext& c) {
  require_overwrite(c);
  ConcatParams p;
  p.N = c.in[0].shape[0];
  p.HW = dims_from(c.in[0].shape, 2);
  std::vector<const float*> xs;
  for (size_t i = 0; i < c.in.size(); ++i) {
    p.channels.push_back(c.in[i].shape[1]);
    xs.push_back(fin(c, i));
  }
  concat_forward_cuda(ctx(c), p, xs.data(), fout(c, 0));
}
void elem_slice_cuda(OpContext& c) {
  const SliceAttrs& a = c.attrs<SliceAttrs>();
  ConcatParams p = slice_as_concat(slice_params(c.in[0].shape, a.c0, a.count));
  float* dxs[3] = {nullptr, fout(c, 0), nullptr};
  bool acc[3] = {false, c.accumulate(0), false};
  concat_backward_cuda(ctx(c), p, fin(c, 0), dxs, acc);
}
void elem_slice_grad_cuda(OpContext& c) {
  const SliceGradAttrs& a = c.attrs<SliceGradAttrs>();
  slice_backward_cuda(ctx(c), slice_params(a.x_shape, a.c0, a.count), fin(c, 0), fout(c, 0), c.accumulate(0));
}

// The CUDA gather writes a zero row for an index outside [-1, M) instead of throwing (kernels/elementwise.h);
// indices come from the detection nodes, which produce only valid ones or -1.
void elem_gather_rows_cuda(OpContext& c) {
  require_overwrite(c);
  gather_rows_forward_cuda(ctx(c), gather_rows_params(c.in[0].shape, c.in[1].shape[0]), fin(c, 0), iin(c, 1),
                           fout(c, 0));
}
void elem_gather_rows_grad_cuda(OpContext& c) {
  gather_rows_backward_cuda(ctx(c), gather_rows_params(c.out[0].shape, c.in[1].shape[0]), fin(c, 0), iin(c, 1),
                            fout(c, 0), c.accumulate(0));
}

void elem_pool2d_cuda(OpContext& c) {
  require_overwrite(c);
  pool2d_forward_cuda(ctx(c), pool2d_params(c.attrs<Pool2dParams>(), c.in[0].shape), fin(c, 0), fout(c, 0));
}
void elem_pool2d_grad_cuda(OpContext& c) {
  pool2d_backward_cuda(ctx(c), c.attrs<Pool2dParams>(), fin(c, 0), c.in.size() > 1 ? fin(c, 1) : nullptr, fout(c, 0),
                       c.accumulate(0), c.workspace, c.workspace_bytes);
}
void elem_max_pool_argmax_cuda(OpContext& c) {
  require_overwrite(c);
  pool2d_max_forward_argmax_cuda(ctx(c), pool2d_params(c.attrs<Pool2dParams>(), c.in[0].shape), fin(c, 0), fout(c, 0),
                                 iout(c, 1));
}
void elem_max_pool_argmax_grad_cuda(OpContext& c) {
  pool2d_max_backward_from_argmax_cuda(ctx(c), c.attrs<Pool2dParams>(), fin(c, 0), iin(c, 1), fout(c, 0),
                                       c.accumulate(0));
}
void elem_gap_cuda(OpContext& c) {
  require_overwrite(c);
  global_avg_pool_forward_cuda(ctx(c), gap_params(c.in[0].shape), fin(c, 0), fout(c, 0));
}
void elem_gap_grad_cuda(OpContext& c) {
  global_avg_pool_backward_cuda(ctx(c), gap_params(c.out[0].shape), fin(c, 0), fout(c, 0), c.accumulate(0));
}

// kind: 0 softmax CE (labels int32), 1 sigmoid CE, 2 smooth L1. Count and dloss stay on the device.
void elem_loss_cuda(OpContext& c, int kind) {
  require_overwrite(c);
  const LossParams p = loss_params(*c.node, c.in[0].shape);
  const LossSlots s = loss_slots(*c.graph, *c.node, 2);
  CTDET_CHECK(c.workspace_bytes >= loss_workspace_bytes_cuda(p.R), "node '", c.node->name, "': workspace of ",
              c.workspace_bytes, " bytes, the loss needs ", loss_workspace_bytes_cuda(p.R));
  if (kind == 0)
    softmax_cross_entropy_forward_cuda(ctx(c), p, fin(c, 0), iin(c, 1), fin_opt(c, s.weights), iin_opt(c, s.count),
                                       fout(c, 0), c.workspace);
  else if (kind == 1)
    sigmoid_cross_entropy_forward_cuda(ctx(c), p, fin(c, 0), fin(c, 1), fin_opt(c, s.weights), iin_opt(c, s.count),
                                       fout(c, 0), c.workspace);
  else
    smooth_l1_forward_cuda(ctx(c), p, fin(c, 0), fin(c, 1), fin_opt(c, s.weights), iin_opt(c, s.count), fout(c, 0),
                           c.workspace);
}
void elem_loss_grad_cuda(OpContext& c, int kind) {
  const LossParams p = loss_params(*c.node, c.in[1].shape);
  const LossSlots s = loss_slots(*c.graph, *c.node, 3);
  CTDET_CHECK(c.workspace_bytes >= loss_workspace_bytes_cuda(p.R), "node '", c.node->name, "': workspace of ",
              c.workspace_bytes, " bytes, the loss needs ", loss_workspace_bytes_cuda(p.R));
  const bool acc = c.accumulate(0);
  if (kind == 0)
    softmax_cross_entropy_backward_cuda(ctx(c), p, fin(c, 0), fin(c, 1), iin(c, 2), fin_opt(c, s.weights),
                                        iin_opt(c, s.count), fout(c, 0), acc, c.workspace);
  else if (kind == 1)
    sigmoid_cross_entropy_backward_cuda(ctx(c), p, fin(c, 0), fin(c, 1), fin(c, 2), fin_opt(c, s.weights),
                                        iin_opt(c, s.count), fout(c, 0), acc, c.workspace);
  else
    smooth_l1_backward_cuda(ctx(c), p, fin(c, 0), fin(c, 1), fin(c, 2), fin_opt(c, s.weights), iin_opt(c, s.count),
                            fout(c, 0), acc, c.workspace);
}

}  // namespace ctdet
