"""The label-issues file of ``python -m coco2yolo.label_issues``: its records, their ids, and its reader.

A JSON list, ranked most likely wrong first. Each issue::

    {"id": "wrong_class/1234", "kind": "wrong_class", "score": 0.93, "image_id": 7, "annotation_id": 1234,
     "bbox": [x, y, w, h], "category_id": 2, "suggested_category_id": 5, "suggested_bbox": null}

- ``kind``: ``wrong_class`` (the model sees another class: ``suggested_category_id``), ``bad_box`` (the model's
  box of the class that explains it: ``suggested_bbox``), ``no_object`` (the model sees nothing there: the fix
  removes it), ``missing`` (no annotation where the model sees an object: ``bbox`` and ``suggested_bbox`` are the
  predicted box, ``suggested_category_id`` its class, ``annotation_id`` null).
- ``id``: stable: the same dataset and predictions give the same ids (:func:`issue_id`): ``KIND/ANNOTATION_ID``
  for an annotation, ``missing/IMAGE_ID/DIGEST`` (of the predicted box and class) for a missing box.

Files written before ids and suggested boxes existed are read too: their ids are derived the same way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from coco2yolo.cocodata import finite
from coco2yolo.errors import UserError, short

ISSUE_KINDS = ("wrong_class", "no_object", "missing", "bad_box")


def issue_id(kind: str, image_id: int, annotation_id: int | None, bbox: list[float], category_id: int) -> str:
    """The issue's stable id (module docstring)."""
    if annotation_id is not None:
        return f"{kind}/{annotation_id}"
    key = f"{image_id}:{category_id}:" + ",".join(f"{float(v):.2f}" for v in bbox)
    return f"missing/{image_id}/{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63


def is_box(v: Any) -> bool:
    """Four finite numbers with a positive width and height: a COCO [x, y, w, h] box."""
    return (isinstance(v, list) and len(v) == 4 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                        and finite(x) for x in v) and v[2] > 0 and v[3] > 0)


def load_issue_rows(path: str | Path) -> list[dict[str, Any]]:
    """The issues of a file, each checked as a record (module docstring), with its ``id`` (derived where an older
    file has none); one line naming the issue on anything else."""
    from coco2yolo.fileio import load_json

    doc = load_json(path, "label issues")
    rows = doc.get("issues") if isinstance(doc, dict) else doc
    if not isinstance(rows, list):
        raise UserError(f"{path}: expected the list written by python -m coco2yolo.label_issues")
    out, seen = [], set()
    for i, r in enumerate(rows):
        where = f"{path}: issue {i}"
        if not isinstance(r, dict) or r.get("kind") not in ISSUE_KINDS:
            raise UserError(f"{where}: 'kind' must be one of {', '.join(ISSUE_KINDS)}")
        score = r.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not finite(score):
            raise UserError(f"{where}: 'score' must be a finite number, got {short(score)}")
        if not _int(r.get("image_id")):
            raise UserError(f"{where}: 'image_id' must be an integer, got {short(r.get('image_id'))}")
        missing = r["kind"] == "missing"
        aid = r.get("annotation_id")
        if (aid is not None or not missing) and not _int(aid):
            raise UserError(f"{where}: 'annotation_id' must be an integer ({'null for a missing box' if missing else 'the annotation'}), "
                            f"got {short(aid)}")
        if not is_box(r.get("bbox")):
            raise UserError(f"{where}: 'bbox' must be 4 finite numbers [x, y, w, h] with w, h > 0, got {short(r.get('bbox'))}")
        if not _int(r.get("category_id")):
            raise UserError(f"{where}: 'category_id' must be an integer, got {short(r.get('category_id'))}")
        if r.get("suggested_category_id") is not None and not _int(r["suggested_category_id"]):
            raise UserError(f"{where}: 'suggested_category_id' must be null or an integer, got "
                            f"{short(r['suggested_category_id'])}")
        if r.get("suggested_bbox") is not None and not is_box(r["suggested_bbox"]):
            raise UserError(f"{where}: 'suggested_bbox' must be null or [x, y, w, h] with w, h > 0, got "
                            f"{short(r['suggested_bbox'])}")
        row = dict(r)
        if r["kind"] == "missing":
            row.setdefault("suggested_bbox", list(r["bbox"]))
            if row.get("suggested_category_id") is None:
                row["suggested_category_id"] = r["category_id"]
        row.setdefault("suggested_bbox", None)
        row.setdefault("suggested_category_id", None)
        want = issue_id(r["kind"], r["image_id"], aid, r["bbox"], r["category_id"])
        if row.get("id") is None:
            row["id"] = want
        elif not isinstance(row["id"], str) or not 0 < len(row["id"]) <= 200:
            raise UserError(f"{where}: 'id' must be a string, got {short(row['id'])}")
        if row["id"] in seen:
            raise UserError(f"{where}: id {row['id']!r} is used twice")
        seen.add(row["id"])
        out.append(row)
    return out


def issues_for(path: str | Path, data: dict[str, Any], annotations: bool = True) -> list[dict[str, Any]]:
    """The issues of ``path`` checked against the dataset they were found in: every image there, every
    annotation there on its image (unless ``annotations`` is False: a dataset the fixes were applied to has lost
    some), every class one of its categories (one line on the first that is not)."""
    rows = load_issue_rows(path)
    images = {im["id"] for im in data["images"]}
    anns = {a["id"]: a for a in data["annotations"]}
    cats = {c["id"] for c in data["categories"]}
    for i, r in enumerate(rows):
        where = f"{path}: issue {i} ({r['id']})"
        if r["image_id"] not in images:
            raise UserError(f"{where}: image_id {r['image_id']} is not in the ground truth; the issues file was made "
                            "for another dataset")
        if r["annotation_id"] is not None and annotations:
            a = anns.get(r["annotation_id"])
            if a is None or a["image_id"] != r["image_id"]:
                raise UserError(f"{where}: annotation {r['annotation_id']} (image {r['image_id']}) is not in the ground "
                                "truth; the issues file was made for another dataset")
        for key in ("category_id", "suggested_category_id"):
            if r[key] is not None and r[key] not in cats:
                raise UserError(f"{where}: {key} {r[key]} is not a category of the ground truth "
                                f"(allowed: {', '.join(map(str, sorted(cats)))})")
    return rows
