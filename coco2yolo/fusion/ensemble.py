"""ensemble.py: fuse several models' COCO results files, and choose the fusion on validation.

``python ensemble.py a.json b.json --images test.json --method wbf --out fused.json [--weights 2 1]``
``python ensemble.py a.json b.json --tune val.json --out val_fused.json`` searches method x IoU
threshold x model weights on a validation split with ground truth, prints the best setting with
its mAP50 and interval next to each single model's, and saves it for ``--setting``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from coco2yolo import cli
from coco2yolo.cocodata import CategoryMap, load_dataset
from coco2yolo.errors import UserError, short
from coco2yolo.evaluation.metrics import (ap_from_matches, check_scorable, bootstrap_map50, bootstrap_weights, interval, match_iou50,
                         nanmean_rows, prepare_gt)
from coco2yolo.fileio import atomic_paths, guard_outputs, load_json, write_json
from coco2yolo.fusion.kernels import CONF_TYPES, METHODS, fuse
from coco2yolo.results import Detections, load_results, save_results, write_submission

DEFAULTS = {"method": "wbf", "iou_thr": 0.55, "skip_box_thr": 0.0, "conf_type": "avg", "weights": None,
            "sigma": 0.5, "soft_thresh": 0.001}
SETTING_FORMAT = "coco2yolo-ensemble-setting/1"


def load_inputs(paths: list[str], images_json: str) -> tuple[list[Detections], list[int], np.ndarray, dict[str, Any]]:
    """Results files checked against the images JSON (ids) and against each other (categories)."""
    data = load_dataset(images_json)
    image_ids = sorted(im["id"] for im in data["images"])
    size = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    cats = {c["id"] for c in data.get("categories") or []} or None
    models = [load_results(p, set(image_ids), cats) for p in paths]
    if cats is None and len(models) > 1:
        sets = [set(np.unique(m.category_id).tolist()) for m in models]
        for p, s in zip(paths[1:], sets[1:]):
            if s != sets[0]:
                raise UserError(f"{p} uses category ids {sorted(s ^ sets[0])[:10]} that {paths[0]} does not "
                                f"(or the reverse); all files must use the same category set "
                                f"({images_json} has no categories to check against)")
    return models, image_ids, np.array([size[i] for i in image_ids], np.float64), data


def weight_grid(n_models: int, values: tuple[float, ...] = (1.0, 2.0)) -> list[list[float] | None]:
    """None (equal weights) plus every distinct direction of ``values`` per model."""
    grid: list[list[float] | None] = [None]
    seen = set()
    for combo in itertools.product(values, repeat=n_models):
        key = tuple(np.round(np.array(combo) / max(combo), 6))
        if n_models > 1 and len(set(combo)) > 1 and key not in seen:
            seen.add(key)
            grid.append(list(combo))
    return grid


def tune(models: list[Detections], paths: list[str], image_ids: list[int], sizes: np.ndarray,
         gt_data: dict[str, Any], methods: list[str], iou_grid: list[float], base: dict[str, Any],
         n_boot: int, seed: int, max_dets: int) -> dict[str, Any]:
    """Score every setting on the validation ground truth; return the report with the best."""
    cmap = CategoryMap(gt_data["categories"])
    gt = prepare_gt(gt_data)
    cats = cmap.ids
    rows = []
    t0 = time.time()
    for method, iou, w in itertools.product(methods, iou_grid, weight_grid(len(models))):
        setting = {**base, "method": method, "iou_thr": iou, "weights": w}
        fused = fuse(models, image_ids, sizes, **{k: setting[k] for k in DEFAULTS})
        m = match_iou50(gt, fused, cats, max_dets)
        rows.append((float(nanmean_rows(ap_from_matches(m))), setting, m))
    rows.sort(key=lambda r: -r[0])
    best_map, best, best_m = rows[0]
    singles = [match_iou50(gt, d, cats, max_dets) for d in models]
    single_map = [float(nanmean_rows(ap_from_matches(m))) for m in singles]
    report: dict[str, Any] = {"settings_tried": len(rows), "seconds": time.time() - t0,
                              "best": {**best, "mAP50": best_map},
                              "top": [{**s, "mAP50": v} for v, s, _ in rows[:5]],
                              "single_models": [{"path": p, "mAP50": v} for p, v in zip(paths, single_map)]}
    if n_boot > 0:
        wts = bootstrap_weights(len(gt_data["images"]), n_boot, seed)
        b_best = bootstrap_map50(best_m, wts)
        report["best"]["ci95"] = list(interval(b_best))
        i_top = int(np.argmax(single_map))
        b_single = bootstrap_map50(singles[i_top], wts)
        for entry, m in zip(report["single_models"], singles):
            entry["ci95"] = list(interval(bootstrap_map50(m, wts)))
        report["gain_over_best_single"] = {"path": paths[i_top], "delta_mAP50": best_map - single_map[i_top],
                                           "ci95": list(interval(b_best - b_single))}
    return report


def format_tune(report: dict[str, Any]) -> str:
    def ci(e: dict[str, Any]) -> str:
        return f" [95% CI {e['ci95'][0]:.4f}, {e['ci95'][1]:.4f}]" if e.get("ci95") else ""

    b = report["best"]
    lines = [f"tried {report['settings_tried']} settings in {report['seconds']:.1f} s", "single models:"]
    lines += [f"  {e['path']}: mAP50 {e['mAP50']:.4f}{ci(e)}" for e in report["single_models"]]
    lines.append("top settings:")
    lines += [f"  {s['method']:<8} iou {s['iou_thr']:.2f} weights {s['weights'] or 'equal'}: mAP50 {s['mAP50']:.4f}"
              for s in report["top"]]
    lines.append(f"best: {b['method']} iou_thr {b['iou_thr']} weights {b['weights'] or 'equal'} "
                 f"conf_type {b['conf_type']}: mAP50 {b['mAP50']:.4f}{ci(b)}")
    g = report.get("gain_over_best_single")
    if g:
        lines.append(f"gain over the best single model ({g['path']}): {g['delta_mAP50']:+.4f} "
                     f"[95% CI {g['ci95'][0]:+.4f}, {g['ci95'][1]:+.4f}]")
    return "\n".join(lines)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_setting(setting: dict[str, Any], n_models: int, source: str) -> dict[str, Any]:
    """Every fusion value present, of the right type and in range (one line naming the first that is not)."""
    missing = [k for k in DEFAULTS if k not in setting]
    if missing:
        raise UserError(f"{source}: missing {', '.join(missing)} (a setting has {', '.join(DEFAULTS)})")
    rules = {"method": (lambda v: v in METHODS, f"one of {', '.join(METHODS)}"),
             "conf_type": (lambda v: v in CONF_TYPES, f"one of {', '.join(CONF_TYPES)}"),
             "iou_thr": (lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
             "skip_box_thr": (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
             "sigma": (lambda v: _is_number(v) and v > 0, "a number > 0"),
             "soft_thresh": (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
             "weights": (lambda v: v is None or (isinstance(v, list) and len(v) == n_models
                                                 and all(_is_number(w) and w >= 0 for w in v) and sum(v) > 0),
                         f"null or a list of {n_models} numbers >= 0 with a positive sum (one per results file)")}
    w = setting["weights"]
    if isinstance(w, list) and len(w) != n_models:
        raise UserError(f"{source}: model weights have {len(w)} values for {n_models} results files; give one per file")
    for key, (ok, allowed) in rules.items():
        if not ok(setting[key]):
            raise UserError(f"{source}: {key} must be {allowed}, got {short(setting[key])}")
    return {k: setting[k] for k in DEFAULTS}


def read_setting(path: str, n_models: int) -> dict[str, Any]:
    doc = load_json(path, "ensemble setting")
    if not isinstance(doc, dict) or doc.get("format") != SETTING_FORMAT:
        raise UserError(f"{path}: not an ensemble setting written by ensemble.py --tune (format {SETTING_FORMAT!r})")
    if doc.get("n_models") != n_models:
        raise UserError(f"{path} was tuned for {short(doc.get('n_models'))} results files, got {n_models}; "
                        "pass the same models in the same order")
    if "model_weights" in doc:
        doc = {**doc, "weights": doc["model_weights"]}
    return check_setting(doc, n_models, path)


def setting_doc(setting: dict[str, Any], n_models: int, **extra: Any) -> dict[str, Any]:
    """A setting file's content (per-model fusion weights under ``model_weights``)."""
    body = {("model_weights" if k == "weights" else k): v for k, v in setting.items()}
    return {"format": SETTING_FORMAT, "n_models": n_models, **body, **extra}


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog="ensemble.py", description="Fuse COCO results files of several models "
                           "(WBF, NMS, soft-NMS, NMW with ensemble-boxes' semantics).")
    p.add_argument("results", nargs="+", help="COCO results JSON files, one per model")
    p.add_argument("--images", default=None, help="COCO JSON of the images (sizes and ids), e.g. test.json")
    p.add_argument("--out", required=True, help="fused COCO results JSON")
    p.add_argument("--method", choices=METHODS, default=None, help=f"fusion method (default {DEFAULTS['method']})")
    p.add_argument("--model-weights", dest="weights", type=cli.number(0), nargs="+", default=None,
                   help="one fusion weight per results file (default: equal)")
    cli.deprecated_alias(p, "--weights", "--model-weights", type=cli.number(0), nargs="+")
    p.add_argument("--iou-thr", type=cli.IOU, default=None, help=f"match IoU (default {DEFAULTS['iou_thr']})")
    p.add_argument("--skip-box-thr", type=cli.FRACTION, default=None,
                   help="drop boxes scoring below this before fusing (wbf, nmw; default 0.0)")
    p.add_argument("--conf-type", choices=CONF_TYPES, default=None, help="WBF score rule (default avg)")
    p.add_argument("--sigma", type=cli.number(0, lo_open=True), default=None, help="soft-NMS gaussian sigma (0.5)")
    p.add_argument("--soft-thresh", type=cli.FRACTION, default=None, help="soft-NMS final score threshold (0.001)")
    p.add_argument("--max-det", type=cli.NONNEG_INT, default=0,
                   help="keep the top N boxes per image after fusing (0: all)")
    p.add_argument("--setting", default=None, help="use the setting file written by --tune")
    p.add_argument("--submission", default=None, help="also write the competition CSV of the fused boxes "
                   "(PredictionString,image_id; image_id = file_name of the images JSON)")
    t = p.add_argument_group("tuning on validation")
    t.add_argument("--tune", default=None, metavar="VAL.json",
                   help="ground truth of the images the results are for; search the best setting")
    t.add_argument("--tune-methods", nargs="+", choices=METHODS, default=["wbf", "nms"],
                   help="methods to search (default: wbf nms)")
    t.add_argument("--tune-iou", type=cli.IOU, nargs="+", default=[0.4, 0.5, 0.55, 0.6, 0.7],
                   help="IoU thresholds to search")
    t.add_argument("--save-setting", default=None, help="where --tune writes the best setting "
                   "(default: OUT with .setting.json)")
    t.add_argument("--bootstrap", type=cli.NONNEG_INT, default=1000, help="resamples for the intervals (1000)")
    t.add_argument("--eval-max-dets", type=cli.POSITIVE_INT, default=100,
                   help="COCOeval maxDets when scoring the tuning (100); not --max-det, which trims the output")
    cli.deprecated_alias(t, "--max-dets", "--eval-max-dets", type=cli.POSITIVE_INT)
    return p


