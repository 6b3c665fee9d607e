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
    jobs = build(exp, {"oof_gt": steps.oof_gt, "merge": steps.merge, "summary": steps.summary})
    runner = Runner(exp, jobs, devices, shard, shards, args.only)
    if args.dry_run:
        for j in jobs:
            who = "" if runner.owner[j.id] == shard else f" [shard {runner.owner[j.id]}]"
            print(f"[{runner.status(j)}]{who} {j.id}\n    {j.shown(exp, devices[0])}")
        return 0
    make_dirs(exp.out)
    if not os.access(exp.out, os.W_OK):
        raise UserError(f"{args.experiment}: out {exp.out} is not writable")
    write_text(exp.out / "experiment.yaml", exp.path.read_text(encoding="utf-8"))
    runner.run()
    summary = exp.out / "summary.json"
    if summary.exists() and all(runner.done(j) for j in jobs):
        import json

        print("\n" + steps.format_summary(json.loads(summary.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser()))
