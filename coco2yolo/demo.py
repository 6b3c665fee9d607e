"""``make demo``: the whole pipeline on the built-in sample, on the CPU, in a few minutes.

sample -> convert (cleaning, stratified split) -> train two small models -> predict val and test
-> ensemble (WBF) -> evaluate with bootstrap intervals -> a table, plots and drawings.
Each step runs the same command a user would type (printed before it runs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from coco2yolo import cli, ultra
from coco2yolo.commands import script_command
from coco2yolo.errors import UserError

MODELS = ("yolov5nu.yaml", "yolov8n.yaml")


def _run(cmd: list[str], log: Path | None = None) -> None:
    """Run one pipeline command, echoing it; fail with its last lines if it fails."""
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    if log is None:
        rc = subprocess.call(cmd)
    else:
        with open(log, "w") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
            rc = _wait_with_progress(proc, log)
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:] if log else []
        raise UserError(f"step failed (exit {rc}): {shlex.join(cmd)}" + ("\n" + "\n".join(tail) if tail else ""))


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _wait_with_progress(proc: subprocess.Popen, log: Path) -> int:
    """While a training runs, show its epoch and the latest validation mAP50 on one line."""
    shown = ""
    while proc.poll() is None:
        time.sleep(2)
        lines = [ANSI.sub("", ln).strip() for ln in log.read_text(errors="replace").replace("\r", "\n").splitlines()]
        epochs = [ln.split()[0] for ln in lines if re.match(r"^\d+/\d+\s", ln)]
        vals = [ln.split() for ln in lines if ln.startswith("all ")]
        status = f"  epoch {epochs[-1]}" if epochs else "  starting"
        if vals and len(vals[-1]) >= 7:
            status += f", validation mAP50 {vals[-1][5]}"
        if status != shown:
            print(f"\r{status:<60}", end="", flush=True)
            shown = status
    print(flush=True)
    return proc.returncode


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog="python -m coco2yolo.demo", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ultra.runs_dir() / "demo", help="where everything goes (runs/demo)")
    p.add_argument("--data", type=Path, default=ultra.PROJECT_ROOT / "data" / "sample", help="sample dataset folder")
    p.add_argument("--train-images", type=int, default=200, help="sample training images (200)")
    p.add_argument("--test-images", type=int, default=20, help="sample test images (20)")
    p.add_argument("--size", type=int, default=256, help="sample image size in px (256)")
    p.add_argument("--epochs", type=int, default=30, help="epochs per model (30)")
    p.add_argument("--imgsz", type=int, default=192, help="training and inference size (192)")
    p.add_argument("--models", nargs=2, default=list(MODELS), help="the two models to train (built from yaml)")
    p.add_argument("--bootstrap", type=int, default=1000, help="resamples for the intervals (1000)")
    p.add_argument("--min-map50", type=float, default=0.5,
                   help="exit with status 1 if no model reaches this validation mAP50 (0.5)")
    return p


def main(args: argparse.Namespace) -> int:
    t0 = time.time()
    py = sys.executable
    os.environ["COCO2YOLO_OFFLINE"] = "1"  # the demo never touches the network (its subprocesses inherit this)
    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    data = args.data.absolute()
    print(f"coco2yolo demo: everything is written under {out} (sample dataset: {data})")
    _run([py, "-m", "coco2yolo.sample", str(data), "--train", str(args.train_images), "--test",
          str(args.test_images), "--size", str(args.size)])
    ds = out / "yolo"
    _run([py, "-m", "coco2yolo", str(data / "train.json"), "--out", str(ds), "--clean", "--val-fraction", "0.2",
          "--seed", "0"])
    weights, names = [], []
    for model in args.models:
        name = f"demo_{Path(model).stem}"
        names.append(name)
        _run([*script_command("train"), "--data", str(ds / "data.yaml"), "--model", model, "--epochs",
              str(args.epochs), "--imgsz", str(args.imgsz), "--batch", "16", "--device", "cpu", "--workers", "2",
              "--seed", "0", "--name", name, "--weights-dir", str(out / "weights"), "--optimizer", "AdamW",
              "--lr0", "0.002", "--warmup-epochs", "1", "--close-mosaic", str(max(1, args.epochs // 3)),
              "--patience", str(args.epochs), "--exist-ok"], log=out / f"train_{name}.log")
        weights.append(out / "weights" / f"{name}.pt")
    preds_val, preds_test = [], []
    for name, w in zip(names, weights):
        pv, pt = out / f"{name}_val.json", out / f"{name}_test.json"
        _run([*script_command("predict"), "--weights", str(w), "--images", str(ds / "val.json"), "--out", str(pv),
              "--device", "cpu"])
        vis = ["--save-vis", str(out / "vis" / name), "--vis-max", "8"] if name == names[0] else []
        _run([*script_command("predict"), "--weights", str(w), "--images", str(data / "test.json"), "--out", str(pt),
              "--device", "cpu", "--submission", str(out / f"{name}_submission.csv"), *vis])
        preds_val.append(pv)
        preds_test.append(pt)
    fused_val, fused_test = out / "ensemble_val.json", out / "ensemble_test.json"
    _run([*script_command("fuse"), *map(str, preds_val), "--images", str(ds / "val.json"), "--method", "wbf",
          "--out", str(fused_val)])
    _run([*script_command("fuse"), *map(str, preds_test), "--images", str(data / "test.json"), "--method",
          "wbf", "--out", str(fused_test)])
    metrics = out / "metrics.json"
    _run([*script_command("evaluate"), "--gt", str(ds / "val.json"), *map(str, preds_val), str(fused_val),
          "--json", str(metrics), "--plot", str(out / "plots"), "--bootstrap", str(args.bootstrap)])
    m = json.loads(metrics.read_text())
    print("\n" + "=" * 72)
    print(f"{'validation split of the sample':<40} {'mAP50':>8}   95% interval")
    for label, f in zip([*args.models, "ensemble (WBF)"], m["files"]):
        ci = f["mAP50_ci95"] or [float("nan")] * 2
        print(f"{label:<40} {f['mAP50']:>8.4f}   [{ci[0]:.4f}, {ci[1]:.4f}]")
    print("=" * 72)
    print(f"plots: {out / 'plots'}   drawings: {out / 'vis'}   test predictions: {fused_test}\n"
          f"weights: {out / 'weights'}   logs: {out}/train_*.log   total {time.time() - t0:.0f} s")
    best = max(f["mAP50"] for f in m["files"])
    if best < args.min_map50:
        print(f"no model reached mAP50 {args.min_map50} on the sample's validation split", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser()))
