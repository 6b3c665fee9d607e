"""Shared fixtures: a tiny generated sample, its YOLO conversion, a tiny trained model.

Everything is generated here (small images, nano models built from *.yaml); nothing is
downloaded. Tests that need ``../shared`` skip with a reason when it is absent.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# The same examples on every run, so CI is reproducible (explore with --hypothesis-profile dev).
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
RECYCLE = SHARED / "datasets" / "recycle" / "train.json"
TRASHNET = SHARED / "datasets" / "trashnet" / "train.json"
LEGACY = SHARED / "weights" / "yolov5n.pt"

sys.path.insert(0, str(ROOT))
os.environ["COCO2YOLO_OFFLINE"] = "1"  # tests never touch the network (weights are never downloaded)


def need(path: Path):
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is absent (../shared not mounted)")


@pytest.fixture(scope="session", autouse=True)
def _isolated_runs(tmp_path_factory):
    """Runs and Ultralytics' config go to a temporary folder, never into the project."""
    runs = tmp_path_factory.mktemp("runs")
    os.environ["COCO2YOLO_RUNS"] = str(runs)
    os.environ["YOLO_CONFIG_DIR"] = str(runs / "ultralytics-config")
    os.environ["FIFTYONE_DATABASE_DIR"] = str(runs / "fiftyone-db")  # FiftyOne's own MongoDB, for this session only
    os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
    from coco2yolo import ultra

    ultra.setup()
    return runs


def _checkout_state() -> str | None:
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return None
    r = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                       text=True)
    return r.stdout if r.returncode == 0 else None


@pytest.fixture(scope="session", autouse=True)
def _checkout_untouched():
    """No test writes into the checkout (a fuzzed "out: NaN" once made a folder there that got committed)."""
    before = _checkout_state()
    yield
    after = _checkout_state()
    if before is not None and after is not None:
        added = sorted(set(after.splitlines()) - set(before.splitlines()))
        assert not added, f"the tests changed the checkout: {added[:10]}"


@pytest.fixture(scope="session")
def sample(tmp_path_factory) -> Path:
    """The built-in sample at toy size: 48 train images, 6 test images, 64 px."""
    from coco2yolo.sample import make_sample

    return make_sample(tmp_path_factory.mktemp("sample"), n_train=48, n_test=6, size=64, seed=1)


@pytest.fixture(scope="session")
def yolo_data(sample, tmp_path_factory) -> Path:
    from coco2yolo.dataset.convert import ConvertOptions, convert

    out = tmp_path_factory.mktemp("yolo") / "ds"
    convert(sample, out, ConvertOptions(val_fraction=0.25, seed=0))
    return out


def train_tiny(data_yaml: Path, name: str, weights_dir: Path, *extra: str, model: str | None = "yolov5nu.yaml") -> Path:
    """One CPU epoch of a nano model at 64 px (``model=None``: the default model); returns the weights path."""
    from coco2yolo.training import train as train

    args = train.get_args_parser().parse_args([
        "--data", str(data_yaml), *(["--model", model] if model else []), "--epochs", "1", "--imgsz", "64", "--batch", "8",
        "--device", "cpu", "--workers", "0", "--seed", "0", "--name", name,
        "--weights-dir", str(weights_dir), *extra])
    assert train.main(args) == 0
    return weights_dir / f"{name}.pt"


@pytest.fixture(scope="session")
def tiny_weights(yolo_data, tmp_path_factory) -> Path:
    return train_tiny(yolo_data / "data.yaml", "tiny", tmp_path_factory.mktemp("weights"))


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def run_cli(module_main, parser, argv: list[str], capsys) -> tuple[int, str, str]:
    """Run a command in-process the way its script does; return (status, stdout, stderr)."""
    from coco2yolo import cli

    try:
        code = cli.run(module_main, parser, [str(a) for a in argv])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err
