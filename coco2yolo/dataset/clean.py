"""Label cleaning: named rules, each on/off with its threshold, and a report of what changed.

Rules run in this order on COCO xywh pixel boxes:

1. ``clip``        clip boxes to the image (counted when a box moved by more than 1e-3 px).
2. ``min_size``    drop boxes narrower/shorter than ``min_wh`` px or smaller than ``min_area`` px^2
                   (after clipping; zero-area boxes are always dropped).
3. ``duplicate``   drop exact and near duplicates: same image, same class, IoU >= ``dup_iou``;
                   the box with the lowest annotation id is kept. Crowd boxes are never merged.
4. ``aspect``      flag boxes with max(w/h, h/w) > ``max_aspect``; kept unless ``drop_aspect``.
5. ``large``       flag boxes covering >= ``max_cover`` of the image; kept unless ``drop_large``.
6. ``label_issues``  drop the annotations an issues file names (``python -m coco2yolo.label_issues``,
                   then ``--drop-annotations issues.json``); off unless such ids are given.

Crowd boxes (``iscrowd=1``) go through rules 1, 2, 4, 5 like any box; the converter decides
separately what YOLO training does with them (see ``convert.py``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coco2yolo.boxes import clip_xywh, xywh_to_xyxy
from coco2yolo.cocodata import CategoryMap
from coco2yolo.dataset.issues import ISSUE_KINDS, issues_for  # noqa: F401 - the kinds the label_issues rule drops
from coco2yolo.errors import UserError

RULES = ("clip", "min_size", "duplicate", "aspect", "large", "label_issues")


@dataclass
class CleanConfig:
    """Cleaning switches and thresholds (conservative defaults; see the module docstring)."""

    clip: bool = True
    min_size: bool = True
    min_wh: float = 1.0
    min_area: float = 4.0
    duplicate: bool = True
    dup_iou: float = 0.95
    aspect: bool = True
    max_aspect: float = 20.0
    drop_aspect: bool = False
    large: bool = True
    max_cover: float = 0.95
    drop_large: bool = False
    label_issues: bool = True
    drop_ids: frozenset = frozenset()  # annotation ids to drop (the label_issues rule)


class _Tally:
    """Counts per rule and per class, plus the first few annotation ids as examples."""

    def __init__(self, cmap: CategoryMap):
        self.cmap = cmap
        self.count: Counter[str] = Counter()
        self.per_class: dict[str, Counter[str]] = defaultdict(Counter)
        self.examples: dict[str, list[Any]] = defaultdict(list)

    def add(self, rule: str, ann: dict[str, Any]) -> None:
        self.count[rule] += 1
        self.per_class[rule][self.cmap.name_of(ann["category_id"])] += 1
        if len(self.examples[rule]) < 10:
            self.examples[rule].append(ann["id"])


def clean_dataset(data: dict[str, Any], cmap: CategoryMap, cfg: CleanConfig
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Apply the rules to a validated COCO dataset dict.

    Returns ``(cleaned, report)``: a new dataset dict (input untouched; original annotation ids
    kept) and a JSON-ready report counting what each rule changed, per class.
    """
    size = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    anns = sorted(data["annotations"], key=lambda a: a["id"])
    tally = _Tally(cmap)
    if not anns:
        return dict(data), _report(data, data, cfg, tally)
    box = np.array([a["bbox"] for a in anns], dtype=np.float64)
    res = np.array([size[a["image_id"]] for a in anns], dtype=np.float64)
    moved = np.zeros(len(anns), dtype=bool)
    if cfg.clip:
        clipped = clip_xywh(box, res)
        moved = np.abs(clipped - box).max(axis=1) > 1e-3
        box = np.where(moved[:, None], np.round(clipped, 3), box)
    w, h = box[:, 2], box[:, 3]
    area = w * h
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = np.maximum(w / h, h / w)
    small = area <= 0
    if cfg.min_size:
        small |= (np.minimum(w, h) < cfg.min_wh) | (area < cfg.min_area)
    odd = ~small & cfg.aspect & (aspect > cfg.max_aspect)
    large = ~small & cfg.large & (area >= cfg.max_cover * res[:, 0] * res[:, 1])
    kept: list[dict[str, Any]] = []
    for i, a in enumerate(anns):
        if cfg.label_issues and a["id"] in cfg.drop_ids:
            tally.add("label_issues", a)
            continue
        if moved[i]:
            tally.add("clip", a)
            a = {**a, "bbox": box[i].tolist(), "area": float(area[i])}
        if small[i]:
            tally.add("min_size", a)
            continue
        if odd[i]:
            tally.add("aspect", a)
        if large[i]:
            tally.add("large", a)
        if (odd[i] and cfg.drop_aspect) or (large[i] and cfg.drop_large):
            continue
        kept.append(dict(a))
    if cfg.duplicate:
        kept = _drop_duplicates(kept, cfg.dup_iou, tally)
    cleaned = dict(data)
    cleaned["annotations"] = kept
    return cleaned, _report(data, cleaned, cfg, tally)


