"""``coco2yolo fiftyone``: ground truth, results and label issues as FiftyOne samples.

FiftyOne (an optional extra with its own database) is not installed in CI: the conversion is plain Python and
tested as such; the dataset calls are checked against a stand-in module that records them as FiftyOne's
documented API takes them (``fo.Dataset(name, overwrite=)``, ``fo.Sample(filepath=, tags=)``,
``fo.Detections(detections=)``, ``fo.Detection(label=, bounding_box=, confidence=, ...)``,
``add_samples``, ``persistent``, ``evaluate_detections(pred_field, gt_field=, eval_key=, iou=)``).
"""

from __future__ import annotations

import sys
import types

import pytest

from coco2yolo import browse
from conftest import run_cli, write_json

GT = {
    "images": [{"id": 0, "file_name": "train/0000.jpg", "width": 200, "height": 100},
               {"id": 5, "file_name": "train/0005.jpg", "width": 100, "height": 100}],
    "categories": [{"id": 0, "name": "General trash"}, {"id": 3, "name": "Metal"}],
    "annotations": [{"id": 0, "image_id": 0, "category_id": 3, "bbox": [20, 10, 40, 50], "area": 2000, "iscrowd": 0},
                    {"id": 7, "image_id": 0, "category_id": 0, "bbox": [100, 0, 100, 100], "area": 1e4, "iscrowd": 1},
                    {"id": 8, "image_id": 5, "category_id": 0, "bbox": [0, 0, 50, 50], "area": 2500, "iscrowd": 0}],
}
PREDS = [{"image_id": 0, "category_id": 3, "bbox": [20, 10, 40, 50], "score": 0.9},
         {"image_id": 5, "category_id": 3, "bbox": [10, 10, 20, 20], "score": 0.4},
         {"image_id": 5, "category_id": 0, "bbox": [0, 0, 50, 50], "score": 0.8}]
ISSUES = [{"kind": "wrong_class", "score": 0.7, "annotation_id": 8, "image_id": 5, "bbox": [0, 0, 50, 50],
           "category_id": 0, "suggested_category_id": 3},
          {"kind": "missing", "score": 0.6, "annotation_id": None, "image_id": 0, "bbox": [150, 50, 20, 10],
           "category_id": 3, "suggested_category_id": None}]


class FakeFiftyOne(types.ModuleType):
    """Records what the command asks of FiftyOne."""

    def __init__(self, existing=()):
        super().__init__("fiftyone")
        self.existing, self.datasets = set(existing), []
        fake = self

        class Detection(dict):
            def __init__(self, **kw):
                super().__init__(kw)

        class Detections:
            def __init__(self, detections):
                self.detections = detections

        class Sample(dict):
            def __init__(self, filepath, tags=None):
                super().__init__()
                self.filepath, self.tags = filepath, tags

        class Dataset:
            def __init__(self, name, overwrite=False):
                self.name, self.overwrite, self.samples, self.persistent, self.evals = name, overwrite, [], False, []
                fake.datasets.append(self)

            def add_samples(self, samples):
                self.samples.extend(samples)

            def evaluate_detections(self, pred_field, gt_field, eval_key, iou):
                self.evals.append((pred_field, gt_field, eval_key, iou))

        self.Detection, self.Detections, self.Sample, self.Dataset = Detection, Detections, Sample, Dataset

    def dataset_exists(self, name):
        return name in self.existing


def _files(tmp_path):
    gt = write_json(tmp_path / "train.json", GT)
    preds = write_json(tmp_path / "v5l fold-0.json", PREDS)
    issues = write_json(tmp_path / "issues.json", ISSUES)
    return gt, preds, issues


def test_samples_carry_boxes_relative_names_scores_and_issue_tags(tmp_path):
    from coco2yolo.results import load_results

    gt, preds, issues = _files(tmp_path)
    dets = load_results(preds, {0, 5}, {0, 3})
    docs = browse.sample_docs(GT, {"pred_v5l": dets}, browse.read_issues_rows(issues, GT), tmp_path)
    assert [d["image_id"] for d in docs] == [0, 5]
    first, second = docs
    assert first["filepath"] == str(tmp_path / "train" / "0000.jpg")
    gt0 = first["fields"]["ground_truth"]
    assert gt0[0]["label"] == "Metal" and gt0[0]["bounding_box"] == [0.1, 0.1, 0.2, 0.5]  # relative x, y, w, h
    assert gt0[1]["iscrowd"] == 1 and gt0[1]["annotation_id"] == 7
    assert first["fields"]["pred_v5l"] == [{"label": "Metal", "bounding_box": [0.1, 0.1, 0.2, 0.5],
                                            "confidence": 0.9, "tags": []}]
    assert [d["confidence"] for d in second["fields"]["pred_v5l"]] == [0.4, 0.8]  # every box of its image, no other
    wrong = second["fields"]["ground_truth"][0]
    assert wrong["tags"] == ["issue:wrong_class"] and wrong["issue_score"] == 0.7 and wrong["suggested_label"] == "Metal"
    assert second["tags"] == ["issue:wrong_class"] and first["tags"] == ["issue:missing"]
    assert first["fields"]["label_issues"] == [{"label": "Metal", "bounding_box": [0.75, 0.5, 0.1, 0.1],
                                                "confidence": 0.6, "tags": ["issue:missing"]}]
    assert second["fields"]["label_issues"] == []


