"""ensemble.py: fuse several models' COCO results files, and choose the fusion on validation.

``python ensemble.py a.json b.json --images test.json --method wbf --out fused.json [--weights 2 1]``
``python ensemble.py a.json b.json --tune val.json --out val_fused.json`` searches method x IoU
threshold x model weights on a validation split with ground truth, prints the best setting with
its mAP50 and interval next to each single model's, and saves it for ``--setting``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from coco2yolo import cli
from coco2yolo.cocodata import load_dataset
from coco2yolo.errors import UserError, short
from coco2yolo.evaluation.metrics import (ap_from_matches, bootstrap_map50, bootstrap_weights, check_scorable, interval,
                                          match_iou50,
                         nanmean_rows)
from coco2yolo.fileio import atomic_paths, guard_outputs, load_json, write_json
from coco2yolo.fusion.kernels import CONF_TYPES, METHODS, fuse
from coco2yolo.fusion.search import Scorer, SearchSpace, crossfit, search
from coco2yolo.results import Detections, load_results, save_results
from coco2yolo.submission import write_submission

DEFAULTS = {"method": "wbf", "iou_thr": 0.55, "skip_box_thr": 0.0, "conf_type": "avg", "weights": None,
            "sigma": 0.5, "soft_thresh": 0.001}
SETTING_FORMAT = "coco2yolo-ensemble-setting/1"


def load_inputs(paths: list[str], images_json: str) -> tuple[list[Detections], list[int], np.ndarray, dict[str, Any]]:
    """Results files checked against the images JSON (ids) and against each other (categories)."""
    data = load_dataset(images_json)
    image_ids = sorted(im["id"] for im in data["images"])
    size = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    cats = {c["id"] for c in data.get("categories") or []} or None
    models = [load_results(p, set(image_ids), cats, data["images"]) for p in paths]
    if cats is None and len(models) > 1:
        sets = [set(np.unique(m.category_id).tolist()) for m in models]
        for p, s in zip(paths[1:], sets[1:]):
            if s != sets[0]:
                raise UserError(f"{p} uses category ids {sorted(s ^ sets[0])[:10]} that {paths[0]} does not "
                                f"(or the reverse); all files must use the same category set "
                                f"({images_json} has no categories to check against)")
    return models, image_ids, np.array([size[i] for i in image_ids], np.float64), data


def tune(models: list[Detections], paths: list[str], image_ids: list[int], sizes: np.ndarray,
         gt_data: dict[str, Any], space: SearchSpace, base: dict[str, Any], n_boot: int, seed: int,
         max_dets: int, quiet: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Search the best setting on the validation ground truth (see :mod:`coco2yolo.fusion.search`);
    return it and a report. The reported gain is in-sample: chosen and scored on the same images."""
    cats = sorted(c["id"] for c in gt_data["categories"])
    scorer = Scorer(models, image_ids, sizes, gt_data, cats, base, max_dets)
    best, best_map, record = search(scorer, len(models), space, quiet=quiet)
    gt = scorer.gt
    singles = [match_iou50(gt, d, cats, max_dets) for d in models]
    single_map = [float(nanmean_rows(ap_from_matches(m))) for m in singles]
    tried = sorted(scorer.cache.items(), key=lambda kv: -kv[1])
    report: dict[str, Any] = {
        "settings_tried": record["settings_scored"], "seconds": record["seconds"], "trace": record["trace"],
        "best": {**best, "mAP50": best_map},
        "top": [{"method": k[0], "iou_thr": k[1], "conf_type": k[2], "weights": list(k[3]) if k[3] else None,
                 "mAP50": v} for k, v in tried[:5]],
        "single_models": [{"path": p, "mAP50": v} for p, v in zip(paths, single_map)]}
    i_top = int(np.argmax(single_map))
    report["gain_over_best_single"] = {"path": paths[i_top], "delta_mAP50": best_map - single_map[i_top],
                                       "note": "in-sample: the setting was chosen on these images (use --crossfit "
                                               "for an unbiased gain)"}
    if n_boot > 0:
        wts = bootstrap_weights(len(gt_data["images"]), n_boot, seed)
        b_best = bootstrap_map50(match_iou50(gt, scorer.fused(best), cats, max_dets), wts)
        report["best"]["ci95"] = list(interval(b_best))
        b_single = [bootstrap_map50(m, wts) for m in singles]
        for entry, b in zip(report["single_models"], b_single):
            entry["ci95"] = list(interval(b))
        report["gain_over_best_single"]["ci95"] = list(interval(b_best - b_single[i_top]))
    return {**base, **best}, report


def _ci(e: dict[str, Any], signed: bool = False) -> str:
    if not e.get("ci95"):
        return ""
    fmt = "+.4f" if signed else ".4f"
    return f" [95% CI {e['ci95'][0]:{fmt}}, {e['ci95'][1]:{fmt}}]"


