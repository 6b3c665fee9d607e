"""python -m coco2yolo.label_issues: planted label errors are found, ranked first, with the right kind;
--drop-annotations removes them as a counted cleaning rule."""

from __future__ import annotations

import json

import numpy as np
import pytest

from coco2yolo import label_issues as li
from coco2yolo.dataset import convert as conv
from conftest import run_cli, write_json
from helpers import make_coco


def _planted(root):
    """20 images with two boxes each and a model that sees them, except four planted label errors:
    image 1: box of class 0 labelled 2 (the model says 0); image 2: a label where nothing is;
    image 3: an object without a label (the model sees class 1); image 4: a label shifted off its object."""
    rng = np.random.default_rng(0)
    images = [(i, f"train/{i:02d}.jpg", 200, 200) for i in range(20)]
    anns, preds, k = [], [], 0
    for i in range(20):
        for b in ([20.0, 20.0, 60.0, 60.0], [110.0, 110.0, 60.0, 50.0]):
            c = int(rng.integers(3))
            anns.append({"id": k, "image_id": i, "category_id": c, "bbox": b, "iscrowd": 0})
            preds.append({"image_id": i, "category_id": c, "bbox": [v + 1 for v in b], "score": 0.9})
            k += 1
        preds.append({"image_id": i, "category_id": 0, "bbox": [150.0, 10.0, 30.0, 30.0], "score": 0.02})
    anns[2]["category_id"] = (preds[3 * 1]["category_id"] + 1) % 3             # image 1: wrong class
    wrong_class = anns[2]["id"]
    anns.append({"id": 99, "image_id": 2, "category_id": 1, "bbox": [150.0, 150.0, 30.0, 30.0], "iscrowd": 0})
    preds.append({"image_id": 3, "category_id": 1, "bbox": [150.0, 20.0, 40.0, 40.0], "score": 0.9})  # missing
    anns[8]["bbox"] = [50.0, 50.0, 60.0, 60.0]                                   # image 4: shifted
    gt = make_coco(root, images, anns, [0, 1, 2])
    return gt, write_json(root / "oof.json", preds), {"wrong_class": wrong_class, "no_object": 99,
                                                      "bad_box": anns[8]["id"]}


def test_planted_errors_come_first_with_their_kind(tmp_path, capsys):
    gt, preds, planted = _planted(tmp_path)
    code, out, err = run_cli(li.main, li.get_args_parser(), ["--gt", gt, "--preds", preds, "--out",
                                                            tmp_path / "issues.json", "--report", tmp_path / "i.html"],
                             capsys)
    assert code == 0, err
    issues = json.loads((tmp_path / "issues.json").read_text())
    top = {(i["kind"], i["annotation_id"]) for i in issues[:4]}
    assert ("wrong_class", planted["wrong_class"]) in top and ("no_object", planted["no_object"]) in top
    assert ("bad_box", planted["bad_box"]) in top and ("missing", None) in top, issues[:6]
    swapped = next(i for i in issues if i["annotation_id"] == planted["wrong_class"])
    data = json.loads(gt.read_text())
    truth = next(p for p in json.loads(preds.read_text()) if p["image_id"] == 1 and p["bbox"][0] == 21.0)
    assert swapped["suggested_category_id"] == truth["category_id"] != swapped["category_id"]
    missing = next(i for i in issues if i["kind"] == "missing")
    assert missing["image_id"] == 3 and missing["category_id"] == 1 and missing["bbox"] == [150.0, 20.0, 40.0, 40.0]
    assert all(set(i) >= {"kind", "score", "annotation_id", "image_id", "bbox", "category_id", "suggested_category_id"}
               for i in issues)
    assert [i["score"] for i in issues] == sorted((i["score"] for i in issues), reverse=True)
    assert len(data["annotations"]) == 41
    page = (tmp_path / "i.html").read_text()
    assert "wrong_class" in page and "data:image/jpeg;base64," in page


def test_drop_annotations_is_a_counted_cleaning_rule(tmp_path, capsys):
    gt, preds, planted = _planted(tmp_path)
    run_cli(li.main, li.get_args_parser(), ["--gt", gt, "--preds", preds, "--out", tmp_path / "issues.json",
                                            "--top", "3"], capsys)
    code, out, err = run_cli(conv.main, conv.get_args_parser(),
                             [gt, "--out", tmp_path / "ds", "--drop-annotations", tmp_path / "issues.json",
                              "--issue-kinds", "wrong_class", "no_object"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "ds" / "report.json").read_text())["cleaning"]["rules"]["label_issues"]
    assert report["action"] == "dropped" and report["count"] == 2
    assert set(report["example_annotation_ids"]) == {planted["wrong_class"], planted["no_object"]}
    kept = {a["id"] for a in json.loads((tmp_path / "ds" / "cleaned.json").read_text())["annotations"]}
    assert planted["wrong_class"] not in kept and planted["bad_box"] in kept
    assert "dropped 2 label issues" in out


def test_an_issues_file_for_another_dataset_is_refused(tmp_path, capsys):
    gt, _, _ = _planted(tmp_path)
    other = write_json(tmp_path / "other.json", [{"kind": "wrong_class", "score": 0.9, "annotation_id": 12345,
                                                   "image_id": 0, "bbox": [1, 1, 2, 2], "category_id": 0,
                                                   "suggested_category_id": 1}])
    code, _, err = run_cli(conv.main, conv.get_args_parser(), [gt, "--out", tmp_path / "ds", "--drop-annotations",
                                                               other], capsys)
    assert code == 2 and "made for another dataset" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("preds, match", [([{"image_id": 77, "category_id": 0, "bbox": [1, 1, 2, 2], "score": 1}],
                                           "image_id 77 is not in the reference"),
                                          ("", "not valid JSON")])