def test_field_names_are_valid_and_unique():
    assert browse.field_names(["a/v5l fold-0.json", "b/v5l fold-0.json", "c/-.json"]) == [
        "pred_v5l_fold_0", "pred_v5l_fold_0_2", "pred_results"]


def test_the_command_builds_a_persistent_evaluated_dataset(tmp_path, capsys, monkeypatch):
    gt, preds, issues = _files(tmp_path)
    fo = FakeFiftyOne()
    monkeypatch.setitem(sys.modules, "fiftyone", fo)
    code, out, err = run_cli(browse.main, browse.get_args_parser(), ["--gt", gt, preds, "--issues", issues], capsys)
    assert code == 0, err
    (ds,) = fo.datasets
    assert ds.name == "train" and ds.persistent and len(ds.samples) == 2
    assert ds.evals == [("pred_v5l_fold_0", "ground_truth", "eval_pred_v5l_fold_0", 0.5)]
    s0 = ds.samples[0]
    assert s0.tags == ["issue:missing"] and s0["coco_id"] == 0
    assert [d["label"] for d in s0["ground_truth"].detections] == ["Metal", "General trash"]
    assert len(s0["pred_v5l_fold_0"].detections) == 1 and len(s0["label_issues"].detections) == 1
    assert "2 photos, 3 annotations, 1 results files (3 boxes" in out and "1 label issues" not in out
    assert "2 label issues" in out
    assert "2 of 2 photos are not under" in err  # no photos in this test: said, not hidden


def test_an_existing_dataset_is_kept_unless_overwrite(tmp_path, capsys, monkeypatch):
    gt, preds, _ = _files(tmp_path)
    fo = FakeFiftyOne(existing={"mine"})
    monkeypatch.setitem(sys.modules, "fiftyone", fo)
    code, _, err = run_cli(browse.main, browse.get_args_parser(), ["--gt", gt, preds, "--name", "mine"], capsys)
    assert code == 2 and "--name mine: a FiftyOne dataset of that name exists" in err and not fo.datasets
    code, _, err = run_cli(browse.main, browse.get_args_parser(), ["--gt", gt, preds, "--name", "mine", "--overwrite",
                                                                   "--no-eval"], capsys)
    assert code == 0, err
    assert fo.datasets[0].overwrite and fo.datasets[0].evals == []


def test_without_fiftyone_one_line_names_the_extra(tmp_path, capsys, monkeypatch):
    gt, preds, _ = _files(tmp_path)
    monkeypatch.setitem(sys.modules, "fiftyone", None)  # import fiftyone -> ImportError
    code, _, err = run_cli(browse.main, browse.get_args_parser(), ["--gt", gt, preds], capsys)
    assert code == 2 and err.count("\n") == 1 and "pip install 'coco2yolo[fiftyone]'" in err


@pytest.mark.parametrize("issue, match", [
    ({"kind": "typo", "score": 0.5, "image_id": 0}, "issue 0: 'kind' must be one of wrong_class"),
    ({"kind": "missing", "score": 0.5, "image_id": 0, "bbox": [0, 0, "x", 1]}, "issue 0: 'bbox' must be 4 finite"),
    ({"kind": "bad_box", "score": 0.5, "image_id": 0, "annotation_id": 8}, "annotation 8 (image 0) is not in"),
    ({"kind": "bad_box", "score": float("nan"), "image_id": 0, "annotation_id": 0}, "'score' must be a finite"),
])
def test_a_bad_issues_file_is_one_line(tmp_path, capsys, monkeypatch, issue, match):
    gt, preds, _ = _files(tmp_path)
    bad = write_json(tmp_path / "bad.json", [issue])
    monkeypatch.setitem(sys.modules, "fiftyone", FakeFiftyOne())
    code, _, err = run_cli(browse.main, browse.get_args_parser(), ["--gt", gt, preds, "--issues", bad], capsys)
    assert code == 2 and err.count("\n") == 1 and match in err, err
