"""Which annotations are probably wrong, ranked, from out-of-fold predictions.

    python -m coco2yolo.label_issues --gt train.json --preds oof.json --out issues.json [--report issues.html] [--top N]

The predictions must come from models that never trained on the image (``python -m coco2yolo.kfold``
writes them: ``OUT/oof/NAME.json`` with ``OUT/oof/gt.json``). Four kinds of issue, each with a score in
[0, 1] (higher: more likely wrong), all ranked together:

- ``wrong_class``: a confident prediction of another class sits on the annotation (cleanlab's swap score,
  ``1 - score``); the suggested class is that prediction's.
- ``bad_box``: the confident predictions of the annotation's class overlap it poorly (cleanlab's
  bad-location score, ``1 - score``).
- ``missing``: a confident prediction overlaps no annotation at all (cleanlab's overlooked score,
  ``1 - score``); the issue carries the predicted box and class, and no annotation id.
- ``no_object``: no prediction of any class supports the annotation: ``1 - max(score x min(1, IoU / 0.5))``
  over the predictions (cleanlab has no such kind; a spurious box gets none of its scores).

cleanlab's confidence thresholds (0.95 for "confident", 0.5 for "considered") assume calibrated detectors;
YOLO scores run lower, so both are options, and their defaults were chosen on TrashNet with corrupted
labels (BENCHMARKS.md). An annotation gets its most likely kind only. ``python -m coco2yolo ...
--drop-annotations issues.json`` removes the chosen ones as a reported cleaning rule.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from coco2yolo import cli
from coco2yolo.boxes import iou_xyxy, xywh_to_xyxy
from coco2yolo.cocodata import CategoryMap, load_dataset
from coco2yolo.errors import UserError
from coco2yolo.fileio import guard_outputs, write_json, write_text
from coco2yolo.results import Detections, load_results

KINDS = ("wrong_class", "no_object", "missing", "bad_box")
ISSUES_FORMAT = "coco2yolo-label-issues/1"
HIGH, LOW = 0.5, 0.25  # confidence thresholds (cleanlab's: 0.95, 0.5), chosen on TrashNet (BENCHMARKS.md)


def _inputs(gt: dict[str, Any], dets: Detections, cmap: CategoryMap, floor: float
            ) -> tuple[list[int], list[dict[str, Any]], list[list[np.ndarray]], list[list[int]]]:
    """cleanlab's per-image labels and predictions (MMDetection layout), and each label's annotation index."""
    images = sorted(im["id"] for im in gt["images"])
    row = {iid: k for k, iid in enumerate(images)}
    labels = [{"bboxes": [], "labels": []} for _ in images]
    ann_of: list[list[int]] = [[] for _ in images]
    for k, a in enumerate(gt["annotations"]):
        if a.get("iscrowd", 0):
            continue
        r = row[a["image_id"]]
        labels[r]["bboxes"].append(xywh_to_xyxy(a["bbox"])[0])
        labels[r]["labels"].append(cmap.class_of(a["category_id"]))
        ann_of[r].append(k)
    labels = [{"bboxes": np.array(lb["bboxes"], float).reshape(-1, 4), "labels": np.array(lb["labels"], np.int64)}
              for lb in labels]
    keep = dets.select(dets.score >= floor)
    preds: list[list[np.ndarray]] = [[np.zeros((0, 5)) for _ in range(len(cmap))] for _ in images]
    xyxy = xywh_to_xyxy(keep.xywh)
    by = defaultdict(list)
    for k, (i, c) in enumerate(zip(keep.image_id.tolist(), keep.category_id.tolist())):
        by[(row[i], cmap.class_of(c))].append(k)
    for (r, c), ks in by.items():
        preds[r][c] = np.c_[xyxy[ks], keep.score[ks]]
    return images, labels, preds, ann_of


def find_issues(gt: dict[str, Any], dets: Detections, high: float = HIGH, low: float = LOW) -> list[dict[str, Any]]:
    """Every issue found, ranked most likely first (see the module docstring)."""
    import warnings

    from cleanlab.object_detection import rank

    cmap = CategoryMap(gt["categories"])
    images, labels, preds, ann_of = _inputs(gt, dets, cmap, floor=min(low, 0.01))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        swap = rank.compute_swap_box_scores(labels=labels, predictions=preds, high_probability_threshold=high)
        badloc = rank.compute_badloc_box_scores(labels=labels, predictions=preds, low_probability_threshold=low)
        overlooked = rank.compute_overlooked_box_scores(labels=labels, predictions=preds,
                                                        high_probability_threshold=high)
    anns = gt["annotations"]
    issues = []
    for r, iid in enumerate(images):
        p = [(c, row) for c, arr in enumerate(preds[r]) for row in arr]
        p_cls = np.array([c for c, _ in p], np.int64)
        p_box = np.array([row[:4] for _, row in p], float).reshape(-1, 4)
        p_score = np.array([row[4] for _, row in p], float)
        lb = labels[r]
        iou = iou_xyxy(lb["bboxes"], p_box) if len(p) else np.zeros((len(lb["labels"]), 0))
        for j, k in enumerate(ann_of[r]):
            a = anns[k]
            cands = {}
            if np.isfinite(swap[r][j]):
                other = (p_cls != lb["labels"][j]) & (p_score > high)
                if other.any():
                    best = np.flatnonzero(other)[np.argmax(iou[j][other])]
                    cands["wrong_class"] = (1 - swap[r][j], cmap.category_of(int(p_cls[best])))
            if np.isfinite(badloc[r][j]):
                cands["bad_box"] = (1 - badloc[r][j], None)
            support = float(np.max(p_score * np.minimum(1.0, iou[j] / 0.5), initial=0.0))
            cands["no_object"] = (1 - support, None)
            kind, (score, suggested) = max(cands.items(), key=lambda kv: kv[1][0])
            if score > 0:
                issues.append({"kind": kind, "score": float(score), "annotation_id": a["id"], "image_id": iid,
                               "bbox": list(map(float, a["bbox"])), "category_id": a["category_id"],
                               "suggested_category_id": suggested})
        for m, s in enumerate(overlooked[r]):
            if np.isfinite(s) and s < 1:
                x1, y1, x2, y2 = p_box[m]
                c = cmap.category_of(int(p_cls[m]))
                issues.append({"kind": "missing", "score": float(1 - s), "annotation_id": None, "image_id": iid,
                               "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "category_id": c,
                               "suggested_category_id": c, "prediction_score": float(p_score[m])})
    issues.sort(key=lambda d: (-d["score"], d["image_id"], d["annotation_id"] if d["annotation_id"] is not None else -1))
    return issues


def render_issues(data: dict[str, Any], dets: Detections, issues: list[dict[str, Any]], root: Path, max_mb: float,
                  low: float, args: argparse.Namespace, shown: int = 60) -> str:
    """A page of the top issues: around each, the annotation (or the missing box) and the model's boxes."""
    from importlib import resources

    import jinja2

    from coco2yolo.evaluation import gallery
    from coco2yolo.evaluation.report import versions

    cmap = CategoryMap(data["categories"])
    file_of = {im["id"]: im["file_name"] for im in data["images"]}
    budget = gallery.Budget(max_mb * 1e6)
    rows, note = [], None
    probe = next(iter(file_of.values()), None)
    if probe is None or gallery.read(root, probe) is None:
        note = f"images not found under {root} (file_name {probe!r}): the pictures are left out"
    for issue in issues[:shown]:
        row = {**issue, "name": cmap.name_of(issue["category_id"]), "file_name": file_of[issue["image_id"]],
               "suggested": cmap.name_of(issue["suggested_category_id"])
               if issue["suggested_category_id"] is not None else None, "uri": None}
        img = gallery.read(root, file_of[issue["image_id"]]) if note is None else None
        if img is not None:
            box = xywh_to_xyxy(issue["bbox"])[0]
            region, off = gallery.crop(img, box, context=1.5)
            sel = (dets.image_id == issue["image_id"]) & (dets.score >= low)
            p_box = xywh_to_xyxy(dets.xywh[sel]) - off
            pic = gallery.draw_boxes(region, p_box, [f"{cmap.name_of(int(c))} {s:.2f}" for c, s in
                                                     zip(dets.category_id[sel].tolist(), dets.score[sel].tolist())],
                                     thickness=1)
            what = "annotation" if issue["annotation_id"] is not None else "missing?"
            pic = gallery.draw_boxes(pic, (box - off)[None], [f"{what}: {row['name']}"], ["issue"], thickness=3)
            row["uri"] = gallery.jpeg_uri(gallery.thumbnail(pic, 360), budget)
            if row["uri"] is None:
                note = f"pictures stopped at the {max_mb:g} MB cap (--report-max-mb)"
        rows.append(row)
    template = resources.files("coco2yolo.evaluation").joinpath("templates", "issues.html.j2").read_text("utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    counts = {k: sum(1 for i in issues if i["kind"] == k) for k in KINDS}
    return env.from_string(template).render(
        title=f"Label issues: {Path(args.gt).name}", gt=args.gt, preds=args.preds, issues=rows, total=len(issues),
        counts=counts, note=note, high=args.high_conf, low=args.low_conf, versions=versions())


def read_issues(path: str | Path, data: dict[str, Any], kinds: list[str]) -> tuple[set[int], dict[int, str]]:
    """The annotation ids to drop from an issues file, checked against the dataset (id -> kind)."""
    from coco2yolo.fileio import load_json

    doc = load_json(path, "label issues")
    rows = doc.get("issues") if isinstance(doc, dict) else doc
    if not isinstance(rows, list):
        raise UserError(f"{path}: expected the list written by python -m coco2yolo.label_issues")
    by_id = {a["id"]: a for a in data["annotations"]}
    out: dict[int, str] = {}
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or r.get("kind") not in KINDS:
            raise UserError(f"{path}: issue {i}: 'kind' must be one of {', '.join(KINDS)}")
        if r["kind"] not in kinds or r.get("annotation_id") is None:
            continue
        a = by_id.get(r["annotation_id"])
        if a is None or a["image_id"] != r.get("image_id"):
            raise UserError(f"{path}: issue {i}: annotation {r['annotation_id']} (image {r.get('image_id')}) is not in "
                            "this dataset; the issues file was made for another one")
        out[r["annotation_id"]] = r["kind"]
    return set(out), out


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog="python -m coco2yolo.label_issues",
                           description="Rank the annotations most likely wrong, from out-of-fold predictions.")
    p.add_argument("--gt", required=True, help="the COCO dataset whose labels to check (e.g. OUT/oof/gt.json)")
    p.add_argument("--preds", required=True, help="out-of-fold predictions on every image of --gt (COCO results "
                   "or a submission CSV), e.g. OUT/oof/NAME.json of python -m coco2yolo.kfold")
    p.add_argument("--out", required=True, help="issues JSON: a list ranked most likely first")
    p.add_argument("--report", default=None, help="also an HTML page showing the top issues")
    p.add_argument("--top", type=cli.POSITIVE_INT, default=500, help="issues kept (500); the page shows the first 60")
    p.add_argument("--high-conf", type=cli.number(0, 1, lo_open=True, hi_open=True), default=HIGH,
                   help=f"score of a prediction confident enough to claim a wrong class or a missing box ({HIGH})")
    p.add_argument("--low-conf", type=cli.number(0, 1, lo_open=True, hi_open=True), default=LOW,
                   help=f"score of a prediction considered for a badly placed box ({LOW})")
    p.add_argument("--report-max-mb", type=cli.number(0.1), default=20.0, help="size cap on the page's pictures (20)")
    return p


