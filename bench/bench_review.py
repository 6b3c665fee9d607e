#!/usr/bin/env python
"""What the review stage costs at the competition's scale: finding issues, the page, and applying every decision.

    python bench/bench_review.py [--reps 2]

The competition's train.json (4,883 images, 23,144 boxes; no photos, so the page leaves the pictures out) with
bench_evaluate.py's 270,000 generated predictions standing for out-of-fold ones. Each command run as a user runs
it (a fresh process, reading and writing files), ``--reps`` times, the fastest kept:

- ``python -m coco2yolo.label_issues`` on them, every issue kept (``--top`` above their number);
- ``coco2yolo review ISSUES --gt GT --out PAGE`` with every issue on the page;
- ``coco2yolo review apply --accept-top 1`` (the baseline: reading, checking and writing the dataset, one change)
  beside ``--accept-score 0`` (every issue accepted), then the same decisions applied to the fixed file again
  (nothing may change). The ratio of the last two to the baseline is what the decisions themselves cost.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_evaluate import generate
from common import OUT, ROOT, SHARED, need, record

from coco2yolo.cocodata import load_dataset


def timed(cmd: list, reps: int) -> tuple[float, str]:
    """The fastest of ``reps`` runs of ``cmd`` (seconds) and its output."""
    best, out = float("inf"), ""
    for _ in range(reps):
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, *map(str, cmd)], check=True, capture_output=True, text=True, cwd=ROOT)
        best, out = min(best, time.perf_counter() - t), proc.stdout
    return best, out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=2)
    args = p.parse_args()
    gt = need(SHARED / "datasets" / "recycle" / "train.json")
    work = OUT / "review_scale"
    work.mkdir(parents=True, exist_ok=True)
    data = load_dataset(gt)
    preds = work / "preds.json"
    if not preds.exists():
        preds.write_text(json.dumps(generate(data, np.random.default_rng(0)).to_records()))
    issues, page, fixed, again = (work / n for n in ("issues.json", "review.html", "fixed.json", "again.json"))
    for f in (fixed, again, work / "one.json"):
        f.unlink(missing_ok=True)
    t_find, out_find = timed(["-m", "coco2yolo.label_issues", "--gt", gt, "--preds", preds, "--out", issues,
                              "--top", "10000000"], args.reps)
    n_issues = len(json.loads(issues.read_text()))
    t_page, _ = timed(["-m", "coco2yolo", "review", issues, "--gt", gt, "--out", page], args.reps)
    apply = ["-m", "coco2yolo", "review", "apply", "--issues", issues]
    t_one, _ = timed([*apply, "--gt", gt, "--accept-top", "1", "--out", work / "one.json"], args.reps)
    t_all, out_all = timed([*apply, "--gt", gt, "--accept-score", "0", "--out", fixed], args.reps)
    t_again, out_again = timed([*apply, "--gt", fixed, "--accept-score", "0", "--out", again], args.reps)
    changes = int(re.search(r": (\d+) changes", out_all).group(1))
    assert re.search(r": 0 changes", out_again), out_again  # applying again changes nothing
    record("review_scale", {
        "command": f"python bench/bench_review.py --reps {args.reps}",
        "images": len(data["images"]), "boxes": len(data["annotations"]),
        "predictions": 270_000, "issues": n_issues, "find_line": out_find.strip().splitlines()[0],
        "seconds": {"label_issues": round(t_find, 2), "review_page": round(t_page, 2),
                    "apply_one (baseline)": round(t_one, 2), "apply_all": round(t_all, 2),
                    "apply_all_again": round(t_again, 2)},
        "page_mb": round(page.stat().st_size / 1e6, 2), "changes_applied": changes,
        "apply_all_over_baseline": round(t_all / t_one, 2), "apply_again_over_baseline": round(t_again / t_one, 2)})


if __name__ == "__main__":
    main()
