"""Fuzzing every command's COCO and results readers: each mutated input ends in exit 0 or 2 with at
most one line on stderr, never a traceback, and no input file changes (its hash is checked)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coco2yolo import cli, sidecar
from coco2yolo.dataset import convert as conv
from coco2yolo.fusion import ensemble as ensembling
from coco2yolo.evaluation import command as evaluation
from coco2yolo import inference as predict
from coco2yolo.training import train as train
from coco2yolo.cocodata import CategoryMap
from coco2yolo.errors import UserError
from conftest import run_cli
from fuzzing import mutated
from helpers import ann, make_coco

SEEDS = st.integers(0, 2**32 - 1)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def _check(code, err):
    assert code in (0, 2), (code, err)
    assert "Traceback" not in err, err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small valid dataset, results, and a fusion setting to mutate."""
    root = tmp_path_factory.mktemp("fuzzbase")
    images = [(i, f"train/{i}.jpg", 32, 32) for i in range(4)]
    anns = [ann(0, 0, 0, [2, 2, 10, 10]), ann(1, 1, 1, [5, 5, 8, 8]), ann(2, 2, 0, [1, 1, 20, 20]),
            ann(3, 3, 1, [3, 3, 3, 3])]
    gt_path = make_coco(root / "ds", images, anns, [0, 1])
    gt = json.loads(gt_path.read_text())
    preds = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.8}
             for a in anns]
    setting = ensembling.setting_doc(dict(ensembling.DEFAULTS), 2)
    return {"root": root, "gt": gt, "preds": preds, "setting": setting}


def _write(folder: Path, name: str, data: bytes) -> Path:
    p = folder / name
    p.write_bytes(data)
    return p


@FUZZ
@given(seed=SEEDS)
def test_convert_reader(base, tmp_path_factory, capsys, seed):
    work = tmp_path_factory.mktemp("conv")
    shutil.copytree(base["root"] / "ds", work / "ds")
    src = _write(work / "ds", "fuzz.json", mutated(base["gt"], random.Random(seed)))
    before = _tree_digest(work / "ds")
    code, _, err = run_cli(conv.main, conv.get_args_parser(), [src, "--out", work / "out", "--val-fraction", "0.5"],
                           capsys)
    _check(code, err)
    assert _tree_digest(work / "ds") == before


def _gt_and_preds(base, work, seed, which):
    """The ground truth and predictions files, one of them (``which``) mutated; and the folder's digest."""
    rng = random.Random(seed)
    gt = _write(work, "gt.json", mutated(base["gt"], rng) if which == "gt" else json.dumps(base["gt"]).encode())
    pr = _write(work, "p.json", mutated(base["preds"], rng) if which == "preds" else json.dumps(base["preds"]).encode())
    return gt, pr, _tree_digest(work)


def _gt_and_preds_argv(command, gt, pr, work):
    if command == "evaluate":
        return evaluation, ["--gt", gt, pr, "--bootstrap", "5", "--json", work / "out" / "m.json"]
    from coco2yolo import label_issues

    return label_issues, ["--gt", gt, "--preds", pr, "--out", work / "out" / "i.json"]


@FUZZ
@pytest.mark.parametrize("command", ["evaluate", "label_issues"])
@given(seed=SEEDS, which=st.sampled_from(["gt", "preds"]))
def test_gt_and_predictions_readers(base, tmp_path_factory, capsys, command, seed, which):
    """evaluate.py and label_issues: the ground truth or the predictions mutated."""
    work = tmp_path_factory.mktemp(command)
    gt, pr, before = _gt_and_preds(base, work, seed, which)
    module, argv = _gt_and_preds_argv(command, gt, pr, work)
    code, _, err = run_cli(module.main, module.get_args_parser(), argv, capsys)
    _check(code, err)
    assert {k: v for k, v in _tree_digest(work).items() if not k.startswith("out")} == before


