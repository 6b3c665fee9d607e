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

    python bench/bench_label_issues.py fix [--epochs 15] [--imgsz 320] [--share 0.05] [--top 0.5 1 2] [--own-top 0.5]

What fixing buys (issue 25). TrashNet split once (seeded): 30% of the photos held out, never trained on or
searched; the rest corrupted as above (``--share`` of the boxes each way). Out-of-fold predictions (3 folds, the
same model) on the corrupted labels give the issues; ``coco2yolo review apply --accept-top K`` for K = each
``--top`` times the number of corrupted boxes writes the fixed labels. One model each (COCO YOLOv5n imported, the
same schedule, seed 0) is trained on every training photo with the clean labels (the ceiling), the corrupted ones
and each fixed set, and scored on the held-out photos: mAP50 with intervals, paired differences, the share of the
loss recovered ((fixed - corrupted) / (clean - corrupted)) with a paired bootstrap interval over the held-out
photos, and the precision of the applied fixes (the share that undid a corruption: a swapped class put back, a
shifted box moved onto its object at IoU >= 0.5, a deleted box added back at IoU >= 0.5 with its class). Then the
honest question: the same out-of-fold search on TrashNet's own, uncorrupted labels, the top ``--own-top`` times the
number of corrupted boxes applied, a model trained on them, its held-out mAP50 against the clean model's.
``--kinds-top F`` adds fixed sets of the top K issues of ``--kinds`` only (default wrong_class and missing: the kinds
whose suggestions most often undo a corruption); the precision of each kind's suggestions by score is printed too.
``--review F`` adds the labels a simulated reviewer who knows the truth leaves after deciding the top F x the
corrupted boxes issues, accepting exactly the suggested fixes that undo a corruption (the ceiling of accept and
reject); ``--edit-review K`` the labels the same reviewer leaves when it also edits, shown the top K issues about
annotations and the top K missing boxes (two pages, ``coco2yolo review --kinds``): every corrupted annotation shown
gets its class and box back, a missing box near a deleted one (IoU >= 0.3) brings it back; a K past both pages'
length shows every issue (named by the longer page: ``edited_top3115x2`` on TrashNet is the whole list).
``--noise-seeds S...`` trains the corrupted labels' model again with each seed: how far a second training of the
same labels moves held-out mAP50 (0.012 at 12 epochs on TrashNet, as large as the gains measured; intervals that
resample only the held-out photos for fixed models leave it out). ``--seeds S...`` trains every label set once per
seed (the corrupted and fixed sets on the same seeds, pair by pair, then the clean set on ``--clean-seeds``): each
figure is then the mean over seeds, each difference is also given seed by seed, and every interval resamples the
seeds (with replacement, the same draw for sets on the same seeds) as well as the photos. A run with more seeds
reuses the trainings of a run with fewer (same ``--work``). ``--device 0`` trains and predicts on a GPU (every
figure so far is from the CPU: a GPU run is a new draw of every model, so give it its own ``--work``).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter

import numpy as np
from pathlib import Path

from bench_kfold import LEGACY, base_model, experiment, kfold, prepare
from common import OUT, ROOT, record

from coco2yolo import label_issues
from coco2yolo.boxes import iou_xyxy, xywh_to_xyxy
from coco2yolo.cocodata import load_dataset
from coco2yolo.evaluation.metrics import interval
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
    import sys

    if sys.argv[1:2] == ["fix"]:
        return fix_main(sys.argv[2:])
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


# --- what fixing buys (issue 25) -------------------------------------------------------------------

def _run(cmd: list[str], log: Path) -> float:
    """Run a command of the project's, its output to ``log``; the seconds it took."""
    import os
    import subprocess
    import sys

    t0 = time.time()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        fh.write("$ " + " ".join(map(str, cmd)) + "\n")
        fh.flush()
        subprocess.run([sys.executable, *map(str, cmd)], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, check=True,
                       env={**os.environ, "COCO2YOLO_OFFLINE": "1"})
    return time.time() - t0


