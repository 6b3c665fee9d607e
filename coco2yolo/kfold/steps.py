"""The experiment's own steps: the out-of-fold ground truth, merging each model's folds, the summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coco2yolo.cocodata import load_dataset
from coco2yolo.errors import UserError
from coco2yolo.fileio import atomic_paths, dumps_json, load_json, write_json
from coco2yolo.kfold.experiment import Experiment
from coco2yolo.results import load_results, save_results


def _fold_sets(exp: Experiment) -> list[dict[str, Any]]:
    return [load_dataset(exp.out / "data" / f"fold{f}" / "val.json") for f in range(exp.folds)]


def oof_gt(exp: Experiment) -> None:
    """oof/gt.json: every fold's validation images and boxes (the whole cleaned training set, each image
    once, file_name absolute), and oof/folds.json: the fold of every image."""
    vals = _fold_sets(exp)
    seen: dict[int, int] = {}
    images, anns = [], []
    for f, val in enumerate(vals):
        root = exp.out / "data" / f"fold{f}"
        for im in val["images"]:
            if im["id"] in seen:
                raise UserError(f"fold {f} and fold {seen[im['id']]} both validate image {im['id']}: the folds were "
                                "not converted with the same split (same seed and options)")
            seen[im["id"]] = f
            images.append({**im, "file_name": str((root / im["file_name"]).resolve())})
        anns += val["annotations"]
    train0 = load_dataset(exp.out / "data" / "fold0" / "train.json")
    everything = {im["id"] for im in train0["images"]} | {im["id"] for im in vals[0]["images"]}
    if set(seen) != everything:
        raise UserError(f"the {exp.folds} folds' validation sets cover {len(seen)} images, the training set has "
                        f"{len(everything)}: the folds were not converted with the same split")
    split = load_json(exp.out / "data" / "fold0" / "split.json", "split file")
    folds = {str(k): v for k, v in split["fold_of_image"].items()}
    if {int(k) for k in folds} != everything or any(folds[str(i)] != f for i, f in seen.items()):
        raise UserError("split.json of fold 0 disagrees with the folds' validation sets")
    gt = {"images": sorted(images, key=lambda im: im["id"]), "categories": vals[0]["categories"],
          "annotations": sorted(anns, key=lambda a: a["id"])}
    out = exp.out / "oof"
    with atomic_paths([out / "gt.json", out / "folds.json"]) as (g, s):
        g.write_text(dumps_json(gt) + "\n", encoding="utf-8")
        s.write_text(dumps_json({"folds": exp.folds, "fold_of_image": folds}) + "\n", encoding="utf-8")


def merge(exp: Experiment, parts: list[Path], out: Path) -> None:
    """One model's K out-of-fold prediction files -> one file over every training image; each fold's file
    may hold only that fold's validation images (checked)."""
    vals = _fold_sets(exp)
    cats = {c["id"] for c in vals[0]["categories"]}
    from coco2yolo.fusion.search import concat

    loaded = [load_results(p, {im["id"] for im in val["images"]}, cats) for p, val in zip(parts, vals)]
    save_results(out, concat(loaded))


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def summary(exp: Experiment) -> dict[str, Any]:
    """summary.json: out-of-fold mAP50 of every model and of the fusion with intervals, per class, the
    chosen setting, the cross-fitted gain, and the compute spent (from the sidecars and the log)."""
    o = exp.out
    metrics = load_json(o / "metrics" / "oof.json", "metrics")
    models = []
    from coco2yolo.kfold.plan import models_of

    for m, f in zip(models_of(exp), metrics["files"]):
        sidecars = [_read(o / "weights" / f"{m.name}_fold{k}.json") or {} for k in range(exp.folds)]
        secs = [s.get("train_seconds") for s in sidecars if s.get("train_seconds") is not None]
        per_epoch = [s.get("seconds_per_epoch") for s in sidecars if s.get("seconds_per_epoch") is not None]
        models.append({"name": m.name, "options": m.options, "oof": o / "oof" / f"{m.name}.json",
                       "mAP50": f["mAP50"], "mAP50_ci95": f["mAP50_ci95"], "mAP50_95": f["mAP50_95"],
                       "per_class_AP50": f["per_class_AP50"], "train_seconds": secs,
                       "seconds_per_epoch": sum(per_epoch) / len(per_epoch) if per_epoch else None})
    doc: dict[str, Any] = {"experiment": str(exp.path), "out": str(o), "folds": exp.folds,
                           "images": metrics["images"], "gt_boxes": metrics["gt_boxes"], "models": models,
                           "differences": [{**d, "a": Path(d["a"]).stem, "b": Path(d["b"]).stem}
                                           for d in metrics["differences"]]}
    setting = _read(o / "ensemble_setting.json")
    if setting and isinstance(setting.get("report"), dict):
        r = setting["report"]
        doc["fusion"] = {"method": r.get("method"), "crossfit_mAP50": r["crossfit_fused"]["mAP50"],
                         "crossfit_mAP50_ci95": r["crossfit_fused"].get("ci95"),
                         "gain_over_best_single": r["gain_over_best_single"], "final_setting": r["final_setting"],
                         "fold_settings": [{"fold": f["fold"], **f["setting"], "mAP50_on_this_fold": f["mAP50_on_this_fold"]}
                                           for f in r["folds"]],
                         "in_sample_gain_not_to_report": r["in_sample"]["delta_mAP50"],
                         "test_fusion": "each model's K fold models fused by WBF at the prediction NMS IoU, then the "
                                        "models fused with the final setting"}
    doc["compute"] = compute_spent(o)
    if (o / "ensemble_test.json").exists():
        doc["test"] = {"ensemble": str(o / "ensemble_test.json"), "submission": str(o / "submission.csv")}
    write_json(o / "summary.json", json.loads(json.dumps(doc, default=str)), indent=2)
    return doc


