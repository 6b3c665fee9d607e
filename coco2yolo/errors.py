"""The one exception type for bad user input, and a safe way to quote a bad value in its message."""

from __future__ import annotations

import reprlib
from typing import Any

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 3, 60, 60, 6, 4


class UserError(Exception):
    """Bad input from the user (file, record, flag).

    Command-line entry points print it as one line and exit with status 2; library callers can
    catch it. The message names the file, the record and the allowed values.
    """


def short(value: Any) -> str:
    """A bounded repr for error messages: depth, length and nesting are capped (a huge or deeply
    nested value cannot blow up the message or the stack), and the result is one line."""
    return _REPR.repr(value).replace("\n", "\\n")
