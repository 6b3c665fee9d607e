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
import math
import os
import re
import sys
from typing import Any

import numpy as np

from coco2yolo import cli
from coco2yolo.cocodata import describe_ids, load_dataset
from coco2yolo.errors import UserError, short
from coco2yolo.fileio import atomic_path, open_regular
from coco2yolo.results import Detections

HEADER = ("PredictionString", "image_id")
EDGE_TOL = 1e-3  # px a box may pass the image border by (float rounding) before it counts as outside


def prediction_string(cat_ids: np.ndarray, xyxy: np.ndarray, scores: np.ndarray) -> str:
    """The competition's PredictionString: 'label score xmin ymin xmax ymax ...' (pixels, full precision)."""
    return " ".join(f"{c} {s!r} {x1!r} {y1!r} {x2!r} {y2!r}"
                    for c, (x1, y1, x2, y2), s in zip(cat_ids.tolist(), xyxy.tolist(), scores.tolist()))


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


def _rows(path: str | os.PathLike) -> tuple[list[tuple[int, str, str]], list[str]]:
    """(line number, PredictionString, image_id) rows and the header problems, reading any column order."""
    try:
        with open_regular(path, "submission", "r", encoding="utf-8", newline="") as fh:
            # a row is as long as its boxes: at most the file (csv's default limit, 131,072 characters, is
            # 1,400 boxes at full precision)
            csv.field_size_limit(max(csv.field_size_limit(), os.fstat(fh.fileno()).st_size + 1))
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                return [], [f"{path}: empty file; expected the header {','.join(HEADER)}"]
            header = [h.strip().lstrip("\ufeff") for h in header]
            if not set(HEADER) <= set(header):
                return [], [f"{path}: line 1: header {short(','.join(header))}; expected {','.join(HEADER)}"]
            ip, ii = header.index("PredictionString"), header.index("image_id")
            rows = []
            for n, row in enumerate(reader, start=2):
                if len(row) != len(header):
                    rows.append((n, None, ",".join(row)))
                else:
                    rows.append((n, row[ip], row[ii]))
            return rows, []
    except FileNotFoundError:
        raise UserError(f"submission not found: {path}") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{path}: not a UTF-8 CSV file ({err})") from None
    except OSError as err:
        raise UserError(f"cannot read submission {path}: {err.strerror or err}") from None


_PLAIN = re.compile(r"[0-9eE+\-. ]*")  # the characters of plain decimal numbers separated by ASCII spaces
_ODD = re.compile(r"[^0-9eE+\-. ]")


def _parse(pred: str, where: str, images: dict[str, Any] | None, cats: set[int] | None,
           problems: list[str]) -> list[tuple[int, float, float, float, float, float]]:
    if not _PLAIN.fullmatch(pred):
        m = _ODD.search(pred)
        ch = m.group(0)
        problems.append(f"{where}: PredictionString holds {ch!a} (U+{ord(ch):04X}) at character {m.start() + 1}; "
                        "only plain decimal numbers (ASCII digits, '.', '-', '+', 'e') separated by ASCII spaces "
                        "are allowed")
        return []
    tokens = [t for t in pred.split(" ") if t]
    if len(tokens) % 6:
        problems.append(f"{where}: PredictionString has {len(tokens)} values, not a multiple of 6 "
                        "(label score xmin ymin xmax ymax ...)")
        return []
    boxes = []
    for k in range(0, len(tokens), 6):
        label, *nums = tokens[k:k + 6]
        box_no = k // 6 + 1
        try:
            c = int(label)
        except ValueError:
            problems.append(f"{where}: box {box_no}: label {short(label)} is not an integer category id")
            continue
        try:
            s, x1, y1, x2, y2 = (float(v) for v in nums)
        except ValueError:
            problems.append(f"{where}: box {box_no}: {short(' '.join(nums))} are not numbers")
            continue
        if not all(math.isfinite(v) for v in (s, x1, y1, x2, y2)):
            problems.append(f"{where}: box {box_no}: score and coordinates must be finite, got {' '.join(nums)}")
            continue
        if cats is not None and c not in cats:
            problems.append(f"{where}: box {box_no}: label {c} is not a category (allowed: {describe_ids(cats)})")
        if not 0 <= s <= 1:
            problems.append(f"{where}: box {box_no}: score {s:g} is outside [0, 1]")
        if not (x2 > x1 and y2 > y1):
            problems.append(f"{where}: box {box_no}: [{x1:g} {y1:g} {x2:g} {y2:g}] has no area (need xmin < xmax, "
                            "ymin < ymax)")
        elif images is not None and (x1 < -EDGE_TOL or y1 < -EDGE_TOL or x2 > images["width"] + EDGE_TOL
                                     or y2 > images["height"] + EDGE_TOL):
            problems.append(f"{where}: box {box_no}: [{x1:g} {y1:g} {x2:g} {y2:g}] leaves the "
                            f"{images['width']:g}x{images['height']:g} image")
        boxes.append((c, s, x1, y1, x2, y2))
    return boxes


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


def read_submission(path: str | os.PathLike, images: list[dict[str, Any]]) -> Detections:
    """A submission CSV as predictions (COCO xywh, ids from ``images``' file_names); UserError on the
    first problem."""
    by_name = {im["file_name"]: im["id"] for im in images}
    rows, problems = _rows(path)
    ids, cats, boxes, scores = [], [], [], []
    for n, pred, name in rows:
        where = f"{path}: line {n}"
        if pred is None:
            raise UserError(f"{where}: expected 2 columns ({','.join(HEADER)}), got {short(name)}")
        if name not in by_name:
            raise UserError(f"{where}: image_id {short(name)} is not a file_name of the images it is scored on")
        for c, s, x1, y1, x2, y2 in _parse(pred, where, None, None, problems):
            ids.append(by_name[name])
            cats.append(c)
            boxes.append((x1, y1, x2 - x1, y2 - y1))
            scores.append(s)
        if problems:
            break
    if problems:
        raise UserError(problems[0])
    return Detections(np.array(ids, np.int64), np.array(cats, np.int64), np.array(boxes, np.float64).reshape(-1, 4),
                      np.array(scores, np.float64))


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
    sys.exit(cli.run(main, get_args_parser()))