def _explicit(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in DEFAULTS if getattr(args, k) is not None}


def main(args: argparse.Namespace) -> int:
    images = args.images or args.tune
    if images is None:
        raise UserError("--images IMAGES.json is required (image ids and sizes), or --tune VAL.json")
    explicit = _explicit(args)
    if args.setting:
        if explicit:
            raise UserError(f"--setting fixes the fusion; drop {', '.join('--' + k.replace('_', '-') for k in explicit)}")
        setting = read_setting(args.setting, len(args.results))
    else:
        setting = check_setting({**DEFAULTS, **explicit}, len(args.results), "command line")
    out_setting = Path(args.save_setting or Path(args.out).with_suffix(".setting.json")) if args.tune else None
    guard_outputs({"--out": args.out, "--submission": args.submission, "--save-setting": out_setting},
                  {"results file": args.results, "--images": args.images, "--tune": args.tune,
                   "--setting": args.setting})
    models, image_ids, sizes, data = load_inputs(args.results, images)
    doc = None
    if args.tune:
        gt_data = data if images == args.tune else load_dataset(args.tune)
        check_scorable(gt_data, f"--tune {args.tune}")
        report = tune(models, args.results, image_ids, sizes, gt_data, args.tune_methods, args.tune_iou,
                      setting, args.bootstrap, 0, args.eval_max_dets)
        print(format_tune(report))
        setting = {k: report["best"][k] for k in DEFAULTS}
        doc = setting_doc(setting, len(args.results), tuned_on=str(args.tune), models=args.results, report=report)
    t0 = time.time()
    fused = fuse(models, image_ids, sizes, **setting)
    if args.max_det > 0:
        fused = top_k_per_image(fused, args.max_det)
    targets = [args.out] + [p for p in (args.submission, out_setting) if p]
    with atomic_paths(targets) as tmps:  # all or nothing
        tmp = iter(tmps)
        save_results(next(tmp), fused)
        if args.submission:
            write_submission(next(tmp), fused, data["images"])
        if out_setting:
            write_json(next(tmp), doc, indent=2)
    if out_setting:
        print(f"setting written to {out_setting}; apply it to test predictions with --setting {out_setting}")
    print(f"wrote {args.out}: {len(fused)} boxes from {len(models)} files on {len(image_ids)} images "
          f"({setting['method']}, iou_thr {setting['iou_thr']}, weights {setting['weights'] or 'equal'}; "
          f"{time.time() - t0:.1f} s)", file=sys.stdout)
    return 0


def top_k_per_image(d: Detections, k: int) -> Detections:
    """The ``k`` highest-scoring boxes of each image."""
    order = np.lexsort((-d.score, d.image_id))
    img = d.image_id[order]
    starts = np.r_[0, np.flatnonzero(img[1:] != img[:-1]) + 1]
    rank = np.arange(len(img)) - np.repeat(starts, np.diff(np.r_[starts, len(img)]))
    return d.select(order[rank < k])
