"""Reproducible Ultralytics YOLO training on a dataset written by ``python -m coco2yolo``.

``python train_yolo.py --data DIR/data.yaml --model M --epochs E --imgsz S --batch B --device D --seed S --name N``

Defaults live in ``cfg/train.yaml``. The best weights are copied to ``weights/N.pt`` with a
``weights/N.json`` sidecar (resolved config, category map, dataset fingerprint, final validation
metrics, versions) that ``infer.py`` reads to write original category ids.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import hashlib
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from coco2yolo import __version__, cli, ultra
from coco2yolo.training import config
from coco2yolo.cocodata import CategoryMap
from coco2yolo.errors import UserError, short
from coco2yolo.fileio import (atomic_path, check_output_folder, guard_outputs, make_dirs, output_lock, read_bytes,
                              require_file)
from coco2yolo.sidecar import write_sidecar

PRESETS = ("none", "weather")


# --- checks -------------------------------------------------------------------------------------

def _names_list(names: Any, source: str) -> list[str]:
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise UserError(f"{source}: names keys must be 0..{len(names) - 1}")
        return [str(names[i]) for i in range(len(names))]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise UserError(f"{source}: 'names' must be a list or a mapping of class index to name")


def check_data(data_yaml: str | None) -> tuple[Path, dict[str, Any], CategoryMap, bool]:
    """Validate data.yaml, its categories.json and its label files.

    Returns the path, the parsed YAML, the category map and whether the map came from
    categories.json (False: identity map from names, with a warning).
    """
    if not data_yaml:
        raise UserError("--data is required: the data.yaml written by `python -m coco2yolo`")
    path = Path(data_yaml).absolute()
    data = config.load_yaml_mapping(path, "data.yaml")
    for key in ("train", "val", "names"):
        if key not in data:
            raise UserError(f"{path}: missing '{key}' (expected path, train, val, names)")
    names = _names_list(data["names"], str(path))
    if "nc" in data and data["nc"] != len(names):
        raise UserError(f"{path}: nc is {data['nc']} but names has {len(names)} entries")
    cat_file = path.parent / "categories.json"
    if cat_file.exists():
        cmap = CategoryMap.load(cat_file)
        if cmap.names != names:
            raise UserError(f"{cat_file} does not match {path}: classes {cmap.names} vs names {names}")
        from_file = True
    else:
        print(f"warning: no categories.json beside {path}: predictions will use class indices 0..{len(names) - 1}"
              " as category ids", file=sys.stderr)
        cmap = CategoryMap([{"id": i, "name": n} for i, n in enumerate(names)])
        from_file = False
    root = Path(data.get("path") or path.parent)
    root = root if root.is_absolute() else path.parent / root
    _check_labels(root / "labels", len(names))
    return path, data, cmap, from_file


def _check_labels(labels_dir: Path, nc: int) -> None:
    if not labels_dir.is_dir():
        return
    for f in sorted(labels_dir.rglob("*.txt")):
        for n, line in enumerate(_label_text(f).splitlines(), 1):
            head = line.split(maxsplit=1)[0] if line.strip() else None
            if head is not None and (not head.isdigit() or int(head) >= nc):
                raise UserError(f"{f}:{n}: class {head!r} is not in the category map (0..{nc - 1})")


def _label_text(f: Path) -> str:
    try:
        return read_bytes(f, "label file").decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"label file {f} is not UTF-8 text: {err.reason} at byte {err.start}") from None
    except OSError as err:
        raise UserError(f"cannot read label file {f}: {err.strerror or err}") from None


def dataset_fingerprint(root: Path) -> str:
    """sha256 over categories.json and every label file (relative path and content)."""
    h = hashlib.sha256()
    cat = root / "categories.json"
    if cat.exists():
        h.update(read_bytes(cat, "categories file"))
    labels = root / "labels"
    for f in sorted(labels.rglob("*.txt")) if labels.is_dir() else []:
        h.update(str(f.relative_to(labels)).encode())
        h.update(read_bytes(f, "label file"))
    return h.hexdigest()


# --- model --------------------------------------------------------------------------------------

def resolve_model_file(spec: str, weights_dir: Path) -> str:
    """A *.yaml passes through (Ultralytics builds it); a *.pt is looked up as given, then in the
    weights folders, then (a bare hub name like ``yolov5lu.pt``, unless offline) downloaded into
    ``weights_dir`` with Ultralytics' own download code."""
    p = Path(spec)
    if p.suffix in (".yaml", ".yml"):
        return spec
    if p.suffix != ".pt":
        raise UserError(f"--model {spec!r}: expected a *.yaml (build from scratch) or *.pt (weights)")
    for cand in (p, weights_dir / p.name, ultra.WEIGHTS_DIR / p.name):
        if cand.is_file():
            return str(cand)
    if p.parent == Path("."):
        fetched = ultra.fetch_weights(p.name, weights_dir)
        if fetched is not None:
            print(f"downloaded {p.name} to {fetched}")
            return str(fetched)
        why = ("offline (--offline or COCO2YOLO_OFFLINE), so nothing is downloaded" if ultra.offline()
               else "and it could not be downloaded (no network, or not an Ultralytics hub file)")
        raise UserError(f"{spec} is not on this machine {why}: download {p.name} from Ultralytics' assets "
                        f"releases (see weights/README.md) and put it at {(weights_dir / p.name).absolute()}, or "
                        f"pass its path; or build from scratch with --model {p.stem}.yaml")
    raise UserError(f"model file not found: {spec}")


