"""``python -m coco2yolo.kfold``: a tiny experiment end to end (2 folds, 2 nano models built from yaml,
1 epoch, 64 px), resume, shards, the fold-merge scale, bad experiment files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from coco2yolo.kfold import __main__ as kfold_cli
from conftest import ROOT, run_cli

EXPERIMENT = """\
train: {train}
test: {test}
out: {out}
convert: {{clean: true, folds: 2, seed: 0}}
models:
  - {{name: a, model: yolov5nu.yaml, epochs: 1, imgsz: 64, batch: 8, workers: 0, plots: false}}
  - {{name: b, model: yolov8n.yaml, epochs: 1, imgsz: 64, batch: 8, workers: 0, plots: false, mosaic: 0.0}}
predict: {{conf: 0.001}}
fuse: {{methods: [wbf, nms], iou: [0.5, 0.6], weights: [0, 1, 2]}}
bootstrap: 50
final: folds                # the fold models predict the test set (refit: tests/test_budget.py)
"""


def _write_experiment(folder: Path, sample: Path, out: Path) -> Path:
    p = folder / f"{out.name}.yaml"
    p.write_text(EXPERIMENT.format(train=sample, test=sample.parent / "test.json", out=out))
    return p


def _kfold(*argv, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coco2yolo.kfold", *map(str, argv), "--devices", "cpu"],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _log(out: Path) -> list[list[str]]:
    return [ln.split("\t") for ln in (out / "commands.log").read_text().splitlines()]


@pytest.fixture(scope="module")
def experiment(sample, tmp_path_factory):
    folder = tmp_path_factory.mktemp("kfold")
    out = folder / "exp"
    exp = _write_experiment(folder, sample, out)
    proc = _kfold(exp)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return exp, out, proc


def test_experiment_runs_end_to_end(experiment, sample):
    exp, out, proc = experiment
    for rel in ("oof/a.json", "oof/b.json", "oof/gt.json", "oof/ensemble.json", "test/a.json", "test/b.json",
                "ensemble_test.json", "submission.csv", "ensemble_setting.json", "metrics/oof.json", "summary.json"):
        assert (out / rel).is_file(), rel
    summary = json.loads((out / "summary.json").read_text())
    assert [m["name"] for m in summary["models"]] == ["a", "b"]
    assert {"crossfit_mAP50", "gain_over_best_single", "final_setting"} <= set(summary["fusion"])
    assert len(summary["fusion"]["gain_over_best_single"]["ci95"]) == 2
    assert len((out / "submission.csv").read_text().splitlines()) == 1 + 6
    assert "out-of-fold, 2 folds" in proc.stdout and "(cross-fitted)" in proc.stdout
    starts = Counter(r[4] for r in _log(out) if r[3] == "START")
    assert set(starts.values()) == {1} and len(starts) == 23  # every job, once
    assert "$ COCO2YOLO_RUNS=" in proc.stdout and "train_yolo.py" in proc.stdout  # commands printed first


def test_out_of_fold_predictions_cover_every_training_image_once(experiment):
    _, out, _ = experiment
    gt = json.loads((out / "oof" / "gt.json").read_text())
    folds = json.loads((out / "oof" / "folds.json").read_text())["fold_of_image"]
    all_ids = [im["id"] for im in gt["images"]]
    assert len(all_ids) == len(set(all_ids)) == len(folds)
    for f in range(2):
        val_ids = {im["id"] for im in json.loads((out / "data" / f"fold{f}" / "val.json").read_text())["images"]}
        assert val_ids == {int(i) for i, v in folds.items() if v == f}
        for m in ("a", "b"):  # each fold's model predicted only its own validation images
            preds = json.loads((out / "preds" / f"{m}_fold{f}_val.json").read_text())
            assert {p["image_id"] for p in preds} <= val_ids
    train0 = json.loads((out / "data" / "fold0" / "train.json").read_text())
    val0 = json.loads((out / "data" / "fold0" / "val.json").read_text())
    assert set(all_ids) == {im["id"] for im in train0["images"] + val0["images"]}
    for m in ("a", "b"):
        merged = json.loads((out / "oof" / f"{m}.json").read_text())
        parts = sum(len(json.loads((out / "preds" / f"{m}_fold{f}_val.json").read_text())) for f in range(2))
        assert len(merged) == parts


def test_resume_skips_what_is_done(experiment):
    exp, out, _ = experiment
    before = len(_log(out))
    proc = _kfold(exp)
    assert proc.returncode == 0 and "nothing to do" in proc.stdout, proc.stderr
    assert len(_log(out)) == before  # nothing started
    (out / "weights" / "b_fold0.pt").unlink()
    proc = _kfold(exp)
    assert proc.returncode == 0, proc.stderr
    rerun = [r[4] for r in _log(out)[before:] if r[3] == "START"]
    # CPU training is bit-identical, so after retraining nothing downstream changes and nothing more reruns
    assert rerun == ["train/b/fold0", "predict/b/fold0/val", "predict/b/fold0/test"], rerun


def test_a_claimed_job_is_never_run_twice(experiment, tmp_path):
    from coco2yolo.kfold.runner import Claims

    claims = Claims(tmp_path / "claims", "shard=0/1")
    other = Claims(tmp_path / "claims", "shard=1/2")
    try:
        assert claims.take("train/a/fold0") and not other.take("train/a/fold0")
        claims.release("train/a/fold0")
        assert other.take("train/a/fold0")
    finally:
        claims.close()
        other.close()
    dead = tmp_path / "claims" / "train__b__fold1"
    dead.write_text("shard=0/1 host=" + __import__("socket").gethostname() + f" pid={2**22 + 7} since=x\n")
    c = Claims(tmp_path / "claims", "shard=0/1")
    try:
        assert c.take("train/b/fold1")  # its owner is gone: taken over
    finally:
        c.close()


def test_fold_merge_of_identical_models_returns_their_predictions(tmp_path, capsys):
    """The test side fuses each model's K fold files first (WBF at the prediction NMS IoU); K identical
    fold models must give back exactly what one gives, i.e. the scale the cross-model fusion was tuned on."""
    from coco2yolo.fusion import ensemble
    from coco2yolo.results import load_results
    from conftest import write_json

    rng = np.random.default_rng(0)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480} for i in range(6)]
    recs = []
    for i in range(6):
        for _ in range(40):  # boxes of one image overlap each other at IoU <= 0.7, as after the model's NMS
            x, y = rng.uniform(0, 500, 2)
            cand = [x, y, *rng.uniform(20, 120, 2)]
            recs.append({"image_id": i, "category_id": int(rng.integers(3)), "bbox": [float(v) for v in cand],
                         "score": float(rng.uniform(0.001, 1))})
    from coco2yolo.fusion.kernels import fuse as kfuse

    single = load_results(write_json(tmp_path / "raw.json", recs))
    nms_ed = kfuse([single], list(range(6)), np.array([[640.0, 480.0]] * 6), method="nms", iou_thr=0.7)
    one = write_json(tmp_path / "fold0.json", nms_ed.to_records())
    files = [one] + [shutil.copy(one, tmp_path / f"fold{k}.json") for k in (1, 2)]
    imgs = write_json(tmp_path / "test.json", {"images": images, "categories": [{"id": k, "name": str(k)} for k in range(3)]})
    code, _, err = run_cli(ensemble.main, ensemble.get_args_parser(),
                           [*files, "--images", imgs, "--method", "wbf", "--iou-thr", "0.7", "--conf-type", "avg",
                            "--out", tmp_path / "merged.json"], capsys)
    assert code == 0, err
    a, b = load_results(one), load_results(tmp_path / "merged.json")
    ka = sorted(zip(a.image_id, a.category_id, *np.round(a.xywh.T, 3), np.round(a.score, 5)))
    kb = sorted(zip(b.image_id, b.category_id, *np.round(b.xywh.T, 3), np.round(b.score, 5)))
    assert len(ka) == len(kb) and np.allclose(np.array(ka, float), np.array(kb, float), atol=2e-3)


BAD = [
    ("trian: x.json\nout: o\n", "unknown key 'trian' (did you mean train?)"),
    ("out: o\nconvert: {folds: 2}\nmodels: [{name: a, model: yolov5nu.yaml}]\n", "'train' is required"),
    ("train: t.json\nout: o\nconvert: {clean: true}\nmodels: [{name: a}]\n", "convert.folds is required"),
    ("train: t.json\nout: o\nconvert: {folds: 2, dup_iou: 2}\nmodels: [{name: a}]\n", "dup-iou"),
    ("train: t.json\nout: o\nconvert: {folds: 2, fold_count: 2}\nmodels: [{name: a}]\n", "unknown key 'fold_count'"),
    ("train: t.json\nout: o\nconvert: {folds: 2}\nmodels: [{name: a, epoch: 3}]\n", "(did you mean epochs?)"),
    ("train: t.json\nout: o\nconvert: {folds: 2}\nmodels: [{name: a}, {name: a}]\n", "name 'a' is used twice"),
    ("train: t.json\nout: o\nconvert: {folds: 2}\nmodels: [{name: 'a/b'}]\n", "name must be letters"),
    ("train: t.json\nout: o\nconvert: {folds: 2}\nmodels: [{name: a, mosaic: 3}]\n", "must be a number in [0, 1]"),
    ("train: t.json\nout: o\nconvert: {folds: 2}\nmodels: {name: a}\n", "'models' must be a list"),
    ("train: t.json\nout: o\nconvert: {folds: 2}\nmodels: [{name: a}]\npredict: {tta: true, conf: nan}\n", "--conf"),
    ("train: t.json\nout: o\nconvert: {folds: 2}\nmodels: [{name: a}]\nfuse: {methods: [vote]}\n", "invalid choice"),
    ("train: t.json\nout: o\nconvert: {folds: 2}\nmodels: [{name: a}]\nbootstrap: -1\n", "bootstrap must be"),
    ("- just\n- a list\n", "must be a mapping"),
    ("train: t.json\nout: o\nconvert: {folds: 9223372036854775808}\nmodels: [{name: a}]\n", "allowed: 2 to 100"),
    ("train: t\x18.json\n", "special characters are not allowed (character 0x0018 at position 8)"),
]


@pytest.mark.parametrize("text, match", BAD)
def test_bad_experiment_files_are_one_line(tmp_path, capsys, text, match):
    exp = tmp_path / "exp.yaml"
    exp.write_text(text)
    code, _, err = run_cli(kfold_cli.main, kfold_cli.get_args_parser(), [exp, "--devices", "cpu"], capsys)
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1, err


def test_bad_flags(tmp_path, capsys):
    exp = tmp_path / "exp.yaml"
    exp.write_text("train: t.json\nout: o\nconvert: {folds: 2}\nmodels: [{name: a}]\n")
    for argv, match in ((["--shard", "2/2"], "--shard must be"), (["--devices", "7"], "CUDA device 7"),
                        (["--only", "everything"], "invalid choice")):
        code, _, err = run_cli(kfold_cli.main, kfold_cli.get_args_parser(), [exp, *argv], capsys)
        assert code == 2 and match in err, err


def test_the_shipped_example_experiment_is_valid():
    from coco2yolo.kfold.experiment import load_experiment
    from coco2yolo.kfold.plan import build

    exp = load_experiment(ROOT / "coco2yolo" / "cfg" / "experiment.yaml")
    jobs = build(exp, {"oof_gt": None, "merge": None, "summary": None})
    assert exp.folds == 5 and len(exp.models) == 2
    assert sum(j.step == "train" and "/fold" in j.id for j in jobs) == 10
    refits = 2 if exp.final in ("refit", "both") else 0
    assert sum(j.step == "train" and j.id.endswith("/all") for j in jobs) == refits


def test_killing_the_runner_stops_its_jobs_and_a_rerun_takes_over(experiment):
    """kill -9 of the runner mid-training: the training dies with it (no orphan keeps writing), its claim
    names a dead process, and the next run takes the job over and finishes it."""
    import os
    import signal
    import time

    exp, out, _ = experiment
    (out / "weights" / "a_fold1.pt").unlink()
    runner = subprocess.Popen([sys.executable, "-m", "coco2yolo.kfold", str(exp), "--devices", "cpu"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    claim = out / ".kfold" / "claims" / "train__a__fold1"
    for _ in range(600):
        if claim.exists():
            break
        time.sleep(0.1)
    assert claim.exists()
    time.sleep(2)
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    time.sleep(3)
    alive = subprocess.run(["pgrep", "-f", "train_yolo.py.*a_fold1"], capture_output=True, text=True).stdout.split()
    assert alive == [], "the training outlived its runner"
    proc = _kfold(exp)
    assert proc.returncode == 0, proc.stderr
    assert (out / "weights" / "a_fold1.pt").exists() and not claim.exists()


def test_devices_run_one_job_each_at_once(tmp_path):
    """--devices 0,1: device jobs run two at a time, each on its own device; a DDP job takes both."""
    import time

    from coco2yolo.kfold.experiment import Experiment
    from coco2yolo.kfold.plan import DEVICE, Job
    from coco2yolo.kfold.runner import Runner

    exp = Experiment(path=tmp_path / "exp.yaml", train=tmp_path / "t.json", test=None, out=tmp_path / "out",
                     images=None, folds=2, convert_args=[], models=[], predict_args=[], predict_iou=0.7, fuse_args=[],
                     devices=None, bootstrap=0)
    code = ("import sys, time, json; t = time.time(); time.sleep(1.5); "
            "open(sys.argv[1], 'w').write(json.dumps([sys.argv[3], t, time.time()]))")

    def job(name, devices=None):
        out = tmp_path / f"{name}.json"
        return Job(f"predict/{name}", "predict", [sys.executable, "-c", code, str(out), "--device", DEVICE], [], [out],
                   device=True, devices=devices)

    jobs = [job("a"), job("b"), job("c"), job("ddp", devices=["0", "1"])]
    t0 = time.time()
    assert Runner(exp, jobs, ["0", "1"]).run() == 0
    seen = {j.id.split("/")[1]: json.loads((tmp_path / f"{j.id.split('/')[1]}.json").read_text()) for j in jobs}
    assert {seen["a"][0], seen["b"][0]} == {"0", "1"}  # the first two at once, on different devices
    assert abs(seen["a"][1] - seen["b"][1]) < 1.0
    assert seen["ddp"][0] == "0,1"
    ddp_start, ddp_end = seen["ddp"][1], seen["ddp"][2]
    assert all(not (s < ddp_end and ddp_start < e) for name, (_, s, e) in seen.items() if name != "ddp")  # alone
    assert time.time() - t0 < 4 * 1.5 + 4  # a, b together; then c and ddp one after the other at most


def test_an_interrupted_training_resumes_when_nothing_changed(tmp_path):
    """The runner adds --resume only for the same job (same fingerprint) whose last.pt is unfinished."""
    import torch

    from coco2yolo.fileio import write_json
    from coco2yolo.kfold.experiment import Experiment
    from coco2yolo.kfold.plan import DEVICE, Job
    from coco2yolo.kfold.runner import Runner

    exp = Experiment(path=tmp_path / "exp.yaml", train=tmp_path / "t.json", test=None, out=tmp_path / "out",
                     images=None, folds=2, convert_args=[], models=[], predict_args=[], predict_iou=0.7, fuse_args=[],
                     devices=None, bootstrap=0)
    data = tmp_path / "data.yaml"
    data.write_text("x")
    job = Job("train/m/fold0", "train", ["python", "train_yolo.py", "--data", str(data), "--name", "m_fold0",
                                         "--device", DEVICE], [data], [tmp_path / "w.pt"], device=True)
    runner = Runner(exp, [job], ["cpu"])
    assert runner._argv(job, ["cpu"])[-1] == "cpu"  # no earlier attempt
    last = exp.out / "runs" / "train" / "m_fold0" / "weights" / "last.pt"
    last.parent.mkdir(parents=True)
    torch.save({"epoch": 1}, last)  # an epoch saved, the run not finished
    write_json(exp.out / ".kfold" / "started" / "train__m__fold0.json", {"fingerprint": runner.fp.job(job)})
    assert runner._argv(job, ["cpu"])[-1] == "--resume"
    torch.save({"epoch": -1}, last)  # finished: nothing to resume
    assert runner._argv(job, ["cpu"])[-1] == "cpu"
    torch.save({"epoch": 1}, last)
    data.write_text("changed")  # an input changed: start afresh
    assert runner._argv(job, ["cpu"])[-1] == "cpu"


# --- on a real SLURM cluster (one node, this machine) ---------------------------------------------------------

SBATCH = ROOT / "slurm" / "kfold_array.sbatch"
SAME = ("oof/a.json", "test/a.json", "preds/a_fold0_val.json", "preds/a_fold1_val.json", "preds/a_fold0_test.json",
        "preds/a_fold1_test.json", "oof/gt.json", "oof/folds.json")


@pytest.fixture(scope="module")
def slurm():
    from engines import slurm_cluster

    with slurm_cluster() as cluster:
        yield cluster


def _model_a_only(tmp_path: Path, sample: Path, name: str) -> tuple[Path, Path]:
    out = tmp_path / name
    exp = _write_experiment(tmp_path, sample, out)
    exp.write_text("\n".join(ln for ln in exp.read_text().splitlines() if "{name: b," not in ln) + "\n")
    return exp, out


def _sbatch(slurm, exp: Path, cwd: Path, *extra: str, wait: bool = True) -> subprocess.CompletedProcess:
    env = {**slurm["env"], "PYTHON": sys.executable, "COCO2YOLO_OFFLINE": "1"}
    return subprocess.run(["sbatch", "--parsable", *(["--wait"] if wait else []), "--array=0-1", *extra, str(SBATCH),
                           str(exp), "cpu"], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_slurm_array_of_the_readme_script_survives_a_killed_task(experiment, sample, tmp_path, slurm):
    """The repository's sbatch script, run as is on a real one-node SLURM cluster: a 2-task array over --shard;
    one task killed (scancel --signal=KILL: no chance to release its claim) while it holds a training job, then
    the array again: the dead task's job is taken over, every job ends once, both shards worked, and the outputs
    are the same bytes as one process's. (Sharding's own test: two shards of one folder, run here through SLURM.)"""
    import time

    from engines import slurm_jobs

    _, single, _ = experiment
    exp, out = _model_a_only(tmp_path, sample, "slurm")
    job = _sbatch(slurm, exp, tmp_path, wait=False)
    assert job.returncode == 0, job.stderr
    array = job.stdout.strip().split(";")[0]
    claims = out / ".kfold" / "claims"
    victim = None
    end = time.time() + 600
    while time.time() < end and victim is None:
        for c in claims.glob("train__*") if claims.exists() else []:
            if "shard=1/2" in c.read_text(errors="replace"):
                victim = c.name.replace("__", "/")
        time.sleep(0.2)
    assert victim is not None, "task 1 never claimed a training job"
    subprocess.run(["scancel", "--signal=KILL", f"{array}_1"], env=slurm["env"], check=True)
    end = time.time() + 600
    while time.time() < end and any(line.startswith(f"{array}_1") for line in slurm_jobs(slurm["env"])):
        time.sleep(0.5)
    proc = _sbatch(slurm, exp, tmp_path)  # the array again (it runs beside the first array's task 0)
    end = time.time() + 600
    while time.time() < end and slurm_jobs(slurm["env"]):
        time.sleep(0.5)
    logs = sorted(tmp_path.glob("slurm-coco2yolo-kfold-*.out"))
    assert (out / "summary.json").exists(), proc.stderr + "\n".join(p.read_text()[-1500:] for p in logs)
    assert len(logs) == 4  # two arrays of two tasks, each task's output beside the experiment
    rows = _log(out)
    ended = Counter(r[4] for r in rows if r[3] == "END" and r[5].startswith("exit 0"))
    assert ended[victim] == 1 and set(ended.values()) == {1}, (victim, ended)  # the dead task's job finished once
    single_jobs = {r[4] for r in _log(single) if r[3] == "START" and "/b" not in r[4] and r[4] != "test/b"}
    assert {j for j in ended if not j.startswith(("fuse", "test/ensemble"))} <= single_jobs, sorted(ended)
    assert {r[2] for r in rows} == {"shard 0/2", "shard 1/2"}  # both shards worked
    for rel in SAME:
        assert (out / rel).read_bytes() == (single / rel).read_bytes(), rel
