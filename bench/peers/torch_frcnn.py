#!/usr/bin/env python3
"""PyTorch/torchvision peer of bench_model: the study's two Faster R-CNNs built from PyTorch parts, timed the same way.

Both match ctdet's faster_rcnn_resnet101 / faster_rcnn_inception_v2 (TF Object Detection API numbers, spec §1):
  backbone  resnet101: torchvision resnet101 conv1..layer3 (1024 channels, stride 16), FrozenBatchNorm2d
            inception_v2: BN-Inception in the TF-slim layout (spec §3.2) written here from torch.nn parts: separable
            7x7 stem (depthwise, multiplier 8, then 1x1), Mixed_3b..Mixed_4e (576 channels, stride 16), TF SAME
            padding (asymmetric only where TF pads asymmetrically), SAME average pools without the padded cells,
            FrozenBatchNorm2d eps 1e-3; every conv trainable
  anchors   sizes 64,128,256,512 x aspect ratios 0.5,1,2 (12 per location), stride 16
  RPN       TF-OD's head: 3x3 conv to 512 + ReLU6, 1x1 objectness and 1x1 box deltas (torchvision's RPNHead would
            use a 3x3 conv of the backbone's width: 1024->1024 for ResNet-101, twice ctdet's work); 256 anchors/image
            at 0.5 positive, NMS over ALL anchors (pre-NMS top-n = anchor count), 300 proposals train and test
  ROI crop  RoIAlign 14x14 (sampling 2) + 2x2 max pool -> 7x7 (ctdet: crop_and_resize 14x14 + max pool)
  head      resnet101: layer4 with stride 1 (the TF C4 head); inception_v2: Mixed_5a..5c (7x7 -> 4x4, 1024 ch);
            then global average pool, FC 4 logits + FC 16 boxes (3 classes)
  sampling  64 ROIs/image at 25% positive; post-processing NMS 0.6, 300 detections
Inputs are given at their final size (600x600 / 600x1024) and the transform's normalisation is the identity.
Random weights and the ROI count: torchvision's RPN box coder has weights (1,1,1,1), so random deltas blow most
proposals up to the whole image and NMS 0.7 collapses them to a handful, and the peer would then run its head on a
few ROIs instead of 300. The peer therefore runs the RPN NMS at IoU 1.0 (nothing suppressed: exactly 300 proposals
at inference and 64 sampled ROIs in training, as ctdet, whose (10,10,5,5) coder keeps random proposals diverse).
--rpn-nms 0.7 restores the configured value (for trained weights).
The RPN's minimum box size is set to 0 as in TF-OD (spec §4.5: no minimum-size filter); torchvision's default 1e-3
removed every (degenerate) random proposal, so the peer ran its head on 0 ROIs at inference. With both settings the
peer processes exactly 300 ROIs at inference and 64 in training (checked with a hook on box_roi_pool).
fp32, TF32 off, cudnn.benchmark off (as ctdet). CSV on stdout, the same columns as bench_model:
  model,device,mode,batch,height,width,median_ms,min_ms,images_per_s,peak_mib,rois_per_image
rois_per_image: ROIs the box head processed per image in the last timed run (a hook on box_roi_pool), so a peer that
skips its head can never pass unnoticed.
peak_mib: CUDA: torch.cuda.max_memory_allocated over the timed runs. CPU: 0, unless --cpu-memory is given; then the
peak of the bytes held by PyTorch's CPU allocator (c10's DefaultCPUAllocator) during one extra step after the timed
runs (one training step: zero_grad(set_to_none=True), forward, backward, SGD step; or one no_grad forward), the CPU
counterpart of max_memory_allocated: it includes everything the step starts with (parameters, FrozenBatchNorm
buffers, SGD momentum, the images and targets; summed over their storages, each storage once) plus the running total
of every allocation (+) and free (-) the allocator reports to torch.profiler (profile_memory=True) during the step,
walked in time order; the previous step's gradients are set to None before the profiled step starts (they would be
freed by its zero_grad anyway). It counts what CUDA's figure counts: activations, gradients, optimizer state and
oneDNN's buffers (weight reorders, scratchpad: ideep allocates them through c10's allocator, so they are seen). It
leaves out memory that does not go through c10's allocator: OpenBLAS's own buffer pool (fixed per thread, mapped once
at its first call), oneDNN's JIT code and primitive cache, glibc's malloc overhead and the Python objects. Sizes are
exact bytes (the CUDA allocator rounds each block up to 512 bytes, so CUDA's figure is slightly larger for the same
tensors). The profiler only records the calling thread: an allocation made inside an OpenMP worker thread would be
missed. Checked: the measured peak is the same with 1 and 2 threads, and over one step of each of the four CPU cases
the process's resident high-water mark (glibc MALLOC_MMAP_THRESHOLD_=65536, so freed blocks leave RSS) rose by the
measured peak minus the bytes live at the start to within 0.7 MiB: nothing sizeable escapes the measurement.
--self-check-memory checks the measurement against a known allocation pattern. The measured step runs once, after
the timed runs, so the profiler's overhead does not touch the timings; a breakdown of the training peak (parameters,
momentum, gradients live at the peak, the rest, and the phase and op at the peak) goes to stderr as a '#' line.
CPU runs skip training (slow: seconds a step) unless --cpu-train or --cpu-memory is given; both keep CPU at batch 1,
600x600. Until 2026-11-27 (session 5) the ResNet-101 peer diverged in training (CPU and CUDA alike): from random
weights its first SGD step made the weights NaN and later steps' heads saw only the 2 ground-truth boxes
(rois_per_image 2, not 64), so its training timings and peak described that degenerate step (CPU peak 892.7 MiB;
the healthy step, checked with lr 0, 1053.1 MiB). The trunk now starts with zero_init_residual (see build()).
The Inception-v2 build checks its own parameter counts against the spec's table (stage 1: 4,250,264 conv weights;
stage 2: 5,893,120) before timing.
"""
import argparse
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
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


