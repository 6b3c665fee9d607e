"""Inference: COCO results JSON (original category ids, original pixels) from trained weights.

``python infer.py --weights weights/N.pt --images test.json --out preds.json [--tta] ...``

Images come from a COCO JSON (ids and file names from it, files relative to its folder) or from
a folder or glob (ids follow the sorted file names; an images JSON is written beside the output
so that ensemble.py and evaluate.py can use the same ids).

Images are read here (the bytes Ultralytics' own file loader would decode, decoded the same way;
on a GPU one batch ahead, in a thread) and handed to Ultralytics as arrays: memory stays
flat in the number of images (a list of paths makes Ultralytics open every file before the first
prediction), an unusable file (empty, not an image, truncated) is skipped with a count and its
name instead of aborting the run, and ``--strict`` makes it an error before anything is written.
Results stream to temporary files that are renamed into place only when complete.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import glob
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

import numpy as np

from coco2yolo import cli, ultra
from coco2yolo.cocodata import CategoryMap, load_dataset
from coco2yolo.dataset.convert import IMG_SUFFIXES, dataset_relpath
from coco2yolo.errors import UserError
from coco2yolo.fileio import atomic_paths, dumps_json, guard_outputs, make_dirs, require_file, write_inside
from coco2yolo.heap import heap_kept
from coco2yolo.images import MAX_PIXELS, file_problem, read_image
from coco2yolo.results import prediction_string
from coco2yolo.sidecar import resolve_sidecar


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


def _num(v: float) -> str:
    """A float in JSON at full precision (Python's shortest repr)."""
    return repr(float(v))


class StreamingOutputs:
    """The results JSON (and optionally the submission CSV and an images JSON), written as images
    arrive into temporary files that are all renamed into place together at the end."""

    def __init__(self, out: Path, submission: Path | None, images_json: Path | None = None):
        self.out, self.submission, self.images_json = out, submission, images_json
        self.images_doc: dict[str, Any] | None = None
        self.n_boxes = 0
        self._first = True
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> StreamingOutputs:
        paths = [self.out] + [p for p in (self.submission, self.images_json) if p is not None]
        tmps = iter(self._stack.enter_context(atomic_paths(paths)))
        self._json: TextIO = self._stack.enter_context(open(next(tmps), "w", encoding="utf-8"))
        self._json.write("[")
        self._csv = None
        if self.submission:
            fh = self._stack.enter_context(open(next(tmps), "w", encoding="utf-8", newline=""))
            self._csv = csv.writer(fh)
            self._csv.writerow(["PredictionString", "image_id"])
        self._images_tmp = next(tmps, None)
        return self

    def add(self, image: dict[str, Any], cat_ids: np.ndarray, xyxy: np.ndarray, scores: np.ndarray) -> None:
        """One image's detections: original category ids, xyxy pixels, scores."""
        iid = image["id"]
        parts = []
        for c, (x1, y1, x2, y2), s in zip(cat_ids.tolist(), xyxy.tolist(), scores.tolist()):
            parts.append(f'{{"image_id": {iid}, "category_id": {c}, "bbox": [{_num(x1)}, {_num(y1)}, '
                         f'{_num(x2 - x1)}, {_num(y2 - y1)}], "score": {_num(s)}}}')
        if parts:
            self._json.write(("" if self._first else ",\n") + ",\n".join(parts))
            self._first = False
            self.n_boxes += len(parts)
        if self._csv is not None:
            self._csv.writerow([prediction_string(cat_ids, xyxy, scores), image["file_name"]])

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self._json.write("]\n")
            if self._images_tmp is not None:
                self._images_tmp.write_text(dumps_json(self.images_doc) + "\n", encoding="utf-8")
        # files close first, then atomic_paths renames them all (or, on an exception, removes them)
        return bool(self._stack.__exit__(exc_type, exc, tb))


def draw(img: np.ndarray, xyxy: np.ndarray, labels: list[str], scores: np.ndarray) -> np.ndarray:
    """Boxes with 'name score' captions on a copy of a BGR image."""
    from coco2yolo.evaluation.gallery import draw_boxes

    return draw_boxes(img, xyxy, [f"{label} {s:.2f}" for label, s in zip(labels, scores.tolist())], labels)


def vis_relpath(image: dict[str, Any]) -> PurePosixPath:
    """Where an image's drawing goes inside the --save-vis folder: its file_name as a .jpg, never
    outside (an absolute name or one with '..' becomes ``img<id>_<name>``)."""
    return dataset_relpath(image["file_name"], image["id"]).with_suffix(".jpg")


def _save_vis(folder: Path, image: dict[str, Any], img: np.ndarray, cmap: CategoryMap, cat_ids: np.ndarray,
              xyxy: np.ndarray, scores: np.ndarray, vis_conf: float) -> None:
    import cv2

    keep = scores >= vis_conf
    vis = draw(img, xyxy[keep], [cmap.name_of(c) for c in cat_ids[keep].tolist()], scores[keep])
    ok, buf = cv2.imencode(".jpg", vis)
    write_inside(folder, vis_relpath(image), buf.tobytes())  # follows no link planted inside the folder


def _why_not_written(err: OSError) -> str:
    import errno

    if err.errno in (errno.ELOOP, errno.ENOTDIR):
        return "a link or a file inside --save-vis is in the way (drawings never follow links out of the folder)"
    return err.strerror or str(err)


def decoded_batches(items: list[tuple[dict[str, Any], str]], batch: int, prefetch: bool = False,
                    max_pixels: int | None = MAX_PIXELS
                    ) -> Iterator[list[tuple[dict[str, Any], np.ndarray | None, str | None]]]:
    """Batches of (image record, BGR array or None, why not); with ``prefetch``, the next batch is read
    in a thread while the current one is predicted.

    Prefetch pays on a GPU, whose forward pass leaves the CPU idle; on the CPU, torch already uses every
    core and a decoding thread slowed 200 TrashNet photos down by 4% on 2 cores (9.58 s vs 9.18 s).
    """
    def load(chunk):
        return [(im, *read_image(path, max_pixels)) for im, path in chunk]

    chunks = [items[i:i + batch] for i in range(0, len(items), batch)]
    if not prefetch:
        yield from (load(chunk) for chunk in chunks)
        return
    if not chunks:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = pool.submit(load, chunks[0])
        for nxt in chunks[1:] + [None]:
            current = ahead.result()
            if nxt is not None:
                ahead = pool.submit(load, nxt)
            yield current


GROUP_STRIDE = 7680  # Ultralytics' max_wh: the offset it adds per class before its one NMS call
GROUPS_FROM = 512     # fewer candidates than this: one call is as quick


def nms_in_groups(boxes_xyxy: Any, scores: Any, iou_threshold: float) -> Any:
    """``torchvision.ops.nms`` with the same result (kept indices, in the same order), run on each group
    of boxes apart, where boxes fall into groups that no box of another group overlaps.

    Ultralytics separates the classes before one class-aware NMS call by adding ``class * 7680`` to every
    coordinate; torchvision's CPU kernel then still compares every candidate with every kept box of any
    class (at conf 0.001 and multi-label, up to 30,000 candidates an image). Grouped by that offset, each
    call sees one class. The result is the same, bit for bit, because (1) a box whose x-range ends at or
    before another's begins has zero intersection with it, so it never suppresses it; the groups are
    checked to be so (each group's largest x2 at most every later group's smallest x1), else one call is
    made; (2) torchvision visits boxes in a stable descending sort of the scores, and a stable sort of a
    group is that order restricted to the group; (3) each IoU is computed from the same coordinates.
    """
    import torch
    from torchvision.ops import boxes as tv

    n = boxes_xyxy.shape[0]
    if n < GROUPS_FROM or boxes_xyxy.device.type != "cpu" or not bool(torch.isfinite(boxes_xyxy).all()):
        return tv.nms(boxes_xyxy, scores, iou_threshold)
    group = torch.div(boxes_xyxy[:, 0] + GROUP_STRIDE / 2, GROUP_STRIDE, rounding_mode="floor")
    ids, inverse, counts = torch.unique(group, return_inverse=True, return_counts=True)
    if len(ids) == 1:
        return tv.nms(boxes_xyxy, scores, iou_threshold)
    lo = boxes_xyxy.new_full((len(ids),), float("inf")).scatter_reduce(0, inverse, boxes_xyxy[:, 0], "amin")
    hi = boxes_xyxy.new_full((len(ids),), float("-inf")).scatter_reduce(0, inverse, boxes_xyxy[:, 2], "amax")
    hi_so_far = torch.cummax(hi, 0).values                                      # groups 0..g
    lo_from = torch.flip(torch.cummin(torch.flip(lo, (0,)), 0).values, (0,))  # groups g..last
    if not bool((hi_so_far[:-1] <= lo_from[1:]).all()):
        return tv.nms(boxes_xyxy, scores, iou_threshold)
    kept = torch.zeros(n, dtype=torch.bool)
    for idx in torch.split(torch.argsort(inverse, stable=True), counts.tolist()):
        kept[idx[tv.nms(boxes_xyxy[idx], scores[idx], iou_threshold)]] = True
    order = torch.sort(scores, dim=0, descending=True, stable=True).indices
    return order[kept[order]]


def fast_predictor(multi_label: bool = True) -> type:
    """Ultralytics' detection predictor with its NMS run class by class (:func:`nms_in_groups`: the
    same boxes, several times faster at conf 0.001), without NMS's time limit, and, with ``multi_label``,
    validation's NMS: a box keeps every class scoring above ``conf``, not only its best one (Ultralytics'
    ``predict`` never asks for it; ``val`` always does).

    The time limit (2 s + 0.05 s an image of the batch) is for video: past it, Ultralytics stops and the
    batch's remaining images get no boxes, with a log line. On a slow CPU at conf 0.001 a results file
    would silently lose whole images; tests/test_nms.py shows the limit cutting a batch short."""
    import functools

    import torchvision
    from ultralytics.models.yolo.detect.predict import DetectionPredictor
    from ultralytics.utils import nms

    class FastPredictor(DetectionPredictor):
        def postprocess(self, preds, img, orig_imgs, **kwargs):
            single, one_call = nms.non_max_suppression, torchvision.ops.nms
            nms.non_max_suppression = functools.partial(single, multi_label=multi_label, max_time_img=float("inf"))
            torchvision.ops.nms = nms_in_groups
            try:  # module attributes are what Ultralytics calls; restored at once (one thread predicts)
                return super().postprocess(preds, img, orig_imgs, **kwargs)
            finally:
                nms.non_max_suppression, torchvision.ops.nms = single, one_call

    return FastPredictor


def onnx_yolo(path: str | os.PathLike, n_classes: int | None = None, imgsz: int | None = None, batch: int = 1,
              predictor: Any = None, predict_args: dict[str, Any] | None = None) -> Any:
    """An Ultralytics ``YOLO`` for an ONNX file written by ``coco2yolo export`` (run by onnxruntime).

    The file is read as data first (:func:`coco2yolo.checkpoint.onnxfile.check_onnx`: external data, metadata,
    operators, every tensor's size for the input it will be fed). With ``predictor``, the session is built here
    by one prediction on a blank image with ``predict_args`` (Ultralytics would build it at the first batch,
    where a failure is no longer one line)."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        raise UserError(f"{path}: predicting with an ONNX file needs onnx and onnxruntime: "
                        "pip install 'coco2yolo[export]'")
    from coco2yolo.checkpoint.onnxfile import check_onnx

    check = check_onnx(path, n_classes, imgsz, batch)
    import onnxruntime
    from ultralytics import YOLO

    onnxruntime.set_default_logger_severity(4)  # its errors come back as exceptions, made one line below

    with onnx_errors(path):
        model = YOLO(str(path), task="detect")
        if predictor is not None:
            blank = np.zeros((check.input_shape[2], check.input_shape[3], 3), np.uint8)
            model.predict(source=[blank], batch=1, predictor=predictor, **(predict_args or {}))
    return model


@contextlib.contextmanager
def onnx_errors(path: str | os.PathLike) -> Iterator[None]:
    """ONNX Runtime's and Ultralytics' failures on an ONNX file as one line."""
    try:
        yield
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - a damaged or foreign ONNX file is a user error
        raise UserError(f"cannot run {path}: {' '.join(str(err).split())[:240]}") from None


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _image_paths(images: list[dict[str, Any]], root: Path, source: str) -> dict[int, str]:
    by_path: dict[str, int] = {}
    missing = []
    for im in images:
        f = str((root / im["file_name"]).absolute())
        if not os.path.exists(f):  # a named pipe or a folder: skipped later, with its reason
            missing.append(im["file_name"])
        elif f in by_path:
            raise UserError(f"{source}: images {by_path[f]} and {im['id']} are the same file {im['file_name']}")
        else:
            by_path[f] = im["id"]
    if missing:
        raise UserError(f"{source}: {len(missing)} of {len(images)} images are missing under {root} "
                        f"(first: {', '.join(missing[:5])})")
    return {iid: f for f, iid in by_path.items()}


def _predict_args(args: Any, imgsz: int, **extra: Any) -> dict[str, Any]:
    """Ultralytics' predict arguments for infer.py's flags."""
    return dict(conf=args.conf, iou=args.iou, max_det=args.max_det, imgsz=imgsz, device=args.device,
                augment=args.tta, agnostic_nms=args.agnostic, verbose=False, **({"half": True} if args.half else {}),
                **extra)


@dataclass
class PredictOptions:
    """Everything inference needs (the flags of infer.py, same names and defaults)."""

    weights: str
    images: str
    out: str
    tta: bool = False
    conf: float = 0.001
    iou: float = 0.7
    agnostic: bool = False
    max_det: int = 300
    imgsz: int | None = None
    batch: int = 8
    half: bool = False
    device: str = ""
    submission: str | None = None
    save_vis: str | None = None
    vis_conf: float = 0.25
    vis_max: int = 50
    strict: bool = False
    trust_weights: bool = False
    multi_label: bool = True  # measured: never worse out of fold, what Ultralytics' validation does
    max_pixels: int = MAX_PIXELS  # a photo with more pixels is skipped, counted (never decoded)

    def check(self) -> PredictOptions:
        """The checks the flags' types make, for callers of the API."""
        if not 0 <= self.conf < 1 or not 0 < self.iou <= 1 or self.max_det < 1 or self.batch < 1:
            raise UserError(f"need 0 <= conf < 1, 0 < iou <= 1, max_det >= 1, batch >= 1; got {self.conf}, "
                            f"{self.iou}, {self.max_det}, {self.batch}")
        if self.imgsz is not None and (self.imgsz < 32 or self.imgsz % 32):
            raise UserError(f"imgsz must be a multiple of 32, got {self.imgsz}")
        return self


def run(args: PredictOptions | argparse.Namespace) -> dict[str, Any]:
    """Predict every image of ``args.images`` and write the outputs; return a summary."""
    require_file(args.weights, "weights")
    images, root, made_up_ids = image_records(args.images)
    path_of = _image_paths(images, root, args.images)
    out = Path(args.out)
    images_json = out.with_suffix(".images.json") if made_up_ids else None
    guard_outputs({"--out": out, "--submission": args.submission, "the images JSON": images_json,
                   "--save-vis": args.save_vis},
                  {"--weights": args.weights, "the weights' sidecar": Path(args.weights).with_suffix(".json"),
                   "--images": args.images, "image": list(path_of.values())}, folders={"--save-vis"})
    bad = {iid: why for iid, f in path_of.items() if (why := file_problem(f, args.max_pixels)) is not None}
    if bad and args.strict:
        names = [f"{im['file_name']}: {bad[im['id']]}" for im in images if im["id"] in bad]
        raise UserError(f"{len(names)} of {len(images)} images could not be read (first: {'; '.join(names[:3])}); "
                        "nothing was written")
    ultra.setup()
    from tqdm import tqdm

    from coco2yolo.checkpoint import load_yolo

    ultra.check_device(args.device)
    predictor = fast_predictor(args.multi_label)
    onnx = str(args.weights).lower().endswith(".onnx")
    if onnx:  # read as data first, then run by onnxruntime: the sidecar says what it will be fed
        cmap, train_imgsz, note = resolve_sidecar(args.weights, None)
        imgsz = args.imgsz or train_imgsz
        # rect=False: every batch is the square input the graph was checked for
        predict_args = _predict_args(args, imgsz, rect=False)
        model = onnx_yolo(args.weights, len(cmap), imgsz, args.batch, predictor, predict_args)
    else:
        model, ckpt = load_yolo(args.weights, args.trust_weights)
        cmap, train_imgsz, note = resolve_sidecar(args.weights, {"train_args": ckpt.train_args} if ckpt is not None
                                                  else getattr(model, "ckpt", None))
        imgsz = args.imgsz or train_imgsz
        predict_args = _predict_args(args, imgsz)
    if note:
        print(note, file=sys.stderr)
    names = getattr(model, "names", None) or {}
    if len(names) != len(cmap):
        raise UserError(f"{args.weights} predicts {len(names)} classes but its sidecar lists {len(cmap)}")
    if made_up_ids:
        print(f"note: image ids follow the sorted file names under {root} (0 = {images[0]['file_name']}); "
              f"they are written to {images_json}", file=sys.stderr)
    unread: list[tuple[dict[str, Any], str]] = []
    vis_left = args.vis_max
    vis_failed: list[str] = []
    vis_root = make_dirs(args.save_vis) if args.save_vis else None
    t0 = time.time()
    with heap_kept(), StreamingOutputs(out, Path(args.submission) if args.submission else None, images_json) as sink:
        bar = tqdm(total=len(images), unit="img", desc="predict", file=sys.stderr, dynamic_ncols=True,
                   disable=None)  # a bar on a terminal only: in a log each refresh would be a line
        todo = [(im, path_of[im["id"]]) for im in images if im["id"] not in bad]
        unread += [(im, bad[im["id"]]) for im in images if im["id"] in bad]
        on_gpu = str(args.device).lower() not in ("cpu", "mps") and _cuda_available()
        for chunk in decoded_batches(todo, args.batch, prefetch=on_gpu, max_pixels=args.max_pixels):
            ok = [(im, arr) for im, arr, why in chunk if arr is not None]
            unread += [(im, why) for im, arr, why in chunk if arr is None]
            if unread and args.strict:
                im, why = unread[0]
                raise UserError(f"{im['file_name']}: {why}; nothing was written (--strict)")
            with onnx_errors(args.weights) if onnx else contextlib.nullcontext():
                results = model.predict(source=[arr for _, arr in ok], batch=len(ok), predictor=predictor,
                                        **predict_args) if ok else []
            for (image, arr), r in zip(ok, results):
                boxes = r.boxes
                cls = boxes.cls.cpu().numpy().astype(np.int64)
                cat_ids = np.array([cmap.category_of(k) for k in cls.tolist()], np.int64)
                xyxy = boxes.xyxy.cpu().numpy().astype(np.float64)
                scores = boxes.conf.cpu().numpy().astype(np.float64)
                sink.add(image, cat_ids, xyxy, scores)
                if "width" not in image:
                    image["height"], image["width"] = arr.shape[:2]
                if args.save_vis and vis_left > 0:
                    try:
                        _save_vis(vis_root, image, arr, cmap, cat_ids, xyxy, scores, args.vis_conf)
                    except OSError as err:
                        vis_failed.append(f"{vis_relpath(image)}: {_why_not_written(err)}")
                    vis_left -= 1
            bar.update(len(chunk))
        bar.close()
        for im, _ in unread:  # the submission still lists every image (no boxes, so the JSON gains none)
            sink.add(im, np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0))
        if images_json is not None:
            sink.images_doc = {"images": [im for im in images if "width" in im],
                               "categories": cmap.coco_categories()}
    if vis_failed:
        print(f"warning: {len(vis_failed)} drawings were not written (first: {'; '.join(vis_failed[:3])})",
              file=sys.stderr)
    if unread:
        first = "; ".join(f"{im['file_name']}: {why}" for im, why in unread[:3])
        print(f"warning: {len(unread)} of {len(images)} images could not be read and have no predictions "
              f"(first: {first}); --strict makes this an error", file=sys.stderr)
    seconds = time.time() - t0
    return {"images": len(images), "predicted": len(images) - len(unread), "unread": len(unread),
            "unread_files": [im["file_name"] for im, _ in unread], "boxes": sink.n_boxes,
            "seconds": seconds, "imgsz": imgsz}


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog="infer.py", description="Predict COCO-format scored boxes with original "
                           "category ids from weights trained by train_yolo.py.")
    p.add_argument("--weights", required=True, help="weights N.pt with its N.json sidecar")
    p.add_argument("--images", required=True, help="COCO JSON (e.g. test.json), a folder, or a glob")
    p.add_argument("--out", required=True, help="COCO results JSON to write")
    p.add_argument("--tta", action="store_true", help="test-time augmentation (Ultralytics' augment=True)")
    p.add_argument("--conf", type=cli.number(0, 1, hi_open=True), default=0.001,
                   help="score threshold (0.001: what mAP wants)")
    p.add_argument("--iou", type=cli.IOU, default=0.7, help="NMS IoU threshold (0.7)")
    p.add_argument("--agnostic", action="store_true", help="class-agnostic NMS (one box per place, any class)")
    p.add_argument("--multi-label", action=argparse.BooleanOptionalAction, default=True,
                   help="validation's NMS: a box keeps every class scoring above --conf, as Ultralytics' val does "
                        "(default: on, measured out of fold in BENCHMARKS.md); --no-multi-label keeps only the best "
                        "class, as Ultralytics' predict does")
    p.add_argument("--max-det", type=cli.POSITIVE_INT, default=300, help="boxes kept per image (300)")
    p.add_argument("--imgsz", type=cli.number(32, integer=True), default=None,
                   help="inference size, a multiple of 32 (default: the training size)")
    p.add_argument("--batch", type=cli.POSITIVE_INT, default=8, help="images per forward pass (8)")
    p.add_argument("--half", action="store_true", help="FP16 on CUDA")
    p.add_argument("--device", default="", help='"" (GPU if any), cpu, 0, ...')
    p.add_argument("--submission", default=None, help="also write the competition CSV "
                   "(PredictionString,image_id; 'label score xmin ymin xmax ymax ...', image_id = file_name)")
    p.add_argument("--save-vis", default=None, metavar="DIR", help="draw boxes with names and scores on images "
                   "(written inside DIR only, never over an input)")
    p.add_argument("--vis-conf", type=cli.FRACTION, default=0.25, help="score threshold for --save-vis drawings (0.25)")
    p.add_argument("--vis-max", type=cli.NONNEG_INT, default=50, help="at most this many drawn images (50)")
    p.add_argument("--strict", action="store_true", help="fail (write nothing) when an image cannot be read")
    p.add_argument("--max-pixels", type=cli.POSITIVE_INT, default=MAX_PIXELS,
                   help=f"skip photos with more pixels than this, counted like unreadable ones ({MAX_PIXELS:,}, Pillow's "
                        "bound; a 20000 x 20000 PNG would take 1.2 GB decoded)")
    p.add_argument("--trust-weights", action="store_true",
                   help="load the weights with the full pickle loader (it can run code: only for files you trust); "
                        "by default a checkpoint naming anything but known model classes is refused")
    return p


def main(args: argparse.Namespace) -> int:
    s = run(PredictOptions(**vars(args)).check())
    rate = s["predicted"] / s["seconds"] if s["seconds"] > 0 else float("nan")
    print(f"wrote {args.out}: {s['boxes']} boxes on {s['predicted']} of {s['images']} images at imgsz "
          f"{s['imgsz']} ({rate:.1f} images/s)" + (f"; submission {args.submission}" if args.submission else "")
          + (f"; drawings in {args.save_vis}/" if args.save_vis else ""))
    return 0
