"""Loading checkpoints without running code from them.

A ``.pt`` file is a pickle: loading it with ``weights_only=False`` (Ultralytics' default) can run any
code inside it. Every checkpoint this project reads goes through here or through the legacy
importer (:mod:`coco2yolo.legacy`), both allow-listed: Ultralytics' safe loader
(``ULTRALYTICS_SAFE_LOAD``, set by :func:`coco2yolo.ultra.setup`: ``torch.load(weights_only=True)``
with the known model classes) and the legacy importer's own allow-list. A file that names any
other global is refused with one line naming it; ``--trust-weights`` (``trust=True``) loads it
with the full pickle loader, for files the user vouches for.
"""

from __future__ import annotations

import os
import re
from typing import Any

from coco2yolo import ultra
from coco2yolo.errors import UserError
from coco2yolo.training.legacy import refused_message

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def refused_global(err: BaseException) -> str | None:
    """The global a weights-only load refused, from the error or its causes; None for other errors."""
    while err is not None:
        match = _GLOBAL.search(str(err))
        if match:
            return match.group(1)
        err = err.__cause__ or err.__context__
    return None


def load_error(path: str | os.PathLike, err: BaseException) -> UserError:
    """One line for a checkpoint Ultralytics could not load: a refused global, or an unreadable file."""
    name = refused_global(err)
    if name:
        return UserError(refused_message(path, name))
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    first = first.replace("ERROR ❌️ ", "")
    return UserError(f"cannot load weights {path}: {first}")


def load_yolo(path: str | os.PathLike, trust: bool = False) -> Any:
    """``ultralytics.YOLO(path)`` through the safe loader (``trust``: the full pickle loader)."""
    ultra.trust_checkpoints(trust)
    from ultralytics import YOLO

    try:
        return YOLO(str(path))
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - a damaged or refused file is a user error, reported in one line
        raise load_error(path, err) from None