def compute_spent(out: Path) -> dict[str, Any]:
    """Seconds per step from commands.log (the last successful run of each job)."""
    by_job: dict[str, float] = {}
    try:
        lines = (out / "commands.log").read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split("\t")
        if len(parts) >= 6 and parts[3] == "END" and parts[5].startswith("exit 0"):
            try:
                by_job[parts[4]] = float(parts[5].split(" in ")[1].rstrip(" s"))
            except (IndexError, ValueError):
                pass
    by_step: dict[str, float] = {}
    for job, secs in by_job.items():
        by_step[job.split("/")[0]] = by_step.get(job.split("/")[0], 0.0) + secs
    device = by_step.get("train", 0.0) + by_step.get("predict", 0.0)
    return {"seconds_by_step": by_step, "device_seconds": device, "device_hours": device / 3600,
            "note": "wall seconds of each job's last successful run, summed (parallel jobs overlap in time)"}


def format_summary(doc: dict[str, Any]) -> str:
    lines = [f"out-of-fold, {doc['folds']} folds, {doc['images']} images, {doc['gt_boxes']} boxes:"]
    width = max(8, *(len(m["name"]) for m in doc["models"]))
    for m in doc["models"]:
        ci = m["mAP50_ci95"] or [float("nan")] * 2
        lines.append(f"  {m['name']:<{width}}  mAP50 {m['mAP50']:.4f}  [95% CI {ci[0]:.4f}, {ci[1]:.4f}]")
    fusion = doc.get("fusion")
    if fusion:
        ci = fusion["crossfit_mAP50_ci95"] or [float("nan")] * 2
        g = fusion["gain_over_best_single"]
        gci = g.get("ci95") or [float("nan")] * 2
        lines.append(f"  {'fusion':<{width}}  mAP50 {fusion['crossfit_mAP50']:.4f}  [95% CI {ci[0]:.4f}, {ci[1]:.4f}]"
                     " (cross-fitted)")
        lines.append(f"  gain over {Path(g['path']).stem}: {g['delta_mAP50']:+.4f} [95% CI {gci[0]:+.4f}, {gci[1]:+.4f}]")
        s = fusion["final_setting"]
        lines.append(f"  test fusion: {s['method']} iou_thr {s['iou_thr']:g} weights {s['weights'] or 'equal'}")
    c = doc["compute"]
    lines.append(f"  device time: {c['device_seconds'] / 60:.1f} min (training and prediction)")
    out = Path(doc["out"])
    if doc.get("test"):
        lines.append(f"  submission: {doc['test']['submission']}   (check it: python -m coco2yolo.submission check "
                     f"{doc['test']['submission']} --images TEST.json)")
    lines.append(f"  everything measured: {out / 'summary.json'}   every command: {out / 'commands.log'}")
    return "\n".join(lines)
