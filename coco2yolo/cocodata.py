"""COCO dataset JSON: validation with one clear error, and the category-id <-> class-index map.

Boxes are COCO ``[x, y, w, h]`` in pixels, top-left origin. Ground truth and predictions keep the
dataset's original ``category_id`` everywhere; contiguous class indices exist only inside YOLO
training and are produced and undone by :class:`CategoryMap`, the single map used both ways.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import numpy as np

from coco2yolo.errors import UserError, short
from coco2yolo.fileio import load_json, write_json


def describe_ids(ids: list[int] | set[int], limit: int = 12) -> str:
    """Render a set of ids compactly: '0..9' when contiguous, else a sorted, truncated list."""
    ids = sorted(ids)
    if not ids:
        return "none"
    if len(ids) > 2 and ids[-1] - ids[0] == len(ids) - 1:
        return f"{ids[0]}..{ids[-1]}"
    shown = ", ".join(map(str, ids[:limit]))
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _is_int(v: Any) -> bool:
    """An integer id that fits int64 (what every array here holds)."""
    return isinstance(v, int) and not isinstance(v, bool) and INT64_MIN <= v <= INT64_MAX


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def has_control_chars(text: str) -> bool:
    """Newlines, tabs and other control characters, which break line-based files (image lists, YAML)."""
    return _CONTROL.search(text) is not None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def finite(v: float) -> bool:
    """math.isfinite, False for an integer too large for a float (10**400 in a JSON file)."""
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


@dataclass(frozen=True)
class Category:
    """One category: its original COCO id, its YOLO class index and its name."""

    category_id: int
    class_index: int
    name: str


class CategoryMap:
    """Original ``category_id`` <-> contiguous class index, by sorted id (any id set works)."""

    def __init__(self, categories: list[dict[str, Any]], source: str = "categories"):
        seen: dict[int, str] = {}
        for i, cat in enumerate(categories):
            if not isinstance(cat, dict) or not _is_int(cat.get("id")):
                raise UserError(f"{source}: categories[{i}] needs an integer 'id' (int64), got {short(cat)}")
            if cat["id"] in seen:
                raise UserError(f"{source}: categories[{i}]: duplicate category id {cat['id']}")
            name = cat.get("name", str(cat["id"]))
            if not isinstance(name, str) or not name.strip():
                raise UserError(f"{source}: categories[{i}] (id {cat['id']}): 'name' must be a "
                                "non-empty string")
            seen[cat["id"]] = name
        if not seen:
            raise UserError(f"{source}: no categories; a dataset needs at least one")
        self.categories = [Category(cid, k, seen[cid]) for k, cid in enumerate(sorted(seen))]
        self._by_id = {c.category_id: c for c in self.categories}

    def __len__(self) -> int:
        return len(self.categories)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CategoryMap) and self.categories == other.categories

    @property
    def ids(self) -> list[int]:
        return [c.category_id for c in self.categories]

    @property
    def names(self) -> list[str]:
        """Names in class-index order."""
        return [c.name for c in self.categories]

    def name_of(self, category_id: int) -> str:
        return self._by_id[category_id].name

    def class_of(self, category_id: int) -> int:
        """Original category id -> class index (KeyError when unknown)."""
        return self._by_id[category_id].class_index

    def category_of(self, class_index: int) -> int:
        """Class index -> original category id (IndexError when out of range)."""
        if not 0 <= class_index < len(self.categories):
            raise IndexError(class_index)
        return self.categories[class_index].category_id

    def to_json(self) -> dict[str, Any]:
        return {"categories": [{"class_index": c.class_index, "category_id": c.category_id,
                                "name": c.name} for c in self.categories]}

    def coco_categories(self) -> list[dict[str, Any]]:
        return [{"id": c.category_id, "name": c.name} for c in self.categories]

    @classmethod
    def from_json(cls, obj: Any, source: str = "categories.json") -> CategoryMap:
        """Read the ``to_json`` form back, checking that class indices are 0..K-1 in id order."""
        rows = obj.get("categories") if isinstance(obj, dict) else None
        if not isinstance(rows, list):
            raise UserError(f"{source}: expected {{'categories': [{{class_index, category_id, "
                            "name}, ...]}")
        cmap = cls([{"id": r.get("category_id"), "name": r.get("name")} if isinstance(r, dict)
                    else r for r in rows], source)
        for r in rows:
            if cmap.class_of(r["category_id"]) != r.get("class_index"):
                raise UserError(f"{source}: category_id {r['category_id']} has class_index "
                                f"{r.get('class_index')}, expected {cmap.class_of(r['category_id'])}"
                                " (indices follow sorted ids)")
        return cmap

    @classmethod
    def load(cls, path: str | os.PathLike) -> CategoryMap:
        return cls.from_json(load_json(path, "category map"), str(path))

    def save(self, path: str | os.PathLike) -> Path:
        return write_json(path, self.to_json(), indent=2)


_Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]


class _Annotation(msgspec.Struct):
    """What :func:`validate_dataset` asks of an annotation, in msgspec's terms (other keys are kept, unread)."""

    id: _Int64
    image_id: _Int64
    category_id: _Int64
    bbox: Annotated[list[float], msgspec.Meta(min_length=4, max_length=4)]
    iscrowd: Literal[0, 1] = 0


