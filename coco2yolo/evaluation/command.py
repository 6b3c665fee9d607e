"""``evaluate.py``: score results files, print, write the metrics JSON, plots and the HTML report.

The numbers come from :mod:`coco2yolo.evaluation.metrics`; the report from :mod:`coco2yolo.evaluation.report`.
"""

from __future__ import annotations

import sys
from typing import Any

from coco2yolo.cocodata import CategoryMap
from coco2yolo.errors import UserError
from coco2yolo.evaluation.metrics import evaluate_files

def get_args_parser():
    from coco2yolo import cli

    p = cli.ArgumentParser(prog="evaluate.py", description="Score COCO results files against ground "
                           "truth: mAP50 (headline), mAP50:95, per-class AP50, bootstrap intervals.")
    p.add_argument("--gt", required=True, help="ground-truth COCO dataset JSON (e.g. val.json)")
    p.add_argument("results", nargs="+", help="COCO results JSON files; with 2+, each is compared "
                   "with the first (paired bootstrap)")
    p.add_argument("--json", default=None, help="write all metrics to this JSON file")
    p.add_argument("--plot", default=None, help="folder for per-class AP50 and PR-curve PNGs")
    p.add_argument("--bootstrap", type=cli.NONNEG_INT, default=1000,
                   help="bootstrap resamples of images for 95%% intervals (0: off; default 1000)")
    p.add_argument("--seed", type=cli.SEED, default=0, help="bootstrap seed (0)")
    p.add_argument("--max-dets", type=cli.POSITIVE_INT, default=100,
                   help="detections kept per image and class, as COCOeval's maxDets (100)")
    p.add_argument("--backend", choices=("faster", "pycocotools"), default="faster",
                   help="COCOeval implementation for the point estimates (faster: faster-coco-eval)")
    r = p.add_argument_group("error report (--report)")
    r.add_argument("--report", default=None, metavar="REPORT.html",
                   help="one self-contained HTML page: per-class AP50 with intervals, PR curves, confusion matrix, AP50 "
                        "by size, what each error type costs, a gallery of the worst images and false alarms")
    r.add_argument("--report-conf", type=cli.FRACTION, default=0.25,
                   help="score a prediction needs in the confusion matrix and the gallery (0.25)")
    r.add_argument("--report-iou", type=cli.IOU, default=0.5, help="IoU at which boxes match in the confusion matrix (0.5)")
    r.add_argument("--report-max-mb", type=cli.number(0.1), default=20.0,
                   help="size cap on the pictures inlined in the page, MB (20)")
    return p


def coverage_warnings(out: dict[str, Any], gt_path: str) -> list[str]:
    """A line for each results file that predicts on fewer than half the ground truth's images that have boxes
    (images without a prediction count as misses: usually the wrong pair of files, e.g. test predictions
    scored against train.json)."""
    lines = []
    data = out["_data"]
    with_boxes = {a["image_id"] for a in data["annotations"] if not a.get("iscrowd", 0)}
    for path, s in zip(out["files"], out["_scores"]):
        import numpy as np

        covered = int(np.isin(np.fromiter(with_boxes, np.int64, len(with_boxes)), np.unique(s.dets.image_id)).sum()) \
            if len(s.dets) else 0
        if with_boxes and covered < 0.5 * len(with_boxes):
            lines.append(f"warning: {path['path']} predicts on {covered} of the {len(with_boxes)} images of {gt_path} "
                         f"that have boxes ({100 * covered / len(with_boxes):.0f}%); the others count as misses. Are "
                         "these the predictions for this ground truth?")
    return lines


