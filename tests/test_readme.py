"""The README's GPU recipe, run on the CPU at toy size, so that none of its commands can rot."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

# Toy-size stand-ins; every pattern must occur in the recipe (so an edit that breaks it fails here).
SUBSTITUTIONS = [
    ("for f in 0 1 2 3 4", "for f in 0 1"),
    ("fold{0,1,2,3,4}", "fold{0,1}"),
    ("--epochs 100", "--epochs 1"),
    ("--imgsz 1024", "--imgsz 64"),
    ("--batch 16", "--batch 8 --workers 0"),
    ("--device 0", "--device cpu"),
    ("yolov5lu.pt", "yolov5nu.yaml"),
    ("yolov5xu.pt", "yolov8n.yaml"),
    ("--pseudo-conf 0.5", "--pseudo-conf 0"),  # a 1-epoch toy model scores low
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
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "recycle").symlink_to(sample.parent)
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = tmp_path / "runs"
    rows = (runs / "submission.csv").read_text().splitlines()
    assert rows[0] == "PredictionString,image_id" and len(rows) == 1 + 6
    assert json.loads((runs / "ensemble_setting.json").read_text())["n_models"] == 2
    assert len(json.loads((runs / "metrics_fold0.json").read_text())["files"]) == 2
    assert (runs / "plots" / "ap50_per_class.png").exists()
    assert "pseudo-labels: added" in proc.stdout
    assert (tmp_path / "weights" / "v5l_fold0_pl.json").exists()
    run_dir = Path(os.environ["COCO2YOLO_RUNS"]) / "train" / "v5l_fold0"  # Ultralytics' plots: on by default
    assert all((run_dir / f).exists() for f in ("results.png", "labels.jpg", "confusion_matrix.png")), \
        sorted(p.name for p in run_dir.iterdir())


@pytest.mark.parametrize("command", ["make demo", "make test"])
def test_quick_start_commands_are_the_makefile_targets(command):
    readme = (ROOT / "README.md").read_text()
    assert command in readme
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), command.split()[1]], capture_output=True, text=True)
    assert dry.returncode == 0
    assert ("coco2yolo.demo" if command == "make demo" else "pytest") in dry.stdout
