"""What each kind of error costs, in the manner of TIDE (Bolya et al., ECCV 2020), at IoU 0.5.

Detections are matched per image and class greedily by score (IoU >= 0.5, COCO's ``max_dets`` per image
and class, crowd boxes as ignore regions). Every unmatched detection gets one error type, tested in
TIDE's order:

- **loc**: its best IoU with a box of its class is in [0.1, 0.5];
- **cls**: it overlaps a box of another class at IoU >= 0.5;
- **dupe**: it overlaps an already matched box of its class at IoU >= 0.5;
- **bkg**: it overlaps no box at IoU > 0.1 (a false alarm on background);
- **both**: anything else (wrong class and badly placed).

A ground-truth box matched by nothing and that no loc or cls error points at is **missed**. An error
type's cost is the mAP50 gained by fixing only its errors: a loc or cls error becomes a true positive for
the box it points at (the highest-scoring one per box; the others are removed), dupe, bkg and both errors
are removed, and a missed box leaves the count of boxes to find. As in TIDE, a negative gain (binning) is
reported as 0, and the baseline is this matcher's mAP50 (it can differ from COCOeval's in the 4th decimal
where COCOeval's tie-breaking differs).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from coco2yolo.boxes import iou_xyxy, xywh_to_xyxy
from coco2yolo.evaluation.metrics import REC_THRS
from coco2yolo.results import Detections

TYPES = ("cls", "loc", "both", "dupe", "bkg", "missed")
NAMES = {"cls": "classification", "loc": "localisation", "both": "both (class and place)",
         "dupe": "duplicate", "bkg": "background (false alarm)", "missed": "missed"}
POS, BG = 0.5, 0.1


def _ap(scores: np.ndarray, tp: np.ndarray, n_gt: float) -> float:
    """COCO's 101-point interpolated AP of one class (NaN without ground truth)."""
    if n_gt <= 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    tp = tp[order].astype(np.float64)
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    rc = ctp / n_gt
    pr = ctp / (ctp + cfp + np.spacing(1))
    pr = np.maximum.accumulate(pr[::-1])[::-1]
    idx = np.searchsorted(rc, REC_THRS, side="left")
    return float(np.sum(np.where(idx < len(pr), pr[np.minimum(idx, len(pr) - 1)], 0.0)) / len(REC_THRS))


