"""Image files: cheap integrity checks, and decoding for prediction.

:func:`file_problem` reads a file's first bytes and its last few: an empty file, a file whose
header matches no image format, and a JPEG/PNG/WebP that stops before its end marker are caught
without decoding (a truncated JPEG decodes to a grey-bottomed picture without any error in
OpenCV, and aborts Ultralytics' PIL path). A JPEG whose end marker is not within its last 4 KiB
(trailing data after the image) is confirmed by a full decode before it is called truncated.

:func:`decode` turns bytes into the BGR array Ultralytics' own loader would make from the file
(``cv2.imdecode(IMREAD_COLOR)``, EXIF orientation applied), or None.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

_JPEG, _PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
_TAIL = 4096


def sniff(head: bytes) -> str | None:
    """The format a file's first 16 bytes announce, or None."""
    if head.startswith(_JPEG):
        return "JPEG"
    if head.startswith(_PNG):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:2] == b"BM":
        return "BMP"
    if head[4:8] == b"ftyp":
        return "HEIF"
    if head[:3] in (b"PF\n", b"Pf\n"):
        return "PFM"
    return None


def _tail_problem(fmt: str, head: bytes, tail: bytes, size: int) -> str | None:
    if fmt == "JPEG" and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if fmt == "PNG" and b"IEND" not in tail[-64:]:
        return "truncated PNG (no IEND chunk)"
    if fmt == "WEBP" and int.from_bytes(head[4:8], "little") + 8 > size:
        return "truncated WebP (shorter than its RIFF header says)"
    return None


def _decodes_fully(path: str | os.PathLike) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:  # noqa: BLE001 - any decoder failure means the same here
        return False


def file_problem(path: str | os.PathLike) -> str | None:
    """Why an image file cannot be used ('empty file', 'truncated JPEG ...'), or None when it looks whole."""
    try:
        size = os.path.getsize(path)
        if size == 0:
            return "empty file (0 bytes)"
        with open(path, "rb") as fh:
            head = fh.read(16)
            fh.seek(max(0, size - _TAIL))
            tail = fh.read()
    except FileNotFoundError:
        return "missing"
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    fmt = sniff(head)
    if fmt is None:
        return "not an image (its first bytes match no image format)"
    problem = _tail_problem(fmt, head, tail, size)
    if problem and fmt == "JPEG" and _decodes_fully(path):
        return None  # a whole JPEG with data after its end marker
    return problem


def buffer_problem(buf: np.ndarray, path: str | os.PathLike) -> str | None:
    """:func:`file_problem` for a file already read into memory (``np.fromfile``)."""
    if buf.size == 0:
        return "empty file (0 bytes)"
    data = buf[:16].tobytes()
    fmt = sniff(data)
    if fmt is None:
        return "not an image (its first bytes match no image format)"
    problem = _tail_problem(fmt, data, buf[-_TAIL:].tobytes(), buf.size)
    if problem and fmt == "JPEG" and _decodes_fully(path):
        return None
    return problem


def read_image(path: str | os.PathLike) -> tuple[np.ndarray | None, str | None]:
    """(BGR image, None) or (None, why it cannot be used)."""
    try:
        buf = np.fromfile(str(path), np.uint8)
    except FileNotFoundError:
        return None, "missing"
    except OSError as err:
        return None, f"unreadable ({err.strerror or err})"
    problem = buffer_problem(buf, path)
    if problem:
        return None, problem
    img = decode(buf, path)
    return (img, None) if img is not None else (None, "cannot be decoded")


def decode(buf: np.ndarray, path: str | os.PathLike) -> np.ndarray | None:
    """Decode as Ultralytics' ``imread`` does for a prediction source (TIFF and HEIF through it)."""
    import cv2

    if Path(path).suffix.lower() in (".tif", ".tiff", ".heic", ".heif", ".avif"):
        from ultralytics.utils.patches import imread

        return imread(str(path))
    try:
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error:
        return None