@FUZZ
@given(seed=SEEDS, which=st.sampled_from(["images", "preds", "setting", "tune"]))
def test_ensemble_readers(base, tmp_path_factory, capsys, seed, which):
    work = tmp_path_factory.mktemp("ens")
    rng = random.Random(seed)
    gt = _write(work, "gt.json", mutated(base["gt"], rng) if which in ("images", "tune")
                else json.dumps(base["gt"]).encode())
    pa = _write(work, "a.json", mutated(base["preds"], rng) if which == "preds" else json.dumps(base["preds"]).encode())
    pb = _write(work, "b.json", json.dumps(base["preds"]).encode())
    argv = [pa, pb, "--out", work / "out" / "f.json"]
    if which == "setting":
        argv += ["--images", gt, "--setting", _write(work, "s.json", mutated(base["setting"], rng))]
    elif which == "tune":
        argv += ["--tune", gt, "--bootstrap", "5", "--tune-iou", "0.5", "--tune-methods", "wbf"]
    else:
        argv += ["--images", gt]
    before = _tree_digest(work)
    code, _, err = run_cli(ensembling.main, ensembling.get_args_parser(), argv, capsys)
    _check(code, err)
    assert {k: v for k, v in _tree_digest(work).items() if not k.startswith("out")} == before


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=SEEDS, which=st.sampled_from(["images", "sidecar"]))
def test_infer_readers(base, tiny_weights, tmp_path_factory, capsys, seed, which):
    work = tmp_path_factory.mktemp("inf")
    shutil.copytree(base["root"] / "ds", work / "ds")
    rng = random.Random(seed)
    images = {"images": base["gt"]["images"], "categories": [{"id": k, "name": str(k)} for k in range(10)]}
    src = _write(work / "ds", "test.json", mutated(images, rng) if which == "images" else json.dumps(images).encode())
    w = work / "w.pt"
    shutil.copy(tiny_weights, w)
    side = json.loads(tiny_weights.with_suffix(".json").read_text())
    _write(work, "w.json", mutated(side, rng) if which == "sidecar" else json.dumps(side).encode())
    before = _tree_digest(work)
    code, _, err = run_cli(predict.main, predict.get_args_parser(),
                           ["--weights", w, "--images", src, "--out", work / "out" / "p.json", "--device", "cpu"],
                           capsys)
    _check(code, err)
    assert {k: v for k, v in _tree_digest(work).items() if not k.startswith("out")} == before


@FUZZ
@given(seed=SEEDS, which=st.sampled_from(["categories", "pseudo_results", "pseudo_images"]))
def test_training_input_readers(base, yolo_data, sample, tmp_path_factory, capsys, seed, which):
    """The files train_yolo.py reads besides checkpoints: categories.json (via data.yaml) and the
    pseudo-label results and images, each checked before any training starts."""
    from coco2yolo.training.pseudo import build_pseudo_dataset

    work = tmp_path_factory.mktemp("tr")
    rng = random.Random(seed)
    ds = work / "ds"
    shutil.copytree(yolo_data, ds, symlinks=True)
    (ds / "data.yaml").write_text((ds / "data.yaml").read_text().replace(str(yolo_data), str(ds)))
    cats = json.loads((yolo_data / "categories.json").read_text())
    if which == "categories":
        _write(ds, "categories.json", mutated(cats, rng))
    test = json.loads((sample.parent / "test.json").read_text())
    preds = [{"image_id": im["id"], "category_id": 3, "bbox": [4, 4, 20, 20], "score": 0.9} for im in test["images"]]
    res = _write(work, "p.json", mutated(preds, rng) if which == "pseudo_results" else json.dumps(preds).encode())
    imgs = _write(sample.parent, f"fuzz_{seed}.json", mutated(test, rng) if which == "pseudo_images"
                  else json.dumps(test).encode())
    before = _tree_digest(work)

    def main(_args):
        _, _, cmap, _ = train.check_data(str(ds / "data.yaml"))
        build_pseudo_dataset(ds / "data.yaml", cmap, res, imgs, 0.5, work / "out" / "pseudo")
        return 0

    try:
        code = cli.run(main, cli.ArgumentParser(prog="train_yolo.py"), [])
    finally:
        imgs.unlink()
    _check(code, capsys.readouterr().err)
    assert {k: v for k, v in _tree_digest(work).items() if not k.startswith("out")} == before


@FUZZ
@given(seed=SEEDS)
def test_sidecar_reader(base, tiny_weights, tmp_path_factory, capsys, seed):
    work = tmp_path_factory.mktemp("sc")
    w = work / "w.pt"
    shutil.copy(tiny_weights, w)
    cats = CategoryMap([{"id": 0, "name": "a"}, {"id": 1, "name": "b"}]).to_json()
    c = _write(work, "cats.json", mutated(cats, random.Random(seed)))
    before = _tree_digest(work)
    code, _, err = run_cli(sidecar.main, sidecar.get_args_parser(), [w, "--categories", c, "--imgsz", "64"], capsys)
    _check(code, err)
    after = _tree_digest(work)
    after.pop("w.json", None)
    assert after == before