def analyse(gt: dict[str, Any], dets: Detections, cat_ids: list[int], max_dets: int = 100) -> dict[str, Any]:
    """Per-detection errors, per-box misses, counts and each type's mAP50 cost (see the module docstring).

    Returns ``{"baseline_mAP50", "delta_mAP50": {type: gain}, "counts": {type: n}, "det_error": array of
    type names or "" (true positive) or "ignored", "det_gt": index of the box an error points at (-1),
    "gt_missed": bool array, "gt_matched": bool array}``; arrays follow ``dets``' rows and ``gt``'s annotations.
    """
    anns = gt["annotations"]
    cat_set = set(cat_ids)
    g_by_img: dict[int, list[int]] = defaultdict(list)
    for k, a in enumerate(anns):
        g_by_img[a["image_id"]].append(k)
    d_by_img: dict[int, list[int]] = defaultdict(list)
    for k, i in enumerate(dets.image_id.tolist()):
        d_by_img[i].append(k)
    n = len(dets)
    err = np.full(n, "", dtype=object)
    det_gt = np.full(n, -1, np.int64)
    kept = np.zeros(n, bool)
    tp = np.zeros(n, bool)
    g_matched = np.zeros(len(anns), bool)
    g_usable = np.zeros(len(anns), bool)
    g_crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], bool)
    g_cat = np.array([a["category_id"] for a in anns], np.int64)
    for img, d_idx in d_by_img.items():
        d_idx = np.array(d_idx)
        d_idx = d_idx[np.isin(dets.category_id[d_idx], list(cat_set))]
        # COCO's max_dets per image and class, by score
        order = d_idx[np.lexsort((d_idx, -dets.score[d_idx]))]
        per_cls: dict[int, int] = defaultdict(int)
        sel = []
        for k in order.tolist():
            c = int(dets.category_id[k])
            if per_cls[c] < max_dets:
                per_cls[c] += 1
                sel.append(k)
        sel = np.array(sel, np.int64)
        kept[sel] = True
        g_idx = np.array(g_by_img.get(img, []), np.int64)
        if len(sel) == 0:
            continue
        if len(g_idx) == 0:
            err[sel] = "bkg"
            continue
        d_box = xywh_to_xyxy(dets.xywh[sel])
        g_box = xywh_to_xyxy(np.array([anns[k]["bbox"] for k in g_idx]))
        iou = iou_xyxy(d_box, g_box)
        same = dets.category_id[sel][:, None] == g_cat[g_idx][None, :]
        real = ~g_crowd[g_idx]
        used = np.zeros(len(g_idx), bool)
        for r in range(len(sel)):  # greedy by score (sel is sorted by score)
            cand = np.where(same[r] & real & ~used, iou[r], -1.0)
            j = int(np.argmax(cand))
            if cand[j] >= POS:
                used[j] = True
                tp[sel[r]] = True
                g_matched[g_idx[j]] = True
        crowd_hit = (same & ~real & (iou >= POS)).any(axis=1)  # COCO ignores these
        cls_iou, non_iou = np.where(same & real, iou, 0), np.where(~same & real, iou, 0)
        used_cls_iou = np.where(same & real & used[None, :], iou, 0)
        for r in range(len(sel)):
            k = sel[r]
            if tp[k]:
                continue
            if crowd_hit[r]:
                err[k] = "ignored"
                continue
            j = int(np.argmax(cls_iou[r]))
            if BG <= cls_iou[r, j] <= POS:
                err[k], det_gt[k] = "loc", g_idx[j]
                g_usable[g_idx[j]] |= not used[j]
                continue
            j = int(np.argmax(non_iou[r]))
            if non_iou[r, j] >= POS:
                err[k], det_gt[k] = "cls", g_idx[j]
                g_usable[g_idx[j]] |= not used[j]
                continue
            if used_cls_iou[r].max(initial=0) >= POS:
                err[k] = "dupe"
                continue
            err[k] = "bkg" if np.where(real, iou[r], 0).max(initial=0) <= BG else "both"
    err[~kept] = "ignored"
    missed = ~g_matched & ~g_usable & ~g_crowd
    n_gt = defaultdict(float)
    for c in g_cat[~g_crowd].tolist():
        n_gt[c] += 1

    def mean_ap(fix: str | None) -> float:
        scores_by: dict[int, list] = defaultdict(list)
        tp_by: dict[int, list] = defaultdict(list)
        gt_count = dict(n_gt)
        claimed: set[int] = set()
        if fix in ("cls", "loc"):  # the best-scoring error per box becomes its true positive
            cand = np.flatnonzero((err == fix) & (det_gt >= 0) & ~g_matched[np.maximum(det_gt, 0)])
            for k in cand[np.argsort(-dets.score[cand], kind="mergesort")].tolist():
                if det_gt[k] not in claimed:
                    claimed.add(int(det_gt[k]))
                    c = int(g_cat[det_gt[k]])
                    scores_by[c].append(dets.score[k])
                    tp_by[c].append(True)
        for k in range(n):
            e = err[k]
            if e == "ignored" or (fix is not None and e == fix):
                continue  # removed (or, for cls/loc, replaced above)
            c = int(dets.category_id[k])
            scores_by[c].append(dets.score[k])
            tp_by[c].append(bool(tp[k]))
        if fix == "missed":
            for k in np.flatnonzero(missed).tolist():
                gt_count[int(g_cat[k])] -= 1
        aps = [_ap(np.array(scores_by[c], float), np.array(tp_by[c], bool), gt_count.get(c, 0)) for c in cat_ids]
        aps = [a for a in aps if not np.isnan(a)]
        return float(np.mean(aps)) if aps else float("nan")

    base = mean_ap(None)
    counts = {t: int((err == t).sum()) for t in TYPES if t != "missed"}
    counts["missed"] = int(missed.sum())
    return {"baseline_mAP50": base, "delta_mAP50": {t: max(mean_ap(t) - base, 0.0) for t in TYPES},
            "counts": counts, "det_error": err, "det_gt": det_gt, "gt_missed": missed, "gt_matched": g_matched}
