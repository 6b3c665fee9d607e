"""From label issues to fixed labels: a review page where a person decides, and the decisions applied.

    coco2yolo review ISSUES.json --gt GT.json --out PAGE.html          the page (page.py)
    coco2yolo review apply --gt GT.json --issues ISSUES.json (--decisions D.json | --accept-top K |
                           --accept-score S) --out FIXED.json             the fixed dataset (apply.py)
    coco2yolo review from-fiftyone DATASET --out D.json                 decisions tagged in the FiftyOne App

The issues come from ``python -m coco2yolo.label_issues`` (:mod:`coco2yolo.dataset.issues` is their format);
the decisions file is a JSON list of ``{"id": ISSUE_ID, "decision": "accept" | "reject", "category_id"?: int,
"bbox"?: [x, y, w, h]}`` (:mod:`coco2yolo.review.decisions`).
"""
