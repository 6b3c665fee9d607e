#!/usr/bin/env python
"""Scoring speed: evaluate.py's engine against pycocotools' COCOeval on the competition's
train.json (4,883 images, 23,144 boxes) with about 270,000 generated predictions, in one run.
Target: at least 4x faster than pycocotools with identical numbers.

    python bench/bench_evaluate.py [--seed 0]

Predictions (seeded): 5 jittered copies of every ground-truth box (some with the wrong class),
plus uniformly random boxes, scores uniform in [0, 1].
"""

import argparse
import time

import numpy as np
from common import SHARED, need, record

from coco2yolo.evaluation import metrics as ev
from coco2yolo.cocodata import CategoryMap, load_dataset
from coco2yolo.results import Detections


def generate(data, rng, n_total=270_000):
    anns = data["annotations"]
    box = np.array([a["bbox"] for a in anns])
    img = np.array([a["image_id"] for a in anns])
    cat = np.array([a["category_id"] for a in anns])
    k = 5
    jit = np.repeat(box, k, axis=0) + rng.normal(0, 1, (len(box) * k, 4)) * np.repeat(box[:, 2:], k, axis=0).repeat(2, 1) * 0.15
    jit[:, 2:] = np.abs(jit[:, 2:]) + 1
    jcat = np.where(rng.random(len(jit)) < 0.2, rng.integers(0, 10, len(jit)), np.repeat(cat, k))
    n_rand = n_total - len(jit)
    ids = np.array([im["id"] for im in data["images"]])
    rxy = rng.uniform(0, 900, (n_rand, 2))
    rwh = rng.uniform(10, 300, (n_rand, 2))
    return Detections(np.r_[np.repeat(img, k), rng.choice(ids, n_rand)], np.r_[jcat, rng.integers(0, 10, n_rand)],
                      np.r_[jit, np.c_[rxy, np.minimum(rwh, 1024 - rxy)]], rng.random(n_total).round(4))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    data = load_dataset(need(SHARED / "datasets" / "recycle" / "train.json"))
    cmap = CategoryMap(data["categories"])
    dets = generate(data, np.random.default_rng(args.seed))
    gt = ev.prepare_gt(data)

    t = time.perf_counter()
    ref = ev.score(gt, dets, cmap, backend="pycocotools", with_matches=False)
    t_ref = time.perf_counter() - t

    t = time.perf_counter()
    ours = ev.score(gt, dets, cmap, backend="faster", with_matches=False)
    t_ours = time.perf_counter() - t

    ev.match_iou50(gt, dets, cmap.ids)  # compile the matcher once (numba caches it on disk)
    t = time.perf_counter()
    full = ev.score(gt, dets, cmap, backend="faster", with_matches=True)
    boot = ev.bootstrap_map50(full.matches, ev.bootstrap_weights(len(data["images"]), 1000, 0))
    t_full = time.perf_counter() - t

    diffs = [abs(ours.map50 - ref.map50), abs(ours.map50_95 - ref.map50_95)] + \
            [abs(ours.ap50[c] - ref.ap50[c]) for c in cmap.ids]
    mine = ev.ap_from_matches(full.matches)
    diffs_matcher = [abs(mine[k] - ref.ap50[c]) for k, c in enumerate(cmap.ids)]
    record("evaluate", {
        "command": f"python bench/bench_evaluate.py --seed {args.seed}",
        "predictions": len(dets), "images": len(data["images"]), "gt_boxes": len(data["annotations"]),
        "seconds": {"pycocotools": round(t_ref, 2), "ours (faster-coco-eval)": round(t_ours, 2),
                    "ours + matcher + 1000 bootstrap resamples": round(t_full, 2)},
        "speedup_vs_pycocotools": round(t_ref / t_ours, 2),
        "speedup_with_bootstrap": round(t_ref / t_full, 2),
        "mAP50": ours.map50, "mAP50_95": ours.map50_95, "mAP50_ci95": list(ev.interval(boot)),
        "max_abs_diff_vs_pycocotools": max(diffs), "max_abs_diff_matcher_ap50": max(diffs_matcher),
        "target": ">= 4x faster than pycocotools, numbers identical",
    })


if __name__ == "__main__":
    main()
