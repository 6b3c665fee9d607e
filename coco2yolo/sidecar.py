"""The weights sidecar ``N.json`` beside ``N.pt``: what inference needs to write original ids.

``train_yolo.py`` writes it. For weights trained elsewhere, make one with
``python -m coco2yolo.sidecar WEIGHTS.pt --categories DIR/categories.json --imgsz 1024``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from . import cli
from .cocodata import CategoryMap
from .errors import UserError
from .fileio import load_json, write_json

FORMAT = "coco2yolo-weights/1"


def sidecar_path(weights: str | os.PathLike) -> Path:
    return Path(weights).with_suffix(".json")


def write_sidecar(weights: str | os.PathLike, cmap: CategoryMap, imgsz: int, **fields: Any) -> Path:
    """Write ``weights``' sidecar with the category map, image size and any extra fields."""
    doc = {"format": FORMAT, "weights": Path(weights).name, "imgsz": imgsz,
           "categories": cmap.to_json()["categories"], **fields}
    return write_json(sidecar_path(weights), doc, indent=2)


def read_sidecar(weights: str | os.PathLike) -> tuple[CategoryMap, int, dict[str, Any]]:
    """Category map, training image size and the whole sidecar of ``weights``."""
    path = sidecar_path(weights)
    if not path.exists():
        raise UserError(f"{weights} has no sidecar {path.name} (train_yolo.py writes it; for weights "
                        f"trained elsewhere run: python -m coco2yolo.sidecar {weights} --categories "
                        "DIR/categories.json --imgsz SIZE)")
    doc = load_json(path, "weights sidecar")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(f"{path}: not a coco2yolo weights sidecar (format {FORMAT!r} expected)")
    cmap = CategoryMap.from_json({"categories": doc.get("categories")}, str(path))
    imgsz = doc.get("imgsz")
    if not isinstance(imgsz, int) or imgsz < 32:
        raise UserError(f"{path}: 'imgsz' must be an integer >= 32, got {imgsz!r}")
    return cmap, imgsz, doc


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog="python -m coco2yolo.sidecar",
                           description="Write the sidecar N.json for weights N.pt trained elsewhere.")
    p.add_argument("weights", help="the .pt file")
    p.add_argument("--categories", required=True,
                   help="categories.json written by the converter (class index <-> category_id)")
    p.add_argument("--imgsz", type=int, required=True, help="the image size the weights were trained at")
    return p


def main(args: argparse.Namespace) -> int:
    if not Path(args.weights).is_file():
        raise UserError(f"weights not found: {args.weights}")
    path = write_sidecar(args.weights, CategoryMap.load(args.categories), args.imgsz,
                         origin="python -m coco2yolo.sidecar")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(cli.run(main, get_args_parser()))
