"""Training configuration: defaults from ``cfg/train.yaml``, a user file, then flags.

Every key of the defaults file becomes a flag (``close_mosaic`` -> ``--close-mosaic``); only flags the
user typed override the files. Unknown keys anywhere get an error naming the closest valid key.

Values of Ultralytics' own train arguments are checked by Ultralytics' ``check_cfg`` (so they accept
exactly what Ultralytics accepts: ``cache: ram``, ``batch: 0.7``); on the command line they are
read as YAML scalars (``--cache ram``, ``--batch 0.7``, ``--amp false``). The project's own keys
are checked against the type of their default. NaN and infinities are refused everywhere.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import yaml

from coco2yolo.cli import DURATION, DURATION_HELP, FRACTION, closest, duration_hours
from coco2yolo.errors import UserError, short
from coco2yolo.fileio import nesting_limit, read_text

DEFAULTS_FILE = Path(__file__).resolve().parent.parent / "cfg" / "train.yaml"
# Ultralytics keys this project sets itself (the rest of Ultralytics' keys pass through as given).
MANAGED = frozenset({"data", "model", "name", "resume", "project", "exist_ok", "augmentations"})
# Ultralytics keys whose default is a bool but which take other values too: --KEY [VALUE] / --no-KEY.
_BOOL_OR_VALUE = frozenset({"amp", "cache"})


def load_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    try:
        text = read_text(path, what)
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{what} {path} is not UTF-8 text: {err.reason} at byte {err.start}") from None
    except OSError as err:
        raise UserError(f"cannot read {what} {path}: {err.strerror}") from None
    try:
        with nesting_limit():
            obj = yaml.safe_load(text)
    except RecursionError:
        raise UserError(f"{what} {path} nests too deeply") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        why = getattr(err, "problem", None) or getattr(err, "reason", None) or str(err)
        char = getattr(err, "character", None)
        if char is not None:  # a reader error: a character YAML does not allow (an int, or bytes)
            shown = f"{char:#06x}" if isinstance(char, int) else repr(char)
            why = f"{why} (character {shown} at position {getattr(err, 'position', '?')})"
        raise UserError(f"{what} {path} is not valid YAML{where}: {' '.join(str(why).split())}") from None
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise UserError(f"{what} {path} must be a mapping of key: value, got {type(obj).__name__}")
    bad = [k for k in obj if not isinstance(k, str)]
    if bad:
        raise UserError(f"{what} {path}: keys must be names, got {bad[0]!r}")
    return obj


def defaults() -> dict[str, Any]:
    return load_yaml_mapping(DEFAULTS_FILE, "defaults file")


def _ultralytics_keys() -> dict[str, Any]:
    from ultralytics.cfg import DEFAULT_CFG_DICT

    return DEFAULT_CFG_DICT


def is_ultralytics_key(key: str) -> bool:
    return key in _ultralytics_keys() and key not in MANAGED


def _finite(key: str, value: Any, source: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{source}: {key} must be a finite number, got {short(value)}")
    if isinstance(value, (list, tuple)):
        for v in value:
            _finite(key, v, source)


def check_ultralytics_values(values: dict[str, Any], source: str) -> dict[str, Any]:
    """Check Ultralytics train arguments with Ultralytics' own ``check_cfg``; one line on failure."""
    from ultralytics.cfg import check_cfg

    for k, v in values.items():
        _finite(k, v, source)
    checked = dict(values)
    try:
        check_cfg(checked, hard=True)
    except (TypeError, ValueError) as err:
        raise UserError(f"{source}: {err}") from None
    if "cache" in checked and not (isinstance(checked["cache"], bool)
                                   or str(checked["cache"]).lower() in ("ram", "disk")):
        raise UserError(f"{source}: cache must be true (ram), ram, disk or false, got {short(checked['cache'])}")
    if "batch" in checked:
        b = checked["batch"]
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not (
                (isinstance(b, int) and (b >= 1 or b == -1)) or (isinstance(b, float) and 0 < b < 1)):
            raise UserError(f"{source}: batch must be an integer >= 1, -1 (auto: 60% of GPU memory) or a fraction "
                            f"of GPU memory in (0, 1), got {short(b)}")
    return checked


def _check_own(key: str, value: Any, default: Any, source: str) -> Any:
    """A project key's value against the type of its default."""
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UserError(f"{source}: {key} must be true or false, got {short(value)}")
    elif isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(f"{source}: {key} must be a finite number, got {short(value)}")
        if isinstance(default, int) and isinstance(value, float):
            if not value.is_integer():
                raise UserError(f"{source}: {key} must be an integer, got {short(value)}")
            value = int(value)
    elif isinstance(default, str):
        if isinstance(value, (dict, list)):
            raise UserError(f"{source}: {key} must be a single value, got {type(value).__name__}")
        value = str(value)
    return value


