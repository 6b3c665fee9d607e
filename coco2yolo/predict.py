"""Inference: COCO results JSON (original category ids, original pixels) from trained weights.

``python infer.py --weights weights/N.pt --images test.json --out preds.json [--tta] ...``

Images come from a COCO JSON (ids and file names from it, files relative to its folder) or from
a folder or glob (ids follow the sorted file names; an images JSON is written beside the output
so that ensemble.py and evaluate.py can use the same ids). Results stream to disk image by image,
so memory does not grow with the number of images; every output is renamed into place only
when complete.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import glob
import os
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

import numpy as np

from . import cli, ultra
from .cocodata import CategoryMap, load_dataset
from .convert import IMG_SUFFIXES
from .errors import UserError
from .fileio import atomic_path, write_json
from .results import prediction_string
from .sidecar import read_sidecar


def image_records(source: str) -> tuple[list[dict[str, Any]], Path, bool]:
    """Image records (id, file_name, width, height if known), the folder file names are relative
    to, and whether the ids were made up from sorted file names."""
    p = Path(source)
    if p.suffix.lower() == ".json":
        data = load_dataset(p, need_size=False)
        return sorted(data["images"], key=lambda im: im["id"]), p.parent, False
    if p.is_dir():
        root, files = p, sorted(str(f.relative_to(p)) for f in p.rglob("*")
                                if f.is_file() and f.suffix.lower() in IMG_SUFFIXES)
    else:
        matches = sorted(glob.glob(source, recursive=True))
        root = Path(os.path.commonpath(matches)) if matches else Path(".")
        root = root.parent if root.is_file() else root
        files = [str(Path(m).relative_to(root)) for m in matches if Path(m).suffix.lower() in IMG_SUFFIXES]
    if not files:
        raise UserError(f"--images {source}: no images found (a COCO JSON, a folder or a glob; "
                        f"suffixes {' '.join(sorted(IMG_SUFFIXES))})")
    recs = [{"id": i, "file_name": PurePosixPath(Path(f)).as_posix()} for i, f in enumerate(files)]
    return recs, root, True


class StreamingOutputs:
    """The results JSON (and optionally the submission CSV), written as images arrive."""

    def __init__(self, out: Path, submission: Path | None):
        self.out, self.submission = out, submission
        self.n_boxes = 0
        self._first = True
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> StreamingOutputs:
        tmp = self._stack.enter_context(atomic_path(self.out))
        self._json: TextIO = self._stack.enter_context(open(tmp, "w", encoding="utf-8"))
        self._json.write("[")
        self._csv = None
        if self.submission:
            tmp_csv = self._stack.enter_context(atomic_path(self.submission))
            fh = self._stack.enter_context(open(tmp_csv, "w", encoding="utf-8", newline=""))
            self._csv = csv.writer(fh)
            self._csv.writerow(["PredictionString", "image_id"])
        return self

    def add(self, image: dict[str, Any], cat_ids: np.ndarray, xyxy: np.ndarray, scores: np.ndarray) -> None:
        """One image's detections: original category ids, xyxy pixels, scores."""
        iid = image["id"]
        parts = []
        for c, (x1, y1, x2, y2), s in zip(cat_ids.tolist(), xyxy.tolist(), scores.tolist()):
            parts.append(f'{{"image_id": {iid}, "category_id": {c}, "bbox": [{x1:.2f}, {y1:.2f}, '
                         f'{x2 - x1:.2f}, {y2 - y1:.2f}], "score": {s:.5f}}}')
        if parts:
            self._json.write(("" if self._first else ",\n") + ",\n".join(parts))
            self._first = False
            self.n_boxes += len(parts)
        if self._csv is not None:
            self._csv.writerow([prediction_string(cat_ids, xyxy, scores), image["file_name"]])

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self._json.write("]\n")
        # an exception propagates through the stack: atomic_path removes the temporary files
        return bool(self._stack.__exit__(exc_type, exc, tb))


