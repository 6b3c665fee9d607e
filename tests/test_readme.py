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
    ("pseudo_conf: 0.5", "pseudo_conf: 0, plots: false"),  # a 1-epoch toy model scores low
    # Ultralytics' plots are checked on v5l's runs below; drawing them for every other run would cost a few s each
    ("augment_preset: weather}", "augment_preset: weather, plots: false}"),
    # the refit (final: refit, the default) is run by the budget block's test; here the fold models predict
    ("fuse: {methods: [wbf, nms], iou: [0.5, 0.55, 0.6]}\n", "fuse: {methods: [wbf, nms], iou: [0.5, 0.55, 0.6]}\n"
     "final: folds\n"),
]


BUDGET_SUBSTITUTIONS = [
    ("folds: 5", "folds: 2"),
    ("budget: 30h", "budget: 2h"),
    ("model: yolov8m.pt, time: auto, imgsz: 1024, batch: 16", "model: yolov8n.yaml, epochs: 1, imgsz: 64, batch: 8, "
     "workers: 0, plots: false"),  # time: auto is checked by tests/test_budget.py (at toy size it would take minutes)
    ("model: yolov5lu.pt, time: 1h, imgsz: 1024, batch: 16", "model: yolov5nu.yaml, epochs: 1, imgsz: 64, batch: 8, "
     "workers: 0, plots: false"),  # the plots are checked by the recipe's test; here they would cost a few s a run
    ("trials: 12", "trials: 2"),
    ("budget: 6h", "budget: 5m"),
    ("--devices 0", "--devices cpu"),
]


def recipe(name: str = "recipe") -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(rf"<!-- {name}:start -->\s*```bash\n(.*?)```\s*<!-- {name}:end -->", text, re.S)
    assert block, f"README.md lost its {name} block"
    return block.group(1)


def _run_block(script: str, substitutions: list[tuple[str, str]], sample, tmp_path) -> subprocess.CompletedProcess:
    for old, new in substitutions:
        assert old in script, f"the README block no longer contains {old!r}"
        script = script.replace(old, new)
    for name in ("coco2yolo", "train_yolo.py", "infer.py", "ensemble.py", "evaluate.py"):
        (tmp_path / name).symlink_to(ROOT / name)  # the commands resolve as they would in the checkout
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "recycle").symlink_to(sample.parent)
    (tmp_path / "runs").mkdir()
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)


def test_recipe_runs_at_toy_size(sample, tmp_path):
    proc = _run_block(recipe(), SUBSTITUTIONS, sample, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp1 = tmp_path / "runs" / "exp1"
    rows = (exp1 / "submission.csv").read_text().splitlines()
    assert rows[0] == "PredictionString,image_id" and len(rows) == 1 + 6
    assert "submission.csv: ok: 6 images" in proc.stdout
    assert "submission: runs/exp1/submission.csv" in proc.stdout  # the run ends saying where its results are
    assert "everything measured: runs/exp1/summary.json" in proc.stdout
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


def test_the_budget_block_runs_at_toy_size(sample, tmp_path):
    """The search (trials, pruning, its results), the plan's estimates, the winner on every fold, the refit."""
    import csv

    import yaml

    proc = _run_block(recipe("budget"), BUDGET_SUBSTITUTIONS, sample, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    o = tmp_path / "runs" / "exp3"
    assert "estimated device time" in proc.stdout and "of a budget of 2 h" in proc.stdout  # the dry run
    with open(o / "search" / "trials.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 2 and {r["state"] for r in rows} <= {"complete", "pruned"}
    assert rows[0]["role"] == "baseline" and rows[0]["state"] == "complete"  # raced first, never pruned
    trials = [r for r in rows if r["role"] == "trial"]
    assert trials and all(r["lr0"] and r["mosaic"] and r["augment_preset"] and float(r["seconds"]) > 0 for r in trials)
    best = yaml.safe_load((o / "search" / "best.yaml").read_text())
    decision = best.pop("search")
    assert best["name"] == "search_best" and isinstance(decision["beats_baseline"], bool)
    if decision["kept"] == "baseline":  # the base entry as given: no lr0 of its own
        assert "lr0" not in best and not decision["beats_baseline"]
    else:
        assert decision["beats_baseline"] and decision["ci95"][0] > 0
    assert "skip search (done" in proc.stdout  # the last command found the search finished
    for f in (0, 1):
        assert (o / "weights" / f"search_best_fold{f}.pt").exists() and (o / "weights" / f"v8m_fold{f}.pt").exists()
    side = json.loads((o / "weights" / "search_best_all.json").read_text())
    assert side["config"]["val"] is False and side["config"]["lr0"] == float(best.get("lr0", 0.01))  # the refit
    started = [ln for ln in (o / "commands.log").read_text().splitlines() if "\tSTART\ttest/search_best\t" in ln]
    assert started and "search_best_all_test.json" in started[-1] and "fold0_test" not in started[-1]  # refit only
    summary = json.loads((o / "summary.json").read_text())
    assert [m["name"] for m in summary["models"]] == ["v8m", "search_best"]
    assert "[" in proc.stdout and "left" in proc.stdout and (o / "submission.csv").exists()


@pytest.mark.parametrize("command", ["make demo", "make test"])
def test_quick_start_commands_are_the_makefile_targets(command):
    readme = (ROOT / "README.md").read_text()
    assert command in readme
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), command.split()[1]], capture_output=True, text=True)
    assert dry.returncode == 0
    assert ("coco2yolo.demo" if command == "make demo" else "pytest") in dry.stdout
