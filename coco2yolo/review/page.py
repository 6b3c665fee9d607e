"""``coco2yolo review ISSUES.json --gt GT.json --out PAGE.html``: one page to decide every label issue.

The page is one self-contained file that opens from disk and reaches nothing (its Content-Security-Policy
allows no connection): issue by issue, best first, a crop of the photo around the annotation as labelled
(solid) and the suggested fix (dashed), with the class names; keys and buttons ``a`` accept, ``r`` reject,
``e`` edit (the class from a list, or a new box drawn with the mouse; Enter keeps it), ``z`` undo, arrows to
move, ``n`` the next undecided; "n of N decided". Decisions are kept in the browser (its local storage for
this page) while it is open and after a reload, saved as a decisions file by a button (a download), and a
decisions file loaded back resumes where it was (:mod:`coco2yolo.review.decisions`).

Thousands of issues stay fluid: each crop is a JPEG of at most ``--crop`` pixels, kept as text in the page and
decoded only when its issue is shown (the next few ahead), one canvas drawn per step, and the list of issues
shows a window around the current one. The crops together stay under ``--max-mb`` (issues past it are shown
without their photo, counted on the page), as the report's gallery is. Class names and file names come from
the user's files: the data is embedded as escaped JSON and only ever set as text, never as markup.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from coco2yolo.boxes import xywh_to_xyxy


def _script_json(obj: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' (so no '</script>' or '<!--'), ASCII only."""
    return (json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def crops(issues: list[dict[str, Any]], images: dict[int, dict[str, Any]], root: Path, max_side: int,
          max_mb: float) -> tuple[list[dict[str, Any] | None], list[str], int]:
    """For each issue: the crop's placement (offset, scale, size) and its JPEG data URI, or None where the photo
    cannot be read or the page's size cap is reached; the URIs; how many were left out."""
    from coco2yolo.evaluation import gallery

    budget = gallery.Budget(max_mb * 1e6)
    by_image: dict[int, list[int]] = defaultdict(list)
    for k, r in enumerate(issues):
        by_image[r["image_id"]].append(k)
    place: list[dict[str, Any] | None] = [None] * len(issues)
    uris: list[str] = [""] * len(issues)
    left_out = 0
    for iid in sorted(by_image, key=lambda i: min(by_image[i])):  # best issues first, so the cap drops the last
        img = gallery.read(root, images[iid]["file_name"])
        if img is None:
            left_out += len(by_image[iid])
            continue
        for k in by_image[iid]:
            r = issues[k]
            boxes = [b for b in (r["bbox"], r.get("suggested_bbox")) if b is not None]
            xyxy = xywh_to_xyxy(boxes)
            union = np.array([xyxy[:, 0].min(), xyxy[:, 1].min(), xyxy[:, 2].max(), xyxy[:, 3].max()])
            region, off = gallery.crop(img, union, context=0.6, min_side=160)
            small, scale = gallery.thumbnail_scale(region, max_side)
            uri = gallery.jpeg_uri(small, budget, quality=85)
            if uri is None:
                left_out += 1
                continue
            uris[k] = uri
            place[k] = {"x": float(off[0]), "y": float(off[1]), "s": float(scale), "w": int(small.shape[1]),
                        "h": int(small.shape[0])}
    return place, uris, left_out


def render_page(data: dict[str, Any], issues: list[dict[str, Any]], root: Path, *, issues_path: str, gt_path: str,
                max_side: int = 512, max_mb: float = 200.0) -> str:
    from importlib import resources

    import jinja2

    from coco2yolo.evaluation.report import versions

    images = {im["id"]: im for im in data["images"]}
    place, uris, left_out = crops(issues, images, root, max_side, max_mb)
    key = hashlib.sha1(json.dumps([gt_path, [r["id"] for r in issues]]).encode()).hexdigest()[:16]
    doc = {"key": key, "issues_file": Path(issues_path).name, "gt_file": Path(gt_path).name,
           "categories": [{"id": c["id"], "name": c.get("name", str(c["id"]))} for c in data["categories"]],
           "issues": [{"id": r["id"], "kind": r["kind"], "score": r["score"], "image_id": r["image_id"],
                       "file_name": images[r["image_id"]]["file_name"], "annotation_id": r["annotation_id"],
                       "category_id": r["category_id"], "bbox": r["bbox"],
                       "suggested_category_id": r["suggested_category_id"], "suggested_bbox": r["suggested_bbox"],
                       "width": images[r["image_id"]]["width"], "height": images[r["image_id"]]["height"],
                       "crop": place[k]} for k, r in enumerate(issues)]}
    template = resources.files("coco2yolo.review").joinpath("templates", "review.html.j2").read_text("utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(
        title=f"Review: {Path(issues_path).name} on {Path(gt_path).name}", data_json=_script_json(doc),
        photos=[(k, u) for k, u in enumerate(uris) if u], left_out=left_out, total=len(issues), versions=versions())
