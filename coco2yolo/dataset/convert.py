"""COCO dataset JSON -> YOLO dataset (images, labels, data.yaml), with cleaning and a split.

``python -m coco2yolo JSON --out DIR [--images ROOT] [--clean] [--folds K --fold I | --val-fraction F] [--seed S]``

Writes, atomically (built beside DIR, then swapped in):

- ``images/{train,val}/<file_name>``  symlinks to the originals (``--copy`` to copy)
- ``labels/{train,val}/<file_name>.txt``  ``class xc yc w h`` normalised; an empty file for an
  image without boxes
- ``data.yaml`` (absolute ``path``, ``names`` in class order), ``categories.json`` (class index
  <-> original category_id <-> name)
- ``train.json`` / ``val.json``: the split as COCO (original ids, crowd boxes kept for scoring;
  ``file_name`` points at the linked image in DIR, the original is kept as ``original_file_name``),
  ``split.json`` (fold of every image), ``report.json`` (conversion, cleaning, split)
- with ``--clean``: ``cleaned.json``, the whole cleaned COCO dataset for other tools

A JSON without annotations (like ``test.json``) gives ``images.txt``, an image list for prediction.
"""

from __future__ import annotations

import argparse
import os
import sys
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import yaml

from coco2yolo import cli
from coco2yolo.boxes import xywh_to_yolo
from coco2yolo.dataset.clean import RULES, CleanConfig, clean_dataset, summary_line
from coco2yolo.dataset.geometry import fit_to_photos
from coco2yolo.cocodata import CategoryMap, has_control_chars, load_dataset, out_of_image
from coco2yolo.errors import UserError
from coco2yolo.fileio import Resolved, atomic_dir, guard_outputs, paused_gc, real_paths, write_json, write_text
from coco2yolo.images import MAX_PIXELS, PhotoInfo, probe
from coco2yolo.dataset.split import assign_folds, class_count_matrix, split_shares, split_table

MARKER = ".coco2yolo"
# Ultralytics' IMG_FORMATS: other suffixes are skipped by its loader without a word.
IMG_SUFFIXES = {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm",
                ".heic"}


@dataclass
class ConvertOptions:
    """Everything the converter needs besides the input and output paths."""

    images_root: Path | None = None
    clean: CleanConfig | None = None
    folds: int | None = None
    fold: int | None = None
    val_fraction: float | None = 0.2
    seed: int = 0
    copy: bool = False
    crowd: str = "drop"
    strict: bool = False  # an unusable image file, or one whose size or orientation disagrees with the JSON, is
    # an error instead of being skipped or fitted
    max_pixels: int = MAX_PIXELS  # a photo with more pixels is skipped (Ultralytics would decode all of them)
    all_train: bool = False  # a refit: every image trains; data.yaml's val names the training images
    drop_annotations: Path | None = None  # an issues file of python -m coco2yolo.label_issues
    issue_kinds: tuple[str, ...] = ("wrong_class", "no_object", "bad_box")


@dataclass
class ConvertResult:
    out: Path
    images: dict[str, int] = field(default_factory=dict)
    boxes: dict[str, int] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    split_text: str = ""
    max_share_deviation_pp: float = 0.0
    bad_images: list[tuple[str, str]] = field(default_factory=list)  # (file_name, why), skipped


def _label_rows(classes: list[int], yolo: np.ndarray) -> list[str | None]:
    """One ``class xc yc w h`` line a box (``%g``, Ultralytics' formatting), centres clamped into [0, 1] and sizes
    to at most 1; None for a box without area."""
    if not len(classes):
        return []
    yolo = np.asarray(yolo, dtype=np.float64).reshape(-1, 4)
    # as min(max(v, 0), 1) per value: a box with area never has a centre of -0.0, where the two could differ
    clamped = np.concatenate([np.clip(yolo[:, :2], 0.0, 1.0), np.minimum(yolo[:, 2:], 1.0)], axis=1)
    keep = ((yolo[:, 2] > 0) & (yolo[:, 3] > 0)).tolist()
    return ["%g %g %g %g %g" % (k, *v) if ok else None for k, v, ok in zip(classes, clamped.tolist(), keep)]


