#!/usr/bin/env python
"""Training benchmark on real photos (TrashNet, ../shared/datasets/trashnet), with the project's
own seeded split: (a) yolov5nu.yaml from scratch, (b) started from the official COCO-pretrained
YOLOv5n imported by the legacy importer. Same settings for both; mAP50 on the validation split
scored by evaluate.py (with the paired difference), and seconds per epoch.

CPU (as recorded in BENCHMARKS.md; about 15 minutes a run on 2 cores):
    python bench/bench_train.py --device cpu --imgsz 320 --epochs 9
GPU variant (sized to run in under 8 minutes on one H100-class GPU):
    python bench/bench_train.py --device 0 --imgsz 640 --epochs 30 --batch 32 --workers 8
Every step is the project's own command, run as a subprocess; logs go to bench/out/train_*.
"""

import argparse
import json
import subprocess
import sys
import time

from common import OUT, ROOT, SHARED, need, record


def run(cmd: list[str], log: str) -> float:
    t = time.perf_counter()
    with open(OUT / log, "w") as fh:
        rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    if rc != 0:
        sys.exit(f"failed ({rc}): {' '.join(cmd)}; see {OUT / log}")
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--epochs", type=int, default=9)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--close-mosaic", type=int, default=3)
    p.add_argument("--reuse", action="store_true",
                   help="reuse a finished run whose sidecar shows the same settings (e.g. after an interruption)")
    args = p.parse_args()
    trash = need(SHARED / "datasets" / "trashnet" / "train.json")
    legacy = need(SHARED / "weights" / "yolov5n.pt")
    OUT.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    tag = f"{args.device.replace(',', '-')}_{args.imgsz}"
    ds = OUT / f"trashnet_yolo_{tag}"
    run([py, "-m", "coco2yolo", str(trash), "--out", str(ds), "--clean", "--val-fraction", "0.2", "--seed", "0"],
        f"train_convert_{tag}.log")
    common = ["--data", str(ds / "data.yaml"), "--epochs", str(args.epochs), "--imgsz", str(args.imgsz),
              "--batch", str(args.batch), "--device", args.device, "--workers", str(args.workers), "--seed", "0",
              "--optimizer", "AdamW", "--lr0", "0.002", "--warmup-epochs", "1",
              "--close-mosaic", str(args.close_mosaic), "--patience", str(args.epochs),
              "--weights-dir", str(OUT / "weights")]
    runs = {"scratch": ["--model", "yolov5nu.yaml"], "pretrained": ["--weights", str(legacy)]}
    result = {"command": "python bench/bench_train.py " + " ".join(sys.argv[1:]), "settings": vars(args), "runs": {}}
    preds = []
    for name, extra in runs.items():
        run_name = f"trashnet_{name}_{tag}"
        side_path = OUT / "weights" / f"{run_name}.json"
        wanted = {"epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch, "device": args.device,
                  "close_mosaic": args.close_mosaic, "seed": 0, "optimizer": "AdamW", "lr0": 0.002}
        old = json.loads(side_path.read_text()) if args.reuse and side_path.exists() else None
        if old and all(old["config"].get(k) == v for k, v in wanted.items()):
            wall = old["train_seconds"]
            print(f"reusing the finished run {run_name}", flush=True)
        else:
            wall = run([py, "train_yolo.py", *common, *extra, "--name", run_name], f"train_{run_name}.log")
        side = json.loads(side_path.read_text())
        pred = OUT / f"{run_name}_val.json"
        run([py, "infer.py", "--weights", str(OUT / "weights" / f"{run_name}.pt"), "--images", str(ds / "val.json"),
             "--out", str(pred), "--device", args.device], f"infer_{run_name}.log")
        preds.append(pred)
        result["runs"][name] = {"origin": side["origin"], "train_seconds": round(wall, 1),
                                "seconds_per_epoch": side["seconds_per_epoch"],
                                "ultralytics_val_mAP50": side["metrics"].get("metrics/mAP50(B)")}
    metrics = OUT / f"train_metrics_{tag}.json"
    run([py, "evaluate.py", "--gt", str(ds / "val.json"), *map(str, preds), "--json", str(metrics)],
        f"train_evaluate_{tag}.log")
    m = json.loads(metrics.read_text())
    for name, f in zip(runs, m["files"]):
        result["runs"][name].update(mAP50=f["mAP50"], mAP50_ci95=f["mAP50_ci95"], mAP50_95=f["mAP50_95"])
    result["pretrained_minus_scratch"] = m["differences"][0]
    result["val_images"] = m["images"]
    record(f"train_{tag}", result)


if __name__ == "__main__":
    main()