def main(args: argparse.Namespace) -> int:
    guard_outputs({"--out": args.out, "--report": args.report}, {"--gt": args.gt, "--preds": args.preds})
    data = load_dataset(args.gt)
    from coco2yolo.evaluation.metrics import check_scorable

    check_scorable(data, args.gt)
    dets = load_results(args.preds, {im["id"] for im in data["images"]}, {c["id"] for c in data["categories"]},
                        data["images"])
    covered = len(set(dets.image_id.tolist()))
    issues = find_issues(data, dets, args.high_conf, args.low_conf)[: args.top]
    write_json(args.out, issues, indent=1)
    counts = {k: sum(1 for i in issues if i["kind"] == k) for k in KINDS}
    print(f"wrote {args.out}: {len(issues)} issues ranked ({', '.join(f'{v} {k}' for k, v in counts.items())}); "
          f"predictions on {covered} of {len(data['images'])} images")
    if covered < len(data["images"]) / 2:
        print(f"warning: only {covered} of {len(data['images'])} images have predictions; out-of-fold predictions "
              "should cover every image", file=sys.stderr)
    if args.report:
        write_text(args.report, render_issues(data, dets, issues, Path(args.gt).parent, args.report_max_mb,
                                              args.low_conf, args))
        print(f"report written to {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser()))
