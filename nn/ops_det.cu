// CUDA run functions (f32) of the ops in nn/ops_det.cpp: params resolved as on the CPU (nn/op_attrs.h), kernels'
// CUDA entry points enqueued on the context's stream, scratch from the node's planned workspace.
//
// Bad box values on the device: the crop kernels do not throw (kernels/crop_and_resize.h, roi_align.h); a row
// with an out-of-range batch index gives zeros and no gradient. The CPU path validates and throws naming the row.
#include "nn/cuda_context.h"
#include "nn/op_attrs.h"

namespace ctdet {

using namespace opio;


void det_crop_and_resize_cuda(OpContext& c) {
  require_overwrite(c);
  CropAndResizeParams p = crop_params(c.attrs<CropAndResizeParams>(), c.in[0].shape, c.in[1].shape[0]);
  crop_and_resize_forward_cuda(ctx(c), p, fin(c, 0), fin(c, 1), iin(c, 2), fout(c, 0));
}
void det_crop_and_resize_grad_cuda(OpContext& c) {
  CropAndResizeParams p = c.attrs<CropAndResizeParams>();
  p.R = c.in[1].shape[0];
  crop_and_resize_backward_cuda(ctx(c), p, fin(c, 0), fin(c, 1), iin(c, 2), fout(c, 0), c.accumulate(0));
}
void det_roi_align_cuda(OpContext& c) {
  require_overwrite(c);
  RoiAlignParams p = roi_params(c.attrs<RoiAlignParams>(), c.in[0].shape, c.in[1].shape[0]);
  roi_align_forward_cuda(ctx(c), p, fin(c, 0), fin(c, 1), fout(c, 0));
}
void det_roi_align_grad_cuda(OpContext& c) {
  RoiAlignParams p = c.attrs<RoiAlignParams>();
  p.R = c.in[1].shape[0];
  roi_align_backward_cuda(ctx(c), p, fin(c, 0), fin(c, 1), fout(c, 0), c.accumulate(0));
}

void det_anchors_cuda(OpContext& c) {
  require_overwrite(c);
  const AnchorsAttrs& a = c.attrs<AnchorsAttrs>();
  generate_anchors_cuda(ctx(c), a.params, a.Hf, a.Wf, fout(c, 0));
}
void det_box_decode_cuda(OpContext& c) {
  require_overwrite(c);
  const int64_t n = c.in[1].shape[0], k = c.in[0].numel() / (n * 4);
  BoxCoderParams p = c.node->attrs.has_value() ? c.attrs<BoxCoderParams>() : BoxCoderParams{};
  box_decode_cuda(ctx(c), p, n, k, fin(c, 0), fin(c, 1), fout(c, 0));
}
void det_box_encode_cuda(OpContext& c) {
  require_overwrite(c);
  BoxCoderParams p = c.node->attrs.has_value() ? c.attrs<BoxCoderParams>() : BoxCoderParams{};
  box_encode_cuda(ctx(c), p, c.in[0].shape[0], fin(c, 0), fin(c, 1), fout(c, 0));
}
void det_clip_boxes_cuda(OpContext& c) {
  require_overwrite(c);
  const ClipBoxesAttrs& a = c.attrs<ClipBoxesAttrs>();
  const float window[4] = {float(a.window[0]), float(a.window[1]), float(a.window[2]), float(a.window[3])};
  clip_boxes_cuda(ctx(c), c.in[0].shape[0], fin(c, 0), window, fout(c, 0), nullptr);
}
void det_box_iou_cuda(OpContext& c) {
  require_overwrite(c);
  box_iou_cuda(ctx(c), c.in[0].shape[0], c.in[1].shape[0], fin(c, 0), fin(c, 1), fout(c, 0));
}
void det_nms_cuda(OpContext& c) {
  require_overwrite(c);
  nms_cuda(ctx(c), c.attrs<NmsParams>(), c.in[0].shape[0], fin(c, 0), fin(c, 1), iout(c, 0), iout(c, 1), c.workspace,
           c.workspace_bytes);
}
void det_topk_cuda(OpContext& c) {
  require_overwrite(c);
  topk_cuda(ctx(c), c.in[0].numel(), fin(c, 0), c.attrs<TopkAttrs>().k, iout(c, 0), fout(c, 1), c.workspace,
            c.workspace_bytes);
}
void det_balanced_sample_cuda(OpContext& c) {
  require_overwrite(c);
  balanced_sample_cuda(ctx(c), c.attrs<SamplerParams>(), c.in[0].numel(), iin(c, 0), iout(c, 0), iout(c, 1),
                       c.workspace, c.workspace_bytes);
}

}  // namespace ctdet
