"""Shared command-line plumbing: one-line errors, exit status 2, checked numbers, clean interruption.

- :class:`ArgumentParser`: one-line errors with a suggestion for a mistyped flag, no prefix matching.
- :func:`number`: argparse types that refuse NaN, infinities and values outside a stated range.
- :func:`run`: a UserError becomes one line and status 2; Ctrl-C and SIGTERM unwind (every output is
  a temporary until committed, so nothing half-written stays) and exit 130/143; output piped into
  ``head`` or ``less`` that closes early ends quietly.
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence

from coco2yolo.errors import UserError

EXIT_USER_ERROR = 2
EXIT_FAILURE = 1


def os_error_line(err: OSError) -> str:
    """One line for an OSError: what failed and on which file ('no space left on device: /runs/x.pt')."""
    import errno

    what = {errno.ENOSPC: "the disk is full (no space left on device)", errno.EROFS: "read-only file system",
            errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file too large for this file system or limit",
            errno.EACCES: "permission denied"}.get(err.errno or -1, err.strerror or type(err).__name__)
    where = err.filename if err.filename is not None else ""
    return f"{what}: {where}" if where else what


def closest(word: str, choices: Sequence[str]) -> str:
    """Return ' (did you mean X?)' for the closest choice, or '' when nothing is close."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def _interval_text(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if lo is None and hi is None:
        return "a finite number"
    if hi is None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    if lo is None:
        return f"{'<' if hi_open else '<='} {hi:g}"
    return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False,
           integer: bool = False) -> Callable[[str], float | int]:
    """An argparse ``type``: a finite number (an integer with ``integer``) within [lo, hi] (open ends
    with ``lo_open``/``hi_open``); anything else is a one-line argparse error."""
    def parse(text: str) -> float | int:
        want = ("an integer " if integer else "a number ") + _interval_text(lo, hi, lo_open, hi_open)
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {want}, got {text!r}") from None
        if not math.isfinite(value) or (lo is not None and (value <= lo if lo_open else value < lo)) or (
                hi is not None and (value >= hi if hi_open else value > hi)):
            raise argparse.ArgumentTypeError(f"must be {want}, got {text!r}")
        return value

    parse.__name__ = "integer" if integer else "number"
    return parse


_UNITS = {"s": 1 / 3600, "sec": 1 / 3600, "m": 1 / 60, "min": 1 / 60, "h": 1.0, "hr": 1.0}
DURATION_HELP = "hours as Ultralytics takes them (0.5) or with a unit: 90s, 30m, 2h"
MIN_HOURS, MAX_HOURS = 1 / 3600, 8760.0  # a second, a year: anything outside is a typo


def duration_hours(value: object) -> float:
    """A duration in hours: a number (hours, as Ultralytics' ``time``) or text with a unit (``90s``, ``30m``,
    ``2h``, ``1.5h``); ValueError with the accepted forms for anything else (negative, zero, NaN, ``5x``)."""
    if isinstance(value, bool):
        raise ValueError(f"a duration ({DURATION_HELP}), got {value!r}")
    if isinstance(value, (int, float)):
        hours = float(value)
    else:
        text = str(value).strip().lower()
        unit = next((u for u in sorted(_UNITS, key=len, reverse=True) if text.endswith(u)), None)
        try:
            hours = float(text[: -len(unit)] if unit else text) * (_UNITS[unit] if unit else 1.0)
        except ValueError:
            raise ValueError(f"a duration ({DURATION_HELP}), got {str(value)[:40]!r}") from None
    if not math.isfinite(hours) or hours <= 0:
        raise ValueError(f"a positive duration ({DURATION_HELP}), got {str(value)[:40]!r}")
    if not MIN_HOURS <= hours <= MAX_HOURS:
        raise ValueError(f"a duration from 1 s to a year ({MAX_HOURS:g} h), got {str(value)[:40]!r}")
    return hours


def _duration(text: str) -> float:
    try:
        return duration_hours(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"must be {err}") from None


_duration.__name__ = "duration"
DURATION = _duration


def format_hours(hours: float) -> str:
    """``0.5`` -> ``30 min``; ``2.25`` -> ``2 h 15 min``; ``0.01`` -> ``36 s``."""
    seconds = round(hours * 3600)
    if seconds < 120:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60:02d} min"


FRACTION = number(0, 1)                         # [0, 1]: scores, probabilities
IOU = number(0, 1, lo_open=True)                # (0, 1]
POSITIVE_INT = number(1, integer=True)
NONNEG_INT = number(0, integer=True)
SEED = number(0, 2**32 - 1, integer=True)       # numpy's and torch's seed range


_KEY_VALUE = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)=(.*)", re.S)
_TRUE, _FALSE = {"true", "1", "yes", "on", "y"}, {"false", "0", "no", "off", "n"}


