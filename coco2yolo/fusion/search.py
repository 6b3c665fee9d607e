"""Choosing a fusion on validation: a search that stays tractable, and cross-fitting for honest gains.

:func:`search` finds a setting (method, IoU threshold, WBF confidence rule, one weight per model) by
a grid over method x IoU (x confidence rule) with equal weights, then coordinate ascent: each pass
lets every model in turn try every weight value (the others fixed), then the grid again with the
weights chosen; passes repeat until nothing improves (``passes`` at most). Each setting is scored once
(memoised): at most ``grid + passes x (models x values + grid)`` fusions instead of
``grid x values^models`` (10 models, 5 weight values, 5 IoU thresholds, 2 methods: 190 at most, where
the old exhaustive search over only 2 weight values took 10,230).

:func:`crossfit` answers "how much does tuned fusion gain?" without scoring a setting on the images it
was chosen on: for each fold, the setting is searched on the other folds' out-of-fold predictions and
applied to this fold; the pooled fused predictions are scored against the best single model with a
paired bootstrap interval. The setting to use on test data is then searched on all folds.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coco2yolo.errors import UserError
from coco2yolo.evaluation.metrics import (ap_from_matches, bootstrap_map50, bootstrap_weights, interval,
                                          match_iou50, nanmean_rows, prepare_gt)
from coco2yolo.fusion.kernels import CONF_TYPES, METHODS, fuse
from coco2yolo.results import Detections


@dataclass
class SearchSpace:
    """What :func:`search` may choose among."""

    methods: list[str] = field(default_factory=lambda: ["wbf", "nms"])
    iou: list[float] = field(default_factory=lambda: [0.4, 0.5, 0.55, 0.6, 0.7])
    conf_types: list[str] = field(default_factory=lambda: ["avg"])   # WBF's score rules to try
    weights: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0, 3.0])  # per-model values
    passes: int = 3                                                  # coordinate-ascent passes at most

    def check(self) -> SearchSpace:
        bad = [m for m in self.methods if m not in METHODS] + [c for c in self.conf_types if c not in CONF_TYPES]
        if bad:
            raise UserError(f"fusion search: unknown method or confidence rule {bad[0]!r}; methods: "
                            f"{', '.join(METHODS)}; rules: {', '.join(CONF_TYPES)}")
        if not self.methods or not self.iou or not self.conf_types or not self.weights:
            raise UserError("fusion search: methods, iou, conf_types and weights each need at least one value")
        if not all(isinstance(v, (int, float)) and np.isfinite(v) and 0 < v <= 1 for v in self.iou):
            raise UserError(f"fusion search: every iou must be in (0, 1], got {self.iou}")
        if not all(isinstance(v, (int, float)) and np.isfinite(v) and v >= 0 for v in self.weights):
            raise UserError(f"fusion search: every weight must be a number >= 0, got {self.weights}")
        if not isinstance(self.passes, int) or self.passes < 0:
            raise UserError(f"fusion search: passes must be an integer >= 0, got {self.passes}")
        return self


class Scorer:
    """mAP50 of a fusion setting on a set of images, each setting fused and scored once."""

    def __init__(self, models: list[Detections], image_ids: list[int], sizes: np.ndarray, gt_data: dict[str, Any],
                 cat_ids: list[int], base: dict[str, Any], max_dets: int = 100):
        self.models, self.image_ids, self.sizes = models, image_ids, sizes
        self.gt = prepare_gt(gt_data)
        self.cats, self.base, self.max_dets = cat_ids, base, max_dets
        self.cache: dict[tuple, float] = {}

    @staticmethod
    def key(setting: dict[str, Any]) -> tuple:
        w = setting["weights"]
        return (setting["method"], float(setting["iou_thr"]), setting["conf_type"],
                None if w is None else tuple(float(v) for v in w))

    def fused(self, setting: dict[str, Any]) -> Detections:
        return fuse(self.models, self.image_ids, self.sizes, **{**self.base, **setting})

    def __call__(self, setting: dict[str, Any]) -> float:
        k = self.key(setting)
        if k not in self.cache:
            m = match_iou50(self.gt, self.fused(setting), self.cats, self.max_dets)
            self.cache[k] = float(nanmean_rows(ap_from_matches(m)))
        return self.cache[k]


def _progress(total: int, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="fusion", file=sys.stderr, dynamic_ncols=True, disable=quiet)


def search(scorer: Scorer, n_models: int, space: SearchSpace, desc: str = "search", quiet: bool = False
           ) -> tuple[dict[str, Any], float, dict[str, Any]]:
    """The best setting, its mAP50, and a record of the search (settings scored, seconds, the trace)."""
    t0 = time.time()
    grid = [(m, float(i), c) for m in space.methods for i in space.iou
            for c in (space.conf_types if m == "wbf" else ["avg"])]
    values = sorted({float(v) for v in space.weights})
    upper = len(grid) + (space.passes * (n_models * len(values) + len(grid)) if n_models > 1 else 0)
    trace: list[tuple[str, float]] = []
    with _progress(upper, desc, quiet) as bar:
        def score(setting):
            cached = Scorer.key(setting) in scorer.cache
            value = scorer(setting)
            if not cached:
                bar.update(1)
            return value

        def best_on_grid(weights):
            cands = [{"method": m, "iou_thr": i, "conf_type": c, "weights": weights} for m, i, c in grid]
            vals = [score(s) for s in cands]
            k = int(np.argmax(vals))
            return cands[k], vals[k]

        best, best_val = best_on_grid(None)
        trace.append(("grid, equal weights", best_val))
        if n_models > 1:
            weights = [1.0] * n_models
            for p in range(space.passes):  # each pass: every model's weight, then the grid again
                improved = False
                for i in range(n_models):
                    for v in values:
                        if v == weights[i]:
                            continue
                        cand_w = weights[:i] + [v] + weights[i + 1:]
                        if sum(cand_w) <= 0:
                            continue
                        cand = {**best, "weights": cand_w}
                        val = score(cand)
                        if val > best_val + 1e-12:
                            best, best_val, weights, improved = cand, val, cand_w, True
                regrid, regrid_val = best_on_grid(best["weights"])
                if regrid_val > best_val + 1e-12:
                    best, best_val, improved = regrid, regrid_val, True
                trace.append((f"pass {p + 1}: weights, then method and IoU", best_val))
                if not improved:
                    break
        bar.total = bar.n
        bar.refresh()
    if best["weights"] is not None and len(set(best["weights"])) == 1:
        best = {**best, "weights": None}  # equal weights, whatever their value
    return best, best_val, {"settings_scored": len(scorer.cache), "seconds": time.time() - t0,
                            "trace": [{"step": s, "mAP50": v} for s, v in trace]}


def _subset(models: list[Detections], gt_data: dict[str, Any], image_ids: list[int], sizes: np.ndarray,
            keep: set[int]) -> tuple[list[Detections], dict[str, Any], list[int], np.ndarray]:
    idx = [k for k, i in enumerate(image_ids) if i in keep]
    ids = [image_ids[k] for k in idx]
    keep_arr = np.fromiter(keep, np.int64, len(keep))
    sub = [d.select(np.isin(d.image_id, keep_arr)) for d in models]
    gt = {**gt_data, "images": [im for im in gt_data["images"] if im["id"] in keep],
          "annotations": [a for a in gt_data["annotations"] if a["image_id"] in keep]}
    return sub, gt, ids, sizes[idx]


def concat(parts: list[Detections]) -> Detections:
    parts = [p for p in parts if len(p)]
    if not parts:
        return Detections.empty()
    return Detections(np.concatenate([p.image_id for p in parts]), np.concatenate([p.category_id for p in parts]),
                      np.concatenate([p.xywh for p in parts]), np.concatenate([p.score for p in parts]))


def crossfit(models: list[Detections], paths: list[str], image_ids: list[int], sizes: np.ndarray,
             gt_data: dict[str, Any], fold_of_image: dict[int, int], space: SearchSpace, base: dict[str, Any],
             n_boot: int = 1000, seed: int = 0, max_dets: int = 100, quiet: bool = False
             ) -> tuple[Detections, dict[str, Any], dict[str, Any]]:
    """Cross-fitted fusion: (the fused out-of-fold predictions, the setting searched on all folds, a report).

    ``fold_of_image``: the fold of every image (the converter's ``split.json``). No fold's fused
    predictions come from a setting chosen with that fold's images.
    """
    cat_ids = sorted(c["id"] for c in gt_data["categories"])
    missing = [i for i in image_ids if i not in fold_of_image]
    if missing:
        raise UserError(f"cross-fitting: {len(missing)} images have no fold (first: image id {missing[0]}); the "
                        "split file must come from the same dataset")
    folds = sorted({fold_of_image[i] for i in image_ids})
    if len(folds) < 2:
        raise UserError(f"cross-fitting needs images of at least 2 folds, got {len(folds)}")
    per_fold, fused_parts = [], []
    for f in folds:
        train_ids = {i for i in image_ids if fold_of_image[i] != f}
        held_ids = {i for i in image_ids if fold_of_image[i] == f}
        sub, gt, ids, sz = _subset(models, gt_data, image_ids, sizes, train_ids)
        setting, in_sample, record = search(Scorer(sub, ids, sz, gt, cat_ids, base, max_dets), len(models), space,
                                            desc=f"fold {f}: search on the other folds", quiet=quiet)
        sub_h, gt_h, ids_h, sz_h = _subset(models, gt_data, image_ids, sizes, held_ids)
        held = Scorer(sub_h, ids_h, sz_h, gt_h, cat_ids, base, max_dets)
        fused_parts.append(held.fused(setting))
        per_fold.append({"fold": f, "setting": setting, "mAP50_where_chosen": in_sample,
                         "mAP50_on_this_fold": held(setting), "images": len(held_ids), **record})
    fused_oof = concat(fused_parts)
    everything = Scorer(models, image_ids, sizes, gt_data, cat_ids, base, max_dets)
    final, final_in_sample, final_record = search(everything, len(models), space, desc="all folds: final setting",
                                                  quiet=quiet)
    # scores on every image: the cross-fitted fusion, each single model, and (for contrast) the final
    # setting scored on the images it was chosen on
    gt = everything.gt
    m_fused = match_iou50(gt, fused_oof, cat_ids, max_dets)
    m_single = [match_iou50(gt, d, cat_ids, max_dets) for d in models]
    single = [float(nanmean_rows(ap_from_matches(m))) for m in m_single]
    top = int(np.argmax(single))
    fused_map = float(nanmean_rows(ap_from_matches(m_fused)))
    report: dict[str, Any] = {
        "method": "cross-fitted: each fold fused with the setting searched on the other folds",
        "folds": per_fold, "final_setting": final, "final_setting_record": final_record,
        "single_models": [{"path": p, "mAP50": v} for p, v in zip(paths, single)],
        "crossfit_fused": {"mAP50": fused_map},
        "gain_over_best_single": {"path": paths[top], "delta_mAP50": fused_map - single[top]},
        "in_sample": {"note": "the final setting scored on the images it was chosen on: optimistic",
                      "mAP50": final_in_sample, "delta_mAP50": final_in_sample - single[top]},
    }
    if n_boot > 0:
        w = bootstrap_weights(len(gt["images"]), n_boot, seed)
        b_fused, b_single = bootstrap_map50(m_fused, w), [bootstrap_map50(m, w) for m in m_single]
        report["crossfit_fused"]["ci95"] = list(interval(b_fused))
        for entry, b in zip(report["single_models"], b_single):
            entry["ci95"] = list(interval(b))
        report["gain_over_best_single"]["ci95"] = list(interval(b_fused - b_single[top]))
    return fused_oof, final, report