def run_name(name: str, seed: int) -> str:
    """One training's name: the label set's, and the seed unless it is 0 (the runs before --seeds kept theirs)."""
    return name if seed == 0 else f"{name}_seed{seed}"


def trained_predictions(labels: Path, name: str, work: Path, test: Path, args, seed: int = 0) -> tuple[Path, float]:
    """Convert ``labels`` (all photos in training), train one model on them (``seed``), predict the held-out photos."""
    name = run_name(name, seed)
    preds = work / "preds" / f"{name}.json"
    if preds.exists():
        return preds, 0.0
    (work / "preds").mkdir(parents=True, exist_ok=True)
    log = work / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    ds = work / "data" / name
    device = getattr(args, "device", "cpu")
    seconds = _run(["-m", "coco2yolo", labels, "--out", ds, "--clean", "--all-train"], log)
    m = base_model(args.final_epochs or args.epochs, args.imgsz, optimizer="SGD", lr0=0.01,
                   warmup_epochs=3.0, close_mosaic=10)
    seconds += _run(["train_yolo.py", "--data", ds / "data.yaml", "--model", m["model"], "--weights", m["weights"],
                     "--epochs", m["epochs"], "--imgsz", m["imgsz"], "--batch", m["batch"], "--no-val", "--no-plots",
                     "--seed", str(seed), "--optimizer", "SGD", "--lr0", "0.01", "--device", device,
                     "--name", f"fix_{name}", "--weights-dir", work / "weights", "--exist-ok"], log)
    seconds += _run(["infer.py", "--weights", work / "weights" / f"fix_{name}.pt", "--images", test, "--out", preds,
                     "--device", device], log)
    return preds, seconds


def oof_issues(labels: Path, name: str, work: Path, args) -> Path:
    """Out-of-fold predictions (3 folds) on ``labels`` and the issues found in them."""
    out = work / f"oof_{name}"
    sched = {"optimizer": "SGD", "lr0": 0.01, "warmup_epochs": 3.0, "close_mosaic": 10}
    exp = experiment(work / f"oof_{name}.yaml", labels, None, out,
                     [{"name": "v5n", **base_model(args.epochs, args.imgsz, **sched)}], {"conf": 0.001})
    issues = work / f"issues_{name}.json"
    if not issues.exists():
        kfold(exp, "--devices", getattr(args, "device", "cpu"))
        _run(["-m", "coco2yolo.label_issues", "--gt", out / "oof" / "gt.json", "--preds", out / "oof" / "v5n.json",
              "--out", issues, "--top", "100000"], work / "logs" / f"issues_{name}.log")
    return issues


def fix_precision(changes: Path, truth: dict, original: dict) -> dict:
    """How many applied changes undid a corruption (see the module docstring), by action."""
    import csv

    orig = {a["id"]: a for a in original["annotations"]}
    deleted = truth["deleted"]
    undone = Counter()
    applied = Counter()
    for r in csv.DictReader(changes.open()):
        act = r["action"]
        applied[act] += 1
        aid = int(r["annotation_id"]) if r["annotation_id"] else None
        after = [float(v) for v in r["bbox_after"].split()] if r["bbox_after"] else None
        if act in ("class", "class and box") and aid in truth["swapped"] and \
                int(r["category_after"]) == orig[aid]["category_id"]:
            undone[act] += 1
        elif act == "box" and aid in truth["shifted"] and \
                iou_xyxy(xywh_to_xyxy(after), xywh_to_xyxy(orig[aid]["bbox"]))[0, 0] >= 0.5:
            undone[act] += 1
        elif act == "added":
            img = int(r["image_id"])
            if any(d_img == img and d_cat == int(r["category_after"]) and
                   iou_xyxy(xywh_to_xyxy(after), xywh_to_xyxy(box))[0, 0] >= 0.5 for d_img, box, d_cat in deleted):
                undone[act] += 1
    total = sum(applied.values())
    return {"applied": dict(applied), "undid_a_corruption": dict(undone), "precision": sum(undone.values()) / max(total, 1)}


def iou(a: list, b: list) -> float:
    """IoU of two COCO [x, y, w, h] boxes."""
    return float(iou_xyxy(xywh_to_xyxy(a), xywh_to_xyxy(b))[0, 0])


