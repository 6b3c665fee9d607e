#!/usr/bin/env python
"""Does the label-issue finder find label errors? TrashNet with labels corrupted on purpose.

    python bench/bench_label_issues.py [--epochs 4] [--imgsz 320] [--share 0.05]

The training part of bench_kfold.py's split (TrashNet minus its 12% test hold-out), with seeded, disjoint
corruptions of ``--share`` of the boxes each: the class swapped to another, the box deleted, the box
shifted by half its size. One model (COCO YOLOv5n imported, the chosen short-run schedule) is trained on
the corrupted labels in 3 folds by ``python -m coco2yolo.kfold``; its out-of-fold predictions go to the
finder. For each kind of corruption: the share found in the top K issues (K = the number of corrupted
boxes; a deleted box counts as found by a ``missing`` issue at IoU >= 0.5 with it), beside the same share
for a random ranking of the same issues (mean of 200 shuffles), for several confidence thresholds.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np
from bench_kfold import LEGACY, base_model, experiment, kfold, prepare
from common import OUT, record

from coco2yolo.boxes import iou_xyxy, xywh_to_xyxy
from coco2yolo.cocodata import load_dataset
from coco2yolo.label_issues import find_issues
from coco2yolo.results import load_results


def corrupt(data: dict, share: float, seed: int) -> tuple[dict, dict]:
    rng = random.Random(seed)
    anns = [dict(a) for a in data["annotations"]]
    n = round(share * len(anns))
    picked = rng.sample(range(len(anns)), 3 * n)
    swap, delete, shift = picked[:n], picked[n:2 * n], picked[2 * n:]
    cats = sorted(c["id"] for c in data["categories"])
    size = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    for k in swap:
        anns[k]["category_id"] = rng.choice([c for c in cats if c != anns[k]["category_id"]])
    for k in shift:
        x, y, w, h = anns[k]["bbox"]
        W, H = size[anns[k]["image_id"]]
        dx, dy = rng.choice([-1, 1]) * 0.5 * w, rng.choice([-1, 1]) * 0.5 * h
        nx, ny = min(max(0.0, x + dx), W - w), min(max(0.0, y + dy), H - h)
        anns[k]["bbox"] = [nx, ny, w, h]
    truth = {"swapped": {anns[k]["id"] for k in swap}, "shifted": {anns[k]["id"] for k in shift},
             "deleted": [(anns[k]["image_id"], anns[k]["bbox"]) for k in delete]}
    gone = set(delete)
    return {**data, "annotations": [a for k, a in enumerate(anns) if k not in gone]}, truth


def found(issues: list[dict], truth: dict, k: int) -> dict[str, float]:
    top = issues[:k]
    ids = {i["annotation_id"] for i in top if i["annotation_id"] is not None}
    miss = [i for i in top if i["kind"] == "missing"]
    hit_deleted = 0
    for img, box in truth["deleted"]:
        cand = [i["bbox"] for i in miss if i["image_id"] == img]
        if cand and iou_xyxy(xywh_to_xyxy(box), xywh_to_xyxy(cand)).max() >= 0.5:
            hit_deleted += 1
    return {"swapped": len(ids & truth["swapped"]) / len(truth["swapped"]),
            "shifted": len(ids & truth["shifted"]) / len(truth["shifted"]),
            "deleted": hit_deleted / len(truth["deleted"])}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--share", type=float, default=0.05)
    p.add_argument("--optimizer", default="AdamW")
    p.add_argument("--lr0", type=float, default=0.002)
    p.add_argument("--warmup-epochs", type=float, default=0.4)
    p.add_argument("--close-mosaic", type=int, default=2)
    args = p.parse_args()
    work = OUT / "kfold_trashnet"
    train, _, _ = prepare(work)
    bad, truth = corrupt(json.loads(train.read_text()), args.share, seed=0)
    bad_path = work / "train_corrupted.json"
    bad_path.write_text(json.dumps(bad))
    out = work / "corrupted"
    sched = {"optimizer": args.optimizer, "lr0": args.lr0, "warmup_epochs": args.warmup_epochs,
             "close_mosaic": args.close_mosaic}
    exp = experiment(work / "corrupted.yaml", bad_path, None, out,
                     [{"name": "v5n", **base_model(args.epochs, args.imgsz, **sched)}], {"conf": 0.001})
    t0 = time.time()
    kfold(exp)
    gt = load_dataset(out / "oof" / "gt.json")
    dets = load_results(out / "oof" / "v5n.json")
    kept = {a["id"] for a in gt["annotations"]}
    truth["swapped"] &= kept
    truth["shifted"] &= kept  # the converter's cleaning may have dropped a few
    k = len(truth["swapped"]) + len(truth["shifted"]) + len(truth["deleted"])
    rows = []
    for high in (0.3, 0.5, 0.7, 0.95):
        for low in (0.1, 0.25, 0.5):
            if low >= high:
                continue
            issues = find_issues(gt, dets, high, low)
            share = found(issues, truth, k)
            rng = np.random.default_rng(0)
            rand = {t: 0.0 for t in share}
            for _ in range(200):
                shuffled = [issues[j] for j in rng.permutation(len(issues))]
                for t, v in found(shuffled, truth, k).items():
                    rand[t] += v / 200
            rows.append({"high_conf": high, "low_conf": low, "issues": len(issues), "found_in_top_k": share,
                         "random_ranking": rand, "kinds_in_top_k": {kind: sum(1 for i in issues[:k] if i["kind"] == kind)
                                                                   for kind in ("wrong_class", "no_object", "missing",
                                                                                "bad_box")}})
            print(rows[-1], flush=True)
    record("label_issues", {
        "command": f"python bench/bench_label_issues.py --epochs {args.epochs} --imgsz {args.imgsz} --share {args.share}",
        "images": len(gt["images"]), "boxes_after_corruption": len(gt["annotations"]),
        "corrupted": {"swapped": len(truth["swapped"]), "shifted": len(truth["shifted"]),
                      "deleted": len(truth["deleted"])}, "top_k": k, "seconds": time.time() - t0,
        "out_of_fold_mAP50": json.loads((out / "summary.json").read_text())["models"][0]["mAP50"], "thresholds": rows})


if __name__ == "__main__":
    assert LEGACY.exists()
    main()
