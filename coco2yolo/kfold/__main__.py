"""``python -m coco2yolo.kfold EXPERIMENT.yaml [--devices 0,1,2,3] [--shard I/N] [--only STEP] [--dry-run]``"""

from __future__ import annotations

import argparse
import os
import sys

from coco2yolo import cli
from coco2yolo.errors import UserError
from coco2yolo.kfold.plan import STEPS


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog="python -m coco2yolo.kfold",
                           description="Run a k-fold experiment: convert, train every model on every fold, predict "
                                       "out of fold and on test, score, tune the fusion cross-fitted, submit.")
    p.add_argument("experiment", help="the experiment file (see coco2yolo/cfg/experiment.yaml)")
    p.add_argument("--devices", default=None, help="devices to run training and prediction on, one job per device "
                   "at once: 0,1,2,3 or cpu (default: the file's 'devices', else GPU 0 if there is one, else cpu)")
    p.add_argument("--shard", default="0/1", metavar="I/N",
                   help="run shard I of N (I from 0 to N-1): a deterministic 1/N of the jobs, for N machines "
                        "sharing the output folder (a SLURM array, a Kubernetes indexed Job)")
    p.add_argument("--only", choices=STEPS, default=None, help="run only this step's jobs (their inputs must be done)")
    p.add_argument("--dry-run", action="store_true", help="print the plan: every command and whether it is done")
    return p


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UserError(f"--shard must be I/N with 0 <= I < N, got {text!r}") from None
    if not 0 <= i < n:
        raise UserError(f"--shard must be I/N with 0 <= I < N, got {text!r}")
    return i, n


def _devices(text: str | None, default: list[str] | None) -> list[str]:
    from coco2yolo import ultra

    if text is None and default is not None:
        devices = default
    elif text is None:
        import torch

        devices = ["0"] if torch.cuda.is_available() else ["cpu"]
    else:
        devices = [d.strip() for d in text.split(",") if d.strip()]
    for d in devices:
        ultra.check_device(d)
    if "cpu" in devices and len(devices) > 1:
        raise UserError(f"--devices: cpu cannot be mixed with GPUs, got {','.join(devices)}")
    return devices


def main(args: argparse.Namespace) -> int:
    from coco2yolo import ultra
    from coco2yolo.fileio import guard_outputs, make_dirs, write_text
    from coco2yolo.kfold import steps
    from coco2yolo.kfold.estimate import Estimator, fit, plan_models
    from coco2yolo.kfold.experiment import load_experiment
    from coco2yolo.kfold.plan import build
    from coco2yolo.kfold.runner import Runner

    ultra.setup()
    shard, shards = _shard(args.shard)
    exp = load_experiment(args.experiment)
    devices = _devices(args.devices, exp.devices)
    for what, path in (("train", exp.train), ("test", exp.test)):
        if path is not None and not path.is_file():
            raise UserError(f"{args.experiment}: {what} {path} not found")
    guard_outputs({"out": exp.out}, {"train": exp.train, "test": exp.test, "images": exp.images,
                                     "the experiment file": exp.path}, folders={"out"})
    internal = {"oof_gt": steps.oof_gt, "merge": steps.merge, "summary": steps.summary}
    if not args.dry_run:
        make_dirs(exp.out)
        if not os.access(exp.out, os.W_OK):
            raise UserError(f"{args.experiment}: out {exp.out} is not writable")
        text = exp.path.read_text(encoding="utf-8")
        if exp.search is not None:  # the copy never holds the storage's password
            from coco2yolo.training.storage import scrub

            text = scrub(text, exp.search.storage)
        write_text(exp.out / "experiment.yaml", text)
    if exp.search is not None and args.only in (None, "search", "convert") and not args.dry_run:
        _run_search(exp, devices, build(exp, internal), shard, shards, args.only)
        if args.only == "search":
            return 0
    estimator = Estimator(exp, devices[0], sys.stdout)
    jobs, estimates, times = fit(exp, lambda t: build(exp, internal, t), estimator)
    if plan_models(exp, times, estimator, sys.stdout):  # timed entries' open settings chosen: the same jobs, planned
        jobs = build(exp, internal, times)
        estimates = estimator.all(jobs)
    runner = Runner(exp, jobs, devices, shard, shards, args.only if args.only != "search" else None,
                    estimates=estimates, learn=estimator)
    if args.dry_run:
        _print_plan(exp, jobs, runner, estimates, times, devices, shard)
        return 0
    runner.run()
    summary = exp.out / "summary.json"
    if summary.exists() and all(runner.done(j) for j in jobs):
        import json

        print("\n" + steps.format_summary(json.loads(summary.read_text())))
    return 0


