"""The experiment file: what to convert, which models to train on every fold, how to predict and fuse.

Each section is checked with the parser of the command it feeds (``python -m coco2yolo``,
``train_yolo.py``, ``infer.py``, ``ensemble.py --tune``), so a value gets the same one-line error the
command would give, and an unknown key an error naming the closest valid one. Relative paths are
relative to the working folder. See ``coco2yolo/cfg/experiment.yaml`` for a commented example.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coco2yolo import cli
from coco2yolo.errors import UserError, short

TOP_KEYS = ("train", "test", "out", "images", "convert", "models", "predict", "fuse", "devices", "bootstrap")
# converter flags the experiment sets itself
CONVERT_MANAGED = {"json", "out", "fold", "val_fraction", "images"}
# train_yolo.py keys the experiment sets itself
TRAIN_MANAGED = {"data", "name", "weights_dir", "exist_ok", "resume", "config", "set"}
PREDICT_MANAGED = {"weights", "images", "out", "device", "submission"}
FUSE_KEYS = {"methods": "--tune-methods", "iou": "--tune-iou", "conf_types": "--tune-conf-types",
             "weights": "--tune-weights", "passes": "--tune-passes"}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass
class Model:
    name: str
    train_args: list[str]          # train_yolo.py flags (without --data/--name/--weights-dir/--device)
    devices: list[str] | None      # a model that needs several GPUs at once (DDP), else None
    options: dict[str, Any]


@dataclass
class Experiment:
    path: Path
    train: Path
    test: Path | None
    out: Path
    images: Path | None
    folds: int
    convert_args: list[str]
    models: list[Model]
    predict_args: list[str]
    predict_iou: float
    fuse_args: list[str]
    devices: list[str] | None
    bootstrap: int
    raw: dict[str, Any] = field(default_factory=dict)


def flags(options: dict[str, Any], where: str, parser=None) -> list[str]:
    """``{"dup_iou": 0.9, "clean": True, "disable": ["aspect"]}`` -> ``--dup-iou 0.9 --clean --disable aspect``.

    ``False`` becomes ``--no-KEY`` where ``parser`` has that flag (an option on by default), else nothing.
    """
    negations = {o for a in parser._actions for o in a.option_strings if o.startswith("--no-")} if parser else set()
    out: list[str] = []
    for key, value in options.items():
        flag = "--" + str(key).replace("_", "-")
        if isinstance(value, bool):
            if value:
                out.append(flag)
            elif f"--no-{flag[2:]}" in negations:
                out.append(f"--no-{flag[2:]}")
        elif isinstance(value, list):
            if not value:
                raise UserError(f"{where}: {key} is an empty list")
            out += [flag, *map(str, value)]
        elif value is None:
            continue
        elif isinstance(value, (str, int, float)):
            out += [flag, str(value)]
        else:
            raise UserError(f"{where}: {key} must be a value or a list of values, got {short(value)}")
    return out


def _mapping(doc: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = doc.get(key) or {}
    if not isinstance(value, dict):
        raise UserError(f"{source}: '{key}' must be a mapping of option: value, got {short(value)}")
    return value


def _unknown(keys, allowed, where: str) -> None:
    for k in keys:
        if k not in allowed:
            raise UserError(f"{where}: unknown key {k!r}{cli.closest(str(k), sorted(allowed))}")


def _path(doc: dict[str, Any], key: str, source: str, required: bool) -> Path | None:
    value = doc.get(key)
    if value is None:
        if required:
            raise UserError(f"{source}: '{key}' is required ({'the COCO JSON with annotations' if key == 'train' else 'the output folder'})")
        return None
    if not isinstance(value, str) or not value:
        raise UserError(f"{source}: '{key}' must be a path, got {short(value)}")
    return Path(value)


def _devices(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else str(value).split(",")
    devs = [str(v).strip() for v in items if str(v).strip()]
    if not devs or not all(d == "cpu" or d.isdigit() for d in devs):
        raise UserError(f"{where}: devices must be cpu or GPU indices like 0,1,2,3, got {short(value)}")
    return devs


def _section(doc: dict[str, Any], key: str, parser, managed: set[str], source: str,
             around: tuple[list[str], list[str]]) -> tuple[list[str], Any]:
    """A section that feeds one command: its keys must be that command's options (less ``managed``), and
    its flags must parse with that command's parser (``around``: the arguments before and after them)."""
    opts = _mapping(doc, key, source)
    allowed = {a.dest for a in parser._actions if a.dest != "help"} - managed
    _unknown(opts, allowed, f"{source}: {key}")
    args = flags(opts, f"{source}: {key}", parser)
    return args, cli.parse_or_raise(parser, [*around[0], *args, *around[1]], f"{source}: {key}")


MAX_FOLDS = 100


