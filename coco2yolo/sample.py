"""Built-in sample: a small synthetic dataset in the competition's exact layout.

``python -m coco2yolo.sample OUT [--train N] [--test M] [--size PX] [--seed S]`` writes
``OUT/train.json``, ``OUT/test.json`` (images only), ``OUT/train/0000.jpg ...``,
``OUT/test/0000.jpg ...`` with the competition's 10 categories (0-based ids), annotation ids
from 0, and about one image in eight without boxes. Each class is a distinct colour and shape
on a textured background, so a small detector learns it in minutes on a CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from coco2yolo import cli
from coco2yolo.boxes import iou_xyxy
from coco2yolo.fileio import atomic_path, write_json

CATEGORIES = ["General trash", "Paper", "Paper pack", "Metal", "Glass", "Plastic", "Styrofoam",
              "Plastic bag", "Battery", "Clothing"]
# (BGR colour, shape) per class: colour is the main cue, shape the second.
STYLE = [((70, 70, 70), "triangle"), ((245, 245, 245), "square"), ((40, 110, 190), "rect"),
         ((200, 200, 160), "ring"), ((40, 170, 40), "ellipse"), ((220, 90, 20), "rect"),
         ((40, 230, 240), "disc"), ((200, 40, 200), "ellipse"), ((30, 30, 220), "battery"),
         ((160, 160, 20), "cross")]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.integers(90, 170, size=3)
    small = rng.normal(0, 18, size=(8, 8, 3))
    noise = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    img = np.clip(base[None, None, :] + noise + rng.normal(0, 4, size=(size, size, 3)), 0, 255)
    return img.astype(np.uint8)


def _draw(img: np.ndarray, cls: int, xyxy: np.ndarray, rng: np.random.Generator) -> None:
    colour, shape = STYLE[cls]
    colour = tuple(int(np.clip(c + rng.integers(-15, 16), 0, 255)) for c in colour)
    x1, y1, x2, y2 = (int(round(v)) for v in xyxy)
    cx, cy, w, h = (x1 + x2) // 2, (y1 + y2) // 2, x2 - x1, y2 - y1
    if shape in ("square", "rect"):
        cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), colour, -1)
        if shape == "rect":
            cv2.rectangle(img, (x1, cy - h // 8), (x2 - 1, cy + h // 8), (255, 255, 255), -1)
    elif shape == "triangle":
        pts = np.array([[cx, y1], [x1, y2 - 1], [x2 - 1, y2 - 1]], np.int32)
        cv2.fillPoly(img, [pts], colour)
    elif shape in ("ellipse", "disc", "ring"):
        cv2.ellipse(img, (cx, cy), (max(w // 2 - 1, 1), max(h // 2 - 1, 1)), 0, 0, 360, colour, -1)
        if shape == "ring":
            cv2.ellipse(img, (cx, cy), (max(w // 4, 1), max(h // 4, 1)), 0, 0, 360, (60, 60, 60), -1)
    elif shape == "battery":
        cv2.rectangle(img, (x1, y1 + h // 8), (x2 - 1, y2 - 1), colour, -1)
        cv2.rectangle(img, (cx - w // 6, y1), (cx + w // 6, y1 + h // 8), (200, 200, 200), -1)
    elif shape == "cross":
        t = max(min(w, h) // 4, 1)
        cv2.rectangle(img, (x1, cy - t), (x2 - 1, cy + t), colour, -1)
        cv2.rectangle(img, (cx - t, y1), (cx + t, y2 - 1), colour, -1)


def _objects(rng: np.random.Generator, size: int) -> list[tuple[int, np.ndarray]]:
    if rng.random() < 0.125:
        return []
    objs: list[tuple[int, np.ndarray]] = []
    for _ in range(int(rng.integers(1, 5))):
        for _try in range(20):
            w, h = rng.uniform(0.15, 0.4, size=2) * size
            x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
            box = np.array([x, y, x + w, y + h])
            if all(iou_xyxy(box, b)[0, 0] < 0.1 for _, b in objs):
                objs.append((int(rng.integers(0, len(CATEGORIES))), box))
                break
    return objs


def _write_image(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        tmp.write_bytes(buf.tobytes())


def make_sample(out: str | Path, n_train: int = 200, n_test: int = 20, size: int = 256,
                seed: int = 0) -> Path:
    """Write the sample dataset to ``out`` and return ``out/train.json``."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    cats = [{"id": i, "name": n, "supercategory": n} for i, n in enumerate(CATEGORIES)]
    info = {"description": "coco2yolo built-in synthetic sample", "version": "1.0"}
    for split, n in (("train", n_train), ("test", n_test)):
        images: list[dict[str, Any]] = []
        anns: list[dict[str, Any]] = []
        for i in range(n):
            img = _background(rng, size)
            name = f"{split}/{i:04d}.jpg"
            images.append({"id": i, "file_name": name, "width": size, "height": size})
            for cls, box in _objects(rng, size):
                _draw(img, cls, box, rng)
                x1, y1, x2, y2 = (round(float(v), 1) for v in box)
                anns.append({"id": len(anns), "image_id": i, "category_id": cls,
                             "bbox": [x1, y1, round(x2 - x1, 1), round(y2 - y1, 1)],
                             "area": round((x2 - x1) * (y2 - y1), 2), "iscrowd": 0})
            _write_image(out / name, img)
        doc: dict[str, Any] = {"info": info, "images": images, "categories": cats}
        if split == "train":
            doc["annotations"] = anns
        write_json(out / f"{split}.json", doc)
    return out / "train.json"


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog="python -m coco2yolo.sample", description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path, help="output folder (the dataset root)")
    p.add_argument("--train", type=int, default=200, help="training images (200)")
    p.add_argument("--test", type=int, default=20, help="test images, without annotations (20)")
    p.add_argument("--size", type=int, default=256, help="image width and height in px (256)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    return p


def main(args: argparse.Namespace) -> int:
    path = make_sample(args.out, args.train, args.test, args.size, args.seed)
    print(f"wrote the sample dataset: {path} and {path.parent / 'test.json'}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(cli.run(main, get_args_parser))
