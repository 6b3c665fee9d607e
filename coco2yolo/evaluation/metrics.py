"""Scoring: COCO mAP50 (headline), mAP50:95, per-class AP50, and bootstrap intervals over images.

Point estimates come from COCOeval (faster-coco-eval by default, pycocotools on request; they
agree to 1e-9, see the tests). Ground-truth annotation ids are renumbered 1..N first: both
libraries store matches by id and treat id 0 as "unmatched", which silently turns a correct
detection of the annotation with id 0 into a false positive.

Intervals come from a port of COCOeval's greedy matching at IoU 0.5 (same sort orders, same
crowd and ignore rules; its full-data mAP50 equals COCOeval's) run once, then re-accumulated for
each bootstrap resample of images with per-image weights.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from coco2yolo.cocodata import CategoryMap
from coco2yolo.errors import UserError
from coco2yolo.results import Detections

REC_THRS = np.linspace(0.0, 1.0, 101)
# above this many predictions, point estimates come from this module's port of COCOeval (equal numbers, arrays
# only) instead of faster-coco-eval, whose Python objects take about a kilobyte a prediction
LARGE = 1_000_000
AREA_ALL = (0.0, 1e5**2)
# COCO's sizes, and finer bins for 1024 px photos (a battery a few dozen px wide to a bag filling the frame);
# areas in px^2, named by the side of a square of that area
COCO_AREAS = [("all", 0.0, 1e10), ("small (<32²)", 0.0, 32.0**2), ("medium (32²-96²)", 32.0**2, 96.0**2),
              ("large (>96²)", 96.0**2, 1e10)]
SIZE_BINS = [("all", 0.0, 1e10), ("<32", 0.0, 32.0**2), ("32-96", 32.0**2, 96.0**2),
             ("96-256", 96.0**2, 256.0**2), ("256-512", 256.0**2, 512.0**2), (">512", 512.0**2, 1e10)]


def check_scorable(data: dict[str, Any], source: str) -> None:
    """Refuse ground truth without a single non-crowd box: mAP is undefined there."""
    if not data.get("annotations"):
        raise UserError(f"{source} has no annotations: ground truth is needed to score")
    if all(a.get("iscrowd", 0) for a in data["annotations"]):
        raise UserError(f"{source}: all {len(data['annotations'])} boxes are crowd regions (iscrowd=1), which "
                        "scoring ignores; there is no ground truth to score")


def prepare_gt(data: dict[str, Any]) -> dict[str, Any]:
    """Ground truth ready for COCOeval: annotation ids 1..N (file order), iscrowd and area set."""
    anns = []
    for i, a in enumerate(data.get("annotations", [])):
        b = dict(a)
        b["id"] = i + 1
        b.setdefault("iscrowd", 0)
        b.setdefault("area", float(a["bbox"][2] * a["bbox"][3]))
        anns.append(b)
    return {"images": [{"id": im["id"], **{k: im[k] for k in ("width", "height", "file_name") if k in im}}
                       for im in data["images"]],
            "categories": data["categories"], "annotations": anns}


def _records(dets: Detections) -> list[dict[str, Any]]:
    """Full-precision records for COCOeval's loadRes (no rounding, so numbers match exactly)."""
    return [{"image_id": i, "category_id": c, "bbox": b, "score": s}
            for i, c, b, s in zip(dets.image_id.tolist(), dets.category_id.tolist(),
                                  dets.xywh.tolist(), dets.score.tolist())]


def faster_gt(gt: dict[str, Any]) -> Any:
    """faster-coco-eval's COCO object for prepared ground truth (build it once, score many files with it)."""
    from faster_coco_eval import COCO

    return COCO(gt, print_function=_silent)


def _silent(*_a: Any, **_k: Any) -> None:
    return None


