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
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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


MAX_PIXELS = 89_478_485  # Pillow's decompression-bomb bound (about 9459 x 9459): --max-pixels raises it
_HEAD = 4096  # first read; a JPEG whose frame header lies further (a large EXIF thumbnail) is read on
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


@dataclass
class PhotoInfo:
    """What a photo's header says (nothing is decoded): its stored size, its EXIF orientation (1 = as
    stored; 2-8 = mirrored and/or rotated, as OpenCV and Ultralytics decode it), or why it is unusable."""

    problem: str | None = None
    format: str | None = None
    width: int | None = None           # as stored
    height: int | None = None
    orientation: int = 1

    @property
    def shown_size(self) -> tuple[int, int] | None:
        """(width, height) as decoded with the orientation applied (what training and prediction see)."""
        if self.width is None or self.height is None:
            return None
        return (self.height, self.width) if self.orientation in (5, 6, 7, 8) else (self.width, self.height)


def _exif_orientation(seg: bytes) -> int:
    """The orientation tag (0x0112) of an APP1 Exif segment's first IFD; 1 when absent or unreadable."""
    if not seg.startswith(b"Exif\0\0") or len(seg) < 14:
        return 1
    t = seg[6:]
    order = {b"II": "<", b"MM": ">"}.get(t[:2])
    if order is None:
        return 1
    try:
        (ifd,) = struct.unpack(order + "I", t[4:8])
        (n,) = struct.unpack(order + "H", t[ifd:ifd + 2])
        for k in range(min(n, 512)):
            e = t[ifd + 2 + 12 * k: ifd + 14 + 12 * k]
            tag, typ = struct.unpack(order + "HH", e[:4])
            if tag == 0x0112 and typ == 3:
                (value,) = struct.unpack(order + "H", e[8:10])
                return value if 1 <= value <= 8 else 1
    except struct.error:
        return 1
    return 1


def _jpeg_header(read_at: Callable[[int, int], bytes], head: bytes, size: int) -> tuple[int, int, int] | None:
    """(width, height, orientation) from a JPEG's markers, reading past ``head`` (``read_at(pos, n)``) only when
    the frame header is further (large APP segments); None when there is no frame header before the scan."""
    pos, orientation = 2, 1
    buf, base = head, 0
    while pos + 4 <= size:
        if pos + 10 > base + len(buf):
            buf, base = read_at(pos, _HEAD), pos
            if len(buf) < 4:
                return None
        i = pos - base
        if buf[i] != 0xFF:
            return None
        marker = buf[i + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", buf[i + 2:i + 4])
        if marker in _SOF:
            height, width = struct.unpack(">HH", buf[i + 5:i + 9])
            return width, height, orientation
        if marker == 0xDA or length < 2:
            return None
        if marker == 0xE1 and orientation == 1:
            seg = buf[i + 4:i + 2 + length] if i + 2 + length <= len(buf) else read_at(pos + 4, length - 2)
            orientation = _exif_orientation(seg)
        pos += 2 + length
    return None


def _dimensions(path: str | os.PathLike, read_at: Callable[[int, int], bytes], fmt: str, head: bytes, size: int
                ) -> tuple[int, int, int] | None:
    if fmt == "JPEG":
        try:
            return _jpeg_header(read_at, head, size)
        except (struct.error, IndexError):
            return None
    if fmt == "PNG" and head[12:16] == b"IHDR":
        w, h = struct.unpack(">II", head[16:24])
        return w, h, 1
    try:  # other formats: Pillow reads the header only (no decoding)
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None  # the bound is ours, below; Pillow's would raise before saying the size
        with Image.open(path) as im:
            w, h = im.size
            o = im.getexif().get(0x0112, 1) if fmt in ("TIFF", "WEBP") else 1
        return w, h, o if isinstance(o, int) and 1 <= o <= 8 else 1
    except Exception:  # noqa: BLE001 - HEIF without a plugin, an odd header: the size stays unknown
        return None


def probe(path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS) -> PhotoInfo:
    """Read a photo's first bytes and its last few: why it is unusable (empty, not an image, truncated, too
    many pixels, not a regular file), else its format, stored size and EXIF orientation. Nothing is decoded."""
    import stat

    from coco2yolo.fileio import file_kind

    try:  # raw calls: this runs once a photo (4,883 in a second on the competition's set)
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # looked at before opening: opening a device can do something
            return PhotoInfo(f"{file_kind(st.st_mode)}, not a regular file")
        size = st.st_size
        if size == 0:
            return PhotoInfo("empty file (0 bytes)")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))  # a pipe swapped in: no wait
        try:
            head = os.pread(fd, _HEAD, 0)
            fmt = sniff(head[:16])
            if fmt is None:
                return PhotoInfo("not an image (its first bytes match no image format)")
            tail = os.pread(fd, _TAIL, max(0, size - _TAIL)) if size > _HEAD else head[-_TAIL:]
            dims = _dimensions(path, lambda pos, n: os.pread(fd, n, pos), fmt, head, size)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return PhotoInfo("missing")
    except OSError as err:
        return PhotoInfo(f"unreadable ({err.strerror or err})")
    problem = _tail_problem(fmt, head, tail, size)
    if problem and fmt == "JPEG" and _decodes_fully(path):
        problem = None  # a whole JPEG with data after its end marker
    info = PhotoInfo(problem, fmt, *(dims or (None, None, 1)))
    if problem is None and dims is not None and max_pixels is not None and dims[0] * dims[1] > max_pixels:
        info.problem = (f"too many pixels: {dims[0]} x {dims[1]} ({dims[0] * dims[1] / 1e6:.1f} MP) is over "
                        f"--max-pixels {max_pixels}")
    if problem is None and dims is not None and (dims[0] == 0 or dims[1] == 0):
        info.problem = f"a {dims[0]} x {dims[1]} image has no pixels"
    return info


def file_problem(path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS) -> str | None:
    """Why an image file cannot be used ('empty file', 'truncated JPEG ...', 'too many pixels ...'), or None
    when it looks whole (see :func:`probe`)."""
    return probe(path, max_pixels).problem


def buffer_problem(buf: np.ndarray, path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS) -> str | None:
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
    if problem is None and max_pixels is not None:
        dims = _dimensions(path, lambda pos, n: buf[pos:pos + n].tobytes(), fmt, buf[:_HEAD].tobytes(), buf.size)
        if dims is not None and dims[0] * dims[1] > max_pixels:
            return (f"too many pixels: {dims[0]} x {dims[1]} ({dims[0] * dims[1] / 1e6:.1f} MP) is over "
                    f"--max-pixels {max_pixels}")
    return problem


def read_image(path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS) -> tuple[np.ndarray | None, str | None]:
    """(BGR image, None) or (None, why it cannot be used); a photo over ``max_pixels`` is not decoded."""
    from coco2yolo.fileio import not_regular

    kind = not_regular(path)
    if kind is not None:
        return None, f"{kind}, not a regular file"
    try:
        buf = np.fromfile(str(path), np.uint8)
    except FileNotFoundError:
        return None, "missing"
    except OSError as err:
        return None, f"unreadable ({err.strerror or err})"
    problem = buffer_problem(buf, path, max_pixels)
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
