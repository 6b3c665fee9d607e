"""The decisions file: what a person (or a rule) decided about each label issue.

A JSON list, one record per decided issue::

    [{"id": "wrong_class/1234", "decision": "accept"},
     {"id": "bad_box/77", "decision": "reject"},
     {"id": "missing/7/0a1b2c3d4e", "decision": "accept", "category_id": 3, "bbox": [10, 20, 30, 40]}]

``accept`` takes the issue's suggested fix; ``category_id`` and ``bbox`` (COCO ``[x, y, w, h]`` pixels inside the
photo) replace what was suggested (an edit is an accept with a value). Issues without a record are undecided.
The review page downloads this file, and reads it back to resume; ``coco2yolo review apply --decisions`` applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coco2yolo.dataset.issues import is_box
from coco2yolo.errors import UserError, short

DECISIONS = ("accept", "reject")
KEYS = ("id", "decision", "category_id", "bbox")


@dataclass(frozen=True)
class Decision:
    id: str
    decision: str                          # accept | reject
    category_id: int | None = None         # an edit: this class instead of the suggested one
    bbox: tuple[float, ...] | None = None  # an edit: this box instead of the suggested one

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "decision": self.decision}
        if self.category_id is not None:
            out["category_id"] = self.category_id
        if self.bbox is not None:
            out["bbox"] = list(self.bbox)
        return out


def check_box(box: Any, size: tuple[float, float], where: str, tol: float = 0.5) -> tuple[float, ...]:
    """A COCO box inside its photo (``size``: width, height; ``tol`` pixels of slack), as a tuple."""
    if not is_box(box):
        raise UserError(f"{where}: 'bbox' must be [x, y, w, h], 4 finite numbers with w, h > 0, got {short(box)}")
    x, y, w, h = box
    if x < -tol or y < -tol or x + w > size[0] + tol or y + h > size[1] + tol:
        raise UserError(f"{where}: 'bbox' {short(box)} leaves its {size[0]:g}x{size[1]:g} photo")
    return tuple(float(v) for v in box)


def read_decisions(path: str | Path, issues: list[dict[str, Any]], data: dict[str, Any]) -> list[Decision]:
    """The decisions of ``path`` for ``issues`` of dataset ``data``, in the issues' order; one line naming the
    record on an unknown id, an unknown decision, a class that is not a category or a box outside its photo."""
    from coco2yolo.fileio import load_json

    doc = load_json(path, "decisions")
    if not isinstance(doc, list):
        raise UserError(f"{path}: expected a JSON list of {{\"id\": ISSUE_ID, \"decision\": \"accept\" | \"reject\"}} "
                        f"records (the review page's download), got {type(doc).__name__}")
    by_id = {r["id"]: r for r in issues}
    cats = {c["id"] for c in data["categories"]}
    size = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    out: dict[str, Decision] = {}
    for i, r in enumerate(doc):
        where = f"{path}: record {i}"
        if not isinstance(r, dict):
            raise UserError(f"{where} must be an object with 'id' and 'decision', got {short(r)}")
        extra = [k for k in r if k not in KEYS]
        if extra:
            raise UserError(f"{where}: unknown key {short(extra[0])} (allowed: {', '.join(KEYS)})")
        iid = r.get("id")
        if not isinstance(iid, str) or iid not in by_id:
            raise UserError(f"{where}: id {short(iid)} is not an issue of the issues file (the decisions were made for "
                            "another one)")
        where = f"{path}: record {i} ({iid})"
        if r.get("decision") not in DECISIONS:
            raise UserError(f"{where}: 'decision' must be accept or reject, got {short(r.get('decision'))}")
        if iid in out:
            raise UserError(f"{where}: issue {iid} is decided twice")
        cat, box = r.get("category_id"), r.get("bbox")
        if (cat is not None or box is not None) and r["decision"] != "accept":
            raise UserError(f"{where}: a rejected issue takes no category_id or bbox (an edit is an accept with a value)")
        if cat is not None and (isinstance(cat, bool) or cat not in cats):
            raise UserError(f"{where}: category_id {short(cat)} is not a category of the ground truth (allowed: "
                            f"{', '.join(map(str, sorted(cats)))})")
        if box is not None:
            box = check_box(box, size[by_id[iid]["image_id"]], where)
        out[iid] = Decision(iid, r["decision"], cat, box)
    return [out[r["id"]] for r in issues if r["id"] in out]


def accepted(issues: list[dict[str, Any]], top: int | None = None, min_score: float | None = None) -> list[Decision]:
    """A rule's decisions: accept the first ``top`` issues (the file is ranked), or those scored ``min_score`` or
    more; the rest stay undecided."""
    chosen = issues[:top] if top is not None else [r for r in issues if min_score is not None and r["score"] >= min_score]
    return [Decision(r["id"], "accept") for r in chosen]
