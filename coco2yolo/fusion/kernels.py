"""Box fusion across models with the semantics of ensemble-boxes (ZFTurbo), for whole datasets.

``wbf`` and ``nms`` are ports of ``weighted_boxes_fusion`` and ``nms`` that process every image in
one compiled pass and reproduce the reference's float arithmetic (WBF's float32 accumulators),
tie order (numpy's own argsort where the reference sorts with numpy, numba's where it sorts with
numba) and output order; tests and ``bench/bench_ensemble.py`` check equality with the library.
``soft-nms`` and ``nmw`` call ensemble-boxes per image.

Coordinates inside are normalised xyxy in [0, 1] (the reference's convention); callers pass
COCO xywh pixels and image sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from coco2yolo.errors import UserError
from coco2yolo.results import Detections, image_positions, image_runs, rows_of_runs

METHODS = ("wbf", "nms", "soft-nms", "nmw")
CONF_TYPES = ("avg", "max", "box_and_model_avg", "absent_model_aware_avg")


@dataclass
class Stacked:
    """All models' boxes for all images, in the reference's scan order (model, then file order)."""

    img: np.ndarray     # (N,) image index
    model: np.ndarray   # (N,) model index t
    label: np.ndarray   # (N,) int64 category id
    score: np.ndarray   # (N,) float64
    xyxy: np.ndarray    # (N, 4) float64, normalised, not yet clipped


def _order_by(*keys: np.ndarray) -> np.ndarray:
    """Row order sorting by ``keys`` (most significant first; the last key must make rows unique).

    One argsort of a packed int64 key when it fits (several times faster than np.lexsort),
    else np.lexsort. Keys are non-negative integers.
    """
    span = [int(k.max()) + 1 if len(k) else 1 for k in keys]
    if np.prod([float(v) for v in span]) < 2.0**62:
        packed = np.zeros(len(keys[0]), np.int64)
        for k, v in zip(keys, span):
            packed = packed * v + k
        return np.argsort(packed)
    return np.lexsort(keys[::-1])


def image_index(d: Detections, image_ids: list[int], t: int) -> np.ndarray:
    """Position of each detection's image in ``image_ids``."""
    pos, found = image_positions(d.image_id, image_ids)
    if not found.all():
        raise UserError(f"results file {t + 1}: image_id {int(d.image_id[~found][0])} is not in the images JSON")
    return pos


def stack(models: list[Detections], image_ids: list[int], sizes_wh: np.ndarray) -> Stacked:
    """Normalise every model's boxes by image size and order rows by (image, model, file order)."""
    parts = []
    for t, d in enumerate(models):
        idx = image_index(d, image_ids, t)
        w, h = sizes_wh[idx, 0], sizes_wh[idx, 1]
        x, y, bw, bh = d.xywh.T
        xyxy = np.stack([x / w, y / h, (x + bw) / w, (y + bh) / h], axis=1)
        parts.append((idx, np.full(len(d), t), d.category_id.astype(np.int64), d.score, xyxy, np.arange(len(d))))
    img, model, label, score, xyxy, pos = (np.concatenate([p[k] for p in parts]) if parts else np.zeros(0)
                                           for k in range(6))
    img, model, pos = img.astype(np.int64), model.astype(np.int64), pos.astype(np.int64)
    order = _order_by(img, model, pos)
    return Stacked(img[order], model[order], label[order].astype(np.int64),
                   score[order].astype(np.float64), xyxy[order].reshape(-1, 4).astype(np.float64))


