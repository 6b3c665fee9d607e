"""Pseudo-labels: add unlabelled images with confident predicted boxes to the training set.

Any COCO results file works (infer.py, ensemble.py, another framework), with the images JSON it
was predicted on. Boxes scoring >= ``conf`` become labels (clipped to the image); images left
without such a box are not added. The added images go to training only: an image that is also
a validation image is refused, since that would leak validation into training.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from coco2yolo.boxes import clip_xywh, xywh_to_yolo
from coco2yolo.cocodata import CategoryMap, load_dataset
from coco2yolo.dataset.convert import MARKER, dataset_relpath, format_label_lines
from coco2yolo.errors import UserError
from coco2yolo.fileio import atomic_dir
from coco2yolo.images import file_problem
from coco2yolo.results import Detections, load_results


def select_pseudo(dets: Detections, images: list[dict[str, Any]], cmap: CategoryMap, conf: float
                  ) -> tuple[dict[int, list[str]], Counter[str]]:
    """YOLO label lines per image id for boxes scoring >= conf, and boxes added per class name."""
    sizes = {im["id"]: (im["width"], im["height"]) for im in images}
    keep = dets.select(dets.score >= conf)
    lines: dict[int, list[str]] = {}
    per_class: Counter[str] = Counter()
    for iid in np.unique(keep.image_id).tolist():
        sel = keep.image_id == iid
        yolo = xywh_to_yolo(clip_xywh(keep.xywh[sel], sizes[iid]), sizes[iid])
        cats = keep.category_id[sel].tolist()
        rows = format_label_lines([cmap.class_of(c) for c in cats], yolo)
        per_class.update(cmap.name_of(c) for c, (_, _, w, h) in zip(cats, yolo.tolist()) if w > 0 and h > 0)
        if rows:
            lines[iid] = rows
    return lines, per_class


def _split_paths(data: dict[str, Any], key: str, root: Path) -> list[Path]:
    value = data.get(key)
    items = value if isinstance(value, list) else [value]
    return [p if p.is_absolute() else root / p for p in (Path(str(v)) for v in items if v)]


def build_pseudo_dataset(data_yaml: Path, cmap: CategoryMap, results: Path, images_json: Path,
                         conf: float, out: Path) -> tuple[Path, str]:
    """Write the pseudo-labelled images to ``out`` and a data.yaml training on both; return it and a summary."""
    from coco2yolo.training.config import load_yaml_mapping

    data = load_yaml_mapping(data_yaml, "data.yaml")
    root = Path(data.get("path") or Path(data_yaml).parent)
    root = root if root.is_absolute() else (Path(data_yaml).parent / root)
    train_dirs, val_dirs = _split_paths(data, "train", root), _split_paths(data, "val", root)
    coco = load_dataset(images_json)
    images = coco["images"]
    dets = load_results(results, {im["id"] for im in images}, set(cmap.ids), images)
    lines, per_class = select_pseudo(dets, images, cmap, conf)
    img_root = Path(images_json).parent
    val_files = {os.path.realpath(p) for d in val_dirs if d.is_dir() for p in d.rglob("*") if p.is_file()}
    chosen = [im for im in sorted(images, key=lambda im: im["id"]) if im["id"] in lines]
    if not chosen:
        best = float(dets.score.max()) if len(dets) else float("nan")
        raise UserError(f"{results}: no box scores >= {conf:g} (the best is {best:.3g}), so there is nothing to "
                        "add; lower --pseudo-conf")
    for im in chosen:
        src = img_root / im["file_name"]
        if not src.is_file():
            raise UserError(f"{images_json}: image {im['file_name']} (id {im['id']}) not found under {img_root}")
        if os.path.realpath(src) in val_files:
            raise UserError(f"{images_json}: image {im['file_name']} is a validation image of {data_yaml}; "
                            "pseudo-labels may only add unlabelled images to training")
    unusable = [(im["file_name"], why) for im in chosen if (why := file_problem(img_root / im["file_name"]))]
    if unusable:
        skip = {n for n, _ in unusable}
        chosen = [im for im in chosen if im["file_name"] not in skip]
        if not chosen:
            raise UserError(f"{images_json}: none of the images with pseudo-labels is usable (first: "
                            f"{unusable[0][0]}: {unusable[0][1]})")
    with atomic_dir(out, MARKER) as tmp:
        for im in chosen:
            rel = dataset_relpath(im["file_name"], im["id"])
            dst = tmp / "images" / "train" / rel
            lbl = (tmp / "labels" / "train" / rel).with_suffix(".txt")
            dst.parent.mkdir(parents=True, exist_ok=True)
            lbl.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.realpath(img_root / im["file_name"]), dst)
            lbl.write_text("".join(f"{r}\n" for r in lines[im["id"]]), encoding="utf-8")
        new = dict(data)
        new.update(path=str(out), train=[str(p) for p in train_dirs] + [str(out / "images" / "train")],
                   val=[str(p) for p in val_dirs] if len(val_dirs) > 1 else str(val_dirs[0]))
        (tmp / "data.yaml").write_text(yaml.safe_dump(new, sort_keys=False, allow_unicode=True), encoding="utf-8")
        cmap.save(tmp / "categories.json")
    per_class = Counter(cmap.names[int(row.split()[0])] for im in chosen for row in lines[im["id"]])
    n_boxes = sum(per_class.values())
    summary = (f"pseudo-labels: added {len(chosen)} images and {n_boxes} boxes scoring >= {conf:g} to "
               f"training (not validation); per class: "
               + (", ".join(f"{k} {v}" for k, v in sorted(per_class.items())) or "none")
               + f"; {len(images) - len(chosen) - len(unusable)} images had no such box and were not added"
               + (f"; {len(unusable)} unusable image files skipped (first: {unusable[0][0]}: {unusable[0][1]})"
                  if unusable else ""))
    return out / "data.yaml", summary
