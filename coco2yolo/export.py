"""``coco2yolo export``: trained weights as ONNX for deployment, with their category map beside them.

    coco2yolo export --weights weights/N.pt [--format onnx] [--out N.onnx] [--imgsz S] [--dynamic] [--half]
                     [--opset K] [--no-simplify]

The checkpoint is read as data and the model built here (:mod:`coco2yolo.checkpoint`), then Ultralytics'
own exporter writes the ONNX graph (its metadata holds the class names, stride and size). The weights'
sidecar (category ids, training size) is written beside the ONNX file, so that
``infer.py --weights N.onnx`` writes COCO results with the original category ids, equal to the ``.pt``'s within
float tolerance (tested). ONNX files are no pickles: loading one runs no code from it.

Needs ``onnx``, ``onnxslim`` and, to predict, ``onnxruntime``: ``pip install 'coco2yolo[export]'``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from coco2yolo import cli, ultra
from coco2yolo.errors import UserError
from coco2yolo.fileio import atomic_path, guard_outputs, require_file
from coco2yolo.sidecar import resolve_sidecar, sidecar_path, write_sidecar

FORMATS = ("onnx",)


def _need(modules: list[str], what: str) -> None:
    import importlib

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"{what} needs {', '.join(missing)}: pip install 'coco2yolo[export]' (onnx, onnxslim, onnxruntime)")


def export(weights: str | Path, out: str | Path | None = None, fmt: str = "onnx", imgsz: int | None = None,
           dynamic: bool = False, half: bool = False, opset: int | None = None, simplify: bool = True,
           trust: bool = False) -> Path:
    """Export ``weights`` to ``out`` (default: beside them, ``.onnx``); return the path."""
    from coco2yolo import checkpoint as ck

    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: allowed: {', '.join(FORMATS)}")
    weights = require_file(weights, "weights")
    out = Path(out) if out is not None else weights.with_suffix(".onnx")
    if out.suffix.lower() != ".onnx":
        raise UserError(f"--out {out}: an ONNX file's name ends in .onnx")
    side_out = sidecar_path(out)
    guard_outputs({"--out": out, "the sidecar": side_out if side_out != sidecar_path(weights) else None},
                  {"--weights": weights, "the weights' sidecar": sidecar_path(weights)})
    _need(["onnx"] + (["onnxslim"] if simplify else []), "export to ONNX")
    ultra.setup()
    ckpt = None if trust else ck.read_checkpoint(weights)
    cmap, train_imgsz, _ = resolve_sidecar(weights, {"train_args": ckpt.train_args} if ckpt is not None else None)
    size = imgsz or train_imgsz
    work = Path(tempfile.mkdtemp(prefix="coco2yolo-export-"))
    try:
        if trust:
            shutil.copy(weights, work / "model.pt")
            yolo = ck.ultralytics_yolo(work / "model.pt", trust=True)
        else:
            yolo = ck.yolo_from_model(ck.full_model(ckpt), work / "model.pt")
        if len(yolo.names) != len(cmap):
            raise UserError(f"{weights} predicts {len(yolo.names)} classes but its sidecar lists {len(cmap)}")
        yolo.model.names = dict(enumerate(cmap.names))
        try:
            made = yolo.export(format=fmt, imgsz=size, dynamic=dynamic, half=half, simplify=simplify, device="cpu"
                               if not half else "0", **({"opset": opset} if opset else {}))
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 - the exporter's failures (an opset, a missing CUDA for --half)
            raise UserError(f"export of {weights} to {fmt} failed: {' '.join(str(err).split())[:200]}") from None
        with atomic_path(out) as tmp:
            shutil.copyfile(made, tmp)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if side_out != sidecar_path(weights) or not side_out.exists():
        write_sidecar(out, cmap, size, origin=f"exported from {weights} by coco2yolo export ({fmt})",
                      exported={"format": fmt, "imgsz": size, "dynamic": dynamic, "half": half})
    return out


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog="coco2yolo export", description="Export trained weights to ONNX (Ultralytics' "
                           "exporter), with the category map beside the file, for deployment.")
    p.add_argument("--weights", required=True, help="weights N.pt with its N.json sidecar")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (the one supported)")
    p.add_argument("--out", default=None, help="the file to write (default: the weights' name with .onnx)")
    p.add_argument("--imgsz", type=cli.number(32, integer=True), default=None,
                   help="input size (default: the training size from the sidecar)")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch and image size")
    p.add_argument("--half", action="store_true", help="FP16 (needs a CUDA GPU)")
    p.add_argument("--opset", type=cli.number(7, 30, integer=True), default=None, help="ONNX opset (default: the best "
                   "the installed onnx supports)")
    p.add_argument("--simplify", action=argparse.BooleanOptionalAction, default=True,
                   help="simplify the graph with onnxslim (default on)")
    p.add_argument("--trust-weights", action="store_true",
                   help="load the weights with the full pickle loader (it can run code: only for files you trust)")
    return p


def main(args: argparse.Namespace) -> int:
    out = export(args.weights, args.out, args.format, args.imgsz, args.dynamic, args.half, args.opset, args.simplify,
                 args.trust_weights)
    print(f"wrote {out} (+ {sidecar_path(out).name}); predict with: python infer.py --weights {out} --images ...")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(cli.run(main, get_args_parser))