def model_yaml(spec: str, nc: int | None = None) -> dict[str, Any]:
    """The checked model yaml for ``--model X.yaml``: a file of the user's (read and checked like a
    checkpoint's yaml: known layers, bounded sizes) or, by name, one Ultralytics ships."""
    from coco2yolo.checkpoint import plan_yaml

    p = Path(spec)
    if p.is_file():
        doc = config.load_yaml_mapping(p, "model yaml")
        if not doc.get("scale") and isinstance(doc.get("scales"), dict):
            from ultralytics.nn.tasks import guess_model_scale

            doc["scale"] = guess_model_scale(p) or None
        doc["yaml_file"] = str(p)
    else:
        from ultralytics.nn.tasks import yaml_model_load

        try:
            doc = yaml_model_load(spec)
        except Exception as err:  # noqa: BLE001 - Ultralytics raises FileNotFoundError or its own errors
            raise UserError(f"--model {spec}: not a file here and not a model yaml Ultralytics ships "
                            f"({' '.join(str(err).split())[:120]})") from None
    plan_yaml({k: v for k, v in doc.items() if k != "scale" or v}, nc, None, f"--model {spec}")
    return doc


def build_model(cfg: dict[str, Any], cmap: CategoryMap, run_dir: Path) -> tuple[Any, str]:
    """The Ultralytics YOLO object to train, and a line saying where its weights came from.

    Checkpoints are read as data and the model is built here from its checked yaml (see
    :mod:`coco2yolo.checkpoint`), unless ``trust_weights`` is set.
    """
    from coco2yolo import checkpoint as ck
    from coco2yolo.checkpoint.arch import build
    from coco2yolo.checkpoint.legacy import import_legacy, target_yaml

    init, trust = cfg["weights"], cfg["trust_weights"]
    if init is not None:
        require_file(init, "--weights")
    start = run_dir.parent / f"{run_dir.name}.init.pt"  # what training starts from, written here
    if trust:
        model = resolve_model_file(cfg["model"], Path(cfg["weights_dir"]))
        yolo = ck.ultralytics_yolo(model, trust=True)
        if init is None:
            return yolo, f"started from {model} (--trust-weights)"
        try:
            return yolo.load(init), (f"initialised {model} from {init} with Ultralytics' loader (--trust-weights): "
                                     "tensors of matching name and shape")
        except Exception as err:  # noqa: BLE001 - a damaged file is a user error
            raise UserError(f"cannot load weights {init}: {' '.join(str(err).split())[:160]}") from None
    init_ck = ck.read_checkpoint(init) if init is not None else None
    if init_ck is not None and init_ck.kind == "yolov5":  # the old yolov5 repository: its own target model
        arch = target_yaml(init_ck.yaml, init_ck.path)
        if cfg["model"] not in (config.defaults()["model"], arch):
            raise UserError(f"--weights {init} is a {arch.replace('u.yaml', '')} checkpoint: it imports into "
                            f"{arch}, not --model {cfg['model']}; drop --model or pass --model {arch}")
        net, msg = import_legacy(init_ck, len(cmap), cmap.names)
        return ck.yolo_from_model(net, start), msg
    model = resolve_model_file(cfg["model"], Path(cfg["weights_dir"]))
    model_ck = ck.read_checkpoint(model) if model.endswith(".pt") else None
    if init_ck is None and model_ck is not None and model_ck.kind == "yolov5":
        net, msg = import_legacy(model_ck, len(cmap), cmap.names)
        return ck.yolo_from_model(net, start), msg
    if model_ck is not None:
        net = ck.full_model(model_ck)
        origin = f"started from {model} (all {len(model_ck.tensors)} tensors)"
    else:
        doc = model_yaml(model, len(cmap))
        if init_ck is None:
            return ck.ultralytics_yolo(model), f"built {model} from scratch"
        net = build(doc, nc=len(cmap))
        origin = f"built {model}"
    if init_ck is None:
        return ck.yolo_from_model(net, start), origin
    matched, total = ck.transfer(init_ck, net)
    if matched == 0:
        raise UserError(f"--weights {init}: none of its {len(init_ck.tensors)} tensors matches a tensor of {model} by "
                        "name and shape: it is another architecture; pass the matching --model")
    return ck.yolo_from_model(net, start), (f"initialised {model} from {init}: {matched} of the model's {total} "
                                            f"tensors matched by name and shape (the others keep their fresh values)")