def key_values(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """Ultralytics' ``key=value`` arguments as this parser's flags: ``epochs=3`` -> ``--epochs=3``,
    ``cos_lr=true`` -> ``--cos-lr``, ``mosaic=false`` -> ``--no-mosaic``, ``weights=3,1`` -> ``--weights 3 1``;
    a key that is no flag here but an Ultralytics train argument goes through ``--set key=value`` where the
    parser has ``--set``. Anything else (a path, a positional value) is left as it is, and flags mix freely."""
    flags = {s: a for a in parser._actions for s in a.option_strings}
    out: list[str] = []
    for i, tok in enumerate(argv):
        m = _KEY_VALUE.fullmatch(tok) if not tok.startswith("-") and (i == 0 or not str(argv[i - 1]).startswith("-")
                                                                      or argv[i - 1] in flags and flags[argv[i - 1]].nargs == 0) else None
        flag = f"--{m.group(1).replace('_', '-')}" if m else None
        if m is None or (flag not in flags and "--set" not in flags):
            out.append(tok)
            continue
        value = m.group(2)
        if flag not in flags:
            out += ["--set", tok]
            continue
        action = flags[flag]
        low, off = value.strip().lower(), f"--no-{flag[2:]}"
        if low in _FALSE and off in flags:  # mosaic=false, amp=false, plots=false
            out.append(off)
        elif action.nargs in (0, "?") and low in _TRUE:  # a switch, or an option whose bare flag means on
            out.append(flag)
        elif action.nargs == 0:  # false for a switch without --no-: it stays off; anything else: argparse says
            if low not in _FALSE:
                out.append(f"{flag}={value}")
        elif action.nargs in ("+", "*") or (isinstance(action.nargs, int) and action.nargs > 1):
            items = [v.strip() for v in value.strip().strip("[]").split(",") if v.strip()]
            out += [flag, *items]
        else:
            out.append(f"{flag}={value}")
    return out


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors, a suggestion for a mistyped flag, no prefix matching, and Ultralytics'
    ``key=value`` form for every flag (see :func:`key_values`)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(key_values(self, [str(a) for a in args]), namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        if message.startswith("unrecognized arguments:"):
            flags = [a for s in self._actions for a in s.option_strings]
            hints = [
                f"{w}{closest(w.split('=')[0], flags)}"
                for w in message.split(":", 1)[1].split()
            ]
            message = "unrecognized arguments: " + ", ".join(hints)
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see --help)\n")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is so that every ``finally`` runs, as for Ctrl-C."""


def _on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise Terminated


def _quiet_broken_pipe() -> None:
    """stdout's reader is gone (``| head``): point stdout at /dev/null so the exit flush is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def run(main: Callable[[argparse.Namespace], int | None],
        parser: argparse.ArgumentParser | Callable[[], argparse.ArgumentParser],
        argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and call ``main``; a UserError becomes one line on stderr and status 2.

    ``parser``: the parser, or the function that builds it (then an error while building it, such as a
    torch/torchvision pair that does not match, is one line too)."""
    if not isinstance(parser, argparse.ArgumentParser):
        try:
            parser = parser()
        except UserError as err:
            print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
            return EXIT_USER_ERROR
    args = parser.parse_args(argv)
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        return int(main(args) or 0)
    except UserError as err:
        print(f"{parser.prog}: error: {' '.join(str(err).split())}", file=sys.stderr)  # one line, always
        return EXIT_USER_ERROR
    except RecursionError:
        print(f"{parser.prog}: error: an input nests too deeply to be read", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 141  # 128 + SIGPIPE, as a shell reports it
    except OSError as err:  # the machine, not the input: a full disk, a read-only folder, a lost mount
        print(f"{parser.prog}: error: {os_error_line(err)}; outputs are written whole or not at all, so nothing "
              "half-written was left", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt as err:
        what = "terminated" if isinstance(err, Terminated) else "interrupted"
        print(f"{parser.prog}: {what}; no partial output was left behind", file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def deprecated_alias(parser: argparse.ArgumentParser, old: str, new: str, **kwargs) -> None:
    """Keep ``old`` working as ``new`` (same destination), with one note on stderr when it is used."""
    class Deprecated(argparse.Action):
        def __call__(self, p, namespace, values, option_string=None):
            print(f"{p.prog}: note: {old} is deprecated; use {new}", file=sys.stderr)
            setattr(namespace, self.dest, values)

    dest = next((a.dest for a in parser._actions if new in a.option_strings), new.lstrip("-").replace("-", "_"))
    parser.add_argument(old, dest=dest, action=Deprecated,  # the new flag's own destination: same effect
                        default=argparse.SUPPRESS, help=f"deprecated spelling of {new}", **kwargs)


def parse_or_raise(parser: argparse.ArgumentParser, argv: Sequence[str], where: str) -> argparse.Namespace:
    """Parse ``argv`` with ``parser``; a parse error becomes a UserError prefixed with ``where`` (no exit)."""
    def fail(message: str) -> None:
        if message.startswith("unrecognized arguments:"):
            flags = [a for s in parser._actions for a in s.option_strings]
            message = "unrecognized arguments: " + ", ".join(
                f"{w}{closest(w.split('=')[0], flags)}" for w in message.split(":", 1)[1].split())
        raise UserError(f"{where}: {message}")

    original = parser.error
    parser.error = fail  # type: ignore[method-assign]
    try:
        return parser.parse_args(list(argv))
    finally:
        parser.error = original  # type: ignore[method-assign]