def faster_results(coco_gt: Any, gt: dict[str, Any], dets: Detections) -> Any:
    """faster-coco-eval's results object, built from the arrays: the annotations ``loadRes`` would make for
    boxes (id 1..N in file order, area w*h, iscrowd 0), without its per-record pass and polygon of each box
    (bbox scoring reads neither)."""
    from faster_coco_eval import COCO

    boxes = dets.xywh.tolist()
    areas = (dets.xywh[:, 2] * dets.xywh[:, 3]).tolist()
    anns = [{"image_id": i, "category_id": c, "bbox": b, "score": s, "area": a, "id": k, "iscrowd": 0}
            for k, (i, c, b, s, a) in enumerate(zip(dets.image_id.tolist(), dets.category_id.tolist(), boxes,
                                                   dets.score.tolist(), areas), start=1)]
    res = COCO(print_function=_silent)
    res.dataset = {"images": list(gt["images"]), "categories": gt["categories"], "annotations": anns}
    res.createIndex()
    return res


def cocoeval_precision(gt: dict[str, Any], dets: Detections, max_dets: int = 100,
                       backend: str = "faster", area_ranges: list[tuple[str, float, float]] | None = None,
                       coco_gt: Any = None) -> np.ndarray | None:
    """COCOeval's accumulated precision array [T, R, K, A, M] (None when there are no detections).

    ``area_ranges``: (label, min area, max area) in px^2 instead of COCO's all/small/medium/large.
    ``coco_gt``: :func:`faster_gt` of ``gt``, when already built.
    """
    if len(dets) == 0:
        return None
    if len(dets) > LARGE and area_ranges is None and backend == "faster":
        return port_precision(gt, dets, sorted(c["id"] for c in gt["categories"]), max_dets)
    if backend == "faster":
        from faster_coco_eval import COCOeval_faster

        coco_gt = coco_gt if coco_gt is not None else faster_gt(gt)
        coco_dt = faster_results(coco_gt, gt, dets)
        ev = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=_silent)
    elif backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO()
            coco_gt.dataset = gt
            coco_gt.createIndex()
            coco_dt = coco_gt.loadRes(_records(dets))
            ev = COCOeval(coco_gt, coco_dt, "bbox")
    else:
        raise UserError(f"unknown backend {backend!r}; allowed: faster, pycocotools")
    ev.params.maxDets = [1, 10, max_dets]
    if area_ranges is not None:
        ev.params.areaRng = [[lo, hi] for _, lo, hi in area_ranges]
        ev.params.areaRngLbl = [label for label, _, _ in area_ranges]
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
    return np.asarray(ev.eval["precision"])


def _mean_valid(s: np.ndarray) -> float:
    v = s[s > -1]
    return float(np.mean(v)) if v.size else float("nan")


# --- IoU-0.5 matching, ported from pycocotools' evaluateImg -------------------------------------

@njit(cache=True)
def _bb_iou(d: np.ndarray, g: np.ndarray, crowd: bool) -> float:
    """pycocotools' bbIou for one COCO xywh pair (crowd: intersection over the detection's area)."""
    w = min(d[2] + d[0], g[2] + g[0]) - max(d[0], g[0])
    if w <= 0:
        return 0.0
    h = min(d[3] + d[1], g[3] + g[1]) - max(d[1], g[1])
    if h <= 0:
        return 0.0
    i = w * h
    da = d[2] * d[3]
    u = da if crowd else da + g[2] * g[3] - i
    return i / u


@njit(cache=True)
def _match_groups(g_off, g_box, g_crowd, g_ig, d_off, d_box, thr, max_det, d_matched, d_ig, d_kept, a_lo, a_hi):
    """Greedy matching per (image, category) group; fills matched/ignored/kept flags per detection."""
    thr = min(thr, 1 - 1e-10)
    for grp in range(len(g_off) - 1):
        gs, ge = g_off[grp], g_off[grp + 1]
        ds, de = d_off[grp], min(d_off[grp + 1], d_off[grp] + max_det)
        gtm = np.zeros(ge - gs, dtype=np.bool_)
        for d in range(ds, de):
            d_kept[d] = True
            best = thr
            m = -1
            for g in range(ge - gs):
                gi = gs + g
                if gtm[g] and not g_crowd[gi]:
                    continue
                if m > -1 and not g_ig[gs + m] and g_ig[gi]:
                    break
                iou = _bb_iou(d_box[d], g_box[gi], g_crowd[gi])
                if iou < best:
                    continue
                best = iou
                m = g
            if m == -1:
                area = d_box[d, 2] * d_box[d, 3]
                d_ig[d] = area < a_lo or area > a_hi
                continue
            d_ig[d] = g_ig[gs + m]
            d_matched[d] = True
            gtm[m] = True