def _drop_duplicates(anns: list[dict[str, Any]], thr: float, tally: _Tally) -> list[dict[str, Any]]:
    """Greedy in annotation-id order: a box is dropped if it overlaps a kept one by IoU >= thr.

    Within each (image, class) group only boxes that overlap along x are compared (a sweep over x, compiled),
    so a group of n boxes costs about n log n plus its overlapping pairs instead of n^2 time and memory.
    """
    groups: dict[tuple[Any, Any], list[int]] = defaultdict(list)
    for i, a in enumerate(anns):
        if not a["iscrowd"]:
            groups[(a["image_id"], a["category_id"])].append(i)
    drop: set[int] = set()
    for idx in groups.values():
        if len(idx) < 2:
            continue
        xyxy = np.asarray(xywh_to_xyxy([anns[i]["bbox"] for i in idx]), dtype=np.float64).reshape(-1, 4)
        from coco2yolo.dataset.sweep import greedy_duplicates  # compiled (numba): imported when a group needs it

        for j in np.flatnonzero(greedy_duplicates(xyxy, float(thr))).tolist():
            drop.add(idx[j])
            tally.add("duplicate", anns[idx[j]])
    return [a for i, a in enumerate(anns) if i not in drop]


def _report(before: dict[str, Any], after: dict[str, Any], cfg: CleanConfig, tally: _Tally
            ) -> dict[str, Any]:
    actions = {"label_issues": "dropped" if cfg.label_issues and cfg.drop_ids else "off",
               "clip": "clipped" if cfg.clip else "off",
               "min_size": "dropped",  # zero-area boxes are dropped even with the rule off
               "duplicate": "dropped" if cfg.duplicate else "off",
               "aspect": ("dropped" if cfg.drop_aspect else "flagged, kept") if cfg.aspect else "off",
               "large": ("dropped" if cfg.drop_large else "flagged, kept") if cfg.large else "off"}
    return {
        "config": {**asdict(cfg), "drop_ids": len(cfg.drop_ids)},
        "boxes_in": len(before["annotations"]),
        "boxes_out": len(after["annotations"]),
        "rules": {r: {"action": actions[r], "count": tally.count[r],
                      "per_class": dict(sorted(tally.per_class[r].items())),
                      "example_annotation_ids": tally.examples[r]} for r in RULES},
    }


def summary_line(report: dict[str, Any]) -> str:
    """One line: boxes in/out and the count for each rule."""
    c = report["config"]
    r = {k: v["count"] for k, v in report["rules"].items()}
    return (f"cleaning: {report['boxes_in']} boxes -> {report['boxes_out']} | "
            f"clipped {r['clip']} | dropped {r['min_size']} small (<{c['min_wh']:g}px or "
            f"<{c['min_area']:g}px2), {r['duplicate']} duplicates (IoU>={c['dup_iou']:g}) | "
            f"{report['rules']['aspect']['action']}: {r['aspect']} aspect>{c['max_aspect']:g}; "
            f"{report['rules']['large']['action']}: {r['large']} covering>={c['max_cover']:.0%}"
            + (f" | dropped {r['label_issues']} label issues" if report["rules"]["label_issues"]["action"] == "dropped"
               else ""))


def read_issues(path: str | Path, data: dict[str, Any], kinds: list[str]) -> tuple[set[int], dict[int, str]]:
    """The annotation ids to drop from an issues file, checked against the dataset (id -> kind)."""
    out = {r["annotation_id"]: r["kind"] for r in issues_for(path, data)
           if r["kind"] in kinds and r["annotation_id"] is not None}
    return set(out), out
