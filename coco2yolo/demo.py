"""``make demo``: the whole pipeline on the built-in sample, on the CPU, in a few minutes.

sample -> convert (cleaning, stratified split) -> train two small models -> predict val and test
-> ensemble (WBF) -> evaluate with bootstrap intervals -> a table, plots and drawings.
Each step runs the same command a user would type (printed before it runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from coco2yolo import cli, ultra
from coco2yolo.commands import script_command
from coco2yolo.errors import UserError

MODELS = ("yolov5nu.yaml", "yolov8n.yaml")


def _run(cmd: list[str], log: Path | None = None, results: Path | None = None, epochs: int = 0,
         env: dict[str, str] | None = None) -> None:
    """Run one pipeline command, echoing it; fail with its last lines if it fails. ``results``: a training's
    results.csv, followed for a line per epoch."""
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    if log is None:
        rc = subprocess.call(cmd, env=env)
    else:
        with open(log, "w") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
            try:
                rc = _follow_epochs(proc, results, epochs) if results else proc.wait()
            except BaseException:
                proc.terminate()
                proc.wait()
                raise
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:] if log else []
        raise UserError(f"step failed (exit {rc}): {shlex.join(cmd)}" + ("\n" + "\n".join(tail) if tail else ""))


def _follow_epochs(proc: subprocess.Popen, results: Path, epochs: int) -> int:
    """While a training runs, one line per finished epoch (from Ultralytics' results.csv): its validation mAP50,
    the seconds an epoch takes, and the time left for this model."""
    import csv

    shown = 0
    t0 = time.time()
    while True:
        done = proc.poll() is not None
        try:
            with open(results, newline="") as fh:
                rows = list(csv.DictReader(fh))
        except OSError:
            rows = []
        for row in rows[shown:]:
            k = len(rows[:shown]) + 1
            per = (time.time() - t0) / k
            m = row.get("metrics/mAP50(B)", "").strip()
            left = cli.format_hours(max(epochs - k, 0) * per / 3600)
            print(f"  epoch {k}/{epochs}: validation mAP50 {float(m):.3f}, {per:.1f} s an epoch, about {left} left "
                  "for this model" if m else f"  epoch {k}/{epochs}", flush=True)
            shown += 1
        if done:
            return proc.returncode
        time.sleep(1)


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
    p.add_argument("--exist-ok", action="store_true",
                   help="replace an earlier demo in --out made with other options (by default it is refused)")
    return p


OPTIONS = ("data", "train_images", "test_images", "size", "epochs", "imgsz", "models", "bootstrap")


def _claim(out: Path, args: argparse.Namespace) -> None:
    """Refuse to replace an earlier demo made with other options (its weights would be lost) unless --exist-ok;
    record these options in out/demo.json."""
    from coco2yolo.fileio import make_dirs, write_json

    mine = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k in OPTIONS}
    try:
        earlier = json.loads((out / "demo.json").read_text())
    except (OSError, ValueError):
        earlier = None
    if earlier is not None and earlier != mine and not args.exist_ok:
        diff = ", ".join(f"{k} {earlier.get(k)} -> {mine[k]}" for k in mine if earlier.get(k) != mine[k])
        raise UserError(f"{out} holds a demo run with other options ({diff}); choose another --out, or pass "
                        "--exist-ok to replace it")
    make_dirs(out)
    write_json(out / "demo.json", mine, indent=2)


def main(args: argparse.Namespace) -> int:
    t0 = time.time()
    py = sys.executable
    os.environ["COCO2YOLO_OFFLINE"] = "1"  # the demo never touches the network (its subprocesses inherit this)
    out = args.out.absolute()
    _claim(out, args)
    # Ultralytics' run folders go inside the demo's folder: an interrupted demo leaves nothing in runs/train
    env = {**os.environ, "COCO2YOLO_RUNS": str(out / "runs")}
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
              "--patience", str(args.epochs), "--exist-ok"], log=out / f"train_{name}.log",
             results=out / "runs" / "train" / name / "results.csv", epochs=args.epochs, env=env)
        weights.append(out / "weights" / f"{name}.pt")
        side = json.loads((out / "weights" / f"{name}.json").read_text())
        print(f"  {name}: validation mAP50 {side['metrics'].get('metrics/mAP50(B)', float('nan')):.3f} "
              f"(Ultralytics' metric) after {side.get('epochs_done')} epochs, {side['train_seconds']:.0f} s "
              f"-> {out / 'weights' / (name + '.pt')}", flush=True)
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
          "wbf", "--out", str(fused_test), "--submission", str(out / "ensemble_submission.csv")])
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
          f"submission: {out / 'ensemble_submission.csv'}   weights: {out / 'weights'}   logs: {out}/train_*.log   "
          f"total {time.time() - t0:.0f} s")
    best = max(f["mAP50"] for f in m["files"])
    if best < args.min_map50:
        print(f"no model reached mAP50 {args.min_map50} on the sample's validation split (best {best:.3f}): train "
              f"longer (--epochs {2 * args.epochs}), on more images (--train-images {2 * args.train_images}) or at a "
              f"larger size (--imgsz {args.imgsz + 64}), or lower --min-map50", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser))
