"""Pictures for people: boxes drawn with captions, thumbnails, JPEG data URIs under a size budget."""

from __future__ import annotations

import base64
import zlib
from pathlib import Path

import numpy as np


def colour(key: str) -> tuple[int, int, int]:
    """A stable BGR colour per class name."""
    return tuple(int(v) for v in np.random.default_rng(zlib.crc32(key.encode())).integers(60, 255, 3))


# what a box is, by colour (BGR): found by the model, missed by it, a false alarm
FOUND, MISSED, FALSE_ALARM = (60, 160, 40), (0, 140, 255), (50, 40, 215)


def draw_boxes(img: np.ndarray, xyxy: np.ndarray, captions: list[str], keys: list[str] | None = None,
               thickness: int = 2, colours: list[tuple[int, int, int]] | None = None) -> np.ndarray:
    """Boxes with captions on a copy of a BGR image; ``colours`` per box, else ``keys`` pick them (default:
    the captions' first word, i.e. the class)."""
    import cv2

    out = img.copy()
    keys = keys or [c.rsplit(" ", 1)[0] for c in captions]
    colours = colours or [colour(k) for k in keys]
    scale = max(0.4, min(1.2, max(img.shape[:2]) / 1000))
    for (x1, y1, x2, y2), text, c in zip(np.asarray(xyxy).astype(int).tolist(), captions, colours):
        cv2.rectangle(out, (x1, y1), (x2, y2), c, thickness)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, 1)
        cv2.rectangle(out, (x1, max(0, y1 - th - 4)), (x1 + tw + 2, max(th + 4, y1)), c, -1)
        cv2.putText(out, text, (x1 + 1, max(th + 1, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, (0, 0, 0), 1)
    return out


def thumbnail(img: np.ndarray, max_side: int) -> np.ndarray:
    return thumbnail_scale(img, max_side)[0]


def thumbnail_scale(img: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The image shrunk to ``max_side`` (never enlarged) and the factor, so boxes can be drawn after the resize
    (captions at a readable size whatever the photo's)."""
    import cv2

    h, w = img.shape[:2]
    f = max_side / max(h, w)
    if f >= 1:
        return img, 1.0
    return cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA), f


def crop(img: np.ndarray, xyxy: np.ndarray, context: float = 1.0, min_side: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """The region around a box (``context`` box sizes on each side, at least ``min_side`` px) and the
    offset (x, y) of the crop in the image."""
    h, w = img.shape[:2]
    x1, y1, x2, y2 = xyxy
    bw, bh = max(x2 - x1, min_side / (1 + 2 * context)), max(y2 - y1, min_side / (1 + 2 * context))
    cx1, cy1 = int(max(0, x1 - context * bw)), int(max(0, y1 - context * bh))
    cx2, cy2 = int(min(w, x2 + context * bw)), int(min(h, y2 + context * bh))
    return img[cy1:max(cy2, cy1 + 1), cx1:max(cx2, cx1 + 1)], np.array([cx1, cy1, cx1, cy1], float)


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 8) -> np.ndarray:
    h = max(left.shape[0], right.shape[0])
    out = np.full((h, left.shape[1] + gap + right.shape[1], 3), 255, np.uint8)
    out[: left.shape[0], : left.shape[1]] = left
    out[: right.shape[0], left.shape[1] + gap:] = right
    return out


class Budget:
    """Bytes of inlined pictures allowed in one page."""

    def __init__(self, max_bytes: float):
        self.max_bytes, self.used, self.refused = max_bytes, 0, 0

    def take(self, n: int) -> bool:
        if self.used + n > self.max_bytes:
            self.refused += 1
            return False
        self.used += n
        return True


def jpeg_uri(img: np.ndarray, budget: Budget | None = None, quality: int = 80) -> str | None:
    """A data URI of ``img`` as a JPEG, or None when it does not fit the budget."""
    import cv2

    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    data = base64.b64encode(buf.tobytes()).decode()
    if budget is not None and not budget.take(len(data)):
        return None
    return "data:image/jpeg;base64," + data


def png_uri(png: bytes, budget: Budget | None = None) -> str | None:
    data = base64.b64encode(png).decode()
    if budget is not None and not budget.take(len(data)):
        return None
    return "data:image/png;base64," + data


def read(root: Path, file_name: str) -> np.ndarray | None:
    """An image of the ground truth (file_name relative to its JSON's folder), or None."""
    from coco2yolo.images import read_image

    img, _ = read_image(Path(root) / file_name)
    return img