@dataclass
class Matches:
    """Per-class detections at IoU 0.5 in COCOeval's accumulate order, for fast re-accumulation."""

    n_images: int
    npig: np.ndarray                          # (C, n_images) non-ignored GT per class and image
    det_img: list[np.ndarray] = field(default_factory=list)  # per class: image index per detection
    det_tp: list[np.ndarray] = field(default_factory=list)
    det_fp: list[np.ndarray] = field(default_factory=list)


@dataclass
class _Groups:
    """Ground truth and detections sorted into (image, category) groups, as COCOeval visits them."""

    n_img: int
    n_cat: int
    g_off: np.ndarray
    g_box: np.ndarray
    g_crowd: np.ndarray
    g_ig: np.ndarray
    d_off: np.ndarray
    d_box: np.ndarray
    npig: np.ndarray
    s_img: np.ndarray
    s_cat: np.ndarray
    s_score: np.ndarray
    area: tuple[float, float] = AREA_ALL  # the area range: ground truth outside it, and unmatched detections, ignored


def _groups(gt: dict[str, Any], dets: Detections, cat_ids: list[int],
            area: tuple[float, float] = AREA_ALL) -> _Groups:
    img_ids = sorted({im["id"] for im in gt["images"]})
    n_img, n_cat = len(img_ids), len(cat_ids)
    anns = gt["annotations"]
    id_arr = np.array(img_ids, np.int64)
    cat_arr = np.array(cat_ids, np.int64)
    cat_sorted = np.argsort(cat_arr, kind="mergesort")

    def rows(values: np.ndarray, keys: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
        """Row of each value in ``keys`` (sorted through ``order``), -1 for a value not there."""
        sk = keys if order is None else keys[order]
        pos = np.searchsorted(sk, values)
        pos_c = np.minimum(pos, max(len(sk) - 1, 0))
        found = (pos < len(sk)) & (sk[pos_c] == values) if len(sk) else np.zeros(len(values), bool)
        out = pos_c if order is None else order[pos_c]
        return np.where(found, out, -1)

    g_img = rows(np.array([a["image_id"] for a in anns], np.int64), id_arr)
    g_cat = rows(np.array([a["category_id"] for a in anns], np.int64), cat_arr, cat_sorted)
    g_crowd = np.array([bool(a["iscrowd"]) for a in anns], np.bool_)
    g_area = np.array([a["area"] for a in anns], np.float64)
    g_ig = g_crowd | (g_area < area[0]) | (g_area > area[1])
    g_box = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
    g_order = np.lexsort((np.arange(len(anns)), g_ig, g_cat, g_img))
    d_img = rows(dets.image_id, id_arr)
    d_cat = rows(dets.category_id, cat_arr, cat_sorted)
    idx = np.flatnonzero((d_img >= 0) & (d_cat >= 0))
    d_order = idx[np.lexsort((idx, -dets.score[idx], d_cat[idx], d_img[idx]))]
    del idx
    n_groups = n_img * n_cat
    g_key = (g_img * n_cat + g_cat)[g_order]
    d_key = (d_img[d_order] * n_cat + d_cat[d_order])
    npig = np.zeros((n_cat, n_img), np.int64)
    np.add.at(npig, (g_cat[~g_ig], g_img[~g_ig]), 1)
    return _Groups(n_img, n_cat, np.searchsorted(g_key, np.arange(n_groups + 1)),
                   np.ascontiguousarray(g_box[g_order]), g_crowd[g_order], g_ig[g_order],
                   np.searchsorted(d_key, np.arange(n_groups + 1)), np.ascontiguousarray(dets.xywh[d_order]), npig,
                   d_img[d_order], d_cat[d_order], dets.score[d_order], (float(area[0]), float(area[1])))


def _matches_at(g: _Groups, thr: float, max_dets: int) -> Matches:
    nd = len(g.s_score)
    matched, ignored, kept = np.zeros(nd, np.bool_), np.zeros(nd, np.bool_), np.zeros(nd, np.bool_)
    _match_groups(g.g_off, g.g_box, g.g_crowd, g.g_ig, g.d_off, g.d_box, thr, max_dets, matched, ignored, kept,
                  g.area[0], g.area[1])
    out = Matches(n_images=g.n_img, npig=g.npig)
    for k in range(g.n_cat):
        sel = np.flatnonzero((g.s_cat == k) & kept)
        order = sel[np.argsort(-g.s_score[sel], kind="mergesort")]
        out.det_img.append(g.s_img[order])
        out.det_tp.append(matched[order] & ~ignored[order])
        out.det_fp.append(~matched[order] & ~ignored[order])
    return out


def match_iou50(gt: dict[str, Any], dets: Detections, cat_ids: list[int], max_dets: int = 100) -> Matches:
    """Run COCOeval's matching at IoU 0.5, area 'all', ``max_dets`` per image and class."""
    return _matches_at(_groups(gt, dets, cat_ids), 0.5, max_dets)


IOU_THRS = np.linspace(0.5, 0.95, 10)


def port_precision(gt: dict[str, Any], dets: Detections, cat_ids: list[int], max_dets: int = 100,
                   area_ranges: list[tuple[str, float, float]] | None = None,
                   iou_thrs: np.ndarray = IOU_THRS) -> np.ndarray:
    """COCOeval's precision array [T, R, K, A, 1] (areas ``area_ranges``, default 'all' only; maxDets
    ``max_dets``; -1 for a class without ground truth) from this module's port of its matching and
    accumulation: arrays only, so memory grows by a few dozen bytes a prediction (faster-coco-eval's Python
    objects take about a kilobyte). Equal to COCOeval's to 1e-9 (tests); used for inputs too large for it
    (:data:`LARGE`)."""
    areas = [(lo, hi) for _, lo, hi in area_ranges] if area_ranges else [AREA_ALL]
    prec = np.zeros((len(iou_thrs), len(REC_THRS), len(cat_ids), len(areas), 1))
    for a, area in enumerate(areas):
        g = _groups(gt, dets, cat_ids, area)
        ones = np.ones(g.n_img)
        for t, thr in enumerate(iou_thrs):
            m = _matches_at(g, float(thr), max_dets)
            for k in range(g.n_cat):
                q = np.zeros(len(REC_THRS))
                if m.npig[k].sum() == 0:
                    prec[t, :, k, a, 0] = -1
                    continue
                _precision_at_recalls(m.det_img[k], m.det_tp[k], m.det_fp[k], float(m.npig[k].sum()), ones,
                                      REC_THRS, q)
                prec[t, :, k, a, 0] = q
    return prec


def precision50_by_area(gt: dict[str, Any], dets: Detections, max_dets: int, backend: str,
                        area_ranges: list[tuple[str, float, float]]) -> np.ndarray | None:
    """COCOeval's precision at IoU 0.5 and maxDets ``max_dets``, [R, K, A] for ``area_ranges`` (None without
    detections); above :data:`LARGE` predictions from the port (faster-coco-eval would take a kilobyte each)."""
    if len(dets) == 0:
        return None
    if len(dets) > LARGE and backend == "faster":
        cat_ids = sorted(c["id"] for c in gt["categories"])
        return port_precision(gt, dets, cat_ids, max_dets, area_ranges, IOU_THRS[:1])[0, :, :, :, -1]
    return cocoeval_precision(gt, dets, max_dets, backend, area_ranges=area_ranges)[0, :, :, :, -1]


@njit(cache=True)
def _precision_at_recalls(det_img, det_tp, det_fp, npig, w, rec_thrs, q):
    """COCOeval's accumulate for one class and threshold: the interpolated precision at each recall threshold
    into ``q`` (0 past the last recall reached), each detection counted with its image's weight ``w``."""
    n = len(det_img)
    rc = np.empty(n)
    pr = np.empty(n)
    eps = np.spacing(1.0)
    tp = 0.0
    fp = 0.0
    for j in range(n):
        wt = w[det_img[j]]
        if det_tp[j]:
            tp += wt
        if det_fp[j]:
            fp += wt
        rc[j] = tp / npig
        pr[j] = tp / (fp + tp + eps)
    for j in range(n - 2, -1, -1):
        if pr[j + 1] > pr[j]:
            pr[j] = pr[j + 1]
    ptr = 0
    for r in range(len(rec_thrs)):
        while ptr < n and rc[ptr] < rec_thrs[r]:
            ptr += 1
        q[r] = pr[ptr] if ptr < n else 0.0


@njit(cache=True)
def _ap_weighted(det_img, det_tp, det_fp, npig_img, weights, rec_thrs, out):
    """COCOeval's accumulate for one class, once per row of ``weights`` (image weights).

    Detections are in accumulate order; ``out[b]`` gets the AP, NaN when there is no ground truth.
    """
    q = np.empty(len(rec_thrs))
    for b in range(weights.shape[0]):
        npig = 0.0
        for i in range(len(npig_img)):
            npig += weights[b, i] * npig_img[i]
        if npig <= 0:
            out[b] = np.nan
            continue
        _precision_at_recalls(det_img, det_tp, det_fp, npig, weights[b], rec_thrs, q)
        total = 0.0
        for r in range(len(rec_thrs)):
            total += q[r]
        out[b] = total / len(rec_thrs)


def ap_from_matches(m: Matches, weights: np.ndarray | None = None) -> np.ndarray:
    """AP50 per class, (C,) or (B, C) for a (B, n_images) matrix of image weights; NaN without GT."""
    w = np.ones((1, m.n_images)) if weights is None else np.atleast_2d(np.asarray(weights, np.float64))
    ap = np.empty((w.shape[0], len(m.det_img)))
    for k in range(len(m.det_img)):
        col = np.empty(w.shape[0])
        _ap_weighted(m.det_img[k], m.det_tp[k], m.det_fp[k], m.npig[k].astype(np.float64), w, REC_THRS, col)
        ap[:, k] = col
    return ap if weights is not None else ap[0]


def nanmean_rows(ap: np.ndarray) -> np.ndarray:
    """Mean over classes with ground truth (COCOeval skips classes without any)."""
    with np.errstate(invalid="ignore"), contextlib.suppress(RuntimeWarning):
        cnt = (~np.isnan(ap)).sum(axis=-1)
        return np.where(cnt > 0, np.nansum(ap, axis=-1) / np.maximum(cnt, 1), np.nan)


def bootstrap_weights(n_images: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_images) counts of each image in a resample with replacement (seeded, local RNG)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=n_boot).astype(np.float64)


