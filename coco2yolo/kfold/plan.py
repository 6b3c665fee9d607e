"""The jobs of an experiment: each a command a user could type, with its inputs, outputs and dependencies.

Layout under ``out``::

    data/fold{f}/            the converter's output for fold f (split.json, val.json, data.yaml, ...)
    runs/                    Ultralytics' runs (COCO2YOLO_RUNS for every command)
    weights/NAME_fold{f}.pt  each model trained on every fold but f (+ sidecar)
    preds/NAME_fold{f}_{val,test}.json   predictions of fold f's validation images and of the test images
    oof/gt.json oof/folds.json           the whole cleaned training set, and the fold of every image
    oof/NAME.json            NAME's out-of-fold predictions over every training image (folds merged)
    oof/ensemble.json        the cross-fitted fusion of the models' out-of-fold predictions
    metrics/oof.json         evaluate.py on the out-of-fold predictions
    ensemble_setting.json    the fusion searched on all folds (applied to test), with the cross-fit report
    test/NAME.json           NAME's test predictions: its K fold models fused
    ensemble_test.json submission.csv    the final fusion of the test predictions
    summary.json commands.log logs/      what it measured; every command run; each job's output
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from coco2yolo.commands import script_command
from coco2yolo.kfold.experiment import SEARCH_BEST, Experiment, Model, best_entry, check_entry

STEPS = ("convert", "search", "train", "predict", "merge", "score", "fuse", "test", "summary")
DEVICE = "{device}"  # placeholder in a command, filled with the device(s) a job runs on


@dataclass
class Job:
    id: str                                  # e.g. "train/v5l/fold0"
    step: str                                # one of STEPS
    argv: list[str] | None                   # the command; None for an internal step
    inputs: list[Path]                       # files whose content the result depends on
    outputs: list[Path]
    deps: list[str] = field(default_factory=list)
    device: bool = False                     # runs on a device slot (training, prediction)
    devices: list[str] | None = None         # the devices a DDP model needs together
    internal: Callable[[], None] | None = None
    note: str = ""                           # what an internal step does, for the log and --dry-run

    def shown(self, exp: Experiment, device: str | None = None) -> str:
        """The command as a user would type it (internal steps: the kfold invocation that runs them)."""
        if self.argv is None:
            return (f"python -m coco2yolo.kfold {shlex.quote(str(exp.path))} --only {self.step}   # {self.note}")
        argv = [device if (a == DEVICE and device) else a for a in self.argv]
        argv[0] = "python" if argv[0] == sys.executable else argv[0]
        env = f"COCO2YOLO_RUNS={shlex.quote(str(exp.out / 'runs'))} " if self.step in ("train",) else ""
        return env + shlex.join(argv)


def _files(exp: Experiment) -> dict[str, Path]:
    o = exp.out
    return {"gt": o / "oof" / "gt.json", "folds": o / "oof" / "folds.json", "fused_oof": o / "oof" / "ensemble.json",
            "metrics": o / "metrics" / "oof.json", "setting": o / "ensemble_setting.json",
            "ens_test": o / "ensemble_test.json", "submission": o / "submission.csv", "summary": o / "summary.json"}


def models_of(exp: Experiment) -> list[Model]:
    """The experiment's models, and the recipe search's winner once the search has written it."""
    models = list(exp.models)
    if exp.search is not None:
        entry = best_entry(exp)
        if entry is not None:
            opts = {k: v for k, v in entry.items() if k != "name"}
            args, devices = check_entry(opts, f"{exp.out / 'search' / 'best.yaml'}")
            models.append(Model(SEARCH_BEST, args, devices, opts))
    return models


def with_time(args: list[str], hours: float | None) -> list[str]:
    """``args`` with ``--time`` set to ``hours`` (None: as they are)."""
    if hours is None:
        return list(args)
    out = list(args)
    if "--time" in out:
        out[out.index("--time") + 1] = f"{hours:.6f}"
        return out
    return out + ["--time", f"{hours:.6f}"]


def time_of(args: list[str]) -> float | None:
    """The ``--time`` budget in ``args``, in hours (None: epochs decide)."""
    from coco2yolo import cli

    return cli.duration_hours(args[args.index("--time") + 1]) if "--time" in args else None


def refit_args(m: Model, exp: Experiment, hours: float | None) -> list[str]:
    """A fold model's flags for the refit on every image: no validation (there is no held-out image), and a time
    budget scaled by K/(K-1) (the epochs of a fold model on K/(K-1) times the images); epochs as they are."""
    args = with_time(m.train_args, hours)
    fold_time = time_of(args)
    args = with_time(args, fold_time * exp.folds / (exp.folds - 1) if fold_time else None)
    return [a for a in args if a not in ("--val", "--no-val")] + ["--no-val"]


def _without_folds(args: list[str]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("--folds", "--fold"):
            skip = True
        else:
            out.append(a)
    return out


def build(exp: Experiment, internal: dict[str, Callable[..., None]],
          times: dict[str, float] | None = None) -> list[Job]:
    """Every job of ``exp`` in dependency order. ``internal``: the functions of the internal steps
    (``oof_gt``, ``merge``, ``summary``), called with this experiment and the job's paths. ``times``: the
    training budget (hours) of each ``time: auto`` model's fold jobs, from the experiment's budget."""
    o, K, f_ = exp.out, exp.folds, _files(exp)
    times = times or {}
    models = models_of(exp)
    jobs: list[Job] = []
    images = ["--images", str(exp.images)] if exp.images else []
    for f in range(K):
        d = o / "data" / f"fold{f}"
        jobs.append(Job(f"convert/fold{f}", "convert",
                        [*script_command("convert"), str(exp.train), "--out", str(d), *exp.convert_args,
                         "--fold", str(f), *images],
                        [exp.train], [d / "data.yaml", d / "val.json", d / "split.json", d / "categories.json"]))
    jobs.append(Job("merge/gt", "merge", None, [o / "data" / f"fold{f}" / "val.json" for f in range(K)]
                    + [o / "data" / "fold0" / "split.json"], [f_["gt"], f_["folds"]],
                    [f"convert/fold{f}" for f in range(K)],
                    internal=lambda: internal["oof_gt"](exp), note="the folds' validation sets -> oof/gt.json"))
    if not models:  # a search with no models listed, before it is done: the rest is planned from its winner
        return jobs
    test_files: dict[str, list[Path]] = {}
    for m in models:
        m_args = with_time(m.train_args, times.get(m.name))
        oof_parts = []
        test_files[m.name] = []
        for f in range(K):
            d = o / "data" / f"fold{f}"
            run_name = f"{m.name}_fold{f}"
            w = o / "weights" / f"{run_name}.pt"
            model_inputs = [Path(v) for k, v in m.options.items()  # starting weights, pseudo-labels
                            if k in ("model", "weights", "pseudo_labels", "pseudo_images") and isinstance(v, str)
                            and Path(v).suffix in (".pt", ".json", ".csv")]
            jobs.append(Job(f"train/{m.name}/fold{f}", "train",
                            [*script_command("train"), "--data", str(d / "data.yaml"), *m_args, "--name",
                             run_name, "--weights-dir", str(o / "weights"), "--exist-ok", "--device", DEVICE],
                            [d / "data.yaml", d / "categories.json", d / "labels", *model_inputs],
                            [w, w.with_suffix(".json")], [f"convert/fold{f}"], device=True, devices=m.devices))
            val_pred = o / "preds" / f"{run_name}_val.json"
            jobs.append(Job(f"predict/{m.name}/fold{f}/val", "predict",
                            [*script_command("predict"), "--weights", str(w), "--images", str(d / "val.json"),
                             "--out", str(val_pred), *exp.predict_args, "--device", DEVICE],
                            [w, d / "val.json"], [val_pred], [f"train/{m.name}/fold{f}"], device=True))
            oof_parts.append(val_pred)
            if exp.test is not None:
                test_pred = o / "preds" / f"{run_name}_test.json"
                jobs.append(Job(f"predict/{m.name}/fold{f}/test", "predict",
                                [*script_command("predict"), "--weights", str(w), "--images", str(exp.test),
                                 "--out", str(test_pred), *exp.predict_args, "--device", DEVICE],
                                [w, exp.test], [test_pred], [f"train/{m.name}/fold{f}"], device=True))
                test_files[m.name].append(test_pred)
        oof = o / "oof" / f"{m.name}.json"
        jobs.append(Job(f"merge/{m.name}", "merge", None, oof_parts + [f_["gt"]], [oof],
                        [f"predict/{m.name}/fold{f}/val" for f in range(K)] + ["merge/gt"],
                        internal=(lambda name=m.name, parts=tuple(oof_parts), out=oof:
                                  internal["merge"](exp, list(parts), out)),
                        note=f"{m.name}'s {K} out-of-fold files -> oof/{m.name}.json (every training image once)"))
    oof_files = [o / "oof" / f"{m.name}.json" for m in models]
    merges = [f"merge/{m.name}" for m in models]
    jobs.append(Job("score/oof", "score",
                    [*script_command("evaluate"), "--gt", str(f_["gt"]), *map(str, oof_files),
                     "--json", str(f_["metrics"]), "--bootstrap", str(exp.bootstrap)],
                    [f_["gt"], *oof_files], [f_["metrics"]], merges))
    if len(models) > 1:
        jobs.append(Job("fuse/crossfit", "fuse",
                        [*script_command("fuse"), *map(str, oof_files), "--tune", str(f_["gt"]), "--crossfit",
                         str(f_["folds"]), "--out", str(f_["fused_oof"]), "--save-setting", str(f_["setting"]),
                         "--bootstrap", str(exp.bootstrap), "--quiet", *exp.fuse_args],
                        [f_["gt"], f_["folds"], *oof_files], [f_["fused_oof"], f_["setting"]], merges + ["merge/gt"]))
    if exp.test is not None:
        refit: dict[str, tuple[Path, str]] = {}
        if exp.final in ("refit", "both"):
            d_all = o / "data" / "all"
            jobs.append(Job("convert/all", "convert",
                            [*script_command("convert"), str(exp.train), "--out", str(d_all),
                             *_without_folds(exp.convert_args), "--all-train", *images],
                            [exp.train], [d_all / "data.yaml", d_all / "categories.json"]))
            for m in models:
                run_name = f"{m.name}_all"
                w = o / "weights" / f"{run_name}.pt"
                model_inputs = [Path(v) for k, v in m.options.items()
                                if k in ("model", "weights", "pseudo_labels", "pseudo_images") and isinstance(v, str)
                                and Path(v).suffix in (".pt", ".json", ".csv")]
                jobs.append(Job(f"train/{m.name}/all", "train",
                                [*script_command("train"), "--data", str(d_all / "data.yaml"),
                                 *refit_args(m, exp, times.get(m.name)), "--name", run_name, "--weights-dir",
                                 str(o / "weights"), "--exist-ok", "--device", DEVICE],
                                [d_all / "data.yaml", d_all / "categories.json", d_all / "labels", *model_inputs],
                                [w, w.with_suffix(".json")], ["convert/all"], device=True, devices=m.devices))
                pred = o / "preds" / f"{run_name}_test.json"
                jobs.append(Job(f"predict/{m.name}/all/test", "predict",
                                [*script_command("predict"), "--weights", str(w), "--images", str(exp.test),
                                 "--out", str(pred), *exp.predict_args, "--device", DEVICE],
                                [w, exp.test], [pred], [f"train/{m.name}/all"], device=True))
                refit[m.name] = (pred, f"predict/{m.name}/all/test")
        merged_test = []
        for m in models:
            out = o / "test" / f"{m.name}.json"
            merged_test.append(out)
            folds = ([], []) if exp.final == "refit" else (
                test_files[m.name], [f"predict/{m.name}/fold{f}/test" for f in range(K)])
            parts, deps = list(folds[0]), list(folds[1])
            if m.name in refit:
                parts.append(refit[m.name][0])
                deps.append(refit[m.name][1])
            if len(parts) == 1:  # the refit alone: its predictions as they are (NMS at IoU 1 suppresses nothing)
                how = ["--method", "nms", "--iou-thr", "1"]
            else:
                # the K fold models (and the refit): WBF at the prediction NMS IoU, so that identical models give
                # back their own predictions (the scale the fusion was tuned on)
                how = ["--method", "wbf", "--iou-thr", f"{exp.predict_iou:g}", "--conf-type", "avg"]
            jobs.append(Job(f"test/{m.name}", "test",
                            [*script_command("fuse"), *map(str, parts), "--images", str(exp.test), *how,
                             "--out", str(out)], [*parts, exp.test], [out], deps))
        final = [*script_command("fuse"), *map(str, merged_test), "--images", str(exp.test), "--out",
                 str(f_["ens_test"]), "--submission", str(f_["submission"])]
        if len(models) > 1:
            final += ["--setting", str(f_["setting"])]
            deps, inputs = [f"test/{m.name}" for m in models] + ["fuse/crossfit"], [*merged_test, f_["setting"]]
        else:  # one model: its test predictions as they are (NMS at IoU 1 suppresses nothing)
            final += ["--method", "nms", "--iou-thr", "1"]
            deps, inputs = [f"test/{models[0].name}"], merged_test
        jobs.append(Job("test/ensemble", "test", final, [*inputs, exp.test], [f_["ens_test"], f_["submission"]], deps))
    summary_deps = ["score/oof"] + (["fuse/crossfit"] if len(models) > 1 else []) + \
        (["test/ensemble"] if exp.test is not None else [])
    jobs.append(Job("summary", "summary", None, [f_["metrics"]] + ([f_["setting"]] if len(models) > 1 else []),
                    [f_["summary"]], summary_deps, internal=lambda: internal["summary"](exp),
                    note="metrics, the cross-fitted gain and the compute spent -> summary.json"))
    return jobs


def shard_of(jobs: list[Job], shards: int) -> dict[str, int]:
    """A deterministic 1/N of the jobs for each shard: within each step, the j-th job goes to shard j mod N
    (so the expensive steps spread evenly)."""
    out, count = {}, {s: 0 for s in STEPS}
    for j in jobs:
        out[j.id] = count[j.step] % shards
        count[j.step] += 1
    return out


def env_for(exp: Experiment) -> dict[str, str]:
    """The environment every command runs with: Ultralytics' runs inside the experiment folder."""
    return {**os.environ, "COCO2YOLO_RUNS": str(exp.out.absolute() / "runs")}