def undoes(issue: dict, truth: dict, orig: dict) -> bool:
    """Whether accepting ``issue``'s suggested fix would undo a corruption (the tests of :func:`fix_precision`);
    ``orig``: the clean annotations by id."""
    aid = issue.get("annotation_id")
    if issue["kind"] == "wrong_class":
        return aid in truth["swapped"] and issue.get("suggested_category_id") == orig[aid]["category_id"]
    if issue["kind"] == "bad_box":
        return aid in truth["shifted"] and iou(issue["suggested_bbox"], orig[aid]["bbox"]) >= 0.5
    if issue["kind"] == "missing":
        return any(img == issue["image_id"] and cat == issue.get("suggested_category_id")
                   and iou(issue["suggested_bbox"], box) >= 0.5 for img, box, cat in truth["deleted"])
    return False


def suggestion_precision(issues: list[dict], truth: dict, original: dict) -> dict:
    """For each kind of issue, by its score: how many issues there are and how many of their suggested fixes would undo
    a corruption (:func:`undoes`), before anything is applied."""
    orig = {a["id"]: a for a in original["annotations"]}
    out: dict = {}
    for kind in KINDS:
        rows = [(i["score"], undoes(i, truth, orig)) for i in issues if i["kind"] == kind]
        out[kind] = {f"score>={lo}": {"issues": sum(1 for sc, _ in rows if sc >= lo),
                                      "undo_a_corruption": sum(1 for sc, u in rows if sc >= lo and u)}
                     for lo in (0.0, 0.5, 0.9)}
    return out


def reviewer_decisions(issues: list[dict], truth: dict, original: dict, k: int) -> list[dict]:
    """A simulated reviewer who knows the truth, shown the top ``k`` issues (best first, as the review page shows
    them): accepts each fix that undoes a corruption, rejects the rest (a decisions file's records). The ceiling
    of a person's review for this finder: what it misses, no reviewer can fix."""
    orig = {a["id"]: a for a in original["annotations"]}
    return [{"id": i["id"], "decision": "accept" if undoes(i, truth, orig) else "reject"} for i in issues[:k]]


EDIT_IOU = 0.3  # a missing box's suggestion this close to an unlabelled object: the editing reviewer draws it


def editing_reviewer_decisions(issues: list[dict], truth: dict, original: dict, k: int) -> list[dict]:
    """The reviewer of :func:`reviewer_decisions` who also edits (the review page's ``e``), on two pages as ``coco2yolo
    review --kinds`` writes them: the top ``k`` issues about annotations (wrong_class, bad_box, no_object) and the top
    ``k`` missing boxes. Every corrupted annotation shown gets its class and box back, whatever the suggestion; a
    missing box whose suggestion overlaps a deleted box at IoU >= ``EDIT_IOU`` adds that box with its class (each
    deleted box once); the rest are rejected. The ceiling of ``k`` + ``k`` decisions by a person."""
    orig = {a["id"]: a for a in original["annotations"]}
    shown = [i for i in issues if i["kind"] != "missing"][:k] + [i for i in issues if i["kind"] == "missing"][:k]
    restored: set[int] = set()
    out = []
    for i in shown:
        aid = i.get("annotation_id")
        if i["kind"] != "missing" and (aid in truth["swapped"] or aid in truth["shifted"]):
            out.append({"id": i["id"], "decision": "accept", "category_id": orig[aid]["category_id"],
                        "bbox": list(orig[aid]["bbox"])})
            continue
        if i["kind"] == "missing":
            near = [(iou(i["suggested_bbox"], box), n) for n, (img, box, _) in enumerate(truth["deleted"])
                    if n not in restored and img == i["image_id"]]
            best, n = max(near, default=(0.0, -1))
            if best >= EDIT_IOU:
                restored.add(n)
                _, box, cat = truth["deleted"][n]
                out.append({"id": i["id"], "decision": "accept", "category_id": cat, "bbox": list(box)})
                continue
        out.append({"id": i["id"], "decision": "reject"})
    return out


