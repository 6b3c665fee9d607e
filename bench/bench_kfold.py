#!/usr/bin/env python
"""k-fold experiments on TrashNet (real photos) on the CPU, through ``python -m coco2yolo.kfold``.

    python bench/bench_kfold.py defaults [--epochs 4] [--imgsz 256]
    python bench/bench_kfold.py main [--epochs 4] [--kill-at-training 3] [--optimizer AdamW --lr0 0.002 ...]

Data: ../shared/datasets/trashnet (1,825 photos, 7 classes). A seeded 12% of the photos is held out as a
test set whose labels are known (so the final fused test predictions can be scored too); the rest is
split into 3 stratified folds. Every model starts from the official COCO YOLOv5n (imported, head
re-initialised), trains with val off (best = last) and predicts with conf 0.001.

- ``defaults``: the same model trained out of fold under three schedules: the habitual defaults (SGD lr0
  0.01, warm-up 3 epochs, close_mosaic 10, so a run of <= 10 epochs has no mosaic), SGD with warm-up and
  close_mosaic scaled to the run (10% and half of the epochs), and AdamW lr0 0.002 scaled the same way.
  Out-of-fold mAP50 with intervals and paired differences against the habitual defaults.
- ``main``: two models a team would try (320 px with mosaic; 256 px with the weather preset, no mosaic),
  the kfold run killed in the middle of training number ``--kill-at-training`` and run again (what it
  redid), then out of fold, paired: multi-label NMS and TTA against single-label NMS; and the test
  images: each model's fold-merged predictions and the fusion scored on the held-out labels.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from common import OUT, ROOT, SHARED, need, record

PY = sys.executable
LEGACY = SHARED / "weights" / "yolov5n.pt"


def prepare(work: Path, test_share: float = 0.12, seed: int = 0) -> tuple[Path, Path, Path]:
    """train.json (with labels), test.json (images only) and test_gt.json (its labels) in ``work``."""
    src = need(SHARED / "datasets" / "trashnet" / "train.json")
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "train").exists():
        (work / "train").symlink_to(src.parent / "train")
    data = json.loads(src.read_text())
    ids = sorted(im["id"] for im in data["images"])
    test = set(random.Random(seed).sample(ids, round(test_share * len(ids))))
    sub = lambda keep: {**data, "images": [im for im in data["images"] if keep(im["id"])],  # noqa: E731
                        "annotations": [a for a in data["annotations"] if keep(a["image_id"])]}
    (work / "train.json").write_text(json.dumps(sub(lambda i: i not in test)))
    gt = sub(lambda i: i in test)
    (work / "test_gt.json").write_text(json.dumps(gt))
    (work / "test.json").write_text(json.dumps({k: v for k, v in gt.items() if k != "annotations"}))
    return work / "train.json", work / "test.json", work / "test_gt.json"


def experiment(path: Path, train: Path, test: Path | None, out: Path, models: list[dict], predict: dict,
               fuse: dict | None = None) -> Path:
    import yaml

    doc = {"train": str(train), **({"test": str(test)} if test else {}), "out": str(out),
           "convert": {"clean": True, "folds": 3, "seed": 0}, "models": models, "predict": predict,
           "bootstrap": 1000, **({"fuse": fuse} if fuse else {})}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def kfold(exp: Path, *extra: str, wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    env = {**os.environ, "COCO2YOLO_OFFLINE": "1"}
    cmd = [PY, "-m", "coco2yolo.kfold", str(exp), "--devices", "cpu", *extra]
    if wait:
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def log_rows(out: Path) -> list[list[str]]:
    p = out / "commands.log"
    return [ln.split("\t") for ln in p.read_text().splitlines()] if p.exists() else []


def evaluate(gt: Path, files: list[Path], json_out: Path) -> dict:
    subprocess.run([PY, str(ROOT / "evaluate.py"), "--gt", str(gt), *map(str, files), "--json", str(json_out)],
                   check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(json_out.read_text())


def brief(metrics: dict) -> dict:
    return {"files": [{"file": Path(f["path"]).stem, "mAP50": f["mAP50"], "ci95": f["mAP50_ci95"]}
                      for f in metrics["files"]],
            "paired_vs_first": [{"b": Path(d["b"]).stem, "delta_mAP50": d["delta_mAP50"], "ci95": d.get("ci95")}
                                for d in metrics["differences"]]}


def base_model(epochs: int, imgsz: int, **kw) -> dict:
    return {"model": "yolov5nu.yaml", "weights": str(LEGACY), "epochs": epochs, "imgsz": imgsz, "batch": 16,
            "workers": 2, "val": False, "plots": False, "seed": 0, **kw}


def phase_defaults(args) -> None:
    work = OUT / "kfold_trashnet"
    train, _, _ = prepare(work)
    out = work / "defaults"
    e, s = args.epochs, args.imgsz
    scaled = {"warmup_epochs": round(0.1 * e, 2), "close_mosaic": e // 2}
    models = [{"name": "habit_sgd", **base_model(e, s, optimizer="SGD", lr0=0.01, warmup_epochs=3.0,
                                                 close_mosaic=10)},
              {"name": "scaled_sgd", **base_model(e, s, optimizer="SGD", lr0=0.01, **scaled)},
              {"name": "scaled_adamw", **base_model(e, s, optimizer="AdamW", lr0=0.002, **scaled)}]
    exp = experiment(work / "defaults.yaml", train, None, out, models, {"conf": 0.001},
                     fuse={"methods": ["wbf"], "iou": [0.55], "weights": [1], "passes": 0})
    t0 = time.time()
    kfold(exp)
    summary = json.loads((out / "summary.json").read_text())
    record("kfold_defaults", {
        "command": f"python bench/bench_kfold.py defaults --epochs {e} --imgsz {s}", "seconds": time.time() - t0,
        "images_out_of_fold": summary["images"], "models": {m["name"]: {
            "mAP50": m["mAP50"], "ci95": m["mAP50_ci95"], "options": m["options"],
            "seconds_per_epoch": m["seconds_per_epoch"]} for m in summary["models"]},
        "paired_vs_habit": [{"b": d["b"], "delta_mAP50": d["delta_mAP50"], "ci95": d.get("ci95")}
                            for d in summary["differences"]]})


def phase_main(args) -> None:
    work = OUT / "kfold_trashnet"
    train, test, test_gt = prepare(work)
    out = work / "main"
    e = args.epochs
    sched = {"optimizer": args.optimizer, "lr0": args.lr0, "warmup_epochs": args.warmup_epochs}
    models = [{"name": "v5n_320_mosaic", **base_model(e, 320, close_mosaic=args.close_mosaic, **sched)},
              {"name": "v5n_256_weather", **base_model(e, 256, mosaic=0.0, augment_preset="weather", **sched)}]
    exp = experiment(work / "main.yaml", train, test, out, models, {"conf": 0.001})
    result: dict = {"command": f"python bench/bench_kfold.py main --epochs {e} --kill-at-training "
                               f"{args.kill_at_training} --optimizer {args.optimizer} --lr0 {args.lr0} "
                               f"--warmup-epochs {args.warmup_epochs} --close-mosaic {args.close_mosaic}",
                    "models": models}
    t0 = time.time()
    proc = kfold(exp, wait=False)  # killed in the middle of a training, then run again
    while True:
        ends = [r for r in log_rows(out) if r[3] == "END" and r[4].startswith("train/")]
        starts = [r for r in log_rows(out) if r[3] == "START" and r[4].startswith("train/")]
        if len(starts) >= args.kill_at_training and len(ends) == args.kill_at_training - 1:
            time.sleep(args.kill_after)
            break
        if proc.poll() is not None:
            raise SystemExit("the experiment ended before the kill")
        time.sleep(2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = log_rows(out)
    done_before = {r[4] for r in before if r[3] == "END" and r[5].startswith("exit 0")}
    killed_in = starts[-1][4]
    t1 = time.time()
    kfold(exp)
    after = log_rows(out)[len(before):]
    restarted = [r[4] for r in after if r[3] == "START"]
    result["resume"] = {"killed_after_seconds": t1 - t0, "killed_during": killed_in,
                        "jobs_done_before_the_kill": sorted(done_before),
                        "redone_after_the_kill": sorted(set(restarted) & done_before),
                        "resumed_with_--resume": [r[4] for r in after if r[3] == "START" and "--resume" in r[5]],
                        "jobs_run_after_the_kill": len(restarted)}
    result["seconds"] = time.time() - t0
    summary = json.loads((out / "summary.json").read_text())
    result["out_of_fold"] = {"images": summary["images"], "models": [
        {"name": m["name"], "mAP50": m["mAP50"], "ci95": m["mAP50_ci95"], "seconds_per_epoch": m["seconds_per_epoch"]}
        for m in summary["models"]], "differences": summary["differences"], "fusion": summary.get("fusion"),
        "compute": summary["compute"]}
    print(json.dumps(result["resume"], indent=1), flush=True)

    # prediction settings, paired out of fold: single-label NMS (the experiment's predictions when the figures in
    # BENCHMARKS.md were made, and what it runs with predict: {multi_label: false}) vs multi-label vs TTA
    variants = {"multi_label": ["--multi-label"], "tta": ["--tta", "--no-multi-label"]}
    for m in models:
        name = m["name"]
        files = [work / "variants" / f"{name}_single_label_oof.json"]
        for v, flags in {"single_label": ["--no-multi-label"], **variants}.items():
            parts = []
            for f in range(3):
                p = work / "variants" / f"{name}_{v}_fold{f}.json"
                p.parent.mkdir(parents=True, exist_ok=True)
                subprocess.run([PY, str(ROOT / "infer.py"), "--weights", str(out / "weights" / f"{name}_fold{f}.pt"),
                                "--images", str(out / "data" / f"fold{f}" / "val.json"), "--out", str(p),
                                "--device", "cpu", "--conf", "0.001", *flags], check=True, capture_output=True, cwd=ROOT)
                parts.append(json.loads(p.read_text()))
            merged = work / "variants" / f"{name}_{v}_oof.json"
            merged.write_text(json.dumps([r for part in parts for r in part]))
            if v != "single_label":
                files.append(merged)
        result.setdefault("prediction_settings", {})[name] = brief(
            evaluate(out / "oof" / "gt.json", files, work / "variants" / f"{name}_metrics.json"))
        print(name, json.dumps(result["prediction_settings"][name]), flush=True)
    # the test images, whose labels were held out: fold-merged models and the fusion
    result["test"] = brief(evaluate(test_gt, [out / "test" / f"{m['name']}.json" for m in models]
                                    + [out / "ensemble_test.json"], work / "test_metrics.json"))
    record("kfold_main", result)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("phase", choices=("defaults", "main"))
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--imgsz", type=int, default=256, help="defaults phase: image size")
    p.add_argument("--kill-at-training", type=int, default=3)
    p.add_argument("--kill-after", type=float, default=60.0, help="seconds into that training")
    p.add_argument("--optimizer", default="AdamW")
    p.add_argument("--lr0", type=float, default=0.002)
    p.add_argument("--warmup-epochs", type=float, default=0.4)
    p.add_argument("--close-mosaic", type=int, default=2)
    args = p.parse_args()
    need(LEGACY)
    (phase_defaults if args.phase == "defaults" else phase_main)(args)


if __name__ == "__main__":
    main()
