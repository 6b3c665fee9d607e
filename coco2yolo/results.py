"""COCO results JSON (predictions): ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]``.

Boxes are pixels in the original image, COCO xywh; ``category_id`` is the dataset's original id.
The loader checks every record and returns column arrays, which every stage works on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from coco2yolo.cocodata import _is_int, describe_ids
from coco2yolo.errors import UserError, short
from coco2yolo.fileio import load_json, write_json


@dataclass
class Detections:
    """Column view of a results file: N rows of image id, category id, xywh box, score."""

    image_id: np.ndarray     # (N,) int64
    category_id: np.ndarray  # (N,) int64
    xywh: np.ndarray         # (N, 4) float64, pixels
    score: np.ndarray        # (N,) float64

    def __len__(self) -> int:
        return len(self.score)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0))

    def to_records(self) -> list[dict[str, Any]]:
        """JSON-ready records at full precision (JSON writes each float's shortest repr)."""
        boxes = self.xywh.tolist()
        scores = self.score.tolist()
        return [{"image_id": int(i), "category_id": int(c), "bbox": b, "score": s}
                for i, c, b, s in zip(self.image_id.tolist(), self.category_id.tolist(), boxes, scores)]

    def select(self, mask: np.ndarray) -> Detections:
        return Detections(self.image_id[mask], self.category_id[mask], self.xywh[mask], self.score[mask])


def _bad(source: str, i: int, why: str) -> UserError:
    return UserError(f"{source}: record {i}: {why}")


def parse_results(obj: Any, source: str, image_ids: set[int] | None = None,
                  category_ids: set[int] | None = None) -> Detections:
    """Validate a loaded results list; unknown image/category ids are errors when sets are given."""
    if isinstance(obj, dict) and "annotations" in obj:
        raise UserError(f"{source}: this is a COCO dataset (has 'annotations'), expected a results "
                        "list [{image_id, category_id, bbox, score}, ...]")
    if not isinstance(obj, list):
        raise UserError(f"{source}: a results file must be a JSON list of "
                        f"{{image_id, category_id, bbox, score}}, got {type(obj).__name__}")
    n = len(obj)
    img, cat, boxes, scores = [0] * n, [0] * n, [None] * n, [0.0] * n
    for i, r in enumerate(obj):
        if not isinstance(r, dict):
            raise _bad(source, i, "is not an object")
        try:
            img[i], cat[i], boxes[i], scores[i] = r["image_id"], r["category_id"], r["bbox"], r["score"]
        except KeyError as err:
            raise _bad(source, i, f"missing {err} (needs image_id, category_id, bbox, score)") from None
        if not _is_int(img[i]) or not _is_int(cat[i]):
            raise _bad(source, i, f"image_id and category_id must be integers (int64), got "
                                  f"{short(img[i])} and {short(cat[i])}")
        b = boxes[i]
        if (not isinstance(b, list) or len(b) != 4
                or not all(type(v) in (int, float) for v in b) or type(scores[i]) not in (int, float)):
            raise _bad(source, i, f"bbox must be 4 numbers [x, y, w, h] and score a number; "
                                  f"got bbox={short(b)}, score={short(scores[i])}")
    img = np.array(img, dtype=np.int64)
    cat = np.array(cat, dtype=np.int64)
    box = np.array(boxes, dtype=np.float64).reshape(n, 4)
    score = np.array(scores, dtype=np.float64)
    finite = np.isfinite(box).all(axis=1) & np.isfinite(score)
    if not finite.all():
        i = int(np.argmin(finite))
        raise _bad(source, i, f"bbox or score is not finite: {obj[i]['bbox']}, {obj[i]['score']}")
    neg = (box[:, 2] < 0) | (box[:, 3] < 0)
    if neg.any():
        i = int(np.argmax(neg))
        raise _bad(source, i, f"bbox {obj[i]['bbox']} has negative width or height")
    for ids, col, what in ((image_ids, img, "image_id"), (category_ids, cat, "category_id")):
        if ids is not None and n:
            unknown = ~np.isin(col, np.fromiter(ids, np.int64, len(ids)))
            if unknown.any():
                i = int(np.argmax(unknown))
                raise _bad(source, i, f"{what} {int(col[i])} is not in the reference "
                                      f"(allowed: {describe_ids(ids)}); "
                                      f"{int(unknown.sum())} records have unknown {what}s")
    return Detections(img, cat, box, score)


def load_results(path: str | os.PathLike, image_ids: set[int] | None = None,
                 category_ids: set[int] | None = None, images: list[dict[str, Any]] | None = None) -> Detections:
    """Load and validate predictions: a COCO results JSON, or a competition submission CSV (``*.csv``,
    whose image_id column holds file names: ``images``, the records they are looked up in, is needed)."""
    if str(path).lower().endswith(".csv"):
        if images is None:
            raise UserError(f"{path}: a submission CSV names images by file_name; give the images JSON it is for")
        from coco2yolo.submission import read_submission

        dets = read_submission(path, images)
        return parse_results(dets.to_records(), str(path), image_ids, category_ids) if len(dets) else dets
    return parse_results(load_json(path, "results file"), str(path), image_ids, category_ids)


def save_results(path: str | os.PathLike, dets: Detections) -> None:
    """Write detections as a COCO results JSON, atomically."""
    write_json(path, dets.to_records())