# ---- Inception-v2 (BN-Inception, TF-slim layout) ------------------------------------------------------------------
def same_pads(n, k, s):
    """TF SAME: (before, after) padding of one axis of size n for kernel k and stride s."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def pad_same(x, k, s, value=0.0):
    """(x, symmetric padding) for a conv/pool of kernel k, stride s: padding is returned for the op itself when both
    axes pad symmetrically, else x comes back explicitly padded (the extra row/column at the bottom/right, as TF)."""
    pt, pb = same_pads(x.shape[2], k, s)
    pl, pr = same_pads(x.shape[3], k, s)
    if pt == pb and pl == pr:
        return x, (pt, pl)
    return F.pad(x, (pl, pr, pt, pb), value=value), (0, 0)


class ConvBnRelu(nn.Module):
    """conv (no bias, TF SAME) -> frozen BN (eps 1e-3) -> ReLU."""

    def __init__(self, cin, cout, k, s=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, bias=False)
        self.bn = FrozenBatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        x, pad = pad_same(x, self.conv.kernel_size[0], self.conv.stride[0])
        return F.relu(self.bn(F.conv2d(x, self.conv.weight, stride=self.conv.stride, padding=pad)))


def max_pool_same(x, s):
    x, pad = pad_same(x, 3, s, float("-inf"))
    return F.max_pool2d(x, 3, s, padding=pad)


class Mixed(nn.Module):
    """Inception module: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 | pool -> 1x1 (avg pool, or max in Mixed_5c)."""

    def __init__(self, cin, b0, b1a, b1b, b2a, b2b, b3, max_branch3=False):
        super().__init__()
        self.b0 = ConvBnRelu(cin, b0, 1)
        self.b1 = nn.Sequential(ConvBnRelu(cin, b1a, 1), ConvBnRelu(b1a, b1b, 3))
        self.b2 = nn.Sequential(ConvBnRelu(cin, b2a, 1), ConvBnRelu(b2a, b2b, 3), ConvBnRelu(b2b, b2b, 3))
        self.b3 = ConvBnRelu(cin, b3, 1)
        self.max_branch3 = max_branch3
        self.out_channels = b0 + b1b + b2b + b3

    def forward(self, x):
        # TF SAME at stride 1 pads 1 on every side; the average leaves the padded cells out.
        p = max_pool_same(x, 1) if self.max_branch3 else F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        return torch.cat([self.b0(x), self.b1(x), self.b2(x), self.b3(p)], 1)


class Reduction(nn.Module):
    """Stride-2 module: 1x1 -> 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max 3x3/2."""

    def __init__(self, cin, b0a, b0b, b1a, b1b):
        super().__init__()
        self.b0 = nn.Sequential(ConvBnRelu(cin, b0a, 1), ConvBnRelu(b0a, b0b, 3, 2))
        self.b1 = nn.Sequential(ConvBnRelu(cin, b1a, 1), ConvBnRelu(b1a, b1b, 3), ConvBnRelu(b1b, b1b, 3, 2))
        self.out_channels = b0b + b1b + cin

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1(x), max_pool_same(x, 2)], 1)


class InceptionTrunk(nn.Module):
    """Conv2d_1a_7x7 .. Mixed_4e: 576 channels at stride 16."""

    def __init__(self):
        super().__init__()
        self.dw = nn.Conv2d(3, 24, 7, 2, groups=3, bias=False)  # depthwise, channel multiplier 8
        self.pw = nn.Conv2d(24, 64, 1, bias=False)
        self.bn = FrozenBatchNorm2d(64, eps=1e-3)
        self.conv2b = ConvBnRelu(64, 64, 1)
        self.conv2c = ConvBnRelu(64, 192, 3)
        self.mixed = nn.Sequential(
            Mixed(192, 64, 64, 64, 64, 96, 32),      # Mixed_3b -> 256
            Mixed(256, 64, 64, 96, 64, 96, 64),      # Mixed_3c -> 320
            Reduction(320, 128, 160, 64, 96),        # Mixed_4a -> 576
            Mixed(576, 224, 64, 96, 96, 128, 128),   # Mixed_4b
            Mixed(576, 192, 96, 128, 96, 128, 128),  # Mixed_4c
            Mixed(576, 160, 128, 160, 128, 160, 96),  # Mixed_4d
            Mixed(576, 96, 128, 192, 160, 192, 96))  # Mixed_4e
        self.out_channels = 576

    def forward(self, x):
        x, pad = pad_same(x, 7, 2)
        x = F.relu(self.bn(self.pw(F.conv2d(x, self.dw.weight, stride=2, padding=pad, groups=3))))
        x = max_pool_same(x, 2)
        x = self.conv2c(self.conv2b(x))
        x = max_pool_same(x, 2)
        return {"0": self.mixed(x)}


class InceptionHead(nn.Module):
    """2x2 max pool of the 14x14 crops, Mixed_5a..5c (7x7 -> 4x4, 1024 channels), spatial mean."""

    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2, 2)
        self.mixed = nn.Sequential(Reduction(576, 128, 192, 192, 256),                 # Mixed_5a -> 1024
                                   Mixed(1024, 352, 192, 320, 160, 224, 128),          # Mixed_5b
                                   Mixed(1024, 352, 192, 320, 192, 224, 128, True))    # Mixed_5c

    def forward(self, x):
        return self.mixed(self.pool(x)).mean(dim=(2, 3))


def conv_weight_count(m):
    return sum(p.numel() for n, p in m.named_parameters() if p.dim() == 4)


class TFRPNHead(nn.Module):
    """TF-OD's first-stage box predictor: 3x3 conv to 512 + ReLU6, 1x1 objectness, 1x1 box deltas."""

    def __init__(self, cin, anchors_per_location):
        super().__init__()
        self.conv = nn.Conv2d(cin, 512, 3, padding=1)
        self.cls_logits = nn.Conv2d(512, anchors_per_location, 1)
        self.bbox_pred = nn.Conv2d(512, 4 * anchors_per_location, 1)

    def forward(self, feats):
        t = [F.relu6(self.conv(f)) for f in feats]
        return [self.cls_logits(x) for x in t], [self.bbox_pred(x) for x in t]


