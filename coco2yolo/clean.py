"""Label cleaning: named rules, each on/off with its threshold, and a report of what changed.

Rules run in this order on COCO xywh pixel boxes:

1. ``clip``        clip boxes to the image (counted when a box moved by more than 1e-3 px).
2. ``min_size``    drop boxes narrower/shorter than ``min_wh`` px or smaller than ``min_area`` px^2
                   (after clipping; zero-area boxes are always dropped).
3. ``duplicate``   drop exact and near duplicates: same image, same class, IoU >= ``dup_iou``;
                   the box with the lowest annotation id is kept. Crowd boxes are never merged.
4. ``aspect``      flag boxes with max(w/h, h/w) > ``max_aspect``; kept unless ``drop_aspect``.
5. ``large``       flag boxes covering >= ``max_cover`` of the image; kept unless ``drop_large``.

Crowd boxes (``iscrowd=1``) go through rules 1, 2, 4, 5 like any box; the converter decides
separately what YOLO training does with them (see ``convert.py``).
"""

from __future__ import annotations

import copy
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .boxes import clip_xywh, iou_xyxy, xywh_to_xyxy
from .cocodata import CategoryMap

RULES = ("clip", "min_size", "duplicate", "aspect", "large")


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
    images = {im["id"]: im for im in data["images"]}
    tally = _Tally(cmap)
    kept: list[dict[str, Any]] = []
    for ann in sorted(data["annotations"], key=lambda a: a["id"]):
        ann = copy.deepcopy(ann)
        im = images[ann["image_id"]]
        res = (im["width"], im["height"])
        box = np.asarray(ann["bbox"], dtype=np.float64)
        if cfg.clip:
            clipped = clip_xywh(box, res)[0]
            if np.abs(clipped - box).max() > 1e-3:
                tally.add("clip", ann)
                ann["bbox"] = [round(float(v), 3) for v in clipped]
                ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
                box = np.asarray(ann["bbox"])
        w, h = box[2], box[3]
        too_small = w * h <= 0 or (cfg.min_size and (min(w, h) < cfg.min_wh or w * h < cfg.min_area))
        if too_small:
            tally.add("min_size", ann)
            continue
        if cfg.aspect and max(w / h, h / w) > cfg.max_aspect:
            tally.add("aspect", ann)
            if cfg.drop_aspect:
                continue
        if cfg.large and w * h >= cfg.max_cover * res[0] * res[1]:
            tally.add("large", ann)
            if cfg.drop_large:
                continue
        kept.append(ann)
    if cfg.duplicate:
        kept = _drop_duplicates(kept, cfg.dup_iou, tally)
    cleaned = dict(data)
    cleaned["annotations"] = kept
    return cleaned, _report(data, cleaned, cfg, tally)


def _drop_duplicates(anns: list[dict[str, Any]], thr: float, tally: _Tally) -> list[dict[str, Any]]:
    """Greedy in annotation-id order: a box is dropped if it overlaps a kept one by IoU >= thr."""
    groups: dict[tuple[Any, Any], list[int]] = defaultdict(list)
    for i, a in enumerate(anns):
        if not a["iscrowd"]:
            groups[(a["image_id"], a["category_id"])].append(i)
    drop: set[int] = set()
    for idx in groups.values():
        if len(idx) < 2:
            continue
        iou = iou_xyxy(*(xywh_to_xyxy([anns[i]["bbox"] for i in idx]),) * 2)
        alive: list[int] = []
        for j in range(len(idx)):
            if any(iou[j, k] >= thr for k in alive):
                drop.add(idx[j])
                tally.add("duplicate", anns[idx[j]])
            else:
                alive.append(j)
    return [a for i, a in enumerate(anns) if i not in drop]


def _report(before: dict[str, Any], after: dict[str, Any], cfg: CleanConfig, tally: _Tally
            ) -> dict[str, Any]:
    actions = {"clip": "clipped" if cfg.clip else "off",
               "min_size": "dropped",  # zero-area boxes are dropped even with the rule off
               "duplicate": "dropped" if cfg.duplicate else "off",
               "aspect": ("dropped" if cfg.drop_aspect else "flagged, kept") if cfg.aspect else "off",
               "large": ("dropped" if cfg.drop_large else "flagged, kept") if cfg.large else "off"}
    return {
        "config": asdict(cfg),
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
            f"{report['rules']['large']['action']}: {r['large']} covering>={c['max_cover']:.0%}")
