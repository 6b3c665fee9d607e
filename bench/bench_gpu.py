#!/usr/bin/env python
"""Training and inference throughput on one CUDA GPU, next to Ultralytics' own training in the same run.

    python bench/bench_gpu.py [--out bench/out/gpu.json] [--model yolov8s.yaml] [--images 512] [--epochs 3]
    python bench/bench_gpu.py --dry        # the same steps on the CPU at toy size (a test runs this)

Sized to finish within 8 minutes on one H100-class GPU. Data: the built-in synthetic sample (nothing to
download) at 1024 px. For each image size (640 and 1024):

- ``train_yolo.py`` (AMP on) and, as the baseline, Ultralytics' ``YOLO(model).train`` with the same data and
  settings, each in its own process: training images per second over the epochs after the first (from each
  run's results.csv), and the peak GPU memory each process reports;
- ``infer.py`` on the validation images, and a bare ``model.predict`` loop as the baseline: images per second.

Then the plan of a time budget on this GPU (issue 24): ``train_yolo.py --time 4m`` with the image size left open
(pretrained weights where ``--weights`` names them): the candidates the probes measured, the epochs each would
reach, the one chosen, and the chosen run's measured seconds per epoch against the plan's projection. With
``--plan-data TRAIN.json`` (a COCO file of real photos, e.g. bench_budget.py's 600-photo TrashNet subset) the plan
step trains there instead, converted as bench_budget.py converts it (``--val-fraction 0.1 --seed 0``) with the
project's default model, as bench_budget.py's ``plan`` step does, and ``--plan-baseline`` adds the same budget with
``--no-plan`` (today's defaults, Ultralytics' meaning of ``time``). ``--keep DIR`` copies their weights and sidecars
there, so the 400 held-out photos can be scored where they are (``infer.py --weights DIR/gpu_planned.pt --images
bench/out/budget/data/test.json``, then ``evaluate.py`` beside bench_budget.py's CPU predictions). A machine lent for
a few minutes (issue 24's GPU check):

    python bench/bench_gpu.py --sizes 1024 --images 256 --epochs 3 --plan-budget 90s \
        --plan-data bench/out/budget/data/train.json --plan-baseline --weights ../shared/weights/yolov5n.pt --keep OUT

The JSON file is rewritten after every step, so a run cut short keeps what it measured.

Writes one JSON file (``--out``), with the machine, the versions, every figure and its baseline.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BASELINE = r"""
import json, sys, time
from coco2yolo import ultra
ultra.setup()
import torch
from ultralytics import YOLO
args = json.loads(sys.argv[1])
m = YOLO(args["model"])
m.train(data=args["data"], epochs=args["epochs"], imgsz=args["imgsz"], batch=args["batch"], device=args["device"],
        workers=args["workers"], project=args["project"], name=args["name"], exist_ok=True, plots=False, val=True,
        amp=args["amp"], seed=0, verbose=False)
peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
print("PEAK_GB", json.dumps(peak))
"""

PREDICT = r"""
import json, sys, time
from coco2yolo import ultra
ultra.setup()
from coco2yolo.checkpoint import load_yolo
from coco2yolo.images import read_image
args = json.loads(sys.argv[1])
model, _ = load_yolo(args["weights"])
imgs = [read_image(p)[0] for p in args["files"]]
model.predict(source=imgs[: args["batch"]], imgsz=args["imgsz"], device=args["device"], batch=args["batch"], verbose=False,
              conf=0.001, half=args["half"])
t = time.perf_counter()
for i in range(0, len(imgs), args["batch"]):
    model.predict(source=imgs[i:i + args["batch"]], imgsz=args["imgsz"], device=args["device"], batch=args["batch"],
                  verbose=False, conf=0.001, max_det=300, half=args["half"])
