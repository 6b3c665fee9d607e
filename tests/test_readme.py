"""The README's GPU recipe, run on the CPU at toy size, so that none of its commands can rot."""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

# Toy-size stand-ins; every pattern must occur in the recipe (so an edit that breaks it fails here).
SUBSTITUTIONS = [
    ("folds: 5", "folds: 2"),
    ("epochs: 100", "epochs: 1"),
    ("imgsz: 1024", "imgsz: 64"),
    ("batch: 16", "batch: 8, workers: 0"),
    ("yolov5lu.pt", "yolov5nu.yaml"),
    ("yolov8m.pt", "yolov8n.yaml"),
    ("--devices 0", "--devices cpu"),
    ("pseudo_conf: 0.5", "pseudo_conf: 0"),  # a 1-epoch toy model scores low
]


def recipe() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- recipe:start -->\s*```bash\n(.*?)```\s*<!-- recipe:end -->", text, re.S)
    assert block, "README.md lost its recipe block"
    return block.group(1)


def test_recipe_runs_at_toy_size(sample, tmp_path):
    script = recipe()
    for old, new in SUBSTITUTIONS:
        assert old in script, f"the recipe no longer contains {old!r}"
        script = script.replace(old, new)
    for name in ("coco2yolo", "train_yolo.py", "infer.py", "ensemble.py", "evaluate.py"):
        (tmp_path / name).symlink_to(ROOT / name)  # the commands resolve as they would in the checkout
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "recycle").symlink_to(sample.parent)
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp1 = tmp_path / "runs" / "exp1"
    rows = (exp1 / "submission.csv").read_text().splitlines()
    assert rows[0] == "PredictionString,image_id" and len(rows) == 1 + 6
    assert "submission.csv: ok: 6 images" in proc.stdout
    summary = json.loads((exp1 / "summary.json").read_text())
    assert [m["name"] for m in summary["models"]] == ["v5l", "v8m"] and "gain_over_best_single" in summary["fusion"]
    assert "(cross-fitted)" in proc.stdout and "[waits] train/v5l/fold0" in proc.stdout  # the dry run, first
    compared = json.loads((tmp_path / "runs" / "pl_vs_v5l.json").read_text())
    assert len(compared["files"]) == 2 and len(compared["differences"]) == 1
    pl_log = (tmp_path / "runs" / "exp2" / "logs" / "train__v5l_pl__fold0.log").read_text()
    assert "pseudo-labels: added" in pl_log
    run_dir = exp1 / "runs" / "train" / "v5l_fold0"  # Ultralytics' plots: on by default
    assert all((run_dir / f).exists() for f in ("results.png", "labels.jpg", "confusion_matrix.png")), \
        sorted(p.name for p in run_dir.iterdir())


@pytest.mark.parametrize("command", ["make demo", "make test"])
def test_quick_start_commands_are_the_makefile_targets(command):
    readme = (ROOT / "README.md").read_text()
    assert command in readme
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), command.split()[1]], capture_output=True, text=True)
    assert dry.returncode == 0
    assert ("coco2yolo.demo" if command == "make demo" else "pytest") in dry.stdout
