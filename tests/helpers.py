"""Inline COCO fixtures for tests: tiny image files plus a dataset JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np


def make_coco(root: Path, images: list[tuple[int, str, int, int]], anns: list[dict[str, Any]],
              cat_ids: list[int], json_name: str = "train.json") -> Path:
    """Write ``root/json_name`` and a small image file for every (id, file_name, width, height)."""
    for _, name, w, h in images:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), np.full((h, w, 3), 127, np.uint8))
    doc = {"images": [{"id": i, "file_name": n, "width": w, "height": h} for i, n, w, h in images],
           "categories": [{"id": c, "name": f"class{c}"} for c in cat_ids],
           "annotations": [{"iscrowd": 0, **a} for a in anns]}
    path = root / json_name
    path.write_text(json.dumps(doc))
    return path


def ann(aid: int, image_id: int, cat: int, bbox: list[float], **kw: Any) -> dict[str, Any]:
    return {"id": aid, "image_id": image_id, "category_id": cat, "bbox": bbox, **kw}


def read_labels(path: Path) -> list[list[float]]:
    return [[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]


def one_line(code: int, err: str, match: str | None = None, status: int = 2) -> None:
    """A refusal as the project promises it: exit ``status``, one line on stderr, no traceback."""
    assert code == status, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    if match:
        assert match in err, err


def unavailable(reason: str) -> None:
    """A real engine (a browser, PostgreSQL, SLURM, FiftyOne) is absent: skip with the reason, or fail where
    ``COCO2YOLO_REQUIRE_ENGINES`` is set (CI sets it: there every engine is installed and no such test may skip)."""
    import os

    import pytest

    if os.environ.get("COCO2YOLO_REQUIRE_ENGINES", "").strip() not in ("", "0"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)
