#!/usr/bin/env python3
"""Cross-check of ctdet's COCO AP against pycocotools (the reference implementation).

Generates a seeded, realistic ground truth + detections set (50 CT-like slices, 3 lesion classes plus a
4th class that has detections but no ground truth, lesion-free slices, jittered true positives, wrong-class
and duplicate detections, background false positives, some exactly tied scores, one slice with more than
100 detections of one class so maxDets truncation matters), writes it as COCO JSON into
tests/fixtures/eval/, runs pycocotools COCOeval (bbox) and writes the expected numbers to
tests/fixtures/eval/pycocotools_expected.json. tests/test_evaluation.cpp reads all three files.

Run with the default python3 after `pip install pycocotools`:  python3 scripts/check_ap_pycocotools.py
Box coordinates are multiples of 0.25 and scores are float32 values, so both sides see identical inputs.
"""
import contextlib
import io
import json
import os
import random

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "eval")
SIZE = 512
CATS = [{"id": 1, "name": "GGO", "supercategory": "lesion"},
        {"id": 2, "name": "CD", "supercategory": "lesion"},
        {"id": 3, "name": "GGO+CD", "supercategory": "lesion"},
        {"id": 4, "name": "Other", "supercategory": "lesion"}]  # detections only, no ground truth


def q(v):  # multiple of 0.25, inside the image
    return float(min(max(round(v * 4) / 4, 0.0), SIZE))


def f32(v):
    return float(np.float32(v))


def make(seed=2024):
    rng = random.Random(seed)
    images, anns, dets = [], [], []
    for i in range(1, 51):
        images.append({"id": i, "file_name": "slice_%03d.png" % i, "width": SIZE, "height": SIZE,
                       "patient_id": "P%02d" % ((i - 1) // 5)})
        n_gt = 0 if rng.random() < 0.3 else rng.randint(1, 4)
        for _ in range(n_gt):
            w, h = rng.uniform(12, 90), rng.uniform(12, 90)
            x, y = rng.uniform(0, SIZE - w), rng.uniform(0, SIZE - h)
            cat = rng.choices([1, 2, 3], weights=[0.5, 0.3, 0.2])[0]
            box = [q(x), q(y), q(w), q(h)]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat, "bbox": box,
                         "area": box[2] * box[3], "iscrowd": 0})
            if rng.random() < 0.85:  # a detection near the lesion
                for dup in range(1 if rng.random() < 0.8 else 2):
                    jit = 0.05 if rng.random() < 0.7 else 0.15
                    dx, dy = rng.gauss(0, jit * w), rng.gauss(0, jit * h)
                    dw, dh = w * rng.uniform(1 - jit, 1 + jit), h * rng.uniform(1 - jit, 1 + jit)
                    dcat = cat if rng.random() < 0.8 else rng.choice([1, 2, 3, 4])
                    score = rng.uniform(0.3, 1.0) if dup == 0 else rng.uniform(0.05, 0.6)
                    dets.append({"image_id": i, "category_id": dcat,
                                 "bbox": [q(x + dx), q(y + dy), q(dw), q(dh)], "score": f32(score)})
        for _ in range(rng.randint(0, 3)):  # background false positives
            w, h = rng.uniform(10, 70), rng.uniform(10, 70)
            x, y = rng.uniform(0, SIZE - w), rng.uniform(0, SIZE - h)
            dets.append({"image_id": i, "category_id": rng.choice([1, 2, 3, 4]),
                         "bbox": [q(x), q(y), q(w), q(h)], "score": f32(rng.uniform(0.0, 0.7))})
    # exact ties across and within images (ordering rules must agree)
    for d in dets:
        if rng.random() < 0.1:
            d["score"] = rng.choice([0.5, 0.75])
    # one slice with 120 detections of class 1: COCO keeps only the 100 best (maxDets)
    target = next(im["id"] for im in images if any(a["image_id"] == im["id"] for a in anns))
    for k in range(120):
        x, y = rng.uniform(0, SIZE - 40), rng.uniform(0, SIZE - 40)
        dets.append({"image_id": target, "category_id": 1, "bbox": [q(x), q(y), 40.0, 40.0],
                     "score": f32(rng.uniform(0.0, 0.4))})
    gt = {"info": {"description": "ctdet AP cross-check (synthetic)"}, "licenses": [],
          "images": images, "annotations": anns, "categories": CATS}
    return gt, dets


def run_cocoeval(gt_path, dets, use_cats):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt_path)
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.useCats = use_cats
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def main():
    os.makedirs(OUT, exist_ok=True)
    gt, dets = make()
    gt_path = os.path.join(OUT, "xcheck_gt.json")
    with open(gt_path, "w") as f:
        json.dump(gt, f, separators=(",", ":"))
    with open(os.path.join(OUT, "xcheck_dets.json"), "w") as f:
        json.dump(dets, f, separators=(",", ":"))

    ev = run_cocoeval(gt_path, dets, 1)
    # precision[T, R, K, A, M]: A=0 is area 'all', M=2 is maxDets=100. -1 marks "no ground truth".
    prec = ev.eval["precision"][:, :, :, 0, 2]
    per_class = []
    for k, cat in enumerate(CATS):
        p = prec[:, :, k]
        defined = bool((p > -1).any())
        per_class.append({
            "category_id": cat["id"], "name": cat["name"], "defined": defined,
            "ap50": float(np.mean(p[0])) if defined else None,
            "ap75": float(np.mean(p[5])) if defined else None,
            "ap": float(np.mean(p)) if defined else None,
            "precision50": [float(v) for v in p[0]] if defined else None,
        })
    ev_any = run_cocoeval(gt_path, dets, 0)
    pa = ev_any.eval["precision"][:, :, 0, 0, 2]
    expected = {
        "generator": "scripts/check_ap_pycocotools.py (seed 2024)",
        "per_class": per_class,
        # pycocotools' own summary numbers (stats[0] = AP@[.5:.95], stats[1] = AP50, stats[2] = AP75):
        # the mean over the entries > -1, i.e. over classes with ground truth.
        "mean": {"ap": float(ev.stats[0]), "ap50": float(ev.stats[1]), "ap75": float(ev.stats[2])},
        "any_lesion": {"ap": float(np.mean(pa)), "ap50": float(np.mean(pa[0])), "ap75": float(np.mean(pa[5])),
                       "precision50": [float(v) for v in pa[0]]},
        "counts": {"images": len(gt["images"]), "annotations": len(gt["annotations"]), "detections": len(dets)},
    }
    with open(os.path.join(OUT, "pycocotools_expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print("images %d, annotations %d, detections %d" % (len(gt["images"]), len(gt["annotations"]), len(dets)))
    for c in per_class:
        if c["defined"]:
            print("%-7s AP50 %.6f  AP75 %.6f  AP %.6f" % (c["name"], c["ap50"], c["ap75"], c["ap"]))
        else:
            print("%-7s undefined (no ground truth; pycocotools -1)" % c["name"])
    m = expected["mean"]
    print("mean    AP50 %.6f  AP75 %.6f  AP %.6f" % (m["ap50"], m["ap75"], m["ap"]))
    a = expected["any_lesion"]
    print("any     AP50 %.6f  AP75 %.6f  AP %.6f" % (a["ap50"], a["ap75"], a["ap"]))


if __name__ == "__main__":
    main()
