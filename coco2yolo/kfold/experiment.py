"""The experiment file: what to convert, which models to train on every fold, how to predict and fuse.

Each section is checked with the parser of the command it feeds (``python -m coco2yolo``,
``train_yolo.py``, ``infer.py``, ``ensemble.py --tune``), so a value gets the same one-line error the
command would give, and an unknown key an error naming the closest valid one. Relative paths are
relative to the working folder. See ``coco2yolo/cfg/experiment.yaml`` for a commented example.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coco2yolo import cli
from coco2yolo.errors import UserError, short

TOP_KEYS = ("train", "test", "out", "images", "convert", "models", "predict", "fuse", "devices", "bootstrap", "budget",
            "search", "final")
FINALS = ("refit", "folds", "both")
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
    auto_time: bool = False        # time: auto: a share of what the experiment's budget leaves


@dataclass
class Search:
    """The recipe search: trials of ``base`` with values from ``space``, scored on fold ``fold``'s validation."""

    base: dict[str, Any]                  # a model entry without its name
    space: dict[str, Any]                 # key -> list of values, or {low, high, log, step}
    trials: int
    budget_hours: float | None
    fold: int
    pruner: str
    storage: str                          # an SQLAlchemy URL (sqlite:///..., postgresql://...)
    study: str
    seed: int
    min_resource: int | None              # seconds of training before a trial can first be pruned
    leaders: int = 2                      # the best trials re-scored, with the baseline, on further folds
    confirm_folds: int = 1                # how many further folds they are trained and scored on


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
    budget_hours: float | None = None
    search: Search | None = None
    final: str = "refit"


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


def _entry_parser():
    from coco2yolo import ultra
    from coco2yolo.training import config

    ultra.setup()
    from ultralytics.cfg import DEFAULT_CFG_DICT

    base = config.defaults()
    allowed = (set(base) | set(DEFAULT_CFG_DICT)) - TRAIN_MANAGED - {"project", "mode", "task"}
    return base, allowed


def check_entry(opts: dict[str, Any], where: str, auto_time: bool = False) -> tuple[list[str], list[str] | None]:
    """A model entry's options (no name) as train_yolo.py flags, checked by its parser; and its devices.

    ``auto_time``: ``time: auto`` is allowed (the experiment's budget decides it; no flag yet).
    """
    from coco2yolo.training import config, train

    base, allowed = _entry_parser()
    from ultralytics.cfg import DEFAULT_CFG_DICT

    _unknown(opts, allowed, where)
    opts = dict(opts)
    devices = _devices(opts.pop("device"), f"{where}: device") if "device" in opts else None
    if opts.get("time") == "auto":
        if not auto_time:
            raise UserError(f"{where}: time: auto needs a top-level budget (the experiment's device time)")
        opts.pop("time")
    own = {k: v for k, v in opts.items() if k in base}
    extra = {k: v for k, v in opts.items() if k not in base}
    parser = train.get_args_parser()
    args = flags(own, where, parser) + [a for k, v in extra.items() for a in ("--set", f"{k}={v}")]
    ns = cli.parse_or_raise(parser, args, where)
    cfg = config.resolve(ns)
    try:
        train._check_values(cfg)  # type: ignore[attr-defined]
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
    reserved = set(config.MANAGED) | {k for k in cfg if config.is_ultralytics_key(k)}
    config.parse_set(ns.set, set(DEFAULT_CFG_DICT) - reserved, reserved)
    return args, devices


def _models(doc: dict[str, Any], source: str, auto_time: bool) -> list[Model]:
    entries = doc.get("models")
    if entries is None and doc.get("search") is not None:  # omitted: the search's winner is the one model
        entries = []
    if not isinstance(entries, list) or not (entries or doc.get("search") is not None):
        raise UserError(f"{source}: 'models' must be a list of one or more models, each with a name (or none, "
                        "with a search: its winner is then the one model)")
    models, names = [], set()
    for i, entry in enumerate(entries):
        where = f"{source}: models[{i}]"
        if not isinstance(entry, dict):
            raise UserError(f"{where} must be a mapping with a name, got {short(entry)}")
        name = entry.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise UserError(f"{where}: name must be letters, digits, '_', '-' or '.', got {short(name)}")
        if name in names or name == SEARCH_BEST:
            raise UserError(f"{where}: name {name!r} is used twice" if name in names else
                            f"{where}: the name {SEARCH_BEST} is the recipe search's; choose another")
        names.add(name)
        where = f"{source}: models[{i}] ({name})"
        opts = {k: v for k, v in entry.items() if k != "name"}
        args, devices = check_entry(opts, where, auto_time)
        models.append(Model(name, args, devices, opts, auto_time=opts.get("time") == "auto"))
    return models