def _setting_text(s: dict[str, Any]) -> str:
    return (f"{s['method']} iou_thr {s['iou_thr']:g}" + (f" conf_type {s['conf_type']}" if s["method"] == "wbf" else "")
            + f" weights {s['weights'] or 'equal'}")


def format_tune(report: dict[str, Any]) -> str:
    b = report["best"]
    lines = [f"scored {report['settings_tried']} settings in {report['seconds']:.1f} s", "single models:"]
    lines += [f"  {e['path']}: mAP50 {e['mAP50']:.4f}{_ci(e)}" for e in report["single_models"]]
    lines.append("top settings:")
    lines += [f"  {_setting_text(s)}: mAP50 {s['mAP50']:.4f}" for s in report["top"]]
    lines.append(f"best: {_setting_text(b)}: mAP50 {b['mAP50']:.4f}{_ci(b)}")
    g = report["gain_over_best_single"]
    lines.append(f"gain over the best single model ({g['path']}): {g['delta_mAP50']:+.4f}{_ci(g, True)} "
                 "(in-sample: chosen and scored on the same images; --crossfit gives an unbiased gain)")
    return "\n".join(lines)


def format_crossfit(report: dict[str, Any]) -> str:
    lines = ["single models (out-of-fold):"]
    lines += [f"  {e['path']}: mAP50 {e['mAP50']:.4f}{_ci(e)}" for e in report["single_models"]]
    for f in report["folds"]:
        lines.append(f"fold {f['fold']}: {_setting_text(f['setting'])} (chosen on the other folds: mAP50 "
                     f"{f['mAP50_where_chosen']:.4f}; on this fold: {f['mAP50_on_this_fold']:.4f})")
    c, g, ins = report["crossfit_fused"], report["gain_over_best_single"], report["in_sample"]
    lines.append(f"cross-fitted fusion: mAP50 {c['mAP50']:.4f}{_ci(c)}")
    verdict = ""
    if g.get("ci95"):
        verdict = ("  (a real gain)" if g["ci95"][0] > 0 else "  (a real loss)" if g["ci95"][1] < 0
                   else "  (within noise: the interval contains 0)")
    lines.append(f"gain over the best single model ({g['path']}): {g['delta_mAP50']:+.4f}{_ci(g, True)}{verdict}")
    lines.append(f"final setting (searched on all folds, for test data): {_setting_text(report['final_setting'])}; "
                 f"its in-sample gain {ins['delta_mAP50']:+.4f} is optimistic")
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
    space = SearchSpace()
    t.add_argument("--tune-methods", nargs="+", choices=METHODS, default=space.methods,
                   help=f"methods to search (default: {' '.join(space.methods)})")
    t.add_argument("--tune-iou", type=cli.IOU, nargs="+", default=space.iou,
                   help=f"IoU thresholds to search (default: {' '.join(map(str, space.iou))})")
    t.add_argument("--tune-conf-types", nargs="+", choices=CONF_TYPES, default=space.conf_types,
                   help="WBF score rules to search (default: avg)")
    t.add_argument("--tune-weights", type=cli.number(0), nargs="+", default=space.weights,
                   help="values each model's weight may take in the coordinate ascent (default: "
                        f"{' '.join(f'{v:g}' for v in space.weights)}; 0 drops a model)")
    t.add_argument("--tune-passes", type=cli.NONNEG_INT, default=space.passes,
                   help=f"coordinate-ascent passes over the models at most ({space.passes})")
    t.add_argument("--crossfit", default=None, metavar="SPLIT.json",
                   help="cross-fit over the folds of this split (the converter's split.json): each fold is fused "
                        "with the setting searched on the others, so the reported gain is unbiased; --out gets "
                        "those fused out-of-fold predictions, the setting file the setting searched on all folds")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--save-setting", default=None, help="where --tune writes the best setting "
                   "(default: OUT with .setting.json)")
    t.add_argument("--bootstrap", type=cli.NONNEG_INT, default=1000, help="resamples for the intervals (1000)")
    t.add_argument("--eval-max-dets", type=cli.POSITIVE_INT, default=100,
                   help="COCOeval maxDets when scoring the tuning (100); not --max-det, which trims the output")
    cli.deprecated_alias(t, "--max-dets", "--eval-max-dets", type=cli.POSITIVE_INT)
    return p


def _explicit(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in DEFAULTS if getattr(args, k) is not None}


def read_folds(path: str) -> dict[int, int]:
    """The fold of every image, from the converter's split.json (``fold_of_image``)."""
    doc = load_json(path, "split file")
    folds = doc.get("fold_of_image") if isinstance(doc, dict) else None
    if not isinstance(folds, dict) or not folds:
        raise UserError(f"{path}: expected the converter's split.json with 'fold_of_image'")
    try:
        out = {int(k): int(v) for k, v in folds.items()}
    except (TypeError, ValueError):
        raise UserError(f"{path}: 'fold_of_image' must map image ids to fold numbers") from None
    return out


