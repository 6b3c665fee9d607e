#!/usr/bin/env python
"""What a command pays before it does anything: ``ultra.setup()`` in a fresh process, the fonts already installed
(every command after the first) against the fonts missing (matplotlib imported to find them, what every command
paid before setup skipped it).

    python bench/bench_startup.py [--reps 7]

Each rep runs ``python -c "from coco2yolo import ultra; ultra.setup()"`` once each way, alternating, with its own
Ultralytics config folder; the figures are medians of whole processes (interpreter start, torch, torchvision and
Ultralytics imported). A k-fold experiment starts one such process per training and per prediction, and the test
suite a few hundred.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, record

CODE = "from coco2yolo import ultra; ultra.setup()"


def one(config: Path, fonts: bool) -> float:
    """Seconds of one fresh process's setup; ``fonts``: whether they are in ``config`` already."""
    if not fonts:
        shutil.rmtree(config / "Ultralytics", ignore_errors=True)
    env = {**os.environ, "YOLO_CONFIG_DIR": str(config), "COCO2YOLO_OFFLINE": "1"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", CODE], check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args()
    config = Path(tempfile.mkdtemp(prefix="bench_startup_"))
    one(config, fonts=False)  # warm the file cache once
    installed, missing = [], []
    for _ in range(args.reps):
        missing.append(one(config, fonts=False))
        installed.append(one(config, fonts=True))
    shutil.rmtree(config, ignore_errors=True)
    a, b = statistics.median(installed), statistics.median(missing)
    result = {"command": f"python bench/bench_startup.py --reps {args.reps}", "fonts_installed_s": installed,
              "fonts_missing_s": missing, "median_installed_s": a, "median_missing_s": b, "saved_s": b - a,
              "ratio": a / b}
    print(f"setup in a fresh process: {a:.2f} s with the fonts installed, {b:.2f} s without them "
          f"(matplotlib imported): {b - a:.2f} s saved, {a / b:.2f}x the time")
    record("startup", result)


if __name__ == "__main__":
    main()