def bootstrap_map50(m: Matches, weights: np.ndarray) -> np.ndarray:
    """mAP50 for each row of ``weights``."""
    return nanmean_rows(ap_from_matches(m, weights))


def interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    s = samples[~np.isnan(samples)]
    if not s.size:
        return float("nan"), float("nan")
    lo, hi = np.percentile(s, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)


@dataclass
class Scores:
    """Metrics for one results file."""

    map50: float
    map50_95: float
    ap50: dict[int, float]            # category_id -> AP50 (NaN: no ground truth)
    precision: np.ndarray | None      # COCOeval precision [T, R, K, A, M], for PR curves
    matches: Matches | None = None
    ci95: tuple[float, float] | None = None
    boot: np.ndarray | None = None
    dets: Detections | None = None

    def to_json(self, cmap: CategoryMap) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if x is None or np.isnan(x) else float(x)

        return {"mAP50": num(self.map50), "mAP50_95": num(self.map50_95),
                "mAP50_ci95": [num(v) for v in self.ci95] if self.ci95 else None,
                "per_class_AP50": [{"category_id": c, "name": cmap.name_of(c), "AP50": num(v)}
                                   for c, v in self.ap50.items()]}


def score(gt: dict[str, Any], dets: Detections, cmap: CategoryMap, max_dets: int = 100,
          backend: str = "faster", with_matches: bool = True, coco_gt: Any = None) -> Scores:
    """Score one set of detections against prepared ground truth (see :func:`prepare_gt`); ``with_matches``:
    also the IoU-0.5 matching the bootstrap intervals resample."""
    prec = cocoeval_precision(gt, dets, max_dets, backend, coco_gt=coco_gt)
    cats = cmap.ids
    gt_cats = {a["category_id"] for a in gt["annotations"] if not a["iscrowd"]}
    if prec is None:  # no detections at all: COCOeval cannot run; every class with GT scores 0
        ap50 = {c: (0.0 if c in gt_cats else float("nan")) for c in cats}
        vals = [v for v in ap50.values() if not np.isnan(v)]
        m50 = float(np.mean(vals)) if vals else float("nan")
        s = Scores(m50, m50, ap50, None)
    else:
        ap50 = {c: _mean_valid(prec[0, :, k, 0, -1]) for k, c in enumerate(cats)}
        s = Scores(_mean_valid(prec[0, :, :, 0, -1]), _mean_valid(prec[:, :, :, 0, -1]), ap50, prec)
    if with_matches:
        s.matches = match_iou50(gt, dets, cats, max_dets)
    s.dets = dets
    return s


