"""Stratified, grouped splits: an image's boxes stay together, class shares match the whole.

Greedy iterative stratification. Images are visited rarest-class first (ties in a seeded random
order) and each goes to the fold whose per-class box counts and image count move closest to
their targets (chi-square cost: squared deviation over the target, so folds of unequal size fill
at the same rate). The generator is a local
``numpy.random.default_rng(seed)`` (PCG64), so a seed gives the same split on any machine.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coco2yolo.cocodata import CategoryMap
from coco2yolo.errors import UserError


def class_count_matrix(data: dict[str, Any], cmap: CategoryMap) -> tuple[list[int], np.ndarray]:
    """Image ids (sorted) and their (N images, C classes) matrix of box counts."""
    image_ids = sorted(im["id"] for im in data["images"])
    row = {iid: i for i, iid in enumerate(image_ids)}
    counts = np.zeros((len(image_ids), len(cmap)), dtype=np.int64)
    for a in data["annotations"]:
        counts[row[a["image_id"]], cmap.class_of(a["category_id"])] += 1
    return image_ids, counts


def assign_folds(counts: np.ndarray, shares: list[float], seed: int) -> np.ndarray:
    """Fold index per image (row of ``counts``), with fold f getting about ``shares[f]`` of all."""
    n_img, n_cls = counts.shape
    s = np.asarray(shares, dtype=np.float64)
    s = s / s.sum()
    total = counts.sum(axis=0).astype(np.float64)
    target = np.maximum(s[:, None] * total[None, :], 1e-9)  # (F, C)
    target_img = np.maximum(s * n_img, 1e-9)
    rng = np.random.default_rng(seed)
    tiebreak = rng.permutation(n_img)
    present = counts > 0
    rarity = np.where(present, total[None, :], np.inf).min(axis=1)
    order = np.lexsort((tiebreak, -counts.sum(axis=1), rarity))
    have = np.zeros_like(target)
    n_have = np.zeros(len(s))
    fold = np.empty(n_img, dtype=np.int64)
    for i in order:
        x = counts[i]
        cls = np.flatnonzero(x)
        dev = have[:, cls] - target[:, cls]
        cost = (((dev + x[cls]) ** 2 - dev ** 2) / target[:, cls]).sum(axis=1)
        cost += ((n_have + 1 - target_img) ** 2 - (n_have - target_img) ** 2) / target_img
        f = int(np.argmin(cost))
        fold[i] = f
        have[f] += x
        n_have[f] += 1
    _ensure_every_class(counts, fold, len(s))
    return fold


def _ensure_every_class(counts: np.ndarray, fold: np.ndarray, n_folds: int) -> None:
    """Move images so each class with >= n_folds images is present in every fold (in place)."""
    for c in range(counts.shape[1]):
        holders = np.flatnonzero(counts[:, c] > 0)
        if len(holders) < n_folds:
            continue
        for f in range(n_folds):
            if (fold[holders] == f).any():
                continue
            per_fold = np.bincount(fold[holders], minlength=n_folds)
            donor = int(np.argmax(per_fold))
            candidates = holders[fold[holders] == donor]
            # the donor image with the fewest boxes disturbs the other classes least
            pick = candidates[np.argmin(counts[candidates].sum(axis=1))]
            fold[pick] = f


def split_table(counts: np.ndarray, fold: np.ndarray, names: list[str], labels: list[str] | None = None
                ) -> tuple[str, float]:
    """Human-readable class counts per fold, and the largest deviation (percentage points); ``labels``: the
    columns' headings (default fold0, fold1, ...)."""
    n_folds = int(fold.max()) + 1 if len(fold) else 0
    overall = counts.sum(axis=0) / max(counts.sum(), 1)
    width = max(8, *(len(n) for n in names)) if names else 8
    labels = labels or [f"fold{f}" for f in range(n_folds)]
    lines = [f"{'class':<{width}} {'all':>7} " + " ".join(f"{labels[f]:>7}" for f in range(n_folds))]
    per_fold = np.stack([counts[fold == f].sum(axis=0) for f in range(n_folds)])
    worst = (0.0, "", -1)
    for c, name in enumerate(names):
        lines.append(f"{name:<{width}} {counts[:, c].sum():>7} "
                     + " ".join(f"{per_fold[f, c]:>7}" for f in range(n_folds)))
    for f in range(n_folds):
        share = per_fold[f] / max(per_fold[f].sum(), 1)
        dev = np.abs(share - overall) * 100
        if dev.max() > worst[0]:
            worst = (float(dev.max()), names[int(dev.argmax())], f)
    lines.append(f"{'images':<{width}} {len(fold):>7} "
                 + " ".join(f"{(fold == f).sum():>7}" for f in range(n_folds)))
    lines.append(f"largest deviation from the overall class share: {worst[0]:.2f} pp"
                 + (f" ({worst[1]}, {labels[worst[2]]})" if worst[2] >= 0 else ""))
    return "\n".join(lines), worst[0]


def split_shares(folds: int | None, fold: int | None, val_fraction: float | None
                 ) -> tuple[list[float], int]:
    """Turn the split flags into fold shares and the index of the validation fold."""
    if folds is not None:
        if folds < 2:
            raise UserError(f"--folds must be >= 2, got {folds}")
        if fold is None or not 0 <= fold < folds:
            raise UserError(f"--fold must be one of 0..{folds - 1} with --folds {folds}, got {fold}")
        return [1.0] * folds, fold
    if fold is not None:
        raise UserError("--fold needs --folds K")
    if val_fraction is None or not 0 < val_fraction < 1:
        raise UserError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    return [val_fraction, 1 - val_fraction], 0
