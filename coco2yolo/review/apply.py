"""``coco2yolo review apply``: the decisions applied to the dataset, with one row per change.

    coco2yolo review apply --gt GT.json --issues ISSUES.json (--decisions D.json | --accept-top K |
                           --accept-score S) --out FIXED.json

An accepted issue's fix (or the decision's own class or box):

- ``wrong_class``: the annotation's class becomes the suggested one;
- ``bad_box``: its box becomes the suggested one (the prediction that explains it);
- ``no_object``: the annotation is removed (an edit with a class or a box keeps it, changed);
- ``missing``: an annotation is added with the predicted box and class, and a new id (one above the largest).

Before changing an annotation its class and box are compared with what the issue saw: equal, the fix is
applied; already equal to the fix, nothing changes (so applying the same decisions to FIXED.json again changes
nothing); anything else (the annotation is gone, on another photo, or was changed since), one line and nothing
is written. A missing box already there (same photo, class and box) is not added twice. ``FIXED.changes.csv``
beside the output has one row per change: the issue, the annotation, its class and box before and after. The
input is never touched; both files are written atomically, together.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from coco2yolo.errors import UserError
from coco2yolo.review.decisions import Decision

CHANGE_COLUMNS = ("issue_id", "kind", "action", "annotation_id", "image_id", "category_before", "bbox_before",
                  "category_after", "bbox_after")


def _same_box(a: Any, b: Any) -> bool:
    return len(a) == len(b) == 4 and all(math.isclose(float(x), float(y), rel_tol=1e-9, abs_tol=1e-6)
                                         for x, y in zip(a, b))


def _target(issue: dict[str, Any], d: Decision) -> tuple[int, list[float]] | None:
    """The class and box an accepted issue asks for (None: remove the annotation)."""
    kind = issue["kind"]
    if kind == "no_object" and d.category_id is None and d.bbox is None:
        return None
    cat = d.category_id if d.category_id is not None else (
        issue["suggested_category_id"] if kind in ("wrong_class", "missing") else issue["category_id"])
    box = list(d.bbox) if d.bbox is not None else list(
        issue["suggested_bbox"] if kind in ("bad_box", "missing") else issue["bbox"])
    return cat, box


def apply_decisions(doc: dict[str, Any], issues: list[dict[str, Any]], decisions: list[Decision],
                    source: str) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, int]]:
    """``doc`` (the user's COCO dataset, untouched) with the accepted fixes; the changes; counts."""
    by_id = {r["id"]: r for r in issues}
    anns = [dict(a) for a in doc.get("annotations", [])]
    at = {a["id"]: k for k, a in enumerate(anns)}
    removed: set[int] = set()
    added: list[dict[str, Any]] = []
    next_id = max((a["id"] for a in anns), default=0) + 1
    changes: list[dict[str, Any]] = []
    counts = {"accepted": 0, "rejected": 0, "already applied": 0}
    touched: dict[int, str] = {}
    boxes_of: dict[tuple[int, int], list[dict[str, Any]]] = {}  # (image, class): its annotations, the added ones too
    for a in anns:
        boxes_of.setdefault((a["image_id"], a["category_id"]), []).append(a)

    def row(issue, action, aid, before, after) -> None:
        changes.append({"issue_id": issue["id"], "kind": issue["kind"], "action": action, "annotation_id": aid,
                        "image_id": issue["image_id"], "category_before": before[0] if before else "",
                        "bbox_before": " ".join(f"{v:g}" for v in before[1]) if before else "",
                        "category_after": after[0] if after else "",
                        "bbox_after": " ".join(f"{v:g}" for v in after[1]) if after else ""})

    for d in decisions:
        issue = by_id[d.id]
        if d.decision == "reject":
            counts["rejected"] += 1
            continue
        counts["accepted"] += 1
        target = _target(issue, d)
        where = f"{source}: issue {issue['id']}"
        if issue["kind"] == "missing":
            cat, box = target
            if any(_same_box(a["bbox"], box) for a in boxes_of.get((issue["image_id"], cat), ())
                   if a["id"] not in removed and a["category_id"] == cat):  # a class changed since: stale entry
                counts["already applied"] += 1
                continue
            new = {"id": next_id, "image_id": issue["image_id"], "category_id": cat, "bbox": box,
                   "area": box[2] * box[3], "iscrowd": 0}
            next_id += 1
            added.append(new)
            boxes_of.setdefault((issue["image_id"], cat), []).append(new)
            row(issue, "added", new["id"], None, (cat, box))
            continue
        aid = issue["annotation_id"]
        if aid in touched:
            raise UserError(f"{where}: annotation {aid} is also fixed by issue {touched[aid]}; accept one of them")
        touched[aid] = issue["id"]
        k = at.get(aid)
        if k is None:
            if target is None:  # removed already
                counts["already applied"] += 1
                continue
            raise UserError(f"{where}: annotation {aid} is not in {source} any more; the issues file no longer matches "
                            "this dataset")
        a = anns[k]
        if a["image_id"] != issue["image_id"]:
            raise UserError(f"{where}: annotation {aid} is on image {a['image_id']}, the issue on image "
                            f"{issue['image_id']}; the issues file no longer matches this dataset")
        now = (a["category_id"], list(a["bbox"]))
        seen = (issue["category_id"], list(issue["bbox"]))
        if target is not None and now[0] == target[0] and _same_box(now[1], target[1]):
            counts["already applied"] += 1
            continue
        if not (now[0] == seen[0] and _same_box(now[1], seen[1])):
            raise UserError(f"{where}: annotation {aid} is class {now[0]} at {now[1]}, not class {seen[0]} at {seen[1]} "
                            "as the issue saw it; the dataset changed since the issues were found")
        if target is None:
            removed.add(aid)
            row(issue, "removed", aid, now, None)
            continue
        action = " and ".join(w for w, changed in (("class", target[0] != now[0]),
                                                   ("box", not _same_box(target[1], now[1]))) if changed)
        a["category_id"], a["bbox"] = target[0], target[1]
        if target[0] != now[0]:  # found under its new class too (the old entry is skipped by the class check)
            boxes_of.setdefault((a["image_id"], target[0]), []).append(a)
        if not _same_box(target[1], now[1]):
            a["area"] = target[1][2] * target[1][3]
        row(issue, action, aid, now, target)
    fixed = {**doc, "annotations": [a for a in anns if a["id"] not in removed] + added}
    for kind in ("class", "box", "removed", "added"):
        counts[kind] = sum(kind in c["action"] for c in changes)
    return fixed, changes, counts


def changes_csv(changes: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CHANGE_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(changes)
    return buf.getvalue()


def changes_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".changes.csv")


def run(gt: str, issues_path: str, out: str, decisions_path: str | None = None, top: int | None = None,
        min_score: float | None = None, kinds: list[str] | None = None) -> dict[str, Any]:
    """Read, check, apply and write (see the module docstring); return the counts."""
    from coco2yolo.cocodata import validate_dataset
    from coco2yolo.dataset.issues import issues_for
    from coco2yolo.fileio import atomic_paths, dumps_json, guard_outputs, load_json
    from coco2yolo.review.decisions import accepted, read_decisions

    changes_file = changes_path(out)
    guard_outputs({"--out": out, "the changes file": changes_file},
                  {"--gt": gt, "--issues": issues_path, "--decisions": decisions_path})
    doc = load_json(gt, "COCO dataset")
    data = validate_dataset(doc, str(gt))
    issues = issues_for(issues_path, data, annotations=False)  # each accepted one is checked as it is applied
    if kinds is not None:
        issues = [r for r in issues if r["kind"] in kinds]
    if decisions_path is not None:
        decisions = read_decisions(decisions_path, issues, data)
    else:
        decisions = accepted(issues, top, min_score)
    by_id = {r["id"]: r for r in issues}
    for d in decisions:  # the suggested fix must exist where the decision does not give one
        r = by_id[d.id] if d.decision == "accept" else None
        if r is not None and r["kind"] in ("bad_box", "missing") and d.bbox is None and r["suggested_bbox"] is None:
            raise UserError(f"{issues_path}: issue {r['id']} suggests no box (an issues file of an older version): "
                            "run python -m coco2yolo.label_issues again, or decide it with a bbox")
        if r is not None and r["kind"] == "wrong_class" and d.category_id is None and r["suggested_category_id"] is None:
            raise UserError(f"{issues_path}: issue {r['id']} suggests no class; decide it with a category_id")
    fixed, changes, counts = apply_decisions(doc, issues, decisions, str(gt))
    validate_dataset(fixed, str(out))  # what was written is a valid dataset
    with atomic_paths([out, changes_file]) as (tmp_json, tmp_csv):
        tmp_json.write_text(dumps_json(fixed) + "\n", encoding="utf-8")
        tmp_csv.write_text(changes_csv(changes), encoding="utf-8")
    return {**counts, "changes": len(changes), "decided": len(decisions), "issues": len(issues),
            "changes_file": str(changes_file)}
