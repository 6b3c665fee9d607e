"""Issue 19: time budgets, measured estimates, the recipe search (Optuna, pruned early), the refit."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from coco2yolo import cli
from coco2yolo.kfold import __main__ as kfold
from coco2yolo.training import config, train
from conftest import ROOT, run_cli, train_tiny, write_json


def _one_line(code, err, match=None):
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    if match:
        assert match in err, err


# --- durations ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, hours", [("0.5", 0.5), ("90s", 90 / 3600), ("30m", 0.5), ("2h", 2.0), ("1.5h", 1.5),
                                         ("45min", 0.75), (2, 2.0)])
def test_durations(text, hours):
    assert cli.duration_hours(text) == pytest.approx(hours)


@pytest.mark.parametrize("bad", ["-1", "nan", "5x", "0", "inf", "", "m"])
def test_bad_time_is_one_line(yolo_data, tmp_path, capsys, bad):
    code, _, err = run_cli(train.main, train.get_args_parser(),
                           ["--data", yolo_data / "data.yaml", f"--time={bad}"], capsys)
    _one_line(code, err, "duration")


def test_time_in_a_config_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("time: 30m\n")
    assert config.resolve(train.get_args_parser().parse_args(["--config", str(cfg)]))["time"] == pytest.approx(0.5)
    cfg.write_text("time: 5x\n")
    with pytest.raises(Exception, match="time must be a duration"):
        config.resolve(train.get_args_parser().parse_args(["--config", str(cfg)]))


def test_a_timed_run_ends_within_its_budget_and_says_what_ran(yolo_data, tmp_path):
    w = train_tiny(yolo_data / "data.yaml", "timed", tmp_path, "--epochs", "10000", "--time", "12s", "--no-plots")
    side = json.loads(w.with_suffix(".json").read_text())
    assert side["budget_hours"] == pytest.approx(12 / 3600) and side["epochs_asked"] == 10000
    assert 1 <= side["epochs_done"] < 10000 and len(side["val_mAP50_by_epoch"]) == side["epochs_done"]
    per = side["seconds_per_epoch"]
    assert per == pytest.approx(side["loop_seconds"] / side["epochs_done"])
    assert side["command_seconds"] <= 12 + per + 6, side  # the budget, the epoch under way, the final validation


# --- the recipe search --------------------------------------------------------------------------------

def _experiment(root: Path, sample: Path, **extra) -> Path:
    doc = {"train": str(sample), "test": str(sample.parent / "test.json"), "out": str(root / "exp"),
           "convert": {"folds": 2, "seed": 0},
           "models": [{"name": "a", "model": "yolov5nu.yaml", "epochs": 1, "imgsz": 64, "batch": 8, "workers": 0}],
           "bootstrap": 20, **extra}
    if doc["models"] is None:  # omitted
        del doc["models"]
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


SEARCH = {"base": {"model": "yolov5nu.yaml", "epochs": 2, "imgsz": 64, "batch": 8, "workers": 0, "plots": False},
          "space": {"lr0": {"low": 0.001, "high": 0.05, "log": True}, "mosaic": [0.0, 1.0]},
          "trials": 3, "pruner": "hyperband"}


@pytest.mark.parametrize("change, match", [
    ({"space": {}}, "space must map one or more keys"),
    ({"space": {"lr0": []}}, "space.lr0 is an empty list"),
    ({"space": {"lr0": {"low": 0.1, "high": 0.01}}}, "low 0.1 is above high 0.01"),
    ({"space": {"lr0": {"low": 0, "high": 0.1, "log": True}}}, "a log range needs low > 0"),
    ({"sampler": "tpe"}, "unknown key 'sampler'"),
    ({"pruner": "hyperbnd"}, "did you mean hyperband"),
    ({"budget": "5x"}, "budget must be a duration"),
    ({"space": {"imgsz": [64, "big"]}}, "space.imgsz = 'big'"),
    ({"fold": 2}, "fold must be a fold of convert.folds (0 to 1)"),
    ({"trials": 10**12}, "trials must be an integer from 1 to 10000"),
    ({"trials": "many"}, "trials must be an integer from 1 to 10000"),
    ({"budget": "1e300h"}, "a duration from 1 s to a year"),
    ({"budget": 1e-9}, "a duration from 1 s to a year"),
    ({"space": {"lr0": "0.01"}}, "space.lr0 must be a list of values"),
    ({"space": {"lr0": {"low": "a", "high": 1}}}, "low and high must be finite numbers"),
    ({"space": {"lr0": {"low": 0.1, "high": 0.2, "step": -1}}}, "step must be a positive number"),
    ({"storage": "foo://x"}, "database 'foo' is not one Optuna stores studies in"),
    ({"storage": "postgresql://me:s3cret@db.example:notaport/exp"}, "is not a database URL"),
    ({"storage": "postgresql://me:s3cret@db.example:99999/exp"}, "is not a port"),
    ({"storage": "sqlite://"}, "SQLite needs a file"),
    ({"storage": ["a"]}, "storage must be a path"),
])
def test_bad_search_sections_are_one_line(sample, tmp_path, capsys, change, match):
    exp = _experiment(tmp_path, sample, search={**SEARCH, **change})
    code, out, err = run_cli(kfold.main, kfold.get_args_parser(), [exp, "--dry-run", "--devices", "cpu"], capsys)
    _one_line(code, err, match)
    assert "s3cret" not in out + err
    assert not (tmp_path / "exp").exists()  # nothing half-written


@pytest.mark.parametrize("text, match", [
    ("[1, 2]\n", "must be a mapping"),
    ("name: search_best\nepochs: -5\n", "epochs"),
    ("name: search_best\nmodel: yolov5nu.yaml\nlr00: 0.1\n", "unknown key 'lr00'"),
    ("name: search_best\nmodel: " + "[" * 5000 + "\n", "best.yaml"),
    ("\x00\x01 not yaml: [\n", "best.yaml"),
])
def test_a_damaged_best_yaml_is_one_line_on_resume(sample, tmp_path, capsys, text, match):
    exp = _experiment(tmp_path, sample, search=SEARCH)
    best = tmp_path / "exp" / "search" / "best.yaml"
    best.parent.mkdir(parents=True)
    best.write_text(text)
    before = best.read_bytes()
    code, _, err = run_cli(kfold.main, kfold.get_args_parser(), [exp, "--dry-run", "--devices", "cpu"], capsys)
    _one_line(code, err, match)
    assert best.read_bytes() == before


def test_a_search_with_no_models_plans_its_winner(sample, tmp_path, capsys):
    """No models listed (omitted, or []): the dry run plans the search; before the search is done the plan holds
    the folds' conversion only (it once failed at models[0]), and once best.yaml is written the winner is every
    model: trained on every fold, refit, its test predictions submitted."""
    from coco2yolo.kfold.experiment import load_experiment
    from coco2yolo.kfold.plan import build

    search = {**SEARCH, "space": {"lr0": [0.01, 0.02]}, "trials": 2, "pruner": "none"}
    for models in (None, []):
        exp = _experiment(tmp_path, sample, search=search, models=models)
        code, out, err = run_cli(kfold.main, kfold.get_args_parser(), [exp, "--dry-run", "--devices", "cpu"], capsys)
        assert code == 0, err
        assert "no models are listed" in out and "convert/fold0" in out
    e = load_experiment(exp)
    internal = {"oof_gt": None, "merge": None, "summary": None}
    assert {j.step for j in build(e, internal)} == {"convert", "merge"}
    (e.out / "search").mkdir(parents=True)
    (e.out / "search" / "best.yaml").write_text(yaml.safe_dump({"name": "search_best", **SEARCH["base"], "lr0": 0.02,
                                                                "search": {"kept": "trial 1"}}))
    jobs = {j.id for j in build(e, internal)}
    assert {"train/search_best/fold0", "train/search_best/all", "test/ensemble", "summary"} <= jobs

# --- the search on a real PostgreSQL server -------------------------------------------------------------

@pytest.fixture(scope="module")
def postgres():
    from engines import postgres_cluster

    with postgres_cluster() as pg:
        yield pg


def test_postgres_two_search_processes_share_a_study_and_a_killed_trial_is_retried(sample, tmp_path, postgres):
    """Two --only search processes on one PostgreSQL study, one killed mid-trial, the search run again: every
    trial asked is finished, none ran twice, the killed one is retried; connections stay bounded; the password
    appears nowhere (output, logs, trials.csv, best.yaml, sidecars, the experiment's copy)."""
    import threading

    import optuna
    from optuna.storages import RetryFailedTrialCallback

    from engines import connections
    from coco2yolo.training.storage import POOL

    exp = _experiment(tmp_path, sample, search={**SEARCH, "trials": 3, "pruner": "none", "leaders": 1,
                                                "storage": postgres["url"]})
    env = {**os.environ, "COCO2YOLO_OFFLINE": "1"}
    argv = [sys.executable, "-m", "coco2yolo.kfold", str(exp), "--only", "search", "--devices", "cpu"]
    first = subprocess.run(argv[:4] + ["--only", "convert", "--devices", "cpu"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    peak, stop = [0], threading.Event()

    def sample_connections():
        while not stop.wait(0.2):
            peak[0] = max(peak[0], connections(postgres["dsn"]))

    watcher = threading.Thread(target=sample_connections, daemon=True)
    watcher.start()
    procs = [subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    time.sleep(20)
    procs[1].kill()  # killed while its trial runs
    outs = [p.communicate(timeout=600)[0] for p in procs]
    rerun = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    stop.set()
    watcher.join()
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    started = [line.split()[2] for text in outs + [rerun.stdout] for line in text.splitlines()
               if line.startswith("search: trial") and " on cpu:" in line]
    assert len(started) == len(set(started)), started  # no trial number ran twice
    study = optuna.load_study(study_name="search", storage=postgres["url"])
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") >= 3 and "RUNNING" not in states, states
    assert "FAIL" in states and any(RetryFailedTrialCallback.retried_trial_number(t) is not None for t in study.trials)
    per_process = POOL["pool_size"] + POOL["max_overflow"]
    assert 0 < peak[0] <= 4 * per_process, peak  # two search processes and their two trials, each with its pool
    text = "".join(outs) + rerun.stdout + rerun.stderr
    for f in (tmp_path / "exp").rglob("*"):
        if f.is_file() and f.suffix in (".log", ".csv", ".yaml", ".json", ".txt", ""):
            text += f.read_text(errors="replace")
    assert postgres["password"] not in text
    assert "***@127.0.0.1" in rerun.stdout  # the URL shown, masked


@pytest.mark.parametrize("what", ["wrong password", "unreachable"])
def test_postgres_a_wrong_password_or_unreachable_server_is_one_line(sample, tmp_path, capsys, postgres, what):
    from engines import free_port

    url = (postgres["url"].replace(postgres["password"], "not-the-password") if what == "wrong password"
           else f"postgresql://coco:{postgres['password']}@127.0.0.1:{free_port()}/search")
    exp = _experiment(tmp_path, sample, search={**SEARCH, "storage": url})
    code, out, err = run_cli(kfold.main, kfold.get_args_parser(), [exp, "--only", "search", "--devices", "cpu"], capsys)
    _one_line(code, err, "cannot open it")
    assert "password" in err if what == "wrong password" else "refused" in err or "connect" in err
    assert postgres["password"] not in out + err and "not-the-password" not in out + err


# --- budgets for the whole experiment --------------------------------------------------------------------

def test_dry_run_estimates_and_a_plan_over_budget_is_refused(sample, tmp_path, capsys):
    exp = _experiment(tmp_path, sample, budget="1h")
    code, out, err = run_cli(kfold.main, kfold.get_args_parser(), [exp, "--dry-run", "--devices", "cpu"], capsys)
    assert code == 0, err
    assert "estimated device time" in out and "of a budget of 60 min" in out and "(probe)" in out
    assert (tmp_path / "exp" / ".kfold" / "probes.json").exists()  # cached for the next dry run
    exp = _experiment(tmp_path, sample, budget="30s")
    code, _, err = run_cli(kfold.main, kfold.get_args_parser(), [exp, "--dry-run", "--devices", "cpu"], capsys)
    _one_line(code, err, "more than its budget of 30 s")


def test_time_auto_shares_what_the_budget_leaves(sample, tmp_path, capsys):
    exp = _experiment(tmp_path, sample, budget="2h", final="folds",
                      models=[{"name": "a", "model": "yolov5nu.yaml", "epochs": 1, "imgsz": 64, "workers": 0},
                              {"name": "b", "model": "yolov5nu.yaml", "time": "auto", "imgsz": 64, "workers": 0}])
    code, out, err = run_cli(kfold.main, kfold.get_args_parser(), [exp, "--dry-run", "--devices", "cpu"], capsys)
    assert code == 0, err
    assert "time: auto -> b" in out
    cmd = next(ln for ln in out.splitlines() if "--name b_fold0" in ln).split()
    hours = float(cmd[cmd.index("--time") + 1])
    assert 0.4 < hours < 1.0, hours  # about half of what the fixed jobs leave of 2 h, for each of 2 folds
    exp = _experiment(tmp_path, sample, models=[{"name": "b", "model": "yolov5nu.yaml", "time": "auto"}])
    code, _, err = run_cli(kfold.main, kfold.get_args_parser(), [exp, "--dry-run", "--devices", "cpu"], capsys)
    _one_line(code, err, "time: auto needs a top-level budget")


def test_final_modes_plan_their_jobs(sample, tmp_path, capsys):
    for final, refit, folds in (("refit", True, False), ("folds", False, True), ("both", True, True)):
        exp = _experiment(tmp_path, sample, final=final)
        code, out, err = run_cli(kfold.main, kfold.get_args_parser(), [exp, "--dry-run", "--devices", "cpu"], capsys)
        assert code == 0, err
        fuse = next(ln for ln in out.splitlines() if "--out" in ln and "/test/a.json" in ln)
        assert ("a_all_test.json" in fuse) == refit and ("a_fold0_test.json" in fuse) == folds, (final, fuse)
        assert ("train/a/all" in out) == refit


def test_a_search_whose_baseline_cannot_train_stops_in_one_line(sample, tmp_path, capsys):
    """A base entry that parses but cannot train (a 'checkpoint' that is text): the baseline fails, and the search
    stops at once (no race without its baseline) in one line that says why."""
    bad = tmp_path / "broken.pt"
    bad.write_text("not a checkpoint")
    exp = _experiment(tmp_path, sample, search={**SEARCH, "base": {**SEARCH["base"], "weights": str(bad)},
                                                "trials": 10})
    code, out, err = run_cli(kfold.main, kfold.get_args_parser(), [exp, "--only", "search", "--devices", "cpu"], capsys)
    _one_line(code, err, "baseline (the base entry as given) did not complete")
    assert out.count("failed (exit 2)") == 1 and "cannot read weights" in err


# --- the plan of a time budget ------------------------------------------------------------------------------

def test_the_plan_takes_the_largest_size_that_reaches_the_epochs_needed():
    from coco2yolo.training.plan import Candidate, choose

    cands = [Candidate(320, 0, 16, 30.0, 38), Candidate(416, 0, 16, 50.0, 23), Candidate(640, 0, 16, 120.0, 9),
             Candidate(320, 10, 16, 22.0, 52)]
    best, why = choose(cands, 20)
    assert (best.imgsz, best.freeze) == (416, 0) and "largest image size that reaches 20 epochs" in why
    best, why = choose(cands, 30)
    assert (best.imgsz, best.freeze) == (320, 0)
    best, why = choose(cands, 45)  # no unfrozen size converges: the frozen backbone
    assert (best.imgsz, best.freeze) == (320, 10) and "frozen" in why
    best, why = choose(cands, 100)  # nothing reaches it: the most epochs
    assert best.epochs == 52 and "no candidate reaches" in why
    assert choose([Candidate(320, 0, 16, note="cannot probe")], 20)[0] is None


def test_the_size_that_resolves_the_objects_is_where_few_boxes_are_small():
    from coco2yolo.training.plan import box_areas, resolving_size, small_share

    doc = {"images": [{"id": 1, "width": 1000, "height": 500}, {"id": 2, "width": "x", "height": 9}],
           "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0, 110, 110]},   # area 0.0121 of 1000 px squared
                           {"id": 2, "image_id": 1, "bbox": [0, 0, 30, 30]},     # 0.0009
                           {"id": 3, "image_id": 1, "bbox": [0, 0, 0, 10]},      # no box: left out
                           {"id": 4, "image_id": 2, "bbox": [0, 0, 5, 5]},       # its image has no usable size
                           {"id": 5, "image_id": 1, "bbox": "nope"}]}
    areas = box_areas(doc)
    assert [round(a, 6) for a in areas] == [0.0121, 0.0009]
    # at 320 px the 110 px box is 35.2 px wide (not small), the 30 px box 9.6 px (small); at 1280 px 38.4 px (not small)
    assert small_share(areas, 320) == 0.5 and small_share(areas, 1280) == 0.0 and small_share((), 320) is None
    sizes = [256, 320, 640, 1024, 1280]
    assert resolving_size(areas, sizes, 0.5) == 320
    assert resolving_size(areas, sizes, 0.0) == 1280
    assert resolving_size(areas, [256, 320], 0.0) == 320  # none resolves them: the largest, its pixels still help
    assert resolving_size((), sizes, 0.05) is None          # no boxes: no limit
    assert box_areas([1, 2]) == () and box_areas({"images": None}) == ()
    # read as data: crowd regions (not trained on), hostile ids and sizes are left out, nothing raises
    hostile = {"images": [{"id": [1], "width": 10, "height": 10}, {"id": True, "width": 10, "height": 10},
                          {"id": 3, "width": 10 ** 400, "height": 10}, {"id": 4, "width": float("nan"), "height": 9},
                          {"id": 5, "width": 100, "height": 100}],
               "annotations": [{"image_id": 5, "bbox": [0, 0, 10 ** 400, 5]}, {"image_id": 5, "bbox": [0, 0, 50, 50],
                                                                               "iscrowd": 1},
                               {"image_id": [5], "bbox": [0, 0, 5, 5]}, {"image_id": 5, "bbox": [0, 0, 10, 20]},
                               {"image_id": 3, "bbox": [0, 0, 5, 5]}, {"image_id": 4, "bbox": [0, 0, 5, 5]}, "x"]}
    assert box_areas(hostile) == (0.02,)


def test_the_plan_probes_no_size_above_the_one_that_resolves_the_objects():
    """Boxes large enough at 320 px: 416 and 640 px are listed, not probed, and the hour goes to epochs at 320 px;
    tiny boxes let the plan go up to the largest size that reaches the epochs needed; a size given is kept."""
    from coco2yolo.training.plan import Counts, make_plan

    probed = []

    def measure(imgsz, batch, freeze):
        probed.append(imgsz)
        return 1e-4 * (imgsz / 320) ** 2

    settings = {"model": "yolov5nu.yaml", "weights": None, "imgsz": 640, "batch": 16, "freeze": None, "val": True}
    large = Counts(500, 50, 640, (0.05,) * 90 + (0.012,) * 7 + (0.001,) * 3)  # 3% small at 320 px, 10% at 256 px
    plan = make_plan(settings, {"time"}, large, 1.0, time.time(), "cpu", measure=measure)
    assert probed == [256, 320] and plan.chosen.imgsz == 320 and "objects are resolved" in plan.why
    assert [c.note for c in plan.candidates if c.imgsz > 320] == ["the objects are resolved at 320 px"] * 3
    rec = plan.record()
    assert rec["objects"]["resolved_at"] == 320 and rec["objects"]["small_share_by_imgsz"][320] == 0.03
    assert "small boxes  3.0%" in plan.block() and rec["rule"]["max_small_share"] == 0.05
    probed.clear()
    tiny = Counts(500, 50, 640, (0.0005,) * 100)  # 11 px at 512: small at every size up to the photos' own
    plan = make_plan(settings, {"time"}, tiny, 1.0, time.time(), "cpu", measure=measure)
    assert probed == [256, 320, 416, 512, 640] and plan.chosen.imgsz == 640 and "largest image size" in plan.why
    probed.clear()
    plan = make_plan({**settings, "imgsz": 640}, {"time", "imgsz"}, large, 1.0, time.time(), "cpu", measure=measure)
    assert probed == [640] and plan.chosen.imgsz == 640 and plan.record()["objects"]["resolved_at"] is None
    probed.clear()
    plan = make_plan(settings, {"time"}, (500, 50, 640), 1.0, time.time(), "cpu", measure=measure)  # no boxes known
    assert probed == [256, 320, 416, 512, 640] and plan.chosen.imgsz == 640


def test_a_rule_without_the_small_share_sets_no_size_limit(tmp_path, monkeypatch):
    from coco2yolo.training import plan

    rule = tmp_path / "epochs_needed.yaml"
    rule.write_text("epochs_needed: 5\noverhead: 1.0\n")
    monkeypatch.setattr(plan, "RULE_FILE", rule)
    settings = {"model": "yolov5nu.yaml", "weights": None, "imgsz": 640, "batch": 16, "freeze": None, "val": True}
    made = plan.make_plan(settings, {"time"}, plan.Counts(100, 10, 640, (0.05,) * 10), 1.0, time.time(), "cpu",
                          measure=lambda imgsz, batch, freeze: 1e-4)
    assert made.chosen.imgsz == 640 and made.record()["objects"]["resolved_at"] is None


def test_a_second_plan_answers_from_the_first_plans_probes():
    """--search that does not search plans again for the whole budget: the sizes the first plan probed are not
    probed again (their seconds come from it), a size it did not probe is."""
    from coco2yolo.training.plan import make_plan

    probed = []

    def measure(imgsz, batch, freeze):
        probed.append(imgsz)
        return 1e-2 * (imgsz / 320) ** 2

    settings = {"model": "yolov5nu.yaml", "weights": None, "imgsz": 640, "batch": 16, "freeze": None, "val": True}
    counts = (500, 50, 640)
    first = make_plan(settings, {"time"}, counts, 0.1, time.time(), "cpu", measure=measure)  # 6 min: 512 falls short
    assert probed == [256, 320, 416, 512] and first.chosen.imgsz == 416
    assert first.candidates[0].seconds_per_image == measure(256, 16, 0)
    probed.clear()
    second = make_plan(settings, {"time"}, counts, 1.0, time.time(), "cpu", measure=first.measured())
    assert probed == [640] and second.chosen.imgsz == 640
    assert [c.seconds_per_image for c in second.candidates[:4]] == [c.seconds_per_image for c in first.candidates[:4]]
    # a batch the first plan had to halve (a GPU's memory) is refused as it was, without probing again
    first.candidates[1].batch = 8
    again = first.measured()
    with pytest.raises(RuntimeError, match="out of memory"):
        again(320, 16, 0)
    probed.clear()
    assert again(320, 8, 0) == first.candidates[1].seconds_per_image and again(320, 4, 0) and probed == [320]


def test_the_probe_to_epoch_factor_is_interpolated_by_image_size():
    from coco2yolo.training.plan import overhead_for

    fitted = {"overhead": 1.0, "overhead_by_imgsz": {320: 0.8, 640: 1.2}}
    assert overhead_for(fitted, 320) == 0.8 and overhead_for(fitted, 640) == 1.2
    assert abs(overhead_for(fitted, 480) - 1.0) < 1e-9 and abs(overhead_for(fitted, 416) - 0.92) < 1e-9
    assert overhead_for(fitted, 256) == 0.8 and overhead_for(fitted, 1024) == 1.2  # the nearest measured size
    assert overhead_for({"overhead": 0.9}, 1024) == 0.9  # a rule without sizes: the one factor


def test_a_malformed_rule_is_one_line(tmp_path, monkeypatch):
    from coco2yolo.errors import UserError
    from coco2yolo.training import plan

    bad = tmp_path / "epochs_needed.yaml"
    bad.write_text("epochs_needed: 32\noverhead: 0.9\noverhead_by_imgsz: {320: -1}\n")
    monkeypatch.setattr(plan, "RULE_FILE", bad)
    with pytest.raises(UserError, match="overhead_by_imgsz"):
        plan.rule()
    bad.write_text("epochs_needed: 32\noverhead: 0.9\nmax_small_share: 5\n")
    with pytest.raises(UserError, match="max_small_share is a share from 0 to 1"):
        plan.rule()


def test_the_rule_file_is_fitted_to_measured_runs():
    from coco2yolo.training.plan import rule

    r = rule()
    # overhead: measured epoch seconds over the probe's projection (below 1 where a real batch of 16 runs faster per
    # image than the probe's two-image steps, as on the CPU it was fitted on)
    assert 5 <= r["epochs_needed"] <= 200 and 0.3 <= r["overhead"] <= 5.0
    assert r["runs"], "the rule's data: the measured runs it was fitted to"
    # one factor per measured size, as fitted (bench_budget's fit step): a probe misses more at larger sizes
    by_size = r["overhead_by_imgsz"]
    assert sorted(by_size) == sorted({run["imgsz"] for run in r["runs"]}) and len(by_size) >= 2
    assert by_size[max(by_size)] > by_size[min(by_size)]
    for run in r["runs"]:
        assert {"imgsz", "epochs", "val_mAP50_by_epoch", "reached_at"} <= set(run)


def test_a_timed_run_plans_the_image_size_and_records_it(sample, tmp_path, capsys):
    """No --imgsz with --time: sizes from 256 up to the photos' own (320 here) are probed on this machine, the
    choice is printed as one block, trained, and recorded in the sidecar; --imgsz or --no-plan keep the size."""
    from coco2yolo.dataset.convert import ConvertOptions, convert
    from coco2yolo.sample import make_sample

    big = make_sample(tmp_path / "s", n_train=24, n_test=2, size=320, seed=2)
    convert(big, tmp_path / "ds", ConvertOptions(val_fraction=0.25, seed=0))
    code, out, err = run_cli(train.main, train.get_args_parser(),
                             ["--data", tmp_path / "ds" / "data.yaml", "--model", "yolov5nu.yaml", "--time", "45s",
                              "--batch", "8", "--device", "cpu", "--workers", "0", "--no-plots", "--name", "planned",
                              "--weights-dir", tmp_path / "w"], capsys)
    assert code == 0, err
    block = out[out.index("plan for a 45 s budget"):].split("\n")
    assert "kept as you gave: batch" in out and "<- chosen" in out
    side = json.loads((tmp_path / "w" / "planned.json").read_text())
    plan = side["plan"]
    sizes = [c["imgsz"] for c in plan["candidates"]]
    assert sizes[:2] == [256, 320] and all(c["batch"] == 8 for c in plan["candidates"])
    assert plan["chosen"]["imgsz"] in sizes and side["imgsz"] == plan["chosen"]["imgsz"] == side["config"]["imgsz"]
    # the converted dataset's boxes say where the objects are resolved; no size above it is probed
    assert plan["objects"]["boxes"] > 0 and plan["objects"]["resolved_at"] in sizes
    assert all(c["seconds_per_epoch"] == 0 for c in plan["candidates"] if c["imgsz"] > plan["objects"]["resolved_at"])
    assert plan["candidates"][0]["seconds_per_epoch"] > 0 and plan["epochs_needed"] >= 5 and block
    assert plan["probe_seconds"] < 45 and side["command_seconds"] <= 45 + 2 * side["seconds_per_epoch"] + 15
    # the size given, or --no-plan: no plan
    from coco2yolo.training import config as cfgmod

    base = {**cfgmod.defaults(), "data": str(tmp_path / "ds" / "data.yaml"), "model": "yolov5nu.yaml", "time": 15 / 3600,
            "imgsz": 64, "batch": 8, "device": "cpu", "workers": 0, "plots": False, "name": "unplanned",
            "weights_dir": str(tmp_path / "w"), "plan": False}
    side = train.run(base, {}, given={"data", "model", "time", "batch"})
    assert side["plan"] is None and side["config"]["imgsz"] == 64


def test_an_experiment_entry_with_a_budget_is_planned_once_for_all_its_jobs(sample, tmp_path, capsys):
    exp = _experiment(tmp_path, sample, models=[{"name": "a", "model": "yolov5nu.yaml", "time": "2m", "batch": 8,
                                                 "workers": 0}])
    code, out, err = run_cli(kfold.main, kfold.get_args_parser(), [exp, "--dry-run", "--devices", "cpu"], capsys)
    assert code == 0, err
    assert "[plan] a: plan for a 2 min budget" in out
    trains = [ln for ln in out.splitlines() if "train_yolo.py" in ln]
    sizes = {ln.split("--imgsz ")[1].split()[0] for ln in trains}
    assert len(trains) >= 2 and len(sizes) == 1 and all("--no-plan" in ln for ln in trains)  # folds and refit alike


# --- a search that cannot make things worse -----------------------------------------------------------------

def test_a_budgeted_search_fits_eight_trials_and_its_check():
    from coco2yolo.kfold.experiment import Search
    from coco2yolo.kfold.search import MIN_TRIALS, OVERHEAD, PRUNED_SHARE, check_seconds, trial_seconds

    s = Search(base={}, space={}, trials=100, budget_hours=20 / 60, fold=0, pruner="hyperband", storage="sqlite:///x",
               study="s", seed=0, min_resource=None, leaders=2, confirm_folds=1)
    r = trial_seconds(s)
    race = 1200 - check_seconds(s)
    assert r >= 60 and race >= (1 + MIN_TRIALS * PRUNED_SHARE) * r + (1 + MIN_TRIALS) * OVERHEAD - 1
    assert check_seconds(s) == pytest.approx(3 * (r + OVERHEAD))


def test_a_leader_replaces_the_baseline_only_beyond_noise(tmp_path):
    """Paired over the check folds' photos: a leader that finds every object beats a baseline that finds half;
    a leader that finds the same objects does not."""
    from coco2yolo.evaluation.metrics import interval
    from coco2yolo.kfold.search import paired_scores

    gts, preds = [], {"baseline": [], "better": [], "same": []}
    for f in range(2):
        images = [{"id": 100 * f + i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in range(30)]
        anns = [{"id": 100 * f + i, "image_id": im["id"], "category_id": 0, "bbox": [10, 10, 40, 40], "iscrowd": 0}
                for i, im in enumerate(images)]
        gts.append(write_json(tmp_path / f"val{f}.json", {"images": images, "annotations": anns,
                                                             "categories": [{"id": 0, "name": "a"}]}))
        box = lambda im, s: {"image_id": im["id"], "category_id": 0, "bbox": [11, 11, 40, 40], "score": s}  # noqa
        preds["baseline"].append(write_json(tmp_path / f"b{f}.json", [box(im, 0.9) for im in images[::2]]))
        preds["better"].append(write_json(tmp_path / f"g{f}.json", [box(im, 0.9) for im in images]))
        preds["same"].append(write_json(tmp_path / f"s{f}.json", [box(im, 0.8) for im in images[::2]]))
    s = paired_scores(gts, preds, tmp_path)
    assert s["baseline"]["images"] == 60
    assert interval(s["better"]["boot"] - s["baseline"]["boot"])[0] > 0
    lo, hi = interval(s["same"]["boot"] - s["baseline"]["boot"])
    assert lo <= 0 <= hi


def _solo_search(tmp_path: Path, n_train: int, *flags: str) -> tuple[subprocess.CompletedProcess, dict]:
    """``train_yolo.py --search`` on a toy dataset of ``n_train`` photos (name solo, weights in tmp_path/w)."""
    from coco2yolo.dataset.convert import ConvertOptions, convert
    from coco2yolo.sample import make_sample

    s = make_sample(tmp_path / "s", n_train=n_train, n_test=2, size=96, seed=1)
    convert(s, tmp_path / "ds", ConvertOptions(val_fraction=0.25, seed=0))
    env = {**os.environ, "COCO2YOLO_OFFLINE": "1", "COCO2YOLO_RUNS": str(tmp_path / "runs")}
    r = subprocess.run([sys.executable, "train_yolo.py", "--data", str(tmp_path / "ds" / "data.yaml"), "--model",
                        "yolov5nu.yaml", "--search", *flags, "--batch", "8", "--workers", "0", "--device", "cpu",
                        "--no-plots", "--name", "solo", "--weights-dir", str(tmp_path / "w")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r, env


def test_train_yolo_search_divides_one_budget_and_records_the_decision(tmp_path):
    r, env = _solo_search(tmp_path, 48, "--time", "2m", "--search-min-epochs", "1")
    assert "budget 2 min:" in r.stdout and "the final model what is left" in r.stdout
    assert "search_best is the baseline" in r.stdout or "beats the baseline by" in r.stdout
    side = json.loads((tmp_path / "w" / "solo.json").read_text())
    assert side["search"]["decision"]["kept"] and side["search"]["budget_hours"] == pytest.approx(2 / 60)
    assert side["budget_hours"] < 2 / 60 and side["search"]["baseline_plan"]["candidates"]
    trials = list(csv.DictReader((tmp_path / "runs" / "search" / "solo" / "exp" / "search" / "trials.csv").open()))
    assert trials[0]["role"] == "baseline"
    code = subprocess.run([sys.executable, "train_yolo.py", "--data", str(tmp_path / "ds" / "data.yaml"), "--search"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert code.returncode == 2 and "--search needs --time" in code.stderr


def test_a_search_too_short_to_rank_recipes_is_not_run():
    """The epochs a race trial reaches follow from the plan's measured epoch, scaled to a fold's photos; the budget
    at which it would reach the epochs a run needs inverts the search's own division (race_seconds)."""
    from types import SimpleNamespace

    from coco2yolo.kfold.search import budget_for, race_seconds
    from coco2yolo.kfold.solo import SEARCH_SHARE, trial_reach
    from coco2yolo.training.plan import Candidate

    # the measured 60-minute CPU case: 416 px at 62.9 s an epoch on 539 + 61 photos, 20 minutes of search
    plan = SimpleNamespace(chosen=Candidate(416, 0, 16, seconds_per_epoch=62.9, epochs=37), train_images=539,
                           val_images=61)
    epochs, enough = trial_reach(plan, 1200, 32)
    fold_epoch = 62.9 / (539 + 61 / 3) * (400 + 200 / 3)
    assert epochs == pytest.approx(race_seconds(1200) / fold_epoch) and 2 < epochs < 4  # it ran 3 to 5
    assert race_seconds(budget_for(32 * fold_epoch)) == pytest.approx(32 * fold_epoch)
    assert enough == pytest.approx(budget_for(32 * fold_epoch) / SEARCH_SHARE) and enough > 8 * 3600
    fast = SimpleNamespace(chosen=Candidate(640, 0, 16, seconds_per_epoch=2.0, epochs=500), train_images=539,
                           val_images=61)  # a GPU's epoch
    assert trial_reach(fast, 1200, 32)[0] >= 32
    assert trial_reach(SimpleNamespace(chosen=None, train_images=1, val_images=0), 1200, 32) == (0.0, float("inf"))


def test_train_yolo_search_without_the_budget_for_it_trains_the_plan(tmp_path):
    r, _ = _solo_search(tmp_path, 24, "--time", "12s", "--search-min-epochs", "100000")
    assert "no search: its third of the budget" in r.stdout and "fewer than the 100000" in r.stdout
    assert "The whole budget trains the plan's choice" in r.stdout and "search: trial" not in r.stdout
    side = json.loads((tmp_path / "w" / "solo.json").read_text())
    assert side["search"]["min_epochs"] == 100000 and side["search"]["trial_epochs"] < 100000
    assert side["search"]["skipped"] and side["plan"]["chosen"]  # plain --time's plan, for the whole budget
    measured = [c for c in side["plan"]["candidates"] if c["seconds_per_epoch"]]
    assert measured and all(c["probe_seconds"] == 0.0 for c in measured)  # the first plan's probes, not again
    assert side["budget_hours"] == pytest.approx(12 / 3600) and side["epochs_done"] >= 1
    assert not (tmp_path / "runs" / "search" / "solo" / "exp").exists()


def test_search_auto_takes_a_third_of_the_experiments_budget(sample, tmp_path, capsys):
    exp = _experiment(tmp_path, sample, budget="3h", search="auto")
    code, out, err = run_cli(kfold.main, kfold.get_args_parser(), [exp, "--dry-run", "--devices", "cpu"], capsys)
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if ln.startswith("[search]"))
    assert "budget 60 min" in line and "imgsz, lr0, mosaic" in line and "checked on fold(s) 1" in line
    assert "(the search's 60 min included)" in out
    exp = _experiment(tmp_path, sample, search="auto")
    code, _, err = run_cli(kfold.main, kfold.get_args_parser(), [exp, "--dry-run", "--devices", "cpu"], capsys)
    _one_line(code, err, "search: auto needs a top-level budget")
    exp = _experiment(tmp_path, sample, budget="3h", search="auto",
                      models=[{"name": "a", "model": "yolov5nu.yaml", "time": "auto", "imgsz": 64}])
    code, _, err = run_cli(kfold.main, kfold.get_args_parser(), [exp, "--dry-run", "--devices", "cpu"], capsys)
    _one_line(code, err, "whose time: auto is only shared out after the search")
