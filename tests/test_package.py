"""Issue 9: a package people install and import, that behaves the way Ultralytics users expect."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import coco2yolo
from coco2yolo import UserError
from coco2yolo.training import config, train
from conftest import ROOT, run_cli, train_tiny, write_json


def _python(code: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


# --- install ------------------------------------------------------------------------------------

def test_wheel_has_the_package_data_the_command_and_unpinned_torch(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("coco2yolo-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
        entry = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert {"coco2yolo/cfg/train.yaml", "coco2yolo/training/train.py", "coco2yolo/commands.py"} <= names
    assert "coco2yolo = coco2yolo.commands:main" in entry
    requires = [ln.split(":", 1)[1].strip() for ln in meta.splitlines() if ln.startswith("Requires-Dist:")]
    assert "torch>=2.2" in requires and any(r.startswith("ultralytics") for r in requires)
    assert not any(re.search(r"==\s*\d", r) for r in requires)  # ranges: pip keeps a CUDA torch already there
    # installed elsewhere, it runs from any folder, and runs/ and weights/ follow the working folder
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("COCO2YOLO_RUNS", None)
    proc = _python("import coco2yolo, coco2yolo.ultra as u, coco2yolo.training.config as c;"
                   "print(coco2yolo.__file__); print(u.PROJECT_ROOT); print(c.defaults()['model'])", env, work)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stderr
    assert lines[0].startswith(str(site)) and lines[1] == str(work) and lines[2] == "yolov5lu.pt"


def test_requirements_pin_every_declared_dependency():
    """requirements.txt is the lock CI installs as constraints: it must pin what pyproject.toml declares."""
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {ln.split("==")[0].strip().lower() for ln in (ROOT / "requirements.txt").read_text().splitlines()
            if "==" in ln and not ln.startswith("#")}
    names = {d.split(">")[0].split("<")[0].split("=")[0].strip().lower() for d in deps}
    assert names <= pins, names - pins


# --- one command, and the old scripts --------------------------------------------------------------

def _command() -> list[str]:
    exe = Path(sys.executable).parent / "coco2yolo"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "coco2yolo.commands"]


def test_one_command_with_subcommands(tmp_path):
    gt = write_json(tmp_path / "gt.json", {"images": [{"id": 0, "file_name": "a.jpg", "width": 9, "height": 9}],
                                           "categories": [{"id": 0, "name": "a"}],
                                           "annotations": [{"id": 0, "image_id": 0, "category_id": 0,
                                                            "bbox": [1, 1, 3, 3]}]})
    preds = write_json(tmp_path / "p.json", [{"image_id": 0, "category_id": 0, "bbox": [1, 1, 3, 3], "score": 0.9}])
    for cmd in (_command(), [sys.executable, "-m", "coco2yolo"]):
        proc = subprocess.run([*cmd, "evaluate", "--gt", str(gt), str(preds), "--bootstrap", "0"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and "mAP50 1.0000" in proc.stdout, proc.stderr
    proc = subprocess.run([*_command(), "evalute"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "did you mean evaluate" in proc.stderr
    proc = subprocess.run([*_command(), "--help"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and all(c in proc.stdout for c in ("convert", "train", "predict", "fuse", "evaluate"))


# --- the Python API ------------------------------------------------------------------------------

def test_api_runs_every_stage_with_plain_arguments(sample, tmp_path):
    ds = coco2yolo.convert(sample, tmp_path / "ds", clean=True, val_fraction=0.25, seed=0)
    assert ds.out == tmp_path / "ds" and sum(ds.images.values()) == 48 and "cleaning" in ds.report
    run = coco2yolo.train(ds.out / "data.yaml", model="yolov5nu.yaml", epochs=1, imgsz=64, batch=8, device="cpu",
                          workers=0, name="api", weights_dir=str(tmp_path / "w"), shear=1.0)
    assert Path(run["weights"]).is_file() and run["extra_ultralytics_args"] == {"shear": 1.0}
    summary = coco2yolo.predict(run["weights"], ds.out / "val.json", tmp_path / "p.json", device="cpu", conf=0.01)
    assert summary["predicted"] == summary["images"] == ds.images["val"]
    fused = coco2yolo.fuse([tmp_path / "p.json", tmp_path / "p.json"], ds.out / "val.json", out=tmp_path / "f.json",
                           method="wbf", model_weights=[2, 1])
    assert len(fused) == len(json.loads((tmp_path / "f.json").read_text()))
    metrics = coco2yolo.evaluate(ds.out / "val.json", [tmp_path / "p.json", tmp_path / "f.json"], bootstrap=20)
    assert set(metrics["files"][0]) >= {"mAP50", "mAP50_ci95", "per_class_AP50"} and len(metrics["differences"]) == 1
    with pytest.raises(UserError, match="unknown option 'confidence'"):
        coco2yolo.predict(run["weights"], ds.out / "val.json", tmp_path / "q.json", confidence=0.5)
    with pytest.raises(UserError, match="epochs"):
        coco2yolo.train(ds.out / "data.yaml", epochs=0)
    with pytest.raises(UserError, match="is the input"):
        coco2yolo.evaluate(ds.out / "val.json", [tmp_path / "p.json"], json=tmp_path / "p.json")


# --- weights: downloaded online, one line offline ---------------------------------------------------

def test_hub_weights_are_fetched_with_ultralytics_code_unless_offline(tiny_weights, tmp_path, monkeypatch):
    from ultralytics.utils import downloads

    calls = []

    def fake_download(file, *a, **k):  # stands in for the network: copies a real checkpoint
        calls.append(Path(file))
        shutil.copy(tiny_weights, file)
        return str(file)

    monkeypatch.setattr(downloads, "attempt_download_asset", fake_download)
    with pytest.raises(UserError, match="offline .--offline or COCO2YOLO_OFFLINE"):
        train.resolve_model_file("yolov8n.pt", tmp_path / "w")
    assert calls == []
    monkeypatch.delenv("COCO2YOLO_OFFLINE")
    got = train.resolve_model_file("yolov8n.pt", tmp_path / "w")
    assert Path(got) == tmp_path / "w" / "yolov8n.pt" and calls == [tmp_path / "w" / "yolov8n.pt"]
    with pytest.raises(UserError, match="not on this machine and it could not be downloaded"):
        train.resolve_model_file("my_own_model.pt", tmp_path / "w")  # not an Ultralytics hub file


def test_offline_flag(yolo_data, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("COCO2YOLO_OFFLINE")
    code, _, err = run_cli(train.main, train.get_args_parser(),
                           ["--data", yolo_data / "data.yaml", "--model", "yolo11n.pt", "--offline", "--device", "cpu",
                            "--weights-dir", tmp_path], capsys)
    assert code == 2 and "offline" in err and len(err.strip().splitlines()) == 1


# --- Ultralytics values, settings ------------------------------------------------------------------

def test_cache_and_fractional_batch_are_accepted_as_ultralytics_accepts_them(yolo_data, tmp_path, capsys):
    parser = train.get_args_parser()
    cfg = config.resolve(parser.parse_args(["--cache", "ram", "--batch", "0.7"]))
    assert cfg["cache"] == "ram" and cfg["batch"] == 0.7
    assert config.resolve(parser.parse_args(["--cache"]))["cache"] is True
    assert config.resolve(parser.parse_args(["--no-cache"]))["cache"] is False
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("cache: disk\nbatch: 0.5\n")
    assert config.resolve(parser.parse_args(["--config", str(cfg_file)]))["batch"] == 0.5
    for argv, match in ((["--cache", "sometimes"], "cache must be"), (["--batch", "1.5"], "batch must be"),
                        (["--batch", "0"], "batch must be"), (["--mixup", "2"], "mixup")):
        code, _, err = run_cli(train.main, parser, argv + ["--data", yolo_data / "data.yaml"], capsys)
        assert code == 2 and match in err and len(err.strip().splitlines()) == 1, err
    w = train_tiny(yolo_data / "data.yaml", "cache_ram", tmp_path, "--cache", "ram")
    args = json.loads(w.with_suffix(".json").read_text())["config"]
    assert args["cache"] == "ram"


def test_the_users_ultralytics_settings_are_carried(tmp_path):
    user = tmp_path / "xdg" / "Ultralytics" / "settings.json"
    user.parent.mkdir(parents=True)
    user.write_text(json.dumps({"tensorboard": True, "mlflow": False, "sync": True, "runs_dir": "/nowhere"}))
    before = user.read_text()
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "COCO2YOLO_RUNS": str(tmp_path / "runs")}
    env.pop("YOLO_CONFIG_DIR", None)
    proc = _python("from coco2yolo import ultra; ultra.setup(); from ultralytics.utils import SETTINGS; import json;"
                   "print(json.dumps({k: SETTINGS[k] for k in ('tensorboard', 'mlflow', 'sync', 'runs_dir')}))", env)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"tensorboard": True, "mlflow": False, "sync": False, "runs_dir": str(tmp_path / "runs")}
    assert user.read_text() == before  # the user's own file is read, never written


def test_fonts_are_installed_once_and_later_commands_skip_matplotlib(tmp_path):
    """Ultralytics' plots want Arial: matplotlib's DejaVuSans is copied into the config folder by the first command;
    every later one finds it there and never imports matplotlib (about 0.4 s of each command's start)."""
    env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "cfg"), "COCO2YOLO_RUNS": str(tmp_path / "runs")}
    code = "from coco2yolo import ultra; import sys; ultra.setup(); print('matplotlib' in sys.modules)"
    first, second = (_python(code, env) for _ in range(2))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    fonts = tmp_path / "cfg" / "Ultralytics"
    assert sorted(p.name for p in fonts.iterdir() if p.suffix == ".ttf") == ["Arial.Unicode.ttf", "Arial.ttf"]
    assert (fonts / "Arial.ttf").stat().st_size > 100_000 and not list(fonts.glob(".Arial*"))  # whole, no leftovers
    assert first.stdout.split()[-1] == "True" and second.stdout.split()[-1] == "False"