def resolve_setting(n_models: int, setting_file: str | None, explicit: dict[str, Any]) -> dict[str, Any]:
    """The fusion to apply: a setting file (then nothing else), or the defaults updated by ``explicit``."""
    if setting_file:
        if explicit:
            raise UserError(f"--setting fixes the fusion; drop {', '.join('--' + k.replace('_', '-') for k in explicit)}")
        return read_setting(setting_file, n_models)
    return check_setting({**DEFAULTS, **explicit}, n_models, "command line")


def write_fused(out: str | Path, fused: Detections, submission: str | Path | None = None,
                images: list[dict[str, Any]] | None = None, setting_file: Path | None = None,
                setting: dict[str, Any] | None = None) -> None:
    """The fused results, and the submission CSV and setting file if asked, committed together."""
    targets = [out] + [p for p in (submission, setting_file) if p]
    with atomic_paths(targets) as tmps:  # all or nothing
        tmp = iter(tmps)
        save_results(next(tmp), fused)
        if submission:
            write_submission(next(tmp), fused, images or [])
        if setting_file:
            write_json(next(tmp), setting, indent=2)


def fuse_files(results: list[str], images: str, out: str | Path | None = None, *, setting: str | Path | None = None,
               submission: str | Path | None = None, max_det: int = 0, **fusion: Any) -> Detections:
    """Fuse results files (what ensemble.py does without --tune); write ``out``/``submission`` if given.

    ``fusion``: ``method``, ``model_weights`` (or ``weights``), ``iou_thr``, ``skip_box_thr``, ``conf_type``,
    ``sigma``, ``soft_thresh``.
    """
    fusion = {("weights" if k == "model_weights" else k): v for k, v in fusion.items() if v is not None}
    unknown = set(fusion) - set(DEFAULTS)
    if unknown:
        raise UserError(f"unknown fusion option {sorted(unknown)[0]!r}; allowed: method, model_weights, "
                        + ", ".join(k for k in DEFAULTS if k not in ("method", "weights")))
    chosen = resolve_setting(len(results), str(setting) if setting else None, fusion)
    if submission and not out:
        raise UserError("a submission needs an output file too (--out)")
    guard_outputs({"--out": out, "--submission": submission},
                  {"results file": results, "--images": images, "--setting": setting})
    models, image_ids, sizes, data = load_inputs(results, images)
    fused = fuse(models, image_ids, sizes, **chosen)
    if max_det > 0:
        fused = top_k_per_image(fused, max_det)
    if out:
        write_fused(out, fused, submission, data["images"])
    return fused


def main(args: argparse.Namespace) -> int:
    images = args.images or args.tune
    if images is None:
        raise UserError("--images IMAGES.json is required (image ids and sizes), or --tune VAL.json")
    t0 = time.time()
    if not args.tune:
        setting = resolve_setting(len(args.results), args.setting, _explicit(args))
        fused = fuse_files(args.results, images, args.out, setting=args.setting, submission=args.submission,
                           max_det=args.max_det, **_explicit(args))
    else:
        setting = resolve_setting(len(args.results), args.setting, _explicit(args))
        out_setting = Path(args.save_setting or Path(args.out).with_suffix(".setting.json"))
        guard_outputs({"--out": args.out, "--submission": args.submission, "--save-setting": out_setting},
                      {"results file": args.results, "--images": args.images, "--tune": args.tune,
                       "--setting": args.setting, "--crossfit": args.crossfit})
        models, image_ids, sizes, data = load_inputs(args.results, images)
        gt_data = data if images == args.tune else load_dataset(args.tune)
        check_scorable(gt_data, f"--tune {args.tune}")
        space = SearchSpace(args.tune_methods, args.tune_iou, args.tune_conf_types, args.tune_weights,
                            args.tune_passes).check()
        if args.crossfit:
            fold_of = read_folds(args.crossfit)
            fused, best, report = crossfit(models, args.results, image_ids, sizes, gt_data, fold_of, space, setting,
                                           args.bootstrap, 0, args.eval_max_dets, quiet=args.quiet)
            print(format_crossfit(report))
            setting = {k: {**setting, **best}[k] for k in DEFAULTS}
        else:
            best, report = tune(models, args.results, image_ids, sizes, gt_data, space, setting, args.bootstrap, 0,
                                args.eval_max_dets, quiet=args.quiet)
            print(format_tune(report))
            setting = {k: best[k] for k in DEFAULTS}
            fused = fuse(models, image_ids, sizes, **setting)
        if args.max_det > 0:
            fused = top_k_per_image(fused, args.max_det)
        write_fused(args.out, fused, args.submission, data["images"], out_setting,
                    setting_doc(setting, len(args.results), tuned_on=str(args.tune), models=args.results, report=report))
        print(f"setting written to {out_setting}; apply it to test predictions with --setting {out_setting}")
    print(f"wrote {args.out}: {len(fused)} boxes from {len(args.results)} files "
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