def _segments(img: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order rows by (image, label in order of first appearance, scan order); return it and offsets."""
    n = len(img)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(1, np.int64)
    key = img * (label.max() - label.min() + 1) + (label - label.min())
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    order = np.lexsort((np.arange(n), first[inv], img))
    seg = first[inv][order]
    starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
    return order, np.r_[starts, n].astype(np.int64)


def _desc_like_numpy(values: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Per segment, the permutation ``np.argsort(v)[::-1]`` (numpy's own, for identical tie order)."""
    n = len(values)
    seg = np.repeat(np.arange(len(off) - 1), np.diff(off))
    order = np.lexsort((-values, seg))  # exact wherever a segment has no tied values
    v = values[order]
    tied = np.flatnonzero((v[1:] == v[:-1]) & (seg[order][1:] == seg[order][:-1]))
    for s in np.unique(seg[order][tied]) if len(tied) else []:
        a, b = off[s], off[s + 1]
        order[a:b] = a + np.argsort(values[a:b])[::-1]
    return order if n else np.zeros(0, np.int64)


# --- weighted boxes fusion ------------------------------------------------------------------------

@njit(cache=True)
def _wbf_kernel(off, label, sw, w, t, box, iou_thr, conf_type, allows_overflow, weights, wsum, wmax, out):
    """Cluster each segment as ``weighted_boxes_fusion`` does; fill ``out`` rows, return their count.

    ``out`` columns: label, score, weight, model, x1, y1, x2, y2, segment.
    """
    n_models = len(weights)
    n_out = 0
    acc = np.zeros((len(sw), 4), dtype=np.float32)
    conf = np.zeros(len(sw))
    confmax = np.zeros(len(sw))
    wtot = np.zeros(len(sw))
    count = np.zeros(len(sw), dtype=np.int64)
    present = np.zeros((len(sw), n_models), dtype=np.bool_)
    for s in range(len(off) - 1):
        base = n_out
        nc = 0
        for j in range(off[s], off[s + 1]):
            bi = -1
            bv = -np.inf
            for c in range(nc):
                r = base + c
                xa = max(out[r, 4], box[j, 0])
                ya = max(out[r, 5], box[j, 1])
                xb = min(out[r, 6], box[j, 2])
                yb = min(out[r, 7], box[j, 3])
                inter = max(xb - xa, 0.0) * max(yb - ya, 0.0)
                area_a = (out[r, 6] - out[r, 4]) * (out[r, 7] - out[r, 5])
                area_b = (box[j, 2] - box[j, 0]) * (box[j, 3] - box[j, 1])
                iou = inter / (area_a + area_b - inter)
                if iou > bv:
                    bv = iou
                    bi = c
            if bi == -1 or bv <= iou_thr:
                r = base + nc
                nc += 1
                out[r, 0] = label[j]
                out[r, 1] = sw[j]
                out[r, 2] = w[j]
                out[r, 3] = t[j]
                for k in range(4):
                    out[r, 4 + k] = box[j, k]
                    acc[r, k] = np.float32(0.0 + sw[j] * box[j, k])
                conf[r] = 0.0 + sw[j]
                confmax[r] = sw[j]
                wtot[r] = 0.0 + w[j]
                count[r] = 1
                present[r, t[j]] = True
            else:
                r = base + bi
                for k in range(4):
                    acc[r, k] = np.float32(np.float64(acc[r, k]) + sw[j] * box[j, k])
                conf[r] += sw[j]
                confmax[r] = max(confmax[r], sw[j])
                wtot[r] += w[j]
                count[r] += 1
                present[r, t[j]] = True
                out[r, 0] = np.float32(out[r, 0])
                out[r, 1] = np.float32(confmax[r]) if conf_type == 1 else np.float32(conf[r] / count[r])
                out[r, 2] = np.float32(wtot[r])
                out[r, 3] = -1.0
                if conf[r] > 0.0:
                    for k in range(4):
                        out[r, 4 + k] = np.float32(np.float64(acc[r, k]) / conf[r])
                elif count[r] == 1:  # only score-0 boxes so far: the first one's box (ensemble-boxes: 0/0, NaN)
                    for k in range(4):
                        out[r, 4 + k] = np.float32(box[j, k])
        for c in range(nc):
            r = base + c
            n = count[r]
            if conf_type == 2:  # box_and_model_avg
                out[r, 1] = out[r, 1] * n / out[r, 2]
                used = 0.0
                first = True
                for m in range(n_models):
                    if present[r, m]:
                        used = weights[m] if first else used + weights[m]
                        first = False
                out[r, 1] = out[r, 1] * used / wsum
            elif conf_type == 3:  # absent_model_aware_avg
                absent = 0.0
                first = True
                for m in range(n_models):
                    if not present[r, m]:
                        absent = weights[m] if first else absent + weights[m]
                        first = False
                out[r, 1] = out[r, 1] * n / (out[r, 2] + absent)
            elif conf_type == 1:  # max
                out[r, 1] = out[r, 1] / wmax
            elif not allows_overflow:
                out[r, 1] = out[r, 1] * min(n_models, n) / wsum
            else:
                out[r, 1] = out[r, 1] * n / wsum
            out[r, 8] = s
        n_out += nc
    return n_out


def _clip_sorted(xyxy: np.ndarray) -> np.ndarray:
    lo = np.minimum(xyxy[:, :2], xyxy[:, 2:])
    hi = np.maximum(xyxy[:, :2], xyxy[:, 2:])
    return np.clip(np.concatenate([lo, hi], axis=1), 0.0, 1.0)


def wbf(st: Stacked, n_models: int, weights: np.ndarray | None, iou_thr: float, skip_box_thr: float,
        conf_type: str, allows_overflow: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted boxes fusion of every image; returns (image index, label, score, xyxy) rows."""
    wts = np.ones(n_models) if weights is None else np.asarray(weights, np.float64)
    box = _clip_sorted(st.xyxy)
    keep = (st.score >= skip_box_thr) & ((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]) != 0.0)
    img, lab, t, box = st.img[keep], st.label[keep], st.model[keep], box[keep]
    sw = st.score[keep].astype(np.float64) * wts[t]
    order, off = _segments(img, lab)
    img, lab, t, box, sw = img[order], lab[order], t[order], box[order], sw[order]
    within = _desc_like_numpy(sw, off)
    img, lab, t, box, sw = img[within], lab[within], t[within], box[within], sw[within]
    out = np.zeros((len(sw), 9))
    n = _wbf_kernel(off, lab.astype(np.float64), sw, wts[t], t, np.ascontiguousarray(box), float(iou_thr),
                    CONF_TYPES.index(conf_type), allows_overflow, wts, float(wts.sum()), float(wts.max()), out)
    out = out[:n]
    seg_img = img[off[:-1]] if len(off) > 1 else np.zeros(0, np.int64)
    f_img = seg_img[out[:, 8].astype(np.int64)]
    return _final_order(f_img, out[:, 0].astype(np.int64), out[:, 1], out[:, 4:8])


def _final_order(img, label, score, xyxy):
    """Sort each image's rows by ``np.argsort(score)[::-1]``, as the reference's last step."""
    if len(img) == 0:
        return img, label, score, xyxy
    starts = np.flatnonzero(np.r_[True, img[1:] != img[:-1]])
    off = np.r_[starts, len(img)]
    order = _desc_like_numpy(score, off)
    return img[order], label[order], score[order], xyxy[order]


# --- non-maximum suppression ----------------------------------------------------------------------

# nnan/ninf only: inputs are finite (the results loader checks), so no result changes; no
# reassociation or FMA contraction is allowed, which keeps the arithmetic identical to the reference.
@njit(cache=True, parallel=True, fastmath={"nnan", "ninf"})
def _nms_images(img_off, rows, model, label, score, xywh, sizes_wh, img_of_row, weights, use_weights, wsum,
                thresh, out_row, out_box, out_score, n_kept):
    """``ensemble_boxes.nms`` for every image (rows of image g: ``rows[img_off[g]:img_off[g + 1]]``,
    in scan order). Per image, as the reference: scale scores by weights, normalise, clip to [0, 1],
    order corners, drop zero-area boxes; per label in ascending order, ``nms_float_fast`` (numba's
    argsort, as in the reference). Kept boxes go, in the reference's output order, to positions
    ``img_off[g] ...`` of the outputs; ``n_kept[g]`` says how many."""
    for g in prange(len(img_off) - 1):
        a, b = img_off[g], img_off[g + 1]
        n = b - a
        bx = np.empty((n, 4))
        sc = np.empty(n)
        lab = np.empty(n, dtype=np.int64)
        src = np.empty(n, dtype=np.int64)
        m = 0
        for k in range(n):
            r = rows[a + k]
            width, height = sizes_wh[img_of_row[r], 0], sizes_wh[img_of_row[r], 1]
            x1 = min(max(xywh[r, 0] / width, 0.0), 1.0)
            y1 = min(max(xywh[r, 1] / height, 0.0), 1.0)
            x2 = min(max((xywh[r, 0] + xywh[r, 2]) / width, 0.0), 1.0)
            y2 = min(max((xywh[r, 1] + xywh[r, 3]) / height, 0.0), 1.0)
            x1, x2 = min(x1, x2), max(x1, x2)
            y1, y2 = min(y1, y2), max(y1, y2)
            if (x2 - x1) * (y2 - y1) == 0:
                continue
            bx[m, 0], bx[m, 1], bx[m, 2], bx[m, 3] = x1, y1, x2, y2
            sc[m] = (score[r] * weights[model[r]]) / wsum if use_weights else score[r]
            lab[m] = label[r]
            src[m] = r
            m += 1
        by_label = np.argsort(lab[:m], kind="mergesort")  # ascending labels, scan order within
        kept = 0
        start = 0
        while start < m:
            end = start + 1
            while end < m and lab[by_label[end]] == lab[by_label[start]]:
                end += 1
            cnt = end - start
            seg_scores = np.empty(cnt)
            for k in range(cnt):
                seg_scores[k] = sc[by_label[start + k]]
            order = seg_scores.argsort()[::-1]
            x1s, y1s, x2s, y2s, ar = np.empty(cnt), np.empty(cnt), np.empty(cnt), np.empty(cnt), np.empty(cnt)
            pos = np.empty(cnt, dtype=np.int64)
            for k in range(cnt):
                p = by_label[start + order[k]]
                pos[k] = p
                x1s[k], y1s[k], x2s[k], y2s[k] = bx[p, 0], bx[p, 1], bx[p, 2], bx[p, 3]
                ar[k] = (x2s[k] - x1s[k]) * (y2s[k] - y1s[k])
            alive = np.ones(cnt, dtype=np.uint8)
            for i in range(cnt):
                if not alive[i]:
                    continue
                p = pos[i]
                out_row[a + kept] = src[p]
                out_score[a + kept] = sc[p]
                for c in range(4):
                    out_box[a + kept, c] = bx[p, c]
                kept += 1
                ax1, ay1, ax2, ay2, area_i = x1s[i], y1s[i], x2s[i], y2s[i], ar[i]
                for j in range(i + 1, cnt):  # branch-free: the reference's IoU and its `ovr <= thresh`
                    w = max(min(ax2, x2s[j]) - max(ax1, x1s[j]), 0.0)
                    h = max(min(ay2, y2s[j]) - max(ay1, y1s[j]), 0.0)
                    inter = w * h
                    alive[j] &= np.uint8(inter / (area_i + ar[j] - inter) <= thresh)
            start = end
        n_kept[g] = kept


def nms(models: list[Detections], image_ids: list[int], sizes_wh: np.ndarray, weights: np.ndarray | None,
        iou_thr: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``ensemble_boxes.nms`` for every image; rows per image in sorted-label, then kept order."""
    idx = [image_index(d, image_ids, t) for t, d in enumerate(models)]
    img = np.concatenate(idx) if idx else np.zeros(0, np.int64)
    if len(img) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 4))
    model = np.repeat(np.arange(len(models)), [len(d) for d in models])
    label = np.concatenate([d.category_id for d in models]).astype(np.int64)
    score = np.concatenate([d.score for d in models]).astype(np.float64)
    xywh = np.ascontiguousarray(np.concatenate([d.xywh for d in models]), dtype=np.float64)
    rows = np.argsort(img, kind="stable")  # model-major, file order within an image (timsort merges runs)
    img_off = np.searchsorted(img[rows], np.arange(len(image_ids) + 1)).astype(np.int64)
    wts = np.ones(len(models)) if weights is None else np.asarray(weights, np.float64)
    out_row = np.empty(len(img), np.int64)
    out_box = np.empty((len(img), 4))
    out_score = np.empty(len(img))
    n_kept = np.zeros(len(image_ids), np.int64)
    _nms_images(img_off, rows, model, label, score, xywh, np.ascontiguousarray(sizes_wh, dtype=np.float64), img,
                wts, weights is not None, float(wts.sum()), float(iou_thr), out_row, out_box, out_score, n_kept)
    counts = np.diff(img_off)
    sel = (np.arange(len(img)) - np.repeat(img_off[:-1], counts)) < np.repeat(n_kept, counts)
    kept_rows = out_row[sel]
    return img[kept_rows], label[kept_rows], out_score[sel], out_box[sel]


