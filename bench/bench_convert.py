#!/usr/bin/env python
"""Converter speed on the competition's train.json (4,883 images, 23,144 boxes) next to
Ultralytics' convert_coco on the same file, alternated in the same run, after imports (in this process)
and as whole commands (a fresh process each). Target: at most as slow (1.0x).

    python bench/bench_convert.py [--reps 7]

Images are not public: one tiny JPEG, hard-linked 4,883 times, stands in for them (links are still
made, and every file passes the converter's image check, which reads its first and last bytes).
Ours does labels, links, data.yaml, categories.json, a 5-fold split (fold 0) and the split
JSONs; convert_coco writes labels only. Also timed: the same with --clean, and (the ablation) ours with
the links made after the labels rather than in a thread beside them.
Where writing is slow and uneven (write-back stalls on a shared disk), ``TMPDIR=/dev/shm`` times the
converters' own work on tmpfs. Every run starts after ``sync``, so none pays for the write-back of the run
before it (the other converter's, as the order alternates).
"""

import argparse
import os
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import SHARED, need, record

from coco2yolo import ultra

ultra.setup()
from ultralytics.data.converter import convert_coco  # noqa: E402

from coco2yolo.dataset.clean import CleanConfig  # noqa: E402
from coco2yolo.dataset import convert as convert_module  # noqa: E402
from coco2yolo.dataset.convert import ConvertOptions, convert  # noqa: E402


CONVERT_COCO = ("import sys; from ultralytics.data.converter import convert_coco; "
                "convert_coco(labels_dir=sys.argv[1], save_dir=sys.argv[2], use_segments=False, cls91to80=False)")


def whole_commands(src: Path, work: Path, reps: int) -> dict:
    """The same two conversions as whole commands (a fresh process each: imports included), alternated."""
    import subprocess
    import sys

    from common import ROOT

    env = {**os.environ, "COCO2YOLO_OFFLINE": "1"}
    cmds = {"ours": [sys.executable, "-m", "coco2yolo", str(src), "--out", None, "--images", str(work / "img"),
                     "--folds", "5", "--fold", "0", "--seed", "0"],
            "convert_coco": [sys.executable, "-c", CONVERT_COCO, str(work / "coco"), None]}
    times = {k: [] for k in cmds}
    for rep in range(reps):
        for name in cmds if rep % 2 else reversed(list(cmds)):
            out = work / f"whole_{name}_{rep}"
            cmd = [str(out) if c is None else c for c in cmds[name]]
            os.sync()
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, env=env)
            times[name].append(time.perf_counter() - t)
            shutil.rmtree(out, ignore_errors=True)
    return times


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args()
    src = need(SHARED / "datasets" / "recycle" / "train.json")
    work = Path(tempfile.mkdtemp(prefix="bench_convert_"))
    data = json.loads(src.read_text())
    import cv2
    import numpy as np

    one = work / "one.jpg"  # a real JPEG of the photos' size (1024 px, uniform: small), hard-linked: the converter checks every photo
    cv2.imwrite(str(one), np.zeros((1024, 1024, 3), np.uint8))
    for im in data["images"]:
        f = work / "img" / im["file_name"]
        f.parent.mkdir(parents=True, exist_ok=True)
        os.link(one, f)
    (work / "coco").mkdir()
    (work / "coco" / "train.json").symlink_to(src)
    times = {"ours": [], "ours_clean": [], "convert_coco": [], "ours_links_after_labels": []}
    for rep in range(args.reps):
        for name in list(times) if rep % 2 else reversed(list(times)):
            out = work / f"{name}_{rep}"
            os.sync()  # each run starts with nothing of the one before left to write back (it is timed alone)
            t = time.perf_counter()
            if name == "convert_coco":
                convert_coco(labels_dir=str(work / "coco"), save_dir=str(out), use_segments=False, cls91to80=False)
            else:
                convert_module.LINKS_IN_THREAD = name != "ours_links_after_labels"
                convert(src, out, ConvertOptions(images_root=work / "img", folds=5, fold=0, seed=0,
                                                 clean=CleanConfig() if name == "ours_clean" else None))
            times[name].append(time.perf_counter() - t)
            shutil.rmtree(out, ignore_errors=True)
    whole = whole_commands(src, work, args.reps)
    shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_whole = {k: statistics.median(v) for k, v in whole.items()}
    record("convert", {
        "command": ("TMPDIR=%s " % os.environ["TMPDIR"] if os.environ.get("TMPDIR") else "")
                   + "python bench/bench_convert.py --reps %d" % args.reps,
        "seconds_median": {k: round(v, 3) for k, v in med.items()},
        "seconds_all": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "ratio_ours_to_convert_coco": round(med["ours"] / med["convert_coco"], 2),
        "ratio_ours_clean_to_convert_coco": round(med["ours_clean"] / med["convert_coco"], 2),
        "ratio_ours_to_itself_links_after_labels": round(med["ours"] / med["ours_links_after_labels"], 2),
        "whole_commands_seconds_median": {k: round(v, 3) for k, v in med_whole.items()},
        "whole_commands_seconds_all": {k: [round(x, 3) for x in v] for k, v in whole.items()},
        "whole_commands_ratio": round(med_whole["ours"] / med_whole["convert_coco"], 2),
        "target": "ours at most as slow as convert_coco (1.0x), after imports and as whole commands",
    })


if __name__ == "__main__":
    main()