# --- the competition CSV -------------------------------------------------------------------------

def test_submission_csv_is_read_like_coco_results(tiny_weights, yolo_data, tmp_path, capsys):
    from coco2yolo import inference
    from coco2yolo.evaluation import metrics
    from coco2yolo.fusion import ensemble

    preds, sub = tmp_path / "p.json", tmp_path / "p.csv"
    code, _, err = run_cli(inference.main, inference.get_args_parser(),
                           ["--weights", tiny_weights, "--images", yolo_data / "val.json", "--out", preds,
                            "--submission", sub, "--device", "cpu"], capsys)
    assert code == 0, err
    out = metrics.evaluate_files(str(yolo_data / "val.json"), [str(preds), str(sub)], n_boot=0)
    a, b = out["files"]
    assert a["mAP50"] == b["mAP50"] and a["mAP50_95"] == b["mAP50_95"]  # full precision both ways
    code, _, err = run_cli(ensemble.main, ensemble.get_args_parser(),
                           [preds, sub, "--images", yolo_data / "val.json", "--out", tmp_path / "f.json"], capsys)
    assert code == 0, err


def _check(csv_path, images, capsys):
    from coco2yolo import submission

    return run_cli(submission.main, submission.get_args_parser(), ["check", csv_path, "--images", images], capsys)