def test_user_error_is_the_only_exception_a_reader_raises():
    """The guarantee above rests on this: the readers raise UserError, which run() turns into one line."""
    from coco2yolo.cocodata import validate_dataset
    from coco2yolo.results import parse_results

    rng = random.Random(0)
    doc = {"images": [{"id": 0, "file_name": "a.jpg", "width": 5, "height": 5}],
           "categories": [{"id": 0, "name": "a"}], "annotations": [ann(0, 0, 0, [1, 1, 2, 2])]}
    for _ in range(300):
        text = mutated(doc, rng)
        try:
            validate_dataset(json.loads(text), "x")
        except (UserError, ValueError, RecursionError):  # json.loads's own errors are load_json's job
            pass
        try:
            parse_results(json.loads(text), "x")
        except (UserError, ValueError, RecursionError):
            pass


@FUZZ
@given(seed=SEEDS)
def test_submission_reader(base, tmp_path_factory, capsys, seed):
    from coco2yolo import submission

    work = tmp_path_factory.mktemp("sub")
    images = {"images": base["gt"]["images"], "categories": base["gt"]["categories"]}
    test = _write(work, "test.json", json.dumps(images).encode())
    rows = ["PredictionString,image_id"] + [f"0 0.9 1 1 5 5,{im['file_name']}" for im in images["images"]]
    rng = random.Random(seed)
    from fuzzing import mutate_bytes

    text = "\n".join(rows).encode()
    for _ in range(rng.randint(1, 3)):
        text = mutate_bytes(text, rng)
    csv_path = _write(work, "sub.csv", text)
    before = _tree_digest(work)
    code, _, err = run_cli(submission.main, submission.get_args_parser(), ["check", csv_path, "--images", test], capsys)
    assert code in (0, 2) and "Traceback" not in err, err
    assert _tree_digest(work) == before


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=SEEDS)
def test_kfold_experiment_reader(base, tmp_path_factory, capsys, seed):
    """The experiment file, fuzzed: a plan or one line, never a traceback (with --dry-run nothing runs)."""
    import yaml

    from coco2yolo.kfold import __main__ as kfold_cli

    work = tmp_path_factory.mktemp("kf")
    shutil.copytree(base["root"] / "ds", work / "ds")
    doc = {"train": str(work / "ds" / "train.json"), "out": str(work / "out"), "convert": {"folds": 2, "seed": 0},
           "models": [{"name": "a", "model": "yolov5nu.yaml", "epochs": 1, "imgsz": 64}], "predict": {"conf": 0.001},
           "fuse": {"methods": ["wbf"], "iou": [0.5]}, "bootstrap": 10}
    from fuzzing import mutate_bytes, mutate_doc

    rng = random.Random(seed)
    for _ in range(rng.randint(1, 3)):
        doc = mutate_doc(doc, rng)
    text = yaml.safe_dump(doc, allow_unicode=True).encode()
    if rng.random() < 0.25:
        text = mutate_bytes(text, rng)
    exp = _write(work, "exp.yaml", text)
    before = _tree_digest(work)
    cwd = os.getcwd()
    os.chdir(work)  # relative paths the fuzz makes up ("out: NaN") land here, not in the checkout
    try:
        code, _, err = run_cli(kfold_cli.main, kfold_cli.get_args_parser(), [exp, "--dry-run", "--devices", "cpu"],
                               capsys)
    finally:
        os.chdir(cwd)
    _check(code, err)
    after = _tree_digest(work)
    assert {k: v for k, v in after.items() if "/.kfold/" not in "/" + k} == before  # the probe cache aside


@pytest.fixture(scope="module")
def review_base(tmp_path_factory):
    """A dataset, its issues file (each kind once) and decisions on them, for the review readers."""
    root = tmp_path_factory.mktemp("reviewbase")
    images = [(i, f"train/{i}.jpg", 64, 64) for i in range(4)]
    anns = [ann(0, 0, 0, [2, 2, 10, 10]), ann(1, 1, 1, [5, 5, 8, 8]), ann(2, 2, 0, [1, 1, 20, 20])]
    gt = make_coco(root / "ds", images, anns, [0, 1])
    issues = [{"id": "wrong_class/0", "kind": "wrong_class", "score": 0.9, "image_id": 0, "annotation_id": 0,
               "bbox": [2, 2, 10, 10], "category_id": 0, "suggested_category_id": 1, "suggested_bbox": None},
              {"id": "bad_box/1", "kind": "bad_box", "score": 0.8, "image_id": 1, "annotation_id": 1,
               "bbox": [5, 5, 8, 8], "category_id": 1, "suggested_category_id": None, "suggested_bbox": [6, 6, 9, 9]},
              {"id": "no_object/2", "kind": "no_object", "score": 0.7, "image_id": 2, "annotation_id": 2,
               "bbox": [1, 1, 20, 20], "category_id": 0, "suggested_category_id": None, "suggested_bbox": None},
              {"id": "missing/3/abc", "kind": "missing", "score": 0.6, "image_id": 3, "annotation_id": None,
               "bbox": [30, 30, 10, 10], "category_id": 1, "suggested_category_id": 1, "suggested_bbox": [30, 30, 10, 10]}]
    decisions = [{"id": "wrong_class/0", "decision": "accept"}, {"id": "bad_box/1", "decision": "reject"},
                 {"id": "no_object/2", "decision": "accept", "category_id": 1},
                 {"id": "missing/3/abc", "decision": "accept", "bbox": [31, 31, 9, 9]}]
    return {"root": root, "gt": json.loads(gt.read_text()), "issues": issues, "decisions": decisions}


