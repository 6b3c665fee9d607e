"""The weights sidecar ``N.json`` beside ``N.pt``: what inference needs to write original ids.

``train_yolo.py`` writes it. For weights trained elsewhere, make one with
``python -m coco2yolo.sidecar WEIGHTS.pt --categories DIR/categories.json --imgsz 1024``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from coco2yolo import cli
from coco2yolo.cocodata import CategoryMap
from coco2yolo.errors import UserError, short
from coco2yolo.fileio import guard_outputs, load_json, require_file, write_json

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
        raise UserError(f"{path}: 'imgsz' must be an integer >= 32, got {short(imgsz)}")
    return cmap, imgsz, doc


def derive_sidecar(weights: str | os.PathLike, ckpt: Any) -> tuple[CategoryMap, int, str] | None:
    """For weights without a sidecar (e.g. ``runs/train/N/weights/best.pt``): the category map from the
    ``categories.json`` beside the data.yaml the checkpoint was trained on, and its training size."""
    args = ckpt.get("train_args") if isinstance(ckpt, dict) else None
    data = args.get("data") if isinstance(args, dict) else None
    imgsz = args.get("imgsz") if isinstance(args, dict) else None
    if not isinstance(data, str) or not isinstance(imgsz, int) or isinstance(imgsz, bool) or imgsz < 32:
        return None
    cat_file = Path(data).parent / "categories.json"
    if not cat_file.is_file():
        return None
    note = (f"note: {weights} has no sidecar {sidecar_path(weights).name}; category ids from {cat_file} (beside "
            f"the data.yaml it was trained on), training size {imgsz}")
    return CategoryMap.load(cat_file), imgsz, note


def resolve_sidecar(weights: str | os.PathLike, ckpt: Any = None) -> tuple[CategoryMap, int, str | None]:
    """The sidecar's category map and training size, or, without one, what the checkpoint tells
    (see :func:`derive_sidecar`); the third value is a note to print when derived."""
    if sidecar_path(weights).exists() or ckpt is None:
        cmap, imgsz, _ = read_sidecar(weights)
        return cmap, imgsz, None
    derived = derive_sidecar(weights, ckpt)
    if derived is None:
        read_sidecar(weights)  # raises the error that says how to make one
    return derived


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog="python -m coco2yolo.sidecar",
                           description="Write the sidecar N.json for weights N.pt trained elsewhere.")
    p.add_argument("weights", help="the .pt file")
    p.add_argument("--categories", required=True,
                   help="categories.json written by the converter (class index <-> category_id)")
    p.add_argument("--imgsz", type=cli.number(32, integer=True), required=True,
                   help="the image size the weights were trained at")
    return p


def main(args: argparse.Namespace) -> int:
    require_file(args.weights, "weights")
    guard_outputs({"sidecar": sidecar_path(args.weights)}, {"WEIGHTS": args.weights, "--categories": args.categories})
    path = write_sidecar(args.weights, CategoryMap.load(args.categories), args.imgsz,
                         origin="python -m coco2yolo.sidecar")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(cli.run(main, get_args_parser))
