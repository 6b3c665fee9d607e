from coco2yolo.dataset.clean import CleanConfig, clean_dataset, summary_line
from coco2yolo.cocodata import CategoryMap, validate_dataset


def _data(anns, size=(100, 100)):
    d = {"images": [{"id": 0, "file_name": "a.jpg", "width": size[0], "height": size[1]}],
         "categories": [{"id": 0, "name": "can"}, {"id": 5, "name": "bag"}],
         "annotations": [{"id": i, "image_id": 0, "category_id": c, "bbox": b, **kw}
                         for i, (c, b, kw) in enumerate(anns)]}
    return validate_dataset(d, "t.json")


def _run(anns, **cfg):
    data = _data(anns)
    return clean_dataset(data, CategoryMap(data["categories"]), CleanConfig(**cfg))


def test_clip_moves_boxes_inside_and_counts_them():
    cleaned, rep = _run([(0, [-10, 90, 30, 20], {}), (0, [10, 10, 5, 5], {})])
    assert cleaned["annotations"][0]["bbox"] == [0.0, 90.0, 20.0, 10.0]
    assert rep["rules"]["clip"]["count"] == 1 and rep["rules"]["clip"]["per_class"] == {"can": 1}
    assert rep["rules"]["clip"]["example_annotation_ids"] == [0]


def test_min_size_drops_after_clipping():
    cleaned, rep = _run([(0, [99.5, 10, 20, 20], {}), (5, [10, 10, 0.5, 30], {}), (0, [10, 10, 1.5, 1.5], {}),
                         (0, [20, 20, 10, 10], {})])
    assert [a["id"] for a in cleaned["annotations"]] == [3]
    assert rep["rules"]["min_size"]["count"] == 3
    assert rep["rules"]["min_size"]["per_class"] == {"bag": 1, "can": 2}


def test_duplicates_same_class_only_keep_lowest_id():
    anns = [(0, [10, 10, 20, 20], {}), (0, [10.2, 10, 20, 20], {}), (5, [10, 10, 20, 20], {}),
            (0, [10, 10, 20, 20], {}), (0, [40, 40, 20, 20], {})]
    cleaned, rep = _run(anns)
    assert [a["id"] for a in cleaned["annotations"]] == [0, 2, 4]
    assert rep["rules"]["duplicate"]["count"] == 2
    off, _ = _run(anns, duplicate=False)
    assert len(off["annotations"]) == 5


def test_crowd_boxes_are_never_merged_as_duplicates():
    cleaned, _ = _run([(0, [10, 10, 20, 20], {}), (0, [10, 10, 20, 20], {"iscrowd": 1})])
    assert len(cleaned["annotations"]) == 2


def test_aspect_and_large_are_reported_and_kept_by_default():
    anns = [(0, [0, 0, 63, 3], {}), (0, [0, 0, 98, 98], {})]
    cleaned, rep = _run(anns)
    assert len(cleaned["annotations"]) == 2
    assert rep["rules"]["aspect"]["count"] == 1 and rep["rules"]["aspect"]["action"] == "flagged, kept"
    assert rep["rules"]["large"]["count"] == 1
    dropped, rep2 = _run(anns, drop_aspect=True, drop_large=True)
    assert dropped["annotations"] == [] and rep2["rules"]["large"]["action"] == "dropped"
    line = summary_line(rep)
    assert "23" not in line and "2 boxes -> 2" in line and "1 aspect>20" in line


def test_input_is_not_modified():
    data = _data([(0, [-10, 90, 30, 20], {})])
    before = repr(data)
    clean_dataset(data, CategoryMap(data["categories"]), CleanConfig())
    assert repr(data) == before


def _quadratic_rule(xyxy, thr):
    """The duplicate rule as first written: the full IoU matrix, kept boxes checked in order."""
    import numpy as np

    from coco2yolo.boxes import iou_xyxy

    iou, alive, dropped = iou_xyxy(xyxy, xyxy), [], np.zeros(len(xyxy), bool)
    for j in range(len(xyxy)):
        if any(iou[j, k] >= thr for k in alive):
            dropped[j] = True
        else:
            alive.append(j)
    return dropped


def test_the_duplicate_sweep_equals_the_quadratic_rule():
    import numpy as np

    from coco2yolo.dataset.sweep import greedy_duplicates as _greedy_duplicates

    rng = np.random.default_rng(0)
    for trial in range(400):
        n = int(rng.integers(2, 60))
        x, y = rng.integers(0, 20, n).astype(float), rng.integers(0, 20, n).astype(float)
        w, h = rng.integers(0, 8, n).astype(float), rng.integers(0, 8, n).astype(float)
        if trial % 4 == 0:
            w[:] = 0  # degenerate boxes
        xyxy = np.stack([x, y, x + w, y + h], 1)
        thr = float(rng.choice([0.3, 0.5, 0.95, 1.0, 0.0]))
        assert (_greedy_duplicates(xyxy, thr) == _quadratic_rule(xyxy, thr)).all(), (trial, thr)


def test_twenty_thousand_boxes_in_one_image_clean_quickly():
    """A dense scene: 20,000 boxes of one class in one image, 200 of them repeated (bench/bench_clean.py times it)."""
    import time

    import numpy as np

    rng = np.random.default_rng(1)
    boxes = [[float(v) for v in (rng.random() * 3900, rng.random() * 3900, 5 + rng.random() * 90, 5 + rng.random() * 90)]
             for _ in range(19800)]
    boxes += boxes[:200]
    data = {"images": [{"id": 0, "file_name": "a.jpg", "width": 4000, "height": 4000}],
            "categories": [{"id": 0, "name": "can"}],
            "annotations": [{"id": i, "image_id": 0, "category_id": 0, "bbox": b} for i, b in enumerate(boxes)]}
    data = validate_dataset(data, "t.json")
    t0 = time.perf_counter()
    cleaned, rep = clean_dataset(data, CategoryMap(data["categories"]), CleanConfig())
    assert rep["rules"]["duplicate"]["count"] >= 200
    assert {a["id"] for a in cleaned["annotations"]} >= set(range(200))  # the first of each pair is kept
    assert time.perf_counter() - t0 < 60  # generous: a quadratic rule needs 25 GB here; the timing is in bench/
