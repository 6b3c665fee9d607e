"""The competition's submission CSV: write it, read it as predictions, and check it before upload.

Format: a header ``PredictionString,image_id`` and one row per test image; ``image_id`` is the image's
``file_name`` in test.json and ``PredictionString`` is ``label score xmin ymin xmax ymax`` repeated for
every box (pixels, ``label`` = the original category id), empty for an image without boxes.

    python -m coco2yolo.submission check sub.csv --images test.json

prints one line per problem (every test image present exactly once, labels among the categories,
numbers that parse and are finite, scores in [0, 1], boxes inside their image with positive size)
and exits 2 when there is any, 0 with a summary when there is none.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from typing import Any

import numpy as np

from coco2yolo import cli
from coco2yolo.cocodata import load_dataset
from coco2yolo.errors import short
from coco2yolo.fileio import atomic_path
from coco2yolo.results import (EDGE_TOL, HEADER, Detections, _parse, _rows, prediction_string,  # noqa: F401
                               read_submission)

def write_submission(path: str | os.PathLike, dets: Detections, images: list[dict[str, Any]]) -> None:
    """The competition CSV (PredictionString,image_id = file_name), one row per image, atomically."""
    order = np.lexsort((-dets.score, dets.image_id))
    img = dets.image_id[order]
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for im in sorted(images, key=lambda im: im["id"]):
            a, b = np.searchsorted(img, im["id"]), np.searchsorted(img, im["id"], side="right")
            rows = order[a:b]
            xyxy = dets.xywh[rows].copy()
            xyxy[:, 2:] += xyxy[:, :2]
            w.writerow([prediction_string(dets.category_id[rows], xyxy, dets.score[rows]), im["file_name"]])


def check_submission(path: str | os.PathLike, images_json: str | os.PathLike) -> tuple[list[str], int, int]:
    """Every problem of a submission against its test images (one message each); rows and boxes read."""
    data = load_dataset(images_json)
    by_name = {im["file_name"]: im for im in data["images"]}
    cats = {c["id"] for c in data.get("categories") or []} or None
    rows, problems = _rows(path)
    seen: dict[str, int] = {}
    n_boxes = 0
    for n, pred, name in rows:
        where = f"{path}: line {n}"
        if pred is None:
            problems.append(f"{where}: expected 2 columns ({','.join(HEADER)}), got {short(name)}")
            continue
        if name not in by_name:
            problems.append(f"{where}: image_id {short(name)} is not a file_name of {images_json}")
            continue
        if name in seen:
            problems.append(f"{where}: image_id {name} already appeared on line {seen[name]}")
            continue
        seen[name] = n
        n_boxes += len(_parse(pred, f"{where} ({name})", by_name[name], cats, problems))
    missing = [name for name in by_name if name not in seen]
    if missing and rows:
        problems.append(f"{path}: {len(missing)} of {len(by_name)} test images have no row (first: "
                        f"{', '.join(missing[:5])}); every image needs one, with an empty PredictionString if "
                        "it has no boxes")
    return problems, len(rows), n_boxes


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog="python -m coco2yolo.submission",
                           description="Check a competition submission CSV before upload.")
    sub = p.add_subparsers(dest="action", required=True, parser_class=cli.ArgumentParser)
    c = sub.add_parser("check", help="check a CSV against the test images: one line per problem")
    c.add_argument("csv", help="the submission CSV (PredictionString,image_id)")
    c.add_argument("--images", required=True, help="the test images JSON (file_names, sizes, categories)")
    c.add_argument("--max-lines", type=cli.POSITIVE_INT, default=200, help="problems printed at most (200)")
    return p


def main(args: argparse.Namespace) -> int:
    problems, n_rows, n_boxes = check_submission(args.csv, args.images)
    for line in problems[: args.max_lines]:
        print(line, file=sys.stderr)
    if len(problems) > args.max_lines:
        print(f"{args.csv}: ... and {len(problems) - args.max_lines} more problems", file=sys.stderr)
    if problems:
        return cli.EXIT_USER_ERROR
    print(f"{args.csv}: ok: {n_rows} images, {n_boxes} boxes; every test image once, labels, numbers and boxes valid")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser))
