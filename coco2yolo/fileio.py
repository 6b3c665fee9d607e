"""Reading JSON with clear errors, and writing every output atomically.

An output is written to a temporary file in the same folder and renamed over the target, so an
interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import UserError


def load_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Load ``path``; a missing, unreadable or malformed file raises UserError naming it."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{what} {path} is a folder, expected a .json file") from None
    except PermissionError:
        raise UserError(f"{what} {path} is not readable (permission denied)") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{what} {path} is not valid JSON: {err.msg} at line {err.lineno} "
                        f"column {err.colno}") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{what} {path} is not UTF-8 text: {err.reason} at byte {err.start}") from None


def check_writable_parent(path: str | os.PathLike) -> Path:
    """Create the parent folder of ``path`` if needed; raise UserError when it cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create output folder {parent}: {err.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise UserError(f"output folder {parent} is not writable")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success."""
    path = check_writable_parent(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically; return the path."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False)  # one shot: C encoder, 5x json.dump's speed
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.write("\n")
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, marker: str) -> Iterator[Path]:
    """Build a folder under a temporary name and swap it in place of ``path`` on success.

    ``marker`` is a file name that identifies folders this project wrote; an existing ``path``
    that is non-empty and lacks it is never deleted (UserError instead).
    """
    path = Path(path).absolute()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"output {path} exists and is not a folder")
        if any(path.iterdir()) and not (path / marker).exists():
            raise UserError(f"refusing to replace {path}: it is not empty and was not written by "
                            f"this tool (no {marker}); choose another --out")
    check_writable_parent(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        yield tmp
        (tmp / marker).touch()
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
