#!/usr/bin/env python3
"""Side-by-side table of bench_model (ctdet) and bench/peers/torch_frcnn.py (PyTorch) CSVs, with the issue-9 goals.

    python3 bench/compare_models.py bench_model.csv peer_torch_frcnn.csv > table.md

Rows join on model, device, mode, batch, height, width. Ratios are ctdet / PyTorch (< 1: ctdet faster or smaller).
Memory: ctdet's allocated_mib (its own allocations: the planned arena with its workspaces plus the parameter store,
i.e. parameters, gradients and momentum in training, parameters only at inference) against
torch.cuda.max_memory_allocated (the peak of PyTorch's tensor allocations, workspaces included). Both leave out the
CUDA context and the libraries' own device memory (cuDNN kernels, handles); PyTorch does count its cuBLAS workspace,
ctdet's cuBLAS handle keeps its own (a few MiB). ctdet's device_used_mib (growth of the device's used memory,
handles and loaded kernels included) is printed beside it; CSVs from before allocated_mib existed fall back to it.
A row whose ROI counts differ is marked: the two sides did different work.
Goals (issue 9): on a GPU, training step <= 0.7x the peer's time and <= 0.5x its peak memory, inference <= 0.6x
its time; on the CPU, inference no slower than the peer (<= 1.0x).
Standard library only (runs on the device machine and here).
"""
import csv
import sys

KEY = ("model", "device", "mode", "batch", "height", "width")


def read(path):
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("model") and not r["model"].startswith("#")]
    missing = [k for k in KEY + ("median_ms",) if rows and k not in rows[0]]
    if missing:
        raise SystemExit(f"compare_models: {path}: missing columns {missing}")
    return {tuple(r[k] for k in KEY): r for r in rows}


def num(r, k):
    try:
        return float(r.get(k, ""))
    except ValueError:
        return None


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    ours, peer = read(argv[1]), read(argv[2])
    print("| model | mode | batch | size | ctdet ms | PyTorch ms | time ratio | ctdet share of FP32 peak "
          "| ctdet allocated MiB | ctdet device used MiB | PyTorch MiB | memory ratio | ROIs ctdet / PyTorch |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    goals = []
    for key, r in ours.items():
        p = peer.get(key)
        model, device, mode, batch, h, w = key
        t = num(r, "median_ms")
        pt = num(p, "median_ms") if p else None
        ratio = t / pt if t and pt else None
        used = num(r, "device_used_mib")
        mem = num(r, "allocated_mib") or used
        pmem = num(p, "peak_mib") if p else None
        mratio = mem / pmem if mem and pmem else None
        rois, prois = r.get("rois_per_image", "?"), (p.get("rois_per_image", "?") if p else "-")
        same_work = p is not None and rois == prois
        print(f"| {model} | {mode} | {batch} | {h}x{w} | {t:.1f} | {pt:.1f} | "
              f"{'%.2f' % ratio if ratio else '-'} | {r.get('share_of_fp32_peak') or '-'} | "
              f"{'%.0f' % mem if mem else '-'} | {'%.0f' % used if used else '-'} | {'%.0f' % pmem if pmem else '-'} | "
              f"{'%.2f' % mratio if mratio else '-'} | {rois} / {prois}{'' if same_work else ' (differ)'} |"
              if pt else
              f"| {model} | {mode} | {batch} | {h}x{w} | {t:.1f} | - | - | {r.get('share_of_fp32_peak') or '-'} | "
              f"{'%.0f' % mem if mem else '-'} | {'%.0f' % used if used else '-'} | - | - | {rois} / - |")
        if ratio and same_work:
            bound = 1.0 if device == "cpu" else (0.7 if mode == "train" else 0.6)  # CPU goal: no slower
            goals.append((f"{model} {mode} b{batch} {h}x{w} time", ratio, bound))
            if mode == "train" and mratio and device != "cpu":
                goals.append((f"{model} {mode} b{batch} {h}x{w} memory", mratio, 0.5))
    print()
    met = [g for g in goals if g[1] <= g[2]]
    print(f"Goals met: {len(met)} of {len(goals)} (comparable rows only: both sides ran, same ROI counts).")
    for name, v, bound in goals:
        print(f"- {name}: {v:.2f} (goal <= {bound}) {'met' if v <= bound else 'not met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