def evaluate_files(gt_path: str, result_paths: list[str], n_boot: int = 1000, seed: int = 0,
                   max_dets: int = 100, backend: str = "faster") -> dict[str, Any]:
    """Score each results file; return a JSON-ready dict (and keep Scores under '_scores')."""
    from coco2yolo.cocodata import load_dataset
    from coco2yolo.results import load_results

    data = load_dataset(gt_path)
    check_scorable(data, gt_path)
    cmap = CategoryMap(data["categories"], gt_path)
    gt = prepare_gt(data)
    img_ids = {im["id"] for im in data["images"]}
    coco_gt = faster_gt(gt) if backend == "faster" else None
    scores = [score(gt, load_results(p, img_ids, set(cmap.ids), data["images"]), cmap, max_dets, backend,
                    with_matches=n_boot > 0, coco_gt=coco_gt)
              for p in result_paths]
    weights = bootstrap_weights(len(img_ids), n_boot, seed) if n_boot > 0 else None
    for s in scores:
        if weights is not None:
            s.boot = bootstrap_map50(s.matches, weights)
            s.ci95 = interval(s.boot)
    out_weights = weights
    out: dict[str, Any] = {"gt": str(gt_path), "images": len(img_ids),
                           "gt_boxes": sum(1 for a in gt["annotations"] if not a["iscrowd"]),
                           "max_dets": max_dets, "bootstrap": n_boot, "seed": seed, "backend": backend,
                           "files": [{"path": str(p), **s.to_json(cmap)} for p, s in zip(result_paths, scores)],
                           "differences": []}
    for p, s in zip(result_paths[1:], scores[1:]):
        diff = {"a": str(result_paths[0]), "b": str(p), "delta_mAP50": s.map50 - scores[0].map50}
        if weights is not None:
            diff["ci95"] = list(interval(s.boot - scores[0].boot))
        out["differences"].append(diff)
    out["_scores"], out["_cmap"], out["_weights"], out["_gt"], out["_data"] = scores, cmap, out_weights, gt, data
    return out
