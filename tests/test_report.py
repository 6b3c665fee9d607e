"""evaluate.py --report: the numbers, the error breakdown, the gallery, and the page in a real browser."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from coco2yolo.evaluation import command, metrics, tide
from coco2yolo.results import Detections
from conftest import run_cli, write_json


def _photos(root: Path, n: int, size: int = 96) -> list[dict]:
    rng = np.random.default_rng(0)
    images = []
    for i in range(n):
        (root / "img").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "img" / f"{i}.jpg"), rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        images.append({"id": i, "file_name": f"img/{i}.jpg", "width": size, "height": size})
    return images


def _case(root: Path):
    """One image per situation: a hit, a class confusion, a missed box, a false alarm on background,
    a badly placed box and a duplicate. Classes: 0 a, 1 b, 2 c."""
    images = _photos(root, 6)
    box = [20.0, 20.0, 40.0, 40.0]
    gt_rows = [(0, 0), (1, 1), (2, 2), (3, 0), (4, 1), (5, 2)]
    anns = [{"id": k, "image_id": i, "category_id": c, "bbox": box, "iscrowd": 0, "area": 1600.0}
            for k, (i, c) in enumerate(gt_rows)]
    gt = write_json(root / "gt.json", {"images": images, "categories": [{"id": k, "name": n} for k, n in
                                                                        enumerate("abc")], "annotations": anns})
    preds = [
        {"image_id": 0, "category_id": 0, "bbox": box, "score": 0.9},                 # hit
        {"image_id": 1, "category_id": 0, "bbox": box, "score": 0.8},                 # b called a: cls
        # image 2: box c missed (nothing there)
        {"image_id": 3, "category_id": 0, "bbox": box, "score": 0.95},                # hit
        {"image_id": 3, "category_id": 1, "bbox": [70.0, 70.0, 20.0, 20.0], "score": 0.7},  # background
        {"image_id": 4, "category_id": 1, "bbox": [40.0, 40.0, 40.0, 40.0], "score": 0.6},  # loc (IoU 0.14)
        {"image_id": 5, "category_id": 2, "bbox": box, "score": 0.85},                # hit
        {"image_id": 5, "category_id": 2, "bbox": [21.0, 20.0, 40.0, 40.0], "score": 0.5},  # duplicate
    ]
    return gt, write_json(root / "preds.json", preds)


def test_confusion_matrix_and_error_types_on_a_known_case(tmp_path):
    gt, preds = _case(tmp_path)
    out = command.evaluate_and_write(str(gt), [str(preds)], n_boot=50, json_out=str(tmp_path / "m.json"),
                                     report=str(tmp_path / "r.html"))
    f = out["files"][0]
    cm = np.array(f["confusion"]["counts"])  # rows true a b c background, columns predicted a b c background
    assert cm[0, 0] == 2 and cm[1, 0] == 1 and cm[2, 2] == 1 and cm[2, 3] == 1  # b->a; one c missed
    assert cm[3, 1] == 2 and cm[1, 3] == 1  # false alarms of b (background and badly placed); b missed
    counts = f["errors"]["counts"]
    assert counts == {"cls": 1, "loc": 1, "both": 0, "dupe": 1, "bkg": 1, "missed": 1}
    d = f["errors"]["delta_mAP50"]
    assert d["cls"] > 0 and d["loc"] > 0 and d["missed"] > 0  # the duplicate ranks below its class's only hit: 0
    assert f["errors"]["baseline_mAP50"] == pytest.approx(f["mAP50"], abs=1e-9)
    assert {b["size"] for b in f["AP50_by_size"]["bins"]} == {"<32", "32-96", "96-256", "256-512", ">512"}
    assert sum(b["boxes"] for b in f["AP50_by_size"]["bins"]) == 6
    assert len(f["per_class_AP50_ci95"]) == 3
    page = (tmp_path / "r.html").read_text()
    for section in ("Confusion matrix", "AP50 by object size", "What each error type costs", "Gallery",
                    "The most confident false alarms", "Settings and versions", "data:image/jpeg;base64,"):
        assert section in page, section


def test_tide_costs_on_a_hand_computed_case():
    """Two boxes, one prediction of the wrong class on the first, one badly placed on the second."""
    gt = {"images": [{"id": 0, "file_name": "a.jpg", "width": 100, "height": 100}],
          "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}],
          "annotations": [{"id": 1, "image_id": 0, "category_id": 0, "bbox": [10, 10, 30, 30], "iscrowd": 0, "area": 900},
                          {"id": 2, "image_id": 0, "category_id": 1, "bbox": [60, 60, 30, 30], "iscrowd": 0, "area": 900}]}
    dets = Detections(np.array([0, 0]), np.array([1, 1]), np.array([[10, 10, 30, 30], [70, 70, 30, 30]], float),
                      np.array([0.9, 0.8]))  # class wrong on the first, place wrong on the second
    r = tide.analyse(metrics.prepare_gt(gt), dets, [0, 1])
    assert list(r["det_error"]) == ["cls", "loc"] and r["counts"]["missed"] == 0
    assert r["baseline_mAP50"] == 0.0
    # fixing the class error alone: a's AP 1, b's 0 -> 0.5; fixing the place alone: b's hit ranks below the
    # (unfixed) class error in b -> AP_b 0.5, a's 0 -> 0.25
    assert r["delta_mAP50"]["cls"] == pytest.approx(0.5, abs=1e-9) and r["delta_mAP50"]["loc"] == pytest.approx(0.25)


def test_report_without_images_leaves_the_gallery_out_with_a_note(tmp_path):
    gt, preds = _case(tmp_path)
    shutil.rmtree(tmp_path / "img")
    command.evaluate_and_write(str(gt), [str(preds)], n_boot=20, report=str(tmp_path / "r.html"))
    page = (tmp_path / "r.html").read_text()
    assert "images not found under" in page and "data:image/jpeg" not in page and "Confusion matrix" in page


def test_report_size_cap(tmp_path):
    gt, preds = _case(tmp_path)
    from coco2yolo.evaluation.report import ReportOptions

    command.evaluate_and_write(str(gt), [str(preds)], n_boot=20, report=str(tmp_path / "r.html"),
                               report_options=ReportOptions(max_mb=0.2))
    page = (tmp_path / "r.html").read_text()
    assert len(page.encode()) < 0.3e6 and "MB cap" in page


@pytest.mark.parametrize("what, match", [("unknown image", "image_id 99 is not in the reference"),
                                         ("empty", "not valid JSON"), ("not a list", "must be a JSON list")])
def test_bad_inputs_are_one_line(tmp_path, capsys, what, match):
    gt, _ = _case(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text({"unknown image": json.dumps([{"image_id": 99, "category_id": 0, "bbox": [1, 1, 2, 2],
                                                   "score": 0.5}]), "empty": "", "not a list": "{}"}[what])
    code, _, err = run_cli(command.main, command.get_args_parser(),
                           ["--gt", gt, bad, "--report", tmp_path / "r.html"], capsys)
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r.html").exists()


# --- in a real browser --------------------------------------------------------------------------

def _browser():
    chromium, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not chromium or not driver:
        from helpers import unavailable

        unavailable("headless Chromium is not installed here (.ci/run installs Debian's chromium and chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,2000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


def _value(doc, path: str):
    for part in path.split("."):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def test_the_page_in_headless_chromium(tmp_path):
    gt, preds = _case(tmp_path)
    other = write_json(tmp_path / "other.json", json.loads(preds.read_text())[:4])
    command.evaluate_and_write(str(gt), [str(preds), str(other)], n_boot=100, json_out=str(tmp_path / "m.json"),
                               report=str(tmp_path / "r.html"))
    doc = json.loads((tmp_path / "m.json").read_text())
    browser = _browser()
    try:
        browser.get((tmp_path / "r.html").as_uri())
        assert browser.save_screenshot(str(tmp_path / "shot.png"))
        errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0])")
        assert len(images) >= 10 and all(ok for _, ok in images), images
        cells = browser.execute_script(
            "return Array.from(document.querySelectorAll('[data-metric]')).map("
            "e => [e.dataset.metric, e.dataset.format, e.textContent.trim()])")
    finally:
        browser.quit()
    assert len(cells) == 19  # 2 files x (4 in the summary + 1 + 3 classes) + 3 for the difference
    for path, fmt, text in cells:
        value = _value(doc, path)
        want = "no GT" if value is None else (f"{value:+.4f}" if fmt == "s4" else f"{value:.4f}")
        assert text == want, (path, text, want)
    assert (tmp_path / "shot.png").stat().st_size > 10_000


@pytest.mark.parametrize("seed", range(3))
def test_confusion_in_groups_of_images_counts_the_same(seed):
    """The confusion matrix is matched a group of images at a time (memory that does not grow with the file);
    any grouping gives the counts of one call over everything, crowd boxes and images without predictions
    included."""
    from coco2yolo.cocodata import CategoryMap
    from coco2yolo.evaluation.report import confusion
    from coco2yolo.results import image_positions, image_runs

    rng = np.random.default_rng(seed)
    cats = [{"id": c, "name": f"c{c}"} for c in (0, 3, 5)]
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in range(1, 31)]
    anns, rows = [], []
    for im in images:
        for _ in range(int(rng.integers(0, 5))):
            x, y, w, h = rng.uniform(0, 60, 2).tolist() + rng.uniform(5, 40, 2).tolist()
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": int(rng.choice([0, 3, 5])),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(rng.random() < 0.1)})
            if rng.random() < 0.7:  # a prediction near it, sometimes of another class
                rows.append((im["id"], int(rng.choice([0, 3, 5])), [x + rng.normal(0, 3), y + rng.normal(0, 3), w, h],
                             float(rng.random())))
        if im["id"] % 4 and rng.random() < 0.8:  # false alarms; every fourth image has no extra prediction
            rows.append((im["id"], 0, rng.uniform(0, 60, 2).tolist() + [10.0, 10.0], float(rng.random())))
    gt = {"images": images, "categories": cats, "annotations": anns}
    dets = Detections(np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64),
                      np.array([r[2] for r in rows], np.float64), np.array([r[3] for r in rows], np.float64))
    cmap = CategoryMap(cats)
    whole = confusion(gt, dets, cmap, 0.25, 0.5, chunk=10**9)
    assert whole.sum() > 0
    for chunk in (1, 3, 7):
        ids = [im["id"] for im in images]
        pos, _ = image_positions(dets.select(dets.score >= 0.25).image_id, ids)
        groups = [ids[a:b] for a, b in image_runs(np.bincount(pos, minlength=len(ids)), chunk)]
        assert sorted(i for g in groups for i in g) == ids and len(groups) > 1
        np.testing.assert_array_equal(confusion(gt, dets, cmap, 0.25, 0.5, chunk=chunk), whole)


def test_report_above_the_large_input_threshold_gives_the_same_page_numbers(tmp_path, monkeypatch):
    """Above metrics.LARGE predictions the scores hold area 'all' only (the port): the report's AP50 by size,
    confusion matrix and error costs must come out as below it (it once failed with an IndexError there)."""
    gt, preds = _case(tmp_path)
    small = command.evaluate_and_write(str(gt), [str(preds)], n_boot=20, json_out=str(tmp_path / "a.json"),
                                       report=str(tmp_path / "a.html"))["files"][0]
    monkeypatch.setattr(metrics, "LARGE", 3)
    large = command.evaluate_and_write(str(gt), [str(preds)], n_boot=20, json_out=str(tmp_path / "b.json"),
                                       report=str(tmp_path / "b.html"))["files"][0]
    assert large["AP50_by_size"] == small["AP50_by_size"]
    assert large["confusion"] == small["confusion"] and large["errors"] == small["errors"]
    assert large["mAP50"] == pytest.approx(small["mAP50"], abs=1e-12)
