"""Issue 11's reproductions: inputs are never modified, nothing is written outside the output, a bad
photo never stops a run, and every bad input is one line with status 2 (never a traceback)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from coco2yolo import cli, fileio, sidecar
from coco2yolo.dataset import convert as conv
from coco2yolo.fusion import ensemble as ensembling
from coco2yolo.evaluation import command as evaluation
from coco2yolo import inference as predict
from coco2yolo.training import train as train
from conftest import ROOT, run_cli, write_json
from helpers import ann, make_coco


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _one_line(code, err, match=None):
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    if match:
        assert match in err, err


def _dataset(tmp_path, n=8, size=32, n_classes=2):
    images = [(i, f"train/{i:02d}.jpg", size, size) for i in range(n)]
    anns = [ann(i, i, i % n_classes, [2, 2, 10, 10]) for i in range(n)]
    return make_coco(tmp_path / "ds", images, anns, list(range(n_classes)))


def _convert(argv, capsys):
    return run_cli(conv.main, conv.get_args_parser(), argv, capsys)


def _infer(argv, capsys):
    return run_cli(predict.main, predict.get_args_parser(), argv, capsys)


def _evaluate(argv, capsys):
    return run_cli(evaluation.main, evaluation.get_args_parser(), argv, capsys)


def _ensemble(argv, capsys):
    return run_cli(ensembling.main, ensembling.get_args_parser(), argv, capsys)


# --- inputs are never modified; nothing is written outside the output ------------------------------

def _test_set(tmp_path, sample, names):
    """A test.json whose file_names are ``names`` (each a copy of a sample photo)."""
    src = sorted((sample.parent / "test").iterdir())
    images = []
    for i, name in enumerate(names):
        target = Path(name) if os.path.isabs(name) else tmp_path / "set" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src[i % len(src)], target)
        images.append({"id": i, "file_name": name, "width": 64, "height": 64})
    return write_json(tmp_path / "set" / "test.json", {"images": images, "categories": [
        {"id": k, "name": f"c{k}"} for k in range(10)]})


def test_drawings_stay_inside_the_vis_folder(tiny_weights, sample, tmp_path, capsys):
    absolute = str(tmp_path / "elsewhere" / "abs.jpg")
    images = _test_set(tmp_path, sample, [absolute, "../up.jpg", "ok/fine.jpg"])
    before = {p: _digest(p) for p in (Path(absolute), tmp_path / "up.jpg", tmp_path / "set" / "ok" / "fine.jpg")}
    vis = tmp_path / "vis"
    code, _, err = _infer(["--weights", tiny_weights, "--images", images, "--out", tmp_path / "p.json",
                           "--save-vis", vis, "--vis-conf", "0", "--device", "cpu"], capsys)
    assert code == 0, err
    assert all(_digest(p) == d for p, d in before.items()), "a source photo was overwritten"
    drawn = sorted(p.relative_to(vis).as_posix() for p in vis.rglob("*.jpg"))
    assert drawn == ["img0_abs.jpg", "img1_up.jpg", "ok/fine.jpg"]
    assert not (tmp_path / "elsewhere" / "abs.jpg").with_suffix(".jpg.part").exists()


def test_vis_folder_that_holds_the_inputs_is_refused(tiny_weights, sample, tmp_path, capsys):
    images = _test_set(tmp_path, sample, ["a.jpg"])
    before = _digest(tmp_path / "set" / "a.jpg")
    code, _, err = _infer(["--weights", tiny_weights, "--images", images, "--out", tmp_path / "p.json",
                           "--save-vis", tmp_path / "set", "--device", "cpu"], capsys)
    _one_line(code, err, "--save-vis")
    assert _digest(tmp_path / "set" / "a.jpg") == before and not (tmp_path / "p.json").exists()


def test_convert_into_the_folder_of_its_input_is_refused(tmp_path, capsys):
    src = _dataset(tmp_path)
    before = _digest(src)
    code, _, err = _convert([src, "--out", src.parent], capsys)
    _one_line(code, err, "contains the input")
    assert _digest(src) == before and all((src.parent / "train").iterdir())
    out = tmp_path / "o"
    assert _convert([src, "--out", out], capsys)[0] == 0
    again = out / "train.json"  # a split file this tool wrote, converted into its own folder
    code, _, err = _convert([again, "--out", out, "--images", out], capsys)
    _one_line(code, err, "contains the input")
    assert (out / "data.yaml").exists()


def test_outputs_equal_to_inputs_are_refused(tiny_weights, sample, tmp_path, capsys):
    test_json = tmp_path / "t.json"
    shutil.copy(sample.parent / "test.json", test_json)
    shutil.copytree(sample.parent / "test", tmp_path / "test")
    before = _digest(test_json)
    code, _, err = _infer(["--weights", tiny_weights, "--images", test_json, "--out", test_json], capsys)
    _one_line(code, err, "is the input --images")
    code, _, err = _infer(["--weights", tiny_weights, "--images", test_json, "--out", tmp_path / "p.json",
                           "--submission", tmp_path / "p.json"], capsys)
    _one_line(code, err, "same path")
    gt = write_json(tmp_path / "gt.json", {"images": [{"id": 0, "file_name": "a.jpg", "width": 9, "height": 9}],
                                           "categories": [{"id": 0, "name": "a"}],
                                           "annotations": [ann(0, 0, 0, [1, 1, 3, 3])]})
    preds = write_json(tmp_path / "preds.json", [{"image_id": 0, "category_id": 0, "bbox": [1, 1, 3, 3], "score": 1}])
    gt_before, preds_before = _digest(gt), _digest(preds)
    code, _, err = _evaluate(["--gt", gt, preds, "--json", gt], capsys)
    _one_line(code, err, "is the input --gt")
    code, _, err = _ensemble([preds, "--images", gt, "--out", preds], capsys)
    _one_line(code, err, "is the input results file")
    code, _, err = _ensemble([preds, "--images", gt, "--out", tmp_path / "f.json", "--submission", gt], capsys)
    _one_line(code, err, "is the input --images")
    assert _digest(test_json) == before and _digest(gt) == gt_before and _digest(preds) == preds_before
    assert not (tmp_path / "f.json").exists()


def test_training_never_writes_over_its_starting_weights(tiny_weights, yolo_data, tmp_path, capsys):
    w = tmp_path / "start.pt"
    shutil.copy(tiny_weights, w)
    before = _digest(w)
    code, _, err = run_cli(train.main, train.get_args_parser(),
                           ["--data", yolo_data / "data.yaml", "--model", "yolov5nu.yaml", "--weights", w,
                            "--name", "start", "--weights-dir", tmp_path, "--device", "cpu"], capsys)
    _one_line(code, err, "is the input --weights")
    assert _digest(w) == before


# --- bad photos -------------------------------------------------------------------------------------

def _damage(folder: Path) -> dict[str, str]:
    """Damage three photos of ``folder`` in the ways the audit found; return name -> expected problem."""
    files = sorted(folder.glob("*.jpg"))
    data = files[1].read_bytes()
    files[0].write_bytes(b"")
    files[1].write_bytes(data[: len(data) // 2])
    files[2].write_bytes(b"hello, I am text")
    return {files[0].name: "empty", files[1].name: "truncated JPEG", files[2].name: "not an image"}


def test_infer_skips_damaged_photos_or_fails_cleanly_with_strict(tiny_weights, sample, tmp_path, capsys):
    root = tmp_path / "ds"
    shutil.copytree(sample.parent / "test", root / "test")
    shutil.copy(sample.parent / "test.json", root / "test.json")
    damaged = _damage(root / "test")
    garbage = sorted((root / "test").glob("*.jpg"))[3]  # a JPEG header, then noise, then an end marker
    garbage.write_bytes(b"\xff\xd8\xff\xe0" + np.random.default_rng(0).bytes(3000) + b"\xff\xd9")
    out, sub = tmp_path / "p.json", tmp_path / "s.csv"
    code, _, err = _infer(["--weights", tiny_weights, "--images", root / "test.json", "--out", out,
                           "--submission", sub, "--device", "cpu", "--strict"], capsys)
    _one_line(code, err, "could not be read")
    assert not out.exists() and not sub.exists()
    code, _, err = _infer(["--weights", tiny_weights, "--images", root / "test.json", "--out", out,
                           "--submission", sub, "--device", "cpu"], capsys)
    assert code == 0 and "Traceback" not in err, err
    assert "images could not be read" in err and all(w in err for w in ("empty", "truncated JPEG")), err
    assert len(sub.read_text().splitlines()) == 1 + 6  # every image listed once, damaged ones empty
    read_ok = {im["id"] for im in json.loads((root / "test.json").read_text())["images"]
               if im["file_name"].split("/")[-1] not in damaged}
    assert {p["image_id"] for p in json.loads(out.read_text())} <= read_ok


def test_convert_skips_damaged_photos_with_a_count_or_fails_with_strict(tmp_path, capsys):
    src = _dataset(tmp_path)
    damaged = _damage(src.parent / "train")
    code, out, err = _convert([src, "--out", tmp_path / "o", "--strict"], capsys)
    _one_line(code, err, "3 of 8 image files are unusable")
    assert not (tmp_path / "o").exists()
    code, out, err = _convert([src, "--out", tmp_path / "o"], capsys)
    assert code == 0 and "skipped 3 of 8 images" in err and "truncated JPEG" in err, err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert {f["file_name"].split("/")[-1] for f in report["bad_images"]["files"]} == set(damaged)
    linked = {p.name for p in (tmp_path / "o" / "images").rglob("*.jpg")}
    assert len(linked) == 5 and not linked & set(damaged)


# --- one line instead of a traceback ---------------------------------------------------------------

def _deep(tmp_path, name="deep.json"):
    p = tmp_path / name
    p.write_text("[" * 50000 + "]" * 50000)
    return p


def test_deeply_nested_json_is_one_line_for_every_reader(tiny_weights, tmp_path, capsys):
    deep = _deep(tmp_path)
    ok = write_json(tmp_path / "gt.json", {"images": [{"id": 0, "file_name": "a.jpg", "width": 9, "height": 9}],
                                           "categories": [{"id": 0, "name": "a"}],
                                           "annotations": [ann(0, 0, 0, [1, 1, 3, 3])]})
    preds = write_json(tmp_path / "p.json", [])
    cases = [(_convert, [deep, "--out", tmp_path / "o"]),
             (_infer, ["--weights", tiny_weights, "--images", deep, "--out", tmp_path / "x.json"]),
             (_evaluate, ["--gt", deep, preds]), (_evaluate, ["--gt", ok, deep]),
             (_ensemble, [deep, "--images", ok, "--out", tmp_path / "f.json"]),
             (_ensemble, [preds, "--images", ok, "--out", tmp_path / "f.json", "--setting", deep]),
             (lambda a, c: run_cli(sidecar.main, sidecar.get_args_parser(), a, c),
              [tiny_weights, "--categories", deep, "--imgsz", "64"])]
    for fn, argv in cases:
        code, _, err = fn(argv, capsys)
        _one_line(code, err, "nests more than")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    code, _, err = run_cli(train.main, train.get_args_parser(), ["--config", cfg], capsys)
    _one_line(code, err, "nests too deeply")


@pytest.mark.parametrize("argv, match", [
    (["--seed", "-1"], "must be an integer in [0, 4.29497e+09]"),
    (["--folds", "20", "--fold", "0"], "--folds 20 needs at least 20 images"),
    (["--val-fraction", "0.2", "--images-n", "4"], "leaves the validation set empty"),
    (["--clean", "--min-wh", "nan"], "must be a number >= 0, got 'nan'"),
    (["--clean", "--dup-iou", "inf"], "must be a number in (0, 1], got 'inf'"),
])
def test_convert_flags_are_checked(tmp_path, capsys, argv, match):
    n = int(argv.pop(argv.index("--images-n") + 1)) if "--images-n" in argv else 8
    argv = [a for a in argv if a != "--images-n"]
    code, _, err = _convert([_dataset(tmp_path, n=n, n_classes=n), "--out", tmp_path / "o", *argv], capsys)
    _one_line(code, err, match)
    assert not (tmp_path / "o").exists()


def test_renamed_image_colliding_with_a_real_name(tmp_path):
    """'/abs/a.jpg' (id 0) is renamed img0_a.jpg, which is also a real file_name: both must survive."""
    other = tmp_path / "abs" / "a.jpg"
    other.parent.mkdir()
    cv2.imwrite(str(other), np.zeros((16, 16, 3), np.uint8))
    src = make_coco(tmp_path / "ds", [(1, "img0_a.jpg", 16, 16), (2, "b.jpg", 16, 16), (3, "c.jpg", 16, 16)],
                    [ann(0, 1, 0, [1, 1, 4, 4])], [0])
    doc = json.loads(src.read_text())
    doc["images"].append({"id": 0, "file_name": str(other), "width": 16, "height": 16})
    src.write_text(json.dumps(doc))
    res = conv.convert(src, tmp_path / "o", conv.ConvertOptions(val_fraction=0.25, seed=0))
    assert sum(res.images.values()) == 4
    files = {p.name for p in (tmp_path / "o" / "images").rglob("*.jpg")}
    assert len(files) == 4 and "img0_a.jpg" in files


def test_ids_beyond_int64_are_one_line(tmp_path, capsys):
    gt = write_json(tmp_path / "gt.json", {"images": [{"id": 2**63, "file_name": "a.jpg", "width": 9, "height": 9}],
                                           "categories": [{"id": 0, "name": "a"}], "annotations": []})
    code, _, err = _evaluate(["--gt", gt, write_json(tmp_path / "p.json", [])], capsys)
    _one_line(code, err, "fits int64")
    ok = write_json(tmp_path / "ok.json", {"images": [{"id": 0, "file_name": "a.jpg", "width": 9, "height": 9}],
                                           "categories": [{"id": 0, "name": "a"}],
                                           "annotations": [ann(0, 0, 0, [1, 1, 3, 3])]})
    big = write_json(tmp_path / "big.json", [{"image_id": -(2**63) - 1, "category_id": 0, "bbox": [1, 1, 2, 2],
                                              "score": 0.5}])
    code, _, err = _evaluate(["--gt", ok, big], capsys)
    _one_line(code, err, "int64")


def test_ground_truth_of_only_crowd_boxes(tmp_path, capsys):
    gt = write_json(tmp_path / "gt.json", {"images": [{"id": 0, "file_name": "a.jpg", "width": 9, "height": 9}],
                                           "categories": [{"id": 0, "name": "a"}],
                                           "annotations": [ann(0, 0, 0, [1, 1, 3, 3], iscrowd=1)]})
    preds = write_json(tmp_path / "p.json", [{"image_id": 0, "category_id": 0, "bbox": [1, 1, 3, 3], "score": 1}])
    _one_line(*_evaluate(["--gt", gt, preds], capsys)[::2], "crowd regions")
    _one_line(*_ensemble([preds, preds, "--tune", gt, "--out", tmp_path / "f.json"], capsys)[::2], "crowd regions")


@pytest.mark.parametrize("change, match", [
    ({"iou_thr": None}, "iou_thr must be a number in (0, 1]"),
    ({"iou_thr": "0.5"}, "iou_thr must be a number in (0, 1]"),
    ({"method": "vote"}, "method must be one of"),
    ({"model_weights": [1, "x"]}, "weights must be null or a list"),
    ({"model_weights": [1]}, "1 values for 2 results files"),
    ({"sigma": -1}, "sigma must be a number > 0"),
    ("drop:conf_type", "missing conf_type"),
])
def test_setting_files_with_missing_or_mistyped_values(tmp_path, capsys, change, match):
    ok = write_json(tmp_path / "gt.json", {"images": [{"id": 0, "file_name": "a.jpg", "width": 9, "height": 9}],
                                           "categories": [{"id": 0, "name": "a"}]})
    preds = write_json(tmp_path / "p.json", [{"image_id": 0, "category_id": 0, "bbox": [1, 1, 3, 3], "score": 1}])
    doc = ensembling.setting_doc(dict(ensembling.DEFAULTS), 2)
    if isinstance(change, str):
        del doc[change.split(":")[1]]
    else:
        doc.update(change)
    setting = write_json(tmp_path / "s.json", doc)
    code, _, err = _ensemble([preds, preds, "--images", ok, "--out", tmp_path / "f.json", "--setting", setting],
                             capsys)
    _one_line(code, err, match)


def test_non_finite_numbers_are_refused(tmp_path, capsys):
    ok = write_json(tmp_path / "gt.json", {"images": [{"id": 0, "file_name": "a.jpg", "width": 9, "height": 9}],
                                           "categories": [{"id": 0, "name": "a"}],
                                           "annotations": [ann(0, 0, 0, [1, 1, 3, 3])]})
    preds = write_json(tmp_path / "p.json", [{"image_id": 0, "category_id": 0, "bbox": [1, 1, 3, 3], "score": 1}])
    for argv in (["--model-weights", "nan", "1"], ["--tune", ok, "--tune-iou", "nan"], ["--iou-thr=-inf"]):
        code, _, err = _ensemble([preds, preds, "--images", ok, "--out", tmp_path / "f.json", *argv], capsys)
        _one_line(code, err, "must be")
    assert not (tmp_path / "f.json").exists() and not (tmp_path / "f.setting.json").exists()
    cfg = tmp_path / "c.yaml"
    for text in ("lr0: .nan\n", "warmup_epochs: .inf\n", "pseudo_conf: .nan\n"):
        cfg.write_text(text)
        code, _, err = run_cli(train.main, train.get_args_parser(), ["--config", cfg], capsys)
        _one_line(code, err)


# --- checks that come before the work --------------------------------------------------------------

def test_weights_dir_that_is_a_file_fails_before_training(yolo_data, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, _, err = run_cli(train.main, train.get_args_parser(),
                           ["--data", yolo_data / "data.yaml", "--model", "yolov5nu.yaml", "--epochs", "1",
                            "--imgsz", "64", "--device", "cpu", "--weights-dir", afile, "--name", "never"], capsys)
    _one_line(code, err, "not a folder")
    assert not (Path(os.environ["COCO2YOLO_RUNS"]) / "train" / "never").exists()


def test_a_failing_submission_leaves_no_output(tmp_path, capsys):
    ok = write_json(tmp_path / "gt.json", {"images": [{"id": 0, "file_name": "a.jpg", "width": 9, "height": 9}],
                                           "categories": [{"id": 0, "name": "a"}]})
    preds = write_json(tmp_path / "p.json", [{"image_id": 0, "category_id": 0, "bbox": [1, 1, 3, 3], "score": 1}])
    (tmp_path / "sub.csv").mkdir()
    code, _, err = _ensemble([preds, "--images", ok, "--out", tmp_path / "f.json", "--submission",
                              tmp_path / "sub.csv"], capsys)
    _one_line(code, err, "is a folder")
    assert not (tmp_path / "f.json").exists()


def test_name_reuse_is_refused_unless_exist_ok(yolo_data, tiny_weights, tmp_path, capsys):
    shutil.copy(tiny_weights, tmp_path / "taken.pt")
    argv = ["--data", yolo_data / "data.yaml", "--model", "yolov5nu.yaml", "--epochs", "1", "--imgsz", "64",
            "--batch", "8", "--device", "cpu", "--workers", "0", "--weights-dir", tmp_path, "--name", "taken"]
    before = _digest(tmp_path / "taken.pt")
    code, _, err = run_cli(train.main, train.get_args_parser(), argv, capsys)
    _one_line(code, err, "--name taken is taken")
    assert _digest(tmp_path / "taken.pt") == before
    code, _, err = run_cli(train.main, train.get_args_parser(), argv + ["--exist-ok"], capsys)
    assert code == 0, err
    assert _digest(tmp_path / "taken.pt") != before


# --- files and folders: modes, names, locks, leftovers, signals -------------------------------------

def test_outputs_follow_the_umask(tmp_path):
    src = _dataset(tmp_path)
    conv.convert(src, tmp_path / "o", conv.ConvertOptions(val_fraction=0.25))
    assert stat.S_IMODE((tmp_path / "o").stat().st_mode) == 0o777 & ~fileio.UMASK
    assert stat.S_IMODE((tmp_path / "o" / "data.yaml").stat().st_mode) == 0o666 & ~fileio.UMASK


def test_newlines_in_names_are_refused_or_escaped(tmp_path, capsys):
    src = _dataset(tmp_path)
    doc = json.loads(src.read_text())
    doc["images"][0]["file_name"] = "train/a\nb.jpg"
    bad = write_json(tmp_path / "bad.json", doc)
    code, _, err = _convert([bad, "--out", tmp_path / "o"], capsys)
    _one_line(code, err, "control character")
    odd = tmp_path / "odd\nkey: 1"
    shutil.copytree(src.parent, odd)
    assert _convert([odd / "train.json", "--out", tmp_path / "o2"], capsys)[0] == 0
    import yaml

    data = yaml.safe_load((tmp_path / "o2" / "data.yaml").read_text())
    assert set(data) == {"path", "train", "val", "nc", "names"}


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(tmp_path, capsys):
    src, out = _dataset(tmp_path), tmp_path / "o"
    with fileio.output_lock(out):
        code, _, err = _convert([src, "--out", out], capsys)
    _one_line(code, err, "being written by another run")
    assert _convert([src, "--out", out], capsys)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".o")) == []


def test_leftovers_of_killed_runs_are_recovered_or_removed(tmp_path, capsys):
    src, out = _dataset(tmp_path), tmp_path / "o"
    assert _convert([src, "--out", out], capsys)[0] == 0
    dead = 2**22 + 12345  # above pid_max's default: no such process
    host = fileio._HOST
    part = tmp_path / f".o.{host}.{dead}.abc123xy.part"  # a killed run's half-built folder
    shutil.copytree(out, part)
    file_part = tmp_path / f".x.json.{host}.{dead}.zz9_0000.part"
    file_part.write_text("[")
    foreign = tmp_path / f".o.otherhost.{dead}.abcdefgh.part"  # another machine's: not ours to remove
    foreign.mkdir()
    os.replace(out, tmp_path / f".o.{host}.{dead}.old1old1.old")  # killed between the fallback's two renames
    assert _convert([src, "--out", out], capsys)[0] == 0
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".o"))
    assert left == [foreign.name] and (out / "data.yaml").exists()
    fileio.write_json(tmp_path / "x.json", [])
    assert not file_part.exists()


def test_sigterm_unwinds_like_ctrl_c(tmp_path, capsys):
    out = tmp_path / "o"

    def main(_args):
        with fileio.atomic_dir(out, ".coco2yolo") as tmp:
            (tmp / "half").write_text("x")
            os.kill(os.getpid(), signal.SIGTERM)
        return 0

    code = cli.run(main, cli.ArgumentParser(prog="t"), [])
    err = capsys.readouterr().err
    assert code == 143 and "terminated; no partial output" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_piping_into_head_ends_quietly(tmp_path):
    cats = [{"id": k, "name": f"class number {k}"} for k in range(3000)]
    gt = write_json(tmp_path / "gt.json", {"images": [{"id": 0, "file_name": "a.jpg", "width": 9, "height": 9}],
                                           "categories": cats, "annotations": [ann(0, 0, 0, [1, 1, 3, 3])]})
    preds = write_json(tmp_path / "p.json", [{"image_id": 0, "category_id": 0, "bbox": [1, 1, 3, 3], "score": 1}])
    cmd = f"{sys.executable} {ROOT / 'evaluate.py'} --gt {gt} {preds} {preds} --bootstrap 0 | head -3"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=300)
    assert len(proc.stdout.splitlines()) == 3
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
