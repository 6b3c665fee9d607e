"""Which annotations are probably wrong, ranked, from out-of-fold predictions.

    python -m coco2yolo.label_issues --gt train.json --preds oof.json --out issues.json [--report issues.html] [--top N]

The predictions must come from models that never trained on the image (``python -m coco2yolo.kfold``
writes them: ``OUT/oof/NAME.json`` with ``OUT/oof/gt.json``). Every score is in [0, 1], higher: more likely
wrong, and all issues are ranked together. For an annotation of class c, from the predictions on its image:

- ``confirm``: the best score of a class-c prediction at IoU >= ``--iou`` (0.5, the metric's) with it: how
  far the model agrees with the label as it is.
- ``other``: the best score of another class's prediction at IoU >= ``--iou``; ``near``: the best score of a
  class-c prediction overlapping it at 0.1 <= IoU < ``--iou``. Either counts only from ``--low-conf`` up.

The annotation's score is ``(1 - confirm) x (0.9 + 0.1 x max(other, near))``: mostly how little the model
confirms it, with the evidence for another explanation breaking ties. Its kind is the explanation:
``wrong_class`` when ``other`` is the larger (``suggested_category_id`` is that prediction's class),
``bad_box`` when ``near`` is (``suggested_bbox`` is that prediction's box), ``no_object`` when neither reaches
``--low-conf`` (the fix removes it). A fourth kind has no annotation: ``missing``, a prediction scored
``--high-conf`` or more that overlaps no annotation of any class at IoU >= 0.1 (one per object: the best of
overlapping ones; the fix adds its box and class); its score is the prediction's score. Every issue has a
stable ``id`` (:mod:`coco2yolo.dataset.issues`, the file's format). ``coco2yolo review`` shows them one by one
for a person to decide, and ``coco2yolo review apply`` writes the fixed dataset.

cleanlab's object-detection scores were tried first and measured near chance with YOLO models trained
briefly on TrashNet (ROC AUC 0.49 to 0.62 against the corruptions they target, beside 0.78 and 0.82 for this
score); BENCHMARKS.md has the figures and the defaults' choice. ``python -m coco2yolo ... --drop-annotations
issues.json`` removes the chosen ones as a reported cleaning rule.
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
from coco2yolo.dataset.issues import ISSUE_KINDS as KINDS  # the issues file's format
from coco2yolo.dataset.issues import issue_id
from coco2yolo.fileio import guard_outputs, write_json, write_text
from coco2yolo.results import Detections, load_results

HIGH, LOW = 0.1, 0.25  # prediction scores: a missing box's, another explanation's (chosen on TrashNet, BENCHMARKS.md)
IOU = 0.5  # a prediction at this IoU or more confirms (or contradicts) an annotation
NEAR_IOU = 0.1  # a prediction of the class overlapping an annotation this much (below IOU) is a badly placed box
FREE_IOU = 0.1  # a prediction overlapping no annotation this much is a missing box (chosen on TrashNet, BENCHMARKS.md)


def _xywh(xyxy: np.ndarray) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return [x1, y1, x2 - x1, y2 - y1]


def _best(score: np.ndarray, mask: np.ndarray) -> tuple[float, int]:
    if not mask.any():
        return 0.0, -1
    k = np.flatnonzero(mask)[np.argmax(score[mask])]
    return float(score[k]), int(k)


def first_of_each(boxes_xyxy: np.ndarray, iou_thr: float, block: int = 256, chunk: int = 4096) -> list[int]:
    """Greedy, in the given order: keep a box unless it overlaps a kept one at IoU >= ``iou_thr``; the indices
    kept. Each block of boxes meets the kept ones in one array operation (a box at a time was quadratic in
    numpy calls: 3 million predictions took 4x the time of 1 million); memory stays block x chunk."""
    kept: list[int] = []
    n = len(boxes_xyxy)
    for s in range(0, n, block):
        blk = boxes_xyxy[s:s + block]
        gone = np.zeros(len(blk), dtype=bool)
        for c in range(0, len(kept), chunk):
            gone |= (iou_xyxy(blk, boxes_xyxy[kept[c:c + chunk]]) >= iou_thr).any(axis=1)
        inner = iou_xyxy(blk, blk) >= iou_thr  # IoU is symmetric to the bit (min, max, a + b)
        for i in range(len(blk)):
            if not gone[i]:
                kept.append(s + i)
                gone |= inner[i]
    return kept


def find_issues(gt: dict[str, Any], dets: Detections, high: float = HIGH, low: float = LOW,
                iou_thr: float = IOU) -> list[dict[str, Any]]:
    """Every issue found, ranked most likely first (see the module docstring)."""
    xyxy = xywh_to_xyxy(dets.xywh)
    by_image = np.argsort(dets.image_id, kind="stable")  # each image's predictions, in file order (no lists:
    sorted_ids = dets.image_id[by_image]                  # 10 million Python ints took a gigabyte)
    anns_of: dict[int, list[dict[str, Any]]] = defaultdict(list)
    crowd_of: dict[int, list[list[float]]] = defaultdict(list)  # crowd regions: checked, but cover predictions
    for a in gt["annotations"]:
        if a.get("iscrowd", 0):
            crowd_of[a["image_id"]].append(a["bbox"])
        else:
            anns_of[a["image_id"]].append(a)
    issues = []
    for iid in sorted(im["id"] for im in gt["images"]):
        ks = by_image[np.searchsorted(sorted_ids, iid, "left"):np.searchsorted(sorted_ids, iid, "right")]
        p_box, p_score, p_cat = xyxy[ks], dets.score[ks], dets.category_id[ks]
        anns = anns_of.get(iid, [])
        a_box = xywh_to_xyxy([a["bbox"] for a in anns]) if anns else np.zeros((0, 4))
        iou = iou_xyxy(a_box, p_box) if len(ks) and anns else np.zeros((len(anns), len(ks)))
        for j, a in enumerate(anns):
            own = p_cat == a["category_id"]
            confirm, _ = _best(p_score, own & (iou[j] >= iou_thr))
            other, k_other = _best(p_score, ~own & (iou[j] >= iou_thr) & (p_score >= low))
            near, k_near = _best(p_score, own & (iou[j] >= NEAR_IOU) & (iou[j] < iou_thr) & (p_score >= low))
            score = (1 - confirm) * (0.9 + 0.1 * max(other, near))
            if score <= 0:
                continue
            kind = "wrong_class" if other > 0 and other >= near else "bad_box" if near > 0 else "no_object"
            issues.append({"id": issue_id(kind, iid, a["id"], a["bbox"], a["category_id"]), "kind": kind,
                           "score": float(score), "annotation_id": a["id"], "image_id": iid,
                           "bbox": list(map(float, a["bbox"])), "category_id": a["category_id"],
                           "suggested_category_id": int(p_cat[k_other]) if kind == "wrong_class" else None,
                           "suggested_bbox": _xywh(p_box[k_near]) if kind == "bad_box" else None})
        covered = iou.max(0, initial=0.0)
        if crowd_of.get(iid) and len(ks):
            covered = np.maximum(covered, iou_xyxy(xywh_to_xyxy(crowd_of[iid]), p_box).max(0))
        free = np.flatnonzero((p_score >= high) & (covered < FREE_IOU))
        ranked = free[np.argsort(-p_score[free], kind="stable")]
        for m in ranked[first_of_each(p_box[ranked], iou_thr)].tolist():  # the same object predicted twice: once
            c, box = int(p_cat[m]), _xywh(p_box[m])
            issues.append({"id": issue_id("missing", iid, None, box, c), "kind": "missing", "score": float(p_score[m]),
                           "annotation_id": None, "image_id": iid, "bbox": box, "category_id": c,
                           "suggested_category_id": c, "suggested_bbox": list(box),
                           "prediction_score": float(p_score[m])})
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


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog="python -m coco2yolo.label_issues",
                           description="Rank the annotations most likely wrong, from out-of-fold predictions.")
    p.add_argument("--gt", required=True, help="the COCO dataset whose labels to check (e.g. OUT/oof/gt.json)")
    p.add_argument("--preds", required=True, help="out-of-fold predictions on every image of --gt (COCO results "
                   "or a submission CSV), e.g. OUT/oof/NAME.json of python -m coco2yolo.kfold")
    p.add_argument("--out", required=True, help="issues JSON: a list ranked most likely first")
    p.add_argument("--report", default=None, help="also an HTML page showing the top issues")
    p.add_argument("--top", type=cli.POSITIVE_INT, default=500, help="issues kept (500); the page shows the first 60")
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), metavar="KIND",
                   help=f"keep only these kinds ({' '.join(KINDS)}; all by default): a weak model confirms few "
                        "annotations, so its missing boxes rank low in the mixed list")
    p.add_argument("--high-conf", type=cli.number(0, 1, lo_open=True, hi_open=True), default=HIGH,
                   help=f"score of a prediction confident enough to claim a missing box ({HIGH})")
    p.add_argument("--low-conf", type=cli.number(0, 1, lo_open=True, hi_open=True), default=LOW,
                   help=f"score from which a prediction of another class, or of the same class badly overlapping, "
                        f"explains an unconfirmed annotation as a wrong class or a bad box ({LOW})")
    p.add_argument("--iou", type=cli.IOU, default=IOU, help=f"IoU at which a prediction confirms an annotation ({IOU})")
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
    issues = [i for i in find_issues(data, dets, args.high_conf, args.low_conf, args.iou) if i["kind"] in args.kinds]
    issues = issues[: args.top]
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
    sys.exit(cli.run(main, get_args_parser))