@FUZZ
@given(seed=SEEDS, which=st.sampled_from(["issues", "decisions"]))
def test_review_apply_readers(review_base, tmp_path_factory, capsys, seed, which):
    from coco2yolo.review import command as review

    work = tmp_path_factory.mktemp("review")
    shutil.copytree(review_base["root"] / "ds", work / "ds")
    rng = random.Random(seed)
    issues = _write(work / "ds", "issues.json", mutated(review_base["issues"], rng) if which == "issues"
                    else json.dumps(review_base["issues"]).encode())
    decisions = _write(work / "ds", "d.json", mutated(review_base["decisions"], rng) if which == "decisions"
                       else json.dumps(review_base["decisions"]).encode())
    before = _tree_digest(work / "ds")
    code, _, err = run_cli(review.main, review.get_args_parser(),
                           ["apply", "--gt", work / "ds" / "train.json", "--issues", issues, "--decisions", decisions,
                            "--out", work / "fixed.json"], capsys)
    _check(code, err)
    assert _tree_digest(work / "ds") == before
    assert (work / "fixed.json").exists() == (code == 0) == (work / "fixed.changes.csv").exists()


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=SEEDS)
def test_review_page_reader(review_base, tmp_path_factory, capsys, seed):
    from coco2yolo.review import command as review

    work = tmp_path_factory.mktemp("reviewpage")
    shutil.copytree(review_base["root"] / "ds", work / "ds")
    issues = _write(work / "ds", "issues.json", mutated(review_base["issues"], random.Random(seed)))
    before = _tree_digest(work / "ds")
    code, _, err = run_cli(review.main, review.get_args_parser(),
                           [issues, "--gt", work / "ds" / "train.json", "--out", work / "page.html"], capsys)
    _check(code, err)
    assert _tree_digest(work / "ds") == before


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=SEEDS)
def test_kfold_search_section_reader(base, tmp_path_factory, capsys, seed):
    """The experiment's search: section fuzzed (trials, budget, spaces, types, storage URLs): a plan or one line."""
    import yaml

    from coco2yolo.kfold import __main__ as kfold_cli
    from fuzzing import mutate_doc

    work = tmp_path_factory.mktemp("kfs")
    shutil.copytree(base["root"] / "ds", work / "ds")
    rng = random.Random(seed)
    search = {"base": {"model": "yolov5nu.yaml", "epochs": 1, "imgsz": 64}, "trials": 8, "budget": "20m",
              "space": {"lr0": {"low": 0.001, "high": 0.01, "log": True}, "mosaic": [0.0, 1.0]},
              "storage": rng.choice([str(work / "s.db"), "postgresql://u:pw@127.0.0.1:1/x", "sqlite:///" + str(work / "t.db")]),
              "leaders": 2, "confirm_folds": 1, "pruner": "hyperband"}
    for _ in range(rng.randint(1, 3)):
        search = mutate_doc(search, rng)
    doc = {"train": str(work / "ds" / "train.json"), "out": str(work / "out"), "convert": {"folds": 2, "seed": 0},
           "models": [], "search": search, "bootstrap": 10}
    exp = _write(work, "exp.yaml", yaml.safe_dump(doc, allow_unicode=True).encode())
    cwd = os.getcwd()
    os.chdir(work)
    try:
        code, out, err = run_cli(kfold_cli.main, kfold_cli.get_args_parser(), [exp, "--dry-run", "--devices", "cpu"],
                                 capsys)
    finally:
        os.chdir(cwd)
    _check(code, err)
    assert ":pw@" not in out + err  # a storage password is never shown