def _convert(doc: dict[str, Any], source: str) -> tuple[list[str], int]:
    from coco2yolo.dataset import convert

    if "folds" not in _mapping(doc, "convert", source):
        raise UserError(f"{source}: convert.folds is required (the number of folds K, at least 2)")
    args, ns = _section(doc, "convert", convert.get_args_parser(), CONVERT_MANAGED, source,
                        (["x.json", "--out", "x"], ["--fold", "0"]))
    if ns.folds > MAX_FOLDS:  # every fold trains every model: a plan this long is a typo, not an experiment
        raise UserError(f"{source}: convert.folds is {ns.folds}; allowed: 2 to {MAX_FOLDS}")
    return args, ns.folds


def _models(doc: dict[str, Any], source: str) -> list[Model]:
    from coco2yolo import ultra
    from coco2yolo.training import config, train

    ultra.setup()
    entries = doc.get("models")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{source}: 'models' must be a list of one or more models, each with a name")
    base = config.defaults()
    from ultralytics.cfg import DEFAULT_CFG_DICT

    allowed = (set(base) | set(DEFAULT_CFG_DICT)) - TRAIN_MANAGED - {"project", "mode", "task"}
    models, names = [], set()
    for i, entry in enumerate(entries):
        where = f"{source}: models[{i}]"
        if not isinstance(entry, dict):
            raise UserError(f"{where} must be a mapping with a name, got {short(entry)}")
        name = entry.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise UserError(f"{where}: name must be letters, digits, '_', '-' or '.', got {short(name)}")
        if name in names:
            raise UserError(f"{where}: name {name!r} is used twice")
        names.add(name)
        where = f"{source}: models[{i}] ({name})"
        opts = {k: v for k, v in entry.items() if k != "name"}
        _unknown(opts, allowed, where)
        devices = _devices(opts.pop("device"), f"{where}: device") if "device" in opts else None
        own = {k: v for k, v in opts.items() if k in base}
        extra = {k: v for k, v in opts.items() if k not in base}
        parser = train.get_args_parser()
        args = flags(own, where, parser) + [a for k, v in extra.items() for a in ("--set", f"{k}={v}")]
        ns = cli.parse_or_raise(parser, args, where)
        cfg = config.resolve(ns)
        train._check_values(cfg)  # type: ignore[attr-defined]
        reserved = set(config.MANAGED) | {k for k in cfg if config.is_ultralytics_key(k)}
        config.parse_set(ns.set, set(DEFAULT_CFG_DICT) - reserved, reserved)
        models.append(Model(name, args, devices, opts))
    return models


def _predict(doc: dict[str, Any], source: str) -> tuple[list[str], float]:
    from coco2yolo import inference

    args, ns = _section(doc, "predict", inference.get_args_parser(), PREDICT_MANAGED, source,
                        (["--weights", "w.pt", "--images", "i.json", "--out", "o.json"], []))
    return args, ns.iou


def _fuse(doc: dict[str, Any], source: str) -> list[str]:
    from coco2yolo.fusion import ensemble

    opts = _mapping(doc, "fuse", source)
    _unknown(opts, FUSE_KEYS, f"{source}: fuse")
    args = []
    for key, value in opts.items():
        args += [FUSE_KEYS[key], *map(str, value if isinstance(value, list) else [value])]
    ns = cli.parse_or_raise(ensemble.get_args_parser(), ["a.json", "--tune", "g.json", "--out", "o.json", *args],
                            f"{source}: fuse")
    from coco2yolo.fusion.search import SearchSpace

    SearchSpace(ns.tune_methods, ns.tune_iou, ns.tune_conf_types, ns.tune_weights, ns.tune_passes).check()
    return args


def load_experiment(path: str | Path) -> Experiment:
    """Read and check an experiment file (one line naming the key on any problem)."""
    from coco2yolo.training.config import load_yaml_mapping

    path = Path(path)
    doc = load_yaml_mapping(path, "experiment file")
    source = str(path)
    _unknown(doc, TOP_KEYS, source)
    bootstrap = doc.get("bootstrap", 1000)
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise UserError(f"{source}: bootstrap must be an integer >= 0, got {short(bootstrap)}")
    convert_args, folds = _convert(doc, source)
    predict_args, predict_iou = _predict(doc, source)
    return Experiment(
        path=path, train=_path(doc, "train", source, True), test=_path(doc, "test", source, False),
        out=_path(doc, "out", source, True), images=_path(doc, "images", source, False), folds=folds,
        convert_args=convert_args, models=_models(doc, source), predict_args=predict_args, predict_iou=predict_iou,
        fuse_args=_fuse(doc, source), devices=_devices(doc.get("devices"), f"{source}: devices"),
        bootstrap=bootstrap, raw=doc)