# --- the other methods, from ensemble-boxes itself --------------------------------------------------

def per_image_reference(st: Stacked, n_models: int, method: str, weights: np.ndarray | None,
                        iou_thr: float, skip_box_thr: float, sigma: float, soft_thresh: float
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run ensemble-boxes' soft-NMS or NMW image by image."""
    import ensemble_boxes as eb

    out_img, out_lab, out_score, out_box = [], [], [], []
    starts = np.flatnonzero(np.r_[True, st.img[1:] != st.img[:-1]]) if len(st.img) else np.zeros(0, int)
    for a, b in zip(starts, np.r_[starts[1:], len(st.img)]):
        boxes, scores, labels = split_models(st, a, b, n_models)
        if method == "soft-nms":
            w = None if weights is None else list(weights)
            bx, sc, lb = eb.soft_nms(boxes, scores, labels, iou_thr=iou_thr, sigma=sigma, thresh=soft_thresh,
                                     weights=w)
        else:
            bx, sc, lb = eb.non_maximum_weighted(boxes, scores, labels, weights=None if weights is None else
                                                 list(weights), iou_thr=iou_thr, skip_box_thr=skip_box_thr)
        out_img.append(np.full(len(sc), st.img[a]))
        out_lab.append(np.asarray(lb).astype(np.int64))
        out_score.append(np.asarray(sc, np.float64))
        out_box.append(np.asarray(bx, np.float64).reshape(-1, 4))
    if not out_img:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 4))
    return (np.concatenate(out_img), np.concatenate(out_lab), np.concatenate(out_score),
            np.concatenate(out_box))