def draw(img: np.ndarray, xyxy: np.ndarray, labels: list[str], scores: np.ndarray) -> np.ndarray:
    """Boxes with 'name score' captions on a copy of a BGR image."""
    import cv2

    out = img.copy()
    for (x1, y1, x2, y2), label, s in zip(xyxy.astype(int).tolist(), labels, scores.tolist()):
        colour = tuple(int(v) for v in np.random.default_rng(zlib.crc32(label.encode())).integers(60, 255, 3))
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        text = f"{label} {s:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        cv2.rectangle(out, (x1, max(0, y1 - th - 4)), (x1 + tw + 2, max(th + 4, y1)), colour, -1)
        cv2.putText(out, text, (x1 + 1, max(th + 1, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    return out


def _save_vis(folder: Path, image: dict[str, Any], img: np.ndarray, cmap: CategoryMap, cat_ids: np.ndarray,
              xyxy: np.ndarray, scores: np.ndarray, vis_conf: float) -> None:
    import cv2

    keep = scores >= vis_conf
    vis = draw(img, xyxy[keep], [cmap.name_of(c) for c in cat_ids[keep].tolist()], scores[keep])
    path = (folder / image["file_name"]).with_suffix(".jpg")
    ok, buf = cv2.imencode(".jpg", vis)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def iterate_predictions(model: Any, paths: list[str], **predict_args: Any) -> Iterator[Any]:
    """Ultralytics results one image at a time (``stream=True``)."""
    yield from model.predict(source=paths, stream=True, verbose=False, **predict_args)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Predict every image of ``args.images`` and write the outputs; return a summary."""
    if not Path(args.weights).is_file():
        raise UserError(f"weights not found: {args.weights}")
    cmap, train_imgsz, _ = read_sidecar(args.weights)
    images, root, made_up_ids = image_records(args.images)
    by_path: dict[str, dict[str, Any]] = {}
    missing = []
    for im in images:
        f = str((root / im["file_name"]).absolute())
        if not os.path.isfile(f):
            missing.append(im["file_name"])
        elif f in by_path:
            raise UserError(f"{args.images}: images {by_path[f]['id']} and {im['id']} are the same file {im['file_name']}")
        by_path[f] = im
    if missing:
        raise UserError(f"{args.images}: {len(missing)} of {len(images)} images are missing under {root} "
                        f"(first: {', '.join(missing[:5])})")
    import cv2

    unreadable = {f for f in by_path if not cv2.haveImageReader(f)}  # Ultralytics crashes on these
    if unreadable and args.strict:
        names = [by_path[f]["file_name"] for f in sorted(unreadable)]
        raise UserError(f"{len(names)} of {len(images)} images could not be read (first: {', '.join(names[:5])}); "
                        "nothing was written")
    if made_up_ids:
        print(f"note: image ids follow the sorted file names under {root} (0 = {images[0]['file_name']}); "
              f"they are written to {Path(args.out).with_suffix('.images.json')}", file=sys.stderr)
    ultra.setup()
    from tqdm import tqdm

    from .checkpoint import load_yolo

    ultra.check_device(args.device)
    model = load_yolo(args.weights, args.trust_weights)
    names = getattr(model, "names", None) or {}
    if len(names) != len(cmap):
        raise UserError(f"{args.weights} predicts {len(names)} classes but its sidecar lists {len(cmap)}")
    imgsz = args.imgsz or train_imgsz
    seen: set[int] = set()
    vis_left = args.vis_max
    t0 = time.time()
    with StreamingOutputs(Path(args.out), Path(args.submission) if args.submission else None) as out:
        bar = tqdm(total=len(images), unit="img", desc="predict", file=sys.stderr, dynamic_ncols=True)
        readable = [f for f in by_path if f not in unreadable]
        predict_args = dict(conf=args.conf, iou=args.iou, max_det=args.max_det, imgsz=imgsz, batch=args.batch,
                            device=args.device, augment=args.tta, **({"half": True} if args.half else {}))
        stream = iterate_predictions(model, readable, **predict_args) if readable else []
        for r in stream:
            image = by_path.get(str(Path(r.path).absolute()))
            if image is None:
                continue
            boxes = r.boxes
            cls = boxes.cls.cpu().numpy().astype(np.int64)
            cat_ids = np.array([cmap.category_of(k) for k in cls.tolist()], np.int64)
            xyxy = boxes.xyxy.cpu().numpy().astype(np.float64)
            scores = boxes.conf.cpu().numpy().astype(np.float64)
            out.add(image, cat_ids, xyxy, scores)
            if "width" not in image:
                image["height"], image["width"] = r.orig_shape
            seen.add(image["id"])
            if args.save_vis and vis_left > 0:
                _save_vis(Path(args.save_vis), image, r.orig_img, cmap, cat_ids, xyxy, scores, args.vis_conf)
                vis_left -= 1
            bar.update(1)
        bar.close()
        unread = [im for im in images if im["id"] not in seen]
        if unread and args.strict:
            raise UserError(f"{len(unread)} of {len(images)} images could not be read (first: "
                            f"{', '.join(im['file_name'] for im in unread[:5])}); nothing was written")
        for im in unread:  # the submission still lists every image (no boxes, so the JSON gains none)
            out.add(im, np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0))
    if unread:
        print(f"warning: {len(unread)} of {len(images)} images could not be read and have no predictions "
              f"(first: {', '.join(im['file_name'] for im in unread[:5])}); --strict makes this an error",
              file=sys.stderr)
    if made_up_ids:
        write_json(Path(args.out).with_suffix(".images.json"),
                   {"images": [im for im in images if "width" in im], "categories": cmap.coco_categories()})
    seconds = time.time() - t0
    return {"images": len(images), "predicted": len(seen), "unread": len(unread), "boxes": out.n_boxes,
            "seconds": seconds, "imgsz": imgsz}


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog="infer.py", description="Predict COCO-format scored boxes with original "
                           "category ids from weights trained by train_yolo.py.")
    p.add_argument("--weights", required=True, help="weights N.pt with its N.json sidecar")
    p.add_argument("--images", required=True, help="COCO JSON (e.g. test.json), a folder, or a glob")
    p.add_argument("--out", required=True, help="COCO results JSON to write")
    p.add_argument("--tta", action="store_true", help="test-time augmentation (Ultralytics' augment=True)")
    p.add_argument("--conf", type=float, default=0.001, help="score threshold (0.001: what mAP wants)")
    p.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (0.7)")
    p.add_argument("--max-det", type=int, default=300, help="boxes kept per image (300)")
    p.add_argument("--imgsz", type=int, default=None, help="inference size (default: the training size)")
    p.add_argument("--batch", type=int, default=8, help="images per forward pass (8)")
    p.add_argument("--half", action="store_true", help="FP16 on CUDA")
    p.add_argument("--device", default="", help='"" (GPU if any), cpu, 0, ...')
    p.add_argument("--submission", default=None, help="also write the competition CSV "
                   "(PredictionString,image_id; 'label score xmin ymin xmax ymax ...', image_id = file_name)")
    p.add_argument("--save-vis", default=None, metavar="DIR", help="draw boxes with names and scores on images")
    p.add_argument("--vis-conf", type=float, default=0.25, help="score threshold for --save-vis drawings (0.25)")
    p.add_argument("--vis-max", type=int, default=50, help="at most this many drawn images (50)")
    p.add_argument("--strict", action="store_true", help="fail (write nothing) when an image cannot be read")
    p.add_argument("--trust-weights", action="store_true",
                   help="load the weights with the full pickle loader (it can run code: only for files you trust); "
                        "by default a checkpoint naming anything but known model classes is refused")
    return p


def main(args: argparse.Namespace) -> int:
    if not 0 <= args.conf < 1 or not 0 < args.iou <= 1 or args.max_det < 1 or args.batch < 1:
        raise UserError(f"need 0 <= --conf < 1, 0 < --iou <= 1, --max-det >= 1, --batch >= 1; got "
                        f"{args.conf}, {args.iou}, {args.max_det}, {args.batch}")
    if args.imgsz is not None and (args.imgsz < 32 or args.imgsz % 32):
        raise UserError(f"--imgsz must be a multiple of 32, got {args.imgsz}")
    s = run(args)
    rate = s["predicted"] / s["seconds"] if s["seconds"] > 0 else float("nan")
    print(f"wrote {args.out}: {s['boxes']} boxes on {s['predicted']} of {s['images']} images at imgsz "
          f"{s['imgsz']} ({rate:.1f} images/s)" + (f"; submission {args.submission}" if args.submission else "")
          + (f"; drawings in {args.save_vis}/" if args.save_vis else ""))
    return 0