SEARCH_BEST = "search_best"
SEARCH_SHARE = 1 / 3  # of a budget, for the search (train_yolo.py --search; search: auto): a 1 h budget, 20 minutes


def default_space(base: dict[str, Any], pretrained: bool) -> dict[str, Any]:
    """The search's space around a base entry (``search: auto``, ``train_yolo.py --search``): the image sizes beside
    its own, lr0 (log, 0.002 to 0.02), mosaic on or off, and a frozen backbone where the weights are pretrained."""
    from coco2yolo.training.plan import SIZES

    size = int(base.get("imgsz") or 640)
    ladder = sorted(set(SIZES) | {size})
    k = ladder.index(size)
    space: dict[str, Any] = {"imgsz": ladder[max(0, k - 1): k + 2], "lr0": {"low": 0.002, "high": 0.02, "log": True},
                             "mosaic": [0.0, 1.0]}
    if pretrained:
        space["freeze"] = [0, 10]
    return space
SEARCH_KEYS = ("base", "space", "trials", "budget", "fold", "pruner", "storage", "study", "seed", "min_resource",
               "leaders", "confirm_folds")
PRUNERS = ("hyperband", "successive_halving", "none")


def _search(doc: dict[str, Any], source: str, out: Path, folds: int) -> Search | None:
    """The ``search:`` section, checked: every value of the space (and both ends of a range) must make a
    valid model entry with ``base``."""
    if doc.get("search") is None:
        return None
    if doc.get("search") == "auto":
        doc = {**doc, "search": _auto_search(doc, source)}
    s = _mapping(doc, "search", source)
    where = f"{source}: search"
    _unknown(s, SEARCH_KEYS, where)
    base = s.get("base")
    if not isinstance(base, dict) or not base:
        raise UserError(f"{where}: base must be a model entry (a mapping such as {{model: yolov5nu.pt, epochs: 30}})")
    if "name" in base or "device" in base:
        raise UserError(f"{where}: base takes no name (the winner is called {SEARCH_BEST}) and no device")
    check_entry(base, f"{where}: base")
    space = s.get("space")
    if not isinstance(space, dict) or not space:
        raise UserError(f"{where}: space must map one or more keys of a model entry to a list of values or "
                        "{low: L, high: H, log: true}")
    for key, spec in space.items():
        w = f"{where}: space.{key}"
        if key in ("name", "device"):
            raise UserError(f"{w}: {key} cannot be searched")
        if isinstance(spec, list):
            if not spec:
                raise UserError(f"{w} is an empty list; give the values to try")
            if len({repr(v) for v in spec}) != len(spec):
                raise UserError(f"{w} lists a value twice")
            values = spec
        elif isinstance(spec, dict):
            _unknown(spec, ("low", "high", "log", "step"), w)
            lo, hi = spec.get("low"), spec.get("high")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (lo, hi)):
                raise UserError(f"{w}: low and high must be finite numbers, got {short(lo)} and {short(hi)}")
            if lo > hi:
                raise UserError(f"{w}: low {lo} is above high {hi}")
            if spec.get("log") and lo <= 0:
                raise UserError(f"{w}: a log range needs low > 0, got {lo}")
            if "step" in spec and not (isinstance(spec["step"], (int, float)) and spec["step"] > 0):
                raise UserError(f"{w}: step must be a positive number")
            values = [lo, hi]
        else:
            raise UserError(f"{w} must be a list of values or {{low: L, high: H, log: true}}, got {short(spec)}")
        for v in values:
            check_entry({**base, key: v}, f"{w} = {short(v)}")
    trials = s.get("trials", 20)
    if isinstance(trials, bool) or not isinstance(trials, int) or not 1 <= trials <= 10000:
        raise UserError(f"{where}: trials must be an integer from 1 to 10000, got {short(trials)}")
    fold = s.get("fold", 0)
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < folds:
        raise UserError(f"{where}: fold must be a fold of convert.folds (0 to {folds - 1}), got {short(fold)}")
    pruner = s.get("pruner", "hyperband")
    if pruner not in PRUNERS:
        raise UserError(f"{where}: pruner must be one of {', '.join(PRUNERS)}, got {short(pruner)}"
                        f"{cli.closest(str(pruner), PRUNERS)}")
    storage = s.get("storage", str(out / "search.db"))
    if not isinstance(storage, str) or not storage:
        raise UserError(f"{where}: storage must be a path (SQLite) or a database URL, got {short(storage)}")
    if "://" not in storage:
        storage = f"sqlite:///{Path(storage).absolute()}"
    from coco2yolo.training import storage as storages

    storages.check(storage, f"{where}: storage")
    study = s.get("study", "search")
    if not isinstance(study, str) or not NAME.fullmatch(study):
        raise UserError(f"{where}: study must be a name (letters, digits, '_', '-', '.'), got {short(study)}")
    seed = s.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise UserError(f"{where}: seed must be an integer in [0, 2^32), got {short(seed)}")
    min_resource = s.get("min_resource")
    if min_resource is not None:
        min_resource = round(_hours(min_resource, f"{where}: min_resource") * 3600)
    budget = _hours(s["budget"], f"{where}: budget") if s.get("budget") is not None else None
    leaders = s.get("leaders", 2)
    if isinstance(leaders, bool) or not isinstance(leaders, int) or not 1 <= leaders <= 10:
        raise UserError(f"{where}: leaders must be an integer from 1 to 10, got {short(leaders)}")
    confirm = s.get("confirm_folds", 1)
    if isinstance(confirm, bool) or not isinstance(confirm, int) or not 1 <= confirm <= folds - 1:
        raise UserError(f"{where}: confirm_folds must be an integer from 1 to {folds - 1} (folds other than the "
                        f"search's), got {short(confirm)}")
    return Search(base=dict(base), space=dict(space), trials=trials, budget_hours=budget, fold=fold, pruner=pruner,
                  storage=storage, study=study, seed=seed, min_resource=min_resource, leaders=leaders,
                  confirm_folds=confirm)