def _run_search(exp, devices: list[str], jobs: list, shard: int, shards: int, only: str | None) -> None:
    """The recipe search, before any training: its fold converted first, then the trials (every shard takes
    part: each asks the shared study for its own trials)."""
    from coco2yolo.kfold.runner import Runner
    from coco2yolo.kfold.experiment import best_entry
    from coco2yolo.kfold.search import SearchRun

    s = exp.search
    folds = {s.fold, *((s.fold + 1 + k) % exp.folds for k in range(s.confirm_folds))}  # the race's and the check's
    convert = [j for j in jobs if j.id in {f"convert/fold{f}" for f in folds}]
    Runner(exp, convert, devices, 0, 1).run()
    if only == "convert":
        return
    if best_entry(exp) is not None and only != "search" and _search_done(exp):
        print(f"skip search (done: {exp.out / 'search' / 'best.yaml'})")
        return
    best = SearchRun(exp, devices).run()
    d = best["search"]
    if d["beats_baseline"]:
        print(f"search: {d['kept']} beats the baseline by {d['difference']:+.4f} [{d['ci95'][0]:+.4f}, "
              f"{d['ci95'][1]:+.4f}] mAP50 on {d['check_images']} photos no race trial saw: it trains as search_best ("
              + " ".join(f"{k}={v}" for k, v in best.items() if k in exp.search.space) + f"); {exp.out / 'search'}")
    else:
        shown = (f" (the best leader: {d['difference']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}])"
                 if d.get("ci95") else "")
        where = (f" on {d['check_images']} photos no race trial saw" if d.get("check_images") else
                 f" ({d.get('note', 'no check')})")
        print(f"search: no trial beats the baseline beyond noise{where}{shown}: search_best is the baseline, the base "
              f"entry as given; {exp.out / 'search'}")


def _search_done(exp) -> bool:
    from coco2yolo.kfold.search import SearchRun

    run = SearchRun(exp, ["cpu"])
    return run.done()


def _print_plan(exp, jobs, runner, estimates, times, devices, shard) -> None:
    from coco2yolo import cli
    from coco2yolo.kfold.estimate import describe

    if exp.search is not None:
        s = exp.search
        budget = f", budget {cli.format_hours(s.budget_hours)}" if s.budget_hours else ""
        from coco2yolo.kfold.search import trial_seconds

        r = trial_seconds(s)
        each = f", {cli.format_hours(r / 3600)} a trial" if r else ""
        checks = ", ".join(str((s.fold + 1 + k) % exp.folds) for k in range(s.confirm_folds))
        print(f"[search] the baseline ({s.base}) and up to {s.trials - 1} trials over {', '.join(s.space)} on fold "
              f"{s.fold} ({s.pruner}{budget}{each}); the best {s.leaders} and the baseline checked on fold(s) {checks}: "
              f"search_best is the baseline unless a trial beats it beyond noise"
              + ("" if any(j.step == "train" for j in jobs) else
                 " (no models are listed: training, prediction and the submission are planned from the winner)"))
    for j in jobs:
        who = "" if runner.owner[j.id] == shard else f" [shard {runner.owner[j.id]}]"
        print(f"[{runner.status(j)}]{who} {j.id}  {describe(estimates[j.id])}\n    {j.shown(exp, devices[0])}")
    spent = sum(e.seconds for e in estimates.values())
    search = (exp.search.budget_hours or 0) if exp.search is not None else 0
    line = f"estimated device time: {cli.format_hours(spent / 3600 + search)}"
    if search:
        line += f" (the search's {cli.format_hours(search)} included)"
    if exp.budget_hours:
        line += f" of a budget of {cli.format_hours(exp.budget_hours)}"
    if times:
        line += "; time: auto -> " + ", ".join(f"{k} {cli.format_hours(v)} a fold" for k, v in times.items())
    print(line)


if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser))
