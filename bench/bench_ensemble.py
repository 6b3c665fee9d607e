#!/usr/bin/env python
"""Fusion speed and equality: ensemble.py's WBF and NMS against ensemble-boxes, same inputs, same run.

    python bench/bench_ensemble.py [--images 4871] [--models 4] [--boxes 300] [--layout clustered|uniform] [--seed 0]

Inputs (seeded), 1024x1024 images. ``clustered`` (realistic): 8 objects per image, each model
predicts 300 boxes, half jittered copies of the objects (80% the object's class, of 10), half
random, scores uniform. ``uniform``: 300 uniformly random boxes of one class per model (little
suppression: the worst case for NMS). Ours: one call of the whole-dataset fusion, normalisation
included. ensemble-boxes: its function per image on the same normalised arrays, after a warm-up
call (its NMS kernel is compiled by numba on first use). Target: >= 5x faster for WBF, >= 50x for
NMS, outputs equal within 1e-6 (boxes, scores, labels; checked here).
"""

import argparse
import time
import warnings

import numpy as np
from common import record

import ensemble_boxes as eb
from coco2yolo.fusion.kernels import fuse, nms, split_models, stack, wbf
from coco2yolo.results import Detections


def generate(n_img, n_models, n_boxes, rng, layout="clustered"):
    if layout == "uniform":
        out = []
        for _ in range(n_models):
            xy = rng.uniform(0, 0.8, (n_img * n_boxes, 2))
            wh = rng.uniform(0.02, 0.2, (n_img * n_boxes, 2))
            out.append(Detections(np.repeat(np.arange(n_img), n_boxes), np.zeros(n_img * n_boxes, np.int64),
                                  np.c_[xy, wh] * 1024, rng.random(n_img * n_boxes).round(5)))
        return out
    objects = rng.uniform(0, 0.8, (n_img, 8, 2))
    sizes = rng.uniform(0.05, 0.2, (n_img, 8, 2))
    obj_cls = rng.integers(0, 10, (n_img, 8))
    models = []
    for _ in range(n_models):
        n_obj = n_boxes // 2
        which = rng.integers(0, 8, (n_img, n_obj))
        xy = np.take_along_axis(objects, which[..., None], 1) + rng.normal(0, 0.01, (n_img, n_obj, 2))
        wh = np.take_along_axis(sizes, which[..., None], 1) * rng.uniform(0.8, 1.2, (n_img, n_obj, 2))
        cls = np.where(rng.random((n_img, n_obj)) < 0.8, np.take_along_axis(obj_cls, which, 1),
                       rng.integers(0, 10, (n_img, n_obj)))
        r_xy = rng.uniform(0, 0.8, (n_img, n_boxes - n_obj, 2))
        r_wh = rng.uniform(0.02, 0.2, (n_img, n_boxes - n_obj, 2))
        xy, wh = np.concatenate([xy, r_xy], 1).clip(0, 0.79), np.concatenate([wh, r_wh], 1)
        cls = np.concatenate([cls, rng.integers(0, 10, (n_img, n_boxes - n_obj))], 1)
        img = np.repeat(np.arange(n_img), n_boxes)
        models.append(Detections(img, cls.ravel(), np.c_[xy.reshape(-1, 2), wh.reshape(-1, 2)] * 1024,
                                 rng.random(n_img * n_boxes).round(5)))
    return models


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=4871)
    p.add_argument("--models", type=int, default=4)
    p.add_argument("--boxes", type=int, default=300)
    p.add_argument("--layout", choices=("clustered", "uniform"), default="clustered")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    models = generate(args.images, args.models, args.boxes, np.random.default_rng(args.seed), args.layout)
    ids = list(range(args.images))
    sizes = np.full((args.images, 2), 1024.0)
    warm = generate(3, 2, 20, np.random.default_rng(1))  # compile both sides' numba kernels first
    fuse(warm, [0, 1, 2], sizes[:3], "wbf")
    fuse(warm, [0, 1, 2], sizes[:3], "nms")
    wst = stack(warm, [0, 1, 2], sizes[:3])
    eb.nms(*split_models(wst, 0, np.searchsorted(wst.img, 1), 2), iou_thr=0.55)
    result = {"command": f"python bench/bench_ensemble.py --images {args.images} --models {args.models} "
                         f"--boxes {args.boxes} --layout {args.layout} --seed {args.seed}",
              "boxes_in": sum(len(m) for m in models)}
    st = stack(models, ids, sizes)
    bounds = np.searchsorted(st.img, np.arange(args.images + 1))
    for method, kw in (("wbf", dict(iou_thr=0.55, skip_box_thr=0.0, conf_type="avg")), ("nms", dict(iou_thr=0.55))):
        t = time.perf_counter()
        fused = fuse(models, ids, sizes, method, **kw)
        t_ours = time.perf_counter() - t
        img, lab, score, box = (wbf(st, args.models, None, **kw) if method == "wbf"
                                else nms(models, ids, sizes, None, kw["iou_thr"]))
        t_ref, worst, count_mismatch = 0.0, 0.0, 0
        for i in range(args.images):
            boxes, scores, labels = split_models(st, bounds[i], bounds[i + 1], args.models)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t = time.perf_counter()
                if method == "wbf":
                    rb, rs, rl = eb.weighted_boxes_fusion(boxes, scores, labels, **kw)
                else:
                    rb, rs, rl = eb.nms(boxes, scores, labels, iou_thr=kw["iou_thr"])
                t_ref += time.perf_counter() - t
            a, b = np.searchsorted(img, i), np.searchsorted(img, i, "right")
            if b - a != len(rs):
                count_mismatch += 1
                continue
            if len(rs):
                worst = max(worst, np.abs(box[a:b] - rb).max(), np.abs(score[a:b] - rs).max(),
                            float(np.abs(lab[a:b] - rl).max()))
        result[method] = {"seconds_ours": round(t_ours, 2), "seconds_ensemble_boxes": round(t_ref, 1),
                          "ms_per_image_ours": round(1000 * t_ours / args.images, 3),
                          "ms_per_image_ensemble_boxes": round(1000 * t_ref / args.images, 2),
                          "speedup": round(t_ref / t_ours, 1), "boxes_out": len(fused),
                          "max_abs_diff": worst, "images_with_different_box_count": count_mismatch}
        print(method, result[method], flush=True)
    result["target"] = "WBF >= 5x, NMS >= 50x faster than ensemble-boxes; outputs equal within 1e-6"
    record(f"ensemble_{args.layout}", result)


if __name__ == "__main__":
    main()