def build(model, h, w, rpn_nms):
    if model == "faster_rcnn_resnet101":
        # zero_init_residual: each block's last BN scale starts at 0 (the blocks start as identities). Without it
        # the random 33-block trunk's activations grow block by block, the first SGD step's update is huge and the
        # weights are NaN from the second step on (the head then saw only the 2 ground-truth boxes). The work per
        # step is the same dense arithmetic either way.
        kw = dict(norm_layer=FrozenBatchNorm2d, zero_init_residual=True)
        r = torchvision.models.resnet101(weights=None, **kw) if hasattr(
            torchvision.models, "ResNet101_Weights") else torchvision.models.resnet101(pretrained=False, **kw)
        trunk, head, head_channels = C4Trunk(r), C4Head(r), 2048
    else:
        trunk, head, head_channels = InceptionTrunk(), InceptionHead(), 1024
        counts = (conv_weight_count(trunk), conv_weight_count(head))
        if counts != (4250264, 5893120):
            raise SystemExit(f"torch_frcnn: Inception-v2 conv weight counts {counts} differ from the spec's "
                             "(4250264, 5893120)")
    anchors = AnchorGenerator(sizes=((64, 128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))
    n_anchors = ((h + 15) // 16) * ((w + 15) // 16) * 12
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    m = FasterRCNN(trunk, num_classes=None, min_size=min(h, w), max_size=max(h, w),
                   image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0],
                   rpn_anchor_generator=anchors, rpn_head=TFRPNHead(trunk.out_channels, 12),
                   rpn_pre_nms_top_n_train=n_anchors, rpn_pre_nms_top_n_test=n_anchors,
                   rpn_post_nms_top_n_train=300, rpn_post_nms_top_n_test=300, rpn_nms_thresh=rpn_nms,
                   rpn_batch_size_per_image=256, rpn_positive_fraction=0.5,
                   box_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=14, sampling_ratio=2),
                   box_head=head, box_predictor=FastRCNNPredictor(head_channels, 4),
                   box_score_thresh=0.0, box_nms_thresh=0.6, box_detections_per_img=300,
                   box_batch_size_per_image=64, box_positive_fraction=0.25)
    m.rpn.min_size = 0.0
    return m


