"""Training configuration: defaults from ``cfg/train.yaml``, a user file, then flags.

Every key of the defaults file becomes a flag (``image_size`` -> ``--image-size``); only flags the
user typed override the files. Unknown keys anywhere get an error naming the closest valid key.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from .cli import closest
from .errors import UserError

DEFAULTS_FILE = Path(__file__).parent / "cfg" / "train.yaml"


def load_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except OSError as err:
        raise UserError(f"cannot read {what} {path}: {err.strerror}") from None
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{what} {path} is not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise UserError(f"{what} {path} must be a mapping of key: value, got {type(obj).__name__}")
    return obj


def defaults() -> dict[str, Any]:
    return load_yaml_mapping(DEFAULTS_FILE, "defaults file")


def _check_value(key: str, value: Any, default: Any, source: str) -> Any:
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UserError(f"{source}: {key} must be true or false, got {value!r}")
    elif isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{source}: {key} must be a number, got {value!r}")
        if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
            if not value.is_integer():
                raise UserError(f"{source}: {key} must be an integer, got {value!r}")
            value = int(value)
    elif isinstance(default, str):
        value = str(value)
    return value


def merge(base: dict[str, Any], override: dict[str, Any], source: str) -> dict[str, Any]:
    """``base`` updated by ``override``; keys must exist in ``base`` (error suggests the closest)."""
    out = dict(base)
    for key, value in override.items():
        if key not in base:
            raise UserError(f"{source}: unknown key {key!r}{closest(key, list(base))}; "
                            f"see {DEFAULTS_FILE.name} for the valid keys")
        out[key] = _check_value(key, value, base[key], source)
    return out


def add_config_flags(parser: argparse.ArgumentParser, base: dict[str, Any]) -> None:
    """One flag per key; defaults are suppressed so only typed flags reach the namespace."""
    for key, default in base.items():
        flag = "--" + key.replace("_", "-")
        if key == "mosaic":
            parser.add_argument(flag, nargs="?", const=1.0, type=float, default=argparse.SUPPRESS,
                                metavar="P", help="turn mosaic on (probability P, default 1.0)")
            parser.add_argument("--no-mosaic", dest="mosaic", action="store_const", const=0.0,
                                default=argparse.SUPPRESS, help="turn mosaic off")
        elif isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=f"(default {str(default).lower()})")
        else:
            typ = type(default) if isinstance(default, (int, float)) else str
            parser.add_argument(flag, type=typ, default=argparse.SUPPRESS, metavar=key.upper(),
                                help=f"(default {default!r})")


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
        out[key] = yaml.safe_load(raw) if raw else None
    return out
