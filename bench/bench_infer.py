#!/usr/bin/env python
"""infer.py's speed next to a bare Ultralytics predict loop over the same files, same settings.
Target (issue 18): infer.py's images/s at least 1.2x the bare loop's at 1024 px on the CPU.

    python bench/bench_infer.py [--images 100] [--imgsz 640 1024] [--reps 3] [--device cpu]

Weights: the official YOLOv5n (../shared/weights/yolov5n.pt) imported for TrashNet's 7 classes
(untrained head: many low-score boxes, so writing 300 boxes per image is part of the cost).
conf 0.001, iou 0.7, max_det 300, batch 8 on both sides; a third side is the bare loop at Ultralytics'
own default batch (1); another over a folder of the same photos (``source=FOLDER``). Two ablations:
infer.py without coco2yolo/heap.py, and without it and the grouped NMS (infer.py before both); their
results JSON must be byte-identical to infer.py's. Each run is its own process (the C heap's state is
per process), the sides alternated; the clock runs from loading the model to the last result, imports
excluded.
"""

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import SHARED, need, record

SIDES = ("bare", "ours", "bare_batch1", "ours_heap_off", "bare_folder", "ours_before")


def child(side: str, work: Path, imgsz: int, device: str, n: int) -> None:
    """One timed run; prints seconds and boxes as JSON."""
    from coco2yolo import ultra

    ultra.setup()
    from ultralytics import YOLO

    from coco2yolo import inference as predict

    weights = work / "yolov5n_trashnet.pt"
    images = json.loads((work / "images.json").read_text())["images"]
    files = [str((work / im["file_name"]).absolute()) for im in images]
    t = time.perf_counter()
    if side.startswith("ours"):
        if side in ("ours_heap_off", "ours_before"):  # ablations: glibc's own malloc settings
            predict.heap_kept = lambda: contextlib.nullcontext(False)
        if side == "ours_before":  # and Ultralytics' one NMS call for all classes: infer.py before both
            import torchvision

            predict.nms_in_groups = torchvision.ops.boxes.nms
        a = predict.get_args_parser().parse_args(
            ["--weights", str(weights), "--images", str(work / "images.json"), "--out", str(work / f"{side}.json"),
             "--imgsz", str(imgsz), "--conf", "0.001", "--iou", "0.7", "--max-det", "300", "--batch", "8",
             "--device", device])
        boxes = predict.run(a)["boxes"]
    else:
        m = YOLO(str(weights))
        boxes = 0
        source = str(work / "folder") if side == "bare_folder" else files
        for r in m.predict(source=source, stream=True, verbose=False, imgsz=imgsz, conf=0.001, iou=0.7, max_det=300,
                           batch=1 if side == "bare_batch1" else 8, device=device):
            boxes += len(r.boxes)
    print(json.dumps({"seconds": time.perf_counter() - t, "boxes": boxes}))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--imgsz", type=int, nargs="+", default=[640, 1024])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--child", nargs=3, metavar=("SIDE", "WORK", "IMGSZ"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child[0], Path(args.child[1]), int(args.child[2]), args.device, args.images)
    trash = need(SHARED / "datasets" / "trashnet" / "train.json")
    from coco2yolo import ultra

    ultra.setup()
    from coco2yolo.checkpoint import read_checkpoint, save_ultralytics_checkpoint
    from coco2yolo.checkpoint.legacy import import_legacy
    from coco2yolo.cocodata import CategoryMap
    from coco2yolo.sidecar import write_sidecar

    work = Path(tempfile.mkdtemp(prefix="bench_infer_"))
    data = json.loads(trash.read_text())
    images = sorted(data["images"], key=lambda im: im["id"])[: args.images]
    (work / "images.json").write_text(json.dumps({"images": images, "categories": data["categories"]}))
    (work / "train").symlink_to(trash.parent / "train")
    (work / "folder").mkdir()
    for im in images:  # the same photos as a folder, for Ultralytics' folder loader
        (work / "folder" / Path(im["file_name"]).name).symlink_to(trash.parent / im["file_name"])
    cmap = CategoryMap(data["categories"])
    model, _ = import_legacy(read_checkpoint(need(SHARED / "weights" / "yolov5n.pt")), len(cmap), cmap.names)
    weights = save_ultralytics_checkpoint(model, work / "yolov5n_trashnet.pt")
    write_sidecar(weights, cmap, 640)

    def run(side, imgsz):
        out = subprocess.run([sys.executable, __file__, "--child", side, str(work), str(imgsz), "--device",
                              args.device, "--images", str(args.images)], capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{side} failed: {out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    result = {"command": f"python bench/bench_infer.py --images {args.images} --imgsz {' '.join(map(str, args.imgsz))} "
                         f"--reps {args.reps} --device {args.device}", "images": len(images)}
    for imgsz in args.imgsz:
        times = {s: [] for s in SIDES}
        boxes = {}
        for rep in range(args.reps):
            for side in SIDES[rep % len(SIDES):] + SIDES[:rep % len(SIDES)]:  # each side first in turn
                r = run(side, imgsz)
                times[side].append(r["seconds"])
                boxes[side] = r["boxes"]
        med = {s: statistics.median(v) for s, v in times.items()}
        result[f"imgsz_{imgsz}"] = {
            "seconds_median": {s: round(v, 2) for s, v in med.items()},
            "images_per_second": {s: round(len(images) / v, 2) for s, v in med.items()},
            "throughput_infer_py_to_bare_batch8": round(med["bare"] / med["ours"], 3),
            "throughput_infer_py_to_bare_batch1": round(med["bare_batch1"] / med["ours"], 3),
            "throughput_infer_py_to_bare_folder": round(med["bare_folder"] / med["ours"], 3),
            "throughput_infer_py_to_itself_without_heap_kept": round(med["ours_heap_off"] / med["ours"], 3),
            "throughput_infer_py_to_itself_before": round(med["ours_before"] / med["ours"], 3),
            "results_identical_to_ablations": all((work / "ours.json").read_bytes() == (work / f"{s}.json").read_bytes()
                                                  for s in ("ours_heap_off", "ours_before")),
            "boxes": boxes, "all_seconds": {s: [round(x, 2) for x in v] for s, v in times.items()}}
        print(imgsz, result[f"imgsz_{imgsz}"], flush=True)
    result["target"] = "infer.py images/s >= 1.2x the bare predict loop's at 1024 px on the CPU"
    shutil.rmtree(work, ignore_errors=True)
    record("infer", result)


if __name__ == "__main__":
    main()