def _storage(t):
    """(data pointer, bytes) of t's storage: the block the allocator handed out."""
    st = t.untyped_storage() if hasattr(t, "untyped_storage") else t._storage()
    return st.data_ptr(), st.nbytes()


def live_bytes(tensors):
    """Bytes of the CPU storages behind tensors, each storage once (views and aliases share one)."""
    blocks = {}
    for t in tensors:
        if t is not None and t.device.type == "cpu":
            ptr, nb = _storage(t)
            if nb:
                blocks[ptr] = max(blocks.get(ptr, 0), nb)
    return sum(blocks.values())


def tensors_in(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from tensors_in(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from tensors_in(v)


def cpu_step_peak(fn, live):
    """Peak bytes held by PyTorch's CPU allocator while fn() runs, counting the storages of live (what is held
    when fn starts) as held throughout. torch.profiler(profile_memory=True) records one Allocation event per
    allocation (+bytes) and free (-bytes) the CPU allocator makes on this thread; the events are walked in time order.
    The allocator also stamps each event with its own running total (total_allocated, updated under its lock): its
    differences must match the walk's running sum, which checks the order and that no event is missing in between.
    A free of a block allocated before profiling is reported only if an earlier profiled session saw the block
    allocated (else the allocator does not know its size); such frees are counted (pre_freed) and should be 0."""
    from torch.profiler import profile, ProfilerActivity
    base = live_bytes(live)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    allocs, roots = [], []
    for root in prof.profiler.kineto_results.experimental_event_tree():
        roots.append(root)
        stack = [root]
        while stack:
            e = stack.pop()
            if e.tag.name == "Allocation":
                f = e.extra_fields
                if f.device.type == "cpu":
                    allocs.append((e.start_time_ns, len(allocs), f.alloc_size, f.ptr, f.total_allocated, e))
            stack.extend(reversed(e.children))
    allocs.sort(key=lambda x: (x[0], x[1]))
    cur = peak = 0
    peak_i = -1
    offsets, sizes, last_alloc, pre_freed = set(), {}, {}, 0
    for i, (_, _, nb, ptr, total, _) in enumerate(allocs):
        if nb > 0:
            sizes[ptr] = nb
            last_alloc[ptr] = i
        elif sizes.pop(ptr, None) is None:
            pre_freed += -nb
        cur += nb
        offsets.add(total - cur)
        if cur > peak:
            peak, peak_i = cur, i
    # phase at the peak: backward starts at the first autograd engine task, the optimizer step at SGD.step's range
    t_bwd = min((r.start_time_ns for r in roots if r.name.startswith("autograd::engine")), default=None)
    t_opt = min((r.start_time_ns for r in roots if r.name.startswith("Optimizer.step")), default=None)
    phase, op = "none", ""
    if peak_i >= 0:
        t, e = allocs[peak_i][0], allocs[peak_i][5]
        phase = ("optimizer step" if t_opt is not None and t >= t_opt else
                 "backward" if t_bwd is not None and t >= t_bwd else "forward")
        chain = []
        while e.parent is not None:
            e = e.parent
            chain.append(e.name)
        op = " < ".join(chain[:1] + chain[-1:]) if len(chain) > 1 else "".join(chain)
    return {"base": base, "peak": base + peak, "events": len(allocs), "consistent": len(offsets) <= 1,
            "pre_freed": pre_freed, "phase": phase, "op": op, "peak_index": peak_i, "last_alloc": last_alloc,
            "sizes_at_end": sizes}


def self_check_memory():
    """Known pattern: a 3 MiB tensor live before profiling; inside: +4 MiB, +2 MiB, -4 MiB, +12 MiB (peak: 3 + 2 +
    12 = 17 MiB + 1 byte), -12 MiB, a 1-byte and an empty tensor, then an op whose temporaries are known (ones 1 MiB,
    mul 1 MiB)."""
    pre = torch.empty(3 << 18)  # 3 MiB of float32

    def pattern():
        a = torch.empty(1 << 20)
        b = torch.empty(1 << 19)
        del a
        u = torch.empty(1, dtype=torch.uint8)
        z = torch.empty(0)
        c = torch.empty(3 << 20)
        del c
        d = torch.ones(1 << 18) * 2  # 1 MiB temporary + 1 MiB result
        del b, u, z, d

    r = cpu_step_peak(pattern, [pre, pre[5:]])
    expected = (3 << 20) + (2 << 20) + 1 + (12 << 20)
    ok = r["peak"] == expected and r["consistent"] and r["pre_freed"] == 0
    print(f"self-check-memory: expected {expected} bytes, measured {r['peak']} (live at start {r['base']}, "
          f"{r['events']} allocator events, order consistent with the allocator's total: {r['consistent']}, "
          f"frees of unknown blocks: {r['pre_freed']}) -> {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--reps", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--filter", default="")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--rpn-nms", type=float, default=1.0)
    ap.add_argument("--cpu-memory", action="store_true",
                    help="CPU: measure peak_mib in one extra profiled step (implies --cpu-train)")
    ap.add_argument("--cpu-train", action="store_true", help="CPU: run the training cases too (batch 1, 600x600)")
    ap.add_argument("--self-check-memory", action="store_true",
                    help="check the CPU peak measurement on a known allocation pattern and exit")
    a = ap.parse_args()
    if a.self_check_memory:
        return self_check_memory()
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
    for model in ("faster_rcnn_resnet101", "faster_rcnn_inception_v2"):
        for train in (True, False):
            for n in (1, 2):
                for w in (600, 1024):
                    if not cuda and (n == 2 or w == 1024 or (train and not (a.cpu_train or a.cpu_memory))):
                        continue
                    if a.quick and n == 2 and w == 1024:
                        continue
                    cases.append((model, train, n, 600, w))
    for model, train, n, h, w in cases:
        tag = model + (" train" if train else " infer")
        if a.filter and a.filter not in tag:
            continue
        torch.manual_seed(0)
        m = build(model, h, w, a.rpn_nms).to(dev)
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

        def step():
            if train:
                opt.zero_grad(set_to_none=True)
                losses = m(imgs, tgts)
                loss = sum(losses.values())
                loss.backward()
                opt.step()
                loss.item()
                return losses
            with torch.no_grad():
                out = m(imgs)
                out[0]["boxes"].cpu()
            return out

        ms = []
        res = None  # the last step's outputs, held until the next step returns (as before the step was a function)
        for r in range(a.warmup + reps):
            t0 = time.perf_counter()
            res = step()
            if cuda:
                torch.cuda.synchronize()
            if r >= a.warmup:
                ms.append((time.perf_counter() - t0) * 1000)
        ms.sort()
        med = ms[len(ms) // 2]
        peak = torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else 0.0
        if not cuda and a.cpu_memory:
            # the previous step's gradients go now, not inside the profiled step (see cpu_step_peak: a free of a
            # block allocated before profiling is not reported); the profiled step's zero_grad is then a no-op
            opt.zero_grad(set_to_none=True)
            res = None
            params = list(m.parameters())
            momentum = list(tensors_in(list(opt.state.values())))
            inputs = list(tensors_in(imgs)) + list(tensors_in(tgts))
            live = params + list(m.buffers()) + momentum + inputs
            mem = cpu_step_peak(step, live)
            peak = mem["peak"] / 2 ** 20
            if not mem["consistent"] or mem["pre_freed"]:
                print(f"torch_frcnn: warning: CPU memory events inconsistent (order consistent {mem['consistent']}, "
                      f"frees of unknown blocks {mem['pre_freed']} bytes)", file=sys.stderr)
            mib = lambda b: f"{b / 2 ** 20:.1f}"
            p_b, buf_b, mom_b, in_b = live_bytes(params), live_bytes(m.buffers()), live_bytes(momentum), \
                live_bytes(inputs)
            grads = [p.grad for p in params if p.grad is not None]
            grad_blocks = {}
            for g in grads:
                ptr, nb = _storage(g)
                grad_blocks[ptr] = nb
            g_peak = sum(nb for ptr, nb in grad_blocks.items() if mem["last_alloc"].get(ptr, -1) in
                         range(mem["peak_index"] + 1))
            if any(ptr not in mem["last_alloc"] for ptr in grad_blocks):
                print("torch_frcnn: warning: a gradient's allocation was not seen by the profiler", file=sys.stderr)
            print(f"# {model} {'train' if train else 'infer'} cpu peak {mib(mem['peak'])} MiB: params {mib(p_b)}, "
                  f"buffers {mib(buf_b)}, momentum {mib(mom_b)}, inputs {mib(in_b)}, gradients live at the peak "
                  f"{mib(g_peak)} (of {mib(sum(grad_blocks.values()))}), rest (activations, workspaces) "
                  f"{mib(mem['peak'] - mem['base'] - g_peak)}; peak in {mem['phase']} at {mem['op']}; "
                  f"{mem['events']} allocator events", file=sys.stderr, flush=True)
        print(f"{model},{a.device},{'train' if train else 'infer'},{n},{h},{w},{med:.3f},{ms[0]:.3f},"
              f"{1000.0 * n / med:.2f},{peak:.1f},{(seen[-1] / n) if seen else 0:.0f}", flush=True)
        del m, opt
        if cuda:
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