def score_paired(test_gt: Path, preds: dict[str, Path], n_boot: int = 1000) -> dict:
    """mAP50 of each predictions file on the held-out photos, with the bootstrap samples (the same resamples for
    every file, so differences and ratios are paired)."""
    from coco2yolo.cocodata import CategoryMap
    from coco2yolo.evaluation.metrics import bootstrap_map50, bootstrap_weights, faster_gt, prepare_gt, score

    data = load_dataset(test_gt)
    cmap = CategoryMap(data["categories"])
    gt = prepare_gt(data)
    coco_gt = faster_gt(gt)
    w = bootstrap_weights(len(data["images"]), n_boot, seed=0)
    out = {}
    for name, path in preds.items():
        s = score(gt, load_results(path, {im["id"] for im in data["images"]}, set(cmap.ids), data["images"]), cmap,
                  coco_gt=coco_gt)
        boot = bootstrap_map50(s.matches, w)
        out[name] = {"mAP50": s.map50, "ci95": list(interval(boot)), "_boot": boot}
    return out


def seed_resampled(runs: dict[str, dict[int, np.ndarray]], seed: int = 0) -> dict[str, np.ndarray]:
    """Each label set's mean mAP50 over its seeds in every bootstrap resample.

    ``runs[set][seed]`` holds one trained model's mAP50 on each resample of the held-out photos (the same resamples
    for every model, see :func:`score_paired`). Each resample also draws the seeds with replacement, one draw per
    list of seeds, so that sets trained on the same seeds stay paired: the intervals then include how far another
    training moves a model, which resampling photos alone leaves out (with few seeds they are still too narrow)."""
    rng = np.random.default_rng(seed)
    draws: dict[tuple, np.ndarray] = {}
    out = {}
    for name, by_seed in runs.items():
        seeds = tuple(sorted(by_seed))
        stack = np.stack([by_seed[s] for s in seeds])  # (seeds, resamples)
        if seeds not in draws:
            draws[seeds] = rng.integers(0, len(seeds), size=stack.shape)
        out[name] = np.take_along_axis(stack, draws[seeds], axis=0).mean(axis=0)
    return out


def dose_response(undone: dict[str, float], samples: dict[str, np.ndarray], point: dict[str, float]) -> dict:
    """Held-out mAP50 against the share of the corruptions undone, one straight line through every label set given.

    ``undone[set]`` is the share of the corruptions that set's labels undo (0 for the corrupted labels, 1 for the
    clean ones; only sets that made no wrong change belong here); ``samples[set]`` its mean mAP50 in each resample
    (:func:`seed_resampled`), ``point[set]`` over its seeds. The slope is what undoing every corruption buys as the
    sets together estimate it (the loss, from every training rather than the clean and corrupted ones alone), with
    the interval of the slopes fitted to each resample; ``at`` the line's value at each set's share."""
    names = list(undone)
    x = np.array([undone[n] for n in names], dtype=float)
    fit = np.polyfit(x, np.array([point[n] for n in names]), 1)
    slopes = np.polyfit(x, np.stack([samples[n] for n in names]), 1)[0]  # one line per resample
    return {"sets": {n: undone[n] for n in names}, "slope": float(fit[0]), "slope_ci95": list(interval(slopes)),
            "intercept": float(fit[1]), "at": {n: float(np.polyval(fit, undone[n])) for n in names}}


