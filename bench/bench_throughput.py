#!/usr/bin/env python
"""What makes a training epoch cheaper on this machine: seconds per epoch of train_yolo.py variants.

Real photos (TrashNet, the 539/61 split of bench/bench_budget.py's 600-photo subset), the shared COCO YOLOv5n,
3 epochs each; the figure is the mean of epochs 2 and 3 (epoch 1 carries the dataloader's start), from the
run's results.csv. The baseline (today's defaults at this size) runs first and again last, in the same
session, and every ratio is against the mean of those two runs.

Variants that change nothing but speed are defaults candidates (``workers``, ``cache``); variants that change
the training itself (``rect``, ``freeze``, ``imgsz``) are recipe choices for the search (their speed is
recorded here; their accuracy is the search's to judge).

    python bench/bench_throughput.py [--imgsz 320] [--device cpu] [--epochs 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time

from common import OUT, ROOT, SHARED, need, record

WORK = OUT / "budget"


def run_variant(name: str, extra: list[str], args: argparse.Namespace) -> dict:
    data = WORK / "ds_final" / "data.yaml"
    need(data)
    log = WORK / "logs" / f"throughput_{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "train_yolo.py", "--data", str(data), "--weights", str(SHARED / "weights" / "yolov5n.pt"),
           "--epochs", str(args.epochs), "--imgsz", str(args.imgsz), "--device", args.device, "--seed", "0",
           "--name", f"throughput_{name}", "--weights-dir", str(WORK / "throughput_weights"), "--exist-ok",
           "--no-plots", *extra]
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
                             env={**__import__("os").environ, "COCO2YOLO_RUNS": str(WORK / "runs")})
    wall = time.perf_counter() - t0
    if rc != 0:
        sys.exit(f"{name} failed ({rc}); see {log}")
    with open(WORK / "runs" / "train" / f"throughput_{name}" / "results.csv", newline="") as fh:
        times = [float(r["time"]) for r in csv.DictReader(fh)]
    per_epoch = [b - a for a, b in zip([0.0] + times, times)]
    steady = per_epoch[1:] or per_epoch
    return {"extra": extra, "epoch_seconds": per_epoch, "steady_seconds_per_epoch": sum(steady) / len(steady),
            "command_seconds": wall}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--only", nargs="+", default=None, help="run only these variants (the baselines always run)")
    args = p.parse_args()
    variants = {
        "baseline": [],                            # today's defaults: workers 8, no cache, no rect
        "workers0": ["--workers", "0"],
        "workers2": ["--workers", "2"],
        "workers4": ["--workers", "4"],
        "cache_ram": ["--cache", "ram"],
        "cache_ram_workers2": ["--cache", "ram", "--workers", "2"],
        "rect": ["--set", "rect=true"],
        "freeze10": ["--set", "freeze=10"],
        "baseline_again": [],
    }
    result = {"command": "python bench/bench_throughput.py " + " ".join(sys.argv[1:]), "settings": vars(args),
              "variants": {}}
    if args.only:
        variants = {k: v for k, v in variants.items() if k in args.only or k.startswith("baseline")}
    for name, extra in variants.items():
        result["variants"][name] = run_variant(name, extra, args)
        print(name, json.dumps(result["variants"][name]), flush=True)
    base = (result["variants"]["baseline"]["steady_seconds_per_epoch"]
            + result["variants"]["baseline_again"]["steady_seconds_per_epoch"]) / 2
    result["baseline_seconds_per_epoch"] = base
    for v in result["variants"].values():
        v["speedup_vs_baseline"] = base / v["steady_seconds_per_epoch"]
    record(f"throughput_{args.device}_{args.imgsz}" + ("_" + "_".join(args.only) if args.only else ""), result)


if __name__ == "__main__":
    main()