def _auto_search(doc: dict[str, Any], source: str) -> dict[str, Any]:
    """``search: auto``: a third of the experiment's budget, the first model entry (as given) as the baseline,
    :func:`default_space` around it."""
    if doc.get("budget") is None:
        raise UserError(f"{source}: search: auto needs a top-level budget (a third of it goes to the search)")
    models = doc.get("models") or []
    first = models[0] if isinstance(models, list) and models and isinstance(models[0], dict) else {}
    base = {k: v for k, v in first.items() if k not in ("name", "device")}
    if not base:
        raise UserError(f"{source}: search: auto searches around the first model entry; list one under models")
    if base.get("time") == "auto":
        raise UserError(f"{source}: search: auto searches around the first model entry, whose time: auto is only "
                        "shared out after the search; give it a time: or epochs:")
    pretrained = any(str(base.get(k, "")).endswith(".pt") for k in ("model", "weights"))
    return {"base": base, "space": default_space(base, pretrained), "trials": 100,
            "budget": f"{_hours(doc['budget'], f'{source}: budget') * SEARCH_SHARE * 3600:.0f}s"}


def best_entry(exp: Experiment) -> dict[str, Any] | None:
    """The search's winner as a model entry (OUT/search/best.yaml), or None before the search is done."""
    path = exp.out / "search" / "best.yaml"
    if not path.exists():
        return None
    from coco2yolo.training.config import load_yaml_mapping

    entry = load_yaml_mapping(path, "search result")
    if entry.get("name") != SEARCH_BEST:
        return None
    decision = entry.pop("search", None)  # the search's decision, beside the entry it kept
    if decision is not None and not isinstance(decision, dict):
        raise UserError(f"{path}: 'search' must be the search's decision (a mapping), got {short(decision)}")
    return entry


def _hours(value: Any, where: str) -> float:
    try:
        return cli.duration_hours(value)
    except ValueError as err:
        raise UserError(f"{where} must be {err}") from None


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
    budget = _hours(doc["budget"], f"{source}: budget") if doc.get("budget") is not None else None
    final = doc.get("final", "refit")
    if final not in FINALS:
        raise UserError(f"{source}: final must be one of {', '.join(FINALS)}, got {short(final)}"
                        f"{cli.closest(str(final), FINALS)}")
    out = _path(doc, "out", source, True)
    return Experiment(
        path=path, train=_path(doc, "train", source, True), test=_path(doc, "test", source, False),
        out=out, images=_path(doc, "images", source, False), folds=folds,
        convert_args=convert_args, models=_models(doc, source, budget is not None), predict_args=predict_args,
        predict_iou=predict_iou, fuse_args=_fuse(doc, source), devices=_devices(doc.get("devices"), f"{source}: devices"),
        bootstrap=bootstrap, raw=doc, budget_hours=budget, search=_search(doc, source, out, folds), final=final)
