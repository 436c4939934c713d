#!/usr/bin/env python3
"""PyTorch peer of bench/bench_ops.cpp: the same cases, shapes, inputs (NMS and crop boxes), timing method and CSV.

    /usr/bin/python3 bench/peers/torch_ops.py [--device cpu|cuda] [--filter SUBSTR] [--reps N] [--warmup N]
                                              [--quick] [--threads N] [--list]

stdout: op,device,shape,time_ms_median,time_ms_min,gflops_or_gbs,unit,share_of_peak with op = "torch:<ctdet op>"
and the shape string identical to bench_ops', so rows join on (op without "torch:", shape). share_of_peak is left
empty here (the peaks are bench_ops' business; compare times). Notes (versions, threads, TF32 state) go to stderr.

Peer mapping (same math unless noted):
  conv2d_fwd / bwd_data / bwd_filter   F.conv2d / aten.convolution_backward with output_mask (dx only / dw only)
  linear_fwd / linear_bwd              F.linear / dx = dy w, dw = dy^T x, db = sum dy
  crop_and_resize_fwd / bwd            torchvision.ops.roi_align, sampling_ratio=1, aligned=False, boxes mapped so
                                       bin centres fall on TF's corner-aligned sample points (same bilinear taps;
                                       autograd for the backward)
  nms                                  torchvision.ops.nms(...)[:300] (runs to completion: no early stop at 300)
  max_pool_fwd / bwd                   F.max_pool2d(3, 2, 1) / autograd (torch saves indices; ctdet recomputes)
  bn_relu_fwd / bn_add_relu_fwd        F.batch_norm(training=False) then relu_ (+ add_ of the residual)
  relu_fwd / relu_bwd                  torch.clamp(min=0, out=) / aten.threshold_backward
CPU: time.perf_counter; before every timed rep a 64 MiB (or 2 x LLC) buffer is overwritten (cold caches), as in
bench_ops. CUDA: torch.cuda.Event timing with an L2 flush (zero_ of max(64 MiB, 2 x L2)) before every rep; TF32 is
reported and DISABLED so both sides run true fp32.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

try:
    import torchvision
    from torchvision.ops import nms as tv_nms
    from torchvision.ops import roi_align as tv_roi_align
except Exception as e:  # noqa: BLE001 - report and go on without the torchvision cases
    torchvision = None
    print(f"# torchvision not importable ({e}): crop_and_resize and nms cases skipped", file=sys.stderr)


def note(msg):
    print(f"# {msg}", file=sys.stderr)


# ---- the same input generators as bench/bench_util.h (uint32 arithmetic wraps like C++) ----------------------
def hash_unit(i, stream):
    i = np.asarray(i, dtype=np.uint32)
    with np.errstate(over="ignore"):
        h = i * np.uint32(2654435761) + np.uint32(stream * 40503) + np.uint32(1)
        h ^= h >> np.uint32(16)
        h *= np.uint32(2246822519)
        h ^= h >> np.uint32(13)
        h *= np.uint32(3266489917)
        h ^= h >> np.uint32(16)
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)


def nms_inputs(n):
    i = np.arange(n, dtype=np.uint32)
    cx = np.float32(1000) * hash_unit(i, 1)
    cy = np.float32(600) * hash_unit(i, 2)
    w = np.float32(16) + np.float32(240) * hash_unit(i, 3)
    h = np.float32(16) + np.float32(240) * hash_unit(i, 4)
    half = np.float32(0.5)
    boxes = np.stack([cx - half * w, cy - half * h, cx + half * w, cy + half * h], axis=1).astype(np.float32)
    return torch.from_numpy(boxes), torch.from_numpy(hash_unit(i, 5))


def crop_boxes(R):
    i = np.arange(R, dtype=np.uint32)
    h = np.float32(0.05) + np.float32(0.2) * hash_unit(i, 6)
    w = np.float32(0.05) + np.float32(0.2) * hash_unit(i, 7)
    y1 = (np.float32(1) - h) * hash_unit(i, 8)
    x1 = (np.float32(1) - w) * hash_unit(i, 9)
    return np.stack([y1, x1, y1 + h, x1 + w], axis=1).astype(np.float32)  # TF order, normalised


def roi_align_rois(tf_boxes, H, W, crop):
    """TF crop_and_resize samples y1*(H-1) + i*(y2-y1)*(H-1)/(crop-1). roi_align (aligned=False, sampling_ratio=1)
    samples bin centres y_start + (i + 0.5) * roi_h / crop with roi_h = max(y_end - y_start, 1); choosing
    step = (y2-y1)*(H-1)/(crop-1), y_start = y1*(H-1) - step/2, y_end = y_start + crop*step puts them on the same
    points whenever crop*step >= 1 (true for these boxes: >= 0.05*37*14/13 ~ 2 px)."""
    b = tf_boxes.astype(np.float64)
    sy = (b[:, 2] - b[:, 0]) * (H - 1) / (crop - 1)
    sx = (b[:, 3] - b[:, 1]) * (W - 1) / (crop - 1)
    y0 = b[:, 0] * (H - 1) - sy / 2
    x0 = b[:, 1] * (W - 1) - sx / 2
    rois = np.stack([np.zeros(len(b)), x0, y0, x0 + crop * sx, y0 + crop * sy], axis=1)
    return torch.from_numpy(rois.astype(np.float32))


class Env:
    def __init__(self, args):
        self.args = args
        self.dev = torch.device(args.device)
        self.cuda = args.device == "cuda"
        self.warmup = args.warmup if args.warmup >= 0 else (3 if self.cuda else 1)
        self.reps = args.reps if args.reps > 0 else (
            (5 if args.quick else 20) if self.cuda else (3 if args.quick else 5))
        if self.cuda:
            l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0) or 0
            self.flush = torch.empty(max(64 << 20, 2 * l2), dtype=torch.uint8, device=self.dev)
        else:
            self.flush = np.zeros(cpu_flush_bytes(), dtype=np.uint8)

    def want(self, op, shape):
        if self.args.list:
            print(f"torch:{op} {shape}")
            return False
        return not self.args.filter or self.args.filter in f"{op} {shape}"

    def time(self, fn):
        for _ in range(self.warmup):
            fn()
        ms = []
        if self.cuda:
            torch.cuda.synchronize()
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            for _ in range(self.reps):
                self.flush.zero_()
                start.record()
                fn()
                stop.record()
                stop.synchronize()
                ms.append(start.elapsed_time(stop))
        else:
            for i in range(self.reps):
                self.flush.fill(i & 0xFF)
                t0 = time.perf_counter()
                fn()
                ms.append((time.perf_counter() - t0) * 1e3)
                if i >= 2 and ms[0] > 1000.0:  # calls over 1 s (torchvision CPU NMS, roi_align backward): 3 reps
                    break
        ms.sort()
        n = len(ms)
        med = ms[n // 2] if n % 2 else 0.5 * (ms[n // 2 - 1] + ms[n // 2])
        return med, ms[0]

    def report(self, op, shape, t, unit, amount):
        med, mn = t
        scale = 1e6 if unit == "Mbox/s" else 1e9
        rate = amount / (med * 1e-3) / scale if med > 0 else 0.0
        print(f"torch:{op},{self.args.device},{shape},{med:.4f},{mn:.4f},{rate:.2f},{unit},", flush=True)

    def randn(self, *shape, seed=0, scale=1.0):
        g = torch.Generator().manual_seed(seed)
        return (torch.rand(*shape, generator=g) * 2 - 1).mul_(scale).to(self.dev)


def cpu_flush_bytes():
    llc = 0
    for idx in (3, 2):
        try:
            with open(f"/sys/devices/system/cpu/cpu0/cache/index{idx}/size") as f:
                v = f.read().strip()
            llc = int(v.rstrip("KM")) << (10 if v.endswith("K") else 20 if v.endswith("M") else 0)
            break
        except (OSError, ValueError):
            continue
    return max(64 << 20, 2 * llc)


# ---- cases (shape strings must stay identical to bench_ops.cpp) -------------------------------------------
def bench_conv(env, shape, N, C, H, K, R, stride, pad):
    ops = [o for o in ("conv2d_fwd", "conv2d_bwd_data", "conv2d_bwd_filter") if env.want(o, shape)]
    if not ops:
        return
    x = env.randn(N, C, H, H, seed=1)
    w = env.randn(K, C, R, R, seed=2, scale=0.1)
    P = (H + 2 * pad - R) // stride + 1
    dy = env.randn(N, K, P, P, seed=3)
    flops = 2.0 * N * K * P * P * C * R * R
    st, pd, dl = [stride, stride], [pad, pad], [1, 1]
    bwd = torch.ops.aten.convolution_backward
    with torch.no_grad():
        fns = {
            "conv2d_fwd": lambda: F.conv2d(x, w, None, stride, pad),
            "conv2d_bwd_data": lambda: bwd(dy, x, w, None, st, pd, dl, False, [0, 0], 1, [True, False, False]),
            "conv2d_bwd_filter": lambda: bwd(dy, x, w, None, st, pd, dl, False, [0, 0], 1, [False, True, False]),
        }
        for o in ops:
            env.report(o, shape, env.time(fns[o]), "GFLOP/s", flops)


def bench_linear(env, shape, M, K, N, backward):
    op = "linear_bwd" if backward else "linear_fwd"
    if not env.want(op, shape):
        return
    x, w, b = env.randn(M, K, seed=11), env.randn(N, K, seed=12, scale=0.05), env.randn(N, seed=13)
    dy = env.randn(M, N, seed=14)

    def bwd():
        return dy @ w, dy.t() @ x, dy.sum(0)

    with torch.no_grad():
        fn = bwd if backward else (lambda: F.linear(x, w, b))
        env.report(op, shape, env.time(fn), "GFLOP/s", (4.0 if backward else 2.0) * M * N * K)


def bench_crop(env, shape, R, C, H, crop):
    ops = [o for o in ("crop_and_resize_fwd", "crop_and_resize_bwd") if env.want(o, shape)]
    if not ops or torchvision is None:
        return
    x = env.randn(1, C, H, H, seed=21)
    rois = roi_align_rois(crop_boxes(R), H, H, crop).to(env.dev)
    dy = env.randn(R, C, crop, crop, seed=22)
    amount = 4.0 * (R * C * crop * crop + C * H * H)
    if "crop_and_resize_fwd" in ops:
        with torch.no_grad():
            fn = lambda: tv_roi_align(x, rois, (crop, crop), 1.0, 1, False)  # noqa: E731
            env.report("crop_and_resize_fwd", shape, env.time(fn), "GB/s", amount)
    if "crop_and_resize_bwd" in ops:
        xg = x.clone().requires_grad_(True)
        y = tv_roi_align(xg, rois, (crop, crop), 1.0, 1, False)
        fn = lambda: torch.autograd.grad(y, xg, dy, retain_graph=True)  # noqa: E731
        env.report("crop_and_resize_bwd", shape, env.time(fn), "GB/s", amount)


def bench_nms(env, shape, n, iou, max_out):
    if not env.want("nms", shape) or torchvision is None:
        return
    boxes, scores = nms_inputs(n)
    boxes, scores = boxes.to(env.dev), scores.to(env.dev)
    fn = lambda: tv_nms(boxes, scores, iou)[:max_out]  # noqa: E731
    kept = fn()
    note(f"nms {env.args.device}: kept {len(kept)} of {n} (torchvision keeps {len(tv_nms(boxes, scores, iou))} "
         f"before the [:{max_out}] cut)")
    env.report("nms", shape, env.time(fn), "Mbox/s", float(n))


def bench_pool(env, shape, C, H, k, s, pad):
    ops = [o for o in ("max_pool_fwd", "max_pool_bwd") if env.want(o, shape)]
    if not ops:
        return
    x = env.randn(1, C, H, H, seed=31)
    P = (H + 2 * pad - k) // s + 1
    dy = env.randn(1, C, P, P, seed=32)
    nx, ny = C * H * H, C * P * P
    if "max_pool_fwd" in ops:
        with torch.no_grad():
            env.report("max_pool_fwd", shape, env.time(lambda: F.max_pool2d(x, k, s, pad)), "GB/s", 4.0 * (nx + ny))
    if "max_pool_bwd" in ops:
        xg = x.clone().requires_grad_(True)
        y = F.max_pool2d(xg, k, s, pad)
        fn = lambda: torch.autograd.grad(y, xg, dy, retain_graph=True)  # noqa: E731
        env.report("max_pool_bwd", shape, env.time(fn), "GB/s", 4.0 * (2 * nx + ny))


def bench_elementwise(env, shape, C, H):
    ops = [o for o in ("bn_relu_fwd", "bn_add_relu_fwd", "relu_fwd", "relu_bwd") if env.want(o, shape)]
    if not ops:
        return
    n = C * H * H
    x, r, dy = env.randn(1, C, H, H, seed=41), env.randn(1, C, H, H, seed=42), env.randn(1, C, H, H, seed=43)
    gamma = env.randn(C, seed=44).add_(1.0)
    beta, mean = env.randn(C, seed=45), env.randn(C, seed=46)
    var = env.randn(C, seed=47).abs_().add_(0.5)
    y = torch.empty_like(x)
    fns = {
        "bn_relu_fwd": (lambda: F.batch_norm(x, mean, var, gamma, beta, False).relu_(), 8.0 * n),
        "bn_add_relu_fwd": (lambda: F.batch_norm(x, mean, var, gamma, beta, False).add_(r).relu_(), 12.0 * n),
        "relu_fwd": (lambda: torch.clamp(x, min=0, out=y), 8.0 * n),
        "relu_bwd": (lambda: torch.ops.aten.threshold_backward(dy, x, 0), 12.0 * n),
    }
    with torch.no_grad():
        for o in ops:
            fn, amount = fns[o]
            env.report(o, shape, env.time(fn), "GB/s", amount)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--filter", default="")
    ap.add_argument("--reps", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=-1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: all cores, like OpenBLAS)")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but torch.cuda.is_available() is False "
              f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})", file=sys.stderr)
        return 2
    if not args.list:
        threads = args.threads or os.cpu_count() or 1
        torch.set_num_threads(threads)
        note(f"torch {torch.__version__}, torchvision {getattr(torchvision, '__version__', 'missing')}, "
             f"threads {torch.get_num_threads()}, mkldnn enabled {torch.backends.mkldnn.enabled}")
        if args.device == "cuda":
            note(f"device {torch.cuda.get_device_name(0)}; TF32 before: "
                 f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}, "
                 f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}; both set to False (fp32 comparison); "
                 f"cudnn.benchmark=True")
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cudnn.benchmark = True
        print("op,device,shape,time_ms_median,time_ms_min,gflops_or_gbs,unit,share_of_peak", flush=True)
    env = Env(args) if not args.list else type("L", (), {"want": Env.want, "args": args, "cuda": False})()
    big_rois = args.device == "cuda" and not args.quick
    bench_conv(env, "conv1_7x7s2 1x3x600x600->64", 1, 3, 600, 64, 7, 2, 3)
    bench_conv(env, "layer1_3x3 1x64x150x150->64", 1, 64, 150, 64, 3, 1, 1)
    bench_conv(env, "layer3_3x3 1x256x38x38->256", 1, 256, 38, 256, 3, 1, 1)
    bench_conv(env, "layer3_1x1 1x1024x38x38->256", 1, 1024, 38, 256, 1, 1, 0)
    if big_rois:
        bench_conv(env, "layer4_3x3 300x512x7x7->512 (300 ROIs)", 300, 512, 7, 512, 3, 1, 1)
    else:
        bench_conv(env, "layer4_3x3 8x512x7x7->512 (8 of 300 ROIs)", 8, 512, 7, 512, 3, 1, 1)
    bench_linear(env, "gemm 1024x1024x1024", 1024, 1024, 1024, False)
    bench_linear(env, "box_head 300x2048->360", 300, 2048, 360, False)
    bench_linear(env, "box_head 300x2048->360", 300, 2048, 360, True)
    bench_crop(env, "300 boxes 1x1024x38x38->14x14", 300, 1024, 38, 14)
    bench_nms(env, "20000 boxes iou0.7 ->300", 20000, 0.7, 300)
    bench_pool(env, "1x64x300x300 k3s2p1", 64, 300, 3, 2, 1)
    bench_elementwise(env, "1x1024x38x38", 1024, 38)
    return 0


if __name__ == "__main__":
    sys.exit(main())