def format_label_lines(classes: list[int], yolo: np.ndarray) -> list[str]:
    """``class xc yc w h`` lines with Ultralytics' ``%g`` formatting, centres clamped into [0, 1];
    zero-area boxes and exact repeats are dropped."""
    return list(dict.fromkeys(r for r in _label_rows(classes, yolo) if r is not None))


def all_label_lines(data: dict[str, Any], anns_of: dict[int, list[dict[str, Any]]], cmap: CategoryMap
                    ) -> dict[int, list[str]]:
    """Label lines for every image, computed in one vectorised pass over all annotations."""
    size = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    flat = [(iid, a) for iid, anns in anns_of.items() for a in anns]
    if not flat:
        return {iid: [] for iid in anns_of}
    yolo = xywh_to_yolo([a["bbox"] for _, a in flat], [size[iid] for iid, _ in flat])
    rows = _label_rows([cmap.class_of(a["category_id"]) for _, a in flat], yolo)
    out: dict[int, list[str]] = {}
    start = 0
    for iid, anns in anns_of.items():
        end = start + len(anns)
        out[iid] = list(dict.fromkeys(r for r in rows[start:end] if r is not None))
        start = end
    return out


def dataset_relpath(file_name: str, image_id: int) -> PurePosixPath:
    """Where an image goes under images/<split>/: its file_name, made safe for Ultralytics.

    Ultralytics finds a label by replacing the last '/images/' of the image path with
    '/labels/', so no component of the relative path may be called 'images'.
    """
    return PurePosixPath(dataset_relname(file_name, image_id))


