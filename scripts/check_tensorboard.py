#!/usr/bin/env python3
"""Reads ctdet's TensorBoard event files with TensorBoard's own EventAccumulator and prints the scalars.

Usage: python3 scripts/check_tensorboard.py RUN_DIR_OR_EVENT_FILE [--expect-steps N]
  (pip install tensorboard; runs without TensorFlow, using TensorBoard's bundled protos)

Prints each scalar tag with its (step, value, wall_time) list as TensorBoard will plot it. A resumed run
(several event files, a SessionLog START) shows each step once. --expect-steps N exits 1 unless every tag
has exactly N points with distinct steps.
"""
import argparse
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--expect-steps", type=int, default=None)
    a = ap.parse_args()
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError as e:
        print("tensorboard is not installed (pip install tensorboard):", e, file=sys.stderr)
        return 2
    acc = EventAccumulator(a.path, size_guidance={"scalars": 0})  # 0: keep every point
    acc.Reload()
    tags = acc.Tags().get("scalars", [])
    print(f"{a.path}: {len(tags)} scalar tag(s), file_version={acc.file_version}")
    ok = True
    for tag in sorted(tags):
        pts = acc.Scalars(tag)
        print(f"  {tag}: {len(pts)} point(s)")
        for p in pts:
            print(f"    step {p.step:>6}  value {p.value:.9g}  wall_time {p.wall_time:.6f}")
        steps = [p.step for p in pts]
        if a.expect_steps is not None and (len(pts) != a.expect_steps or len(set(steps)) != len(steps)):
            print(f"  !! {tag}: expected {a.expect_steps} distinct steps, got {steps}")
            ok = False
    if not tags:
        ok = False
        print("  !! no scalars found")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
