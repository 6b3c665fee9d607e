"""Import checkpoints saved by the old yolov5 repository, without that repository's code.

Ultralytics refuses those files (they pickle ``models.yolo.Model``). Here they are unpickled with
stand-in classes, and every backbone and neck tensor (layers before ``Detect``) is copied into the
matching Ultralytics ``yolov5{n,s,m,l,x}[6]u.yaml`` model with its shape checked. The anchor-based
YOLOv5 head has no counterpart in the anchor-free ``yolov5*u`` head, so the head is freshly
initialised for the dataset's classes.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import UserError

# (depth_multiple, width_multiple) -> scale letter of Ultralytics' yolov5u.yaml
SCALES = {(0.33, 0.25): "n", (0.33, 0.5): "s", (0.67, 0.75): "m", (1.0, 1.0): "l", (1.33, 1.25): "x"}
_LEGACY_ROOTS = ("models", "utils")
# How a pickle names the class models.yolo.Model: GLOBAL (protocol 2, what torch.save uses) or
# the module string of STACK_GLOBAL (protocol 4).
_LEGACY_MARKERS = (b"cmodels.yolo\n", b"\x8c\x0bmodels.yolo")


class _Stub(nn.Module):
    """Stand-in for a yolov5-repo module class: holds its parameters, cannot run."""

    def forward(self, *args: Any) -> Any:  # pragma: no cover - never called
        raise RuntimeError("a legacy yolov5 module cannot run; it was loaded only to copy tensors")


class _Unpickler(pickle.Unpickler):
    _stubs: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] in _LEGACY_ROOTS:
            key = (module, name)
            if key not in self._stubs:
                self._stubs[key] = type(name, (_Stub,), {"__module__": module})
            return self._stubs[key]
        return super().find_class(module, name)


class _PickleModule:
    Unpickler = _Unpickler
    load = staticmethod(pickle.load)


def is_legacy(path: str | os.PathLike) -> bool:
    """Whether a checkpoint pickles yolov5-repo classes, read from its pickle without loading tensors."""
    try:
        with zipfile.ZipFile(path) as zf:
            pkl = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
            data = zf.read(pkl) if pkl else b""
    except (zipfile.BadZipFile, OSError):
        return read_legacy(path) is not None  # the pre-1.6 torch format: load it to know
    return any(marker in data for marker in _LEGACY_MARKERS)


def read_legacy(path: str | os.PathLike) -> dict[str, Any] | None:
    """Return ``{'state_dict', 'yaml', 'names'}`` for a yolov5-repo checkpoint, else None."""
    try:
        ckpt = torch.load(path, map_location="cpu", pickle_module=_PickleModule, weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        raise UserError(f"cannot read checkpoint {path}: {err}") from None
    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if not isinstance(model, _Stub) or not isinstance(getattr(model, "yaml", None), dict):
        return None
    return {"state_dict": {k: v.float() if v.is_floating_point() else v
                           for k, v in model.state_dict().items()},
            "yaml": model.yaml, "names": getattr(model, "names", None)}


def target_yaml(legacy_yaml: dict[str, Any], source: str) -> str:
    """Name of the Ultralytics yaml that matches a legacy model's depth/width and P5/P6 layout."""
    key = (round(float(legacy_yaml.get("depth_multiple", 0)), 2),
           round(float(legacy_yaml.get("width_multiple", 0)), 2))
    if key not in SCALES:
        raise UserError(f"{source}: depth/width multiples {key} match no YOLOv5 scale; known: "
                        + ", ".join(f"{v}={k}" for k, v in SCALES.items()))
    p6 = len(legacy_yaml.get("backbone", [])) > 10
    return f"yolov5{SCALES[key]}{'6' if p6 else ''}u.yaml"


def import_legacy(path: str | os.PathLike, nc: int, names: list[str] | None = None,
                  legacy: dict[str, Any] | None = None) -> tuple[nn.Module, str]:
    """Build the matching ``yolov5*u`` model for ``nc`` classes with the legacy tensors copied in.

    ``legacy``: the file as :func:`read_legacy` returned it, if already read. Returns the model and
    a one-line summary. Raises UserError if the file is not a legacy checkpoint or any
    backbone/neck tensor is missing or has a different shape.
    """
    from ultralytics.nn.tasks import DetectionModel

    legacy = legacy if legacy is not None else read_legacy(path)
    if legacy is None:
        raise UserError(f"{path} is not a checkpoint of the yolov5 repository")
    cfg = target_yaml(legacy["yaml"], str(path))
    model = DetectionModel(cfg, nc=nc, verbose=False)
    head = len(model.model) - 1  # index of Detect, same in both layouts
    target = model.state_dict()
    src = legacy["state_dict"]
    body = {k: v for k, v in src.items() if int(k.split(".")[1]) < head}
    missing = [k for k in body if k not in target]
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in body.items()
             if k in target and v.shape != target[k].shape]
    if missing or wrong:
        raise UserError(f"{path}: does not fit {cfg}: " + "; ".join((missing + wrong)[:3])
                        + f" ({len(missing)} missing, {len(wrong)} of other shape)")
    target.update({k: v.to(target[k].dtype) for k, v in body.items()})
    model.load_state_dict(target)
    if names:
        model.names = dict(enumerate(names))
    msg = (f"imported {len(body)} of {len(src)} tensors from {Path(path).name} into {cfg} "
           f"(layers 0-{head - 1}); detection head re-initialised for {nc} classes")
    return model, msg


def save_ultralytics_checkpoint(model: nn.Module, path: str | os.PathLike) -> Path:
    """Save ``model`` in the checkpoint format Ultralytics' ``YOLO(path)`` loads."""
    from .fileio import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"model": model, "train_args": {}, "date": None}, tmp)
    return Path(path)