def dataset_relname(file_name: str, image_id: int) -> str:
    """:func:`dataset_relpath` as a string (a plain ``train/0001.jpg`` is returned as it is, without pathlib)."""
    if "\\" not in file_name and not file_name.startswith("/") and not file_name.endswith("/"):
        parts = file_name.split("/")
        if all(part and part not in (".", "..", "images") for part in parts):
            return file_name
    p = PurePosixPath(file_name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts:
        return f"img{image_id}_{p.name}"
    return str(PurePosixPath(*[f"{part}_" if part == "images" else part for part in p.parts]))


def _suffix(file_name: str) -> str:
    """pathlib's ``PurePosixPath(file_name).suffix``, on the string (no path object a photo)."""
    name = file_name.rstrip("/").rpartition("/")[2]
    i = name.rfind(".")
    if 0 < i < len(name) - 1:
        return name[i:]
    return "" if "." not in name else PurePosixPath(file_name).suffix


def _check_suffixes(images: list[dict[str, Any]], source: str) -> None:
    """Every file_name has an image suffix (else one error naming them)."""
    bad_suffix = [im["file_name"] for im in images if _suffix(im["file_name"]).lower() not in IMG_SUFFIXES]
    if bad_suffix:
        raise UserError(f"{source}: {len(bad_suffix)} file_name(s) are not images Ultralytics reads "
                        f"(first: {bad_suffix[0]}); allowed suffixes: {' '.join(sorted(IMG_SUFFIXES))}")


def screen_images(images: list[dict[str, Any]], root: Path, source: str, strict: bool,
                  max_pixels: int | None = MAX_PIXELS, infos: dict[int, PhotoInfo] | None = None
                  ) -> list[tuple[str, str, int]]:
    """Images whose files are empty, not images, truncated or over ``max_pixels``, as (file_name, why, image id);
    an error with ``strict``. ``infos``: filled with what each usable photo's header says (size, orientation)."""
    base = str(root)
    bad = []
    for im in images:
        info = probe(os.path.join(base, im["file_name"]), max_pixels)
        if info.problem is not None:
            bad.append((im["file_name"], info.problem, im["id"]))
        elif infos is not None:
            infos[im["id"]] = info
    # a named pipe or a folder in a photo's place exists: it is skipped with its reason
    missing = [name for name, why, _ in bad if why == "missing"]
    if missing:
        raise UserError(f"{source}: {len(missing)} of {len(images)} images are missing under {root} "
                        f"(first: {', '.join(missing[:5])}); pass --images ROOT, the folder that "
                        "file_name is relative to")
    if bad and strict:
        raise UserError(f"{source}: {len(bad)} of {len(images)} image files are unusable (first: "
                        + "; ".join(f"{n}: {w}" for n, w, _ in bad[:3]) + "); nothing was written")
    return bad


def bad_images_line(bad: list[tuple[str, str, int]], total: int, names_in: str | None = None) -> str:
    """The one warning line for skipped photos; ``names_in``: where every name is listed."""
    return (f"warning: skipped {len(bad)} of {total} images whose files are unusable"
            + (", with their boxes" if total else "") + " (first: "
            + "; ".join(f"{n}: {w}" for n, w, _ in bad[:3]) + ")"
            + (f"; every name in {names_in}" if names_in else "") + "; --strict makes this an error")


def _check_bounds(data: dict[str, Any], source: str) -> None:
    images = {im["id"]: im for im in data["images"]}
    for i, a in enumerate(data["annotations"]):
        im = images[a["image_id"]]
        if out_of_image(a["bbox"], (im["width"], im["height"])):
            raise UserError(f"{source}: annotations[{i}] (id {a['id']}): bbox {a['bbox']} extends "
                            f"outside its {im['width']}x{im['height']} image {im['file_name']}; "
                            "use --clean to clip such boxes (they are counted in the report)")


def _subset(data: dict[str, Any], ids: set[int], linked: dict[int, str]) -> dict[str, Any]:
    """The images in ``ids`` and their annotations; file_name points at the linked copy in DIR."""
    out = {k: v for k, v in data.items() if k not in ("images", "annotations")}
    out["images"] = [{**im, "file_name": linked[im["id"]], "original_file_name": im["file_name"]}
                     for im in data["images"] if im["id"] in ids]
    out["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    return out


def _write_image_list(data: dict[str, Any], json_path: Path, out: Path, root: Path, opts: ConvertOptions
                      ) -> ConvertResult:
    images = sorted(data["images"], key=lambda im: im["id"])
    _check_suffixes(images, str(json_path))
    if has_control_chars(str(root.absolute())):
        raise UserError(f"{root.absolute()!a}: the images folder's path contains a newline or another control "
                        "character, which an image list cannot hold; move or rename it")
    bad = screen_images(images, root, str(json_path), opts.strict, opts.max_pixels)
    skip = {i for _, _, i in bad}
    with atomic_dir(out, MARKER) as tmp:
        (tmp / "images.txt").write_text(
            "".join(f"{(root / im['file_name']).absolute()}\n" for im in images if im["id"] not in skip),
            encoding="utf-8")
        if data.get("categories"):
            CategoryMap(data["categories"], str(json_path)).save(tmp / "categories.json")
    return ConvertResult(out=out, images={"list": len(images) - len(bad)}, bad_images=bad)


def _drop_images(data: dict[str, Any], gone: set[int]) -> dict[str, Any]:
    """The dataset without the images whose ids are in ``gone``, and without their annotations."""
    return {**data, "images": [im for im in data["images"] if im["id"] not in gone],
            "annotations": [a for a in data["annotations"] if a["image_id"] not in gone]}


def _check_split(fold: np.ndarray, val_fold: int, opts: ConvertOptions, n_images: int) -> None:
    """Refuse a split that leaves the training or the validation set empty."""
    n_val = int((fold == val_fold).sum())
    if n_val == 0 or n_val == n_images:
        which = "validation" if n_val == 0 else "training"
        how = (f"--folds {opts.folds} --fold {opts.fold}" if opts.folds
               else f"--val-fraction {opts.val_fraction:g}")
        raise UserError(f"{how} on {n_images} images leaves the {which} set empty; use "
                        + ("fewer folds" if opts.folds else "a fraction that gives both sets at least one image"))


def convert(json_path: str | os.PathLike, out: str | os.PathLike, opts: ConvertOptions) -> ConvertResult:
    """Convert one COCO dataset JSON into a YOLO dataset folder at ``out`` (see module doc)."""
    json_path, out = Path(json_path), Path(out).absolute()
    from coco2yolo.fileio import require_file

    require_file(json_path, "COCO JSON")  # before the folder beside it is looked for
    root = Path(opts.images_root) if opts.images_root else json_path.parent
    if not root.is_dir():
        raise UserError(f"--images {root} is not a folder")
    if not 0 <= opts.seed < 2**32:
        raise UserError(f"--seed must be an integer in [0, 2^32 - 1], got {opts.seed}")
    if has_control_chars(str(out)):
        raise UserError(f"--out {str(out)!a} contains a newline or another control character; choose a plain name")
    with paused_gc():
        return _convert(json_path, out, root, opts)


def _convert(json_path: Path, out: Path, root: Path, opts: ConvertOptions) -> ConvertResult:
    data = load_dataset(json_path)
    photos = {im["id"]: os.path.join(str(root), im["file_name"]) for im in data["images"]}
    real = dict(zip(photos, real_paths(photos.values())))  # the photos, not links to them
    guard_outputs({"--out": out}, {"the COCO JSON": json_path, "--images": root, "--drop-annotations": opts.drop_annotations,
                                   "image": Resolved(zip(photos.values(), real.values()))},
                  folders={"--out"})
    if not data["annotations"]:
        if opts.clean or opts.folds:
            raise UserError(f"{json_path} has no annotations: --clean and --folds need ground truth "
                            "(without them it is written as an image list for prediction)")
        return _write_image_list(data, json_path, out, root, opts)
    cmap = CategoryMap(data["categories"], str(json_path))
    if opts.all_train:
        if opts.folds is not None or opts.fold is not None:
            raise UserError("--all-train puts every image in training: drop --folds and --fold")
        shares, val_fold = [1.0], -1
    else:
        shares, val_fold = split_shares(opts.folds, opts.fold, None if opts.folds else opts.val_fraction)
    if opts.crowd not in ("drop", "keep"):
        raise UserError(f"--crowd must be drop or keep, got {opts.crowd!r}")
    _check_suffixes(data["images"], str(json_path))
    result = ConvertResult(out=out)
    infos: dict[int, PhotoInfo] = {}
    result.bad_images = screen_images(data["images"], root, str(json_path), opts.strict, opts.max_pixels, infos)
    if result.bad_images:
        data = _drop_images(data, {i for _, _, i in result.bad_images})
        result.report["bad_images"] = {"count": len(result.bad_images), "policy": "skipped with their boxes",
                                       "files": [{"file_name": n, "problem": w, "image_id": i}
                                                 for n, w, i in result.bad_images]}
        if not data["images"]:
            first = "; ".join(f"{n}: {w}" for n, w, _ in result.bad_images[:3])
            raise UserError(f"{json_path}: none of its {len(result.bad_images)} image files is usable (first: {first})")
    data, fitted = fit_to_photos(data, infos, opts.strict, str(json_path))
    if fitted:
        result.report["photos"] = fitted
    if opts.folds and opts.folds > len(data["images"]):
        raise UserError(f"--folds {opts.folds} needs at least {opts.folds} images; {json_path} has "
                        f"{len(data['images'])} usable")
    clean_cfg = opts.clean
    if opts.drop_annotations is not None:
        from coco2yolo.dataset.clean import read_issues

        ids, _ = read_issues(opts.drop_annotations, data, list(opts.issue_kinds))
        base = clean_cfg if clean_cfg is not None else CleanConfig(**{r: False for r in RULES})
        clean_cfg = replace(base, label_issues=True, drop_ids=frozenset(ids))
    if clean_cfg is not None:
        if not clean_cfg.clip:
            _check_bounds(data, str(json_path))
        data, clean_report = clean_dataset(data, cmap, clean_cfg)
        result.report["cleaning"] = clean_report
    else:
        _check_bounds(data, str(json_path))

    image_ids, counts = class_count_matrix(data, cmap)
    fold = assign_folds(counts, shares, opts.seed)
    if not opts.all_train:
        _check_split(fold, val_fold, opts, len(image_ids))
    labels = (["train"] if opts.all_train else None if opts.folds else
              ["val" if f == val_fold else "train" for f in range(len(shares))])
    result.split_text, result.max_share_deviation_pp = split_table(counts, fold, cmap.names, labels)
    split_of = {iid: ("val" if f == val_fold else "train") for iid, f in zip(image_ids, fold.tolist())}

    anns_of: dict[int, list[dict[str, Any]]] = {iid: [] for iid in image_ids}
    crowd = 0
    for a in data["annotations"]:
        if a["iscrowd"] and opts.crowd == "drop":
            crowd += 1
            continue
        anns_of[a["image_id"]].append(a)

    with atomic_dir(out, MARKER) as tmp:
        result.images, result.boxes, linked = _write_yolo_files(tmp, data, anns_of, split_of, cmap, real, opts)
        _write_yaml(tmp / "data.yaml", out, cmap, json_path, val="images/train" if opts.all_train else "images/val")
        cmap.save(tmp / "categories.json")
        for name in ("train", "val"):
            ids = {i for i, s in split_of.items() if s == name}
            write_json(tmp / f"{name}.json", _subset(data, ids, linked))
        write_json(tmp / "split.json", {
            "source": str(json_path.absolute()), "seed": opts.seed, "shares": shares,
            "val_fold": val_fold, "folds": opts.folds, "val_fraction": None if opts.folds else opts.val_fraction,
            "fold_of_image": {str(i): f for i, f in zip(image_ids, fold.tolist())}})
        if clean_cfg is not None:
            write_json(tmp / "cleaned.json", data)
        result.report["conversion"] = {
            "source": str(json_path.absolute()), "images_root": str(root.absolute()),
            "images": result.images, "label_lines": result.boxes,
            "crowd": {"policy": opts.crowd, "count": crowd if opts.crowd == "drop" else 0},
            "empty_images": sum(1 for v in anns_of.values() if not v)}
        result.report["split"] = {"max_share_deviation_pp": result.max_share_deviation_pp,
                                  "table": result.split_text.splitlines()}
        write_json(tmp / "report.json", result.report, indent=2)
    return result


def _stem_key(rel: str) -> str:
    """``rel`` without its suffix, lower case (pathlib's ``with_suffix("")``, on a string)."""
    suffix = _suffix(rel)
    return (rel[: len(rel) - len(suffix)] if suffix else rel).lower()


def _unique(rel: str, image_id: int, used: set[str]) -> str:
    """``rel``, or ``rel`` with ``__id<image_id>`` (then a counter) added to its stem, whichever is free.

    Names compare without suffix and case: a.jpg and A.png would share a label file.
    """
    key = _stem_key(rel)
    if key not in used:
        used.add(key)
        return rel
    p, k = PurePosixPath(rel), 0
    cand = rel
    while _stem_key(cand) in used:
        k += 1
        cand = str(p.with_name(f"{p.stem}__id{image_id}{'' if k == 1 else f'_{k}'}{p.suffix}"))
    used.add(_stem_key(cand))
    return cand


LINKS_IN_THREAD = True  # False: one after the other (bench/bench_convert.py's ablation)
_LABEL_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


def _link_all(pairs: list[tuple[str, str]], copy: bool) -> None:
    for src, dst in pairs:
        if copy:
            shutil.copy2(src, dst)
        else:
            os.symlink(src, dst)


def _write_labels(files: list[tuple[str, list[str]]]) -> None:
    for lbl, lines in files:
        fd = os.open(lbl, _LABEL_FLAGS, 0o666)  # raw calls: one label file a photo
        try:
            text = memoryview(("\n".join(lines) + "\n").encode()) if lines else b""
            while text:
                text = text[os.write(fd, text):]
        finally:
            os.close(fd)


def _write_yolo_files(tmp: Path, data: dict[str, Any], anns_of: dict[int, list[dict[str, Any]]],
                      split_of: dict[int, str], cmap: CategoryMap, real: dict[int, str], opts: ConvertOptions
                      ) -> tuple[dict[str, int], dict[str, int], dict[int, str]]:
    """Links and label files; returns images and label lines per split, and each image's link path.

    The links (in images/) are made in a thread while the labels (in labels/) are written: two folders,
    so the kernel creates both at once (4,883 of each on this machine's disk: 0.27 s against 0.35 s).
    """
    n_images: Counter[str] = Counter()
    n_lines: Counter[str] = Counter()
    linked: dict[int, str] = {}
    used: set[str] = set()
    made: set[str] = set()
    lines_of = all_label_lines(data, anns_of, cmap)
    base = str(tmp)
    pairs: list[tuple[str, str]] = []
    labels: list[tuple[str, list[str]]] = []
    for im in sorted(data["images"], key=lambda im: im["id"]):
        split = split_of[im["id"]]
        rel_s = _unique(dataset_relname(im["file_name"], im["id"]), im["id"], used)
        dst = os.path.join(base, "images", split, rel_s)
        lbl = os.path.join(base, "labels", split, os.path.splitext(rel_s)[0] + ".txt")
        for d in (os.path.dirname(dst), os.path.dirname(lbl)):
            if d not in made:
                os.makedirs(d, exist_ok=True)
                made.add(d)
        pairs.append((real[im["id"]], dst))
        lines = lines_of[im["id"]]
        labels.append((lbl, lines))
        n_images[split] += 1
        n_lines[split] += len(lines)
        linked[im["id"]] = f"images/{split}/{rel_s}"
    if not LINKS_IN_THREAD:
        _link_all(pairs, opts.copy)
        _write_labels(labels)
    else:
        with ThreadPoolExecutor(max_workers=1) as pool:
            links = pool.submit(_link_all, pairs, opts.copy)
            _write_labels(labels)
            links.result()
    return dict(n_images), dict(n_lines), linked


def _write_yaml(path: Path, out: Path, cmap: CategoryMap, source: Path, val: str = "images/val") -> None:
    body = yaml.safe_dump({"path": str(out), "train": "images/train", "val": val,
                           "nc": len(cmap), "names": dict(enumerate(cmap.names))},
                          sort_keys=False, allow_unicode=True)
    write_text(path, f"# written by coco2yolo from {str(source.absolute())!a}\n"
                     "# class index -> original category_id: see categories.json\n" + body)


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog="python -m coco2yolo",
                           description="Convert a COCO dataset JSON into a cleaned, split YOLO dataset.")
    p.add_argument("json", type=Path, help="COCO dataset JSON (train.json, or test.json for an image list)")
    p.add_argument("--out", type=Path, required=True, help="output folder (replaced if it exists)")
    p.add_argument("--images", type=Path, default=None,
                   help="folder that file_name is relative to (default: the JSON's folder)")
    p.add_argument("--copy", action="store_true", help="copy images instead of symlinking them")
    p.add_argument("--strict", action="store_true",
                   help="an unusable image file (empty, not an image, truncated, over --max-pixels) is an error, and so "
                        "is a photo whose size or EXIF orientation disagrees with the JSON; by default the first is "
                        "skipped with its boxes and the second has its boxes fitted to the photo, both counted and named")
    p.add_argument("--max-pixels", type=cli.POSITIVE_INT, default=MAX_PIXELS,
                   help=f"skip (or with --strict refuse) photos with more pixels than this ({MAX_PIXELS:,}, Pillow's "
                        "bound: Ultralytics would decode them whole)")
    p.add_argument("--crowd", choices=("drop", "keep"), default="drop",
                   help="iscrowd=1 boxes: drop from YOLO labels (default; they stay in train/val.json "
                        "where scoring ignores them) or keep as ordinary boxes")
    s = p.add_argument_group("split (stratified by class, grouped by image)")
    s.add_argument("--folds", type=cli.number(2, integer=True), default=None, help="number of folds K (>= 2)")
    s.add_argument("--fold", type=cli.NONNEG_INT, default=None, help="validation fold I in 0..K-1")
    s.add_argument("--val-fraction", type=cli.number(0, 1, lo_open=True, hi_open=True), default=None,
                   help="single split with this share of images in val (default 0.2 without --folds)")
    s.add_argument("--seed", type=cli.SEED, default=0, help="split seed (default 0)")
    s.add_argument("--all-train", action="store_true",
                   help="no split: every image trains (a refit on the whole set); data.yaml validates on the training "
                        "images, which only tells how training went, and val.json is empty")
    c = p.add_argument_group("cleaning (with --clean; rules: " + ", ".join(RULES) + ")")
    d = CleanConfig()
    c.add_argument("--clean", action="store_true", help="apply the cleaning rules and report them")
    c.add_argument("--disable", nargs="+", choices=RULES, default=[], metavar="RULE",
                   help=f"turn rules off: {', '.join(RULES)}")
    c.add_argument("--min-wh", type=cli.number(0), default=d.min_wh,
                   help=f"min box width and height, px ({d.min_wh:g})")
    c.add_argument("--min-area", type=cli.number(0), default=d.min_area, help=f"min box area, px^2 ({d.min_area:g})")
    c.add_argument("--dup-iou", type=cli.IOU, default=d.dup_iou,
                   help=f"same-class IoU at which a box is a duplicate ({d.dup_iou:g})")
    c.add_argument("--max-aspect", type=cli.number(1), default=d.max_aspect,
                   help=f"flag boxes with a longer/shorter side ratio above this ({d.max_aspect:g})")
    c.add_argument("--drop-aspect", action="store_true", help="drop the flagged extreme-aspect boxes")
    c.add_argument("--max-cover", type=cli.IOU, default=d.max_cover,
                   help=f"flag boxes covering at least this share of the image ({d.max_cover:g})")
    c.add_argument("--drop-large", action="store_true", help="drop the flagged large boxes")
    c.add_argument("--drop-annotations", type=Path, default=None, metavar="ISSUES.json",
                   help="drop the annotations an issues file of python -m coco2yolo.label_issues names (the "
                        "label_issues rule; with or without --clean)")
    c.add_argument("--issue-kinds", nargs="+", choices=("wrong_class", "no_object", "bad_box"),
                   default=["wrong_class", "no_object", "bad_box"], metavar="KIND",
                   help="which kinds of issue to drop (default: wrong_class no_object bad_box; a missing box has "
                        "no annotation to drop)")
    return p


def options_from_args(args: argparse.Namespace) -> ConvertOptions:
    if args.folds is not None and args.val_fraction is not None:
        raise UserError("use either --folds K --fold I or --val-fraction F, not both")
    if args.all_train and args.val_fraction is not None:
        raise UserError("--all-train puts every image in training: drop --val-fraction")
    clean = None
    if args.clean:
        clean = CleanConfig(min_wh=args.min_wh, min_area=args.min_area, dup_iou=args.dup_iou,
                            max_aspect=args.max_aspect, drop_aspect=args.drop_aspect,
                            max_cover=args.max_cover, drop_large=args.drop_large,
                            **{r: r not in args.disable for r in RULES})
    elif [r for r in args.disable if r != "label_issues"]:
        raise UserError("--disable only applies with --clean")
    return ConvertOptions(images_root=args.images, clean=clean, folds=args.folds, fold=args.fold,
                          val_fraction=0.2 if args.val_fraction is None else args.val_fraction,
                          seed=args.seed, copy=args.copy, crowd=args.crowd, strict=args.strict,
                          max_pixels=args.max_pixels, all_train=args.all_train,
                          drop_annotations=args.drop_annotations, issue_kinds=tuple(args.issue_kinds))


def main(args: argparse.Namespace) -> int:
    res = convert(args.json, args.out, options_from_args(args))
    if res.bad_images:
        total = res.images.get("list", sum(res.images.values())) + len(res.bad_images)
        print(bad_images_line(res.bad_images, total, f"{res.out / 'report.json'} (bad_images)"), file=sys.stderr)
    if "list" in res.images:
        print(f"{args.json} has no annotations: wrote an image list of {res.images['list']} images "
              f"for prediction to {res.out / 'images.txt'}")
        return 0
    if "photos" in res.report:
        from coco2yolo.dataset.geometry import summary_line as photos_line

        print(photos_line(res.report["photos"], f"{res.out / 'report.json'} (photos)"), file=sys.stderr)
    if "cleaning" in res.report:
        print(summary_line(res.report["cleaning"]))
    conv = res.report["conversion"]
    print(res.split_text)
    print(f"converted {sum(res.images.values())} images ({res.images.get('train', 0)} train, "
          f"{res.images.get('val', 0)} val; {conv['empty_images']} without boxes), "
          f"{sum(res.boxes.values())} label lines; crowd boxes: {conv['crowd']['count']} dropped"
          f" -> {res.out}/data.yaml")
    return 0
