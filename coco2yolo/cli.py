"""Shared command-line plumbing: one-line errors, exit status 2, suggestions for typos."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable, Sequence

from .errors import UserError

EXIT_USER_ERROR = 2


def closest(word: str, choices: Sequence[str]) -> str:
    """Return ' (did you mean X?)' for the closest choice, or '' when nothing is close."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors, a suggestion for a mistyped flag, and no prefix matching."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        if message.startswith("unrecognized arguments:"):
            flags = [a for s in self._actions for a in s.option_strings]
            hints = [
                f"{w}{closest(w.split('=')[0], flags)}"
                for w in message.split(":", 1)[1].split()
            ]
            message = "unrecognized arguments: " + ", ".join(hints)
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def run(main: Callable[[argparse.Namespace], int | None], parser: argparse.ArgumentParser,
        argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and call ``main``; a UserError becomes one line on stderr and status 2."""
    args = parser.parse_args(argv)
    try:
        return int(main(args) or 0)
    except UserError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; no partial output was left behind", file=sys.stderr)
        return 130