# --- augmentation --------------------------------------------------------------------------------

def preset_transforms(name: str) -> list[Any] | None:
    """Albumentations transforms for ``--augment-preset`` (None for 'none')."""
    if name == "none":
        return None
    if name == "weather":
        try:
            import albumentations as A
        except ImportError:
            raise UserError("--augment-preset weather needs albumentations: pip install 'coco2yolo[weather]' (or pip "
                            "install albumentations; it brings opencv-python-headless beside opencv-python)") from None

        return [A.RandomFog(fog_coef_range=(0.1, 0.35), alpha_coef=0.08, p=0.15),
                A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.3),
                A.OneOf([A.Blur(blur_limit=(3, 7)), A.MotionBlur(blur_limit=(3, 7)),
                         A.GaussianBlur(blur_limit=(3, 7))], p=0.2)]
    raise UserError(f"--augment-preset {name!r}: allowed: {', '.join(PRESETS)}")


# --- run ----------------------------------------------------------------------------------------

def _final_metrics(trainer: Any, save_dir: Path) -> dict[str, float]:
    metrics = getattr(trainer, "metrics", None) or {}
    if not metrics and (save_dir / "results.csv").exists():  # DDP: the main process has no validator
        with open(save_dir / "results.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        metrics = {k.strip(): float(v) for k, v in rows[-1].items() if k.strip().startswith("metrics/")} if rows else {}
    return {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}


def epoch_log(save_dir: Path, seconds: float) -> dict[str, Any]:
    """Epochs that ran and the measured seconds per epoch (training and validation), from Ultralytics'
    results.csv (one row per epoch run, its cumulative ``time``); without it, the whole run's seconds."""
    rows: list[dict[str, str]] = []
    with contextlib.suppress(OSError, csv.Error):
        with open(save_dir / "results.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
    loop = None
    if rows:
        with contextlib.suppress(KeyError, ValueError, TypeError):
            loop = float(rows[-1]["time"])
    done = len(rows)
    per_epoch = (loop if loop is not None else seconds) / done if done else None
    return {"epochs_done": done, "loop_seconds": loop, "seconds_per_epoch": per_epoch,
            "val_mAP50_by_epoch": [_float(r.get("metrics/mAP50(B)")) for r in rows]}


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def default_name(data_yaml: Path, model: str, weights: str | None) -> str:
    return f"{data_yaml.parent.name}_{Path(weights or model).stem}"


def _check_outputs(cfg: dict[str, Any], data_yaml: Path, name: str, run_dir: Path) -> Path:
    """Before any work: the weights folder is usable, N.pt is no input, and the name is free (or
    ``exist_ok``/``resume``). Returns the path of the weights to write."""
    weights_dir = check_output_folder(cfg["weights_dir"], "--weights-dir")
    out_pt = weights_dir / f"{name}.pt"
    model_file = Path(cfg["model"]) if cfg["model"].endswith(".pt") else None
    if model_file is not None and not model_file.is_file():
        model_file = weights_dir / model_file.name
    guard_outputs({"weights": out_pt, "sidecar": out_pt.with_suffix(".json")},
                  {"--weights": cfg["weights"], "--model": model_file if model_file and model_file.exists() else None,
                   "--data": data_yaml, "--pseudo-labels": cfg["pseudo_labels"], "--pseudo-images": cfg["pseudo_images"]})
    taken = [p for p in (out_pt, run_dir) if p.exists()]
    if taken and not (cfg["exist_ok"] or cfg["resume"]):
        raise UserError(f"--name {name} is taken: {taken[0]} exists; choose another --name, or pass --exist-ok to "
                        "replace it (its earlier weights are then lost)")
    return out_pt


def _check_values(cfg: dict[str, Any]) -> None:
    if isinstance(cfg["imgsz"], bool) or not isinstance(cfg["imgsz"], int) or cfg["imgsz"] < 32:
        raise UserError(f"imgsz must be an integer >= 32 (a multiple of 32 is used as given; Ultralytics rounds "
                        f"others up), got {short(cfg['imgsz'])}")
    if not 0 <= cfg["pseudo_conf"] <= 1:
        raise UserError(f"pseudo_conf must be in [0, 1], got {cfg['pseudo_conf']}")


def run(cfg: dict[str, Any], extra: dict[str, Any], reporter: Any = None, started: float | None = None,
        given: set[str] | None = None, search: dict[str, Any] | None = None, measure: Any = None) -> dict[str, Any]:
    """Train with a resolved config; return the sidecar dict (also written to weights/N.json).

    ``reporter``: a :class:`coco2yolo.training.budget.TrialReporter` (a recipe search's trial); ``started``: when
    the command started (a ``time`` budget counts from there; default: now); ``given``: the keys the user set
    (a ``time`` budget's plan keeps them; default: every key of ``cfg`` and ``extra``, so nothing is planned);
    ``search``: what ``--search`` decided, for the sidecar; ``measure``: the plan's probe
    (:func:`coco2yolo.training.plan.make_plan`; a plan already made answers with its own: ``Plan.measured()``).
    """
    started = time.time() if started is None else started
    ultra.setup()
    if cfg["offline"]:
        ultra.go_offline()
    ultra.trust_checkpoints(cfg["trust_weights"])
    data_yaml, data, cmap, from_file = check_data(cfg["data"])
    ultra.check_device(cfg["device"])
    _check_values(cfg)
    if cfg["optimizer"] == "auto":
        print("note: optimizer auto chooses its own learning rate and ignores lr0", file=sys.stderr)
    if cfg["weights_dir"] == config.defaults()["weights_dir"]:  # the default: beside runs/, wherever that is
        cfg = {**cfg, "weights_dir": str(ultra.WEIGHTS_DIR)}
    name = cfg["name"] or default_name(data_yaml, cfg["model"], cfg["weights"])
    check_name(name)
    cfg = {**cfg, "name": name}
    project = make_dirs(ultra.runs_dir() / "train")
    run_dir = project / name
    out_pt = _check_outputs(cfg, data_yaml, name, run_dir)
    augmentations = preset_transforms(cfg["augment_preset"])
    with output_lock(run_dir):
        plan = None
        if cfg.get("time") and cfg.get("plan") and not cfg["resume"] and reporter is None:
            cfg, extra, plan = _planned(cfg, extra, set(cfg) | set(extra) if given is None else given, data_yaml, data,
                                        started, measure)  # nothing left open: no plan (None)
        return _train(cfg, extra, data_yaml, cmap, from_file, project, run_dir, out_pt, augmentations, reporter,
                      started, plan, search)


def _planned(cfg: dict[str, Any], extra: dict[str, Any], given: set[str], data_yaml: Path, data: dict[str, Any],
             started: float, measure: Any = None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """The time budget's plan (:mod:`coco2yolo.training.plan`): printed, applied, and its record for the sidecar."""
    from coco2yolo.training.plan import chosen_settings, dataset_counts, make_plan, open_settings

    settings = {"model": cfg["model"], "weights": cfg["weights"], "imgsz": cfg["imgsz"], "batch": cfg["batch"],
                "freeze": extra.get("freeze"), "val": cfg["val"]}
    if not open_settings(settings, given):
        return cfg, extra, None
    device = str(cfg["device"] or "")
    plan = make_plan(settings, given, dataset_counts(data_yaml, data), cfg["time"], started,
                     "cpu" if device.lower() == "cpu" else device, measure=measure)
    print(plan.block(), flush=True)
    chosen = chosen_settings(plan)
    cfg = {**cfg, **{k: v for k, v in chosen.items() if k in cfg}}
    extra = {**extra, **({"freeze": chosen["freeze"]} if "freeze" in chosen else {})}
    return cfg, extra, plan.record()


def check_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\\" in name or any(ord(c) < 32 for c in name):
        raise UserError(f"--name {name!r}: a run name is one folder name (no '/', no control characters)")


def _train(cfg: dict[str, Any], extra: dict[str, Any], data_yaml: Path, cmap: CategoryMap, from_file: bool,
           project: Path, run_dir: Path, out_pt: Path, augmentations: list[Any] | None, reporter: Any,
           started: float, plan: dict[str, Any] | None = None, search: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    name = cfg["name"]
    train_data = data_yaml
    pseudo_note = None
    if cfg["pseudo_labels"] or cfg["pseudo_images"]:
        if not (cfg["pseudo_labels"] and cfg["pseudo_images"]):
            raise UserError("--pseudo-labels RESULTS.json needs --pseudo-images IMAGES.json (and vice versa)")
        from coco2yolo.training.pseudo import build_pseudo_dataset

        train_data, pseudo_note = build_pseudo_dataset(
            data_yaml, cmap, Path(cfg["pseudo_labels"]), Path(cfg["pseudo_images"]), cfg["pseudo_conf"],
            project / f"{name}.pseudo")
        print(pseudo_note)
    from coco2yolo import checkpoint as ck

    t0 = time.time()
    if cfg["resume"]:
        last = run_dir / "weights" / "last.pt"
        if not last.is_file():
            raise UserError(f"--resume: no interrupted run {name!r} ({last} not found)")
        if not cfg["trust_weights"]:
            ck.check_resumable(last)
        yolo, origin = ck.ultralytics_yolo(last, cfg["trust_weights"]), f"resumed from {last}"
        print(origin)
        yolo.train(resume=True)
    else:
        yolo, origin = build_model(cfg, cmap, run_dir)
        print(origin)
        args = {k: v for k, v in cfg.items() if config.is_ultralytics_key(k)}
        if augmentations:
            args["augmentations"] = augmentations
        if cfg.get("time"):
            from coco2yolo.training.budget import Budget

            Budget(cfg["time"], started).attach(yolo)
        if reporter is not None:
            reporter.attach(yolo)
        yolo.train(data=str(train_data), project=str(project), name=name, exist_ok=True, **args, **extra)
    seconds = time.time() - t0
    trainer = yolo.trainer
    save_dir = Path(trainer.save_dir)
    best = Path(trainer.best) if Path(trainer.best).exists() else Path(trainer.last)
    from coco2yolo.checkpoint import read_checkpoint

    try:
        read_checkpoint(best)  # a checkpoint cut short (a full disk while Ultralytics saved it) is never published
    except UserError as err:
        raise UserError(f"training wrote an unusable checkpoint, nothing was published: {err}") from None
    with atomic_path(out_pt) as tmp:
        shutil.copyfile(best, tmp)
    import torch
    import ultralytics

    sidecar = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "categories_from": "categories.json" if from_file else "data.yaml names (identity map)",
        "dataset": {"data": str(data_yaml), "trained_on": str(train_data),
                    "fingerprint": dataset_fingerprint(data_yaml.parent)},
        "origin": origin,
        "pseudo_labels": pseudo_note,
        "config": cfg,
        "extra_ultralytics_args": extra,
        "metrics": _final_metrics(trainer, save_dir),
        "train_seconds": seconds,
        "command_seconds": time.time() - started,
        "trial": None if reporter is None else {"study": reporter.study.study_name, "number": reporter.trial.number,
                                                "pruned": reporter.pruned},
        "budget_hours": cfg.get("time"),
        "plan": plan,
        "search": search,
        "epochs_asked": cfg["epochs"],
        **epoch_log(save_dir, seconds),
        "run_dir": str(save_dir),
        "gpu_peak_memory_gb": (torch.cuda.max_memory_allocated() / 2**30) if torch.cuda.is_available() else None,
        "versions": {"coco2yolo": __version__, "ultralytics": ultralytics.__version__,
                     "torch": torch.__version__, "python": sys.version.split()[0]},
    }
    imgsz = getattr(trainer.args, "imgsz", cfg["imgsz"])
    write_sidecar(out_pt, cmap, int(imgsz) if isinstance(imgsz, int) else cfg["imgsz"], **sidecar)
    m = sidecar["metrics"]
    budget = f" of a {cli.format_hours(cfg['time'])} budget" if cfg.get("time") else ""
    per = sidecar["seconds_per_epoch"]
    print(f"best weights: {out_pt} (+ {out_pt.with_suffix('.json').name}); "
          f"val mAP50 {m.get('metrics/mAP50(B)', float('nan')):.4f} (Ultralytics' metric; score with "
          f"evaluate.py for COCO mAP50); {sidecar['epochs_done']} epochs in {seconds:.0f} s{budget}"
          + (f", {per:.1f} s an epoch" if per else ""))
    return sidecar


def get_args_parser() -> argparse.ArgumentParser:
    ultra.setup()  # the flags come from Ultralytics' own argument table
    p = cli.ArgumentParser(prog="train_yolo.py", description="Train an Ultralytics YOLO detector on a "
                           "dataset written by `python -m coco2yolo` (defaults: coco2yolo/cfg/train.yaml).")
    p.add_argument("--config", default=None, help="YAML file with any keys of coco2yolo/cfg/train.yaml")
    s = p.add_argument_group("recipe search (set by python -m coco2yolo.kfold for each trial)")
    s.add_argument("--trial", type=cli.NONNEG_INT, default=None, metavar="N",
                   help="report each epoch's validation mAP50 to trial N of --study and stop when it is pruned")
    s.add_argument("--study", default=None, help="the Optuna study's name")
    s.add_argument("--storage", default=None, help="the Optuna storage URL (sqlite:///OUT/search.db, postgresql://...), "
                   "or env:NAME for the URL in environment variable NAME (the search passes it so, keeping a password "
                   "off the command line)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other Ultralytics train argument, e.g. --set cos_lr=true (repeatable)")
    config.add_config_flags(p, config.defaults())
    return p


def main(args: argparse.Namespace) -> int:
    started = time.time()
    ultra.setup()
    cfg = config.resolve(args)
    from ultralytics.cfg import DEFAULT_CFG_DICT

    reserved = {k for k in cfg if config.is_ultralytics_key(k)} | set(config.MANAGED)
    extra = config.parse_set(args.set, set(DEFAULT_CFG_DICT) - reserved, reserved)
    reporter = None
    if args.trial is not None or args.study or args.storage:
        if args.trial is None or not args.study or not args.storage:
            raise UserError("--trial, --study and --storage go together (the recipe search sets them)")
        from coco2yolo.training.budget import TrialReporter

        from coco2yolo.training.storage import from_argument

        reporter = TrialReporter(from_argument(args.storage), args.study, args.trial)
    run(cfg, extra, reporter, started, config.given_keys(args))
    return 0