print("IMAGES_PER_S", len(imgs) / (time.perf_counter() - t))
"""


def _run(cmd: list[str], env: dict[str, str], log: Path, timeout: float) -> str:
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
                              timeout=timeout)
        fh.write(proc.stdout)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    return proc.stdout


def _images_per_s(results_csv: Path, n_train: int) -> tuple[float, list[float]]:
    with open(results_csv, newline="") as fh:
        times = [float(r["time"]) for r in csv.DictReader(fh)]
    per_epoch = [b - a for a, b in zip([0.0] + times, times)]
    steady = per_epoch[1:] or per_epoch  # the first epoch carries the dataloader's and cuDNN's start
    return n_train / (sum(steady) / len(steady)), per_epoch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "gpu.json"))
    p.add_argument("--model", default="yolov8s.yaml")
    p.add_argument("--images", type=int, default=512, help="training images (the sample at 1024 px)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--sizes", type=int, nargs="+", default=[640, 1024])
    p.add_argument("--dry", action="store_true", help="CPU, 16 images of 64 px, 2 epochs at 64 px: checks the steps")
    p.add_argument("--work", default=None, help="working folder (default: a new one under /tmp)")
    p.add_argument("--plan-budget", default="4m", help="the budget of the plan step (--time of a run with the size open)")
    p.add_argument("--weights", default=None, help="pretrained weights for the plan step (e.g. ../shared/weights/yolov5n.pt)")
    p.add_argument("--plan-data", default=None, help="a COCO training file of real photos for the plan step")
    p.add_argument("--keep", default=None, help="copy the plan step's weights and sidecar into this folder")
    p.add_argument("--skip-throughput", action="store_true", help="only the plan step")
    p.add_argument("--plan-baseline", action="store_true",
                   help="with --plan-data: also the same budget with --no-plan (today's defaults: epochs only)")
    p.add_argument("--step-timeout", type=float, default=3600, help="seconds each training may take")
    args = p.parse_args()
    import tempfile

    import torch

    if args.dry:
        args.images, args.epochs, args.batch, args.workers, args.sizes = 16, 2, 8, 0, [64]
        args.model = "yolov5nu.yaml"
    device = "cpu" if args.dry or not torch.cuda.is_available() else "0"
    if device == "cpu" and not args.dry:
        raise SystemExit("no CUDA GPU here: run on a GPU machine, or --dry to check the steps on the CPU")
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_gpu_"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "COCO2YOLO_OFFLINE": "1", "COCO2YOLO_RUNS": str(work / "runs")}
    from coco2yolo.sample import make_sample

    t_start = time.time()
    size = 64 if args.dry else 1024
    sample = make_sample(work / "sample", n_train=int(args.images * 1.25), n_test=8, size=size, seed=0)
    ds = work / "ds"
    _run([sys.executable, "-m", "coco2yolo", str(sample), "--out", str(ds), "--val-fraction", "0.2", "--seed", "0"],
         env, work / "convert.log", 600)
    n_train = len(json.loads((ds / "train.json").read_text())["images"])
    val_files = [str((ds / im["file_name"]).resolve()) for im in json.loads((ds / "val.json").read_text())["images"]]
    amp = device != "cpu"
    result: dict = {"command": "python bench/bench_gpu.py " + " ".join(sys.argv[1:]), "device": device,
                    "gpu": torch.cuda.get_device_name(0) if device != "cpu" else None,
                    "torch": torch.__version__, "model": args.model, "train_images": n_train,
                    "epochs": args.epochs, "batch": args.batch, "workers": args.workers, "amp": amp, "sizes": {}}
    import ultralytics

    result["ultralytics"] = ultralytics.__version__

    def save() -> None:
        result["seconds"] = time.time() - t_start
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(args.out).with_suffix(".part")
        tmp.write_text(json.dumps(result, indent=2))
        tmp.replace(args.out)

    def throughput(imgsz: int) -> None:
        r: dict = {}
        name = f"ours_{imgsz}"
        _run([sys.executable, "train_yolo.py", "--data", str(ds / "data.yaml"), "--model", args.model, "--epochs",
              str(args.epochs), "--imgsz", str(imgsz), "--batch", str(args.batch), "--device", device, "--workers",
              str(args.workers), "--name", name, "--weights-dir", str(work / "weights"), "--exist-ok", "--no-plots",
              "--amp", "true" if amp else "false", "--patience", "1000"], env, work / f"{name}.log", args.step_timeout)
        side = json.loads((work / "weights" / f"{name}.json").read_text())
        r["train_images_per_s"], r["train_epoch_seconds"] = _images_per_s(Path(side["run_dir"]) / "results.csv", n_train)
        r["train_peak_gpu_gb"] = side.get("gpu_peak_memory_gb")
        base = f"ultralytics_{imgsz}"
        out = _run([sys.executable, "-c", BASELINE, json.dumps({
            "model": args.model, "data": str(ds / "data.yaml"), "epochs": args.epochs, "imgsz": imgsz,
            "batch": args.batch, "device": device, "workers": args.workers, "project": str(work / "runs" / "base"),
            "name": base, "amp": amp})], env, work / f"{base}.log", args.step_timeout)
        r["baseline_train_images_per_s"], r["baseline_train_epoch_seconds"] = _images_per_s(
            work / "runs" / "base" / base / "results.csv", n_train)
        r["baseline_train_peak_gpu_gb"] = json.loads(out.split("PEAK_GB", 1)[1].split()[0])
        r["train_ratio_ours_to_ultralytics"] = r["train_images_per_s"] / r["baseline_train_images_per_s"]
        weights = work / "weights" / f"{name}.pt"
        t = time.perf_counter()
        _run([sys.executable, "infer.py", "--weights", str(weights), "--images", str(ds / "val.json"), "--out",
              str(work / f"preds_{imgsz}.json"), "--device", device, "--batch", str(args.batch)]
             + (["--half"] if amp else []), env, work / f"infer_{imgsz}.log", 1800)
        infer_wall = time.perf_counter() - t
        rate = open(work / f"infer_{imgsz}.log").read().rsplit("(", 1)[-1].split(" images/s")[0]
        r["infer_images_per_s"] = float(rate)
        r["infer_command_seconds"] = infer_wall
        out = _run([sys.executable, "-c", PREDICT, json.dumps({
            "weights": str(weights), "files": val_files, "imgsz": imgsz, "device": device, "batch": args.batch,
            "half": amp})], env, work / f"predict_{imgsz}.log", 1800)
        r["baseline_infer_images_per_s"] = float(out.split("IMAGES_PER_S", 1)[1].split()[0])
        r["infer_ratio_ours_to_bare_predict"] = r["infer_images_per_s"] / r["baseline_infer_images_per_s"]
        result["sizes"][str(imgsz)] = r
        print(imgsz, json.dumps(r), flush=True)

    for imgsz in ([] if args.skip_throughput else args.sizes):
        try:
            throughput(imgsz)
        except (SystemExit, subprocess.TimeoutExpired, OSError, ValueError, KeyError) as err:
            result["sizes"][str(imgsz)] = {"error": str(err)}
            print(imgsz, "failed:", err, flush=True)
        save()
    budget = "10s" if args.dry else args.plan_budget
    plan_args = ["--weights", args.weights] if args.weights else []
    if args.plan_data:  # real photos, as bench_budget.py's plan step: its split, its default model, its seed
        real = work / "real"
        _run([sys.executable, "-m", "coco2yolo", args.plan_data, "--out", str(real), "--val-fraction", "0.1", "--seed",
              "0"], env, work / "convert_real.log", 600)
        plan_args += ["--data", str(real / "data.yaml"), "--seed", "0"] + (["--model", args.model] if args.dry else [])
        result["plan_data"] = args.plan_data
    else:
        plan_args += ["--data", str(ds / "data.yaml"), "--model", args.model, "--batch", str(args.batch)]
    names = ["planned"] + (["noplan"] if args.plan_data and args.plan_baseline else [])
    for name in names:
        _run([sys.executable, "train_yolo.py", *plan_args, "--time", budget, "--device", device, "--workers",
              str(args.workers), "--name", name, "--weights-dir", str(work / "weights"), "--exist-ok", "--no-plots",
              *(["--no-plan"] + (["--imgsz", "64"] if args.dry else []) if name == "noplan" else [])], env,
             work / f"{name}.log", args.step_timeout)
        if args.keep:
            Path(args.keep).mkdir(parents=True, exist_ok=True)
            for suffix in (".pt", ".json"):
                shutil.copy2(work / "weights" / f"{name}{suffix}", Path(args.keep) / f"gpu_{name}{suffix}")
        side = json.loads((work / "weights" / f"{name}.json").read_text())
        if name == "noplan":
            result["noplan"] = {"budget": budget, "imgsz": side.get("imgsz"), "epochs_done": side.get("epochs_done"),
                                "measured_seconds_per_epoch": side.get("seconds_per_epoch")}
        else:
            plan = side.get("plan") or {}
            chosen = plan.get("chosen") or {}
            result["plan"] = {"budget": budget, "candidates": plan.get("candidates"), "chosen": chosen,
                              "why": plan.get("why"), "probe_seconds": plan.get("probe_seconds"),
                              "epochs_done": side.get("epochs_done"),
                              "measured_seconds_per_epoch": side.get("seconds_per_epoch"),
                              "projected_seconds_per_epoch": chosen.get("seconds_per_epoch")}
        print(name, json.dumps(result["noplan" if name == "noplan" else "plan"]), flush=True)
        save()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