def test_submission_check_names_every_problem(tmp_path, capsys):
    images = write_json(tmp_path / "test.json", {
        "images": [{"id": i, "file_name": f"test/{i:04d}.jpg", "width": 100, "height": 50} for i in range(4)],
        "categories": [{"id": k, "name": str(k)} for k in range(10)]})
    good = tmp_path / "good.csv"
    with open(good, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["PredictionString", "image_id"])
        w.writerow(["3 0.9 10 10 20 20 0 0.1 0 0 100 50", "test/0000.jpg"])
        for i in (1, 2, 3):
            w.writerow(["", f"test/{i:04d}.jpg"])
    code, out, err = _check(good, images, capsys)
    assert code == 0 and "ok: 4 images, 2 boxes" in out, err
    bad = tmp_path / "bad.csv"
    with open(bad, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["PredictionString", "image_id"])
        w.writerow(["3 0.9 10 10 20 20 12 0.5 1 1 5 5", "test/0000.jpg"])   # label 12
        w.writerow(["3 nan 10 10 1e999 20", "test/0001.jpg"])               # not a plain number
        w.writerow(["3 0.9 10 10 120 20", "test/0002.jpg"])                  # leaves the image
        w.writerow(["3 0.9 10 10", "test/0002.jpg"])                         # repeated, and 4 values
        w.writerow(["1 1.5 30 30 20 40", "test/9999.jpg"])                   # unknown image
    code, _, err = _check(bad, images, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 6, err
    for want in ("label 12 is not a category", "plain decimal numbers", "leaves the 100x50 image",
                 "already appeared on line 4", "is not a file_name", "test/0003.jpg"):
        assert any(want in ln for ln in lines), (want, err)


# --- names, precision -----------------------------------------------------------------------------

def test_written_numbers_keep_full_precision(tmp_path, capsys):
    """The fused file equals the in-memory fusion exactly, and metrics equal pycocotools exactly."""
    from coco2yolo.evaluation import command
    from coco2yolo.fusion import ensemble
    from coco2yolo.fusion.kernels import fuse
    from coco2yolo.results import load_results

    rng = np.random.default_rng(3)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 97, "height": 61} for i in range(5)]
    gt_doc = {"images": images, "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}],
              "annotations": [{"id": k + 1, "image_id": k % 5, "category_id": k % 2, "iscrowd": 0,
                               "bbox": [float(v) for v in rng.uniform(0, 30, 4)]} for k in range(20)]}
    for a in gt_doc["annotations"]:
        a["area"] = a["bbox"][2] * a["bbox"][3]
    gt = write_json(tmp_path / "gt.json", gt_doc)
    files = []
    for m in range(2):
        recs = [{"image_id": int(rng.integers(5)), "category_id": int(rng.integers(2)),
                 "bbox": [float(v) for v in rng.uniform(0, 30, 4)], "score": float(rng.uniform())} for _ in range(60)]
        files.append(write_json(tmp_path / f"m{m}.json", recs))
    code, _, err = run_cli(ensemble.main, ensemble.get_args_parser(),
                           [*files, "--images", gt, "--out", tmp_path / "f.json"], capsys)
    assert code == 0, err
    ids = [im["id"] for im in images]
    want = fuse([load_results(f) for f in files], ids, np.array([[97.0, 61.0]] * 5))
    got = load_results(tmp_path / "f.json")
    assert np.array_equal(got.xywh, want.xywh) and np.array_equal(got.score, want.score)
    command.evaluate_and_write(str(gt), [str(tmp_path / "f.json")], n_boot=0, json_out=str(tmp_path / "m.json"),
                               backend="pycocotools")
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        g = COCO(str(gt))
        e = COCOeval(g, g.loadRes(str(tmp_path / "f.json")), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    written = json.loads((tmp_path / "m.json").read_text())["files"][0]
    assert written["mAP50"] == e.stats[1] and written["mAP50_95"] == e.stats[0]