def format_report(out: dict[str, Any]) -> str:
    cmap: CategoryMap = out["_cmap"]
    width = max(12, *(len(n) for n in cmap.names))
    lines = [f"ground truth: {out['gt']} ({out['images']} images, {out['gt_boxes']} boxes); "
             f"maxDets {out['max_dets']}, {out['bootstrap']} bootstrap resamples"]
    for f in out["files"]:
        ci = f["mAP50_ci95"]
        ci_txt = f"  [95% CI {ci[0]:.4f}, {ci[1]:.4f}]" if ci and ci[0] is not None else ""
        m95 = f["mAP50_95"]
        m50 = f"{f['mAP50']:.4f}" if f["mAP50"] is not None else "n/a"
        lines.append(f"\n{f['path']}\n  mAP50 {m50}{ci_txt}   mAP50:95 "
                     + (f"{m95:.4f}" if m95 is not None else "n/a"))
        lines.append(f"  {'class':<{width}}  AP50")
        for row in f["per_class_AP50"]:
            v = row["AP50"]
            lines.append(f"  {row['name']:<{width}}  {'no GT' if v is None else f'{v:.4f}'}")
    for d in out["differences"]:
        ci = d.get("ci95")
        verdict = ""
        if ci:
            verdict = ("  (a real difference)" if ci[0] > 0 or ci[1] < 0
                       else "  (within noise: the interval contains 0)")
        ci_txt = f"  [95% CI {ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else ""
        lines.append(f"\n{d['b']} - {d['a']}: mAP50 {d['delta_mAP50']:+.4f}{ci_txt}{verdict}")
    return "\n".join(lines)


def evaluate_and_write(gt: str, results: list[str], n_boot: int = 1000, seed: int = 0, max_dets: int = 100,
                       backend: str = "faster", json_out: str | None = None, plot: str | None = None,
                       echo: bool = False, report: str | None = None, report_options: Any = None,
                       command: str = "") -> dict[str, Any]:
    """evaluate.py's work: score, print (``echo``), write ``json_out``, ``plot`` and ``report``; return the metrics."""
    from pathlib import Path

    from coco2yolo.evaluation.plots import plot_ap50, plot_pr
    from coco2yolo.fileio import guard_outputs, write_json, write_text

    if n_boot < 0 or max_dets < 1 or not 0 <= seed < 2**32:
        raise UserError(f"need bootstrap >= 0, max_dets >= 1 and a seed in [0, 2^32); got {n_boot}, {max_dets}, {seed}")
    guard_outputs({"--json": json_out, "--plot": plot, "--report": report}, {"--gt": gt, "results file": results},
                  folders={"--plot"})
    out = evaluate_files(gt, results, n_boot, seed, max_dets, backend)
    for line in coverage_warnings(out, gt):
        print(line, file=sys.stderr)
    if echo:
        print(format_report(out))
    scores, cmap, weights = out.pop("_scores"), out.pop("_cmap"), out.pop("_weights")
    gt_prepared, data = out.pop("_gt"), out.pop("_data")
    sections = []
    if report:
        from coco2yolo.evaluation import gallery
        from coco2yolo.evaluation import report as rep

        opts = report_options or rep.ReportOptions()
        budget = gallery.Budget(opts.max_mb * 1e6)
        sections = [rep.file_section(i, str(p), s, s.dets, gt_prepared, data, cmap, weights, max_dets, backend,
                                     Path(gt).parent, opts, budget) for i, (p, s) in enumerate(zip(results, scores))]
        for f, sec in zip(out["files"], sections):
            f.update(rep.json_extras(sec))
    if json_out:
        write_json(json_out, out, indent=2)
        if echo:
            print(f"\nmetrics written to {json_out}")
    if plot:
        folder = Path(plot)
        labels = [Path(p).name for p in results]
        if len(set(labels)) < len(labels):
            labels = [str(p) for p in results]
        plot_ap50(folder / "ap50_per_class.png", cmap.names,
                  {lab: [s.ap50[c] for c in cmap.ids] for lab, s in zip(labels, scores)})
        for i, (lab, s) in enumerate(zip(labels, scores)):
            plot_pr(folder / f"pr_{i}_{Path(lab).stem}.png", cmap.names, s.precision, lab)
        if echo:
            print(f"plots written to {folder}/ (ap50_per_class.png, pr_*.png)")
    if report:
        page = rep.render({**rep.header(out, opts, command), "files": sections, "differences": out["differences"]})
        write_text(report, page)
        if echo:
            print(f"report written to {report} ({len(page.encode()) / 1e6:.1f} MB)")
    return out


def main(args) -> int:
    import shlex
    import sys

    from coco2yolo.evaluation.report import ReportOptions

    opts = ReportOptions(conf=args.report_conf, iou=args.report_iou, max_mb=args.report_max_mb)
    evaluate_and_write(args.gt, args.results, args.bootstrap, args.seed, args.max_dets, args.backend, args.json,
                       args.plot, echo=True, report=args.report, report_options=opts,
                       command=shlex.join(["evaluate.py", *sys.argv[1:]]))
    return 0
