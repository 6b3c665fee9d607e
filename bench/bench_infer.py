#!/usr/bin/env python
"""infer.py's speed next to a bare Ultralytics predict loop over the same files, same settings,
alternated in the same process. Target: infer.py's wall time <= 1.10x the bare loop.

    python bench/bench_infer.py [--images 100] [--imgsz 640 1024] [--reps 3] [--device cpu]

Weights: the official YOLOv5n (../shared/weights/yolov5n.pt) imported for TrashNet's 7 classes
(untrained head: many low-score boxes, so writing 300 boxes per image is part of the cost).
Both sides load the model inside the timed region; conf 0.001, iou 0.7, max_det 300, batch 8.
"""

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import SHARED, need, record

from coco2yolo import ultra
from coco2yolo import inference as predict
from coco2yolo.cocodata import CategoryMap
from coco2yolo.checkpoint import read_checkpoint, save_ultralytics_checkpoint
from coco2yolo.checkpoint.legacy import import_legacy
from coco2yolo.sidecar import write_sidecar


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--imgsz", type=int, nargs="+", default=[640, 1024])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    trash = need(SHARED / "datasets" / "trashnet" / "train.json")
    ultra.setup()
    from ultralytics import YOLO

    work = Path(tempfile.mkdtemp(prefix="bench_infer_"))
    data = json.loads(trash.read_text())
    images = sorted(data["images"], key=lambda im: im["id"])[: args.images]
    (work / "images.json").write_text(json.dumps({"images": images, "categories": data["categories"]}))
    (work / "train").symlink_to(trash.parent / "train")
    cmap = CategoryMap(data["categories"])
    model, _ = import_legacy(read_checkpoint(need(SHARED / "weights" / "yolov5n.pt")), len(cmap), cmap.names)
    weights = save_ultralytics_checkpoint(model, work / "yolov5n_trashnet.pt")
    write_sidecar(weights, cmap, 640)
    files = [str((work / im["file_name"]).absolute()) for im in images]
    settings = dict(conf=0.001, iou=0.7, max_det=300, batch=8, device=args.device)

    def bare(imgsz):
        m = YOLO(str(weights))
        n = 0
        for r in m.predict(source=files, stream=True, verbose=False, imgsz=imgsz, **settings):
            n += len(r.boxes)
        return n

    def ours(imgsz):
        a = predict.get_args_parser().parse_args(
            ["--weights", str(weights), "--images", str(work / "images.json"), "--out", str(work / "preds.json"),
             "--imgsz", str(imgsz), "--conf", "0.001", "--iou", "0.7", "--max-det", "300", "--batch", "8",
             "--device", args.device])
        return predict.run(a)["boxes"]

    bare(320)  # warm-up: imports, first-call allocations
    result = {"command": f"python bench/bench_infer.py --images {args.images} --imgsz {' '.join(map(str, args.imgsz))} "
                         f"--reps {args.reps} --device {args.device}", "images": len(files)}
    for imgsz in args.imgsz:
        t_bare, t_ours = [], []
        for rep in range(args.reps):
            for name in ("bare", "ours") if rep % 2 == 0 else ("ours", "bare"):
                t = time.perf_counter()
                boxes = bare(imgsz) if name == "bare" else ours(imgsz)
                (t_bare if name == "bare" else t_ours).append(time.perf_counter() - t)
        mb, mo = statistics.median(t_bare), statistics.median(t_ours)
        result[f"imgsz_{imgsz}"] = {"seconds_bare_median": round(mb, 2), "seconds_infer_py_median": round(mo, 2),
                                    "ratio_infer_py_to_bare": round(mo / mb, 3),
                                    "images_per_second_infer_py": round(len(files) / mo, 2),
                                    "boxes_written": boxes, "all_bare": [round(x, 2) for x in t_bare],
                                    "all_infer_py": [round(x, 2) for x in t_ours]}
        print(imgsz, result[f"imgsz_{imgsz}"], flush=True)
    result["target"] = "infer.py wall time <= 1.10x the bare predict loop"
    shutil.rmtree(work, ignore_errors=True)
    record("infer", result)


if __name__ == "__main__":
    main()
