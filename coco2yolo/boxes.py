"""Box format conversions and IoU. Names carry the coordinate order.

- ``xywh``: COCO, top-left x, top-left y, width, height, in pixels.
- ``xyxy``: x1, y1, x2, y2 (pixels, or normalised to [0, 1] where the name says ``_norm``).
- ``yolo``: class-free YOLO label box, centre x, centre y, width, height, normalised by the image.
``resolution_wh`` is (image width, image height) in pixels.
"""

from __future__ import annotations

import numpy as np


def xywh_to_xyxy(boxes_xywh: np.ndarray) -> np.ndarray:
    """(N, 4) COCO xywh -> (N, 4) xyxy, same units."""
    b = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def xyxy_to_xywh(boxes_xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy -> (N, 4) COCO xywh, same units."""
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def xywh_to_yolo(boxes_xywh: np.ndarray, resolution_wh: tuple[float, float] | np.ndarray) -> np.ndarray:
    """(N, 4) COCO xywh pixels -> (N, 4) normalised centre-x, centre-y, w, h.

    ``resolution_wh``: one (width, height), or (N, 2), one per box. The arithmetic matches
    Ultralytics' ``convert_coco`` (centre first, then divide), so the written labels are identical
    to the reference converter's.
    """
    b = np.array(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    wh = np.asarray(resolution_wh, dtype=np.float64).reshape(-1, 2)
    b[:, :2] += b[:, 2:] / 2
    b[:, [0, 2]] /= wh[:, :1]
    b[:, [1, 3]] /= wh[:, 1:]
    return b


def yolo_to_xywh(boxes_yolo: np.ndarray, resolution_wh: tuple[float, float]) -> np.ndarray:
    """(N, 4) normalised centre-x, centre-y, w, h -> (N, 4) COCO xywh pixels."""
    b = np.array(boxes_yolo, dtype=np.float64).reshape(-1, 4)
    width, height = resolution_wh
    b[:, [0, 2]] *= width
    b[:, [1, 3]] *= height
    b[:, :2] -= b[:, 2:] / 2
    return b


def clip_xywh(boxes_xywh: np.ndarray, resolution_wh: tuple[float, float] | np.ndarray) -> np.ndarray:
    """Clip COCO xywh boxes to the image; a box fully outside gets zero width or height.

    ``resolution_wh``: one (width, height), or (N, 2), one per box.
    """
    xyxy = xywh_to_xyxy(boxes_xywh)
    wh = np.asarray(resolution_wh, dtype=np.float64).reshape(-1, 2)
    xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, wh[:, :1])
    xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, wh[:, 1:])
    return xyxy_to_xywh(xyxy)


def iou_xyxy(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy -> (N, M) intersection over union; 0 where the union is empty."""
    a = np.asarray(a_xyxy, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b_xyxy, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod((rb - lt).clip(0), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
