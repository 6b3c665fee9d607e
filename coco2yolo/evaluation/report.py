"""``evaluate.py --report report.html``: one self-contained page that shows what a model gets wrong.

Per results file: the headline (mAP50 with its interval, mAP50:95, per-class AP50 with intervals) and,
with two or more files, the paired differences; PR curves per class; a confusion matrix at a stated score
and IoU with a background row and column (counts and normalised; faster-coco-eval's class-agnostic
matching); AP50 by object size (COCO's small/medium/large and finer bins for these photos); the cost of
each error type in the manner of TIDE (:mod:`coco2yolo.evaluation.tide`); a gallery of the worst images
(ground truth and predictions side by side) and of the most confident false alarms; the settings and
versions. Charts are matplotlib PNGs and photos JPEG thumbnails, all inlined (data URIs) under a size cap;
the page needs no server, no network and no script. Numbers use evaluate.py's formatting.
"""

from __future__ import annotations

import datetime as dt
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coco2yolo.cocodata import CategoryMap
from coco2yolo.evaluation import gallery, plots, tide
from coco2yolo.evaluation.metrics import (COCO_AREAS, SIZE_BINS, _mean_valid, ap_from_matches, interval,
                                          precision50_by_area)
from coco2yolo.results import Detections, image_positions, image_runs, rows_of_runs


@dataclass
class ReportOptions:
    conf: float = 0.25        # score a prediction needs to count in the confusion matrix and the gallery
    iou: float = 0.5          # IoU at which a prediction and a box match in the confusion matrix
    max_mb: float = 20.0      # inlined pictures at most (charts first, then photos)
    worst: int = 12           # images in the gallery of worst images
    false_alarms: int = 16    # most confident false alarms shown
    thumb: int = 640          # longest side of a gallery picture, px