def split_models(st: Stacked, a: int, b: int, n_models: int) -> tuple[list, list, list]:
    """One image's rows as ensemble-boxes' per-model lists (boxes, scores, labels)."""
    boxes, scores, labels = [], [], []
    for m in range(n_models):
        sel = slice(a, b)
        mask = st.model[sel] == m
        boxes.append(st.xyxy[sel][mask].copy())
        scores.append(st.score[sel][mask].copy())
        labels.append(st.label[sel][mask].astype(np.float64))
    return boxes, scores, labels


FUSE_CHUNK = 2_000_000  # rows fused at once (every working array is a few times this)


def _fuse_in_groups(models: list[Detections], image_ids: list[int], sizes_wh: np.ndarray, chunk: int,
                    **options) -> Detections:
    """:func:`fuse` on consecutive runs of images of about ``chunk`` rows, joined in image order."""
    idx = [image_index(d, image_ids, t) for t, d in enumerate(models)]
    runs = image_runs(sum(np.bincount(i, minlength=len(image_ids)) for i in idx), chunk)
    rows = [rows_of_runs(i, runs) for i in idx]
    parts = []
    for r, (a, b) in enumerate(runs):
        sub = [d.select(of_run[r]) for d, of_run in zip(models, rows)]
        parts.append(fuse(sub, list(image_ids[a:b]), sizes_wh[a:b], chunk=None, **options))
    return Detections(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                        ("image_id", "category_id", "xywh", "score")))


