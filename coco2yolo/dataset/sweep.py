"""The duplicate rule's compiled kernel (numba), apart so that converting without ``--clean`` never imports numba."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """:func:`coco2yolo.boxes.iou_xyxy` of one pair, with the same operations in the same order."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@njit(cache=True)
def greedy_duplicates(xyxy: np.ndarray, thr: float) -> np.ndarray:
    """Which boxes (rows, in order) the greedy rule drops: a box goes when an earlier kept box has IoU >= thr.

    Pairs with IoU >= thr overlap along x, so a sweep by x1 with the set of boxes still open at the sweep line
    finds every such pair; each box then checks its earlier partners in row order.
    """
    n = xyxy.shape[0]
    if thr <= 0.0:  # every IoU is >= 0: each box after the first has a kept box it "duplicates"
        dropped = np.ones(n, np.bool_)
        dropped[:1] = False
        return dropped
    order = np.argsort(xyxy[:, 0], kind="mergesort")
    active = np.empty(n, np.int64)
    n_active = 0
    pa = np.empty(16, np.int64)   # pairs (earlier row, later row) with IoU >= thr
    pb = np.empty(16, np.int64)
    n_pairs = 0
    for o in range(n):
        i = order[o]
        x1 = xyxy[i, 0]
        k = 0
        for t in range(n_active):  # drop the boxes that end before this one starts; compare with the rest
            j = active[t]
            if xyxy[j, 2] <= x1:  # no overlap along x, now or later: IoU 0 < thr
                continue
            active[k] = j
            k += 1
            if _iou(xyxy[i], xyxy[j]) >= thr:
                if n_pairs == pa.shape[0]:
                    pa = np.concatenate((pa, np.empty(pa.shape[0], np.int64)))
                    pb = np.concatenate((pb, np.empty(pb.shape[0], np.int64)))
                pa[n_pairs] = min(i, j)
                pb[n_pairs] = max(i, j)
                n_pairs += 1
        active[k] = i
        n_active = k + 1
    by_later = np.argsort(pb[:n_pairs], kind="mergesort")
    dropped = np.zeros(n, np.bool_)
    start = 0
    for row in range(n):  # rows in order: each sees the final fate of every earlier row
        end = start
        while end < n_pairs and pb[by_later[end]] == row:
            end += 1
        for t in range(start, end):
            if not dropped[pa[by_later[t]]]:
                dropped[row] = True
                break
        start = end
    return dropped
