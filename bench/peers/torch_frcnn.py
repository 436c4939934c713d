#!/usr/bin/env python3
"""PyTorch/torchvision peer of bench_model: a ResNet-101 C4 Faster R-CNN with the study's sizes, timed the same way.

Built from torchvision parts to match ctdet's faster_rcnn_resnet101 (TF Object Detection API numbers):
  backbone  torchvision resnet101 conv1..layer3 (1024 channels, stride 16), FrozenBatchNorm2d, all convs trainable
  anchors   sizes 64,128,256,512 x aspect ratios 0.5,1,2 (12 per location), stride 16
  RPN       3x3 conv + 1x1 heads (torchvision's RPNHead uses ReLU, TF ReLU6: same cost), 256 anchors/image at 0.5
            positive, NMS 0.7 over ALL anchors (pre-NMS top-n = anchor count), 300 proposals train and test
  ROI crop  RoIAlign 14x14 (sampling 2) + 2x2 max pool -> 7x7 (ctdet: crop_and_resize 14x14 + max pool)
  head      layer4 with stride 1 (the TF C4 head), global average pool, FC 4 logits + FC 16 boxes (3 classes)
  sampling  64 ROIs/image at 25% positive; post-processing NMS 0.6, 300 detections
Inputs are given at their final size (600x600 / 600x1024) and the transform's normalisation is the identity.
Random weights and the ROI count: torchvision's RPN box coder has weights (1,1,1,1), so random deltas blow most
proposals up to the whole image and NMS 0.7 collapses them to a handful, and the peer would then run its layer4 head
(about 1.5 GFLOP per ROI) on a few ROIs instead of 300. The peer therefore runs the RPN NMS at IoU 1.0 (nothing
suppressed: exactly 300 proposals at inference and 64 sampled ROIs in training, as ctdet, whose (10,10,5,5) coder
keeps random proposals diverse). --rpn-nms 0.7 restores the configured value (for trained weights).
The RPN's minimum box size is set to 0 as in TF-OD (spec §4.5: no minimum-size filter); torchvision's default 1e-3
removed every (degenerate) random proposal, so the peer ran its head on 0 ROIs at inference. With both settings the
peer processes exactly 300 ROIs at inference and 64 in training (checked with a hook on box_roi_pool).
fp32, TF32 off, cudnn.benchmark off (as ctdet). CSV on stdout, the same columns as bench_model:
  model,device,mode,batch,height,width,median_ms,min_ms,images_per_s,peak_mib,rois_per_image
rois_per_image: ROIs the box head processed per image in the last timed run (a hook on box_roi_pool), so a peer that
skips its head can never pass unnoticed.
peak_mib: torch.cuda.max_memory_allocated over the timed runs (0 on CPU).
There is no Inception-v2 (BN-Inception) in torchvision: that model has no peer here.
"""
import argparse
import sys
import time

import torch
import torch.nn as nn
import torchvision
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.rpn import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign, FrozenBatchNorm2d


class C4Trunk(nn.Module):
    def __init__(self, r):
        super().__init__()
        self.body = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3)
        self.out_channels = 1024

    def forward(self, x):
        return {"0": self.body(x)}


class C4Head(nn.Module):
    def __init__(self, r):
        super().__init__()
        l4 = r.layer4
        l4[0].conv2.stride = (1, 1)
        l4[0].downsample[0].stride = (1, 1)
        self.pool = nn.MaxPool2d(2, 2)
        self.layer4 = l4

    def forward(self, x):
        return self.layer4(self.pool(x)).mean(dim=(2, 3))


def build(h, w, rpn_nms):
    r = torchvision.models.resnet101(weights=None, norm_layer=FrozenBatchNorm2d) if hasattr(
        torchvision.models, "ResNet101_Weights") else torchvision.models.resnet101(pretrained=False, norm_layer=FrozenBatchNorm2d)
    anchors = AnchorGenerator(sizes=((64, 128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))
    n_anchors = ((h + 15) // 16) * ((w + 15) // 16) * 12
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    m = FasterRCNN(C4Trunk(r), num_classes=None, min_size=min(h, w), max_size=max(h, w),
                   image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0],
                   rpn_anchor_generator=anchors, rpn_pre_nms_top_n_train=n_anchors, rpn_pre_nms_top_n_test=n_anchors,
                   rpn_post_nms_top_n_train=300, rpn_post_nms_top_n_test=300, rpn_nms_thresh=rpn_nms,
                   rpn_batch_size_per_image=256, rpn_positive_fraction=0.5,
                   box_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=14, sampling_ratio=2),
                   box_head=C4Head(r), box_predictor=FastRCNNPredictor(2048, 4),
                   box_score_thresh=0.0, box_nms_thresh=0.6, box_detections_per_img=300,
                   box_batch_size_per_image=64, box_positive_fraction=0.25)
    m.rpn.min_size = 0.0
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--reps", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--filter", default="")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--rpn-nms", type=float, default=1.0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cuda = a.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("torch_frcnn: CUDA not available", file=sys.stderr)
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    dev = torch.device(a.device)
    reps = a.reps or ((5 if a.quick else 10) if cuda else (1 if a.quick else 3))
    print("model,device,mode,batch,height,width,median_ms,min_ms,images_per_s,peak_mib,rois_per_image")
    cases = []
    for train in (True, False):
        for n in (1, 2):
            for w in (600, 1024):
                if not cuda and (n == 2 or w == 1024 or train):
                    continue
                if a.quick and n == 2 and w == 1024:
                    continue
                cases.append((train, n, 600, w))
    for train, n, h, w in cases:
        tag = "faster_rcnn_resnet101 " + ("train" if train else "infer")
        if a.filter and a.filter not in tag:
            continue
        torch.manual_seed(0)
        m = build(h, w, a.rpn_nms).to(dev)
        opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1e-6, momentum=0.9)
        imgs = [torch.rand(3, h, w, device=dev) * 255 - 120 for _ in range(n)]
        tgts = [{"boxes": torch.tensor([[w * .2, h * .3, w * .45, h * .6], [w * .55, h * .25, w * .8, h * .5]], device=dev),
                 "labels": torch.tensor([1, 3], device=dev)} for _ in range(n)]
        m.train(train)
        seen = []
        m.roi_heads.box_roi_pool.register_forward_hook(lambda mod, inp, out: seen.append(out.shape[0]))
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        ms = []
        for r in range(a.warmup + reps):
            t0 = time.perf_counter()
            if train:
                opt.zero_grad(set_to_none=True)
                losses = m(imgs, tgts)
                loss = sum(losses.values())
                loss.backward()
                opt.step()
                loss.item()
            else:
                with torch.no_grad():
                    out = m(imgs)
                    out[0]["boxes"].cpu()
            if cuda:
                torch.cuda.synchronize()
            if r >= a.warmup:
                ms.append((time.perf_counter() - t0) * 1000)
        ms.sort()
        med = ms[len(ms) // 2]
        peak = torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else 0.0
        print(f"faster_rcnn_resnet101,{a.device},{'train' if train else 'infer'},{n},{h},{w},{med:.3f},{ms[0]:.3f},"
              f"{1000.0 * n / med:.2f},{peak:.1f},{(seen[-1] / n) if seen else 0:.0f}", flush=True)
        del m, opt
        if cuda:
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
