#!/usr/bin/env python
"""The fusion search with many models: coordinate ascent against the old exhaustive weight grid.

    python bench/bench_fusion_search.py [--images 1000] [--models 10] [--small 4] [--seed 0]

Ground truth: the first ``--images`` images of the competition's train.json (../shared). Each synthetic
model finds a share of the boxes (90% down to 45%) with jitter growing with its index and adds false
positives, so weights matter. Search space: wbf and nms x IoU {0.4, 0.5, 0.55, 0.6, 0.7}.
- ``--models`` models: coordinate ascent (weights {0, 0.5, 1, 2, 3}); the old exhaustive search (each
  model 1 or 2: 2 x 5 x 1,023 = 10,230 fusions for 10 models) is extrapolated from the measured seconds
  per fusion, since running it would take hours.
- ``--small`` models: both searches over the old space (weights 1 or 2), best mAP50 and time side by side.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np
from common import SHARED, need, record

from coco2yolo.fusion import search as S
from coco2yolo.fusion.ensemble import DEFAULTS
from coco2yolo.results import Detections

METHODS, IOU = ["wbf", "nms"], [0.4, 0.5, 0.55, 0.6, 0.7]


def models_for(gt: dict, n_models: int, seed: int) -> list[Detections]:
    rng = np.random.default_rng(seed)
    anns = gt["annotations"]
    ids = np.array([im["id"] for im in gt["images"]])
    size = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    out = []
    for m in range(n_models):
        recall, jitter = 0.9 - 0.05 * m, 0.02 + 0.01 * m
        rows_i, rows_c, rows_b, rows_s = [], [], [], []
        for a in anns:
            if rng.uniform() > recall:
                continue
            x, y, w, h = a["bbox"]
            dx, dy = rng.normal(0, jitter * w), rng.normal(0, jitter * h)
            c = a["category_id"] if rng.uniform() > 0.1 else int(rng.integers(10))
            rows_i.append(a["image_id"]), rows_c.append(c), rows_b.append([x + dx, y + dy, w, h])
            rows_s.append(float(np.clip(rng.normal(0.7 - 0.03 * m, 0.15), 0.01, 1)))
        n_fp = len(anns) // 2
        fp_img = rng.choice(ids, n_fp)
        for i in fp_img:
            W, H = size[int(i)]
            w, h = rng.uniform(30, 300, 2)
            rows_i.append(int(i)), rows_c.append(int(rng.integers(10))), rows_b.append([rng.uniform(0, W - w),
                                                                                          rng.uniform(0, H - h), w, h])
            rows_s.append(float(rng.uniform(0.01, 0.6 + 0.02 * m)))
        out.append(Detections(np.array(rows_i), np.array(rows_c), np.array(rows_b, float), np.array(rows_s)))
    return out


def old_grid(n: int) -> list[list[float] | None]:
    """The old ``--tune`` weights: None plus every distinct direction of (1, 2) per model."""
    grid, seen = [None], set()
    for combo in itertools.product((1.0, 2.0), repeat=n):
        key = tuple(np.round(np.array(combo) / max(combo), 6))
        if len(set(combo)) > 1 and key not in seen:
            seen.add(key)
            grid.append(list(combo))
    return grid


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--models", type=int, default=10)
    p.add_argument("--small", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    data = json.loads(need(SHARED / "datasets" / "recycle" / "train.json").read_text())
    keep = {im["id"] for im in sorted(data["images"], key=lambda im: im["id"])[: args.images]}
    gt = {"images": [im for im in data["images"] if im["id"] in keep], "categories": data["categories"],
          "annotations": [{**a, "id": k + 1} for k, a in enumerate(a for a in data["annotations"]
                                                                   if a["image_id"] in keep)]}
    ids = [im["id"] for im in gt["images"]]
    sizes = np.array([[im["width"], im["height"]] for im in gt["images"]], float)
    cats = [c["id"] for c in gt["categories"]]
    models = models_for(gt, args.models, args.seed)
    result = {"command": f"python bench/bench_fusion_search.py --images {args.images} --models {args.models} "
                         f"--small {args.small} --seed {args.seed}", "images": len(ids),
              "boxes_per_model": [len(m) for m in models]}

    scorer = S.Scorer(models, ids, sizes, gt, cats, dict(DEFAULTS))
    space = S.SearchSpace(methods=METHODS, iou=IOU)
    t0 = time.perf_counter()
    best, best_val, rec = S.search(scorer, len(models), space, quiet=True)
    secs = time.perf_counter() - t0
    per_fusion = secs / rec["settings_scored"]
    singles = [S.Scorer([m], ids, sizes, gt, cats, dict(DEFAULTS))({"method": "wbf", "iou_thr": 0.55,
                                                                    "conf_type": "avg", "weights": None})
               for m in models]
    result["many"] = {"models": len(models), "settings_scored": rec["settings_scored"], "seconds": secs,
                      "seconds_per_fusion": per_fusion, "best": best, "best_mAP50": best_val,
                      "best_single_mAP50": max(singles), "trace": rec["trace"],
                      "old_exhaustive_fusions": len(METHODS) * len(IOU) * len(old_grid(len(models))),
                      "old_exhaustive_seconds_extrapolated": per_fusion * len(METHODS) * len(IOU)
                      * len(old_grid(len(models)))}
    print(json.dumps(result["many"], indent=1), flush=True)

    small = models[: args.small]
    sc_old = S.Scorer(small, ids, sizes, gt, cats, dict(DEFAULTS))
    t0 = time.perf_counter()
    vals = [sc_old({"method": m, "iou_thr": i, "conf_type": "avg", "weights": w})
            for m in METHODS for i in IOU for w in old_grid(len(small))]
    t_old = time.perf_counter() - t0
    sc_new = S.Scorer(small, ids, sizes, gt, cats, dict(DEFAULTS))
    t0 = time.perf_counter()
    b2, v2, rec2 = S.search(sc_new, len(small), S.SearchSpace(methods=METHODS, iou=IOU, weights=[1.0, 2.0]),
                            quiet=True)
    t_new = time.perf_counter() - t0
    result["small"] = {"models": len(small), "exhaustive": {"fusions": len(vals), "seconds": t_old,
                                                             "best_mAP50": max(vals)},
                       "coordinate_ascent": {"fusions": rec2["settings_scored"], "seconds": t_new, "best_mAP50": v2,
                                             "best": b2},
                       "gap_mAP50": max(vals) - v2}
    print(json.dumps(result["small"], indent=1), flush=True)
    record("fusion_search", result)


if __name__ == "__main__":
    main()
