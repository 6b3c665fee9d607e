"""``coco2yolo review from-fiftyone DATASET --out D.json``: decisions made in the FiftyOne App.

``coco2yolo fiftyone --issues issues.json`` puts each label issue on its box (the annotation in
``ground_truth``, a missing box in ``label_issues``) with its ``issue_id``. A person browsing the App tags those
boxes ``accept`` or ``reject`` (label tags); this reads the tags back as a decisions file
(:mod:`coco2yolo.review.decisions`) for ``coco2yolo review apply --decisions``.
"""

from __future__ import annotations

from typing import Any

from coco2yolo.browse import GT_FIELD, ISSUES_FIELD, _import_fiftyone
from coco2yolo.errors import UserError


def decisions_from_fiftyone(name: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The decision records of the ``accept``/``reject`` tags on the issues of FiftyOne dataset ``name``."""
    fo = _import_fiftyone()
    if not fo.dataset_exists(name):
        known = ", ".join(sorted(fo.list_datasets())[:10]) or "none"
        raise UserError(f"no FiftyOne dataset {name!r} (datasets: {known}); make it with coco2yolo fiftyone --issues")
    ds = fo.load_dataset(name)
    schema = ds.get_field_schema()
    fields = [f for f in (GT_FIELD, ISSUES_FIELD) if f in schema]
    records: dict[str, dict[str, Any]] = {}
    issues = 0
    for field in fields:
        ids = ds.values(f"{field}.detections.issue_id")
        tags = ds.values(f"{field}.detections.tags")
        for per_sample_ids, per_sample_tags in zip(ids, tags):
            for iid, t in zip(per_sample_ids or [], per_sample_tags or []):
                if not iid:
                    continue
                issues += 1
                chosen = {"accept", "reject"} & set(t or [])
                if len(chosen) == 2:
                    raise UserError(f"FiftyOne dataset {name!r}: issue {iid} is tagged both accept and reject; remove "
                                    "one tag in the App")
                if chosen:
                    records[iid] = {"id": iid, "decision": chosen.pop()}
    if issues == 0:
        raise UserError(f"FiftyOne dataset {name!r} holds no label issues (make it with coco2yolo fiftyone --issues "
                        "issues.json)")
    out = sorted(records.values(), key=lambda r: r["id"])
    counts = {"accept": sum(r["decision"] == "accept" for r in out),
              "reject": sum(r["decision"] == "reject" for r in out), "issues": issues}
    return out, counts