def test_bad_predictions_are_one_line(tmp_path, capsys, preds, match):
    gt, _, _ = _planted(tmp_path)
    p = tmp_path / "p.json"
    p.write_text(preds if isinstance(preds, str) else json.dumps(preds))
    code, _, err = run_cli(li.main, li.get_args_parser(), ["--gt", gt, "--preds", p, "--out", tmp_path / "i.json"],
                           capsys)
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "i.json").exists()


def test_scores_follow_the_documented_formula():
    """One image, three annotations of class 0 and predictions placed to give known confirm/other/near values;
    a fourth prediction over nothing is a missing box, a fifth below --high-conf is not."""
    from coco2yolo.results import Detections

    gt = {"images": [{"id": 1, "file_name": "a.jpg", "width": 400, "height": 400}],
          "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}],
          "annotations": [{"id": 10, "image_id": 1, "category_id": 0, "bbox": [0, 0, 100, 100], "iscrowd": 0},
                          {"id": 11, "image_id": 1, "category_id": 0, "bbox": [200, 0, 100, 100], "iscrowd": 0},
                          {"id": 12, "image_id": 1, "category_id": 0, "bbox": [0, 200, 100, 100], "iscrowd": 0}]}
    rows = [(0, [0, 0, 100, 100], 0.8),     # ann 10 confirmed at 0.8 ...
            (1, [0, 0, 100, 100], 0.6),     # ... and another class sits on it at 0.6
            (0, [250, 0, 100, 100], 0.7),   # ann 11: its class at IoU 1/3, no confirmation
            (0, [300, 300, 60, 60], 0.9),   # over nothing: missing
            (1, [300, 200, 50, 50], 0.2)]   # over nothing but below --high-conf 0.25
    dets = Detections(np.full(len(rows), 1, np.int64), np.array([r[0] for r in rows], np.int64),
                      np.array([r[1] for r in rows], float), np.array([r[2] for r in rows], float))
    issues = {(i["kind"], i["annotation_id"]): i for i in li.find_issues(gt, dets, high=0.25, low=0.25)}
    assert issues[("wrong_class", 10)]["score"] == pytest.approx(0.2 * (0.9 + 0.1 * 0.6))
    assert issues[("wrong_class", 10)]["suggested_category_id"] == 1
    assert issues[("bad_box", 11)]["score"] == pytest.approx(1.0 * (0.9 + 0.1 * 0.7))
    assert issues[("no_object", 12)]["score"] == pytest.approx(0.9)
    missing = [i for i in issues.values() if i["kind"] == "missing"]
    assert len(missing) == 1 and missing[0]["score"] == pytest.approx(0.9)
    assert missing[0]["bbox"] == [300.0, 300.0, 60.0, 60.0]
    assert li.find_issues(gt, dets, high=0.25, low=0.25)[0]["kind"] == "bad_box"  # ranked first
    # each issue carries its fix: the explaining prediction's box, the missing box and its class; ids are stable
    assert issues[("bad_box", 11)]["suggested_bbox"] == [250.0, 0.0, 100.0, 100.0]
    assert issues[("wrong_class", 10)]["suggested_bbox"] is None and issues[("no_object", 12)]["suggested_bbox"] is None
    assert missing[0]["suggested_bbox"] == missing[0]["bbox"] and missing[0]["suggested_category_id"] == 0
    assert issues[("bad_box", 11)]["id"] == "bad_box/11" and missing[0]["id"].startswith("missing/1/")
    again = li.find_issues(gt, dets, high=0.25, low=0.25)
    assert [i["id"] for i in again] == [i["id"] for i in li.find_issues(gt, dets, high=0.25, low=0.25)]
    assert len({i["id"] for i in again}) == len(again)
    # with --low-conf above the other explanations, ann 11 has no explanation left: no_object
    relabelled = {(i["kind"], i["annotation_id"]) for i in li.find_issues(gt, dets, high=0.25, low=0.75)}
    assert ("no_object", 11) in relabelled and ("no_object", 10) in relabelled


def test_kinds_keeps_only_the_chosen_kinds(tmp_path, capsys):
    gt, preds, _ = _planted(tmp_path)
    code, _, err = run_cli(li.main, li.get_args_parser(), ["--gt", gt, "--preds", preds, "--out",
                                                            tmp_path / "m.json", "--kinds", "missing"], capsys)
    assert code == 0, err
    issues = json.loads((tmp_path / "m.json").read_text())
    assert issues and {i["kind"] for i in issues} == {"missing"}
    code, _, err = run_cli(li.main, li.get_args_parser(), ["--gt", gt, "--preds", preds, "--out",
                                                            tmp_path / "x.json", "--kinds", "typo"], capsys)
    assert code == 2 and "invalid choice" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("seed", range(6))
def test_first_of_each_keeps_what_the_box_by_box_greedy_kept(seed):
    """The blocked greedy (one array operation a block) keeps exactly the boxes a box-at-a-time loop kept,
    across block and chunk edges, with repeats, zero-area boxes and exact ties at the threshold."""
    from coco2yolo.boxes import iou_xyxy

    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 700))
    xy = rng.integers(0, 60, size=(n, 2)).astype(float)
    wh = rng.integers(0, 25, size=(n, 2)).astype(float)  # integer boxes: IoU exactly 0.5 happens
    boxes = np.concatenate([xy, xy + wh], axis=1)
    if n > 10:
        boxes[5] = boxes[3]  # a repeat
    naive: list[int] = []
    for m in range(n):
        if naive and iou_xyxy(boxes[m][None], boxes[naive]).max() >= 0.5:
            continue
        naive.append(m)
    assert li.first_of_each(boxes, 0.5, block=64, chunk=50) == naive
    assert li.first_of_each(boxes, 0.5) == naive
