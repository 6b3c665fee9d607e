#!/usr/bin/env python
"""What evaluate.py --report costs: time and page size, beside evaluate.py without it, in one run.

    python bench/bench_report.py [--reps 2] [--trashnet-preds bench/out/kfold_trashnet/main/oof/v5n_320_mosaic.json]

1. The competition's train.json (4,883 images, 23,144 boxes; no photos, so the gallery is left out with a
   note) with bench_evaluate.py's 270,000 generated predictions.
2. TrashNet with a trained model's out-of-fold predictions (from ``bench_kfold.py main``; its gt.json points
   at the real photos), so the gallery is drawn.
Both: 1,000 bootstrap resamples; each variant run ``--reps`` times, alternating; the fastest run kept.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_evaluate import generate
from common import OUT, ROOT, SHARED, need, record

from coco2yolo.cocodata import load_dataset


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t


def compare(gt: Path, preds: Path, work: Path, reps: int) -> dict:
    base = [sys.executable, str(ROOT / "evaluate.py"), "--gt", str(gt), str(preds), "--bootstrap", "1000"]
    page = work / f"{gt.stem}_report.html"
    plain, report = [], []
    for r in range(reps):
        for which in (("plain", "report") if r % 2 == 0 else ("report", "plain")):
            if which == "plain":
                plain.append(timed(base))
            else:
                report.append(timed(base + ["--report", str(page)]))
    text = page.read_text()
    return {"seconds_evaluate": min(plain), "seconds_evaluate_with_report": min(report),
            "extra_seconds_for_the_report": min(report) - min(plain), "page_mb": len(text.encode()) / 1e6,
            "gallery": "drawn" if "data:image/jpeg" in text else "left out (no photos)",
            "all_seconds": {"evaluate": plain, "with_report": report}}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--trashnet-preds", default=str(OUT / "kfold_trashnet" / "main" / "oof" / "v5n_320_mosaic.json"))
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_report_"))
    data = load_dataset(need(SHARED / "datasets" / "recycle" / "train.json"))
    dets = generate(data, np.random.default_rng(0))
    preds = work / "recycle_preds.json"
    preds.write_text(json.dumps(dets.to_records()))
    gt = work / "recycle_gt.json"
    gt.write_text(json.dumps(data))
    result = {"command": f"python bench/bench_report.py --reps {args.reps} --trashnet-preds {args.trashnet_preds}",
              "recycle_270k_generated": {"predictions": len(dets), **compare(gt, preds, work, args.reps)}}
    print(json.dumps(result, indent=1), flush=True)
    tp = Path(args.trashnet_preds)
    if tp.exists():
        tgt = tp.parent / "gt.json"
        result["trashnet_trained_model"] = {"predictions": len(json.loads(tp.read_text())),
                                            "images": len(json.loads(tgt.read_text())["images"]),
                                            **compare(tgt, tp, work, args.reps)}
    else:
        result["trashnet_trained_model"] = f"skipped: {tp} not found (run bench/bench_kfold.py main first)"
    record("report", result)


if __name__ == "__main__":
    main()