def fix_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="bench_label_issues.py fix")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--share", type=float, default=0.05)
    p.add_argument("--top", type=float, nargs="*", default=[0.5, 1.0, 2.0],
                   help="fixed sets: the top K issues of every kind, K = each value times the corrupted boxes")
    p.add_argument("--test-share", type=float, default=0.3)
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=["wrong_class", "missing"],
                   help="the kinds of --kinds-top's fixed sets (review apply --kinds)")
    p.add_argument("--kinds-top", type=float, nargs="*", default=[],
                   help="further fixed sets: the top K issues of --kinds only, K = each value times the corrupted boxes")
    p.add_argument("--review", type=float, nargs="*", default=[],
                   help="further fixed sets: the top K issues (K = each value times the corrupted boxes; more than "
                        "there are: all of them) decided by a simulated reviewer who accepts exactly the fixes that "
                        "undo a corruption (review apply --decisions): the ceiling of a person's review")
    p.add_argument("--edit-review", type=int, nargs="*", default=[],
                   help="further fixed sets: the simulated reviewer, editing, shown the top K issues about annotations "
                        "and the top K missing boxes (two review pages, 2K decisions) for each K given; a K past both "
                        "pages: every issue")
    p.add_argument("--work", default=str(OUT / "label_fix"), help="where the runs go (each step is skipped when done)")
    p.add_argument("--final-epochs", type=int, default=None,
                   help="epochs of the models scored on the held-out photos (default: --epochs, as the folds)")
    p.add_argument("--own-top", type=float, default=0.5,
                   help="the honest question's K, times the number of corrupted boxes (default 0.5: 246 on TrashNet)")
    p.add_argument("--no-own", action="store_true",
                   help="skip the question on TrashNet's own labels (three out-of-fold trainings and one model fewer)")
    p.add_argument("--noise-seeds", type=int, nargs="*", default=[],
                   help="train the corrupted labels' model again with each of these seeds: how far two trainings of "
                        "the same labels differ (the bootstrap over held-out photos leaves that out)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="train every label set's model once per seed (the corrupted and the fixed sets on the same "
                        "seeds, paired): figures are means over the seeds, intervals resample seeds and photos")
    p.add_argument("--clean-seeds", type=int, nargs="+", default=None,
                   help="the seeds of the clean labels' model, the ceiling (default: --seeds)")
    p.add_argument("--device", default="cpu",
                   help="where every model trains and predicts: cpu (the figures so far) or a CUDA device such as 0")
    args = p.parse_args(argv)

    work = Path(args.work)
    train, test, test_gt = prepare(work, test_share=args.test_share, seed=0)
    clean = json.loads(train.read_text())
    bad, truth = corrupt(clean, args.share, seed=0)
    truth["deleted"] = [(img, box, next(a["category_id"] for a in clean["annotations"]
                                        if a["image_id"] == img and a["bbox"] == box)) for img, box in truth["deleted"]]
    bad_path = work / "train_corrupted.json"
    bad_path.write_text(json.dumps(bad))
    n_bad = len(truth["swapped"]) + len(truth["shifted"]) + len(truth["deleted"])
    t0 = time.time()
    issues = oof_issues(bad_path, "corrupted", work, args)
    found = json.loads(issues.read_text())  # read once: the precision by kind, the reviewer, the record
    by_kind = suggestion_precision(found, truth, clean)
    print("suggestions that would undo a corruption, by kind and score:", json.dumps(by_kind), flush=True)
    labels = {"clean": train, "corrupted": bad_path}
    fixes = {}
    for frac, kinds in [(f, None) for f in args.top] + [(f, args.kinds) for f in args.kinds_top]:
        k = round(frac * n_bad)
        name = f"fixed_top{k}" + ("_" + "+".join(kinds) if kinds else "")
        fixed = work / f"{name}.json"
        _run(["-m", "coco2yolo.review", "apply", "--gt", bad_path, "--issues", issues, "--accept-top", k, "--out", fixed,
              *(["--kinds", *kinds] if kinds else [])], work / "logs" / "apply.log")
        labels[name] = fixed
        fixes[name] = {"k": k, "top_share": frac, "kinds": kinds or "all",
                       **fix_precision(fixed.with_name(fixed.stem + ".changes.csv"), truth, clean)}
        print(name, fixes[name], flush=True)
    def applied(name: str, decided: list[dict]) -> Path:
        """A simulated reviewer's decisions written to ``name``.decisions.json and applied: the fixed labels."""
        fixed, decisions = work / f"{name}.json", work / f"{name}.decisions.json"
        decisions.write_text(json.dumps(decided))
        _run(["-m", "coco2yolo.review", "apply", "--gt", bad_path, "--issues", issues, "--decisions", decisions,
              "--out", fixed], work / "logs" / "apply.log")
        return fixed

    for frac in args.review:
        k = min(round(frac * n_bad), len(found))
        name = f"reviewed_top{k}"
        labels[name] = applied(name, reviewer_decisions(found, truth, clean, k))
        fixes[name] = {"k": k, "top_share": frac, "kinds": "all", "reviewed": True,
                       **fix_precision(labels[name].with_name(name + ".changes.csv"), truth, clean)}
        print(name, fixes[name], flush=True)
    longest_page = max(sum(i["kind"] == "missing" for i in found), sum(i["kind"] != "missing" for i in found))
    for k in args.edit_review:
        k = min(k, longest_page)  # a K past both pages shows every issue: one name for all of them
        name = f"edited_top{k}x2"
        decided = editing_reviewer_decisions(found, truth, clean, k)
        labels[name] = applied(name, decided)
        fixes[name] = {"k": len(decided), "kinds": "all", "reviewed": True, "edits": True,
                       **fix_precision(labels[name].with_name(name + ".changes.csv"), truth, clean)}
        print(name, fixes[name], flush=True)
    # the honest question: the top fixes on TrashNet's own labels
    k_own = round(args.own_top * n_bad)
    own_name = f"own_fixed_top{k_own}"
    if not args.no_own:
        own_issues = oof_issues(train, "clean", work, args)
        own_fixed = work / f"{own_name}.json"
        _run(["-m", "coco2yolo.review", "apply", "--gt", train, "--issues", own_issues, "--accept-top", k_own, "--out",
              own_fixed], work / "logs" / "apply.log")
        labels[own_name] = own_fixed
        import csv

        own_actions = Counter(r["action"]
                              for r in csv.DictReader(own_fixed.with_name(own_fixed.stem + ".changes.csv").open()))
    # the models: the corrupted and fixed sets seed by seed (paired), then the ceiling, then TrashNet's own labels
    clean_seeds = args.clean_seeds or args.seeds
    plan = [(name, labels[name], seed) for seed in args.seeds for name in labels if name not in ("clean", own_name)]
    plan += [("clean", train, seed) for seed in clean_seeds]
    plan += [(own_name, labels[own_name], seed) for seed in args.seeds if own_name in labels]
    plan += [("corrupted", bad_path, seed) for seed in args.noise_seeds]  # the corrupted labels again
    preds, seconds = {}, {}
    for name, path, seed in plan:
        run = run_name(name, seed)
        preds[run], seconds[run] = trained_predictions(path, name, work, test, args, seed=seed)
        print(run, "trained and predicted", round(seconds[run]), "s", flush=True)
    scores = score_paired(test_gt, preds)
    seeds_of = {name: clean_seeds if name == "clean" else args.seeds for name in labels}
    by_seed = {name: {seed: scores[run_name(name, seed)]["mAP50"] for seed in seeds} for name, seeds in seeds_of.items()}
    point = {name: float(np.mean(list(runs.values()))) for name, runs in by_seed.items()}
    samples = seed_resampled({name: {seed: scores[run_name(name, seed)]["_boot"] for seed in seeds}
                              for name, seeds in seeds_of.items()})
    base, ceiling = samples["corrupted"], samples["clean"]
    loss = point["clean"] - point["corrupted"]
    result = {}
    for name in fixes:
        gain = point[name] - point["corrupted"]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = (samples[name] - base) / (ceiling - base)
        result[name] = {**fixes[name], "mAP50": point[name], "ci95": list(interval(samples[name])),
                        "mAP50_by_seed": by_seed[name], "minus_corrupted": gain,
                        "minus_corrupted_ci95": list(interval(samples[name] - base)),
                        "minus_corrupted_by_seed": {s: by_seed[name][s] - by_seed["corrupted"][s] for s in args.seeds},
                        "recovered_share": gain / loss if loss else None,
                        "recovered_share_ci95": list(interval(ratio[np.isfinite(ratio)]))}
        print(name, {k: v for k, v in result[name].items() if k not in fixes[name]}, flush=True)
    names = list(fixes)  # the fixed sets against each other, paired as each is against the corrupted labels
    between = {f"{a} minus {b}": {"difference": point[a] - point[b],
                                  "ci95": list(interval(samples[a] - samples[b])),
                                  "by_seed": {s: by_seed[a][s] - by_seed[b][s] for s in args.seeds}}
               for i, a in enumerate(names) for b in names[i + 1:]}
    for key, v in between.items():
        print(key, v, flush=True)
    # every set that made no wrong change, on one line: mAP50 against the share of the corruptions undone
    undone = {"corrupted": 0.0, **{n: sum(f["undid_a_corruption"].values()) / n_bad for n, f in fixes.items()
                                   if f["precision"] == 1.0}, "clean": 1.0}
    dose = dose_response(undone, samples, point) if len(undone) > 2 else None
    if dose:
        print("mAP50 against the share of the corruptions undone:", dose, flush=True)
    own_result = None if args.no_own else {
        "k": k_own, "actions": dict(own_actions), "mAP50": point[own_name], "ci95": list(interval(samples[own_name])),
        "mAP50_by_seed": by_seed[own_name], "minus_clean": point[own_name] - point["clean"],
        "minus_clean_ci95": list(interval(samples[own_name] - ceiling))}
    record(Path(args.work).name, {  # bench/out/label_fix.json for the default --work
        "command": f"python bench/bench_label_issues.py fix --epochs {args.epochs} --imgsz {args.imgsz} --share "
                   f"{args.share} --top {' '.join(map(str, args.top))} --test-share {args.test_share}"
                   + (f" --final-epochs {args.final_epochs}" if args.final_epochs else "")
                   + (f" --kinds {' '.join(args.kinds)} --kinds-top {' '.join(map(str, args.kinds_top))}"
                      if args.kinds_top else "")
                   + (f" --review {' '.join(map(str, args.review))}" if args.review else "")
                   + (f" --edit-review {' '.join(map(str, args.edit_review))}" if args.edit_review else "")
                   + (" --no-own" if args.no_own else f" --own-top {args.own_top}")
                   + (f" --noise-seeds {' '.join(map(str, args.noise_seeds))}" if args.noise_seeds else "")
                   + (f" --seeds {' '.join(map(str, args.seeds))}" if args.seeds != [0] else "")
                   + (f" --clean-seeds {' '.join(map(str, args.clean_seeds))}" if args.clean_seeds else "")
                   + (f" --device {args.device}" if args.device != "cpu" else "")
                   + (f" --work {args.work}" if args.work != str(OUT / "label_fix") else ""),
        "train_images": len(clean["images"]), "train_boxes": len(clean["annotations"]),
        "held_out_images": len(json.loads(test.read_text())["images"]),
        "corrupted": {"swapped": len(truth["swapped"]), "shifted": len(truth["shifted"]), "deleted": len(truth["deleted"])},
        "issues_found": len(found), "suggestions_by_kind": by_kind,
        "seeds": args.seeds, "clean_seeds": clean_seeds,
        "clean": {"mAP50": point["clean"], "ci95": list(interval(ceiling)), "mAP50_by_seed": by_seed["clean"]},
        "corrupted_model": {"mAP50": point["corrupted"], "ci95": list(interval(base)),
                            "mAP50_by_seed": by_seed["corrupted"]},
        "loss": loss, "loss_ci95": list(interval(ceiling - base)), "fixed": result, "between_fixed": between,
        "dose_response": dose,
        "own_labels": own_result,
        "training_noise": {run_name("corrupted", seed): {
            "mAP50": scores[run_name("corrupted", seed)]["mAP50"],
            "minus_seed0": scores[run_name("corrupted", seed)]["mAP50"] - scores["corrupted"]["mAP50"],
            "minus_seed0_ci95": list(interval(scores[run_name("corrupted", seed)]["_boot"] - scores["corrupted"]["_boot"]))}
            for seed in args.noise_seeds if "corrupted" in scores},
        "seconds": round(time.time() - t0), "seconds_per_model": {k: round(v) for k, v in seconds.items()}})


if __name__ == "__main__":
    assert LEGACY.exists()
    main()