def merge(base: dict[str, Any], override: dict[str, Any], source: str) -> dict[str, Any]:
    """``base`` updated by ``override``; keys must exist in ``base`` (error suggests the closest)."""
    out = dict(base)
    ul: dict[str, Any] = {}
    for key, value in override.items():
        if key not in base:
            raise UserError(f"{source}: unknown key {key!r}{closest(key, list(base))}; "
                            f"see {DEFAULTS_FILE.name} for the valid keys")
        if key == "time" and value is not None:  # a duration with a unit: hours, as Ultralytics takes it
            try:
                value = duration_hours(value)
            except ValueError as err:
                raise UserError(f"{source}: time must be {err}") from None
        if is_ultralytics_key(key):
            ul[key] = value
        else:
            out[key] = _check_own(key, value, base[key], source)
    out.update(check_ultralytics_values(ul, source))
    return out


def yaml_scalar(text: str) -> Any:
    """A command-line value read as YAML (``0.7`` -> float, ``ram`` -> str, ``false`` -> bool)."""
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (str, int, float, bool, list)) or value is None else text


def add_config_flags(parser: argparse.ArgumentParser, base: dict[str, Any]) -> None:
    """One flag per key; defaults are suppressed so only typed flags reach the namespace."""
    from ultralytics.cfg import CFG_BOOL_KEYS

    for key, default in base.items():
        flag = "--" + key.replace("_", "-")
        if key == "time":
            parser.add_argument(flag, type=DURATION, default=argparse.SUPPRESS, metavar="T",
                                help=f"training budget: {DURATION_HELP}; epochs, the learning-rate schedule and "
                                     "close_mosaic are fitted to it and the run ends within it (plus the epoch under "
                                     "way); --epochs is then only the schedule's first guess")
        elif key == "mosaic":
            parser.add_argument(flag, nargs="?", const=1.0, type=FRACTION, default=argparse.SUPPRESS,
                                metavar="P", help="turn mosaic on (probability P, default 1.0)")
            parser.add_argument("--no-mosaic", dest="mosaic", action="store_const", const=0.0,
                                default=argparse.SUPPRESS, help="turn mosaic off")
        elif key in _BOOL_OR_VALUE:
            what = {"amp": "true or false: mixed precision on CUDA", "cache": "ram, disk or false: keep decoded images "
                    "in memory or on disk"}.get(key, "any value Ultralytics accepts")
            parser.add_argument(flag, nargs="?", const=True, type=yaml_scalar, default=argparse.SUPPRESS,
                                metavar="VALUE", help=f"{what} (default {str(default).lower()})")
            parser.add_argument(f"--no-{key.replace('_', '-')}", dest=key, action="store_const", const=False,
                                default=argparse.SUPPRESS, help=f"{key} false")
        elif key == "data":
            parser.add_argument(flag, type=str, default=argparse.SUPPRESS, metavar="DATA",
                                help="required: the data.yaml written by python -m coco2yolo (categories.json beside it)")
        elif isinstance(default, bool) and (key in CFG_BOOL_KEYS or not is_ultralytics_key(key)):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=f"(default {str(default).lower()})")
        elif is_ultralytics_key(key):
            parser.add_argument(flag, type=yaml_scalar, default=argparse.SUPPRESS, metavar=key.upper(),
                                help=f"(default {default!r})")
        else:
            typ = type(default) if isinstance(default, (int, float)) and not isinstance(default, bool) else str
            parser.add_argument(flag, type=typ, default=argparse.SUPPRESS, metavar=key.upper(),
                                help=f"(default {default!r})")


def given_keys(args: argparse.Namespace) -> set[str]:
    """The keys the user set: in the --config file or as typed flags (the rest are defaults)."""
    keys = {k for k in vars(args) if k in defaults() and k != "config"}
    if getattr(args, "config", None):
        keys |= set(load_yaml_mapping(args.config, "config file"))
    for item in getattr(args, "set", None) or []:
        keys.add(item.partition("=")[0])
    return keys


def resolve(args: argparse.Namespace, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults < ``args.config`` file < typed flags."""
    cfg = defaults() if base is None else dict(base)
    if getattr(args, "config", None):
        cfg = merge(cfg, load_yaml_mapping(args.config, "config file"), str(args.config))
    typed = {k: v for k, v in vars(args).items() if k in cfg}
    return merge(cfg, typed, "command line")


def parse_set(items: list[str], allowed: set[str], own: set[str]) -> dict[str, Any]:
    """``--set key=value`` pairs for other Ultralytics arguments, values parsed as YAML scalars.

    ``own``: keys that have their own flag or are managed here (refused with a pointer).
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects key=value, got {item!r}")
        if key in own:
            raise UserError(f"--set {key}: use the flag --{key.replace('_', '-')} instead")
        if key not in allowed:
            hint = closest(key, sorted(allowed | own))
            raise UserError(f"--set {key}: not an Ultralytics train argument{hint}")
        out[key] = yaml_scalar(raw)
    return check_ultralytics_values(out, "--set") if out else out
