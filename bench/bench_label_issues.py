#!/usr/bin/env python
"""Does the label-issue finder find label errors? TrashNet with labels corrupted on purpose.

    python bench/bench_label_issues.py [--epochs 4] [--imgsz 320] [--share 0.05]

The training part of bench_kfold.py's split (TrashNet minus its 12% test hold-out), with seeded, disjoint
corruptions of ``--share`` of the boxes each: the class swapped to another, the box deleted, the box
shifted by half its size. One model (COCO YOLOv5n imported, the default schedule) is trained on the
corrupted labels in 3 folds by ``python -m coco2yolo.kfold``; its out-of-fold predictions go to the
finder. For each kind of corruption: the share found in the top K issues (K = the number of corrupted
boxes; a deleted box counts as found by a ``missing`` issue at IoU >= 0.5 with it), beside the same share
for a random ranking of the same issues (mean of 200 shuffles), for a grid of the two thresholds, with a
95% bootstrap interval over images for the default's. Also each kind's own list (swapped boxes among the
top ``wrong_class`` + ``bad_box`` + ``no_object`` issues, deleted ones among the top ``missing`` ones), and,
where cleanlab is installed, the ROC AUC of its swap and bad-location scores beside the finder's; and
how far a prediction must stay from every annotation to be a ``missing`` box (IoU 0.05 to 0.5).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter

import numpy as np
from bench_kfold import LEGACY, base_model, experiment, kfold, prepare
from common import OUT, record

from coco2yolo import label_issues
from coco2yolo.boxes import iou_xyxy, xywh_to_xyxy
from coco2yolo.cocodata import load_dataset
from coco2yolo.label_issues import FREE_IOU, HIGH, KINDS, LOW, find_issues
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


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney), ties counted half."""
    from scipy.stats import rankdata

    r = rankdata(score)
    n1, n0 = int(y.sum()), int((~y).sum())
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def shares(issues: list[dict], truth: dict, k: int, reps: int = 200) -> tuple[dict, dict]:
    share = found(issues, truth, k)
    rng = np.random.default_rng(0)
    rand = {t: 0.0 for t in share}
    for _ in range(reps):
        for t, v in found([issues[j] for j in rng.permutation(len(issues))], truth, k).items():
            rand[t] += v / reps
    return share, rand


def boot_found(issues: list[dict], truth: dict, k: int, images: list[int], reps: int = 300) -> list[float]:
    """95% interval of the overall share found in the top k, resampling images (issues and corruptions)."""
    rng = np.random.default_rng(1)
    by_img: dict[int, list[dict]] = {}
    for i in issues:
        by_img.setdefault(i["image_id"], []).append(i)
    id_img = {i["annotation_id"]: i["image_id"] for i in issues if i["annotation_id"] is not None}
    out = []
    for _ in range(reps):
        pick = rng.choice(images, len(images))
        mult = dict(zip(*np.unique(pick, return_counts=True)))
        n_bad = (sum(mult.get(id_img.get(a), 0) for a in truth["swapped"] | truth["shifted"])
                 + sum(mult.get(img, 0) for img, _ in truth["deleted"]))
        hits = 0
        top = sorted((i for i in issues if i["image_id"] in mult), key=lambda d: -d["score"])
        # each picked copy of an image contributes its issues; expand then cut at the resampled k
        expanded = sorted((i for i in top for _ in range(mult[i["image_id"]])), key=lambda d: -d["score"])[:k]
        ids = Counter(i["annotation_id"] for i in expanded if i["annotation_id"] is not None)
        hits += sum(v for a, v in ids.items() if a in truth["swapped"] or a in truth["shifted"])
        miss = [i for i in expanded if i["kind"] == "missing"]
        for img, box in truth["deleted"]:
            cand = [i["bbox"] for i in miss if i["image_id"] == img]
            if cand and iou_xyxy(xywh_to_xyxy(box), xywh_to_xyxy(cand)).max() >= 0.5:
                hits += mult.get(img, 0)
        out.append(hits / max(n_bad, 1))
    return [float(np.percentile(out, 2.5)), float(np.percentile(out, 97.5))]


