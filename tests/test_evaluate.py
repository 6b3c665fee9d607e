import contextlib
import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coco2yolo.evaluation import metrics as ev
from coco2yolo.cocodata import CategoryMap
from coco2yolo.results import Detections
from conftest import run_cli, write_json


def _gt(anns, n_img=3, cats=(0, 1)):
    return {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in range(n_img)],
            "categories": [{"id": c, "name": f"c{c}"} for c in cats],
            "annotations": [{"id": k, "image_id": i, "category_id": c, "bbox": b, "iscrowd": cr,
                             "area": b[2] * b[3]} for k, (i, c, b, cr) in enumerate(anns)]}


def _dets(rows):
    if not rows:
        return Detections.empty()
    i, c, b, s = zip(*rows)
    return Detections(np.array(i), np.array(c), np.array(b, float), np.array(s, float))


def _score(gt, dets, **kw):
    return ev.score(ev.prepare_gt(gt), dets, CategoryMap(gt["categories"]), **kw)


def _pycocotools_raw(gt, dets):
    """pycocotools on the ground truth exactly as given (no renumbering)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        g = COCO()
        g.dataset = json.loads(json.dumps(gt))
        g.createIndex()
        d = g.loadRes(ev._records(dets))
        e = COCOeval(g, d, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e.stats[1]


GT = _gt([(0, 0, [10, 10, 20, 20], 0), (0, 1, [50, 50, 30, 30], 0), (1, 0, [5, 5, 40, 40], 0),
          (2, 1, [60, 10, 20, 30], 0)])


def test_perfect_predictions_score_one():
    d = _dets([(a["image_id"], a["category_id"], a["bbox"], 0.9) for a in GT["annotations"]])
    s = _score(GT, d)
    assert s.map50 == pytest.approx(1.0, abs=1e-12) and s.map50_95 == pytest.approx(1.0, abs=1e-12)
    assert ev.nanmean_rows(ev.ap_from_matches(s.matches)) == pytest.approx(1.0)


def test_no_predictions_score_zero():
    s = _score(GT, Detections.empty())
    assert s.map50 == 0.0 and s.ap50 == {0: 0.0, 1: 0.0}
    assert ev.nanmean_rows(ev.ap_from_matches(s.matches)) == 0.0


def test_hand_computed_case():
    """Class 0: 2 GT. Detections by score: TP (img 0), FP, TP (img 1): precision 1, 1/2, 2/3 at
    recall 1/2, 1/2, 1. Interpolated: 1 for recall <= .5, 2/3 above -> AP = (51 * 1 + 50 * 2/3) / 101.
    Class 1: 2 GT, one found at score .5 -> AP = 51/101."""
    d = _dets([(0, 0, [10, 10, 20, 20], 0.9), (2, 0, [0, 0, 10, 10], 0.8), (1, 0, [6, 6, 40, 40], 0.7),
               (0, 1, [50, 50, 30, 31], 0.5)])
    s = _score(GT, d)
    ap0, ap1 = (51 + 50 * 2 / 3) / 101, 51 / 101
    assert s.ap50[0] == pytest.approx(ap0, abs=1e-12) and s.ap50[1] == pytest.approx(ap1, abs=1e-12)
    assert s.map50 == pytest.approx((ap0 + ap1) / 2, abs=1e-12)


def test_annotation_id_zero_is_renumbered():
    gt = _gt([(0, 0, [10, 10, 20, 20], 0), (1, 0, [30, 30, 20, 20], 0)], n_img=2, cats=(0,))
    assert gt["annotations"][0]["id"] == 0
    d = _dets([(0, 0, [10, 10, 20, 20], 0.9), (1, 0, [30, 30, 20, 20], 0.8)])
    assert _score(gt, d).map50 == pytest.approx(1.0)
    raw = _pycocotools_raw(gt, d)
    assert raw < 0.9  # pycocotools alone mis-scores the match with annotation id 0


def test_classes_without_gt_and_images_without_predictions():
    gt = _gt([(0, 0, [10, 10, 20, 20], 0)], n_img=3, cats=(0, 1, 2))
    s = _score(gt, _dets([(0, 0, [10, 10, 20, 20], 0.9), (1, 2, [1, 1, 5, 5], 0.3)]))
    assert s.map50 == pytest.approx(1.0) and np.isnan(s.ap50[1]) and np.isnan(s.ap50[2])


def test_crowd_boxes_are_ignored_like_cocoeval():
    gt = _gt([(0, 0, [10, 10, 20, 20], 0), (0, 0, [50, 50, 40, 40], 1)], n_img=1, cats=(0,))
    d = _dets([(0, 0, [10, 10, 20, 20], 0.9), (0, 0, [55, 55, 10, 10], 0.95)])
    s = _score(gt, d)
    assert s.map50 == pytest.approx(1.0)
    assert ev.nanmean_rows(ev.ap_from_matches(s.matches)) == pytest.approx(1.0)


box = st.tuples(st.floats(0, 80), st.floats(0, 80), st.floats(1, 40), st.floats(1, 40))


@settings(max_examples=40, deadline=None)
@given(gts=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 2), box, st.integers(0, 9)), max_size=20),
       dts=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 2), box, st.floats(0, 1)), max_size=40),
       noise=st.floats(0, 6), copies=st.integers(0, 2))
def test_random_cases_equal_pycocotools(gts, dts, noise, copies):
    gt = _gt([(i, c, list(b), int(cr == 0)) for i, c, b, cr in gts], n_img=5, cats=(0, 1, 2))
    rng = np.random.default_rng(len(gts) * 31 + len(dts))
    near = [(i, c, list(np.array(b) + rng.normal(0, noise, 4).clip(-0.5, 0.5)), float(rng.random()))
            for i, c, b, _ in gts for _ in range(copies)]
    d = _dets([(i, c, list(b), round(s, 2)) for i, c, b, s in dts] + near)
    for k, a in enumerate(gt["annotations"]):
        a["id"] = k + 1  # ids from 1: pycocotools' own answer is then the reference
    ours = _score(gt, d)
    ref = _score(gt, d, backend="pycocotools", with_matches=False)
    if len(d):
        raw = _pycocotools_raw(gt, d)  # -1: no ground truth to score (we say NaN)
        assert ours.map50 == pytest.approx(float("nan") if raw == -1 else raw, abs=1e-9, nan_ok=True)
    for a, b in ((ours.map50, ref.map50), (ours.map50_95, ref.map50_95)):
        assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, abs=1e-9)
    for c in (0, 1, 2):
        a, b = ours.ap50[c], ref.ap50[c]
        assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, abs=1e-9)
    mine = ev.ap_from_matches(ours.matches)
    for k, c in enumerate((0, 1, 2)):
        assert (np.isnan(mine[k]) and np.isnan(ref.ap50[c])) or mine[k] == pytest.approx(ref.ap50[c], abs=1e-9)


def test_bootstrap_weights_reproduce_and_interval_brackets_estimate():
    w1, w2 = ev.bootstrap_weights(50, 20, seed=1), ev.bootstrap_weights(50, 20, seed=1)
    assert (w1 == w2).all() and (w1.sum(axis=1) == 50).all()
    rng = np.random.default_rng(0)
    anns = [(i, 0, [10, 10, 30, 30], 0) for i in range(50)]
    gt = _gt(anns, n_img=50, cats=(0,))
    d = _dets([(i, 0, [10 + rng.normal(0, 6), 10, 30, 30], rng.random()) for i in range(50)])
    s = _score(gt, d)
    boot = ev.bootstrap_map50(s.matches, ev.bootstrap_weights(50, 300, 0))
    lo, hi = ev.interval(boot)
    assert lo < s.map50 < hi and hi - lo > 0.01


# --- command line -------------------------------------------------------------------------------

def _cli(argv, capsys):
    from coco2yolo.evaluation import command

    return run_cli(command.main, command.get_args_parser(), argv, capsys)


def test_cli_report_json_plots_and_difference(tmp_path, capsys):
    g = write_json(tmp_path / "val.json", GT)
    good = write_json(tmp_path / "good.json", [{"image_id": a["image_id"], "category_id": a["category_id"],
                                                "bbox": a["bbox"], "score": 0.9} for a in GT["annotations"]])
    half = write_json(tmp_path / "half.json", json.loads(good.read_text())[:2])
    code, out, err = _cli(["--gt", g, good, half, "--json", tmp_path / "m.json", "--plot", tmp_path / "plots",
                           "--bootstrap", "200"], capsys)
    assert code == 0, err
    assert "mAP50 1.0000" in out and "c1" in out and "half.json - " in out
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["files"][0]["mAP50"] == 1.0 and m["differences"][0]["delta_mAP50"] < 0
    assert len(m["files"][1]["mAP50_ci95"]) == 2
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {"ap50_per_class.png", "pr_0_good.png", "pr_1_half.png"}


@pytest.mark.parametrize("content, match", [
    ({"a": 1}, "must be a JSON list"),
    ([{"image_id": 0, "category_id": 0, "bbox": [0, 0, float("nan"), 1], "score": 1}], "not finite"),
    ([{"image_id": 0, "category_id": 0, "bbox": [0, 0, -1, 1], "score": 1}], "negative width"),
    ([{"image_id": 9, "category_id": 0, "bbox": [0, 0, 1, 1], "score": 1}], "image_id 9 is not in"),
    ([{"image_id": 0, "category_id": 4, "bbox": [0, 0, 1, 1], "score": 1}], "category_id 4 is not in"),
])
def test_cli_bad_results(tmp_path, capsys, content, match):
    g = write_json(tmp_path / "val.json", GT)
    p = tmp_path / "p.json"
    p.write_text(json.dumps(content))
    code, _, err = _cli(["--gt", g, p], capsys)
    assert code == 2 and match in err and "p.json" in err and len(err.strip().splitlines()) == 1


def test_the_large_input_port_equals_cocoeval_to_the_bit():
    """Above LARGE predictions, point estimates come from the project's port of COCOeval (arrays only): its
    whole precision array must equal faster-coco-eval's on random cases (ties, crowds, empty classes)."""
    from coco2yolo.evaluation.metrics import cocoeval_precision, port_precision, prepare_gt
    from coco2yolo.results import Detections

    rng = np.random.default_rng(0)
    for _ in range(25):
        n_img, cats = int(rng.integers(3, 30)), [0, 3, 7]
        images = [{"id": i * 2, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in range(n_img)]
        anns = []
        for i in range(n_img):
            for _ in range(int(rng.integers(0, 6))):
                x, y = rng.random(2) * 70
                w, h = rng.random(2) * 30 + 1
                anns.append({"id": len(anns), "image_id": i * 2, "category_id": int(rng.choice(cats)),
                             "bbox": [x, y, w, h], "iscrowd": int(rng.random() < 0.1)})
        gt = prepare_gt({"images": images, "categories": [{"id": c, "name": str(c)} for c in cats], "annotations": anns})
        n = int(rng.integers(1, 400))
        dets = Detections((rng.integers(0, n_img, n) * 2).astype(np.int64), rng.choice(cats, n).astype(np.int64),
                          np.column_stack([rng.random((n, 2)) * 70, rng.random((n, 2)) * 30 + 1]),
                          rng.random(n).round(2))
        ref = cocoeval_precision(gt, dets, 100)[..., 0:1, -1:]
        assert np.array_equal(port_precision(gt, dets, cats, 100), ref)


@pytest.mark.parametrize("areas", ["coco", "bins"])
def test_the_port_by_area_equals_cocoeval_to_the_bit(areas):
    """The report's AP50 by size comes from the port above LARGE predictions: with area ranges (ground truth
    outside a range ignored, unmatched detections outside it too) it must equal faster-coco-eval's array."""
    from coco2yolo.evaluation.metrics import (COCO_AREAS, SIZE_BINS, cocoeval_precision, port_precision,
                                              precision50_by_area, prepare_gt)
    from coco2yolo.results import Detections

    ranges = COCO_AREAS if areas == "coco" else SIZE_BINS
    rng = np.random.default_rng(1)
    for _ in range(12):
        n_img, cats = int(rng.integers(3, 20)), [0, 3, 7]
        images = [{"id": i + 1, "file_name": f"{i}.jpg", "width": 400, "height": 400} for i in range(n_img)]
        anns = []
        for i in range(n_img):
            for _ in range(int(rng.integers(0, 6))):
                x, y = rng.random(2) * 200
                w, h = np.exp(rng.uniform(1, 5.3, 2))  # 3 to 200 px: every size range
                anns.append({"id": len(anns), "image_id": i + 1, "category_id": int(rng.choice(cats)),
                             "bbox": [x, y, w, h], "iscrowd": int(rng.random() < 0.1)})
        gt = prepare_gt({"images": images, "categories": [{"id": c, "name": str(c)} for c in cats], "annotations": anns})
        n = int(rng.integers(1, 300))
        dets = Detections((rng.integers(0, n_img, n) + 1).astype(np.int64), rng.choice(cats, n).astype(np.int64),
                          np.column_stack([rng.random((n, 2)) * 200, np.exp(rng.uniform(1, 5.3, (n, 2)))]),
                          rng.random(n).round(2))
        ref = cocoeval_precision(gt, dets, 100, area_ranges=ranges)[..., -1:]
        assert np.array_equal(port_precision(gt, dets, cats, 100, ranges), ref)
        assert np.array_equal(precision50_by_area(gt, dets, 100, "faster", ranges), ref[0, :, :, :, 0])
