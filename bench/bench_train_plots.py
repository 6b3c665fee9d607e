#!/usr/bin/env python
"""What Ultralytics' training plots cost: the same short training with plots on and off, in one run.

    python bench/bench_train_plots.py [--images 300] [--epochs 2] [--imgsz 320] [--reps 2]

TrashNet photos (a seeded subset, converted with a 20% validation split), yolov5nu.yaml from scratch on
the CPU, 1 worker. ``plots=True`` draws labels.jpg (the label statistics), train_batch*.jpg (the first
mosaics), results.png (the curves) and, after the last epoch, the confusion matrix, PR/F1/P/R curves and
val_batch*.jpg. Most of that happens once per run, so the cost is reported in seconds per run and as a
share of the run (fastest run of each, the least disturbed); runs alternate on/off.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, SHARED, need, record


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--reps", type=int, default=2)
    args = p.parse_args()
    trash = need(SHARED / "datasets" / "trashnet" / "train.json")
    work = Path(tempfile.mkdtemp(prefix="bench_plots_"))
    data = json.loads(trash.read_text())
    keep = set(random.Random(0).sample(sorted(im["id"] for im in data["images"]), args.images))
    subset = {**data, "images": [im for im in data["images"] if im["id"] in keep],
              "annotations": [a for a in data["annotations"] if a["image_id"] in keep]}
    (work / "train").symlink_to(trash.parent / "train")
    (work / "subset.json").write_text(json.dumps(subset))
    env_runs = {"COCO2YOLO_RUNS": str(work / "runs"), "COCO2YOLO_OFFLINE": "1"}
    import os

    env = {**os.environ, **env_runs}
    subprocess.run([sys.executable, "-m", "coco2yolo", str(work / "subset.json"), "--out", str(work / "ds"),
                    "--val-fraction", "0.2", "--seed", "0"], check=True, env=env, capture_output=True)
    times: dict[str, list[float]] = {"plots": [], "no plots": []}
    for rep in range(args.reps):
        for plots in ((True, False) if rep % 2 == 0 else (False, True)):
            name = f"{'on' if plots else 'off'}{rep}"
            t = time.perf_counter()
            subprocess.run([sys.executable, str(ROOT / "train_yolo.py"), "--data", str(work / "ds" / "data.yaml"),
                            "--model", "yolov5nu.yaml", "--epochs", str(args.epochs), "--imgsz", str(args.imgsz),
                            "--batch", "16", "--device", "cpu", "--workers", "1", "--name", name, "--weights-dir",
                            str(work / "w"), "--plots" if plots else "--no-plots"], check=True, env=env,
                           capture_output=True)
            times["plots" if plots else "no plots"].append(time.perf_counter() - t)
            print(name, times, flush=True)
    on, off = min(times["plots"]), min(times["no plots"])  # the fastest run of each: least disturbed by other load
    drawn = sorted(f.name for f in (work / "runs" / "train" / "on0").iterdir() if f.suffix in (".png", ".jpg"))
    record("train_plots", {
        "command": f"python bench/bench_train_plots.py --images {args.images} --epochs {args.epochs} "
                   f"--imgsz {args.imgsz} --reps {args.reps}",
        "seconds_per_run_plots": on, "seconds_per_run_no_plots": off, "extra_seconds_per_run": on - off,
        "extra_share_of_run": (on - off) / off, "all": times, "files_drawn": drawn})


if __name__ == "__main__":
    main()
