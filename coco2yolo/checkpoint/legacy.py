"""Import checkpoints saved by the old yolov5 repository, without that repository's code.

Ultralytics refuses those files (they pickle ``models.yolo.Model``). They are read as data by
:func:`coco2yolo.checkpoint.read_checkpoint` like any checkpoint, and every backbone and neck tensor
(layers before ``Detect``) is copied into the matching Ultralytics ``yolov5{n,s,m,l,x}[6]u.yaml``
model (a file Ultralytics ships, never the checkpoint's own yaml) with its shape checked. The
anchor-based YOLOv5 head has no counterpart in the anchor-free ``yolov5*u`` head, so the head is
freshly initialised for the dataset's classes.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from torch import nn

from coco2yolo.checkpoint.content import Checkpoint
from coco2yolo.errors import UserError

# (depth_multiple, width_multiple) -> scale letter of Ultralytics' yolov5u.yaml
SCALES = {(0.33, 0.25): "n", (0.33, 0.5): "s", (0.67, 0.75): "m", (1.0, 1.0): "l", (1.33, 1.25): "x"}
_LAYER = re.compile(r"model\.(\d{1,4})\.")


def _multiple(yaml: dict[str, Any], key: str) -> float:
    v = yaml.get(key)
    return round(float(v), 2) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else 0.0


def target_yaml(legacy_yaml: dict[str, Any] | None, source: str) -> str:
    """Name of the Ultralytics yaml that matches a legacy model's depth/width and P5/P6 layout."""
    if not isinstance(legacy_yaml, dict):
        raise UserError(f"{source}: the yolov5 checkpoint has no model yaml (depth and width multiples)")
    key = (_multiple(legacy_yaml, "depth_multiple"), _multiple(legacy_yaml, "width_multiple"))
    if key not in SCALES:
        raise UserError(f"{source}: depth/width multiples {key} match no YOLOv5 scale; known: "
                        + ", ".join(f"{v}={k}" for k, v in SCALES.items()))
    backbone = legacy_yaml.get("backbone")
    p6 = isinstance(backbone, list) and len(backbone) > 10
    return f"yolov5{SCALES[key]}{'6' if p6 else ''}u.yaml"


def import_legacy(ckpt: Checkpoint, nc: int, names: list[str] | None = None) -> tuple[nn.Module, str]:
    """Build the matching ``yolov5*u`` model for ``nc`` classes with the legacy tensors copied in.

    Returns the model and a one-line summary. Raises UserError if any backbone/neck tensor is missing
    from the model or has a different shape.
    """
    from coco2yolo.checkpoint.arch import _detection_model, _quiet

    path = ckpt.path
    if ckpt.kind != "yolov5":
        raise UserError(f"{path} is not a checkpoint of the yolov5 repository")
    cfg = target_yaml(ckpt.yaml, str(path))
    with _quiet():
        model = _detection_model(cfg, nc)  # type: ignore[arg-type] - a yaml Ultralytics ships, by name
    head = len(model.model) - 1  # index of Detect, same in both layouts
    target = model.state_dict()
    body = {}
    for k, v in ckpt.tensors.items():
        m = _LAYER.match(k)
        if m is None:
            raise UserError(f"{path}: tensor {k[:60]!r} is not in a layer of the model (model.N.…)")
        if int(m.group(1)) < head:
            body[k] = v
    missing = [k for k in body if k not in target]
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in body.items()
             if k in target and v.shape != target[k].shape]
    if missing or wrong or not body:
        raise UserError(f"{path}: does not fit {cfg}: " + ("; ".join((missing + wrong)[:3]) or "no backbone tensors")
                        + f" ({len(missing)} missing, {len(wrong)} of other shape)")
    target.update({k: v.to(target[k].dtype) for k, v in body.items()})
    model.load_state_dict(target)
    if names:
        model.names = dict(enumerate(names))
    msg = (f"imported {len(body)} of {len(ckpt.tensors)} tensors from {Path(path).name} into {cfg} "
           f"(layers 0-{head - 1}); detection head re-initialised for {nc} classes")
    return model, msg