def _annotations_pass(anns: list[Any], image_ids: dict[int, Any], cat_ids: set[int]) -> bool:
    """True when every annotation passes validate_dataset's checks (types in C by msgspec, which takes no bool
    for a number; ids, membership and box values in numpy); False sends them through the loop that names the
    first bad one."""
    if not anns:
        return False
    try:
        rows = msgspec.convert(anns, list[_Annotation])
    except (msgspec.ValidationError, TypeError, OverflowError):
        return False
    if not all(type(a["bbox"]) is list for a in anns):  # msgspec takes a tuple for a list
        return False
    n = len(rows)
    ids = np.fromiter((r.id for r in rows), np.int64, n)
    image_of = np.fromiter((r.image_id for r in rows), np.int64, n)
    cat_of = np.fromiter((r.category_id for r in rows), np.int64, n)
    box = np.array([r.bbox for r in rows], dtype=np.float64)
    return bool(len(np.unique(ids)) == n
                and np.isin(image_of, np.fromiter(image_ids, np.int64, len(image_ids))).all()
                and np.isin(cat_of, np.fromiter(cat_ids, np.int64, len(cat_ids))).all()
                and np.isfinite(box).all() and (box[:, 2:] >= 0).all())


def validate_dataset(data: Any, source: str, need_size: bool = True) -> dict[str, Any]:
    """Check a COCO dataset dict and return it with ``iscrowd`` and ``area`` filled in.

    Raises UserError naming ``source``, the record and the allowed values. The caller's dict is
    not modified; a shallow copy with copied annotation dicts is returned.
    """
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a COCO dataset object with 'images', got "
                        f"{type(data).__name__}")
    images = data.get("images")
    if not isinstance(images, list):
        raise UserError(f"{source}: missing 'images' list (a COCO dataset needs images, "
                        "categories and optionally annotations)")
    image_ids: dict[int, dict[str, Any]] = {}
    for i, im in enumerate(images):
        if not isinstance(im, dict):
            raise UserError(f"{source}: images[{i}] is not an object")
        for key in ("id", "file_name") + (("width", "height") if need_size else ()):
            if key not in im:
                raise UserError(f"{source}: images[{i}] is missing '{key}' (needs id, file_name, "
                                "width, height)")
        if not _is_int(im["id"]):
            raise UserError(f"{source}: images[{i}]: 'id' must be an integer that fits int64, got {short(im['id'])}")
        if im["id"] in image_ids:
            raise UserError(f"{source}: images[{i}]: duplicate image id {im['id']}")
        if not isinstance(im["file_name"], str) or not im["file_name"]:
            raise UserError(f"{source}: images[{i}] (id {im['id']}): 'file_name' must be a "
                            "non-empty string")
        if has_control_chars(im["file_name"]):
            raise UserError(f"{source}: images[{i}] (id {im['id']}): 'file_name' {short(im['file_name'])} contains "
                            "a newline or another control character; rename the file")
        if need_size:
            for key in ("width", "height"):
                if not _is_number(im[key]) or not im[key] > 0 or not finite(im[key]):
                    raise UserError(f"{source}: images[{i}] (id {im['id']}): '{key}' must be a "
                                    f"positive number, got {short(im[key])}")
        image_ids[im["id"]] = im
    cats = data.get("categories", [])
    if not isinstance(cats, list):
        raise UserError(f"{source}: 'categories' must be a list")
    cat_ids = set(CategoryMap(cats, source).ids) if cats else set()
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise UserError(f"{source}: 'annotations' must be a list")
    if anns and not cats:
        raise UserError(f"{source}: has annotations but no 'categories'")
    if _annotations_pass(anns, image_ids, cat_ids):  # the common case, checked in C and numpy: only copies here
        out_anns = []
        for a in anns:
            b = dict(a)
            b["iscrowd"] = a.get("iscrowd", 0)
            if not _is_number(b.get("area")):
                box = a["bbox"]
                b["area"] = float(box[2] * box[3])
            out_anns.append(b)
        anns = []  # the loop below names the first bad record when they do not all pass
    else:
        out_anns = []
    ann_ids: set[int] = set()
    for i, a in enumerate(anns):
        where = f"{source}: annotations[{i}]"
        if not isinstance(a, dict):
            raise UserError(f"{where} is not an object")
        for key in ("id", "image_id", "category_id", "bbox"):
            if key not in a:
                raise UserError(f"{where} is missing '{key}' (needs id, image_id, category_id, bbox)")
        if not _is_int(a["id"]):
            raise UserError(f"{where}: 'id' must be an integer that fits int64, got {short(a['id'])}")
        where += f" (id {a['id']})"
        if a["id"] in ann_ids:
            raise UserError(f"{where}: duplicate annotation id {a['id']}")
        ann_ids.add(a["id"])
        if not _is_int(a["image_id"]) or a["image_id"] not in image_ids:
            raise UserError(f"{where}: image_id {short(a['image_id'])} is not in 'images' (ids "
                            f"{describe_ids(list(image_ids))})")
        if not _is_int(a["category_id"]) or a["category_id"] not in cat_ids:
            raise UserError(f"{where}: category_id {short(a['category_id'])} is unknown; allowed: "
                            f"{describe_ids(cat_ids)}")
        box = a["bbox"]
        if (not isinstance(box, list) or len(box) != 4 or not all(map(_is_number, box))
                or not all(map(finite, box))):
            raise UserError(f"{where}: bbox must be 4 finite numbers [x, y, w, h], got {short(box)}")
        if box[2] < 0 or box[3] < 0:
            raise UserError(f"{where}: bbox {box} has negative width or height")
        crowd = a.get("iscrowd", 0)
        if crowd not in (0, 1):
            raise UserError(f"{where}: iscrowd must be 0 or 1, got {short(crowd)}")
        b = dict(a)
        b["iscrowd"] = int(crowd)
        if not _is_number(b.get("area")):
            b["area"] = float(box[2] * box[3])
        out_anns.append(b)
    out = dict(data)
    out["annotations"] = out_anns
    out.setdefault("categories", cats)
    return out


def load_dataset(path: str | os.PathLike, need_size: bool = True) -> dict[str, Any]:
    """Load and validate a COCO dataset JSON (``annotations`` optional, as in test.json)."""
    return validate_dataset(load_json(path, "COCO dataset"), str(path), need_size)


def out_of_image(box_xywh: list[float], resolution_wh: tuple[float, float], tol: float = 1e-3) -> bool:
    """True when a COCO box extends beyond the image by more than ``tol`` pixels."""
    x, y, w, h = box_xywh
    width, height = resolution_wh
    return x < -tol or y < -tol or x + w > width + tol or y + h > height + tol
