#!/usr/bin/env python
"""Peak memory and speed of infer.py as the number of images grows, beside a bare Ultralytics loop.

    python bench/bench_infer_memory.py [--counts 260 515 2000] [--imgsz 640] [--device cpu] [--list-upto 515]

Images: TrashNet photos (640x640) repeated by symbolic links to reach each count. Each variant runs
in a fresh process and reports its own peak RSS (``ru_maxrss``) and wall time (photos read into the
page cache first; infer.py and the bare loop ``--reps`` times each, order alternated, the faster kept):
- ``infer.py``: the command, reading a COCO images JSON;
- ``bare folder loop``: ``model.predict(source=FOLDER, stream=True)``, Ultralytics' own streaming loader;
- ``list of paths``: ``model.predict(source=[paths], stream=True)``, what infer.py did before (Ultralytics
  decodes every listed file before the first prediction); run up to ``--list-upto`` images only.
Weights: the official YOLOv5n imported for TrashNet's 7 classes; conf 0.001, iou 0.7, max_det 300, batch 8.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from common import ROOT, SHARED, need, record

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    sys.path.insert(0, {root!r})
    from coco2yolo import ultra
    ultra.setup()
    t = time.perf_counter()
    mode, weights, source, imgsz, device, n = sys.argv[1:7]
    if mode == "infer":
        from coco2yolo import inference as predict
        a = predict.get_args_parser().parse_args(["--weights", weights, "--images", source, "--out",
            source + ".preds.json", "--imgsz", imgsz, "--batch", "8", "--device", device])
        predict.run(a)
    else:
        from ultralytics import YOLO
        m = YOLO(weights)
        src = source if mode == "folder" else [l for l in open(source).read().splitlines()]
        for r in m.predict(source=src, stream=True, verbose=False, imgsz=int(imgsz), conf=0.001, iou=0.7,
                           max_det=300, batch=8, device=device):
            len(r.boxes)
    dt = time.perf_counter() - t
    print(json.dumps({{"seconds": dt, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                      "images_per_second": int(n) / dt}}))
""")


def _child(child: Path, mode: str, weights: Path, source: Path, args: argparse.Namespace, n: int) -> dict:
    out = subprocess.run([sys.executable, str(child), mode, str(weights), str(source), str(args.imgsz), args.device,
                          str(n)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--counts", type=int, nargs="+", default=[260, 515, 2000])
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--device", default="cpu")
    p.add_argument("--list-upto", type=int, default=515)
    p.add_argument("--reps", type=int, default=2, help="runs of infer.py and the bare loop, order alternated")
    args = p.parse_args()
    trash = need(SHARED / "datasets" / "trashnet" / "train.json")
    sys.path.insert(0, str(ROOT))
    from coco2yolo import ultra

    ultra.setup()
    from coco2yolo.cocodata import CategoryMap
    from coco2yolo.checkpoint import read_checkpoint, save_ultralytics_checkpoint
    from coco2yolo.checkpoint.legacy import import_legacy
    from coco2yolo.sidecar import write_sidecar

    work = Path(tempfile.mkdtemp(prefix="bench_mem_"))
    data = json.loads(trash.read_text())
    cmap = CategoryMap(data["categories"])
    model, _ = import_legacy(read_checkpoint(need(SHARED / "weights" / "yolov5n.pt")), len(cmap), cmap.names)
    weights = save_ultralytics_checkpoint(model, work / "yolov5n_trashnet.pt")
    write_sidecar(weights, cmap, args.imgsz)
    photos = sorted((trash.parent / "train").glob("*.jpg"))
    for ph in photos:  # into the page cache, so that no variant pays for the first read from disk
        ph.read_bytes()
    child = work / "child.py"
    child.write_text(CHILD.format(root=str(ROOT)))
    result = {"command": "python bench/bench_infer_memory.py --counts " + " ".join(map(str, args.counts))
                         + f" --imgsz {args.imgsz} --device {args.device} --list-upto {args.list_upto} --reps {args.reps}",
              "runs": {}}
    for n in args.counts:
        folder = work / f"n{n}"
        folder.mkdir()
        images = []
        for i in range(n):
            (folder / f"{i:05d}.jpg").symlink_to(photos[i % len(photos)])
            images.append({"id": i, "file_name": f"{i:05d}.jpg", "width": 640, "height": 640})
        (folder / "images.json").write_text(json.dumps({"images": images, "categories": data["categories"]}))
        (work / f"n{n}.txt").write_text("\n".join(str(folder / im["file_name"]) for im in images))
        row: dict = {}
        names = {"infer": "infer.py", "folder": "bare folder loop", "list": "list of paths (old infer.py)"}
        order = [("infer", folder / "images.json"), ("folder", folder)]
        for rep in range(args.reps):  # alternate which goes first; keep each variant's faster run
            for mode, source in order if rep % 2 == 0 else order[::-1]:
                got = _child(child, mode, weights, source, args, n)
                best = row.get(names[mode])
                row.setdefault(f"all seconds, {names[mode]}", []).append(got["seconds"])
                row[names[mode]] = got if best is None or got["seconds"] < best["seconds"] else best
        if n <= args.list_upto:
            row[names["list"]] = _child(child, "list", weights, work / f"n{n}.txt", args, n)
        row["ratio_infer_py_to_bare_seconds"] = row["infer.py"]["seconds"] / row["bare folder loop"]["seconds"]
        print(n, row, flush=True)
        result["runs"][str(n)] = row
    record("infer_memory", result)


if __name__ == "__main__":
    main()