def overall(share: dict, truth: dict) -> float:
    n = {"swapped": len(truth["swapped"]), "shifted": len(truth["shifted"]), "deleted": len(truth["deleted"])}
    return sum(share[t] * n[t] for t in n) / sum(n.values())


def signal_aucs(gt: dict, dets, issues: list[dict], truth: dict) -> dict:
    """ROC AUC of each annotation score against swapped / shifted annotations (the rest: correct ones)."""
    ids = [a["id"] for a in gt["annotations"] if not a.get("iscrowd", 0)]
    label = np.array(["sw" if i in truth["swapped"] else "sh" if i in truth["shifted"] else "ok" for i in ids])
    mine = {i["annotation_id"]: i["score"] for i in issues if i["annotation_id"] is not None}
    scores = {"finder": np.array([mine.get(i, 0.0) for i in ids])}
    try:
        import warnings

        from cleanlab.object_detection import rank

        from coco2yolo.cocodata import CategoryMap
    except ImportError:
        scores_note = "cleanlab not installed: its scores left out"
    else:
        scores_note = None
        cmap = CategoryMap(gt["categories"])
        images = sorted(im["id"] for im in gt["images"])
        row = {iid: r for r, iid in enumerate(images)}
        labels = [{"bboxes": [], "labels": [], "ids": []} for _ in images]
        for a in gt["annotations"]:
            if not a.get("iscrowd", 0):
                lb = labels[row[a["image_id"]]]
                lb["bboxes"].append(xywh_to_xyxy(a["bbox"])[0]); lb["labels"].append(cmap.class_of(a["category_id"]))
                lb["ids"].append(a["id"])
        lab = [{"bboxes": np.array(lb["bboxes"], float).reshape(-1, 4), "labels": np.array(lb["labels"], np.int64)}
               for lb in labels]
        preds = [[np.zeros((0, 5)) for _ in range(len(cmap))] for _ in images]
        keep = dets.score >= 0.01
        xyxy = xywh_to_xyxy(dets.xywh[keep])
        groups: dict = {}
        for k, (i, c) in enumerate(zip(dets.image_id[keep].tolist(), dets.category_id[keep].tolist())):
            groups.setdefault((row[i], cmap.class_of(c)), []).append(k)
        for (r, c), ks in groups.items():
            preds[r][c] = np.c_[xyxy[ks], dets.score[keep][ks]]
        for high, low in ((0.95, 0.5), (0.5, 0.25), (0.3, 0.1)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sw = rank.compute_swap_box_scores(labels=lab, predictions=preds, high_probability_threshold=high)
                bl = rank.compute_badloc_box_scores(labels=lab, predictions=preds, low_probability_threshold=low)
            by_id = {}
            for r, lb in enumerate(labels):
                for j, a in enumerate(lb["ids"]):
                    by_id[a] = (sw[r][j], bl[r][j])
            scores[f"cleanlab swap (high {high})"] = np.array([1 - np.nan_to_num(by_id[i][0], nan=1.0) for i in ids])
            scores[f"cleanlab badloc (low {low})"] = np.array([1 - np.nan_to_num(by_id[i][1], nan=1.0) for i in ids])
    out = {}
    for name, sc in scores.items():
        out[name] = {}
        for kind, lab_ in (("swapped", "sw"), ("shifted", "sh")):
            m = (label == lab_) | (label == "ok")
            out[name][kind] = auc(label[m] == lab_, sc[m])
    if scores_note:
        out["note"] = scores_note
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--share", type=float, default=0.05)
    args = p.parse_args()
    work = OUT / "kfold_trashnet"
    train, _, _ = prepare(work)
    bad, truth = corrupt(json.loads(train.read_text()), args.share, seed=0)
    bad_path = work / "train_corrupted.json"
    bad_path.write_text(json.dumps(bad))
    out = work / "corrupted"
    sched = {"optimizer": "SGD", "lr0": 0.01, "warmup_epochs": 3.0, "close_mosaic": 10}  # the defaults (bench_kfold)
    exp = experiment(work / "corrupted.yaml", bad_path, None, out,
                     [{"name": "v5n", **base_model(args.epochs, args.imgsz, **sched)}], {"conf": 0.001})
    t0 = time.time()
    kfold(exp)
    train_seconds = time.time() - t0
    gt = load_dataset(out / "oof" / "gt.json")
    dets = load_results(out / "oof" / "v5n.json")
    kept = {a["id"] for a in gt["annotations"]}
    truth["swapped"] &= kept
    truth["shifted"] &= kept  # the converter's cleaning may have dropped a few
    k = len(truth["swapped"]) + len(truth["shifted"]) + len(truth["deleted"])
    rows = []
    t1 = time.time()
    for high in (0.1, 0.25, 0.5):
        for low in (0.05, 0.1, 0.25, 0.5):
            issues = find_issues(gt, dets, high, low)
            share, rand = shares(issues, truth, k)
            miss = [i for i in issues if i["kind"] == "missing"]
            rows.append({"high_conf": high, "low_conf": low, "issues": len(issues), "found_in_top_k": share,
                         "missing_only": {"issues": len(miss),
                                          "deleted_in_top": found(miss, truth, len(truth["deleted"]))["deleted"],
                                          "deleted_in_all": found(miss, truth, len(miss))["deleted"]},
                         "random_ranking": rand, "overall": overall(share, truth),
                         "overall_random": overall(rand, truth),
                         "kinds_in_top_k": {kind: sum(1 for i in issues[:k] if i["kind"] == kind) for kind in KINDS}})
            print(rows[-1], flush=True)
    seconds_find = (time.time() - t1) / len(rows)
    issues = find_issues(gt, dets, HIGH, LOW)
    images = sorted(im["id"] for im in gt["images"])
    default = {"high_conf": HIGH, "low_conf": LOW, "overall_interval": boot_found(issues, truth, k, images)}
    ann_issues = [i for i in issues if i["kind"] != "missing"]
    k_ann = len(truth["swapped"]) + len(truth["shifted"])
    default["annotation_kinds_only"] = dict(zip(("found", "random"), shares(ann_issues, truth, k_ann)))
    default["annotation_kinds_only"]["k"] = k_ann
    miss = [i for i in issues if i["kind"] == "missing"]
    default["missing_only"] = dict(zip(("found", "random"), shares(miss, truth, len(truth["deleted"]))))
    default["missing_only"].update(k=len(truth["deleted"]), issues=len(miss))
    sweep = []  # how far a prediction must stay from every annotation to be a missing box
    for free in (0.05, 0.1, 0.2, 0.3, 0.5):
        label_issues.FREE_IOU = free
        m = [i for i in find_issues(gt, dets, HIGH, LOW) if i["kind"] == "missing"]
        f, r = shares(m, truth, len(truth["deleted"]))
        sweep.append({"free_iou": free, "issues": len(m), "deleted_in_top": f["deleted"], "random": r["deleted"],
                      "deleted_in_all": found(m, truth, len(m))["deleted"]})
    label_issues.FREE_IOU = FREE_IOU
    default["missing_free_iou_sweep"] = sweep
    top = {i["annotation_id"]: i["kind"] for i in issues[:k] if i["annotation_id"] is not None}
    default["kind_given"] = {
        "swapped": dict(Counter(v for a, v in top.items() if a in truth["swapped"])),
        "shifted": dict(Counter(v for a, v in top.items() if a in truth["shifted"]))}
    record("label_issues", {
        "command": f"python bench/bench_label_issues.py --epochs {args.epochs} --imgsz {args.imgsz} --share {args.share}",
        "images": len(gt["images"]), "boxes_after_corruption": len(gt["annotations"]),
        "corrupted": {"swapped": len(truth["swapped"]), "shifted": len(truth["shifted"]),
                      "deleted": len(truth["deleted"])}, "top_k": k, "seconds_train_and_predict": train_seconds,
        "seconds_per_find": seconds_find,
        "out_of_fold_mAP50": json.loads((out / "summary.json").read_text())["models"][0]["mAP50"], "default": default,
        "roc_auc": signal_aucs(gt, dets, issues, truth), "thresholds": rows})


if __name__ == "__main__":
    assert LEGACY.exists()
    main()
