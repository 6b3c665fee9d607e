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

from coco2yolo.errors import UserError

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


# What the official yolov5{n,s,m,l,x}.pt (v6/v7) pickle besides the models/utils classes: torch's
# tensor rebuilders (storages are resolved by torch itself), containers, and numpy scalars (older
# files store best_fitness as one). Classes of torch.nn.modules are allowed by rule (below).
ALLOWED_GLOBALS = frozenset({
    ("collections", "OrderedDict"), ("builtins", "set"), ("__builtin__", "set"),
    ("builtins", "frozenset"), ("__builtin__", "frozenset"),
    ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"), ("torch", "float16"), ("torch", "float32"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "dtype"),
})


class RefusedGlobal(UserError):
    """A checkpoint's pickle names a global outside the allow-list (loading it could run code)."""


def _torch_module_class(module: str, name: str) -> type | None:
    """A torch.nn.modules class by name (layers only: nothing that runs code when called)."""
    if module != "torch.nn.modules" and not module.startswith("torch.nn.modules."):
        return None
    import importlib

    obj = getattr(importlib.import_module(module), name, None)
    return obj if isinstance(obj, type) and issubclass(obj, nn.Module) else None


class _Unpickler(pickle.Unpickler):
    """Unpickles yolov5-repo checkpoints: models/utils classes become stubs; everything else must be on
    the allow-list (:data:`ALLOWED_GLOBALS`, torch.nn layer classes) unless ``trust`` is set."""

    _stubs: dict[tuple[str, str], type] = {}
    trust = False

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] in _LEGACY_ROOTS:
            key = (module, name)
            if key not in self._stubs:
                self._stubs[key] = type(name, (_Stub,), {"__module__": module})
            return self._stubs[key]
        if (module, name) in ALLOWED_GLOBALS or self.trust:
            return super().find_class(module, name)
        cls = _torch_module_class(module, name)
        if cls is None:
            raise RefusedGlobal(f"{'builtins' if module == '__builtin__' else module}.{name}")
        return cls


class _TrustingUnpickler(_Unpickler):
    trust = True


def _pickle_module(trust: bool) -> Any:
    """A module-like object for torch.load: every pickle in the file (the old non-zip format has several)
    goes through the restricted unpickler."""
    unpickler = _TrustingUnpickler if trust else _Unpickler

    class PickleModule:
        Unpickler = unpickler

        @staticmethod
        def load(fh: Any, **kwargs: Any) -> Any:
            return unpickler(fh, **kwargs).load()

    return PickleModule


def is_legacy(path: str | os.PathLike, trust: bool = False) -> bool:
    """Whether a checkpoint pickles yolov5-repo classes (a zip is judged from its pickle's bytes alone)."""
    return read_legacy(path, trust, probe=True) is not None


def read_legacy(path: str | os.PathLike, trust: bool = False, probe: bool = False) -> dict[str, Any] | None:
    """Return ``{'state_dict', 'yaml', 'names'}`` for a yolov5-repo checkpoint, else None.

    The pickle is read with an allow-list (``trust``: anything goes, for a file the user vouches for);
    a refused global raises UserError naming it. ``probe``: for a zip checkpoint, only say whether it is
    one (an empty dict) without loading it.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            pkl = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
            if pkl is None or not any(marker in zf.read(pkl) for marker in _LEGACY_MARKERS):
                return None  # not the yolov5 repository's format: nothing to unpickle here
            if probe:
                return {}
    except (zipfile.BadZipFile, OSError):
        pass  # the pre-1.6 torch format: only unpickling (restricted) tells
    try:
        ckpt = torch.load(path, map_location="cpu", pickle_module=_pickle_module(trust), weights_only=False)
    except RefusedGlobal as err:
        if str(err).startswith("ultralytics."):
            return None  # an Ultralytics checkpoint: Ultralytics' own safe loader judges it
        raise UserError(refused_message(path, str(err))) from None
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        raise UserError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from None
    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if not isinstance(model, _Stub) or not isinstance(getattr(model, "yaml", None), dict):
        return None
    return {"state_dict": {k: v.float() if v.is_floating_point() else v
                           for k, v in model.state_dict().items()},
            "yaml": model.yaml, "names": getattr(model, "names", None)}


def refused_message(path: str | os.PathLike, global_name: str) -> str:
    """The one line for a checkpoint refused because its pickle names ``global_name``."""
    return (f"{path}: refused to load: the checkpoint's pickle references {global_name}, which is not on the "
            "allow-list of model classes (a .pt file is a pickle and loading it could run code); if you trust "
            "this file, pass --trust-weights")


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
                  legacy: dict[str, Any] | None = None, trust: bool = False) -> tuple[nn.Module, str]:
    """Build the matching ``yolov5*u`` model for ``nc`` classes with the legacy tensors copied in.

    ``legacy``: the file as :func:`read_legacy` returned it, if already read. Returns the model and
    a one-line summary. Raises UserError if the file is not a legacy checkpoint or any
    backbone/neck tensor is missing or has a different shape.
    """
    from ultralytics.nn.tasks import DetectionModel

    legacy = legacy if legacy is not None else read_legacy(path, trust)
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
    from coco2yolo.fileio import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"model": model, "train_args": {}, "date": None}, tmp)
    return Path(path)