def _fmt(v: float | None, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "n/a"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


CONFUSION_CHUNK = 100_000  # predictions matched by one faster-coco-eval call (it sizes arrays by the total)


def confusion(gt: dict[str, Any], dets: Detections, cmap: CategoryMap, conf: float, iou: float,
              chunk: int = CONFUSION_CHUNK) -> np.ndarray:
    """(K+1) x (K+1) counts: true class (rows; last: background = false alarms) by predicted class
    (columns; last: background = missed), from faster-coco-eval's class-agnostic matching.

    Matching is per image, so the images are taken a group at a time (about ``chunk`` predictions each) and
    the counts added: the same counts, in memory that does not grow with the file (all at once, a million
    predictions ran faster-coco-eval out of memory: it sets maxDets to the number of predictions)."""
    from faster_coco_eval import COCO
    from faster_coco_eval.extra import PreviewResults

    from coco2yolo.evaluation.metrics import _records

    k = len(cmap)
    out = np.zeros((k + 1, k + 1))
    keep = dets.select(dets.score >= conf)
    if len(keep) == 0:
        for a in gt["annotations"]:
            if not a["iscrowd"]:
                out[cmap.class_of(a["category_id"]), k] += 1
        return out
    anns_of: dict[int, list[dict[str, Any]]] = {}
    for a in gt["annotations"]:
        anns_of.setdefault(a["image_id"], []).append(a)
    image_ids = [im["id"] for im in gt["images"]]
    pos, _ = image_positions(keep.image_id, image_ids)  # every prediction's image is in gt (checked on reading)
    runs = image_runs(np.bincount(pos, minlength=len(image_ids)), chunk)
    for (lo, hi), rows in zip(runs, rows_of_runs(pos, runs)):
        sub = {**gt, "images": gt["images"][lo:hi],
               "annotations": [ann for i in image_ids[lo:hi] for ann in anns_of.get(i, [])]}
        g = COCO(sub, print_function=lambda *a, **kw: None)
        preview = PreviewResults(g, g.loadRes(_records(keep.select(rows))), iou_tresh=iou, min_score=conf,
                                 useCats=False)
        cm = np.asarray(preview.compute_confusion_matrix())  # K x (K + 2): predicted..., false alarms, missed
        out[:k, :k] += cm[:, :k]
        out[k, :k] += cm[:, k]       # false alarms of each predicted class
        out[:k, k] += cm[:, k + 1]   # missed boxes of each true class
    return out


def _per_class_intervals(scores, weights: np.ndarray | None) -> list[tuple[float, float] | None]:
    if weights is None or scores.matches is None:
        return [None] * len(scores.ap50)
    boot = ap_from_matches(scores.matches, weights)  # (B, C)
    return [interval(boot[:, c]) for c in range(boot.shape[1])]


def _by_size(gt: dict[str, Any], scores, dets: Detections, cmap: CategoryMap, max_dets: int, backend: str
             ) -> dict[str, list[dict[str, Any]]]:
    if scores.precision is not None and scores.precision.shape[3] == len(COCO_AREAS):
        by_coco = scores.precision[0, :, :, :, -1]
    else:  # above LARGE predictions the scores hold area 'all' only
        by_coco = precision50_by_area(gt, dets, max_dets, backend, COCO_AREAS)
    coco = [{"size": label, "AP50": _mean_valid(by_coco[:, :, a]) if by_coco is not None else float("nan"),
             "boxes": _count(gt, lo, hi)} for a, (label, lo, hi) in enumerate(COCO_AREAS)]
    prec = precision50_by_area(gt, dets, max_dets, backend, SIZE_BINS)
    bins = [{"size": label, "AP50": _mean_valid(prec[:, :, a]) if prec is not None else float("nan"),
             "boxes": _count(gt, lo, hi)} for a, (label, lo, hi) in enumerate(SIZE_BINS)]
    return {"coco": coco[1:], "bins": bins[1:]}


def _count(gt: dict[str, Any], lo: float, hi: float) -> int:
    return sum(1 for a in gt["annotations"] if not a["iscrowd"] and lo <= a["area"] <= hi)


def _gallery(gt: dict[str, Any], gt_data: dict[str, Any], dets: Detections, cmap: CategoryMap, errors: dict,
             at_conf: dict, root: Path, opts: ReportOptions, budget: gallery.Budget) -> dict[str, Any]:
    """The worst images (most missed boxes and false alarms at ``opts.conf``) and the most confident
    false alarms, drawn; a note instead when the images are not on disk."""
    names = {c.category_id: c.name for c in cmap.categories}
    file_of = {im["id"]: im["file_name"] for im in gt_data["images"]}
    shown_of = {im["id"]: im.get("original_file_name") or im["file_name"] for im in gt_data["images"]}  # the user's name
    anns_of: dict[int, list[int]] = {}
    for k, a in enumerate(gt["annotations"]):
        anns_of.setdefault(a["image_id"], []).append(k)
    probe = next(iter(file_of.values()), None)
    if probe is None or gallery.read(root, probe) is None:
        return {"note": f"images not found under {root} (file_name {probe!r}): the gallery is left out"}
    # per image at the stated score: boxes nothing found, and predictions that match nothing
    keep = at_conf["dets"]
    miss = {}
    for k in np.flatnonzero(~at_conf["gt_matched"] & ~np.array([a["iscrowd"] for a in gt["annotations"]], bool)):
        miss[gt["annotations"][k]["image_id"]] = miss.get(gt["annotations"][k]["image_id"], 0) + 1
    false = {}
    for k in np.flatnonzero(np.isin(at_conf["det_error"], list(tide.TYPES[:-1]))):
        false[int(keep.image_id[k])] = false.get(int(keep.image_id[k]), 0) + 1
    ranked = sorted(set(miss) | set(false), key=lambda i: (-(miss.get(i, 0) + false.get(i, 0)), i))
    worst = []
    for iid in ranked[: opts.worst]:
        img = gallery.read(root, file_of[iid])
        if img is None:
            continue
        g_idx = anns_of.get(iid, [])
        g_box = np.array([gt["annotations"][k]["bbox"] for k in g_idx], float).reshape(-1, 4)
        g_box[:, 2:] += g_box[:, :2]
        small, f = gallery.thumbnail_scale(img, opts.thumb)
        found = [bool(at_conf["gt_matched"][k]) for k in g_idx]
        left = gallery.draw_boxes(small, g_box * f, [("" if ok else "missed: ") + names[gt["annotations"][k]["category_id"]]
                                                     for k, ok in zip(g_idx, found)],
                                  colours=[gallery.FOUND if ok else gallery.MISSED for ok in found])
        sel = np.flatnonzero(keep.image_id == iid)
        p_box = keep.xywh[sel].copy()
        p_box[:, 2:] += p_box[:, :2]
        wrong = [at_conf["det_error"][k] in tide.TYPES for k in sel.tolist()]
        right = gallery.draw_boxes(small, p_box * f, [f"{names.get(int(keep.category_id[k]), k)} {keep.score[k]:.2f}"
                                                      + (f" ({at_conf['det_error'][k]})" if bad else "")
                                                      for k, bad in zip(sel.tolist(), wrong)],
                                   colours=[gallery.FALSE_ALARM if bad else gallery.FOUND for bad in wrong])
        pic = gallery.side_by_side(left, right)
        uri = gallery.jpeg_uri(pic, budget)
        if uri is None:
            break
        worst.append({"file_name": shown_of[iid], "image_id": iid, "missed": miss.get(iid, 0),
                      "false_alarms": false.get(iid, 0), "uri": uri})
    alarms = []
    err = errors["det_error"]
    fp = np.flatnonzero(np.isin(err, ["cls", "loc", "both", "dupe", "bkg"]))
    for k in fp[np.argsort(-dets.score[fp], kind="mergesort")][: opts.false_alarms].tolist():
        iid = int(dets.image_id[k])
        img = gallery.read(root, file_of[iid])
        if img is None:
            continue
        box = dets.xywh[k].copy()
        box[2:] += box[:2]
        region, off = gallery.crop(img, box)
        g_idx = anns_of.get(iid, [])
        g_box = np.array([gt["annotations"][j]["bbox"] for j in g_idx], float).reshape(-1, 4)
        g_box[:, 2:] += g_box[:, :2]
        small, f = gallery.thumbnail_scale(region, opts.thumb // 2 + 60)
        truth = gallery.draw_boxes(small, (g_box - off) * f, [f"true: {names[gt['annotations'][j]['category_id']]}"
                                                              for j in g_idx], thickness=1,
                                   colours=[gallery.FOUND] * len(g_idx))
        name = names.get(int(dets.category_id[k]), str(int(dets.category_id[k])))
        pic = gallery.draw_boxes(truth, ((box - off) * f)[None], [f"{name} {dets.score[k]:.2f}"],
                                 colours=[gallery.FALSE_ALARM])
        uri = gallery.jpeg_uri(pic, budget)
        if uri is None:
            break
        gt_of = int(errors["det_gt"][k])
        why = tide.NAMES[err[k]] + (f": the box is {names[gt['annotations'][gt_of]['category_id']]}"
                                     if err[k] == "cls" and gt_of >= 0 else "")
        alarms.append({"file_name": shown_of[iid], "class": name, "score": float(dets.score[k]), "error": why,
                       "uri": uri})
    note = None
    if budget.refused:
        note = f"the gallery stopped at the {opts.max_mb:g} MB cap on pictures (--report-max-mb)"
    return {"worst": worst, "false_alarms": alarms, "note": note}


def file_section(index: int, path: str, scores, dets: Detections, gt: dict[str, Any], gt_data: dict[str, Any],
                 cmap: CategoryMap, weights: np.ndarray | None, max_dets: int, backend: str, root: Path,
                 opts: ReportOptions, budget: gallery.Budget) -> dict[str, Any]:
    """Everything the page shows for one results file (and what goes into the metrics JSON)."""
    cis = _per_class_intervals(scores, weights)
    per_class = [{"category_id": c.category_id, "name": c.name, "AP50": scores.ap50[c.category_id],
                  "ci95": list(ci) if ci else None} for c, ci in zip(cmap.categories, cis)]
    labels = cmap.names + ["background"]
    counts = confusion(gt, dets, cmap, opts.conf, opts.iou)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
    sizes = _by_size(gt, scores, dets, cmap, max_dets, backend)
    errors = tide.analyse(gt, dets, cmap.ids, max_dets)
    at_conf_dets = dets.select(dets.score >= opts.conf)
    at_conf = {**tide.analyse(gt, at_conf_dets, cmap.ids, max_dets), "dets": at_conf_dets}
    charts = {
        "pr": plots.pr_figure(cmap.names, scores.precision, Path(path).name),
        "confusion_counts": plots.confusion_figure(counts, labels, f"counts (score >= {opts.conf:g}, IoU >= "
                                                   f"{opts.iou:g})", normalised=False),
        "confusion_normalised": plots.confusion_figure(norm, labels, "each true row normalised", normalised=True),
        "size": plots.bars_figure([b["size"] for b in sizes["bins"]], {"AP50": [b["AP50"] for b in sizes["bins"]]},
                                  "AP50 by box size (side of a square of the same area, px)", "AP50"),
        "errors": plots.bars_figure([tide.NAMES[t] for t in tide.TYPES],
                                    {"mAP50 if fixed": [errors["delta_mAP50"][t] for t in tide.TYPES]},
                                    "what each error type costs", "mAP50 gained by fixing it"),
    }
    images = {k: gallery.png_uri(plots.png(fig), budget) for k, fig in charts.items()}
    section = {
        "index": index, "path": path, "name": Path(path).name, "mAP50": scores.map50, "mAP50_95": scores.map50_95,
        "mAP50_ci95": list(scores.ci95) if scores.ci95 else None, "per_class": per_class, "charts": images,
        "confusion": {"labels": labels, "counts": counts.astype(int).tolist(), "conf": opts.conf, "iou": opts.iou},
        "size": sizes,
        "errors": {"baseline_mAP50": errors["baseline_mAP50"], "delta_mAP50": errors["delta_mAP50"],
                   "counts": errors["counts"], "names": tide.NAMES},
        "gallery": _gallery(gt, gt_data, dets, cmap, errors, at_conf, root, opts, budget),
    }
    return section


def json_extras(section: dict[str, Any]) -> dict[str, Any]:
    """The report's numbers for the metrics JSON (no pictures)."""
    from coco2yolo.fileio import finite_or_null

    errors = {k: v for k, v in section["errors"].items() if k != "names"}
    return finite_or_null({"per_class_AP50_ci95": [{"category_id": r["category_id"], "ci95": r["ci95"]}
                                                   for r in section["per_class"]],
                           "confusion": section["confusion"], "AP50_by_size": section["size"], "errors": errors})


def versions() -> dict[str, str]:
    import faster_coco_eval
    import matplotlib
    import numpy

    from coco2yolo import __version__

    out = {"coco2yolo": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
           "faster-coco-eval": faster_coco_eval.__version__, "matplotlib": matplotlib.__version__}
    for mod in ("ultralytics", "torch"):
        if mod in sys.modules:
            out[mod] = getattr(sys.modules[mod], "__version__", "?")
    return out


def render(doc: dict[str, Any]) -> str:
    """The page, from the template next to this module (jinja2, HTML-escaped)."""
    from importlib import resources

    import jinja2

    template = resources.files("coco2yolo.evaluation").joinpath("templates", "report.html.j2").read_text("utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["f4"] = _fmt
    env.filters["s4"] = lambda v: _fmt(v, signed=True)
    return env.from_string(template).render(**doc)


def header(out: dict[str, Any], opts: ReportOptions, command: str) -> dict[str, Any]:
    return {"title": f"Evaluation report: {Path(out['gt']).name}", "gt": out["gt"], "images": out["images"],
            "gt_boxes": out["gt_boxes"], "max_dets": out["max_dets"], "bootstrap": out["bootstrap"],
            "seed": out["seed"], "backend": out["backend"], "options": opts.__dict__, "command": command,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "versions": versions()}