def fuse(models: list[Detections], image_ids: list[int], sizes_wh: np.ndarray, method: str = "wbf",
         weights: list[float] | None = None, iou_thr: float = 0.55, skip_box_thr: float = 0.0,
         conf_type: str = "avg", sigma: float = 0.5, soft_thresh: float = 0.001, chunk: int | None = FUSE_CHUNK
         ) -> Detections:
    """Fuse several models' detections of the same images; returns COCO xywh pixel detections.

    Every step works within an image, so above ``chunk`` rows the images are fused a run of them at a time
    (about ``chunk`` rows each) and the results joined in image order: the same rows, bit for bit, with the
    working arrays bounded by the run instead of the files.

    Rows the reference would return with NaN coordinates (NMW on clusters whose scores are all 0)
    are dropped: they are not valid COCO results. A model of weight 0 is left out (the reference
    would divide by its zero weight).
    """
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    if conf_type not in CONF_TYPES:
        raise UserError(f"unknown conf type {conf_type!r}; allowed: {', '.join(CONF_TYPES)}")
    if weights is not None and len(weights) != len(models):
        raise UserError(f"--weights has {len(weights)} values for {len(models)} results files; give one per file")
    if weights is not None and (min(weights) < 0 or sum(weights) <= 0):
        raise UserError(f"--weights must be >= 0 with a positive sum, got {weights}")
    if weights is not None and min(weights) == 0:  # weight 0: the model is left out (ensemble-boxes gives NaN)
        keep = [k for k, v in enumerate(weights) if v > 0]
        models, weights = [models[k] for k in keep], [weights[k] for k in keep]
    sizes_wh = np.asarray(sizes_wh, np.float64).reshape(-1, 2)
    if chunk and sum(len(m) for m in models) > chunk and len(image_ids) > 1:
        return _fuse_in_groups(models, image_ids, sizes_wh, chunk, method=method, weights=weights, iou_thr=iou_thr,
                               skip_box_thr=skip_box_thr, conf_type=conf_type, sigma=sigma, soft_thresh=soft_thresh)
    w = None if weights is None else np.asarray(weights, np.float64)
    if method == "nms":
        img, lab, score, xyxy = nms(models, image_ids, sizes_wh, w, iou_thr)
    else:
        st = stack(models, image_ids, sizes_wh)
        if method == "wbf":
            img, lab, score, xyxy = wbf(st, len(models), w, iou_thr, skip_box_thr, conf_type)
        else:
            img, lab, score, xyxy = per_image_reference(st, len(models), method, w, iou_thr, skip_box_thr,
                                                        sigma, soft_thresh)
    finite = np.isfinite(xyxy).all(axis=1) & np.isfinite(score)  # NMW divides by 0 for all-zero scores
    img, lab, score, xyxy = img[finite], lab[finite], score[finite], xyxy[finite]
    wh = sizes_wh[img] if len(img) else np.zeros((0, 2))
    x1, y1 = xyxy[:, 0] * wh[:, 0], xyxy[:, 1] * wh[:, 1]
    x2, y2 = xyxy[:, 2] * wh[:, 0], xyxy[:, 3] * wh[:, 1]
    ids = np.asarray(image_ids, np.int64)
    return Detections(ids[img] if len(img) else np.zeros(0, np.int64), lab.astype(np.int64),
                      np.stack([x1, y1, x2 - x1, y2 - y1], axis=1).reshape(-1, 4), score.astype(np.float64))
